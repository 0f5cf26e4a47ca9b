//! The three-path golden test: masked full forward == chunked prefill == token-by-token decode for
//! small random models of every layer kind and family, past the window and across ring-buffer
//! wrap-around (see `swiattn_core::conformance::models`).

use swiattn_core::conformance::{self, Matmul, Sweep, assert_passed};
use swiattn_core::testing::{on_gpu_backend, test_backend, test_device};

#[test]
fn every_layer_kind_and_family_agrees_across_three_paths() {
    let sweep = if on_gpu_backend() { Sweep::Quick } else { Sweep::Full };
    assert_passed(&conformance::models(&test_device(), sweep, Matmul::of(test_backend())));
}
