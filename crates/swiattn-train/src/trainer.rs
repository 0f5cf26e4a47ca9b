//! The training step: next-token cross-entropy, the routers' efficiency regularizer, AdamW on the
//! model and Adam (no weight decay, its own learning rate) on the routers.
//!
//! A plain loop on burn's optimizers rather than burn-train's `Learner`: the routers' regularizer
//! coefficient is updated from each step's measured routing (dual ascent), two parameter groups
//! need their own optimizers and learning rates, and exact resume needs every piece of state in
//! our hands (see docs/training.md).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, activation::log_softmax};
use swiattn_core::model::{Routes, Transformer};
use swiattn_core::{Error, Result};
use swiattn_router::consa::Consa;
use swiattn_router::regularizer::EfficiencyRegularizer;
use swiattn_router::router::SwiAttn;
use swiattn_router::{Decision, Hard, PolicyController};

use crate::micro;
use crate::precision::Precision;
use crate::schedule::LrSchedule;

/// What decides the attention of the model's layers while training, beside the model itself.
pub enum Routing {
    /// The model's own layout.
    None,
    /// SwiAttn routers and their efficiency regularizer.
    SwiAttn { policy: SwiAttn, regularizer: EfficiencyRegularizer },
    /// ConSA's stage 1: hard-concrete gates on every unit, held to the budget by the augmented
    /// Lagrangian.
    Consa(Consa),
}

impl Routing {
    /// A replica on `device` (autodiff) for data parallelism: trainable parameters are fresh
    /// leaves there; settings, steps and coefficients are copied.
    pub fn fork(&self, device: &Device) -> Routing {
        match self {
            Routing::None => Routing::None,
            Routing::SwiAttn { policy, regularizer } => {
                let mut replica = SwiAttn::new(policy.routers.clone().fork(device), policy.config.clone());
                replica.step = policy.step;
                Routing::SwiAttn { policy: replica, regularizer: regularizer.clone() }
            }
            Routing::Consa(consa) => {
                let mut replica = consa.clone();
                replica.gates = replica.gates.fork(device);
                Routing::Consa(replica)
            }
        }
    }
}

/// One batch: `input` and `target` are `[batch, len]` (target = input shifted by one);
/// `recall[b]` lists the positions of sequence `b` whose prediction is a far-back lookup.
#[derive(Clone, Debug)]
pub struct Batch {
    pub input: Tensor<2, Int>,
    pub target: Tensor<2, Int>,
    pub recall: Vec<Vec<usize>>,
}

impl Batch {
    /// A batch of equally long sequences.
    pub fn from_examples(examples: Vec<crate::synthetic::Example>, device: &burn::tensor::Device) -> Self {
        let n = examples.len();
        let t = examples[0].tokens.len() - 1;
        let take = |range: std::ops::Range<usize>| -> Vec<i64> {
            examples.iter().flat_map(|e| e.tokens[range.clone()].iter().map(|&x| x as i64)).collect()
        };
        Batch {
            input: Tensor::from_data(burn::tensor::TensorData::new(take(0..t), [n, t]), device),
            target: Tensor::from_data(burn::tensor::TensorData::new(take(1..t + 1), [n, t]), device),
            recall: examples.into_iter().map(|e| e.recall).collect(),
        }
    }

    /// The batch on another device.
    pub fn to_device(&self, device: &Device) -> Self {
        Batch {
            input: self.input.clone().to_device(device),
            target: self.target.clone().to_device(device),
            recall: self.recall.clone(),
        }
    }
}

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
}

/// Initialize every parameter of `module` now.
fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// Mean next-token NLL of `logits` `[batch, len, vocab]` against `target` `[batch, len]`, and the
/// per-position NLL `[batch, len]`; in fp32 whatever the model's dtype.
pub fn next_token_nll(logits: Tensor<3>, target: Tensor<2, Int>) -> (Tensor<1>, Tensor<2>) {
    let nll = log_softmax(logits.cast(burn::tensor::DType::F32), 2)
        .gather(2, target.unsqueeze_dim(2))
        .neg()
        .squeeze_dim::<2>(2);
    (nll.clone().mean(), nll)
}

