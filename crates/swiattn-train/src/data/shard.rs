//! Token shards: a small header and the token ids of many documents, each followed by the end-of-
//! document token, as little-endian u16 (when the vocabulary fits) or u32. Read memory-mapped.
//!
//! Header (32 bytes): `"SWTOKENS"`, format version `u32` (1), bytes per token `u32` (2 or 4),
//! vocabulary size `u32`, end-of-document id `u32`, token count `u64`; then the tokens. The
//! tokenizer's fingerprints (of its JSON and of its vocabulary) are in the shard set's `meta.json`.

use std::io::Write;
use std::path::Path;

use memmap2::Mmap;
use swiattn_core::{Error, Result};

const MAGIC: &[u8; 8] = b"SWTOKENS";
const VERSION: u32 = 1;
const HEADER: usize = 32;

/// Write `tokens` as one shard.
pub fn write(path: &Path, tokens: &[u32], vocab_size: usize, eod: u32) -> Result<()> {
    let width: u32 = if vocab_size <= 1 << 16 { 2 } else { 4 };
    let mut out = Vec::with_capacity(HEADER + tokens.len() * width as usize);
    out.extend_from_slice(MAGIC);
    for v in [VERSION, width, vocab_size as u32, eod] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    for &t in tokens {
        if width == 2 {
            out.extend_from_slice(&(t as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(&out).and_then(|_| file.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A memory-mapped shard.
pub struct Shard {
    mmap: Mmap,
    width: usize,
    pub vocab_size: usize,
    pub eod: u32,
    pub len: usize,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: opened read-only; shards are written once (via rename) and never modified.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if mmap.len() < HEADER || &mmap[..8] != MAGIC {
            return Err(Error::format(name, "not a swiattn token shard (bad magic)"));
        }
        let word = |at: usize| u32::from_le_bytes(mmap[at..at + 4].try_into().unwrap());
        if word(8) != VERSION {
            return Err(Error::format(name, format!("shard version {} (this build reads {VERSION})", word(8))));
        }
        let width = word(12) as usize;
        let len = u64::from_le_bytes(mmap[24..32].try_into().unwrap());
        let size = usize::try_from(len).ok().and_then(|n| n.checked_mul(width)).and_then(|b| b.checked_add(HEADER));
        if !(width == 2 || width == 4) || size != Some(mmap.len()) {
            return Err(Error::format(name, format!("{} bytes do not hold {len} tokens of {width} bytes", mmap.len())));
        }
        let (vocab_size, eod) = (word(16) as usize, word(20));
        if eod as usize >= vocab_size || vocab_size > 1 << (8 * width) {
            let message =
                format!("end-of-document id {eod} and vocabulary {vocab_size} do not fit {width}-byte tokens");
            return Err(Error::format(name, message));
        }
        Ok(Self { vocab_size, eod, width, len: len as usize, mmap })
    }

    /// Tokens `start..start + n` (clipped to the shard).
    pub fn tokens(&self, start: usize, n: usize) -> Vec<u32> {
        let end = (start + n).min(self.len);
        let bytes = &self.mmap[HEADER + start * self.width..HEADER + end * self.width];
        match self.width {
            2 => bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).collect(),
            _ => bytes.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_both_widths() {
        let dir = tempfile::tempdir().unwrap();
        for (vocab, width) in [(1 << 16, 2), ((1 << 16) + 1, 4)] {
            let tokens: Vec<u32> = (0..1000).map(|i| (i * 7919) % vocab as u32).collect();
            let path = dir.path().join(format!("{vocab}.bin"));
            write(&path, &tokens, vocab, 3).unwrap();
            let shard = Shard::open(&path).unwrap();
            assert_eq!((shard.width, shard.vocab_size, shard.eod, shard.len), (width, vocab, 3, 1000));
            assert_eq!(shard.tokens(0, 1000), tokens);
            assert_eq!(shard.tokens(990, 50), tokens[990..], "clipped at the end");
            assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, HEADER + 1000 * width);
        }
    }

    #[test]
    fn damaged_shards_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        write(&path, &[1, 2, 3], 10, 0).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = Shard::open(&path).err().expect("truncated").to_string();
        assert!(err.contains("s.bin") && err.contains("3 tokens"), "{err}");
        std::fs::write(&path, b"not a shard at all, just some bytes").unwrap();
        let err = Shard::open(&path).err().expect("bad magic").to_string();
        assert!(err.contains("s.bin") && err.contains("magic"), "{err}");
    }

    /// Seeded truncations, bit flips, random bytes and integer extremes in the header of a real
    /// shard: a clear error naming the file, or a shard whose tokens all read — never a panic.
    #[test]
    fn mutated_shards_error_or_read_never_panic() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        write(&path, &(0..200).map(|i| i % 50).collect::<Vec<_>>(), 50, 49).unwrap();
        let original = std::fs::read(&path).unwrap();
        let mut rng = StdRng::seed_from_u64(18);
        let extremes: [u64; 6] = [0, 1, u32::MAX as u64, 1 << 32, 1 << 63, u64::MAX];
        let (mut errors, mut opened) = (0, 0);
        for case in 0..2000 {
            let mut bytes = original.clone();
            match case % 4 {
                0 => bytes.truncate(rng.random_range(0..bytes.len())),
                1 => bytes[rng.random_range(0..HEADER)] ^= 1 << rng.random_range(0..8),
                2 => {
                    let (width, at) = if rng.random_bool(0.5) { (4, 4 * rng.random_range(2..6)) } else { (8, 24) };
                    let value = extremes[rng.random_range(0..extremes.len())];
                    bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
                }
                _ => {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
            }
            std::fs::write(&path, &bytes).unwrap();
            let read = std::panic::catch_unwind(|| Shard::open(&path).map(|s| s.tokens(0, s.len).len()));
            match read.unwrap_or_else(|_| panic!("case {case}: panicked")) {
                Ok(n) => {
                    assert_eq!(n, (bytes.len() - HEADER) / if bytes[12] == 2 { 2 } else { 4 });
                    opened += 1;
                }
                Err(e) => {
                    assert!(e.to_string().contains("s.bin"), "case {case}: {e}");
                    errors += 1;
                }
            }
        }
        assert!(errors > 500 && opened > 200, "both outcomes exercised ({errors} / {opened})");
    }
}
