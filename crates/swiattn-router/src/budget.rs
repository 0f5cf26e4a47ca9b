//! The FA budget: the fraction of attention units (layers, KV heads or tokens) on full attention.

use serde::{Deserialize, Serialize};
use swiattn_core::{Error, Result};

/// A target fraction of full attention, in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Budget(f64);

impl Budget {
    /// A budget; values outside `[0, 1]` (or NaN) are an error.
    pub fn new(fraction: f64) -> Result<Self> {
        if (0.0..=1.0).contains(&fraction) {
            Ok(Self(fraction))
        } else {
            Err(Error::Invalid(format!("an FA budget must be in [0, 1], got {fraction}")))
        }
    }

    pub fn fraction(self) -> f64 {
        self.0
    }

    /// How many of `units` a hard allocation at this budget puts on full attention (rounded to
    /// the nearest unit).
    pub fn units(self, units: usize) -> usize {
        (self.0 * units as f64).round() as usize
    }
}

impl TryFrom<f64> for Budget {
    type Error = Error;
    fn try_from(f: f64) -> Result<Self> {
        Budget::new(f)
    }
}

impl From<Budget> for f64 {
    fn from(b: Budget) -> f64 {
        b.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_outside_the_unit_interval_are_errors() {
        for bad in [-0.1, 1.5, f64::NAN] {
            let e = Budget::new(bad).unwrap_err().to_string();
            assert!(e.contains("[0, 1]"), "{e}");
        }
        assert!(serde_json::from_str::<Budget>("1.2").is_err());
        assert_eq!(Budget::new(0.25).unwrap().units(18), 5); // 4.5 rounds up
        assert_eq!(Budget::new(1.0).unwrap().units(7), 7);
    }
}
