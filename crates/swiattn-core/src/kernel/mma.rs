//! Register-level tensor-core tiles for the fused kernels on CUDA: `mma.sync.m16n8k16` with
//! 16-bit operands (bf16/f16) and fp32 accumulators, operands loaded from shared memory with
//! `ldmatrix`. Unlike `cmma` (WMMA) fragments, these registers have a known layout, so the
//! kernels apply masks, softmax statistics and rescaling to the accumulators in place.
//!
//! Layout (PTX ISA, `mma.m16n8k16`), lane `l`, `g = l / 4`, `c = l % 4`, two elements per register:
//! - A, 16 × 16 row-major, 4 registers: rows `g`, `g + 8`, `g`, `g + 8` at columns `2c, 2c + 1`,
//!   `2c`, `2c`, `8 + 2c`, `8 + 2c` (in that order);
//! - B, 16 × 8 (k × n), 2 registers: k rows `2c, 2c + 1`, then `8 + 2c, 9 + 2c`, column `g`;
//! - C, 16 × 8 fp32, 2 vectors: row `g` columns `2c, 2c + 1`, then row `g + 8`.
//!
//! Two accumulators for n-tiles `2i` and `2i + 1`, cast to 16 bits, are the A fragment of k-chunk
//! `i` ([`acc_to_a`]): that is how softmax probabilities feed the next product without leaving
//! registers (FlashAttention-2's trick).
//!
//! Shared tiles are rows of `Vector<F, N>` (`N` = 8: 16 bytes) with a row stride of
//! `head_dim / 8 + 1` vectors; the extra vector per row puts the 8 rows an `ldmatrix` reads in 8
//! different 4-bank groups, so no load has a bank conflict.

use burn_cubecl::cubecl;
use cubecl::cmma::{MatrixIdent, MmaDefinition};
use cubecl::prelude::*;

use super::tile::{HIDDEN, sees};

/// Elements of a shared-memory vector (16 bytes of bf16/f16): the kernels' `N`.
pub(crate) const VECTOR: usize = 8;

/// A shared tile's row stride in vectors: the head dim plus one vector of padding.
pub(crate) fn row_stride(head_dim: usize) -> usize {
    head_dim / VECTOR + 1
}

/// Two elements: one 32-bit register of a 16-bit fragment, or half an fp32 accumulator.
pub(crate) type Pair<E> = Vector<E, Const<2>>;

/// The one product shape the kernels use: 16 × 8 × 16, `F` operands, fp32 accumulators.
#[cube]
pub(crate) fn mma_def<F: Float>() -> MmaDefinition<F, F, f32> {
    MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize)
}

/// A zero 16 × 8 accumulator.
#[cube]
pub(crate) fn zero_acc() -> Array<Pair<f32>> {
    let mut acc = Array::<Pair<f32>>::new(2usize);
    acc[0] = Pair::<f32>::new(0.0);
    acc[1] = Pair::<f32>::new(0.0);
    acc
}

/// `count` zero accumulators.
#[cube]
pub(crate) fn zero_accs(#[comptime] count: usize) -> Sequence<Array<Pair<f32>>> {
    let mut accs = Sequence::<Array<Pair<f32>>>::new();
    #[unroll]
    for _i in 0..count {
        accs.push(zero_acc());
    }
    accs
}

/// `acc += a · b` (16 × 16 by 16 × 8).
#[cube]
pub(crate) fn mma<F: Float>(a: &Array<Pair<F>>, b: &Array<Pair<F>>, acc: &mut Array<Pair<f32>>) {
    mma_def::<F>().execute_inplace(a, b, acc);
}

// The fragment loaders take the vector index `at0 = row0 · ld + vcol0` of the fragment's first
// row and column: callers form it as one runtime base per tile plus compile-time offsets, so each
// load's address is a register plus an immediate (a runtime row times `ld` inside the loader
// would be recomputed per load by backends that do not distribute the product).

/// The A fragment of rows `row0..row0 + 16`, columns `8 · vcol0 .. 8 · vcol0 + 16` of a
/// row-major tile (row stride `ld` vectors) at `at0 = row0 · ld + vcol0`.
#[cube]
pub(crate) fn load_a<F: Float, N: Size>(
    tile: &Shared<[Vector<F, N>]>,
    at0: usize,
    #[comptime] ld: usize,
) -> Array<Pair<F>> {
    let lane = UNIT_POS_PLANE as usize;
    let at = at0 + (lane % 16) * ld + lane / 16;
    mma_def::<F>().load_matrix::<Vector<F, N>, Const<2>>(&tile[at..at + 1], MatrixIdent::A, 4usize, false)
}

