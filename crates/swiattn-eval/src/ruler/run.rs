//! A RULER run: samples generated for each task (in parallel: each is a function of the seed,
//! the task and its index), decoded greedily in batches ([`generate_batch`]) and scored by
//! RULER's string match into one [`TaskResult`] per task.

use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use swiattn_core::model::Transformer;
use swiattn_core::text::documents;
use swiattn_core::tokenizer::encode;
use swiattn_core::{Error, Result};
use tokenizers::Tokenizer;

use super::niah::{Niah, sentences};
use super::{Sample, Sources, sample, score};
use crate::generate::{Until, generate_batch};
use crate::metrics::Estimate;
use crate::results::{AttentionCost, Metric, TaskResult};

/// How samples are generated and decoded.
#[derive(Clone, Copy, Debug)]
pub struct RulerOptions {
    /// Target prompt length in the model's tokens.
    pub length: usize,
    /// Seed of the generated samples.
    pub seed: u64,
    /// Tokens generated per sample (stops earlier at a blank line or an end-of-text token).
    pub max_new_tokens: usize,
    /// Samples decoded together.
    pub batch: usize,
}

/// One decoded sample.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub task: String,
    pub index: usize,
    /// Prompt tokens.
    pub length: usize,
    pub outputs: Vec<String>,
    pub prediction: String,
    pub score: f64,
}

/// Whether any of `tasks` draws needles into essay haystacks (and so needs essays).
pub fn needs_essays(tasks: &[String]) -> bool {
    tasks.iter().any(|t| Niah::named(t).is_ok_and(|n| n.reads_essays()))
}

/// The sentences of essay files, or of the `.txt` files of directories (in name order).
pub fn essay_sentences(paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect();
            files.sort();
            for f in files {
                texts.extend(documents(&f)?);
            }
        } else {
            texts.extend(documents(path)?);
        }
    }
    Ok(sentences(&texts))
}

/// `samples` samples of each task at `options.length` tokens of `tokenizer`.
pub fn generate_samples(
    tasks: &[String],
    samples: usize,
    options: RulerOptions,
    sources: &Sources,
    tokenizer: &Tokenizer,
) -> Result<Vec<Sample>> {
    let count = |text: &str| Ok(encode(tokenizer, text)?.len());
    let jobs: Vec<(&String, usize)> = tasks.iter().flat_map(|t| (0..samples).map(move |i| (t, i))).collect();
    jobs.par_iter()
        .map(|&(name, index)| {
            sample(name, options.seed, index, options.length, options.max_new_tokens, sources, &count)
        })
        .collect()
}

/// Decode and score the samples of each task (in `tasks`' order); `progress(done)` counts samples.
pub fn run(
    tasks: &[String],
    samples: &[Sample],
    model: &Transformer,
    tokenizer: &Tokenizer,
    eos: Vec<u32>,
    options: RulerOptions,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<TaskResult>, Vec<Prediction>)> {
    let until = Until { stop: vec!["\n\n".into()], max_new_tokens: options.max_new_tokens, eos, chunk: None };
    let (mut results, mut predictions) = (Vec::new(), Vec::new());
    let mut done = 0;
    for task in tasks {
        let started = Instant::now();
        let task_samples: Vec<&Sample> = samples.iter().filter(|s| s.task == *task).collect();
        if task_samples.is_empty() {
            return Err(Error::Invalid(format!("no samples of {task}")));
        }
        let contexts: Vec<Vec<u32>> =
            task_samples.iter().map(|s| encode(tokenizer, &s.input)).collect::<Result<_>>()?;
        model.take_fa_ratios()?;
        let generated = generate_batch(model, tokenizer, &contexts, &until, options.batch, |n| progress(done + n))?;
        let routed = model.take_fa_ratios()?;
        done += contexts.len();
        let mut lengths = Vec::with_capacity(contexts.len());
        let mut values = Vec::with_capacity(contexts.len());
        for ((s, ids), g) in task_samples.iter().zip(&contexts).zip(generated) {
            let value = score(&s.task, &g.text, &s.outputs);
            values.push(value);
            lengths.push(ids.len() + g.ids.len().saturating_sub(1)); // the last token is not fed back
            predictions.push(Prediction {
                task: s.task.clone(),
                index: s.index,
                length: ids.len(),
                outputs: s.outputs.clone(),
                prediction: g.text,
                score: value,
            });
        }
        let estimate = Estimate::of(values.iter().copied());
        results.push(TaskResult {
            task: task.clone(),
            output_type: "generate_until".into(),
            source: format!("RULER at {} tokens, seed {}", options.length, options.seed),
            n: values.len(),
            metrics: vec![Metric {
                name: "score".into(),
                value: 100.0 * estimate.value,
                stderr: Some(100.0 * estimate.stderr),
            }],
            sequences: lengths.len(),
            tokens: lengths.iter().sum(),
            attention: AttentionCost::of(&model.arch, lengths.into_iter().map(|n| 0..n), &routed)?,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok((results, predictions))
}
