//! SwiAttn's efficiency regularizer: a penalty on the gap between the FA ratio and its target
//! `t`, over all routed layers or per layer.
//!
//! The differentiable ratio `r̂` is the mean router probability (see [`crate::router`]); the
//! measured ratio `r` is the fraction of tokens actually routed to FA.
//!
//! | coefficient | penalty | update after each step |
//! |---|---|---|
//! | `fixed` (the non-adaptive ablation) | `μ·(r̂ − t)²` | none |
//! | `dual_ascent` (adaptive) | `μ·(r̂ − t)` | `μ ← μ + η·(r − t)` |
//! | `pi` (adaptive) | `μ·(r̂ − t)` | `μ = k_p·e + k_i·Σe`, `e = r − t` |
//!
//! The adaptive coefficient is a Lagrange multiplier of the constraint `r = t`: it grows while the
//! model spends more FA than the target and turns negative (pushing FA up) while it spends less,
//! so the achieved ratio tracks the target whatever the task pressure.
//!
//! Config keys: `target`, `coefficient = "fixed" | "dual_ascent" | "pi"`, `mu` (fixed), `lr`
//! (dual ascent), `kp`, `ki` (PI), `scope = "global" | "per_layer"`.

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Budget, Decision, Scope};

/// How the penalty coefficient is set. Read as a tagged table whose errors name their key
/// ([`swiattn_core::tagged`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Coefficient {
    Fixed { mu: f64 },
    DualAscent { lr: f64 },
    Pi { kp: f64, ki: f64 },
}

impl<'de> Deserialize<'de> for Coefficient {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use swiattn_core::tagged::{fields, split};
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Mu {
            mu: f64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Lr {
            lr: f64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Gains {
            kp: f64,
            ki: f64,
        }
        let (kind, table) = split(deserializer, "kind")?;
        match kind.as_str() {
            "fixed" => fields(table).map(|Mu { mu }| Coefficient::Fixed { mu }),
            "dual_ascent" => fields(table).map(|Lr { lr }| Coefficient::DualAscent { lr }),
            "pi" => fields(table).map(|Gains { kp, ki }| Coefficient::Pi { kp, ki }),
            other => Err(serde::de::Error::unknown_variant(other, &["fixed", "dual_ascent", "pi"])),
        }
    }
}

/// The state of one coefficient (one global, or one per layer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoefficientState {
    pub mu: f64,
    /// Σ e, for the PI controller.
    pub integral: f64,
}

/// The regularizer and its coefficients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EfficiencyRegularizer {
    pub target: Budget,
    pub coefficient: Coefficient,
    pub scope: Scope,
    /// Keyed by layer index (`PerLayer`), or the single key `"all"` (`Global`); empty in a config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, CoefficientState>,
}

impl EfficiencyRegularizer {
    pub fn new(target: Budget, coefficient: Coefficient, scope: Scope) -> Self {
        Self { target, coefficient, scope, state: BTreeMap::new() }
    }

    /// Groups of (key, decisions): one group over all layers, or one per layer.
    fn groups<'a>(&self, decisions: &'a BTreeMap<usize, Decision>) -> Vec<(String, Vec<&'a Decision>)> {
        match self.scope {
            Scope::Global => vec![("all".to_string(), decisions.values().collect())],
            Scope::PerLayer => decisions.iter().map(|(&l, d)| (l.to_string(), vec![d])).collect(),
        }
    }

    fn mu(&self, key: &str) -> f64 {
        match self.coefficient {
            Coefficient::Fixed { mu } => mu,
            _ => self.state.get(key).map_or(0.0, |s| s.mu),
        }
    }

    /// The penalty of one forward pass's decisions, `[1]`, differentiable in the routers.
    /// `None` when there is nothing to regularize (no decision carries a surrogate).
    pub fn penalty(&self, decisions: &BTreeMap<usize, Decision>) -> Option<Tensor<1>> {
        let t = self.target.fraction();
        self.groups(decisions)
            .into_iter()
            .filter(|(_, ds)| ds.iter().any(|d| d.surrogate.is_some()))
            .map(|(key, ds)| {
                let n = ds.len() as f64;
                let soft = ds.iter().map(|d| d.expected_fa_ratio.clone()).reduce(|a, b| a + b).expect("non-empty") / n;
                let gap = soft.sub_scalar(t);
                match self.coefficient {
                    Coefficient::Fixed { mu } => gap.square() * mu,
                    _ => gap * self.mu(&key),
                }
            })
            .reduce(|a, b| a + b)
    }

    /// Adapt the coefficients to the last step's measured (hard) FA ratio of each routed layer
    /// ([`measured`]; averaged over the micro-batches when gradients are accumulated).
    pub fn update(&mut self, measured: &BTreeMap<usize, f64>) {
        let t = self.target.fraction();
        let groups: Vec<(String, Vec<f64>)> = match self.scope {
            Scope::Global => vec![("all".to_string(), measured.values().copied().collect())],
            Scope::PerLayer => measured.iter().map(|(&l, &r)| (l.to_string(), vec![r])).collect(),
        };
        for (key, ratios) in groups {
            if ratios.is_empty() {
                continue;
            }
            let e = ratios.iter().sum::<f64>() / ratios.len() as f64 - t;
            let state = self.state.entry(key).or_default();
            match self.coefficient {
                Coefficient::Fixed { .. } => {}
                Coefficient::DualAscent { lr } => state.mu += lr * e,
                Coefficient::Pi { kp, ki } => {
                    state.integral += e;
                    state.mu = kp * e + ki * state.integral;
                }
            }
        }
    }
}

/// The measured (hard) FA ratio of each routed layer in one forward pass's decisions.
pub fn measured(decisions: &BTreeMap<usize, Decision>) -> BTreeMap<usize, f64> {
    decisions.iter().map(|(&l, d)| (l, d.hard.fa_ratio())).collect()
}
