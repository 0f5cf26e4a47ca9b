//! Per-call control of a layer's attention, decided from the layer's input: the hook through which
//! routers and learned allocations (swiattn-router) act on a model that knows nothing about them.
//!
//! For each layer the model asks an [`AttentionController`] for a [`LayerControl`], passing the
//! attention input (after the layer's input norm). `None` runs the layer as configured; routed
//! layers require a control.

use std::borrow::Cow;
use std::collections::BTreeMap;

use burn::tensor::{Bool, Device, Tensor};

use crate::attention::{RouteMask, check_route_dims};
use crate::{Error, Result};

/// Per-token hard routes of one layer, `[batch, len]`, `true` = full attention: a host mask, or a
/// bool tensor still on the model's device (a router's decision). On the fused kernels a device
/// route is ordered on the device ([`crate::kernel::QueryOrder::routed_on_device`]), so the
/// forward never waits for it; the tensor-op paths read it back.
#[derive(Clone, Debug)]
pub enum Route {
    Host(RouteMask),
    Device(Tensor<2, Bool>),
}

impl Route {
    /// `[batch, len]`.
    pub fn dims(&self) -> [usize; 2] {
        match self {
            Route::Host(mask) => [mask.batch, mask.len],
            Route::Device(route) => route.dims(),
        }
    }

    /// Check that the route covers `[batch, len]`.
    pub fn check(&self, batch: usize, len: usize) -> Result<()> {
        check_route_dims(self.dims(), batch, len)
    }

    /// The mask on the host: borrowed, or a device route read back (the caller waits for it).
    pub fn host(&self) -> Result<Cow<'_, RouteMask>> {
        match self {
            Route::Host(mask) => Ok(Cow::Borrowed(mask)),
            Route::Device(route) => RouteMask::from_tensor(route).map(Cow::Owned),
        }
    }

    /// The opposite route: every token on the branch it did not take.
    pub fn inverted(&self) -> Route {
        match self {
            Route::Host(mask) => Route::Host(RouteMask { fa: mask.fa.iter().map(|f| !f).collect(), ..mask.clone() }),
            Route::Device(route) => Route::Device(route.clone().bool_not()),
        }
    }

    /// The route as a `[batch, len]` bool tensor on `device` (a host mask uploaded).
    pub fn on_device(&self, device: &Device) -> Tensor<2, Bool> {
        match self {
            Route::Host(mask) => mask.to_tensor(device),
            Route::Device(route) => route.clone(),
        }
    }

    /// `+1` for full-attention tokens and `−1` for sliding ones, `[batch, len]` fp32 on `device`.
    pub fn sign(&self, device: &Device) -> Tensor<2> {
        self.on_device(device).float() * 2.0 - 1.0
    }

    /// Fraction of tokens routed to full attention (of a device route: its count, read back).
    pub fn fa_ratio(&self) -> f64 {
        match self {
            Route::Host(mask) => mask.fa_ratio(),
            Route::Device(route) => {
                let n = route.dims().iter().product::<usize>();
                if n == 0 {
                    return 0.0;
                }
                route.clone().int().sum().into_scalar::<i64>() as f64 / n as f64
            }
        }
    }
}

/// Equal routes send the same tokens to full attention (device routes are read back to compare).
impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        matches!((self.host(), other.host()), (Ok(a), Ok(b)) if a == b)
    }
}

impl From<RouteMask> for Route {
    fn from(mask: RouteMask) -> Self {
        Route::Host(mask)
    }
}

/// How one layer's attention runs in this call, instead of its configured kind. Every variant uses
/// the layer's sliding window (its own, or the model's `sliding_window`).
#[derive(Clone, Debug)]
pub enum LayerControl {
    /// Per-token hard routes through the compacted routed path.
    Route(Route),
    /// Per-token hard routes, and each token's output multiplied by `scale` (`[batch, len]`): a
    /// straight-through factor (value 1, gradient to a router) that trains routers without
    /// computing the branch a token did not take.
    RouteScaled { route: Route, scale: Tensor<2> },
    /// Per-token hard routes trained by the straight-through gradient of [`Mix`](Self::Mix) at
    /// about the cost of the routed path: the output is the routed one (only the branch each token
    /// took is differentiated), and `delta` (`[batch, len]`, a router's `p − sg(p)`: zero in value)
    /// receives `⟨∂L/∂out, full − sliding⟩` per token, for which each token's other branch runs
    /// forward only. `Mix(h + delta)` in value and in every gradient, where `h` is the route.
    RouteMix { route: Route, delta: Tensor<2> },
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
        Ok(self.0.get(&layer).map(|route| LayerControl::Route(route.clone().into())))
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
