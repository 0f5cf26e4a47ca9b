//! `swiattn`: the command line of the swiattn framework.

mod account;
mod allocate;
mod bench;
mod compare;
mod data;
mod demo;
mod eval;
mod info;
mod model_config;
mod plot;
mod ppl;
mod quickstart;
mod ruler;
mod selftest;
mod sweep;
mod train;

use clap::{Parser, Subcommand};
use swiattn_core::BackendKind;

#[derive(Parser)]
#[command(name = "swiattn", version, about = "Dynamic hybrid full/sliding-window attention on burn")]
struct Cli {
    /// Backend to run on: cpu, wgpu or cuda, among those compiled in [default: cpu, or the only
    /// one compiled in].
    #[arg(long, global = true)]
    backend: Option<BackendKind>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main demonstration: full, sliding-only, a rule baseline and SwiAttn trained on synthetic
    /// far-back recall (no downloads), compared on recall accuracy, loss, FA ratio and FLOPs.
    Quickstart(quickstart::Args),
    /// Data preparation for training on text.
    #[command(subcommand)]
    Data(data::Command),
    /// Train (or resume) a run from a TOML config: metrics, evaluations and checkpoints in its
    /// run directory.
    Train(train::Args),
    /// Run a grid of training runs (policy × budget × window × seed) and tabulate them.
    Sweep(sweep::Args),
    /// Build the embedded default hybrid model and show what swiattn does with it: per-layer
    /// attention and cost, the three-path agreement check, and blocked vs dense sliding attention.
    Demo(demo::Args),
    /// Evaluate a model on the regular suite (perplexity, LAMBADA, multiple choice) and RULER's
    /// long-context tasks, or on task specs, OLMES request files and documents: every metric with
    /// its attention cost, as a table and a results JSON.
    Eval(eval::Args),
    /// Perplexity of a text under a model (GGUF file or Hugging Face directory).
    Ppl(ppl::Args),
    /// Summarize a model's architecture and attention layout.
    Info(info::Args),
    /// Check every attention path and cached decoding against the reference on this backend.
    Selftest(selftest::Args),
    /// Attention FLOPs, KV-cache bytes and FA ratio per layer at a sequence length.
    Account(account::Args),
    /// Write the allocation artifact of a rule baseline (e.g. interleave:5) for a model.
    Allocate(allocate::Args),
    /// Draw an allocation or a routing map as a PNG heatmap.
    Plot(plot::Args),
    /// Benchmarks: the fused GPU kernels, training steps, scoring and generation.
    #[command(subcommand)]
    Bench(bench::Command),
    /// The same forward and training step on each compiled backend: logit and loss differences,
    /// and time per backend.
    Compare(compare::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let backend = cli
        .backend
        .or_else(|| BackendKind::compiled().first().copied())
        .ok_or_else(|| anyhow::anyhow!("no backend compiled in: build with --features flex, wgpu or cuda"))?;
    let device = backend.device()?;
    match cli.command {
        Command::Quickstart(args) => quickstart::run(args, backend, &device),
        Command::Demo(args) => demo::run(args, backend, &device),
        Command::Train(args) => train::run(args, backend),
        Command::Sweep(args) => sweep::run(args, backend),
        Command::Data(command) => data::run(command),
        Command::Ppl(args) => ppl::run(args, backend, &device),
        Command::Eval(args) => eval::run(args, backend, &device),
        Command::Info(args) => info::run(args, &device),
        Command::Selftest(args) => selftest::run(args, backend, &device),
        Command::Bench(command) => bench::run(command, backend, &device),
        Command::Compare(args) => compare::run(args),
        Command::Account(args) => account::run(args),
        Command::Allocate(args) => allocate::run(args),
        Command::Plot(args) => plot::run(args),
    }
}
