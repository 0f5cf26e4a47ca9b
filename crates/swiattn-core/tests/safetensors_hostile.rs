//! Hostile Hugging Face directories: seeded mutations of a real one (`fixtures/hf/llama`) —
//! truncated or bit-flipped `model.safetensors`, its header length and offsets set to extremes,
//! random bytes, and mutated `config.json` — give one clear error naming the file, or a model that
//! loads; never a panic, an abort or a hang.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swiattn_core::checkpoint::{LoadOptions, load_model};
use swiattn_core::testing::{mutate_bytes, test_device};

fn fixture() -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "hf", "llama"].iter().collect()
}

/// Load the directory `dir` (its `config.json` and `model.safetensors`): the error, or `None` if
/// the model loaded. A panic fails the calling test with the case's label.
fn load(dir: &Path, label: &str) -> Option<String> {
    let device = test_device();
    let result = catch_unwind(AssertUnwindSafe(|| load_model(dir, &device, &LoadOptions::default()).map(|_| ())));
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            let e = e.to_string();
            assert!(
                e.contains("model.safetensors") || e.contains("config.json") || e.contains(&dir.display().to_string()),
                "{label}: the error names no file: {e}"
            );
            Some(e)
        }
        Err(_) => panic!("{label}: loading panicked"),
    }
}

/// One seeded mutation of `bytes` whose first `header` bytes are the part worth aiming at: the
/// shared byte mutator's ([`mutate_bytes`]), except that its integer case aims at what a
/// safetensors header holds as integers — the 8-byte header length, or the digits of a number in
/// the JSON header (offsets, shapes).
fn mutate(bytes: &mut Vec<u8>, header: usize, case: usize, rng: &mut StdRng) -> String {
    if case % 4 != 2 {
        return mutate_bytes(bytes, header, case, rng);
    }
    let extremes: [u64; 6] = [0, 1, u32::MAX as u64, 1 << 32, 1 << 63, u64::MAX];
    let value = extremes[rng.random_range(0..extremes.len())];
    if rng.random_bool(0.3) || header < 16 {
        bytes[..8].copy_from_slice(&value.to_le_bytes());
        format!("header length set to {value}")
    } else {
        let digits: Vec<usize> = (8..header).filter(|&i| bytes[i].is_ascii_digit()).collect();
        let at = digits[rng.random_range(0..digits.len())];
        let text = value.to_string();
        let end = (at..header).find(|&i| !bytes[i].is_ascii_digit()).unwrap_or(header);
        bytes.splice(at..end, text.bytes());
        format!("the number at byte {at} set to {value}")
    }
}

#[test]
fn mutated_safetensors_and_configs_error_or_load_never_panic() {
    let weights = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let config = std::fs::read(fixture().join("config.json")).unwrap();
    let header = 8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(18);
    let (mut errors, mut loaded) = (0, 0);
    for case in 0..1200 {
        let (mut w, mut c) = (weights.clone(), config.clone());
        let label = if case % 5 == 4 {
            format!("case {case}: config.json {}", mutate(&mut c, config.len(), case / 5, &mut rng))
        } else {
            format!("case {case}: model.safetensors {}", mutate(&mut w, header, case, &mut rng))
        };
        std::fs::write(dir.path().join("model.safetensors"), &w).unwrap();
        std::fs::write(dir.path().join("config.json"), &c).unwrap();
        match load(dir.path(), &label) {
            Some(_) => errors += 1,
            None => loaded += 1,
        }
    }
    eprintln!("1200 mutations: {errors} clear errors, {loaded} loaded");
    assert!(errors > 400 && loaded > 50, "the mutations should exercise both outcomes ({errors} / {loaded})");
}
