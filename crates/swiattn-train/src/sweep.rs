//! Ablation sweeps: a grid of policy × budget × window × seed over one base training config, each
//! cell a training run in its own directory; finished cells are skipped and unfinished ones
//! resumed; one results table (CSV and markdown) and a plot of quality against the achieved FA
//! ratio per policy.
//!
//! ```toml
//! base = "quick.toml"             # a training config (relative to this file), or a [base] table
//! out = "sweeps/quick"            # [default: sweeps/<this file's stem>]
//!
//! [grid]
//! policy = ["full", "sliding", "swiattn", "consa", "rule:interleave:1", "rule:heads:{budget}"]
//! budget = [0.125, 0.25]          # SwiAttn's FA target, ConSA's budget, `{budget}` in a rule
//! window = [8, 16]                # [default: the base's sliding_window]
//! seed = [0, 1]                   # [default: the base's seed]
//!
//! [eval]                          # optional: the harness on every finished cell's last checkpoint
//! args = ["--tasks", "regular", "--limit", "500", "--dtype", "bf16"]   # `swiattn eval`'s flags
//! ```
//!
//! With `[eval]`, each finished cell is scored once (`cells/<cell>/eval.json`, skipped when present)
//! and the results table gains a column per task's first metric and the FA ratio the cell's
//! layout or routers achieved over the harness's tokens.
//!
//! Policies: `full` and `sliding` (every layer), `swiattn` (every layer routed, regularizer target =
//! budget), `consa` (ConSA's two stages, gates budget = budget; the base's `[consa]` section or
//! half the steps per stage with KV-head gates), `consa:layer` and `consa:kv_head` (the same with
//! that granularity), `duo` (Duo's head gates in two stages, binarized to the budget; the base's
//! `[duo]` section or half the steps per stage), `rule:<spec>` (a rule baseline's layout, as for
//! `swiattn allocate`). Budget-free policies run once per window and seed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use swiattn_core::{Error, Result};
use swiattn_router::consa::{Binarize, ConsaConfig};
use swiattn_router::duo::DuoConfig;
use swiattn_router::{Budget, Granularity};

use crate::config::{ConsaSection, DuoSection, TrainConfig};
use crate::run::Summary;

/// A sweep file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    pub base: Base,
    #[serde(default)]
    pub out: Option<PathBuf>,
    pub grid: Grid,
    #[serde(default)]
    pub eval: Option<SweepEval>,
}

/// `[eval]`: the harness run on each finished cell.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepEval {
    /// `swiattn eval`'s flags, without `--model` and `--results` (the sweep sets both).
    pub args: Vec<String>,
}

/// The base training config: a file or an inline table.
#[derive(Clone, Debug)]
pub enum Base {
    File(PathBuf),
    Inline(Box<TrainConfig>),
}

/// A path, or a table read as a training config whose errors name their key (serde's `untagged`
/// would say only that neither matched).
impl<'de> Deserialize<'de> for Base {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(path) => Ok(Base::File(path.into())),
            toml::Value::Table(table) => swiattn_core::tagged::fields(table).map(|c| Base::Inline(Box::new(c))),
            other => Err(serde::de::Error::custom(format!(
                "base must be a config file's path or a [base] table, not {}",
                other.type_str()
            ))),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub policy: Vec<String>,
    #[serde(default)]
    pub budget: Vec<f64>,
    #[serde(default)]
    pub window: Vec<usize>,
    #[serde(default)]
    pub seed: Vec<u64>,
}

/// One cell of the grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    pub policy: String,
    /// `None` for budget-free policies.
    pub budget: Option<f64>,
    pub window: usize,
    pub seed: u64,
}

impl Cell {
    /// The cell's directory name.
    pub fn name(&self) -> String {
        let budget = self.budget.map(|b| format!("-b{b}")).unwrap_or_default();
        let policy: String = self
            .policy
            .replace("{budget}", "")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
            .collect();
        format!("{policy}{budget}-w{}-s{}", self.window, self.seed)
    }

    fn uses_budget(policy: &str) -> bool {
        policy == "swiattn" || policy == "duo" || policy.starts_with("consa") || policy.contains("{budget}")
    }

