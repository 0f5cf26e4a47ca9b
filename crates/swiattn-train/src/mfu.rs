//! Model FLOPs utilization (MFU): the model FLOPs of a training step — matmuls plus window-aware
//! attention — per second, over the device's matmul ceiling measured at the start of the run.
//!
//! Per predicted token, the forward costs `2 · P` FLOPs for the `P` matmul weights (attention
//! projections, MLP, LM head; not the embedding lookup) plus the attention itself, counted per key
//! actually in reach: `4 · head_dim` per (query head, key) with `i + 1` keys under full attention
//! and `min(i + 1, w)` in a window (`swiattn_core::accounting`). The backward costs twice the
//! forward, so a step costs 3× the forward. Routed layers are counted at the step's measured FA
//! ratio — the useful work, not what a path that computes both branches spends.

use std::time::Instant;

use burn::tensor::{DType, Device, Distribution, Tensor};
use swiattn_core::Result;
use swiattn_core::accounting::{RoutedLayers, account};
use swiattn_core::model::Arch;

/// Weights that take part in a matmul per token.
pub fn matmul_parameters(arch: &Arch) -> usize {
    let (h, d) = (arch.hidden_size, arch.head_dim);
    let attention = h * arch.num_heads * d * 2 + h * arch.num_kv_heads * d * 2;
    let mlp = 3 * h * arch.intermediate_size;
    arch.layers.len() * (attention + mlp) + h * arch.vocab_size
}

/// FLOPs of one training step (forward + backward) over `sequences` sequences of `len` tokens,
/// routed layers at FA ratio `fa_ratio`.
pub fn step_flops(arch: &Arch, sequences: usize, len: usize, fa_ratio: f64) -> Result<f64> {
    let attention = account(arch, len, 2, &RoutedLayers::Ratio(fa_ratio.clamp(0.0, 1.0)))?.attention_flops;
    Ok(3.0 * sequences as f64 * (2.0 * matmul_parameters(arch) as f64 * len as f64 + attention))
}

/// The device's matmul throughput in FLOP/s in `dtype` (the compute dtype): chains of 4 dependent
/// square matmuls of growing size (256, 512, …, until a chain takes over 50 ms or the size reaches
/// 4096), the best of 3 timed chains after a warm-up, each chain on inputs of its own — so no
/// backend can skip or reuse work — timed up to a device sync.
pub fn matmul_ceiling(device: &Device, dtype: DType) -> f64 {
    const CHAIN: usize = 4;
    let mut best = 0.0f64;
    let mut n: usize = 256;
    loop {
        // Entries of variance 1/n keep a product's entries of order one along the chain.
        let spread = Distribution::Normal(0.0, 1.0 / (n as f64).sqrt());
        let inputs: Vec<(Tensor<2>, Tensor<2>)> = (0..4)
            .map(|_| {
                let a = Tensor::<2>::random([n, n], spread, device).cast(dtype);
                let b = Tensor::<2>::random([n, n], spread, device).cast(dtype);
                let _ = (a.clone().sum() + b.clone().sum()).into_data();
                (a, b)
            })
            .collect();
        let seconds: Vec<f64> = inputs
            .into_iter()
            .map(|(a, b)| {
                let _ = device.sync();
                let started = Instant::now();
                let mut x = a;
                for _ in 0..CHAIN {
                    x = x.matmul(b.clone());
                }
                let _ = x.sum().into_data();
                // On CUDA the read came back before the matmuls finished (seen on an H200: 0.26 ms
                // read, 6.0 ms until the device was idle); only a device sync bounds the work.
                let _ = device.sync();
                started.elapsed().as_secs_f64()
            })
            .collect();
        let fastest = seconds[1..].iter().copied().fold(f64::INFINITY, f64::min);
        best = best.max(CHAIN as f64 * 2.0 * (n * n * n) as f64 / fastest);
        if fastest > 0.05 || n >= 4096 {
            return best;
        }
        n *= 2;
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use swiattn_core::attention::Window;
    use swiattn_core::model::{LayerAttention, ModelConfig, Transformer};
    use swiattn_core::testing::test_device;

    use super::*;

    fn model(tied: bool) -> Transformer {
        let json = serde_json::json!({
            "model_type": "llama", "vocab_size": 50, "hidden_size": 24, "intermediate_size": 40,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
            "tie_word_embeddings": tied,
        });
        Transformer::new(ModelConfig::from_json_str(&json.to_string(), "test").unwrap(), &test_device()).unwrap()
    }

    #[test]
    fn matmul_weights_are_all_parameters_but_norms_and_the_embedding_lookup() {
        for tied in [true, false] {
            let m = model(tied);
            let norms = 24 * (2 * 3 + 1);
            let embedding = if tied { 0 } else { 50 * 24 };
            assert_eq!(matmul_parameters(&m.arch), m.num_params() - norms - embedding, "tied: {tied}");
        }
    }

    #[test]
    fn step_flops_count_keys_in_reach() {
        let full = model(true);
        let (n, b) = (100, 3);
        let p = matmul_parameters(&full.arch) as f64;
        // Per query head and position i: i + 1 keys under full attention, min(i + 1, w) in a window.
        let keys_full: f64 = (1..=n).map(|k| k as f64).sum();
        let keys_window: f64 = (1..=n).map(|k| k.min(10) as f64).sum();
        let attention = |keys: f64| 3.0 * 4.0 * 8.0 * 4.0 * keys;
        let want_full = 3.0 * b as f64 * (2.0 * p * n as f64 + attention(keys_full));
        assert!((step_flops(&full.arch, b, n, 1.0).unwrap() / want_full - 1.0).abs() < 1e-12);

        let routed = full.with_attention(&vec![LayerAttention::Routed(Window::new(10).unwrap()); 3]).unwrap();
        let r = 0.25;
        let mixed = r * keys_full + (1.0 - r) * keys_window;
        let want = 3.0 * b as f64 * (2.0 * p * n as f64 + attention(mixed));
        assert!((step_flops(&routed.arch, b, n, r).unwrap() / want - 1.0).abs() < 1e-12);
    }
}
