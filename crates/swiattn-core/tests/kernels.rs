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

/// Every row sees exactly its keys: the log-sum-exp of zero queries is `ln(count)`.
#[test]
fn fused_kernels_see_exactly_the_window() {
    let device = test_device();
    if !runs_on(&device) {
        return;
    }
    let cases = conformance::fused_cases(Sweep::Quick, Matmul::of(test_backend()));
    assert_passed(&conformance::fused_visibility(&device, &cases));
}

/// The row order built on the device from a route tensor equals the one built on the host from the
/// same routes, and so does the attention through it.
#[test]
fn device_route_order_equals_host_order() {
    use burn::tensor::Int;
    use swiattn_core::attention::{Positions, RouteMask, Window};
    use swiattn_core::kernel::{QueryOrder, fused_routed_attention, fused_routed_attention_on_device};
    use swiattn_core::testing::{max_abs_diff, randn, random_bools};

    let device = test_device();
    if !runs_on(&device) {
        return;
    }
    let window = Window::new(17).unwrap();
    for (batch, len, p) in [(3, 111, 0.3), (2, 64, 0.0), (2, 64, 1.0)] {
        let route = RouteMask { batch, len, fa: random_bools(batch * len, p, 11) };
        let host = QueryOrder::routed(&route, window, &device);
        let on_device = QueryOrder::routed_on_device(&route.to_tensor(&device), window);
        let ints = |t: burn::tensor::Tensor<2, Int>| t.into_data().convert::<i64>().try_into_vec::<i64>().unwrap();
        assert_eq!(ints(host.order.clone()), ints(on_device.order.clone()), "order, p={p}");
        let split = |t: burn::tensor::Tensor<1, Int>| t.into_data().convert::<i64>().try_into_vec::<i64>().unwrap();
        assert_eq!(split(host.split.clone()), split(on_device.split.clone()), "split, p={p}");
        let (q, k, v) = (
            randn([batch, 4, len, 16], 1, &device),
            randn([batch, 2, len, 16], 2, &device),
            randn([batch, 2, len, 16], 3, &device),
        );
        let pos = Positions::default();
        let a = fused_routed_attention(q.clone(), k.clone(), v.clone(), &route, window, pos, 0.25);
        let b = fused_routed_attention_on_device(q, k, v, &route.to_tensor(&device), window, pos, 0.25);
        assert_eq!(max_abs_diff(&a, &b), 0.0);
    }
}