    /// The base config specialized to this cell.
    pub fn config(&self, base: &TrainConfig) -> Result<TrainConfig> {
        let mut c = base.clone();
        c.seed = self.seed;
        c.model.sliding_window = self.window;
        c.model.rule.clear();
        let budget = || Budget::new(self.budget.expect("budget policies have a budget"));
        let (consa, duo) = (c.consa.take(), c.duo.take());
        let stage1_steps = (base.steps / 2).max(1);
        match self.policy.as_str() {
            "full" => c.model.attention_pattern = "F".into(),
            "sliding" => c.model.attention_pattern = "S".into(),
            "swiattn" => {
                c.model.attention_pattern = "R".into();
                c.routing.regularizer.target = budget()?;
            }
            "consa" | "consa:layer" | "consa:kv_head" => {
                c.model.attention_pattern = "F".into();
                let mut section = consa.unwrap_or_else(|| ConsaSection {
                    stage1_steps,
                    binarize: Binarize::TopK,
                    gates: ConsaConfig::new(Granularity::KvHead, Budget::new(0.5).expect("a valid budget")),
                });
                section.gates.budget = budget()?;
                match self.policy.as_str() {
                    "consa:layer" => section.gates.granularity = Granularity::Layer,
                    "consa:kv_head" => section.gates.granularity = Granularity::KvHead,
                    _ => {}
                }
                c.consa = Some(section);
            }
            "duo" => {
                c.model.attention_pattern = "F".into();
                let budget = budget()?;
                let mut section = duo.unwrap_or_else(|| DuoSection { stage1_steps, gates: DuoConfig::new(budget) });
                section.gates.budget = budget;
                c.duo = Some(section);
            }
            rule if rule.starts_with("rule:") => {
                let spec = &rule["rule:".len()..];
                c.model.rule = match self.budget {
                    Some(b) => spec.replace("{budget}", &b.to_string()),
                    None => spec.to_string(),
                };
            }
            other => {
                return Err(Error::Invalid(format!(
                    "unknown policy `{other}` (full, sliding, swiattn, consa, consa:layer, consa:kv_head, duo or rule:<spec>)"
                )));
            }
        }
        c.validate(&format!("sweep cell {}", self.name()))?;
        Ok(c)
    }
}

impl SweepConfig {
    /// Read a sweep file; the base config path is taken relative to it.
    pub fn from_file(path: &Path) -> Result<(Self, TrainConfig)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let sweep: SweepConfig =
            toml::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let base = match &sweep.base {
            Base::File(file) => TrainConfig::from_file(&path.parent().unwrap_or(Path::new(".")).join(file))?,
            Base::Inline(config) => {
                config.validate(&format!("{}: [base]", path.display()))?;
                (**config).clone()
            }
        };
        if sweep.grid.policy.is_empty() {
            return Err(Error::config(path.display().to_string(), "grid.policy", "no policies"));
        }
        if sweep.grid.policy.iter().any(|p| Cell::uses_budget(p)) && sweep.grid.budget.is_empty() {
            return Err(Error::config(
                path.display().to_string(),
                "grid.budget",
                "swiattn, consa, duo and {budget} rules need budgets",
            ));
        }
        Ok((sweep, base))
    }

    /// The grid's cells, policies outermost; budget-free policies once per window and seed.
    pub fn cells(&self, base: &TrainConfig) -> Vec<Cell> {
        let windows =
            if self.grid.window.is_empty() { vec![base.model.sliding_window] } else { self.grid.window.clone() };
        let seeds = if self.grid.seed.is_empty() { vec![base.seed] } else { self.grid.seed.clone() };
        let mut cells = Vec::new();
        for policy in &self.grid.policy {
            let budgets: Vec<Option<f64>> = if Cell::uses_budget(policy) {
                self.grid.budget.iter().map(|&b| Some(b)).collect()
            } else {
                vec![None]
            };
            for budget in &budgets {
                for &window in &windows {
                    for &seed in &seeds {
                        cells.push(Cell { policy: policy.clone(), budget: *budget, window, seed });
                    }
                }
            }
        }
        cells
    }
}

/// What to do with a cell's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellState {
    /// `summary.json` of all the cell's steps is there.
    Done,
    /// Checkpoints of an unfinished run: resume it.
    Resume,
    Fresh,
}

pub fn cell_state(dir: &Path, config: &TrainConfig) -> Result<CellState> {
    if let Some(summary) = read_summary(dir)?
        && summary.steps == config.steps
    {
        return Ok(CellState::Done);
    }
    Ok(if crate::checkpoint::list(dir)?.is_empty() { CellState::Fresh } else { CellState::Resume })
}

