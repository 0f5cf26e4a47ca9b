//! The training run's configuration: one TOML file, every key defaulted, written fully resolved into
//! the run directory (`config.toml`) so a run can be reproduced or resumed from it alone.
//!
//! ```toml
//! seed = 0
//! steps = 2000
//! batch_size = 16
//! grad_accumulation = 1       # micro-batches per optimizer step
//! devices = 1                 # data parallel over this many GPUs (grad_accumulation a multiple)
//!
//! [data]                      # synthetic tasks (no downloads)
//! task = "lagged_copy"        # or "span_recall" (see synthetic.rs for their keys)
//! seq_len = 128
//! lag = 48
//!
//! [model]
//! from = "scratch"            # or a Hugging Face directory / GGUF file to continue pretraining
//! hidden_size = 64            # the from-scratch shape
//! sliding_window = 16
//! attention_pattern = "RR"    # the layout to train: F, S, R (routed), H, tiled over layers
//!
//! [optim]
//! lr = 5e-3
//! warmup = 50
//!
//! [routing]                   # used when the layout has routed layers
//! router = { init_bias = 2.0 }
//! regularizer = { target = 0.1, coefficient = { kind = "dual_ascent", lr = 0.02 }, scope = "global" }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use swiattn_core::{Error, Result};
use swiattn_router::Scope;
use swiattn_router::consa::{Binarize, ConsaConfig};
use swiattn_router::duo::DuoConfig;
use swiattn_router::regularizer::{Coefficient, EfficiencyRegularizer};
use swiattn_router::router::RouterConfig;

use crate::data::packed::TextData;
use crate::precision::Precision;
use crate::synthetic::{LaggedCopy, RecallConfig};

/// A training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub seed: u64,
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation): a step sees
    /// `batch_size · grad_accumulation` sequences.
    pub grad_accumulation: usize,
    /// Data-parallel devices of the backend (CUDA 0..devices); the micro-batches of a step are
    /// spread over them, so `grad_accumulation` must be a multiple.
    pub devices: usize,
    /// Steps between evaluations on held-out data (0: only at the end).
    pub eval_every: usize,
    pub eval_sequences: usize,
    /// Steps between checkpoints (0: only at the end).
    pub save_every: usize,
    /// How many of the latest checkpoints to keep (the best-validation one is kept as well).
    pub keep_last: usize,
    /// Steps between metric lines.
    pub log_every: usize,
    pub data: DataConfig,
    pub model: ModelSection,
    pub optim: OptimConfig,
    pub routing: RoutingConfig,
    /// ConSA: learn a static allocation for `stage1_steps`, binarize it, train on with it fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consa: Option<ConsaSection>,
    /// DuoAttention-style head gates, in the same two stages as ConSA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duo: Option<DuoSection>,
}

/// ConSA's two stages in one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsaSection {
    /// Steps of stage 1 (gates learned); stage 2 (allocation fixed) runs until `steps`.
    pub stage1_steps: usize,
    #[serde(default = "top_k")]
    pub binarize: Binarize,
    /// The gates (keys in docs/policies.md): `{ granularity = "kv_head", budget = 0.25, ... }`.
    pub gates: ConsaConfig,
}

/// Duo's two stages in one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuoSection {
    /// Steps of stage 1 (gates learned with their L1 penalty); stage 2 (the `budget`'s heads on
    /// full attention, fixed) runs until `steps`.
    pub stage1_steps: usize,
    /// The gates (keys in docs/policies.md): `{ budget = 0.25, l1 = 0.05, init_gate = 1.0 }`.
    pub gates: DuoConfig,
}

impl TrainConfig {
    /// The step that ends the first stage of a policy that learns a static allocation (ConSA,
    /// Duo), and the section's key.
    pub fn stage1_steps(&self) -> Option<(usize, &'static str)> {
        match (&self.consa, &self.duo) {
            (Some(c), _) => Some((c.stage1_steps, "consa")),
            (None, Some(d)) => Some((d.stage1_steps, "duo")),
            (None, None) => None,
        }
    }
}

fn top_k() -> Binarize {
    Binarize::TopK
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 2000,
            batch_size: 16,
            grad_accumulation: 1,
            devices: 1,
            eval_every: 500,
            eval_sequences: 256,
            save_every: 500,
            keep_last: 2,
            log_every: 10,
            data: DataConfig::default(),
            model: ModelSection::default(),
            optim: OptimConfig::default(),
            routing: RoutingConfig::default(),
            consa: None,
            duo: None,
        }
    }
}

