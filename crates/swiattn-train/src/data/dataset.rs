//! The opened data of a run: a synthetic task or packed text, each an endless seeded training
//! stream plus a held-out stream.

use burn::tensor::Device;
use swiattn_core::Result;

use super::Batch;
use super::packed::Packed;
use crate::config::DataConfig;
use crate::synthetic::{Example, LaggedCopy, RecallConfig};

/// The seed offset of the synthetic tasks' held-out stream.
const EVAL_STREAM: u64 = 1_000_003;

pub enum Dataset {
    LaggedCopy(LaggedCopy),
    SpanRecall(RecallConfig),
    Text(Packed),
}

impl Dataset {
    /// Open the configured data (text shards are memory-mapped and checked here).
    pub fn open(config: &DataConfig) -> Result<Self> {
        Ok(match config {
            DataConfig::LaggedCopy(t) => Dataset::LaggedCopy(t.clone()),
            DataConfig::SpanRecall(t) => Dataset::SpanRecall(t.clone()),
            DataConfig::Text(t) => Dataset::Text(Packed::open(t)?),
        })
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Dataset::LaggedCopy(t) => t.vocab_size(),
            Dataset::SpanRecall(t) => t.vocab_size(),
            Dataset::Text(p) => p.meta.vocab_size,
        }
    }

    /// Predicted tokens per sequence (the sequence length minus one).
    pub fn seq_len(&self) -> usize {
        match self {
            Dataset::LaggedCopy(t) => t.seq_len - 1,
            Dataset::SpanRecall(t) => t.seq_len - 1,
            Dataset::Text(p) => p.seq_len(),
        }
    }

    fn example(&self, seed: u64, index: u64, eval: bool) -> Example {
        let synthetic_seed = seed + if eval { EVAL_STREAM } else { 0 };
        match self {
            Dataset::LaggedCopy(t) => t.example(synthetic_seed, index),
            Dataset::SpanRecall(t) => t.example(synthetic_seed, index),
            Dataset::Text(p) if eval => p.val_example(index),
            Dataset::Text(p) => p.train_example(seed, index),
        }
    }

    /// Training sequences `start..start + n` of the stream for `seed`; `start` is the data cursor.
    pub fn train_batch(&self, seed: u64, start: u64, n: usize, device: &Device) -> Batch {
        Batch::from_examples((0..n as u64).map(|i| self.example(seed, start + i, false)).collect(), device)
    }

    /// Held-out sequences `start..start + n`.
    pub fn eval_batch(&self, seed: u64, start: u64, n: usize, device: &Device) -> Batch {
        Batch::from_examples((0..n as u64).map(|i| self.example(seed, start + i, true)).collect(), device)
    }
}
