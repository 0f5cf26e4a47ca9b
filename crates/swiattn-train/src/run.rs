//! A training run: the config written resolved into the run directory, the loop, JSONL metrics,
//! periodic evaluation and checkpoints, and exact resumption.
//!
//! Run directory:
//!
//! ```text
//! <run>/config.toml       the resolved config (every key)
//! <run>/metrics.jsonl     one line per logged step ({"step", "loss", "lr", "fa_ratio", ...}) and
//!                         per evaluation ({"step", "eval_loss", "recall_accuracy", ...})
//! <run>/checkpoints/      step-NNNNNN/ (see checkpoint.rs)
//! ```
//!
//! Resuming restores the latest complete checkpoint that passes its checksums (an older one when
//! the latest is corrupt, with a warning naming it) and drops the metric lines logged after it, so
//! the metrics of an interrupted-and-resumed run are those of an uninterrupted one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use swiattn_core::accounting::{RoutedLayers, account};
use swiattn_core::attention::Window;
use swiattn_core::checkpoint::{LoadOptions, load_model};
use swiattn_core::model::{Allocation, ModelConfig, ModelShape, Transformer};
use swiattn_core::{Error, Result};
use swiattn_router::consa::Consa;
use swiattn_router::duo::DuoGates;
use swiattn_router::router::{Routers, SwiAttn};
use swiattn_router::rules::Rule;
use tokenizers::Tokenizer;

use crate::checkpoint::{self, Best, State};
use crate::config::TrainConfig;
use crate::data::Batch;
use crate::data::Dataset;
use crate::distributed::{self, Group, Timeouts, World};
use crate::routing::Routing;
use crate::schedule::LrSchedule;
use crate::trainer::{Evaluation, OptimizerSettings, StepMetrics, Trainer};
use swiattn_core::paths::expand_home;

/// What a finished run reports (also written to `<run>/summary.json`).
/// The context length at which a run's KV-cache bytes are reported: long-context inference,
/// where the layouts' caches differ most (at the training length they may all be full).
pub const KV_REPORT_LEN: usize = 32_768;

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub steps: usize,
    pub final_loss: f64,
    pub eval_loss: f64,
    /// Accuracy at the far-back positions (synthetic tasks only).
    pub recall_accuracy: Option<f64>,
    /// Held-out FA ratio of each routed layer at the last evaluation.
    pub eval_fa_ratio: Vec<f64>,
    /// FA ratio over all layers of the final layout (routed layers at their held-out ratio).
    pub fa_ratio: f64,
    /// Attention FLOPs of a training sequence relative to all-full attention (window-aware).
    pub attention_flops_vs_full: f64,
    /// KV-cache bytes at [`KV_REPORT_LEN`] tokens relative to all-full attention: sliding layers
    /// and heads keep their window, routed layers everything (any later token may route to full).
    pub kv_bytes_vs_full: f64,
    pub best: Option<Best>,
    pub resumed_from: Option<usize>,
    /// Wall time of this invocation (since a resume, if resumed): steps, held-out evals,
    /// checkpoints and plots.
    pub seconds: f64,
    /// Where `seconds` went: the training steps (the first alone too: it compiles and tunes the
    /// kernels), the held-out evaluations and the checkpoints (saved and pruned).
    pub time: TimeSpent,
    /// Training throughput and model FLOPs utilization over this invocation's steps alone (their
    /// summed times, the first step's kernel compilation included).
    pub tokens_per_s: f64,
    pub mfu: f64,
    /// One device's measured matmul throughput, FLOP/s (MFU's denominator: this × devices).
    pub matmul_ceiling: f64,
}

/// Seconds of a run's phases ([`Summary::time`]).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TimeSpent {
    pub steps: f64,
    pub first_step: f64,
    pub evals: f64,
    pub checkpoints: f64,
}

/// Run `work`, adding its wall time to `seconds`.
fn timed<T>(seconds: &mut f64, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let out = work();
    *seconds += started.elapsed().as_secs_f64();
    out
}

/// What the progress display sees after every step.
pub struct Progress<'a> {
    pub metrics: &'a StepMetrics,
    pub tokens_per_s: f64,
    pub mfu: f64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// The model to start from: from scratch in the configured shape, or a checkpoint; then converted
