//! Reading just a model's config (no weights) from a `config.json`, a Hugging Face directory or a
//! GGUF file, with the command line's attention overrides applied.

use std::path::{Path, PathBuf};

use burn::tensor::DType;

use swiattn_core::checkpoint::gguf::{GgufFile, config_from_gguf};
use swiattn_core::model::{Allocation, ModelConfig};

/// Attention overrides shared by the commands that read a model.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AttentionArgs {
    /// Replace every layer's attention with this pattern (F full, S sliding, R routed, H
    /// head-mixed), tiled over the layers.
    #[arg(long)]
    pub attention_pattern: Option<String>,
    /// Replace the sliding window of every windowed layer.
    #[arg(long)]
    pub window: Option<usize>,
    /// Apply a static allocation artifact (from `swiattn allocate` or a learned policy).
    #[arg(long)]
    pub allocation: Option<PathBuf>,
}

impl AttentionArgs {
    pub fn load_options(&self) -> anyhow::Result<swiattn_core::checkpoint::LoadOptions> {
        Ok(swiattn_core::checkpoint::LoadOptions {
            attention_pattern: self.attention_pattern.clone(),
            sliding_window: self.window,
            allocation: self.allocation.as_deref().map(Allocation::load).transpose()?,
            ..Default::default()
        })
    }
}

/// A parameter or compute dtype by name: `f32`, `bf16` or `f16` (a clap value parser too).
pub fn parse_dtype(s: &str) -> anyhow::Result<DType> {
    Ok(match s {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        _ => anyhow::bail!("unknown dtype `{s}` (expected f32, bf16 or f16)"),
    })
}

/// The config of a `config.json`, a directory holding one, a training checkpoint
/// (`checkpoints/step-N`), or a GGUF file.
pub fn read_config(path: &Path) -> anyhow::Result<ModelConfig> {
    if path.extension().is_some_and(|e| e == "gguf") {
        return Ok(config_from_gguf(&GgufFile::open(path)?)?);
    }
    let dir = swiattn_train::checkpoint::training_checkpoint(path).map_or(path.to_path_buf(), |c| c.join("model"));
    let file = if dir.is_dir() { dir.join("config.json") } else { dir };
    Ok(ModelConfig::from_file(&file)?)
}

/// [`read_config`] with the overrides applied (as loading the model would).
pub fn read_config_with(path: &Path, args: &AttentionArgs) -> anyhow::Result<ModelConfig> {
    let mut config = read_config(path)?;
    if let Some(path) = &args.allocation {
        anyhow::ensure!(args.attention_pattern.is_none(), "give either --attention-pattern or --allocation, not both");
        config = Allocation::load(path)?.apply(config)?;
    }
    if let Some(pattern) = &args.attention_pattern {
        config.attention_pattern = Some(pattern.clone());
        config.attention_types = None;
    }
    if let Some(w) = args.window {
        config.sliding_window = Some(w);
    }
    config.resolve("model config with the requested attention")?;
    Ok(config)
}

/// Refuse `used` tokens past the model's `max_position_embeddings` (its trained context) unless
/// `beyond` (`--beyond-trained-context`, length extrapolation): `what` says what asked for them,
/// `fix` how to stay within.
pub fn check_trained_context(
    config: &ModelConfig,
    model: &Path,
    used: usize,
    what: &str,
    fix: &str,
    beyond: bool,
) -> anyhow::Result<()> {
    if let Some(trained) = config.max_position_embeddings.filter(|&trained| !beyond && used > trained) {
        anyhow::bail!(
            "{what} is past the model's max_position_embeddings ({trained}, {}); {fix}, or pass \
             --beyond-trained-context to go there anyway",
            model.display()
        );
    }
    Ok(())
}
