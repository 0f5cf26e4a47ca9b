//! Fused attention kernels in CubeCL, for burn's GPU backends (CUDA and wgpu alike).
//!
//! burn 0.22's own attention has no sliding window, and its training backward materializes the
//! `n × n` score matrix. These kernels compute full, sliding-window and routed (switch) attention
//! tile by tile with an online softmax (fp32 statistics, any float input dtype), skip key tiles
//! outside each query tile's window, read grouped-query K/V heads in place, and differentiate
//! through a fused backward that recomputes scores from the saved log-sum-exp.
//!
//! | piece | file |
//! |---|---|
//! | tile shape, window predicate, row tiles | [`tile`] |
//! | forward (output + log-sum-exp), portable | [`forward`] |
//! | register-level tensor-core tiles (`mma.sync`, `ldmatrix`) | [`mma`] |
//! | forward on tensor cores (bf16/f16, CUDA) | [`forward_mma`] |
//! | double-buffered key tiles by `cp.async` (CUDA through CubeCL's C++ backend) | [`pipeline`] |
//! | backward (delta, dQ, dK/dV), portable | [`backward`] |
//! | backward on tensor cores (bf16/f16, CUDA) | [`backward_mma`] |
//! | decode: one query per sequence, split over the keys | [`decode`] |
//! | burn backend extension | [`ops`], [`cube`], [`autodiff`] |
//! | which rows, in which order, under which window | [`order`] |
//!
//! The reference is [`crate::attention::attention_reference`]; `conformance::fused` holds
//! every kernel to it, forward and gradients. On the CPU the tensor-op paths of
//! [`crate::attention`] run instead ([`runs_on`]).

mod autodiff;
mod backward;
mod backward_mma;
mod cube;
mod decode;
mod forward;
mod forward_mma;
mod mma;
mod ops;
mod order;
mod pipeline;
mod tile;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::attention::{Positions, RouteMask, Span, Window};
pub use backward_mma::{BackwardTiles, set_backward_tiles};
pub use forward_mma::{ForwardTiles, set_forward_tiles};
pub use ops::{FlashAttentionOps, FlashParams};
pub use order::QueryOrder;
use order::window_code;

/// Whether the fused kernels run on this device (burn's CubeCL backends: CUDA, wgpu).
pub fn runs_on(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::Cube(_))
}

static POISON: AtomicBool = AtomicBool::new(false);
static TENSOR_CORES: AtomicBool = AtomicBool::new(true);
static ASYNC_COPIES: AtomicBool = AtomicBool::new(true);

/// Allow (default) or forbid the tensor-core kernels ([`forward_mma`], [`backward_mma`]) where the
/// device and dtype have them; forbidden, every call takes the portable kernels (for comparisons).
/// Process-wide.
pub fn set_tensor_cores(on: bool) {
    TENSOR_CORES.store(on, Ordering::Relaxed);
}

fn tensor_cores() -> bool {
    TENSOR_CORES.load(Ordering::Relaxed)
}

/// Allow (default) or forbid the tensor-core kernels' `cp.async` key pipeline ([`pipeline`])
/// where the device has it; forbidden, their tiles load through registers (for comparisons).
/// Process-wide.
pub fn set_async_copies(on: bool) {
    ASYNC_COPIES.store(on, Ordering::Relaxed);
}

fn async_copies() -> bool {
    ASYNC_COPIES.load(Ordering::Relaxed)
}

