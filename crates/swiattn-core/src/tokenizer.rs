//! Tokenizers: Hugging Face `tokenizer.json` files through the `tokenizers` crate, or the
//! vocabulary inside a GGUF file ([`crate::checkpoint::gguf::tokenizer_from_gguf`]).

use std::path::Path;

use tokenizers::Tokenizer;

use crate::{Error, Result};

/// Load a `tokenizer.json`, or the tokenizer inside a `.gguf` model file.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.exists() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    if path.extension().is_some_and(|e| e == "gguf") {
        return crate::checkpoint::gguf::tokenizer_from_gguf(&crate::checkpoint::gguf::GgufFile::open(path)?);
    }
    Tokenizer::from_file(path)
        .map_err(|e| Error::format(path.display().to_string(), format!("not a tokenizer.json: {e}")))
}

/// Token ids of `text`, with the tokenizer's special tokens (e.g. a BOS) added as it is set up to.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    tokenizer
        .encode(text, true)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| Error::Invalid(format!("tokenization failed: {e}")))
}

/// FNV-1a 64 of `bytes`: a stable fingerprint (std's hasher is not stable across releases).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// A fingerprint of a tokenizer's vocabulary alone, as hex: [`fingerprint`] of every id's token in
/// id order (added tokens included; each token length-prefixed, an unused id marked). A
/// `tokenizer.json` and the same vocabulary rebuilt from a GGUF file's metadata agree here, where
/// their JSON differs; two tokenizers that map any id to different tokens do not.
pub fn vocabulary_fingerprint(tokenizer: &Tokenizer) -> String {
    let vocab = tokenizer.get_vocab(true);
    let mut by_id: Vec<Option<&str>> = vec![None; vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0)];
    for (token, &id) in &vocab {
        by_id[id as usize] = Some(token);
    }
    let mut bytes = Vec::new();
    for token in by_id {
        match token {
            Some(t) => {
                bytes.extend((t.len() as u32).to_le_bytes());
                bytes.extend(t.as_bytes());
            }
            None => bytes.extend(u32::MAX.to_le_bytes()),
        }
    }
    format!("{:016x}", fingerprint(&bytes))
}

/// A probe of what pre-tokenizers, normalizers and merges decide: digit runs, whitespace runs,
/// contractions, accents, scripts without spaces, emoji and code.
const PROBE: &str = "In 2024-12-06, 3.14159 of 1,000,000 said: \"don't\" — we'll see.\n\n\tCafé naïve \
                     ÅNGSTRÖM 東京タワー 😀👍  x  =  a[i]+b_2;\r\n    fn main() { return 0x1F; }\n\n\n7:30";

/// A fingerprint of how a tokenizer encodes, as hex: [`fingerprint`] of its ids for a fixed probe
/// text (no special tokens). Two tokenizers with one vocabulary can still split text differently
/// (a GGUF's `smollm` pre-tokenizer splits digits one by one; transformers' GGUF converter does
/// not, docs/LOG.md 2026-12-06): this tells them apart where [`vocabulary_fingerprint`] cannot.
pub fn encoding_fingerprint(tokenizer: &Tokenizer) -> Result<String> {
    let ids = tokenizer
        .encode(PROBE, false)
        .map_err(|e| Error::Invalid(format!("tokenization failed: {e}")))?
        .get_ids()
        .iter()
        .flat_map(|id| id.to_le_bytes())
        .collect::<Vec<u8>>();
    Ok(format!("{:016x}", fingerprint(&ids)))
}
