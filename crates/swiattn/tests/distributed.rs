//! `swiattn train` as the ranks of a multi-process job (torchrun's variables, CPU backend): two
//! processes train what one process accumulating the same micro-batches trains — bitwise with one
//! micro-batch per rank, to float order with several — a rank that dies ends the other with an
//! error naming it, and the job resumes from rank 0's checkpoint to the uninterrupted metrics.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

const CONFIG: &str = r#"
steps = 6
batch_size = 2
grad_accumulation = GA
eval_every = 3
eval_sequences = 4
save_every = 3
log_every = 1
[data]
task = "lagged_copy"
seq_len = 24
lag = 10
[model]
sliding_window = 4
attention_pattern = "SR"
[optim]
lr = 3e-3
warmup = 2
"#;

fn write_config(dir: &Path, grad_accumulation: usize) -> String {
    let path = dir.join(format!("ga{grad_accumulation}.toml"));
    std::fs::write(&path, CONFIG.replace("GA", &grad_accumulation.to_string())).unwrap();
    path.to_str().unwrap().to_string()
}

fn command(args: &[&str], run: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swiattn"));
    command.arg("train").args(args).arg("--run-dir").arg(run);
    command.env("SWIATTN_TEST_QUIET", "1").env_remove("SWIATTN_FAIL_AT");
    for var in ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID"] {
        command.env_remove(var);
    }
    command
}

/// Every rank of a `size`-rank job on a free local port; `fail_at[rank]` aborts that rank after
/// a step. Outputs in rank order.
fn job(size: usize, args: &[&str], run: &Path, fail_at: &[(usize, &str)]) -> Vec<Output> {
    start(size, args, run, fail_at).into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// The ranks of [`job`], started.
fn start(size: usize, args: &[&str], run: &Path, fail_at: &[(usize, &str)]) -> Vec<std::process::Child> {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    (0..size)
        .map(|rank| {
            let mut c = command(args, run);
            c.env("RANK", rank.to_string())
                .env("WORLD_SIZE", size.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("SWIATTN_COLLECTIVE_TIMEOUT", "60");
            if let Some((_, at)) = fail_at.iter().find(|(r, _)| *r == rank) {
                c.env("SWIATTN_FAIL_AT", at);
            }
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("swiattn runs")
        })
        .collect()
}

/// The metric lines without their timing fields.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("tokens_per_s");
            o.remove("mfu");
            v
        })
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The largest difference between two metric logs' numbers (they must agree in every key).
fn max_difference(a: &[serde_json::Value], b: &[serde_json::Value]) -> f64 {
    fn walk(a: &serde_json::Value, b: &serde_json::Value, worst: &mut f64) {
        match (a, b) {
            (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                *worst = worst.max((x - y).abs() / x.abs().max(1.0));
            }
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
                x.iter().for_each(|(k, v)| walk(v, &y[k], worst));
            }
            (serde_json::Value::Array(x), serde_json::Value::Array(y)) => {
                assert_eq!(x.len(), y.len());
                x.iter().zip(y).for_each(|(v, w)| walk(v, w, worst));
            }
            _ => assert_eq!(a, b),
        }
    }
    assert_eq!(a.len(), b.len(), "as many metric lines");
    let mut worst = 0.0;
    a.iter().zip(b).for_each(|(x, y)| walk(x, y, &mut worst));
    worst
}

#[test]
fn two_ranks_train_what_one_process_accumulating_trains() {
    let root = tempfile::tempdir().unwrap();
    // Four micro-batches: (g0 + g2) + (g1 + g3) against ((g0 + g1) + g2) + g3, ~1e-7 apart.
    for (grad_accumulation, tolerance) in [(2, 0.0), (4, 1e-5)] {
        let config = write_config(root.path(), grad_accumulation);
        let alone = root.path().join(format!("alone{grad_accumulation}"));
        let out = command(&[&config], &alone).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));

        let together = root.path().join(format!("together{grad_accumulation}"));
        let outs = job(2, &[&config], &together, &[]);
        for (rank, o) in outs.iter().enumerate() {
            assert!(o.status.success(), "rank {rank}: {}", stderr(o));
        }
        assert!(String::from_utf8_lossy(&outs[1].stdout).contains("rank 1: 6 steps done"));
        let diff = max_difference(&metrics(&alone), &metrics(&together));
        // One micro-batch per rank: rank 0's plus rank 1's is the accumulator's sum, bit for bit.
        assert!(diff <= tolerance, "grad_accumulation {grad_accumulation}: metrics differ by {diff}");
        let summary = |run: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
        };
        let (a, b) = (summary(&alone), summary(&together));
        let eval = (a["eval_loss"].as_f64().unwrap() - b["eval_loss"].as_f64().unwrap()).abs();
        assert!(eval <= tolerance, "held-out loss {a} vs {b}");
    }
}

#[test]
fn a_rank_that_dies_ends_the_job_by_name_and_the_job_resumes_exactly() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path(), 2);
    let reference = root.path().join("reference");
    let outs = job(2, &[&config], &reference, &[]);
    assert!(outs.iter().all(|o| o.status.success()), "{}", stderr(&outs[0]));

    // Rank 1 crashes after step 4 (a checkpoint stands at step 3).
    let run = root.path().join("run");
    let outs = job(2, &[&config], &run, &[(1, "step:4")]);
    assert!(!outs[0].status.success() && !outs[1].status.success());
    let e = stderr(&outs[0]);
    assert!(e.contains("rank 1 left the job") && e.contains("rank 0 of 2"), "{e}");

    let outs = job(2, &["--resume"], &run, &[]);
    for (rank, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", stderr(o));
    }
    assert_eq!(max_difference(&metrics(&reference), &metrics(&run)), 0.0, "resumed metrics");
}

#[test]
fn a_job_refuses_what_its_ranks_cannot_share() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path(), 3);
    let outs = job(2, &[&config], &root.path().join("run"), &[]);
    for o in &outs {
        assert!(!o.status.success());
        let e = stderr(o);
        assert!(e.contains("grad_accumulation") && e.contains("2 ranks"), "{e}");
    }
}

#[test]
fn a_signal_to_one_rank_stops_every_rank_after_the_same_step() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("long.toml");
    std::fs::write(&config, CONFIG.replace("GA", "2").replace("steps = 6", "steps = 5000")).unwrap();
    let run = root.path().join("run");
    let ranks = start(2, &[config.to_str().unwrap()], &run, &[]);
    // Once the job is under way, SIGTERM to rank 1 alone.
    let started = std::time::Instant::now();
    while std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count()) < 5 {
        assert!(started.elapsed().as_secs() < 120, "the job did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = Command::new("kill").args(["-TERM", &ranks[1].id().to_string()]).status().unwrap();
    assert!(killed.success());
    let outs: Vec<Output> = ranks.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let step = |o: &Output| -> usize {
        let e = stderr(o);
        let at = e.find("interrupted after step ").unwrap_or_else(|| panic!("{e}"));
        e[at + 23..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(outs.iter().all(|o| !o.status.success()));
    let (s0, s1) = (step(&outs[0]), step(&outs[1]));
    assert_eq!(s0, s1, "both ranks stop after the same step");
    assert!(s0 < 5000);
    assert!(run.join(format!("checkpoints/step-{s0:06}")).is_dir(), "rank 0 saved the step");
}
