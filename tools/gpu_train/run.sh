#!/usr/bin/env bash
# Continual pretraining on one GPU, timed beside PyTorch (issue: swiattn-train, GPU part).
# Build and pack here first (see docs/training.md, "GPU runs"), then on the GPU machine, from the
# repository root:
#
#   bash tools/gpu_train/run.sh .device/swiattn.xz OUT [PRETRAIN_S] [CONVERT_S]
#
# 1. PyTorch (transformers, sdpa, bf16 autocast) trains the same shape, batch and length: tokens/s.
# 2. swiattn: a 12-step smoke run measures throughput; SmolLM2-135M's shape is pretrained from
#    scratch with full attention for PRETRAIN_S seconds; the checkpoint is continued for CONVERT_S
#    seconds each as full (F), sliding-only (S) and SwiAttn (R, target FA 0.25).
# Run directories (without checkpoints) come back as OUT/runs.tar.gz, refreshed after each stage.
set -uo pipefail
bin_xz=$1
out=$2
pretrain_s=${3:-150}
convert_s=${4:-75}
mkdir -p "$out" runs
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/swiattn','wb'))" "$bin_xz"
chmod +x /tmp/swiattn
sw() { /tmp/swiattn --backend cuda "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

echo "== PyTorch baseline"
python3 tools/gpu_train/torch_baseline.py --config configs/smollm2-135m.json --batch 8 --seq 1024 --accum 2 \
  --steps 10 --warmup 3 2>&1 | tail -1 | tee "$out/torch.json"

# Steps that fit SECONDS at the throughput of the smoke run's last logged steps.
steps_for() {
  python3 - "$1" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open("runs/smoke/metrics.jsonl") if '"tokens_per_s"' in l]
tps = statistics.median(l["tokens_per_s"] for l in lines[-3:])
print(max(10, int(float(sys.argv[1]) * tps / (8 * 2 * 1024))))
PY
}

echo "== smoke (12 steps)"
sw train tools/gpu_train/pretrain.toml --run-dir runs/smoke --steps 12 2>&1 | tail -4 | tee "$out/smoke.txt" || exit 1
pack() { tar czf "$out/runs.tar.gz" --exclude checkpoints runs; }
pack
steps=$(steps_for "$pretrain_s")
echo "== pretrain: $steps steps"
sw train tools/gpu_train/pretrain.toml --run-dir runs/pretrain --steps "$steps" 2>&1 | tail -4 | tee "$out/pretrain.txt"
pack
from=$(ls -d runs/pretrain/checkpoints/step-* | tail -1)/model
for pattern in R F S; do
  steps=$(steps_for "$convert_s")
  sed -e "s#FROM#$from#" -e "s#PATTERN#$pattern#" tools/gpu_train/convert.toml > "runs/convert_$pattern.toml"
  echo "== continue as $pattern: $steps steps"
  sw train "runs/convert_$pattern.toml" --run-dir "runs/convert_$pattern" --steps "$steps" 2>&1 | tail -4 | tee "$out/convert_$pattern.txt"
  pack
done
