//! The quickstart: does per-token routing buy far-back recall for a fraction of full attention's
//! cost? On the [`LaggedCopy`] task (after each marker, copy the token `lag` positions back, past
//! the window), a small model is pretrained with full attention, then converted and trained a
//! little further in four ways from the same checkpoint — the continual-pretraining recipe:
//!
//! | variant | layers |
//! |---|---|
//! | `full` | every layer full attention |
//! | `sliding` | every layer sliding-window |
//! | `interleave:1` | the rule baseline: sliding then full, alternating |
//! | `swiattn` | every layer routed per token by a learned router, held to an FA budget |
//!
//! Each is evaluated on held-out sequences: accuracy at the far-back (recall) positions, mean
//! next-token loss, the FA ratio actually spent (over layers and tokens) and attention FLOPs
//! relative to full attention (window-aware, from the measured routes).

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::Serialize;
use swiattn_core::Result;
use swiattn_core::accounting::{RoutedLayers, account};
use swiattn_core::attention::{RouteMask, Window};
use swiattn_core::model::{LayerAttention, ModelConfig, ModelShape, Transformer};
use swiattn_router::regularizer::{Coefficient, EfficiencyRegularizer};
use swiattn_router::router::{RouterConfig, Routers, SwiAttn};
use swiattn_router::rules::Rule;
use swiattn_router::{Budget, Scope};

use crate::data::Batch;
use crate::routing::Routing;
use crate::schedule::LrSchedule;
use crate::synthetic::LaggedCopy;
use crate::trainer::{Evaluation, OptimizerSettings, Trainer};

/// Quickstart settings (the defaults run in a few minutes on two CPU cores).
#[derive(Clone, Debug, Serialize)]
pub struct QuickstartConfig {
    pub task: LaggedCopy,
    pub window: usize,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub initializer_range: f64,
    pub batch: usize,
    pub pretrain_steps: usize,
    pub pretrain_lr: f64,
    pub convert_steps: usize,
    pub convert_lr: f64,
    /// FA budget of the SwiAttn variant: the target fraction of (layer, token) pairs on FA.
    pub fa_target: f64,
    pub router_lr: f64,
    pub eval_sequences: usize,
    pub seed: u64,
}

impl Default for QuickstartConfig {
    fn default() -> Self {
        Self {
            task: LaggedCopy::default(),
            window: 16,
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            initializer_range: 0.1,
            batch: 16,
            pretrain_steps: 1600,
            pretrain_lr: 5e-3,
            convert_steps: 400,
            convert_lr: 1e-3,
            fa_target: 0.08,
            router_lr: 1e-2,
            eval_sequences: 256,
            seed: 0,
        }
    }
}

/// One row of the result table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub variant: String,
    pub recall_accuracy: f64,
    pub loss: f64,
    pub fa_ratio: f64,
    pub attention_flops_vs_full: f64,
}

/// Where the quickstart is, for progress display.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub phase: &'a str,
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
}

/// `n` sequences starting at index `start` of the stream seeded by `seed`.
pub fn batch(task: &LaggedCopy, seed: u64, start: u64, n: usize, device: &Device) -> Batch {
    Batch::from_examples((0..n as u64).map(|i| task.example(seed, start + i)).collect(), device)
}

fn model_config(config: &QuickstartConfig) -> Result<ModelConfig> {
    let json = serde_json::json!({
        "model_type": "llama",
        "vocab_size": config.task.vocab_size(),
        "hidden_size": config.hidden,
        "intermediate_size": 2 * config.hidden,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.hidden / config.heads,
        "sliding_window": config.window,
        "tie_word_embeddings": true,
        "initializer_range": config.initializer_range,
    });
    ModelConfig::from_json_str(&json.to_string(), "quickstart model")
}

fn train(
    trainer: &mut Trainer,
    phase: &str,
    steps: usize,
    config: &QuickstartConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    for step in 0..steps {
        let b = batch(&config.task, config.seed, (trainer.step * config.batch) as u64, config.batch, device);
        let metrics = trainer.train_step(std::slice::from_ref(&b))?;
        progress(Progress { phase, step: step + 1, steps, loss: metrics.loss });
    }
    Ok(())
}

