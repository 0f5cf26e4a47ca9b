//! `swiattn eval` end to end on a tiny GGUF model: a mix of built-in tasks (on invented documents)
//! and a RULER task, a rewritten layout, and the results file's accounting; and the errors a user
//! meets first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn eval(dir: &Path, args: &[&str]) -> Output {
    eval_command(dir, args).output().expect("swiattn runs")
}

/// `swiattn eval` on the tiny GGUF with a word tokenizer, data under `dir`, and `args`.
fn eval_command(dir: &Path, args: &[&str]) -> Command {
    let words: Vec<String> =
        ["<|endoftext|>", "<unk>", "the", "a", "is", "of", "magic", "number", "for", "What", "?", ":", "."]
            .iter()
            .map(|w| w.to_string())
            .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    std::fs::write(dir.join("tokenizer.json"), swiattn_core::testing::word_tokenizer_json(&words)).unwrap();
    let model = root().join("crates/swiattn-core/tests/fixtures/hf/llama.gguf");
    let mut command = Command::new(env!("CARGO_BIN_EXE_swiattn"));
    command.arg("eval").arg("--model").arg(model).arg("--tokenizer").arg(dir.join("tokenizer.json"));
    command.arg("--data-dir").arg(dir).args(args);
    command
}

#[test]
fn suites_run_and_account_their_attention() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = root().join("crates/swiattn-eval/tests/fixtures/tasks");
    let piqa = format!("piqa={}", fixtures.join("piqa").display());
    let hellaswag = format!("hellaswag={}", fixtures.join("hellaswag").display());
    let results = dir.path().join("run.json");
    #[rustfmt::skip]
    let out = eval(dir.path(), &[
        "--tasks", "piqa,hellaswag,niah_single_1", "--dataset", &piqa, "--dataset", &hellaswag,
        "--limit", "2", "--samples", "1", "--length", "160", "--max-new-tokens", "4", "--max-len", "64",
        "--attention-pattern", "SF", "--window", "8", "--results", results.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // --limit caps questions; RULER takes --samples, which the limit only lowers.
    assert!(stdout.contains("| piqa | 2 | acc |") && stdout.contains("| niah_single_1 | 1 | score |"), "{stdout}");
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(run["layers"], "SFSF");
    assert_eq!(run["commit"].as_str().unwrap().len(), 40, "the commit the binary was built from");
    let tasks = run["tasks"].as_array().unwrap();
    assert_eq!(
        tasks.iter().map(|t| t["task"].as_str().unwrap()).collect::<Vec<_>>(),
        ["piqa", "hellaswag", "niah_single_1"]
    );
    for (t, n) in tasks.iter().zip([2, 2, 1]) {
        assert_eq!(t["n"], n, "{t}");
        let a = &t["attention"];
        assert_eq!(a["fa_ratio_per_layer"], serde_json::json!([0.0, 1.0, 0.0, 1.0]), "{t}");
        let (flops, full) = (a["attention_flops"].as_f64().unwrap(), a["full_attention_flops"].as_f64().unwrap());
        assert!(flops > 0.5 * full && flops <= full, "two of four layers sliding (window 8): {flops} of {full}");
    }
    // RULER's prompts are 160 - 4 tokens long: past the window of 8, so the sliding layers save work.
    let niah = &tasks[2]["attention"];
    assert!(niah["attention_flops"].as_f64().unwrap() < 0.6 * niah["full_attention_flops"].as_f64().unwrap());
}

/// `--resume` keeps what a stopped run scored (the results file is rewritten after every task)
/// and scores the rest to the file an uninterrupted run writes; a file of other settings is refused.
#[test]
fn a_stopped_eval_resumes_at_the_task_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let piqa = format!("piqa={}", root().join("crates/swiattn-eval/tests/fixtures/tasks/piqa").display());
    let (whole, stopped) = (dir.path().join("whole.json"), dir.path().join("stopped.json"));
    let run = |results: &Path, extra: &[&str]| {
        #[rustfmt::skip]
        let mut args = vec![
            "--tasks", "piqa,niah_single_1,vt", "--dataset", &piqa, "--limit", "2", "--samples", "2",
            "--length", "120", "--max-new-tokens", "4", "--max-len", "64", "--results", results.to_str().unwrap(),
        ];
        args.extend(extra);
        eval(dir.path(), &args)
    };
    let read =
        |path: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap() };
    let out = run(&whole, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let whole = read(&whole);
    assert_eq!(whole["complete"], true);
    // As a run stopped after piqa and niah_single_1 leaves it; piqa's time marks the kept result.
    let mut partial = whole.clone();
    partial["complete"] = false.into();
    partial["tasks"].as_array_mut().unwrap().truncate(2);
    partial["tasks"][0]["seconds"] = 1234.5.into();
    std::fs::write(&stopped, partial.to_string()).unwrap();
    let out = run(&stopped, &["--resume"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[kept]") && stdout.contains("vt             score"), "{stdout}");
    let resumed = read(&stopped);
    assert_eq!(resumed["complete"], true);
    assert_eq!(resumed["tasks"][0]["seconds"], 1234.5, "piqa kept, not scored again");
    let tasks = |run: &serde_json::Value| -> Vec<serde_json::Value> {
        let mut tasks = run["tasks"].as_array().unwrap().clone();
        tasks.iter_mut().for_each(|t| t["seconds"] = 0.into());
        tasks
    };
    assert_eq!(tasks(&resumed), tasks(&whole), "the resumed run's results are the uninterrupted run's");
    // Other settings: refused, naming what differs, and the file left as it was.
    let out = run(&stopped, &["--resume", "--seed", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`ruler` differ"), "{stderr}");
    assert_eq!(read(&stopped), resumed);
}

/// SIGTERM mid-run, delivered twice at once as `timeout` delivers it (to the process and to its
/// group): one request, so the eval finishes the task in flight, saves what it scored and says how
/// to go on; `--resume` then scores the rest.
#[test]
fn a_signal_stops_the_eval_between_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("run.json");
    let tasks = "niah_single_1,niah_multikey_2,vt,cwe,fwe,niah_multikey_3";
    #[rustfmt::skip]
    let args = ["--tasks", tasks, "--samples", "40", "--length", "240", "--max-new-tokens", "8", "--batch", "4",
        "--results", results.to_str().unwrap()];
    let mut child = eval_command(dir.path(), &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let scored =
        |path: &Path| -> Option<serde_json::Value> { serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok() };
    let started = std::time::Instant::now();
    while scored(&results).is_none() {
        if child.try_wait().unwrap().is_some() {
            panic!(
                "ended before a task was scored: {}",
                String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr)
            );
        }
        assert!(started.elapsed().as_secs() < 120, "no task scored");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for _ in 0..2 {
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("stopped by a signal with"), "{stderr}");
    assert!(stderr.contains("rerun with --resume"), "{stderr}");
    let stopped = scored(&results).unwrap();
    let kept = stopped["tasks"].as_array().unwrap().len();
    assert!(stopped["complete"] == false && (1..6).contains(&kept), "{kept} of 6 tasks: {stopped}");
    let out = eval_command(dir.path(), &[&args[..], &["--resume"]].concat()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = scored(&results).unwrap();
    assert_eq!(done["complete"], true);
    assert_eq!(done["tasks"].as_array().unwrap().len(), 6);
    assert_eq!(done["tasks"].as_array().unwrap()[..kept], stopped["tasks"].as_array().unwrap()[..], "kept as scored");
}

#[test]
fn bad_requests_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = |args: &[&str]| {
        let out = eval(dir.path(), args);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = err(&["--tasks", "piqa,nonesuch"]);
    assert!(e.contains("unknown task `nonesuch`"), "{e}");
    let e = err(&["--tasks", "qa_1", "--length", "128"]);
    assert!(e.contains("qa_1 needs --squad"), "{e}");
    let e = err(&["--tasks", "piqa", "--max-len", "512"]);
    assert!(e.contains("--max-len 512 is past the model's max_position_embeddings (256"), "{e}");
    let e = err(&["--tasks", "piqa", "--max-len", "64"]);
    assert!(e.contains("piqa") && e.contains("hf_datasets/piqa"), "a missing dataset names the task and path: {e}");
    // Nothing to evaluate is an error, not metrics over nothing.
    let piqa = root().join("crates/swiattn-eval/tests/fixtures/tasks/piqa");
    let dataset = format!("piqa={}", piqa.display());
    let e = err(&["--tasks", "piqa", "--dataset", &dataset, "--max-len", "64", "--limit", "0"]);
    assert!(e.contains("piqa") && e.contains("nothing to evaluate (--limit 0)"), "{e}");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let e = err(&["--olmes", empty.to_str().unwrap(), "--max-len", "64"]);
    assert!(e.contains("empty.jsonl") && e.contains("nothing to evaluate (the file holds none)"), "{e}");
    let e = err(&["--tasks", "niah_single_1", "--length", "160", "--limit", "0"]);
    assert!(e.contains("RULER tasks: nothing to evaluate"), "{e}");
    let e = err(&["--rolling", empty.to_str().unwrap(), "--max-len", "64"]);
    assert!(e.contains("empty.jsonl") && e.contains("nothing to evaluate"), "{e}");
    // A relative --olmes path is the user's, from the working directory, not under --data-dir.
    std::fs::copy(
        root().join("crates/swiattn-eval/tests/fixtures/toy_requests.jsonl.gz"),
        dir.path().join("toy.jsonl.gz"),
    )
    .unwrap();
    let model = root().join("crates/swiattn-core/tests/fixtures/hf/llama.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_swiattn"))
        .current_dir(dir.path())
        .args(["eval", "--olmes", "toy.jsonl.gz", "--max-len", "64", "--data-dir", "/nonexistent", "--model"])
        .arg(&model)
        .arg("--tokenizer")
        .arg(dir.path().join("tokenizer.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("| toy.jsonl.gz | 3 |"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // An output that cannot be written is refused before anything is scored.
    let nowhere = dir.path().join("no/such/dir/run.json");
    for flag in ["--results", "--table"] {
        let e = err(&["--tasks", "piqa", "--dataset", &dataset, "--max-len", "64", flag, nowhere.to_str().unwrap()]);
        assert!(e.contains(flag) && e.contains("no/such/dir/run.json") && !e.contains("piqa "), "{e}");
    }
}
