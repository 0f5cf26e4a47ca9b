//! The plain reference every fast attention path is tested against.
//!
//! Materializes the full `[batch, q_heads, q_len, k_len]` score matrix in fp32, masks it with a
//! [`Visibility`] grid built from the window predicate, and repeats K/V heads explicitly for
//! grouped-query attention. Rows with no visible key return zeros (never NaN). Memory and time are
//! O(q_len · k_len): use it for tests and small inputs only.

use burn::tensor::{DType, Tensor, activation::softmax};

use super::mask::Visibility;

/// Score assigned to hidden pairs before the softmax; finite so that rows with no visible key do
/// not produce NaN (they are zeroed after the softmax).
pub(crate) const HIDDEN_SCORE: f32 = -1.0e30;

/// Reference attention.
///
/// - `q`: `[batch, q_heads, q_len, head_dim]`
/// - `k`, `v`: `[batch, kv_heads, k_len, head_dim]` with `q_heads % kv_heads == 0`; query head
///   `h` reads KV head `h / (q_heads / kv_heads)` (the Hugging Face `repeat_kv` layout).
/// - `visibility`: `[batch | 1, kv_heads | 1, q_len, k_len]`, `true` = visible.
/// - `scale`: multiplies `q · k` (usually `head_dim^-0.5`).
///
/// Returns `[batch, q_heads, q_len, head_dim]` in the dtype of `q`.
pub fn attention_reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, visibility: &Visibility, scale: f64) -> Tensor<4> {
    let dtype = q.dtype();
    let [b, hq, tq, d] = q.dims();
    let [_, hkv, tk, _] = k.dims();
    let [vb, vh, vq, vk] = visibility.dims;
    assert!(hq % hkv == 0, "q_heads {hq} must be a multiple of kv_heads {hkv}");
    assert!(vq == tq && vk == tk, "visibility {:?} does not match q_len {tq}, k_len {tk}", visibility.dims);
    assert!(vb == 1 || vb == b, "visibility batch {vb} vs {b}");
    assert!(vh == 1 || vh == hkv, "visibility heads {vh} vs kv_heads {hkv}");
    let group = hq / hkv;

    let repeat_kv = |x: Tensor<4>| -> Tensor<4> {
        x.cast(DType::F32).unsqueeze_dim::<5>(2).expand([b, hkv, group, tk, d]).reshape([b, hq, tk, d])
    };
    let q = q.cast(DType::F32);
    let (k, v) = (repeat_kv(k), repeat_kv(v));

    let device = q.device();
    let hidden = visibility.hidden(&device);
    // Expand kv-head masks to query heads the same way K/V were repeated.
    let hidden = if vh == 1 {
        hidden.expand([b, hq, tq, tk])
    } else {
        hidden.unsqueeze_dim::<5>(2).expand([vb, hkv, group, tq, tk]).reshape([vb, hq, tq, tk]).expand([b, hq, tq, tk])
    };

    let scores = q.matmul(k.swap_dims(2, 3)) * scale;
    let probs = softmax(scores.mask_fill(hidden.clone(), HIDDEN_SCORE), 3).mask_fill(hidden, 0.0);
    probs.matmul(v).cast(dtype)
}
