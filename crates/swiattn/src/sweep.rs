//! `swiattn sweep sweep.toml`: run a grid of training runs (see swiattn-train's `sweep.rs`),
//! skipping finished cells and resuming unfinished ones, then write the results table and plot.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::backend::BackendKind;
use swiattn_train::sweep::{
    CellState, CellSummary, SweepConfig, SweepEval, cell_state, read_eval, read_summary, write_results,
};

#[derive(clap::Args)]
pub struct Args {
    /// The sweep file.
    sweep: PathBuf,
    /// Output directory [default: the file's `out`, else sweeps/<file stem>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// List the cells and their state without training.
    #[arg(long)]
    dry_run: bool,
    /// Run only these cells (comma-separated names, as `--dry-run` lists them); the tables still
    /// join every other cell that has finished.
    #[arg(long, value_delimiter = ',')]
    cells: Vec<String>,
    /// Train and score nothing: write the tables of the cells that have finished.
    #[arg(long, conflicts_with = "cells")]
    report: bool,
}

pub fn run(args: Args, backend: BackendKind) -> anyhow::Result<()> {
    let (sweep, base) = SweepConfig::from_file(&args.sweep)?;
    let out = args
        .out
        .or_else(|| sweep.out.clone())
        .unwrap_or_else(|| PathBuf::from("sweeps").join(args.sweep.file_stem().unwrap_or_default()));
    let cells = sweep.cells(&base);
    let names: Vec<String> = cells.iter().map(|c| c.name()).collect();
    let unknown: Vec<&String> = args.cells.iter().filter(|c| !names.contains(c)).collect();
    anyhow::ensure!(
        unknown.is_empty(),
        "{}: no cell named {unknown:?}; the cells are {}",
        args.sweep.display(),
        names.join(", ")
    );
    let chosen = |name: &String| !args.report && (args.cells.is_empty() || args.cells.contains(name));
    // Every cell's config before the first trains: a bad cell late in the grid is found now, not
    // after hours of the cells before it.
    let (mut configs, mut bad) = (Vec::with_capacity(cells.len()), Vec::new());
    for cell in &cells {
        match cell.config(&base) {
            Ok(config) => configs.push(config),
            Err(e) => bad.push(format!("  {}: {e}", cell.name())),
        }
    }
    anyhow::ensure!(bad.is_empty(), "{}: {} cell(s) cannot run:\n{}", args.sweep.display(), bad.len(), bad.join("\n"));
    if let Some(eval) = &sweep.eval {
        // The harness's flags parse now, not after the first cell has trained.
        eval_command(eval, &out, &out)?;
    }
    let devices: Vec<Device> = backend.devices(base.devices)?.into_iter().map(|d| d.autodiff()).collect();
    swiattn_train::interrupt::install()?;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for (i, (cell, config)) in cells.iter().zip(configs).enumerate() {
        let dir = out.join("cells").join(cell.name());
        let state = cell_state(&dir, &config)?;
        println!("[{}/{}] {} ({state:?})", i + 1, cells.len(), cell.name());
        if args.dry_run {
            continue;
        }
        if !chosen(&cell.name()) {
            if state == CellState::Done {
                let summary = read_summary(&dir)?.expect("a finished cell has its summary");
                results.push((cell.clone(), summary, read_eval(&dir)?));
            }
            continue;
        }
        if state != CellState::Done {
            let bar = ProgressBar::new(config.steps as u64);
            bar.set_style(
                ProgressStyle::with_template("  {bar:40} {pos}/{len} {msg} eta {eta}").expect("valid template"),
            );
            let result =
                swiattn_train::run::train(&config, &dir, state == CellState::Resume, &devices, None, &mut |p| {
                    bar.set_position(p.metrics.step as u64);
                    bar.set_message(format!("loss {:.4}", p.metrics.loss));
                });
            bar.finish_and_clear();
            if let Err(e) = result {
                // A signal stops the sweep with its cell's checkpoint; rerunning it resumes there.
                anyhow::ensure!(!swiattn_train::interrupt::requested(), "{e}; rerun the sweep to continue");
                eprintln!("  failed: {e}");
                failed.push(cell.name());
                continue;
            }
        }
        let summary: CellSummary =
            read_summary(&dir)?.with_context(|| format!("{}: no summary.json after the run", dir.display()))?;
        let mut harness = read_eval(&dir)?;
        if let Some(eval) = &sweep.eval
            && harness.is_none()
        {
            let (_, last) = swiattn_train::checkpoint::list(&dir)?
                .pop()
                .with_context(|| format!("{}: a finished cell without a checkpoint to evaluate", dir.display()))?;
            println!("  eval: {}", last.display());
            let device = backend.device()?;
            // Resumed: an eval stopped earlier keeps the tasks it scored.
            let scored = crate::eval::run(eval_command(eval, &last, &dir.join("eval.json"))?, backend, &device);
            if let Err(e) = scored {
                anyhow::ensure!(!swiattn_train::interrupt::requested(), "{e:#}; rerun the sweep to continue");
                eprintln!("  eval failed: {e:#}");
                failed.push(format!("{} (eval)", cell.name()));
            }
            harness = read_eval(&dir)?;
        }
        results.push((cell.clone(), summary, harness));
    }
    if args.dry_run {
        return Ok(());
    }
    if !results.is_empty() {
        write_results(&out, &results)?;
        print!("{}", std::fs::read_to_string(out.join("results.md"))?);
        let tasks = if sweep.eval.is_some() { ", tasks_vs_fa.png" } else { "" };
        println!("{}: results.csv, results.md, quality_vs_fa.png{tasks}", out.display());
    }
    anyhow::ensure!(failed.is_empty(), "{} cell(s) failed: {}", failed.len(), failed.join(", "));
    Ok(())
}

/// `swiattn eval` with the sweep's `[eval]` flags on `model`, its results written to `results`;
/// `{cell}` in a flag stands for the cell's directory (e.g. `--routing-map {cell}/routing.png`).
fn eval_command(eval: &SweepEval, model: &Path, results: &Path) -> anyhow::Result<crate::eval::Args> {
    let cell = results.parent().unwrap_or(Path::new(".")).to_string_lossy().into_owned();
    #[derive(clap::Parser)]
    struct Eval {
        #[command(flatten)]
        args: crate::eval::Args,
    }
    let argv = ["eval", "--resume", "--model"]
        .into_iter()
        .map(std::ffi::OsStr::new)
        .chain([model.as_os_str(), "--results".as_ref(), results.as_os_str()])
        .map(std::ffi::OsString::from)
        .chain(eval.args.iter().map(|a| std::ffi::OsString::from(a.replace("{cell}", &cell))));
    let parsed = <Eval as clap::Parser>::try_parse_from(argv).context("[eval] args (the flags of `swiattn eval`)")?;
    Ok(parsed.args)
}
