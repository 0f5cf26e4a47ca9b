//! # swiattn-eval
//!
//! The evaluation harness: 10 regular tasks and the 13 RULER long-context tasks. Not yet implemented: see the evaluation issue.
