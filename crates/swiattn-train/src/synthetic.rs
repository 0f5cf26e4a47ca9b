//! Synthetic sequences where full attention is needed only at identifiable tokens, buried in
//! locally predictable filler. Needs no downloaded asset. Two tasks:
//!
//! - [`LaggedCopy`] (the quickstart's): after each marker `Q` comes a copy of the token `lag`
//!   positions back, further than the window. The marker says *that* a far-back lookup is due, the
//!   position says *where*: small models learn it in about a thousand steps on a CPU.
//! - [`RecallConfig`] (span recall, content-addressed): spans of a passage at the start are
//!   repeated after markers and must be completed from the passage — an induction-style lookup by
//!   content that small models learn much more slowly (see docs/LOG.md).
//!
//! **Filler** repeats short motifs (length 2–4, segments of 6–12 tokens): the next filler token is
//! predictable from the last few, which any sliding window sees.
//!
//! Span recall: a sequence (`seq_len` tokens) is laid out as
//!
//! ```text
//! BOS  c₁ c₂ … c_P  |  filler … filler  |  Q cᵢ cᵢ₊₁ … cᵢ₊ₛ₋₁  filler …  Q cⱼ … cⱼ₊ₛ₋₁  filler …
//!      ^ a passage     ^ longer than the    ^ queries: spans of the passage, far from it
//!                        window
//! ```
//!
//! - **filler** repeats short motifs (length 2–4, segments of 6–12 tokens): the next filler token is
//!   predictable from the last few, which any sliding window sees;
//! - the **passage** is random content tokens;
//! - each **query** is the marker `Q` followed by a span of `span` consecutive passage tokens from a
//!   random offset. Its first token is unpredictable; every later one is the passage's next token,
//!   which only attention reaching back to the passage — further than the window — can find.
//!
//! The *recall positions* are the query tokens `cᵢ … cᵢ₊ₛ₋₂`: predicting the next token there is
//! the far-back retrieval full attention makes possible. Vocabulary: `[PAD, BOS, Q]`, then content
//! and filler symbols.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use swiattn_core::{Error, Result};

/// Token ids of the markers.
pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const QUERY: u32 = 2;
const MARKERS: u32 = 3;

/// The largest synthetic vocabulary (2^20 ids, above any real tokenizer's): the model's embedding
/// is `[vocab, hidden]`, so a symbol count from a typo must not size it.
pub const MAX_VOCAB: usize = 1 << 20;

/// Refuse symbol counts whose vocabulary (markers included) passes [`MAX_VOCAB`].
fn check_vocab(task: &str, symbols: &[(&str, u32)]) -> Result<()> {
    let vocab = MARKERS as usize + symbols.iter().map(|&(_, n)| n as usize).sum::<usize>();
    if vocab > MAX_VOCAB {
        let counts: Vec<String> = symbols.iter().map(|(k, n)| format!("{k} = {n}")).collect();
        return Err(Error::Invalid(format!(
            "{task}: {} give a vocabulary of {vocab} ids, more than the {MAX_VOCAB} a synthetic task may have",
            counts.join(", ")
        )));
    }
    Ok(())
}

/// Shape of the span-recall task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecallConfig {
    pub seq_len: usize,
    /// Tokens of the passage at the start.
    pub passage: usize,
    /// Queries per sequence.
    pub queries: usize,
    /// Tokens per query span.
    pub span: usize,
    pub content_symbols: u32,
    pub filler_symbols: u32,
    /// Minimum distance from the end of the passage to the first query (set above the window to
    /// make the queries unreachable for sliding attention).
    pub min_gap: usize,
}

impl Default for RecallConfig {
    fn default() -> Self {
        Self { seq_len: 96, passage: 16, queries: 3, span: 6, content_symbols: 32, filler_symbols: 24, min_gap: 24 }
    }
}

/// Append filler — repeated motifs of 2–4 symbols from `first..first + symbols`, segments of
/// 6–12 tokens — until `tokens` has `len` tokens.
fn fill(tokens: &mut Vec<u32>, len: usize, first: u32, symbols: u32, rng: &mut StdRng) {
    while tokens.len() < len {
        let motif: Vec<u32> = (0..rng.random_range(2..=4)).map(|_| first + rng.random_range(0..symbols)).collect();
        let segment = rng.random_range(6..=12);
        for i in 0..segment {
            if tokens.len() == len {
                break;
            }
            tokens.push(motif[i % motif.len()]);
        }
    }
}

