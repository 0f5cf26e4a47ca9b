//! Full KV cache: every position's keys and values, preallocated and grown by doubling, so that
//! appending a token is amortized O(1) copies (burn's `MhaCache` concatenates every step).

use burn::tensor::Tensor;

/// Keys and values of positions `0..len`, `[batch, kv_heads, capacity, head_dim]` each.
#[derive(Clone, Debug, Default)]
pub struct FullCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
    len: usize,
}

impl FullCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A cache holding `k`, `v` (`[batch, kv_heads, len, head_dim]`, positions `0..len`).
    pub fn from_kv(k: Tensor<4>, v: Tensor<4>) -> Self {
        let len = k.dims()[2];
        Self { kv: Some((k, v)), len }
    }

    /// This cache tiled `n` times along the batch.
    pub fn repeat(&self, n: usize) -> Self {
        let kv = self.kv.clone().map(|(k, v)| (k.repeat_dim(0, n), v.repeat_dim(0, n)));
        Self { kv, len: self.len }
    }

    /// Allocated positions (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    /// The cached keys and values `[batch, kv_heads, len, head_dim]`, if any.
    pub fn kv(&self) -> Option<(Tensor<4>, Tensor<4>)> {
        let (k, v) = self.kv.as_ref().filter(|_| self.len > 0)?;
        let [b, h, _, d] = k.dims();
        let range = [0..b, 0..h, 0..self.len, 0..d];
        Some((k.clone().slice(range.clone()), v.clone().slice(range)))
    }

    /// Append `k`, `v` (`[batch, kv_heads, new, head_dim]`) and return all cached keys and values
    /// `[batch, kv_heads, len, head_dim]`, positions `0..len`.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, h, new, d] = k.dims();
        let end = self.len + new;
        let (ck, cv) = match self.kv.take() {
            Some((ck, cv)) if ck.dims()[2] >= end => (ck, cv),
            old => {
                let capacity = end.next_power_of_two().max(16);
                let grow = |old: Option<Tensor<4>>, like: &Tensor<4>| {
                    let fresh = Tensor::zeros([b, h, capacity, d], (&like.device(), like.dtype()));
                    match old {
                        Some(old) if self.len > 0 => {
                            let kept = old.slice([0..b, 0..h, 0..self.len, 0..d]);
                            fresh.slice_assign([0..b, 0..h, 0..self.len, 0..d], kept)
                        }
                        _ => fresh,
                    }
                };
                let (ok, ov) = old.unzip();
                (grow(ok, &k), grow(ov, &v))
            }
        };
        let ck = ck.slice_assign([0..b, 0..h, self.len..end, 0..d], k);
        let cv = cv.slice_assign([0..b, 0..h, self.len..end, 0..d], v);
        self.len = end;
        let out = (ck.clone().slice([0..b, 0..h, 0..end, 0..d]), cv.clone().slice([0..b, 0..h, 0..end, 0..d]));
        self.kv = Some((ck, cv));
        out
    }
}
