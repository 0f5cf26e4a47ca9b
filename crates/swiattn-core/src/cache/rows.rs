//! KV cache for a batch of sequences at different positions (ragged batched decoding, e.g.
//! greedy generation of prompts of different lengths, each prefilled on its own).
//!
//! Each row's keys are right-aligned: the newest key of every row sits in the same column, so one
//! token per row is appended with one write. Row `r` holds its last `held[r]` positions in columns
//! `end - held[r]..end`; columns left of them are padding, hidden by [`RowsVisible`], which
//! builds each query's visible columns from the window definition ([`Span::first_key`]).

use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::FullCache;
use crate::attention::{Span, Window};

/// The keys and values of a ragged batch, `[batch, kv_heads, end, head_dim]` right-aligned.
#[derive(Clone, Debug)]
pub struct RowsCache {
    store: FullCache,
    /// Columns (at the right end) that hold row `r`'s keys.
    held: Vec<usize>,
    /// Position of each row's next token.
    next: Vec<usize>,
    /// Sliding layers keep only the columns a later query can see: the last `w`.
    keep: Option<Window>,
}

impl RowsCache {
    /// Stack rows: `rows[r]` holds the keys and values of one sequence's last positions, oldest
    /// first (`[1, kv_heads, n_r, head_dim]` each, `None` for an empty cache), and `next[r]` is
    /// the position of its next token. Shorter rows are padded on the left.
    pub fn stack(rows: Vec<Option<(Tensor<4>, Tensor<4>)>>, next: Vec<usize>, keep: Option<Window>) -> Self {
        assert_eq!(rows.len(), next.len(), "one next position per row");
        let held: Vec<usize> = rows.iter().map(|r| r.as_ref().map_or(0, |(k, _)| k.dims()[2])).collect();
        let end = held.iter().copied().max().unwrap_or(0);
        let like = rows.iter().flatten().next().map(|(k, _)| (k.dims(), k.device(), k.dtype()));
        let store = match like {
            Some(([_, h, _, d], device, dtype)) => {
                let pad = |row: Option<Tensor<4>>, n: usize| {
                    let zeros = |len| Tensor::<4>::zeros([1, h, len, d], (&device, dtype));
                    match row {
                        Some(x) if n < end => Tensor::cat(vec![zeros(end - n), x], 2),
                        Some(x) => x,
                        None => zeros(end),
                    }
                };
                let (mut ks, mut vs) = (Vec::new(), Vec::new());
                for (row, &n) in rows.into_iter().zip(&held) {
                    let (k, v) = row.unzip();
                    ks.push(pad(k, n));
                    vs.push(pad(v, n));
                }
                FullCache::from_kv(Tensor::cat(ks, 0), Tensor::cat(vs, 0))
            }
            None => FullCache::default(),
        };
        Self { store, held, next, keep }
    }

    /// This cache tiled `n` times along the batch: row `i` continues row `i % rows`.
    pub fn repeat(&self, n: usize) -> Self {
        let cycle = |x: &[usize]| x.iter().copied().cycle().take(x.len() * n).collect();
        Self { store: self.store.repeat(n), held: cycle(&self.held), next: cycle(&self.next), keep: self.keep }
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.next.len()
    }

    /// Allocated columns (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.store.capacity()
    }

    /// Append `k`, `v` (`[batch, kv_heads, new, head_dim]`, row `r` at positions
    /// `next[r]..next[r] + new`) and return every column's keys and values and which of them each
    /// new query sees under `span`.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>, span: Span) -> (Tensor<4>, Tensor<4>, RowsVisible) {
        let new = k.dims()[2];
        let (keys, values) = self.store.append(k, v);
        self.held.iter_mut().for_each(|h| *h += new);
        let visible = self.visible(span, new);
        self.next.iter_mut().for_each(|p| *p += new);
        if let Some(w) = self.keep {
            self.trim(w.size());
        }
        (keys, values, visible)
    }

    /// The columns the `new` queries just appended (still at positions `next[r]..next[r] + new`)
    /// see: query `i` of row `r` sees columns `lo..=hi`, where `hi` is its own column and `lo` is
    /// the column of `span.first_key` of its position, or the row's first held column if that is
    /// later.
    fn visible(&self, span: Span, new: usize) -> RowsVisible {
        let end = self.store.len();
        let rows = self.rows();
        let (mut lo, mut hi) = (Vec::with_capacity(rows * new), Vec::with_capacity(rows * new));
        for (&held, &next) in self.held.iter().zip(&self.next) {
            // Column of position p: end - (next + new - p).
            let column = |p: usize| end as i64 - (next + new) as i64 + p as i64;
            for i in 0..new {
                let q = next + i;
                lo.push(column(span.first_key(q)).max((end - held) as i64));
                hi.push(column(q));
            }
        }
        RowsVisible { lo, hi, rows, new, end }
    }

    /// Keep the last `w` columns once twice that many are stored: a later query sees only keys
    /// within `w` of itself.
    fn trim(&mut self, w: usize) {
        if self.store.len() < 2 * w {
            return;
        }
        let (k, v) = self.store.kv().expect("at least 2w columns");
        let [b, h, end, d] = k.dims();
        let last = [0..b, 0..h, end - w..end, 0..d];
        self.store = FullCache::from_kv(k.slice(last.clone()), v.slice(last));
        self.held.iter_mut().for_each(|n| *n = (*n).min(w));
    }
}

/// Which key columns of a [`RowsCache`] each query of one append sees: query `i` of row `r` sees
/// columns `lo[r * new + i]..=hi[r * new + i]`, out of `end`.
#[derive(Clone, Debug, PartialEq)]
pub struct RowsVisible {
    lo: Vec<i64>,
    hi: Vec<i64>,
    rows: usize,
    new: usize,
    end: usize,
}

impl RowsVisible {
    /// The first visible column of each row's one query (decoding: one new token per row), which
    /// sees every column from there to the last.
    pub fn first_columns(&self) -> Option<Vec<usize>> {
        (self.new == 1).then(|| self.lo.iter().map(|&c| c as usize).collect())
    }

    /// `[batch, 1, new, end]` mask of the hidden columns (`true` = hidden).
    pub fn hidden(&self, device: &burn::tensor::Device) -> Tensor<4, Bool> {
        let (rows, new, end) = (self.rows, self.new, self.end);
        let bounds = |b: &[i64]| Tensor::<4, Int>::from_data(TensorData::new(b.to_vec(), [rows, 1, new, 1]), device);
        let dims = [rows, 1, new, end];
        let columns = Tensor::<1, Int>::arange(0..end as i64, device).reshape([1, 1, 1, end]).expand(dims);
        let before = columns.clone().lower(bounds(&self.lo).expand(dims));
        let after = columns.greater(bounds(&self.hi).expand(dims));
        before.bool_or(after)
    }
}
