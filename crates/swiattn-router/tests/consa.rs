//! ConSA: the hard-concrete expected L0 against Monte-Carlo sampling, the augmented Lagrangian
//! driving the expected ratio to the budget on a toy problem, and exact binarization.

use burn::module::Param;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng};
use swiattn_core::attention::Window;
use swiattn_core::model::{Granularity, ModelShape};
use swiattn_core::testing::test_device;
use swiattn_router::Scope;
use swiattn_router::consa::{Binarize, Consa, ConsaConfig};
use swiattn_router::hard_concrete::HardConcrete;
use swiattn_router::{Budget, Policy};

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

#[test]
fn expected_l0_matches_monte_carlo() {
    let device = test_device();
    let hc = HardConcrete::default();
    let log_alphas = [-4.0f32, -2.0, -1.0, 0.0, 0.5, 1.0, 2.0, 4.0];
    let n = 100_000;
    let la = Tensor::<1>::from_floats(log_alphas, &device);
    let closed = host(hc.expected_l0(la.clone()));
    let samples =
        host(hc.sample(la.unsqueeze_dim::<2>(1).expand([log_alphas.len(), n]), &mut StdRng::seed_from_u64(1)));
    for (i, &p) in closed.iter().enumerate() {
        let row = &samples[i * n..(i + 1) * n];
        let mc = row.iter().filter(|&&z| z > 0.0).count() as f64 / n as f64;
        let tol = 4.0 * (p as f64 * (1.0 - p as f64) / n as f64).sqrt() + 1e-3;
        assert!((mc - p as f64).abs() <= tol, "log α {}: Monte Carlo {mc} vs closed form {p}", log_alphas[i]);
        assert!(row.iter().all(|&z| (0.0..=1.0).contains(&z)));
    }
    // The stretch puts real mass on exactly 0 and exactly 1.
    let ones = samples[7 * n..].iter().filter(|&&z| z == 1.0).count();
    let zeros = samples[..n].iter().filter(|&&z| z == 0.0).count();
    assert!(ones > n / 2 && zeros > n / 2, "{ones} ones, {zeros} zeros");
}

fn model(layers: usize, kv_heads: usize) -> ModelShape {
    ModelShape {
        model_type: "llama".into(),
        num_hidden_layers: layers,
        num_attention_heads: 2 * kv_heads,
        num_key_value_heads: kv_heads,
        hidden_size: 64,
    }
}

/// A toy allocation problem: unit `i` gains `gain[i]` from full attention; the task loss is
/// `-mean(gain · z)` with sampled gates. Without the constraint every gate would open; the
/// augmented Lagrangian must hold the expected ratio at the budget and keep the best units.
/// Adam on `log α` (as training uses) at this rate; multipliers ascend at `ETA`.
const LR: f64 = 0.02;
const ETA: f64 = 0.2;

fn toy(granularity: Granularity, layers: usize, scope: Scope, budget: f64, steps: usize) -> (Consa, Vec<f32>) {
    let device: Device = test_device().autodiff();
    let heads = if granularity == Granularity::KvHead { 4 } else { 1 };
    let mut config = ConsaConfig::new(granularity, Budget::new(budget).unwrap());
    config.scope = scope;
    config.multiplier_lr = ETA;
    let mut consa = Consa::new(config, model(layers, heads.max(2)), Window::new(64).unwrap(), &device);
    let units = layers * heads;
    let gains: Vec<f32> = (0..units).map(|i| 0.2 + ((i * 7) % units) as f32 / units as f32).collect();
    let gain = Tensor::<2>::from_data(TensorData::new(gains.clone(), [layers, heads]), &device);
    let mut rng = StdRng::seed_from_u64(5);
    let mut adam = AdamConfig::new().init();
    for _ in 0..steps {
        let la = consa.gates.log_alpha.val();
        let z = consa.config.hard_concrete.sample(la, &mut rng);
        let loss = (z * gain.clone()).mean().neg() + consa.penalty();
        let grads = GradientsParams::from_grads(loss.backward(), &consa.gates);
        consa.gates = adam.step(LR, consa.gates, grads);
        consa.ascend();
    }
    (consa, gains)
}

fn top_units(gains: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..gains.len()).collect();
    order.sort_by(|&a, &b| gains[b].total_cmp(&gains[a]));
    let mut top = order[..k].to_vec();
    top.sort();
    top
}

