//! Scoring a prepared task on a model: multiple-choice accuracy, LAMBADA-style completion or
//! rolling perplexity, whichever the task's requests are.

use std::ops::Range;

use swiattn_core::model::Transformer;
use swiattn_core::{Error, Result};
use tokenizers::Tokenizer;

use crate::metrics::{Decision, accuracy, completion, decide};
use crate::results::Metric;
use crate::rolling::{Perplexity, windows};
use crate::score::{Encoded, Scored, encode_pair, score, score_shared, shared_context};
use crate::task::Prepared;

/// How requests are encoded and batched.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Sequences per forward call.
    pub batch: usize,
    /// Context the model is evaluated at (longer requests lose tokens on the left; documents are
    /// cut into rolling windows of this many predicted tokens).
    pub max_len: usize,
    /// The end-of-text token: the context of an empty context and of a document's first token.
    pub eot: u32,
    /// Run a multiple-choice question's shared context once for all its choices
    /// ([`crate::score::score_shared`]) instead of once per choice in batches.
    pub share_context: bool,
}

/// A scored task.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub metrics: Vec<Metric>,
    /// Questions or documents scored.
    pub n: usize,
    /// The positions every forward pass ran, as `start..end` of its sequence (for the attention
    /// cost: a continuation after a cached context runs `p..p + c`).
    pub spans: Vec<Range<usize>>,
    /// Per-question decisions of a multiple-choice task.
    pub decisions: Vec<Decision>,
}

/// Score `prepared` on `model`; `progress(done, total)` after each batch of sequences.
pub fn evaluate(
    prepared: &Prepared,
    model: &Transformer,
    tokenizer: &Tokenizer,
    options: Options,
    progress: impl FnMut(usize, usize),
) -> Result<Outcome> {
    match prepared {
        Prepared::Documents(texts) => {
            let tokens: Vec<Vec<u32>> = texts
                .iter()
                .map(|t| tokenizer.encode(t.as_str(), false).map(|e| e.get_ids().to_vec()))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Invalid(format!("tokenization failed: {e}")))?;
            let per_doc: Vec<Vec<Encoded>> = tokens.iter().map(|t| windows(t, options.eot, options.max_len)).collect();
            let flat: Vec<Encoded> = per_doc.iter().flatten().cloned().collect();
            let scored = run(model, &flat, options, progress)?;
            let mut lls = Vec::with_capacity(texts.len());
            let mut at = 0;
            for doc in &per_doc {
                lls.push(scored[at..at + doc.len()].iter().map(|s| s.logprob).sum::<f64>());
                at += doc.len();
            }
            let p =
                Perplexity::of(texts.iter().zip(&tokens).zip(&lls).map(|((t, ids), &ll)| (t.as_str(), ids.len(), ll)));
            let metrics = vec![
                Metric::value("word_perplexity", p.word_perplexity),
                Metric::value("byte_perplexity", p.byte_perplexity),
                Metric::value("bits_per_byte", p.bits_per_byte),
                Metric::value("token_perplexity", (-p.loglikelihood / p.tokens.max(1) as f64).exp()),
            ];
            Ok(Outcome { metrics, n: texts.len(), spans: spans(&flat), decisions: Vec::new() })
        }
        Prepared::Questions(questions) => {
            let per_question: Vec<Vec<Encoded>> = questions
                .iter()
                .map(|q| q.choices.iter().map(|r| encode_pair(tokenizer, r, options.eot, options.max_len)).collect())
                .collect::<Result<_>>()?;
            let single = questions.iter().all(|q| q.choices.len() == 1);
            let (scored, spans): (Vec<Scored>, Vec<Range<usize>>) = if options.share_context && !single {
                let mut progress = progress;
                let n = per_question.len();
                let scored = score_shared(model, &per_question, |done| progress(done, n))?;
                (scored.into_iter().flatten().collect(), shared_spans(&per_question))
            } else {
                let encoded: Vec<Encoded> = per_question.into_iter().flatten().collect();
                (run(model, &encoded, options, progress)?, spans(&encoded))
            };
            if single {
                let c = completion(questions, &scored);
                let metrics = vec![
                    Metric::mean("acc", c.acc),
                    Metric::value("perplexity", c.perplexity),
                    Metric::value("bits_per_byte", c.bits_per_byte),
                ];
                return Ok(Outcome { metrics, n: questions.len(), spans, decisions: Vec::new() });
            }
            let mut by_question = Vec::with_capacity(questions.len());
            let mut at = 0;
            for q in questions {
                by_question.push(scored[at..at + q.choices.len()].to_vec());
                at += q.choices.len();
            }
            let decisions = decide(questions, &by_question);
            let (acc, acc_norm) = accuracy(&decisions);
            let metrics = vec![Metric::mean("acc", acc), Metric::mean("acc_norm", acc_norm)];
            Ok(Outcome { metrics, n: questions.len(), spans, decisions })
        }
    }
}

fn run(
    model: &Transformer,
    encoded: &[Encoded],
    options: Options,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<crate::score::Scored>> {
    score(model, encoded, options.batch, |done| progress(done, encoded.len()))
}

/// The positions each sequence runs (all but its last token).
fn spans(encoded: &[Encoded]) -> Vec<Range<usize>> {
    encoded.iter().map(|e| 0..e.ids.len() - 1).collect()
}

/// The positions shared-context scoring runs: each question's context once, then each choice's
/// continuation inputs after it (or every choice whole where contexts differ).
fn shared_spans(questions: &[Vec<Encoded>]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    for choices in questions {
        let Some(context) = shared_context(choices) else {
            spans.extend(self::spans(choices));
            continue;
        };
        let p = context.len();
        spans.push(0..p);
        spans.extend(choices.iter().filter(|c| c.scored > 1).map(|c| p..p + c.scored - 1));
    }
    spans
}
