//! Per-token log-likelihoods of a text under a model, computed in chunks through the KV cache so
//! that memory stays bounded however long the text is.

use burn::tensor::{DType, Int, Tensor, activation::log_softmax};

use crate::model::{Real, Transformer};
use crate::{Error, Result};

/// `log p(target[b, t] | logits[b, t])`, `[batch, len]` from logits `[batch, len, vocab]`: the
/// one log-softmax that scores, losses and NLLs go through, in fp32 whatever the model's dtype.
pub fn target_logprobs(logits: Tensor<3>, target: Tensor<2, Int>) -> Tensor<2> {
    log_softmax(logits.cast(DType::F32), 2).gather(2, target.unsqueeze_dim(2)).squeeze_dim(2)
}

/// `-log p(ids[t + 1] | ids[..=t])` for every `t < len - 1`, feeding `chunk` tokens at a time
/// (chunked prefill). `progress` is called with the number of tokens done after each chunk.
/// Routed layers are decided by the model's own router ([`Transformer::routes`]).
pub fn token_nll(model: &Transformer, ids: &[u32], chunk: usize, mut progress: impl FnMut(usize)) -> Result<Vec<f64>> {
    if ids.len() < 2 {
        return Err(Error::Invalid(format!("need at least 2 tokens to score, got {}", ids.len())));
    }
    model.check_routable("score")?;
    let chunk = chunk.max(1);
    let mut cache = model.new_cache();
    let mut nll = Vec::with_capacity(ids.len() - 1);
    for start in (0..ids.len() - 1).step_by(chunk) {
        let end = (start + chunk).min(ids.len() - 1);
        let n = end - start;
        let logits = model.forward_cached(
            model.token_tensor(&ids[start..end], [1, n])?,
            &mut model.routes(Real::All),
            &mut cache,
        )?;
        let target = model.token_tensor(&ids[start + 1..end + 1], [1, n])?;
        let picked = crate::host::floats(target_logprobs(logits, target), "log-probabilities")?;
        nll.extend(picked.into_iter().map(|lp| -(lp as f64)));
        progress(end);
    }
    Ok(nll)
}
