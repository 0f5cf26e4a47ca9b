//! What a task run reports: its metrics, what it ran on and what its attention cost — the rows of
//! a run's results JSON and markdown table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use swiattn_core::Result;
use swiattn_core::accounting::{RoutedLayers, account};
use swiattn_core::model::Arch;

use crate::metrics::Estimate;

/// One metric of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    /// Standard error over the task's questions or samples, where the metric is a mean.
    pub stderr: Option<f64>,
}

impl Metric {
    pub fn mean(name: &str, estimate: Estimate) -> Self {
        Self { name: name.into(), value: estimate.value, stderr: Some(estimate.stderr) }
    }

    pub fn value(name: &str, value: f64) -> Self {
        Self { name: name.into(), value, stderr: None }
    }
}

/// The attention a task's forward passes ran: per-layer FA ratio (weighted by attention work) and
/// attention FLOPs, against the same sequences under full attention everywhere (see
/// `swiattn_core::accounting` for the count).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionCost {
    pub fa_ratio: f64,
    pub fa_ratio_per_layer: Vec<f64>,
    pub attention_flops: f64,
    pub full_attention_flops: f64,
}

impl AttentionCost {
    /// The cost of running the query positions `spans` (`start..end` of a sequence, each query
    /// attending to the keys before it: `0..n` for a whole sequence, `p..p + c` for a
    /// continuation after a cached context) through `arch`; a routed layer `l` at its achieved
    /// FA ratio `routed[l]` ([`Transformer::take_fa_ratios`](swiattn_core::model::Transformer::take_fa_ratios)),
    /// its tokens taken as routed independently of their position (the expected cost).
    pub fn of(
        arch: &Arch,
        spans: impl IntoIterator<Item = std::ops::Range<usize>>,
        routed: &BTreeMap<usize, f64>,
    ) -> Result<Self> {
        // Every span is the difference of two prefixes: cost(start..end) = cost(0..end) − cost(0..start).
        let mut prefixes: BTreeMap<usize, f64> = BTreeMap::new();
        for span in spans {
            *prefixes.entry(span.end).or_default() += 1.0;
            *prefixes.entry(span.start).or_default() -= 1.0;
        }
        let layers = arch.layers.len();
        let (mut flops, mut full, mut weighted) = (0.0, 0.0, vec![0.0; layers]);
        let mut work = 0.0;
        for (&n, &c) in prefixes.iter().filter(|&(&n, &c)| n > 0 && c != 0.0) {
            let a = account(arch, n, 2, &RoutedLayers::Ratios(routed.clone()))?;
            flops += c * a.attention_flops;
            full += c * a.full_attention_flops;
            work += c * a.full_attention_flops / layers.max(1) as f64;
            for (w, l) in weighted.iter_mut().zip(&a.layers) {
                *w += c * l.fa_ratio * a.full_attention_flops / layers.max(1) as f64;
            }
        }
        let per_layer: Vec<f64> = weighted.iter().map(|w| if work > 0.0 { w / work } else { 0.0 }).collect();
        Ok(Self {
            fa_ratio: per_layer.iter().sum::<f64>() / layers.max(1) as f64,
            fa_ratio_per_layer: per_layer,
            attention_flops: flops,
            full_attention_flops: full,
        })
    }
}

/// One task's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: String,
    /// `multiple_choice`, `loglikelihood`, `loglikelihood_rolling` or `generate_until`.
    pub output_type: String,
    /// The file (or generator settings) the task read.
    pub source: String,
    /// Questions, documents or samples scored.
    pub n: usize,
    pub metrics: Vec<Metric>,
    /// Forward sequences run and their tokens.
    pub sequences: usize,
    pub tokens: usize,
    pub attention: AttentionCost,
    pub seconds: f64,
}

/// The results as a markdown table, one row per metric.
pub fn markdown(results: &[TaskResult]) -> String {
    let mut out = String::from(
        "| task | n | metric | value | ± | FA ratio | attention FLOPs vs full | seconds |\n|---|---:|---|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        for (i, m) in r.metrics.iter().enumerate() {
            let first = i == 0;
            let cell = |s: String| if first { s } else { String::new() };
            let relative = r.attention.attention_flops / r.attention.full_attention_flops.max(f64::MIN_POSITIVE);
            out += &format!(
                "| {} | {} | {} | {:.4} | {} | {} | {} | {} |\n",
                cell(r.task.clone()),
                cell(r.n.to_string()),
                m.name,
                m.value,
                m.stderr.map(|s| format!("{s:.4}")).unwrap_or_default(),
                cell(format!("{:.3}", r.attention.fa_ratio)),
                cell(format!("{relative:.3}")),
                cell(format!("{:.1}", r.seconds)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swiattn_core::model::ModelConfig;

    fn arch(pattern: &str, window: usize) -> Arch {
        let config = format!(
            r#"{{"model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4, "sliding_window": {window},
            "attention_pattern": "{pattern}"}}"#
        );
        ModelConfig::from_json_str(&config, "test").unwrap().resolve("test").unwrap()
    }

    #[test]
    fn cost_counts_keys_per_layer_and_weights_by_length() {
        // Window 2, lengths 3 and 1: full layer 6 + 1 keys, sliding layer (1 + 2 + 2) + 1.
        let a = AttentionCost::of(&arch("FS", 2), [0..3, 0..1], &BTreeMap::new()).unwrap();
        let split = AttentionCost::of(&arch("FS", 2), [0..2, 2..3, 0..1], &BTreeMap::new()).unwrap();
        assert_eq!(split, a, "a continuation after a cached context costs what the rest of the sequence does");
        let per_key = 2.0 * 4.0 * 4.0; // query heads · 4 · head_dim
        assert_eq!(a.attention_flops, (7.0 + 6.0) * per_key);
        assert_eq!(a.full_attention_flops, 2.0 * 7.0 * per_key);
        assert_eq!(a.fa_ratio_per_layer, vec![1.0, 0.0]);
        assert_eq!(a.fa_ratio, 0.5);
        let table = markdown(&[TaskResult {
            task: "t".into(),
            output_type: "multiple_choice".into(),
            source: "f".into(),
            n: 2,
            metrics: vec![Metric::value("acc", 0.5), Metric { name: "acc_norm".into(), value: 1.0, stderr: Some(0.0) }],
            sequences: 2,
            tokens: 4,
            attention: a,
            seconds: 1.0,
        }]);
        assert!(table.contains("| t | 2 | acc | 0.5000 |  | 0.500 | 0.929 | 1.0 |"), "{table}");
        assert!(table.contains("|  |  | acc_norm | 1.0000 | 0.0000 |  |  |  |"), "{table}");
    }
}
