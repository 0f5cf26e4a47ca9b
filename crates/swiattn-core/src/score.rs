//! Per-token log-likelihoods of a text under a model, computed in chunks through the KV cache so
//! that memory stays bounded however long the text is.

use burn::tensor::{Int, Tensor, TensorData, activation::log_softmax};

use crate::model::{Routes, Transformer};
use crate::{Error, Result};

/// `-log p(ids[t + 1] | ids[..=t])` for every `t < len - 1`, feeding `chunk` tokens at a time
/// (chunked prefill). `progress` is called with the number of tokens done after each chunk.
///
/// Models with routed layers need per-token routes from a router; they are rejected here.
pub fn token_nll(model: &Transformer, ids: &[u32], chunk: usize, mut progress: impl FnMut(usize)) -> Result<Vec<f64>> {
    if ids.len() < 2 {
        return Err(Error::Invalid(format!("need at least 2 tokens to score, got {}", ids.len())));
    }
    if model.layer_attention().iter().any(|l| l.type_name() == "routed_attention") {
        return Err(Error::Invalid(
            "routed layers need routes from a router; score with another attention pattern".into(),
        ));
    }
    let device = model.model.embed_tokens.weight.val().device();
    let chunk = chunk.max(1);
    let mut cache = model.new_cache();
    let mut nll = Vec::with_capacity(ids.len() - 1);
    for start in (0..ids.len() - 1).step_by(chunk) {
        let end = (start + chunk).min(ids.len() - 1);
        let input: Vec<i64> = ids[start..end].iter().map(|&t| t as i64).collect();
        let target: Vec<i64> = ids[start + 1..end + 1].iter().map(|&t| t as i64).collect();
        let n = end - start;
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(input, [1, n]), &device);
        let logits = model.forward_cached(tokens, &Routes::none(), &mut cache)?;
        let logp = log_softmax(logits.cast(burn::tensor::DType::F32), 2);
        let target = Tensor::<3, Int>::from_data(TensorData::new(target, [1, n, 1]), &device);
        let picked: Vec<f32> = logp
            .gather(2, target)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| Error::Invalid(format!("could not read log-probabilities: {e:?}")))?;
        nll.extend(picked.into_iter().map(|lp| -(lp as f64)));
        progress(end);
    }
    Ok(nll)
}
