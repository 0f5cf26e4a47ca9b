//! Blocked sliding-window attention: O(n · w) memory and FLOPs from plain tensor ops, so that
//! autodiff works on every backend.
//!
//! Queries are cut into blocks of `block` consecutive rows. Block `m` needs only the keys from
//! `w - 1` positions before its first query to its last query, at most `block + w - 1` of them;
//! one `select` gathers that key span for every block at once (`[.., n_blocks, span, d]`), and a
//! per-block mask built from the window predicate hides what each row may not see. Grouped-query
//! heads are folded into rows, so K/V are never repeated.

use burn::tensor::{Int, Tensor, TensorData};

use super::dense::masked_attention;
use super::mask::{Positions, hidden_mask};
use super::window::{Window, visible};

/// Default query-block size for a window: half the window, kept in `[16, 256]`, which keeps the
/// gathered key span (`block + w - 1`) within 1.5 w of the ideal `w` keys per query.
pub fn default_block(window: Window) -> usize {
    (window.size() / 2).clamp(16, 256)
}

/// Key span gathered for one block of queries: indices into the key axis, the first valid slot,
/// and the visibility of each (query row, slot) pair.
pub(crate) struct KeySpan {
    /// Index into the key axis of each of the `span` slots (invalid slots point at key 0).
    pub index: Vec<i64>,
    /// Whether each slot holds a real key.
    pub valid: Vec<bool>,
}

impl KeySpan {
    /// The `span` keys that end at key index `anchor` (inclusive), in order.
    pub fn ending_at(anchor: usize, span: usize) -> Self {
        let first = anchor as i64 + 1 - span as i64;
        let index: Vec<i64> = (0..span as i64).map(|r| (first + r).max(0)).collect();
        let valid = (0..span as i64).map(|r| first + r >= 0).collect();
        Self { index, valid }
    }
}

/// Sliding-window attention in O(q_len · (block + w)).
///
/// - `q`: `[batch, q_heads, q_len, d]`; `k`, `v`: `[batch, kv_heads, k_len, d]`
/// - positions: query `t` at `pos.q_start + t`, key `j` at `pos.k_start + j`; the keys must end
///   at the last query (`k_start + k_len == q_start + q_len`), as in a forward pass or a chunk
///   appended to a cache.
/// - `block`: query rows per block (see [`default_block`]).
///
/// Returns `[batch, q_heads, q_len, d]`.
pub fn sliding_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    window: Window,
    pos: Positions,
    scale: f64,
    block: usize,
) -> Tensor<4> {
    let [b, hq, tq, d] = q.dims();
    let [_, hkv, tk, _] = k.dims();
    assert_eq!(pos.k_start + tk, pos.q_start + tq, "keys must end at the last query");
    let group = hq / hkv;
    let c = block.clamp(1, tq.max(1));
    let nb = tq.div_ceil(c);
    let span = (c + window.size() - 1).min(tk);
    let device = q.device();

    // Host-side plan: key indices per block and the (row, slot) mask, from the window predicate.
    let mut index = Vec::with_capacity(nb * span);
    let mut hidden = Vec::with_capacity(nb * group * c * span);
    for m in 0..nb {
        let last_row = ((m + 1) * c).min(tq) - 1;
        let keys = KeySpan::ending_at(pos.q_start + last_row - pos.k_start, span);
        let block_hidden: Vec<bool> = (0..c)
            .flat_map(|i| {
                let row = m * c + i;
                let keys = &keys;
                (0..span).map(move |r| {
                    !(row < tq
                        && keys.valid[r]
                        && visible(pos.q_start + row, pos.k_start + keys.index[r] as usize, Some(window)))
                })
            })
            .collect();
        for _ in 0..group {
            hidden.extend_from_slice(&block_hidden);
        }
        index.extend(keys.index);
    }
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [nb * span]), &device);
    let hidden = hidden_mask(hidden, [1, 1, nb, group * c, span], &device).expand([b, hkv, nb, group * c, span]);

    let padded = if nb * c > tq {
        let pad = Tensor::zeros([b, hq, nb * c - tq, d], (&device, q.dtype()));
        Tensor::cat(vec![q, pad], 2)
    } else {
        q
    };
    let q = padded.reshape([b, hkv, group, nb, c, d]).swap_dims(2, 3).reshape([b, hkv, nb, group * c, d]);
    let gather = |x: Tensor<4>| x.select(2, index.clone()).reshape([b, hkv, nb, span, d]);

    let out = masked_attention(q, gather(k), gather(v), hidden, scale);
    out.reshape([b, hkv, nb, group, c, d]).swap_dims(2, 3).reshape([b, hq, nb * c, d]).slice([0..b, 0..hq, 0..tq, 0..d])
}
