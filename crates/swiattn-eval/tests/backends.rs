//! The same multiple-choice evaluation on the CPU (flex) and on wgpu (in CI: Mesa's software
//! Vulkan) gives the same log-likelihoods to float precision and the same decisions, up to choices
//! closer than that — for a static layout and for a routed one, its own router deciding on each
//! backend. Built with `--features wgpu` (scripts/test.sh runs it).
#![cfg(feature = "wgpu")]

use std::sync::Arc;

use burn::module::Module;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swiattn_core::BackendKind;
use swiattn_core::model::{ModelConfig, Transformer};
use swiattn_core::testing::{TestRouter, randomize, word_tokenizer_json};
use swiattn_eval::metrics::decide;
use swiattn_eval::request::{Question, Request};
use swiattn_eval::score::{Encoded, encode_pair, score};
use tokenizers::Tokenizer;

const WORDS: [&str; 12] = ["<eot>", "<unk>", "the", "cat", "sat", "on", "a", "mat", "and", "slept", "dog", "ran"];

#[test]
fn cpu_and_wgpu_make_the_same_decisions() {
    for pattern in ["SF", "SR"] {
        same_decisions(pattern);
    }
}

fn same_decisions(pattern: &str) {
    let tok = Tokenizer::from_bytes(word_tokenizer_json(&WORDS).as_bytes()).unwrap();
    let json = serde_json::json!({
        "model_type": "llama", "vocab_size": WORDS.len(), "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "sliding_window": 6, "attention_pattern": pattern,
    });
    let config = ModelConfig::from_json_str(&json.to_string(), "test").unwrap();
    let cpu = BackendKind::Cpu.device().unwrap();
    let gpu = BackendKind::Wgpu.device().unwrap();
    let mut on_cpu = randomize(Transformer::new(config, &cpu).unwrap(), 11, 0.4);
    let mut on_gpu = on_cpu.clone().to_device(&gpu);
    if pattern.contains('R') {
        // The same router (host-seeded direction) on each backend.
        on_cpu = on_cpu.with_router(Arc::new(TestRouter::projection(vec![1], 32, 2, &cpu)));
        on_gpu = on_gpu.with_router(Arc::new(TestRouter::projection(vec![1], 32, 2, &gpu)));
    }

    // 24 questions of 2–4 random continuations after random contexts, 3–12 words each.
    let mut rng = StdRng::seed_from_u64(5);
    let mut phrase =
        |n: usize| -> String { (0..n).map(|_| WORDS[rng.random_range(2..WORDS.len())]).collect::<Vec<_>>().join(" ") };
    let questions: Vec<Question> = (0..24)
        .map(|q| {
            let context = phrase(3 + q % 10);
            let choices: Vec<Request> = (0..2 + q % 3)
                .map(|c| Request { context: context.clone(), continuation: format!(" {}", phrase(1 + c)) })
                .collect();
            let chars = choices.iter().map(|c| c.continuation.chars().count()).collect();
            Question { doc_id: q as u64, choices, label: 0, chars }
        })
        .collect();
    let encoded: Vec<Encoded> =
        questions.iter().flat_map(|q| &q.choices).map(|r| encode_pair(&tok, r, 0, 64).unwrap()).collect();
    let group = |scored: Vec<swiattn_eval::score::Scored>| {
        let mut at = 0;
        questions
            .iter()
            .map(|q| {
                at += q.choices.len();
                scored[at - q.choices.len()..at].to_vec()
            })
            .collect::<Vec<_>>()
    };
    let a = decide(&questions, &group(score(&on_cpu, &encoded, 5, |_| {}).unwrap()));
    let b = decide(&questions, &group(score(&on_gpu, &encoded, 5, |_| {}).unwrap()));
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            // fp32 on two backends, sums of ≤ 10 log-probabilities: 1e-3 absolute.
            assert!((p - q).abs() < 1e-3, "{pattern} doc {}: {:?} vs {:?}", x.doc_id, x.logprobs, y.logprobs);
        }
        let gap = |d: &swiattn_eval::metrics::Decision, i: usize, j: usize| (d.logprobs[i] - d.logprobs[j]).abs();
        assert!(x.pick == y.pick || gap(x, x.pick, y.pick) < 2e-3, "{pattern} doc {}: {x:?} vs {y:?}", x.doc_id);
    }
    if pattern.contains('R') {
        let (a, b) = (on_cpu.take_fa_ratios().unwrap(), on_gpu.take_fa_ratios().unwrap());
        assert_eq!(a, b, "the routers' achieved ratios on the two backends");
        assert!(a[&1] > 0.1 && a[&1] < 0.9, "the router should split the tokens: {a:?}");
    }
}
