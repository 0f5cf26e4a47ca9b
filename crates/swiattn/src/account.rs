//! `swiattn account`: window-aware attention FLOPs, KV-cache bytes and FA ratio per layer of a
//! model layout at a sequence length, relative to the same model with every layer full.

use std::path::PathBuf;

use swiattn_core::accounting::{RoutedLayers, account};

use crate::model_config::{AttentionArgs, read_config_with};

#[derive(clap::Args)]
pub struct Args {
    /// A config.json, a Hugging Face directory or a GGUF file (only the config is read).
    #[arg(long)]
    config: PathBuf,
    /// Sequence length.
    #[arg(long, default_value_t = 32768)]
    seq_len: usize,
    #[command(flatten)]
    attention: AttentionArgs,
    /// Expected FA ratio of routed layers (each token independently).
    #[arg(long, default_value_t = 0.25)]
    fa_ratio: f64,
    /// Bytes per cached K/V element (2 for bf16).
    #[arg(long, default_value_t = 2)]
    bytes: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = read_config_with(&args.config, &args.attention)?;
    let arch = config.resolve(&args.config.display().to_string())?;
    let a = account(&arch, args.seq_len, args.bytes, &RoutedLayers::Ratio(args.fa_ratio))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(());
    }
    println!(
        "{} at {} tokens ({} bytes per cached element; routed layers at FA ratio {})",
        args.config.display(),
        args.seq_len,
        args.bytes,
        args.fa_ratio
    );
    println!(
        "{:>5}  {:<22} {:>8} {:>14} {:>9} {:>12}",
        "layer", "attention", "FA ratio", "attn GFLOP", "vs full", "KV MiB"
    );
    let per_layer_full = a.full_attention_flops / a.layers.len() as f64;
    for l in &a.layers {
        println!(
            "{:>5}  {:<22} {:>8.3} {:>14.2} {:>9.3} {:>12.2}",
            l.layer,
            l.kind,
            l.fa_ratio,
            l.attention_flops / 1e9,
            l.attention_flops / per_layer_full,
            l.kv_bytes / (1 << 20) as f64
        );
    }
    println!(
        "total: FA ratio {:.3}, attention {:.2} GFLOP = {:.3} of all-full ({:.2}), KV cache {:.1} MiB = {:.3} of all-full ({:.1})",
        a.fa_ratio(),
        a.attention_flops / 1e9,
        a.attention_flops / a.full_attention_flops,
        a.full_attention_flops / 1e9,
        a.kv_bytes / (1 << 20) as f64,
        a.kv_bytes / a.full_kv_bytes,
        a.full_kv_bytes / (1 << 20) as f64
    );
    Ok(())
}
