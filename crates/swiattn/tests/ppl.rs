//! `swiattn ppl` on a tiny GGUF model (context 256): a text scores, and texts it cannot score give
//! one clear error instead of a panic or a perplexity over nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ppl(dir: &Path, text: &str, args: &[&str]) -> Output {
    let words = ["<|endoftext|>", "<unk>", "the", "a", "is", "of"];
    std::fs::write(dir.join("tokenizer.json"), swiattn_core::testing::word_tokenizer_json(&words)).unwrap();
    std::fs::write(dir.join("text.txt"), text).unwrap();
    let model: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "..", "swiattn-core", "tests", "fixtures", "hf", "llama.gguf"].iter().collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_swiattn"));
    command.arg("ppl").arg("--model").arg(model).arg("--tokenizer").arg(dir.join("tokenizer.json"));
    command.arg("--text").arg(dir.join("text.txt")).args(args);
    command.output().expect("swiattn runs")
}

fn error(out: &Output) -> String {
    assert!(!out.status.success(), "expected an error, got: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn scores_a_text_and_refuses_what_it_cannot_score() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let out = ppl(dir, "the a is of the a", &["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["scored"], 5);
    assert!(result["perplexity"].as_f64().unwrap().is_finite());

    for (text, args, want) in [
        ("", &[][..], "0 tokens"),
        ("the a is", &["--max-tokens", "0"][..], "after --max-tokens 0"),
        ("the", &[][..], "at least 2"),
        ("the a is", &["--chunk", "0"][..], "--chunk"),
    ] {
        let e = error(&ppl(dir, text, args));
        assert!(e.contains(want), "{text:?} {args:?}: {e}");
    }
    let long = "the a ".repeat(150);
    let e = error(&ppl(dir, &long, &[]));
    assert!(e.contains("max_position_embeddings (256") && e.contains("--beyond-trained-context"), "{e}");
    let out = ppl(dir, &long, &["--beyond-trained-context", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
