//! Per-call attention controls (the hook routers use): each control equals the static layer kind
//! it stands for, gradients reach gates and scales, and misuse gives one clear error.

use burn::tensor::{Int, Tensor, TensorData};
use swiattn_core::attention::RouteMask;
use swiattn_core::model::{AttentionController, LayerControl, ModelConfig, Route, Routes, Transformer};
use swiattn_core::testing::{max_abs_diff, random_bools, randomize, test_device};
use swiattn_core::{Error, Result};

const LEN: usize = 19;
const BATCH: usize = 2;

fn model(pattern: &str, device: &burn::tensor::Device) -> Transformer {
    let json = format!(
        r#"{{"model_type": "llama", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
            "sliding_window": 4, "attention_pattern": "{pattern}",
            "kv_head_types": {{"0": ["full_attention", "sliding_attention"], "1": ["full_attention", "sliding_attention"],
                               "2": ["full_attention", "sliding_attention"]}}}}"#
    );
    // Same seed for every pattern: the same weights.
    randomize(Transformer::new(ModelConfig::from_json_str(&json, "test").unwrap(), device).unwrap(), 3, 0.2)
}

fn tokens(device: &burn::tensor::Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..BATCH * LEN).map(|i| ((i * 17 + 5) % 50) as i64).collect();
    Tensor::from_data(TensorData::new(ids, [BATCH, LEN]), device)
}

/// The same control on every layer.
struct Every(LayerControl);

impl AttentionController for Every {
    fn control(&mut self, _layer: usize, _input: &Tensor<3>) -> Result<Option<LayerControl>> {
        Ok(Some(self.0.clone()))
    }
}

fn run(model: &Transformer, controller: &mut dyn AttentionController) -> Result<Tensor<3>> {
    let device = model.model.embed_tokens.weight.val().device();
    model.hidden_states(tokens(&device), controller, None).map(|h| model.logits(h))
}

#[test]
fn mix_gates_select_the_branch_they_stand_for() {
    let device = test_device();
    let routed = model("R", &device);
    let gate = |dims: [usize; 4], values: Vec<f32>| Tensor::<4>::from_data(TensorData::new(values, dims), &device);

    let full = model("F", &device).forward(tokens(&device), &Routes::none()).unwrap();
    let mixed = run(&routed, &mut Every(LayerControl::Mix(gate([1, 1, 1, 1], vec![1.0])))).unwrap();
    assert!(max_abs_diff(&mixed, &full) <= 1e-5, "gate 1 vs full: {}", max_abs_diff(&mixed, &full));

    let sliding = model("S", &device).forward(tokens(&device), &Routes::none()).unwrap();
    let mixed = run(&routed, &mut Every(LayerControl::Mix(gate([1, 1, 1, 1], vec![0.0])))).unwrap();
    assert!(max_abs_diff(&mixed, &sliding) <= 1e-5, "gate 0 vs sliding: {}", max_abs_diff(&mixed, &sliding));

    // Per-head gates: query heads 0-1 read KV head 0 (full), 2-3 KV head 1 (sliding).
    let heads = model("H", &device).forward(tokens(&device), &Routes::none()).unwrap();
    let mixed = run(&routed, &mut Every(LayerControl::Mix(gate([1, 4, 1, 1], vec![1.0, 1.0, 0.0, 0.0])))).unwrap();
    assert!(max_abs_diff(&mixed, &heads) <= 1e-5, "head gates vs head-mixed: {}", max_abs_diff(&mixed, &heads));

    // Per-token hard gates equal the compacted routed path.
    let fa = random_bools(BATCH * LEN, 0.4, 9);
    let route = RouteMask { batch: BATCH, len: LEN, fa: fa.clone() };
    let routed_out = run(&routed, &mut Every(LayerControl::Route(route.clone().into()))).unwrap();
    // The same routes as a device tensor (a router's) route the same tokens.
    let on_device = Route::Device(route.to_tensor(&device));
    let device_out = run(&routed, &mut Every(LayerControl::Route(on_device))).unwrap();
    assert_eq!(max_abs_diff(&device_out, &routed_out), 0.0, "device route vs host route");
    let token_gate = gate([BATCH, 1, LEN, 1], fa.iter().map(|&f| if f { 1.0 } else { 0.0 }).collect());
    let mixed = run(&routed, &mut Every(LayerControl::Mix(token_gate))).unwrap();
    assert!(max_abs_diff(&mixed, &routed_out) <= 1e-5, "token gates vs routed: {}", max_abs_diff(&mixed, &routed_out));

    let ones = Tensor::<2>::ones([BATCH, LEN], &device);
    let scaled = run(&routed, &mut Every(LayerControl::RouteScaled { route: route.into(), scale: ones })).unwrap();
    assert_eq!(max_abs_diff(&scaled, &routed_out), 0.0);
}

