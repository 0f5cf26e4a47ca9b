//! The training step: next-token cross-entropy, the routers' efficiency regularizer, AdamW on the
//! model and Adam (no weight decay, its own learning rate) on the routers.
//!
//! A plain loop on burn's optimizers rather than burn-train's `Learner`: the routers' regularizer
//! coefficient is updated from each step's measured routing (dual ascent), two parameter groups
//! need their own optimizers and learning rates, and exact resume needs every piece of state in
//! our hands (see docs/training.md).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer};
use burn::tensor::Device;
use swiattn_core::host;
use swiattn_core::model::Transformer;
use swiattn_core::{Error, Result};
use swiattn_router::Hard;

use crate::data::Batch;
use crate::distributed::Group;
use crate::loss::next_token_nll;
use crate::micro;
use crate::precision::Precision;
use crate::routing::{Routing, materialize};
use crate::schedule::LrSchedule;

/// What one step measured.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    /// Measured FA ratio of each routed layer.
    pub fa_ratio: BTreeMap<usize, f64>,
    /// The regularizer's penalty, when routers are trained.
    pub penalty: Option<f64>,
    /// Global L2 norm of the model's gradients, before clipping.
    pub grad_norm: f64,
}

/// Optimizer settings.
#[derive(Clone, Debug)]
pub struct OptimizerSettings {
    pub schedule: LrSchedule,
    pub weight_decay: f64,
    /// Learning rate of the routers (Adam, no weight decay).
    pub router_lr: f64,
    /// Clip the model's gradients to this global L2 norm.
    pub grad_clip: Option<f64>,
}

/// The model, its routing, optimizers and step counter.
pub struct Trainer {
    model: Option<Transformer>,
    pub routing: Routing,
    settings: OptimizerSettings,
    model_optim: ModuleOptimizer,
    router_optim: ModuleOptimizer,
    pub step: usize,
    /// The compute dtype (fp32 master weights either way).
    pub precision: Precision,
    /// Data-parallel devices (autodiff), the model's own first; empty or one: no data parallelism.
    pub devices: Vec<Device>,
    /// Their worker threads, started at the first data-parallel step.
    workers: Option<micro::Workers>,
    /// The other processes of a multi-process job: each step's batches are then this rank's
    /// share, and the step's sums are taken over the ranks.
    pub group: Option<Group>,
}

impl Trainer {
    /// A trainer for `model` (on an autodiff device). Draws any parameter not drawn yet (burn
    /// initializes lazily, at first use) — the model's, then the routers' or gates' — so that they
    /// depend on the device's seed alone, not on what else draws random numbers before the first
    /// step.
    pub fn new(model: Transformer, routing: Routing, settings: OptimizerSettings) -> Self {
        materialize(&model);
        routing.materialize();
        let model_optim = AdamWConfig::new().with_weight_decay(settings.weight_decay as f32).init();
        let router_optim = AdamConfig::new().init();
        Self {
            model: Some(model),
            routing,
            settings,
            model_optim,
            router_optim,
            step: 0,
            precision: Precision::F32,
            devices: Vec::new(),
            workers: None,
            group: None,
        }
    }

    pub fn model(&self) -> &Transformer {
        self.model.as_ref().expect("the model is present between steps")
    }

    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// The model's optimizer (AdamW), for checkpoints.
    pub fn model_optimizer(&self) -> &ModuleOptimizer {
        &self.model_optim
    }

    /// The routers' optimizer (Adam), for checkpoints.
    pub fn router_optimizer(&self) -> &ModuleOptimizer {
        &self.router_optim
    }

    /// Replace the model's optimizer state (resuming from a checkpoint).
    pub fn set_model_optimizer(&mut self, optimizer: ModuleOptimizer) {
        self.model_optim = optimizer;
    }

    /// Replace the routers' optimizer state (resuming from a checkpoint).
    pub fn set_router_optimizer(&mut self, optimizer: ModuleOptimizer) {
        self.router_optim = optimizer;
    }

    /// The trained model and routing.
    pub fn into_parts(self) -> (Transformer, Routing) {
        (self.model.expect("the model is present between steps"), self.routing)
    }

    /// Switch the model to a new attention layout (weights, parameter ids and optimizer state
    /// kept) and stop the current routing: ConSA's passage to stage 2.
    pub fn convert(&mut self, layers: &[swiattn_core::model::LayerAttention]) -> Result<()> {
        let model = self.model.take().expect("the model is present between steps");
        self.model = Some(model.with_attention(layers)?);
        self.routing = Routing::None;
        Ok(())
    }

