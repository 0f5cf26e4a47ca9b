//! `swiattn bench`: speed measurements whose baselines run in the same process or call.
//!
//! | command | what | file |
//! |---|---|---|
//! | `bench attention` | the fused kernels over length, head dim and FA ratio (CUDA, wgpu) | [`attention`] |
//! | `bench train` | training steps of a model shape on random tokens: tokens/s, memory | [`train`] |
//! | `bench infer` | the eval harness's scoring and generation loops on a model shape | [`infer`] |

#[cfg(feature = "kernels")]
mod attention;
mod infer;
mod train;

use burn::tensor::Device;
use swiattn_core::BackendKind;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Time the fused attention kernels (full, sliding, routed at several FA ratios).
    #[cfg(feature = "kernels")]
    Attention(attention::Args),
    /// Time training steps of a model shape on random tokens (tokens/s, spread, memory), as
    /// `tools/gpu_train/torch_baseline.py` does in PyTorch.
    Train(train::Args),
    /// Time the eval harness's scoring and greedy generation on a model shape with random
    /// weights, as `tools/gpu_eval/torch_infer.py` does with transformers.
    Infer(infer::Args),
}

pub fn run(command: Command, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    match command {
        #[cfg(feature = "kernels")]
        Command::Attention(args) => attention::run(args, backend, device),
        Command::Train(args) => train::run(args, backend, device),
        Command::Infer(args) => infer::run(args, backend, device),
    }
}