/// to the configured attention layout. A model loaded from a file comes with the tokenizer it
/// ships (a GGUF's own, a directory's `tokenizer.json`), which the run keeps beside its checkpoints.
fn initial_model(config: &TrainConfig, data: &Dataset, device: &Device) -> Result<(Transformer, Option<Tokenizer>)> {
    let m = &config.model;
    let mut tokenizer = None;
    let model = if m.from == "scratch" && !m.config.is_empty() {
        Transformer::new(ModelConfig::from_file(&expand_home(&m.config))?, device)?
    } else if m.from == "scratch" {
        let json = json!({
            "model_type": "llama",
            "vocab_size": data.vocab_size(),
            "hidden_size": m.hidden_size,
            "intermediate_size": 2 * m.hidden_size,
            "num_hidden_layers": m.layers,
            "num_attention_heads": m.heads,
            "num_key_value_heads": m.kv_heads,
            "head_dim": m.hidden_size / m.heads.max(1),
            "sliding_window": m.sliding_window,
            "tie_word_embeddings": true,
            "initializer_range": m.initializer_range,
        });
        Transformer::new(
            ModelConfig::from_json_str(&json.to_string(), "model section of the training config")?,
            device,
        )?
    } else {
        let options = LoadOptions { sliding_window: Some(m.sliding_window), ..Default::default() };
        let loaded = load_model(&expand_home(&m.from), device, &options)?;
        if let (Dataset::Text(packed), Some(tokenizer)) = (data, &loaded.tokenizer) {
            packed.meta.check_tokenizer(tokenizer, &m.from)?;
        }
        tokenizer = loaded.tokenizer;
        loaded.model
    };
    if model.arch.vocab_size < data.vocab_size() {
        return Err(Error::Invalid(format!(
            "the model's vocabulary ({}) is smaller than the data's ({})",
            model.arch.vocab_size,
            data.vocab_size()
        )));
    }
    if !m.rule.is_empty() {
        let rule: Rule = m.rule.parse()?;
        let allocation = rule.allocation(&ModelShape::of(&model.config), Window::new(m.sliding_window)?)?;
        return Ok((model.with_attention(&allocation.layers())?, tokenizer));
    }
    if m.attention_pattern.is_empty() {
        return Ok((model, tokenizer));
    }
    let mut layout = model.config.clone();
    layout.attention_pattern = Some(m.attention_pattern.clone());
    layout.attention_types = None;
    layout.sliding_window = Some(m.sliding_window);
    let layers = layout.resolve("model.attention_pattern")?.layers;
    Ok((model.with_attention(&layers)?, tokenizer))
}

fn settings(config: &TrainConfig) -> OptimizerSettings {
    let o = &config.optim;
    OptimizerSettings {
        schedule: LrSchedule { peak: o.lr, warmup: o.warmup, total: config.steps, min_ratio: o.min_lr_ratio },
        weight_decay: o.weight_decay,
        router_lr: o.router_lr,
        grad_clip: (o.grad_clip > 0.0).then_some(o.grad_clip),
    }
}

fn routing_for(model: &Transformer, config: &TrainConfig, device: &Device) -> Result<Routing> {
    if let Some(section) = &config.consa {
        let window = Window::new(config.model.sliding_window)?;
        return Ok(Routing::Consa(Consa::new(section.gates.clone(), ModelShape::of(&model.config), window, device)));
    }
    if let Some(section) = &config.duo {
        let window = Window::new(config.model.sliding_window)?;
        let shape = ModelShape::of(&model.config);
        let gates = DuoGates::new(shape, window, section.gates.init_gate, device);
        return Ok(Routing::Duo { gates, l1: section.gates.l1 });
    }
    let routed = model.routed_layers();
    if routed.is_empty() {
        return Ok(Routing::None);
    }
    let router = &config.routing.router;
    let routers = Routers::new(routed, model.arch.hidden_size, router, device);
    Ok(Routing::SwiAttn {
        policy: SwiAttn::new(routers, router.clone()),
        regularizer: config.routing.regularizer.clone(),
    })
}

