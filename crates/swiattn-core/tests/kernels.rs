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
        // Read back whatever the backend stores bools as.
        assert_eq!(RouteMask::from_tensor(&route.to_tensor(&device)).unwrap(), route, "route read-back");
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

/// A model's routed layers take a router's route still on the device (ordered there, never read
/// back) and give exactly what the same route from the host gives.
#[test]
fn models_take_device_routes() {
    use burn::tensor::{Int, Tensor, TensorData};
    use swiattn_core::attention::RouteMask;
    use swiattn_core::model::{AttentionController, LayerControl, ModelConfig, Route, Transformer};
    use swiattn_core::testing::{max_abs_diff, random_bools, randomize};

    struct Every(LayerControl);
    impl AttentionController for Every {
        fn control(&mut self, _layer: usize, _input: &Tensor<3>) -> swiattn_core::Result<Option<LayerControl>> {
            Ok(Some(self.0.clone()))
        }
    }
    let device = test_device();
    if !runs_on(&device) {
        return;
    }
    // Head dim 16: the fused kernels' smallest.
    let json = r#"{"model_type": "llama", "vocab_size": 50, "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "sliding_window": 7, "attention_pattern": "R"}"#;
    let config = ModelConfig::from_json_str(json, "test").unwrap_or_else(|e| panic!("{e}"));
    let model = randomize(Transformer::new(config, &device).unwrap(), 5, 0.2);
    let (batch, len) = (2, 37);
    let ids: Vec<i64> = (0..batch * len).map(|i| ((i * 13 + 3) % 50) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, len]), &device);
    let route = RouteMask { batch, len, fa: random_bools(batch * len, 0.4, 21) };
    let run = |route: Route| {
        let hidden = model.hidden_states(tokens.clone(), &mut Every(LayerControl::Route(route)), None).unwrap();
        model.logits(hidden)
    };
    let host = run(Route::Host(route.clone()));
    let on_device = run(Route::Device(route.to_tensor(&device)));
    assert_eq!(max_abs_diff(&on_device, &host), 0.0);
}

/// The tile shapes a sweep asks for (`bench attention --forward-tiles MxK --backward-tiles KxQ`)
/// parse when the kernels take them and are refused, naming the text, when not; every default fits.
#[test]
fn tile_shapes_parse_only_what_the_kernels_take() {
    use swiattn_core::kernel::{BackwardTiles, ForwardTiles};
    assert_eq!("2x64".parse(), Ok(ForwardTiles { m_tiles: 2, keys: 64 }));
    assert_eq!("128×32".parse(), Ok(BackwardTiles { dq_keys: 128, dkdv_queries: 32 }));
    for bad in ["64", "3x64", "2x48", "x", "2x"] {
        assert!(bad.parse::<ForwardTiles>().unwrap_err().contains(&format!("`{bad}`")), "{bad}");
    }
    for bad in ["64", "96x32", "64x128", "ax32", "64x8"] {
        assert!(bad.parse::<BackwardTiles>().unwrap_err().contains(&format!("`{bad}`")), "{bad}");
    }
    for d in [16, 64, 128, 256] {
        let t = BackwardTiles::for_head_dim(d);
        assert!(t.supported() && t.fits(d), "backward default at head dim {d}: {t:?}");
        assert!(ForwardTiles::for_head_dim(d).supported(), "forward default at head dim {d}");
    }
    assert!(!BackwardTiles { dq_keys: 128, dkdv_queries: 32 }.fits(256));
}
