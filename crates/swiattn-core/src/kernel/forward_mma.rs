//! The fused forward on tensor cores (CUDA, bf16/f16 inputs, fp32 statistics): FlashAttention-2's
//! single walk with the scores, probabilities and output accumulators in registers
//! ([`super::mma`]); [`super::forward`] is the portable path and this one's reference.
//!
//! One cube of four planes per (query tile, head, sequence); a plane owns `m_tiles` blocks of 16
//! consecutive query rows, and lane `l` rows `g = l / 4` and `g + 8` of each. Per key tile of
//! `block_n` keys: `S = Q Kᵀ` into accumulators (each K fragment loaded once for all the plane's
//! m-tiles), the window mask (only on tiles that some row of the plane sees only part of), the
//! online softmax (row maxima over the lane's columns, then across the four lanes of a row with
//! two shuffles; the output rescaled in place), and `O += P V` with `P` taken straight from the
//! score registers. Key tiles outside the window are never loaded; a plane skips a loaded tile
//! that none of its rows sees.

use std::sync::Mutex;

use burn_cubecl::cubecl;
use cubecl::prelude::barrier::Barrier;
use cubecl::prelude::*;

use super::mma::{Pair, accumulate, load_key_tiles, load_tile, mask_rows, products_t, row_stride, zero_accs};
use super::parse_shape;
use super::pipeline::{issue_key_tiles, next_tile, publish};
use super::tile::{
    HIDDEN, HIDDEN_BELOW, PlaneKeys, Problem, clip_to_floor, key_range, load_positions, plane_keys, plane_rows,
    row_tile_of, tile_needed,
};

/// Planes per cube.
pub(crate) const PLANES: usize = 4;

/// The forward's tile shape: 16-row m-tiles per plane and keys per key tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardTiles {
    pub m_tiles: usize,
    pub keys: usize,
}

impl ForwardTiles {
    /// Query rows per cube.
    pub fn block_q(self) -> usize {
        16 * PLANES * self.m_tiles
    }

    /// The default for a head dim: up to 128, two m-tiles per plane (each K and V fragment read
    /// from shared memory serves 32 rows) and 64 keys — of 1×64, 2×32 and 2×64 the fastest at 8K
    /// and 16K tokens for full attention at head dims 64 and 128 and for sliding at 128 (sliding at
    /// 64: 1×64 by 10 %; H200, `docs/kernels.md`); above 128, one m-tile and 32 keys (the output
    /// accumulators alone take 128 registers).
    pub fn for_head_dim(head_dim: usize) -> Self {
        if head_dim <= 128 { Self { m_tiles: 2, keys: 64 } } else { Self { m_tiles: 1, keys: 32 } }
    }

    /// Shapes the kernel takes: `m_tiles` 1 or 2, `keys` 16, 32 or 64.
    pub fn supported(self) -> bool {
        matches!(self.m_tiles, 1 | 2) && matches!(self.keys, 16 | 32 | 64)
    }
}

impl std::str::FromStr for ForwardTiles {
    type Err = String;

    /// `M×K` or `MxK`, e.g. `2x64`: M m-tiles per plane, K keys per tile.
    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "M×K with M in 1, 2 and K in 16, 32, 64 (e.g. 2x32)";
        parse_shape(s, expected, |m_tiles, keys| Self { m_tiles, keys }, |t| t.supported())
    }
}

static FORWARD_TILES: Mutex<Option<ForwardTiles>> = Mutex::new(None);

/// Override the forward's tile shape for every head dim (`None`: [`ForwardTiles::for_head_dim`]);
/// for tile-shape sweeps (`swiattn bench attention --forward-tiles`). Process-wide; panics on a
/// shape that is not [`ForwardTiles::supported`].
pub fn set_forward_tiles(tiles: Option<ForwardTiles>) {
    if let Some(t) = tiles {
        assert!(t.supported(), "unsupported forward tiles {t:?}");
    }
    *FORWARD_TILES.lock().expect("forward tiles lock") = tiles;
}

