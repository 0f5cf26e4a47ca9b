//! Learning-rate schedule: linear warm-up, then cosine decay to a floor.

use serde::{Deserialize, Serialize};

/// `lr(step)`: `peak · (step + 1) / warmup` during warm-up, then
/// `peak · (min_ratio + (1 − min_ratio) · (1 + cos(π · progress)) / 2)` until `total`, then the
/// floor `peak · min_ratio`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    pub min_ratio: f64,
}

impl LrSchedule {
    /// A constant rate.
    pub fn constant(lr: f64) -> Self {
        Self { peak: lr, warmup: 0, total: 0, min_ratio: 1.0 }
    }

    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup);
        if span == 0 || step >= self.total {
            return self.peak * self.min_ratio;
        }
        let progress = (step - self.warmup) as f64 / span as f64;
        self.peak * (self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let s = LrSchedule { peak: 1.0, warmup: 10, total: 110, min_ratio: 0.1 };
        assert_eq!(s.at(0), 0.1);
        assert_eq!(s.at(9), 1.0);
        assert!((s.at(10) - 1.0).abs() < 1e-12);
        assert!((s.at(60) - 0.55).abs() < 1e-12, "half-way is the midpoint");
        assert_eq!(s.at(110), 0.1);
        assert_eq!(s.at(10_000), 0.1);
        assert_eq!(LrSchedule::constant(3e-4).at(7), 3e-4);
    }
}
