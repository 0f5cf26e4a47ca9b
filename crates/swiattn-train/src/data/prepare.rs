//! `swiattn data prepare`: tokenize plain-text files (one document per file) or JSONL files (one
//! document per line, its `text` field) in parallel into token shards plus a `meta.json`.

use std::path::PathBuf;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use swiattn_core::text::documents;
use swiattn_core::tokenizer::{encoding_fingerprint, fingerprint, load_tokenizer, vocabulary_fingerprint};
use swiattn_core::{Error, Result};

use super::shard::write;

/// `meta.json` of a shard directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub tokenizer: String,
    /// FNV-1a 64 of the tokenizer's JSON, as hex.
    pub tokenizer_fingerprint: String,
    /// [`vocabulary_fingerprint`] of the tokenizer: what continuing a checkpoint on these shards
    /// checks against the checkpoint's own tokenizer (absent in shards made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary_fingerprint: Option<String>,
    /// [`encoding_fingerprint`] of the tokenizer: the same vocabulary can split text differently
    /// (absent in shards made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_fingerprint: Option<String>,
    pub vocab_size: usize,
    /// The end-of-document id appended after every document.
    pub eod: u32,
    pub documents: usize,
    pub tokens: usize,
    pub shards: Vec<String>,
}

/// What to tokenize and where to.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub tokenizer: PathBuf,
    /// Files, or directories whose `.txt` / `.jsonl` files are read (sorted by name).
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// End-of-document token text [default: the tokenizer's `<|endoftext|>`, `</s>`, `<eos>` or
    /// `<|im_end|>`].
    pub eod: Option<String>,
    /// Tokens per shard.
    pub shard_tokens: usize,
}

fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| Error::io(input, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "txt" || x == "jsonl"))
                .collect();
            found.sort();
            files.extend(found);
        } else if input.exists() {
            files.push(input.clone());
        } else {
            return Err(Error::io(
                input,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
    }
    if files.is_empty() {
        return Err(Error::Invalid("no .txt or .jsonl input files".into()));
    }
    Ok(files)
}

/// Tokenize every input, write shards and `meta.json`; `progress(documents done, documents)`.
pub fn prepare(options: &PrepareOptions, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<Meta> {
    let tokenizer = load_tokenizer(&options.tokenizer)?;
    let vocab_size = tokenizer.get_vocab_size(true);
    let eod = match &options.eod {
        Some(token) => tokenizer
            .token_to_id(token)
            .ok_or_else(|| Error::Invalid(format!("--eod `{token}` is not in the tokenizer's vocabulary")))?,
        None => ["<|endoftext|>", "</s>", "<eos>", "<|im_end|>"]
            .iter()
            .find_map(|t| tokenizer.token_to_id(t))
            .ok_or_else(|| Error::Invalid("the tokenizer has no end-of-text token; pass --eod".into()))?,
    };
    let files = input_files(&options.inputs)?;
    let docs: Vec<String> =
        files.iter().map(|f| documents(f)).collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let encoded: Vec<Vec<u32>> = docs
        .par_iter()
        .map(|doc| {
            let ids = tokenizer
                .encode(doc.as_str(), false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::Invalid(format!("tokenization failed: {e}")));
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, docs.len());
            ids
        })
        .collect::<Result<_>>()?;

    std::fs::create_dir_all(&options.out).map_err(|e| Error::io(&options.out, e))?;
    let mut stream = Vec::with_capacity(encoded.iter().map(|d| d.len() + 1).sum());
    for doc in &encoded {
        stream.extend_from_slice(doc);
        stream.push(eod);
    }
    let mut shards = Vec::new();
    for (i, chunk) in stream.chunks(options.shard_tokens.max(1)).enumerate() {
        let name = format!("shard-{i:05}.bin");
        write(&options.out.join(&name), chunk, vocab_size, eod)?;
        shards.push(name);
    }
    let json = tokenizer.to_string(false).map_err(|e| Error::Invalid(format!("tokenizer: {e}")))?;
    let meta = Meta {
        tokenizer: options.tokenizer.display().to_string(),
        tokenizer_fingerprint: format!("{:016x}", fingerprint(json.as_bytes())),
        vocabulary_fingerprint: Some(vocabulary_fingerprint(&tokenizer)),
        encoding_fingerprint: Some(encoding_fingerprint(&tokenizer)?),
        vocab_size,
        eod,
        documents: encoded.len(),
        tokens: stream.len(),
        shards,
    };
    let path = options.out.join("meta.json");
    std::fs::write(&path, serde_json::to_string_pretty(&meta).expect("serializes")).map_err(|e| Error::io(&path, e))?;
    Ok(meta)
}

impl Meta {
    /// Check that `tokenizer` (the model's, from `model`) has the vocabulary these shards were
    /// made with and encodes text as theirs did; a fingerprint the shards lack (made before it
    /// existed) passes.
    pub fn check_tokenizer(&self, tokenizer: &tokenizers::Tokenizer, model: &str) -> Result<()> {
        let checks = [
            ("vocabulary", &self.vocabulary_fingerprint, vocabulary_fingerprint(tokenizer)),
            ("encoding", &self.encoding_fingerprint, encoding_fingerprint(tokenizer)?),
        ];
        for (what, want, got) in checks {
            let Some(want) = want else { continue };
            if got != *want {
                return Err(Error::Invalid(format!(
                    "the shards were tokenized with {} ({what} fingerprint {want}), whose {what} is not \
                     that of {model} ({got}): prepare them with the model's tokenizer \
                     (`swiattn data prepare --tokenizer {model} …`)",
                    self.tokenizer
                )));
            }
        }
        Ok(())
    }
}
