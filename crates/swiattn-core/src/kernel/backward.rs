//! The fused backward (FlashAttention-2 style): scores are recomputed tile by tile from the saved
//! log-sum-exp, so no `n × n` buffer exists. Three launches:
//!
//! 1. `delta_kernel`: `delta = rowsum(dO ∘ O)` per row (fp32).
//! 2. `dq_kernel`: one cube per query tile, like the forward: `dQ = scale · Σ_j dS_ij k_j`.
//! 3. `dkdv_kernel`: one cube per key tile and KV head, looping over the query heads of its group
//!    and over the query tiles that can see the key tile: `dV = Σ_i P_ij dO_i`,
//!    `dK = scale · Σ_i dS_ij q_i`. Grouped-query gradients are summed in the cube, no atomics.
//!
//! with `P_ij = exp(scale · q_i · k_j - lse_i)` on visible pairs and `dS_ij = P_ij (dO_i · v_j - delta_i)`.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use super::tile::{
    BLOCK_K, BLOCK_Q, Problem, key_range, load_keys, load_positions, load_row_stats, load_rows, row_tile, rows_seeing,
    sees, tile_needed,
};

const _: () = assert!(BLOCK_Q == BLOCK_K, "dkdv_kernel maps lanes to query rows of a tile");

/// `delta[i] = Σ_d out[i, d] · grad[i, d]` over `rows` rows of `head_dim`.
#[cube(launch_unchecked)]
pub(crate) fn delta_kernel<F: Float>(
    out: &Tensor<F>,
    grad: &Tensor<F>,
    delta: &mut Tensor<f32>,
    rows: u32,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row = ABSOLUTE_POS as usize;
    if row < rows as usize {
        let mut s = 0.0f32;
        for d in 0..head_dim {
            s += f32::cast_from(out[row * head_dim + d]) * f32::cast_from(grad[row * head_dim + d]);
        }
        delta[row] = s;
    }
}

/// `dq`: like `q`. Arguments as in [`super::forward::forward_kernel`], plus the output gradient,
/// `lse` and `delta` (`[B, Hq, Tq]`, fp32).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dq_kernel<F: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    grad: &Tensor<F>,
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
    let t = UNIT_POS as usize;
    let r = t / BLOCK_K;
    let c = t % BLOCK_K;
    let q_len = dims.q_len as usize;
    let k_len = dims.k_len as usize;
    let k_start = dims.k_start as usize;
    let hkv = h / (dims.q_heads / dims.kv_heads) as usize;
    let tile = row_tile::<I>(split, b, CUBE_POS_Z as usize, q_len, dims.window_a as usize, dims.window_b as usize);
    if tile.count == 0 {
        terminate!();
    }
    let rows = tile.count;
    let window = tile.window;
    let ld = head_dim + 1;
    let per_lane = comptime!(head_dim / BLOCK_K);
    let order_at = b * q_len + tile.start;

    let mut qs = Shared::<[f32]>::new_slice(comptime!(BLOCK_Q * (head_dim + 1)));
    let mut dos = Shared::<[f32]>::new_slice(comptime!(BLOCK_Q * (head_dim + 1)));
    let mut ks = Shared::<[f32]>::new_slice(comptime!(BLOCK_K * (head_dim + 1)));
    let mut vs = Shared::<[f32]>::new_slice(comptime!(BLOCK_K * (head_dim + 1)));
    let mut dss = Shared::<[f32]>::new_slice(BLOCK_Q * BLOCK_K);
    let mut pos = Shared::<[u32]>::new_slice(BLOCK_Q);

    let q_base = (b * dims.q_heads as usize + h) * q_len;
    let kv_base = (b * dims.kv_heads as usize + hkv) * k_len;
    load_positions::<I>(order, order_at, rows, dims.q_start, &mut pos, BLOCK_Q);
    load_rows::<F, I>(q, order, order_at, rows, q_base, &mut qs, head_dim);
    load_rows::<F, I>(grad, order, order_at, rows, q_base, &mut dos, head_dim);
    sync_cube();

    let my_pos = pos[r] as usize;
    let mut my_lse = 0.0f32;
    let mut my_delta = 0.0f32;
    let mut my_row = 0usize;
    if r < rows {
        my_row = u32::cast_from(order[order_at + r]) as usize;
        my_lse = lse[q_base + my_row];
        my_delta = delta[q_base + my_row];
    }
    let first_pos = pos[0] as usize;
    let last_pos = pos[rows - 1] as usize;
    let keys = key_range(first_pos, last_pos, window, k_start, k_len);
    let (j_lo, j_end) = (keys.lo, keys.end);

    let mut acc = Array::<f32>::new(per_lane);
    #[unroll]
    for i in 0..per_lane {
        acc[i] = 0.0;
    }
    let mut j0 = j_lo;
    while j0 < j_end {
        if tile_needed(&pos, rows, window, k_start + j0, k_start + j0 + BLOCK_K) {
            load_keys::<F>(k, j0, k_len, kv_base, &mut ks, head_dim);
            load_keys::<F>(v, j0, k_len, kv_base, &mut vs, head_dim);
            sync_cube();
            let mut s = 0.0f32;
            let mut dp = 0.0f32;
            for d in 0..head_dim {
                s += qs[r * ld + d] * ks[c * ld + d];
                dp += dos[r * ld + d] * vs[c * ld + d];
            }
            let j = j0 + c;
            let mut ds = 0.0f32;
            if r < rows && j < j_end && sees(my_pos, k_start + j, window) {
                let p = f32::exp(s * dims.scale - my_lse);
                ds = p * (dp - my_delta);
            }
            dss[r * BLOCK_K + c] = ds;
            sync_cube();
            for cc in 0..BLOCK_K {
                let x = dss[r * BLOCK_K + cc];
                #[unroll]
                for i in 0..per_lane {
                    acc[i] += x * ks[cc * ld + c + i * BLOCK_K];
                }
            }
            sync_cube();
        }
        j0 += BLOCK_K;
    }
    if r < rows {
        #[unroll]
        for i in 0..per_lane {
            dq[(q_base + my_row) * head_dim + c + i * BLOCK_K] = F::cast_from(acc[i] * dims.scale);
        }
    }
}