/// A finished cell's `summary.json`, if there is one.
pub fn read_summary(dir: &Path) -> Result<Option<CellSummary>> {
    let path = dir.join("summary.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| Error::format(path.display().to_string(), e.to_string()))
}

/// The fields of a run's summary that the results table joins.
#[derive(Clone, Debug, Deserialize)]
pub struct CellSummary {
    pub steps: usize,
    pub final_loss: f64,
    pub eval_loss: f64,
    pub recall_accuracy: Option<f64>,
    pub best: Option<crate::checkpoint::Best>,
    pub fa_ratio: f64,
    pub attention_flops_vs_full: f64,
    /// Absent in summaries written before it was reported.
    #[serde(default)]
    pub kv_bytes_vs_full: Option<f64>,
    pub tokens_per_s: f64,
}

impl From<&Summary> for CellSummary {
    fn from(s: &Summary) -> Self {
        Self {
            steps: s.steps,
            final_loss: s.final_loss,
            eval_loss: s.eval_loss,
            recall_accuracy: s.recall_accuracy,
            best: s.best,
            fa_ratio: s.fa_ratio,
            attention_flops_vs_full: s.attention_flops_vs_full,
            kv_bytes_vs_full: Some(s.kv_bytes_vs_full),
            tokens_per_s: s.tokens_per_s,
        }
    }
}

/// A cell's harness results (`eval.json` of `swiattn eval --results`): each task's first metric,
/// and the FA ratio achieved over the harness's tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct CellEval {
    pub metrics: Vec<(String, f64)>,
    pub fa_ratio: f64,
}

/// A cell's `eval.json`, if the harness has run on it.
pub fn read_eval(dir: &Path) -> Result<Option<CellEval>> {
    let path = dir.join("eval.json");
    if !path.exists() {
        return Ok(None);
    }
    let bad = |what: &str| Error::format(path.display().to_string(), format!("no {what}"));
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let run: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(path.display().to_string(), e.to_string()))?;
    // An eval stopped part-way (`swiattn eval` rewrites the file after each task) is not a result
    // yet; the sweep resumes it. Files from before `complete` existed were only written whole.
    if run["complete"] == false {
        return Ok(None);
    }
    let mut metrics = Vec::new();
    for task in run["tasks"].as_array().ok_or_else(|| bad("tasks"))? {
        let metric = &task["metrics"][0];
        let (Some(name), Some(metric_name), Some(value)) =
            (task["task"].as_str(), metric["name"].as_str(), metric["value"].as_f64())
        else {
            return Err(bad("task name, metric name and value"));
        };
        metrics.push((format!("{name}:{metric_name}"), value));
    }
    let fa_ratio = run["attention"]["fa_ratio"].as_f64().ok_or_else(|| bad("attention.fa_ratio"))?;
    Ok(Some(CellEval { metrics, fa_ratio }))
}

const COLUMNS: [&str; 14] = [
    "policy",
    "budget",
    "window",
    "seed",
    "steps",
    "final_loss",
    "eval_loss",
    "best_eval_loss",
    "recall_accuracy",
    "fa_ratio",
    "attention_flops_vs_full",
    "kv_bytes_vs_full_32k",
    "tokens_per_s",
    "run",
];

fn row(cell: &Cell, s: &CellSummary, dir: &str) -> Vec<String> {
    let opt = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_default();
    vec![
        cell.policy.clone(),
        opt(cell.budget, 3),
        cell.window.to_string(),
        cell.seed.to_string(),
        s.steps.to_string(),
        format!("{:.4}", s.final_loss),
        format!("{:.4}", s.eval_loss),
        opt(s.best.map(|b| b.loss), 4),
        opt(s.recall_accuracy, 3),
        format!("{:.3}", s.fa_ratio),
        format!("{:.3}", s.attention_flops_vs_full),
        opt(s.kv_bytes_vs_full, 3),
        format!("{:.0}", s.tokens_per_s),
        dir.to_string(),
    ]
}

