//! Each layer's attention from a config: the checkpoint's native layout (`layer_types`, Gemma's
//! `sliding_window_pattern`, Qwen2's `max_window_layers`) and swiattn's overrides
//! (`attention_pattern`, `attention_types`, `kv_head_types`; see [`super::config`]).

use std::collections::BTreeMap;

use super::config::ModelConfig;
use crate::attention::{LayerAttention, Window};
use crate::{Error, Result};

impl ModelConfig {
    /// The checkpoint's native layout: `true` for each sliding layer.
    pub(super) fn native_layer_types(&self, origin: &str) -> Result<Vec<bool>> {
        let n = self.num_hidden_layers;
        if let Some(types) = &self.layer_types {
            if types.len() != n {
                return Err(Error::config(
                    origin,
                    "layer_types",
                    format!("has {} entries for {n} layers", types.len()),
                ));
            }
            return types
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str() {
                    "full_attention" => Ok(false),
                    "sliding_attention" => Ok(true),
                    other => Err(Error::config(
                        origin,
                        format!("layer_types[{i}]"),
                        format!("unknown layer type `{other}` (expected full_attention or sliding_attention)"),
                    )),
                })
                .collect();
        }
        Ok(match self.model_type.as_str() {
            "gemma3" | "gemma3_text" => {
                let p = self.sliding_window_pattern.or(self.legacy_sliding_window_pattern).unwrap_or(6).max(1);
                (0..n).map(|i| (i + 1) % p != 0).collect()
            }
            "qwen2" | "qwen3" if self.use_sliding_window == Some(true) => {
                let first = self.max_window_layers.unwrap_or(n);
                (0..n).map(|i| i >= first).collect()
            }
            _ => vec![self.sliding_window.is_some() && self.model_type == "mistral"; n],
        })
    }

    /// Each layer's attention: the overrides if given, else the native layout.
    pub(super) fn attention_kinds(
        &self,
        origin: &str,
        native: &[bool],
        num_kv_heads: usize,
    ) -> Result<Vec<LayerAttention>> {
        let n = self.num_hidden_layers;
        let names: Vec<String> = match (&self.attention_pattern, &self.attention_types) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    origin,
                    "attention_pattern",
                    "give either attention_pattern or attention_types, not both",
                ));
            }
            (Some(pattern), None) => parse_pattern(pattern)
                .map_err(|m| Error::config(origin, "attention_pattern", m))?
                .into_iter()
                .cycle()
                .take(n)
                .map(str::to_string)
                .collect(),
            (None, Some(types)) => {
                if types.len() != n {
                    return Err(Error::config(
                        origin,
                        "attention_types",
                        format!("has {} entries for {n} layers", types.len()),
                    ));
                }
                types.clone()
            }
            (None, None) => {
                native.iter().map(|&s| if s { "sliding_attention" } else { "full_attention" }.to_string()).collect()
            }
        };
        let field = if self.attention_pattern.is_some() {
            "attention_pattern".to_string()
        } else if self.attention_types.is_some() {
            "attention_types".to_string()
        } else {
            "layer_types".to_string()
        };
        let window = || -> Result<Window> {
            let w = self.sliding_window.ok_or_else(|| {
                Error::config(origin, "sliding_window", format!("missing, but {field} asks for windowed layers"))
            })?;
            Window::new(w).map_err(|e| Error::config(origin, "sliding_window", e.to_string()))
        };
        names
            .iter()
            .enumerate()
            .map(|(i, name)| match name.as_str() {
                "full_attention" => Ok(LayerAttention::Full),
                "sliding_attention" => Ok(LayerAttention::Sliding(window()?)),
                "routed_attention" => Ok(LayerAttention::Routed(window()?)),
                "head_mixed_attention" => {
                    let key = format!("kv_head_types.{i}");
                    let types = self
                        .kv_head_types
                        .as_ref()
                        .and_then(|m| m.get(&i.to_string()))
                        .ok_or_else(|| Error::config(origin, &key, "missing for a head-mixed layer"))?;
                    if types.len() != num_kv_heads {
                        return Err(Error::config(
                            origin,
                            &key,
                            format!("has {} entries for {num_kv_heads} KV heads", types.len()),
                        ));
                    }
                    let full_kv_heads = types
                        .iter()
                        .map(|t| match t.as_str() {
                            "full_attention" => Ok(true),
                            "sliding_attention" => Ok(false),
                            other => Err(Error::config(origin, &key, format!("unknown head type `{other}`"))),
                        })
                        .collect::<Result<_>>()?;
                    Ok(LayerAttention::HeadMixed { window: window()?, full_kv_heads })
                }
                other => Err(Error::config(
                    origin,
                    format!("{field}[{i}]"),
                    format!(
                        "unknown layer type `{other}` (expected full_attention, sliding_attention, \
                         routed_attention or head_mixed_attention)"
                    ),
                )),
            })
            .collect()
    }

    /// Replace the attention of every layer (keeping the native layout for RoPE).
    pub fn with_attention(mut self, layers: &[LayerAttention]) -> Self {
        self.attention_pattern = None;
        self.attention_types = Some(layers.iter().map(|l| l.type_name().to_string()).collect());
        let mixed: BTreeMap<String, Vec<String>> = layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l {
                LayerAttention::HeadMixed { full_kv_heads, .. } => Some((
                    i.to_string(),
                    full_kv_heads
                        .iter()
                        .map(|&f| if f { "full_attention" } else { "sliding_attention" }.to_string())
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        self.kv_head_types = (!mixed.is_empty()).then_some(mixed);
        if let Some(w) = layers.iter().find_map(LayerAttention::window) {
            self.sliding_window = Some(w.size());
        }
        self
    }
}

/// `"SSSSSF"` → layer type names, one per letter.
pub fn parse_pattern(pattern: &str) -> std::result::Result<Vec<&'static str>, String> {
    if pattern.is_empty() {
        return Err("empty pattern".into());
    }
    pattern
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            'F' | 'L' => Ok("full_attention"),
            'S' => Ok("sliding_attention"),
            'R' => Ok("routed_attention"),
            'H' => Ok("head_mixed_attention"),
            other => {
                Err(format!("unknown letter `{other}` in `{pattern}` (F full, S sliding, R routed, H head-mixed)"))
            }
        })
        .collect()
}
