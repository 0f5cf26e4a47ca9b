//! The fused backward on tensor cores (CubeCL `cmma`, bf16/f16 inputs, fp32 accumulators): the
//! same three launches as [`super::backward`] (whose `delta_kernel` it shares), with every matrix
//! product on 16×16×16 tiles. A `dq` cube has two planes of 16 query rows; a `dkdv` cube four
//! planes over 32 keys (16 keys × one of dK, dV each). Gradient accumulators stay in `cmma`
//! fragments for the whole loop.

use burn_cubecl::cubecl;
use cubecl::cmma;
use cubecl::prelude::*;

use super::tile::{Problem, first_key, key_range, row_tile_of, sees, tile_needed};

/// Planes per `dq` cube.
pub(crate) const BWD_PLANES: usize = 2;
/// Planes per `dkdv` cube: two key groups of 16 × two gradients.
pub(crate) const DKDV_PLANES: usize = 4;
/// Query rows of a `dq` cube; keys of a `dkdv` cube; and the other side's tile.
pub(crate) const BWD_BLOCK: usize = 16 * BWD_PLANES;
/// Row stride (floats) of the fp32 score tiles: padded by 16 bytes against bank conflicts. The
/// `head_dim`-wide tiles are padded likewise to `head_dim + 8`; the probability tiles are not
/// (at head dim 128 the dK/dV kernel's shared memory would pass 48 KB).
const S_LD: usize = BWD_BLOCK + 4;

type Frag<F> = cmma::Matrix<F>;

#[cube]
fn zero_acc() -> Frag<f32> {
    Frag::<f32>::from_value(
        cmma::MatrixIdent::Accumulator,
        16usize,
        16usize,
        16usize,
        cmma::MatrixLayout::Undefined,
        0.0,
    )
}

/// A 16×16 A or B fragment at `off` of a row-major (`RowMajor`) or transposed (`ColMajor`) tile
/// with row stride `stride`.
#[cube]
fn frag<F: Float>(
    src: &Shared<[F]>,
    off: usize,
    stride: usize,
    #[comptime] ident: cmma::MatrixIdent,
    #[comptime] layout: cmma::MatrixLayout,
) -> Frag<F> {
    Frag::<F>::from_slice(ident, 16usize, 16usize, 16usize, layout, &src[off..off + 15 * stride + 16], stride as u32)
}

/// `out[16 × BWD_BLOCK] = X Yᵀ` for the 16 rows of `x` at `x_row` and the `BWD_BLOCK` rows of `y`
/// (both row-major, stride `head_dim + 8`), stored row-major with stride `S_LD` at `out_off`.
#[cube]
fn products_t<F: Float>(
    x: &Shared<[F]>,
    x_row: usize,
    y: &Shared<[F]>,
    out: &mut Shared<[f32]>,
    out_off: usize,
    #[comptime] head_dim: usize,
) {
    #[unroll]
    for j in 0..BWD_BLOCK / 16 {
        let acc = zero_acc();
        #[unroll]
        for c in 0..head_dim / 16 {
            let ld = head_dim + 8;
            let a = frag::<F>(x, x_row * ld + c * 16, ld, cmma::MatrixIdent::A, cmma::MatrixLayout::RowMajor);
            let b = frag::<F>(y, j * 16 * ld + c * 16, ld, cmma::MatrixIdent::B, cmma::MatrixLayout::ColMajor);
            cmma::execute::<F, F, f32, f32, cmma::Plane>(&a, &b, &acc, &acc);
        }
        let o = out_off + j * 16;
        cmma::store(&mut out[o..o + 15 * S_LD + 16], &acc, S_LD as u32, cmma::MatrixLayout::RowMajor);
    }
}

