//! The decoder-only transformer: embeddings, decoder layers, final norm, LM head.

use burn::module::{Initializer, Module};
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::attention::{linear, runs_fused};
use super::config::{Arch, Family, ModelConfig, Rope};
use super::control::{AttentionController, Routes};
use super::layer::DecoderLayer;
use super::norm::RmsNorm;
use super::rope;
use super::router::ModelRouter;
use crate::attention::LayerAttention;
use crate::cache::ModelCache;
use crate::{Error, Result};

/// Embeddings, layers and final norm: the `model.*` keys of a checkpoint.
#[derive(Module, Debug)]
pub struct TextModel {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

/// A causal language model; `lm_head` is absent when tied to the embeddings.
#[derive(Module, Debug)]
pub struct Transformer {
    pub model: TextModel,
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub config: ModelConfig,
    #[module(skip)]
    pub arch: Arch,
    /// Decides the routed layers at inference ([`Self::with_router`]); `None` for static layouts
    /// and while training (policies decide there).
    #[module(skip)]
    pub router: Option<ModelRouter>,
}

impl Transformer {
    /// A randomly initialized model: weights `N(0, initializer_range)` (HF's key, default 0.02),
    /// identity norms, zero biases.
    pub fn new(config: ModelConfig, device: &Device) -> Result<Self> {
        let arch = config.resolve("model config")?;
        let embed_tokens = EmbeddingConfig::new(arch.vocab_size, arch.hidden_size)
            .with_initializer(Initializer::Normal { mean: 0.0, std: arch.initializer_range })
            .init(device);
        let layers = (0..arch.layers.len()).map(|i| DecoderLayer::new(&arch, i, device)).collect();
        let norm = RmsNorm::new(arch.hidden_size, arch.rms_norm_eps, arch.family == Family::Gemma3, device);
        let lm_head = (!arch.tie_word_embeddings)
            .then(|| linear(arch.hidden_size, arch.vocab_size, false, arch.initializer_range, device));
        Ok(Self { model: TextModel { embed_tokens, layers, norm }, lm_head, config, arch, router: None })
    }

    /// The same weights with another attention layout (one kind per layer): how a full-attention
    /// checkpoint becomes a hybrid for continual pretraining. The native layout (and so each
    /// layer's RoPE) is kept; the config records the new layout, so a saved model reloads with it.
    pub fn with_attention(mut self, layers: &[LayerAttention]) -> Result<Self> {
        if layers.len() != self.arch.layers.len() {
            return Err(Error::Invalid(format!(
                "{} attention kinds for a model of {} layers",
                layers.len(),
                self.arch.layers.len()
            )));
        }
        let config = self.config.clone().with_attention(layers);
        let arch = config.resolve("model config with the new attention")?;
        for (layer, attention) in self.model.layers.iter_mut().zip(&arch.layers) {
            layer.self_attn.attention = attention.clone();
            layer.self_attn.window = attention.window().or(arch.sliding_window);
        }
        self.config = config;
        self.arch = arch;
        Ok(self)
    }

    /// Attention kind of each layer.
    pub fn layer_attention(&self) -> &[LayerAttention] {
        &self.arch.layers
    }

    /// The indices of the routed layers, in order (what a router serves).
    pub fn routed_layers(&self) -> Vec<usize> {
        self.arch.layers.iter().enumerate().filter(|(_, l)| l.is_routed()).map(|(i, _)| i).collect()
    }

    /// Empty KV caches for this model.
    pub fn new_cache(&self) -> ModelCache {
        ModelCache::new(&self.arch.layers)
    }

    /// Logits `[batch, len, vocab]` of a whole sequence `tokens: [batch, len]`; `routes` gives the
    /// per-token routes of routed layers.
    pub fn forward(&self, tokens: Tensor<2, Int>, routes: &Routes) -> Result<Tensor<3>> {
        let hidden = self.hidden_states(tokens, &mut routes.clone(), None)?;
        Ok(self.logits(hidden))
    }

    /// Logits of the next chunk of tokens, continuing from (and extending) `cache`: chunked
    /// prefill when `len > 1`, decoding when `len == 1`. `controller` decides this chunk's
    /// attention controls ([`Routes`] of this chunk only, or the model's own, [`Self::routes`]).
    pub fn forward_cached(
        &self,
        tokens: Tensor<2, Int>,
        controller: &mut dyn AttentionController,
        cache: &mut ModelCache,
    ) -> Result<Tensor<3>> {
        let hidden = self.hidden_states(tokens, controller, Some(cache))?;
        Ok(self.logits(hidden))
    }

