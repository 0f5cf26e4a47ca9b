//! GGUF import (llama.cpp's format): the model config from metadata, weights dequantized to fp32
//! under Hugging Face names, and the tokenizer from the vocabulary in the metadata.
//!
//! Two conversions of `convert_hf_to_gguf.py` are undone so that the weights equal the original
//! Hugging Face ones:
//! - Llama q/k projections are stored with rows permuted for llama.cpp's interleaved RoPE
//!   (`w.reshape(heads, 2, d/2, ..).swapaxes(1, 2)`); they are permuted back.
//! - Gemma norm weights are stored as `1 + w` (llama.cpp multiplies plainly); one is subtracted.

mod dequant;
mod reader;
mod tokenizer;

pub use dequant::GgmlType;
pub use reader::{GgufFile, TensorInfo, Value};
pub use tokenizer::tokenizer_from_gguf;

use super::{HostTensor, WeightSource};
use crate::model::{Family, ModelConfig};
use crate::{Error, Result};

/// The model config implied by a GGUF file's metadata.
pub fn config_from_gguf(file: &GgufFile) -> Result<ModelConfig> {
    let origin = file.path.as_str();
    let arch = file
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::config(origin, "general.architecture", "missing"))?
        .to_string();
    let model_type = match arch.as_str() {
        "llama" => "llama",
        "qwen2" => "qwen2",
        "qwen3" => "qwen3",
        "gemma3" => "gemma3_text",
        other => {
            return Err(Error::config(
                origin,
                "general.architecture",
                format!("unsupported architecture `{other}` (llama, qwen2, qwen3, gemma3 are)"),
            ));
        }
    };
    let key = |k: &str| format!("{arch}.{k}");
    let uint = |k: &str| -> Result<usize> {
        file.get(&key(k))
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| Error::config(origin, key(k), "missing or not an integer"))
    };
    let opt_uint = |k: &str| file.get(&key(k)).and_then(Value::as_u64).map(|v| v as usize);
    let opt_float = |k: &str| file.get(&key(k)).and_then(Value::as_f64);

    let hidden_size = uint("embedding_length")?;
    let heads = uint("attention.head_count")?;
    let head_dim = opt_uint("attention.key_length").unwrap_or(hidden_size / heads.max(1));
    let vocab_size = match opt_uint("vocab_size") {
        Some(v) => v,
        None => file
            .get("tokenizer.ggml.tokens")
            .and_then(Value::as_array)
            .map(<[Value]>::len)
            .or_else(|| file.tensors.get("token_embd.weight").map(|t| t.shape()[0]))
            .ok_or_else(|| Error::config(origin, key("vocab_size"), "missing, and no vocabulary to count"))?,
    };
    let gemma = arch == "gemma3";
    let layers = uint("block_count")?;
    // Checked against the tensors before anything is sized by it (a corrupt count would
    // otherwise allocate per-layer state for billions of layers).
    let blocks = file.tensors.keys().filter_map(|n| n.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok());
    let blocks = blocks.max().map_or(0, |last| last + 1);
    if layers != blocks {
        return Err(Error::config(
            origin,
            key("block_count"),
            format!("{layers}, but the file holds {blocks} blocks of tensors"),
        ));
    }
    let mut config = ModelConfig {
        model_type: model_type.to_string(),
        vocab_size,
        hidden_size,
        intermediate_size: uint("feed_forward_length")?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: Some(opt_uint("attention.head_count_kv").unwrap_or(heads)),
        head_dim: Some(head_dim),
        rms_norm_eps: opt_float("attention.layer_norm_rms_epsilon"),
        rope_theta: opt_float("rope.freq_base"),
        rope_local_base_freq: None,
        rope_scaling: None,
        rope_parameters: None,
        partial_rotary_factor: None,
        max_position_embeddings: opt_uint("context_length"),
        tie_word_embeddings: Some(!file.tensors.contains_key("output.weight")),
        attention_bias: None,
        mlp_bias: None,
        initializer_range: None,
        hidden_act: None,
        hidden_activation: None,
        sliding_window: opt_uint("attention.sliding_window"),
        layer_types: None,
        sliding_window_pattern: opt_uint("attention.sliding_window_pattern"),
        legacy_sliding_window_pattern: None,
        use_sliding_window: None,
        max_window_layers: None,
        query_pre_attn_scalar: None,
        final_logit_softcapping: opt_float("final_logit_softcapping"),
        attn_logit_softcapping: opt_float("attn_logit_softcapping"),
        bos_token_id: file.get("tokenizer.ggml.bos_token_id").and_then(Value::as_u64).map(Into::into),
        eos_token_id: file.get("tokenizer.ggml.eos_token_id").and_then(Value::as_u64).map(Into::into),
        attention_pattern: None,
        attention_types: None,
        kv_head_types: None,
    };
    if let (Some("linear"), Some(factor)) =
        (file.get(&key("rope.scaling.type")).and_then(Value::as_str), opt_float("rope.scaling.factor"))
    {
        config.rope_scaling = Some(crate::model::RopeScaling {
            rope_type: "linear".into(),
            rope_theta: None,
            factor: Some(factor),
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: None,
        });
    }
    if gemma {
        // llama.cpp's Gemma 3 attention scale: 1/sqrt(head_dim), except 27B's hidden/heads.
        config.query_pre_attn_scalar = Some(if layers == 62 { (hidden_size / heads) as f64 } else { head_dim as f64 });
    }
    if arch == "qwen2" {
        config.attention_bias = Some(false); // qwen2's q/k/v biases are implied by the family
    }
    config.resolve(origin)?;
    Ok(config)
}

