//! Multiple-choice metrics as lm-evaluation-harness computes them (and LAMBADA's, below): `acc` picks the choice of
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
    /// Characters of each choice (acc_norm's denominators).
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
            let chars = q.chars.clone();
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

/// LAMBADA-style metrics of single-continuation requests: `acc` = every continuation token is the
/// model's argmax (lm-eval's `is_greedy`), perplexity = `exp(-mean log-likelihood)` over requests,
/// bits per byte of the continuations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Completion {
    pub acc: Estimate,
    pub perplexity: f64,
    pub bits_per_byte: f64,
}

pub fn completion(questions: &[Question], scores: &[Scored]) -> Completion {
    let n = scores.len().max(1) as f64;
    let ll: f64 = scores.iter().map(|s| s.logprob).sum();
    let bytes: usize = questions.iter().map(|q| q.choices[0].continuation.len()).sum();
    Completion {
        acc: Estimate::of(scores.iter().map(|s| f64::from(u8::from(s.greedy)))),
        perplexity: (-ll / n).exp(),
        bits_per_byte: -ll / bytes.max(1) as f64 / std::f64::consts::LN_2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    fn question(label: usize, continuations: &[&str]) -> Question {
        let choices =
            continuations.iter().map(|c| Request { context: "c".into(), continuation: c.to_string() }).collect();
        Question { doc_id: 0, choices, label, chars: continuations.iter().map(|c| c.chars().count()).collect() }
    }

    fn scored(logprob: f64, greedy: bool) -> Scored {
        Scored { logprob, greedy, tokens: 1 }
    }

    #[test]
    fn acc_norm_divides_by_characters_and_ties_go_first() {
        // " a" (2 chars) at -2.0 beats " bbbbbbb" (8 chars) at -4.0 raw, loses per character.
        let q = question(1, &[" a", " bbbbbbb"]);
        let d = decide(
            &[q.clone(), q],
            &[vec![scored(-2.0, false), scored(-4.0, false)], vec![scored(-1.0, false), scored(-1.0, false)]],
        );
        assert_eq!((d[0].pick, d[0].pick_norm), (0, 1));
        assert_eq!(d[1].pick, 0, "a tie goes to the first choice");
        assert_eq!(d[1].pick_norm, 1, "per character the short choice loses");
        let (acc, norm) = accuracy(&d);
        assert_eq!((acc.value, norm.value, norm.stderr), (0.0, 1.0, 0.0));
        let (half, _) = accuracy(&[d[0].clone(), Decision { pick: 1, ..d[1].clone() }]);
        assert!((half.stderr - (0.5f64 / 2.0).sqrt()).abs() < 1e-12, "sample std 0.707 / √2");
    }

    #[test]
    fn completions_score_greedy_hits_perplexity_and_bytes() {
        let qs = [question(0, &[" signs"]), question(0, &[" café"])];
        let c = completion(&qs, &[scored(-1.0, true), scored(-3.0, false)]);
        assert_eq!(c.acc.value, 0.5);
        assert!((c.perplexity - 2.0f64.exp()).abs() < 1e-12);
        assert!((c.bits_per_byte - 4.0 / 12.0 / std::f64::consts::LN_2).abs() < 1e-12, "6 + 6 bytes (é is 2)");
    }
}
