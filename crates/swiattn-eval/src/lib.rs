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
//! - [`generate`]: `generate_until`, greedy decoding through the KV cache with stop strings;
//! - [`task`]: tasks as TOML specs in lm-eval's vocabulary (`doc_to_text`, `doc_to_choice`,
//!   `doc_to_target`), over documents read by [`dataset`] (Arrow, JSONL, text) and evaluated by
//!   [`template`]; the ten regular tasks are built-in specs;
//! - [`evaluate`]: a prepared task scored into its metrics;
//! - [`ruler`]: RULER's 13 long-context tasks, generated at any length, decoded in batches and
//!   scored;
//! - [`results`]: per-task results with their attention cost, and the markdown table;
//! - [`suite`]: task names resolved to tasks, and a regular task run into its result.

pub mod dataset;
pub mod evaluate;
pub mod generate;
pub mod metrics;
pub mod request;
pub mod results;
pub mod rolling;
pub mod ruler;
pub mod score;
pub mod suite;
pub mod task;
pub mod template;
