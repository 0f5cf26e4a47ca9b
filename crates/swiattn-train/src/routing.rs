//! What decides the attention of the model's layers while training, beside the model itself: its
//! own layout, SwiAttn's routers with their regularizer, ConSA's gates, or Duo's head gates. Everything the training
//! step does differently per policy is a method here — the forward, the penalty, the policy's
//! gradients and optimizer step, the after-step update, replicas, the evaluation copy and the
//! metrics — so a new policy is one arm per method in this file (and its checkpoint files in
//! `checkpoint.rs`).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Gradients, Int, Tensor};
use serde_json::json;
use swiattn_core::Result;
use swiattn_core::model::{Routes, Transformer};
use swiattn_router::consa::Consa;
use swiattn_router::duo::DuoGates;
use swiattn_router::regularizer::EfficiencyRegularizer;
use swiattn_router::router::SwiAttn;
use swiattn_router::{Decision, PolicyController};

use crate::distributed::{Group, sum_grads};

/// The routing policy of a training run.
pub enum Routing {
    /// The model's own layout.
    None,
    /// SwiAttn routers and their efficiency regularizer.
    SwiAttn { policy: SwiAttn, regularizer: EfficiencyRegularizer },
    /// ConSA's stage 1: hard-concrete gates on every unit, held to the budget by the augmented
    /// Lagrangian.
    Consa(Consa),
    /// Duo's stage 1: a gate per KV head mixing its full and sliding outputs, pushed towards
    /// sliding by the L1 penalty `l1 · mean(α)`.
    Duo { gates: DuoGates, l1: f64 },
}

impl Routing {
    /// Hidden states of `input` with the policy deciding each layer's attention, and the decisions
    /// of the routed (or gated) layers.
    pub fn forward(
        &mut self,
        model: &Transformer,
        input: Tensor<2, Int>,
        training: bool,
    ) -> Result<(Tensor<3>, BTreeMap<usize, Decision>)> {
        match self {
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
            Routing::Duo { gates, .. } => {
                let mut controller = PolicyController::new(gates, model.arch.num_heads, training);
                let hidden = model.hidden_states(input, &mut controller, None)?;
                Ok((hidden, std::mem::take(&mut controller.decisions)))
            }
        }
    }

    /// The term the policy adds to the loss: the regularizer's penalty on these decisions, or
    /// ConSA's Lagrangian, or Duo's L1 penalty.
    pub fn penalty(&self, decisions: &BTreeMap<usize, Decision>) -> Option<Tensor<1>> {
        match self {
            Routing::SwiAttn { regularizer, .. } => regularizer.penalty(decisions),
            Routing::Consa(consa) => Some(consa.penalty()),
            Routing::Duo { gates, l1 } => Some(gates.l1_penalty(*l1)),
            Routing::None => None,
        }
    }

    /// The policy's share of a backward's gradients, added to `before` (a step's earlier
    /// micro-batches).
    pub fn take_grads(&self, grads: &mut Gradients, before: Option<GradientsParams>) -> Option<GradientsParams> {
        let mine = match self {
            Routing::SwiAttn { policy, .. } => GradientsParams::from_module(grads, &policy.routers),
            Routing::Consa(consa) => GradientsParams::from_module(grads, &consa.gates),
            Routing::Duo { gates, .. } => GradientsParams::from_module(grads, gates),
            Routing::None => return None,
        };
        Some(self.add_grads(before, mine))
    }

    /// `a + b` over the policy's parameters (`b` alone without `a`).
    pub fn add_grads(&self, a: Option<GradientsParams>, b: GradientsParams) -> GradientsParams {
        match self {
            Routing::SwiAttn { policy, .. } => sum(a, b, &policy.routers),
            Routing::Consa(consa) => sum(a, b, &consa.gates),
            Routing::Duo { gates, .. } => sum(a, b, gates),
            Routing::None => a.unwrap_or(b),
        }
    }

    /// The policy's gradients summed over the ranks of a multi-process job.
    pub fn all_reduce_grads(&self, group: &mut Group, grads: GradientsParams) -> Result<GradientsParams> {
        let what = "the routing policy's gradients";
        match self {
            Routing::SwiAttn { policy, .. } => sum_grads(group, what, grads, &policy.routers),
            Routing::Consa(consa) => sum_grads(group, what, grads, &consa.gates),
            Routing::Duo { gates, .. } => sum_grads(group, what, grads, gates),
            Routing::None => Ok(grads),
        }
    }