/// The random stream of sequence `index` of a dataset seeded by `seed`.
fn rng_for(seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index)
}

/// Shape of the lagged-copy task: filler, and at marker positions `p` (every 5–11 tokens once
/// `p ≥ lag`) the pair `Q x`, where `x` is the token `lag − 1` positions before `Q` (so the token
/// after `Q` equals the one `lag` positions before it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaggedCopy {
    pub seq_len: usize,
    /// Distance of the copy (set above the window).
    pub lag: usize,
    pub filler_symbols: u32,
}

impl Default for LaggedCopy {
    fn default() -> Self {
        Self { seq_len: 128, lag: 48, filler_symbols: 32 }
    }
}

impl LaggedCopy {
    /// Vocabulary size: markers and filler symbols.
    pub fn vocab_size(&self) -> usize {
        MARKERS as usize + self.filler_symbols as usize
    }

    /// Check that at least one marker fits and the filler has symbols to repeat.
    pub fn validate(&self) -> Result<()> {
        check_vocab("lagged copy", &[("filler_symbols", self.filler_symbols)])?;
        if self.lag < 2 || self.lag > self.seq_len.saturating_sub(2) || self.filler_symbols < 4 {
            return Err(Error::Invalid(format!(
                "lagged copy: need 2 ≤ lag ≤ seq_len − 2 and filler_symbols ≥ 4 (lag {}, seq_len {}, {} symbols)",
                self.lag, self.seq_len, self.filler_symbols
            )));
        }
        Ok(())
    }

    /// The sequence of index `index` (deterministic in `seed` and `index`).
    pub fn example(&self, seed: u64, index: u64) -> Example {
        let mut rng = rng_for(seed, index);
        let mut tokens = vec![BOS];
        fill(&mut tokens, self.seq_len, MARKERS, self.filler_symbols, &mut rng);
        let mut recall = Vec::new();
        let mut p = self.lag + rng.random_range(0..8);
        while p + 1 < self.seq_len {
            tokens[p] = QUERY;
            tokens[p + 1] = tokens[p + 1 - self.lag];
            recall.push(p);
            p += rng.random_range(5..=11);
        }
        Example { tokens, recall }
    }
}

/// One sequence and where its recall positions are.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub tokens: Vec<u32>,
    /// Positions `t` whose next token (`tokens[t + 1]`) must be recalled from the passage.
    pub recall: Vec<usize>,
}

impl RecallConfig {
    /// Vocabulary size: markers, content and filler symbols.
    pub fn vocab_size(&self) -> usize {
        MARKERS as usize + self.content_symbols as usize + self.filler_symbols as usize
    }

    fn content(&self, i: u32) -> u32 {
        MARKERS + i
    }

    /// Check that the layout fits: the passage, the gap and the queries within `seq_len`.
    pub fn validate(&self) -> Result<()> {
        check_vocab(
            "synthetic recall",
            &[("content_symbols", self.content_symbols), ("filler_symbols", self.filler_symbols)],
        )?;
        let need = self
            .queries
            .checked_mul(self.span.saturating_add(1))
            .and_then(|q| q.checked_add(self.passage)?.checked_add(self.min_gap)?.checked_add(1));
        if need.is_none_or(|n| n > self.seq_len) {
            return Err(Error::Invalid(format!(
                "synthetic recall: a passage of {}, a gap of {} and {} queries of {} need more than seq_len = {} tokens",
                self.passage, self.min_gap, self.queries, self.span, self.seq_len
            )));
        }
        if self.queries == 0
            || self.span < 2
            || self.span > self.passage
            || self.content_symbols < 2
            || self.filler_symbols < 4
        {
            return Err(Error::Invalid(
                "synthetic recall: need queries ≥ 1, 2 ≤ span ≤ passage, content_symbols ≥ 2, filler_symbols ≥ 4"
                    .into(),
            ));
        }
        Ok(())
    }