/// `dk`, `dv`: like `k`, `v`. One cube per key tile, KV head and sequence; thread `(kk, lane)` owns
/// key `kk` of the tile: while scoring it pairs that key with query row `lane` of a query tile,
/// while accumulating it owns dims `lane, lane + BLOCK_K, …`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dkdv_kernel<F: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    grad: &Tensor<F>,
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
    let j0 = CUBE_POS_Z as usize * BLOCK_K;
    let t = UNIT_POS as usize;
    let kk = t / BLOCK_Q;
    let lane = t % BLOCK_Q;
    let q_len = dims.q_len as usize;
    let k_len = dims.k_len as usize;
    let k_start = dims.k_start as usize;
    let group = (dims.q_heads / dims.kv_heads) as usize;
    let ld = head_dim + 1;
    let per_lane = comptime!(head_dim / BLOCK_K);

    let mut qs = Shared::<[f32]>::new_slice(comptime!(BLOCK_Q * (head_dim + 1)));
    let mut dos = Shared::<[f32]>::new_slice(comptime!(BLOCK_Q * (head_dim + 1)));
    let mut ks = Shared::<[f32]>::new_slice(comptime!(BLOCK_K * (head_dim + 1)));
    let mut vs = Shared::<[f32]>::new_slice(comptime!(BLOCK_K * (head_dim + 1)));
    let mut ps = Shared::<[f32]>::new_slice(BLOCK_Q * BLOCK_K);
    let mut dss = Shared::<[f32]>::new_slice(BLOCK_Q * BLOCK_K);
    let mut pos = Shared::<[u32]>::new_slice(BLOCK_Q);
    let mut lse_s = Shared::<[f32]>::new_slice(BLOCK_Q);
    let mut delta_s = Shared::<[f32]>::new_slice(BLOCK_Q);

    let kv_base = (b * dims.kv_heads as usize + hk) * k_len;
    load_keys::<F>(k, j0, k_len, kv_base, &mut ks, head_dim);
    load_keys::<F>(v, j0, k_len, kv_base, &mut vs, head_dim);
    let mut k_end = j0 + BLOCK_K;
    if k_end > k_len {
        k_end = k_len;
    }
    let kpos_lo = k_start + j0;
    let kpos_hi = k_start + k_end;
    let my_j = j0 + kk;

    let mut dk_acc = Array::<f32>::new(per_lane);
    let mut dv_acc = Array::<f32>::new(per_lane);
    #[unroll]
    for i in 0..per_lane {
        dk_acc[i] = 0.0;
        dv_acc[i] = 0.0;
    }
    for g in 0..group {
        let h = hk * group + g;
        let q_base = (b * dims.q_heads as usize + h) * q_len;
        // Only the rows that see a key of this tile, `BLOCK_Q` at a time.
        for seg in 0..2u32 {
            let (wa, wb) = (dims.window_a as usize, dims.window_b as usize);
            let seen = rows_seeing::<I>(order, split, b, q_len, dims.q_start as usize, seg, wa, wb, kpos_lo, kpos_hi);
            let window = seen.window;
            let mut start = seen.first;
            while start < seen.end {
                let order_at = b * q_len + start;
                let mut rows = seen.end - start;
                if rows > BLOCK_Q {
                    rows = BLOCK_Q;
                }
                start += BLOCK_Q;
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
                    BLOCK_Q,
                );
                load_rows::<F, I>(q, order, order_at, rows, q_base, &mut qs, head_dim);
                load_rows::<F, I>(grad, order, order_at, rows, q_base, &mut dos, head_dim);
                sync_cube();

                let mut s = 0.0f32;
                let mut dp = 0.0f32;
                for d in 0..head_dim {
                    s += qs[lane * ld + d] * ks[kk * ld + d];
                    dp += dos[lane * ld + d] * vs[kk * ld + d];
                }
                let mut p = 0.0f32;
                let mut ds = 0.0f32;
                if lane < rows && my_j < k_len && sees(pos[lane] as usize, k_start + my_j, window) {
                    p = f32::exp(s * dims.scale - lse_s[lane]);
                    ds = p * (dp - delta_s[lane]);
                }
                ps[kk * BLOCK_Q + lane] = p;
                dss[kk * BLOCK_Q + lane] = ds;
                sync_cube();

                for rr in 0..BLOCK_Q {
                    let pv = ps[kk * BLOCK_Q + rr];
                    let dsv = dss[kk * BLOCK_Q + rr];
                    #[unroll]
                    for i in 0..per_lane {
                        dv_acc[i] += pv * dos[rr * ld + lane + i * BLOCK_K];
                        dk_acc[i] += dsv * qs[rr * ld + lane + i * BLOCK_K];
                    }
                }
                sync_cube();
            }
        }
    }
    if my_j < k_len {
        #[unroll]
        for i in 0..per_lane {
            dk[(kv_base + my_j) * head_dim + lane + i * BLOCK_K] = F::cast_from(dk_acc[i] * dims.scale);
            dv[(kv_base + my_j) * head_dim + lane + i * BLOCK_K] = F::cast_from(dv_acc[i]);
        }
    }
}
