//! SwiAttn routers: straight-through gradients, the adaptive regularizer tracking FA targets on a
//! toy problem, and routing a real (small, random) model end to end.

use std::collections::BTreeMap;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use swiattn_core::model::{LayerControl, ModelConfig, Transformer};
use swiattn_core::testing::{randn, test_device};
use swiattn_router::regularizer::{Coefficient, EfficiencyRegularizer};
use swiattn_router::router::{Estimator, GradientPath, RouterConfig, Routers, SwiAttn, TemperatureSchedule};
use swiattn_router::{Budget, Decision, Policy, PolicyController, Scope};

const HIDDEN: usize = 8;
/// Adam learning rate of the routers in the toy problems.
const ROUTER_LR: f64 = 0.05;

fn gate_of(decision: &Decision) -> Tensor<2> {
    match decision.surrogate.clone() {
        // The gate of the two-branch mix it stands for: h + (p − sg(p)).
        Some(LayerControl::RouteMix { route, delta }) => (route.sign(&delta.device()) + 1.0) / 2.0 + delta,
        other => panic!("expected a mix surrogate, got {other:?}"),
    }
}

/// The toy: token `t` gains `u_t = 1 + x_t[0]` from full attention (task loss `-mean(g · u)`),
/// so without a budget the router sends almost everything to FA. Returns the measured FA ratio
/// averaged over the last 100 steps, and the mean utility of FA and of SWA tokens then.
fn track(target: f64, coefficient: Coefficient, estimator: Estimator, steps: usize) -> (f64, f64, f64) {
    let device: Device = test_device().autodiff();
    let config = RouterConfig { estimator, ..RouterConfig::default() };
    let mut policy = SwiAttn::new(Routers::new(vec![0], HIDDEN, &config, &device), config);
    let mut regularizer = EfficiencyRegularizer::new(Budget::new(target).unwrap(), coefficient, Scope::Global);
    let mut adam = AdamConfig::new().init();
    let (mut ratios, mut fa_utility, mut swa_utility) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..steps {
        let x = randn([8, 64, HIDDEN], 1000 + step as u64, &device);
        let utility = x.clone().slice([0..8, 0..64, 0..1]).squeeze_dim::<2>(2).add_scalar(1.0);
        let decision = policy.decide(0, &x).unwrap().unwrap();
        let decisions = BTreeMap::from([(0, decision)]);
        let loss = (gate_of(&decisions[&0]) * utility.clone()).mean().neg() + regularizer.penalty(&decisions).unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &policy.routers);
        policy.routers = adam.step(ROUTER_LR, policy.routers, grads);
        regularizer.update(&swiattn_router::regularizer::measured(&decisions));
        policy.step += 1;
        if step >= steps - 100 {
            let hard = match &decisions[&0].hard {
                swiattn_router::Hard::Tokens(route) => route.host().unwrap(),
                _ => unreachable!(),
            };
            ratios.push(hard.fa_ratio());
            let u: Vec<f32> = utility.into_data().try_into_vec().unwrap();
            for (&fa, &u) in hard.fa.iter().zip(&u) {
                if fa { fa_utility.push(u as f64) } else { swa_utility.push(u as f64) }
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean(&ratios), mean(&fa_utility), mean(&swa_utility))
}

/// Dual ascent (η = 0.02) and a PI controller (k_p = 1, k_i = 0.02), routers trained by Adam at
/// 0.05: after 1000 steps the measured FA ratio (mean of the last 100 steps) is within 0.02 of
/// each target, and the tokens that gain most from FA are the ones routed to it.
#[test]
fn adaptive_regularizer_tracks_fa_targets() {
    for coefficient in [Coefficient::DualAscent { lr: 0.02 }, Coefficient::Pi { kp: 1.0, ki: 0.02 }] {
        for target in [0.1, 0.25, 0.5] {
            let (ratio, fa_u, swa_u) = track(target, coefficient, Estimator::Threshold, 1000);
            assert!((ratio - target).abs() <= 0.02, "{coefficient:?} target {target}: measured {ratio}");
            assert!(fa_u > swa_u + 0.5, "{coefficient:?} target {target}: FA tokens' utility {fa_u} vs SWA {swa_u}");
        }
    }
}

#[test]
fn gumbel_routers_track_the_target_too() {
    let schedule = TemperatureSchedule { start: 1.0, end: 0.3, steps: 600 };
    let (ratio, _, _) = track(0.25, Coefficient::DualAscent { lr: 0.02 }, Estimator::Gumbel { schedule }, 1000);
    assert!((ratio - 0.25).abs() <= 0.02, "measured {ratio}");
}

/// A fixed coefficient is not a constraint: with the same task pressure the ratio lands where
/// task and penalty balance, not at the target (the ablation the adaptive variant is compared to).
#[test]
fn fixed_coefficient_does_not_track() {
    let (ratio, _, _) = track(0.1, Coefficient::Fixed { mu: 0.1 }, Estimator::Threshold, 1000);
    assert!(ratio > 0.3, "a weak fixed penalty leaves the ratio at {ratio}");
}

/// The straight-through gate is hard in value (exactly 0 or 1) and its gradient pushes the router
/// towards FA when FA lowers the loss.
#[test]
fn straight_through_gradients_point_the_right_way() {
    let device: Device = test_device().autodiff();
    let config = RouterConfig { init_bias: 0.0, ..RouterConfig::default() };
    let mut policy = SwiAttn::new(Routers::new(vec![3], HIDDEN, &config, &device), config);
    let x = randn([2, 16, HIDDEN], 7, &device);
    let decision = policy.decide(3, &x).unwrap().unwrap();
    assert!(policy.decide(2, &x).unwrap().is_none(), "layers without a router are not governed");
    let g = gate_of(&decision);
    let values: Vec<f32> = g.clone().inner().into_data().try_into_vec().unwrap();
    assert!(values.iter().all(|&v| v == 0.0 || v == 1.0), "hard in value: {values:?}");
    let grads = g.mean().neg().backward(); // FA always helps
    let bias = policy.routers.routers[0].output.bias.as_ref().unwrap().val();
    let d: f32 = bias.grad(&grads).unwrap().into_scalar();
    assert!(d < 0.0, "descending the loss raises the FA logit (d loss / d bias = {d})");
}

fn model(device: &Device) -> Transformer {
    let config = ModelConfig::from_json_str(
        &format!(
            r#"{{"model_type": "llama", "vocab_size": 40, "hidden_size": {HIDDEN}, "intermediate_size": 16,
                "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
                "sliding_window": 3, "attention_pattern": "RR"}}"#
        ),
        "test",
    )
    .unwrap();
    Transformer::new(config, device).unwrap()
}

