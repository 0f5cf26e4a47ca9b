//! KV cache for a batch of sequences at different positions (ragged batches: greedy generation of
//! prompts of different lengths, prefilled together or each on its own).
//!
//! Each row's keys are right-aligned: the newest key of every row sits in the same column, so one
//! token per row is appended with one write. Row `r` holds its last `held[r]` positions in columns
//! `end - held[r]..end`; columns left of them are padding. A batch of prompts starts as
//! [`RowsCache::prompts`]: each row's prompt right-aligned in one chunk, its left padding fed first.
//! [`RowsVisible`] tells which columns each query sees: those its span sees in column space (the
//! window definition, [`Span::sees`]), from its row's first held column on.

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
    /// Padding columns each row's next appends start with, before its first token.
    pad: Vec<usize>,
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
        let pad = vec![0; next.len()];
        Self { store, held, next, pad, keep }
    }

    /// An empty cache for prompts of `lens[r]` tokens fed together, right-aligned in one
    /// `[batch, max(lens)]` chunk (or several): row `r`'s first `max - lens[r]` columns are
    /// padding, which no query sees.
    pub fn prompts(lens: &[usize], keep: Option<Window>) -> Self {
        let longest = lens.iter().copied().max().unwrap_or(0);
        let rows = lens.len();
        Self {
            store: FullCache::default(),
            held: vec![0; rows],
            next: vec![0; rows],
            pad: lens.iter().map(|&n| longest - n).collect(),
            keep,
        }
    }

    /// This cache tiled `n` times along the batch: row `i` continues row `i % rows`.
    pub fn repeat(&self, n: usize) -> Self {
        let cycle = |x: &[usize]| x.iter().copied().cycle().take(x.len() * n).collect();
        Self {
            store: self.store.repeat(n),
            held: cycle(&self.held),
            next: cycle(&self.next),
            pad: cycle(&self.pad),
            keep: self.keep,
        }
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.next.len()
    }

    /// Allocated columns (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.store.capacity()
    }

    /// Append `k`, `v` (`[batch, kv_heads, new, head_dim]`: row `r`'s padding still to come
    /// first, then its tokens at positions `next[r]..`) and return every column's keys and values
    /// and which of them each new query sees under `span`.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>, span: Span) -> (Tensor<4>, Tensor<4>, RowsVisible) {
        let new = k.dims()[2];
        let (keys, values) = self.store.append(k, v);
        for ((held, next), pad) in self.held.iter_mut().zip(&mut self.next).zip(&mut self.pad) {
            let padding = (*pad).min(new);
            *pad -= padding;
            *held += new - padding;
            *next += new - padding;
        }
        let end = self.store.len();
        let floor = self.held.iter().map(|&h| end - h).collect();
        let visible = RowsVisible { floor, span, new, end };
        if let Some(w) = self.keep {
            self.trim(w.size());
        }
        (keys, values, visible)
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

/// Which key columns of a [`RowsCache`] the `new` queries of one append (the last `new` of `end`
/// columns) see: query column `c` of row `r` sees column `j` iff `span` sees `j` from `c` and
/// `j >= floor[r]`, the row's first held column. Positions and columns differ by one offset per
/// row, so the window is the same in both; a padding query (left of its row's floor) sees nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct RowsVisible {
    floor: Vec<usize>,
    span: Span,
    new: usize,
    end: usize,
}

impl RowsVisible {
    /// Each row's first held column.
    pub fn floor(&self) -> &[usize] {
        &self.floor
    }

    /// The span the queries attend under.
    pub fn span(&self) -> Span {
        self.span
    }

    /// The same queries and columns under another span (a routed layer's other branch).
    pub fn with_span(&self, span: Span) -> Self {
        Self { span, ..self.clone() }
    }

    /// `[batch, 1, new, end]` mask of the hidden columns (`true` = hidden): the span's mask in
    /// column space, shared by the rows, joined with each row's floor on the device.
    pub fn hidden(&self, device: &burn::tensor::Device) -> Tensor<4, Bool> {
        let (rows, new, end) = (self.floor.len(), self.new, self.end);
        let mut outside = Vec::with_capacity(new * end);
        for c in end - new..end {
            outside.extend((0..end).map(|j| !self.span.sees(c, j)));
        }
        let outside = Tensor::<4, Bool>::from_data(TensorData::new(outside, [1, 1, new, end]), device);
        let floor: Vec<i64> = self.floor.iter().map(|&f| f as i64).collect();
        let floor = Tensor::<4, Int>::from_data(TensorData::new(floor, [rows, 1, 1, 1]), device);
        let columns = Tensor::<1, Int>::arange(0..end as i64, device).reshape([1, 1, 1, end]);
        let dims = [rows, 1, new, end];
        columns
            .expand([rows, 1, 1, end])
            .lower(floor.expand([rows, 1, 1, end]))
            .expand(dims)
            .bool_or(outside.expand(dims))
    }
}
