//! Ring-buffer KV cache for sliding-window layers: O(w) memory however long the sequence.
//!
//! Slot `p % w` holds position `p`; after `len` positions the ring holds the last
//! `min(len, w)` of them. A chunk of new tokens at positions `len..len + n` attends to the ring's
//! contents in position order followed by its own keys — every key any of its queries can see
//! under the window predicate — and is then written into its slots.

use burn::tensor::Tensor;

use crate::attention::Window;

/// The last `w` positions' keys and values, `[batch, kv_heads, w, head_dim]` each.
#[derive(Clone, Debug)]
pub struct RingCache {
    window: Window,
    kv: Option<(Tensor<4>, Tensor<4>)>,
    len: usize,
}

impl RingCache {
    pub fn new(window: Window) -> Self {
        Self { window, kv: None, len: 0 }
    }

    /// Positions seen so far (not all of them are kept).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This cache tiled `n` times along the batch.
    pub fn repeat(&self, n: usize) -> Self {
        let kv = self.kv.clone().map(|(k, v)| (k.repeat_dim(0, n), v.repeat_dim(0, n)));
        Self { window: self.window, kv, len: self.len }
    }

    /// The held keys and values in position order (`[batch, kv_heads, held, head_dim]`), if any.
    pub fn kv(&self) -> Option<(Tensor<4>, Tensor<4>)> {
        let (k, v) = self.kv.as_ref().filter(|_| self.len > 0)?;
        Some((self.ordered(k.clone()), self.ordered(v.clone())))
    }

    /// Allocated slots (for memory accounting): never more than `w`.
    pub fn capacity(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    /// Positions currently held, oldest first.
    pub fn held(&self) -> std::ops::Range<usize> {
        self.len.saturating_sub(self.window.size())..self.len
    }

    /// Extend with `k`, `v` (`[batch, kv_heads, new, head_dim]`, positions `len..len + new`).
    ///
    /// Returns the keys and values to attend to — the held positions in order, then the new ones —
    /// and the position of the first of them.
    pub fn extend(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>, usize) {
        let [b, h, new, d] = k.dims();
        let held = self.held();
        let (keys, values) = match &self.kv {
            Some((rk, rv)) if !held.is_empty() => (
                Tensor::cat(vec![self.ordered(rk.clone()), k.clone()], 2),
                Tensor::cat(vec![self.ordered(rv.clone()), v.clone()], 2),
            ),
            _ => (k.clone(), v.clone()),
        };
        let first = held.start;

        let w = self.window.size();
        let (mut rk, mut rv) = self.kv.take().unwrap_or_else(|| {
            let zeros = |x: &Tensor<4>| Tensor::zeros([b, h, w, d], (&x.device(), x.dtype()));
            (zeros(&k), zeros(&v))
        });
        // Only the last `w` new positions survive; write them slot by slot-run (at most two runs).
        let keep = new.min(w);
        let mut p = self.len + new - keep;
        while p < self.len + new {
            let slot = p % w;
            let run = (w - slot).min(self.len + new - p);
            let src = p - self.len;
            rk = rk.slice_assign(
                [0..b, 0..h, slot..slot + run, 0..d],
                k.clone().slice([0..b, 0..h, src..src + run, 0..d]),
            );
            rv = rv.slice_assign(
                [0..b, 0..h, slot..slot + run, 0..d],
                v.clone().slice([0..b, 0..h, src..src + run, 0..d]),
            );
            p += run;
        }
        self.kv = Some((rk, rv));
        self.len += new;
        (keys, values, first)
    }

    /// The held positions of a ring tensor, oldest first.
    fn ordered(&self, ring: Tensor<4>) -> Tensor<4> {
        let [b, h, w, d] = ring.dims();
        let held = self.held();
        if held.len() < w {
            // Not wrapped yet: positions 0..len sit in slots 0..len.
            return ring.slice([0..b, 0..h, 0..held.len(), 0..d]);
        }
        let start = held.start % w;
        if start == 0 {
            return ring;
        }
        Tensor::cat(vec![ring.clone().slice([0..b, 0..h, start..w, 0..d]), ring.slice([0..b, 0..h, 0..start, 0..d])], 2)
    }
}
