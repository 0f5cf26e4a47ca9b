//! Cost accounting against brute-force counting over the window predicate, and DuoAttention head
//! gates trained on a toy problem and binarized to a budget.

use std::collections::BTreeMap;

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use swiattn_core::attention::{RouteMask, Window, visible};
use swiattn_core::model::{LayerAttention, ModelConfig, ModelShape};
use swiattn_core::testing::{random_bools, test_device};
use swiattn_router::accounting::{Routing, account};
use swiattn_router::duo::DuoGates;
use swiattn_router::{Budget, Policy};

const N: usize = 37;
const W: usize = 5;

fn arch() -> swiattn_core::model::Arch {
    let json = format!(
        r#"{{"model_type": "llama", "vocab_size": 10, "hidden_size": 32, "intermediate_size": 8,
            "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 3, "head_dim": 8,
            "sliding_window": {W}, "attention_pattern": "FSRH",
            "kv_head_types": {{"3": ["full_attention", "sliding_attention", "sliding_attention"]}}}}"#
    );
    ModelConfig::from_json_str(&json, "test").unwrap().resolve("test").unwrap()
}

/// The window of query head `h` at position `i` in layer `l`, straight from the layer kinds.
fn window_of(attention: &LayerAttention, route: &[bool], h: usize, group: usize, i: usize) -> Option<Window> {
    match attention {
        LayerAttention::Full => None,
        LayerAttention::Sliding(w) => Some(*w),
        LayerAttention::Routed(w) => (!route[i]).then_some(*w),
        LayerAttention::HeadMixed { window, full_kv_heads } => (!full_kv_heads[h / group]).then_some(*window),
    }
}

#[test]
fn accounting_matches_brute_force_counting() {
    let arch = arch();
    let route = random_bools(N, 0.3, 4);
    let routes = BTreeMap::from([(2, RouteMask { batch: 1, len: N, fa: route.clone() })]);
    let got = account(&arch, N, 2, &Routing::Measured(routes)).unwrap();
    let (hq, hkv, d) = (arch.num_heads, arch.num_kv_heads, arch.head_dim);
    let group = hq / hkv;
    for (l, attention) in arch.layers.iter().enumerate() {
        let mut pairs = 0u64;
        let mut fa_units = 0u64;
        for h in 0..hq {
            for i in 0..N {
                let w = window_of(attention, &route, h, group, i);
                fa_units += u64::from(w.is_none());
                pairs += (0..N).filter(|&j| visible(i, j, w)).count() as u64;
            }
        }
        // KV positions: what the last query of each KV head's group still sees (for routed
        // layers every position, since a later token may route to full attention).
        let kept: usize = (0..hkv)
            .map(|k| match attention {
                LayerAttention::Routed(_) => N,
                _ => (0..N)
                    .filter(|&j| visible(N - 1, j, window_of(attention, &vec![true; N], k * group, group, N - 1)))
                    .count(),
            })
            .sum();
        let c = &got.layers[l];
        assert_eq!(c.attention_flops, pairs as f64 * 4.0 * d as f64, "layer {l} FLOPs");
        assert_eq!(c.kv_bytes, (kept * 2 * d * 2) as f64, "layer {l} KV bytes");
        assert_eq!(c.fa_ratio, fa_units as f64 / (hq * N) as f64, "layer {l} FA ratio");
    }
    let full_pairs = (N * (N + 1) / 2 * hq * 4) as f64;
    assert_eq!(got.full_attention_flops, full_pairs * 4.0 * d as f64);
}

#[test]
fn an_expected_ratio_interpolates_between_full_and_sliding() {
    let arch = arch();
    let at = |r: f64| account(&arch, 4096, 2, &Routing::Ratio(r)).unwrap().layers[2].attention_flops;
    let (sliding, full) = (at(0.0), at(1.0));
    assert_eq!(at(0.25), 0.75 * sliding + 0.25 * full);
    assert_eq!(full, account(&arch, 4096, 2, &Routing::Ratio(0.0)).unwrap().layers[0].attention_flops);
    let e = account(&arch, 10, 2, &Routing::Ratio(1.5)).unwrap_err().to_string();
    assert!(e.contains("[0, 1]"), "{e}");
    let e = account(&arch, 10, 2, &Routing::Measured(BTreeMap::new())).unwrap_err().to_string();
    assert!(e.contains("routed layer 2"), "{e}");
}

fn shape(layers: usize, heads: usize) -> ModelShape {
    ModelShape {
        model_type: "llama".into(),
        num_hidden_layers: layers,
        num_attention_heads: 2 * heads,
        num_key_value_heads: heads,
        hidden_size: 16,
    }
}

/// Heads gain `u_h` from full attention; the L1 penalty λ = 0.6 closes the gates of heads with
/// `u_h < λ` and keeps the others open; binarizing at a budget keeps exactly the top heads.
#[test]
fn duo_gates_close_heads_that_do_not_pay_for_full_attention() {
    let device: Device = test_device().autodiff();
    let (layers, heads) = (4, 4);
    let mut gates = DuoGates::new(shape(layers, heads), Window::new(8).unwrap(), 1.0, &device);
    let utility: Vec<f32> = (0..16).map(|i| ((i * 5) % 16) as f32 / 15.0 + 0.1).collect();
    let u = Tensor::<2>::from_data(TensorData::new(utility.clone(), [layers, heads]), &device);
    let mut sgd = SgdConfig::new().init();
    for _ in 0..300 {
        let loss = (gates.alpha.val() * u.clone()).mean().neg() + gates.l1_penalty(0.6);
        let grads = GradientsParams::from_grads(loss.backward(), &gates);
        gates = sgd.step(2.0, gates, grads).project();
    }
    let alpha: Vec<f32> = gates.alpha.val().inner().into_data().try_into_vec().unwrap();
    for (i, (&a, &u)) in alpha.iter().zip(&utility).enumerate() {
        let want = if u > 0.6 { 1.0 } else { 0.0 };
        assert_eq!(a, want, "head {i} (utility {u}): gate {a}");
    }
    // Binarizing at a quarter keeps exactly 4 heads, all among the open gates.
    let allocation = gates.binarize(Budget::new(0.25).unwrap()).unwrap();
    assert_eq!(allocation.fa_ratio(), 0.25);
    for i in (0..16).filter(|&i| allocation.full[i / heads][i % heads]) {
        assert_eq!(alpha[i], 1.0, "head {i} was kept with a closed gate");
    }
    let decision = gates.decide(1, &Tensor::<3>::zeros([1, 2, 16], &device)).unwrap().unwrap();
    assert_eq!(decision.hard.fa_ratio(), alpha[4..8].iter().filter(|&&a| a > 0.5).count() as f64 / 4.0);
}
