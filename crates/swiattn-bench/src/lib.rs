//! # swiattn-bench
//!
//! Benchmarks. `benches/cpu_backends.rs` (criterion) times one training step (forward, loss,
//! backward) of a small hybrid model on burn's CPU backends: `flex` always, and the deprecated
//! `ndarray` with `--features ndarray`:
//!
//! ```text
//! cargo bench -p swiattn-bench --bench cpu_backends --features ndarray
//! ```

use burn::tensor::{Device, Int, Tensor, TensorData};
use swiattn_core::model::{ModelConfig, Routes, Transformer};
use swiattn_core::score::target_logprobs;

/// A small hybrid (sliding + full) Llama-family model on `device`.
pub fn bench_model(device: &Device) -> Transformer {
    let config = ModelConfig::from_json_str(
        r#"{"model_type": "llama", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 384,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
            "sliding_window": 32, "attention_pattern": "SSSF"}"#,
        "bench model",
    )
    .expect("valid bench config");
    Transformer::new(config, device).expect("valid bench model")
}

/// Token ids `[batch, len]` (a fixed pattern).
pub fn bench_tokens(batch: usize, len: usize, vocab: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..batch * len).map(|i| ((i * 7919 + 13) % vocab) as i64).collect();
    Tensor::from_data(TensorData::new(ids, [batch, len]), device)
}

/// One training step without the optimizer: next-token cross-entropy, then backward. Returns the
/// loss.
pub fn train_step(model: &Transformer, tokens: &Tensor<2, Int>) -> f32 {
    let [b, t] = tokens.dims();
    let input = tokens.clone().slice([0..b, 0..t - 1]);
    let target = tokens.clone().slice([0..b, 1..t]);
    let logits = model.forward(input, &Routes::none()).expect("forward");
    let loss = target_logprobs(logits, target).mean().neg();
    let _grads = loss.backward();
    loss.into_scalar::<f32>()
}
