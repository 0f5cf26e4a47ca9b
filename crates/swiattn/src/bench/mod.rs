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

use std::path::PathBuf;

use burn::tensor::Device;
use swiattn_core::BackendKind;
use swiattn_core::model::ModelConfig;

/// The models a benchmark builds: a `config.json` with attention layouts tiled over its layers.
#[derive(clap::Args)]
pub struct Shape {
    /// The model's `config.json` (Hugging Face keys).
    #[arg(long, default_value = "configs/smollm2-135m.json")]
    config: PathBuf,
    /// Attention layouts, each tiled over the layers: `F` full, `S` sliding, `R` routed per token
    /// (SwiAttn, fresh routers at `--fa-ratio`), `H` head-mixed, e.g. `F,SSSF`. They run one after another in this
    /// process (sharing its tuned and compiled kernels), one report each.
    #[arg(long = "pattern", value_delimiter = ',', default_value = "F")]
    patterns: Vec<String>,
    /// Sliding window of `S`, `R` and `H` layers.
    #[arg(long, default_value_t = 512)]
    window: usize,
}

impl Shape {
    /// The config with `pattern` as its layout and `--window` as its sliding window.
    fn config(&self, pattern: &str) -> anyhow::Result<ModelConfig> {
        let mut config = ModelConfig::from_file(&self.config)?;
        config.attention_pattern = Some(pattern.to_string());
        config.attention_types = None;
        config.sliding_window = Some(self.window);
        Ok(config)
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Time the fused attention kernels (full, sliding, routed at several FA ratios).
    #[cfg(feature = "kernels")]
    Attention(attention::Args),
    /// Time training steps of a model shape on random tokens (tokens/s, spread, memory), as
    /// `tools/gpu_train/torch_baseline.py` does in PyTorch.
    Train(train::Args),
    /// Time the eval harness's scoring and greedy generation on a model shape with random
    /// weights, as `tools/gpu_eval/torch_infer.py` does with transformers, or on a real model.
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

/// The router output bias that sends about `ratio` of the tokens to full attention at
/// initialization: a fresh router's logit is `b + w·x` with `w ~ N(0, 0.02²)` per entry and `x` the
/// RMS-normalized layer input (RMS 1), so `w·x ~ N(0, 0.02² · hidden)`; the normal quantile is
/// taken from the logistic approximation `Φ(z) ≈ σ(1.702 z)` (the achieved ratio is measured).
pub(crate) fn router_bias(ratio: f64, hidden: usize) -> f64 {
    let spread = 0.02 * (hidden as f64).sqrt();
    let ratio = ratio.clamp(1e-6, 1.0 - 1e-6);
    spread * (ratio / (1.0 - ratio)).ln() / 1.702
}
