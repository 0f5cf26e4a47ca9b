//! KV caches for incremental decoding, one per layer, chosen by the layer's attention:
//!
//! | layer | cache | memory |
//! |---|---|---|
//! | full | [`FullCache`] | O(n) |
//! | sliding | [`RingCache`] | O(w) |
//! | routed | [`FullCache`]: any later token may route to full attention | O(n) |
//! | head-mixed | full cache for full heads, ring for sliding heads | O(n · h_fa + w · h_swa) |

mod full;
mod ring;

pub use full::FullCache;
pub use ring::RingCache;

use crate::model::LayerAttention;

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
        }
    }
}

/// The caches of every layer of a model, and how many positions they have seen.
#[derive(Clone, Debug)]
pub struct ModelCache {
    pub layers: Vec<LayerCache>,
    len: usize,
}

impl ModelCache {
    /// Empty caches for a model whose layers have these attention kinds.
    pub fn new(layers: &[LayerAttention]) -> Self {
        Self { layers: layers.iter().map(LayerCache::for_layer).collect(), len: 0 }
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
            })
            .collect();
        Self { layers, len: self.len }
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
