//! Fixed-length training sequences packed from token shards: the shards' token stream (documents
//! separated by the end-of-document token) cut into consecutive windows of `seq_len + 1` tokens.
//! A `val_fraction` of the windows, spread evenly over the stream (one in the middle of each of
//! `val` equal strata, so every source of a corpus prepared file by file is represented), is held
//! out for validation; the rest are visited in a fresh seeded permutation every epoch, so
//! sequence `index` of the training stream is a function of `(seed, index)` — the step is the data
//! cursor.

use std::path::PathBuf;
use std::sync::Mutex;

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};
use swiattn_core::{Error, Result};

use super::prepare::Meta;
use super::shard::Shard;
use crate::synthetic::Example;

/// Text data in a run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextData {
    /// A directory written by `swiattn data prepare`.
    pub shards: PathBuf,
    pub seq_len: usize,
    /// Fraction of the windows held out for validation.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
}

fn default_val_fraction() -> f64 {
    0.01
}

/// Opened shards, cut into windows.
pub struct Packed {
    pub meta: Meta,
    shards: Vec<Shard>,
    /// First stream position of each shard.
    starts: Vec<usize>,
    window: usize,
    /// Stream windows for training and held out, each in stream order.
    train: Vec<usize>,
    val: Vec<usize>,
    /// The permutation of the last epoch asked for.
    epoch: Mutex<Option<(u64, u64, Vec<usize>)>>,
}

impl Packed {
    pub fn open(data: &TextData) -> Result<Self> {
        let dir = swiattn_core::paths::expand_home(&data.shards);
        let meta_path = dir.join("meta.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: Meta =
            serde_json::from_str(&text).map_err(|e| Error::format(meta_path.display().to_string(), e.to_string()))?;
        let shards = meta.shards.iter().map(|s| Shard::open(&dir.join(s))).collect::<Result<Vec<_>>>()?;
        let mut starts = Vec::with_capacity(shards.len());
        let mut total = 0;
        for s in &shards {
            starts.push(total);
            total += s.len;
        }
        let window = data.seq_len + 1;
        let windows = total / window;
        let val = ((windows as f64 * data.val_fraction).round() as usize).clamp(1, windows.saturating_sub(1).max(1));
        if windows < 2 || !(0.0..1.0).contains(&data.val_fraction) {
            return Err(Error::Invalid(format!(
                "{}: {total} tokens make {windows} windows of {window}; need at least 2 and val_fraction in [0, 1)",
                data.shards.display()
            )));
        }
        let held_out: Vec<usize> = (0..val).map(|j| (2 * j + 1) * windows / (2 * val)).collect();
        let train = (0..windows).filter(|w| held_out.binary_search(w).is_err()).collect();
        Ok(Self { meta, shards, starts, window, train, val: held_out, epoch: Mutex::new(None) })
    }

    /// Predicted tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.window - 1
    }

    /// Training and validation window counts.
    pub fn sizes(&self) -> (usize, usize) {
        (self.train.len(), self.val.len())
    }

    /// Tokens of window `w` of the whole stream.
    fn window_tokens(&self, w: usize) -> Vec<u32> {
        let (mut at, end) = (w * self.window, (w + 1) * self.window);
        let mut out = Vec::with_capacity(self.window);
        while at < end {
            let s = self.starts.partition_point(|&start| start <= at) - 1;
            let chunk = self.shards[s].tokens(at - self.starts[s], end - at);
            at += chunk.len();
            out.extend(chunk);
        }
        out
    }

