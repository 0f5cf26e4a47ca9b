//! The one definition of which keys a query may see.
//!
//! Positions are absolute token indices in the sequence (0-based). With a sliding window of `w`
//! keys, query `i` sees key `j` iff `i - w < j <= i`: the `w` most recent keys, itself included.
//! Full (causal) attention is the same predicate with no lower bound. Every attention path in
//! this crate — reference, blocked, routed, head-mixed, caches and GPU kernels — derives its masks
//! or key ranges from [`visible`], and is tested against it.
//!
//! Conventions elsewhere, converted to this one:
//! - **Hugging Face** (`config.json` `sliding_window`, Gemma 2/3, Qwen2, Mistral in recent
//!   `transformers`): the mask is `q - sliding_window < k <= q`, so `w = sliding_window`.
//! - **llama.cpp / GGUF** (`*.attention.sliding_window`): a key is masked iff `q - k >= n_swa`,
//!   so again `w = n_swa`.
//! - **FlashAttention** `window_size = (left, right)`: key `k` is visible iff
//!   `q - left <= k <= q + right`; causal sliding attention is `(w - 1, 0)`, see
//!   [`Window::flash_attention`] and [`Window::from_flash_attention`].

use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;

use crate::{Error, Result};

/// A sliding window of `w >= 1` keys (the query's own key included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "usize", into = "usize")]
pub struct Window(NonZeroUsize);

impl Window {
    /// A window of `w` keys; `w = 0` is an error (no key, not even the query's own, would be seen).
    pub fn new(w: usize) -> Result<Self> {
        NonZeroUsize::new(w)
            .map(Window)
            .ok_or_else(|| Error::Invalid("sliding window must be at least 1 key, got 0".into()))
    }

    /// Number of keys in the window.
    pub fn size(self) -> usize {
        self.0.get()
    }

    /// FlashAttention's `window_size = (left, right)` for causal attention in this window.
    pub fn flash_attention(self) -> (usize, usize) {
        (self.size() - 1, 0)
    }

    /// The window of FlashAttention's causal `window_size = (left, 0)`.
    pub fn from_flash_attention(left: usize) -> Self {
        Window(NonZeroUsize::new(left + 1).expect("left + 1 > 0"))
    }
}

impl TryFrom<usize> for Window {
    type Error = Error;
    fn try_from(w: usize) -> Result<Self> {
        Window::new(w)
    }
}

impl From<Window> for usize {
    fn from(w: Window) -> usize {
        w.size()
    }
}

/// What one query attends to: every earlier key, or its sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Span {
    /// Causal full attention: keys `0..=i`.
    Full,
    /// Causal sliding-window attention: keys `i-w+1..=i`.
    Sliding(Window),
}

impl Span {
    /// The window, or `None` for full attention.
    pub fn window(self) -> Option<Window> {
        match self {
            Span::Full => None,
            Span::Sliding(w) => Some(w),
        }
    }

    /// Whether a query at position `q` sees the key at position `k` under this span.
    pub fn sees(self, q: usize, k: usize) -> bool {
        visible(q, k, self.window())
    }

    /// The first key position visible to a query at position `q`.
    pub fn first_key(self, q: usize) -> usize {
        match self {
            Span::Full => 0,
            Span::Sliding(w) => (q + 1).saturating_sub(w.size()),
        }
    }
}

/// The window predicate: query at position `q` sees key at position `k` iff `q - w < k <= q`
/// (no lower bound when `window` is `None`).
#[inline]
pub fn visible(q: usize, k: usize, window: Option<Window>) -> bool {
    k <= q && window.is_none_or(|w| q - k < w.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_of_w_keys_includes_the_query_itself() {
        let w = Window::new(3).unwrap();
        let seen: Vec<usize> = (0..10).filter(|&k| visible(5, k, Some(w))).collect();
        assert_eq!(seen, vec![3, 4, 5]);
        assert_eq!(Span::Sliding(w).first_key(5), 3);
        assert_eq!(Span::Sliding(w).first_key(1), 0);
    }

    #[test]
    fn window_one_sees_only_itself_and_full_sees_all_earlier() {
        let one = Window::new(1).unwrap();
        assert!(visible(7, 7, Some(one)));
        assert!(!visible(7, 6, Some(one)));
        assert!((0..=7).all(|k| visible(7, k, None)));
        assert!(!visible(7, 8, None));
    }

    #[test]
    fn zero_window_is_an_error() {
        assert!(Window::new(0).is_err());
        assert!(serde_json::from_str::<Window>("0").is_err());
        assert_eq!(serde_json::from_str::<Window>("512").unwrap().size(), 512);
    }

    #[test]
    fn flash_attention_round_trip() {
        let w = Window::new(512).unwrap();
        assert_eq!(w.flash_attention(), (511, 0));
        assert_eq!(Window::from_flash_attention(511), w);
        // FlashAttention's predicate q - left <= k <= q agrees with ours.
        let (left, _) = w.flash_attention();
        for q in 0..1100usize {
            for k in 0..1100usize {
                let fa = k <= q && q <= k + left;
                assert_eq!(fa, visible(q, k, Some(w)));
            }
        }
    }
}
