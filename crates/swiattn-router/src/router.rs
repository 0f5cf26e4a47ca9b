//! SwiAttn: a learned per-token router in every routed layer sends each token to full attention
//! (FA) or sliding-window attention (SWA). K/V are shared; only the query side is routed.
//!
//! The router reads the layer's attention input `x` (`[batch, len, hidden]`) and gives one logit
//! per token: a linear map, or a small MLP (`hidden → mlp_hidden → 1`, SiLU). The probability of
//! FA is `p = σ(logit)`, or with the Gumbel-sigmoid estimator `p = σ((logit + g₁ − g₂) / τ)` with
//! Gumbel noise `g` and a temperature `τ` annealed by [`TemperatureSchedule`]. The forward pass
//! uses the hard decision `h = 1[p > 1/2]`; gradients reach the router through a
//! straight-through estimator, in one of two ways ([`GradientPath`]):
//!
//! - `Mix`: `g = h + p − sg(p)` mixes both branches, `out = swa + g·(fa − swa)`: the exact
//!   straight-through gradient `∂L/∂p = ⟨∂L/∂out, fa − swa⟩`. Run as
//!   [`LayerControl::RouteMix`]: the routed output, differentiated, plus each token's other
//!   branch forward-only for `fa − swa` — the same value and gradients as the two-branch mix
//!   (`tests/controls.rs` in swiattn-core holds them equal), without the second branch's
//!   backward; `MixDense` computes it as written, as the reference and cost baseline;
//! - `Scaled`: only the chosen branch is computed (the compacted routed path) and its output is
//!   multiplied by `1 + c − sg(c)` with `c = p` for FA tokens and `1 − p` for SWA tokens (value 1):
//!   `∂L/∂p = ±⟨∂L/∂out, out⟩`, a cheaper, biased signal.
//!
//! The expected FA ratio of a layer is the mean of `p` over its tokens; [`crate::regularizer`]
//! holds it to a target. Routers start biased towards FA (`init_bias`, default 2: p ≈ 0.88), so
//! continual pretraining starts from the full-attention behaviour of the checkpoint, and
//! `warmup_steps` can route every token to FA before routing starts.
//!
//! Config keys ([`RouterConfig`], see docs/policies.md): `mlp_hidden`, `estimator`, `gradient`,
//! `init_bias`, `warmup_steps`, `seed`.

use std::path::Path;

use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor, TensorData, activation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use swiattn_core::attention::RouteMask;
use swiattn_core::checkpoint::safetensors::SafetensorsSource;
use swiattn_core::checkpoint::{LoadOptions, WeightSource, load_weights};
use swiattn_core::model::{LayerControl, Route, TokenRouter};
use swiattn_core::{Error, Result};

use crate::{Decision, Hard, Policy};

/// How the router's probability is formed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Estimator {
    /// `p = σ(logit)`.
    Threshold,
    /// `p = σ((logit + g₁ − g₂) / τ)` with Gumbel noise while training; `τ` follows the schedule.
    Gumbel { schedule: TemperatureSchedule },
}

/// Exponential annealing of the Gumbel temperature from `start` to `end` over `steps` steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemperatureSchedule {
    pub start: f64,
    pub end: f64,
    pub steps: usize,
}

impl TemperatureSchedule {
    /// `τ(step) = start · (end / start)^(min(step, steps) / steps)`.
    pub fn at(&self, step: usize) -> f64 {
        if self.steps == 0 {
            return self.end;
        }
        let frac = step.min(self.steps) as f64 / self.steps as f64;
        self.start * (self.end / self.start).powf(frac)
    }
}

/// Which straight-through estimator trains the router (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradientPath {
    Mix,
    /// `Mix` computed as written: both branches, forward and backward, for every token
    /// ([`LayerControl::Mix`]). The reference `Mix` is checked against, and its cost baseline.
    MixDense,
    Scaled,
}

