//! OLMES request files: questions grouped from one line per choice; malformed files name the file
//! and line. `fixtures/toy_requests.jsonl.gz` holds three made-up questions in OLMES's format.

use std::path::{Path, PathBuf};

use swiattn_eval::request::{Request, read_olmes};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy_requests.jsonl.gz")
}

#[test]
fn reads_questions_from_gzipped_and_plain_files() {
    let questions = read_olmes(&fixture()).unwrap();
    assert_eq!(questions.len(), 3);
    assert_eq!(questions[1].doc_id, 1);
    assert_eq!(questions[1].label, 1);
    assert_eq!(
        questions[1].choices[1],
        Request {
            context: "Question: How many legs does a spider have?\nAnswer:".into(),
            continuation: " eight".into()
        }
    );
    assert_eq!(questions.iter().map(|q| q.choices.len()).collect::<Vec<_>>(), [3, 2, 4]);

    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("requests.jsonl");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(fixture()).unwrap()),
        &mut text,
    )
    .unwrap();
    std::fs::write(&plain, &text).unwrap();
    assert_eq!(read_olmes(&plain).unwrap(), questions);
}

fn line(doc_id: u64, idx: usize, label: &str) -> String {
    format!(
        r#"{{"request_type": "loglikelihood", "request": {{"context": "c", "continuation": " x{idx}"}}, "doc_id": {doc_id}, "idx": {idx}, "label": {label}}}"#
    )
}

#[test]
fn single_continuations_may_carry_answer_strings_as_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lambada.jsonl");
    std::fs::write(&path, format!("{}\n{}\n", line(0, 0, r#"["x0"]"#), line(1, 0, r#"["x0"]"#))).unwrap();
    let questions = read_olmes(&path).unwrap();
    assert_eq!(questions.iter().map(|q| (q.choices.len(), q.label)).collect::<Vec<_>>(), [(1, 0), (1, 0)]);
}

#[test]
fn malformed_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let cases = [
        (format!("{}\n{{not json\n", line(0, 0, "0")), "bad.jsonl:2"),
        (format!("{}\n{}\n{}\n", line(0, 0, "0"), line(0, 2, "0"), line(1, 0, "0")), "no choice 1"),
        (format!("{}\n{}\n", line(0, 0, "0"), line(0, 10_000_000_000, "0")), "choice index 10000000000"),
        (format!("{}\n{}\n", line(0, 0, "0"), line(0, usize::MAX, "0")), "2 requests"),
        (format!("{}\n{}\n", line(0, 0, "0"), line(0, 1, "1")), "bad.jsonl:2"),
        (format!("{}\n{}\n", line(0, 0, "3"), line(0, 1, "3")), "label 3 but 2 choices"),
        (format!("{}\n{}\n", line(0, 0, "0"), line(0, 0, "0")), "appears twice"),
        (line(0, 0, "0").replace("loglikelihood", "generate_until"), "generate_until"),
        (line(0, 0, "0").replace(r#""doc_id": 0, "#, ""), "doc_id"),
        (format!("{}\n{}\n", line(0, 0, r#"["x0"]"#), line(0, 1, r#"["x0"]"#)), "not a choice index"),
    ];
    for (text, want) in cases {
        std::fs::write(&path, &text).unwrap();
        let err = read_olmes(&path).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl") && err.contains(want), "{want}: {err}");
    }
}
