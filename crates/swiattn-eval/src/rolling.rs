//! `loglikelihood_rolling`: the log-likelihood of whole documents (wikitext-style perplexity). A
//! document longer than the context is cut as lm-evaluation-harness cuts it (rolling windows with a
//! context of one token): disjoint runs of at most `max_len` predicted tokens, each predicted from
//! the `max_len` tokens before its end; the first token is predicted from the end-of-text token.
//!
//! Metrics over a set of documents, from the summed log-likelihood `ll`: `word_perplexity =
//! exp(-ll / words)` (words: runs of non-whitespace), `byte_perplexity = exp(-ll / bytes)` (UTF-8),
//! `bits_per_byte = -ll / bytes / ln 2`.

use serde::Serialize;

use crate::score::Encoded;

/// The windows of a document's tokens as sequences to score: each window's sequence ends at its
/// last predicted token and its last `scored` tokens are the predicted ones.
pub fn windows(tokens: &[u32], prefix: u32, max_len: usize) -> Vec<Encoded> {
    let max_len = max_len.max(1);
    let mut out = Vec::new();
    if tokens.is_empty() {
        return out;
    }
    let first = tokens.len().min(max_len);
    out.push(Encoded { ids: std::iter::once(prefix).chain(tokens[..first].iter().copied()).collect(), scored: first });
    let mut predicted = first;
    while predicted < tokens.len() {
        let n = (tokens.len() - predicted).min(max_len);
        let end = predicted + n;
        // The max_len tokens before the window's end predict its last n tokens.
        out.push(Encoded { ids: tokens[end - max_len - 1..end].to_vec(), scored: n });
        predicted = end;
    }
    out
}

/// Perplexities of documents from their summed log-likelihoods.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Perplexity {
    pub documents: usize,
    pub tokens: usize,
    pub words: usize,
    pub bytes: usize,
    pub loglikelihood: f64,
    pub word_perplexity: f64,
    pub byte_perplexity: f64,
    pub bits_per_byte: f64,
}

impl Perplexity {
    /// From each document's text, token count and log-likelihood.
    pub fn of<'a>(documents: impl IntoIterator<Item = (&'a str, usize, f64)>) -> Self {
        let (mut n, mut tokens, mut words, mut bytes, mut ll) = (0, 0, 0, 0, 0.0);
        for (text, t, l) in documents {
            n += 1;
            tokens += t;
            words += text.split_whitespace().count();
            bytes += text.len();
            ll += l;
        }
        Self {
            documents: n,
            tokens,
            words,
            bytes,
            loglikelihood: ll,
            word_perplexity: (-ll / words.max(1) as f64).exp(),
            byte_perplexity: (-ll / bytes.max(1) as f64).exp(),
            bits_per_byte: -ll / bytes.max(1) as f64 / std::f64::consts::LN_2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs (all but the last id) and predicted tokens of each window.
    fn pairs(tokens: &[u32], max_len: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
        windows(tokens, 100, max_len)
            .into_iter()
            .map(|e| (e.ids[..e.ids.len() - 1].to_vec(), e.ids[e.ids.len() - e.scored..].to_vec()))
            .collect()
    }

    #[test]
    fn windows_cut_as_lm_eval_does() {
        let tokens: Vec<u32> = (0..10).collect();
        // lm-eval's get_rolling_token_windows(range(10), prefix 100, max_seq_len 4, context_len 1).
        assert_eq!(
            pairs(&tokens, 4),
            vec![
                (vec![100, 0, 1, 2], vec![0, 1, 2, 3]),
                (vec![3, 4, 5, 6], vec![4, 5, 6, 7]),
                (vec![5, 6, 7, 8], vec![8, 9]),
            ]
        );
        assert_eq!(pairs(&tokens, 10), vec![((100..101).chain(0..9).collect(), (0..10).collect())]);
        assert_eq!(pairs(&tokens, 50), pairs(&tokens, 10), "one window when the document fits");
        assert!(windows(&[], 100, 4).is_empty());
        // Every token is predicted exactly once.
        for max_len in 1..12 {
            let predicted: Vec<u32> = pairs(&tokens, max_len).into_iter().flat_map(|(_, p)| p).collect();
            assert_eq!(predicted, tokens, "max_len {max_len}");
        }
    }

    #[test]
    fn perplexities_count_words_and_bytes() {
        let p = Perplexity::of([("two words", 3, -6.0), ("é  three\nmore words", 5, -10.0)]);
        assert_eq!((p.documents, p.tokens, p.words, p.bytes), (2, 8, 6, 9 + 20), "é is 2 bytes");
        assert!((p.word_perplexity - (16.0f64 / 6.0).exp()).abs() < 1e-12);
        assert!((p.byte_perplexity - (16.0f64 / 29.0).exp()).abs() < 1e-12);
        assert!((p.bits_per_byte - 16.0 / 29.0 / std::f64::consts::LN_2).abs() < 1e-12);
    }
}
