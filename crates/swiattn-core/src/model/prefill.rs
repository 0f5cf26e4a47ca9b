//! Prefill: prompts through the KV cache, ready for (ragged batched) decoding.
//!
//! | call | how | where |
//! |---|---|---|
//! | [`Transformer::prefill`] | one prompt, in chunks | everywhere |
//! | [`Transformer::prefill_padded`] | prompts of different lengths right-aligned in one `[batch, longest]` batch ([`ModelCache::prompts`]) | the fused kernels: one forward for the batch, padding never seen |
//! | [`Transformer::prefill_each`] | each prompt alone, caches stacked ([`ModelCache::stack`]) | the tensor-op paths: no padded rows in their masks |
//!
//! [`Transformer::prefill_batch`] picks between the last two.

use burn::tensor::Tensor;

use super::Transformer;
use super::attention::runs_fused;
use super::router::Real;
use crate::cache::ModelCache;
use crate::{Error, Result};

impl Transformer {
    /// `prompt` (token ids, at least one) through a new cache in chunks of at most `chunk` tokens:
    /// the cache and the last position's logits `[1, vocab]`.
    pub fn prefill(&self, prompt: &[u32], chunk: usize) -> Result<(ModelCache, Tensor<2>)> {
        if prompt.is_empty() {
            return Err(Error::Invalid("a prefill needs at least one token".into()));
        }
        let mut cache = self.new_cache();
        let mut last = None;
        for part in prompt.chunks(chunk.max(1)) {
            let tokens = self.token_tensor(part, [1, part.len()])?;
            last = Some(self.forward_cached_last(tokens, &mut self.routes(Real::All), &mut cache)?);
        }
        Ok((cache, last.expect("at least one chunk")))
    }

    /// Prompts of different lengths as one ragged batch: the fused kernels take them
    /// left-padded together ([`Self::prefill_padded`]), the tensor-op paths one by one
    /// ([`Self::prefill_each`]). The cache continues every row at its own position; the logits
    /// `[batch, vocab]` are each prompt's last position's.
    pub fn prefill_batch(&self, prompts: &[&[u32]], chunk: usize) -> Result<(ModelCache, Tensor<2>)> {
        if runs_fused(&self.model.embed_tokens.weight.val().device(), self.arch.head_dim) {
            self.prefill_padded(prompts, chunk)
        } else {
            self.prefill_each(prompts, chunk)
        }
    }

    /// Prompts right-aligned in one `[batch, longest]` token batch (padded on the left with id 0),
    /// fed in chunks of at most `chunk` columns: no query sees a padding column, and positions
    /// count each prompt from its own first token ([`ModelCache::prompts`]).
    pub fn prefill_padded(&self, prompts: &[&[u32]], chunk: usize) -> Result<(ModelCache, Tensor<2>)> {
        let lens: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
        let mut cache = ModelCache::prompts(&lens, self.layer_attention())?;
        let longest = lens.iter().copied().max().unwrap_or(0);
        let mut last = None;
        let mut at = 0;
        while at < longest {
            let end = (at + chunk.max(1)).min(longest);
            let mut ids = Vec::with_capacity(prompts.len() * (end - at));
            let mut real = Vec::with_capacity(prompts.len());
            for prompt in prompts {
                let pad = longest - prompt.len();
                ids.extend((at..end).map(|c| if c < pad { 0 } else { prompt[c - pad] }));
                real.push(pad.clamp(at, end) - at..end - at);
            }
            let tokens = self.token_tensor(&ids, [prompts.len(), end - at])?;
            last = Some(self.forward_cached_last(tokens, &mut self.routes(Real::Rows(real)), &mut cache)?);
            at = end;
        }
        Ok((cache, last.expect("at least one chunk")))
    }

    /// Each prompt through its own cache ([`Self::prefill`]), the caches stacked into one ragged
    /// batch.
    pub fn prefill_each(&self, prompts: &[&[u32]], chunk: usize) -> Result<(ModelCache, Tensor<2>)> {
        let (mut caches, mut last) = (Vec::with_capacity(prompts.len()), Vec::with_capacity(prompts.len()));
        for prompt in prompts {
            let (cache, logits) = self.prefill(prompt, chunk)?;
            caches.push(cache);
            last.push(logits);
        }
        Ok((ModelCache::stack(&caches, self.layer_attention())?, Tensor::cat(last, 0)))
    }
}
