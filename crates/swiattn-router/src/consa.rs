//! ConSA: a learned *static* allocation. Every unit — a layer, or a KV head — has a hard-concrete
//! gate `z` (see [`crate::hard_concrete`]) that mixes its full and sliding outputs,
//! `out = sliding + z·(full − sliding)`. The closed-form expected L0 of the gates is the expected
//! FA ratio `ŝ`, held to the budget `t` by an augmented Lagrangian
//! `λ₁(ŝ − t) + λ₂(ŝ − t)²` (see [`crate::lagrangian`]), over all units or per layer.
//!
//! Stage 1 trains `log α` (descent) and the multipliers (ascent); [`Consa::binarize`] then fixes
//! the allocation — `z = 1[log α > 0]`, or the budget's number of units with the largest `log α`
//! to meet it exactly — as an [`Allocation`] artifact, and stage 2 continues training with it
//! applied to the model config.
//!
//! Config keys ([`ConsaConfig`], see docs/policies.md): `granularity`, `budget`, `scope`,
//! `hard_concrete = { beta, gamma, zeta }`, `init_log_alpha`, `multiplier_lr`, `seed`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use swiattn_core::Result;
use swiattn_core::attention::Window;
use swiattn_core::model::{Allocation, Granularity, LayerControl, ModelShape};

use crate::hard_concrete::HardConcrete;
use crate::lagrangian::AugmentedLagrangian;
use crate::{Budget, Decision, Hard, Policy, Scope, host};

/// ConSA's settings: `granularity` and `budget` are required, the rest have defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsaConfig {
    pub granularity: Granularity,
    pub budget: Budget,
    #[serde(default = "global")]
    pub scope: Scope,
    #[serde(default)]
    pub hard_concrete: HardConcrete,
    /// Initial `log α` of every gate (2.0: every unit starts almost surely on full attention).
    #[serde(default = "default_init_log_alpha")]
    pub init_log_alpha: f64,
    /// Ascent rate of the Lagrange multipliers.
    #[serde(default = "default_multiplier_lr")]
    pub multiplier_lr: f64,
    /// Seed of the gate noise.
    #[serde(default)]
    pub seed: u64,
}

fn global() -> Scope {
    Scope::Global
}

fn default_init_log_alpha() -> f64 {
    2.0
}

fn default_multiplier_lr() -> f64 {
    0.2
}

impl ConsaConfig {
    pub fn new(granularity: Granularity, budget: Budget) -> Self {
        Self {
            granularity,
            budget,
            scope: global(),
            hard_concrete: HardConcrete::default(),
            init_log_alpha: default_init_log_alpha(),
            multiplier_lr: default_multiplier_lr(),
            seed: 0,
        }
    }
}

/// The learned gate parameters: `log α`, `[layers, units]`.
#[derive(Module, Debug)]
pub struct ConsaGates {
    pub log_alpha: Param<Tensor<2>>,
}

/// How to turn trained gates into a fixed allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binarize {
    /// `z = 1[log α > 0]`: the deterministic gate above one half.
    Threshold,
    /// The `round(budget · units)` units with the largest `log α` (ties by position): meets the
    /// budget exactly.
    TopK,
}

/// The ConSA policy: gates, constraints and the step that draws the gate noise.
#[derive(Clone, Debug)]
pub struct Consa {
    pub gates: ConsaGates,
    pub config: ConsaConfig,
    pub model: ModelShape,
    pub window: Window,
    /// One constraint (global) or one per layer.
    pub constraints: Vec<AugmentedLagrangian>,
    /// Training step: with the seed and the layer, it draws the gate noise.
    pub step: usize,
}

impl Consa {
    /// Gates for every layer (or KV head) of `model`, all at `init_log_alpha`.
    pub fn new(config: ConsaConfig, model: ModelShape, window: Window, device: &Device) -> Self {
        let units = units(&config, &model);
        let layers = model.num_hidden_layers;
        let init = vec![config.init_log_alpha as f32; layers * units];
        let log_alpha = Param::from_tensor(Tensor::from_data(TensorData::new(init, [layers, units]), device));
        let count = if config.scope == Scope::Global { 1 } else { layers };
        let constraints = vec![AugmentedLagrangian::new(config.budget, config.multiplier_lr); count];
        Self { gates: ConsaGates { log_alpha }, config, model, window, constraints, step: 0 }
    }

