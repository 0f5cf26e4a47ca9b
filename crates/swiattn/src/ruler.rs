//! RULER tasks of `swiattn eval`: the flags, sample files (read or written), progress and printing
//! around [`swiattn_eval::ruler::run`], which generates, decodes and scores the samples.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::model::{AttentionController, LayerControl, OwnRoutes, Real, Transformer};
use swiattn_core::tokenizer::encode;
use swiattn_eval::results::TaskResult;
use swiattn_eval::ruler::qa::read_items;
use swiattn_eval::ruler::run::{RulerOptions, essay_sentences, generate_samples, needs_essays, run as run_ruler};
use swiattn_eval::ruler::{Sample, Sources};
use tokenizers::Tokenizer;

#[derive(clap::Args, Clone)]
pub struct RulerArgs {
    /// Target prompt length of RULER tasks in the model's tokens.
    #[arg(long, default_value_t = 4096)]
    pub length: usize,
    /// Samples per RULER task (unless --limit says fewer).
    #[arg(long, default_value_t = 20)]
    pub samples: usize,
    /// Seed of the generated samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Essay files or directories (their .txt files) for essay haystacks [default: the data
    /// directory's haystack/].
    #[arg(long, num_args = 1..)]
    pub haystack: Vec<PathBuf>,
    /// SQuAD-style JSONL for qa_1 (`question`, `context`, `answers`; or OLMES SQuAD requests)
    /// [default: the data directory's OLMES squad requests, when `fetch.sh eval` put them there].
    #[arg(long)]
    pub squad: Option<PathBuf>,
    /// HotpotQA-style JSONL for qa_2 (`question`, `context` paragraphs, `answers`).
    #[arg(long)]
    pub hotpotqa: Option<PathBuf>,
    /// Tokens generated per sample (RULER leaves 128 for its needle tasks).
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Write the generated samples (JSONL) here.
    #[arg(long)]
    pub write_samples: Option<PathBuf>,
    /// Read samples from this JSONL instead of generating them.
    #[arg(long)]
    pub read_samples: Option<PathBuf>,
    /// Draw a routed model's routing map of the first sample's prompt (which tokens each routed
    /// layer sent to full attention) as a PNG here.
    #[arg(long)]
    pub routing_map: Option<PathBuf>,
}

/// Generate (or read) `samples` samples of each task, decode and score them, a task at a time:
/// each task's result goes to `scored` as it is finished (which may stop the run by returning an
/// error) and its predictions to `decisions`; `batch` samples are decoded together. `haystack`
/// stands in for an empty `--haystack`.
pub fn run(
    args: &RulerArgs,
    tasks: &[String],
    samples: usize,
    haystack: PathBuf,
    model: &Transformer,
    tokenizer: &Tokenizer,
    eos: Vec<u32>,
    batch: usize,
    mut decisions: Option<&mut std::fs::File>,
    scored: &mut dyn FnMut(TaskResult) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let options = RulerOptions { length: args.length, seed: args.seed, max_new_tokens: args.max_new_tokens, batch };
    let samples: Vec<Sample> = match &args.read_samples {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{}", path.display()))?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
            .filter(|s: &anyhow::Result<Sample>| s.as_ref().map_or(true, |s| tasks.contains(&s.task)))
            .collect::<anyhow::Result<_>>()?,
        None => {
            let read =
                |p: &Option<PathBuf>| p.as_ref().map(|p| read_items(p)).transpose().map(Option::unwrap_or_default);
            let haystack = if args.haystack.is_empty() { vec![haystack] } else { args.haystack.clone() };
            let sources = Sources {
                essay: if needs_essays(tasks) { essay_sentences(&haystack)? } else { Vec::new() },
                squad: read(&args.squad)?,
                hotpotqa: read(&args.hotpotqa)?,
            };
            generate_samples(tasks, samples, options, &sources, tokenizer)?
        }
    };
    if let Some(path) = &args.write_samples {
        let mut file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
        for s in &samples {
            writeln!(file, "{}", serde_json::to_string(s)?)?;
        }
    }
    for task in tasks {
        anyhow::ensure!(samples.iter().any(|s| s.task == *task), "no samples of {task} (--read-samples holds none)");
    }
    if let (Some(path), Some(first)) = (&args.routing_map, samples.first()) {
        routing_map(model, tokenizer, first, path)?;
    }
    let bar = ProgressBar::new(samples.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} samples eta {eta}").expect("valid template"));
    let mut done = 0;
    for task in tasks {
        let (results, predictions) =
            run_ruler(std::slice::from_ref(task), &samples, model, tokenizer, eos.clone(), options, |n| {
                bar.set_position((done + n) as u64)
            })?;
        done += predictions.len();
        if let Some(file) = decisions.as_mut() {
            for p in &predictions {
                writeln!(file, "{}", serde_json::to_string(p)?)?;
            }
        }
        for r in results {
            let score = &r.metrics[0];
            bar.suspend(|| {
                println!(
                    "{:<14} score {:.2} ± {:.2}  (n = {} at {} tokens)",
                    r.task,
                    score.value,
                    score.stderr.unwrap_or(0.0),
                    r.n,
                    args.length
                )
            });
            scored(r)?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// The routes a routed model's own router takes over `sample`'s prompt, drawn tokens × routed
/// layers into `path` (one forward, its routes recorded as they are decided).
fn routing_map(model: &Transformer, tokenizer: &Tokenizer, sample: &Sample, path: &Path) -> anyhow::Result<()> {
    struct Recorder<'a> {
        own: OwnRoutes<'a>,
        routes: Vec<(usize, Vec<bool>)>,
    }
    impl AttentionController for Recorder<'_> {
        fn control(&mut self, layer: usize, input: &Tensor<3>) -> swiattn_core::Result<Option<LayerControl>> {
            let control = self.own.control(layer, input)?;
            if let Some(LayerControl::Route(route)) = &control {
                self.routes.push((layer, route.host()?.fa.clone()));
            }
            Ok(control)
        }
    }
    if model.router.is_none() {
        println!("routing map: skipped, the model has no router (its layout is static)");
        return Ok(());
    }
    let ids = encode(tokenizer, &sample.input)?;
    let mut recorder = Recorder { own: model.routes(Real::All), routes: Vec::new() };
    model.hidden_states(model.token_tensor(&ids, [1, ids.len()])?, &mut recorder, None)?;
    let title = format!("{} sample {}: {} tokens (dark: full attention)", sample.task, sample.index, ids.len());
    swiattn_router::plot::routing(&recorder.routes, &title, path)?;
    println!("routing map: {}", path.display());
    Ok(())
}
