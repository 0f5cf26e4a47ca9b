//! Static FA/SWA allocations as small versioned JSON artifacts, kept apart from the weights.
//!
//! An [`Allocation`] says, per layer or per KV head, which units use full attention; policies
//! (rules, ConSA, DuoAttention gates in swiattn-router) produce one, and [`Allocation::apply`]
//! turns it into a model config's `attention_types` / `kv_head_types`. The artifact records the
//! model it was made for; applying it to another model is an error naming both.
//!
//! ```json
//! {"format": "swiattn-allocation", "version": 1, "policy": "consa-layer", "budget": 0.25,
//!  "model": {"model_type": "llama", "num_hidden_layers": 4, "num_attention_heads": 8,
//!            "num_key_value_heads": 2, "hidden_size": 256},
//!  "sliding_window": 512, "granularity": "layer", "full": [[false], [true], [false], [false]],
//!  "notes": {"expected_ratio": 0.251}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::ModelConfig;
use crate::attention::LayerAttention;
use crate::attention::Window;
use crate::{Error, Result};

/// The artifact's `format` field.
pub const FORMAT: &str = "swiattn-allocation";
/// The current artifact version.
pub const VERSION: u32 = 1;

/// What an allocation decides per unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One decision per layer (`full[l]` has one entry).
    Layer,
    /// One decision per KV head (`full[l]` has `num_key_value_heads` entries).
    KvHead,
}

/// The shape of the model an allocation was made for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    pub model_type: String,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub hidden_size: usize,
}

impl ModelShape {
    /// The shape of a model config.
    pub fn of(config: &ModelConfig) -> Self {
        Self {
            model_type: config.model_type.clone(),
            num_hidden_layers: config.num_hidden_layers,
            num_attention_heads: config.num_attention_heads,
            num_key_value_heads: config.num_key_value_heads.unwrap_or(config.num_attention_heads),
            hidden_size: config.hidden_size,
        }
    }
}

impl std::fmt::Display for ModelShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} with {} layers, {} heads ({} KV), hidden {}",
            self.model_type,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.hidden_size
        )
    }
}

/// A static allocation of full attention to layers or KV heads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub format: String,
    pub version: u32,
    /// The policy that produced it (e.g. `interleave-5:1`, `consa-layer`).
    pub policy: String,
    /// The FA budget it was made for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
    pub model: ModelShape,
    /// The window of the sliding units.
    pub sliding_window: usize,
    pub granularity: Granularity,
    /// `full[layer][unit]`: whether the unit uses full attention.
    pub full: Vec<Vec<bool>>,
    /// Free-form facts about how it was made (expected ratios, multipliers, steps).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, serde_json::Value>,
}

