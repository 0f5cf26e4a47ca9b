#!/usr/bin/env bash
# The test suite: every crate on the CPU (flex) backend, then the attention and golden-model
# tests again on wgpu. Without a GPU, wgpu runs on Mesa's software Vulkan (lavapipe), which this
# script installs when it is missing and apt-get is available.
#
#   ./scripts/test.sh            # everything
#   SWIATTN_SKIP_WGPU=1 ./scripts/test.sh   # CPU only
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/swiattn-target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

echo "== cpu: cargo test --workspace"
cargo test --workspace

if [[ ${SWIATTN_SKIP_WGPU:-0} == 1 ]]; then
  echo "== wgpu: skipped (SWIATTN_SKIP_WGPU=1)"
  exit 0
fi
# (grep without -q: an early exit would SIGPIPE ldconfig and fail the pipeline under pipefail)
if ! ldconfig -p | grep 'libvulkan.so.1' >/dev/null || ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "== installing Mesa's software Vulkan (mesa-vulkan-drivers libvulkan1)"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    echo "wgpu tests need a Vulkan driver: install mesa-vulkan-drivers and libvulkan1 (or run with SWIATTN_SKIP_WGPU=1)" >&2
    exit 1
  fi
fi
echo "== wgpu: attention paths, golden models, fused kernels, CPU-vs-wgpu eval decisions on $(ls /usr/share/vulkan/icd.d/ | tr '\n' ' ')"
# One invocation, so burn's wgpu stack is built once for both crates. With burn's kernel fusion (the
# fused attention kernels run as a fusion custom op, as in the GPU builds) but not its autotune,
# which would benchmark every new matmul shape: 19 min of tests on lavapipe instead of minutes.
SWIATTN_TEST_BACKEND=wgpu cargo test -p swiattn-core -p swiattn-eval \
  --features swiattn-core/wgpu-unfused,swiattn-core/fusion,swiattn-eval/wgpu \
  --test attention --test golden --test kernels --test backends --test ragged
