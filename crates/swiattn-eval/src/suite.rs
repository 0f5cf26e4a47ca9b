//! A suite: the tasks a user names, resolved to task specs and RULER tasks, and a regular task
//! scored on a model into its [`TaskResult`] — what `swiattn eval` runs, usable without the CLI
//! (RULER tasks run through [`crate::ruler::run`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use swiattn_core::model::Transformer;
use swiattn_core::paths::expand_home;
use swiattn_core::{Error, Result};
use tokenizers::Tokenizer;

use crate::evaluate::{Options, evaluate};
use crate::metrics::Decision;
use crate::results::{AttentionCost, TaskResult};
use crate::ruler::TASKS as RULER;
use crate::task::{OutputType, Prepared, REGULAR, TaskSpec};

/// A task to run.
#[derive(Clone, Debug)]
pub enum Task {
    /// A regular task: a built-in spec, a TOML spec, an OLMES request file or documents.
    Spec(TaskSpec),
    /// A RULER task by name.
    Ruler(String),
}

impl Task {
    /// The name its results carry.
    pub fn name(&self) -> &str {
        match self {
            Task::Spec(spec) => &spec.name,
            Task::Ruler(name) => name,
        }
    }
}

/// Task names as `swiattn eval --tasks` takes them, each once and in order: `regular` (the 10
/// regular tasks), `long` (RULER's 13), `all`, a built-in or RULER name, or a `.toml` spec file.
pub fn resolve(names: &[String]) -> Result<Vec<Task>> {
    let mut unique: Vec<String> = Vec::new();
    for name in names {
        let expanded: Vec<String> = match name.as_str() {
            "regular" => REGULAR.iter().map(|(n, _)| n.to_string()).collect(),
            "long" => RULER.iter().map(|n| n.to_string()).collect(),
            "all" => REGULAR.iter().map(|(n, _)| n.to_string()).chain(RULER.iter().map(|n| n.to_string())).collect(),
            other => vec![other.to_string()],
        };
        for n in expanded {
            if !unique.contains(&n) {
                unique.push(n);
            }
        }
    }
    unique
        .into_iter()
        .map(|name| {
            if let Some(spec) = TaskSpec::builtin(&name) {
                Ok(Task::Spec(spec))
            } else if RULER.contains(&name.as_str()) {
                Ok(Task::Ruler(name))
            } else if name.ends_with(".toml") {
                let path = expand_home(&name);
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                Ok(Task::Spec(TaskSpec::parse(&text, &path.display().to_string())?))
            } else {
                let known: Vec<&str> = REGULAR.iter().map(|(n, _)| *n).chain(RULER).collect();
                Err(Error::Invalid(format!(
                    "unknown task `{name}`: use regular, long, all, a .toml spec or one of {}",
                    known.join(", ")
                )))
            }
        })
        .collect()
}

/// A short task name from a file path (`…/arc_easy/rc_0shot/requests.jsonl.gz` → `arc_easy/rc_0shot`).
pub fn task_name(path: &Path) -> String {
    let parts: Vec<String> = path.iter().map(|p| p.to_string_lossy().to_string()).collect();
    match parts.as_slice() {
        [.., task, variant, file] if file.starts_with("requests.jsonl") => format!("{task}/{variant}"),
        [.., file] => file.clone(),
        [] => "documents".into(),
    }
}

/// The assets directory: `$SWIATTN_ASSETS`, else `~/.cache/swiattn-assets`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("SWIATTN_ASSETS") {
        Some(dir) => PathBuf::from(dir),
        None => expand_home("~/.cache/swiattn-assets"),
    }
}

/// A tokenizer's end-of-text tokens: the one that stands for an empty context (and precedes a
/// document's first token), and every one that ends a generation.
pub fn end_of_text(tokenizer: &Tokenizer) -> Result<(u32, Vec<u32>)> {
    let ids = |names: &[&str]| names.iter().filter_map(|t| tokenizer.token_to_id(t)).collect::<Vec<u32>>();
    let eot = *ids(&["<|endoftext|>", "</s>", "<eos>", "<|im_end|>"])
        .first()
        .ok_or_else(|| Error::Invalid("the tokenizer has no end-of-text token to stand for an empty context".into()))?;
    Ok((eot, ids(&["<|endoftext|>", "</s>", "<eos>", "<|im_end|>", "<end_of_turn>"])))
}

/// Prepare (the first `limit` questions or documents), score and cost one regular task;
/// `progress(done, total)` counts sequences. Returns its result and, for multiple choice, every
/// question's decision.
pub fn run_task(
    spec: &TaskSpec,
    data_dir: &Path,
    limit: Option<usize>,
    model: &Transformer,
    tokenizer: &Tokenizer,
    options: Options,
    progress: impl FnMut(usize, usize),
) -> Result<(TaskResult, Vec<Decision>)> {
    let started = Instant::now();
    let in_task = |e: Error| Error::Invalid(format!("task {}: {e}", spec.name));
    let prepared = spec.prepare(data_dir, limit).map_err(in_task)?;
    model.take_fa_ratios()?;
    let outcome = evaluate(&prepared, model, tokenizer, options, progress).map_err(in_task)?;
    let output_type = match (&prepared, spec.output_type) {
        // An OLMES file of single continuations (LAMBADA) is a loglikelihood task.
        (Prepared::Questions(q), _) if q.iter().all(|q| q.choices.len() == 1) => OutputType::Loglikelihood,
        (_, t) => t,
    };
    let result = TaskResult {
        task: spec.name.clone(),
        output_type: output_type.name().to_string(),
        source: spec.source(data_dir).display().to_string(),
        n: outcome.n,
        metrics: outcome.metrics,
        sequences: outcome.spans.len(),
        tokens: outcome.spans.iter().map(|s| s.len()).sum(),
        attention: AttentionCost::of(&model.arch, outcome.spans, &model.take_fa_ratios()?)?,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((result, outcome.decisions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_expand_once_and_unknown_names_are_errors() {
        let names = |v: &[&str]| resolve(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(names(&["regular"]).unwrap().len(), 10);
        assert_eq!(names(&["long", "niah_single_1"]).unwrap().len(), 13);
        assert_eq!(names(&["all"]).unwrap().len(), 23);
        let e = names(&["piqa", "nope"]).unwrap_err().to_string();
        assert!(e.contains("unknown task `nope`"), "{e}");
        assert_eq!(task_name(Path::new("/a/arc_easy/rc_0shot/requests.jsonl.gz")), "arc_easy/rc_0shot");
        assert_eq!(task_name(Path::new("docs.txt")), "docs.txt");
        for t in [OutputType::MultipleChoice, OutputType::Loglikelihood, OutputType::LoglikelihoodRolling] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.name(), "the name specs use");
        }
    }
}
