#!/usr/bin/env bash
# Is the mixed static layout's long-context path right on CUDA? The study's interleave:3 row
# (docs/study.md, "Caveat on the interleave row") degenerates at 4K; this scores the base GGUF in
# that layout (3 sliding : 1 full, window 512) on the staged CUDA binary and sets it beside the CPU:
# the mean NLL past position 512 of 4,096 tokens of the haystack essays, in one forward and in
# 256-token cached chunks (the generation path).
#
#   usage: tools/study/gpu_layout_check.sh            (after tools/gpu_stage.sh staged the binary,
#                                                      the GGUF and assets/haystack)
#   CPU reference, measured on 2026-12-07 with the same commands and `--backend cpu` (docs/LOG.md):
#   SSSF 3.79286 for both chunkings; F (the base's own layout) 3.17859 in one forward. CUDA's fp32
#   matmuls run as TF32, so ~1e-3 apart is agreement.
set -euo pipefail
S=/tmp/stage
cat $(ls "$S"/assets/haystack/*.txt | LC_ALL=C sort) | head -c 40000 >/tmp/essay.txt
for pattern in SSSF F; do
  for chunk in 4096 256; do
    echo "== pattern $pattern, chunk $chunk"
    "$S/swiattn" --backend cuda ppl --model "$S/smollm2.gguf" --text /tmp/essay.txt --max-tokens 4096 \
      --attention-pattern "$pattern" --window 512 --chunk "$chunk" --past 512 2>&1 | tail -2
  done
done
