//! The augmented Lagrangian of a budget constraint on an expected FA ratio `ŝ` with target `t`:
//!
//! `L(ŝ, λ) = λ₁·(ŝ − t) + λ₂·(ŝ − t)²`
//!
//! The model minimizes it; the multipliers maximize it by gradient ascent,
//! `λ₁ ← λ₁ + η·(ŝ − t)` and `λ₂ ← λ₂ + η·(ŝ − t)²` (the exact partial derivatives), so the
//! pressure grows while the constraint is violated (as in CoFi and Sheared-LLaMA). One set of
//! multipliers per constraint: one global, or one per layer.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::Budget;

/// Multipliers of one budget constraint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Multipliers {
    pub lambda1: f64,
    pub lambda2: f64,
}

/// One augmented-Lagrangian constraint `ŝ ≈ target`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentedLagrangian {
    pub target: Budget,
    /// Ascent rate η of the multipliers.
    pub lr: f64,
    pub multipliers: Multipliers,
}

impl AugmentedLagrangian {
    pub fn new(target: Budget, lr: f64) -> Self {
        Self { target, lr, multipliers: Multipliers::default() }
    }

    /// `λ₁(ŝ − t) + λ₂(ŝ − t)²` for the expected ratio `ŝ` (`[1]`), differentiable in `ŝ`.
    pub fn penalty(&self, expected: Tensor<1>) -> Tensor<1> {
        let gap = expected.sub_scalar(self.target.fraction());
        gap.clone() * self.multipliers.lambda1 + gap.square() * self.multipliers.lambda2
    }

    /// One ascent step of the multipliers at the current expected ratio.
    pub fn ascend(&mut self, expected: f64) {
        let gap = expected - self.target.fraction();
        self.multipliers.lambda1 += self.lr * gap;
        self.multipliers.lambda2 += self.lr * gap * gap;
    }
}
