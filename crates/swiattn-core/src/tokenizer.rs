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
