#!/usr/bin/env bash
# One cell of the reproduction study on the GPU machine (docs/study.md, "How a cell runs"): links
# what tools/gpu_stage.sh staged to where configs/study.toml looks for it, runs the cell (resuming
# it when an earlier call was cut off while the machine stayed warm), times the result at 32K
# (`bench infer --model`), and packs the cell's directory, without its weights and optimizer
# state, into OUT/CELL.tar.gz.
#
#   usage: tools/study/gpu_cell.sh CELL OUT            e.g. full-w512-s0 "$OUT"
#          tools/study/gpu_cell.sh base OUT            the untouched GGUF through the same [eval] flags
#   BACKEND (default cuda): `cpu` rehearses this script's control flow on a machine without a GPU
#   END (default: 585 s from now): the epoch second by which the script must be done, so that
#   several cells can share one 600 s call (tools/study/gpu_queue.sh)
#   CELL_LIMIT (default END - 65 s from now): seconds before the sweep is asked to stop (SIGTERM:
#   training stops at its next step with a checkpoint, the eval after the task in flight, its
#   results saved per task); 20 s later it is killed, so the cell is packed inside the call
#   whatever it was doing. The next call resumes training or the eval where they stopped.
#   SPEED (default 1): 0 skips the 32K speed step (the queue runs it once the cells are scored)
#
#   staged: /tmp/stage/swiattn (a --features cuda binary), /tmp/stage/smollm2.gguf,
#   /tmp/stage/assets/ (eval/ and haystack/ in the fetch.sh layout), /tmp/stage/study/ (the shards
#   of `swiattn data prepare`, for training cells)
set -euo pipefail
CELL=$1 OUT=$2
S=/tmp/stage
for f in swiattn smollm2.gguf assets/haystack; do
  [[ -e $S/$f ]] || { echo "not staged: $S/$f" >&2; exit 1; }
done
mkdir -p "$S/assets/models" data "$HOME/.cache"
ln -sfn "$S/smollm2.gguf" "$S/assets/models/smollm2-135m-instruct.Q4_1.gguf"
[[ -e $HOME/.cache/swiattn-assets ]] || ln -s "$S/assets" "$HOME/.cache/swiattn-assets"
export SWIATTN_ASSETS=$S/assets CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
B=${BACKEND:-cuda}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
echo "base sha256 $(sha256sum <"$S/smollm2.gguf" | cut -d' ' -f1)"
dir=$S/study-out/cells/$CELL
SECONDS=0
END=${END:-$(($(date +%s) + 585))}
CELL_LIMIT=${CELL_LIMIT:-$((END - $(date +%s) - 65))}
if [[ $CELL == base ]]; then
  # The sweep's [eval] flags, read from the file so that the base row cannot drift from the cells.
  mapfile -t flags < <(python3 -c "import tomllib,sys; [print(a.replace('{cell}', sys.argv[2])) for a in tomllib.load(open(sys.argv[1],'rb'))['eval']['args']]" configs/study.toml "$dir")
  mkdir -p "$dir"
  timeout -k 20 "$CELL_LIMIT" "$S/swiattn" --backend "$B" eval --model "$S/smollm2.gguf" --resume \
    --results "$dir/eval.json" "${flags[@]}" 2>&1 | tee -a "$dir/eval.log" || echo "base eval stopped or failed (rerun to resume)"
else
  [[ -e $S/study/meta.json ]] || { echo "not staged: $S/study/ (the shards)" >&2; exit 1; }
  ln -sfn "$S/study" data/study
  # Stopped by a signal, the sweep saves the cell's checkpoint; the next call resumes it.
  timeout -k 20 "$CELL_LIMIT" "$S/swiattn" --backend "$B" sweep configs/study.toml --out "$S/study-out" \
    --cells "$CELL" 2>&1 | tee -a "$S/$CELL.log" || echo "cell $CELL stopped or failed (rerun to resume)"
  mkdir -p "$dir" && cp "$S/$CELL.log" "$S/study/meta.json" "$dir/"
fi
# Speed (docs/study.md): prefill at 32K and decode at 32K context, batch 1, in the row's own layout.
model=$S/smollm2.gguf
[[ $CELL == base ]] || model=$(ls -d "$dir"/checkpoints/step-* 2>/dev/null | tail -1 || true)
# Only in the time the call has left (15 s kept for packing); its log comes back.
left=$((END - $(date +%s)))
scored() { python3 -c "import json,sys; sys.exit(not json.load(open(sys.argv[1])).get('complete', True))" "$1" 2>/dev/null; }
if [[ ${SPEED:-1} == 1 && -n $model ]] && scored "$dir/eval.json" && [[ ! -e $dir/speed.jsonl && $left -gt 45 ]]; then
  timeout -k 5 "$left" "$S/swiattn" --backend "$B" bench infer --model "$model" --run generate:1x32768 --repeats 2 \
    --json "$dir/speed.jsonl" >"$dir/speed.log" 2>&1 || echo "speed: failed or cut after $left s (see speed.log)"
  tail -5 "$dir/speed.log"
fi
echo "$CELL: ${SECONDS} s wall"
# Decisions travel (and are committed) compressed; the eval appends to the plain file on resume.
[[ -f $dir/decisions.jsonl ]] && gzip -9 -kf "$dir/decisions.jsonl"
tar -C "$S/study-out/cells" -czf "$OUT/$CELL.tar.gz" --exclude='*.bpk' --exclude='checkpoints/*/model/model.safetensors' \
  --exclude=decisions.jsonl --exclude=tokenizer.json --exclude=.lock --exclude=model_ids.json "$CELL"
ls -la "$OUT"
