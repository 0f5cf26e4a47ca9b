//! Log-likelihoods of continuations, batched.
//!
//! Tokenization follows lm-evaluation-harness: trailing whitespace of the context moves to the
//! continuation, the pair is encoded whole and the continuation's tokens are those past the
//! context's own encoding (so a merge across the boundary is scored as the continuation); an empty
//! context becomes the end-of-text token; sequences longer than `max_len + 1` tokens lose tokens
//! on the left. Requests are scored longest first, `batch` at a time, padded on the right (causal
//! attention keeps padding out of every scored position), with one read-back per batch.
//!
//! [`score_shared`] scores the choices of one question from one pass over their shared context:
//! the context runs once into a KV cache, the cache is copied for each choice, and the
//! continuations run as one batch from it — the same log-likelihoods (the three-path agreement of
//! full, chunked and cached forwards), with the context computed once instead of once per choice.

use burn::tensor::{DType, Tensor, activation::log_softmax};
use swiattn_core::host;
use swiattn_core::model::{Real, Transformer};
use swiattn_core::score::target_logprobs;
use swiattn_core::{Error, Result};
use tokenizers::Tokenizer;

use crate::request::Request;

/// The score of one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// `Σ log p(continuation token | everything before it)`.
    pub logprob: f64,
    /// Whether every continuation token is the model's argmax (lm-eval's `is_greedy`).
    pub greedy: bool,
    /// Continuation tokens scored.
    pub tokens: usize,
}

/// A request's tokens: the model's input and how many of its last positions are scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Context then continuation tokens (all of them; the input is all but the last).
    pub ids: Vec<u32>,
    /// Number of continuation tokens (the last `scored` of `ids`).
    pub scored: usize,
}

impl Encoded {
    /// The tokens before the scored ones.
    pub fn context(&self) -> &[u32] {
        &self.ids[..self.ids.len() - self.scored]
    }
}

/// The context tokens every choice of a question shares, if they share one ([`score_shared`] runs
/// it once; otherwise each choice runs whole).
pub fn shared_context(choices: &[Encoded]) -> Option<&[u32]> {
    let first = choices.first()?.context();
    choices.iter().all(|c| c.context() == first).then_some(first)
}

/// lm-eval's encoding of a (context, continuation) pair; `eot` stands in for an empty context.
pub fn encode_pair(tokenizer: &Tokenizer, request: &Request, eot: u32, max_len: usize) -> Result<Encoded> {
    let encode = |text: &str| -> Result<Vec<u32>> {
        tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Invalid(format!("tokenization failed: {e}")))
    };
    let trimmed = request.context.trim_end();
    let (context, continuation) = (trimmed, format!("{}{}", &request.context[trimmed.len()..], request.continuation));
    let (mut context_ids, continuation_ids) = if context.is_empty() {
        (vec![eot], encode(&continuation)?)
    } else {
        let whole = encode(&format!("{context}{continuation}"))?;
        let context_ids = encode(context)?;
        let split = context_ids.len().min(whole.len());
        (whole[..split].to_vec(), whole[split..].to_vec())
    };
    if continuation_ids.is_empty() {
        return Err(Error::Invalid(format!("the continuation {:?} has no tokens of its own", request.continuation)));
    }
    if continuation_ids.len() > max_len {
        return Err(Error::Invalid(format!(
            "the continuation has {} tokens, more than the {max_len} the model is evaluated at",
            continuation_ids.len()
        )));
    }
    let scored = continuation_ids.len();
    context_ids.extend(continuation_ids);
    let keep = context_ids.len().min(max_len + 1);
    Ok(Encoded { ids: context_ids[context_ids.len() - keep..].to_vec(), scored })
}