/// `acc[c] += W Z[:, c]` for the plane's `16 × BWD_BLOCK` weights `w` at `w_off` (row-major,
/// stride `BWD_BLOCK`) and the `BWD_BLOCK × head_dim` tile `z` (row-major, stride `head_dim + 8`).
#[cube]
fn accumulate<F: Float>(
    w: &Shared<[F]>,
    w_off: usize,
    z: &Shared<[F]>,
    acc: &mut Sequence<Frag<f32>>,
    #[comptime] head_dim: usize,
) {
    #[unroll]
    for jj in 0..BWD_BLOCK / 16 {
        let a = frag::<F>(w, w_off + jj * 16, BWD_BLOCK, cmma::MatrixIdent::A, cmma::MatrixLayout::RowMajor);
        #[unroll]
        for c in 0..head_dim / 16 {
            let ld = head_dim + 8;
            let b = frag::<F>(z, jj * 16 * ld + c * 16, ld, cmma::MatrixIdent::B, cmma::MatrixLayout::RowMajor);
            let d = acc.index(c);
            cmma::execute::<F, F, f32, f32, cmma::Plane>(&a, &b, d, d);
        }
    }
}

/// Write the plane's 16 rows of `acc` (times `factor`) to `dst` rows `dst_rows` (`-1` = skip),
/// through a 16×16 staging buffer at `stage_off`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_rows<F: Float>(
    acc: &Sequence<Frag<f32>>,
    stage: &mut Shared<[f32]>,
    stage_off: usize,
    dst: &mut Tensor<F>,
    dst_row: usize,
    valid: bool,
    factor: f32,
    #[comptime] head_dim: usize,
) {
    let lane = UNIT_POS_X as usize;
    #[unroll]
    for c in 0..head_dim / 16 {
        cmma::store(&mut stage[stage_off..stage_off + 256], acc.index(c), 16, cmma::MatrixLayout::RowMajor);
        sync_plane();
        if valid {
            for e in 0..8usize {
                let col = (lane % 2) * 8 + e;
                dst[dst_row * head_dim + c * 16 + col] =
                    F::cast_from(stage[stage_off + (lane / 2) * 16 + col] * factor);
            }
        }
        sync_plane();
    }
}

/// Load `BWD_BLOCK` rows of `x` listed in `order` (zeros past `rows`) into `dst`, row-major with
/// stride `head_dim + 8`, `N` elements per load.
#[cube]
fn load_rows<F: Float, I: Int, N: Size>(
    x: &Tensor<Vector<F, N>>,
    order: &Tensor<I>,
    order_at: usize,
    rows: usize,
    base: usize,
    dst: &mut Shared<[F]>,
    #[comptime] head_dim: usize,
    #[comptime] threads: usize,
) {
    let width = x.vector_size();
    let per_row = head_dim / width;
    let mut i = UNIT_POS as usize;
    while i < BWD_BLOCK * per_row {
        let rr = i / per_row;
        let at = rr * (head_dim + 8) + (i % per_row) * width;
        if rr < rows {
            let row = u32::cast_from(order[order_at + rr]) as usize;
            let val = x[(base + row) * per_row + i % per_row];
            #[unroll]
            for e in 0..width {
                dst[at + e] = val.extract(e);
            }
        } else {
            #[unroll]
            for e in 0..width {
                dst[at + e] = F::new(0.0);
            }
        }
        i += threads;
    }
}

/// Load keys `j0..j0 + BWD_BLOCK` of `x` (zeros past `k_len`) into `dst`, row-major with stride
/// `head_dim + 8`, `N` elements per load.
#[cube]
fn load_keys<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    j0: usize,
    k_len: usize,
    base: usize,
    dst: &mut Shared<[F]>,
    #[comptime] head_dim: usize,
    #[comptime] threads: usize,
) {
    let width = x.vector_size();
    let per_row = head_dim / width;
    let mut i = UNIT_POS as usize;
    while i < BWD_BLOCK * per_row {
        let j = j0 + i / per_row;
        let at = (i / per_row) * (head_dim + 8) + (i % per_row) * width;
        if j < k_len {
            let val = x[(base + j) * per_row + i % per_row];
            #[unroll]
            for e in 0..width {
                dst[at + e] = val.extract(e);
            }
        } else {
            #[unroll]
            for e in 0..width {
                dst[at + e] = F::new(0.0);
            }
        }
        i += threads;
    }
}

