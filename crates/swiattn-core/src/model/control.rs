//! Per-call control of a layer's attention, decided from the layer's input: the hook through which
//! routers and learned allocations (swiattn-router) act on a model that knows nothing about them.
//!
//! For each layer the model asks an [`AttentionController`] for a [`LayerControl`], passing the
//! attention input (after the layer's input norm). `None` runs the layer as configured; routed
//! layers require a control.

use std::collections::BTreeMap;

use burn::tensor::{Bool, Tensor};

use crate::attention::RouteMask;
use crate::{Error, Result};

/// How one layer's attention runs in this call, instead of its configured kind. Every variant uses
/// the layer's sliding window (its own, or the model's `sliding_window`).
#[derive(Clone, Debug)]
pub enum LayerControl {
    /// Per-token hard routes, `[batch, len]`, `true` = full attention, through the compacted
    /// routed path.
    Route(RouteMask),
    /// Per-token hard routes, and each token's output multiplied by `scale` (`[batch, len]`): a
    /// straight-through factor (value 1, gradient to a router) that trains routers without
    /// computing the branch a token did not take.
    RouteScaled { route: RouteMask, scale: Tensor<2> },
    /// Both branches for every query, mixed: `out = sliding + gate · (full − sliding)`, with
    /// `gate` broadcastable to `[batch, q_heads, len, 1]` — `[1, 1, 1, 1]` for a layer gate,
    /// `[1, q_heads, 1, 1]` for per-head gates, `[batch, 1, len, 1]` per token. Hard gates with a
    /// straight-through surrogate select a branch exactly while passing gradients to both.
    Mix(Tensor<4>),
}

/// Decides each layer's [`LayerControl`] from its input.
pub trait AttentionController {
    /// `input`: the attention input `[batch, len, hidden]` of layer `layer` (after its input norm).
    fn control(&mut self, layer: usize, input: &Tensor<3>) -> Result<Option<LayerControl>>;
}

/// Fixed per-token routes of the routed layers for one call, keyed by layer index: `[batch, len]`
/// for the tokens of that call, `true` = full attention.
#[derive(Clone, Debug, Default)]
pub struct Routes(pub BTreeMap<usize, RouteMask>);

impl Routes {
    /// No routes (a model without routed layers).
    pub fn none() -> Self {
        Self::default()
    }

    /// Set the route of one layer.
    pub fn with(mut self, layer: usize, route: RouteMask) -> Self {
        self.0.insert(layer, route);
        self
    }

    /// Set the route of one layer from a `[batch, len]` bool tensor (read back to the host).
    pub fn with_tensor(self, layer: usize, route: &Tensor<2, Bool>) -> Result<Self> {
        Ok(self.with(layer, RouteMask::from_tensor(route)?))
    }

    /// The routes of tokens `start..start + len` (for chunked prefill).
    pub fn narrow(&self, start: usize, len: usize) -> Self {
        Self(self.0.iter().map(|(&l, r)| (l, r.narrow(start, len))).collect())
    }
}

impl AttentionController for Routes {
    fn control(&mut self, layer: usize, _input: &Tensor<3>) -> Result<Option<LayerControl>> {
        Ok(self.0.get(&layer).cloned().map(LayerControl::Route))
    }
}

/// Check that `gate` broadcasts to `[batch, q_heads, len, 1]`.
pub(crate) fn check_gate(layer: usize, gate: &Tensor<4>, batch: usize, q_heads: usize, len: usize) -> Result<()> {
    let dims = gate.dims();
    let fits = |d: usize, n: usize| d == 1 || d == n;
    if !(fits(dims[0], batch) && fits(dims[1], q_heads) && fits(dims[2], len) && dims[3] == 1) {
        return Err(Error::shape(
            format!("layer {layer} mix gate"),
            format!("broadcastable to [{batch}, {q_heads}, {len}, 1] (batch, q_heads, tokens, 1)"),
            &dims,
        ));
    }
    Ok(())
}
