//! Model configuration that *is* a Hugging Face `config.json`.
//!
//! [`ModelConfig`] deserializes the `config.json` of Llama/SmolLM2, Qwen2, Qwen3 and Gemma 3
//! checkpoints directly (unknown keys are ignored; a multimodal Gemma 3 config is read through its
//! `text_config`). Two swiattn keys choose each layer's attention without touching the native
//! layout:
//!
//! - `attention_pattern`: a compact string tiled over the layers, one letter per layer —
//!   `F` full, `S` sliding, `R` routed, `H` head-mixed — e.g. `"SSSSSF"` is Gemma 3's 5:1;
//! - `attention_types`: the same as an explicit list, using `layer_types` vocabulary plus
//!   `"routed_attention"` and `"head_mixed_attention"`;
//! - `kv_head_types`: for head-mixed layers, `{"<layer>": ["full_attention", "sliding_attention",
//!   ...]}`, one entry per KV head.
//!
//! `layer_types` (or Gemma's `sliding_window_pattern`, or Qwen2's `use_sliding_window` +
//! `max_window_layers`) is the checkpoint's *native* layout: it decides each layer's attention
//! when no override is given, and always decides which RoPE base a Gemma 3 layer uses (local
//! layers were trained with `rope_local_base_freq`), so that forcing a Gemma layer to full
//! attention changes only what it sees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attention::{LayerAttention, Window};
use crate::{Error, Result};

/// A Hugging Face `config.json` (the keys swiattn reads), plus swiattn's attention overrides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rms_norm_eps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// `transformers` v5 form of the RoPE settings: one set, or one per layer type
    /// (`{"full_attention": {..}, "sliding_attention": {..}}`); takes precedence over
    /// `rope_theta` / `rope_scaling` / `rope_local_base_freq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    /// Standard deviation of the initial weights of a model trained from scratch (default 0.02).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initializer_range: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_activation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window_pattern: Option<usize>,
    /// `transformers` v5 writes Gemma's pattern under this name.
    #[serde(default, rename = "_sliding_window_pattern", skip_serializing_if = "Option::is_none")]
    pub legacy_sliding_window_pattern: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sliding_window: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_window_layers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
    /// swiattn: per-layer attention as a compact string tiled over layers (`F`, `S`, `R`, `H`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_pattern: Option<String>,
    /// swiattn: per-layer attention as an explicit list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_types: Option<Vec<String>>,
    /// swiattn: per-KV-head types of head-mixed layers, keyed by layer index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_head_types: Option<BTreeMap<String, Vec<String>>>,
}

/// `rope_scaling` of `config.json`, or one entry of `rope_parameters`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type", default = "default_rope_type")]
    pub rope_type: String,
    /// Only in `rope_parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

fn default_rope_type() -> String {
    "default".into()
}

/// `rope_parameters` of a `transformers` v5 `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RopeParameters {
    /// Keyed by layer type (`full_attention`, `sliding_attention`), as Gemma 3 writes it.
    PerLayerType(BTreeMap<String, RopeScaling>),
    /// One set for every layer.
    Shared(RopeScaling),
}

/// The architecture families swiattn implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Llama / SmolLM2 / Mistral: pre-norm, SwiGLU.
    Llama,
    /// Qwen2: Llama plus biases on q/k/v.
    Qwen2,
    /// Qwen3: Llama plus per-head RMSNorm on q and k.
    Qwen3,
    /// Gemma 3: sandwich norms with `(1 + w)` weights, GeGLU, scaled embeddings, q/k norms,
    /// local RoPE base on sliding layers.
    Gemma3,
}

/// The MLP activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
    /// Exact (erf) GELU.
    Gelu,
}

/// Rotary embedding parameters of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub base: f64,
    pub scaling: Option<RopeScaling>,
}

