//! Rule-based allocations, the baselines of both papers: all-full, all-sliding, interleaving
//! `k` sliding layers with one full layer (Gemma 3 is 5:1: of 18 layers, 5, 11 and 17 are full),
//! an explicit layer list, the first / last / middle `n` layers, and a fixed fraction of KV heads
//! in every layer.
//!
//! Spelled on the command line as `all-full`, `all-sliding`, `interleave:5`, `layers:3,7,11`,
//! `first:2`, `last:2`, `middle:2`, `heads:0.25`.

use std::str::FromStr;

use swiattn_core::attention::Window;
use swiattn_core::model::{Allocation, Granularity, ModelShape};
use swiattn_core::{Error, Result};

use crate::Budget;

/// A rule that places full attention without learning.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    AllFull,
    AllSliding,
    /// `sliding` sliding layers, then one full layer, repeated: layer `i` is full iff
    /// `(i + 1) % (sliding + 1) == 0`.
    Interleave {
        sliding: usize,
    },
    /// These layers full, the rest sliding.
    Layers(Vec<usize>),
    /// The first `n` layers full.
    First(usize),
    /// The last `n` layers full.
    Last(usize),
    /// `n` consecutive layers in the middle full (starting at `(layers - n) / 2`).
    Middle(usize),
    /// In every layer, the first KV heads are full so that `round(fraction · layers · kv_heads)`
    /// heads are full in all, spread as evenly as possible over the layers.
    HeadFraction(Budget),
}

impl Rule {
    /// The rule's name, as it is spelled on the command line.
    pub fn name(&self) -> String {
        match self {
            Rule::AllFull => "all-full".into(),
            Rule::AllSliding => "all-sliding".into(),
            Rule::Interleave { sliding } => format!("interleave:{sliding}"),
            Rule::Layers(l) => format!("layers:{}", l.iter().map(usize::to_string).collect::<Vec<_>>().join(",")),
            Rule::First(n) => format!("first:{n}"),
            Rule::Last(n) => format!("last:{n}"),
            Rule::Middle(n) => format!("middle:{n}"),
            Rule::HeadFraction(b) => format!("heads:{}", b.fraction()),
        }
    }

    /// The allocation this rule makes for a model.
    pub fn allocation(&self, model: &ModelShape, window: Window) -> Result<Allocation> {
        let layers = model.num_hidden_layers;
        let count = |n: usize| -> Result<usize> {
            if n > layers {
                Err(Error::Invalid(format!("rule `{}` asks for {n} full layers of {layers}", self.name())))
            } else {
                Ok(n)
            }
        };
        let per_layer = |full: Vec<bool>| {
            Allocation::new(
                self.name(),
                model.clone(),
                window,
                Granularity::Layer,
                full.into_iter().map(|f| vec![f]).collect(),
            )
        };
        match self {
            Rule::AllFull => per_layer(vec![true; layers]),
            Rule::AllSliding => per_layer(vec![false; layers]),
            Rule::Interleave { sliding } => per_layer((0..layers).map(|i| (i + 1) % (sliding + 1) == 0).collect()),
            Rule::Layers(list) => {
                if let Some(bad) = list.iter().find(|&&l| l >= layers) {
                    return Err(Error::Invalid(format!(
                        "rule `{}`: layer {bad} does not exist ({layers} layers)",
                        self.name()
                    )));
                }
                per_layer((0..layers).map(|i| list.contains(&i)).collect())
            }
            Rule::First(n) => {
                let n = count(*n)?;
                per_layer((0..layers).map(|i| i < n).collect())
            }
            Rule::Last(n) => {
                let n = count(*n)?;
                per_layer((0..layers).map(|i| i >= layers - n).collect())
            }
            Rule::Middle(n) => {
                let n = count(*n)?;
                let start = (layers - n) / 2;
                per_layer((0..layers).map(|i| (start..start + n).contains(&i)).collect())
            }
            Rule::HeadFraction(budget) => {
                let heads = model.num_key_value_heads;
                let total = budget.units(layers * heads);
                // Layer l gets the heads between the rounded cumulative shares l and l + 1.
                let share = |l: usize| ((l * total) as f64 / layers as f64).round() as usize;
                let full = (0..layers).map(|l| (0..heads).map(|h| h < share(l + 1) - share(l)).collect()).collect();
                let mut allocation = Allocation::new(self.name(), model.clone(), window, Granularity::KvHead, full)?;
                allocation.budget = Some(budget.fraction());
                Ok(allocation)
            }
        }
    }
}

impl FromStr for Rule {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "rule `{s}`: {why} (all-full, all-sliding, interleave:K, layers:I,J,.., first:N, last:N, middle:N, heads:F)"
            ))
        };
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let number = || arg.trim().parse::<usize>().map_err(|_| bad("expected a whole number"));
        Ok(match name.trim() {
            "all-full" => Rule::AllFull,
            "all-sliding" => Rule::AllSliding,
            "interleave" => Rule::Interleave { sliding: number()? },
            "first" => Rule::First(number()?),
            "last" => Rule::Last(number()?),
            "middle" => Rule::Middle(number()?),
            "layers" => Rule::Layers(
                arg.split(',')
                    .map(|x| x.trim().parse::<usize>().map_err(|_| bad("expected layer numbers")))
                    .collect::<Result<_>>()?,
            ),
            "heads" => {
                Rule::HeadFraction(Budget::new(arg.trim().parse::<f64>().map_err(|_| bad("expected a fraction"))?)?)
            }
            _ => return Err(bad("unknown rule")),
        })
    }
}
