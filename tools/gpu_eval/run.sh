#!/usr/bin/env bash
# The GPU leg of the evaluation harness (docs/eval.md, "Backends"): the regular suite with --limit on
# CUDA with per-task times and per-question decisions (to compare with the CPU's), shared vs
# per-choice scoring timed in alternation, and the long suite at 4K.
#
#   usage: tools/gpu_eval/run.sh BIN MODEL DATA_DIR OUT [LIMIT] [RULER_SAMPLES]
#   BIN: a swiattn binary built with --features cuda; DATA_DIR: the assets layout (a trimmed copy
#   is enough: the first LIMIT rows of each dataset, the haystack essays, LAMBADA's requests).
#   TASKS (default regular) is the first step's --tasks; DTYPE (default f32) is eval's --dtype and names the outputs (cuda_<dtype>_*); BATCH (default 16)
#   is the long suite's --batch. STEPS (default "regular share long") picks steps; each has a time limit in seconds
#   ($T_REGULAR, $T_SHARE, $T_LONG) so one slow step cannot take the others' time; what a step
#   printed before its limit is kept.
set -euo pipefail
BIN=$1 MODEL=$2 DATA=$3 OUT=$4 LIMIT=${5:-100} SAMPLES=${6:-5}
STEPS=${STEPS:-regular share long}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
DTYPE=${DTYPE:-f32}
common=(--model "$MODEL" --data-dir "$DATA" --max-len 4096 --dtype "$DTYPE")
o=$OUT/cuda_$DTYPE
quiet() { grep -v '^\s*$' | grep -v '^|' || true; }
if [[ $STEPS == *regular* ]]; then
  timeout "${T_REGULAR:-300}" "$BIN" --backend cuda eval "${common[@]}" --tasks "${TASKS:-regular}" --limit "$LIMIT" \
    --results "${o}_regular.json" --table "${o}_regular.md" --decisions "${o}_decisions.jsonl" \
    2>&1 | tee "${o}_regular.log" | quiet || true
fi
if [[ $STEPS == *share* ]]; then
  # Alternate so that neither mode profits alone from kernels compiled and tuned by an earlier run.
  for round in 1 2; do
    for share in off on; do
      echo "== round $round, --share-context $share"
      timeout "${T_SHARE:-90}" "$BIN" --backend cuda eval "${common[@]}" --tasks piqa,hellaswag,arc_easy,boolq \
        --limit "$LIMIT" --share-context $share --results "${o}_share_${share}_$round.json" 2>&1 | quiet || true
    done
  done
fi
if [[ $STEPS == *long* ]]; then
  timeout "${T_LONG:-300}" "$BIN" --backend cuda eval "${common[@]}" --tasks long --samples "$SAMPLES" --length 4096 \
    --batch "${BATCH:-16}" --results "${o}_long.json" --table "${o}_long.md" --decisions "${o}_long_predictions.jsonl" \
    2>&1 | tee "${o}_long.log" | quiet || true
fi
