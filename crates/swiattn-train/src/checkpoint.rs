//! Atomic training checkpoints that resume exactly.
//!
//! `checkpoints/step-000500/` holds everything the next step depends on:
//!
//! | file | what |
//! |---|---|
//! | `model/config.json`, `model/model.safetensors` | the model (reloads exactly, layout included) |
//! | `model/tokenizer.json` | the base model's tokenizer, when the run started from a model with one |
//! | `model_ids.json`, `optimizer.bpk` | parameter ids and AdamW state (optimizer state is keyed by id) |
//! | `routers.safetensors`, `router_ids.json`, `router_optimizer.bpk` | routers and their Adam state |
//! | `gates.safetensors`, `gate_ids.json`, `router_optimizer.bpk` | ConSA's gates and their Adam state |
//! | `duo_gates.safetensors`, `duo_gate_ids.json`, `router_optimizer.bpk` | Duo's head gates and their Adam state |
//! | `state.json` | step, regularizer coefficients, router step, ConSA's multipliers, best validation |
//! | `checksums.json` | the SHA-256 of every other file, checked before anything is loaded |
//!
//! Data and noise are functions of `(seed, step)`, so the step is the data cursor and the RNG state.
//! A checkpoint is written into `.step-000500.tmp/`, every file is synced, then the directory is
//! renamed into place and its parent synced: a process killed mid-save leaves only a `.tmp`
//! directory, which resuming ignores and the next save replaces. A file changed after the save (a
//! flipped bit, a truncated copy) fails its checksum: [`load`] and [`open_model`] refuse the
//! checkpoint naming the file, and resuming falls back to the newest checkpoint that is intact.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use swiattn_core::checkpoint::safetensors::{SafetensorsSource, save as save_safetensors};
use swiattn_core::checkpoint::{
    LoadOptions, LoadedModel, check_sizes, load_model, load_weights_with_ids, named_tensors, param_ids, save_model,
};
use swiattn_core::model::ModelShape;
use swiattn_core::model::{ModelConfig, Transformer};
use swiattn_core::{Error, Result};
use swiattn_router::consa::Consa;
use swiattn_router::duo::DuoGates;
use swiattn_router::lagrangian::AugmentedLagrangian;
use swiattn_router::regularizer::EfficiencyRegularizer;
use swiattn_router::router::Routers;

use crate::config::TrainConfig;
use crate::routing::Routing;
use crate::trainer::Trainer;

/// The best evaluation so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: usize,
    pub loss: f64,
}

/// ConSA's state beside its gates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsaState {
    pub step: usize,
    pub constraints: Vec<AugmentedLagrangian>,
}

/// `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub step: usize,
    pub router_step: usize,
    pub regularizer: Option<EfficiencyRegularizer>,
    #[serde(default)]
    pub consa: Option<ConsaState>,
    pub best: Option<Best>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn record_err(path: &Path) -> impl Fn(burn::store::RecordError) -> Error + '_ {
    move |e| Error::format(path.display().to_string(), format!("{e:?}"))
}

/// `optimizer` with its state read from `path`. burn's reader panics on some damaged records (a
/// tensor that lost its parameter id): that is an error naming the file here, not a crash.
fn load_optimizer(optimizer: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optimizer.load(path)));
    read.map_err(|_| Error::format(path.display().to_string(), "a damaged optimizer record (burn's reader failed)"))?
        .map_err(record_err(path))
}

/// The directory name of step `step`'s checkpoint.
pub fn name(step: usize) -> String {
    format!("step-{step:06}")
}

/// Write `json` to `path`.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value).expect("serializes")).map_err(io(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path.display().to_string(), e.to_string()))
}

/// Sync every file under `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        }
    }
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// `checksums.json`: each file's SHA-256 (lower-case hex), keyed by its path in the checkpoint.
const CHECKSUMS: &str = "checksums.json";
/// The base model's tokenizer: kept in the run directory when the run starts from a model that
/// ships one, and copied into every checkpoint's `model/`, so a checkpoint scores on its own.
pub const TOKENIZER: &str = "tokenizer.json";