/// A validated, fully resolved configuration: what the model code reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub activation: Activation,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Multiplies `q · k` (`head_dim^-0.5`, or Gemma's `query_pre_attn_scalar^-0.5`).
    pub attn_scale: f64,
    /// Multiplies the token embeddings (Gemma: `sqrt(hidden_size)`).
    pub embed_scale: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    /// Attention kind of each layer.
    pub layers: Vec<LayerAttention>,
    /// RoPE of each layer.
    pub rope: Vec<Rope>,
    /// The model's `sliding_window`, used by windowed layers and by per-call attention controls.
    pub sliding_window: Option<Window>,
    /// Standard deviation of initial weights.
    pub initializer_range: f64,
}

impl Arch {
    /// Layers of each kind, for display: `(full, sliding, routed, head_mixed)`.
    pub fn layer_counts(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for l in &self.layers {
            counts[match l {
                LayerAttention::Full => 0,
                LayerAttention::Sliding(_) => 1,
                LayerAttention::Routed(_) => 2,
                LayerAttention::HeadMixed { .. } => 3,
            }] += 1;
        }
        counts
    }
}

/// The most decoder layers a config may ask for (the deepest open models have under 200).
pub const MAX_LAYERS: usize = 4096;

/// The most elements one weight matrix may have (2^40, 2 TiB in bf16): sizes past it are a
/// corrupt or mistyped config, refused before any shape arithmetic.
pub const MAX_ELEMENTS: usize = 1 << 40;

