//! The decoder-only model family: Llama/SmolLM2, Qwen2/Qwen3 and Gemma 3, with per-layer
//! attention kinds (full, sliding, routed, head-mixed). Module and field names follow the
//! Hugging Face checkpoint keys, so `model.layers.3.self_attn.q_proj.weight` is
//! `transformer.model.layers[3].self_attn.q_proj.weight`.

pub mod allocation;
pub mod attention;
pub mod config;
pub mod control;
pub mod layer;
pub mod layout;
pub mod mlp;
pub mod norm;
mod prefill;
pub mod rope;
pub mod router;
pub mod transformer;

pub use crate::attention::LayerAttention;
pub use allocation::{Allocation, Granularity, ModelShape};
pub use config::{Activation, Arch, Family, ModelConfig, Rope, RopeScaling};
pub use control::{AttentionController, LayerControl, Route, Routes};
pub use router::{ModelRouter, OwnRoutes, Real, TokenRouter};
pub use transformer::{TextModel, Transformer};
