//! The building block shared by the fast tensor-op paths: softmax attention of a set of query
//! rows against a set of keys under an explicit mask, with grouped-query heads folded into rows
//! (so K/V are never repeated), and [`dense_attention`], the dense path used for full attention.

use burn::tensor::{Bool, DType, Tensor, activation::softmax};

use super::mask::{Positions, hidden_mask};
use super::reference::HIDDEN_SCORE;
use super::window::Span;

/// `softmax(q kᵀ · scale, masked by hidden) v` over the last two dims.
///
/// - `q`: `[..., rows, head_dim]`, `k`/`v`: `[..., keys, head_dim]`
/// - `hidden`: `[..., rows, keys]`, `true` = masked; rows with every key hidden return zeros.
///
/// Scores are accumulated in the input dtype and the softmax runs in fp32.
pub(crate) fn masked_attention<const D: usize>(
    q: Tensor<D>,
    k: Tensor<D>,
    v: Tensor<D>,
    hidden: Tensor<D, Bool>,
    scale: f64,
) -> Tensor<D> {
    let dtype = q.dtype();
    let scores = (q.matmul(k.swap_dims(D - 2, D - 1)) * scale).cast(DType::F32);
    let probs = softmax(scores.mask_fill(hidden.clone(), HIDDEN_SCORE), D - 1).mask_fill(hidden, 0.0);
    probs.cast(dtype).matmul(v)
}

/// `[batch, q_heads, len, d]` → `[batch, kv_heads, group · len, d]`: the `group` query heads that
/// share a KV head become consecutive row blocks (row `g · len + t`).
pub(crate) fn fold_heads(x: Tensor<4>, kv_heads: usize) -> Tensor<4> {
    let [b, hq, len, d] = x.dims();
    x.reshape([b, kv_heads, (hq / kv_heads) * len, d])
}

/// Inverse of [`fold_heads`].
pub(crate) fn unfold_heads(x: Tensor<4>, q_heads: usize) -> Tensor<4> {
    let [b, hkv, rows, d] = x.dims();
    x.reshape([b, q_heads, rows * hkv / q_heads, d])
}

/// Dense attention under one span: the whole `[q_len, k_len]` score matrix per head, GQA folded,
/// O(q_len · k_len). The tensor-op path for full (causal) attention; under a sliding span it is the
/// dense-masked baseline that [`super::sliding_attention`] improves on.
///
/// - `q`: `[batch, q_heads, q_len, d]`; `k`, `v`: `[batch, kv_heads, k_len, d]`
/// - returns `[batch, q_heads, q_len, d]`
pub fn dense_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, span: Span, pos: Positions, scale: f64) -> Tensor<4> {
    let [_, hq, tq, _] = q.dims();
    let [_, hkv, tk, _] = k.dims();
    let group = hq / hkv;
    let mut hidden = Vec::with_capacity(group * tq * tk);
    for _ in 0..group {
        for t in 0..tq {
            hidden.extend((0..tk).map(|j| !span.sees(pos.q_start + t, pos.k_start + j)));
        }
    }
    let device = q.device();
    let hidden = hidden_mask(hidden, [1, 1, group * tq, tk], &device);
    let [b, _, _, _] = q.dims();
    let out = masked_attention(fold_heads(q, hkv), k, v, hidden.expand([b, hkv, group * tq, tk]), scale);
    unfold_heads(out, hq)
}

/// Attention of a ragged batch (rows at different positions, keys right-aligned, see
/// [`crate::cache::RowsCache`]) under an explicit per-row mask, GQA folded.
///
/// - `q`: `[batch, q_heads, q_len, d]`; `k`, `v`: `[batch, kv_heads, k_len, d]`
/// - `hidden`: `[batch, 1, q_len, k_len]`, `true` = masked
/// - returns `[batch, q_heads, q_len, d]`
pub fn ragged_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, hidden: Tensor<4, Bool>, scale: f64) -> Tensor<4> {
    let [b, hq, tq, _] = q.dims();
    let [_, hkv, tk, _] = k.dims();
    let group = hq / hkv;
    let hidden = hidden.repeat_dim(2, group).expand([b, hkv, group * tq, tk]);
    unfold_heads(masked_attention(fold_heads(q, hkv), k, v, hidden, scale), hq)
}
