//! DuoAttention-style head gates (Xiao et al., 2024), as an extra baseline: every KV head has a
//! gate `α ∈ [0, 1]` that mixes its full and sliding outputs, `out = sliding + α·(full − sliding)`,
//! trained with an L1 penalty `λ·mean(α)` that pushes heads that do not need full attention
//! towards the sliding window. [`DuoGates::binarize`] keeps the `round(budget · heads)` heads with
//! the largest gates on full attention — a quantile threshold that meets the budget exactly.
//!
//! In a training run (`[duo]`, docs/policies.md) the gates train with the model for
//! `stage1_steps`, are binarized to the budget, and the model trains on with that allocation, as
//! ConSA's two stages do.
//!
//! Config keys ([`DuoConfig`]): `budget`, `l1` (λ), `init_gate` (default 1: start as full attention).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use swiattn_core::attention::Window;
use swiattn_core::model::{Allocation, Granularity, LayerControl, ModelShape};
use swiattn_core::{Error, Result};

use crate::{Budget, Decision, Hard, Policy, host};

/// Duo's settings: `budget` is required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuoConfig {
    /// The fraction of KV heads kept on full attention when the gates are binarized.
    pub budget: Budget,
    /// λ of the penalty `λ·mean(α)` added to the loss (0.05: a start, not a tuned value).
    #[serde(default = "default_l1")]
    pub l1: f64,
    /// Every gate's first value (1: the model starts as full attention).
    #[serde(default = "default_init_gate")]
    pub init_gate: f64,
}

fn default_l1() -> f64 {
    0.05
}

fn default_init_gate() -> f64 {
    1.0
}

impl DuoConfig {
    pub fn new(budget: Budget) -> Self {
        Self { budget, l1: default_l1(), init_gate: default_init_gate() }
    }

    /// Check the values that parse but cannot train; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if !(self.l1 >= 0.0 && self.l1.is_finite()) {
            return Err(Error::Invalid(format!("l1 = {} must be a finite λ ≥ 0", self.l1)));
        }
        if !(0.0..=1.0).contains(&self.init_gate) {
            return Err(Error::Invalid(format!("init_gate = {} must be in [0, 1]", self.init_gate)));
        }
        Ok(())
    }
}

/// The gate parameters, `[layers, kv_heads]`, kept in `[0, 1]` by [`DuoGates::project`].
#[derive(Module, Debug)]
pub struct DuoGates {
    pub alpha: Param<Tensor<2>>,
    #[module(skip)]
    pub model: ModelShape,
    #[module(skip)]
    pub window: Window,
}

impl DuoGates {
    /// Every gate at `init` (1.0: the model starts as full attention).
    pub fn new(model: ModelShape, window: Window, init: f64, device: &Device) -> Self {
        let (layers, heads) = (model.num_hidden_layers, model.num_key_value_heads);
        let values = vec![init.clamp(0.0, 1.0) as f32; layers * heads];
        let alpha = Param::from_tensor(Tensor::from_data(TensorData::new(values, [layers, heads]), device));
        Self { alpha, model, window }
    }

    /// `λ·mean(α)`, `[1]` (the gates are non-negative, so this is the L1 norm over the count).
    pub fn l1_penalty(&self, lambda: f64) -> Tensor<1> {
        self.alpha.val().mean() * lambda
    }

    /// The gates on the host, layer-major.
    pub fn values(&self) -> Vec<f32> {
        host(self.alpha.val())
    }

    /// Clip the gates back into `[0, 1]` (after an optimizer step; the clip is not part of the
    /// graph).
    pub fn project(self) -> Self {
        let alpha = self.alpha.map(|a| {
            let tracked = a.is_require_grad();
            a.clamp(0.0, 1.0).detach().set_require_grad(tracked)
        });
        Self { alpha, ..self }
    }

    /// The `round(budget · heads)` heads with the largest gates (ties by position) on full
    /// attention.
    pub fn binarize(&self, budget: Budget) -> Result<Allocation> {
        let alpha = self.values();
        let k = budget.units(alpha.len());
        let mut order: Vec<usize> = (0..alpha.len()).collect();
        order.sort_by(|&a, &b| alpha[b].total_cmp(&alpha[a]).then(a.cmp(&b)));
        let mut full = vec![false; alpha.len()];
        for &i in &order[..k] {
            full[i] = true;
        }
        let heads = self.model.num_key_value_heads;
        let rows = full.chunks(heads).map(<[bool]>::to_vec).collect();
        let mut allocation = Allocation::new("duo-heads", self.model.clone(), self.window, Granularity::KvHead, rows)?;
        allocation.budget = Some(budget.fraction());
        if k > 0 && k < alpha.len() {
            let threshold = (alpha[order[k - 1]] + alpha[order[k]]) / 2.0;
            allocation.notes.insert("gate_threshold".into(), f64::from(threshold).into());
        }
        Ok(allocation)
    }
}

impl Policy for DuoGates {
    fn decide(&mut self, layer: usize, _input: &Tensor<3>) -> Result<Option<Decision>> {
        let heads = self.model.num_key_value_heads;
        let q_heads = self.model.num_attention_heads;
        let row = self.alpha.val().slice([layer..layer + 1, 0..heads]).reshape([heads]);
        let hard = Hard::KvHeads(host(row.clone()).iter().map(|&a| a > 0.5).collect());
        let gate = row.clone().reshape([heads, 1]).expand([heads, q_heads / heads]).reshape([1, q_heads, 1, 1]);
        Ok(Some(Decision { hard, surrogate: Some(LayerControl::Mix(gate)), expected_fa_ratio: row.mean() }))
    }
}