    /// Training sequence `index` (of the endless stream of epochs) for `seed`.
    pub fn train_example(&self, seed: u64, index: u64) -> Example {
        let epoch = index / self.train.len() as u64;
        let mut cached = self.epoch.lock().expect("not poisoned");
        if cached.as_ref().is_none_or(|(s, e, _)| *s != seed || *e != epoch) {
            let mut order = self.train.clone();
            order.shuffle(&mut StdRng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            *cached = Some((seed, epoch, order));
        }
        let w = cached.as_ref().expect("set above").2[(index % self.train.len() as u64) as usize];
        Example { tokens: self.window_tokens(w), recall: Vec::new() }
    }

    /// Validation sequence `index` (cycling through the held-out windows).
    pub fn val_example(&self, index: u64) -> Example {
        Example { tokens: self.window_tokens(self.val[index as usize % self.val.len()]), recall: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::data::shard::write;

    /// Shards holding the stream 0, 1, 2, … (`lens` tokens each) and their meta.json.
    fn shards(lens: &[usize]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut names = Vec::new();
        let mut next = 0u32;
        for (i, &len) in lens.iter().enumerate() {
            let name = format!("shard-{i:05}.bin");
            write(&dir.path().join(&name), &(next..next + len as u32).collect::<Vec<_>>(), 1 << 20, 0).unwrap();
            next += len as u32;
            names.push(name);
        }
        let meta = Meta {
            tokenizer: "test".into(),
            tokenizer_fingerprint: "0".into(),
            vocabulary_fingerprint: None,
            encoding_fingerprint: None,
            vocab_size: 1 << 20,
            eod: 0,
            documents: 1,
            tokens: next as usize,
            shards: names,
        };
        std::fs::write(dir.path().join("meta.json"), serde_json::to_string(&meta).unwrap()).unwrap();
        dir
    }

    fn open(dir: &tempfile::TempDir, seq_len: usize, val_fraction: f64) -> Result<Packed> {
        Packed::open(&TextData { shards: dir.path().to_path_buf(), seq_len, val_fraction })
    }

    #[test]
    fn windows_are_the_stream_cut_across_shard_boundaries() {
        let dir = shards(&[50, 7, 80]);
        let packed = open(&dir, 9, 0.2).unwrap();
        // 137 tokens → 13 windows of 10; 3 held out (the middle windows of the strata [0, 13/3),
        // [13/3, 26/3), [26/3, 13): 2, 6 and 10), 10 for training.
        assert_eq!(packed.sizes(), (10, 3));
        for w in 0..13 {
            assert_eq!(packed.window_tokens(w), (w as u32 * 10..w as u32 * 10 + 10).collect::<Vec<_>>());
        }
        let val: Vec<u32> = (0..4).map(|i| packed.val_example(i).tokens[0]).collect();
        assert_eq!(val, [20, 60, 100, 20], "validation cycles through its windows");
    }

    #[test]
    fn every_epoch_is_a_seeded_permutation_of_the_training_windows() {
        let dir = shards(&[1000]);
        let packed = open(&dir, 19, 0.1).unwrap();
        let (train, val) = packed.sizes();
        assert_eq!((train, val), (45, 5));
        let epoch = |seed: u64, e: u64| -> Vec<u32> {
            (e * 45..(e + 1) * 45).map(|i| packed.train_example(seed, i).tokens[0] / 20).collect()
        };
        let first = epoch(7, 0);
        // 50 windows, held out: 5, 15, 25, 35, 45.
        let training: Vec<u32> = (0..50).filter(|w| w % 10 != 5).collect();
        let held_out: BTreeSet<u32> = (0..5).map(|i| packed.val_example(i).tokens[0] / 20).collect();
        assert_eq!(held_out, [5, 15, 25, 35, 45].into());
        assert_eq!(first.iter().copied().collect::<BTreeSet<_>>(), training.iter().copied().collect(), "each once");
        assert_ne!(first, training, "shuffled");
        assert_ne!(epoch(7, 1), first, "a fresh order each epoch");
        assert_ne!(epoch(8, 0), first, "the seed matters");
        assert_eq!(epoch(7, 0), first, "and is all that matters");
        // Random access (a resumed cursor) gives what the stream gave.
        assert_eq!(packed.train_example(7, 93).tokens[0] / 20, epoch(7, 2)[3]);
        assert_eq!(packed.train_example(7, 3).tokens[0] / 20, first[3]);
    }

    #[test]
    fn too_little_data_is_an_error_naming_the_directory() {
        let dir = shards(&[15]);
        let err = open(&dir, 9, 0.1).err().expect("one window").to_string();
        assert!(err.contains(&dir.path().display().to_string()) && err.contains("1 windows"), "{err}");
    }
}
