//! RULER's synthetic long-context tasks, generated deterministically from a seed at a target
//! length measured in the model's tokens, and scored by RULER's string match: the eight
//! needle-in-a-haystack tasks ([`niah`]), variable tracking and common/frequent words extraction
//! ([`words`]) and the two QA tasks ([`qa`]) — all 13; [`run`] decodes and scores them on a model.

pub mod niah;
pub mod qa;
pub mod run;
pub mod words;

use rand::SeedableRng;
use rand::rngs::StdRng;
use swiattn_core::{Error, Result};

/// The RULER tasks generated here.
pub const TASKS: [&str; 13] = [
    "niah_single_1",
    "niah_single_2",
    "niah_single_3",
    "niah_multikey_1",
    "niah_multikey_2",
    "niah_multikey_3",
    "niah_multivalue",
    "niah_multiquery",
    "vt",
    "cwe",
    "fwe",
    "qa_1",
    "qa_2",
];

/// What the generators draw from: essay sentences (needle haystacks), SQuAD-style items (`qa_1`)
/// and HotpotQA-style items (`qa_2`).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub essay: Vec<String>,
    pub squad: Vec<qa::QaItem>,
    pub hotpotqa: Vec<qa::QaItem>,
}

/// Sample `index` of task `name` at `length` tokens (as `count` counts them), leaving
/// `to_generate`.
pub fn sample(
    name: &str,
    seed: u64,
    index: usize,
    length: usize,
    to_generate: usize,
    sources: &Sources,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<Sample> {
    match name {
        "vt" | "cwe" | "fwe" => words::sample(name, seed, index, length, to_generate, count),
        "qa_1" => qa::sample(name, &sources.squad, seed, index, length, to_generate, count),
        "qa_2" => qa::sample(name, &sources.hotpotqa, seed, index, length, to_generate, count),
        _ => niah::Niah::named(name)?.sample(name, seed, index, length, to_generate, &sources.essay, count),
    }
}

/// The prompt's token budget: the target length less the tokens left to generate.
pub(crate) fn prompt_budget(length: usize, to_generate: usize) -> Result<usize> {
    length
        .checked_sub(to_generate)
        .ok_or_else(|| Error::Invalid(format!("length {length} < {to_generate} tokens to generate")))
}

/// The random generator of sample `index`: a function of (seed, index) and the task family's
/// `salt`, so every sample can be made alone, in any order.
pub(crate) fn sample_rng(seed: u64, index: usize, salt: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt)
}

/// The largest `n` in `0..=max` whose `prompt(n)` fits `budget` tokens (prompts grow with `n`).
/// The caller has checked that `prompt(0)` fits. Galloping (n = 1, 2, 4, … until one overflows)
/// brackets the answer before the binary search, so no prompt tokenized is much longer than the
/// budget, however large the haystack.
pub(crate) fn largest_fitting(
    max: usize,
    budget: usize,
    prompt: &dyn Fn(usize) -> String,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<usize> {
    let mut step = 1;
    while step < max && count(&prompt(step))? <= budget {
        step *= 2;
    }
    // prompt(step / 2) fits (or step is 1), and nothing past min(step, max) can be needed.
    let (mut lo, mut hi) = (step / 2, step.min(max));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if count(&prompt(mid))? <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// RULER's metric for a task: `string_match_part` for the QA tasks, `string_match_all` otherwise.
pub fn score(task: &str, prediction: &str, references: &[String]) -> f64 {
    if task.starts_with("qa_") {
        qa::string_match_part(prediction, references)
    } else {
        string_match_all(prediction, references)
    }
}

use serde::{Deserialize, Serialize};

/// One generated sample: the prompt (ending in the answer prefix) and the strings the answer must
/// contain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub task: String,
    pub index: usize,
    pub input: String,
    pub outputs: Vec<String>,
    /// The prompt's length in the model's tokens.
    pub length: usize,
}

/// RULER's `string_match_all` for one prediction: the fraction of the references it contains,
/// case-insensitively.
pub fn string_match_all(prediction: &str, references: &[String]) -> f64 {
    let prediction = prediction.to_lowercase();
    references.iter().filter(|r| prediction.contains(&r.to_lowercase())).count() as f64 / references.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_fitting_is_the_last_prompt_within_budget() {
        let prompt = |n: usize| "ab ".repeat(n);
        let count = |s: &str| Ok(s.split_whitespace().count());
        for (max, budget, want) in
            [(0, 5, 0), (10, 0, 0), (10, 1, 1), (10, 7, 7), (10, 8, 8), (10, 50, 10), (1000, 513, 513)]
        {
            assert_eq!(largest_fitting(max, budget, &prompt, &count).unwrap(), want, "max {max} budget {budget}");
        }
    }

    #[test]
    fn string_match_counts_the_references_found() {
        let refs = vec!["1234567".to_string(), "Blue-Fox".to_string()];
        assert_eq!(string_match_all("The numbers are 1234567 and blue-fox.", &refs), 1.0);
        assert_eq!(string_match_all("only 1234567", &refs), 0.5);
        assert_eq!(string_match_all("123456", &refs), 0.0);
    }
}
