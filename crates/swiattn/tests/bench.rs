//! `swiattn bench train` and `bench infer` on the CPU with a tiny model: every layout (and
//! gradient path) runs in one process, reports the fields the PyTorch baselines report, and routed
//! layouts route about the asked fraction of tokens.

use std::process::Command;

/// `swiattn bench ARGS` on a tiny Llama shape (2 layers, width 64): its stderr and JSON rows.
fn bench(args: &[&str]) -> (String, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let (config, json) = (dir.path().join("config.json"), dir.path().join("rows.jsonl"));
    std::fs::write(
        &config,
        r#"{"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swiattn"))
        .arg("bench")
        .args(args)
        .arg("--config")
        .arg(&config)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("swiattn runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let rows = std::fs::read_to_string(&json).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (stderr, rows)
}

#[test]
fn trains_every_layout_and_reports_like_the_pytorch_baseline() {
    #[rustfmt::skip]
    let (_, rows) = bench(&["train", "--pattern", "F,SF,R", "--gradient", "mix,scaled", "--fa-ratio", "0.3",
        "--window", "8", "--batch", "4", "--seq", "48", "--steps", "2", "--warmup", "1", "--dtype", "f32"]);
    let runs: Vec<(&str, Option<&str>)> =
        rows.iter().map(|r| (r["pattern"].as_str().unwrap(), r["gradient"].as_str())).collect();
    assert_eq!(
        runs,
        [("F", None), ("SF", None), ("R", Some("mix")), ("R", Some("scaled"))],
        "one row per layout and path"
    );
    for row in &rows {
        for key in ["tokens_per_s", "tokens_per_s_min", "tokens_per_s_max", "model_tflops_per_s", "seconds_per_step"] {
            assert!(row[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {row}");
        }
        assert!(row["tokens_per_s_min"].as_f64() <= row["tokens_per_s_max"].as_f64(), "{row}");
        match row["gradient"].as_str() {
            // 2 × 4 × 48 = 384 router decisions a step: the bias aims at the asked ratio.
            Some(_) => {
                let fa = row["fa_ratio"].as_f64().expect("routed layers report their ratio");
                assert!((fa - 0.3).abs() < 0.15, "FA ratio {fa} for 0.3");
            }
            None => assert!(row["fa_ratio"].is_null(), "{row}"),
        }
    }
    let e =
        Command::new(env!("CARGO_BIN_EXE_swiattn")).args(["bench", "train", "--gradient", "both"]).output().unwrap();
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("unknown --gradient `both`"));
}

/// `bench infer` times scoring and generation of each layout; a routed one gets fresh routers at
/// `--fa-ratio` and reports the ratio they reached on its random prompts.
#[test]
fn infers_every_layout_and_reports_the_routed_ratio() {
    #[rustfmt::skip]
    let (stderr, rows) = bench(&["infer", "--pattern", "F,R", "--fa-ratio", "0.3", "--window", "8",
        "--run", "score:2x40,generate:3x40", "--new-tokens", "3", "--repeats", "1", "--dtype", "f32"]);
    let runs: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["pattern"].as_str().unwrap(), r["mode"].as_str().unwrap())).collect();
    assert_eq!(runs, [("F", "score"), ("F", "generate"), ("R", "score"), ("R", "generate")]);
    for row in &rows {
        let speed = if row["mode"] == "score" { "tokens_per_s" } else { "samples_per_s" };
        assert!(row[speed].as_f64().is_some_and(|v| v > 0.0), "{speed} in {row}");
        // A difference of two timings: positive, or null where three tokens drown in the noise.
        let decode = &row["decode_tokens_per_s"];
        assert!(row["mode"] == "score" || decode.is_null() || decode.as_f64().unwrap() > 0.0, "{row}");
        match row["pattern"].as_str() {
            // 2 layers × (2 × 40 scored + 3 × ~40 generated) tokens: the bias aims at the asked ratio.
            Some("R") => {
                let fa = row["fa_ratio_routed"].as_f64().expect("routed layers report their ratio");
                assert!((fa - 0.3).abs() < 0.15, "FA ratio {fa} for 0.3: {row}");
            }
            _ => assert!(row["fa_ratio_routed"].is_null(), "{row}"),
        }
    }
    assert!(stderr.contains("R generate:3x40 batch 1/1: prefill"), "progress as it goes: {stderr}");
}
