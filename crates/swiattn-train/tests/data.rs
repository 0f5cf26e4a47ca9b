//! `data prepare` end to end with a small word-level tokenizer written here: documents from text and
//! JSONL files become the tokenizer's ids plus an end-of-document token, in shards that read back;
//! malformed input is an error naming the file and line.

use std::path::{Path, PathBuf};

use swiattn_train::data::prepare::{Meta, PrepareOptions, prepare};
use swiattn_train::data::shard::Shard;

const WORDS: [&str; 8] = ["<|endoftext|>", "<unk>", "the", "window", "sees", "far", "keys", "near"];

fn tokenizer(dir: &Path) -> PathBuf {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, swiattn_core::testing::word_tokenizer_json(&WORDS)).unwrap();
    path
}

fn options(dir: &Path, inputs: Vec<PathBuf>, shard_tokens: usize) -> PrepareOptions {
    PrepareOptions { tokenizer: tokenizer(dir), inputs, out: dir.join("out"), eod: None, shard_tokens }
}

fn ids(text: &str) -> Vec<u32> {
    text.split_whitespace().map(|w| WORDS.iter().position(|x| *x == w).unwrap_or(1) as u32).collect()
}

#[test]
fn text_and_jsonl_documents_become_shards_with_end_of_document_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "the window sees near keys").unwrap();
    std::fs::write(docs.join("b.jsonl"), "{\"text\": \"far keys\", \"id\": 1}\n\n{\"text\": \"the far window\"}\n")
        .unwrap();
    std::fs::write(docs.join("ignored.md"), "not read").unwrap();
    let meta: Meta = prepare(&options(dir.path(), vec![docs], 4), &|_, _| {}).unwrap();

    let mut expected = Vec::new();
    for doc in ["the window sees near keys", "far keys", "the far window"] {
        expected.extend(ids(doc));
        expected.push(0);
    }
    assert_eq!((meta.documents, meta.tokens, meta.eod, meta.vocab_size), (3, expected.len(), 0, 8));
    assert_eq!(meta.shards.len(), expected.len().div_ceil(4));
    let read: Vec<u32> =
        meta.shards.iter().flat_map(|s| Shard::open(&dir.path().join("out").join(s)).unwrap().tokens(0, 4)).collect();
    assert_eq!(read, expected);
    let on_disk: Meta =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/meta.json")).unwrap()).unwrap();
    assert_eq!(on_disk, meta);

    // The same tokenizer gives the same fingerprint; a different one does not.
    let again = prepare(&options(dir.path(), vec![dir.path().join("docs/a.txt")], 4), &|_, _| {}).unwrap();
    assert_eq!(again.tokenizer_fingerprint, meta.tokenizer_fingerprint);
}

#[test]
fn malformed_input_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"the keys\"}\n{\"text\": \"the\n").unwrap();
    let err = prepare(&options(dir.path(), vec![bad.clone()], 100), &|_, _| {}).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2") && err.contains("not JSON"), "{err}");

    std::fs::write(&bad, "{\"text\": \"the keys\"}\n\n{\"body\": \"far\"}\n").unwrap();
    let err = prepare(&options(dir.path(), vec![bad.clone()], 100), &|_, _| {}).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:3") && err.contains("`text`"), "{err}");

    let missing = dir.path().join("missing.txt");
    let err = prepare(&options(dir.path(), vec![missing], 100), &|_, _| {}).unwrap_err().to_string();
    assert!(err.contains("missing.txt"), "{err}");

    let mut with_eod = options(dir.path(), vec![bad], 100);
    with_eod.eod = Some("</s>".into());
    let err = prepare(&with_eod, &|_, _| {}).unwrap_err().to_string();
    assert!(err.contains("</s>"), "{err}");
}
