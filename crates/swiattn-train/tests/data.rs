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

/// The vocabulary fingerprint follows the vocabulary, not the JSON around it, and the encoding
/// fingerprint how text is split; continuing a checkpoint on shards made with another vocabulary or
/// another split is refused before training, naming the fix.
#[test]
fn shards_of_another_vocabulary_do_not_continue_a_checkpoint() {
    use swiattn_core::tokenizer::{encoding_fingerprint, vocabulary_fingerprint};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let docs = dir.join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "the window sees near keys the far keys ".repeat(3)).unwrap();
    let meta = prepare(&options(dir, vec![docs], 64), &|_, _| {}).unwrap();
    let ours = tokenizers::Tokenizer::from_file(tokenizer(dir)).unwrap();
    assert_eq!(meta.vocabulary_fingerprint.as_deref(), Some(vocabulary_fingerprint(&ours).as_str()));
    let pretty = ours.to_string(true).unwrap();
    assert_ne!(pretty, std::fs::read_to_string(tokenizer(dir)).unwrap(), "other JSON");
    let pretty = tokenizers::Tokenizer::from_bytes(pretty.as_bytes()).unwrap();
    assert_eq!(vocabulary_fingerprint(&pretty), vocabulary_fingerprint(&ours), "the same vocabulary");
    let mut other_words = WORDS;
    other_words.swap(3, 4);
    let other = swiattn_core::testing::word_tokenizer_json(&other_words);
    let other = tokenizers::Tokenizer::from_bytes(other.as_bytes()).unwrap();
    assert_ne!(vocabulary_fingerprint(&other), vocabulary_fingerprint(&ours), "two ids swapped");

    // A checkpoint (the llama fixture) whose tokenizer.json has the two ids swapped.
    let model = dir.join("model");
    std::fs::create_dir(&model).unwrap();
    let fixture: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "..", "swiattn-core", "tests", "fixtures", "hf", "llama"].iter().collect();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), model.join(file)).unwrap();
    }
    std::fs::write(model.join("tokenizer.json"), swiattn_core::testing::word_tokenizer_json(&other_words)).unwrap();
    let toml = format!(
        "steps = 1\nbatch_size = 1\neval_every = 0\neval_sequences = 1\nsave_every = 0\n[data]\ntask = \"text\"\n\
         shards = \"{}\"\nseq_len = 4\n[model]\nfrom = \"{}\"\nsliding_window = 4\n",
        dir.join("out").display(),
        model.display()
    );
    let config = swiattn_train::config::TrainConfig::from_toml(&toml, "run.toml").unwrap();
    let device = swiattn_core::testing::test_device().autodiff();
    let train =
        |run: &str| swiattn_train::run::train(&config, &dir.join(run), false, &[device.clone()], None, &mut |_| {});
    let e = train("refused").unwrap_err().to_string();
    assert!(e.contains("vocabulary") && e.contains("swiattn data prepare --tokenizer"), "{e}");
    // The same vocabulary, split on whitespace only (punctuation stays on its word): it encodes the
    // probe text differently, which the encoding fingerprint sees and the vocabulary's cannot.
    let words = swiattn_core::testing::word_tokenizer_json(&WORDS);
    let split = words.replace(r#"{"type":"Whitespace"}"#, r#"{"type":"WhitespaceSplit"}"#);
    assert_ne!(split, words);
    let (a, b) = [&words, &split].map(|j| tokenizers::Tokenizer::from_bytes(j.as_bytes()).unwrap()).into();
    assert_eq!(vocabulary_fingerprint(&a), vocabulary_fingerprint(&b));
    assert_ne!(encoding_fingerprint(&a).unwrap(), encoding_fingerprint(&b).unwrap());
    assert_eq!(meta.encoding_fingerprint, Some(encoding_fingerprint(&ours).unwrap()));
    std::fs::write(model.join("tokenizer.json"), &split).unwrap();
    let e = train("split").unwrap_err().to_string();
    assert!(e.contains("encoding fingerprint") && e.contains("swiattn data prepare --tokenizer"), "{e}");
    // With the shards' own tokenizer the run trains.
    std::fs::write(model.join("tokenizer.json"), swiattn_core::testing::word_tokenizer_json(&WORDS)).unwrap();
    train("trains").unwrap();
    // Its checkpoint scores on its own: model/ carries the base model's tokenizer.
    let (_, last) = swiattn_train::checkpoint::list(&dir.join("trains")).unwrap().pop().expect("a final checkpoint");
    let loaded =
        swiattn_train::checkpoint::open_model(&last, &swiattn_core::testing::test_device(), &Default::default())
            .unwrap();
    let shipped = loaded.tokenizer.expect("the base model's tokenizer");
    assert_eq!(encoding_fingerprint(&shipped).unwrap(), encoding_fingerprint(&ours).unwrap());
    assert_eq!(vocabulary_fingerprint(&shipped), vocabulary_fingerprint(&ours));
}
