//! The fused forward on tensor cores (CubeCL `cmma`, 16×16×16 tiles, bf16/f16 inputs, fp32
//! accumulators), for devices that have them (CUDA); [`super::forward`] is the portable path and
//! this one's reference.
//!
//! One cube of four planes per (64-row query tile, head, sequence); each plane owns 16 query rows.
//! The output accumulators stay in `cmma` fragments for the whole key loop, which a fragment's
//! opaque layout allows only if they are never rescaled: so the key range is walked twice —
//! first `S = Q Kᵀ` alone for the exact row maxima, then `S` again with `P = exp(S − max)` and
//! `O += P V` — 3 matrix products per key tile instead of FlashAttention's 2, and no `n × n` buffer.
//! Key tiles outside a query tile's window are skipped in both walks, as in the portable path.

use burn_cubecl::cubecl;
use cubecl::cmma;
use cubecl::prelude::*;

use super::tile::{HIDDEN, Problem, key_range, row_tile_of, sees, tile_needed};

/// Planes per cube and query rows per plane.
pub(crate) const PLANES: usize = 4;
const PLANE_ROWS: usize = 16;
/// Query rows per cube.
pub(crate) const MMA_BLOCK_Q: usize = PLANES * PLANE_ROWS;
/// Keys per tile.
const MMA_BLOCK_K: usize = 32;
/// Row stride (floats) of the score tiles: 32 + 4, so that a fragment's 16 rows start in different
/// shared-memory banks (a multiple of 16 bytes, as `cmma` stores need).
const S_LD: usize = MMA_BLOCK_K + 4;

/// `S = Q Kᵀ` for this plane's 16 rows and the `MMA_BLOCK_K` keys in `ks` (both row-major with
/// stride `head_dim + 8`: padded against bank conflicts), stored to `s_out` (stride `S_LD`).
#[cube]
fn scores<F: Float>(
    qs: &Shared<[F]>,
    ks: &Shared<[F]>,
    s_out: &mut Shared<[f32]>,
    plane: usize,
    #[comptime] head_dim: usize,
) {
    #[unroll]
    for j in 0..MMA_BLOCK_K / 16 {
        let acc = cmma::Matrix::<f32>::from_value(
            cmma::MatrixIdent::Accumulator,
            16usize,
            16usize,
            16usize,
            cmma::MatrixLayout::Undefined,
            0.0,
        );
        #[unroll]
        for c in 0..head_dim / 16 {
            let q_off = plane * PLANE_ROWS * (head_dim + 8) + c * 16;
            let a = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::A,
                16usize,
                16usize,
                16usize,
                cmma::MatrixLayout::RowMajor,
                &qs[q_off..q_off + 15 * (head_dim + 8) + 16],
                (head_dim + 8) as u32,
            );
            // Kᵀ chunk: element (d, key) of the K tile (row-major [key][d]) is column-major.
            let k_off = j * 16 * (head_dim + 8) + c * 16;
            let b = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::B,
                16usize,
                16usize,
                16usize,
                cmma::MatrixLayout::ColMajor,
                &ks[k_off..k_off + 15 * (head_dim + 8) + 16],
                (head_dim + 8) as u32,
            );
            cmma::execute::<F, F, f32, f32, cmma::Plane>(&a, &b, &acc, &acc);
        }
        let s_off = plane * PLANE_ROWS * S_LD + j * 16;
        cmma::store(&mut s_out[s_off..s_off + 15 * S_LD + 16], &acc, S_LD as u32, cmma::MatrixLayout::RowMajor);
    }
}

