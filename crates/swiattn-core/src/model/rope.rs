//! Rotary position embeddings in Hugging Face's rotate-half layout (burn's `RotaryEncoding`
//! rotates adjacent pairs instead, which does not match HF checkpoints).
//!
//! For head dim `d`, frequency `i < d/2` is `base^(-2i/d)` (optionally rescaled), and dimension
//! `i` is rotated with dimension `i + d/2`. Tables are computed on the host in fp32 exactly as
//! `transformers` does, for any absolute start position, so chunked prefill and decode rotate
//! the same way as a full forward.

use burn::tensor::{DType, Device, Tensor, TensorData};

use super::config::{Rope, RopeScaling};

/// `inv_freq[i]` for `i < head_dim / 2`, with the layer's scaling applied.
pub fn inv_freq(rope: &Rope, head_dim: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let base = rope.base as f32;
    let mut freqs: Vec<f32> = (0..half).map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32)).collect();
    match &rope.scaling {
        Some(RopeScaling { rope_type, factor: Some(factor), .. }) if rope_type == "linear" => {
            freqs.iter_mut().for_each(|f| *f /= *factor as f32);
        }
        Some(s) if s.rope_type == "llama3" => llama3_scale(&mut freqs, s),
        _ => {}
    }
    freqs
}

/// Llama 3's frequency-dependent scaling: long wavelengths divided by `factor`, short ones kept,
/// a smooth blend between.
fn llama3_scale(freqs: &mut [f32], s: &RopeScaling) {
    let factor = s.factor.unwrap_or(8.0) as f32;
    let low = s.low_freq_factor.unwrap_or(1.0) as f32;
    let high = s.high_freq_factor.unwrap_or(4.0) as f32;
    let old_ctx = s.original_max_position_embeddings.unwrap_or(8192) as f32;
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    for f in freqs.iter_mut() {
        let wavelen = 2.0 * std::f32::consts::PI / *f;
        if wavelen > low_wavelen {
            *f /= factor;
        } else if wavelen >= high_wavelen {
            let smooth = (old_ctx / wavelen - low) / (high - low);
            *f = (1.0 - smooth) * *f / factor + smooth * *f;
        }
    }
}

/// `cos` and `sin` tables `[rows, 1, len, head_dim]` for positions `start..start + len` of each
/// row (`rows` = 1 when every row of the batch starts at the same position). `sin` carries
/// `rotate_half`'s sign: its first half is negated.
#[derive(Clone, Debug)]
pub struct Tables {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

/// The tables of `rope` for positions `start..start + len`.
pub fn tables(rope: &Rope, head_dim: usize, start: usize, len: usize, device: &Device) -> Tables {
    let positions: Vec<usize> = (start..start + len).collect();
    position_tables(rope, head_dim, &positions, [1, len], device)
}

/// The tables of `rope` for `positions` (`[rows, len]` row-major: a batch of sequences at
/// different positions, as in ragged batches), in fp32.
pub fn position_tables(
    rope: &Rope,
    head_dim: usize,
    positions: &[usize],
    [rows, len]: [usize; 2],
    device: &Device,
) -> Tables {
    assert_eq!(positions.len(), rows * len, "one position per row and column");
    let freqs = inv_freq(rope, head_dim);
    let n = positions.len() * head_dim;
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for &p in positions {
        let angles: Vec<f32> = freqs.iter().map(|&f| p as f32 * f).collect();
        for sign in [-1.0f32, 1.0] {
            cos.extend(angles.iter().map(|a| a.cos()));
            sin.extend(angles.iter().map(|a| sign * a.sin()));
        }
    }
    let dims = [rows, 1, len, head_dim];
    Tables {
        cos: Tensor::from_data(TensorData::new(cos, dims), device),
        sin: Tensor::from_data(TensorData::new(sin, dims), device),
    }
}

impl Tables {
    /// The tables in `dtype` (the model's: cast once per forward, not in every layer).
    pub fn cast(self, dtype: DType) -> Self {
        Self { cos: self.cos.cast(dtype), sin: self.sin.cast(dtype) }
    }

    /// Rotate `x`: `[batch, heads, len, head_dim]` (the tables' `len`; their rows are 1 or `batch`):
    /// `x · cos + rotate_half(x) · sin` with `rotate_half([x1, x2]) = [-x2, x1]`, computed as
    /// `[x2, x1] · sin` with the sign in the table (one flip instead of two slices and a concat).
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let dtype = x.dtype();
        let (mut cos, mut sin) = (self.cos.clone(), self.sin.clone());
        if cos.dtype() != dtype {
            (cos, sin) = (cos.cast(dtype), sin.cast(dtype));
        }
        let swapped = x.clone().reshape([b, h, t, 2, d / 2]).flip([3]).reshape([b, h, t, d]);
        x * cos + swapped * sin
    }
}