/// Weights of a GGUF file under Hugging Face names, dequantized to fp32.
pub struct GgufSource {
    file: GgufFile,
    family: Family,
    heads: usize,
    kv_heads: usize,
}

impl GgufSource {
    pub fn new(file: GgufFile, config: &ModelConfig) -> Result<Self> {
        let arch = config.resolve(&file.path)?;
        Ok(Self { file, family: arch.family, heads: arch.num_heads, kv_heads: arch.num_kv_heads })
    }

    /// The GGUF tensor name of a Hugging Face key.
    pub fn gguf_name(&self, hf: &str) -> Option<String> {
        let top = match hf {
            "model.embed_tokens.weight" => Some("token_embd.weight"),
            "model.norm.weight" => Some("output_norm.weight"),
            "lm_head.weight" => Some("output.weight"),
            _ => None,
        };
        if let Some(name) = top {
            return Some(name.to_string());
        }
        let rest = hf.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        let (module, param) = rest.rsplit_once('.')?;
        let gemma = self.family == Family::Gemma3;
        let mapped = match module {
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" if gemma => "post_attention_norm",
            "post_attention_layernorm" => "ffn_norm",
            "pre_feedforward_layernorm" => "ffn_norm",
            "post_feedforward_layernorm" => "post_ffw_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        };
        Some(format!("blk.{layer}.{mapped}.{param}"))
    }
}

impl WeightSource for GgufSource {
    fn origin(&self) -> String {
        self.file.path.clone()
    }

    fn read(&self, name: &str) -> Result<Option<HostTensor>> {
        let Some(gguf) = self.gguf_name(name) else {
            return Ok(None);
        };
        if !self.file.tensors.contains_key(&gguf) {
            return Ok(None);
        }
        let (shape, mut data) = self.file.dequantize(&gguf)?;
        if self.family == Family::Llama {
            if let Some(heads) = match gguf.rsplit('.').nth(1) {
                Some("attn_q") => Some(self.heads),
                Some("attn_k") => Some(self.kv_heads),
                _ => None,
            } {
                data = unpermute_rope_rows(&data, &shape, heads);
            }
        }
        if self.family == Family::Gemma3 && gguf.ends_with("norm.weight") {
            data.iter_mut().for_each(|w| *w -= 1.0);
        }
        Ok(Some(HostTensor { shape, data }))
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.file.tensors.get(&self.gguf_name(name)?).map(|info| info.shape())
    }
}

/// Undo llama.cpp's row permutation of q/k projections: GGUF row `h·d + 2i + s` is Hugging Face
/// row `h·d + s·d/2 + i` (`d` = head dim, `i < d/2`, `s ∈ {0, 1}`).
fn unpermute_rope_rows(data: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let rows = shape[0];
    let cols: usize = shape[1..].iter().product();
    let d = rows / heads;
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for s in 0..2 {
                let src = h * d + 2 * i + s;
                let dst = h * d + s * d / 2 + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permutation `convert_hf_to_gguf.py` applies, written the way it is there.
    fn permute(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
        let d = rows / heads;
        let mut out = vec![0.0; w.len()];
        // reshape(heads, 2, d/2, cols).swapaxes(1, 2): new[h][i][s] = old[h][s][i]
        for h in 0..heads {
            for i in 0..d / 2 {
                for s in 0..2 {
                    let old = h * d + s * (d / 2) + i;
                    let new = h * d + i * 2 + s;
                    out[new * cols..(new + 1) * cols].copy_from_slice(&w[old * cols..(old + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_the_conversion_permutation() {
        let (rows, cols, heads) = (24, 3, 3);
        let w: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        assert_eq!(unpermute_rope_rows(&permute(&w, rows, cols, heads), &[rows, cols], heads), w);
    }
}
