//! Data parallelism across processes: one process per device, started by a launcher the field
//! knows (torchrun, SLURM's `srun`; [`World`] reads their variables), meeting at a TCP rendezvous
//! on rank 0 ([`join`]) and summing each step's gradients through a [`Group`].
//!
//! Every rank holds the whole model and runs the forward and backward of its own micro-batches of
//! each step (micro-batch `m` of a step goes to rank `m mod size`, so no two ranks read the same
//! sequence and a resumed job reads what the uninterrupted one would); the summed gradients make
//! every rank take the same optimizer step, so the replicas stay identical without ever being
//! sent. Rank 0 alone writes the run directory (config, metrics, checkpoints, summary); the others
//! read it where they resume, so a job spanning hosts needs it on a shared filesystem.
//!
//! The reduction here goes over TCP through rank 0, for the CPU backend and for tests; NCCL is the
//! GPU path (docs/training.md says what exists of it).

mod gradients;
mod group;
mod rendezvous;
mod world;

pub use gradients::{all_reduce, sum_grads};
pub use group::{Group, Summable};
pub use rendezvous::{Timeouts, join};
pub use world::World;
