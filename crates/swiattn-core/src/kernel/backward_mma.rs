//! The fused backward on tensor cores (CUDA, bf16/f16 inputs, fp32 accumulators): the same three
//! launches as [`super::backward`] (whose `delta_kernel` it shares), FlashAttention-2's products
//! with every score, probability and gradient tile in registers ([`super::mma`]).
//!
//! - `dq`: like the forward, four planes × 16 query rows; per key tile `S = Q Kᵀ`, `dP = dO Vᵀ`,
//!   `dS = P ∘ (dP − δ)` with `P = exp(S · scale − lse)`, and `dQ += dS K`.
//! - `dkdv`: four planes × 16 keys (keys are the rows of its products); per tile of
//!   [`DKDV_QUERIES`] query rows `Sᵀ = K Qᵀ`, `dPᵀ = V dOᵀ`, `dV += Pᵀ dO`, `dK += dSᵀ Q`,
//!   summed over the query heads that share the KV head (no atomics).
//!
//! Each recomputes the scores it needs: 7 products per (query, key) tile pair against
//! FlashAttention-2's 5, which accumulates dQ with atomics instead.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use super::forward_mma::PLANES;
use super::mma::{Pair, accumulate, load_key_tiles, load_tile, mask_rows, products_t, row_stride, zero_accs};
use super::tile::{
    HIDDEN_BELOW, Problem, first_key, key_range, load_positions, load_row_stats, plane_keys, plane_rows, row_tile_of,
    rows_seeing, sees, tile_needed,
};

/// Query rows of a `dq` cube (16 per plane).
pub(crate) const DQ_ROWS: usize = 16 * PLANES;

/// Keys per tile of the `dq` key loop: 64, or 32 for head dims above 128.
fn dq_block_keys(head_dim: usize) -> usize {
    if head_dim > 128 { 32 } else { 64 }
}

/// Keys per `dkdv` cube (16 per plane).
pub(crate) const DKDV_KEYS: usize = 16 * PLANES;
/// Query rows per step of the `dkdv` key loop: 32 keeps `Sᵀ` and `dPᵀ` at 16 registers each
/// beside the 128 of the dK and dV accumulators (head dim 128).
pub(crate) const DKDV_QUERIES: usize = 32;

/// `P ∘ (dP − δ)` in place of `dp`, with `P = exp(S · scale − lse)` computed in place of `s`
/// (hidden scores give `P = 0`, also in a row that sees nothing and so has a hidden `lse`).
/// Row-indexed statistics (`dq`): `lse_lo`/`delta_lo` for the lane's row `g`, `_hi` for `g + 8`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn probabilities_and_ds(
    s: &mut Sequence<Array<Pair<f32>>>,
    dp: &mut Sequence<Array<Pair<f32>>>,
    scale: f32,
    lse_lo: f32,
    lse_hi: f32,
    delta_lo: f32,
    delta_hi: f32,
    #[comptime] n: usize,
) {
    #[unroll]
    for nt in 0..n / 8 {
        let sa = s.index_mut(nt);
        let da = dp.index_mut(nt);
        let mut p_lo = sa[0];
        let mut p_hi = sa[1];
        let mut ds_lo = da[0];
        let mut ds_hi = da[1];
        #[unroll]
        for e in 0..2usize {
            let x = p_lo.extract(e);
            let y = p_hi.extract(e);
            let px = select(x > f32::new(HIDDEN_BELOW), f32::exp(x * scale - lse_lo), 0.0);
            let py = select(y > f32::new(HIDDEN_BELOW), f32::exp(y * scale - lse_hi), 0.0);
            p_lo.insert(e, px);
            p_hi.insert(e, py);
            ds_lo.insert(e, px * (ds_lo.extract(e) - delta_lo));
            ds_hi.insert(e, py * (ds_hi.extract(e) - delta_hi));
        }
        sa[0] = p_lo;
        sa[1] = p_hi;
        da[0] = ds_lo;
        da[1] = ds_hi;
    }
}