/// At the last step of ConSA's or Duo's first stage: the allocation its gates learned (ConSA's
/// `binarize` mode, Duo's budget) and the metrics line that opens stage 2; `None` otherwise.
fn learned_allocation(
    config: &TrainConfig,
    routing: &Routing,
    step: usize,
) -> Result<Option<(Allocation, serde_json::Value)>> {
    if config.stage1_steps().is_none_or(|(last, _)| last != step) {
        return Ok(None);
    }
    Ok(match (routing, &config.consa, &config.duo) {
        (Routing::Consa(consa), Some(section), _) => {
            let allocation = consa.binarize(section.binarize)?;
            let line = json!({"step": step, "stage": 2, "allocation_fa_ratio": allocation.fa_ratio(), "expected_ratio": consa.expected_ratio()});
            Some((allocation, line))
        }
        (Routing::Duo { gates, .. }, _, Some(section)) => {
            let allocation = gates.binarize(section.gates.budget)?;
            let open = gates.values().iter().filter(|&&a| a > 0.5).count();
            let line =
                json!({"step": step, "stage": 2, "allocation_fa_ratio": allocation.fa_ratio(), "open_gates": open});
            Some((allocation, line))
        }
        _ => None,
    })
}

/// Keep the metric lines of steps `<= step` (resuming from that step's checkpoint).
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .collect();
    swiattn_core::paths::replace_file(path, kept.iter().map(|l| format!("{l}\n")).collect::<String>())
}

/// A run directory opened for training: its trainer (fresh, or restored from the latest
/// checkpoint), the best evaluation so far, and its metrics log (truncated to the checkpoint).
struct Opened {
    trainer: Trainer,
    best: Option<Best>,
    resumed_from: Option<usize>,
    /// The metrics log and the run's lock, held while it trains (see [`lock`]); a rank other than
    /// 0 of a multi-process job has neither: it writes nothing.
    log: Option<MetricsLog>,
    _lock: Option<std::fs::File>,
}