/// Every gradient path trains the routers of a real model: every router gets a gradient, and the
/// regularizer sees both layers.
#[test]
fn routers_train_inside_a_model_with_both_gradient_paths() {
    let device: Device = test_device().autodiff();
    let model = model(&device);
    let ids: Vec<i64> = (0..2 * 12).map(|i| (i * 7 % 40) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
    for gradient in [GradientPath::Mix, GradientPath::MixDense, GradientPath::Scaled] {
        let config = RouterConfig { gradient, init_bias: 0.0, ..RouterConfig::default() };
        let mut policy = SwiAttn::new(Routers::new(vec![0, 1], HIDDEN, &config, &device), config);
        let mut controller = PolicyController::new(&mut policy, 2, true);
        let hidden = model.hidden_states(tokens.clone(), &mut controller, None).unwrap();
        let decisions = std::mem::take(&mut controller.decisions);
        assert_eq!(decisions.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        let regularizer = EfficiencyRegularizer::new(
            Budget::new(0.25).unwrap(),
            Coefficient::DualAscent { lr: 0.1 },
            Scope::PerLayer,
        );
        let loss = model.logits(hidden).square().mean() + regularizer.penalty(&decisions).unwrap();
        let grads = loss.backward();
        for (i, router) in policy.routers.routers.iter().enumerate() {
            let g: Vec<f32> = router.output.weight.val().grad(&grads).unwrap().into_data().try_into_vec().unwrap();
            assert!(g.iter().any(|&v| v != 0.0), "{gradient:?}: router {i} got no gradient");
        }
    }
}

/// `mix` runs the straight-through estimator of `mix_dense` without its second backward: the same
/// router gradients and the same loss through a real model.
#[test]
fn mix_gives_the_routers_the_gradients_of_its_dense_reference() {
    let device: Device = test_device().autodiff();
    let model = model(&device);
    let ids: Vec<i64> = (0..2 * 12).map(|i| (i * 5 % 40) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
    let run = |gradient| {
        // The same router weights for both paths: drawn (burn draws lazily) right after seeding.
        device.seed(11);
        let config = RouterConfig { gradient, init_bias: 0.0, ..RouterConfig::default() };
        let mut policy = SwiAttn::new(Routers::new(vec![0, 1], HIDDEN, &config, &device), config);
        policy.routers.routers.iter().for_each(|r| drop(r.output.weight.val()));
        let mut controller = PolicyController::new(&mut policy, 2, true);
        let hidden = model.hidden_states(tokens.clone(), &mut controller, None).unwrap();
        let loss = model.logits(hidden).square().mean();
        let grads = loss.clone().backward();
        let router_grads: Vec<Vec<f32>> = policy
            .routers
            .routers
            .iter()
            .map(|r| r.output.weight.val().grad(&grads).unwrap().into_data().try_into_vec().unwrap())
            .collect();
        (loss.into_scalar::<f32>(), router_grads)
    };
    let (loss, grads) = run(GradientPath::Mix);
    let (dense_loss, dense_grads) = run(GradientPath::MixDense);
    assert!((loss - dense_loss).abs() <= 1e-6 * dense_loss.abs().max(1.0), "{loss} vs {dense_loss}");
    for (g, d) in grads.iter().flatten().zip(dense_grads.iter().flatten()) {
        assert!((g - d).abs() <= 1e-5 + 1e-4 * d.abs(), "router gradient {g} vs dense {d}");
    }
    assert!(dense_grads.iter().flatten().any(|&d| d != 0.0), "the routers get a gradient");
}

#[test]
fn warmup_routes_everything_to_full_attention() {
    let device = test_device();
    let config = RouterConfig { warmup_steps: 10, init_bias: -5.0, ..RouterConfig::default() };
    let mut policy = SwiAttn::new(Routers::new(vec![0], HIDDEN, &config, &device), config);
    let x = randn([1, 8, HIDDEN], 1, &device);
    let d = policy.decide(0, &x).unwrap().unwrap();
    assert_eq!(d.hard.fa_ratio(), 1.0);
    assert!(d.surrogate.is_none());
    policy.step = 10;
    assert_eq!(policy.decide(0, &x).unwrap().unwrap().hard.fa_ratio(), 0.0, "bias -5 routes to SWA after warm-up");
}

#[test]
fn a_router_given_the_wrong_width_names_the_layer_and_shape() {
    let device = test_device();
    let config = RouterConfig { mlp_hidden: Some(4), ..RouterConfig::default() };
    let mut policy = SwiAttn::new(Routers::new(vec![5], HIDDEN, &config, &device), config);
    let e = policy.decide(5, &randn([1, 3, HIDDEN + 1], 1, &device)).unwrap_err().to_string();
    assert!(
        e.contains("router input of layer 5")
            && e.contains(&format!("[batch, len, {HIDDEN}]"))
            && e.contains("[1, 3, 9]"),
        "{e}"
    );
}

/// Saved routers reload from their file alone (linear or MLP, as the tensors say) and route at
/// inference exactly as the policy's evaluation decision; a file for another model is refused.
#[test]
fn saved_routers_reload_and_route_like_the_evaluating_policy() {
    use swiattn_core::checkpoint::named_tensors;
    use swiattn_core::checkpoint::safetensors::save;
    use swiattn_core::model::TokenRouter;
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    for mlp_hidden in [None, Some(6)] {
        let schedule = TemperatureSchedule { start: 4.0, end: 0.5, steps: 10 };
        let config = RouterConfig { mlp_hidden, estimator: Estimator::Gumbel { schedule }, ..RouterConfig::default() };
        let routers = swiattn_core::testing::randomize(Routers::new(vec![1, 3], HIDDEN, &config, &device), 4, 0.5);
        let path = dir.path().join("routers.safetensors");
        save(&named_tensors(&routers), &path).unwrap();
        let loaded = Routers::load(&path, vec![1, 3], HIDDEN, &device).unwrap();
        let mut policy = SwiAttn::new(routers, config);
        policy.training = false;
        policy.step = 3;
        let x = randn([2, 50, HIDDEN], 8, &device);
        for layer in [1, 3] {
            let want = match policy.decide(layer, &x).unwrap().unwrap().hard {
                swiattn_router::Hard::Tokens(route) => route.host().unwrap().into_owned(),
                other => panic!("expected token routes, got {other:?}"),
            };
            let got =
                swiattn_core::attention::RouteMask::from_tensor(&loaded.route(layer, &x).unwrap().unwrap()).unwrap();
            assert_eq!(got, want, "layer {layer}, mlp_hidden {mlp_hidden:?}");
            assert!(want.fa_ratio() > 0.0 && want.fa_ratio() < 1.0, "the routes should split: {}", want.fa_ratio());
        }
        assert!(loaded.route(0, &x).unwrap().is_none(), "no router serves layer 0");
        let e = Routers::load(&path, vec![1, 2, 3], HIDDEN, &device).unwrap_err().to_string();
        assert!(e.contains("2 routers for a model with 3 routed layers"), "{e}");
    }
}