/// `Pᵀ` in place of `st` and `dSᵀ = Pᵀ ∘ (dPᵀ − δ)` in place of `dpt`, for the lane's keys at
/// positions `kpos_lo` (row `g`) and `kpos_hi` (row `g + 8`); column `r` is query row `r` with
/// its own position, `lse` and `δ`. `masked`: zero the pairs a query does not see and the columns
/// past `rows` (else every pair is visible).
#[cube]
#[allow(clippy::too_many_arguments)]
fn transposed_ds(
    st: &mut Sequence<Array<Pair<f32>>>,
    dpt: &mut Sequence<Array<Pair<f32>>>,
    pos: &Shared<[u32]>,
    lse: &Shared<[f32]>,
    delta: &Shared<[f32]>,
    rows: usize,
    window: usize,
    kpos_lo: usize,
    kpos_hi: usize,
    scale: f32,
    #[comptime] masked: bool,
) {
    let quad = UNIT_POS_PLANE as usize % 4;
    #[unroll]
    for nt in 0..DKDV_QUERIES / 8 {
        let sa = st.index_mut(nt);
        let da = dpt.index_mut(nt);
        let mut p_lo = sa[0];
        let mut p_hi = sa[1];
        let mut ds_lo = da[0];
        let mut ds_hi = da[1];
        #[unroll]
        for e in 0..2usize {
            let r = 8 * nt + 2 * quad + e;
            let l = lse[r];
            let dl = delta[r];
            let mut x = f32::exp(p_lo.extract(e) * scale - l);
            let mut y = f32::exp(p_hi.extract(e) * scale - l);
            if masked {
                let qp = pos[r] as usize;
                let live = r < rows;
                x = select(live && sees(qp, kpos_lo, window), x, 0.0);
                y = select(live && sees(qp, kpos_hi, window), y, 0.0);
            }
            p_lo.insert(e, x);
            p_hi.insert(e, y);
            ds_lo.insert(e, x * (ds_lo.extract(e) - dl));
            ds_hi.insert(e, y * (ds_hi.extract(e) - dl));
        }
        sa[0] = p_lo;
        sa[1] = p_hi;
        da[0] = ds_lo;
        da[1] = ds_hi;
    }
}

/// Write the lane's two rows of `acc` (times `factor`) to rows `row_lo`, `row_hi` of `dst`
/// (`head_dim` wide), each only if valid.
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_rows<F: Float>(
    acc: &Sequence<Array<Pair<f32>>>,
    dst: &mut Tensor<F>,
    row_lo: usize,
    valid_lo: bool,
    row_hi: usize,
    valid_hi: bool,
    factor: f32,
    #[comptime] head_dim: usize,
) {
    let quad = UNIT_POS_PLANE as usize % 4;
    #[unroll]
    for dn in 0..head_dim / 8 {
        let a = acc.index(dn);
        #[unroll]
        for e in 0..2usize {
            let col = 8 * dn + 2 * quad + e;
            if valid_lo {
                dst[row_lo * head_dim + col] = F::cast_from(a[0].extract(e) * factor);
            }
            if valid_hi {
                dst[row_hi * head_dim + col] = F::cast_from(a[1].extract(e) * factor);
            }
        }
    }
}

