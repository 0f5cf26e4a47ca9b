//! `swiattn allocate`: write the allocation artifact of a rule baseline for a model.

use std::path::PathBuf;

use swiattn_core::attention::Window;
use swiattn_core::model::ModelShape;
use swiattn_router::rules::Rule;

use crate::model_config::read_config;

#[derive(clap::Args)]
pub struct Args {
    /// A config.json, a Hugging Face directory or a GGUF file (only the config is read).
    #[arg(long)]
    config: PathBuf,
    /// all-full, all-sliding, interleave:K, layers:I,J,.., first:N, last:N, middle:N, heads:F
    #[arg(long)]
    rule: Rule,
    /// Window of the sliding units [default: the model's sliding_window].
    #[arg(long)]
    window: Option<usize>,
    /// Where to write the allocation JSON.
    #[arg(long)]
    out: PathBuf,
    /// Also draw it as a PNG.
    #[arg(long)]
    png: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = read_config(&args.config)?;
    let w = args
        .window
        .or(config.sliding_window)
        .ok_or_else(|| anyhow::anyhow!("{} has no sliding_window; pass --window", args.config.display()))?;
    let allocation = args.rule.allocation(&ModelShape::of(&config), Window::new(w)?)?;
    allocation.save(&args.out)?;
    println!(
        "{}: {} for {}, FA ratio {:.3}",
        args.out.display(),
        allocation.policy,
        allocation.model,
        allocation.fa_ratio()
    );
    if let Some(png) = &args.png {
        swiattn_router::plot::allocation(&allocation, png)?;
        println!("{}", png.display());
    }
    Ok(())
}
