#!/usr/bin/env bash
# Training throughput and memory beside PyTorch, in one call (issue 15's table). Build and pack
# here first (docs/training.md, "GPU runs"), then on the GPU machine, from the repository root:
#
#   bash tools/gpu_train/throughput.sh .device/swiattn.xz OUT [STEPS] [ROWS]
#
# SmolLM2-135M's shape; 1k = batch 8 × 2 micro-batches × 1024 tokens, 4k = 2 × 2 × 4096 with
# window 512. Each ROW is one process, run in the order given:
#   torch1k, torch4k        PyTorch (tools/gpu_train/torch_baseline.py), full attention
#   1k:LAYOUTS[:GRADIENTS]  `swiattn bench train` of each layout (F full, S sliding, R SwiAttn at FA
#   4k:LAYOUTS[:GRADIENTS]  0.25), e.g. 4k:F,S,R:mix,mix_dense,scaled (routed layouts once per
#                           gradient path)
#   …@unfused               the same with .device/swiattn-unfused.xz (built with `cuda-unfused`)
#   …@tune-full             the same with CUBECL_AUTOTUNE_LEVEL=full
#   profile-…               the same, 5 steps, with CubeCL's per-kernel profile in OUT/NAME.txt
# Every row records nvidia-smi's peak memory beside its own report. Results: OUT/rows.jsonl (one
# JSON line per row), OUT/peaks.jsonl, OUT/*.log.
set -uo pipefail
bin_xz=$1
out=$2
steps=${3:-20}
rows=${4:-"torch1k 1k:F torch4k 4k:F,S,R:mix,mix_dense,scaled 1k:F@unfused 4k:F,S,R@unfused"}
mkdir -p "$out"
if [[ ! -x /tmp/swiattn ]] || [[ $bin_xz -nt /tmp/swiattn ]]; then
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/swiattn','wb'))" "$bin_xz"
  chmod +x /tmp/swiattn
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
config=configs/smollm2-135m.json

# Run "$@" as row $1 with nvidia-smi sampling the GPU's used memory every 100 ms.
row() {
  local name=$1
  shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$out/mem_$name.txt" &
  local sampler=$!
  local started=$SECONDS
  timeout 300 "$@" >"$out/$name.log" 2>&1
  local rc=$?
  kill $sampler 2>/dev/null
  wait $sampler 2>/dev/null
  local peak
  peak=$(sort -n "$out/mem_$name.txt" | tail -1)
  echo "{\"row\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - started)), \"nvidia_smi_peak_mib\": ${peak:-null}}" | tee -a "$out/peaks.jsonl"
  grep '^{' "$out/$name.log" | sed "s/^{/{\"row\": \"$name\", /" >>"$out/rows.jsonl"
  [[ $rc == 0 ]] || tail -5 "$out/$name.log"
}
torch=(python3 tools/gpu_train/torch_baseline.py --config $config --warmup 3)

for r in $rows; do
  spec=${r#profile-}
  bin=/tmp/swiattn
  envs=()
  n=$steps
  if [[ $spec == *@unfused ]]; then
    bin=/tmp/swiattn-unfused
    [[ -x $bin ]] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
      .device/swiattn-unfused.xz $bin && chmod +x $bin
  fi
  [[ $spec == *@tune-full ]] && envs+=(CUBECL_AUTOTUNE_LEVEL=full)
  [[ $r == profile-* ]] && envs+=(CUBECL_DEBUG_OPTION=profile "CUBECL_DEBUG_LOG=$out/$r.txt") && n=5
  spec=${spec%%@*}
  ours=(env "${envs[@]}" $bin --backend cuda bench train --config $config --steps "$n" --warmup 3)
  IFS=: read -r shape layouts gradients <<<"$spec"
  case $shape in
    torch1k) row "$r" "${torch[@]}" --steps "$n" --batch 8 --seq 1024 --accum 2 ;;
    torch4k) row "$r" "${torch[@]}" --steps "$n" --batch 2 --seq 4096 --accum 2 ;;
    1k) row "$r" "${ours[@]}" --pattern "$layouts" --gradient "${gradients:-mix}" --batch 8 --seq 1024 --accum 2 ;;
    4k) row "$r" "${ours[@]}" --pattern "$layouts" --gradient "${gradients:-mix}" --batch 2 --seq 4096 --accum 2 --window 512 ;;
    *) echo "unknown row $r" ;;
  esac
done
echo "== rows"
cat "$out/rows.jsonl"