    /// The policy's gradients moved to `device` (a replica's, onto the master's device).
    pub fn grads_to_device(&self, grads: GradientsParams, device: &Device) -> GradientsParams {
        match self {
            Routing::SwiAttn { policy, .. } => grads.to_device(device, &policy.routers),
            Routing::Consa(consa) => grads.to_device(device, &consa.gates),
            Routing::Duo { gates, .. } => grads.to_device(device, gates),
            Routing::None => grads,
        }
    }

    /// One step of the policy's own optimizer (Adam, no weight decay) at `lr`; Duo's gates are
    /// clipped back into `[0, 1]` after it.
    pub fn optimizer_step(&mut self, optimizer: &mut ModuleOptimizer, lr: f64, grads: GradientsParams) {
        match self {
            Routing::SwiAttn { policy, .. } => {
                let routers = std::mem::take(&mut policy.routers);
                policy.routers = optimizer.step(lr, routers, grads);
            }
            Routing::Consa(consa) => {
                let gates = consa.gates.clone();
                consa.gates = optimizer.step(lr, gates, grads);
            }
            Routing::Duo { gates, .. } => *gates = optimizer.step(lr, gates.clone(), grads).project(),
            Routing::None => {}
        }
    }

    /// After a step: the regularizer's coefficient from the measured FA ratios (dual ascent), or
    /// ConSA's multipliers; the policy's step count.
    pub fn after_step(&mut self, fa_ratio: &BTreeMap<usize, f64>) {
        match self {
            Routing::SwiAttn { policy, regularizer } => {
                regularizer.update(fa_ratio);
                policy.step += 1;
            }
            Routing::Consa(consa) => {
                consa.ascend();
                consa.step += 1;
            }
            Routing::Duo { .. } | Routing::None => {}
        }
    }

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
            Routing::Duo { gates, l1 } => Routing::Duo { gates: gates.clone().fork(device), l1: *l1 },
        }
    }

    /// The copy an evaluation runs: parameters without autodiff, the same step and coefficients.
    pub fn eval_copy(&self) -> Routing {
        match self {
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
            Routing::Duo { gates, l1 } => Routing::Duo { gates: gates.valid(), l1: *l1 },
        }
    }

    /// Draw the policy's parameters now (burn initializes lazily, at first use).
    pub fn materialize(&self) {
        match self {
            Routing::SwiAttn { policy, .. } => materialize(&policy.routers),
            Routing::Consa(consa) => materialize(&consa.gates),
            Routing::Duo { gates, .. } => materialize(gates),
            Routing::None => {}
        }
    }

    /// The policy's state in a step's metrics line: the regularizer's coefficients, or ConSA's
    /// expected ratio and multipliers, or Duo's mean gate and open gates (α > ½).
    pub fn log_fields(&self, line: &mut serde_json::Value) {
        match self {
            Routing::SwiAttn { regularizer, .. } => {
                line["mu"] = json!(regularizer.state.values().map(|s| s.mu).collect::<Vec<_>>());
            }
            Routing::Consa(consa) => {
                line["expected_fa_ratio"] = json!(consa.expected_ratio());
                line["multipliers"] = json!(consa.constraints.iter().map(|c| c.multipliers).collect::<Vec<_>>());
            }
            Routing::Duo { gates, .. } => {
                let alpha = gates.values();
                line["mean_gate"] = json!(alpha.iter().map(|&a| a as f64).sum::<f64>() / alpha.len() as f64);
                line["open_gates"] = json!(alpha.iter().filter(|&&a| a > 0.5).count());
            }
            Routing::None => {}
        }
    }
}

/// Initialize every parameter of `module` now.
pub(crate) fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// `a + b` for the parameters of `module` (`b` alone when there is no `a`).
pub(crate) fn sum<M: Module>(a: Option<GradientsParams>, b: GradientsParams, module: &M) -> GradientsParams {
    let mut acc = GradientsAccumulator::<M>::new();
    if let Some(a) = a {
        acc.accumulate(module, a);
    }
    acc.accumulate(module, b);
    acc.grads()
}
