//! Documents from text files: a `.jsonl` file holds one document per line (its `text` field); any
//! other file is one document. Shared by data preparation and evaluation.

use std::path::Path;

use crate::{Error, Result};

/// The documents of one file. A bad JSONL line is an error naming `file:line`.
pub fn documents(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_none_or(|x| x != "jsonl") {
        return Ok(vec![text]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let at = format!("{}:{}", path.display(), i + 1);
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| Error::format(&at, format!("not JSON: {e}")))?;
            value["text"].as_str().map(str::to_string).ok_or_else(|| Error::format(&at, "no string field `text`"))
        })
        .collect()
}
