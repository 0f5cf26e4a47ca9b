//! RULER's QA tasks: `qa_1` over SQuAD-style items, `qa_2` over HotpotQA-style items. A sample puts
//! the gold paragraph(s) of one question among paragraphs of other questions ("Document 1: …"),
//! as many as fit the length, in a seeded order, and asks the question; the score is RULER's
//! `string_match_part` (any reference answer contained in the prediction).
//!
//! Items are read from JSONL, one per line: `{"question": "…", "context": "…" or ["…", …],
//! "answers": ["…", …]}` (`context` holds the gold paragraph or paragraphs) — or from OLMES'
//! SQuAD requests as `fetch.sh eval` stores them (`squad/bpb_5shot/requests.jsonl.gz`: each line's
//! `doc` holds `Title: …\nBackground: <paragraph>\nQuestion: <question>\nAnswer:` and
//! `answers_text`; one item per document id). Gzipped files are read as such.

use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use swiattn_core::{Error, Result};

use super::{Sample, largest_fitting, prompt_budget, sample_rng};

/// One question with its gold paragraphs and answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaItem {
    pub question: String,
    pub paragraphs: Vec<String>,
    pub answers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Context {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Plain { question: String, context: Context, answers: Vec<String> },
    Olmes { doc: OlmesDoc },
}

/// The `doc` of an OLMES SQuAD request.
#[derive(Deserialize)]
struct OlmesDoc {
    id: String,
    query: String,
    answers_text: Vec<String>,
}

impl OlmesDoc {
    /// The paragraph and question of `query` (`…Background: P\nQuestion: Q\nAnswer:`).
    fn split(&self) -> Option<(String, String)> {
        let (_, rest) = self.query.split_once("Background: ")?;
        let (paragraph, rest) = rest.split_once("\nQuestion: ")?;
        let question = rest.strip_suffix("Answer:").unwrap_or(rest).trim_end();
        Some((paragraph.trim().to_string(), question.to_string()))
    }
}

/// Read QA items (plain or OLMES SQuAD lines, gzipped or not); a bad line is an error naming
/// `file:line`.
pub fn read_items(path: &Path) -> Result<Vec<QaItem>> {
    let text = crate::dataset::read_text(path)?;
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::new();
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = format!("{}:{}", path.display(), i + 1);
        let line: Line = serde_json::from_str(l).map_err(|e| {
            Error::format(
                &at,
                format!("neither a QA item (question, context, answers) nor an OLMES SQuAD request: {e}"),
            )
        })?;
        let (question, paragraphs, answers) = match line {
            Line::Plain { question, context: Context::One(p), answers } => (question, vec![p], answers),
            Line::Plain { question, context: Context::Many(ps), answers } => (question, ps, answers),
            Line::Olmes { doc } => {
                if !seen.insert(doc.id.clone()) {
                    continue;
                }
                let (paragraph, question) = doc
                    .split()
                    .ok_or_else(|| Error::format(&at, "an OLMES SQuAD query without `Background:` and `Question:`"))?;
                (question, vec![paragraph], doc.answers_text)
            }
        };
        if paragraphs.is_empty() || answers.is_empty() {
            return Err(Error::format(&at, "needs at least one context paragraph and one answer"));
        }
        items.push(QaItem { question, paragraphs, answers });
    }
    Ok(items)
}

/// RULER's `string_match_part`: 1 when the prediction contains any reference (case-insensitive).
pub fn string_match_part(prediction: &str, references: &[String]) -> f64 {
    let prediction = prediction.to_lowercase();
    f64::from(u8::from(references.iter().any(|r| prediction.contains(&r.to_lowercase()))))
}

