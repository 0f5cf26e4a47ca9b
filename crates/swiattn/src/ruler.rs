//! `swiattn eval --ruler …`: generate RULER samples at a target length (or read them back), decode
//! each greedily through the KV cache, and score them by RULER's string match (any reference for
//! the QA tasks, all references otherwise).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::model::Transformer;
use swiattn_core::text::documents;
use swiattn_core::tokenizer::encode;
use swiattn_eval::generate::{Until, generate};
use swiattn_eval::ruler::niah::sentences;
use swiattn_eval::ruler::qa::read_items;
use swiattn_eval::ruler::{Sample, Sources, sample, score};
use tokenizers::Tokenizer;

#[derive(clap::Args)]
pub struct RulerArgs {
    /// RULER tasks, comma-separated (niah_single_1 … niah_multiquery, vt, cwe, fwe, qa_1, qa_2).
    #[arg(long, value_delimiter = ',')]
    pub ruler: Vec<String>,
    /// Target prompt length in the model's tokens.
    #[arg(long, default_value_t = 4096)]
    pub length: usize,
    /// Samples per task.
    #[arg(long, default_value_t = 20)]
    pub samples: usize,
    /// Seed of the generated samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Essay files or directories (their .txt files) for essay haystacks.
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

/// Generate (or read) the samples, decode and score; one line per task, predictions to
/// `decisions`; returns (task, score × 100, samples).
pub fn run(
    args: &RulerArgs,
    model: &Transformer,
    tokenizer: &Tokenizer,
    eos: Vec<u32>,
    decisions: Option<&PathBuf>,
) -> anyhow::Result<Vec<(String, f64, usize)>> {
    let samples: Vec<Sample> = match &args.read_samples {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{}", path.display()))?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
            .collect::<anyhow::Result<_>>()?,
        None => {
            let read =
                |p: &Option<PathBuf>| p.as_ref().map(|p| read_items(p)).transpose().map(Option::unwrap_or_default);
            let sources = Sources {
                essay: essay_sentences(&args.haystack)?,
                squad: read(&args.squad)?,
                hotpotqa: read(&args.hotpotqa)?,
            };
            let count = |text: &str| Ok(encode(tokenizer, text)?.len());
            let mut out = Vec::new();
            for name in &args.ruler {
                for index in 0..args.samples {
                    out.push(sample(name, args.seed, index, args.length, args.max_new_tokens, &sources, &count)?);
                }
            }
            out
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
    let mut scores: Vec<(String, Vec<f64>)> = Vec::new();
    let mut lines = Vec::new();
    for s in &samples {
        let ids = encode(tokenizer, &s.input)?;
        let g = generate(model, tokenizer, &ids, &until)?;
        let value = score(&s.task, &g.text, &s.outputs);
        match scores.iter_mut().find(|(t, _)| *t == s.task) {
            Some((_, v)) => v.push(value),
            None => scores.push((s.task.clone(), vec![value])),
        }
        lines.push(serde_json::json!({"task": s.task, "index": s.index, "length": ids.len(), "outputs": s.outputs, "prediction": g.text, "score": value}));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(path) = decisions {
        let mut file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
        for l in &lines {
            writeln!(file, "{l}")?;
        }
    }
    let mut out = Vec::new();
    for (task, v) in scores {
        let mean = 100.0 * v.iter().sum::<f64>() / v.len() as f64;
        println!("{task:<18} {mean:6.2}  ({} samples at {} tokens)", v.len(), args.length);
        out.push((task, mean, v.len()));
    }
    Ok(out)
}