/// Where the training sequences come from: a synthetic task, or text shards from
/// `swiattn data prepare`. Read as a tagged table whose errors name their key
/// ([`swiattn_core::tagged`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum DataConfig {
    LaggedCopy(LaggedCopy),
    SpanRecall(RecallConfig),
    Text(TextData),
}

impl<'de> Deserialize<'de> for DataConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use swiattn_core::tagged::{fields, split};
        let (task, table) = split(deserializer, "task")?;
        match task.as_str() {
            "lagged_copy" => fields(table).map(DataConfig::LaggedCopy),
            "span_recall" => fields(table).map(DataConfig::SpanRecall),
            "text" => fields(table).map(DataConfig::Text),
            other => Err(serde::de::Error::unknown_variant(other, &["lagged_copy", "span_recall", "text"])),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig::LaggedCopy(LaggedCopy::default())
    }
}

/// The model: its starting point, its from-scratch shape, and the attention layout to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// `"scratch"`, or a Hugging Face directory / GGUF file to continue pretraining from.
    pub from: String,
    /// From scratch: a Hugging Face `config.json` giving the shape (e.g. SmolLM2-135M's), randomly
    /// initialized; empty: the shape keys below.
    pub config: String,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub initializer_range: f64,
    /// The window of sliding and routed layers.
    pub sliding_window: usize,
    /// The layout to train (F, S, R, H per layer, tiled); empty keeps the model's own.
    pub attention_pattern: String,
    /// A rule baseline's layout instead (`interleave:5`, `layers:3,7`, `heads:0.25`, … as for
    /// `swiattn allocate`); empty: `attention_pattern`.
    pub rule: String,
    /// `f32`, or `bf16` / `f16`: compute in that dtype with fp32 master weights.
    pub dtype: Precision,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            from: "scratch".into(),
            config: String::new(),
            hidden_size: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            initializer_range: 0.1,
            sliding_window: 16,
            attention_pattern: "F".into(),
            rule: String::new(),
            dtype: Precision::F32,
        }
    }
}

/// Optimizer and schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate of the model (AdamW).
    pub lr: f64,
    pub warmup: usize,
    /// Cosine decay ends at `lr · min_lr_ratio` on the last step.
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    /// Learning rate of routers (Adam, no weight decay).
    pub router_lr: f64,
    /// Clip the model's gradients to this global L2 norm (0: no clipping).
    pub grad_clip: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self { lr: 5e-3, warmup: 50, min_lr_ratio: 0.1, weight_decay: 0.01, router_lr: 1e-2, grad_clip: 1.0 }
    }
}

/// Routers and their regularizer, for routed layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    pub router: RouterConfig,
    pub regularizer: EfficiencyRegularizer,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            router: RouterConfig::default(),
            regularizer: EfficiencyRegularizer::new(
                swiattn_router::Budget::new(0.1).expect("0.1 is a budget"),
                Coefficient::DualAscent { lr: 0.02 },
                Scope::Global,
            ),
        }
    }
}

