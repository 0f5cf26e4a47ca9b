//! A routed model's own router: what a trained SwiAttn model carries so that every inference path
//! — scoring, prefill, cached and ragged batched decoding, the CLI — runs it like any other model.
//!
//! The router decides each token's route from the routed layer's attention input, one call per
//! layer and forward (a new token routes itself while its earlier tokens keep their cached keys:
//! a routed layer's cache holds every key). [`Transformer::routes`] turns it into the controller
//! the forward takes, and counts how many *real* tokens of each layer went to full attention
//! (padding of a batch is routed but not counted), so results can report the achieved FA ratio
//! instead of the training target. Training does not use this: its policies decide through their
//! own [`AttentionController`]s with surrogates and gradients.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::Transformer;
use super::control::{AttentionController, LayerControl, Route};
use crate::{Error, Result};

/// Decides the hard per-token routes of a model's routed layers at inference.
pub trait TokenRouter: Debug + Send + Sync {
    /// The route `[batch, len]` (`true` = full attention) of layer `layer`'s tokens from its
    /// attention input `[batch, len, hidden]`, or `None` when this router does not serve the layer.
    fn route(&self, layer: usize, input: &Tensor<3>) -> Result<Option<Tensor<2, Bool>>>;
}

/// A router attached to a model, and the tally of its decisions (shared by the model's clones).
#[derive(Clone, Debug)]
pub struct ModelRouter {
    router: Arc<dyn TokenRouter>,
    tally: Arc<Mutex<Tally>>,
}

/// Per routed layer: its real tokens routed to full attention, summed on the device (no read-back
/// per call), and its real tokens.
type Tally = BTreeMap<usize, (Tensor<1, Int>, usize)>;

/// The real tokens of a `[batch, len]` call; the other columns are padding.
#[derive(Clone, Debug, PartialEq)]
pub enum Real {
    /// Every token.
    All,
    /// Row `r`'s real tokens are columns `rows[r]`.
    Rows(Vec<Range<usize>>),
}

impl Real {
    /// Right-padded rows: row `r` holds `lens[r]` tokens from column 0.
    pub fn leading(lens: impl IntoIterator<Item = usize>) -> Self {
        Real::Rows(lens.into_iter().map(|n| 0..n).collect())
    }
}

/// The model's own routes for one forward call: its router decides every routed layer, and the
/// real tokens' routes are tallied. A model without a router has no routed layers to decide for
/// (a routed one is refused by the forward's control check), so this controller serves every model.
pub struct OwnRoutes<'a> {
    router: Option<&'a ModelRouter>,
    real: Real,
    /// The real tokens as a `[batch, len]` device mask, uploaded at the first routed layer and
    /// shared by the others (one upload per forward, not one per layer); `None` while not needed.
    real_mask: Option<Tensor<2, Bool>>,
}

impl Transformer {
    /// This model with `router` deciding its routed layers at inference (see [`Self::routes`]).
    pub fn with_router(mut self, router: Arc<dyn TokenRouter>) -> Self {
        self.router = Some(ModelRouter { router, tally: Arc::default() });
        self
    }

    /// The controller for an inference forward over a batch whose real tokens are `real`: the
    /// model's own router decides its routed layers (static layouts need none).
    pub fn routes(&self, real: Real) -> OwnRoutes<'_> {
        OwnRoutes { router: self.router.as_ref(), real, real_mask: None }
    }

    /// Refuse `what` (scoring, generation) on a model whose routed layers have no router.
    pub fn check_routable(&self, what: &str) -> Result<()> {
        if self.router.is_none() && self.arch.layers.iter().any(|l| l.is_routed()) {
            return Err(Error::Invalid(format!(
                "{what}: the model has routed layers but no router; load the training checkpoint \
                 directory (checkpoints/step-N, which holds routers.safetensors) rather than its model/"
            )));
        }
        Ok(())
    }

    /// The fraction of real tokens each routed layer sent to full attention since the last call
    /// (one read-back), and the tally reset; empty for a model without a router.
    pub fn take_fa_ratios(&self) -> Result<BTreeMap<usize, f64>> {
        let Some(router) = &self.router else { return Ok(BTreeMap::new()) };
        let tally = std::mem::take(&mut *router.tally.lock().map_err(|_| poisoned())?);
        let mut out = BTreeMap::new();
        for (layer, (full, tokens)) in tally {
            let full = crate::host::ints(full, "the route tally")?[0];
            out.insert(layer, if tokens == 0 { 0.0 } else { full as f64 / tokens as f64 });
        }
        Ok(out)
    }
}

fn poisoned() -> Error {
    Error::Invalid("the route tally was poisoned by a panic in another thread".into())
}

impl AttentionController for OwnRoutes<'_> {
    fn control(&mut self, layer: usize, input: &Tensor<3>) -> Result<Option<LayerControl>> {
        let Some(own) = self.router else { return Ok(None) };
        let Some(route) = own.router.route(layer, input)? else { return Ok(None) };
        let [batch, len] = route.dims();
        let (counted, tokens) = match &self.real {
            Real::Rows(rows) if rows.len() != batch || rows.iter().any(|r| r.end > len) => {
                return Err(Error::shape(
                    "real-token rows of a routed call",
                    format!("[{batch}, {len}]"),
                    &[rows.len(), rows.iter().map(|r| r.end).max().unwrap_or(0)],
                ));
            }
            // Every column of every row real (a decode step with no finished row): nothing to mask.
            Real::All => (route.clone(), batch * len),
            Real::Rows(rows) if rows.iter().all(|r| *r == (0..len)) => (route.clone(), batch * len),
            Real::Rows(rows) => {
                let real = match &self.real_mask {
                    Some(mask) if mask.dims() == [batch, len] => mask.clone(),
                    _ => {
                        let real: Vec<bool> = rows.iter().flat_map(|r| (0..len).map(move |c| r.contains(&c))).collect();
                        let mask = Tensor::<2, Bool>::from_data(TensorData::new(real, [batch, len]), &route.device());
                        self.real_mask.insert(mask).clone()
                    }
                };
                (route.clone().bool_and(real), rows.iter().map(|r| r.len()).sum())
            }
        };
        let full = counted.int().sum();
        let mut tally = own.tally.lock().map_err(|_| poisoned())?;
        let sum = match tally.remove(&layer) {
            Some((full_before, tokens_before)) => (full_before + full, tokens_before + tokens),
            None => (full, tokens),
        };
        tally.insert(layer, sum);
        Ok(Some(LayerControl::Route(Route::Device(route))))
    }
}