/// The tile shape the forward uses at `head_dim`.
pub(crate) fn forward_tiles(head_dim: usize) -> ForwardTiles {
    FORWARD_TILES.lock().expect("forward tiles lock").unwrap_or_else(|| ForwardTiles::for_head_dim(head_dim))
}

/// Like [`super::forward::forward_kernel`] (`floor` and `ragged` too), on tensor cores; `CubeDim` is `(32, PLANES)`, a cube
/// covers `16 · PLANES · m_tiles` query rows, `N` = 8 elements (16 bytes) per global load and
/// shared-memory vector. `pipelined`: K/V tiles double-buffered by `cp.async`
/// ([`super::pipeline`]); else each is loaded through registers while the cube waits.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_mma_kernel<F: Float, I: Int, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    order: &Tensor<I>,
    split: &Tensor<I>,
    floor: &Tensor<I>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<f32>,
    dims: Problem,
    #[comptime] head_dim: usize,
    #[comptime] ragged: bool,
    #[comptime] m_tiles: usize,
    #[comptime] block_n: usize,
    #[comptime] pipelined: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let block_q = comptime!(16 * PLANES * m_tiles);
    let plane_rows_n = comptime!(16 * m_tiles);
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
        row_tile_of::<I>(split, b, CUBE_POS_Z as usize, q_len, dims.window_a as usize, dims.window_b as usize, block_q);
    if tile.count == 0 {
        terminate!();
    }
    let rows = tile.count;
    let window = tile.window;
    let order_at = b * q_len + tile.start;
    let q_base = (b * dims.q_heads as usize + h) * q_len;
    let kv_base = (b * dims.kv_heads as usize + hkv) * k_len;

    // Head dim 128, bf16, 2 × 64 tiles: Q 35 KB, K and V 17 KB per stage.
    let ld = comptime!(row_stride(head_dim));
    let stages = comptime!(if pipelined { 2usize } else { 1usize });
    let mut qs = Shared::<[Vector<F, N>]>::new_aligned_slice(block_q * ld, 16usize);
    let mut ks = Shared::<[Vector<F, N>]>::new_aligned_slice(stages * block_n * ld, 16usize);
    let mut vs = Shared::<[Vector<F, N>]>::new_aligned_slice(stages * block_n * ld, 16usize);
    let mut pos = Shared::<[u32]>::new_slice(block_q);

    load_positions::<I>(order, order_at, rows, dims.q_start, &mut pos, block_q);
    load_tile::<F, I, N>(q, order, order_at, 0, rows, q_base, &mut qs, block_q, head_dim, threads, true);
    sync_cube();

    // The plane's rows, and this lane's two rows of each m-tile.
    let g = lane / 4;
    let quad = lane % 4;
    let plane_row0 = plane * plane_rows_n;
    let span = plane_rows(&pos, rows, plane_row0, plane_rows_n);
    let range = key_range(pos[0] as usize, pos[rows - 1] as usize, window, k_start, k_len);
    let j_lo = clip_to_floor::<I>(range.lo, floor, b, ragged);
    let j_end = range.end;
    let d8 = comptime!(head_dim / 8);

    // Per m-tile `i`: row `g` at `2i`, row `g + 8` at `2i + 1` — positions, running maxima (raw
    // scores) and this lane's share of the row sums.
    let mut row_pos = Array::<u32>::new(comptime!(2 * m_tiles));
    let mut m = Array::<f32>::new(comptime!(2 * m_tiles));
    let mut l = Array::<f32>::new(comptime!(2 * m_tiles));
    #[unroll]
    for i in 0..2 * m_tiles {
        row_pos[i] = pos[plane_row0 + 8 * i + g];
        m[i] = f32::new(HIDDEN);
        l[i] = 0.0;
    }
    let mut o = zero_accs(comptime!(m_tiles * head_dim / 8));

    if pipelined {
        // Two stages of K/V: the next needed tile's copies are in flight while this one is used.
        let full0 = Barrier::shared(CUBE_DIM, UNIT_POS == 0);
        let full1 = Barrier::shared(CUBE_DIM, UNIT_POS == 0);
        let mut cur = next_tile(&pos, rows, window, k_start, j_lo, j_end, block_n);
        if cur < j_end {
            issue_key_tiles::<F, I, N>(
                k, v, order, cur, k_len, kv_base, &mut ks, &mut vs, 0usize, block_n, head_dim, threads,
            );
            publish(&full0);
        }
        let mut stage = 0usize;
        let mut phase0 = 0u32;
        let mut phase1 = 0u32;
        while cur < j_end {
            let next = next_tile(&pos, rows, window, k_start, cur + block_n, j_end, block_n);
            if next < j_end {
                let row0 = (1 - stage) * block_n;
                issue_key_tiles::<F, I, N>(
                    k, v, order, next, k_len, kv_base, &mut ks, &mut vs, row0, block_n, head_dim, threads,
                );
                if stage == 0 {
                    publish(&full1);
                } else {
                    publish(&full0);
                }
            }
            if stage == 0 {
                full0.wait_parity(phase0);
                phase0 ^= 1;
            } else {
                full1.wait_parity(phase1);
                phase1 ^= 1;
            }
            let keys = plane_keys(&span, cur, j_end, k_start, window, block_n);
            attend_key_tile::<F, N>(
                &qs,
                plane_row0,
                &ks,
                &vs,
                stage * block_n,
                &keys,
                &row_pos,
                &mut m,
                &mut l,
                &mut o,
                window,
                dims.scale,
                head_dim,
                m_tiles,
                block_n,
            );
            sync_cube();
            cur = next;
            stage = 1 - stage;
        }
    } else {
        let mut j0 = j_lo;
        while j0 < j_end {
            if tile_needed(&pos, rows, window, k_start + j0, k_start + j0 + block_n) {
                load_key_tiles::<F, I, N>(
                    k, v, order, j0, k_len, kv_base, &mut ks, &mut vs, block_n, head_dim, threads,
                );
                sync_cube();
                let keys = plane_keys(&span, j0, j_end, k_start, window, block_n);
                attend_key_tile::<F, N>(
                    &qs, plane_row0, &ks, &vs, 0usize, &keys, &row_pos, &mut m, &mut l, &mut o, window, dims.scale,
                    head_dim, m_tiles, block_n,
                );
                sync_cube();
            }
            j0 += block_n;
        }
    }

    // Per row: the sum across its four lanes, the output scaled by its inverse, the log-sum-exp.
    #[unroll]
    for i in 0..2 * m_tiles {
        let mut sum = l[i];
        sum += plane_shuffle_xor(sum, 1);
        sum += plane_shuffle_xor(sum, 2);
        let inv = select(sum > 0.0, 1.0 / sum, 0.0);
        let r = plane_row0 + 8 * i + g;
        if r < rows {
            let row = q_base + u32::cast_from(order[order_at + r]) as usize;
            #[unroll]
            for dn in 0..head_dim / 8 {
                let acc = o.index(comptime!((i / 2) * d8 + dn));
                let half = acc[comptime!(i % 2)];
                #[unroll]
                for e in 0..2usize {
                    out[row * head_dim + 8 * dn + 2 * quad + e] = F::cast_from(half.extract(e) * inv);
                }
            }
            if quad == 0 {
                lse[row] = select(sum > 0.0, m[i] * dims.scale + f32::ln(sum), f32::new(HIDDEN));
            }
        }
    }
}

