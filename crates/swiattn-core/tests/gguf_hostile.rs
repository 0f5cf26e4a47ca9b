//! Hostile GGUF files: every size, count and offset the reader takes from a file is checked
//! before it is used, so a corrupt or crafted file gives one error naming the file (and the
//! tensor or key), never a panic, an abort or a huge allocation. Hand-made files for each class
//! found (issue 18), then seeded mutations of a real file: truncations, bit flips and
//! integer-field extremes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use rand::{SeedableRng, rngs::StdRng};
use swiattn_core::checkpoint::gguf::GgufFile;
use swiattn_core::testing::mutate_bytes;

const F32: u32 = 0;
const U32: u32 = 4;
const ARRAY: u32 = 9;

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A GGUF v3 file: metadata `(key, type, value bytes)`, tensor infos `(name, ne, type, offset)`,
/// then `data` at the next multiple of 32.
fn gguf(kv: &[(&str, u32, Vec<u8>)], tensors: &[(&str, Vec<u64>, u32, u64)], data: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (key, ty, value) in kv {
        string(&mut out, key);
        out.extend(ty.to_le_bytes());
        out.extend(value);
    }
    for (name, ne, ty, offset) in tensors {
        string(&mut out, name);
        out.extend((ne.len() as u32).to_le_bytes());
        ne.iter().for_each(|d| out.extend(d.to_le_bytes()));
        out.extend(ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    out.extend(data);
    out
}

/// Open `bytes` as a file and dequantize every tensor: the first error, or `None` if all loaded.
/// A panic fails the calling test with the case's label.
fn load(dir: &Path, bytes: &[u8], label: &str) -> Option<String> {
    let path = dir.join("case.gguf");
    std::fs::write(&path, bytes).unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| -> swiattn_core::Result<()> {
        let file = GgufFile::open(&path)?;
        for name in file.tensors.keys() {
            file.dequantize(name)?;
        }
        Ok(())
    }));
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            let e = e.to_string();
            assert!(e.contains("case.gguf"), "{label}: the error does not name the file: {e}");
            Some(e)
        }
        Err(_) => panic!("{label}: the reader panicked"),
    }
}

fn expect_error(dir: &Path, bytes: &[u8], label: &str, needles: &[&str]) {
    let e = load(dir, bytes, label).unwrap_or_else(|| panic!("{label}: loaded without an error"));
    for needle in needles {
        assert!(e.contains(needle), "{label}: the error does not say `{needle}`: {e}");
    }
}

#[test]
fn crafted_sizes_and_offsets_give_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let weights: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let good = gguf(&[], &[("w", vec![2, 2], F32, 0)], &weights);
    assert_eq!(load(dir, &good, "the well-formed file"), None);

    for alignment in [0u32, 3, 48] {
        let kv = [("general.alignment", U32, alignment.to_le_bytes().to_vec())];
        let bytes = gguf(&kv, &[("w", vec![2, 2], F32, 0)], &weights);
        expect_error(dir, &bytes, &format!("alignment {alignment}"), &["general.alignment", "power of two"]);
    }
    let huge = gguf(&[], &[("w", vec![u64::MAX, 2], F32, 0)], &weights);
    expect_error(dir, &huge, "dims whose product overflows", &["`w`"]);
    let past = gguf(&[], &[("w", vec![1 << 40, 1 << 20], F32, 0)], &weights);
    expect_error(dir, &past, "dims larger than the file", &["`w`", "past the end"]);
    for offset in [u64::MAX, 1 << 63, 17] {
        let bytes = gguf(&[], &[("w", vec![2, 2], F32, offset)], &weights);
        expect_error(dir, &bytes, &format!("offset {offset}"), &["`w`"]);
    }
    let mut many_dims = gguf(&[], &[("w", vec![2, 2], F32, 0)], &weights);
    // n_dims of the one tensor: after magic, version, the two counts and the name.
    let at = 4 + 4 + 8 + 8 + 8 + 1;
    many_dims[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_error(dir, &many_dims, "n_dims 2^32 - 1", &["`w`", "dimensions"]);
    let mut nested = ARRAY.to_le_bytes().to_vec();
    nested.extend(1u64.to_le_bytes());
    nested.extend(U32.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    expect_error(dir, &gguf(&[("nested", ARRAY, nested)], &[], &[]), "an array of arrays", &["array"]);
}

/// Seeded mutations of a real file (every GGML type the reader knows): truncations anywhere, bit
/// flips and integer-field extremes in its first KiB (the header: sizes, counts and offsets), and
/// random bytes anywhere. The property: a clear error naming the file, or a file that loads.
#[test]
fn mutated_files_error_or_load_never_panic() {
    let fixture: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "gguf", "quants.gguf"].iter().collect();
    let original = std::fs::read(&fixture).unwrap();
    // The header (metadata, tensor infos) of this file ends well inside its first KiB.
    let header_end = original.len().min(1024);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(18);
    let (mut errors, mut loaded) = (0, 0);
    for case in 0..3000 {
        let mut bytes = original.clone();
        let label = format!("case {case}: {}", mutate_bytes(&mut bytes, header_end, case, &mut rng));
        match load(dir.path(), &bytes, &label) {
            Some(_) => errors += 1,
            None => loaded += 1,
        }
    }
    eprintln!("3000 mutations: {errors} clear errors, {loaded} loaded");
    assert!(errors > 1000 && loaded > 100, "the mutations should exercise both outcomes ({errors} / {loaded})");
}
