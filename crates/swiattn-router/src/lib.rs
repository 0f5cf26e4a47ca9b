//! # swiattn-router
//!
//! Where full attention is spent — per layer, per KV head, per token — under a budget. Every
//! policy speaks one small interface, [`Policy`]: for a layer and its input it produces the hard
//! allocation used in the forward pass, a differentiable surrogate for training, and its expected
//! FA ratio. [`PolicyController`] runs any policy as a model's
//! [`AttentionController`](swiattn_core::model::AttentionController).
//!
//! | policy | unit | file |
//! |---|---|---|
//! | rules: all-full, all-sliding, interleave k:1, layer list, first/last/middle n, per-head ratio | layer, KV head | [`rules`] |
//! | ConSA: hard-concrete L0 gates + augmented Lagrangian, binarized | layer, KV head | [`consa`] ([`hard_concrete`], [`lagrangian`]) |
//! | SwiAttn: learned per-token router, straight-through, adaptive regularizer | token | [`router`], [`regularizer`] |
//! | DuoAttention-style soft head gates with an L1 penalty | KV head | [`duo`] |
//!
//! Static results are [`Allocation`] artifacts (versioned JSON, applied to a model config).
//! Their cost (attention FLOPs, KV-cache bytes) is counted by [`swiattn_core::accounting`].

pub mod budget;
pub mod consa;
pub mod duo;
pub mod hard_concrete;
pub mod lagrangian;
pub mod plot;
pub mod regularizer;
pub mod router;
pub mod rules;

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use swiattn_core::Result;
use swiattn_core::model::{AttentionController, LayerControl, Route};

pub use budget::Budget;
pub use swiattn_core::model::{Allocation, Granularity, ModelShape};

/// Which units a budget constraint or regularizer covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One constraint on the ratio over all units.
    Global,
    /// One constraint per layer on that layer's ratio.
    PerLayer,
}

/// The hard allocation a policy uses in one layer's forward pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Hard {
    /// The whole layer: full attention (`true`) or sliding.
    Layer(bool),
    /// One choice per KV head.
    KvHeads(Vec<bool>),
    /// One choice per token, `[batch, len]` (a router's is still on the device).
    Tokens(Route),
}

impl Hard {
    /// Fraction of units on full attention.
    pub fn fa_ratio(&self) -> f64 {
        match self {
            Hard::Layer(full) => f64::from(u8::from(*full)),
            Hard::KvHeads(heads) => heads.iter().filter(|&&f| f).count() as f64 / heads.len().max(1) as f64,
            Hard::Tokens(route) => route.fa_ratio(),
        }
    }

    /// The control that runs exactly this allocation: routes for tokens, 0/1 gates for layers and
    /// heads (a static allocation is cheaper applied to the model config).
    pub fn control(&self, q_heads: usize, device: &Device) -> LayerControl {
        match self {
            Hard::Tokens(route) => LayerControl::Route(route.clone()),
            Hard::Layer(full) => LayerControl::Mix(gate_tensor(vec![f32::from(u8::from(*full))], [1, 1, 1, 1], device)),
            Hard::KvHeads(heads) => {
                let group = q_heads / heads.len();
                let gates = heads.iter().flat_map(|&f| std::iter::repeat_n(f32::from(u8::from(f)), group)).collect();
                LayerControl::Mix(gate_tensor(gates, [1, q_heads, 1, 1], device))
            }
        }
    }
}

/// The noise stream of one (seed, step, layer): stateless, so a resumed run draws exactly the noise
/// an uninterrupted one would.
pub(crate) fn noise_rng(seed: u64, step: usize, layer: usize) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let mix = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ (layer as u64).wrapping_mul(0x94D0_49BB_1331_11EB);
    rand::rngs::StdRng::seed_from_u64(mix)
}

/// A tensor's values on the host as f32.
pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("a float tensor reads back as f32")
}

pub(crate) fn gate_tensor(values: Vec<f32>, dims: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// What a policy decides for one layer of one forward call.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The allocation used in the forward pass.
    pub hard: Hard,
    /// The differentiable control used while training (a straight-through or relaxed mix);
    /// `None` when the policy has nothing to learn.
    pub surrogate: Option<LayerControl>,
    /// This layer's expected FA ratio, `[1]`, differentiable in the policy's parameters.
    pub expected_fa_ratio: Tensor<1>,
}

/// An FA/SWA allocation policy.
pub trait Policy {
    /// The decision for layer `layer` given its attention input `[batch, len, hidden]`, or `None`
    /// when the policy does not govern that layer (it then runs as configured).
    fn decide(&mut self, layer: usize, input: &Tensor<3>) -> Result<Option<Decision>>;
}

/// A static allocation as a policy (rules, binarized ConSA or DuoAttention gates).
impl Policy for Allocation {
    fn decide(&mut self, layer: usize, input: &Tensor<3>) -> Result<Option<Decision>> {
        let row = &self.full[layer];
        let hard = match self.granularity {
            Granularity::Layer => Hard::Layer(row[0]),
            Granularity::KvHead => Hard::KvHeads(row.clone()),
        };
        let ratio = Tensor::from_floats([hard.fa_ratio() as f32], &input.device());
        Ok(Some(Decision { hard, surrogate: None, expected_fa_ratio: ratio }))
    }
}

/// Runs a [`Policy`] as a model's attention controller and keeps each layer's decision (for
/// regularizers, accounting and logging). In training mode the surrogate control is used where
/// the policy has one; otherwise the hard allocation.
pub struct PolicyController<'a, P: Policy + ?Sized> {
    policy: &'a mut P,
    q_heads: usize,
    training: bool,
    /// The decisions of the last forward pass, by layer.
    pub decisions: BTreeMap<usize, Decision>,
}

impl<'a, P: Policy + ?Sized> PolicyController<'a, P> {
    /// A controller for a model with `q_heads` query heads.
    pub fn new(policy: &'a mut P, q_heads: usize, training: bool) -> Self {
        Self { policy, q_heads, training, decisions: BTreeMap::new() }
    }
}

impl<P: Policy + ?Sized> AttentionController for PolicyController<'_, P> {
    fn control(&mut self, layer: usize, input: &Tensor<3>) -> Result<Option<LayerControl>> {
        let Some(decision) = self.policy.decide(layer, input)? else {
            return Ok(None);
        };
        let control = match (&decision.surrogate, self.training) {
            (Some(surrogate), true) => surrogate.clone(),
            _ => decision.hard.control(self.q_heads, &input.device()),
        };
        self.decisions.insert(layer, decision);
        Ok(Some(control))
    }
}