/// Pretrain with full attention, convert four ways, train each a little further, evaluate.
/// `device` must have autodiff.
pub fn run(config: &QuickstartConfig, device: &Device, progress: &mut dyn FnMut(Progress)) -> Result<Vec<Row>> {
    config.task.validate()?;
    device.seed(config.seed);
    let model_config = model_config(config)?;
    let window = Window::new(config.window)?;
    let shape = ModelShape::of(&model_config);
    let base = Transformer::new(model_config, device)?;
    let schedule = LrSchedule { peak: config.pretrain_lr, warmup: 50, total: config.pretrain_steps, min_ratio: 0.1 };
    let settings =
        |schedule| OptimizerSettings { schedule, weight_decay: 0.01, router_lr: config.router_lr, grad_clip: None };
    let mut trainer = Trainer::new(base, Routing::None, settings(schedule));
    train(&mut trainer, "pretrain (full attention)", config.pretrain_steps, config, device, progress)?;
    let (base, _) = trainer.into_parts();

    let eval: Vec<Batch> = (0..config.eval_sequences.div_ceil(config.batch))
        .map(|i| batch(&config.task, config.seed + 1_000_003, (i * config.batch) as u64, config.batch, device))
        .collect();
    let rule = Rule::Interleave { sliding: 1 };
    let variants: Vec<(String, Vec<LayerAttention>)> = vec![
        ("full".into(), vec![LayerAttention::Full; config.layers]),
        ("sliding".into(), vec![LayerAttention::Sliding(window); config.layers]),
        (rule.name(), rule.allocation(&shape, window)?.layers()),
        ("swiattn".into(), vec![LayerAttention::Routed(window); config.layers]),
    ];
    let mut rows = Vec::new();
    for (name, layers) in variants {
        let model = base.clone().with_attention(&layers)?;
        let routed: Vec<usize> =
            (0..layers.len()).filter(|&l| matches!(layers[l], LayerAttention::Routed(_))).collect();
        let routing = if routed.is_empty() {
            Routing::None
        } else {
            let router_config = RouterConfig::default();
            let routers = Routers::new(routed, config.hidden, &router_config, device);
            let regularizer = EfficiencyRegularizer::new(
                Budget::new(config.fa_target)?,
                Coefficient::DualAscent { lr: 0.02 },
                Scope::Global,
            );
            Routing::SwiAttn { policy: SwiAttn::new(routers, router_config), regularizer }
        };
        let mut trainer = Trainer::new(model, routing, settings(LrSchedule::constant(config.convert_lr)));
        train(&mut trainer, &format!("convert: {name}"), config.convert_steps, config, device, progress)?;
        let evaluation = trainer.evaluate(&eval)?;
        rows.push(row(&name, trainer.model(), &evaluation, config)?);
    }
    Ok(rows)
}

/// The table row of an evaluated model: its costs from the measured routes of every sequence.
fn row(name: &str, model: &Transformer, evaluation: &Evaluation, config: &QuickstartConfig) -> Result<Row> {
    let len = config.task.seq_len - 1;
    let sequences = evaluation.routes.values().next().map_or(1, Vec::len);
    let (mut flops, mut fa) = (0.0, 0.0);
    for s in 0..sequences {
        let routes: BTreeMap<usize, RouteMask> = evaluation
            .routes
            .iter()
            .map(|(&l, per_sequence)| (l, RouteMask { batch: 1, len, fa: per_sequence[s].clone() }))
            .collect();
        let a = account(&model.arch, len, 2, &RoutedLayers::Measured(routes))?;
        flops += a.attention_flops / a.full_attention_flops;
        fa += a.fa_ratio();
    }
    Ok(Row {
        variant: name.to_string(),
        recall_accuracy: evaluation.recall_accuracy.expect("the synthetic task has recall positions"),
        loss: evaluation.loss,
        fa_ratio: fa / sequences as f64,
        attention_flops_vs_full: flops / sequences as f64,
    })
}