/// One key tile of the online softmax for the plane's `16 · m_tiles` rows at `plane_row0` of
/// `qs`: keys are rows `kv_row0 .. kv_row0 + block_n` of `ks`/`vs`, `keys` says which of them the
/// plane sees; updates the running maxima `m`, this lane's row sums `l` and the output `o`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn attend_key_tile<F: Float, N: Size>(
    qs: &Shared<[Vector<F, N>]>,
    plane_row0: usize,
    ks: &Shared<[Vector<F, N>]>,
    vs: &Shared<[Vector<F, N>]>,
    kv_row0: usize,
    keys: &PlaneKeys,
    row_pos: &Array<u32>,
    m: &mut Array<f32>,
    l: &mut Array<f32>,
    o: &mut Sequence<Array<Pair<f32>>>,
    window: usize,
    scale: f32,
    #[comptime] head_dim: usize,
    #[comptime] m_tiles: usize,
    #[comptime] block_n: usize,
) {
    let n8 = comptime!(block_n / 8);
    let d8 = comptime!(head_dim / 8);
    if keys.any {
        let mut s = products_t::<F, N>(qs, plane_row0, ks, kv_row0, head_dim, block_n, m_tiles);
        #[unroll]
        for mi in 0..m_tiles {
            // Hide what a row does not see, unless every row of the plane sees every key.
            if !keys.all {
                let (lo, hi) = (row_pos[2 * mi] as usize, row_pos[2 * mi + 1] as usize);
                mask_rows(&mut s, comptime!(mi * n8), lo, hi, keys.kp0, keys.kp1, window, block_n);
            }
            // Online softmax: new maxima, rescale factors, probabilities in place.
            let mut mx_lo = m[2 * mi];
            let mut mx_hi = m[2 * mi + 1];
            #[unroll]
            for nt in 0..block_n / 8 {
                let acc = s.index(mi * n8 + nt);
                #[unroll]
                for e in 0..2usize {
                    mx_lo = f32::max(mx_lo, acc[0].extract(e));
                    mx_hi = f32::max(mx_hi, acc[1].extract(e));
                }
            }
            mx_lo = f32::max(mx_lo, plane_shuffle_xor(mx_lo, 1));
            mx_lo = f32::max(mx_lo, plane_shuffle_xor(mx_lo, 2));
            mx_hi = f32::max(mx_hi, plane_shuffle_xor(mx_hi, 1));
            mx_hi = f32::max(mx_hi, plane_shuffle_xor(mx_hi, 2));
            // A row that has seen nothing yet keeps max HIDDEN; exponents then use 0, so
            // its hidden scores still give exactly 0.
            let use_lo = select(mx_lo > f32::new(HIDDEN_BELOW), mx_lo, 0.0);
            let use_hi = select(mx_hi > f32::new(HIDDEN_BELOW), mx_hi, 0.0);
            let alpha_lo = f32::exp((m[2 * mi] - use_lo) * scale);
            let alpha_hi = f32::exp((m[2 * mi + 1] - use_hi) * scale);
            m[2 * mi] = mx_lo;
            m[2 * mi + 1] = mx_hi;
            let shift_lo = use_lo * scale;
            let shift_hi = use_hi * scale;
            let mut sum_lo = 0.0f32;
            let mut sum_hi = 0.0f32;
            #[unroll]
            for nt in 0..block_n / 8 {
                let acc = s.index_mut(mi * n8 + nt);
                let mut lo = acc[0];
                let mut hi = acc[1];
                #[unroll]
                for e in 0..2usize {
                    let p_lo = f32::exp(lo.extract(e) * scale - shift_lo);
                    let p_hi = f32::exp(hi.extract(e) * scale - shift_hi);
                    sum_lo += p_lo;
                    sum_hi += p_hi;
                    lo.insert(e, p_lo);
                    hi.insert(e, p_hi);
                }
                acc[0] = lo;
                acc[1] = hi;
            }
            l[2 * mi] = l[2 * mi] * alpha_lo + sum_lo;
            l[2 * mi + 1] = l[2 * mi + 1] * alpha_hi + sum_hi;
            let alpha = Pair::<f32>::new(alpha_lo);
            let beta = Pair::<f32>::new(alpha_hi);
            #[unroll]
            for dn in 0..head_dim / 8 {
                let acc = o.index_mut(mi * d8 + dn);
                acc[0] = acc[0] * alpha;
                acc[1] = acc[1] * beta;
            }
        }
        // O += P V
        accumulate::<F, N>(&s, vs, kv_row0, o, head_dim, block_n, m_tiles);
    }
}
