//! `swiattn bench infer`: the eval harness's two loops on a model shape with random weights and
//! tokens, as `tools/gpu_eval/torch_infer.py` times transformers on the same shapes (their speed
//! depends on neither), or on a real model in its own layout (`--model`, e.g. a study cell's
//! checkpoint): scoring (`loglikelihood_rolling`'s batched forward, log-softmax and
//! read-back, through [`swiattn_eval::score::score`]) and greedy generation of exactly
//! `--new-tokens` tokens after ragged prompts ([`swiattn_eval::generate`]; batch 1 decodes through
//! the plain cache, larger batches through stacked ragged caches).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{DType, Device};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use swiattn_core::BackendKind;
use swiattn_core::checkpoint::LoadOptions;
use swiattn_core::model::Transformer;
use swiattn_eval::generate::{Until, generate, generate_batch};
use swiattn_eval::score::{Encoded, score};
use swiattn_router::router::{RouterConfig, Routers};
use swiattn_train::checkpoint::open_model;
use swiattn_train::precision::Precision;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    shape: super::Shape,
    /// Time this model (a GGUF file, a Hugging Face directory or a training checkpoint, routers
    /// included) instead of `--config`'s shape with random weights: its own layout, as the
    /// harness runs it. The prompts stay random tokens, so a routed model's routes (and its speed)
    /// may differ from those on text; the achieved FA ratio is reported beside the timings.
    #[arg(long, conflicts_with_all = ["config", "patterns"])]
    model: Option<PathBuf>,
    /// What to time, each `MODE:BATCHxSEQ`: `score:8x4096` scores 8 sequences of 4096 tokens per
    /// forward; `generate:16x4096` decodes 16 prompts of about 4096 tokens (up to 15 shorter,
    /// ragged) together. They run one after another in this process.
    #[arg(long = "run", value_delimiter = ',', default_value = "score:8x4096,generate:16x4096")]
    runs: Vec<String>,
    /// Routed layers (`R`) of a shape: the fraction of tokens their fresh routers send to full
    /// attention (the routers' output bias is set for it; the achieved ratio is reported).
    #[arg(long, default_value_t = 0.25)]
    fa_ratio: f64,
    /// Tokens generated per prompt (no stop string, no end-of-text).
    #[arg(long, default_value_t = 32)]
    new_tokens: usize,
    /// Prefill chunk (tokens per forward); default: the model's own, the whole prompt on the
    /// fused kernels (`Transformer::prefill_chunk`).
    #[arg(long)]
    chunk: Option<usize>,
    /// Batches timed, after one untimed warm-up batch (generate: each batch of prompts is timed
    /// twice, prefill with one new token, then the whole generation).
    #[arg(long, default_value_t = 4)]
    repeats: usize,
    #[arg(long, default_value = "bf16", value_parser = crate::model_config::parse_dtype)]
    dtype: DType,
    /// Append one JSON line per (layout, run) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// One `MODE:BATCHxSEQ` of `--run`.
struct Run {
    generate: bool,
    batch: usize,
    seq: usize,
}

