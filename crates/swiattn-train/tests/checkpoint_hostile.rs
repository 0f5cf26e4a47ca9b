//! Hostile training checkpoints behind valid checksums: each file of a real SwiAttn checkpoint
//! (weights, ids, state, router and optimizer records) is mutated — truncated, a bit flipped, a
//! byte randomized, 4 or 8 bytes set to an integer extreme — and `checksums.json` is rewritten to
//! match, so the readers themselves, not the checksum, meet the damage. Resuming
//! (`checkpoint::load`) and opening for inference (`checkpoint::open_model`) give one clear error
//! naming the checkpoint, or load; never a panic, an abort or a hang. A mutated `checksums.json` alone is refused or passes.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::Digest;
use swiattn_core::checkpoint::LoadOptions;
use swiattn_core::testing::{mutate_bytes, mutate_text, test_device};
use swiattn_train::checkpoint;
use swiattn_train::config::TrainConfig;

mod common;
use common::{batch, trainer};

/// Rewrite `checksums.json` so that every file under `dir` passes it.
fn reseal(dir: &Path, files: &[String]) {
    let sums: BTreeMap<&str, String> = files
        .iter()
        .map(|name| {
            let digest = sha2::Sha256::digest(std::fs::read(dir.join(name)).unwrap());
            (name.as_str(), digest.iter().map(|b| format!("{b:02x}")).collect())
        })
        .collect();
    std::fs::write(dir.join("checksums.json"), serde_json::to_string_pretty(&sums).unwrap()).unwrap();
}

#[test]
fn mutated_checkpoints_behind_valid_checksums_error_or_load_never_panic() {
    let device = test_device().autodiff();
    let mut trainer = trainer(&device);
    trainer.train_step(&[batch(0, 4, &device)]).unwrap();
    let run = tempfile::tempdir().unwrap();
    let saved = checkpoint::save(run.path(), &trainer, None).unwrap();
    let sums: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(saved.join("checksums.json")).unwrap()).unwrap();
    let files: Vec<String> = sums.into_keys().collect();
    assert!(files.len() >= 8, "a SwiAttn checkpoint's files: {files:?}");
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(saved.join(f)).unwrap()).collect();
    let checksums = std::fs::read(saved.join("checksums.json")).unwrap();

    let settings = trainer.settings().clone();
    let config = TrainConfig::default();
    let mut rng = StdRng::seed_from_u64(18);
    let (mut errors, mut loaded) = (0, 0);
    let mut per_file: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for case in 0..900 {
        for (name, bytes) in files.iter().zip(&originals) {
            std::fs::write(saved.join(name), bytes).unwrap();
        }
        let which = case % (files.len() + 1);
        let (name, label) = if which == files.len() {
            let mut text = String::from_utf8(checksums.clone()).unwrap();
            text = mutate_text(&text, case / (files.len() + 1), &mut rng);
            std::fs::write(saved.join("checksums.json"), text).unwrap();
            ("checksums.json", format!("case {case}: checksums.json mutated"))
        } else {
            let name = &files[which];
            let mut bytes = originals[which].clone();
            let how = if name.ends_with(".json") {
                let text = mutate_text(&String::from_utf8(bytes).unwrap(), case / files.len(), &mut rng);
                bytes = text.into_bytes();
                "text mutated".to_string()
            } else {
                // Aimed at the first KiB, where the headers and lengths are.
                let header = bytes.len().min(1024);
                mutate_bytes(&mut bytes, header, case / files.len(), &mut rng)
            };
            std::fs::write(saved.join(name), &bytes).unwrap();
            reseal(&saved, &files);
            (name.as_str(), format!("case {case}: {name} {how}, checksums rewritten"))
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let resumed = checkpoint::load(&saved, &device, &config, settings.clone()).map(|_| ());
            let opened = checkpoint::open_model(&saved, &device, &LoadOptions::default()).map(|_| ());
            [resumed, opened]
        }));
        let Ok(outcomes) = result else { panic!("{label}: loading panicked") };
        let tally = per_file.entry(name).or_default();
        for outcome in outcomes {
            match outcome {
                Ok(()) => {
                    loaded += 1;
                    tally.1 += 1;
                }
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(&saved.display().to_string()), "{label}: the error names no file: {e}");
                    errors += 1;
                    tally.0 += 1;
                }
            }
        }
    }
    eprintln!(
        "900 mutated checkpoints, resumed and opened: {errors} clear errors, {loaded} loads; per file {per_file:?}"
    );
    assert!(errors > 600 && loaded > 50, "the mutations should exercise both outcomes ({errors} / {loaded})");
}