/// The SHA-256 of the file at `path`, streamed.
fn sha256(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = File::open(path).map_err(io(path))?;
    std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Every file under `dir` (recursively), as paths relative to `root` with `/` separators.
fn files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
        }
    }
    Ok(())
}

/// Write `checksums.json` for every file now in `dir`.
fn write_checksums(dir: &Path) -> Result<()> {
    let mut names = Vec::new();
    files(dir, dir, &mut names)?;
    let sums = names.into_iter().map(|n| Ok((sha256(&dir.join(&n))?, n))).collect::<Result<Vec<_>>>()?;
    let sums: BTreeMap<String, String> = sums.into_iter().map(|(sum, name)| (name, sum)).collect();
    write_json(&dir.join(CHECKSUMS), &sums)
}

/// Check every file of a checkpoint against its `checksums.json`: a missing or changed file is an
/// error naming it. Checkpoints written before checksums existed (no `checksums.json`) pass.
pub fn verify(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKSUMS);
    if !path.exists() {
        return Ok(());
    }
    let sums: BTreeMap<String, String> = read_json(&path)?;
    for (name, want) in &sums {
        let file = dir.join(name);
        if !file.is_file() {
            return Err(Error::Invalid(format!("{}: missing (listed in {CHECKSUMS})", file.display())));
        }
        let got = sha256(&file)?;
        if got != *want {
            return Err(Error::Invalid(format!(
                "{}: SHA-256 {got} differs from the {want} saved with it: the file changed after the save",
                file.display()
            )));
        }
    }
    Ok(())
}

/// A test hook: `SWIATTN_FAIL_AT=save:<step>` aborts the process half-way through writing that
/// step's checkpoint (after the model, before the optimizer), to prove that resuming survives it.
fn fail_point(step: usize) {
    if std::env::var("SWIATTN_FAIL_AT").is_ok_and(|v| v == format!("save:{step}")) {
        eprintln!("SWIATTN_FAIL_AT: aborting in the middle of saving step {step}");
        std::process::abort();
    }
}

/// Save `trainer` as checkpoint `checkpoints/step-NNNNNN` under `dir`, atomically.
pub fn save(dir: &Path, trainer: &Trainer, best: Option<Best>) -> Result<PathBuf> {
    let step = trainer.step;
    let checkpoints = dir.join("checkpoints");
    std::fs::create_dir_all(&checkpoints).map_err(io(&checkpoints))?;
    let tmp = checkpoints.join(format!(".{}.tmp", name(step)));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;

    let model = trainer.model();
    save_model(model, &tmp.join("model"))?;
    let tokenizer = dir.join(TOKENIZER);
    if tokenizer.exists() {
        std::fs::copy(&tokenizer, tmp.join("model").join(TOKENIZER)).map_err(io(&tokenizer))?;
    }
    write_json(&tmp.join("model_ids.json"), &param_ids(model))?;
    fail_point(step);
    let optimizer = tmp.join("optimizer.bpk");
    trainer.model_optimizer().save(&optimizer).map_err(record_err(&optimizer))?;
    let router_optimizer = tmp.join("router_optimizer.bpk");
    let (regularizer, router_step, consa) = match &trainer.routing {
        Routing::None => (None, 0, None),
        Routing::SwiAttn { policy, regularizer } => {
            save_safetensors(&named_tensors(&policy.routers), &tmp.join("routers.safetensors"))?;
            write_json(&tmp.join("router_ids.json"), &param_ids(&policy.routers))?;
            trainer.router_optimizer().save(&router_optimizer).map_err(record_err(&router_optimizer))?;
            (Some(regularizer.clone()), policy.step, None)
        }
        Routing::Consa(consa) => {
            save_safetensors(&named_tensors(&consa.gates), &tmp.join("gates.safetensors"))?;
            write_json(&tmp.join("gate_ids.json"), &param_ids(&consa.gates))?;
            trainer.router_optimizer().save(&router_optimizer).map_err(record_err(&router_optimizer))?;
            (None, 0, Some(ConsaState { step: consa.step, constraints: consa.constraints.clone() }))
        }
        Routing::Duo { gates, .. } => {
            save_safetensors(&named_tensors(gates), &tmp.join(DUO_GATES))?;
            write_json(&tmp.join("duo_gate_ids.json"), &param_ids(gates))?;
            trainer.router_optimizer().save(&router_optimizer).map_err(record_err(&router_optimizer))?;
            (None, 0, None)
        }
    };
    write_json(&tmp.join("state.json"), &State { step, router_step, regularizer, consa, best })?;
    write_checksums(&tmp)?;
    sync_tree(&tmp)?;

    let done = checkpoints.join(name(step));
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(io(&done))?;
    }
    std::fs::rename(&tmp, &done).map_err(io(&done))?;
    File::open(&checkpoints).and_then(|f| f.sync_all()).map_err(io(&checkpoints))?;
    Ok(done)
}