/// Take `<run>/.lock` for this process (an OS file lock, released when the process ends however
/// it ends), so that two trainings never write one run directory; it holds the holder's pid.
fn lock(run_dir: &Path) -> Result<std::fs::File> {
    let path = run_dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::Invalid(format!(
                "{} is being trained by another process ({}): wait for it to finish, or choose another run directory",
                run_dir.display(),
                holder.trim()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    file.set_len(0).and_then(|_| write!(file, "pid {}", std::process::id())).map_err(io(&path))?;
    Ok(file)
}

/// Write the config into `run_dir` (or check it against the saved one when resuming), then start
/// fresh or restore the latest checkpoint.
fn open(config: &TrainConfig, run_dir: &Path, resume: bool, data: &Dataset, device: &Device) -> Result<Opened> {
    let from = expand_home(&config.model.from);
    if !resume && config.model.from != "scratch" && !from.exists() {
        return Err(Error::config(
            "the training config",
            "model.from",
            format!("{}: no such file or directory (nothing was written to {})", from.display(), run_dir.display()),
        ));
    }
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let lock = lock(run_dir)?;
    let config_path = run_dir.join("config.toml");
    let resolved = config.to_toml();
    if resume {
        let saved = TrainConfig::from_file(&config_path)?;
        if saved != *config {
            let (saved, given) = (serde_json::to_value(&saved), serde_json::to_value(config));
            let key = saved.ok().zip(given.ok()).and_then(|(s, g)| first_difference(&s, &g, "")).unwrap_or_default();
            return Err(Error::Invalid(format!(
                "{} holds a different config (first difference: {key}); resume with that one (omit the config) \
                 or start a new run directory",
                config_path.display()
            )));
        }
    } else {
        if checkpoint::list(run_dir)?.last().is_some() {
            return Err(Error::Invalid(format!(
                "{} already has checkpoints: pass --resume to continue it, or choose another run directory",
                run_dir.display()
            )));
        }
        std::fs::write(&config_path, &resolved).map_err(io(&config_path))?;
    }
    let metrics_path = run_dir.join("metrics.jsonl");
    let latest = if resume { checkpoint::list(run_dir)?.pop() } else { None };
    if latest.as_ref().is_some_and(|(step, _)| *step == config.steps) && run_dir.join("summary.json").exists() {
        return Err(Error::Invalid(format!(
            "{} finished all {} steps; its summary.json stands (train a new run directory to train more)",
            run_dir.display(),
            config.steps
        )));
    }
    let restored = if resume { restore(run_dir, config, device)? } else { None };
    let (trainer, best, resumed_from) = match restored {
        Some((step, trainer, state)) => {
            truncate_metrics(&metrics_path, step)?;
            (trainer, state.best, Some(step))
        }
        None => {
            if metrics_path.exists() {
                std::fs::remove_file(&metrics_path).map_err(io(&metrics_path))?;
            }
            let (trainer, tokenizer) = fresh(config, data, device)?;
            // Every checkpoint's model/ gets a copy (checkpoint::save), so the harness can score it.
            let path = run_dir.join(checkpoint::TOKENIZER);
            match tokenizer {
                Some(tokenizer) => {
                    tokenizer.save(&path, false).map_err(|e| Error::io(&path, std::io::Error::other(e)))?
                }
                None if path.exists() => std::fs::remove_file(&path).map_err(io(&path))?,
                None => {}
            }
            (trainer, None, None)
        }
    };
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&metrics_path).map_err(io(&metrics_path))?;
    let log = Some(MetricsLog { file, path: metrics_path });
    Ok(Opened { trainer, best, resumed_from, log, _lock: Some(lock) })
}

/// A trainer at step 0: the initial model drawn from the run's seed, and its routing policy; with
/// the tokenizer the model file ships, if any.
fn fresh(config: &TrainConfig, data: &Dataset, device: &Device) -> Result<(Trainer, Option<Tokenizer>)> {
    device.seed(config.seed);
    let (model, tokenizer) = initial_model(config, data, device)?;
    let routing = routing_for(&model, config, device)?;
    Ok((Trainer::new(model, routing, settings(config)), tokenizer))
}

/// A rank other than 0 of a multi-process job: the trainer rank 0 opened — fresh, or restored
/// from the same checkpoint (read from the run directory, which the ranks share) — without
/// writing anything.
fn follow(
    config: &TrainConfig,
    run_dir: &Path,
    resumed_from: Option<usize>,
    data: &Dataset,
    device: &Device,
) -> Result<Opened> {
    let (trainer, best) = match resumed_from {
        None => (fresh(config, data, device)?.0, None),
        Some(step) => {
            let path = checkpoint::list(run_dir)?.into_iter().find(|(s, _)| *s == step).map(|(_, p)| p).ok_or_else(|| {
                Error::Invalid(format!(
                    "rank 0 resumed {} from step {step}, which this rank cannot see: the ranks of a job need the run \
                     directory on a filesystem they share",
                    run_dir.display()
                ))
            })?;
            let (trainer, state) = checkpoint::load(&path, device, config, settings(config))?;
            (trainer, state.best)
        }
    };
    Ok(Opened { trainer, best, resumed_from, log: None, _lock: None })
}

/// Rank 0 opens the run (or fails, and tells the other ranks why); the others follow it to the
/// same step. Without a job, this process opens it alone.
fn open_in(
    config: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    data: &Dataset,
    device: &Device,
    group: Option<&mut Group>,
) -> Result<Opened> {
    let Some(group) = group else { return open(config, run_dir, resume, data, device) };
    if group.rank == 0 {
        let opened = open(config, run_dir, resume, data, device);
        let step = match &opened {
            Ok(o) => serde_json::to_vec(&o.resumed_from).expect("serializes"),
            Err(e) => {
                group.abort(&format!("opening the run: {e}"));
                return opened;
            }
        };
        group.broadcast("the step rank 0 starts from", step)?;
        opened
    } else {
        let step = group.broadcast("the step rank 0 starts from", Vec::new())?;
        let step: Option<usize> = serde_json::from_slice(&step)
            .map_err(|e| Error::Invalid(format!("rank {}: rank 0 sent an unreadable start step: {e}", group.rank)))?;
        follow(config, run_dir, step, data, device)
    }
}

/// The newest checkpoint of `run_dir` that loads: one that fails (a checksum, a missing or
/// unreadable file) is skipped with a warning naming it and why, and the next older one tried;
/// `None` without checkpoints, an error when none loads.
fn restore(run_dir: &Path, config: &TrainConfig, device: &Device) -> Result<Option<(usize, Trainer, State)>> {
    let all = checkpoint::list(run_dir)?;
    let mut failed = Vec::new();
    for (step, path) in all.iter().rev() {
        match checkpoint::load(path, device, config, settings(config)) {
            Ok((trainer, state)) => {
                for why in &failed {
                    eprintln!("warning: skipped {why}");
                }
                return Ok(Some((*step, trainer, state)));
            }
            Err(e) => failed.push(format!("checkpoint {}: {e}", path.display())),
        }
    }
    match failed.is_empty() {
        true => Ok(None),
        false => {
            Err(Error::Invalid(format!("no checkpoint of {} loads:\n  {}", run_dir.display(), failed.join("\n  "))))
        }
    }
}

/// The first key (as `a.b.c`) where two configs differ, with both values.
fn first_difference(saved: &serde_json::Value, given: &serde_json::Value, at: &str) -> Option<String> {
    match (saved, given) {
        (serde_json::Value::Object(s), serde_json::Value::Object(g)) => {
            let keys: std::collections::BTreeSet<&String> = s.keys().chain(g.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                let null = serde_json::Value::Null;
                first_difference(s.get(k).unwrap_or(&null), g.get(k).unwrap_or(&null), &path)
            })
        }
        _ if saved == given => None,
        _ => Some(format!("`{at}` is {saved} in the run, {given} here")),
    }
}

