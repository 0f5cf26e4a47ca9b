//! The fused attention on burn's CubeCL backend: shapes checked, inputs made contiguous, outputs
//! allocated, kernels launched. One implementation serves CUDA and wgpu.

use burn::backend::TensorMetadata;
use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, full_device_dtype};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, cubecl};
use cubecl::ir::OpaqueType;
use cubecl::prelude::*;

use super::backward::{delta_kernel, dkdv_kernel, dq_kernel};
use super::backward_mma::{DKDV_KEYS, DQ_ROWS, backward_tiles, dkdv_mma_kernel, dq_mma_kernel};
use super::decode::{DECODE_CHUNK, DECODE_THREADS, decode_kernel, decode_merge_kernel};
use super::forward::forward_kernel;
use super::forward_mma::{PLANES, forward_mma_kernel, forward_tiles};
use super::mma::VECTOR;
use super::ops::{FlashAttentionOps, FlashParams};
use super::tile::{BLOCK_K, BLOCK_Q, ProblemLaunch, THREADS};

/// Launch geometry shared by the kernels.
struct Geometry {
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_len: usize,
    k_len: usize,
    head_dim: usize,
}

impl Geometry {
    fn of(q: &CubeTensor, k: &CubeTensor) -> Self {
        let [batch, q_heads, q_len, head_dim] = q.shape().dims::<4>();
        let [_, kv_heads, k_len, _] = k.shape().dims::<4>();
        Self { batch, q_heads, kv_heads, q_len, k_len, head_dim }
    }

    /// One cube per head, sequence and query tile of `block` rows (plus one tile: a segment
    /// boundary can split one); tiles in the slowest dimension, so each head's longest tiles start
    /// first (see [`super::tile::row_tile`]).
    fn row_tiles(&self, block: usize) -> CubeCount {
        CubeCount::Static(self.q_heads as u32, self.batch as u32, (self.q_len.div_ceil(block) + 1) as u32)
    }

    /// One cube per KV head, sequence and key tile of `block` keys.
    fn key_tiles(&self, block: usize) -> CubeCount {
        CubeCount::Static(self.kv_heads as u32, self.batch as u32, self.k_len.div_ceil(block) as u32)
    }
}

/// The launch scalars of a call.
fn problem(g: &Geometry, p: &FlashParams) -> ProblemLaunch {
    ProblemLaunch::new(
        g.q_heads as u32,
        g.kv_heads as u32,
        g.q_len as u32,
        g.k_len as u32,
        p.q_start,
        p.k_start,
        p.window_a,
        p.window_b,
        p.scale,
    )
}

/// Whether the kernels run on tensor cores ([`super::mma`]): bf16/f16 inputs whose buffers all
/// start on 16 bytes (the tiles are read 16 bytes at a time; a head dim that is a multiple of 16
/// keeps every row aligned), a device with `mma.m16n8k16` for them (fp32 accumulators, CUDA from
/// Ampere on) and 32-lane planes, unless [`super::set_tensor_cores`] turned it off.
fn use_mma(tensors: &[&CubeTensor]) -> bool {
    let t = tensors[0];
    if !super::tensor_cores() || !matches!(t.dtype, DType::BF16 | DType::F16) {
        return false;
    }
    if !tensors.iter().all(|t| t.handle.offset_start.unwrap_or(0) % 16 == 0) {
        return false;
    }
    let elem = dtype_to_storage_type(t.dtype);
    let f32_elem = dtype_to_storage_type(DType::F32);
    let props = t.client.properties();
    props.hardware.plane_size_min == 32
        && props.hardware.plane_size_max == 32
        && props
            .features
            .matmul
            .mma
            .iter()
            .any(|c| c.a_type == elem && c.b_type == elem && c.cd_type == f32_elem && (c.m, c.n, c.k) == (16, 8, 16))
}

/// Whether the tensor-core kernels double-buffer their key tiles with `cp.async`
/// ([`super::pipeline`]): the device has asynchronous copies and `mbarrier`s (CUDA from Ampere on
/// through CubeCL's C++ backend; its LLVM backend offers neither), unless
/// [`super::set_async_copies`] turned it off.
fn use_async_copies(t: &CubeTensor) -> bool {
    let features = &t.client.properties().features;
    super::async_copies() && features.copy_async && features.types.opaque.contains(&OpaqueType::Barrier)
}

