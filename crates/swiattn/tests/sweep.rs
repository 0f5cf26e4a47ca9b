//! `swiattn sweep`: the grid's cells run, a killed sweep resumes its interrupted cell, a finished
//! sweep trains nothing again, and the results table equals that of an uninterrupted sweep.

use std::path::Path;
use std::process::Command;

const SWEEP: &str = r#"
[base]
steps = 6
batch_size = 2
eval_every = 0
eval_sequences = 4
save_every = 3
log_every = 1
[base.data]
task = "lagged_copy"
seq_len = 24
lag = 8
[base.model]
sliding_window = 4
layers = 2
[base.optim]
lr = 3e-3
warmup = 1

[grid]
policy = ["full", "swiattn", "rule:interleave:1"]
budget = [0.25, 0.5]
seed = [0, 1]
"#;

fn sweep(dir: &Path, fail_at: Option<&str>) -> std::process::Output {
    sweep_with(dir, fail_at, &[])
}

fn sweep_with(dir: &Path, fail_at: Option<&str>, flags: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swiattn"));
    command.arg("sweep").arg(dir.join("sweep.toml")).arg("--out").arg(dir.join("out")).args(flags);
    command.env_remove("SWIATTN_FAIL_AT");
    if let Some(at) = fail_at {
        command.env("SWIATTN_FAIL_AT", at);
    }
    command.output().expect("swiattn runs")
}

