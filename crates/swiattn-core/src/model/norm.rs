//! RMSNorm, computed in fp32, in the two conventions of the supported families.

use burn::module::{Initializer, Module, Param};
use burn::tensor::{DType, Device, Tensor};

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · scale`, in fp32, cast back.
///
/// `scale` is `weight` (Llama, Qwen) or `1 + weight` (Gemma, whose checkpoints store the offset
/// from one; `offset = true`). Weights keep the checkpoint's convention so a saved model reloads
/// bit for bit.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[dim]`
    pub weight: Param<Tensor<1>>,
    #[module(skip)]
    pub eps: f64,
    #[module(skip)]
    pub offset: bool,
}

impl RmsNorm {
    /// A norm that starts as the identity scale (weight 1, or 0 with `offset`).
    pub fn new(dim: usize, eps: f64, offset: bool, device: &Device) -> Self {
        let init = if offset { Initializer::Zeros } else { Initializer::Ones };
        Self { weight: init.init([dim], device), eps, offset }
    }

    /// `x`: `[..., dim]` → same shape and dtype.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = x.cast(DType::F32);
        let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt();
        let normed = x / rms;
        let weight = self.weight.val().cast(DType::F32);
        if self.offset {
            (normed * (weight + 1.0).unsqueeze()).cast(dtype)
        } else {
            normed.cast(dtype) * self.weight.val().unsqueeze()
        }
    }
}