fn parse_run(spec: &str) -> anyhow::Result<Run> {
    let bad =
        || anyhow::anyhow!("--run `{spec}`: expected MODE:BATCHxSEQ with MODE score or generate, e.g. score:8x4096");
    let (mode, shape) = spec.split_once(':').ok_or_else(bad)?;
    let (batch, seq) = shape.split_once('x').ok_or_else(bad)?;
    let (batch, seq): (usize, usize) = (batch.parse().map_err(|_| bad())?, seq.parse().map_err(|_| bad())?);
    let generate = match mode {
        "score" => false,
        "generate" => true,
        _ => return Err(bad()),
    };
    anyhow::ensure!(batch > 0 && seq > 16, "--run `{spec}`: batch must be positive and seq above 16");
    Ok(Run { generate, batch, seq })
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let runs: Vec<Run> = args.runs.iter().map(|s| parse_run(s)).collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(args.repeats > 0 && args.new_tokens > 1, "--repeats must be positive and --new-tokens above 1");
    let precision = Precision::of(args.dtype).expect("parse_dtype takes float dtypes only");
    // What to time: the model file, else each layout of the random-weight shape.
    enum Source<'a> {
        File(&'a PathBuf),
        Shape(&'a String),
    }
    let sources: Vec<Source> = match &args.model {
        Some(path) => vec![Source::File(path)],
        None => args.shape.patterns.iter().map(Source::Shape).collect(),
    };
    for source in sources {
        device.seed(args.seed);
        let (model, pattern) = match source {
            Source::File(path) => {
                let options = LoadOptions { dtype: args.dtype, ..Default::default() };
                let model = open_model(path, device, &options)?.model;
                let layers = crate::info::layer_string(&model.arch.layers);
                (model, layers)
            }
            Source::Shape(pattern) => {
                let mut model = precision.compute_copy(&Transformer::new(args.shape.config(pattern)?, device)?);
                let routed = model.routed_layers();
                if !routed.is_empty() {
                    let hidden = model.arch.hidden_size;
                    let config =
                        RouterConfig { init_bias: super::router_bias(args.fa_ratio, hidden), ..Default::default() };
                    model = model.with_router(Arc::new(Routers::new(routed, hidden, &config, device)));
                }
                (model, pattern.clone())
            }
        };
        let vocab = model.arch.vocab_size;
        let mut rng = StdRng::seed_from_u64(args.seed);
        let mut random = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(0..vocab as u32)).collect() };
        for &Run { generate: generating, batch, seq } in &runs {
            let result = if !generating {
                let batches: Vec<Vec<Encoded>> = (0..=args.repeats)
                    .map(|_| (0..batch).map(|_| Encoded { ids: random(seq + 1), scored: seq }).collect())
                    .collect();
                let mut seconds = Vec::new();
                for (i, group) in batches.iter().enumerate() {
                    let t = Instant::now();
                    score(&model, group, batch, |_| {})?;
                    let what = batch_label(i, args.repeats);
                    eprintln!("  {pattern} score:{batch}x{seq} {what}: {:.3} s", t.elapsed().as_secs_f64());
                    if i > 0 {
                        seconds.push(t.elapsed().as_secs_f64());
                    }
                }
                let median = median(&mut seconds);
                json!({"mode": "score", "tokens_per_s": (batch * seq) as f64 / median, "seconds_per_batch": seconds})
            } else {
                let prompts: Vec<Vec<u32>> =
                    (0..batch * (args.repeats + 1)).map(|i| random(seq - (i * 7) % 16)).collect();
                let until = |new| Until { stop: Vec::new(), max_new_tokens: new, eos: Vec::new(), chunk: args.chunk };
                let time = |contexts: &[Vec<u32>], new: usize| -> anyhow::Result<f64> {
                    let until = until(new);
                    let t = Instant::now();
                    if batch == 1 {
                        generate(&model, &tokenizer(), &contexts[0], &until)?;
                    } else {
                        generate_batch(&model, &tokenizer(), contexts, &until, batch, |_| {})?;
                    }
                    Ok(t.elapsed().as_secs_f64())
                };
                // Per batch of prompts: prefill and the first token alone, then the whole generation.
                let (mut prefill, mut total) = (Vec::new(), Vec::new());
                for (i, group) in prompts.chunks(batch).enumerate() {
                    let (p, t) = (time(group, 1)?, time(group, args.new_tokens)?);
                    // As it goes, so a run cut off by a time limit still says how far it got.
                    let what = batch_label(i, args.repeats);
                    eprintln!(
                        "  {pattern} generate:{batch}x{seq} {what}: prefill {p:.3} s, with {} new tokens {t:.3} s",
                        args.new_tokens
                    );
                    if i > 0 {
                        prefill.push(p);
                        total.push(t);
                    }
                }
                let (p, t) = (median(&mut prefill), median(&mut total));
                // Decode is the difference of two timings: null where it drowns in their noise.
                let decode = (t > p).then(|| (batch * (args.new_tokens - 1)) as f64 / (t - p));
                if decode.is_none() {
                    eprintln!(
                        "  {pattern} generate:{batch}x{seq}: decode shorter than the prefill's spread; raise --new-tokens"
                    );
                }
                json!({
                    "mode": "generate", "samples_per_s": batch as f64 / t, "prefill_s_per_sample": p / batch as f64,
                    "decode_tokens_per_s": decode,
                    "new_tokens": args.new_tokens, "batches": args.repeats,
                    "chunk": until(args.new_tokens).chunk_for(&model).min(seq),
                    "seconds_per_batch": total,
                })
            };
            let window = model.arch.layers.iter().find_map(|l| l.window()).map(|w| w.size());
            let mut line = json!({
                "framework": format!("swiattn {} ({}), {backend}", env!("CARGO_PKG_VERSION"), env!("SWIATTN_GIT_COMMIT")),
                "model": args.model.as_ref().map(|p| p.display().to_string()),
                "pattern": pattern, "window": window, "dtype": format!("{:?}", args.dtype).to_lowercase(),
                "batch": batch, "seq": seq,
            });
            let routed = model.take_fa_ratios()?;
            if !routed.is_empty() {
                line["fa_ratio_routed"] = json!(routed.values().sum::<f64>() / routed.len() as f64);
            }
            line.as_object_mut().expect("an object").extend(result.as_object().expect("an object").clone());
            println!("{line}");
            if let Some(path) = &args.json {
                writeln!(std::fs::OpenOptions::new().create(true).append(true).open(path)?, "{line}")?;
            }
        }
    }
    Ok(())
}

/// Batch `i` of a run as its progress line names it: the untimed warm-up first, then the timed.
fn batch_label(i: usize, repeats: usize) -> String {
    if i == 0 { "warm-up".to_string() } else { format!("batch {i}/{repeats}") }
}

/// The median, leaving `seconds` sorted (reported as the spread).
fn median(seconds: &mut [f64]) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

/// A tokenizer for decoding generated ids: random models' text is never read, only its ids.
fn tokenizer() -> tokenizers::Tokenizer {
    tokenizers::Tokenizer::new(tokenizers::models::wordlevel::WordLevel::default())
}