/// results.csv without the timing column.
fn results(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("out/results.csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let timing = header.iter().position(|c| *c == "tokens_per_s").unwrap();
    text.lines()
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != timing).map(|(_, f)| f).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn sweeps_skip_finished_cells_and_resume_the_interrupted_one() {
    let root = tempfile::tempdir().unwrap();
    let (clean, killed) = (root.path().join("clean"), root.path().join("killed"));
    for dir in [&clean, &killed] {
        std::fs::create_dir(dir).unwrap();
        std::fs::write(dir.join("sweep.toml"), SWEEP).unwrap();
    }
    let output = sweep(&clean, None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let want = results(&clean);
    // full ×2 seeds, swiattn ×2 budgets ×2 seeds, the rule ×2 seeds.
    assert_eq!(want.len(), 1 + 8, "{want:#?}");
    assert!(want[0].starts_with("policy,budget,window,seed,steps,final_loss,eval_loss"));
    assert!(want.iter().any(|r| r.starts_with("swiattn,0.250,4,1,6,")), "{want:#?}");
    assert!(clean.join("out/results.md").exists() && clean.join("out/quality_vs_fa.png").exists());
    // The rule's layout is half full: FA ratio 0.5, and less than full's attention FLOPs.
    let rule = want.iter().find(|r| r.starts_with("rule:interleave:1,")).unwrap();
    assert!(rule.contains(",0.500,"), "{rule}");
    // KV-cache bytes at 32K: the sliding layer keeps its 4-key ring, the full layer and every
    // routed layer all 32,768 positions.
    let kv = |row: &str| -> f64 {
        let at = want[0].split(',').position(|c| c == "kv_bytes_vs_full_32k").expect("a KV column");
        row.split(',').nth(at).unwrap().parse().unwrap()
    };
    assert_eq!(kv(rule), ((32_768.0 + 4.0) / (2.0 * 32_768.0) * 1e3_f64).round() / 1e3);
    assert_eq!(kv(&want[1]), 1.0, "full: {}", want[1]);
    assert!(want.iter().filter(|r| r.starts_with("swiattn,")).all(|r| kv(r) == 1.0), "{want:#?}");

    // Killed while saving the last checkpoint of the first cell: that cell resumes from step 3,
    // the others start fresh; a third sweep finds everything done and trains nothing.
    let output = sweep(&killed, Some("save:6"));
    assert!(!output.status.success(), "the sweep was aborted");
    let output = sweep(&killed, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("[1/8] full-w4-s0 (Resume)") && stdout.contains("[2/8] full-w4-s1 (Fresh)"), "{stdout}");
    let output = sweep(&killed, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("(Done)").count(), 8, "{stdout}");
    assert_eq!(results(&killed), want, "the same table as the uninterrupted sweep");
}

/// `--cells` runs the named cells alone (a GPU call at a time); `--report` trains nothing and writes
/// the tables of every finished cell.
#[test]
fn chosen_cells_run_alone_and_the_report_joins_every_finished_cell() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("sweep.toml"), SWEEP).unwrap();
    let output = sweep_with(dir, None, &["--cells", "full-w4-s1"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let cells = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("out/cells"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(cells(dir), ["full-w4-s1"]);
    assert_eq!(results(dir).len(), 1 + 1);

    let output = sweep_with(dir, None, &["--cells", "rule_interleave_1-w4-s0,full-w4-s1"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("full-w4-s1 (Done)"), "{stdout}");
    assert_eq!(cells(dir), ["full-w4-s1", "rule_interleave_1-w4-s0"]);
    let two = results(dir);
    assert_eq!(two.len(), 1 + 2, "{two:#?}");

    let output = sweep_with(dir, None, &["--cells", "full-w4-s7"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("full-w4-s7") && stderr.contains("swiattn-b0.25-w4-s0"),
        "{stderr}"
    );

    std::fs::remove_file(dir.join("out/results.csv")).unwrap();
    let output = sweep_with(dir, None, &["--report"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(cells(dir), ["full-w4-s1", "rule_interleave_1-w4-s0"], "the report trains nothing");
    assert_eq!(results(dir), two);
}

#[test]
fn a_bad_cell_stops_the_sweep_before_the_first_cell_trains() {
    let dir = tempfile::tempdir().unwrap();
    let bad = SWEEP.replace(r#""rule:interleave:1"]"#, r#""rule:interleave:1", "rule:nonsense:3"]"#);
    std::fs::write(dir.path().join("sweep.toml"), bad).unwrap();
    let output = sweep(dir.path(), None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("cell(s) cannot run") && stderr.contains("nonsense"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/cells").exists(), "no cell trained before the check");
}

/// `[eval]`: every finished cell is scored once by the harness (its routers too), and the table
/// gains the achieved FA ratio and each task's metric; a rerun neither trains nor scores again.
#[test]
fn sweeps_score_their_cells_with_the_harness() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let words = ["<|endoftext|>", "<unk>", "the", "a", "is", "of", "magic", "number", "for", "What", "?", ":", "."];
    std::fs::write(dir.join("tokenizer.json"), swiattn_core::testing::word_tokenizer_json(&words)).unwrap();
    let piqa = Path::new(env!("CARGO_MANIFEST_DIR")).join("../swiattn-eval/tests/fixtures/tasks/piqa");
    let eval = format!(
        "\n[eval]\nargs = [\"--tasks\", \"piqa,niah_single_1\", \"--dataset\", \"piqa={}\", \"--limit\", \"2\", \
         \"--max-len\", \"64\", \"--length\", \"100\", \"--max-new-tokens\", \"4\", \"--tokenizer\", \"{}\", \
         \"--data-dir\", \"{}\", \"--routing-map\", \"{{cell}}/routing_ruler.png\"]\n",
        piqa.display(),
        dir.join("tokenizer.json").display(),
        dir.display()
    );
    let grid = SWEEP.replace(r#"policy = ["full", "swiattn", "rule:interleave:1"]"#, r#"policy = ["full", "swiattn"]"#);
    let grid = grid.replace("budget = [0.25, 0.5]", "budget = [0.5]").replace("seed = [0, 1]", "seed = [0]");
    std::fs::write(dir.join("sweep.toml"), grid + &eval).unwrap();
    let output = sweep(dir, None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = results(dir);
    let header: Vec<&str> = table[0].split(',').collect();
    let at = |c: &str| header.iter().position(|h| *h == c).unwrap_or_else(|| panic!("no column {c}: {header:?}"));
    let (fa, acc, score) = (at("eval_fa_ratio"), at("piqa:acc"), at("niah_single_1:score"));
    for row in &table[1..] {
        let fields: Vec<&str> = row.split(',').collect();
        let fa: f64 = fields[fa].parse().unwrap();
        match fields[0] {
            "full" => assert_eq!(fa, 1.0, "{row}"),
            _ => assert!((0.0..=1.0).contains(&fa), "the routers' achieved ratio: {row}"),
        }
        assert!(!fields[acc].is_empty() && !fields[score].is_empty(), "{row}");
    }
    assert!(dir.join("out/cells/swiattn-b0.5-w4-s0/eval.json").exists());
    assert!(dir.join("out/tasks_vs_fa.png").exists(), "the harness's families against the FA ratio");
    assert!(dir.join("out/cells/swiattn-b0.5-w4-s0/routing_ruler.png").exists(), "the routed cell's map");
    assert!(!dir.join("out/cells/full-w4-s0/routing_ruler.png").exists(), "a static layout has none");
    let again = sweep(dir, None);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && !stdout.contains("  eval:"), "nothing scored twice: {stdout}");
    assert_eq!(results(dir), table);
    // An eval stopped after its first task (the file as `swiattn eval` leaves it) is resumed, not
    // rerun: the task it scored is kept and the table comes out as before.
    let path = dir.join("out/cells/swiattn-b0.5-w4-s0/eval.json");
    let mut run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    run["complete"] = false.into();
    run["tasks"].as_array_mut().unwrap().truncate(1);
    std::fs::write(&path, run.to_string()).unwrap();
    let resumed = sweep(dir, None);
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(
        stdout.contains("  eval:") && stdout.contains("[kept]") && stdout.contains("niah_single_1  score"),
        "{stdout}"
    );
    assert_eq!(results(dir), table);
}
