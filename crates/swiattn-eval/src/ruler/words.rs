//! RULER's variable tracking and word-counting tasks.
//!
//! - `vt` (variable tracking): noise sentences with a chain `VAR A = 12345`, `VAR B = VAR A`, … (5
//!   variables, 4 hops) inserted in order; the answer is every variable holding the value.
//! - `cwe` (common words extraction): a numbered list where 10 words appear 30 times and the
//!   others 3 times, shuffled; the answer is the 10 common words.
//! - `fwe` (frequent words extraction): coded words drawn from a Zipf distribution (α = 2) with the
//!   most frequent rank shown as `....`; the answer is the next three most frequent words.
//!
//! Words are made-up syllable words (no word-list asset); each prompt ends in RULER's answer prefix
//! and grows by binary search to the target length.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use swiattn_core::{Error, Result};

use super::{Sample, largest_fitting, prompt_budget, sample_rng};

const NOISE: &str = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const ONSETS: [&str; 16] = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh"];
const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];

/// `n` distinct made-up words of 2–3 syllables.
fn vocabulary(rng: &mut StdRng, n: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let syllables = rng.random_range(2..=3);
        let w: String = (0..syllables)
            .map(|_| {
                format!("{}{}", ONSETS[rng.random_range(0..ONSETS.len())], VOWELS[rng.random_range(0..VOWELS.len())])
            })
            .collect();
        if seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// The largest `n` in `0..=max` whose prompt fits `budget` tokens.
fn fit(
    max: usize,
    budget: usize,
    prompt: &dyn Fn(usize) -> String,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<usize> {
    if count(&prompt(0))? > budget {
        return Err(Error::Invalid(format!("even the smallest prompt exceeds {budget} tokens")));
    }
    largest_fitting(max, budget, prompt, count)
}

/// Generate sample `index` of `vt`, `cwe` or `fwe` at `length` tokens, leaving `to_generate`.
pub fn sample(
    name: &str,
    seed: u64,
    index: usize,
    length: usize,
    to_generate: usize,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<Sample> {
    let budget = prompt_budget(length, to_generate)?;
    let mut rng = sample_rng(seed, index, 0x5EED);
    type Build = (Box<dyn Fn(usize) -> String>, usize, Box<dyn Fn(usize) -> Vec<String>>);
    let (prompt, max, outputs): Build = match name {
        "vt" => {
            let mut names: Vec<String> = Vec::new();
            while names.len() < 5 {
                let v: String = (0..5).map(|_| char::from(b'A' + rng.random_range(0..26u8))).collect();
                if !names.contains(&v) {
                    names.push(v);
                }
            }
            let value = rng.random_range(10_000..100_000u32).to_string();
            let chain: Vec<String> = std::iter::once(format!("VAR {} = {value}.", names[0]))
                .chain(names.windows(2).map(|w| format!("VAR {} = VAR {}.", w[1], w[0])))
                .collect();
            let insert_seed: u64 = rng.random();
            let query = value.clone();
            let prompt = move |n: usize| {
                let mut parts = vec![NOISE.to_string(); n];
                let mut at = StdRng::seed_from_u64(insert_seed);
                let mut positions: Vec<usize> = (0..chain.len()).map(|_| at.random_range(0..=n)).collect();
                positions.sort_unstable();
                for (k, (pos, stmt)) in positions.iter().zip(&chain).enumerate() {
                    parts.insert(pos + k, stmt.clone());
                }
                format!(
                    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{}\nQuestion: \
                     Find all variables that are assigned the value {query} in the text above. Answer: According to the \
                     chain(s) of variable assignment in the text above, 5 variables are assgined the value {query}, they are: ",
                    parts.join("\n")
                )
            };
            (Box::new(prompt), 1 << 20, Box::new(move |_| names.clone()))
        }
        "cwe" => {
            let vocab = vocabulary(&mut rng, 4000);
            let (common, rare) = vocab.split_at(10);
            let (common, rare) = (common.to_vec(), rare.to_vec());
            let order_seed: u64 = rng.random();
            let outputs = common.clone();
            let list = move |freq: usize, n: usize| {
                let mut list: Vec<&str> = common.iter().flat_map(|w| std::iter::repeat_n(w.as_str(), freq)).collect();
                list.extend(rare[..n].iter().flat_map(|w| std::iter::repeat_n(w.as_str(), 3)));
                list.shuffle(&mut StdRng::seed_from_u64(order_seed));
                let numbered: Vec<String> = list.iter().enumerate().map(|(i, w)| format!("{}. {w}", i + 1)).collect();
                format!(
                    "Below is a numbered list of words. In these words, some appear more often than others. Memorize the \
                     ones that appear most often.\n{}\nQuestion: What are the 10 most common words in the above list? \
                     Answer: The top 10 words that appear most often in the list are:",
                    numbered.join(" ")
                )
            };
            // RULER's 30 repetitions of each common word; fewer when that alone overflows a short
            // length (at least 10 rare words must fit beside them).
            let mut freq = 30;
            while freq > 4 && count(&list(freq, 10))? > budget {
                freq = (freq / 2).max(4);
                if freq == 4 {
                    break;
                }
            }
            (Box::new(move |n| list(freq, n)), 3990, Box::new(move |_| outputs.clone()))
        }
        "fwe" => {
            let vocab = vocabulary(&mut rng, 800);
            // Zipf(α = 2) ranks: P(rank r) ∝ 1 / r²; rank 0 is shown as dots.
            let cumulative: Vec<f64> = (1..=vocab.len())
                .scan(0.0, |sum, r| {
                    *sum += 1.0 / (r * r) as f64;
                    Some(*sum)
                })
                .collect();
            let total = cumulative[cumulative.len() - 1];
            let draws: Vec<usize> = (0..60_000)
                .map(|_| {
                    let u = rng.random::<f64>() * total;
                    cumulative.partition_point(|&c| c < u).min(vocab.len() - 1)
                })
                .collect();
            let words: Vec<String> =
                draws.iter().map(|&r| if r == 0 { "....".to_string() } else { vocab[r].clone() }).collect();
            let prompt = move |n: usize| {
                format!(
                    "Read the following coded text and track the frequency of each coded word. Find the three most \
                     frequently appeared coded words. {}\nQuestion: Do not provide any explanation. Please ignore the \
                     dots '....'. What are the three most frequently appeared words in the above coded text? Answer: \
                     According to the coded text above, the three most frequently appeared words are:",
                    words[..n].join(" ")
                )
            };
            // The three most frequent words (dots aside) by their count in the prompt.
            let outputs = move |n: usize| {
                let mut counts = vec![0usize; vocab.len()];
                for &r in &draws[..n] {
                    counts[r] += 1;
                }
                let mut ranked: Vec<usize> = (1..vocab.len()).collect();
                ranked.sort_by(|a, b| counts[*b].cmp(&counts[*a]).then(a.cmp(b)));
                ranked[..3].iter().map(|&r| vocab[r].clone()).collect()
            };
            (Box::new(prompt), 60_000, Box::new(outputs))
        }
        other => return Err(Error::Invalid(format!("unknown RULER task `{other}`"))),
    };
    let n = fit(max, budget, &*prompt, count).map_err(|e| Error::Invalid(format!("{name} at {length} tokens: {e}")))?;
    let input = prompt(n);
    let length = count(&input)?;
    Ok(Sample { task: name.to_string(), index, input, outputs: outputs(n), length })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn words(text: &str) -> Result<usize> {
        Ok(text.split_whitespace().count())
    }

    #[test]
    fn samples_fit_and_hold_their_answers() {
        for name in ["vt", "cwe", "fwe"] {
            let s = sample(name, 3, 1, 2000, 50, &words).unwrap();
            assert!(s.length <= 1950 && s.length > 1800, "{name}: {} words", s.length);
            assert_eq!(sample(name, 3, 1, 2000, 50, &words).unwrap(), s, "{name}: deterministic");
            assert_ne!(sample(name, 3, 2, 2000, 50, &words).unwrap().outputs, s.outputs, "{name}: per index");
        }
        assert!(sample("nope", 0, 0, 100, 10, &words).is_err());
    }

    #[test]
    fn variable_chains_are_complete_and_in_order() {
        let s = sample("vt", 5, 0, 1500, 50, &words).unwrap();
        assert_eq!(s.outputs.len(), 5);
        let at = |stmt: String| s.input.find(&stmt).unwrap_or_else(|| panic!("{stmt} missing"));
        let mut last = 0;
        for pair in s.outputs.windows(2) {
            let pos = at(format!("VAR {} = VAR {}.", pair[1], pair[0]));
            assert!(pos > last, "the chain is in order");
            last = pos;
        }
        assert!(at(format!("VAR {} = ", s.outputs[0])) < last);
    }

    #[test]
    fn counted_answers_are_the_most_frequent_words() {
        let list_words = |s: &Sample, from: &str, to: &str| -> HashMap<String, usize> {
            let body = &s.input[s.input.find(from).unwrap() + from.len()..s.input.find(to).unwrap()];
            let mut counts = HashMap::new();
            for w in body.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_lowercase())) {
                *counts.entry(w.to_string()).or_insert(0) += 1;
            }
            counts
        };
        let s = sample("cwe", 1, 0, 3000, 50, &words).unwrap();
        let counts = list_words(&s, "most often.\n", "\nQuestion");
        assert!(s.outputs.iter().all(|w| counts[w] == 30), "{counts:?}");
        assert!(counts.iter().filter(|(w, _)| !s.outputs.contains(w)).all(|(_, &c)| c == 3));

        let s = sample("fwe", 1, 0, 3000, 50, &words).unwrap();
        let counts = list_words(&s, "coded words. ", "\nQuestion");
        let mut ranked: Vec<(&String, &usize)> = counts.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<usize> = ranked[..3].iter().map(|(_, c)| **c).collect();
        let ours: Vec<usize> = s.outputs.iter().map(|w| counts[w]).collect();
        assert_eq!(ours, top, "the answers carry the top three counts");
    }
}
