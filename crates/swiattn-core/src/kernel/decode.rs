//! Decode: one new query per sequence against a long cache, split over the keys
//! (FlashDecoding). With one query row, a tile-per-cube forward would leave the GPU idle and make
//! every sequence wait for the longest one; here each cube scores one chunk of `DECODE_CHUNK` keys
//! for one (head, sequence) and writes a partial `(max, sum, output)`, and a second launch merges
//! the chunks. A sequence routed to the sliding window has non-empty chunks only inside its window,
//! so its work — and, with enough sequences in flight, its time — is `w / n` of a full one.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

use super::tile::{HIDDEN, Problem, clip_to_floor, key_range, row_tile_of, sees};

/// Keys per chunk.
pub(crate) const DECODE_CHUNK: usize = 512;
/// Threads per cube.
pub(crate) const DECODE_THREADS: usize = 128;

/// Partial attention of the single query of (head `CUBE_POS_Y`, sequence `CUBE_POS_Z`) over key
/// chunk `CUBE_POS_X`: `part[.., chunk, 0] = max`, `[.., 1] = sum of exp(score - max)`,
/// `[.., 2..] = Σ exp(score - max) v` (fp32). Arguments as in [`super::forward::forward_kernel`]
/// with `q_len == 1` (`dims.q_len` is not read).
///
/// `ragged`: the rows of a ragged cache ([`crate::cache::RowsCache`]); sequence `b` also sees no
/// key column before `floor[b]`, its first held one. Otherwise `floor` is not read.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_kernel<F: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    split: &Tensor<I>,
    floor: &Tensor<I>,
    part: &mut Tensor<f32>,
    dims: Problem,
    #[comptime] head_dim: usize,
    #[comptime] ragged: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let b = CUBE_POS_Z as usize;
    let h = CUBE_POS_Y as usize;
    let chunk = CUBE_POS_X as usize;
    let n_chunks = CUBE_COUNT_X as usize;
    let t = UNIT_POS as usize;
    let k_len = dims.k_len as usize;
    let hkv = h / (dims.q_heads / dims.kv_heads) as usize;
    // The one row is segment A's if the sequence has one, else segment B's.
    let tile = row_tile_of::<I>(split, b, 0, 1, dims.window_a as usize, dims.window_b as usize, 1usize);
    let window = tile.window;
    let pos = dims.q_start as usize;
    let k_start = dims.k_start as usize;
    let keys = key_range(pos, pos, window, k_start, k_len);
    let j_lo = clip_to_floor::<I>(keys.lo, floor, b, ragged);
    let j_end = keys.end;
    let mut c0 = chunk * DECODE_CHUNK;
    if c0 < j_lo {
        c0 = j_lo;
    }
    let mut c1 = (chunk + 1) * DECODE_CHUNK;
    if c1 > j_end {
        c1 = j_end;
    }

    let mut qs = Shared::<[f32]>::new_slice(head_dim);
    let mut ps = Shared::<[f32]>::new_slice(DECODE_CHUNK);
    let mut red = Shared::<[f32]>::new_slice(DECODE_THREADS);
    let q_base = (b * dims.q_heads as usize + h) * head_dim;
    let kv_base = (b * dims.kv_heads as usize + hkv) * k_len;
    let mut i = t;
    while i < head_dim {
        qs[i] = f32::cast_from(q[q_base + i]);
        i += DECODE_THREADS;
    }
    sync_cube();

    // Scores of this thread's keys, and their maximum.
    let mut mx = f32::new(HIDDEN);
    let mut jj = t;
    while jj < DECODE_CHUNK {
        let j = chunk * DECODE_CHUNK + jj;
        let mut s = f32::new(HIDDEN);
        if j >= c0 && j < c1 && sees(pos, k_start + j, window) {
            let mut dot = 0.0f32;
            for d in 0..head_dim {
                dot += qs[d] * f32::cast_from(k[(kv_base + j) * head_dim + d]);
            }
            s = dot * dims.scale;
            if s > mx {
                mx = s;
            }
        }
        ps[jj] = s;
        jj += DECODE_THREADS;
    }
    red[t] = mx;
    sync_cube();
    let mut m = f32::new(HIDDEN);
    for r in 0..DECODE_THREADS {
        let x = red[r];
        if x > m {
            m = x;
        }
    }
    sync_cube();
    // Probabilities (hidden keys 0) and their sum.
    let mut sum = 0.0f32;
    let mut jj = t;
    while jj < DECODE_CHUNK {
        let s = ps[jj];
        let mut p = 0.0f32;
        if s > HIDDEN * 0.1 {
            p = f32::exp(s - m);
        }
        ps[jj] = p;
        sum += p;
        jj += DECODE_THREADS;
    }
    red[t] = sum;
    sync_cube();
    let width = head_dim + 2;
    let out_base = ((b * dims.q_heads as usize + h) * n_chunks + chunk) * width;
    if t == 0 {
        let mut l = 0.0f32;
        for r in 0..DECODE_THREADS {
            l += red[r];
        }
        part[out_base] = m;
        part[out_base + 1] = l;
    }
    // This thread's output dims.
    let mut d = t;
    while d < head_dim {
        let mut o = 0.0f32;
        let mut j = c0;
        while j < c1 {
            o += ps[j - chunk * DECODE_CHUNK] * f32::cast_from(v[(kv_base + j) * head_dim + d]);
            j += 1;
        }
        part[out_base + 2 + d] = o;
        d += DECODE_THREADS;
    }
}

/// Merge the chunks of [`decode_kernel`]: one cube per (head, sequence) writes the output row
/// (`out`, like `q`) and its log-sum-exp.
#[cube(launch_unchecked)]
pub(crate) fn decode_merge_kernel<F: Float>(
    part: &Tensor<f32>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<f32>,
    n_chunks: u32,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let t = UNIT_POS as usize;
    let n_chunks = n_chunks as usize;
    let width = head_dim + 2;
    let base = row * n_chunks * width;
    let mut m = f32::new(HIDDEN);
    for c in 0..n_chunks {
        let x = part[base + c * width];
        if x > m {
            m = x;
        }
    }
    let mut l = 0.0f32;
    for c in 0..n_chunks {
        let lc = part[base + c * width + 1];
        if lc > 0.0 {
            l += lc * f32::exp(part[base + c * width] - m);
        }
    }
    let mut inv = 0.0f32;
    if l > 0.0 {
        inv = 1.0 / l;
    }
    let mut d = t;
    while d < head_dim {
        let mut o = 0.0f32;
        for c in 0..n_chunks {
            if part[base + c * width + 1] > 0.0 {
                o += part[base + c * width + 2 + d] * f32::exp(part[base + c * width] - m);
            }
        }
        out[row * head_dim + d] = F::cast_from(o * inv);
        d += DECODE_THREADS;
    }
    if t == 0 {
        let mut x = f32::new(HIDDEN);
        if l > 0.0 {
            x = m + f32::ln(l);
        }
        lse[row] = x;
    }
}
