#!/usr/bin/env bash
# The fused kernels on a GPU machine without a Rust toolchain, in one call: the CUDA conformance
# checks (fused kernels included), `swiattn bench attention`, the PyTorch SDPA / FlexAttention
# baselines on the same GPU joined into one table, and `swiattn compare` (CPU vs CUDA).
#
#   cargo build --release -p swiattn --no-default-features --features cuda,flex
#   mkdir -p .device && strip -o .device/swiattn $CARGO_TARGET_DIR/release/swiattn && xz -T2 -6 -f .device/swiattn
#   (on the GPU machine, from the repository root) bash tools/gpu_kernels/run.sh .device/swiattn.xz OUTDIR
#
# A `--features cuda-cpp` build compiles its kernels with NVRTC at run time, which needs the CUDA
# headers: CUDA_HEADERS=a .tar.xz of a CUDA 13 `include/` (cuda_bf16.h, mma.h, cccl/cuda/barrier;
# from the nvidia-cuda-runtime, -crt and -cccl wheels) unpacks them as CUDA_PATH, and libnvrtc is
# taken from the nvidia-cuda-nvrtc wheel PyTorch brings.
#
# Environment: STEPS (default "selftest bench torch compare"; also "ptx": registers and spills of the
# tensor-core kernels from their PTX, and "profile": ncu on two kernels), BENCH_ARGS (extra bench flags),
# SELFTEST_ARGS (extra selftest flags), T_SELFTEST, T_BENCH, T_TORCH, T_COMPARE (seconds per step).
set -uo pipefail
bin_xz=$1
out=${2:-.}
steps=${STEPS:-selftest bench torch compare}
mkdir -p "$out"
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/swiattn','wb'))" "$bin_xz"
chmod +x /tmp/swiattn
if [[ -n ${CUDA_HEADERS:-} ]]; then
  rm -rf /tmp/cuda && mkdir -p /tmp/cuda && tar xJf "$CUDA_HEADERS" -C /tmp/cuda
  export CUDA_PATH=/tmp/cuda
  nvrtc=$(python3 -c "import glob, site; l = [g for p in site.getsitepackages() for g in glob.glob(p + '/nvidia/cu13/lib')]; print(l[0] if l else '')")
  [[ -n $nvrtc ]] && export LD_LIBRARY_PATH=$nvrtc:${LD_LIBRARY_PATH:-}
  echo "CUDA_PATH=$CUDA_PATH, libnvrtc from ${nvrtc:-the system}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
/tmp/swiattn --version | tee -a "$out/gpu.txt"
export PYTHONUNBUFFERED=1
for step in $steps; do
  case $step in
    selftest)
      echo "== selftest (fused kernels, full sweep; fp32, f16, bf16)"
      # shellcheck disable=SC2086
      timeout "${T_SELFTEST:-200}" /tmp/swiattn --backend cuda selftest --only fused --dtypes f16,bf16 ${SELFTEST_ARGS:-} 2>&1 \
        | tee "$out/selftest.txt" | grep -v "^    " ;;
    bench)
      echo "== swiattn bench attention"
      # shellcheck disable=SC2086
      timeout "${T_BENCH:-240}" /tmp/swiattn --backend cuda bench attention --json "$out/ours.json" ${BENCH_ARGS:-} 2>&1 \
        | tee "$out/bench.txt" ;;
    torch)
      echo "== PyTorch SDPA / FlexAttention on the same configurations"
      timeout "${T_TORCH:-150}" python3 crates/swiattn-bench/python/torch_attention.py --ours "$out/ours.json" \
        --out "$out/torch.json" 2>&1 \
        | tee "$out/torch.txt" ;;
    ptx)
      echo "== ptx: the tensor-core kernels' PTX (CUBECL_CUDA_DUMP_PTX), ptxas -v for sm_90a"
      # CubeCL names each dump after the tail of its kernel id, which all of ours share: keep a
      # copy of every dump under its entry name while the kernels compile one after another.
      rm -rf /tmp/ptx /tmp/ptx_all && mkdir -p /tmp/ptx /tmp/ptx_all
      ( while :; do for f in /tmp/ptx/*.ptx; do
          e=$(grep -o -m1 "\.entry [A-Za-z0-9_]*" "$f" 2>/dev/null | cut -d' ' -f2)
          [[ -n $e ]] && cp "$f" "/tmp/ptx_all/$e.ptx"; done; sleep 0.05; done ) &
      watcher=$!
      CUBECL_CUDA_DUMP_PTX=/tmp/ptx timeout 120 /tmp/swiattn --backend cuda bench attention --lens 1024 \
        --head-dims 64,128 --ratios 0.5 --reps 1 --decode-len 0 > /dev/null 2>&1
      sleep 0.5; kill $watcher
      ptxas=$(command -v ptxas || ls /usr/local/cuda/bin/ptxas 2>/dev/null || true)
      for f in /tmp/ptx_all/*_mma_kernel*.ptx; do
        echo "-- $(basename "$f" .ptx)"
        [[ -n $ptxas ]] && "$ptxas" -arch=sm_90a -v -o /dev/null "$f" 2>&1 | grep -E "registers|spill" | sed 's/^ptxas info *: //'
      done
      tar czf "$out/ptx.tgz" -C /tmp/ptx_all . ;;
    profile)
      echo "== ncu: one launch of each tensor-core kernel (N 8192, d 128, full causal)"
      ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
      if [[ -z $ncu ]]; then echo "no ncu on this machine"; continue; fi
      for kernel in forward_mma dq_mma dkdv_mma; do
        # The first 3 launches of each are the bench's correctness check (T = 1000).
        timeout 150 "$ncu" --clock-control none --kernel-name "regex:$kernel" --launch-skip 3 --launch-count 1 \
          --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
          --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis --section WarpStateStats \
          --section InstructionStats \
          /tmp/swiattn --backend cuda bench attention --lens 8192 --head-dims 128 --ratios 1 --reps 1 \
          --decode-len 0 > "$out/ncu_$kernel.txt" 2>&1
        echo "-- $kernel"
        grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit (Reg|Shared)|Dynamic Shared|Issue Slots Busy|Executed Ipc A|Stall|Bank" \
          "$out/ncu_$kernel.txt" | head -30
      done ;;
    compare)
      echo "== swiattn compare (embedded default model)"
      timeout "${T_COMPARE:-60}" /tmp/swiattn compare --backends cpu,cuda --len 512 2>&1 | tee "$out/compare.txt" ;;
  esac
done
