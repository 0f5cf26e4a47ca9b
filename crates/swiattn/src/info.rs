//! `swiattn info`: what a checkpoint is and how its attention is laid out.

use std::path::PathBuf;

use burn::tensor::Device;
use swiattn_core::model::{Arch, LayerAttention};
use swiattn_train::checkpoint::open_model;

use crate::model_config::AttentionArgs;

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file or a Hugging Face directory (config.json + safetensors).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    attention: AttentionArgs,
}

pub fn run(args: Args, device: &Device) -> anyhow::Result<()> {
    let loaded = open_model(&args.model, device, &args.attention.load_options()?)?;
    let arch = &loaded.model.arch;
    println!("{}", args.model.display());
    println!("  {}", describe(arch));
    println!(
        "  model_type {}, vocab {}, hidden {}, intermediate {}",
        loaded.model.config.model_type, arch.vocab_size, arch.hidden_size, arch.intermediate_size
    );
    println!(
        "  heads {} (kv {}), head_dim {}, tied embeddings {}",
        arch.num_heads, arch.num_kv_heads, arch.head_dim, arch.tie_word_embeddings
    );
    println!("  layers: {}", layer_string(&arch.layers));
    println!(
        "  tokenizer: {}",
        if loaded.tokenizer.is_some() { "included" } else { "none (pass --tokenizer where one is needed)" }
    );
    Ok(())
}

/// `"18 layers: 15 sliding (w=512), 3 full"`.
pub fn describe(arch: &Arch) -> String {
    let [full, sliding, routed, mixed] = arch.layer_counts();
    let window =
        arch.layers.iter().find_map(LayerAttention::window).map(|w| format!(" w={}", w.size())).unwrap_or_default();
    let mut parts = Vec::new();
    for (n, name) in [(sliding, "sliding"), (routed, "routed"), (mixed, "head-mixed"), (full, "full")] {
        if n > 0 {
            parts.push(format!("{n} {name}"));
        }
    }
    format!("{:?}, {} layers{window}: {}", arch.family, arch.layers.len(), parts.join(", "))
}

/// One letter per layer: `SSSSSFSSSSSF…`.
pub fn layer_string(layers: &[LayerAttention]) -> String {
    layers
        .iter()
        .map(|l| match l {
            LayerAttention::Full => 'F',
            LayerAttention::Sliding(_) => 'S',
            LayerAttention::Routed(_) => 'R',
            LayerAttention::HeadMixed { .. } => 'H',
        })
        .collect()
}