/// Like [`super::backward::dq_kernel`], on tensor cores; `CubeDim` is `(32, BWD_PLANES)` and a
/// cube covers `BWD_BLOCK` query rows.
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
    let h = CUBE_POS_X as usize;
    let b = CUBE_POS_Y as usize;
    let plane = UNIT_POS_Y as usize;
    let lane = UNIT_POS_X as usize;
    let t = UNIT_POS as usize;
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
        BWD_BLOCK,
    );
    if tile.count == 0 {
        terminate!();
    }
    let rows = tile.count;
    let window = tile.window;
    let order_at = b * q_len + tile.start;
    let q_base = (b * dims.q_heads as usize + h) * q_len;
    let kv_base = (b * dims.kv_heads as usize + hkv) * k_len;

    // 45 KB at head dim 128 (bf16).
    let mut qs = Shared::<[F]>::new_slice(comptime!(BWD_BLOCK * (head_dim + 8)));
    let mut dos = Shared::<[F]>::new_slice(comptime!(BWD_BLOCK * (head_dim + 8)));
    let mut ks = Shared::<[F]>::new_slice(comptime!(BWD_BLOCK * (head_dim + 8)));
    let mut vs = Shared::<[F]>::new_slice(comptime!(BWD_BLOCK * (head_dim + 8)));
    let mut s_sh = Shared::<[f32]>::new_slice(BWD_BLOCK * S_LD);
    let mut dp_sh = Shared::<[f32]>::new_slice(BWD_BLOCK * S_LD);
    let mut ds_sh = Shared::<[F]>::new_slice(BWD_BLOCK * BWD_BLOCK);
    let mut pos = Shared::<[u32]>::new_slice(BWD_BLOCK);

    if t < BWD_BLOCK {
        let mut p = 0u32;
        if t < rows {
            p = dims.q_start + u32::cast_from(order[order_at + t]);
        }
        pos[t] = p;
    }
    load_rows::<F, I, N>(q, order, order_at, rows, q_base, &mut qs, head_dim, 32 * BWD_PLANES);
    load_rows::<F, I, N>(grad, order, order_at, rows, q_base, &mut dos, head_dim, 32 * BWD_PLANES);
    sync_cube();

    let my_r = plane * 16 + lane / 2;
    let half = lane % 2;
    let my_valid = my_r < rows;
    let my_pos = pos[my_r] as usize;
    let mut my_row = 0usize;
    let mut my_lse = 0.0f32;
    let mut my_delta = 0.0f32;
    if my_valid {
        my_row = u32::cast_from(order[order_at + my_r]) as usize;
        my_lse = lse[q_base + my_row];
        my_delta = delta[q_base + my_row];
    }
    let first_pos = pos[0] as usize;
    let last_pos = pos[rows - 1] as usize;
    let keys = key_range(first_pos, last_pos, window, k_start, k_len);
    let (j_lo, j_end) = (keys.lo, keys.end);

    let mut acc = Sequence::<Frag<f32>>::new();
    #[unroll]
    for _c in 0..head_dim / 16 {
        acc.push(zero_acc());
    }
    let mut j0 = j_lo;
    while j0 < j_end {
        if tile_needed(&pos, rows, window, k_start + j0, k_start + j0 + BWD_BLOCK) {
            load_keys::<F, N>(k, j0, k_len, kv_base, &mut ks, head_dim, 32 * BWD_PLANES);
            load_keys::<F, N>(v, j0, k_len, kv_base, &mut vs, head_dim, 32 * BWD_PLANES);
            sync_cube();
            let off = plane * 16 * S_LD;
            products_t::<F>(&qs, plane * 16, &ks, &mut s_sh, off, head_dim);
            products_t::<F>(&dos, plane * 16, &vs, &mut dp_sh, off, head_dim);
            sync_plane();
            let base = my_r * S_LD + half * 16;
            let w_base = my_r * BWD_BLOCK + half * 16;
            for c in 0..16usize {
                let j = j0 + half * 16 + c;
                let mut ds = 0.0f32;
                if my_valid && j < j_end && sees(my_pos, k_start + j, window) {
                    let p = f32::exp(s_sh[base + c] * dims.scale - my_lse);
                    ds = p * (dp_sh[base + c] - my_delta);
                }
                ds_sh[w_base + c] = F::cast_from(ds);
            }
            sync_plane();
            accumulate::<F>(&ds_sh, plane * 16 * BWD_BLOCK, &ks, &mut acc, head_dim);
            sync_cube();
        }
        j0 += BWD_BLOCK;
    }
    write_rows::<F>(&acc, &mut s_sh, plane * 16 * S_LD, dq, q_base + my_row, my_valid, dims.scale, head_dim);
}