/// Score encoded requests on `model` (routed layers decided by its own router), `batch`
/// sequences per forward; `progress(done)` after each batch.
pub fn score(
    model: &Transformer,
    encoded: &[Encoded],
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Scored>> {
    model.check_routable("score")?;
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
    let mut out = vec![Scored { logprob: 0.0, greedy: false, tokens: 0 }; encoded.len()];
    let mut done = 0;
    for group in order.chunks(batch.max(1)) {
        let len = group.iter().map(|&i| encoded[i].ids.len() - 1).max().unwrap_or(0);
        let (mut input, mut target) = (Vec::with_capacity(group.len() * len), Vec::with_capacity(group.len() * len));
        for &i in group {
            let ids = &encoded[i].ids;
            let n = ids.len() - 1;
            input.extend(ids[..n].iter().copied().chain(std::iter::repeat_n(0, len - n)));
            target.extend(ids[1..].iter().copied().chain(std::iter::repeat_n(0, len - n)));
        }
        let b = group.len();
        let real = Real::leading(group.iter().map(|&i| encoded[i].ids.len() - 1));
        let hidden = model.hidden_states(model.token_tensor(&input, [b, len])?, &mut model.routes(real), None)?;
        let (picked, greedy) = pick(model, hidden, &target, [b, len])?;
        for (row, &i) in group.iter().enumerate() {
            let Encoded { ids, scored } = &encoded[i];
            let n = ids.len() - 1;
            let positions = row * len + n - scored..row * len + n;
            out[i] = Scored {
                logprob: positions.clone().map(|p| picked[p] as f64).sum(),
                greedy: positions.clone().all(|p| greedy[p]),
                tokens: *scored,
            };
        }
        done += b;
        progress(done);
    }
    Ok(out)
}

/// The log-probability of each `target` token under `hidden`'s logits and whether it is the
/// argmax, `[batch, len]` row-major, in one read-back.
fn pick(model: &Transformer, hidden: Tensor<3>, target: &[u32], [b, len]: [usize; 2]) -> Result<(Vec<f32>, Vec<bool>)> {
    let logits = model.logits(hidden);
    let target = model.token_tensor(target, [b, len])?;
    let greedy = logits.clone().argmax(2).squeeze_dim(2).equal(target.clone()).float();
    let picked = target_logprobs(logits, target);
    let both = host::floats(Tensor::stack::<3>(vec![picked, greedy], 2), "scores")?;
    Ok((both.iter().step_by(2).copied().collect(), both.iter().skip(1).step_by(2).map(|&g| g > 0.5).collect()))
}

/// Score each question's choices (`questions[q]` = its choices' encodings), sharing the context
/// computation when every choice has the same context tokens (else as [`score`] does);
/// `progress(done)` counts questions.
pub fn score_shared(
    model: &Transformer,
    questions: &[Vec<Encoded>],
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<Scored>>> {
    model.check_routable("score")?;
    let mut out = Vec::with_capacity(questions.len());
    for (q, choices) in questions.iter().enumerate() {
        let Some(context) = shared_context(choices) else {
            out.push(score(model, choices, choices.len(), |_| {})?);
            progress(q + 1);
            continue;
        };
        // The context once: the last position predicts every choice's first token.
        let p = context.len();
        let mut cache = model.new_cache();
        let hidden = model.hidden_states(
            model.token_tensor(context, [1, p])?,
            &mut model.routes(Real::All),
            Some(&mut cache),
        )?;
        let [_, _, h] = hidden.dims();
        let last = log_softmax(model.logits(hidden.slice([0..1, p - 1..p, 0..h])).cast(DType::F32), 2);
        let first = host::floats(last, "scores")?;
        // The first index of the largest, as argmax takes it.
        let first_argmax = (0..first.len()).fold(0, |best, i| if first[i] > first[best] { i } else { best }) as i64;
        let mut scored: Vec<Scored> = choices
            .iter()
            .map(|c| {
                let t = c.ids[c.ids.len() - c.scored];
                Scored { logprob: first[t as usize] as f64, greedy: first_argmax == t as i64, tokens: c.scored }
            })
            .collect();
        // Then every choice's remaining tokens, one row each, from copies of the context's cache.
        let len = choices.iter().map(|c| c.scored - 1).max().unwrap_or(0);
        if len > 0 {
            let b = choices.len();
            let (mut input, mut target) = (Vec::with_capacity(b * len), Vec::with_capacity(b * len));
            for c in choices {
                let cont = &c.ids[c.ids.len() - c.scored..];
                let n = c.scored - 1;
                input.extend(cont[..n].iter().copied().chain(std::iter::repeat_n(0, len - n)));
                target.extend(cont[1..].iter().copied().chain(std::iter::repeat_n(0, len - n)));
            }
            let mut copies = cache.repeat(b);
            let tokens = model.token_tensor(&input, [b, len])?;
            let real = Real::leading(choices.iter().map(|c| c.scored - 1));
            let hidden = model.hidden_states(tokens, &mut model.routes(real), Some(&mut copies))?;
            let (picked, greedy) = pick(model, hidden, &target, [b, len])?;
            for (row, (c, s)) in choices.iter().zip(&mut scored).enumerate() {
                let positions = row * len..row * len + c.scored - 1;
                s.logprob += positions.clone().map(|i| picked[i] as f64).sum::<f64>();
                s.greedy &= positions.into_iter().all(|i| greedy[i]);
            }
        }
        out.push(scored);
        progress(q + 1);
    }
    Ok(out)
}
