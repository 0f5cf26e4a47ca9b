//! `swiattn train`: a training run from a TOML config (see swiattn-train's `config.rs`), with the
//! resolved config, JSONL metrics and checkpoints in the run directory; `--resume` continues it.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::backend::BackendKind;
use swiattn_train::config::{TrainConfig, default_run_dir};
use swiattn_train::distributed::World;

#[derive(clap::Args)]
pub struct Args {
    /// The run's TOML config (optional with --resume: the run directory's config.toml is used).
    config: Option<PathBuf>,
    /// Run directory [default: runs/<config file stem>].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run from its latest complete checkpoint.
    #[arg(long)]
    resume: bool,
    /// Override `steps`.
    #[arg(long)]
    steps: Option<usize>,
    /// Override `seed`.
    #[arg(long)]
    seed: Option<u64>,
    /// Override `optim.lr`.
    #[arg(long)]
    lr: Option<f64>,
    /// Override `batch_size`.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override `grad_accumulation`.
    #[arg(long)]
    grad_accumulation: Option<usize>,
    /// Override `devices` (data-parallel GPUs).
    #[arg(long)]
    devices: Option<usize>,
    /// Override `model.attention_pattern`.
    #[arg(long)]
    attention_pattern: Option<String>,
    /// Override the routers' FA target (`routing.regularizer.target`).
    #[arg(long)]
    fa_target: Option<f64>,
    /// Print the resolved config and exit.
    #[arg(long)]
    print_config: bool,
}

pub fn run(args: Args, backend: BackendKind) -> anyhow::Result<()> {
    let run_dir = match (&args.run_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => default_run_dir(config),
        (None, None) => anyhow::bail!("give a config file, or --run-dir with --resume"),
    };
    let mut config = match &args.config {
        Some(path) => TrainConfig::from_file(path)?,
        None if args.resume => TrainConfig::from_file(&run_dir.join("config.toml"))?,
        None => anyhow::bail!("give a config file (or --resume an existing run)"),
    };
    if let Some(v) = args.steps {
        config.steps = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    if let Some(v) = args.lr {
        config.optim.lr = v;
    }
    if let Some(v) = args.batch_size {
        config.batch_size = v;
    }
    if let Some(v) = args.grad_accumulation {
        config.grad_accumulation = v;
    }
    if let Some(v) = args.devices {
        config.devices = v;
    }
    if let Some(v) = &args.attention_pattern {
        config.model.attention_pattern = v.clone();
    }
    if let Some(v) = args.fa_target {
        config.routing.regularizer.target = swiattn_router::Budget::new(v)?;
    }
    config.validate("command line")?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    // A rank of a multi-process job when a launcher (torchrun, srun) started this process.
    let world = World::from_env()?;
    if let Some(world) = &world
        && backend != BackendKind::Cpu
    {
        anyhow::bail!(
            "rank {} of {}: multi-process jobs reduce gradients over TCP, which is for the CPU backend; \
             on GPUs use `devices = N` in one process (NCCL across processes is not built yet; docs/training.md)",
            world.rank,
            world.size
        );
    }
    let rank = world.as_ref().map_or(0, |w| w.rank);
    let bar = if rank == 0 { ProgressBar::new(config.steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} eta {eta}").expect("valid template"));
    let devices: Vec<Device> = backend.devices(config.devices)?.into_iter().map(|d| d.autodiff()).collect();
    swiattn_train::interrupt::install()?;
    let summary = swiattn_train::run::train(&config, &run_dir, args.resume, &devices, world.as_ref(), &mut |p| {
        let m = p.metrics;
        bar.set_position(m.step as u64);
        let fa = if m.fa_ratio.is_empty() {
            String::new()
        } else {
            format!(" · FA {:.3}", m.fa_ratio.values().sum::<f64>() / m.fa_ratio.len() as f64)
        };
        bar.set_message(format!("loss {:.4}{fa} · {:.0} tok/s · MFU {:.1}%", m.loss, p.tokens_per_s, 100.0 * p.mfu));
    })
    .with_context(|| match &world {
        Some(w) => format!("run {} (rank {} of {})", run_dir.display(), w.rank, w.size),
        None => format!("run {}", run_dir.display()),
    })?;
    bar.finish_and_clear();
    if rank != 0 {
        println!("rank {rank}: {} steps done (rank 0 writes the run and reports it)", summary.steps);
        return Ok(());
    }
    if let Some(step) = summary.resumed_from {
        println!("resumed from step {step}");
    }
    println!(
        "{}: {} steps in {:.1} s; train loss {:.4}, eval loss {:.4}{}{}",
        summary.run_dir.display(),
        summary.steps,
        summary.seconds,
        summary.final_loss,
        summary.eval_loss,
        summary.recall_accuracy.map(|a| format!(", recall accuracy {a:.3}")).unwrap_or_default(),
        summary.best.map(|b| format!(", best eval loss {:.4} at step {}", b.loss, b.step)).unwrap_or_default()
    );
    if !summary.eval_fa_ratio.is_empty() {
        let ratios: Vec<String> = summary.eval_fa_ratio.iter().map(|r| format!("{r:.3}")).collect();
        println!("held-out FA ratio per routed layer: {} (routing.png)", ratios.join(" "));
    }
    println!(
        "{:.0} tokens/s, MFU {:.2}% of a measured matmul ceiling of {:.1} GFLOP/s (summary.json)",
        summary.tokens_per_s,
        100.0 * summary.mfu,
        summary.matmul_ceiling / 1e9
    );
    Ok(())
}
