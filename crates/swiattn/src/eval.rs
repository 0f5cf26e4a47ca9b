//! `swiattn eval`: multiple-choice accuracy (acc, acc_norm) of a model on an OLMES request file,
//! with per-question decisions written for comparison with independent implementations; or the
//! rolling perplexity of documents (word/byte perplexity, bits per byte).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::BackendKind;
use swiattn_core::checkpoint::load_model;
use swiattn_core::text::documents;
use swiattn_core::tokenizer::load_tokenizer;
use swiattn_eval::metrics::{accuracy, completion, decide};
use swiattn_eval::request::read_olmes;
use swiattn_eval::rolling::{Perplexity, windows};
use swiattn_eval::score::{Encoded, encode_pair, score};

use crate::info::describe;
use crate::model_config::AttentionArgs;

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file or a Hugging Face directory (config.json + safetensors).
    #[arg(long)]
    model: PathBuf,
    /// An OLMES request file (`requests.jsonl` or `.jsonl.gz`, one line per choice).
    #[arg(long, required_unless_present_any = ["rolling", "ruler"], conflicts_with_all = ["rolling", "ruler"])]
    olmes: Option<PathBuf>,
    /// Documents for rolling perplexity: text files (one document each) or JSONL (`text` field).
    #[arg(long, num_args = 1.., conflicts_with = "ruler")]
    rolling: Vec<PathBuf>,
    #[command(flatten)]
    ruler: crate::ruler::RulerArgs,
    /// tokenizer.json to use instead of the one shipped with the model.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    attention: AttentionArgs,
    /// Evaluate the first N questions (or documents) only.
    #[arg(long)]
    limit: Option<usize>,
    /// Sequences per forward call.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Context length the model is evaluated at (longer requests lose tokens on the left).
    #[arg(long, default_value_t = 4096)]
    max_len: usize,
    /// Write the run's results (metrics, model and layout, backend, time) as JSON here.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Write one JSON line per question (doc_id, label, picks, log-likelihoods) or RULER sample
    /// (prediction, score) here.
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
    println!("model:     {} ({})", args.model.display(), describe(&loaded.model.arch));
    let started = Instant::now();
    let bar = |n: usize, what: &str| {
        let bar = ProgressBar::new(n as u64);
        let template = format!("{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} eta {{eta}}");
        bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
        bar
    };
    if !args.ruler.ruler.is_empty() {
        let eos: Vec<u32> = ["<|endoftext|>", "</s>", "<eos>", "<|im_end|>", "<end_of_turn>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        let scores = crate::ruler::run(&args.ruler, &loaded.model, &tokenizer, eos, args.decisions.as_ref())?;
        let metrics: serde_json::Map<String, serde_json::Value> = scores
            .into_iter()
            .map(|(task, score, n)| (task, serde_json::json!({"score": score, "n": n, "length": args.ruler.length})))
            .collect();
        return write_results(&args, &loaded.model, backend, started, serde_json::json!({"ruler": metrics}));
    }
    let Some(olmes) = &args.olmes else {
        let mut texts = Vec::new();
        for path in &args.rolling {
            texts.extend(documents(path)?);
        }
        texts.truncate(args.limit.unwrap_or(usize::MAX));
        let tokens: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| tokenizer.encode(t.as_str(), false).map(|e| e.get_ids().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("tokenization failed: {e}"))?;
        let per_doc: Vec<Vec<Encoded>> = tokens.iter().map(|t| windows(t, eot, args.max_len)).collect();
        let flat: Vec<Encoded> = per_doc.iter().flatten().cloned().collect();
        let progress = bar(flat.len(), "windows");
        let scored = score(&loaded.model, &flat, args.batch, |done| progress.set_position(done as u64))?;
        progress.finish_and_clear();
        let mut at = 0;
        let mut lls = Vec::with_capacity(texts.len());
        for doc in &per_doc {
            lls.push(scored[at..at + doc.len()].iter().map(|s| s.logprob).sum::<f64>());
            at += doc.len();
        }
        let p = Perplexity::of(texts.iter().zip(&tokens).zip(&lls).map(|((t, ids), &ll)| (t.as_str(), ids.len(), ll)));
        println!(
            "documents: {} ({} tokens, {} words, {} bytes, {} windows of ≤ {})",
            p.documents,
            p.tokens,
            p.words,
            p.bytes,
            flat.len(),
            args.max_len
        );
        write_results(&args, &loaded.model, backend, started, serde_json::json!({"rolling": p}))?;
        println!("word_perplexity: {:.4}", p.word_perplexity);
        println!("byte_perplexity: {:.5}", p.byte_perplexity);
        println!("bits_per_byte:   {:.5}", p.bits_per_byte);
        println!("token perplexity: {:.4}", (-p.loglikelihood / p.tokens.max(1) as f64).exp());
        println!("time:      {:.1} s on {backend}", started.elapsed().as_secs_f64());
        return Ok(());
    };
    let mut questions = read_olmes(olmes)?;
    questions.truncate(args.limit.unwrap_or(usize::MAX));
    let encoded: Vec<Encoded> = questions
        .iter()
        .flat_map(|q| q.choices.iter())
        .map(|r| encode_pair(&tokenizer, r, eot, args.max_len))
        .collect::<swiattn_core::Result<_>>()?;
    let progress = bar(encoded.len(), "requests");
    let scored = score(&loaded.model, &encoded, args.batch, |done| progress.set_position(done as u64))?;
    progress.finish_and_clear();
    let mut by_question = Vec::with_capacity(questions.len());
    let mut at = 0;
    for q in &questions {
        by_question.push(scored[at..at + q.choices.len()].to_vec());
        at += q.choices.len();
    }
    if questions.iter().all(|q| q.choices.len() == 1) {
        // Single continuations (LAMBADA): greedy accuracy, perplexity, bits per byte.
        let c = completion(&questions, &scored);
        write_results(&args, &loaded.model, backend, started, serde_json::json!({"completion": c}))?;
        println!("requests:  {} ({} single continuations)", olmes.display(), questions.len());
        println!("acc:       {:.4} ± {:.4} (greedy continuation)", c.acc.value, c.acc.stderr);
        println!("perplexity: {:.4}", c.perplexity);
        println!("bits_per_byte: {:.5}", c.bits_per_byte);
        println!("time:      {:.1} s on {backend}", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let decisions = decide(&questions, &by_question);
    let (acc, acc_norm) = accuracy(&decisions);
    if let Some(path) = &args.decisions {
        let mut file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
        for d in &decisions {
            writeln!(file, "{}", serde_json::to_string(d)?)?;
        }
    }
    write_results(&args, &loaded.model, backend, started, serde_json::json!({"acc": acc, "acc_norm": acc_norm}))?;
    println!("requests:  {} ({} questions, {} choices)", olmes.display(), questions.len(), encoded.len());
    println!("acc:       {:.4} ± {:.4}", acc.value, acc.stderr);
    println!("acc_norm:  {:.4} ± {:.4}", acc_norm.value, acc_norm.stderr);
    println!("time:      {:.1} s on {backend}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The results JSON of a run, when `--results` asks for it.
fn write_results(
    args: &Args,
    model: &swiattn_core::model::Transformer,
    backend: BackendKind,
    started: Instant,
    metrics: serde_json::Value,
) -> anyhow::Result<()> {
    let Some(path) = &args.results else { return Ok(()) };
    let full = model.arch.layers.iter().filter(|l| l.type_name() == "full_attention").count();
    let out = serde_json::json!({
        "swiattn": env!("CARGO_PKG_VERSION"),
        "model": args.model.display().to_string(),
        "layers": crate::info::layer_string(&model.arch.layers),
        "full_layers": full,
        "backend": backend.to_string(),
        "input": args.olmes.as_ref().map(|p| p.display().to_string()),
        "rolling": args.rolling.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "limit": args.limit,
        "max_len": args.max_len,
        "metrics": metrics,
        "seconds": started.elapsed().as_secs_f64(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    std::fs::write(path, serde_json::to_string_pretty(&out)?).with_context(|| format!("{}", path.display()))
}
