#!/usr/bin/env bash
# Run the CUDA conformance checks and the demo timings on a GPU machine that has no Rust
# toolchain. Build here first (see README, CUDA section), then carry the compressed binary:
#
#   cargo build --release --no-default-features --features cuda
#   mkdir -p .device && strip -o .device/swiattn $CARGO_TARGET_DIR/release/swiattn && xz -T2 -6 -f .device/swiattn
#   (on the GPU machine, from the repository root) bash tools/gpu_selftest.sh .device/swiattn.xz OUTDIR
set -uo pipefail
bin_xz=$1
out=${2:-.}
mkdir -p "$out"
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/swiattn','wb'))" "$bin_xz"
chmod +x /tmp/swiattn
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
/tmp/swiattn --version | tee -a "$out/gpu.txt"
echo "== selftest (full sweep, fp32 + f16 + bf16)"
/usr/bin/time -v /tmp/swiattn --backend cuda selftest --dtypes f16,bf16 2>&1 | tee "$out/selftest.txt"
echo "== demo"
/tmp/swiattn --backend cuda demo 2>&1 | tee "$out/demo.txt"
/tmp/swiattn --backend cuda demo --bench-len 8192 --bench-window 1024 2>&1 | tail -8 | tee "$out/demo_8k.txt"
