#!/usr/bin/env bash
# Data-parallel scaling on 2 GPUs (burn's Module::fork / GradientsParams::to_device, one thread a
# GPU): the same global batch (8 × 2 micro-batches of 1024 tokens) on 1 and on 2 devices.
#
#   bash tools/gpu_train/dp.sh .device/swiattn.xz OUT [STEPS]
set -uo pipefail
bin_xz=$1
out=$2
steps=${3:-30}
mkdir -p "$out" runs
[[ -x /tmp/swiattn ]] || {
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/swiattn','wb'))" "$bin_xz"
  chmod +x /tmp/swiattn
}
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$out/dp_gpus.txt"
for pattern in F R; do
  for n in 1 2; do
    echo "== $pattern on $n device(s), $steps steps"
    /tmp/swiattn --backend cuda train tools/gpu_train/pretrain.toml --run-dir "runs/dp_${pattern}_$n" --steps "$steps" \
      --devices "$n" --attention-pattern "$pattern" 2>&1 | tee "$out/dp_${pattern}_$n.txt"
  done
done
python3 - "$steps" <<'PY' | tee "$out/dp_scaling.txt"
import json, statistics, sys
for pattern in "FR":
    tps = {}
    for n in (1, 2):
        lines = [json.loads(l) for l in open(f"runs/dp_{pattern}_{n}/metrics.jsonl") if '"tokens_per_s"' in l]
        tps[n] = statistics.median(l["tokens_per_s"] for l in lines[len(lines) // 2:])
    print(f"{pattern}: 1 GPU {tps[1]:.0f} tok/s, 2 GPUs {tps[2]:.0f} tok/s, speed-up {tps[2] / tps[1]:.2f}x, "
          f"efficiency {tps[2] / (2 * tps[1]):.2f} (median of the second half of {sys.argv[1]} steps)")
PY
tar czf "$out/dp_runs.tar.gz" --exclude checkpoints runs/dp_*
