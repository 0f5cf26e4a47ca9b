//! Every fast attention path against the reference, forward and input gradients, on fresh random
//! ragged inputs (see `swiattn_core::conformance` for the sweep and tolerances). Runs on the
//! backend named by `SWIATTN_TEST_BACKEND` (default cpu); slow backends sweep fewer shapes.

use burn::tensor::DType;
use swiattn_core::attention::{Positions, Span, Visibility, attention_reference};
use swiattn_core::conformance::{self, Matmul, Sweep, assert_passed};
use swiattn_core::testing::{on_gpu_backend, randn, test_backend, test_device};

fn cases() -> Vec<conformance::Case> {
    let sweep = if on_gpu_backend() { Sweep::Quick } else { Sweep::Full };
    conformance::cases(sweep, Matmul::of(test_backend()))
}

#[test]
fn sliding_matches_reference() {
    assert_passed(&conformance::sliding(&test_device(), &cases()));
}

#[test]
fn causal_matches_reference() {
    assert_passed(&conformance::causal(&test_device(), &cases()));
}

#[test]
fn routed_matches_reference() {
    assert_passed(&conformance::routed(&test_device(), &cases()));
}

#[test]
fn head_mixed_matches_reference() {
    assert_passed(&conformance::head_mixed(&test_device(), &cases()));
}

/// fp16 and bf16 inputs, against the reference of the same rounded inputs, with tolerances scaled
/// to each dtype's roundoff (`conformance::tolerances`). WGSL has no bf16 and fp16 depends on the
/// adapter, so this runs on the CPU backend (and in `swiattn selftest` on CUDA).
#[test]
fn low_precision_paths_match_reference() {
    if on_gpu_backend() {
        return;
    }
    for dtype in [DType::F16, DType::BF16] {
        assert_passed(&conformance::attention_paths(
            &test_device(),
            &conformance::low_precision_cases(dtype, Matmul::of(test_backend())),
        ));
    }
}

#[test]
fn uniform_routes_equal_full_and_sliding() {
    assert_passed(&conformance::uniform_routes(&test_device()));
}

/// A query row that sees no key (possible with a hand-made visibility) gives zeros and finite
/// gradients, not NaN.
#[test]
fn reference_is_nan_safe_for_empty_rows() {
    let device = test_device().autodiff();
    let leaf = |seed| randn([1, 2, 3, 4], seed, &device).require_grad();
    let (q, k, v) = (leaf(1), leaf(2), leaf(3));
    let mut vis = Visibility::span(Span::Full, Positions::default(), 3, 3);
    vis.seen[0] = false; // row 0 saw only key 0
    let out = attention_reference(q.clone(), k.clone(), v.clone(), &vis, 0.5);
    let row0: Vec<f32> = out.clone().slice([0..1, 0..2, 0..1, 0..4]).into_data().try_into_vec().unwrap();
    assert!(row0.iter().all(|&x| x == 0.0), "{row0:?}");
    let grads = out.sum().backward();
    for x in [&q, &k, &v] {
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_into_vec().unwrap();
        assert!(g.iter().all(|x| x.is_finite()));
    }
}
