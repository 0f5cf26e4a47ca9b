//! Routed (switch) attention: every query is routed, per token, to full attention (FA) or to
//! sliding-window attention (SWA); both branches read the same K/V.
//!
//! The two query sets are compacted (gather → attend → scatter), so the cost is
//! O(n_fa · n + n_swa · w), never a dense `n × n` matrix:
//! - **FA branch**: the FA queries of each sequence, gathered into `[.., n_fa, d]`, attend
//!   causally to the keys up to the last FA query.
//! - **SWA branch**: the SWA queries, in position order, are packed greedily into blocks of at
//!   most `block` queries spanning at most `2 · block` positions; each block gathers the
//!   `2 · block + w - 1` keys ending at its last query (see [`super::blocked`]).
//! - The outputs of both branches are put back in sequence order by one `select` with the
//!   inverse permutation.

use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::blocked::KeySpan;
use super::dense::{fold_heads, masked_attention, unfold_heads};
use super::mask::{Positions, hidden_mask};
use super::window::{Window, visible};
use crate::{Error, Result};

/// Per-token routes on the host: `fa[b * len + t]` is true when token `t` of sequence `b` is
/// routed to full attention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMask {
    pub batch: usize,
    pub len: usize,
    pub fa: Vec<bool>,
}

impl RouteMask {
    /// Every token on the same branch.
    pub fn uniform(batch: usize, len: usize, fa: bool) -> Self {
        Self { batch, len, fa: vec![fa; batch * len] }
    }

    /// Read a `[batch, len]` bool tensor (`true` = FA) back to the host. Read as integers: backends
    /// store bools differently (native on the CPU, `u8` on CUDA).
    pub fn from_tensor(route: &Tensor<2, Bool>) -> Result<Self> {
        let [batch, len] = route.dims();
        let fa = crate::host::ints(route.clone().int(), "the route mask")?.into_iter().map(|x| x != 0).collect();
        Ok(Self { batch, len, fa })
    }

    /// Upload as a `[batch, len]` bool tensor.
    pub fn to_tensor(&self, device: &burn::tensor::Device) -> Tensor<2, Bool> {
        Tensor::from_data(TensorData::new(self.fa.clone(), [self.batch, self.len]), device)
    }

    /// Fraction of tokens routed to full attention.
    pub fn fa_ratio(&self) -> f64 {
        if self.fa.is_empty() {
            return 0.0;
        }
        self.fa.iter().filter(|&&f| f).count() as f64 / self.fa.len() as f64
    }

    /// The routes of tokens `start..start + len` of every sequence.
    pub fn narrow(&self, start: usize, len: usize) -> Self {
        let fa = (0..self.batch)
            .flat_map(|b| self.fa[b * self.len + start..b * self.len + start + len].iter().copied())
            .collect();
        Self { batch: self.batch, len, fa }
    }

    fn rows(&self, b: usize, fa: bool) -> Vec<usize> {
        (0..self.len).filter(|&t| self.fa[b * self.len + t] == fa).collect()
    }

    /// Check that this mask covers `[batch, len]`.
    pub fn check(&self, batch: usize, len: usize) -> Result<()> {
        check_route_dims([self.batch, self.len], batch, len)
    }
}

/// Check that routes of shape `dims` cover `[batch, len]` (host masks and device route tensors).
pub fn check_route_dims(dims: [usize; 2], batch: usize, len: usize) -> Result<()> {
    if dims != [batch, len] {
        return Err(Error::shape("route mask", format!("[{batch}, {len}] (batch, tokens)"), &dims));
    }
    Ok(())
}

