//! # swiattn-eval
//!
//! The evaluation harness, as lm-evaluation-harness defines its requests:
//!
//! - [`request`]: `loglikelihood` requests (context, continuation) and multiple-choice questions,
//!   read from OLMES `requests.jsonl(.gz)` files (one line per choice);
//! - [`score`]: the log-likelihood of each continuation under a model, batched by length, with
//!   lm-eval's tokenization of the (context, continuation) pair;
//! - [`metrics`]: accuracy and length-normalized accuracy with their standard errors;
//! - [`rolling`]: `loglikelihood_rolling` windows and word/byte perplexities of documents;
//! - [`generate`]: `generate_until`, greedy decoding through the KV cache with stop strings.
//!
//! Still to come (the evaluation issue): the regular task
//! templates over HF-dataset files, the RULER generators, results JSON and the `--tasks` suites.

pub mod generate;
pub mod metrics;
pub mod request;
pub mod rolling;
pub mod ruler;
pub mod score;