/// B fragments of two n-tiles from a tile whose *rows* are the n index (`Xᵀ` for a row-major X):
/// rows `n0..n0 + 8` (registers 0, 1) and `n0 + 8..n0 + 16` (registers 2, 3), k = columns
/// `8 · vcol0 .. 8 · vcol0 + 16`, at `at0 = n0 · ld + vcol0`.
#[cube]
pub(crate) fn load_bt<F: Float, N: Size>(
    tile: &Shared<[Vector<F, N>]>,
    at0: usize,
    #[comptime] ld: usize,
) -> Array<Pair<F>> {
    let lane = UNIT_POS_PLANE as usize;
    let at = at0 + (lane % 8 + (lane / 16) * 8) * ld + (lane / 8) % 2;
    mma_def::<F>().load_matrix::<Vector<F, N>, Const<2>>(&tile[at..at + 1], MatrixIdent::B, 4usize, false)
}

/// B fragments of two n-tiles from a tile whose rows are the k index (row-major X itself):
/// k = rows `k0..k0 + 16`, n = columns `8 · vcol0 ..` (registers 0, 1) and `8 · vcol0 + 8 ..`
/// (registers 2, 3), at `at0 = k0 · ld + vcol0`; `ldmatrix` transposes on the way.
#[cube]
pub(crate) fn load_b<F: Float, N: Size>(
    tile: &Shared<[Vector<F, N>]>,
    at0: usize,
    #[comptime] ld: usize,
) -> Array<Pair<F>> {
    let lane = UNIT_POS_PLANE as usize;
    let at = at0 + (lane % 16) * ld + lane / 16;
    mma_def::<F>().load_matrix::<Vector<F, N>, Const<2>>(&tile[at..at + 1], MatrixIdent::B, 4usize, true)
}

/// Registers `2 · half`, `2 · half + 1` of a two-tile B load: the B fragment of one n-tile.
#[cube]
pub(crate) fn b_half<F: Float>(pair: &Array<Pair<F>>, #[comptime] half: usize) -> Array<Pair<F>> {
    let mut b = Array::<Pair<F>>::new(2usize);
    b[0] = pair[2 * half];
    b[1] = pair[2 * half + 1];
    b
}

/// The A fragment of a 16-column k-chunk made of the accumulators of its two 8-column halves,
/// cast to `F`.
#[cube]
pub(crate) fn acc_to_a<F: Float>(left: &Array<Pair<f32>>, right: &Array<Pair<f32>>) -> Array<Pair<F>> {
    let mut a = Array::<Pair<F>>::new(4usize);
    a[0] = Pair::<F>::cast_from(left[0]);
    a[1] = Pair::<F>::cast_from(left[1]);
    a[2] = Pair::<F>::cast_from(right[0]);
    a[3] = Pair::<F>::cast_from(right[1]);
    a
}

/// Load rows of `x` (`[.., len, head_dim]` as vectors, at row `base`) into a shared tile with row
/// stride [`row_stride`]: tile row `r` holds `x` row `order[order_at + r]` when `gathered`,
/// else `first + r`, and zeros where `r >= rows`. Fully unrolled, so each thread's loads are all
/// in flight before its first store.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_tile<F: Float, I: Int, N: Size>(
    x: &Tensor<Vector<F, N>>,
    order: &Tensor<I>,
    order_at: usize,
    first: usize,
    rows: usize,
    base: usize,
    tile: &mut Shared<[Vector<F, N>]>,
    #[comptime] tile_rows: usize,
    #[comptime] head_dim: usize,
    #[comptime] threads: usize,
    #[comptime] gathered: bool,
) {
    let per_row = comptime!(head_dim / VECTOR);
    let total = comptime!(tile_rows * head_dim / VECTOR);
    let per_thread = comptime!(total.div_ceil(threads));
    let t = UNIT_POS as usize;
    let mut vals = Array::<Vector<F, N>>::new(per_thread);
    #[unroll]
    for it in 0..per_thread {
        let i = t + it * threads;
        let r = i / per_row;
        let mut val = Vector::<F, N>::new(F::new(0.0));
        if i < total && r < rows {
            let mut row = first + r;
            if gathered {
                row = u32::cast_from(order[order_at + r]) as usize;
            }
            val = x[(base + row) * per_row + i % per_row];
        }
        vals[it] = val;
    }
    #[unroll]
    for it in 0..per_thread {
        let i = t + it * threads;
        if i < total {
            tile[(i / per_row) * (per_row + 1) + i % per_row] = vals[it];
        }
    }
}

/// Keys `j0..j0 + tile_rows` of `k` and `v` (rows from `base`, zeros at and past `k_len`) into
/// their shared tiles, all loads in flight before the first store ([`load_tile`]).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_key_tiles<F: Float, I: Int, N: Size>(
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    order: &Tensor<I>,
    j0: usize,
    k_len: usize,
    base: usize,
    ks: &mut Shared<[Vector<F, N>]>,
    vs: &mut Shared<[Vector<F, N>]>,
    #[comptime] tile_rows: usize,
    #[comptime] head_dim: usize,
    #[comptime] threads: usize,
) {
    load_tile::<F, I, N>(k, order, 0, j0, k_len - j0, base, ks, tile_rows, head_dim, threads, false);
    load_tile::<F, I, N>(v, order, 0, j0, k_len - j0, base, vs, tile_rows, head_dim, threads, false);
}

