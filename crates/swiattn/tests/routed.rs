//! A SwiAttn training checkpoint goes wherever a model goes: `ppl`, `eval` and `bench infer` load
//! its routers with it (from `checkpoints/step-N` or its `model/`), route every token themselves —
//! the same routes and perplexity whether the text is fed whole or one token at a time — and report
//! the FA ratio the routers achieved. What cannot be run is refused with the fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CONFIG: &str = r#"
steps = 4
batch_size = 2
eval_every = 4
eval_sequences = 2
save_every = 4
[data]
task = "lagged_copy"
seq_len = 32
lag = 12
[model]
sliding_window = 4
attention_pattern = "SR"
[routing]
router = { init_bias = 0.0 }
"#;

fn swiattn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swiattn"))
        .args(args)
        .env("SWIATTN_TEST_QUIET", "1")
        .output()
        .expect("swiattn runs")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn error(out: Output) -> String {
    assert!(!out.status.success(), "expected an error, got: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn ppl(model: &Path, dir: &Path, chunk: &str) -> Output {
    let m = model.to_str().unwrap();
    let (tokenizer, text) = (dir.join("tokenizer.json"), dir.join("text.txt"));
    let (tokenizer, text) = (tokenizer.to_str().unwrap(), text.to_str().unwrap());
    swiattn(&["ppl", "--model", m, "--tokenizer", tokenizer, "--text", text, "--chunk", chunk, "--json"])
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../swiattn-eval/tests/fixtures/tasks")
}

#[test]
fn a_swiattn_checkpoint_scores_generates_and_reports_its_routes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("tiny.toml"), CONFIG).unwrap();
    let run = dir.join("run");
    ok(swiattn(&["train", dir.join("tiny.toml").to_str().unwrap(), "--run-dir", run.to_str().unwrap()]));
    let checkpoint = run.join("checkpoints/step-000004");
    let words = ["<|endoftext|>", "<unk>", "the", "a", "is", "of", "magic", "number", "for", "What", "?", ":", "."];
    std::fs::write(dir.join("tokenizer.json"), swiattn_core::testing::word_tokenizer_json(&words)).unwrap();
    std::fs::write(dir.join("text.txt"), "the a is of magic number for the a is of what ? : . ".repeat(4)).unwrap();

    // Whole text at once, and token by token through the cache: the same routes and perplexity.
    let whole: serde_json::Value = serde_json::from_str(&ok(ppl(&checkpoint, dir, "1000"))).unwrap();
    let stepped: serde_json::Value = serde_json::from_str(&ok(ppl(&checkpoint, dir, "1"))).unwrap();
    let (a, b) = (whole["perplexity"].as_f64().unwrap(), stepped["perplexity"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-4 * a, "perplexity {a} whole vs {b} token by token");
    let ratio = &whole["routed_fa_ratio"];
    assert_eq!(ratio, &stepped["routed_fa_ratio"], "the routes of the two paths");
    let routed = ratio["per_layer"]["1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&routed) && ratio["per_layer"].as_object().unwrap().len() == 1, "{ratio}");
    // Its model/ directory finds the routers beside it.
    let inner: serde_json::Value = serde_json::from_str(&ok(ppl(&checkpoint.join("model"), dir, "1000"))).unwrap();
    assert_eq!(inner["perplexity"], whole["perplexity"]);

    // bench infer times the checkpoint in its own layout, routes included.
    let rows = dir.join("infer.jsonl");
    #[rustfmt::skip]
    ok(swiattn(&[
        "bench", "infer", "--model", checkpoint.to_str().unwrap(), "--run", "score:2x24,generate:2x24",
        "--new-tokens", "3", "--repeats", "1", "--dtype", "f32", "--json", rows.to_str().unwrap(),
    ]));
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&rows).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for (row, speed) in rows.iter().zip(["tokens_per_s", "samples_per_s"]) {
        assert_eq!((row["pattern"].as_str(), row["window"].as_u64()), (Some("SR"), Some(4)), "{row}");
        assert!(row[speed].as_f64().is_some_and(|v| v > 0.0), "{row}");
        assert!(row["fa_ratio_routed"].as_f64().is_some_and(|r| (0.0..=1.0).contains(&r)), "{row}");
    }

    // eval: a question task and a RULER task, with the achieved ratio in the results.
    let results = dir.join("results.json");
    let piqa = format!("piqa={}", fixtures().join("piqa").display());
    #[rustfmt::skip]
    ok(swiattn(&[
        "eval", "--model", checkpoint.to_str().unwrap(), "--tokenizer", dir.join("tokenizer.json").to_str().unwrap(),
        "--data-dir", dir.to_str().unwrap(), "--tasks", "piqa,niah_single_1", "--dataset", &piqa, "--limit", "2",
        "--length", "100", "--max-new-tokens", "4", "--max-len", "64", "--results", results.to_str().unwrap(),
        "--routing-map", dir.join("map.png").to_str().unwrap(),
    ]));
    assert!(std::fs::metadata(dir.join("map.png")).unwrap().len() > 1000, "the routing map of the RULER prompt");
    let out: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(out["layers"], "SR");
    let mut weighted = 0.0;
    for task in out["tasks"].as_array().unwrap() {
        let per_layer: Vec<f64> =
            task["attention"]["fa_ratio_per_layer"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(per_layer[0], 0.0, "{}: the sliding layer", task["task"]);
        assert!((0.0..=1.0).contains(&per_layer[1]), "{}: {per_layer:?}", task["task"]);
        weighted += task["attention"]["fa_ratio"].as_f64().unwrap() * task["tokens"].as_f64().unwrap();
    }
    let tokens: f64 = out["tasks"].as_array().unwrap().iter().map(|t| t["tokens"].as_f64().unwrap()).sum();
    assert!((out["attention"]["fa_ratio"].as_f64().unwrap() - weighted / tokens).abs() < 1e-12);

    // Without its routers, or a ConSA checkpoint still in stage 1: refused, naming the fix.
    let bare = dir.join("bare");
    std::fs::create_dir(&bare).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(checkpoint.join("model").join(file), bare.join(file)).unwrap();
    }
    let e = error(ppl(&bare, dir, "1000"));
    assert!(e.contains("no router") && e.contains("checkpoints/step-N"), "{e}");
    std::fs::write(checkpoint.join("gates.safetensors"), b"").unwrap();
    let e = error(ppl(&checkpoint, dir, "1000"));
    assert!(e.contains("ConSA checkpoint from stage 1"), "{e}");
}
