//! KV caches for incremental decoding, one per layer, chosen by the layer's attention:
//!
//! | layer | cache | memory |
//! |---|---|---|
//! | full | [`FullCache`] | O(n) |
//! | sliding | [`RingCache`] | O(w) |
//! | routed | [`FullCache`]: any later token may route to full attention | O(n) |
//! | head-mixed | full cache for full heads, ring for sliding heads | O(n · h_fa + w · h_swa) |
//!
//! Caches of sequences at different positions stack into one ragged batch ([`ModelCache::stack`]),
//! and prompts of different lengths prefill as one ([`ModelCache::prompts`]): every layer then
//! keeps a [`RowsCache`] (two for head-mixed layers), sliding layers only their last `w` columns.

mod full;
mod ring;
mod rows;

pub use full::FullCache;
pub use ring::RingCache;
pub use rows::{RowsCache, RowsVisible};

use burn::tensor::Tensor;

use crate::attention::LayerAttention;
use crate::{Error, Result};

/// The cache of one layer.
#[derive(Clone, Debug)]
pub enum LayerCache {
    Full(FullCache),
    Ring(RingCache),
    /// Head-mixed layers: the full heads' cache and the sliding heads' ring.
    Mixed {
        full: FullCache,
        ring: RingCache,
    },
    /// A ragged batch ([`ModelCache::stack`]): full, routed and sliding layers.
    Rows(RowsCache),
    /// A ragged batch of a head-mixed layer: the full heads' rows and the sliding heads' rows.
    MixedRows {
        full: RowsCache,
        sliding: RowsCache,
    },
}

impl LayerCache {
    /// The cache a layer of this attention kind needs.
    pub fn for_layer(attention: &LayerAttention) -> Self {
        match attention {
            LayerAttention::Full | LayerAttention::Routed(_) => LayerCache::Full(FullCache::default()),
            LayerAttention::Sliding(w) => LayerCache::Ring(RingCache::new(*w)),
            LayerAttention::HeadMixed { window, .. } => {
                LayerCache::Mixed { full: FullCache::default(), ring: RingCache::new(*window) }
            }
        }
    }

    /// Key/value positions allocated per KV head group (the largest, for a mixed layer).
    pub fn capacity(&self) -> usize {
        match self {
            LayerCache::Full(c) => c.capacity(),
            LayerCache::Ring(c) => c.capacity(),
            LayerCache::Mixed { full, ring } => full.capacity().max(ring.capacity()),
            LayerCache::Rows(c) => c.capacity(),
            LayerCache::MixedRows { full, sliding } => full.capacity().max(sliding.capacity()),
        }
    }

    /// The held keys and values of each row, oldest first, as [`RowsCache::stack`] takes them
    /// (the full heads' and, for a head-mixed layer, the sliding heads').
    fn rows(&self) -> Vec<[Option<(Tensor<4>, Tensor<4>)>; 2]> {
        let split = |kv: Option<(Tensor<4>, Tensor<4>)>, batch: usize| -> Vec<Option<(Tensor<4>, Tensor<4>)>> {
            (0..batch)
                .map(|r| {
                    kv.clone().map(|(k, v)| {
                        let [_, h, n, d] = k.dims();
                        let row = [r..r + 1, 0..h, 0..n, 0..d];
                        (k.slice(row.clone()), v.slice(row))
                    })
                })
                .collect()
        };
        let batch = |kv: &Option<(Tensor<4>, Tensor<4>)>| kv.as_ref().map_or(1, |(k, _)| k.dims()[0]);
        let (a, b) = match self {
            LayerCache::Full(c) => (c.kv(), None),
            LayerCache::Ring(c) => (c.kv(), None),
            LayerCache::Mixed { full, ring } => (full.kv(), ring.kv()),
            LayerCache::Rows(_) | LayerCache::MixedRows { .. } => unreachable!("checked by ModelCache::stack"),
        };
        let n = batch(&a).max(batch(&b));
        split(a, n).into_iter().zip(split(b, n)).map(|(a, b)| [a, b]).collect()
    }
}

/// The caches of every layer of a model, and how many positions they have seen.
#[derive(Clone, Debug)]
pub struct ModelCache {
    pub layers: Vec<LayerCache>,
    len: usize,
    /// A ragged batch's next position per row (`len` is then unused).
    rows: Option<Vec<usize>>,
    /// A ragged batch's padding columns still to come per row, before its first token (empty
    /// unless built by [`Self::prompts`]).
    pad: Vec<usize>,
}

impl ModelCache {
    /// Empty caches for a model whose layers have these attention kinds.
    pub fn new(layers: &[LayerAttention]) -> Self {
        Self { layers: layers.iter().map(LayerCache::for_layer).collect(), len: 0, rows: None, pad: Vec::new() }
    }