    fn fill(&self, tokens: &mut Vec<u32>, len: usize, rng: &mut StdRng) {
        fill(tokens, len, MARKERS + self.content_symbols, self.filler_symbols, rng);
    }

    /// The sequence of index `index` (deterministic in `seed` and `index`).
    pub fn example(&self, seed: u64, index: u64) -> Example {
        let mut rng = rng_for(seed, index);
        let passage: Vec<u32> =
            (0..self.passage).map(|_| self.content(rng.random_range(0..self.content_symbols))).collect();
        let mut tokens = vec![BOS];
        tokens.extend(&passage);
        // Queries go after the gap, spread over the rest of the sequence.
        let first_query = tokens.len() + self.min_gap;
        let width = self.span + 1;
        let room = self.seq_len - self.queries * width - first_query;
        let mut starts: Vec<usize> = (0..self.queries).map(|_| rng.random_range(0..=room)).collect();
        starts.sort();
        let mut recall = Vec::with_capacity(self.queries * (self.span - 1));
        for (i, offset) in starts.into_iter().enumerate() {
            self.fill(&mut tokens, first_query + offset + width * i, &mut rng);
            let from = rng.random_range(0..=self.passage - self.span);
            tokens.push(QUERY);
            let at = tokens.len();
            tokens.extend(&passage[from..from + self.span]);
            recall.extend(at..at + self.span - 1);
        }
        self.fill(&mut tokens, self.seq_len, &mut rng);
        Example { tokens, recall }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_recall_spans_beyond_the_gap() {
        let config = RecallConfig::default();
        config.validate().unwrap();
        for index in 0..200 {
            let ex = config.example(7, index);
            assert_eq!(ex.tokens.len(), config.seq_len);
            assert_eq!(ex.recall.len(), config.queries * (config.span - 1));
            let passage = &ex.tokens[1..1 + config.passage];
            for &t in &ex.recall {
                // The bigram (tokens[t], tokens[t + 1]) occurs in the passage, more than the gap back.
                let found = passage.windows(2).any(|w| w == [ex.tokens[t], ex.tokens[t + 1]]);
                assert!(found, "sequence {index}: recall bigram at {t} is not from the passage");
                assert!(t > config.passage + config.min_gap);
            }
            assert!(ex.tokens.iter().all(|&tok| (tok as usize) < config.vocab_size()));
        }
        assert_eq!(config.example(7, 3), config.example(7, 3));
        assert_ne!(config.example(7, 3), config.example(8, 3));
    }

    #[test]
    fn lagged_copies_come_from_lag_positions_back() {
        let task = LaggedCopy::default();
        task.validate().unwrap();
        for index in 0..200 {
            let ex = task.example(3, index);
            assert_eq!(ex.tokens.len(), task.seq_len);
            assert!(!ex.recall.is_empty());
            for &p in &ex.recall {
                assert_eq!(ex.tokens[p], QUERY);
                assert_eq!(ex.tokens[p + 1], ex.tokens[p + 1 - task.lag], "the token after Q is the one lag back");
            }
            assert!(ex.tokens.iter().all(|&t| (t as usize) < task.vocab_size()));
        }
        assert!(LaggedCopy { lag: 200, ..LaggedCopy::default() }.validate().is_err());
    }

    #[test]
    fn layouts_that_do_not_fit_are_errors() {
        let config = RecallConfig { seq_len: 40, ..RecallConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("more than seq_len = 40"));
        let config = RecallConfig { span: 1, ..RecallConfig::default() };
        assert!(config.validate().is_err());
        // Extremes give an error naming the key, never an overflow or a vocabulary of 2^32.
        let e = RecallConfig { queries: usize::MAX, ..RecallConfig::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("more than seq_len"), "{e}");
        let e = RecallConfig { filler_symbols: u32::MAX, ..RecallConfig::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("filler_symbols = 4294967295"), "{e}");
        let e = LaggedCopy { filler_symbols: u32::MAX, ..LaggedCopy::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("vocabulary of 4294967298 ids"), "{e}");
        assert!(LaggedCopy { lag: usize::MAX, ..LaggedCopy::default() }.validate().is_err());
    }
}
