//! `generate_until`: greedy decoding through the KV cache — the context is prefilled in chunks,
//! then one token at a time is appended — until a stop string appears in the decoded text, an
//! end-of-text token is produced, or `max_new_tokens` are out. The text is cut before the first
//! stop string, as lm-evaluation-harness cuts it.

use burn::tensor::{Device, Int, Tensor, TensorData};
use swiattn_core::model::{Routes, Transformer};
use swiattn_core::{Error, Result};
use tokenizers::Tokenizer;

/// How to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct Until {
    pub stop: Vec<String>,
    pub max_new_tokens: usize,
    /// Token ids that end the generation (the end-of-text tokens).
    pub eos: Vec<u32>,
    /// Prefill chunk length.
    pub chunk: usize,
}

/// The generated token ids and their text (cut before the first stop string).
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub ids: Vec<u32>,
    pub text: String,
}

/// Greedily continue `context` (token ids, at least one).
pub fn generate(model: &Transformer, tokenizer: &Tokenizer, context: &[u32], until: &Until) -> Result<Generated> {
    if context.is_empty() {
        return Err(Error::Invalid("generation needs at least one context token".into()));
    }
    if model.layer_attention().iter().any(|l| l.type_name() == "routed_attention") {
        return Err(Error::Invalid("routed layers need routes from a router; generate with a static layout".into()));
    }
    let device: Device = model.model.embed_tokens.weight.val().device();
    let tokens = |ids: &[u32]| {
        let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        Tensor::<2, Int>::from_data(TensorData::new(data, [1, ids.len()]), &device)
    };
    let mut cache = model.new_cache();
    let mut last = None;
    for chunk in context.chunks(until.chunk.max(1)) {
        last = Some(model.forward_cached(tokens(chunk), &Routes::none(), &mut cache)?);
    }
    let mut logits = last.expect("at least one chunk");
    let mut ids = Vec::new();
    loop {
        let [_, len, _] = logits.dims();
        let next = logits.slice([0..1, len - 1..len]).argmax(2).into_data().convert::<i64>();
        let next =
            next.as_slice::<i64>().map_err(|e| Error::Invalid(format!("could not read a token: {e:?}")))?[0] as u32;
        if until.eos.contains(&next) {
            break;
        }
        ids.push(next);
        let text = tokenizer.decode(&ids, true).map_err(|e| Error::Invalid(format!("decoding failed: {e}")))?;
        if let Some(cut) = until.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            return Ok(Generated { ids, text: text[..cut].to_string() });
        }
        if ids.len() >= until.max_new_tokens {
            return Ok(Generated { ids, text });
        }
        logits = model.forward_cached(tokens(&[next]), &Routes::none(), &mut cache)?;
    }
    let text = tokenizer.decode(&ids, true).map_err(|e| Error::Invalid(format!("decoding failed: {e}")))?;
    Ok(Generated { ids, text })
}