impl ModelConfig {
    /// Parse a `config.json` text; `origin` names the file in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::format(origin, format!("invalid JSON: {e}")))?;
        if let Some(text_config) = value.get_mut("text_config").map(serde_json::Value::take) {
            value = text_config;
        }
        let config: ModelConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let (path, message) = (e.path().to_string(), e.inner().to_string());
            let field = if path == "." { field_of(&message) } else { path };
            Error::config(origin, field, message)
        })?;
        config.resolve(origin)?;
        Ok(config)
    }

    /// Read a `config.json` file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Validate and resolve into an [`Arch`]; `origin` names the config in errors.
    pub fn resolve(&self, origin: &str) -> Result<Arch> {
        let err = |field: &str, msg: String| Error::config(origin, field, msg);
        let family = match self.model_type.as_str() {
            "llama" | "mistral" | "smollm2" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "gemma3" | "gemma3_text" => Family::Gemma3,
            other => {
                return Err(err(
                    "model_type",
                    format!("unsupported model type `{other}` (supported: llama, mistral, qwen2, qwen3, gemma3_text)"),
                ));
            }
        };
        let gemma = family == Family::Gemma3;
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
        ] {
            if value == 0 {
                return Err(err(field, "must be positive".into()));
            }
        }
        // Per-layer tables are allocated here, before any weight is read: a layer count from a
        // corrupt or mistyped config must not size them.
        if self.num_hidden_layers > MAX_LAYERS {
            return Err(err(
                "num_hidden_layers",
                format!("{} layers; at most {MAX_LAYERS} are supported", self.num_hidden_layers),
            ));
        }
        let num_heads = self.num_attention_heads;
        let num_kv_heads = self.num_key_value_heads.unwrap_or(num_heads);
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(err(
                "num_key_value_heads",
                format!("{num_kv_heads} must divide num_attention_heads = {num_heads}"),
            ));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if self.hidden_size % num_heads == 0 => self.hidden_size / num_heads,
            None => {
                return Err(err("head_dim", "missing and hidden_size is not a multiple of the heads".into()));
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(err("head_dim", format!("{head_dim} must be positive and even for RoPE")));
        }
        // Every weight matrix's element count must be a number: a mistyped or corrupt size must
        // not overflow the shape arithmetic (a panic) before the weights are compared with it.
        let q_width = num_heads.checked_mul(head_dim);
        for (fields, elements) in [
            ("num_attention_heads × head_dim × hidden_size", q_width.and_then(|q| q.checked_mul(self.hidden_size))),
            ("vocab_size × hidden_size", self.vocab_size.checked_mul(self.hidden_size)),
            ("intermediate_size × hidden_size", self.intermediate_size.checked_mul(self.hidden_size)),
        ] {
            if elements.is_none_or(|n| n > MAX_ELEMENTS) {
                return Err(err(fields, format!("a weight of more than {MAX_ELEMENTS} elements")));
            }
        }
        if let Some(f) = self.partial_rotary_factor.filter(|&f| f != 1.0) {
            return Err(err("partial_rotary_factor", format!("{f}: only full rotary embeddings are supported")));
        }
        if self.attn_logit_softcapping.is_some() {
            return Err(err("attn_logit_softcapping", "attention logit soft-capping is not supported".into()));
        }
        let activation = match self.hidden_activation.as_deref().or(self.hidden_act.as_deref()).unwrap_or(if gemma {
            "gelu_pytorch_tanh"
        } else {
            "silu"
        }) {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_tanh" | "gelu_new" => Activation::GeluTanh,
            "gelu" => Activation::Gelu,
            other => {
                return Err(err(
                    if self.hidden_activation.is_some() { "hidden_activation" } else { "hidden_act" },
                    format!("unsupported activation `{other}`"),
                ));
            }
        };
        if self.mlp_bias == Some(true) {
            return Err(err("mlp_bias", "MLP biases are not supported".into()));
        }
        let specs: Vec<(&str, &RopeScaling)> = match &self.rope_parameters {
            Some(RopeParameters::Shared(s)) => vec![("rope_parameters", s)],
            Some(RopeParameters::PerLayerType(m)) => m.values().map(|s| ("rope_parameters", s)).collect(),
            None => self.rope_scaling.iter().map(|s| ("rope_scaling", s)).collect(),
        };
        for (field, s) in specs {
            match s.rope_type.as_str() {
                "default" => {}
                "linear" | "llama3" if s.factor.is_some_and(|f| f > 0.0) => {}
                "linear" | "llama3" => {
                    return Err(err(&format!("{field}.factor"), "must be positive".into()));
                }
                other => {
                    return Err(err(&format!("{field}.rope_type"), format!("unsupported `{other}`")));
                }
            }
        }

        let native = self.native_layer_types(origin)?;
        let attention = self.attention_kinds(origin, &native, num_kv_heads)?;
        let rope = native.iter().map(|&sliding| self.rope_for(sliding, gemma)).collect();
        let bias = self.attention_bias.unwrap_or(false);
        Ok(Arch {
            family,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            activation,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(gemma),
            qkv_bias: bias || family == Family::Qwen2,
            o_bias: bias,
            attn_scale: match (gemma, self.query_pre_attn_scalar) {
                (true, Some(s)) => s.powf(-0.5),
                _ => (head_dim as f64).powf(-0.5),
            },
            embed_scale: gemma.then(|| (self.hidden_size as f64).sqrt()),
            final_logit_softcapping: self.final_logit_softcapping,
            layers: attention,
            rope,
            sliding_window: self
                .sliding_window
                .map(Window::new)
                .transpose()
                .map_err(|e| Error::config(origin, "sliding_window", e.to_string()))?,
            initializer_range: match self.initializer_range {
                Some(s) if s > 0.0 && s.is_finite() => s,
                Some(s) => return Err(err("initializer_range", format!("{s} must be positive"))),
                None => 0.02,
            },
        })
    }

    /// RoPE of a layer whose native type is sliding (`true`) or full.
    fn rope_for(&self, sliding: bool, gemma: bool) -> Rope {
        let default_theta = if gemma { 1_000_000.0 } else { 10_000.0 };
        let rope = |spec: Option<&RopeScaling>, fallback: f64| Rope {
            base: spec.and_then(|s| s.rope_theta).unwrap_or(fallback),
            scaling: spec.filter(|s| s.rope_type != "default").cloned(),
        };
        match &self.rope_parameters {
            Some(RopeParameters::Shared(s)) => rope(Some(s), default_theta),
            Some(RopeParameters::PerLayerType(m)) => {
                let key = if sliding { "sliding_attention" } else { "full_attention" };
                let local = if gemma && sliding { 10_000.0 } else { default_theta };
                rope(m.get(key).or_else(|| m.get("full_attention")), local)
            }
            None if gemma && sliding => Rope { base: self.rope_local_base_freq.unwrap_or(10_000.0), scaling: None },
            None => Rope {
                base: self.rope_theta.unwrap_or(default_theta),
                scaling: self.rope_scaling.clone().filter(|s| s.rope_type != "default"),
            },
        }
    }
}