/// A contiguous output on `t`'s device: uninitialized, or NaN while [`super::poison_outputs`] is on
/// (so that a test fails on any element a kernel forgot to write).
fn empty_like(t: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
    if super::poisoning() {
        let nan = InputScalar::new(f32::NAN, dtype_to_storage_type(dtype));
        into_contiguous(full_device_dtype(t.client.clone(), shape, t.device.clone(), nan, dtype))
    } else {
        empty_device_contiguous_dtype(t.client.clone(), t.device.clone(), shape, dtype)
    }
}

/// Launch [`decode_kernel`] and [`decode_merge_kernel`] into `out` and `lse` (see the kernel for
/// `split`; `floor`, a ragged cache's first held column per sequence, when given).
#[allow(clippy::too_many_arguments)]
fn decode(
    g: &Geometry,
    q: CubeTensor,
    k: CubeTensor,
    v: CubeTensor,
    split: CubeTensor,
    floor: Option<CubeTensor>,
    p: &FlashParams,
    out: &CubeTensor,
    lse: &CubeTensor,
) {
    let ragged = floor.is_some();
    let floor = floor.unwrap_or_else(|| split.clone());
    let n_chunks = g.k_len.div_ceil(DECODE_CHUNK);
    let part = empty_like(&q, Shape::new([g.batch * g.q_heads * n_chunks * (g.head_dim + 2)]), DType::F32);
    let client = q.client.clone();
    let dtype = q.dtype;
    let dtypes = [dtype_to_storage_type(dtype), dtype_to_storage_type(floor.dtype)];
    // SAFETY: every global index is guarded in the kernels, shared ones are in range by
    // construction; `tests/kernels.rs` runs the kernels with NaN-poisoned outputs.
    unsafe {
        decode_kernel::launch_unchecked(
            &client,
            CubeCount::Static(n_chunks as u32, g.q_heads as u32, g.batch as u32),
            CubeDim::new_1d(DECODE_THREADS as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            split.into_tensor_arg(),
            floor.into_tensor_arg(),
            part.clone().into_tensor_arg(),
            problem(g, p),
            g.head_dim,
            ragged,
            dtypes,
        )
    };
    unsafe {
        decode_merge_kernel::launch_unchecked(
            &client,
            CubeCount::Static(g.q_heads as u32, g.batch as u32, 1),
            CubeDim::new_1d(DECODE_THREADS as u32),
            part.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            n_chunks as u32,
            g.head_dim,
            dtype_to_storage_type(dtype),
        )
    };
}

/// The forward of the rows in `order`: output and log-sum-exp, by the decode kernels for one query
/// against a long cache, else the (tensor-core where possible) forward kernels. `floor`: a ragged
/// cache's first held column per sequence, which no query looks left of.
fn forward(
    q: CubeTensor,
    k: CubeTensor,
    v: CubeTensor,
    order: CubeTensor,
    split: CubeTensor,
    floor: Option<CubeTensor>,
    p: FlashParams,
) -> (CubeTensor, CubeTensor) {
    let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
    let (order, split) = (into_contiguous(order), into_contiguous(split));
    let floor = floor.map(into_contiguous);
    let g = Geometry::of(&q, &k);
    let out = empty_like(&q, q.shape(), q.dtype);
    let lse = empty_like(&q, Shape::new([g.batch, g.q_heads, g.q_len]), DType::F32);
    let dtypes = [dtype_to_storage_type(q.dtype), dtype_to_storage_type(order.dtype)];
    if g.q_len == 1 && g.k_len >= 2 * DECODE_CHUNK {
        decode(&g, q, k, v, split, floor, &p, &out, &lse);
        return (out, lse);
    }
    let ragged = floor.is_some();
    let floor = floor.unwrap_or_else(|| split.clone());
    let mma = use_mma(&[&q, &k, &v]);
    // The two forwards take the same arguments; only the kernel and its geometry differ.
    // The tensor-core kernel also takes its load width first and its tile shape last.
    macro_rules! launch {
        ($kernel:ident, $count:expr, $dim:expr, [$($width:expr)?], [$($tiles:expr),*]) => {
            // SAFETY: every global index is guarded in the kernel, shared ones are in range by
            // construction; `tests/kernels.rs` runs the kernels with NaN-poisoned outputs.
            unsafe {
                $kernel::launch_unchecked(
                    &q.client.clone(),
                    $count,
                    $dim,
                    $($width,)?
                    q.into_tensor_arg(),
                    k.into_tensor_arg(),
                    v.into_tensor_arg(),
                    order.into_tensor_arg(),
                    split.into_tensor_arg(),
                    floor.into_tensor_arg(),
                    out.clone().into_tensor_arg(),
                    lse.clone().into_tensor_arg(),
                    problem(&g, &p),
                    g.head_dim,
                    ragged,
                    $($tiles,)*
                    dtypes,
                )
            }
        };
    }
    if mma {
        let tiles = forward_tiles(g.head_dim);
        let (count, dim) = (g.row_tiles(tiles.block_q()), CubeDim::new_2d(32, PLANES as u32));
        let pipelined = use_async_copies(&q);
        launch!(forward_mma_kernel, count, dim, [VECTOR], [tiles.m_tiles, tiles.keys, pipelined]);
    } else {
        launch!(forward_kernel, g.row_tiles(BLOCK_Q), CubeDim::new_1d(THREADS as u32), [], []);
    }
    (out, lse)
}

impl FlashAttentionOps for CubeBackend {
    fn flash_attention_forward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        order: CubeTensor,
        split: CubeTensor,
        p: FlashParams,
    ) -> (CubeTensor, CubeTensor) {
        forward(q, k, v, order, split, None, p)
    }

    fn flash_attention_rows(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        order: CubeTensor,
        split: CubeTensor,
        floor: CubeTensor,
        p: FlashParams,
    ) -> CubeTensor {
        forward(q, k, v, order, split, Some(floor), p).0
    }

    fn flash_attention_backward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        out: CubeTensor,
        lse: CubeTensor,
        grad: CubeTensor,
        order: CubeTensor,
        split: CubeTensor,
        p: FlashParams,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
        let (out, lse, grad) = (into_contiguous(out), into_contiguous(lse), into_contiguous(grad));
        let (order, split) = (into_contiguous(order), into_contiguous(split));
        let g = Geometry::of(&q, &k);
        let client = q.client.clone();
        let dtypes = [dtype_to_storage_type(q.dtype), dtype_to_storage_type(order.dtype)];
        let rows = g.batch * g.q_heads * g.q_len;

        // delta = rowsum(dO ∘ O), fp32.
        let delta = empty_like(&q, Shape::new([g.batch, g.q_heads, g.q_len]), DType::F32);
        // SAFETY: the kernel guards its one index.
        unsafe {
            delta_kernel::launch_unchecked(
                &client,
                CubeCount::Static(rows.div_ceil(THREADS) as u32, 1, 1),
                CubeDim::new_1d(THREADS as u32),
                out.into_tensor_arg(),
                grad.clone().into_tensor_arg(),
                delta.clone().into_tensor_arg(),
                rows as u32,
                g.head_dim,
                dtype_to_storage_type(q.dtype),
            )
        };

        let mma = use_mma(&[&q, &k, &v, &grad]);
        let dq = empty_like(&q, q.shape(), q.dtype);
        let dk = empty_like(&k, k.shape(), k.dtype);
        let dv = empty_like(&v, v.shape(), v.dtype);
        // Both variants of each kernel take the same arguments (the tensor-core ones their load
        // width first, their tile shape and whether they pipeline last).
        macro_rules! launch {
            ($kernel:ident, $count:expr, $dim:expr, [$($width:expr)?], [$($last:expr),*], $($out:ident),+) => {
                // SAFETY: every global index is guarded in the kernel, shared ones are in range by
                // construction; `tests/kernels.rs` runs the kernels with NaN-poisoned outputs.
                unsafe { $kernel::launch_unchecked(
                    &client,
                    $count,
                    $dim,
                    $($width,)?
                    q.clone().into_tensor_arg(),
                    k.clone().into_tensor_arg(),
                    v.clone().into_tensor_arg(),
                    grad.clone().into_tensor_arg(),
                    lse.clone().into_tensor_arg(),
                    delta.clone().into_tensor_arg(),
                    order.clone().into_tensor_arg(),
                    split.clone().into_tensor_arg(),
                    $($out.clone().into_tensor_arg(),)+
                    problem(&g, &p),
                    g.head_dim,
                    $($last,)*
                    dtypes,
                ) }
            };
        }
        if mma {
            let dim = CubeDim::new_2d(32, PLANES as u32);
            let width = VECTOR;
            let pipelined = use_async_copies(&q);
            let tiles = backward_tiles(g.head_dim);
            launch!(dq_mma_kernel, g.row_tiles(DQ_ROWS), dim, [width], [tiles.dq_keys, pipelined], dq);
            launch!(dkdv_mma_kernel, g.key_tiles(DKDV_KEYS), dim, [width], [tiles.dkdv_queries, pipelined], dk, dv);
        } else {
            let dim = CubeDim::new_1d(THREADS as u32);
            launch!(dq_kernel, g.row_tiles(BLOCK_Q), dim, [], [], dq);
            launch!(dkdv_kernel, g.key_tiles(BLOCK_K), dim, [], [], dk, dv);
        }
        (dq, dk, dv)
    }
}