/// Like [`super::forward::forward_kernel`], on tensor cores; `CubeDim` is `(32, PLANES)`. `q`, `k`
/// and `v` are read `N` elements at a time (16-byte loads for bf16 with `N = 8`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_mma_kernel<F: Float, I: Int, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    order: &Tensor<I>,
    split: &Tensor<I>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<f32>,
    dims: Problem,
    #[comptime] head_dim: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let h = CUBE_POS_X as usize;
    let b = CUBE_POS_Y as usize;
    let plane = UNIT_POS_Y as usize;
    let lane = UNIT_POS_X as usize;
    let t = UNIT_POS as usize;
    let threads = comptime!(32 * PLANES);
    let q_len = dims.q_len as usize;
    let k_len = dims.k_len as usize;
    let k_start = dims.k_start as usize;
    let hkv = h / (dims.q_heads / dims.kv_heads) as usize;
    let tile = row_tile_of::<I>(
        split,
        b,
        CUBE_POS_Z as usize,
        q_len,
        dims.window_a as usize,
        dims.window_b as usize,
        MMA_BLOCK_Q,
    );
    if tile.count == 0 {
        terminate!();
    }
    let rows = tile.count;
    let window = tile.window;
    let order_at = b * q_len + tile.start;
    let q_base = (b * dims.q_heads as usize + h) * q_len;
    let kv_base = (b * dims.kv_heads as usize + hkv) * k_len;

    // 48 KB at head dim 128 (bf16): Q 17 KB, K and V 8.5 KB each, S 9 KB, P 4 KB.
    let ld = head_dim + 8;
    let mut qs = Shared::<[F]>::new_slice(comptime!(MMA_BLOCK_Q * (head_dim + 8)));
    let mut ks = Shared::<[F]>::new_slice(comptime!(MMA_BLOCK_K * (head_dim + 8)));
    let mut vs = Shared::<[F]>::new_slice(comptime!(MMA_BLOCK_K * (head_dim + 8)));
    let mut s_sh = Shared::<[f32]>::new_slice(comptime!(MMA_BLOCK_Q * S_LD));
    let mut p_sh = Shared::<[F]>::new_slice(comptime!(MMA_BLOCK_Q * MMA_BLOCK_K));
    let mut pos = Shared::<[u32]>::new_slice(MMA_BLOCK_Q);

    if t < MMA_BLOCK_Q {
        let mut p = 0u32;
        if t < rows {
            p = dims.q_start + u32::cast_from(order[order_at + t]);
        }
        pos[t] = p;
    }
    let width = q.vector_size();
    let per_row = head_dim / width;
    let mut i = t;
    while i < MMA_BLOCK_Q * per_row {
        let rr = i / per_row;
        let at = rr * ld + (i % per_row) * width;
        if rr < rows {
            let row = u32::cast_from(order[order_at + rr]) as usize;
            let x = q[(q_base + row) * per_row + i % per_row];
            #[unroll]
            for e in 0..width {
                qs[at + e] = x.extract(e);
            }
        } else {
            #[unroll]
            for e in 0..width {
                qs[at + e] = F::new(0.0);
            }
        }
        i += threads;
    }
    sync_cube();

    // Lane `lane` of a plane handles half a row of the plane's score tile.
    let my_r = plane * PLANE_ROWS + lane / 2;
    let half = lane % 2;
    let my_valid = my_r < rows;
    let my_pos = pos[my_r] as usize;
    let first_pos = pos[0] as usize;
    let last_pos = pos[rows - 1] as usize;
    let keys = key_range(first_pos, last_pos, window, k_start, k_len);
    let (j_lo, j_end) = (keys.lo, keys.end);

    // Walk 1: row maxima. Walk 2: probabilities and output.
    let mut m = f32::new(HIDDEN);
    let mut l = 0.0f32;
    let mut o_acc = Sequence::<cmma::Matrix<f32>>::new();
    #[unroll]
    for _c in 0..head_dim / 16 {
        o_acc.push(cmma::Matrix::<f32>::from_value(
            cmma::MatrixIdent::Accumulator,
            16usize,
            16usize,
            16usize,
            cmma::MatrixLayout::Undefined,
            0.0,
        ));
    }
    #[unroll]
    for walk in 0..2 {
        let mut j0 = j_lo;
        while j0 < j_end {
            if tile_needed(&pos, rows, window, k_start + j0, k_start + j0 + MMA_BLOCK_K) {
                let mut i = t;
                while i < MMA_BLOCK_K * per_row {
                    let j = j0 + i / per_row;
                    let at = (i / per_row) * ld + (i % per_row) * width;
                    if j < k_len {
                        let kx = k[(kv_base + j) * per_row + i % per_row];
                        #[unroll]
                        for e in 0..width {
                            ks[at + e] = kx.extract(e);
                        }
                        if walk == 1 {
                            let vx = v[(kv_base + j) * per_row + i % per_row];
                            #[unroll]
                            for e in 0..width {
                                vs[at + e] = vx.extract(e);
                            }
                        }
                    } else {
                        #[unroll]
                        for e in 0..width {
                            ks[at + e] = F::new(0.0);
                            vs[at + e] = F::new(0.0);
                        }
                    }
                    i += threads;
                }
                sync_cube();
                scores::<F>(&qs, &ks, &mut s_sh, plane, head_dim);
                sync_plane();

                // This lane's 16 scores: scaled and masked.
                let base = my_r * S_LD + half * 16;
                let p_base = my_r * MMA_BLOCK_K + half * 16;
                if walk == 0 {
                    let mut mx = f32::new(HIDDEN);
                    for c in 0..16usize {
                        let j = j0 + half * 16 + c;
                        if my_valid && j < j_end && sees(my_pos, k_start + j, window) {
                            let x = s_sh[base + c] * dims.scale;
                            if x > mx {
                                mx = x;
                            }
                        }
                    }
                    let other = plane_shuffle_xor(mx, 1);
                    if other > mx {
                        mx = other;
                    }
                    if mx > m {
                        m = mx;
                    }
                } else {
                    let mut sum = 0.0f32;
                    for c in 0..16usize {
                        let j = j0 + half * 16 + c;
                        let mut p = 0.0f32;
                        if my_valid && j < j_end && sees(my_pos, k_start + j, window) {
                            p = f32::exp(s_sh[base + c] * dims.scale - m);
                        }
                        sum += p;
                        p_sh[p_base + c] = F::cast_from(p);
                    }
                    l += sum + plane_shuffle_xor(sum, 1);
                    sync_plane();
                    #[unroll]
                    for jj in 0..MMA_BLOCK_K / 16 {
                        let p_off = plane * PLANE_ROWS * MMA_BLOCK_K + jj * 16;
                        let a = cmma::Matrix::<F>::from_slice(
                            cmma::MatrixIdent::A,
                            16usize,
                            16usize,
                            16usize,
                            cmma::MatrixLayout::RowMajor,
                            &p_sh[p_off..p_off + 15 * MMA_BLOCK_K + 16],
                            MMA_BLOCK_K as u32,
                        );
                        #[unroll]
                        for c in 0..head_dim / 16 {
                            let v_off = jj * 16 * ld + c * 16;
                            let bm = cmma::Matrix::<F>::from_slice(
                                cmma::MatrixIdent::B,
                                16usize,
                                16usize,
                                16usize,
                                cmma::MatrixLayout::RowMajor,
                                &vs[v_off..v_off + 15 * ld + 16],
                                ld as u32,
                            );
                            let acc = o_acc.index(c);
                            cmma::execute::<F, F, f32, f32, cmma::Plane>(&a, &bm, acc, acc);
                        }
                    }
                }
                sync_cube();
            }
            j0 += MMA_BLOCK_K;
        }
    }

    // Output: each 16×16 fragment through this plane's score tile, divided by the row sums.
    let mut inv = 0.0f32;
    if l > 0.0 {
        inv = 1.0 / l;
    }
    let mut row = 0usize;
    if my_valid {
        row = u32::cast_from(order[order_at + my_r]) as usize;
    }
    #[unroll]
    for c in 0..head_dim / 16 {
        let o_off = plane * PLANE_ROWS * S_LD;
        cmma::store(&mut s_sh[o_off..o_off + 256], o_acc.index(c), 16, cmma::MatrixLayout::RowMajor);
        sync_plane();
        if my_valid {
            for e in 0..8usize {
                let col = half * 8 + e;
                out[(q_base + row) * head_dim + c * 16 + col] = F::cast_from(s_sh[o_off + (lane / 2) * 16 + col] * inv);
            }
        }
        sync_plane();
    }
    if my_valid && half == 0 {
        let mut x = f32::new(HIDDEN);
        if l > 0.0 {
            x = m + f32::ln(l);
        }
        lse[q_base + row] = x;
    }
}