/// Sample `index`: question `index` (cycling) among as many other items' paragraphs as fit.
pub fn sample(
    name: &str,
    items: &[QaItem],
    seed: u64,
    index: usize,
    length: usize,
    to_generate: usize,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<Sample> {
    if items.len() < 2 {
        return Err(Error::Invalid(format!("{name} needs a QA file of at least 2 items (--squad / --hotpotqa)")));
    }
    let budget = prompt_budget(length, to_generate)?;
    let mut rng = sample_rng(seed, index, 0x0A0A);
    let item = &items[index % items.len()];
    let mut distractors: Vec<&String> = items
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index % items.len())
        .flat_map(|(_, it)| it.paragraphs.iter())
        .filter(|p| !item.paragraphs.contains(p))
        .collect();
    distractors.shuffle(&mut rng);
    let order_seed: u64 = rng.random();
    let prompt = |n: usize| -> String {
        let mut docs: Vec<&String> = item.paragraphs.iter().chain(distractors[..n].iter().copied()).collect();
        docs.shuffle(&mut StdRng::seed_from_u64(order_seed));
        let docs: Vec<String> = docs.iter().enumerate().map(|(i, d)| format!("Document {}:\n{d}", i + 1)).collect();
        let ask = "Answer the question based on the given documents. Only give me the answer and do not output any other words.";
        format!(
            "{ask}\n\nThe following are given documents.\n\n{}\n\n{ask}\n\nQuestion: {} Answer:",
            docs.join("\n\n"),
            item.question
        )
    };
    if count(&prompt(0))? > budget {
        return Err(Error::Invalid(format!(
            "{name} at {length} tokens: the gold paragraphs alone exceed {budget} tokens"
        )));
    }
    let input = prompt(largest_fitting(distractors.len(), budget, &prompt, count)?);
    let length = count(&input)?;
    Ok(Sample { task: name.to_string(), index, input, outputs: item.answers.clone(), length })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<QaItem> {
        (0..30)
            .map(|i| QaItem {
                question: format!("What is item {i} made of?"),
                paragraphs: vec![
                    format!("Item {i} is made of material {i} and nothing else."),
                    format!("Extra fact {i}."),
                ],
                answers: vec![format!("material {i}")],
            })
            .collect()
    }

    fn words(text: &str) -> Result<usize> {
        Ok(text.split_whitespace().count())
    }

    #[test]
    fn olmes_squad_requests_read_as_items_once_per_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl.gz");
        let line = |id: &str, q: &str| {
            let query = format!("Title: T\nBackground: Paris is in France.\nQuestion: {q}\nAnswer:");
            let doc = serde_json::json!({"id": id, "query": query, "answers_text": ["France", "France"]});
            serde_json::json!({"request_type": "loglikelihood", "doc": doc, "request": {"context": "…"}}).to_string()
        };
        let text = [line("a", "Where is Paris?"), line("a", "Where is Paris?"), line("b", "What is Paris in?")];
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
        std::io::Write::write_all(&mut gz, text.join("\n").as_bytes()).unwrap();
        gz.finish().unwrap();
        let items = read_items(&path).unwrap();
        assert_eq!(items.len(), 2, "one item per document id");
        assert_eq!(items[0].question, "Where is Paris?");
        assert_eq!(items[0].paragraphs, vec!["Paris is in France.".to_string()]);
        assert_eq!(items[1].answers, vec!["France".to_string(), "France".to_string()]);
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"question\": \"q\", \"context\": \"c\", \"answers\": []}\n{}\n").unwrap();
        let e = read_items(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:1") && e.contains("one answer"), "{e}");
    }

    #[test]
    fn samples_hold_the_gold_paragraphs_among_distractors() {
        let items = items();
        let s = sample("qa_2", &items, 1, 3, 300, 20, &words).unwrap();
        assert!(s.length <= 280 && s.length > 250, "{}", s.length);
        assert!(s.input.contains("Item 3 is made of material 3") && s.input.contains("Extra fact 3."));
        assert!(s.input.matches("Document ").count() > 10);
        assert!(s.input.ends_with("Question: What is item 3 made of? Answer:"));
        assert_eq!(s.outputs, vec!["material 3"]);
        assert_eq!(sample("qa_2", &items, 1, 3, 300, 20, &words).unwrap(), s);
        assert!(sample("qa_1", &items[..1], 1, 0, 300, 20, &words).is_err());
    }

    #[test]
    fn partial_match_needs_any_reference() {
        let refs = vec!["Paris".to_string(), "the capital".to_string()];
        assert_eq!(string_match_part("It is paris.", &refs), 1.0);
        assert_eq!(string_match_part("London", &refs), 0.0);
    }

    #[test]
    fn items_read_from_jsonl_with_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qa.jsonl");
        std::fs::write(
            &path,
            "{\"question\": \"q?\", \"context\": \"p.\", \"answers\": [\"a\"]}\n{\"question\": \"r?\", \"context\": [\"x.\", \"y.\"], \"answers\": [\"b\"]}\n",
        )
        .unwrap();
        let items = read_items(&path).unwrap();
        assert_eq!(items[1].paragraphs, vec!["x.", "y."]);
        std::fs::write(&path, "{\"question\": \"q?\", \"context\": \"p.\", \"answers\": []}\n").unwrap();
        let err = read_items(&path).unwrap_err().to_string();
        assert!(err.contains("qa.jsonl:1"), "{err}");
    }
}
