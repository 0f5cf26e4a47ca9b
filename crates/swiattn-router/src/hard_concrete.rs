//! The hard-concrete distribution (Louizos, Welling & Kingma, 2018, "Learning Sparse Neural
//! Networks through L0 Regularization"): a relaxed Bernoulli stretched to `(γ, ζ)` and clipped to
//! `[0, 1]`, so a gate is exactly 0 or 1 with positive probability yet differentiable in
//! `log α`.
//!
//! - sample: `s = σ((ln u − ln(1 − u) + log α) / β)`, `z = min(1, max(0, s·(ζ − γ) + γ))`,
//!   `u ~ U(0, 1)`
//! - expected L0 (probability that the gate is non-zero): `P(z > 0) = σ(log α − β·ln(−γ/ζ))`
//! - deterministic gate (evaluation): `min(1, max(0, σ(log α)·(ζ − γ) + γ))`
//!
//! Defaults: `β = 2/3`, `γ = −0.1`, `ζ = 1.1`.

use burn::tensor::{Device, Tensor, TensorData, activation::sigmoid};
use rand::{Rng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// Parameters of the hard-concrete distribution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HardConcrete {
    /// Temperature β (default 2/3).
    pub beta: f64,
    /// Lower stretch limit γ < 0 (default −0.1).
    pub gamma: f64,
    /// Upper stretch limit ζ > 1 (default 1.1).
    pub zeta: f64,
}

impl Default for HardConcrete {
    fn default() -> Self {
        Self { beta: 2.0 / 3.0, gamma: -0.1, zeta: 1.1 }
    }
}

impl HardConcrete {
    /// Gates sampled with uniform noise `u` (same shape as `log_alpha`, values in (0, 1)).
    pub fn sample_with<const D: usize>(&self, log_alpha: Tensor<D>, u: Tensor<D>) -> Tensor<D> {
        let logistic = u.clone().log() - u.neg().add_scalar(1.0).log();
        let s = sigmoid((logistic + log_alpha) / self.beta);
        (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)
    }

    /// Gates sampled with noise from `rng` (drawn on the host, so every backend sees the same).
    pub fn sample<const D: usize>(&self, log_alpha: Tensor<D>, rng: &mut StdRng) -> Tensor<D> {
        let u = uniform_like(&log_alpha, rng, &log_alpha.device());
        self.sample_with(log_alpha, u)
    }

    /// `P(z > 0)` for each gate: the closed-form expected L0 norm.
    pub fn expected_l0<const D: usize>(&self, log_alpha: Tensor<D>) -> Tensor<D> {
        sigmoid(log_alpha - self.beta * (-self.gamma / self.zeta).ln())
    }

    /// The deterministic gate used after training (the clipped stretched sigmoid of `log α`).
    pub fn deterministic<const D: usize>(&self, log_alpha: Tensor<D>) -> Tensor<D> {
        (sigmoid(log_alpha) * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)
    }
}

/// Uniform noise in `[1e-6, 1 − 1e-6]` with the shape of `like`.
fn uniform_like<const D: usize>(like: &Tensor<D>, rng: &mut StdRng, device: &Device) -> Tensor<D> {
    let dims = like.dims();
    let values: Vec<f32> = (0..dims.iter().product()).map(|_| rng.random_range(1e-6f32..1.0 - 1e-6)).collect();
    Tensor::from_data(TensorData::new(values, dims), device)
}
