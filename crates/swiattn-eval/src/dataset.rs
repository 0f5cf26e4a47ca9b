//! Documents of a task's dataset as JSON objects, from the files Hugging Face `datasets` and
//! hand-made sets come in:
//!
//! - `.arrow`: an Arrow IPC stream (what `Dataset.save_to_disk` writes, as `fetch.sh eval`
//!   provides them) or an Arrow IPC file; one document per row, nested lists and structs kept;
//! - `.jsonl` / `.jsonl.gz`: one JSON object per line; `.json`: an array of objects;
//! - any other file: one document `{"text": <the file>}`;
//! - a directory: a saved split's data files (as its `state.json` lists them; without one, its
//!   `.arrow` files in name order, else its other files in name order), each read as above.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use swiattn_core::{Error, Result};

/// Every document of a file or directory, in order.
pub fn read_documents(path: &Path) -> Result<Vec<Value>> {
    if path.is_dir() {
        let mut out = Vec::new();
        for file in dataset_files(path)? {
            out.extend(read_file(&file)?);
        }
        return Ok(out);
    }
    read_file(path)
}

/// The files of a dataset directory: those its `state.json` lists (`datasets` keeps map caches
/// beside them), or its `.arrow` files, or else every visible file, sorted.
fn dataset_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let state = dir.join("state.json");
    if state.is_file() {
        let text = std::fs::read_to_string(&state).map_err(|e| Error::io(&state, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(state.display().to_string(), format!("not JSON: {e}")))?;
        let files = value["_data_files"].as_array().and_then(|files| {
            files.iter().map(|f| f["filename"].as_str().map(|name| dir.join(name))).collect::<Option<Vec<_>>>()
        });
        return files.ok_or_else(|| Error::format(state.display().to_string(), "no `_data_files[].filename` list"));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    let arrow: Vec<PathBuf> = files.iter().filter(|p| p.extension().is_some_and(|x| x == "arrow")).cloned().collect();
    let files = if arrow.is_empty() { files } else { arrow };
    if files.is_empty() {
        return Err(Error::format(dir.display().to_string(), "an empty directory: no documents"));
    }
    Ok(files)
}

fn read_file(path: &Path) -> Result<Vec<Value>> {
    let name = path.display().to_string();
    if name.ends_with(".arrow") {
        return read_arrow(path);
    }
    let text = read_text(path)?;
    let stem = name.trim_end_matches(".gz");
    if stem.ends_with(".jsonl") {
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                let at = format!("{name}:{}", i + 1);
                match serde_json::from_str(line) {
                    Ok(v @ Value::Object(_)) => Ok(v),
                    Ok(_) => Err(Error::format(at, "not a JSON object")),
                    Err(e) => Err(Error::format(at, format!("not JSON: {e}"))),
                }
            })
            .collect();
    }
    if stem.ends_with(".json") {
        return match serde_json::from_str(&text) {
            Ok(Value::Array(docs)) if docs.iter().all(Value::is_object) => Ok(docs),
            Ok(_) => Err(Error::format(name, "expected a JSON array of objects")),
            Err(e) => Err(Error::format(name, format!("not JSON: {e}"))),
        };
    }
    Ok(vec![serde_json::json!({ "text": text })])
}

/// A text file, gunzipped when its name ends in `.gz`.
pub fn read_text(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    let read = if path.extension().is_some_and(|x| x == "gz") {
        flate2::read::GzDecoder::new(file).read_to_string(&mut text)
    } else {
        std::io::BufReader::new(file).read_to_string(&mut text)
    };
    read.map_err(|e| Error::io(path, e))?;
    Ok(text)
}

/// The rows of an Arrow IPC stream or file as JSON objects.
fn read_arrow(path: &Path) -> Result<Vec<Value>> {
    let name = path.display().to_string();
    let bad =
        |e: arrow_schema::ArrowError| Error::format(&name, format!("not a readable Arrow IPC stream or file: {e}"));
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let batches: Vec<arrow_array::RecordBatch> = if bytes.starts_with(b"ARROW1") {
        arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(bad)?
            .collect::<std::result::Result<_, _>>()
            .map_err(bad)?
    } else {
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(bad)?
            .collect::<std::result::Result<_, _>>()
            .map_err(bad)?
    };
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    writer.write_batches(&batches.iter().collect::<Vec<_>>()).map_err(bad)?;
    writer.finish().map_err(bad)?;
    let json = writer.into_inner();
    if json.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&json).map_err(|e| Error::format(&name, format!("rows as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_json_and_text_files_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("a.jsonl");
        std::fs::write(&jsonl, "{\"q\": 1}\n\n{\"q\": 2}\n").unwrap();
        assert_eq!(read_documents(&jsonl).unwrap(), vec![serde_json::json!({"q": 1}), serde_json::json!({"q": 2})]);
        std::fs::write(&jsonl, "{\"q\": 1}\n[1]\n").unwrap();
        let err = read_documents(&jsonl).unwrap_err().to_string();
        assert!(err.contains("a.jsonl:2") && err.contains("not a JSON object"), "{err}");
        std::fs::write(&jsonl, "{\"q\": 1}\n{oops\n").unwrap();
        assert!(read_documents(&jsonl).unwrap_err().to_string().contains("a.jsonl:2: not JSON"));
        let text = dir.path().join("b.txt");
        std::fs::write(&text, "one document").unwrap();
        assert_eq!(read_documents(&text).unwrap(), vec![serde_json::json!({"text": "one document"})]);
        std::fs::write(&jsonl, "{\"q\": 3}\n").unwrap();
        let both = read_documents(dir.path()).unwrap();
        assert_eq!(both.len(), 2, "a directory without .arrow files reads every file in name order");
        let json = dir.path().join("c.json");
        std::fs::write(&json, "{\"q\": 1}").unwrap();
        assert!(read_documents(&json).unwrap_err().to_string().contains("a JSON array of objects"));
        std::fs::write(dir.path().join("state.json"), r#"{"_data_files": [{"filename": "b.txt"}]}"#).unwrap();
        assert_eq!(read_documents(dir.path()).unwrap().len(), 1, "a saved split reads the files its state lists");
        let arrow = dir.path().join("d.arrow");
        std::fs::write(&arrow, "not arrow").unwrap();
        let err = read_documents(&arrow).unwrap_err().to_string();
        assert!(err.contains("d.arrow") && err.contains("Arrow IPC"), "{err}");
    }
}