/// Complete checkpoints under `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let checkpoints = dir.join("checkpoints");
    if !checkpoints.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&checkpoints).map_err(io(&checkpoints))? {
        let path = entry.map_err(io(&checkpoints))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|s| s.parse().ok());
        if let (Some(step), true) = (step, path.join("state.json").exists()) {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Delete all but the last `keep` checkpoints (and the best one).
pub fn prune(dir: &Path, keep: usize, best: Option<Best>) -> Result<()> {
    let all = list(dir)?;
    let cut = all.len().saturating_sub(keep.max(1));
    for (step, path) in &all[..cut] {
        if best.is_some_and(|b| b.step == *step) {
            continue;
        }
        std::fs::remove_dir_all(path).map_err(io(path))?;
    }
    Ok(())
}

/// Duo's gates in a checkpoint of its first stage.
const DUO_GATES: &str = "duo_gates.safetensors";

/// Restore a trainer from a checkpoint directory; the router, ConSA and Duo settings come from the
/// run's config `run`, with the optimizer `settings` made from it.
pub fn load(
    path: &Path,
    device: &Device,
    run: &TrainConfig,
    settings: crate::trainer::OptimizerSettings,
) -> Result<(Trainer, State)> {
    verify(path)?;
    let state: State = read_json(&path.join("state.json"))?;
    let model_dir = path.join("model");
    let config = ModelConfig::from_file(&model_dir.join("config.json"))?;
    let ids: BTreeMap<String, u64> = read_json(&path.join("model_ids.json"))?;
    let source = SafetensorsSource::open(&model_dir)?;
    check_sizes(&config, &source)?;
    let model = load_weights_with_ids(Transformer::new(config, device)?, &source, &LoadOptions::default(), Some(&ids))?;
    let router_config = &run.routing.router;
    let duo = path.join(DUO_GATES);
    let routing = match (&state.regularizer, &state.consa) {
        (None, None) if duo.exists() => {
            let section = run.duo.as_ref().ok_or_else(|| {
                Error::Invalid(format!("{}: a Duo checkpoint, but the run's config has no [duo]", path.display()))
            })?;
            let window =
                model.arch.sliding_window.ok_or_else(|| Error::Invalid("Duo needs a sliding_window".into()))?;
            let gates = DuoGates::new(ModelShape::of(&model.config), window, section.gates.init_gate, device);
            let ids: BTreeMap<String, u64> = read_json(&path.join("duo_gate_ids.json"))?;
            let gates =
                load_weights_with_ids(gates, &SafetensorsSource::open(&duo)?, &LoadOptions::default(), Some(&ids))?;
            Routing::Duo { gates, l1: section.gates.l1 }
        }
        (None, Some(saved)) => {
            let section = run.consa.as_ref().ok_or_else(|| {
                Error::Invalid(format!("{}: a ConSA checkpoint, but the run's config has no [consa]", path.display()))
            })?;
            let window =
                model.arch.sliding_window.ok_or_else(|| Error::Invalid("ConSA needs a sliding_window".into()))?;
            let mut c = Consa::new(section.gates.clone(), ModelShape::of(&model.config), window, device);
            let ids: BTreeMap<String, u64> = read_json(&path.join("gate_ids.json"))?;
            let source = SafetensorsSource::open(&path.join("gates.safetensors"))?;
            c.gates = load_weights_with_ids(c.gates, &source, &LoadOptions::default(), Some(&ids))?;
            c.step = saved.step;
            c.constraints = saved.constraints.clone();
            Routing::Consa(c)
        }
        (None, None) => Routing::None,
        (Some(regularizer), _) => {
            let ids: BTreeMap<String, u64> = read_json(&path.join("router_ids.json"))?;
            let routers = Routers::new(model.routed_layers(), model.arch.hidden_size, router_config, device);
            let source = SafetensorsSource::open(&path.join("routers.safetensors"))?;
            let routers = load_weights_with_ids(routers, &source, &LoadOptions::default(), Some(&ids))?;
            let mut policy = swiattn_router::router::SwiAttn::new(routers, router_config.clone());
            policy.step = state.router_step;
            Routing::SwiAttn { policy, regularizer: regularizer.clone() }
        }
    };
    let mut trainer = Trainer::new(model, routing, settings);
    trainer.step = state.step;
    let optimizer = path.join("optimizer.bpk");
    let model_optim = AdamWConfig::new().with_weight_decay(trainer.settings().weight_decay as f32).init();
    trainer.set_model_optimizer(load_optimizer(model_optim, &optimizer)?);
    if !matches!(trainer.routing, Routing::None) {
        let path = path.join("router_optimizer.bpk");
        trainer.set_router_optimizer(load_optimizer(AdamConfig::new().init(), &path)?);
    }
    Ok((trainer, state))
}

/// The training checkpoint `path` is, or whose `model/` it is (a directory with `state.json` and
/// `model/`); `None` for any other path.
pub fn training_checkpoint(path: &Path) -> Option<&Path> {
    [Some(path), path.parent().filter(|_| path.file_name().is_some_and(|n| n == "model"))]
        .into_iter()
        .flatten()
        .find(|dir| dir.join("state.json").is_file() && dir.join("model").is_dir())
}

/// A model for inference from `path`: anything [`load_model`] opens (GGUF, safetensors, a Hugging
/// Face directory), or a training checkpoint — `checkpoints/step-N` or its `model/` — whose
/// SwiAttn routers then decide the routed layers ([`Transformer::with_router`]). The routers'
/// shape comes from `routers.safetensors` itself, so no run config is needed. A ConSA checkpoint
/// still in stage 1 is refused: its model alone is not what was trained.
pub fn open_model(path: &Path, device: &Device, options: &LoadOptions) -> Result<LoadedModel> {
    let Some(checkpoint) = training_checkpoint(path) else {
        return load_model(path, device, options);
    };
    verify(checkpoint)?;
    for (gates, policy) in [("gates.safetensors", "ConSA"), (DUO_GATES, "Duo")] {
        if checkpoint.join(gates).exists() {
            return Err(Error::Invalid(format!(
                "{}: a {policy} checkpoint from stage 1, whose gates are not binarized yet; evaluate a \
                 checkpoint from after `stage1_steps`, whose layout holds the allocation",
                checkpoint.display()
            )));
        }
    }
    let mut loaded = load_model(&checkpoint.join("model"), device, options)?;
    let routed = loaded.model.routed_layers();
    if !routed.is_empty() {
        let file = checkpoint.join("routers.safetensors");
        if !file.exists() {
            return Err(Error::Invalid(format!(
                "{}: the model has routed layers {routed:?} but the checkpoint has no routers.safetensors",
                checkpoint.display()
            )));
        }
        let routers = Routers::load(&file, routed, loaded.model.arch.hidden_size, device)?;
        loaded.model = loaded.model.with_router(std::sync::Arc::new(routers));
    }
    loaded.path = path.to_path_buf();
    Ok(loaded)
}
