#!/usr/bin/env bash
# The study's speed column for every row's layout in one GPU call (docs/study.md, "Changes",
# 2026-12-07 third session): prefill at 32K and decode at 32K context, batch 1, bf16, in one
# process so that every layout shares its compiled and tuned kernels. Weights are random — a
# static layout's speed does not depend on them — and SwiAttn's routers are set to the FA ratio
# its row achieved (0.18); the rows' checkpoints do not outlive the machine that trained them.
#
#   usage: tools/study/gpu_speed.sh OUT        (after tools/gpu_stage.sh staged the binary)
#   writes OUT/speed.jsonl (one line per layout) and OUT/speed.log
#
# Layouts: F full (base, full), S sliding, SSSF interleave:3 (layers 3, 7, …, 27 full), R SwiAttn.
# ConSA per layer and the per-head rows are added once their allocations exist.
set -euo pipefail
OUT=$1
S=/tmp/stage
"$S/swiattn" --backend cuda bench infer --config configs/smollm2-135m.json --pattern F,S,SSSF,R --fa-ratio 0.18 \
  --window 512 --run generate:1x32768 --new-tokens 128 --repeats 4 --json "$OUT/speed.jsonl" 2>&1 | tee "$OUT/speed.log"
