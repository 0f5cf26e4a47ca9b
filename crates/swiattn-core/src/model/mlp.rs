//! The gated MLP of every supported family: `down(act(gate(x)) · up(x))` — SwiGLU with SiLU
//! (Llama, Qwen), GeGLU with tanh-GELU (Gemma 3).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, activation};

use super::attention::linear;
use super::config::Activation;

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// Weights `N(0, std)` (the config's `initializer_range`).
    pub fn new(hidden: usize, intermediate: usize, activation: Activation, std: f64, device: &Device) -> Self {
        let linear = |i, o| linear(i, o, false, std, device);
        Self {
            gate_proj: linear(hidden, intermediate),
            up_proj: linear(hidden, intermediate),
            down_proj: linear(intermediate, hidden),
            activation,
        }
    }

    /// `x`: `[batch, len, hidden]` → same shape.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        let gate = match self.activation {
            Activation::Silu => activation::silu(gate),
            Activation::GeluTanh => activation::gelu_approximate(gate),
            Activation::Gelu => activation::gelu(gate),
        };
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
