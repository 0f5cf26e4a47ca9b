//! `swiattn ppl`: token count, mean NLL and perplexity of a text under a model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::tensor::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use swiattn_core::BackendKind;
use swiattn_core::checkpoint::LoadOptions;
use swiattn_core::score::token_nll;
use swiattn_core::tokenizer::{encode, load_tokenizer};
use swiattn_train::checkpoint::open_model;

use crate::info::describe;
use crate::model_config::{AttentionArgs, check_trained_context};

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file or a Hugging Face directory (config.json + safetensors).
    #[arg(long)]
    model: PathBuf,
    /// The text to score (UTF-8).
    #[arg(long)]
    text: PathBuf,
    /// tokenizer.json to use instead of the one shipped with the model.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    attention: AttentionArgs,
    /// Score at most this many tokens (from the start of the text).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Also report the mean NLL of the tokens at positions >= this one.
    #[arg(long)]
    past: Option<usize>,
    /// Tokens per forward call (chunked prefill through the KV cache).
    #[arg(long, default_value_t = 256)]
    chunk: usize,
    /// Parameter dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_parser = crate::model_config::parse_dtype)]
    dtype: DType,
    /// Score past the model's max_position_embeddings (length extrapolation); otherwise a text
    /// longer than that is an error (lower --max-tokens).
    #[arg(long)]
    beyond_trained_context: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Write the token ids to this file (one per line), for independent references.
    #[arg(long)]
    dump_ids: Option<PathBuf>,
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let options = LoadOptions { dtype: args.dtype, ..args.attention.load_options()? };
    let loaded = open_model(&args.model, device, &options)?;
    let tokenizer = match &args.tokenizer {
        Some(path) => load_tokenizer(path)?,
        None => loaded.tokenizer.context("the model ships no tokenizer; pass --tokenizer tokenizer.json")?,
    };
    let text = std::fs::read_to_string(&args.text).with_context(|| format!("{}", args.text.display()))?;
    let mut ids = encode(&tokenizer, &text)?;
    if let Some(max) = args.max_tokens {
        ids.truncate(max);
    }
    anyhow::ensure!(
        ids.len() >= 2,
        "{}: {} tokens{}; perplexity needs at least 2 (one to condition on, one to score)",
        args.text.display(),
        ids.len(),
        args.max_tokens.map_or(String::new(), |m| format!(" after --max-tokens {m}"))
    );
    anyhow::ensure!(args.chunk > 0, "--chunk must be at least 1 token");
    if let Some(trained) = loaded.model.config.max_position_embeddings {
        let what = format!("{}: {} tokens", args.text.display(), ids.len());
        let fix = format!("pass --max-tokens {trained}");
        check_trained_context(&loaded.model.config, &args.model, ids.len(), &what, &fix, args.beyond_trained_context)?;
    }
    if let Some(path) = &args.dump_ids {
        let lines: Vec<String> = ids.iter().map(u32::to_string).collect();
        std::fs::write(path, lines.join("\n") + "\n").with_context(|| format!("{}", path.display()))?;
    }

    let bar = ProgressBar::new(ids.len() as u64 - 1);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tokens {per_sec} eta {eta}").expect("valid template"),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let nll = token_nll(&loaded.model, &ids, args.chunk, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    // A routed model's achieved FA ratio per routed layer (its router's decisions over the text).
    let routed = loaded.model.take_fa_ratios()?;
    let routed_mean = (!routed.is_empty()).then(|| routed.values().sum::<f64>() / routed.len() as f64);

    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len().max(1) as f64;
    let all = mean(&nll);
    // nll[t] scores the token at position t + 1.
    let past = args.past.map(|p| {
        let tail = &nll[p.saturating_sub(1).min(nll.len())..];
        (p, tail.len(), mean(tail))
    });
    if args.json {
        let mut out = serde_json::json!({
            "model": args.model.display().to_string(),
            "text": args.text.display().to_string(),
            "backend": backend.to_string(),
            "layers": crate::info::layer_string(&loaded.model.arch.layers),
            "tokens": ids.len(),
            "scored": nll.len(),
            "mean_nll": all,
            "perplexity": all.exp(),
            "seconds": seconds,
        });
        if let Some((p, n, m)) = past {
            out["past"] = serde_json::json!({"position": p, "scored": n, "mean_nll": m, "perplexity": m.exp()});
        }
        if let Some(mean) = routed_mean {
            let per_layer: serde_json::Map<String, serde_json::Value> =
                routed.iter().map(|(l, r)| (l.to_string(), (*r).into())).collect();
            out["routed_fa_ratio"] = serde_json::json!({"mean": mean, "per_layer": per_layer});
        }
        println!("{out}");
    } else {
        println!("model:      {} ({})", args.model.display(), describe(&loaded.model.arch));
        println!("text:       {}", args.text.display());
        println!("tokens:     {} ({} scored)", ids.len(), nll.len());
        println!("mean NLL:   {all:.5} nats/token");
        println!("perplexity: {:.4}", all.exp());
        if let Some((p, n, m)) = past {
            println!("past {p}:   {n} tokens, mean NLL {m:.5}, perplexity {:.4}", m.exp());
        }
        if let Some(mean) = routed_mean {
            let per_layer: Vec<String> = routed.iter().map(|(l, r)| format!("{l}: {r:.3}")).collect();
            println!("routed FA:  {mean:.4} achieved ({})", per_layer.join(", "));
        }
        println!("time:       {seconds:.1} s on {backend} ({:.0} tokens/s)", nll.len() as f64 / seconds);
    }
    Ok(())
}
