//! The three-path golden test: for small random models of every layer kind and family, the
//! masked full forward, chunked prefill through the KV caches, and token-by-token decoding give
//! the same logits — past the window and across many ring-buffer wrap-arounds.
//!
//! Tolerance: 1e-4 absolute on fp32 logits (weights ~ N(0, 0.2), logits ~ O(1)).

use burn::tensor::{Int, Tensor, TensorData};
use swiattn_core::attention::RouteMask;
use swiattn_core::model::{ModelConfig, Routes, Transformer};
use swiattn_core::testing::{max_abs_diff, on_gpu_backend, random_bools, randomize, test_device};

const TOL: f32 = 1e-4;
const WINDOW: usize = 5;

fn config(model_type: &str, pattern: &str) -> ModelConfig {
    let json = format!(
        r#"{{
            "model_type": "{model_type}", "vocab_size": 61, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
            "sliding_window": {WINDOW}, "attention_pattern": "{pattern}", "query_pre_attn_scalar": 8,
            "kv_head_types": {{"0": ["full_attention", "sliding_attention"], "1": ["sliding_attention", "full_attention"],
                              "2": ["sliding_attention", "full_attention"], "3": ["full_attention", "sliding_attention"]}}
        }}"#
    );
    ModelConfig::from_json_str(&json, "golden config").unwrap()
}

fn routes(model: &Transformer, batch: usize, len: usize, seed: u64) -> Routes {
    let mut routes = Routes::none();
    for (i, layer) in model.layer_attention().iter().enumerate() {
        if layer.type_name() == "routed_attention" {
            let fa = random_bools(batch * len, 0.35, seed + i as u64);
            routes = routes.with(i, RouteMask { batch, len, fa });
        }
    }
    routes
}

fn three_paths(model_type: &str, pattern: &str, len: usize, chunk: usize) {
    let device = test_device();
    let model = randomize(
        Transformer::new(config(model_type, pattern), &device).unwrap(),
        7,
        0.2,
    );
    let batch = 2;
    let ids: Vec<i64> = (0..batch * len)
        .map(|i| ((i * 37 + 11) % 61) as i64)
        .collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, len]), &device);
    let routes = routes(&model, batch, len, 3);
    let what = format!("{model_type} {pattern} len {len}");

    let full = model.forward(tokens.clone(), &routes).unwrap();

    let mut cache = model.new_cache();
    let mut chunks = Vec::new();
    for start in (0..len).step_by(chunk) {
        let n = chunk.min(len - start);
        let part = tokens.clone().slice([0..batch, start..start + n]);
        chunks.push(
            model
                .forward_cached(part, &routes.narrow(start, n), &mut cache)
                .unwrap(),
        );
    }
    let chunked = Tensor::cat(chunks, 1);
    let diff = max_abs_diff(&chunked, &full);
    assert!(diff <= TOL, "{what}: chunked prefill differs by {diff}");

    let mut cache = model.new_cache();
    let steps: Vec<Tensor<3>> = (0..len)
        .map(|t| {
            let step = tokens.clone().slice([0..batch, t..t + 1]);
            model
                .forward_cached(step, &routes.narrow(t, 1), &mut cache)
                .unwrap()
        })
        .collect();
    let decoded = Tensor::cat(steps, 1);
    let diff = max_abs_diff(&decoded, &full);
    assert!(diff <= TOL, "{what}: decode differs by {diff}");

    // Sliding layers keep O(w) positions however long the sequence.
    for (layer, c) in model.layer_attention().iter().zip(&cache.layers) {
        if layer.type_name() == "sliding_attention" {
            assert!(
                c.capacity() <= WINDOW,
                "{what}: ring holds {} > {WINDOW}",
                c.capacity()
            );
        }
    }
}

#[test]
fn every_layer_kind_agrees_across_three_paths() {
    let patterns: &[&str] = if on_gpu_backend() {
        &["SFRH"]
    } else {
        &["F", "S", "R", "H", "SFRH"]
    };
    for &pattern in patterns {
        // Lengths below, at and well past the window (the ring wraps several times).
        for len in [WINDOW - 1, WINDOW, 23] {
            three_paths("llama", pattern, len, 7);
        }
    }
}

#[test]
fn every_family_agrees_across_three_paths() {
    let families: &[&str] = if on_gpu_backend() {
        &["gemma3_text"]
    } else {
        &["llama", "qwen2", "qwen3", "gemma3_text"]
    };
    for &family in families {
        three_paths(family, "SFRH", 23, 4);
    }
}

#[test]
fn a_chunk_longer_than_the_window_overwrites_the_ring() {
    three_paths("llama", "S", 3 * WINDOW + 2, 2 * WINDOW + 1);
}
