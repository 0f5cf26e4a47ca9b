//! `swiattn eval`: multiple-choice accuracy (acc, acc_norm) of a model on an OLMES request file,
//! with per-question decisions written for comparison with independent implementations.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::BackendKind;
use swiattn_core::checkpoint::load_model;
use swiattn_core::tokenizer::load_tokenizer;
use swiattn_eval::metrics::{accuracy, decide};
use swiattn_eval::request::read_olmes;
use swiattn_eval::score::{Encoded, encode_pair, score};

use crate::info::describe;
use crate::model_config::AttentionArgs;

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file or a Hugging Face directory (config.json + safetensors).
    #[arg(long)]
    model: PathBuf,
    /// An OLMES request file (`requests.jsonl` or `.jsonl.gz`, one line per choice).
    #[arg(long)]
    olmes: PathBuf,
    /// tokenizer.json to use instead of the one shipped with the model.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    attention: AttentionArgs,
    /// Evaluate the first N questions only.
    #[arg(long)]
    limit: Option<usize>,
    /// Sequences per forward call.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Context length the model is evaluated at (longer requests lose tokens on the left).
    #[arg(long, default_value_t = 4096)]
    max_len: usize,
    /// Write one JSON line per question (doc_id, label, picks, log-likelihoods) here.
    #[arg(long)]
    decisions: Option<PathBuf>,
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let loaded = load_model(&args.model, device, &args.attention.load_options()?)?;
    let tokenizer = match &args.tokenizer {
        Some(path) => load_tokenizer(path)?,
        None => loaded.tokenizer.context("the model ships no tokenizer; pass --tokenizer tokenizer.json")?,
    };
    let eot = ["<|endoftext|>", "</s>", "<eos>", "<|im_end|>"]
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
        .context("the tokenizer has no end-of-text token to stand for an empty context")?;
    let mut questions = read_olmes(&args.olmes)?;
    questions.truncate(args.limit.unwrap_or(usize::MAX));
    let encoded: Vec<Encoded> = questions
        .iter()
        .flat_map(|q| q.choices.iter())
        .map(|r| encode_pair(&tokenizer, r, eot, args.max_len))
        .collect::<swiattn_core::Result<_>>()?;
    let bar = ProgressBar::new(encoded.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} requests {per_sec} eta {eta}").expect("valid template"),
    );
    let started = Instant::now();
    let scored = score(&loaded.model, &encoded, args.batch, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let mut by_question = Vec::with_capacity(questions.len());
    let mut at = 0;
    for q in &questions {
        by_question.push(scored[at..at + q.choices.len()].to_vec());
        at += q.choices.len();
    }
    let decisions = decide(&questions, &by_question);
    let (acc, acc_norm) = accuracy(&decisions);
    if let Some(path) = &args.decisions {
        let mut file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
        for d in &decisions {
            writeln!(file, "{}", serde_json::to_string(d)?)?;
        }
    }
    println!("model:     {} ({})", args.model.display(), describe(&loaded.model.arch));
    println!("requests:  {} ({} questions, {} choices)", args.olmes.display(), questions.len(), encoded.len());
    println!("acc:       {:.4} ± {:.4}", acc.value, acc.stderr);
    println!("acc_norm:  {:.4} ± {:.4}", acc_norm.value, acc_norm.stderr);
    println!("time:      {:.1} s on {backend}", started.elapsed().as_secs_f64());
    Ok(())
}
