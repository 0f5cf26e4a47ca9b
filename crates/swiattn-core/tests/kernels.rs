//! The fused CubeCL kernels against the reference, forward and input gradients, on fresh random
//! ragged inputs with NaN-poisoned outputs (see `swiattn_core::conformance::fused`). The kernels
//! exist on burn's CubeCL backends only: run with `SWIATTN_TEST_BACKEND=wgpu` (CI, on software
//! Vulkan) or `swiattn selftest --backend cuda`.
#![cfg(feature = "kernels")]

use swiattn_core::conformance::{self, Matmul, Sweep, assert_passed};
use swiattn_core::kernel::runs_on;
use swiattn_core::testing::{test_backend, test_device};

#[test]
fn fused_kernels_match_reference() {
    let device = test_device();
    if !runs_on(&device) {
        eprintln!("skipped: the fused kernels run on CubeCL backends (SWIATTN_TEST_BACKEND=wgpu)");
        return;
    }
    assert_passed(&conformance::fused(&device, &conformance::fused_cases(Sweep::Quick, Matmul::of(test_backend()))));
}
