//! Kill a training run — in the middle of writing a checkpoint, and right after a step — resume it,
//! and get exactly the metrics of an uninterrupted run: every loss, learning rate, routing ratio,
//! penalty and evaluation (timings aside), with no corrupt checkpoint left behind. Synthetic data
//! with SwiAttn and with ConSA's and Duo's two stages; packed text shards with gradient accumulation.

use std::path::Path;
use std::process::Command;

const CONFIG: &str = r#"
steps = 30
batch_size = 4
eval_every = 15
eval_sequences = 8
save_every = 10
log_every = 1
[data]
task = "lagged_copy"
seq_len = 32
lag = 12
[model]
sliding_window = 4
attention_pattern = "SR"
[optim]
lr = 3e-3
warmup = 5
"#;

/// The run of a policy that learns a static allocation in two stages (ConSA, Duo): 20 steps of
/// gates, then 10 with the binarized allocation; the policy's own section follows.
const TWO_STAGES: &str = r#"
steps = 30
batch_size = 4
eval_every = 15
eval_sequences = 8
save_every = 10
log_every = 1
[data]
task = "lagged_copy"
seq_len = 32
lag = 12
[model]
sliding_window = 4
attention_pattern = "FF"
kv_heads = 2
[optim]
lr = 3e-3
warmup = 5
router_lr = 0.05
"#;

/// Packed text (token shards) with gradient accumulation: the data cursor must resume too.
const TEXT: &str = r#"
steps = 12
batch_size = 2
grad_accumulation = 3
eval_every = 6
eval_sequences = 4
save_every = 4
log_every = 1
[data]
task = "text"
shards = "SHARDS"
seq_len = 24
[model]
sliding_window = 6
attention_pattern = "RF"
[optim]
lr = 3e-3
warmup = 2
"#;

fn train(dir: &Path, args: &[&str], fail_at: Option<&str>) -> bool {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swiattn"));
    command.arg("train").args(args).arg("--run-dir").arg(dir.join("run"));
    command.env("SWIATTN_TEST_QUIET", "1").env_remove("SWIATTN_FAIL_AT");
    if let Some(at) = fail_at {
        command.env("SWIATTN_FAIL_AT", at);
    }
    let output = command.output().expect("swiattn runs");
    output.status.success()
}

/// The metric lines without their timing field.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("tokens_per_s");
            v.as_object_mut().unwrap().remove("mfu");
            v
        })
        .collect()
}

