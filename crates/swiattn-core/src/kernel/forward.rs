//! The fused forward: tiled online-softmax attention with a per-segment window, tile skipping and
//! grouped-query heads, writing the output and the log-sum-exp of every row for the backward.
//!
//! One cube per (query tile, query head, sequence); thread `(r, c)` of a cube owns score column
//! `c` of row `r` while scoring, and dims `c, c + BLOCK_K, …` of row `r` while accumulating. The
//! key loop starts at the first key the tile's first row sees and stops after its last row, so
//! key tiles wholly outside the window are never loaded; inside that range a key tile that no row
//! of the tile sees (sparse routed rows) is skipped too.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use super::tile::{
    BLOCK_K, BLOCK_Q, HIDDEN, HIDDEN_BELOW, Problem, clip_to_floor, key_range, load_keys, load_positions, load_rows,
    row_tile, sees, tile_needed,
};

/// `q`: `[B, Hq, Tq, D]`, `k`/`v`: `[B, Hkv, Tk, D]`, `out`: like `q`, `lse`: `[B, Hq, Tq]` (fp32),
/// all contiguous; `order`: `[B, Tq]` query rows, `split`: `[B]` (see [`super::QueryOrder`]).
/// `ragged`: sequence `b` also sees no key before index `floor[b]` (`[B]`, the first held column
/// of a ragged cache, [`crate::cache::RowsCache`]); otherwise `floor` is not read.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_kernel<F: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    order: &Tensor<I>,
    split: &Tensor<I>,
    floor: &Tensor<I>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<f32>,
    dims: Problem,
    #[comptime] head_dim: usize,
    #[comptime] ragged: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let h = CUBE_POS_X as usize;
    let b = CUBE_POS_Y as usize;
    let t = UNIT_POS as usize;
    let r = t / BLOCK_K;
    let c = t % BLOCK_K;
    let q_len = dims.q_len as usize;
    let k_len = dims.k_len as usize;
    let hkv = h / (dims.q_heads / dims.kv_heads) as usize;
    let tile = row_tile::<I>(split, b, CUBE_POS_Z as usize, q_len, dims.window_a as usize, dims.window_b as usize);
    if tile.count == 0 {
        terminate!();
    }
    let rows = tile.count;
    let window = tile.window;
    let ld = head_dim + 1;
    let per_lane = comptime!(head_dim / BLOCK_K);

    let mut qs = Shared::<[f32]>::new_slice(comptime!(BLOCK_Q * (head_dim + 1)));
    let mut ks = Shared::<[f32]>::new_slice(comptime!(BLOCK_K * (head_dim + 1)));
    let mut vs = Shared::<[f32]>::new_slice(comptime!(BLOCK_K * (head_dim + 1)));
    let mut pos = Shared::<[u32]>::new_slice(BLOCK_Q);
    let mut ps = Shared::<[f32]>::new_slice(BLOCK_Q * BLOCK_K);

    let q_base = (b * dims.q_heads as usize + h) * q_len;
    let kv_base = (b * dims.kv_heads as usize + hkv) * k_len;
    // Rows and their positions.
    load_positions::<I>(order, b * q_len + tile.start, rows, dims.q_start, &mut pos, BLOCK_Q);
    load_rows::<F, I>(q, order, b * q_len + tile.start, rows, q_base, &mut qs, head_dim);
    sync_cube();

    let my_pos = pos[r] as usize;
    let first_pos = pos[0] as usize;
    let last_pos = pos[rows - 1] as usize;
    let k_start = dims.k_start as usize;
    // Key indices `j_lo..j_end` hold every key some row of the tile sees.
    let keys = key_range(first_pos, last_pos, window, k_start, k_len);
    let j_lo = clip_to_floor::<I>(keys.lo, floor, b, ragged);
    let j_end = keys.end;

    let mut acc = Array::<f32>::new(per_lane);
    #[unroll]
    for i in 0..per_lane {
        acc[i] = 0.0;
    }
    let mut m = f32::new(HIDDEN);
    let mut l = 0.0f32;

    let mut j0 = j_lo;
    while j0 < j_end {
        if tile_needed(&pos, rows, window, k_start + j0, k_start + j0 + BLOCK_K) {
            load_keys::<F>(k, j0, k_len, kv_base, &mut ks, head_dim);
            load_keys::<F>(v, j0, k_len, kv_base, &mut vs, head_dim);
            sync_cube();

            // This thread's score, then the row's scores from shared memory.
            let mut s = 0.0f32;
            for d in 0..head_dim {
                s += qs[r * ld + d] * ks[c * ld + d];
            }
            let j = j0 + c;
            let mut score = f32::new(HIDDEN);
            if r < rows && j < j_end && sees(my_pos, k_start + j, window) {
                score = s * dims.scale;
            }
            ps[r * BLOCK_K + c] = score;
            sync_cube();

            let mut m_new = m;
            for cc in 0..BLOCK_K {
                let x = ps[r * BLOCK_K + cc];
                if x > m_new {
                    m_new = x;
                }
            }
            let alpha = f32::exp(m - m_new);
            l *= alpha;
            #[unroll]
            for i in 0..per_lane {
                acc[i] *= alpha;
            }
            for cc in 0..BLOCK_K {
                let x = ps[r * BLOCK_K + cc];
                if x > HIDDEN_BELOW {
                    let p = f32::exp(x - m_new);
                    l += p;
                    #[unroll]
                    for i in 0..per_lane {
                        acc[i] += p * vs[cc * ld + c + i * BLOCK_K];
                    }
                }
            }
            m = m_new;
            sync_cube();
        }
        j0 += BLOCK_K;
    }

    if r < rows {
        let row = u32::cast_from(order[b * q_len + tile.start + r]) as usize;
        let mut inv = 0.0f32;
        if l > 0.0 {
            inv = 1.0 / l;
        }
        #[unroll]
        for i in 0..per_lane {
            out[(q_base + row) * head_dim + c + i * BLOCK_K] = F::cast_from(acc[i] * inv);
        }
        if c == 0 {
            let mut x = f32::new(HIDDEN);
            if l > 0.0 {
                x = m + f32::ln(l);
            }
            lse[q_base + row] = x;
        }
    }
}
