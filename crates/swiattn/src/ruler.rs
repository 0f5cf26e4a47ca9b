//! RULER tasks of `swiattn eval`: generate samples at a target length (or read them back), decode
//! each greedily through the KV cache, and score them by RULER's string match (any reference for
//! the QA tasks, all references otherwise).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::model::Transformer;
use swiattn_core::text::documents;
use swiattn_core::tokenizer::encode;
use swiattn_eval::generate::{Until, generate};
use swiattn_eval::results::{AttentionCost, Metric, TaskResult};
use swiattn_eval::ruler::niah::sentences;
use swiattn_eval::ruler::qa::read_items;
use swiattn_eval::ruler::{Sample, Sources, sample, score};
use tokenizers::Tokenizer;

#[derive(clap::Args)]
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
    /// SQuAD-style JSONL for qa_1 (`question`, `context`, `answers`).
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
}

fn essay_sentences(paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect();
            files.sort();
            for f in files {
                texts.extend(documents(&f)?);
            }
        } else {
            texts.extend(documents(path)?);
        }
    }
    Ok(sentences(&texts))
}

/// Generate (or read) `samples` samples of each task, decode and score them; predictions go to
/// `decisions`. `haystack` stands in for an empty `--haystack`.
pub fn run(
    args: &RulerArgs,
    tasks: &[String],
    samples: usize,
    haystack: PathBuf,
    model: &Transformer,
    tokenizer: &Tokenizer,
    eos: Vec<u32>,
    mut decisions: Option<&mut std::fs::File>,
) -> anyhow::Result<Vec<TaskResult>> {
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
            let needles =
                tasks.iter().any(|t| swiattn_eval::ruler::niah::Niah::named(t).is_ok_and(|n| n.reads_essays()));
            let haystack = if args.haystack.is_empty() { vec![haystack] } else { args.haystack.clone() };
            let sources = Sources {
                essay: if needles { essay_sentences(&haystack)? } else { Vec::new() },
                squad: read(&args.squad)?,
                hotpotqa: read(&args.hotpotqa)?,
            };
            let count = |text: &str| Ok(encode(tokenizer, text)?.len());
            // Samples are independent functions of (seed, task, index): generate them in parallel.
            let jobs: Vec<(&String, usize)> = tasks.iter().flat_map(|t| (0..samples).map(move |i| (t, i))).collect();
            let generated = jobs.par_iter().map(|&(name, index)| {
                sample(name, args.seed, index, args.length, args.max_new_tokens, &sources, &count)
            });
            generated.collect::<swiattn_core::Result<Vec<Sample>>>()?
        }
    };
    if let Some(path) = &args.write_samples {
        let mut file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
        for s in &samples {
            writeln!(file, "{}", serde_json::to_string(s)?)?;
        }
    }
    let until = Until { stop: vec!["\n\n".into()], max_new_tokens: args.max_new_tokens, eos, chunk: 512 };
    let bar = ProgressBar::new(samples.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} samples eta {eta}").expect("valid template"));
    let mut out = Vec::new();
    for task in tasks {
        let started = Instant::now();
        let (mut values, mut lengths) = (Vec::new(), Vec::new());
        for s in samples.iter().filter(|s| s.task == *task) {
            let ids = encode(tokenizer, &s.input)?;
            let g = generate(model, tokenizer, &ids, &until)?;
            let value = score(&s.task, &g.text, &s.outputs);
            values.push(value);
            lengths.push(ids.len() + g.ids.len().saturating_sub(1)); // the last token is not fed back
            if let Some(file) = decisions.as_mut() {
                let line = serde_json::json!({"task": s.task, "index": s.index, "length": ids.len(), "outputs": s.outputs, "prediction": g.text, "score": value});
                writeln!(file, "{line}")?;
            }
            bar.inc(1);
        }
        anyhow::ensure!(!values.is_empty(), "no samples of {task} (--read-samples holds none)");
        let mean = 100.0 * values.iter().sum::<f64>() / values.len() as f64;
        let stderr = 100.0 * swiattn_eval::metrics::Estimate::of(values.iter().copied()).stderr;
        bar.suspend(|| {
            println!("{task:<14} score {mean:.2} ± {stderr:.2}  (n = {} at {} tokens)", values.len(), args.length)
        });
        out.push(TaskResult {
            task: task.clone(),
            output_type: "generate_until".into(),
            source: format!("RULER at {} tokens, seed {}", args.length, args.seed),
            n: values.len(),
            metrics: vec![Metric { name: "score".into(), value: mean, stderr: Some(stderr) }],
            sequences: lengths.len(),
            tokens: lengths.iter().sum(),
            attention: AttentionCost::of(&model.arch, lengths.into_iter().map(|n| 0..n))?,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    bar.finish_and_clear();
    Ok(out)
}
