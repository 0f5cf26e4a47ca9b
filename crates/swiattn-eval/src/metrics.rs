//! Multiple-choice metrics as lm-evaluation-harness computes them: `acc` picks the choice of
//! highest log-likelihood, `acc_norm` the highest log-likelihood per character of the continuation;
//! ties go to the first choice (numpy's argmax). Standard errors are the sample standard deviation
//! over questions divided by √n.

use serde::Serialize;

use crate::request::Question;
use crate::score::Scored;

/// One question's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub doc_id: u64,
    pub label: usize,
    /// Argmax of the log-likelihoods.
    pub pick: usize,
    /// Argmax of the log-likelihoods per continuation character.
    pub pick_norm: usize,
    pub logprobs: Vec<f64>,
    /// Characters of each continuation (acc_norm's denominators).
    pub chars: Vec<usize>,
}

/// A metric's mean and standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub stderr: f64,
    pub n: usize,
}

impl Estimate {
    pub fn of(samples: impl IntoIterator<Item = f64>) -> Self {
        let samples: Vec<f64> = samples.into_iter().collect();
        let n = samples.len();
        let mean = samples.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 { samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Self { value: mean, stderr: (var / n.max(1) as f64).sqrt(), n }
    }
}

fn argmax(values: impl IntoIterator<Item = f64>) -> usize {
    values.into_iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (i, v)| if v > best.1 { (i, v) } else { best }).0
}

/// Each question's decision from the scores of its choices (`scores[q][c]`).
pub fn decide(questions: &[Question], scores: &[Vec<Scored>]) -> Vec<Decision> {
    questions
        .iter()
        .zip(scores)
        .map(|(q, s)| {
            let logprobs: Vec<f64> = s.iter().map(|x| x.logprob).collect();
            let chars: Vec<usize> = q.choices.iter().map(|c| c.continuation.chars().count()).collect();
            let per_char = logprobs.iter().zip(&chars).map(|(lp, &n)| lp / n.max(1) as f64);
            Decision {
                doc_id: q.doc_id,
                label: q.label,
                pick: argmax(logprobs.iter().copied()),
                pick_norm: argmax(per_char),
                logprobs,
                chars,
            }
        })
        .collect()
}

/// `acc` and `acc_norm` over the decisions.
pub fn accuracy(decisions: &[Decision]) -> (Estimate, Estimate) {
    let hit = |pick: usize, label: usize| f64::from(u8::from(pick == label));
    (
        Estimate::of(decisions.iter().map(|d| hit(d.pick, d.label))),
        Estimate::of(decisions.iter().map(|d| hit(d.pick_norm, d.label))),
    )
}