impl Allocation {
    /// A new allocation; checks that `full` has one row per layer and one entry per unit.
    pub fn new(
        policy: impl Into<String>,
        model: ModelShape,
        window: Window,
        granularity: Granularity,
        full: Vec<Vec<bool>>,
    ) -> Result<Self> {
        let allocation = Self {
            format: FORMAT.into(),
            version: VERSION,
            policy: policy.into(),
            budget: None,
            model,
            sliding_window: window.size(),
            granularity,
            full,
            notes: BTreeMap::new(),
        };
        allocation.validate("allocation")?;
        Ok(allocation)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::config(origin, "format", format!("`{}` is not `{FORMAT}`", self.format)));
        }
        if self.version != VERSION {
            return Err(Error::config(
                origin,
                "version",
                format!("{} is not supported (only {VERSION})", self.version),
            ));
        }
        Window::new(self.sliding_window).map_err(|e| Error::config(origin, "sliding_window", e.to_string()))?;
        if let Some(b) = self.budget.filter(|b| !(0.0..=1.0).contains(b)) {
            return Err(Error::config(origin, "budget", format!("{b} is outside [0, 1]")));
        }
        let units = match self.granularity {
            Granularity::Layer => 1,
            Granularity::KvHead => self.model.num_key_value_heads,
        };
        if self.full.len() != self.model.num_hidden_layers {
            return Err(Error::config(
                origin,
                "full",
                format!("has {} layers, the model {}", self.full.len(), self.model.num_hidden_layers),
            ));
        }
        if let Some((l, row)) = self.full.iter().enumerate().find(|(_, row)| row.len() != units) {
            return Err(Error::config(
                origin,
                format!("full[{l}]"),
                format!("has {} entries, expected {units} ({:?} granularity)", row.len(), self.granularity),
            ));
        }
        Ok(())
    }

    /// Fraction of units on full attention.
    pub fn fa_ratio(&self) -> f64 {
        let units: usize = self.full.iter().map(Vec::len).sum();
        self.full.iter().flatten().filter(|&&f| f).count() as f64 / units.max(1) as f64
    }

    /// Each layer's attention kind under this allocation.
    pub fn layers(&self) -> Vec<LayerAttention> {
        let window = Window::new(self.sliding_window).expect("validated window");
        self.full
            .iter()
            .map(|row| {
                if row.iter().all(|&f| f) {
                    LayerAttention::Full
                } else if row.iter().all(|&f| !f) {
                    LayerAttention::Sliding(window)
                } else {
                    LayerAttention::HeadMixed { window, full_kv_heads: row.clone() }
                }
            })
            .collect()
    }

    /// `config` with this allocation as its attention layout. Errors if the allocation was made for
    /// a model of another shape.
    pub fn apply(&self, config: ModelConfig) -> Result<ModelConfig> {
        let shape = ModelShape::of(&config);
        if shape != self.model {
            return Err(Error::Invalid(format!(
                "allocation `{}` was made for a {}, but this model is a {shape}",
                self.policy, self.model
            )));
        }
        let config = config.with_attention(&self.layers());
        let config = ModelConfig { sliding_window: Some(self.sliding_window), ..config };
        config.resolve("model config with the allocation")?;
        Ok(config)
    }

    /// Write as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("allocation serializes");
        std::fs::write(path, json + "\n").map_err(|e| Error::io(path, e))
    }

    /// Read and validate an allocation file.
    pub fn load(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let allocation: Allocation = serde_json::from_str(&text)
            .map_err(|e| Error::format(&origin, format!("not a swiattn allocation: {e}")))?;
        allocation.validate(&origin)?;
        Ok(allocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ModelConfig {
        ModelConfig::from_json_str(
            r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 16, "intermediate_size": 32,
                "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2}"#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn round_trips_and_applies() {
        let w = Window::new(8).unwrap();
        let full = vec![vec![true, true], vec![false, true], vec![false, false]];
        let mut a = Allocation::new("test", ModelShape::of(&config()), w, Granularity::KvHead, full).unwrap();
        a.budget = Some(0.5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alloc.json");
        a.save(&path).unwrap();
        assert_eq!(Allocation::load(&path).unwrap(), a);
        assert_eq!(a.fa_ratio(), 0.5);
        let arch = a.apply(config()).unwrap().resolve("test").unwrap();
        assert_eq!(arch.layers[0], LayerAttention::Full);
        assert_eq!(arch.layers[1], LayerAttention::HeadMixed { window: w, full_kv_heads: vec![false, true] });
        assert_eq!(arch.layers[2], LayerAttention::Sliding(w));
    }

    #[test]
    fn rejects_other_models_and_bad_files() {
        let w = Window::new(8).unwrap();
        let a = Allocation::new("test", ModelShape::of(&config()), w, Granularity::Layer, vec![vec![true]; 3]).unwrap();
        let mut other = config();
        other.num_hidden_layers = 4;
        let e = a.apply(other).unwrap_err().to_string();
        assert!(
            e.contains("made for a llama with 3 layers") && e.contains("this model is a llama with 4 layers"),
            "{e}"
        );

        let bad = Allocation::new("test", ModelShape::of(&config()), w, Granularity::KvHead, vec![vec![true]; 3]);
        assert!(bad.unwrap_err().to_string().contains("full[0]"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let mut json: serde_json::Value = serde_json::to_value(&a).unwrap();
        json["version"] = 7.into();
        std::fs::write(&path, json.to_string()).unwrap();
        let e = Allocation::load(&path).unwrap_err().to_string();
        assert!(e.contains("a.json") && e.contains("version"), "{e}");
    }
}