/// The field a serde error is about, for the error message (`missing field `x``, `unknown variant`).
fn field_of(message: &str) -> String {
    message.split('`').nth(1).map(str::to_string).unwrap_or_else(|| "(document)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Arch> {
        ModelConfig::from_json_str(json, "config.json")?.resolve("config.json")
    }

    const GEMMA_V4: &str = r#"{"model_type": "gemma3_text", "vocab_size": 10, "hidden_size": 8,
        "intermediate_size": 16, "num_hidden_layers": 12, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 4, "sliding_window": 512, "sliding_window_pattern": 6, "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0, "query_pre_attn_scalar": 256}"#;

    #[test]
    fn gemma_v4_config_is_five_local_to_one_global() {
        let arch = parse(GEMMA_V4).unwrap();
        let full: Vec<usize> = (0..12).filter(|&i| arch.layers[i] == LayerAttention::Full).collect();
        assert_eq!(full, vec![5, 11]);
        assert_eq!(arch.layers[0], LayerAttention::Sliding(Window::new(512).unwrap()));
        assert_eq!((arch.rope[0].base, arch.rope[5].base), (10_000.0, 1_000_000.0));
        assert_eq!(arch.attn_scale, 1.0 / 16.0);
        assert_eq!(arch.embed_scale, Some(8f64.sqrt()));
        assert!(arch.tie_word_embeddings);
    }

    #[test]
    fn attention_override_keeps_the_native_rope() {
        let json = GEMMA_V4
            .replace(r#""query_pre_attn_scalar": 256"#, r#""query_pre_attn_scalar": 256, "attention_pattern": "F""#);
        let arch = parse(&json).unwrap();
        assert!(arch.layers.iter().all(|l| *l == LayerAttention::Full));
        assert_eq!((arch.rope[0].base, arch.rope[5].base), (10_000.0, 1_000_000.0));
    }

    #[test]
    fn patterns_tile_over_layers() {
        let json = GEMMA_V4.replace(r#""query_pre_attn_scalar": 256"#, r#""attention_pattern": "SSR""#);
        let kinds: Vec<&str> = parse(&json).unwrap().layers.iter().map(LayerAttention::type_name).collect();
        assert_eq!(
            kinds[..6],
            [
                "sliding_attention",
                "sliding_attention",
                "routed_attention",
                "sliding_attention",
                "sliding_attention",
                "routed_attention"
            ]
        );
    }

    #[test]
    fn v5_rope_parameters_per_layer_type() {
        let json = r#"{"model_type": "gemma3_text", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "head_dim": 4, "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}}"#;
        let arch = parse(json).unwrap();
        assert_eq!(arch.rope[0], Rope { base: 10_000.0, scaling: None });
        assert_eq!(arch.rope[1].base, 1_000_000.0);
        assert_eq!(arch.rope[1].scaling.as_ref().and_then(|s| s.factor), Some(8.0));
    }

    #[test]
    fn errors_name_the_field() {
        let bad_kv = GEMMA_V4.replace(r#""num_key_value_heads": 1"#, r#""num_key_value_heads": 3"#);
        assert!(parse(&bad_kv).unwrap_err().to_string().contains("num_key_value_heads"));
        let missing = GEMMA_V4.replace(r#""vocab_size": 10,"#, "");
        let e = parse(&missing).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("vocab_size"), "{e}");
        let family = GEMMA_V4.replace("gemma3_text", "gpt_neox");
        assert!(parse(&family).unwrap_err().to_string().contains("model_type"));
        let mixed = GEMMA_V4.replace(r#""query_pre_attn_scalar": 256"#, r#""attention_pattern": "H""#);
        assert!(parse(&mixed).unwrap_err().to_string().contains("kv_head_types.0"));
    }
}
