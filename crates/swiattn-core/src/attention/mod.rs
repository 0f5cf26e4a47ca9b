//! Attention primitives for hybrid full / sliding-window models.
//!
//! Shapes everywhere: queries `[batch, q_heads, q_len, head_dim]`, keys and values
//! `[batch, kv_heads, k_len, head_dim]` (grouped-query attention when `kv_heads < q_heads`;
//! query head `h` reads KV head `h / (q_heads / kv_heads)`), outputs like the queries.
//!
//! | path | cost | file |
//! |---|---|---|
//! | window predicate (the one definition) | – | [`window`] |
//! | reference (materialized, fp32, NaN-safe) | O(n²) | [`reference`] |
//! | dense causal (full attention); ragged rows under a per-row mask | O(n²) | [`dense`] |
//! | blocked sliding window | O(n · w) | [`blocked`] |
//! | routed (switch) FA/SWA per token | O(n_fa · n + n_swa · w) | [`routed`] |
//! | head-mixed FA/SWA per KV head | O(h_fa · n² + h_swa · n · w) | [`head_mixed`] |
//!
//! All of them are plain burn tensor ops, so they run and differentiate on every backend.

pub mod blocked;
pub mod cost;
pub mod dense;
pub mod head_mixed;
pub mod kind;
pub mod mask;
pub mod reference;
pub mod routed;
pub mod window;

pub use blocked::{default_block, sliding_attention};
pub use dense::{dense_attention, ragged_attention};
pub use head_mixed::{HeadSplit, head_mixed_attention};
pub use kind::LayerAttention;
pub use mask::{Positions, Visibility};
pub use reference::attention_reference;
pub use routed::{RouteMask, check_route_dims, routed_attention};
pub use window::{Span, Window, visible};
