//! The training loss: next-token cross-entropy in fp32, whatever the compute dtype.

use burn::tensor::{Int, Tensor};
use swiattn_core::score::target_logprobs;

/// Mean next-token NLL of `logits` `[batch, len, vocab]` against `target` `[batch, len]`, and the
/// per-position NLL `[batch, len]`.
pub fn next_token_nll(logits: Tensor<3>, target: Tensor<2, Int>) -> (Tensor<1>, Tensor<2>) {
    let nll = target_logprobs(logits, target).neg();
    (nll.clone().mean(), nll)
}