/// Write `results.csv`, `results.md` and `quality_vs_fa.png` into `out` for the finished cells,
/// with the harness's columns (`eval_fa_ratio`, then `task:metric` in first-seen order) and
/// `tasks_vs_fa.png` (question accuracy and RULER score against that ratio) when any cell has them.
pub fn write_results(out: &Path, results: &[(Cell, CellSummary, Option<CellEval>)]) -> Result<()> {
    let mut columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut metrics: Vec<String> = Vec::new();
    for (_, _, eval) in results {
        for (name, _) in eval.iter().flat_map(|e| &e.metrics) {
            if !metrics.contains(name) {
                metrics.push(name.clone());
            }
        }
    }
    if results.iter().any(|(_, _, e)| e.is_some()) {
        columns.push("eval_fa_ratio".into());
        columns.extend(metrics.iter().cloned());
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(c, s, eval)| {
            let mut r = row(c, s, &format!("cells/{}", c.name()));
            if columns.len() > COLUMNS.len() {
                r.push(eval.as_ref().map(|e| format!("{:.3}", e.fa_ratio)).unwrap_or_default());
                for name in &metrics {
                    let value = eval.as_ref().and_then(|e| e.metrics.iter().find(|(n, _)| n == name));
                    r.push(value.map(|(_, v)| format!("{v:.4}")).unwrap_or_default());
                }
            }
            r
        })
        .collect();
    let csv_field =
        |f: &String| if f.contains([',', '"']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.clone() };
    let mut csv = columns.join(",") + "\n";
    for r in &rows {
        csv += &(r.iter().map(csv_field).collect::<Vec<_>>().join(",") + "\n");
    }
    let mut md = format!("| {} |\n|{}\n", columns.join(" | "), "---|".repeat(columns.len()));
    for r in &rows {
        md += &format!("| {} |\n", r.join(" | "));
    }
    for (name, text) in [("results.csv", csv), ("results.md", md)] {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    let label = |cell: &Cell| {
        if cell.window == results[0].0.window {
            cell.policy.clone()
        } else {
            format!("{} w{}", cell.policy, cell.window)
        }
    };
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (cell, s, _) in results {
        add_point(&mut series, label(cell), (s.fa_ratio, s.eval_loss));
    }
    swiattn_router::plot::series(
        &series,
        "held-out loss against the achieved FA ratio",
        "FA ratio (all layers)",
        "eval loss",
        &out.join("quality_vs_fa.png"),
    )?;
    // The harness's two families against the FA ratio achieved on its own tokens: the mean
    // accuracy of the question tasks and the mean RULER score (as a fraction).
    let mut families: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (cell, _, eval) in results {
        let Some(eval) = eval else { continue };
        let mean = |keep: &dyn Fn(&str) -> bool, scale: f64| {
            let values: Vec<f64> = eval.metrics.iter().filter(|(n, _)| keep(n)).map(|(_, v)| v / scale).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        for (family, value) in [
            ("questions", mean(&|n: &str| n.ends_with(":acc"), 1.0)),
            ("RULER", mean(&|n: &str| n.ends_with(":score"), 100.0)),
        ] {
            if let Some(value) = value {
                add_point(&mut families, format!("{} ({family})", label(cell)), (eval.fa_ratio, value));
            }
        }
    }
    if families.is_empty() {
        return Ok(());
    }
    swiattn_router::plot::series(
        &families,
        "task quality against the FA ratio achieved in the harness",
        "FA ratio (harness tokens)",
        "mean accuracy / RULER score",
        &out.join("tasks_vs_fa.png"),
    )
}

/// Add `point` to the series named `label` (a new one if there is none yet).
fn add_point(series: &mut Vec<(String, Vec<(f64, f64)>)>, label: String, point: (f64, f64)) {
    match series.iter_mut().find(|(l, _)| *l == label) {
        Some((_, points)) => points.push(point),
        None => series.push((label, vec![point])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(policy: &str, budget: f64) -> TrainConfig {
        let mut base = TrainConfig::default();
        base.model.kv_heads = 2;
        Cell { policy: policy.into(), budget: Some(budget), window: 16, seed: 0 }.config(&base).unwrap()
    }

    #[test]
    fn errors_inside_an_inline_base_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        for (text, want) in [
            ("[base]\nsteps = \"x\"\n[grid]\npolicy = [\"full\"]", "steps: invalid type: string"),
            ("[base.data]\ntask = \"lagged_copy\"\nlag = 1.5\n[grid]\npolicy = [\"full\"]", "lag: invalid type"),
            ("base = 3\n[grid]\npolicy = [\"full\"]", "not integer"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = SweepConfig::from_file(&path).unwrap_err().to_string();
            assert!(e.contains("sweep.toml") && e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn allocation_policies_set_their_section_and_granularity() {
        for (policy, granularity) in [
            ("consa", Granularity::KvHead),
            ("consa:layer", Granularity::Layer),
            ("consa:kv_head", Granularity::KvHead),
        ] {
            let c = cell(policy, 0.25);
            let section = c.consa.as_ref().unwrap();
            assert_eq!((section.gates.granularity, section.gates.budget.fraction()), (granularity, 0.25), "{policy}");
            assert_eq!((c.duo.is_none(), c.model.attention_pattern.as_str()), (true, "F"), "{policy}");
        }
        let c = cell("duo", 0.5);
        let section = c.duo.as_ref().unwrap();
        assert_eq!((section.stage1_steps, section.gates.budget.fraction()), (1000, 0.5));
        assert!(c.consa.is_none());
        assert_eq!(c.stage1_steps(), Some((1000, "duo")));
        assert!(
            Cell { policy: "consa:head".into(), budget: Some(0.5), window: 16, seed: 0 }
                .config(&TrainConfig::default())
                .is_err()
        );
    }
}