/// Router settings; every key has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Width of the hidden layer of an MLP router; `None` for a linear router.
    pub mlp_hidden: Option<usize>,
    pub estimator: Estimator,
    pub gradient: GradientPath,
    /// Initial bias of the output logit (positive: start near all-FA).
    pub init_bias: f64,
    /// Steps at the start with every token on FA and no routing.
    pub warmup_steps: usize,
    /// Seed of the Gumbel noise.
    pub seed: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            mlp_hidden: None,
            estimator: Estimator::Threshold,
            gradient: GradientPath::Mix,
            init_bias: 2.0,
            warmup_steps: 0,
            seed: 0,
        }
    }
}

/// The router of one layer: `x [batch, len, hidden]` → logits `[batch, len]`.
#[derive(Module, Debug)]
pub struct Router {
    pub hidden: Option<Linear>,
    pub output: Linear,
}

impl Router {
    /// A router for inputs of width `hidden_size`: small random weights, output bias `init_bias`.
    pub fn new(hidden_size: usize, config: &RouterConfig, device: &Device) -> Self {
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
        let hidden =
            config.mlp_hidden.map(|h| LinearConfig::new(hidden_size, h).with_initializer(init.clone()).init(device));
        let width = config.mlp_hidden.unwrap_or(hidden_size);
        let mut output = LinearConfig::new(width, 1).with_initializer(init).init(device);
        let bias = Tensor::from_data(TensorData::new(vec![config.init_bias as f32], [1]), device);
        output.bias = Some(burn::module::Param::from_tensor(bias));
        Self { hidden, output }
    }

    /// Logits `[batch, len]`, fp32 like the router's weights whatever the model's dtype.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let x = x.cast(burn::tensor::DType::F32);
        let x = match &self.hidden {
            Some(hidden) => activation::silu(hidden.forward(x)),
            None => x,
        };
        self.output.forward(x).squeeze_dim(2)
    }
}

/// One router per routed layer.
#[derive(Module, Debug, Default)]
pub struct Routers {
    pub routers: Vec<Router>,
    /// The model layer each router serves.
    #[module(skip)]
    pub layers: Vec<usize>,
}

impl Routers {
    /// Routers for the given model layers.
    pub fn new(layers: Vec<usize>, hidden_size: usize, config: &RouterConfig, device: &Device) -> Self {
        let routers = layers.iter().map(|_| Router::new(hidden_size, config, device)).collect();
        Self { routers, layers }
    }

    /// Trained routers of the model layers `layers` (a model of width `hidden_size`), read from
    /// `path` (a training checkpoint's `routers.safetensors`): the routers are linear or MLPs as
    /// the file's tensors say, and the file must hold one router per routed layer.
    pub fn load(path: &Path, layers: Vec<usize>, hidden_size: usize, device: &Device) -> Result<Self> {
        let source = SafetensorsSource::open(path)?;
        let held = (0..).take_while(|i| source.shape(&format!("routers.{i}.output.weight")).is_some()).count();
        if held != layers.len() {
            return Err(Error::Invalid(format!(
                "{}: {held} routers for a model with {} routed layers ({layers:?})",
                source.origin(),
                layers.len()
            )));
        }
        let mlp_hidden = source.shape("routers.0.hidden.weight").map(|shape| shape[0]);
        let config = RouterConfig { mlp_hidden, ..RouterConfig::default() };
        load_weights(Self::new(layers, hidden_size, &config, device), &source, &LoadOptions::default())
    }

    /// The position of layer `layer`'s router, after checking that `input` (`[batch, len,
    /// hidden]`) has the width it reads; `None` when no router serves the layer.
    fn serving(&self, layer: usize, input: &Tensor<3>) -> Result<Option<usize>> {
        let Some(router) = self.layers.iter().position(|&l| l == layer) else {
            return Ok(None);
        };
        let [batch, len, hidden] = input.dims();
        let r = &self.routers[router];
        let expected = r.hidden.as_ref().map_or_else(|| r.output.weight.dims()[0], |h| h.weight.dims()[0]);
        if hidden != expected {
            return Err(Error::shape(
                format!("router input of layer {layer}"),
                format!("[batch, len, {expected}]"),
                &[batch, len, hidden],
            ));
        }
        Ok(Some(router))
    }
}

/// The hard route of FA probabilities `p`: full attention where `p > 1/2`.
fn hard(p: Tensor<2>) -> Tensor<2, Bool> {
    p.greater_elem(0.5)
}