/// Fill every kernel output with NaN before the launch (for tests: an element a kernel does not
/// write then fails the comparison instead of passing on leftover memory). Process-wide.
pub fn poison_outputs(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

/// A tile shape written `A×B` or `AxB`: `make(a, b)` if both parse and `supported` takes it, else
/// an error naming the text and the `expected` form (for the `FromStr` of the tile shapes).
fn parse_shape<T>(
    s: &str,
    expected: &str,
    make: impl Fn(usize, usize) -> T,
    supported: impl Fn(&T) -> bool,
) -> Result<T, String> {
    let bad = || format!("`{s}`: expected {expected}");
    let (a, b) = s.split_once(['x', '×']).ok_or_else(bad)?;
    let shape = make(a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if supported(&shape) { Ok(shape) } else { Err(bad()) }
}

fn poisoning() -> bool {
    POISON.load(Ordering::Relaxed)
}

/// Whether the kernels take this head dim: a multiple of 16 up to 256. Other sizes use the
/// tensor-op paths.
pub fn supports_head_dim(head_dim: usize) -> bool {
    head_dim % tile::BLOCK_K == 0 && head_dim <= 256
}

/// Fused attention of the rows in `order`, returning the output and the log-sum-exp.
///
/// - `q`: `[batch, q_heads, q_len, d]`; `k`, `v`: `[batch, kv_heads, k_len, d]`
/// - `pos`: positions of query row 0 and key 0; a row at position `p` sees keys `first..=p`
///   under its segment's span.
///
/// Returns `[batch, q_heads, q_len, d]` and `[batch, q_heads, q_len]` (fp32).
pub fn fused_attention_lse(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    order: &QueryOrder,
    pos: Positions,
    scale: f64,
) -> (Tensor<4>, Tensor<3>) {
    let params = FlashParams {
        scale: scale as f32,
        q_start: pos.q_start as u32,
        k_start: pos.k_start as u32,
        window_a: window_code(order.spans[0]),
        window_b: window_code(order.spans[1]),
    };
    let (out, lse) = <Dispatch as FlashAttentionOps>::flash_attention_forward(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        order.order.clone().into_dispatch(),
        order.split.clone().into_dispatch(),
        params,
    );
    (Tensor::from_dispatch(out), Tensor::from_dispatch(lse))
}

/// [`fused_attention_lse`] without the log-sum-exp.
pub fn fused_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    order: &QueryOrder,
    pos: Positions,
    scale: f64,
) -> Tensor<4> {
    fused_attention_lse(q, k, v, order, pos, scale).0
}

/// Every query under one span (full causal or sliding window).
pub fn fused_span_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    span: Span,
    pos: Positions,
    scale: f64,
) -> Tensor<4> {
    let [b, _, t, _] = q.dims();
    let order = QueryOrder::uniform(span, b, t, &q.device());
    fused_attention(q, k, v, &order, pos, scale)
}

/// The queries of a ragged cache ([`crate::cache::RowsCache`], as its [`RowsVisible`] describes
/// them): `q` (`[batch, q_heads, q_len, d]`) are the last `q_len` key columns of `k`, `v`
/// (`[batch, kv_heads, k_len, d]`), and query column `c` of row `b` sees column `j` iff `span`
/// sees `j` from `c` and `j >= floor[b]`. Prefill of left-padded prompts and ragged decoding
/// alike. Inference only: tensors that need a gradient take
/// [`crate::attention::ragged_attention`].
///
/// [`RowsVisible`]: crate::cache::RowsVisible
pub fn fused_ragged_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    span: Span,
    floor: &[usize],
    scale: f64,
) -> Tensor<4> {
    let [batch, _, q_len, _] = q.dims();
    let k_len = k.dims()[2];
    assert!(q_len <= k_len && floor.len() == batch, "queries are the last columns of the keys; one floor per row");
    let order = QueryOrder::uniform(span, batch, q_len, &q.device());
    let floor: Vec<i64> = floor.iter().map(|&c| c as i64).collect();
    let floor = Tensor::<1, Int>::from_data(TensorData::new(floor, [batch]), &q.device());
    let code = window_code(span);
    let params = FlashParams {
        scale: scale as f32,
        q_start: (k_len - q_len) as u32,
        k_start: 0,
        window_a: code,
        window_b: code,
    };
    Tensor::from_dispatch(<Dispatch as FlashAttentionOps>::flash_attention_rows(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        order.order.into_dispatch(),
        order.split.into_dispatch(),
        floor.into_dispatch(),
        params,
    ))
}

/// Routed (switch) attention: FA rows and SWA rows in one launch, K/V shared.
pub fn fused_routed_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    route: &RouteMask,
    window: Window,
    pos: Positions,
    scale: f64,
) -> Tensor<4> {
    let order = QueryOrder::routed(route, window, &q.device());
    fused_attention(q, k, v, &order, pos, scale)
}

/// [`fused_routed_attention`] with the route still on the device (`[batch, q_len]`, `true` = FA):
/// the rows are ordered there ([`QueryOrder::routed_on_device`]), so nothing is read back.
pub fn fused_routed_attention_on_device(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    route: &Tensor<2, Bool>,
    window: Window,
    pos: Positions,
    scale: f64,
) -> Tensor<4> {
    let order = QueryOrder::routed_on_device(route, window);
    fused_attention(q, k, v, &order, pos, scale)
}
