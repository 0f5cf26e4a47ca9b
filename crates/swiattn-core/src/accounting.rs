//! Exact, window-aware attention cost of an allocation or a measured routing.
//!
//! Per query head, a query at position `i` under full attention reads `i + 1` keys, under a
//! window of `w` keys `min(i + 1, w)` (counted from the window predicate, see
//! [`crate::attention::cost`]). Attention FLOPs are `4 · head_dim` per (query head, key):
//! `2·d` for `q·k` and `2·d` for the weighted sum of values. KV-cache bytes at sequence length `n`
//! are `2 · kv_heads · head_dim · bytes` per kept position: `n` for full and routed layers (any
//! later token may route to full attention), `min(n, w)` for sliding layers (ring buffer),
//! per head group for head-mixed layers.
//!
//! A routed layer's cost depends on its routes: pass the measured per-token routes of one
//! sequence, or an FA ratio, which is taken as every token independently routed to FA with that
//! probability (the expected cost).

use std::collections::BTreeMap;

use crate::attention::cost::total_keys;
use crate::attention::{LayerAttention, RouteMask, Span};
use crate::model::Arch;
use crate::{Error, Result};
use serde::Serialize;

/// How the routed layers were (or are expected to be) routed.
#[derive(Clone, Debug)]
pub enum RoutedLayers {
    /// Every token independently on FA with this probability.
    Ratio(f64),
    /// Every token of routed layer `l` independently on FA with probability `ratios[l]` (the
    /// achieved ratios of an evaluation, [`crate::model::Transformer::take_fa_ratios`]).
    Ratios(BTreeMap<usize, f64>),
    /// Measured routes of one sequence (`batch = 1`) per routed layer.
    Measured(BTreeMap<usize, RouteMask>),
}

/// The cost of one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerCost {
    pub layer: usize,
    /// `full_attention`, `sliding_attention`, `routed_attention` or `head_mixed_attention`.
    pub kind: String,
    /// Fraction of (query head, token) units on full attention.
    pub fa_ratio: f64,
    /// Attention FLOPs of the whole sequence.
    pub attention_flops: f64,
    /// KV-cache bytes at the sequence length.
    pub kv_bytes: f64,
}

/// The cost of a model at one sequence length, and of the same model with every layer full.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Account {
    pub seq_len: usize,
    pub layers: Vec<LayerCost>,
    pub attention_flops: f64,
    pub kv_bytes: f64,
    pub full_attention_flops: f64,
    pub full_kv_bytes: f64,
}

impl Account {
    /// FA ratio over all layers (mean of the per-layer ratios).
    pub fn fa_ratio(&self) -> f64 {
        self.layers.iter().map(|l| l.fa_ratio).sum::<f64>() / self.layers.len().max(1) as f64
    }
}

/// Count the attention FLOPs and KV-cache bytes of `arch` at `seq_len` tokens, with
/// `bytes_per_element` per cached value (2 for bf16).
pub fn account(arch: &Arch, seq_len: usize, bytes_per_element: usize, routed: &RoutedLayers) -> Result<Account> {
    if seq_len == 0 {
        return Err(Error::Invalid("cost accounting needs a sequence length of at least 1 token".into()));
    }
    let n = seq_len;
    let (hq, hkv, d) = (arch.num_heads, arch.num_kv_heads, arch.head_dim);
    let flops_per_key = 4.0 * d as f64;
    let kv_per_position = 2.0 * d as f64 * bytes_per_element as f64;
    let full_keys = total_keys(n, |_| Span::Full) as f64;
    let sliding = |w| total_keys(n, |_| Span::Sliding(w)) as f64;
    let mut layers = Vec::with_capacity(arch.layers.len());
    for (l, attention) in arch.layers.iter().enumerate() {
        // (keys read per query head, FA ratio, KV positions kept summed over KV heads)
        let (keys, fa_ratio, positions) = match attention {
            LayerAttention::Full => (full_keys, 1.0, (n * hkv) as f64),
            LayerAttention::Sliding(w) => (sliding(*w), 0.0, (n.min(w.size()) * hkv) as f64),
            LayerAttention::Routed(w) => {
                let expected = |r: f64| {
                    if !(0.0..=1.0).contains(&r) {
                        return Err(Error::Invalid(format!("an FA ratio must be in [0, 1], got {r}")));
                    }
                    Ok((r * full_keys + (1.0 - r) * sliding(*w), r))
                };
                let (keys, ratio) = match routed {
                    RoutedLayers::Ratio(r) => expected(*r)?,
                    RoutedLayers::Ratios(ratios) => expected(
                        *ratios.get(&l).ok_or_else(|| Error::Invalid(format!("no FA ratio for routed layer {l}")))?,
                    )?,
                    RoutedLayers::Measured(routes) => {
                        let route = routes
                            .get(&l)
                            .ok_or_else(|| Error::Invalid(format!("no measured route for routed layer {l}")))?;
                        route.check(1, n)?;
                        let keys = total_keys(n, |t| if route.fa[t] { Span::Full } else { Span::Sliding(*w) });
                        (keys as f64, route.fa_ratio())
                    }
                };
                (keys, ratio, (n * hkv) as f64)
            }
            LayerAttention::HeadMixed { window, full_kv_heads } => {
                let f = full_kv_heads.iter().filter(|&&h| h).count();
                let keys = (f as f64 * full_keys + (hkv - f) as f64 * sliding(*window)) / hkv as f64;
                (keys, f as f64 / hkv as f64, (f * n + (hkv - f) * n.min(window.size())) as f64)
            }
        };
        layers.push(LayerCost {
            layer: l,
            kind: attention.type_name().to_string(),
            fa_ratio,
            attention_flops: keys * (hq as f64) * flops_per_key,
            kv_bytes: positions * kv_per_position,
        });
    }
    let count = arch.layers.len() as f64;
    Ok(Account {
        seq_len: n,
        attention_flops: layers.iter().map(|l| l.attention_flops).sum(),
        kv_bytes: layers.iter().map(|l| l.kv_bytes).sum(),
        full_attention_flops: count * full_keys * hq as f64 * flops_per_key,
        full_kv_bytes: count * (n * hkv) as f64 * kv_per_position,
        layers,
    })
}
