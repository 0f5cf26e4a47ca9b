//! # swiattn-train
//!
//! Training for hybrid attention, and continual pretraining of a checkpoint into a hybrid.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | a run's TOML config, every key defaulted and written back resolved |
//! | [`run`] | a training run: open or resume, the step loop, metrics, evaluations, checkpoints |
//! | [`trainer`] | one optimizer step: cross-entropy, the routing policy's penalty, AdamW (+ Adam for routers or gates) |
//! | [`routing`] | the routing policy of a run (none, SwiAttn, ConSA): everything the step does per policy |
//! | [`loss`] | next-token cross-entropy in fp32 |
//! | [`distributed`] | data parallelism across processes: torchrun/SLURM variables, the rendezvous, gradient sums |
//! | `micro` | the forward and backward passes of one step's micro-batches, on one or several devices |
//! | [`precision`] | mixed precision: fp32 master weights, a bf16/f16 compute copy |
//! | [`clip`], [`finite`], [`schedule`] | gradient clipping, NaN/Inf detection naming the tensor, the learning-rate schedule |
//! | [`checkpoint`] | atomic, checksummed checkpoints that resume bitwise; opening one for inference |
//! | [`interrupt`] | SIGINT/SIGTERM: stop after the current step with a checkpoint |
//! | [`data`] | data of a run: synthetic tasks or tokenized text shards, packed into sequences |
//! | [`synthetic`] | far-back recall tasks that need no asset |
//! | [`quickstart`] | full, sliding, a rule and SwiAttn trained on a synthetic task and compared |
//! | [`sweep`] | grids of policy × budget × window × seed over one base config |
//! | [`mfu`] | model FLOPs of a step and the device's matmul ceiling |

pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod data;
pub mod distributed;
pub mod finite;
pub mod interrupt;
pub mod loss;
pub mod mfu;
mod micro;
pub mod precision;
pub mod quickstart;
pub mod routing;
pub mod run;
pub mod schedule;
pub mod sweep;
pub mod synthetic;
pub mod trainer;
