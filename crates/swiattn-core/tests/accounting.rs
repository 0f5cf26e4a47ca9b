//! Cost accounting against brute-force counting over the window predicate.

use std::collections::BTreeMap;

use swiattn_core::accounting::{RoutedLayers, account};
use swiattn_core::attention::{RouteMask, Window, visible};
use swiattn_core::model::{LayerAttention, ModelConfig};
use swiattn_core::testing::random_bools;

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
    let got = account(&arch, N, 2, &RoutedLayers::Measured(routes)).unwrap();
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
    let at = |r: f64| account(&arch, 4096, 2, &RoutedLayers::Ratio(r)).unwrap().layers[2].attention_flops;
    let (sliding, full) = (at(0.0), at(1.0));
    assert_eq!(at(0.25), 0.75 * sliding + 0.25 * full);
    assert_eq!(full, account(&arch, 4096, 2, &RoutedLayers::Ratio(0.0)).unwrap().layers[0].attention_flops);
    let e = account(&arch, 10, 2, &RoutedLayers::Ratio(1.5)).unwrap_err().to_string();
    assert!(e.contains("[0, 1]"), "{e}");
    let e = account(&arch, 10, 2, &RoutedLayers::Measured(BTreeMap::new())).unwrap_err().to_string();
    assert!(e.contains("routed layer 2"), "{e}");
}

#[test]
fn an_empty_sequence_is_an_error_not_nan() {
    let e = account(&arch(), 0, 2, &RoutedLayers::Ratio(0.5)).unwrap_err().to_string();
    assert!(e.contains("sequence length"), "{e}");
}
