//! The fused attention as a burn backend extension: one trait, implemented for burn's CubeCL
//! backend (CUDA, wgpu) in [`super::cube`] and for autodiff in [`super::autodiff`], reached from
//! the backend-less `Tensor` API through burn's `Dispatch`. With burn's kernel fusion (feature
//! `fusion`) the macro also implements it for `Fusion<CubeBackend>`: each call becomes one opaque
//! custom operation in the fusion stream, whose output shapes are known up front (below) and whose
//! kernels launch when the stream reaches it.

use burn::backend::backend_extension;
#[cfg(feature = "fusion")]
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::{FloatTensor, IntTensor};
#[cfg(feature = "fusion")]
use burn::tensor::{DType, Shape};

/// The scalars of a fused attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlashParams {
    /// Softmax scale applied to `q · k`.
    pub scale: f32,
    /// Absolute position of query row 0 and of key 0 (see [`crate::attention::Positions`]).
    pub q_start: u32,
    pub k_start: u32,
    /// Windows of the two row segments of the [`super::QueryOrder`]; 0 = full attention.
    pub window_a: u32,
    pub window_b: u32,
}

/// Fused attention kernels.
///
/// Shapes: `q` `[batch, q_heads, q_len, head_dim]`, `k`/`v` `[batch, kv_heads, k_len, head_dim]`,
/// `order` `[batch, q_len]` and `split` `[batch]` as in [`super::QueryOrder`]; outputs like `q`,
/// `lse` `[batch, q_heads, q_len]` in fp32 (the natural log of each row's softmax denominator,
/// scores scaled; a row that sees no key has a large negative `lse` and a zero output).
#[backend_extension(Cube, Autodiff, Fusion: cfg(feature = "fusion"))]
pub trait FlashAttentionOps: burn::backend::Backend {
    /// The attention output and the log-sum-exp of every row.
    #[fusion(meta = |q, _k, _v, _order, _split, _params| {
        let [batch, heads, rows, _] = q.shape.dims::<4>();
        (q.clone(), TensorSpec::new(Shape::new([batch, heads, rows]), DType::F32))
    })]
    fn flash_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        order: IntTensor<Self>,
        split: IntTensor<Self>,
        params: FlashParams,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The queries of a ragged cache ([`crate::cache::RowsCache`]): the forward's output, where
    /// sequence `b` also sees no key column before `floor[b]` (`[batch]`, its first held column).
    /// Inference only: it has no backward.
    #[fusion(meta = |q, _k, _v, _order, _split, _floor, _params| q.clone())]
    fn flash_attention_rows(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        order: IntTensor<Self>,
        split: IntTensor<Self>,
        floor: IntTensor<Self>,
        params: FlashParams,
    ) -> FloatTensor<Self>;

    /// Gradients of `q`, `k` and `v` given the forward's `out` and `lse` and the output gradient,
    /// recomputing scores tile by tile.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |q, k, v, _out, _lse, _grad, _order, _split, _params| (q.clone(), k.clone(), v.clone()))]
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
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}
