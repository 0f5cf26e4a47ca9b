#!/usr/bin/env bash
# Scoring and generation speed, swiattn beside transformers in one call (docs/LOG.md, issue 15's
# table): `swiattn bench infer` and tools/gpu_eval/torch_infer.py on the SmolLM2-135M shape with
# random weights, bf16. swiattn runs every row in one process (one start-up, one autotune).
#
#   usage: tools/gpu_eval/infer.sh BIN OUT ["RUNS"] ["PATTERNS"]
#   RUNS: swiattn's --run specs, MODE:BATCHxSEQ (default below); PATTERNS: its --pattern list.
#   $T (default 300 s) limits each process; what it printed before is kept in OUT.
set -uo pipefail
BIN=$1 OUT=$2
RUNS=${3:-score:8x4096,generate:16x4096,generate:1x4096,generate:1x32768}
PATTERNS=${4:-F,SSSSSF}
T=${T:-300} NEW=${NEW:-32}
CFG=configs/smollm2-135m.json
for run in ${RUNS//,/ }; do
  mode=${run%%:*} shape=${run#*:}
  echo "== torch $run"
  timeout "$T" python3 tools/gpu_eval/torch_infer.py --config $CFG --json "$OUT/infer.jsonl" --modes "$mode" \
    --batch "${shape%x*}" --seq "${shape#*x}" --new-tokens "$NEW" --repeats "${REPEATS:-3}" 2>&1 | tail -n 5
done
echo "== swiattn $RUNS ($PATTERNS)"
timeout "$T" "$BIN" --backend cuda bench infer --config $CFG --json "$OUT/infer.jsonl" --run "$RUNS" \
  --pattern "$PATTERNS" --new-tokens "$NEW" --repeats "${REPEATS:-3}" 2>&1 | tail -n 30