/// Routed attention.
///
/// - `q`: `[batch, q_heads, q_len, d]`; `k`, `v`: `[batch, kv_heads, k_len, d]`
/// - `route`: `[batch, q_len]`, true = full attention, false = sliding in `window`
/// - positions as in [`super::sliding_attention`]: the keys end at the last query.
/// - `block`: SWA queries per block (see [`super::default_block`]).
///
/// Returns `[batch, q_heads, q_len, d]`.
#[allow(clippy::too_many_arguments)]
pub fn routed_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    route: &RouteMask,
    window: Window,
    pos: Positions,
    scale: f64,
    block: usize,
) -> Tensor<4> {
    let [b, hq, tq, d] = q.dims();
    let [_, _, tk, _] = k.dims();
    assert_eq!(pos.k_start + tk, pos.q_start + tq, "keys must end at the last query");
    assert_eq!((route.batch, route.len), (b, tq), "route must be [batch, q_len]");
    let device = q.device();

    // Rows of the flattened queries `[batch · q_len, q_heads, d]`.
    let q_rows = q.swap_dims(1, 2).reshape([b * tq, hq, d]);
    let mut parts = Vec::new();
    let mut inverse = vec![0i64; b * tq];
    let mut placed = 0usize;

    let fa_rows: Vec<Vec<usize>> = (0..b).map(|s| route.rows(s, true)).collect();
    if fa_rows.iter().any(|r| !r.is_empty()) {
        let (out, slots) = full_branch(&q_rows, &k, &v, &fa_rows, pos, scale, tq);
        for (slot, row) in slots.into_iter().enumerate() {
            if let Some(row) = row {
                inverse[row] = (placed + slot) as i64;
            }
        }
        placed += out.dims()[0];
        parts.push(out);
    }
    let swa_rows: Vec<Vec<usize>> = (0..b).map(|s| route.rows(s, false)).collect();
    if swa_rows.iter().any(|r| !r.is_empty()) {
        let (out, slots) = sliding_branch(&q_rows, &k, &v, &swa_rows, window, pos, scale, block, tq);
        for (slot, row) in slots.into_iter().enumerate() {
            if let Some(row) = row {
                inverse[row] = (placed + slot) as i64;
            }
        }
        parts.push(out);
    }

    let inverse = Tensor::<1, Int>::from_data(TensorData::new(inverse, [b * tq]), &device);
    Tensor::cat(parts, 0).select(0, inverse).reshape([b, tq, hq, d]).swap_dims(1, 2)
}

/// The FA queries of each sequence against the keys up to the last FA query.
/// Returns output rows `[batch · n, q_heads, d]` and, per output row, its flat query row.
fn full_branch(
    q_rows: &Tensor<3>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    rows: &[Vec<usize>],
    pos: Positions,
    scale: f64,
    tq: usize,
) -> (Tensor<3>, Vec<Option<usize>>) {
    let [b, hkv, _, d] = k.dims();
    let [_, hq, _] = q_rows.dims();
    let group = hq / hkv;
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let last_query = rows.iter().flatten().max().copied().unwrap_or(0);
    let k_len = pos.q_start + last_query + 1 - pos.k_start;
    let device = q_rows.device();

    let mut index = Vec::with_capacity(b * n);
    let mut slots = Vec::with_capacity(b * n);
    let mut hidden = Vec::with_capacity(b * group * n * k_len);
    for (s, rows) in rows.iter().enumerate() {
        let mut seq_hidden = Vec::with_capacity(n * k_len);
        for i in 0..n {
            let row = rows.get(i).copied();
            index.push((s * tq + row.unwrap_or(0)) as i64);
            slots.push(row.map(|t| s * tq + t));
            seq_hidden.extend((0..k_len).map(|j| match row {
                Some(t) => !visible(pos.q_start + t, pos.k_start + j, None),
                None => true,
            }));
        }
        for _ in 0..group {
            hidden.extend_from_slice(&seq_hidden);
        }
    }
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [b * n]), &device);
    let hidden = hidden_mask(hidden, [b, 1, group * n, k_len], &device).expand([b, hkv, group * n, k_len]);

    let q = q_rows.clone().select(0, index).reshape([b, n, hq, d]).swap_dims(1, 2);
    let keys = |x: &Tensor<4>| x.clone().slice([0..b, 0..hkv, 0..k_len, 0..d]);
    let out = masked_attention(fold_heads(q, hkv), keys(k), keys(v), hidden, scale);
    let out = unfold_heads(out, hq).swap_dims(1, 2).reshape([b * n, hq, d]);
    (out, slots)
}

