//! Head-mixed attention: inside one layer, each KV head (and the query heads that share it) is
//! either full or sliding-window attention — the layout that per-head allocation (ConSA heads,
//! DuoAttention) produces.
//!
//! [`HeadSplit`] separates the two head groups with `select`; each group runs its own path (dense
//! causal or blocked sliding, with its own cache when decoding), and one `select` with the
//! inverse permutation restores head order.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::blocked::sliding_attention;
use super::dense::dense_attention;
use super::mask::Positions;
use super::window::{Span, Window};

/// The full and sliding head groups of a head-mixed layer.
#[derive(Clone, Debug)]
pub struct HeadSplit {
    full: Vec<usize>,
    sliding: Vec<usize>,
    group: usize,
}

impl HeadSplit {
    /// KV head `h` is full if `full_kv_heads[h]`; `q_heads` is a multiple of the KV heads.
    pub fn new(full_kv_heads: &[bool], q_heads: usize) -> Self {
        let heads = |full: bool| (0..full_kv_heads.len()).filter(|&h| full_kv_heads[h] == full).collect();
        Self { full: heads(true), sliding: heads(false), group: q_heads / full_kv_heads.len() }
    }

    fn index(heads: &[usize], device: &Device) -> Tensor<1, Int> {
        let idx: Vec<i64> = heads.iter().map(|&h| h as i64).collect();
        Tensor::from_data(TensorData::new(idx, [heads.len()]), device)
    }

    fn q_heads(&self, kv_heads: &[usize]) -> Vec<usize> {
        kv_heads.iter().flat_map(|&h| h * self.group..(h + 1) * self.group).collect()
    }

    fn pick(x: &Tensor<4>, heads: &[usize]) -> Option<Tensor<4>> {
        (!heads.is_empty()).then(|| x.clone().select(1, Self::index(heads, &x.device())))
    }

    /// Query heads `[batch, q_heads, len, d]` → (full group, sliding group).
    pub fn split_q(&self, q: &Tensor<4>) -> (Option<Tensor<4>>, Option<Tensor<4>>) {
        (Self::pick(q, &self.q_heads(&self.full)), Self::pick(q, &self.q_heads(&self.sliding)))
    }

    /// KV heads `[batch, kv_heads, len, d]` → (full group, sliding group).
    pub fn split_kv(&self, x: &Tensor<4>) -> (Option<Tensor<4>>, Option<Tensor<4>>) {
        (Self::pick(x, &self.full), Self::pick(x, &self.sliding))
    }

    /// The outputs of both groups back in query-head order.
    pub fn merge(&self, full: Option<Tensor<4>>, sliding: Option<Tensor<4>>) -> Tensor<4> {
        match (full, sliding) {
            (Some(out), None) | (None, Some(out)) => out,
            (Some(full), Some(sliding)) => {
                let order: Vec<usize> =
                    self.q_heads(&self.full).into_iter().chain(self.q_heads(&self.sliding)).collect();
                let mut inverse = vec![0usize; order.len()];
                for (slot, &head) in order.iter().enumerate() {
                    inverse[head] = slot;
                }
                let device = full.device();
                Tensor::cat(vec![full, sliding], 1).select(1, Self::index(&inverse, &device))
            }
            (None, None) => unreachable!("a layer has at least one KV head"),
        }
    }
}

/// Attention where KV head `h` is full if `full_kv_heads[h]`, else sliding in `window`.
///
/// - `q`: `[batch, q_heads, q_len, d]`; `k`, `v`: `[batch, kv_heads, k_len, d]`;
///   `full_kv_heads.len() == kv_heads`
/// - positions and `block` as in [`super::sliding_attention`].
///
/// Returns `[batch, q_heads, q_len, d]`.
#[allow(clippy::too_many_arguments)]
pub fn head_mixed_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    full_kv_heads: &[bool],
    window: Window,
    pos: Positions,
    scale: f64,
    block: usize,
) -> Tensor<4> {
    assert_eq!(full_kv_heads.len(), k.dims()[1], "one full/sliding choice per KV head");
    let split = HeadSplit::new(full_kv_heads, q.dims()[1]);
    let (qf, qs) = split.split_q(&q);
    let (kf, ks) = split.split_kv(&k);
    let (vf, vs) = split.split_kv(&v);
    let full = qf.map(|q| dense_attention(q, kf.unwrap(), vf.unwrap(), Span::Full, pos, scale));
    let sliding = qs.map(|q| sliding_attention(q, ks.unwrap(), vs.unwrap(), window, pos, scale, block));
    split.merge(full, sliding)
}