/// Like [`super::backward::dq_kernel`], on tensor cores; `CubeDim` is `(32, PLANES)`, a cube
/// covers [`DQ_ROWS`] query rows, `N` = 8.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dq_mma_kernel<F: Float, I: Int, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    grad: &Tensor<Vector<F, N>>,
    lse: &Tensor<f32>,
    delta: &Tensor<f32>,
    order: &Tensor<I>,
    split: &Tensor<I>,
    dq: &mut Tensor<F>,
    dims: Problem,
    #[comptime] head_dim: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let block_n = comptime!(dq_block_keys(head_dim));
    let h = CUBE_POS_X as usize;
    let b = CUBE_POS_Y as usize;
    let plane = UNIT_POS_Y as usize;
    let lane = UNIT_POS_X as usize;
    let threads = comptime!(32 * PLANES);
    let q_len = dims.q_len as usize;
    let k_len = dims.k_len as usize;
    let k_start = dims.k_start as usize;
    let hkv = h / (dims.q_heads / dims.kv_heads) as usize;
    let tile =
        row_tile_of::<I>(split, b, CUBE_POS_Z as usize, q_len, dims.window_a as usize, dims.window_b as usize, DQ_ROWS);
    if tile.count == 0 {
        terminate!();
    }
    let rows = tile.count;
    let window = tile.window;
    let order_at = b * q_len + tile.start;
    let q_base = (b * dims.q_heads as usize + h) * q_len;
    let kv_base = (b * dims.kv_heads as usize + hkv) * k_len;

    // Head dim 128, bf16: Q, dO, K and V tiles of 17 KB each.
    let ld = comptime!(row_stride(head_dim));
    let mut qs = Shared::<[Vector<F, N>]>::new_aligned_slice(DQ_ROWS * ld, 16usize);
    let mut dos = Shared::<[Vector<F, N>]>::new_aligned_slice(DQ_ROWS * ld, 16usize);
    let mut ks = Shared::<[Vector<F, N>]>::new_aligned_slice(block_n * ld, 16usize);
    let mut vs = Shared::<[Vector<F, N>]>::new_aligned_slice(block_n * ld, 16usize);
    let mut pos = Shared::<[u32]>::new_slice(DQ_ROWS);

    load_positions::<I>(order, order_at, rows, dims.q_start, &mut pos, DQ_ROWS);
    load_tile::<F, I, N>(q, order, order_at, 0, rows, q_base, &mut qs, DQ_ROWS, head_dim, threads, true);
    load_tile::<F, I, N>(grad, order, order_at, 0, rows, q_base, &mut dos, DQ_ROWS, head_dim, threads, true);
    sync_cube();

    let g = lane / 4;
    let plane_row0 = plane * 16;
    let row_lo = plane_row0 + g;
    let row_hi = row_lo + 8;
    let pos_lo = pos[row_lo] as usize;
    let pos_hi = pos[row_hi] as usize;
    let valid_lo = row_lo < rows;
    let valid_hi = row_hi < rows;
    let mut out_lo = 0usize;
    let mut out_hi = 0usize;
    let mut lse_lo = 0.0f32;
    let mut lse_hi = 0.0f32;
    let mut delta_lo = 0.0f32;
    let mut delta_hi = 0.0f32;
    if valid_lo {
        out_lo = q_base + u32::cast_from(order[order_at + row_lo]) as usize;
        lse_lo = lse[out_lo];
        delta_lo = delta[out_lo];
    }
    if valid_hi {
        out_hi = q_base + u32::cast_from(order[order_at + row_hi]) as usize;
        lse_hi = lse[out_hi];
        delta_hi = delta[out_hi];
    }
    let span = plane_rows(&pos, rows, plane_row0, 16usize);
    let range = key_range(pos[0] as usize, pos[rows - 1] as usize, window, k_start, k_len);
    let (j_lo, j_end) = (range.lo, range.end);

    let mut acc = zero_accs(comptime!(head_dim / 8));
    let mut j0 = j_lo;
    while j0 < j_end {
        if tile_needed(&pos, rows, window, k_start + j0, k_start + j0 + block_n) {
            load_key_tiles::<F, I, N>(k, v, order, j0, k_len, kv_base, &mut ks, &mut vs, block_n, head_dim, threads);
            sync_cube();
            let keys = plane_keys(&span, j0, j_end, k_start, window, block_n);
            if keys.any {
                let mut s = products_t::<F, N>(&qs, plane_row0, &ks, ld, head_dim, block_n, 1usize);
                let mut dp = products_t::<F, N>(&dos, plane_row0, &vs, ld, head_dim, block_n, 1usize);
                if !keys.all {
                    mask_rows(&mut s, 0usize, pos_lo, pos_hi, keys.kp0, keys.kp1, window, block_n);
                }
                probabilities_and_ds(&mut s, &mut dp, dims.scale, lse_lo, lse_hi, delta_lo, delta_hi, block_n);
                accumulate::<F, N>(&dp, &ks, ld, &mut acc, head_dim, block_n, 1usize);
            }
            sync_cube();
        }
        j0 += block_n;
    }
    write_rows::<F>(&acc, dq, out_lo, valid_lo, out_hi, valid_hi, dims.scale, head_dim);
}