/// The loss is differentiable in a layer gate: autodiff agrees with a central finite difference.
#[test]
fn gradients_reach_mix_gates_and_route_scales() {
    let device = test_device().autodiff();
    let routed = model("R", &device);
    let loss = |g: Tensor<4>| {
        let out = run(&routed, &mut Every(LayerControl::Mix(g))).unwrap();
        (out.clone() * out).mean()
    };
    let g = Tensor::<4>::from_data(TensorData::new(vec![0.3f32], [1, 1, 1, 1]), &device).require_grad();
    let grads = loss(g.clone()).backward();
    let analytic: f32 = g.grad(&grads).unwrap().into_scalar();
    let at = |x: f32| loss(Tensor::from_data(TensorData::new(vec![x], [1, 1, 1, 1]), &device)).into_scalar::<f32>();
    let numeric = (at(0.3 + 1e-2) - at(0.3 - 1e-2)) / 2e-2;
    assert!(analytic.abs() > 1e-6, "zero gradient");
    assert!(
        (analytic - numeric).abs() <= 2e-2 * numeric.abs().max(1e-3),
        "autodiff {analytic} vs finite difference {numeric}"
    );

    let route = RouteMask { batch: BATCH, len: LEN, fa: random_bools(BATCH * LEN, 0.5, 1) };
    let scale = Tensor::<2>::ones([BATCH, LEN], &device).require_grad();
    let out =
        run(&routed, &mut Every(LayerControl::RouteScaled { route: route.into(), scale: scale.clone() })).unwrap();
    let grads = (out.clone() * out).mean().backward();
    let g: Vec<f32> = scale.grad(&grads).unwrap().into_data().try_into_vec().unwrap();
    assert!(g.iter().filter(|x| x.abs() > 0.0).count() == BATCH * LEN, "every token's scale gets a gradient");
}