/// The SWA queries of each sequence, packed into blocks of at most `block` queries spanning at
/// most `2 · block` positions, each against the keys ending at its last query.
/// Returns output rows `[batch · n_blocks · block, q_heads, d]` and their flat query rows.
#[allow(clippy::too_many_arguments)]
fn sliding_branch(
    q_rows: &Tensor<3>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    rows: &[Vec<usize>],
    window: Window,
    pos: Positions,
    scale: f64,
    block: usize,
    tq: usize,
) -> (Tensor<3>, Vec<Option<usize>>) {
    let [b, hkv, tk, d] = k.dims();
    let [_, hq, _] = q_rows.dims();
    let group = hq / hkv;
    let c = block.max(1);
    let reach = 2 * c;
    let span = (reach + window.size() - 1).min(tk);
    let device = q_rows.device();

    // Greedy packing, per sequence, of the sorted SWA rows.
    let packed: Vec<Vec<&[usize]>> = rows
        .iter()
        .map(|rows| {
            let mut blocks = Vec::new();
            let mut start = 0;
            while start < rows.len() {
                let mut end = start + 1;
                while end < rows.len() && end - start < c && rows[end] - rows[start] < reach {
                    end += 1;
                }
                blocks.push(&rows[start..end]);
                start = end;
            }
            blocks
        })
        .collect();
    let nb = packed.iter().map(Vec::len).max().unwrap_or(0);

    let mut q_index = Vec::with_capacity(b * nb * c);
    let mut k_index = Vec::with_capacity(b * nb * span);
    let mut slots = Vec::with_capacity(b * nb * c);
    let mut hidden = Vec::with_capacity(b * nb * group * c * span);
    for (s, blocks) in packed.iter().enumerate() {
        for m in 0..nb {
            let block_rows: &[usize] = blocks.get(m).copied().unwrap_or(&[]);
            let anchor = block_rows.last().map_or(0, |&t| pos.q_start + t - pos.k_start);
            let keys = KeySpan::ending_at(anchor, span);
            let mut block_hidden = Vec::with_capacity(c * span);
            for i in 0..c {
                let row = block_rows.get(i).copied();
                q_index.push((s * tq + row.unwrap_or(0)) as i64);
                slots.push(row.map(|t| s * tq + t));
                block_hidden.extend((0..span).map(|r| match row {
                    Some(t) => {
                        !(keys.valid[r] && visible(pos.q_start + t, pos.k_start + keys.index[r] as usize, Some(window)))
                    }
                    None => true,
                }));
            }
            for _ in 0..group {
                hidden.extend_from_slice(&block_hidden);
            }
            k_index.extend(keys.index.iter().map(|&j| (s * tk) as i64 + j));
        }
    }
    let q_index = Tensor::<1, Int>::from_data(TensorData::new(q_index, [b * nb * c]), &device);
    let k_index = Tensor::<1, Int>::from_data(TensorData::new(k_index, [b * nb * span]), &device);
    let hidden = hidden_mask(hidden, [b, 1, nb, group * c, span], &device).expand([b, hkv, nb, group * c, span]);

    let q = q_rows
        .clone()
        .select(0, q_index)
        .reshape([b, nb, c, hq, d])
        .permute([0, 3, 1, 2, 4])
        .reshape([b, hkv, group, nb, c, d])
        .swap_dims(2, 3)
        .reshape([b, hkv, nb, group * c, d]);
    let gather = |x: &Tensor<4>| {
        x.clone()
            .swap_dims(1, 2)
            .reshape([b * tk, hkv, d])
            .select(0, k_index.clone())
            .reshape([b, nb, span, hkv, d])
            .permute([0, 3, 1, 2, 4])
    };
    let out = masked_attention(q, gather(k), gather(v), hidden, scale)
        .reshape([b, hkv, nb, group, c, d])
        .swap_dims(2, 3)
        .reshape([b, hq, nb, c, d])
        .permute([0, 2, 3, 1, 4])
        .reshape([b * nb * c, hq, d]);
    (out, slots)
}