    /// One optimizer step on the micro-batches of `batches` (gradient accumulation: the step's
    /// gradient is the mean of theirs, as for one batch of all their sequences; in a multi-process
    /// job, `batches` is this rank's share of the step's). A non-finite loss
    /// or gradient stops with an error naming the step and the first tensor that holds it.
    pub fn train_step(&mut self, batches: &[Batch]) -> Result<StepMetrics> {
        let model = self.model.take().expect("the model is present between steps");
        let micro::Partial { loss, penalty, fa_ratio, mut model_grads, policy_grads } =
            match self.accumulate(&model, batches) {
                Ok(part) => part,
                Err(e) => {
                    self.model = Some(model);
                    return Err(e);
                }
            };
        let grad_norm = crate::clip::global_norm(&model_grads, &model);
        if !loss.is_finite() || !grad_norm.is_finite() {
            let culprit = crate::finite::first_non_finite(&model, Some(&model_grads))
                .unwrap_or_else(|| "none of the parameters or their gradients (the input or a router)".into());
            self.model = Some(model);
            return Err(Error::Invalid(format!(
                "step {}: loss {loss}, gradient norm {grad_norm}; first non-finite tensor: {culprit}",
                self.step + 1
            )));
        }
        if let Some(max) = self.settings.grad_clip {
            crate::clip::clip_global_norm(&mut model_grads, &model, max);
        }
        if let Some(grads) = policy_grads {
            self.routing.optimizer_step(&mut self.router_optim, self.settings.router_lr, grads);
        }
        self.routing.after_step(&fa_ratio);
        let lr = self.settings.schedule.at(self.step);
        self.model = Some(self.model_optim.step(lr, model, model_grads));
        self.step += 1;
        Ok(StepMetrics { step: self.step, loss, lr, fa_ratio, penalty, grad_norm })
    }

    /// Forward and backward over the micro-batches (on the data-parallel devices when there are
    /// several): the mean loss and penalty, the mean measured FA ratio per routed layer, and the
    /// mean gradients of the model and of the policy.
    fn accumulate(&mut self, model: &Transformer, batches: &[Batch]) -> Result<micro::Partial> {
        if let Some(group) = self.group.as_mut() {
            // Every rank has an equal share (`grad_accumulation` is a multiple of the world size).
            let k = (batches.len() * group.size) as f64;
            let part = micro::passes(model, &mut self.routing, self.precision, batches, k)?;
            return crate::distributed::all_reduce(group, part, model, &self.routing);
        }
        if self.devices.len() > 1 {
            let workers = self.workers.get_or_insert_with(|| micro::Workers::new(self.devices.len()));
            micro::data_parallel(workers, model, &self.routing, self.precision, batches, &self.devices)
        } else {
            micro::passes(model, &mut self.routing, self.precision, batches, batches.len() as f64)
        }
    }

    /// Evaluate without gradients: mean NLL, accuracy at the recall positions, and the routes each
    /// routed layer took for every sequence (`routes[layer][b]`, one FA flag per token).
    pub fn evaluate(&mut self, batches: &[Batch]) -> Result<Evaluation> {
        let model = self.precision.compute_copy(&self.model().valid());
        let mut routing = self.routing.eval_copy();
        let (mut nll_sum, mut tokens, mut hits, mut recalls) = (0.0, 0usize, 0usize, 0usize);
        let mut routes: BTreeMap<usize, Vec<Vec<bool>>> = BTreeMap::new();
        for batch in batches {
            let input = batch.input.clone().inner();
            let target = batch.target.clone().inner();
            let (hidden, decisions) = routing.forward(&model, input, false)?;
            let logits = model.logits(hidden);
            let predicted: Vec<i64> = host::ints(logits.clone().argmax(2).squeeze_dim::<2>(2), "predictions")?;
            let (mean, _) = next_token_nll(logits, target.clone());
            let [b, t] = target.dims();
            nll_sum += mean.into_scalar::<f32>() as f64 * (b * t) as f64;
            tokens += b * t;
            let target = host::ints(target, "targets")?;
            for (s, positions) in batch.recall.iter().enumerate() {
                for &p in positions {
                    recalls += 1;
                    hits += usize::from(predicted[s * t + p] == target[s * t + p]);
                }
            }
            for (layer, decision) in decisions {
                if let Hard::Tokens(route) = decision.hard {
                    let route = route.host()?;
                    let per_sequence = route.fa.chunks(route.len).map(<[bool]>::to_vec);
                    routes.entry(layer).or_default().extend(per_sequence);
                }
            }
        }
        if tokens == 0 {
            return Err(Error::Invalid("evaluation needs at least one held-out sequence".into()));
        }
        let loss = nll_sum / tokens as f64;
        if !loss.is_finite() {
            return Err(Error::Invalid(format!(
                "step {}: the held-out loss is {loss}, not a result to keep",
                self.step
            )));
        }
        Ok(Evaluation { loss, recall_accuracy: (recalls > 0).then(|| hits as f64 / recalls as f64), routes })
    }
}

/// The result of [`Trainer::evaluate`].
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f64,
    /// Accuracy at the recall positions; `None` when the data has none (text).
    pub recall_accuracy: Option<f64>,
    /// `routes[layer][sequence]`: the FA flag of each token, for routed layers.
    pub routes: BTreeMap<usize, Vec<Vec<bool>>>,
}
