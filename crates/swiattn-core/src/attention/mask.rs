//! Materialized visibility grids built from the window predicate, for the reference path and for
//! tests. Fast paths never build an `n × n` grid; they build small per-block masks from the same
//! predicate.

use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::window::{Span, Window, visible};

/// Absolute positions of the first query and the first key of an attention call.
///
/// Query `t` (0-based row) sits at position `q_start + t`, key `j` at `k_start + j`. A plain
/// forward pass uses `(0, 0)`; a chunk of new tokens after `p` cached ones uses `(p, 0)` against a
/// full cache, or `(p, p - m)` against the `m` most recent keys of a ring buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Positions {
    pub q_start: usize,
    pub k_start: usize,
}

impl Positions {
    pub fn new(q_start: usize, k_start: usize) -> Self {
        Self { q_start, k_start }
    }
}

/// Which (query, key) pairs are visible, as a `[batch, kv_heads, q_len, k_len]` grid where
/// `batch` and `kv_heads` may be 1 to broadcast. `true` = visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visibility {
    pub dims: [usize; 4],
    pub seen: Vec<bool>,
}

impl Visibility {
    /// Every query under one span: `[1, 1, q_len, k_len]`.
    pub fn span(span: Span, pos: Positions, q_len: usize, k_len: usize) -> Self {
        Self::build([1, 1, q_len, k_len], |_, _, t, j| span.sees(pos.q_start + t, pos.k_start + j))
    }

    /// Per-token routes: row `t` of batch `b` is full attention if `route_fa[b * q_len + t]`,
    /// else sliding in `window`. `[batch, 1, q_len, k_len]`.
    pub fn routed(route_fa: &[bool], batch: usize, window: Window, pos: Positions, q_len: usize, k_len: usize) -> Self {
        assert_eq!(route_fa.len(), batch * q_len, "route must be [batch, q_len]");
        Self::build([batch, 1, q_len, k_len], |b, _, t, j| {
            let w = (!route_fa[b * q_len + t]).then_some(window);
            visible(pos.q_start + t, pos.k_start + j, w)
        })
    }

    /// Per-KV-head spans: head `h` is full attention if `full_kv_heads[h]`, else sliding in
    /// `window`. `[1, kv_heads, q_len, k_len]`.
    pub fn head_mixed(full_kv_heads: &[bool], window: Window, pos: Positions, q_len: usize, k_len: usize) -> Self {
        Self::build([1, full_kv_heads.len(), q_len, k_len], |_, h, t, j| {
            let w = (!full_kv_heads[h]).then_some(window);
            visible(pos.q_start + t, pos.k_start + j, w)
        })
    }

    /// `[batch, kv_heads, q_len, k_len]` from `f(batch, kv_head, query, key)` (`true` = visible).
    pub fn build(dims: [usize; 4], f: impl Fn(usize, usize, usize, usize) -> bool) -> Self {
        let [nb, nh, nq, nk] = dims;
        let mut seen = Vec::with_capacity(nb * nh * nq * nk);
        for b in 0..nb {
            for h in 0..nh {
                for t in 0..nq {
                    for j in 0..nk {
                        seen.push(f(b, h, t, j));
                    }
                }
            }
        }
        Self { dims, seen }
    }

    /// Whether `(b, h, t, j)` is visible, broadcasting size-1 batch and head dims.
    pub fn get(&self, b: usize, h: usize, t: usize, j: usize) -> bool {
        let [nb, nh, nq, nk] = self.dims;
        let (b, h) = (if nb == 1 { 0 } else { b }, if nh == 1 { 0 } else { h });
        self.seen[((b * nh + h) * nq + t) * nk + j]
    }

    /// The grid as a device mask where `true` = hidden (burn's masking convention).
    pub fn hidden(&self, device: &Device) -> Tensor<4, Bool> {
        hidden_mask(self.seen.iter().map(|&s| !s).collect(), self.dims, device)
    }
}

/// Upload a `hidden` mask (`true` = masked) of the given shape.
pub(crate) fn hidden_mask<const D: usize>(hidden: Vec<bool>, dims: [usize; D], device: &Device) -> Tensor<D, Bool> {
    Tensor::from_data(TensorData::new(hidden, dims), device)
}
