//! # swiattn-core
//!
//! Exact hybrid-attention building blocks on burn: the window predicate, attention primitives
//! (reference, blocked sliding, routed, head-mixed), the decoder-only model family
//! (Llama/SmolLM2, Qwen2/Qwen3, Gemma 3) with per-layer attention kinds, KV caches, and checkpoint
//! loading (safetensors, GGUF).

pub mod accounting;
pub mod attention;
pub mod backend;
pub mod cache;
pub mod checkpoint;
pub mod conformance;
mod error;
pub mod host;
#[cfg(feature = "kernels")]
pub mod kernel;
pub mod model;
pub mod paths;
pub mod score;
pub mod tagged;
pub mod testing;
pub mod text;
pub mod tokenizer;

pub use backend::BackendKind;
pub use error::{Error, Result};