impl TrainConfig {
    /// Parse a TOML config; errors name the file and the key.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| Error::Invalid(format!("{origin}: {e}")))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Read a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The fully resolved TOML (every key, defaults included).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a training config serializes")
    }

    /// Check values that parse but cannot run.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |field: &str, message: String| Error::config(origin, field, message);
        if self.steps == 0 {
            return Err(err("steps", "must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(err("batch_size", "must be at least 1".into()));
        }
        if self.grad_accumulation == 0 {
            return Err(err("grad_accumulation", "must be at least 1".into()));
        }
        if self.devices == 0 || self.grad_accumulation % self.devices != 0 {
            return Err(err(
                "devices",
                format!(
                    "{} devices need grad_accumulation ({}) to be a multiple of them (a micro-batch per device)",
                    self.devices, self.grad_accumulation
                ),
            ));
        }
        if self.log_every == 0 {
            return Err(err("log_every", "must be at least 1".into()));
        }
        if self.eval_sequences == 0 {
            return Err(err("eval_sequences", "must be at least 1 (a held-out loss over nothing is no loss)".into()));
        }
        let o = &self.optim;
        let ranges = [
            ("optim.lr", o.lr, o.lr > 0.0, "must be positive"),
            ("optim.min_lr_ratio", o.min_lr_ratio, (0.0..=1.0).contains(&o.min_lr_ratio), "must be in [0, 1]"),
            ("optim.weight_decay", o.weight_decay, o.weight_decay >= 0.0, "must not be negative"),
            ("optim.router_lr", o.router_lr, o.router_lr >= 0.0, "must not be negative"),
            ("optim.grad_clip", o.grad_clip, o.grad_clip >= 0.0, "must not be negative (0: no clipping)"),
        ];
        for (field, value, ok, rule) in ranges {
            if !(ok && value.is_finite()) {
                return Err(err(field, format!("{value} {rule}")));
            }
        }
        if !self.model.rule.is_empty() {
            let rule: Result<swiattn_router::rules::Rule> = self.model.rule.parse();
            rule.map_err(|e| err("model.rule", e.to_string()))?;
        }
        if self.consa.is_some() && self.duo.is_some() {
            return Err(err("duo", "[consa] and [duo] exclude each other: a run learns one allocation".into()));
        }
        if let Some((stage1, section)) = self.stage1_steps() {
            if !self.model.rule.is_empty() {
                return Err(err("model.rule", format!("a rule's layout and [{section}] exclude each other")));
            }
            if stage1 == 0 || stage1 >= self.steps {
                return Err(err(
                    &format!("{section}.stage1_steps"),
                    format!("{stage1} must be in 1..steps ({})", self.steps),
                ));
            }
            if self.model.attention_pattern.chars().any(|ch| ch.eq_ignore_ascii_case(&'R')) {
                return Err(err(
                    section,
                    format!("[{section}] learns a static allocation; the layout must not have routed layers"),
                ));
            }
        }
        if let Some(d) = &self.duo {
            d.gates.validate().map_err(|e| err("duo.gates", e.to_string()))?;
        }
        match &self.data {
            DataConfig::LaggedCopy(t) => t.validate(),
            DataConfig::SpanRecall(t) => t.validate(),
            DataConfig::Text(t) if t.seq_len < 2 => Err(Error::Invalid("seq_len must be at least 2".into())),
            DataConfig::Text(_) => Ok(()),
        }
        .map_err(|e| err("data", e.to_string()))?;
        Ok(())
    }
}