/// `<run>/metrics.jsonl`: one JSON object per line, flushed as written.
struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    fn line(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}").and_then(|_| self.file.flush()).map_err(io(&self.path))
    }
}

/// The metrics line of a logged step: loss, learning rate, gradient norm, speed, and the routing
/// policy's FA ratios and constraint state.
fn step_line(m: &StepMetrics, routing: &Routing, tokens_per_s: f64, mfu: f64) -> serde_json::Value {
    let mut line = json!({
        "step": m.step,
        "loss": m.loss,
        "lr": m.lr,
        "grad_norm": m.grad_norm,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
    });
    if !m.fa_ratio.is_empty() {
        line["fa_ratio"] =
            json!(m.fa_ratio.iter().map(|(l, r)| (l.to_string(), *r)).collect::<std::collections::BTreeMap<_, _>>());
        line["penalty"] = json!(m.penalty);
        routing.log_fields(&mut line);
    }
    line
}

/// Train (or resume) the run in `run_dir` on `devices` (autodiff; `config.devices` of them, data
/// parallel when more than one, the model kept on the first). `progress` sees every step.
///
/// With a `world`, this process is one rank of a multi-process job (see [`crate::distributed`]):
/// it joins the others, trains on its share of every step's micro-batches, and — unless it is
/// rank 0 — writes nothing; every rank returns the same summary.
pub fn train(
    config: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    devices: &[Device],
    world: Option<&World>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let device = devices.first().ok_or_else(|| Error::Invalid("no device to train on".into()))?;
    let mut group = match world {
        Some(world) => Some(join_job(config, resume, devices, world)?),
        None => None,
    };
    let (rank, ranks) = group.as_ref().map_or((0, 1), |g| (g.rank, g.size));
    let writer = rank == 0;
    let data = Dataset::open(&config.data)?;
    // One device's ceiling; MFU divides by it times the number of devices. Measured before the
    // seed is set: its random matrices (a timing-dependent number) must not shift the model's.
    let matmul_ceiling = crate::mfu::matmul_ceiling(&device.clone().inner(), config.model.dtype.dtype());
    let peak = matmul_ceiling * (devices.len() * ranks) as f64;
    let Opened { mut trainer, mut best, resumed_from, mut log, _lock } =
        open_in(config, run_dir, resume, &data, device, group.as_mut())?;
    trainer.precision = config.model.dtype;
    trainer.devices = devices.to_vec();
    trainer.group = group;
    let mut log = |value: serde_json::Value| log.as_mut().map_or(Ok(()), |l| l.line(value));

    let eval: Vec<Batch> = (0..config.eval_sequences.div_ceil(config.batch_size))
        .map(|i| data.eval_batch(config.seed, (i * config.batch_size) as u64, config.batch_size, device))
        .collect();
    let started = Instant::now();
    // Throughput counts the steps alone: checkpoints, held-out evals and plots are in `seconds`.
    let (mut tokens_done, mut flops_done) = (0.0, 0.0);
    let mut time = TimeSpent::default();
    let sequences_per_step = config.batch_size * config.grad_accumulation;
    let tokens_per_step = sequences_per_step * data.seq_len();
    let mut last = None;
    let mut last_eval = None;
    while trainer.step < config.steps {
        let step_started = Instant::now();
        let cursor = trainer.step * sequences_per_step;
        // Micro-batch m of the step goes to rank m mod ranks (all of them without a job).
        let batches: Vec<Batch> = (rank..config.grad_accumulation)
            .step_by(ranks)
            .map(|m| data.train_batch(config.seed, (cursor + m * config.batch_size) as u64, config.batch_size, device))
            .collect();
        let m = trainer.train_step(&batches).map_err(|e| Error::Invalid(format!("{}: {e}", run_dir.display())))?;
        // Reads can return before queued GPU work is done; time the step up to an idle device.
        let _ = device.sync();
        let seconds = step_started.elapsed().as_secs_f64();
        let fa = if m.fa_ratio.is_empty() { 0.0 } else { m.fa_ratio.values().sum::<f64>() / m.fa_ratio.len() as f64 };
        let flops = crate::mfu::step_flops(&trainer.model().arch, sequences_per_step, data.seq_len(), fa)?;
        let (tokens_per_s, mfu) = (tokens_per_step as f64 / seconds, flops / seconds / peak);
        (tokens_done, flops_done) = (tokens_done + tokens_per_step as f64, flops_done + flops);
        if time.steps == 0.0 {
            time.first_step = seconds;
        }
        time.steps += seconds;
        progress(&Progress { metrics: &m, tokens_per_s, mfu });
        fail_point(m.step);
        if let Some((allocation, line)) = learned_allocation(config, &trainer.routing, m.step)? {
            if writer {
                allocation.save(&run_dir.join("allocation.json"))?;
                swiattn_router::plot::allocation(&allocation, &run_dir.join("allocation.png"))?;
            }
            log(line)?;
            trainer.convert(&allocation.layers())?;
        }
        let done = m.step == config.steps;
        if m.step % config.log_every == 0 || done {
            log(step_line(&m, &trainer.routing, tokens_per_s, mfu))?;
        }
        if (config.eval_every > 0 && m.step % config.eval_every == 0) || done {
            let e = timed(&mut time.evals, || trainer.evaluate(&eval))?;
            if best.is_none_or(|b| e.loss < b.loss) {
                best = Some(Best { step: m.step, loss: e.loss });
            }
            let fa = held_out_fa_ratio(&e);
            log(
                json!({"step": m.step, "eval_loss": e.loss, "recall_accuracy": e.recall_accuracy, "eval_fa_ratio": fa}),
            )?;
            last_eval = Some(e);
        }
        let mut stop = crate::interrupt::requested() && !done;
        if let Some(group) = trainer.group.as_mut() {
            // Every rank stops after the same step.
            stop = group.any("the stop vote", stop)?;
        }
        if writer && ((config.save_every > 0 && m.step % config.save_every == 0) || done || stop) {
            timed(&mut time.checkpoints, || {
                checkpoint::save(run_dir, &trainer, best)?;
                checkpoint::prune(run_dir, config.keep_last, best)
            })?;
        }
        if stop {
            return Err(Error::Invalid(format!(
                "interrupted after step {} of {}: checkpoint {} saved; continue with `swiattn train --resume --run-dir {}`",
                m.step,
                config.steps,
                checkpoint::name(m.step),
                run_dir.display()
            )));
        }
        last = Some(m);
    }
    let last_eval = match last_eval {
        Some(e) => e,
        None => timed(&mut time.evals, || trainer.evaluate(&eval))?,
    };
    if let Some(routes) = first_sequence_routes(&last_eval).filter(|_| writer) {
        let title = format!("held-out routes at step {} (dark: full attention)", trainer.step);
        swiattn_router::plot::routing(&routes, &title, &run_dir.join("routing.png"))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let eval_fa_ratio = held_out_fa_ratio(&last_eval);
    let routed =
        if eval_fa_ratio.is_empty() { 0.0 } else { eval_fa_ratio.iter().sum::<f64>() / eval_fa_ratio.len() as f64 };
    let cost = account(&trainer.model().arch, data.seq_len(), 2, &RoutedLayers::Ratio(routed))?;
    let kv = account(&trainer.model().arch, KV_REPORT_LEN, 2, &RoutedLayers::Ratio(routed))?;
    let summary = Summary {
        run_dir: run_dir.to_path_buf(),
        steps: trainer.step,
        final_loss: last.map_or(f64::NAN, |m| m.loss),
        eval_loss: last_eval.loss,
        recall_accuracy: last_eval.recall_accuracy,
        eval_fa_ratio,
        fa_ratio: cost.fa_ratio(),
        attention_flops_vs_full: cost.attention_flops / cost.full_attention_flops,
        kv_bytes_vs_full: kv.kv_bytes / kv.full_kv_bytes,
        best,
        resumed_from,
        seconds,
        time,
        tokens_per_s: if time.steps > 0.0 { tokens_done / time.steps } else { 0.0 },
        mfu: if time.steps > 0.0 { flops_done / time.steps / peak } else { 0.0 },
        matmul_ceiling,
    };
    if writer {
        let path = run_dir.join("summary.json");
        std::fs::write(&path, serde_json::to_string_pretty(&summary).expect("serializes")).map_err(io(&path))?;
    }
    Ok(summary)
}

/// Join the job of `world` after checking that this run can be split over its ranks.
fn join_job(config: &TrainConfig, resume: bool, devices: &[Device], world: &World) -> Result<Group> {
    if devices.len() > 1 {
        return Err(Error::Invalid(format!(
            "rank {}: a multi-process job takes one device per process (devices = {}): launch a process per device",
            world.rank,
            devices.len()
        )));
    }
    if !config.grad_accumulation.is_multiple_of(world.size) {
        return Err(Error::config(
            "the training config",
            "grad_accumulation",
            format!(
                "{} micro-batches a step cannot be shared equally by {} ranks: make it a multiple of the world size",
                config.grad_accumulation, world.size
            ),
        ));
    }
    // The ranks must train the same thing: the resolved config, and whether it resumes.
    let mut job = Sha256::new();
    job.update(config.to_toml().as_bytes());
    job.update([u8::from(resume)]);
    let job = format!("{:x}", job.finalize());
    distributed::join(world, &job, Timeouts::from_env()?)
}

/// The FA ratio of each routed layer over all held-out tokens.
fn held_out_fa_ratio(e: &Evaluation) -> Vec<f64> {
    e.routes
        .values()
        .map(|seqs| {
            let n: usize = seqs.iter().map(Vec::len).sum();
            seqs.iter().flatten().filter(|&&f| f).count() as f64 / n.max(1) as f64
        })
        .collect()
}

/// `(layer, FA flags)` of the first held-out sequence, for routed layers.
fn first_sequence_routes(e: &Evaluation) -> Option<Vec<(usize, Vec<bool>)>> {
    let routes: Vec<(usize, Vec<bool>)> =
        e.routes.iter().filter_map(|(&l, seqs)| seqs.first().map(|s| (l, s.clone()))).collect();
    (!routes.is_empty()).then_some(routes)
}

/// A test hook: `SWIATTN_FAIL_AT=step:<n>` aborts the process right after step `n` (before its
/// metrics, evaluation or checkpoint), like a crash.
fn fail_point(step: usize) {
    if std::env::var("SWIATTN_FAIL_AT").is_ok_and(|v| v == format!("step:{step}")) {
        eprintln!("SWIATTN_FAIL_AT: aborting after step {step}");
        std::process::abort();
    }
}
