//! One decoder layer: attention and MLP with residuals, pre-norm (Llama, Qwen) or sandwich-norm
//! (Gemma 3: norms before *and* after each sub-block).

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::attention::SelfAttention;
use super::config::{Arch, Family};
use super::control::AttentionController;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope;
use crate::Result;
use crate::cache::LayerCache;

/// A decoder layer. Field names are the checkpoint keys; note that in Llama/Qwen
/// `post_attention_layernorm` is the norm *before* the MLP, while in Gemma 3 it normalizes the
/// attention output and `pre_feedforward_layernorm` precedes the MLP.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: SelfAttention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
    pub pre_feedforward_layernorm: Option<RmsNorm>,
    pub post_feedforward_layernorm: Option<RmsNorm>,
}

impl DecoderLayer {
    pub fn new(arch: &Arch, layer: usize, device: &Device) -> Self {
        let gemma = arch.family == Family::Gemma3;
        let norm = || RmsNorm::new(arch.hidden_size, arch.rms_norm_eps, gemma, device);
        Self {
            self_attn: SelfAttention::new(arch, layer, device),
            mlp: Mlp::new(arch.hidden_size, arch.intermediate_size, arch.activation, arch.initializer_range, device),
            input_layernorm: norm(),
            post_attention_layernorm: norm(),
            pre_feedforward_layernorm: gemma.then(norm),
            post_feedforward_layernorm: gemma.then(norm),
        }
    }

    /// `x`: `[batch, len, hidden]` at positions `start..start + len` → same shape; `rope` holds
    /// this layer's RoPE tables for those positions.
    /// `controller` is asked for this layer's attention control (as layer `layer`) with the
    /// normalized attention input.
    pub fn forward(
        &self,
        layer: usize,
        x: Tensor<3>,
        start: usize,
        rope: &rope::Tables,
        cache: Option<&mut LayerCache>,
        controller: &mut dyn AttentionController,
    ) -> Result<Tensor<3>> {
        let [batch, len, _] = x.dims();
        let normed = self.input_layernorm.forward(x.clone());
        let control = controller.control(layer, &normed)?;
        self.self_attn.check_control(layer, control.as_ref(), batch, len, cache.as_deref())?;
        let attn = self.self_attn.forward(normed, start, rope, cache, control.as_ref());
        match (&self.pre_feedforward_layernorm, &self.post_feedforward_layernorm) {
            (Some(pre_ff), Some(post_ff)) => {
                let h = x + self.post_attention_layernorm.forward(attn);
                let ff = post_ff.forward(self.mlp.forward(pre_ff.forward(h.clone())));
                Ok(h + ff)
            }
            _ => {
                let h = x + attn;
                let ff = self.mlp.forward(self.post_attention_layernorm.forward(h.clone()));
                Ok(h + ff)
            }
        }
    }
}