/// `acc[16·m_tiles × n] = X Yᵀ`: rows `x_row0..x_row0 + 16·m_tiles` of tile `x` times rows
/// `y_row0..y_row0 + n` of tile `y` (both row-major, `head_dim` wide, row stride
/// [`row_stride`]), into `m_tiles · n / 8` fresh accumulators (m-tile `i`'s at `i · n / 8 ..`).
/// Each B fragment is loaded once for all m-tiles.
#[cube]
pub(crate) fn products_t<F: Float, N: Size>(
    x: &Shared<[Vector<F, N>]>,
    x_row0: usize,
    y: &Shared<[Vector<F, N>]>,
    y_row0: usize,
    #[comptime] head_dim: usize,
    #[comptime] n: usize,
    #[comptime] m_tiles: usize,
) -> Sequence<Array<Pair<f32>>> {
    let ld = comptime!(row_stride(head_dim));
    let n8 = comptime!(n / 8);
    let (x0, y0) = (x_row0 * ld, y_row0 * ld);
    let mut acc = zero_accs(comptime!(m_tiles * n / 8));
    #[unroll]
    for kc in 0..head_dim / 16 {
        let mut a = Sequence::<Array<Pair<F>>>::new();
        #[unroll]
        for mi in 0..m_tiles {
            a.push(load_a::<F, N>(x, x0 + comptime!(16 * mi * ld + 2 * kc), ld));
        }
        #[unroll]
        for np in 0..n / 16 {
            let bb = load_bt::<F, N>(y, y0 + comptime!(16 * np * ld + 2 * kc), ld);
            let b0 = b_half::<F>(&bb, 0usize);
            let b1 = b_half::<F>(&bb, 1usize);
            #[unroll]
            for mi in 0..m_tiles {
                mma::<F>(a.index(mi), &b0, acc.index_mut(mi * n8 + 2 * np));
                mma::<F>(a.index(mi), &b1, acc.index_mut(mi * n8 + 2 * np + 1));
            }
        }
    }
    acc
}

/// `acc[16·m_tiles × head_dim] += W Z`: the weights `w` (`m_tiles · n / 8` accumulators laid out
/// as [`products_t`] returns them, cast to `F`) times rows `z_row0..z_row0 + n` of tile `z`
/// (row-major, `head_dim` wide, row stride [`row_stride`]); m-tile `i`'s outputs at
/// `i · head_dim / 8 ..`.
#[cube]
pub(crate) fn accumulate<F: Float, N: Size>(
    w: &Sequence<Array<Pair<f32>>>,
    z: &Shared<[Vector<F, N>]>,
    z_row0: usize,
    acc: &mut Sequence<Array<Pair<f32>>>,
    #[comptime] head_dim: usize,
    #[comptime] n: usize,
    #[comptime] m_tiles: usize,
) {
    let ld = comptime!(row_stride(head_dim));
    let n8 = comptime!(n / 8);
    let d8 = comptime!(head_dim / 8);
    let z0 = z_row0 * ld;
    #[unroll]
    for kk in 0..n / 16 {
        let mut a = Sequence::<Array<Pair<F>>>::new();
        #[unroll]
        for mi in 0..m_tiles {
            a.push(acc_to_a::<F>(w.index(mi * n8 + 2 * kk), w.index(mi * n8 + 2 * kk + 1)));
        }
        #[unroll]
        for dp in 0..head_dim / 16 {
            let bb = load_b::<F, N>(z, z0 + comptime!(16 * kk * ld + 2 * dp), ld);
            let b0 = b_half::<F>(&bb, 0usize);
            let b1 = b_half::<F>(&bb, 1usize);
            #[unroll]
            for mi in 0..m_tiles {
                mma::<F>(a.index(mi), &b0, acc.index_mut(mi * d8 + 2 * dp));
                mma::<F>(a.index(mi), &b1, acc.index_mut(mi * d8 + 2 * dp + 1));
            }
        }
    }
}

/// Hide (set to [`HIDDEN`]) the scores of the m-tile at `s[base..base + n / 8]` (16 query rows
/// × `n` keys from position `kp0`) that the lane's rows, at positions `pos_lo` (row `g`) and
/// `pos_hi` (row `g + 8`), do not see, and every key at or past position `kp1`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn mask_rows(
    s: &mut Sequence<Array<Pair<f32>>>,
    #[comptime] base: usize,
    pos_lo: usize,
    pos_hi: usize,
    kp0: usize,
    kp1: usize,
    window: usize,
    #[comptime] n: usize,
) {
    let quad = UNIT_POS_PLANE as usize % 4;
    #[unroll]
    for nt in 0..n / 8 {
        let acc = s.index_mut(base + nt);
        let mut lo = acc[0];
        let mut hi = acc[1];
        #[unroll]
        for e in 0..2usize {
            let kp = kp0 + 8 * nt + 2 * quad + e;
            let inside = kp < kp1;
            if !(inside && sees(pos_lo, kp, window)) {
                lo.insert(e, f32::new(HIDDEN));
            }
            if !(inside && sees(pos_hi, kp, window)) {
                hi.insert(e, f32::new(HIDDEN));
            }
        }
        acc[0] = lo;
        acc[1] = hi;
    }
}