/// The default run directory of a config file: `runs/<file stem>`.
pub fn default_run_dir(config: &Path) -> PathBuf {
    PathBuf::from("runs").join(config.file_stem().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses_and_round_trips() {
        let text = r#"
            seed = 3
            steps = 100
            [data]
            task = "lagged_copy"
            seq_len = 64
            lag = 24
            [model]
            attention_pattern = "SR"
            [routing]
            router = { init_bias = 1.5 }
            regularizer = { target = 0.2, coefficient = { kind = "pi", kp = 1.0, ki = 0.02 }, scope = "per_layer" }
        "#;
        let config = TrainConfig::from_toml(text, "run.toml").unwrap();
        assert_eq!(config.routing.router.init_bias, 1.5);
        assert_eq!(config.routing.regularizer.scope, Scope::PerLayer);
        assert_eq!(config.data, DataConfig::LaggedCopy(LaggedCopy { seq_len: 64, lag: 24, filler_symbols: 32 }));
        assert_eq!(TrainConfig::from_toml(&config.to_toml(), "resolved").unwrap(), config);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let e = TrainConfig::from_toml("stepz = 3", "run.toml").unwrap_err().to_string();
        assert!(e.contains("run.toml") && e.contains("stepz"), "{e}");
        let e = TrainConfig::from_toml("steps = 0", "run.toml").unwrap_err().to_string();
        assert!(e.contains("steps"), "{e}");
        let e =
            TrainConfig::from_toml("[data]\ntask = \"lagged_copy\"\nlag = 500", "run.toml").unwrap_err().to_string();
        assert!(e.contains("data") && e.contains("lag"), "{e}");
        let e = TrainConfig::from_toml("[routing]\nregularizer = { target = 2.0, coefficient = { kind = \"fixed\", mu = 1.0 }, scope = \"global\" }", "run.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[0, 1]"), "{e}");
    }

    #[test]
    fn type_errors_inside_tagged_tables_name_the_key() {
        let cases = [
            ("[data]\ntask = \"lagged_copy\"\nlag = \"x\"", "lag: invalid type: string"),
            ("[data]\ntask = \"text\"\nshards = \"s\"\nseq_len = -4", "seq_len: invalid value: integer `-4`"),
            ("[data]\ntask = \"lagged_copy\"\nlagg = 3", "unknown field `lagg`"),
            ("[data]\ntask = \"copy\"", "unknown variant `copy`"),
            (
                "[routing]\nregularizer = { target = 0.2, coefficient = { kind = \"pi\", kp = \"1\", ki = 0.1 }, scope = \"global\" }",
                "kp: invalid type: string",
            ),
            (
                "[routing]\nregularizer = { target = 0.2, coefficient = { kind = \"fixed\", mu = 1.0, lr = 0.1 }, scope = \"global\" }",
                "unknown field `lr`",
            ),
        ];
        for (text, want) in cases {
            let e = TrainConfig::from_toml(text, "run.toml").unwrap_err().to_string();
            assert!(e.contains("run.toml") && e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn values_that_parse_but_cannot_train_name_the_key() {
        let cases = [
            ("eval_sequences = 0", "eval_sequences"),
            ("[optim]\nlr = 0.0", "optim.lr"),
            ("[optim]\nlr = nan", "optim.lr"),
            ("[optim]\nmin_lr_ratio = -0.1", "optim.min_lr_ratio"),
            ("[optim]\nmin_lr_ratio = 1.5", "optim.min_lr_ratio"),
            ("[optim]\nweight_decay = -0.01", "optim.weight_decay"),
            ("[optim]\nrouter_lr = -1e-2", "optim.router_lr"),
            ("[optim]\ngrad_clip = -1.0", "optim.grad_clip"),
            ("[optim]\ngrad_clip = inf", "optim.grad_clip"),
            ("steps = 10\n[duo]\nstage1_steps = 10\ngates = { budget = 0.25 }", "duo.stage1_steps"),
            ("[duo]\nstage1_steps = 5\ngates = { budget = 0.25, l1 = -1.0 }", "duo.gates"),
            ("[duo]\nstage1_steps = 5\ngates = { budget = 0.25, init_gate = 2.0 }", "duo.gates"),
            ("[model]\nattention_pattern = \"FR\"\n[duo]\nstage1_steps = 5\ngates = { budget = 0.25 }", "duo"),
            ("[model]\nrule = \"interleave:1\"\n[duo]\nstage1_steps = 5\ngates = { budget = 0.25 }", "model.rule"),
            (
                "[duo]\nstage1_steps = 5\ngates = { budget = 0.25 }\n[consa]\nstage1_steps = 5\ngates = { granularity = \"layer\", budget = 0.25 }",
                "duo",
            ),
        ];
        for (text, key) in cases {
            let e = TrainConfig::from_toml(text, "run.toml").unwrap_err().to_string();
            assert!(e.contains("run.toml") && e.contains(key), "{text}: {e}");
        }
        let duo = "[duo]\nstage1_steps = 5\ngates = { budget = 0.25, l1 = 0.0, init_gate = 0.0 }";
        for edge in ["[optim]\nmin_lr_ratio = 0.0", "[optim]\nmin_lr_ratio = 1.0", "[optim]\ngrad_clip = 0.0", duo] {
            TrainConfig::from_toml(edge, "run.toml").unwrap();
        }
    }

    /// Seeded mutations of a fully resolved config (every key written, a ConSA section and the
    /// recall task included; `testing::mutate_text`: truncations, flipped bits, numbers set to
    /// extremes, random characters). Each parses to a config that validates, or to one error naming
    /// the file — never a panic.
    #[test]
    fn mutated_configs_error_or_parse_never_panic() {
        use rand::SeedableRng;
        let mut base = TrainConfig::default();
        base.data = DataConfig::SpanRecall(crate::synthetic::RecallConfig::default());
        base.consa = Some(ConsaSection {
            stage1_steps: 10,
            binarize: Binarize::TopK,
            gates: ConsaConfig::new(swiattn_router::Granularity::KvHead, swiattn_router::Budget::new(0.5).unwrap()),
        });
        let text = base.to_toml();
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        let (mut errors, mut parsed) = (0, 0);
        for case in 0..2000 {
            let mutated = swiattn_core::testing::mutate_text(&text, case, &mut rng);
            let result = std::panic::catch_unwind(|| TrainConfig::from_toml(&mutated, "run.toml"));
            match result {
                Ok(Ok(config)) => {
                    config.validate("run.toml").unwrap();
                    parsed += 1;
                }
                Ok(Err(e)) => {
                    assert!(e.to_string().contains("run.toml"), "case {case}: the error names no file: {e}");
                    errors += 1;
                }
                Err(_) => panic!("case {case}: parsing panicked on\n{mutated}"),
            }
        }
        eprintln!("2000 mutations: {errors} clear errors, {parsed} parsed");
        assert!(errors > 500 && parsed > 100, "both outcomes should occur ({errors} errors, {parsed} parsed)");
    }
}