/// Inference routes: each token to full attention where its router's probability exceeds 1/2,
/// SwiAttn's evaluation decision (no noise; a Gumbel temperature does not move the threshold).
impl TokenRouter for Routers {
    fn route(&self, layer: usize, input: &Tensor<3>) -> Result<Option<Tensor<2, Bool>>> {
        let Some(router) = self.serving(layer, input)? else {
            return Ok(None);
        };
        Ok(Some(hard(activation::sigmoid(self.routers[router].forward(input.clone())))))
    }
}

/// The SwiAttn policy: routers, their settings and the training step (which sets the temperature,
/// the warm-up and the Gumbel noise, drawn from `(seed, step, layer)`).
pub struct SwiAttn {
    pub routers: Routers,
    pub config: RouterConfig,
    /// Training step, advanced by the training loop.
    pub step: usize,
    /// Whether decisions are for training (noise, straight-through surrogates) or evaluation.
    pub training: bool,
}

impl SwiAttn {
    pub fn new(routers: Routers, config: RouterConfig) -> Self {
        Self { routers, config, step: 0, training: true }
    }

    /// The FA probability `[batch, len]` of the tokens of a layer's router.
    fn probability(&self, router: usize, x: &Tensor<3>) -> Tensor<2> {
        let logits = self.routers.routers[router].forward(x.clone());
        match self.config.estimator {
            Estimator::Threshold => activation::sigmoid(logits),
            Estimator::Gumbel { schedule } => {
                let tau = schedule.at(self.step);
                if !self.training {
                    return activation::sigmoid(logits);
                }
                let dims = logits.dims();
                let mut rng = crate::noise_rng(self.config.seed, self.step, self.routers.layers[router]);
                // g₁ − g₂ of two Gumbels is logistic: ln u − ln(1 − u).
                let noise: Vec<f32> = (0..dims.iter().product::<usize>())
                    .map(|_| {
                        let u: f32 = rng.random_range(1e-6..1.0 - 1e-6);
                        u.ln() - (1.0 - u).ln()
                    })
                    .collect();
                let noise = Tensor::from_data(TensorData::new(noise, dims), &logits.device());
                activation::sigmoid((logits + noise) / tau)
            }
        }
    }
}

impl Policy for SwiAttn {
    fn decide(&mut self, layer: usize, input: &Tensor<3>) -> Result<Option<Decision>> {
        let Some(router) = self.routers.serving(layer, input)? else {
            return Ok(None);
        };
        let [batch, len, _] = input.dims();
        let device = input.device();
        if self.training && self.step < self.config.warmup_steps {
            let ones = Tensor::<1>::ones([1], &device);
            return Ok(Some(Decision {
                hard: Hard::Tokens(RouteMask::uniform(batch, len, true).into()),
                surrogate: None,
                expected_fa_ratio: ones,
            }));
        }
        let p = self.probability(router, input);
        // The hard route stays on the device: the fused kernels order their rows from it there,
        // so the forward does not wait for the router (statistics read it back after the step).
        let fa = hard(p.clone());
        let route = Route::Device(fa.clone());
        let surrogate = match self.config.gradient {
            GradientPath::Mix => {
                // Mix(h + (p − sg(p))) without computing both branches' backward: the gate is
                // exactly h in value, and p − sg(p) receives ⟨∂L/∂out, fa − swa⟩.
                LayerControl::RouteMix { route: route.clone(), delta: p.clone() - p.clone().detach() }
            }
            GradientPath::MixDense => {
                let g = fa.clone().float() + (p.clone() - p.clone().detach());
                LayerControl::Mix(g.reshape([batch, 1, len, 1]))
            }
            GradientPath::Scaled => {
                let c = p.clone().mask_where(fa.bool_not(), p.clone().neg().add_scalar(1.0));
                let scale = c.clone() - c.detach() + 1.0;
                LayerControl::RouteScaled { route: route.clone(), scale }
            }
        };
        Ok(Some(Decision { hard: Hard::Tokens(route), surrogate: Some(surrogate), expected_fa_ratio: p.mean() }))
    }
}