    /// Expected FA ratio of each layer, `[layers]` (mean `P(z > 0)` over its units).
    pub fn expected_ratios(&self) -> Tensor<1> {
        let p = self.config.hard_concrete.expected_l0(self.gates.log_alpha.val());
        p.mean_dim(1).squeeze_dim(1)
    }

    /// The augmented-Lagrangian penalty of the current gates, `[1]`.
    pub fn penalty(&self) -> Tensor<1> {
        let ratios = self.expected_ratios();
        match self.config.scope {
            Scope::Global => self.constraints[0].penalty(ratios.mean()),
            Scope::PerLayer => {
                let layers = ratios.dims()[0];
                (0..layers)
                    .map(|l| self.constraints[l].penalty(ratios.clone().slice([l..l + 1])))
                    .reduce(|a, b| a + b)
                    .expect("at least one layer")
            }
        }
    }

    /// One ascent step of every multiplier at the current expected ratios.
    pub fn ascend(&mut self) {
        let ratios = host(self.expected_ratios());
        match self.config.scope {
            Scope::Global => {
                let mean = ratios.iter().map(|&r| r as f64).sum::<f64>() / ratios.len() as f64;
                self.constraints[0].ascend(mean);
            }
            Scope::PerLayer => {
                for (c, &r) in self.constraints.iter_mut().zip(&ratios) {
                    c.ascend(r as f64);
                }
            }
        }
    }

    /// Expected FA ratio over all units.
    pub fn expected_ratio(&self) -> f64 {
        self.expected_ratios().mean().into_scalar::<f32>() as f64
    }

    /// The fixed allocation of the trained gates.
    pub fn binarize(&self, mode: Binarize) -> Result<Allocation> {
        let log_alpha = host(self.gates.log_alpha.val());
        let units = units(&self.config, &self.model);
        let full: Vec<bool> = match mode {
            Binarize::Threshold => log_alpha.iter().map(|&a| a > 0.0).collect(),
            Binarize::TopK => {
                let k = self.config.budget.units(log_alpha.len());
                let mut order: Vec<usize> = (0..log_alpha.len()).collect();
                order.sort_by(|&a, &b| log_alpha[b].total_cmp(&log_alpha[a]).then(a.cmp(&b)));
                let mut full = vec![false; log_alpha.len()];
                for &i in &order[..k] {
                    full[i] = true;
                }
                full
            }
        };
        let policy = match self.config.granularity {
            Granularity::Layer => "consa-layer",
            Granularity::KvHead => "consa-kv-head",
        };
        let rows = full.chunks(units).map(<[bool]>::to_vec).collect();
        let mut allocation = Allocation::new(policy, self.model.clone(), self.window, self.config.granularity, rows)?;
        allocation.budget = Some(self.config.budget.fraction());
        allocation.notes.insert("binarize".into(), serde_json::to_value(mode).expect("serializes"));
        allocation.notes.insert("expected_ratio".into(), self.expected_ratio().into());
        allocation.notes.insert(
            "multipliers".into(),
            serde_json::to_value(self.constraints.iter().map(|c| c.multipliers).collect::<Vec<_>>())
                .expect("serializes"),
        );
        Ok(allocation)
    }
}

fn units(config: &ConsaConfig, model: &ModelShape) -> usize {
    match config.granularity {
        Granularity::Layer => 1,
        Granularity::KvHead => model.num_key_value_heads,
    }
}

impl Policy for Consa {
    fn decide(&mut self, layer: usize, _input: &Tensor<3>) -> Result<Option<Decision>> {
        let units = units(&self.config, &self.model);
        let row = self.gates.log_alpha.val().slice([layer..layer + 1, 0..units]).reshape([units]);
        let hard: Vec<bool> = host(row.clone()).iter().map(|&a| a > 0.0).collect();
        let z =
            self.config.hard_concrete.sample(row.clone(), &mut crate::noise_rng(self.config.seed, self.step, layer));
        let q_heads = self.model.num_attention_heads;
        let gate = match self.config.granularity {
            Granularity::Layer => z.reshape([1, 1, 1, 1]),
            Granularity::KvHead => z.reshape([units, 1]).expand([units, q_heads / units]).reshape([1, q_heads, 1, 1]),
        };
        let hard = match self.config.granularity {
            Granularity::Layer => Hard::Layer(hard[0]),
            Granularity::KvHead => Hard::KvHeads(hard),
        };
        let expected_fa_ratio = self.config.hard_concrete.expected_l0(row).mean();
        Ok(Some(Decision { hard, surrogate: Some(LayerControl::Mix(gate)), expected_fa_ratio }))
    }
}