/// 64 KV-head gates (16 layers × 4): after 2500 Adam steps the expected ratio is within 0.02 of
/// the budget, and top-k binarization keeps the budget exactly and (up to two units at the
/// margin, where the gate noise decides) the highest-gain units.
#[test]
fn augmented_lagrangian_holds_the_expected_ratio_at_the_budget() {
    for budget in [0.25, 0.5] {
        let (consa, gains) = toy(Granularity::KvHead, 16, Scope::Global, budget, 2500);
        let ratio = consa.expected_ratio();
        assert!((ratio - budget).abs() <= 0.02, "budget {budget}: expected ratio {ratio}");
        let k = Budget::new(budget).unwrap().units(64);
        let allocation = consa.binarize(Binarize::TopK).unwrap();
        assert_eq!(allocation.fa_ratio(), k as f64 / 64.0);
        let chosen: Vec<usize> = (0..64).filter(|&u| allocation.full[u / 4][u % 4]).collect();
        let top = top_units(&gains, k);
        let missed = chosen.iter().filter(|u| !top.contains(u)).count();
        assert!(missed <= 2, "chose {chosen:?}, the highest-gain units are {top:?}");
    }
}

/// Layer gates (24 layers): the expected ratio within one layer's share (1/24) of the budget.
#[test]
fn layer_gates_reach_the_budget() {
    let (consa, _) = toy(Granularity::Layer, 24, Scope::Global, 0.25, 2500);
    let ratio = consa.expected_ratio();
    assert!((ratio - 0.25).abs() <= 1.0 / 24.0, "expected ratio {ratio}");
}

#[test]
fn per_layer_constraints_hold_each_layer_at_the_budget() {
    let (consa, _) = toy(Granularity::KvHead, 16, Scope::PerLayer, 0.5, 1500);
    for (l, r) in host(consa.expected_ratios()).iter().enumerate() {
        assert!((*r as f64 - 0.5).abs() <= 0.05, "layer {l}: expected ratio {r}");
    }
    let allocation = consa.binarize(Binarize::TopK).unwrap();
    assert_eq!(allocation.fa_ratio(), 0.5);
    assert_eq!(allocation.granularity, Granularity::KvHead);
}

#[test]
fn binarization_meets_the_budget_exactly_and_round_trips() {
    let device = test_device();
    for (budget, units) in [(0.0, 0), (0.3, 5), (1.0, 16)] {
        let mut consa = Consa::new(
            ConsaConfig::new(Granularity::Layer, Budget::new(budget).unwrap()),
            model(16, 2),
            Window::new(8).unwrap(),
            &device,
        );
        let la: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.3).collect();
        consa.gates.log_alpha = Param::from_tensor(Tensor::from_data(TensorData::new(la, [16, 1]), &device));
        let top = consa.binarize(Binarize::TopK).unwrap();
        assert_eq!(top.full.iter().filter(|r| r[0]).count(), units, "budget {budget}");
        let threshold = consa.binarize(Binarize::Threshold).unwrap();
        assert_eq!(threshold.full.iter().filter(|r| r[0]).count(), 8, "log α > 0 for layers 8..16");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allocation.json");
        top.save(&path).unwrap();
        assert_eq!(swiattn_router::Allocation::load(&path).unwrap(), top);
    }
}

#[test]
fn consa_decisions_are_mix_gates_in_the_unit_interval() {
    let device = test_device();
    let mut consa = Consa::new(
        ConsaConfig::new(Granularity::KvHead, Budget::new(0.5).unwrap()),
        model(3, 2),
        Window::new(8).unwrap(),
        &device,
    );
    let x = Tensor::<3>::zeros([1, 5, 64], &device);
    let decision = consa.decide(1, &x).unwrap().unwrap();
    match decision.surrogate {
        Some(swiattn_core::model::LayerControl::Mix(gate)) => {
            assert_eq!(gate.dims(), [1, 4, 1, 1]);
            assert!(host(gate).iter().all(|g| (0.0..=1.0).contains(g)));
        }
        other => panic!("expected a mix gate, got {other:?}"),
    }
    assert_eq!(decision.hard, swiattn_router::Hard::KvHeads(vec![true, true]));
}
