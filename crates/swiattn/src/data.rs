//! `swiattn data prepare`: tokenize text / JSONL into token shards for `[data] task = "text"`.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use swiattn_train::data::prepare::{PrepareOptions, prepare};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Tokenize text files (one document each) or JSONL files (a document per line, its `text`
    /// field) into token shards and a meta.json.
    Prepare(PrepareArgs),
}

#[derive(clap::Args)]
pub struct PrepareArgs {
    /// A tokenizer.json.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Input files or directories (their .txt and .jsonl files).
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// End-of-document token [default: the tokenizer's end-of-text token].
    #[arg(long)]
    eod: Option<String>,
    /// Tokens per shard.
    #[arg(long, default_value_t = 1 << 24)]
    shard_tokens: usize,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::Prepare(args) = command;
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} documents {per_sec}").expect("valid template"));
    let options = PrepareOptions {
        tokenizer: args.tokenizer,
        inputs: args.input,
        out: args.out.clone(),
        eod: args.eod,
        shard_tokens: args.shard_tokens,
    };
    let meta = prepare(&options, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    println!(
        "{}: {} documents, {} tokens in {} shard(s), vocabulary {}, end-of-document id {}, tokenizer {}",
        args.out.display(),
        meta.documents,
        meta.tokens,
        meta.shards.len(),
        meta.vocab_size,
        meta.eod,
        meta.tokenizer_fingerprint
    );
    Ok(())
}
