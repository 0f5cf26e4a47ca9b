//! Gradients of the fused attention: the forward keeps its inputs, output and log-sum-exp, and
//! the backward calls the fused backward kernels (no `n × n` buffer, scores recomputed per tile).

use burn::backend::AutodiffBackend;
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::tensor::{FloatTensor, IntTensor};

use super::ops::{FlashAttentionOps, FlashParams};

type Saved<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    IntTensor<B>,
    IntTensor<B>,
    FlashParams,
);

#[derive(Debug)]
struct FlashBackward;

impl<B: FlashAttentionOps> Backward<B, 3> for FlashBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (q, k, v, out, lse, order, split, params) = ops.state;
        let (dq, dk, dv) = B::flash_attention_backward(q, k, v, out, lse, grad, order, split, params);
        let [q_node, k_node, v_node] = ops.parents;
        for (node, g) in [(q_node, dq), (k_node, dk), (v_node, dv)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: FlashAttentionOps, C: CheckpointStrategy> FlashAttentionOps for Autodiff<B, C> {
    fn flash_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        order: IntTensor<Self>,
        split: IntTensor<Self>,
        params: FlashParams,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (q, q_node) = q.into_parts();
        let (k, k_node) = k.into_parts();
        let (v, v_node) = v.into_parts();
        let (out, lse) =
            B::flash_attention_forward(q.clone(), k.clone(), v.clone(), order.clone(), split.clone(), params);
        let lse_leaf = Self::from_inner(lse.clone());
        let out = match FlashBackward.prepare::<C>([q_node, k_node, v_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((q, k, v, out.clone(), lse, order, split, params), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (out, lse_leaf)
    }

    fn flash_attention_rows(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        order: IntTensor<Self>,
        split: IntTensor<Self>,
        floor: IntTensor<Self>,
        params: FlashParams,
    ) -> FloatTensor<Self> {
        // Callers take this path only for tensors that need no gradient (the model checks).
        assert!(
            [&q, &k, &v].iter().all(|t| !t.is_tracked()),
            "the fused ragged attention has no backward: call it on tensors that need no gradient"
        );
        let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
        Self::from_inner(B::flash_attention_rows(q, k, v, order, split, floor, params))
    }

    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        order: IntTensor<Self>,
        split: IntTensor<Self>,
        params: FlashParams,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Not differentiable itself (no double backward): run the inner backend's kernels.
        let (dq, dk, dv) = B::flash_attention_backward(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            out.into_primitive(),
            lse.into_primitive(),
            grad.into_primitive(),
            order,
            split,
            params,
        );
        (Self::from_inner(dq), Self::from_inner(dk), Self::from_inner(dv))
    }
}
