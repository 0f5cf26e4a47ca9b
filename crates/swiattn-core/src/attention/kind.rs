//! The attention kind of one layer, as a `config.json`'s `layer_types` (plus swiattn's
//! `attention_types`) names it.

use super::window::Window;

/// The attention of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerAttention {
    /// Causal full attention.
    Full,
    /// Sliding-window attention.
    Sliding(Window),
    /// Per-token switch between full and `window` attention; the route is supplied per call.
    Routed(Window),
    /// Per-KV-head choice: head `h` is full if `full_kv_heads[h]`, else sliding in `window`.
    HeadMixed { window: Window, full_kv_heads: Vec<bool> },
}

impl LayerAttention {
    /// The `attention_types` name of this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerAttention::Full => "full_attention",
            LayerAttention::Sliding(_) => "sliding_attention",
            LayerAttention::Routed(_) => "routed_attention",
            LayerAttention::HeadMixed { .. } => "head_mixed_attention",
        }
    }

    /// Whether tokens are routed per call (the route comes from a router, not from the config).
    pub fn is_routed(&self) -> bool {
        matches!(self, LayerAttention::Routed(_))
    }

    /// The window, for every kind but full.
    pub fn window(&self) -> Option<Window> {
        match self {
            LayerAttention::Full => None,
            LayerAttention::Sliding(w) | LayerAttention::Routed(w) => Some(*w),
            LayerAttention::HeadMixed { window, .. } => Some(*window),
        }
    }
}
