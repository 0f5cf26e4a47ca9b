//! The forward and backward passes of one optimizer step: its micro-batches run one after another
//! on the model's device, or spread round-robin over several devices (data parallelism), each
//! device on its own long-lived thread with a replica of the model and routing forked from the
//! master copy every step.
//! Either way the result is the mean over the micro-batches, so a data-parallel step computes what
//! the same micro-batches accumulated on one device compute (up to the order of float sums).

use std::collections::BTreeMap;
use std::sync::mpsc;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use swiattn_core::model::Transformer;
use swiattn_core::{Error, Result};
use swiattn_router::regularizer::measured;

use crate::data::Batch;
use crate::loss::next_token_nll;
use crate::precision::Precision;
use crate::routing::{Routing, sum};

/// The mean over some micro-batches of a step (each term already divided by the step's count).
pub struct Partial {
    pub loss: f64,
    pub penalty: Option<f64>,
    /// Measured FA ratio per routed layer.
    pub fa_ratio: BTreeMap<usize, f64>,
    pub model_grads: GradientsParams,
    /// Gradients of the routers (SwiAttn) or gates (ConSA).
    pub policy_grads: Option<GradientsParams>,
}

/// Forward and backward over `batches` on `model`'s device; terms divided by `k`.
pub fn passes(
    model: &Transformer,
    routing: &mut Routing,
    precision: Precision,
    batches: &[Batch],
    k: f64,
) -> Result<Partial> {
    let mut model_acc = GradientsAccumulator::<Transformer>::new();
    let mut policy_grads: Option<GradientsParams> = None;
    let mut part = Partial {
        loss: 0.0,
        penalty: None,
        fa_ratio: BTreeMap::new(),
        model_grads: GradientsParams::new(),
        policy_grads: None,
    };
    for batch in batches {
        let compute = precision.compute_copy(model);
        let (hidden, decisions) = routing.forward(&compute, batch.input.clone(), true)?;
        let (nll, _) = next_token_nll(compute.logits(hidden), batch.target.clone());
        let penalty = routing.penalty(&decisions);
        let objective = match &penalty {
            Some(p) => nll.clone() + p.clone(),
            None => nll.clone(),
        };
        let mut grads = (objective / k).backward();
        policy_grads = routing.take_grads(&mut grads, policy_grads.take());
        model_acc.accumulate(model, GradientsParams::from_grads(grads, model));
        part.loss += nll.into_scalar::<f32>() as f64 / k;
        if let Some(p) = penalty {
            *part.penalty.get_or_insert(0.0) += p.into_scalar::<f32>() as f64 / k;
        }
        for (layer, ratio) in measured(&decisions) {
            *part.fa_ratio.entry(layer).or_default() += ratio / k;
        }
    }
    part.model_grads = model_acc.grads();
    part.policy_grads = policy_grads;
    Ok(part)
}

/// One long-lived thread per data-parallel device. Threads must outlive the steps: CubeCL keeps
/// per-thread streams and memory pools, and a fresh thread every step leaked a pool per step
/// (seen on 2 H200s: both GPUs full at 143 GB within 16 steps of a run that needs 21 GB).
pub struct Workers {
    jobs: Vec<mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Workers {
    pub fn new(devices: usize) -> Self {
        let jobs = (0..devices)
            .map(|d| {
                let (tx, rx) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name(format!("swiattn-device-{d}"))
                    .spawn(move || rx.into_iter().for_each(|job| job()))
                    .expect("a worker thread starts");
                tx
            })
            .collect();
        Self { jobs }
    }

    /// Run `job` on worker `d`; its result arrives on the returned channel (closed if it panicked).
    fn run<T: Send + 'static>(&self, d: usize, job: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        self.jobs[d].send(job).expect("worker threads live as long as their pool");
        rx
    }
}

/// The micro-batches of a step spread round-robin over `devices` (autodiff devices), each on its
/// device's worker; gradients gathered onto the master model's device and summed there.
pub fn data_parallel(
    workers: &Workers,
    model: &Transformer,
    routing: &Routing,
    precision: Precision,
    batches: &[Batch],
    devices: &[Device],
) -> Result<Partial> {
    let k = batches.len() as f64;
    let main = model.devices().first().cloned().ok_or_else(|| Error::Invalid("the model has no device".into()))?;
    let pending: Vec<mpsc::Receiver<Result<Partial>>> = devices
        .iter()
        .enumerate()
        .map(|(d, device)| {
            let replica = model.clone().fork(device);
            let mut routing = routing.fork(device);
            let mine: Vec<Batch> = batches.iter().skip(d).step_by(devices.len()).map(|b| b.to_device(device)).collect();
            workers.run(d, move || passes(&replica, &mut routing, precision, &mine, k))
        })
        .collect();
    let parts: Vec<Result<Partial>> = pending
        .into_iter()
        .enumerate()
        .map(|(d, rx)| rx.recv().unwrap_or_else(|_| Err(Error::Invalid(format!("device {d}'s worker panicked")))))
        .collect();
    let mut total: Option<Partial> = None;
    for part in parts {
        let part = part?;
        let model_grads = part.model_grads.to_device(&main, model);
        let policy_grads = part.policy_grads.map(|g| routing.grads_to_device(g, &main));
        total = Some(match total {
            None => Partial { model_grads, policy_grads, ..part },
            Some(t) => Partial {
                loss: t.loss + part.loss,
                penalty: match (t.penalty, part.penalty) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                },
                fa_ratio: {
                    let mut fa = t.fa_ratio;
                    for (layer, r) in part.fa_ratio {
                        *fa.entry(layer).or_default() += r;
                    }
                    fa
                },
                model_grads: sum(Some(t.model_grads), model_grads, model),
                policy_grads: match (t.policy_grads, policy_grads) {
                    (Some(a), Some(b)) => Some(routing.add_grads(Some(a), b)),
                    (a, b) => a.or(b),
                },
            },
        });
    }
    total.ok_or_else(|| Error::Invalid("data parallelism over no devices".into()))
}