impl Trainer {
    /// A trainer for `model` (on an autodiff device). Draws any parameter not drawn yet (burn
    /// initializes lazily, at first use) — the model's, then the routers' or gates' — so that they
    /// depend on the device's seed alone, not on what else draws random numbers before the first
    /// step.
    pub fn new(model: Transformer, routing: Routing, settings: OptimizerSettings) -> Self {
        materialize(&model);
        match &routing {
            Routing::SwiAttn { policy, .. } => materialize(&policy.routers),
            Routing::Consa(consa) => materialize(&consa.gates),
            Routing::None => {}
        }
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

    /// Forward with the routing's decisions: hidden states and the decisions of routed layers.
    pub(crate) fn forward(
        model: &Transformer,
        routing: &mut Routing,
        input: Tensor<2, Int>,
        training: bool,
    ) -> Result<(Tensor<3>, BTreeMap<usize, Decision>)> {
        match routing {
            Routing::None => Ok((model.hidden_states(input, &mut Routes::none(), None)?, BTreeMap::new())),
            Routing::SwiAttn { policy, .. } => {
                policy.training = training;
                let mut controller = PolicyController::new(policy, model.arch.num_heads, training);
                let hidden = model.hidden_states(input, &mut controller, None)?;
                Ok((hidden, std::mem::take(&mut controller.decisions)))
            }
            Routing::Consa(consa) => {
                let mut controller = PolicyController::new(consa, model.arch.num_heads, training);
                let hidden = model.hidden_states(input, &mut controller, None)?;
                Ok((hidden, std::mem::take(&mut controller.decisions)))
            }
        }
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
    /// gradient is the mean of theirs, as for one batch of all their sequences). A non-finite loss
    /// or gradient stops with an error naming the step and the first tensor that holds it.
    pub fn train_step(&mut self, batches: &[Batch]) -> Result<StepMetrics> {
        let model = self.model.take().expect("the model is present between steps");
        let result = self.accumulate(&model, batches);
        let (loss, penalty, fa_ratio, mut model_grads) = match result {
            Ok(parts) => parts,
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
        match &mut self.routing {
            Routing::SwiAttn { policy, regularizer } => {
                regularizer.update(&fa_ratio);
                policy.step += 1;
            }
            Routing::Consa(consa) => {
                consa.ascend();
                consa.step += 1;
            }
            Routing::None => {}
        }
        let lr = self.settings.schedule.at(self.step);
        self.model = Some(self.model_optim.step(lr, model, model_grads));
        self.step += 1;
        Ok(StepMetrics { step: self.step, loss, lr, fa_ratio, penalty, grad_norm })
    }

    /// Forward and backward over the micro-batches (on the data-parallel devices when there are
    /// several): the mean loss and penalty, the mean measured FA ratio per routed layer, and the
    /// model's mean gradients; the routers' (or gates') optimizer step is taken here.
    #[allow(clippy::type_complexity)]
    fn accumulate(
        &mut self,
        model: &Transformer,
        batches: &[Batch],
    ) -> Result<(f64, Option<f64>, BTreeMap<usize, f64>, GradientsParams)> {
        let part = if self.devices.len() > 1 {
            let workers = self.workers.get_or_insert_with(|| micro::Workers::new(self.devices.len()));
            micro::data_parallel(workers, model, &self.routing, self.precision, batches, &self.devices)?
        } else {
            micro::passes(model, &mut self.routing, self.precision, batches, batches.len() as f64)?
        };
        match (&mut self.routing, part.policy_grads) {
            (Routing::SwiAttn { policy, .. }, Some(grads)) => {
                let routers = std::mem::take(&mut policy.routers);
                policy.routers = self.router_optim.step(self.settings.router_lr, routers, grads);
            }
            (Routing::Consa(consa), Some(grads)) => {
                let gates = consa.gates.clone();
                consa.gates = self.router_optim.step(self.settings.router_lr, gates, grads);
            }
            _ => {}
        }
        Ok((part.loss, part.penalty, part.fa_ratio, part.model_grads))
    }

    /// Evaluate without gradients: mean NLL, accuracy at the recall positions, and the routes each
    /// routed layer took for every sequence (`routes[layer][b]`, one FA flag per token).
    pub fn evaluate(&mut self, batches: &[Batch]) -> Result<Evaluation> {
        let model = self.precision.compute_copy(&self.model().valid());
        let mut routing = match &self.routing {
            Routing::None => Routing::None,
            Routing::SwiAttn { policy, regularizer } => {
                let mut eval = SwiAttn::new(policy.routers.valid(), policy.config.clone());
                eval.step = policy.step;
                Routing::SwiAttn { policy: eval, regularizer: regularizer.clone() }
            }
            Routing::Consa(consa) => {
                let mut eval = consa.clone();
                eval.gates = eval.gates.valid();
                Routing::Consa(eval)
            }
        };
        let (mut nll_sum, mut tokens, mut hits, mut recalls) = (0.0, 0usize, 0usize, 0usize);
        let mut routes: BTreeMap<usize, Vec<Vec<bool>>> = BTreeMap::new();
        for batch in batches {
            let input = batch.input.clone().inner();
            let target = batch.target.clone().inner();
            let (hidden, decisions) = Self::forward(&model, &mut routing, input, false)?;
            let logits = model.logits(hidden);
            let predicted: Vec<i64> = host_ints(logits.clone().argmax(2).squeeze_dim::<2>(2));
            let (mean, _) = next_token_nll(logits, target.clone());
            let [b, t] = target.dims();
            nll_sum += mean.into_scalar::<f32>() as f64 * (b * t) as f64;
            tokens += b * t;
            let target = host_ints(target);
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
        Ok(Evaluation {
            loss: nll_sum / tokens.max(1) as f64,
            recall_accuracy: (recalls > 0).then(|| hits as f64 / recalls as f64),
            routes,
        })
    }
}

fn host_ints<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().expect("int tensors read back as i64")
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
