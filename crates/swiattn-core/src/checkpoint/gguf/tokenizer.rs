//! The tokenizer inside a GGUF file's metadata, rebuilt as a `tokenizers` tokenizer.
//!
//! Byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) are rebuilt from
//! `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, with the pre-tokenizer that
//! `tokenizer.ggml.pre` names in llama.cpp (`smollm`: digits split one by one, then GPT-2's
//! byte-level regex). Control tokens (`token_type = 3`) become special tokens; a BOS token is
//! prepended when `tokenizer.ggml.add_bos_token` is true. SentencePiece vocabularies
//! (`"llama"`, e.g. Gemma) carry scores instead of merges; use the model's `tokenizer.json` for
//! them.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::{GgufFile, Value};
use crate::{Error, Result};

/// Rebuild the tokenizer stored in a GGUF file.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let origin = file.path.as_str();
    let field = |k: &str| file.get(k).ok_or_else(|| Error::config(origin, k, "missing"));
    let strings = |k: &str| -> Result<Vec<String>> {
        field(k)?
            .as_array()
            .ok_or_else(|| Error::config(origin, k, "not an array"))?
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| Error::config(origin, k, "not an array of strings")))
            .collect()
    };
    let model = field("tokenizer.ggml.model")?.as_str().unwrap_or_default();
    if model != "gpt2" {
        return Err(Error::config(
            origin,
            "tokenizer.ggml.model",
            format!(
                "`{model}` vocabularies are not rebuilt from GGUF (only byte-level BPE, `gpt2`); pass the model's tokenizer.json"
            ),
        ));
    }
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::config(origin, "tokenizer.ggml.merges", format!("merge `{m}` is not two tokens")))
        })
        .collect::<Result<Vec<_>>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::config(origin, "tokenizer.ggml.merges", e.to_string()))?;

    let mut tokenizer = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre = file.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        }
        "gpt2" | "default" | "gpt-2" | "olmo" | "mpt" => byte_level.into(),
        other => {
            return Err(Error::config(
                origin,
                "tokenizer.ggml.pre",
                format!("pre-tokenizer `{other}` is not supported (smollm, gpt2, default are); pass a tokenizer.json"),
            ));
        }
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let types: Vec<u64> = file
        .get("tokenizer.ggml.token_type")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
        .unwrap_or_default();
    let special: Vec<AddedToken> = types
        .iter()
        .enumerate()
        .filter(|&(_, &t)| t == 3)
        .map(|(i, _)| AddedToken::from(tokens[i].clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| Error::config(origin, "tokenizer.ggml.token_type", e.to_string()))?;

    let add_bos = file.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(false);
    if let (true, Some(bos)) = (add_bos, file.get("tokenizer.ggml.bos_token_id").and_then(Value::as_u64)) {
        let bos_token = tokens[bos as usize].clone();
        let template = TemplateProcessing::builder()
            .try_single(format!("{bos_token} $A"))
            .and_then(|b| b.special_tokens(vec![(bos_token.clone(), bos as u32)]).build().map_err(|e| e.to_string()))
            .map_err(|e| Error::config(origin, "tokenizer.ggml.bos_token_id", e))?;
        tokenizer.with_post_processor(Some(template));
    }
    Ok(tokenizer)
}
