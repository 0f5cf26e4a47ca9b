//! Requests: a `loglikelihood` request scores a continuation after a context; a multiple-choice
//! question is one request per choice plus the index of the right one.
//!
//! OLMES request files (`oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`, as `fetch.sh eval`
//! provides them) hold one line per choice:
//! `{"request_type": "loglikelihood", "request": {"context", "continuation"}, "doc_id", "idx", "label", ...}`
//! where `idx` is the choice and `label` the right choice of the question `doc_id`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use swiattn_core::{Error, Result};

/// Score `continuation` after `context`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Request {
    pub context: String,
    pub continuation: String,
}

/// A multiple-choice question: its choices as requests and the right one.
#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    pub doc_id: u64,
    pub choices: Vec<Request>,
    pub label: usize,
    /// Characters `acc_norm` divides each choice's log-likelihood by: the choice string's (lm-eval),
    /// or the whole continuation's for requests read from files.
    pub chars: Vec<usize>,
}

#[derive(Deserialize)]
struct Line {
    request_type: String,
    request: Request,
    doc_id: u64,
    idx: usize,
    label: serde_json::Value,
}

/// Read an OLMES request file (gzip when it ends in `.gz`) into its questions, in order of
/// `doc_id`. Errors name the file and line: bad JSON, a missing field, a request type other than
/// `loglikelihood`, choices that skip an index, or a label that is not one of the choices (a label
/// that is no index at all, as LAMBADA's answer strings, is allowed for single-choice documents).
pub fn read_olmes(path: &Path) -> Result<Vec<Question>> {
    let name = path.display().to_string();
    let text = crate::dataset::read_text(path)?;
    let mut questions: BTreeMap<u64, (Vec<Option<Request>>, Option<usize>, usize)> = BTreeMap::new();
    // A question's choices are numbered 0, 1, … one line each: no index reaches the line count.
    let requests = text.lines().filter(|l| !l.trim().is_empty()).count();
    for (i, raw) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = format!("{name}:{}", i + 1);
        let line: Line = serde_json::from_str(raw).map_err(|e| Error::format(&at, e.to_string()))?;
        if line.request_type != "loglikelihood" {
            return Err(Error::format(
                &at,
                format!("request type `{}` (this reader takes loglikelihood)", line.request_type),
            ));
        }
        // A choice index; anything else (LAMBADA's answer strings) is only valid for a single choice.
        let label = match &line.label {
            serde_json::Value::Number(n) => n.as_u64().map(|n| n as usize),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let (choices, q_label, first_line) = questions.entry(line.doc_id).or_insert((Vec::new(), label, i + 1));
        if *q_label != label {
            return Err(Error::format(
                &at,
                format!("label {} differs from line {first_line}'s for doc {}", line.label, line.doc_id),
            ));
        }
        if line.idx >= requests {
            return Err(Error::format(
                &at,
                format!("choice index {} of doc {}, but the file holds {requests} requests", line.idx, line.doc_id),
            ));
        }
        if choices.len() <= line.idx {
            choices.resize(line.idx + 1, None);
        }
        if choices[line.idx].replace(line.request).is_some() {
            return Err(Error::format(&at, format!("choice {} of doc {} appears twice", line.idx, line.doc_id)));
        }
    }
    questions
        .into_iter()
        .map(|(doc_id, (choices, label, first_line))| {
            let at = format!("{name}:{first_line}");
            let choices: Vec<Request> = choices
                .into_iter()
                .enumerate()
                .map(|(i, c)| c.ok_or_else(|| Error::format(&at, format!("doc {doc_id} has no choice {i}"))))
                .collect::<Result<_>>()?;
            let label = match label {
                Some(label) if label < choices.len() => label,
                Some(label) => {
                    return Err(Error::format(
                        &at,
                        format!("doc {doc_id}: label {label} but {} choices", choices.len()),
                    ));
                }
                None if choices.len() == 1 => 0,
                None => return Err(Error::format(&at, format!("doc {doc_id}: the label is not a choice index"))),
            };
            let chars = choices.iter().map(|c| c.continuation.chars().count()).collect();
            Ok(Question { doc_id, choices, label, chars })
        })
        .collect()
}