fn checkpoints(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("run/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn resumed_runs_continue_exactly() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("tiny.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.to_str().unwrap();

    let reference = root.path().join("reference");
    assert!(train(&reference, &[config], None));
    let want = metrics(&reference);
    assert_eq!(want.iter().filter(|m| m.get("loss").is_some()).count(), 30);
    let summary = std::fs::read_to_string(reference.join("run/summary.json")).unwrap();
    // Where the wall time went: 30 steps, 2 held-out evals (steps 15, 30), 3 checkpoints.
    let parsed: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let spent = |k: &str| parsed["time"][k].as_f64().unwrap_or_else(|| panic!("time.{k} in {parsed}"));
    assert!(spent("first_step") > 0.0 && spent("first_step") < spent("steps"), "{parsed}");
    assert!(spent("evals") > 0.0 && spent("checkpoints") > 0.0, "{parsed}");
    assert!(spent("steps") + spent("evals") + spent("checkpoints") <= parsed["seconds"].as_f64().unwrap(), "{parsed}");
    let tokens = parsed["tokens_per_s"].as_f64().unwrap() * spent("steps");
    let per_step = tokens / 30.0;
    assert!((per_step - per_step.round()).abs() < 1e-6 * per_step, "tokens/s over the steps' time: {parsed}");
    assert!(!train(&reference, &["--resume"], None), "a finished run does not resume");
    assert_eq!(std::fs::read_to_string(reference.join("run/summary.json")).unwrap(), summary, "its summary stands");
    assert_eq!(metrics(&reference), want);
    // Resuming with another config names the key that differs.
    let other = root.path().join("other.toml");
    std::fs::write(&other, CONFIG.replace("lr = 3e-3", "lr = 4e-3")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swiattn"))
        .args(["train", other.to_str().unwrap(), "--resume", "--run-dir"])
        .arg(reference.join("run"))
        .env("SWIATTN_TEST_QUIET", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`optim.lr` is 0.003 in the run, 0.004 here"), "{stderr}");

    // Killed while writing the step-20 checkpoint: only its temporary directory is left.
    let mid_save = root.path().join("mid_save");
    assert!(!train(&mid_save, &[config], Some("save:20")), "the run was aborted");
    assert_eq!(checkpoints(&mid_save), vec![".step-000020.tmp", "step-000010"]);
    assert!(train(&mid_save, &["--resume"], None));
    assert_eq!(metrics(&mid_save), want, "resumed from step 10 after a crash mid-save");
    assert_eq!(checkpoints(&mid_save), vec!["step-000020", "step-000030"], "temporary directory replaced, two kept");

    // Killed right after step 25: resumes from step 20.
    let mid_run = root.path().join("mid_run");
    assert!(!train(&mid_run, &[config], Some("step:25")));
    assert!(train(&mid_run, &["--resume"], None));
    assert_eq!(metrics(&mid_run), want, "resumed from step 20 after a crash mid-run");

    // A bit flipped in the latest checkpoint (step 20 of a run killed after step 25): its checksum
    // fails, the resume says so and falls back to step 10, and the metrics still come out exact.
    let flipped = root.path().join("flipped");
    assert!(!train(&flipped, &[config], Some("step:25")));
    let weights = flipped.join("run/checkpoints/step-000020/model/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let at = bytes.len() - 7;
    bytes[at] ^= 0x10;
    std::fs::write(&weights, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swiattn"))
        .args(["train", "--resume", "--run-dir"])
        .arg(flipped.join("run"))
        .env("SWIATTN_TEST_QUIET", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("skipped checkpoint") && stderr.contains("step-000020/model/model.safetensors: SHA-256"));
    assert_eq!(metrics(&flipped), want, "resumed from step 10, past the corrupt step 20");

    // A finished run refuses to start over in the same directory.
    assert!(!train(&reference, &[config], None));

    // A checkpoint to continue from that is not there: refused before the run directory exists.
    let missing = root.path().join("missing.toml");
    std::fs::write(&missing, CONFIG.replace("[model]", "[model]\nfrom = \"no/such/model.gguf\"")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swiattn"))
        .args(["train", missing.to_str().unwrap(), "--run-dir"])
        .arg(root.path().join("never"))
        .env("SWIATTN_TEST_QUIET", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("model.from") && stderr.contains("no/such/model.gguf"),
        "{stderr}"
    );
    assert!(!root.path().join("never").exists(), "nothing written");
}

/// A policy that learns a static allocation (ConSA, Duo) switches to it after stage 1 — exactly the
/// budget's units on full attention — and resumes exactly from inside either stage. `stage1_field`
/// is a metric only stage 1 logs; `section` is the policy's TOML section.
fn two_stages_resume_exactly(name: &str, section: &str, stage1_field: &str) {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join(format!("{name}.toml"));
    std::fs::write(&config, format!("{TWO_STAGES}{section}")).unwrap();
    let config = config.to_str().unwrap();

    let reference = root.path().join("reference");
    assert!(train(&reference, &[config], None));
    let want = metrics(&reference);
    let stage2 = want.iter().find(|m| m.get("stage").is_some()).expect("a stage-2 line");
    assert_eq!(stage2["step"], 20);
    assert_eq!(stage2["allocation_fa_ratio"], 0.5, "top-k meets the budget exactly");
    assert!(want.iter().any(|m| m.get(stage1_field).is_some()), "stage 1 logs {stage1_field}");
    assert!(want.iter().filter(|m| m["step"].as_u64() > Some(20)).all(|m| m.get(stage1_field).is_none()));
    let allocation = swiattn_core::model::Allocation::load(&reference.join("run/allocation.json")).unwrap();
    assert_eq!(allocation.fa_ratio(), 0.5);
    assert!(reference.join("run/allocation.png").exists());
    // The final model carries the allocation as its layout.
    let final_config =
        std::fs::read_to_string(reference.join("run/checkpoints/step-000030/model/config.json")).unwrap();
    assert!(final_config.contains("attention_types"), "{final_config}");

    // Killed in stage 1 (after step 15): resumes from step 10 with the gates (and multipliers).
    let stage1 = root.path().join("stage1");
    assert!(!train(&stage1, &[config], Some("step:15")));
    assert!(train(&stage1, &["--resume"], None));
    assert_eq!(metrics(&stage1), want, "resumed inside stage 1");

    // Killed in stage 2 while saving step 30: resumes from step 20 with the fixed allocation.
    let stage2_run = root.path().join("stage2");
    assert!(!train(&stage2_run, &[config], Some("save:30")));
    assert!(train(&stage2_run, &["--resume"], None));
    assert_eq!(metrics(&stage2_run), want, "resumed inside stage 2");
}

#[test]
fn consa_runs_both_stages_and_resume_exactly() {
    let consa = "[consa]\nstage1_steps = 20\ngates = { granularity = \"kv_head\", budget = 0.5 }\n";
    two_stages_resume_exactly("consa", consa, "multipliers");
}

#[test]
fn duo_runs_both_stages_and_resume_exactly() {
    let duo = "[duo]\nstage1_steps = 20\ngates = { budget = 0.5, l1 = 0.1 }\n";
    two_stages_resume_exactly("duo", duo, "open_gates");
}

#[test]
fn text_runs_with_accumulation_resume_exactly() {
    use swiattn_train::data::prepare::Meta;
    let root = tempfile::tempdir().unwrap();
    // 4 000 tokens of a fixed pseudo-random stream over 64 ids with an end-of-document id 0
    // every ~100 tokens, in two shards: 160 windows of 25, 2 held out.
    let shards = root.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let mut state = 12345u64;
    let tokens: Vec<u32> = (0..4000)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if i % 97 == 96 { 0 } else { 1 + (state >> 58) as u32 % 63 }
        })
        .collect();
    for (i, chunk) in tokens.chunks(2500).enumerate() {
        swiattn_train::data::shard::write(&shards.join(format!("s{i}.bin")), chunk, 64, 0).unwrap();
    }
    let meta = Meta {
        tokenizer: "synthetic".into(),
        tokenizer_fingerprint: "0".into(),
        vocabulary_fingerprint: None,
        encoding_fingerprint: None,
        vocab_size: 64,
        eod: 0,
        documents: 41,
        tokens: 4000,
        shards: vec!["s0.bin".into(), "s1.bin".into()],
    };
    std::fs::write(shards.join("meta.json"), serde_json::to_string(&meta).unwrap()).unwrap();
    let config = root.path().join("text.toml");
    std::fs::write(&config, TEXT.replace("SHARDS", shards.to_str().unwrap())).unwrap();
    let config = config.to_str().unwrap();

    let reference = root.path().join("reference");
    assert!(train(&reference, &[config], None));
    let want = metrics(&reference);
    assert_eq!(want.iter().filter(|m| m.get("loss").is_some()).count(), 12);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference.join("run/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 12);
    assert!(summary["mfu"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(reference.join("run/routing.png").exists(), "the routed layer's map is drawn");

    // Killed after step 6 (inside the second of three windows of 4 steps): resumes from step 4.
    let mid_run = root.path().join("mid_run");
    assert!(!train(&mid_run, &[config], Some("step:6")));
    assert!(train(&mid_run, &["--resume"], None));
    assert_eq!(metrics(&mid_run), want, "the data cursor and routers resume with the model");
}

#[test]
fn a_run_directory_trains_in_one_process_at_a_time() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("tiny.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let run = root.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    // Another training holds the run's lock.
    let holder = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(run.join(".lock")).unwrap();
    holder.try_lock().unwrap();
    std::fs::write(run.join(".lock"), "pid 4242").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swiattn"))
        .arg("train")
        .arg(&config)
        .arg("--run-dir")
        .arg(&run)
        .env("SWIATTN_TEST_QUIET", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second training of one run directory must not start");
    assert!(stderr.contains("is being trained by another process (pid 4242)"), "{stderr}");
    assert!(!run.join("config.toml").exists(), "nothing written while another process holds the run");
}

#[test]
fn a_signal_stops_training_with_a_checkpoint_and_the_resume_is_exact() {
    let root = tempfile::tempdir().unwrap();
    let long = CONFIG.replace("steps = 30", "steps = 300").replace("eval_every = 15", "eval_every = 150");
    let config = root.path().join("long.toml");
    std::fs::write(&config, long.replace("save_every = 10", "save_every = 100")).unwrap();
    let config = config.to_str().unwrap();
    let reference = root.path().join("reference");
    assert!(train(&reference, &[config], None));
    let want = metrics(&reference);

    // SIGTERM once the run has logged a few steps: it stops after the step in flight, saves it,
    // and says how to resume.
    let stopped = root.path().join("stopped");
    let child = Command::new(env!("CARGO_BIN_EXE_swiattn"))
        .args(["train", config, "--run-dir"])
        .arg(stopped.join("run"))
        .env("SWIATTN_TEST_QUIET", "1")
        .env_remove("SWIATTN_FAIL_AT")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = stopped.join("run/metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 3 {
        assert!(started.elapsed().as_secs() < 120, "the run logged nothing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("interrupted after step"), "{stderr}");
    assert!(stderr.contains("swiattn train --resume --run-dir"), "{stderr}");
    let step = metrics(&stopped).iter().filter_map(|m| m.get("loss").and(m["step"].as_u64())).max().unwrap();
    assert!(step < 300, "the signal came before the end");
    assert!(checkpoints(&stopped).contains(&format!("step-{step:06}")), "the last step's checkpoint: {step}");
    assert!(train(&stopped, &["--resume"], None));
    assert_eq!(metrics(&stopped), want, "stopped by a signal at step {step}, resumed exactly");
}