/// Like [`super::backward::dkdv_kernel`], on tensor cores; `CubeDim` is `(32, PLANES)`, a cube
/// covers [`DKDV_KEYS`] keys of one KV head, plane `p` keys `16p .. 16p + 16`, `N` = 8.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dkdv_mma_kernel<F: Float, I: Int, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    grad: &Tensor<Vector<F, N>>,
    lse: &Tensor<f32>,
    delta: &Tensor<f32>,
    order: &Tensor<I>,
    split: &Tensor<I>,
    dk: &mut Tensor<F>,
    dv: &mut Tensor<F>,
    dims: Problem,
    #[comptime] head_dim: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let hk = CUBE_POS_X as usize;
    let b = CUBE_POS_Y as usize;
    let j0 = CUBE_POS_Z as usize * DKDV_KEYS;
    let plane = UNIT_POS_Y as usize;
    let lane = UNIT_POS_X as usize;
    let threads = comptime!(32 * PLANES);
    let q_len = dims.q_len as usize;
    let k_len = dims.k_len as usize;
    let k_start = dims.k_start as usize;
    let group = (dims.q_heads / dims.kv_heads) as usize;
    let kv_base = (b * dims.kv_heads as usize + hk) * k_len;

    // Head dim 128, bf16: K and V tiles of 17 KB, Q and dO tiles of 8.7 KB.
    let ld = comptime!(row_stride(head_dim));
    let mut ks = Shared::<[Vector<F, N>]>::new_aligned_slice(DKDV_KEYS * ld, 16usize);
    let mut vs = Shared::<[Vector<F, N>]>::new_aligned_slice(DKDV_KEYS * ld, 16usize);
    let mut qs = Shared::<[Vector<F, N>]>::new_aligned_slice(DKDV_QUERIES * ld, 16usize);
    let mut dos = Shared::<[Vector<F, N>]>::new_aligned_slice(DKDV_QUERIES * ld, 16usize);
    let mut pos = Shared::<[u32]>::new_slice(DKDV_QUERIES);
    let mut lse_s = Shared::<[f32]>::new_slice(DKDV_QUERIES);
    let mut delta_s = Shared::<[f32]>::new_slice(DKDV_QUERIES);

    load_key_tiles::<F, I, N>(k, v, order, j0, k_len, kv_base, &mut ks, &mut vs, DKDV_KEYS, head_dim, threads);

    // This lane's two keys (rows `g`, `g + 8` of its plane's products) and the plane's key span.
    let g = lane / 4;
    let key_lo = j0 + plane * 16 + g;
    let key_hi = key_lo + 8;
    let kpos_lo = k_start + key_lo;
    let kpos_hi = k_start + key_hi;
    let plane_k0 = k_start + j0 + plane * 16;
    let mut plane_k1 = plane_k0 + 16;
    if plane_k1 > k_start + k_len {
        plane_k1 = k_start + k_len;
    }
    let cube_k0 = k_start + j0;
    let mut cube_k1 = cube_k0 + DKDV_KEYS;
    if cube_k1 > k_start + k_len {
        cube_k1 = k_start + k_len;
    }

    let mut dk_acc = zero_accs(comptime!(head_dim / 8));
    let mut dv_acc = zero_accs(comptime!(head_dim / 8));
    for gi in 0..group {
        let h = hk * group + gi;
        let q_base = (b * dims.q_heads as usize + h) * q_len;
        // Only the rows that see a key of this cube, `DKDV_QUERIES` at a time.
        for seg in 0..2u32 {
            let (wa, wb) = (dims.window_a as usize, dims.window_b as usize);
            let seen = rows_seeing::<I>(order, split, b, q_len, dims.q_start as usize, seg, wa, wb, cube_k0, cube_k1);
            let (first, end, window) = (seen.first, seen.end, seen.window);
            let mut start = first;
            while start < end {
                let order_at = b * q_len + start;
                let mut rows = end - start;
                if rows > DKDV_QUERIES {
                    rows = DKDV_QUERIES;
                }
                start += DKDV_QUERIES;
                let p_first = dims.q_start as usize + u32::cast_from(order[order_at]) as usize;
                let p_last = dims.q_start as usize + u32::cast_from(order[order_at + rows - 1]) as usize;
                load_row_stats::<I>(
                    order,
                    order_at,
                    rows,
                    dims.q_start,
                    q_base,
                    lse,
                    delta,
                    &mut pos,
                    &mut lse_s,
                    &mut delta_s,
                    DKDV_QUERIES,
                );
                load_tile::<F, I, N>(
                    q,
                    order,
                    order_at,
                    0,
                    rows,
                    q_base,
                    &mut qs,
                    DKDV_QUERIES,
                    head_dim,
                    threads,
                    true,
                );
                load_tile::<F, I, N>(
                    grad,
                    order,
                    order_at,
                    0,
                    rows,
                    q_base,
                    &mut dos,
                    DKDV_QUERIES,
                    head_dim,
                    threads,
                    true,
                );
                sync_cube();
                if p_last >= plane_k0 && first_key(p_first, window) < plane_k1 {
                    let mut st = products_t::<F, N>(&ks, plane * 16, &qs, ld, head_dim, DKDV_QUERIES, 1usize);
                    let mut dpt = products_t::<F, N>(&vs, plane * 16, &dos, ld, head_dim, DKDV_QUERIES, 1usize);
                    // Every pair visible: a whole tile of rows, all of the plane's keys held
                    // and inside every row's span.
                    let whole = rows == DKDV_QUERIES
                        && plane_k1 == plane_k0 + 16
                        && plane_k1 <= p_first + 1
                        && (window == 0 || plane_k0 + window > p_last);
                    let (kl, kh, sc) = (kpos_lo, kpos_hi, dims.scale);
                    if whole {
                        transposed_ds(&mut st, &mut dpt, &pos, &lse_s, &delta_s, rows, window, kl, kh, sc, false);
                    } else {
                        transposed_ds(&mut st, &mut dpt, &pos, &lse_s, &delta_s, rows, window, kl, kh, sc, true);
                    }
                    accumulate::<F, N>(&st, &dos, ld, &mut dv_acc, head_dim, DKDV_QUERIES, 1usize);
                    accumulate::<F, N>(&dpt, &qs, ld, &mut dk_acc, head_dim, DKDV_QUERIES, 1usize);
                }
                sync_cube();
            }
        }
    }
    let valid_lo = key_lo < k_len;
    let valid_hi = key_hi < k_len;
    write_rows::<F>(&dv_acc, dv, kv_base + key_lo, valid_lo, kv_base + key_hi, valid_hi, 1.0, head_dim);
    write_rows::<F>(&dk_acc, dk, kv_base + key_lo, valid_lo, kv_base + key_hi, valid_hi, dims.scale, head_dim);
}