    /// An empty ragged batch for prompts of `lens[r]` tokens, fed together right-aligned (left
    /// padded) in `[batch, max(lens)]` tokens, in one chunk or several: row `r`'s first
    /// `max - lens[r]` tokens are padding, which no query sees and no position counts.
    pub fn prompts(lens: &[usize], layers: &[LayerAttention]) -> Result<Self> {
        if lens.is_empty() || lens.contains(&0) {
            return Err(Error::Invalid(format!("prompts of {lens:?} tokens: need at least one, each non-empty")));
        }
        let rows = |keep| RowsCache::prompts(lens, keep);
        let layers = layers
            .iter()
            .map(|attention| match attention {
                LayerAttention::Full | LayerAttention::Routed(_) => LayerCache::Rows(rows(None)),
                LayerAttention::Sliding(w) => LayerCache::Rows(rows(Some(*w))),
                LayerAttention::HeadMixed { window, .. } => {
                    LayerCache::MixedRows { full: rows(None), sliding: rows(Some(*window)) }
                }
            })
            .collect();
        let longest = lens.iter().copied().max().unwrap_or(0);
        Ok(Self { layers, len: 0, rows: Some(vec![0; lens.len()]), pad: lens.iter().map(|&n| longest - n).collect() })
    }

    /// One ragged batch from caches of sequences at different positions (of one model, each of
    /// any batch size; their rows in order): the next token of every row is fed together, each
    /// at its own position. Attention then runs masked and unfused (built for decoding).
    pub fn stack(caches: &[ModelCache], layers: &[LayerAttention]) -> Result<Self> {
        if caches.is_empty() {
            return Err(Error::Invalid("no caches to stack".into()));
        }
        if let Some(c) = caches.iter().find(|c| c.layers.len() != layers.len()) {
            return Err(Error::Invalid(format!(
                "a cache of {} layers for a model of {}",
                c.layers.len(),
                layers.len()
            )));
        }
        if caches.iter().any(|c| c.rows.is_some()) {
            return Err(Error::Invalid("ragged caches do not stack again; stack their sources".into()));
        }
        // Every layer's rows of every cache, split once.
        let split: Vec<Vec<_>> = caches.iter().map(|c| c.layers.iter().map(LayerCache::rows).collect()).collect();
        let mut next = Vec::new();
        for (c, layers) in caches.iter().zip(&split) {
            let batch = layers.iter().map(Vec::len).max().unwrap_or(1);
            next.extend(std::iter::repeat_n(c.len, batch));
        }
        let mut split: Vec<_> = split.into_iter().map(Vec::into_iter).collect();
        let mut out = Vec::with_capacity(layers.len());
        for (i, attention) in layers.iter().enumerate() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for layers in &mut split {
                for [x, y] in layers.next().expect("one entry per layer") {
                    a.push(x);
                    b.push(y);
                }
            }
            if a.len() != next.len() {
                return Err(Error::Invalid(format!("layer {i}: caches of different batch sizes across layers")));
            }
            let rows = |kv, keep| RowsCache::stack(kv, next.clone(), keep);
            out.push(match attention {
                LayerAttention::Full | LayerAttention::Routed(_) => LayerCache::Rows(rows(a, None)),
                LayerAttention::Sliding(w) => LayerCache::Rows(rows(a, Some(*w))),
                LayerAttention::HeadMixed { window, .. } => {
                    LayerCache::MixedRows { full: rows(a, None), sliding: rows(b, Some(*window)) }
                }
            });
        }
        Ok(Self { layers: out, len: 0, rows: Some(next), pad: Vec::new() })
    }

    /// A ragged batch's next position per row ([`Self::stack`], [`Self::prompts`]); `None` when
    /// every row is at [`Self::len`].
    pub fn row_positions(&self) -> Option<&[usize]> {
        self.rows.as_deref()
    }

    /// The positions of a ragged batch's next `len` columns, row-major (`[rows * len]`): a row's
    /// padding columns take position 0 (nothing sees them), its tokens count on from its next
    /// position. `None` when the batch is not ragged.
    pub fn chunk_positions(&self, len: usize) -> Option<Vec<usize>> {
        let rows = self.rows.as_ref()?;
        let mut out = Vec::with_capacity(rows.len() * len);
        for (r, &next) in rows.iter().enumerate() {
            let pad = self.pad.get(r).map_or(0, |&p| p.min(len));
            out.extend(std::iter::repeat_n(0, pad));
            out.extend(next..next + len - pad);
        }
        Some(out)
    }

    /// Positions processed so far (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The caches tiled `n` times along the batch: row `i` of the result continues row `i % b`
    /// (one context's cache, copied for several continuations).
    pub fn repeat(&self, n: usize) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|layer| match layer {
                LayerCache::Full(c) => LayerCache::Full(c.repeat(n)),
                LayerCache::Ring(c) => LayerCache::Ring(c.repeat(n)),
                LayerCache::Mixed { full, ring } => LayerCache::Mixed { full: full.repeat(n), ring: ring.repeat(n) },
                LayerCache::Rows(c) => LayerCache::Rows(c.repeat(n)),
                LayerCache::MixedRows { full, sliding } => {
                    LayerCache::MixedRows { full: full.repeat(n), sliding: sliding.repeat(n) }
                }
            })
            .collect();
        let cycle = |x: &[usize]| -> Vec<usize> { x.iter().copied().cycle().take(x.len() * n).collect() };
        Self { layers, len: self.len, rows: self.rows.as_deref().map(cycle), pad: cycle(&self.pad) }
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
        if let Some(rows) = &mut self.rows {
            for (r, next) in rows.iter_mut().enumerate() {
                let pad = self.pad.get_mut(r).map_or(0, |p| std::mem::replace(p, p.saturating_sub(n)).min(n));
                *next += n - pad;
            }
        }
    }
}
