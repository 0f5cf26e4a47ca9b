#!/usr/bin/env bash
# WebGPU on a real GPU beside CUDA, one binary, one call (docs/backends.md, "WebGPU on a GPU"):
# the conformance checks on wgpu, then the fused attention kernels and a training step timed on
# wgpu and on CUDA with the same shapes.
#
#   cargo build --release -p swiattn --no-default-features --features cuda,wgpu
#   (on the GPU machine, from the repository root, once the Vulkan loaders are unpacked:
#    the device README's headless section)  bash tools/gpu_wgpu/run.sh BIN OUT
#
# WGSL has no bf16: attention is timed in f16 (on wgpu through the portable kernels, no tensor
# cores) at $LENS tokens (default 4096,8192), the training step in $TRAIN_DTYPE (default f32) on
# both. Each step has a time limit ($T_STEP seconds, default 150) so one slow backend cannot take
# the others' time.
set -uo pipefail
BIN=$1 OUT=$2
mkdir -p "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
T=${T_STEP:-150}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
step() { echo "== $1"; shift; SECONDS=0; timeout "$T" "$@" 2>&1 | tail -n 40; echo "   (${SECONDS} s)"; }
step "selftest on wgpu (quick sweep, f16)" "$BIN" --backend wgpu selftest --quick --dtypes f16
for backend in wgpu cuda; do
  step "bench attention on $backend (f16)" "$BIN" --backend "$backend" bench attention --lens "${LENS:-4096,8192}" \
    --head-dims 64,128 --ratios 0,0.25,1 --dtype f16 --reps 3 --decode-len 0 --json "$OUT/attention_$backend.json"
done
for backend in wgpu cuda; do
  step "bench train on $backend (${TRAIN_DTYPE:-f32}, SmolLM2-135M shape, 4 × 1024 tokens)" "$BIN" --backend "$backend" \
    bench train --pattern F,S --batch 4 --accum 1 --seq 1024 --steps 5 --warmup 2 --dtype "${TRAIN_DTYPE:-f32}" \
    --json "$OUT/train_$backend.jsonl"
done