/// Like [`super::backward::dkdv_kernel`], on tensor cores; `CubeDim` is `(32, DKDV_PLANES)` and a
/// cube covers `BWD_BLOCK` keys. Plane `p` owns keys `(p % 2) · 16 ..` and one gradient: planes 0–1
/// accumulate dV, planes 2–3 dK, so that each holds 8 accumulator fragments instead of 16 (the
/// register count had capped the kernel at 2 warps per block and 12.5 % occupancy).
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
    let j0 = CUBE_POS_Z as usize * BWD_BLOCK;
    let plane = UNIT_POS_Y as usize;
    let lane = UNIT_POS_X as usize;
    let t = UNIT_POS as usize;
    let threads = comptime!(32 * DKDV_PLANES);
    // Keys `key_group · 16 ..` of the tile; role 0 = dV, 1 = dK.
    let key_group = plane % 2;
    let role = plane / 2;
    let q_len = dims.q_len as usize;
    let k_len = dims.k_len as usize;
    let k_start = dims.k_start as usize;
    let group = (dims.q_heads / dims.kv_heads) as usize;

    // 47.4 KB at head dim 128 (bf16).
    let mut qs = Shared::<[F]>::new_slice(comptime!(BWD_BLOCK * (head_dim + 8)));
    let mut dos = Shared::<[F]>::new_slice(comptime!(BWD_BLOCK * (head_dim + 8)));
    let mut ks = Shared::<[F]>::new_slice(comptime!(BWD_BLOCK * (head_dim + 8)));
    let mut vs = Shared::<[F]>::new_slice(comptime!(BWD_BLOCK * (head_dim + 8)));
    let mut st = Shared::<[f32]>::new_slice(BWD_BLOCK * S_LD);
    let mut dpt = Shared::<[f32]>::new_slice(BWD_BLOCK * S_LD);
    let mut pt = Shared::<[F]>::new_slice(BWD_BLOCK * BWD_BLOCK);
    let mut dst = Shared::<[F]>::new_slice(BWD_BLOCK * BWD_BLOCK);
    let mut pos = Shared::<[u32]>::new_slice(BWD_BLOCK);
    let mut lse_s = Shared::<[f32]>::new_slice(BWD_BLOCK);
    let mut delta_s = Shared::<[f32]>::new_slice(BWD_BLOCK);

    let kv_base = (b * dims.kv_heads as usize + hk) * k_len;
    load_keys::<F, N>(k, j0, k_len, kv_base, &mut ks, head_dim, threads);
    load_keys::<F, N>(v, j0, k_len, kv_base, &mut vs, head_dim, threads);
    let mut k_end = j0 + BWD_BLOCK;
    if k_end > k_len {
        k_end = k_len;
    }
    let kpos_lo = k_start + j0;
    let kpos_hi = k_start + k_end;
    // Lane `lane` of a plane handles half a key row of its key group's transposed score tile.
    let my_k = key_group * 16 + lane / 2;
    let half = lane % 2;
    let my_j = j0 + my_k;

    let mut acc = Sequence::<Frag<f32>>::new();
    #[unroll]
    for _c in 0..head_dim / 16 {
        acc.push(zero_acc());
    }
    let n_tiles = (q_len + BWD_BLOCK - 1) / BWD_BLOCK + 1;
    for g in 0..group {
        let h = hk * group + g;
        let q_base = (b * dims.q_heads as usize + h) * q_len;
        for tile_i in 0..n_tiles {
            let tile =
                row_tile_of::<I>(split, b, tile_i, q_len, dims.window_a as usize, dims.window_b as usize, BWD_BLOCK);
            if tile.count > 0 {
                let order_at = b * q_len + tile.start;
                let rows = tile.count;
                let window = tile.window;
                let p_first = dims.q_start as usize + u32::cast_from(order[order_at]) as usize;
                let p_last = dims.q_start as usize + u32::cast_from(order[order_at + rows - 1]) as usize;
                if p_last >= kpos_lo && first_key(p_first, window) < kpos_hi {
                    if t < BWD_BLOCK {
                        let mut p = 0u32;
                        let mut l = 0.0f32;
                        let mut dl = 0.0f32;
                        if t < rows {
                            let row = u32::cast_from(order[order_at + t]) as usize;
                            p = dims.q_start + row as u32;
                            l = lse[q_base + row];
                            dl = delta[q_base + row];
                        }
                        pos[t] = p;
                        lse_s[t] = l;
                        delta_s[t] = dl;
                    }
                    load_rows::<F, I, N>(q, order, order_at, rows, q_base, &mut qs, head_dim, threads);
                    load_rows::<F, I, N>(grad, order, order_at, rows, q_base, &mut dos, head_dim, threads);
                    sync_cube();
                    // Sᵀ by the dV planes, dPᵀ by the dK planes; each needs both below.
                    let off = key_group * 16 * S_LD;
                    if role == 0 {
                        products_t::<F>(&ks, key_group * 16, &qs, &mut st, off, head_dim);
                    } else {
                        products_t::<F>(&vs, key_group * 16, &dos, &mut dpt, off, head_dim);
                    }
                    sync_cube();
                    let base = my_k * S_LD + half * 16;
                    let w_base = my_k * BWD_BLOCK + half * 16;
                    for c in 0..16usize {
                        let rr = half * 16 + c;
                        let mut p = 0.0f32;
                        let mut ds = 0.0f32;
                        if rr < rows && my_j < k_len && sees(pos[rr] as usize, k_start + my_j, window) {
                            p = f32::exp(st[base + c] * dims.scale - lse_s[rr]);
                            ds = p * (dpt[base + c] - delta_s[rr]);
                        }
                        // Each role writes the weights it multiplies with.
                        if role == 0 {
                            pt[w_base + c] = F::cast_from(p);
                        } else {
                            dst[w_base + c] = F::cast_from(ds);
                        }
                    }
                    sync_plane();
                    let w_off = key_group * 16 * BWD_BLOCK;
                    if role == 0 {
                        accumulate::<F>(&pt, w_off, &dos, &mut acc, head_dim);
                    } else {
                        accumulate::<F>(&dst, w_off, &qs, &mut acc, head_dim);
                    }
                    sync_cube();
                }
            }
        }
    }
    let valid = my_j < k_len;
    // The score tile is free now: 256 floats of it per plane stage the output fragments.
    if role == 0 {
        write_rows::<F>(&acc, &mut st, plane * 256, dv, kv_base + my_j, valid, 1.0, head_dim);
    } else {
        write_rows::<F>(&acc, &mut st, plane * 256, dk, kv_base + my_j, valid, dims.scale, head_dim);
    }
}
