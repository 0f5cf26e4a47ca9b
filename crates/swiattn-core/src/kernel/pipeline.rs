//! Double-buffered tiles for the tensor-core kernels' loops, filled by `cp.async`: the copy
//! engine moves the next needed tile (K/V in the forward and dQ, Q/dO rows and their statistics
//! in dK/dV) into the idle stage while the planes compute on the current one, so a tile's global
//! latency hides behind the previous tile's products instead of stalling every plane of the cube
//! ([`super::mma::load_tile`] goes global → registers → shared and waits).
//!
//! Only where the device has asynchronous copies and `mbarrier`s ([`super::cube`] asks
//! `features.copy_async` and the `Barrier` type): CubeCL's C++ backend on CUDA from Ampere on,
//! not its LLVM NVPTX backend. Stage `s` of a tile of `tile_rows` rows is rows
//! `s · tile_rows ..` of its shared slices; each stage has a barrier every unit arrives at
//! once per fill, after handing it its copies ([`publish`]), and the loop waits on the stage's
//! phase parity.

use burn_cubecl::cubecl;
use cubecl::prelude::barrier::{Barrier, copy_async};
use cubecl::prelude::*;

use super::mma::VECTOR;
use super::tile::tile_needed;

/// Issue the copies of rows of `x` and `y` (`[.., len, head_dim]` as vectors, at row `base`) into
/// rows `tile_row0..` of the shared `xs` and `ys` (row stride [`super::mma::row_stride`]): tile
/// row `r` takes row `order[order_at + r]` when `gathered`, else `first + r`, and rows at and past
/// `rows` are stored as zeros directly. The asynchronous twin of [`super::mma::load_tile`], for
/// the pairs the kernels load together (K and V, Q and dO). Nothing has landed when this returns:
/// [`publish`] hands the copies to a barrier.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn issue_tiles<F: Float, I: Int, N: Size>(
    x: &Tensor<Vector<F, N>>,
    y: &Tensor<Vector<F, N>>,
    order: &Tensor<I>,
    order_at: usize,
    first: usize,
    rows: usize,
    base: usize,
    xs: &mut Shared<[Vector<F, N>]>,
    ys: &mut Shared<[Vector<F, N>]>,
    tile_row0: usize,
    #[comptime] tile_rows: usize,
    #[comptime] head_dim: usize,
    #[comptime] threads: usize,
    #[comptime] gathered: bool,
) {
    let per_row = comptime!(head_dim / VECTOR);
    let total = comptime!(tile_rows * head_dim / VECTOR);
    let per_thread = comptime!(total.div_ceil(threads));
    let t = UNIT_POS as usize;
    #[unroll]
    for it in 0..per_thread {
        let i = t + it * threads;
        if i < total {
            let r = i / per_row;
            let c = i % per_row;
            let at = (tile_row0 + r) * (per_row + 1) + c;
            if r < rows {
                let mut row = first + r;
                if gathered {
                    row = u32::cast_from(order[order_at + r]) as usize;
                }
                let src = (base + row) * per_row + c;
                copy_async(&x[src..src + 1], &mut xs[at..at + 1], comptime!(VECTOR as u32));
                copy_async(&y[src..src + 1], &mut ys[at..at + 1], comptime!(VECTOR as u32));
            } else {
                xs[at] = Vector::<F, N>::new(F::new(0.0));
                ys[at] = Vector::<F, N>::new(F::new(0.0));
            }
        }
    }
}

/// Issue the copies of keys `j0..j0 + tile_rows` of `k` and `v` (rows from `base`, zeros at and
/// past `k_len`) into rows `tile_row0..` of their shared tiles ([`issue_tiles`]).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn issue_key_tiles<F: Float, I: Int, N: Size>(
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    order: &Tensor<I>,
    j0: usize,
    k_len: usize,
    base: usize,
    ks: &mut Shared<[Vector<F, N>]>,
    vs: &mut Shared<[Vector<F, N>]>,
    tile_row0: usize,
    #[comptime] tile_rows: usize,
    #[comptime] head_dim: usize,
    #[comptime] threads: usize,
) {
    issue_tiles::<F, I, N>(
        k,
        v,
        order,
        0,
        j0,
        k_len - j0,
        base,
        ks,
        vs,
        tile_row0,
        tile_rows,
        head_dim,
        threads,
        false,
    );
}

/// Hand this unit's copies issued since the last call to `stage` and arrive on it: the barrier's
/// phase completes once every unit of the cube has arrived and all their copies have landed.
#[cube]
pub(crate) fn publish(stage: &Shared<Barrier>) {
    stage.commit_copy_async();
    stage.arrive();
}

/// The first key tile at or after `j` (steps of `block_n` keys, positions from `k_start`) that
/// some row of the cube sees, or a value `>= j_end` if none does.
#[cube]
pub(crate) fn next_tile(
    pos: &Shared<[u32]>,
    rows: usize,
    window: usize,
    k_start: usize,
    j: usize,
    j_end: usize,
    #[comptime] block_n: usize,
) -> usize {
    let mut j = j;
    while j < j_end && !tile_needed(pos, rows, window, k_start + j, k_start + j + block_n) {
        j += block_n;
    }
    j
}

/// Issue the copies of a backward step's query rows `order[order_at..]` (`rows` of them, of the
/// head whose rows start at `q_base`) into rows `tile_row0..` of the shared `qs` (from `q`) and
/// `dos` (from `grad`), and their log-sum-exps and deltas into `lse_s`/`delta_s` from `tile_row0`;
/// positions go into `pos` directly, and every row past `rows` is zeros.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn issue_query_rows<F: Float, I: Int, N: Size>(
    q: &Tensor<Vector<F, N>>,
    grad: &Tensor<Vector<F, N>>,
    lse: &Tensor<f32>,
    delta: &Tensor<f32>,
    order: &Tensor<I>,
    order_at: usize,
    rows: usize,
    q_start: u32,
    q_base: usize,
    qs: &mut Shared<[Vector<F, N>]>,
    dos: &mut Shared<[Vector<F, N>]>,
    pos: &mut Shared<[u32]>,
    lse_s: &mut Shared<[f32]>,
    delta_s: &mut Shared<[f32]>,
    tile_row0: usize,
    #[comptime] tile_rows: usize,
    #[comptime] head_dim: usize,
    #[comptime] threads: usize,
) {
    let t = UNIT_POS as usize;
    if t < tile_rows {
        let at = tile_row0 + t;
        if t < rows {
            let row = u32::cast_from(order[order_at + t]) as usize;
            pos[at] = q_start + row as u32;
            copy_async(&lse[q_base + row..q_base + row + 1], &mut lse_s[at..at + 1], 1u32);
            copy_async(&delta[q_base + row..q_base + row + 1], &mut delta_s[at..at + 1], 1u32);
        } else {
            pos[at] = 0;
            lse_s[at] = 0.0;
            delta_s[at] = 0.0;
        }
    }
    issue_tiles::<F, I, N>(
        q, grad, order, order_at, 0, rows, q_base, qs, dos, tile_row0, tile_rows, head_dim, threads, true,
    );
}
