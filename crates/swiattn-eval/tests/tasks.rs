//! The built-in task specs against lm-evaluation-harness: the requests our templates build from
//! invented documents (Arrow files shaped like each dataset) equal those lm-eval's own task
//! configs build from the same files (`tools/make_task_fixtures.py` wrote both).

use std::path::{Path, PathBuf};

use swiattn_eval::task::{Prepared, REGULAR, TaskSpec};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tasks")
}

#[test]
fn built_in_templates_build_lm_evals_requests() {
    let expected = std::fs::read_to_string(fixtures().join("lm_eval_requests.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = expected.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut checked = 0;
    for (name, _) in REGULAR {
        let want: Vec<&serde_json::Value> = lines.iter().filter(|l| l["task"] == name).collect();
        if want.is_empty() {
            assert!(["wikitext", "lambada"].contains(&name), "no lm-eval fixture for {name}");
            continue;
        }
        let mut spec = TaskSpec::builtin(name).unwrap();
        spec.dataset = Some(fixtures().join(name));
        let Prepared::Questions(questions) = spec.prepare(Path::new("/nonexistent"), None).unwrap() else {
            panic!("{name} is multiple choice")
        };
        assert_eq!(questions.len(), want.len(), "{name}");
        for (q, w) in questions.iter().zip(want) {
            let requests: Vec<(String, String)> =
                q.choices.iter().map(|r| (r.context.clone(), r.continuation.clone())).collect();
            let lm_eval: Vec<(String, String)> = serde_json::from_value(w["requests"].clone()).unwrap();
            assert_eq!(requests, lm_eval, "{name} document {}", q.doc_id);
            assert_eq!(q.label as u64, w["label"].as_u64().unwrap(), "{name} document {}", q.doc_id);
            checked += 1;
        }
    }
    assert_eq!(checked, 16, "two documents of each of the eight multiple-choice tasks");
}

#[test]
fn user_specs_read_jsonl_and_requests_and_name_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("docs.jsonl"), "{\"q\": \"2+2\", \"a\": [\"3\", \"4\"], \"gold\": \"4\"}\n")
        .unwrap();
    let spec = TaskSpec::parse(
        "name = \"sums\"\noutput_type = \"multiple_choice\"\ndataset = \"docs.jsonl\"\n\
         doc_to_text = \"{{q}} =\"\ndoc_to_choice = \"a\"\ndoc_to_target = \"gold\"\n",
        "sums.toml",
    )
    .unwrap();
    let Prepared::Questions(q) = spec.prepare(dir.path(), None).unwrap() else { panic!() };
    assert_eq!(
        (q[0].label, q[0].choices[1].context.as_str(), q[0].choices[1].continuation.as_str()),
        (1, "2+2 =", " 4")
    );
    assert_eq!(q[0].chars, vec![1, 1], "acc_norm divides by the choice's characters, not the delimiter's");

    std::fs::write(dir.path().join("docs.jsonl"), "{\"q\": \"x\", \"a\": [\"3\"], \"gold\": \"5\"}\n").unwrap();
    let err = spec.prepare(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("docs.jsonl: document 0") && err.contains("neither a choice index nor a choice"), "{err}");
    std::fs::write(dir.path().join("docs.jsonl"), "{\"a\": [\"3\"], \"gold\": 0}\n").unwrap();
    let with_method = TaskSpec { doc_to_text: Some("{{ q.strip() }}".into()), ..spec.clone() };
    let err = with_method.prepare(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("document 0") && err.contains("doc_to_text"), "{err}");

    let bad = |toml: &str, needle: &str| {
        let err = TaskSpec::parse(toml, "t.toml").unwrap_err().to_string();
        assert!(err.contains("t.toml") && err.contains(needle), "{err}");
    };
    bad("name = \"x\"\noutput_type = \"multiple_choice\"\ndataset = \"d\"\ndoc_to_text = \"t\"\n", "doc_to_choice");
    bad("name = \"x\"\noutput_type = \"generate\"\ndataset = \"d\"\n", "output_type");
    bad("name = \"x\"\noutput_type = \"loglikelihood\"\n", "no `dataset`");
    bad("name = \"x\"\noutput_type = \"loglikelihood_rolling\"\ndataset = \"d\"\nfewshot = 5\n", "fewshot");
    bad(
        "name = \"x\"\noutput_type = \"loglikelihood_rolling\"\ndataset = \"d\"\n[filters]\nf = \"{{ value\"\n",
        "filter `f`",
    );

    let rolling =
        TaskSpec::parse("name = \"w\"\noutput_type = \"loglikelihood_rolling\"\ndataset = \"essays\"\n", "w").unwrap();
    std::fs::create_dir(dir.path().join("essays")).unwrap();
    std::fs::write(dir.path().join("essays/b.txt"), "second").unwrap();
    std::fs::write(dir.path().join("essays/a.txt"), "first").unwrap();
    assert_eq!(rolling.prepare(dir.path(), None).unwrap(), Prepared::Documents(vec!["first".into(), "second".into()]));
    assert_eq!(rolling.prepare(dir.path(), Some(1)).unwrap(), Prepared::Documents(vec!["first".into()]));
}