    /// Logits `[batch, vocab]` of the last position of the next chunk, continuing from (and
    /// extending) `cache`: what prefill and greedy decoding need, without the LM head over every
    /// position of a long chunk.
    pub fn forward_cached_last(
        &self,
        tokens: Tensor<2, Int>,
        controller: &mut dyn AttentionController,
        cache: &mut ModelCache,
    ) -> Result<Tensor<2>> {
        let hidden = self.hidden_states(tokens, controller, Some(cache))?;
        let [b, len, h] = hidden.dims();
        let logits = self.logits(hidden.slice([0..b, len - 1..len, 0..h]));
        let vocab = logits.dims()[2];
        Ok(logits.reshape([b, vocab]))
    }

    /// The longest chunk a prefill should feed at once: the whole context where attention runs
    /// the fused kernels (their memory is linear in the chunk), else 512 tokens (the tensor-op
    /// paths hold `[heads, chunk, keys]` scores). Fewer, longer chunks matter on a GPU: a forward
    /// costs about the same host time whatever its length.
    pub fn prefill_chunk(&self) -> usize {
        if runs_fused(&self.model.embed_tokens.weight.val().device(), self.arch.head_dim) { usize::MAX } else { 512 }
    }

    /// Final hidden states `[batch, len, hidden]` (after the last norm), each layer's attention as
    /// `controller` decides from its input (see [`AttentionController`]).
    ///
    /// With a cache, an error in a later layer leaves the earlier layers' caches extended:
    /// discard the cache after an error. Token ids are not read back here: ids from the host go
    /// through [`Self::token_tensor`], which checks them against the vocabulary.
    pub fn hidden_states(
        &self,
        tokens: Tensor<2, Int>,
        controller: &mut dyn AttentionController,
        mut cache: Option<&mut ModelCache>,
    ) -> Result<Tensor<3>> {
        let [batch, len] = tokens.dims();
        if batch == 0 || len == 0 {
            return Err(Error::shape("tokens", "[batch >= 1, len >= 1]", &[batch, len]));
        }
        let start = cache.as_ref().map_or(0, |c| c.len());
        // A ragged batch's positions per row and column, else `start..start + len` for every row.
        let positions = cache.as_ref().and_then(|c| c.chunk_positions(len));
        let (positions, rows) = match positions {
            Some(p) if p.len() != batch * len => {
                return Err(Error::shape(
                    "tokens for a ragged cache",
                    format!("[{}, len]", p.len() / len),
                    &[batch, len],
                ));
            }
            Some(p) => (p, batch),
            None => ((start..start + len).collect(), 1),
        };
        let mut x = self.model.embed_tokens.forward(tokens);
        if let Some(scale) = self.arch.embed_scale {
            // As in transformers: the scale is rounded to the embedding dtype first.
            let dtype = x.dtype();
            let scale = Tensor::<1>::from_floats([scale as f32], &x.device()).cast(dtype);
            x = x * scale.unsqueeze();
        }
        // RoPE tables once per distinct RoPE (Gemma has two), not once per layer.
        let mut tables: Vec<(&Rope, rope::Tables)> = Vec::new();
        for (i, layer) in self.model.layers.iter().enumerate() {
            let layer_rope = &layer.self_attn.rope;
            let at = match tables.iter().position(|(r, _)| *r == layer_rope) {
                Some(at) => at,
                None => {
                    let table =
                        rope::position_tables(layer_rope, self.arch.head_dim, &positions, [rows, len], &x.device());
                    tables.push((layer_rope, table.cast(x.dtype())));
                    tables.len() - 1
                }
            };
            let layer_cache = cache.as_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(i, x, start, &tables[at].1, layer_cache, controller)?;
        }
        if let Some(cache) = cache {
            cache.advance(len);
        }
        Ok(self.model.norm.forward(x))
    }

    /// LM head (tied or not) and optional final soft-capping: `[batch, len, hidden]` →
    /// `[batch, len, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, t, h] = hidden.dims();
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let w = self.model.embed_tokens.weight.val();
                let v = w.dims()[0];
                hidden.reshape([b * t, h]).matmul(w.transpose()).reshape([b, t, v])
            }
        };
        match self.arch.final_logit_softcapping {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

    /// Token ids `[batch, len]` on the model's device, checked on the host against the
    /// vocabulary: the data boundary every caller with host ids goes through, so that the
    /// forward itself never reads tokens back from the device.
    pub fn token_tensor(&self, ids: &[u32], [batch, len]: [usize; 2]) -> Result<Tensor<2, Int>> {
        if batch == 0 || len == 0 || ids.len() != batch * len {
            return Err(Error::shape(
                format!("token ids ({} of them)", ids.len()),
                "[batch >= 1, len >= 1] with batch * len ids",
                &[batch, len],
            ));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.arch.vocab_size) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (vocab_size = {})",
                self.arch.vocab_size
            )));
        }
        let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        Ok(Tensor::from_data(TensorData::new(data, [batch, len]), &self.model.embed_tokens.weight.val().device()))
    }
}
