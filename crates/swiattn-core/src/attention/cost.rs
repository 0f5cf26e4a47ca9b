//! Window-aware attention cost, counted from the window predicate: how many keys each query
//! sees. A full-attention query at position `i` sees `i + 1` keys, a sliding one `min(i + 1, w)`.

use super::window::Span;

/// Keys a query at position `q` sees under `span`.
pub fn keys_seen(span: Span, q: usize) -> usize {
    q + 1 - span.first_key(q)
}

/// Keys seen by the queries at positions `0..len`, each under the span `span_of(position)`.
pub fn total_keys(len: usize, span_of: impl Fn(usize) -> Span) -> u64 {
    (0..len).map(|q| keys_seen(span_of(q), q) as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::{Window, visible};

    #[test]
    fn counts_match_brute_force_over_the_predicate() {
        for w in [1, 3, 8, 20] {
            let span = Span::Sliding(Window::new(w).unwrap());
            for q in 0..40 {
                let brute = (0..=q + 5).filter(|&k| visible(q, k, span.window())).count();
                assert_eq!(keys_seen(span, q), brute, "w={w} q={q}");
            }
        }
        assert_eq!(total_keys(10, |_| Span::Full), 55);
    }
}