/// `RouteMix` is the two-branch `Mix` of the gate `h + (p − sg(p))` without its second backward:
/// the same output and the same gradients, for the model's weights and for the probabilities.
#[test]
fn route_mix_equals_the_straight_through_mix() {
    let device = test_device().autodiff();
    let fa = random_bools(BATCH * LEN, 0.3, 4);
    let route = RouteMask { batch: BATCH, len: LEN, fa: fa.clone() };
    let h = Tensor::<2>::from_data(
        TensorData::new(fa.iter().map(|&f| f32::from(u8::from(f))).collect(), [BATCH, LEN]),
        &device,
    );
    let probabilities: Vec<f32> = (0..BATCH * LEN).map(|i| 0.1 + 0.8 * ((i * 7 % 11) as f32 / 10.0)).collect();
    // A fixed random projection of the logits, so every output element weighs differently.
    let weights = swiattn_core::testing::randn([BATCH, LEN, 50], 8, &device);
    let run_with = |control: &dyn Fn(Tensor<2>) -> LayerControl, device_route: bool| {
        let model = model("R", &device);
        let p = Tensor::<2>::from_data(TensorData::new(probabilities.clone(), [BATCH, LEN]), &device).require_grad();
        let mut control = control(p.clone());
        if device_route && let LayerControl::RouteMix { delta, .. } = control {
            control = LayerControl::RouteMix { route: Route::Device(route.to_tensor(&device)), delta };
        }
        let out = run(&model, &mut Every(control)).unwrap();
        let grads = (out.clone() * weights.clone()).sum().backward();
        let layer = &model.model.layers[1].self_attn;
        let grad = |w: &burn::module::Param<Tensor<2>>| w.grad(&grads).unwrap();
        let param_grads = vec![grad(&layer.q_proj.weight), grad(&layer.k_proj.weight), grad(&layer.v_proj.weight)];
        (out.inner(), p.grad(&grads).unwrap(), param_grads)
    };
    let mix = |p: Tensor<2>| {
        let g = h.clone() + (p.clone() - p.detach());
        LayerControl::Mix(g.reshape([BATCH, 1, LEN, 1]))
    };
    let route_mix =
        |p: Tensor<2>| LayerControl::RouteMix { route: route.clone().into(), delta: p.clone() - p.detach() };
    let (out_a, dp_a, dw_a) = run_with(&mix, false);
    for device_route in [false, true] {
        let (out_b, dp_b, dw_b) = run_with(&route_mix, device_route);
        assert!(max_abs_diff(&out_a, &out_b) <= 1e-5, "output: {}", max_abs_diff(&out_a, &out_b));
        let scale = dp_a.clone().abs().max().into_scalar::<f32>();
        assert!(scale > 1e-4, "the probabilities get a gradient");
        assert!(max_abs_diff(&dp_a, &dp_b) <= 1e-4 * scale.max(1.0), "dL/dp: {}", max_abs_diff(&dp_a, &dp_b));
        for (a, b) in dw_a.iter().zip(&dw_b) {
            assert!(max_abs_diff(a, b) <= 1e-5, "weight gradient: {}", max_abs_diff(a, b));
        }
    }
}

#[test]
fn misused_controls_give_one_clear_error() {
    let device = test_device();
    let routed = model("R", &device);
    let bad_gate = Tensor::<4>::ones([1, 3, 1, 1], &device);
    let e = run(&routed, &mut Every(LayerControl::Mix(bad_gate))).unwrap_err().to_string();
    assert!(e.contains("layer 0 mix gate") && e.contains("[1, 3, 1, 1]"), "{e}");

    let short = RouteMask::uniform(BATCH, LEN - 1, true);
    let e = run(&routed, &mut Every(LayerControl::Route(short.into()))).unwrap_err().to_string();
    assert!(e.contains("route mask") && e.contains(&format!("[{BATCH}, {LEN}]")), "{e}");

    let e = routed.forward(tokens(&device), &Routes::none()).unwrap_err().to_string();
    assert!(e.contains("layer 0 is routed but no route"), "{e}");

    let sliding = model("S", &device);
    let mut cache = sliding.new_cache();
    let route = LayerControl::Route(RouteMask::uniform(BATCH, LEN, true).into());
    let e: Error = sliding.hidden_states(tokens(&device), &mut Every(route), Some(&mut cache)).unwrap_err();
    assert!(e.to_string().contains("keeps only a window of keys"), "{e}");
}

/// Converting a model's layout keeps its weights: the converted model computes exactly what a
/// model built with that layout and the same weights computes.
#[test]
fn with_attention_converts_the_layout_in_place() {
    let device = test_device();
    let full = model("F", &device);
    let sliding = model("S", &device);
    let converted = full.with_attention(sliding.layer_attention()).unwrap();
    assert_eq!(converted.arch, sliding.arch);
    let a = converted.forward(tokens(&device), &Routes::none()).unwrap();
    let b = sliding.forward(tokens(&device), &Routes::none()).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    let e = model("F", &device).with_attention(&sliding.layer_attention()[..1]).unwrap_err().to_string();
    assert!(e.contains("1 attention kinds for a model of 3 layers"), "{e}");
}
