//! `swiattn quickstart`: the main demonstration — full, sliding-only, a rule baseline and SwiAttn
//! trained on synthetic far-back recall (no downloads), compared in one table.

use std::time::Instant;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::BackendKind;
use swiattn_train::quickstart::{QuickstartConfig, run as run_quickstart};

#[derive(clap::Args)]
pub struct Args {
    /// Steps of full-attention pretraining.
    #[arg(long, default_value_t = QuickstartConfig::default().pretrain_steps)]
    pretrain_steps: usize,
    /// Steps of each conversion (full, sliding, rule, SwiAttn) from the pretrained model.
    #[arg(long, default_value_t = QuickstartConfig::default().convert_steps)]
    convert_steps: usize,
    /// SwiAttn's FA budget: the target fraction of (layer, token) pairs on full attention.
    #[arg(long, default_value_t = QuickstartConfig::default().fa_target)]
    fa_target: f64,
    /// Random seed (data and initialization).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the table as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let config = QuickstartConfig {
        pretrain_steps: args.pretrain_steps,
        convert_steps: args.convert_steps,
        fa_target: args.fa_target,
        seed: args.seed,
        ..QuickstartConfig::default()
    };
    let t = &config.task;
    if !args.json {
        println!(
            "swiattn quickstart on {backend}: copy the token {} positions back after each marker (window {}), \
             {}-layer model, {} + {} steps of batch {}",
            t.lag, config.window, config.layers, config.pretrain_steps, config.convert_steps, config.batch
        );
    }
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{msg:32} {bar:30} {pos}/{len} loss {prefix}").expect("valid template"));
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let rows = run_quickstart(&config, &device.clone().autodiff(), &mut |p| {
        if bar.length() != Some(p.steps as u64) || bar.message() != p.phase {
            bar.set_length(p.steps as u64);
            bar.set_message(p.phase.to_string());
        }
        bar.set_position(p.step as u64);
        bar.set_prefix(format!("{:.3}", p.loss));
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "\n{:<14} {:>16} {:>10} {:>10} {:>22}",
        "variant", "recall accuracy", "loss", "FA ratio", "attn FLOPs vs full"
    );
    for r in &rows {
        println!(
            "{:<14} {:>16.3} {:>10.3} {:>10.3} {:>22.3}",
            r.variant, r.recall_accuracy, r.loss, r.fa_ratio, r.attention_flops_vs_full
        );
    }
    println!(
        "\nrecall accuracy: next-token accuracy at the far-back positions (chance {:.3}); FA ratio: fraction of \
         (layer, token) on full attention; {:.0} s",
        1.0 / t.filler_symbols as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
