#!/usr/bin/env bash
# Data-parallel scaling on 2 GPUs (burn's Module::fork / GradientsParams::to_device, one thread a
# GPU): the same global batch (BATCH × 2 micro-batches of 1024 tokens) on 1 and on 2 devices, with
# each GPU's memory sampled every second while it runs.
#
#   bash tools/gpu_train/dp.sh .device/swiattn.xz OUT [STEPS] [BATCH] [PATTERNS]
set -uo pipefail
bin_xz=$1
out=$2
steps=${3:-30}
batch=${4:-8}
patterns=${5:-F R}
mkdir -p "$out" runs
[[ -x /tmp/swiattn ]] || {
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/swiattn','wb'))" "$bin_xz"
  chmod +x /tmp/swiattn
}
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$out/dp_gpus.txt"
for pattern in $patterns; do
  for n in 1 2; do
    run=dp_${pattern}_${n}_b$batch
    echo "== $pattern on $n device(s), batch $batch × 2, $steps steps"
    nvidia-smi --query-gpu=index,memory.used --format=csv,noheader -l 1 > "runs/$run.memory" 2>&1 &
    sampler=$!
    /tmp/swiattn --backend cuda train tools/gpu_train/pretrain.toml --run-dir "runs/$run" --steps "$steps" \
      --devices "$n" --batch-size "$batch" --attention-pattern "$pattern" 2>&1 | tail -5 | tee "$out/$run.txt"
    kill $sampler
    python3 - "runs/$run.memory" <<'PY' | tee -a "$out/$run.txt"
import collections, sys
peak = collections.defaultdict(int)
for line in open(sys.argv[1]):
    parts = [p.strip() for p in line.split(",")]
    if len(parts) == 2 and parts[1].endswith("MiB"):
        peak[parts[0]] = max(peak[parts[0]], int(parts[1].split()[0]))
print("peak memory used per GPU (MiB):", dict(peak))
PY
  done
done
python3 - "$steps" "$batch" "$patterns" <<'PY' | tee "$out/dp_scaling.txt"
import json, statistics, sys
steps, batch = sys.argv[1], sys.argv[2]
for pattern in sys.argv[3].split():
    tps = {}
    for n in (1, 2):
        try:
            lines = [json.loads(l) for l in open(f"runs/dp_{pattern}_{n}_b{batch}/metrics.jsonl") if '"tokens_per_s"' in l]
            tps[n] = statistics.median(l["tokens_per_s"] for l in lines[len(lines) // 2:])
        except (OSError, statistics.StatisticsError):
            tps[n] = float("nan")
    print(f"{pattern}, batch {batch}x2: 1 GPU {tps[1]:.0f} tok/s, 2 GPUs {tps[2]:.0f} tok/s, speed-up "
          f"{tps[2] / tps[1]:.2f}x, efficiency {tps[2] / (2 * tps[1]):.2f} (median of the last half of {steps} steps)")
PY
tar czf "$out/dp_runs.tar.gz" --exclude checkpoints runs/dp_*
