//! `generate_until`: greedy decoding through the KV cache — the context is prefilled in chunks,
//! then one token at a time is appended — until a stop string appears in the decoded text, an
//! end-of-text token is produced, or `max_new_tokens` are out. The text is cut before the first
//! stop string, as lm-evaluation-harness cuts it.
//!
//! [`generate`] decodes one context; [`generate_batch`] decodes many together: the contexts are
//! prefilled as one ragged batch ([`Transformer::prefill_batch`]: left-padded together on the
//! fused kernels, each on its own elsewhere) and every step feeds one token per row, each at its
//! own position — the same tokens as one at a time, with one forward and one read-back per step
//! for the batch.

use burn::tensor::{Int, Tensor};
use swiattn_core::model::{Real, Transformer};
use swiattn_core::{Error, Result};

use tokenizers::Tokenizer;

/// How to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct Until {
    pub stop: Vec<String>,
    pub max_new_tokens: usize,
    /// Token ids that end the generation (the end-of-text tokens).
    pub eos: Vec<u32>,
    /// Prefill chunk length; `None`: the model's own ([`Transformer::prefill_chunk`]: the whole
    /// context on the fused kernels).
    pub chunk: Option<usize>,
}

impl Until {
    /// The prefill chunk for `model`: the set one, else the model's own.
    pub fn chunk_for(&self, model: &Transformer) -> usize {
        self.chunk.unwrap_or_else(|| model.prefill_chunk()).max(1)
    }
}

/// The generated token ids and their text (cut before the first stop string).
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub ids: Vec<u32>,
    pub text: String,
}

/// Greedily continue `context` (token ids, at least one).
pub fn generate(model: &Transformer, tokenizer: &Tokenizer, context: &[u32], until: &Until) -> Result<Generated> {
    model.check_routable("generate")?;
    let (mut cache, mut logits) = model.prefill(context, until.chunk_for(model))?;
    let mut row = Row::default();
    loop {
        let next = read_ids(logits.argmax(1))?[0];
        if row.push(next, tokenizer, until)? {
            return Ok(row.done.expect("set when finished"));
        }
        let token = model.token_tensor(&[next], [1, 1])?;
        logits = model.forward_cached_last(token, &mut model.routes(Real::All), &mut cache)?;
    }
}

/// Greedily continue every context (token ids, at least one each), `batch` contexts decoded
/// together; the results are in the contexts' order.
pub fn generate_batch(
    model: &Transformer,
    tokenizer: &Tokenizer,
    contexts: &[Vec<u32>],
    until: &Until,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Generated>> {
    model.check_routable("generate")?;
    let mut out = Vec::with_capacity(contexts.len());
    for group in contexts.chunks(batch.max(1)) {
        let prompts: Vec<&[u32]> = group.iter().map(Vec::as_slice).collect();
        let (mut cache, mut logits) = model.prefill_batch(&prompts, until.chunk_for(model))?;
        let b = logits.dims()[0];
        let mut rows: Vec<Row> = group.iter().map(|_| Row::default()).collect();
        loop {
            let next = read_ids(logits.argmax(1))?;
            for (row, &id) in rows.iter_mut().zip(&next) {
                if row.done.is_none() {
                    row.push(id, tokenizer, until)?;
                }
            }
            if rows.iter().all(|r| r.done.is_some()) {
                break;
            }
            // Finished rows decode on (their tokens are ignored, their routes not counted): the
            // batch keeps its shape.
            let tokens = model.token_tensor(&next, [b, 1])?;
            let real = Real::leading(rows.iter().map(|r| usize::from(r.done.is_none())));
            logits = model.forward_cached_last(tokens, &mut model.routes(real), &mut cache)?;
        }
        out.extend(rows.into_iter().map(|r| r.done.expect("every row finished")));
        progress(out.len());
    }
    Ok(out)
}

/// One sequence's generated tokens so far, and its result once finished.
#[derive(Default)]
struct Row {
    ids: Vec<u32>,
    done: Option<Generated>,
}

impl Row {
    /// Take the next greedy token; whether the row is finished.
    fn push(&mut self, next: u32, tokenizer: &Tokenizer, until: &Until) -> Result<bool> {
        let decode =
            |ids: &[u32]| tokenizer.decode(ids, true).map_err(|e| Error::Invalid(format!("decoding failed: {e}")));
        if until.eos.contains(&next) {
            self.done = Some(Generated { ids: self.ids.clone(), text: decode(&self.ids)? });
            return Ok(true);
        }
        self.ids.push(next);
        let text = decode(&self.ids)?;
        if let Some(cut) = until.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            self.done = Some(Generated { ids: self.ids.clone(), text: text[..cut].to_string() });
        } else if self.ids.len() >= until.max_new_tokens {
            self.done = Some(Generated { ids: self.ids.clone(), text });
        }
        Ok(self.done.is_some())
    }
}

fn read_ids<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<u32>> {
    Ok(swiattn_core::host::ints(t, "generated tokens")?.into_iter().map(|t| t as u32).collect())
}
