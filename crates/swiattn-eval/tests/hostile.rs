//! Seeded mutations of what the harness reads besides datasets — OLMES request files and task
//! specs (their TOML, templates and filters) — give one clear error naming the file, or questions
//! that are well formed (a label among the choices, one length per choice); never a panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use swiattn_core::testing::mutate_text;
use swiattn_eval::dataset::read_documents;
use swiattn_eval::request::{Question, read_olmes};
use swiattn_eval::task::{Prepared, TaskSpec};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn well_formed(questions: &[Question], label: &str) {
    for q in questions {
        assert!(!q.choices.is_empty() && q.label < q.choices.len(), "{label}: question {} is malformed", q.doc_id);
        assert_eq!(q.chars.len(), q.choices.len(), "{label}: question {}", q.doc_id);
    }
}

/// Run `read`, failing the test on a panic; the error (which must name `file`) or `None`.
fn outcome<T>(label: &str, file: &str, read: impl FnOnce() -> swiattn_core::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(read)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let e = e.to_string();
            assert!(e.contains(file), "{label}: the error does not name {file}: {e}");
            Err(e)
        }
        Err(_) => panic!("{label}: the reader panicked"),
    }
}

#[test]
fn mutated_olmes_requests_error_or_read_well_formed_questions() {
    let mut text = String::new();
    let gz = std::fs::File::open(fixtures().join("toy_requests.jsonl.gz")).unwrap();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let mut rng = StdRng::seed_from_u64(18);
    let (mut errors, mut read) = (0, 0);
    for case in 0..1500 {
        let label = format!("case {case}");
        std::fs::write(&path, mutate_text(&text, case, &mut rng)).unwrap();
        match outcome(&label, "requests.jsonl", || read_olmes(&path)) {
            Ok(questions) => {
                well_formed(&questions, &label);
                read += 1;
            }
            Err(_) => errors += 1,
        }
    }
    eprintln!("1500 OLMES mutations: {errors} clear errors, {read} read");
    assert!(errors > 300 && read > 100, "both outcomes should occur ({errors} / {read})");
}

#[test]
fn mutated_task_specs_error_or_build_well_formed_questions() {
    let spec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks/hellaswag.toml")).unwrap();
    let docs = read_documents(&fixtures().join("tasks/hellaswag")).unwrap();
    let mut rng = StdRng::seed_from_u64(18);
    let (mut errors, mut built) = (0, 0);
    for case in 0..1500 {
        let label = format!("case {case}");
        let mutated = mutate_text(&spec, case, &mut rng);
        let result = outcome(&label, "spec.toml", || TaskSpec::parse(&mutated, "spec.toml"))
            .and_then(|task| outcome(&label, "docs", || task.build(&docs, "docs")));
        match result {
            Ok(Prepared::Questions(questions)) => {
                well_formed(&questions, &label);
                built += 1;
            }
            Ok(Prepared::Documents(_)) => built += 1,
            Err(_) => errors += 1,
        }
    }
    eprintln!("1500 task-spec mutations: {errors} clear errors, {built} built");
    assert!(errors > 300 && built > 100, "both outcomes should occur ({errors} / {built})");
}
