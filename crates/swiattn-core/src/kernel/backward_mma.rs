//! The fused backward on tensor cores (CUDA, bf16/f16 inputs, fp32 accumulators): the same three
//! launches as [`super::backward`] (whose `delta_kernel` it shares), FlashAttention-2's products
//! with every score, probability and gradient tile in registers ([`super::mma`]).
//!
//! - `dq`: like the forward, four planes × 16 query rows; per key tile `S = Q Kᵀ`, `dP = dO Vᵀ`,
//!   `dS = P ∘ (dP − δ)` with `P = exp(S · scale − lse)`, and `dQ += dS K`.
//! - `dkdv`: four planes × 16 keys (keys are the rows of its products); per step of
//!   [`BackwardTiles::dkdv_queries`] query rows `Sᵀ = K Qᵀ`, `dPᵀ = V dOᵀ`, `dV += Pᵀ dO`,
//!   `dK += dSᵀ Q`, summed over the query heads that share the KV head (no atomics).
//!
//! Each recomputes the scores it needs: 7 products per (query, key) tile pair against
//! FlashAttention-2's 5, which accumulates dQ with atomics instead.

use std::sync::Mutex;

use burn_cubecl::cubecl;
use cubecl::prelude::barrier::Barrier;
use cubecl::prelude::*;

use super::forward_mma::PLANES;
use super::mma::{Pair, accumulate, load_key_tiles, load_tile, mask_rows, products_t, row_stride, zero_accs};
use super::parse_shape;
use super::pipeline::{issue_key_tiles, issue_query_rows, next_tile, publish};
use super::tile::{
    HIDDEN_BELOW, PlaneKeys, Problem, SeenRows, first_key, key_range, load_positions, load_row_stats, plane_keys,
    plane_rows, row_tile_of, rows_seeing, sees, tile_needed,
};

/// Query rows of a `dq` cube (16 per plane).
pub(crate) const DQ_ROWS: usize = 16 * PLANES;

/// Keys per `dkdv` cube (16 per plane).
pub(crate) const DKDV_KEYS: usize = 16 * PLANES;

/// The backward's tile shapes: keys per tile of `dq`'s key loop, query rows per step of `dkdv`'s
/// query loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackwardTiles {
    pub dq_keys: usize,
    pub dkdv_queries: usize,
}

impl BackwardTiles {
    /// The default for a head dim: 128 keys and 32 query rows up to 64, 64 and 64 up to 128, 32
    /// and 32 above (the dK/dV accumulators alone then take 128 registers or more). Of six
    /// shapes from 32 × 32 to 128 × 64, the fastest at 8K and 16K tokens for full attention,
    /// forward + backward (H200, bf16, against the former 64 × 32: 4–6 % at head dim 128, 1–3 %
    /// at 64; `docs/LOG.md`, 2026-12-02). 16-row steps are 15–20 % slower.
    pub fn for_head_dim(head_dim: usize) -> Self {
        let (dq_keys, dkdv_queries) = match head_dim {
            ..=64 => (128, 32),
            ..=128 => (64, 64),
            _ => (32, 32),
        };
        Self { dq_keys, dkdv_queries }
    }

    /// Shapes the kernels take: `dq_keys` 32, 64 or 128, `dkdv_queries` 16, 32 or 64.
    pub fn supported(self) -> bool {
        matches!(self.dq_keys, 32 | 64 | 128) && matches!(self.dkdv_queries, 16 | 32 | 64)
    }

    /// Whether dQ's key tiles fit in shared memory at `head_dim`: `dq_keys × head_dim` at most
    /// 16384 (two K/V stages when pipelined).
    pub fn fits(self, head_dim: usize) -> bool {
        self.dq_keys * head_dim <= 128 * 128
    }
}

impl std::str::FromStr for BackwardTiles {
    type Err = String;

    /// `K×Q` or `KxQ`, e.g. `64x32`: K keys per dQ key tile, Q query rows per dK/dV step.
    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "K×Q with K in 32, 64, 128 and Q in 16, 32, 64 (e.g. 64x32)";
        parse_shape(s, expected, |dq_keys, dkdv_queries| Self { dq_keys, dkdv_queries }, |t| t.supported())
    }
}

static BACKWARD_TILES: Mutex<Option<BackwardTiles>> = Mutex::new(None);

/// Override the backward's tile shapes for every head dim (`None`: [`BackwardTiles::for_head_dim`]);
/// for tile-shape sweeps (`swiattn bench attention --backward-tiles`). Process-wide; panics on a
/// shape that is not [`BackwardTiles::supported`], and a backward whose head dim it does not
/// [`fit`](BackwardTiles::fits) panics (check first, as `bench attention` does).
pub fn set_backward_tiles(tiles: Option<BackwardTiles>) {
    if let Some(t) = tiles {
        assert!(t.supported(), "unsupported backward tiles {t:?}");
    }
    *BACKWARD_TILES.lock().expect("backward tiles lock") = tiles;
}

/// The tile shapes the backward uses at `head_dim`.
pub(crate) fn backward_tiles(head_dim: usize) -> BackwardTiles {
    let tiles =
        BACKWARD_TILES.lock().expect("backward tiles lock").unwrap_or_else(|| BackwardTiles::for_head_dim(head_dim));
    assert!(tiles.fits(head_dim), "backward tiles {tiles:?} do not fit in shared memory at head dim {head_dim}");
    tiles
}

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

/// `Pᵀ` in place of `st` and `dSᵀ = Pᵀ ∘ (dPᵀ − δ)` in place of `dpt` (`q_step` query columns),
/// for the lane's keys at positions `kpos_lo` (row `g`) and `kpos_hi` (row `g + 8`); column `r`
/// is query row `r` with its own position, `lse` and `δ` at `row0 + r` of the statistics.
/// `masked`: zero the pairs a query does not see and the columns past `rows` (else every pair is
/// visible).
#[cube]
#[allow(clippy::too_many_arguments)]
fn transposed_ds(
    st: &mut Sequence<Array<Pair<f32>>>,
    dpt: &mut Sequence<Array<Pair<f32>>>,
    pos: &Shared<[u32]>,
    lse: &Shared<[f32]>,
    delta: &Shared<[f32]>,
    row0: usize,
    rows: usize,
    window: usize,
    kpos_lo: usize,
    kpos_hi: usize,
    scale: f32,
    #[comptime] q_step: usize,
    #[comptime] masked: bool,
) {
    let quad = UNIT_POS_PLANE as usize % 4;
    #[unroll]
    for nt in 0..q_step / 8 {
        let sa = st.index_mut(nt);
        let da = dpt.index_mut(nt);
        let mut p_lo = sa[0];
        let mut p_hi = sa[1];
        let mut ds_lo = da[0];
        let mut ds_hi = da[1];
        #[unroll]
        for e in 0..2usize {
            let r = 8 * nt + 2 * quad + e;
            let l = lse[row0 + r];
            let dl = delta[row0 + r];
            let mut x = f32::exp(p_lo.extract(e) * scale - l);
            let mut y = f32::exp(p_hi.extract(e) * scale - l);
            if masked {
                let qp = pos[row0 + r] as usize;
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

/// The lane's two query rows in `dq`: positions, log-sum-exps and deltas of rows `g` (`_lo`) and
/// `g + 8` (`_hi`).
#[derive(CubeType)]
struct RowStats {
    pos_lo: usize,
    pos_hi: usize,
    lse_lo: f32,
    lse_hi: f32,
    delta_lo: f32,
    delta_hi: f32,
}

/// One key tile of `dQ += dS K` for the plane's 16 rows at `plane_row0` of `qs`/`dos`: keys are
/// rows `kv_row0 .. kv_row0 + block_n` of `ks`/`vs`, `keys` says which of them the plane sees.
#[cube]
#[allow(clippy::too_many_arguments)]
fn dq_key_tile<F: Float, N: Size>(
    qs: &Shared<[Vector<F, N>]>,
    dos: &Shared<[Vector<F, N>]>,
    plane_row0: usize,
    ks: &Shared<[Vector<F, N>]>,
    vs: &Shared<[Vector<F, N>]>,
    kv_row0: usize,
    keys: &PlaneKeys,
    rows: &RowStats,
    acc: &mut Sequence<Array<Pair<f32>>>,
    window: usize,
    scale: f32,
    #[comptime] head_dim: usize,
    #[comptime] block_n: usize,
) {
    if keys.any {
        let mut s = products_t::<F, N>(qs, plane_row0, ks, kv_row0, head_dim, block_n, 1usize);
        let mut dp = products_t::<F, N>(dos, plane_row0, vs, kv_row0, head_dim, block_n, 1usize);
        if !keys.all {
            mask_rows(&mut s, 0usize, rows.pos_lo, rows.pos_hi, keys.kp0, keys.kp1, window, block_n);
        }
        let (l_lo, l_hi, d_lo, d_hi) = (rows.lse_lo, rows.lse_hi, rows.delta_lo, rows.delta_hi);
        probabilities_and_ds(&mut s, &mut dp, scale, l_lo, l_hi, d_lo, d_hi, block_n);
        accumulate::<F, N>(&dp, ks, kv_row0, acc, head_dim, block_n, 1usize);
    }
}

/// Like [`super::backward::dq_kernel`], on tensor cores; `CubeDim` is `(32, PLANES)`, a cube
/// covers [`DQ_ROWS`] query rows, `N` = 8, key tiles of `block_n` keys. `pipelined`: K/V tiles
/// double-buffered by `cp.async` ([`super::pipeline`]).
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
    #[comptime] block_n: usize,
    #[comptime] pipelined: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
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

    // Head dim 128, bf16: Q, dO tiles of 17 KB each, K and V of 17 KB per stage.
    let ld = comptime!(row_stride(head_dim));
    let stages = comptime!(if pipelined { 2usize } else { 1usize });
    let mut qs = Shared::<[Vector<F, N>]>::new_aligned_slice(DQ_ROWS * ld, 16usize);
    let mut dos = Shared::<[Vector<F, N>]>::new_aligned_slice(DQ_ROWS * ld, 16usize);
    let mut ks = Shared::<[Vector<F, N>]>::new_aligned_slice(stages * block_n * ld, 16usize);
    let mut vs = Shared::<[Vector<F, N>]>::new_aligned_slice(stages * block_n * ld, 16usize);
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

    let stats = RowStats { pos_lo, pos_hi, lse_lo, lse_hi, delta_lo, delta_hi };
    let mut acc = zero_accs(comptime!(head_dim / 8));
    if pipelined {
        // Two stages of K/V, as in the forward ([`super::pipeline`]).
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
            let row0 = stage * block_n;
            dq_key_tile::<F, N>(
                &qs, &dos, plane_row0, &ks, &vs, row0, &keys, &stats, &mut acc, window, dims.scale, head_dim, block_n,
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
                dq_key_tile::<F, N>(
                    &qs, &dos, plane_row0, &ks, &vs, 0usize, &keys, &stats, &mut acc, window, dims.scale, head_dim,
                    block_n,
                );
                sync_cube();
            }
            j0 += block_n;
        }
    }
    write_rows::<F>(&acc, dq, out_lo, valid_lo, out_hi, valid_hi, dims.scale, head_dim);
}

/// The plane's keys in `dkdv`: the lane's two key positions (rows `g`, `g + 8` of the plane's
/// products) and the plane's key positions `plane_k0..plane_k1`.
#[derive(CubeType)]
struct KeySpan {
    kpos_lo: usize,
    kpos_hi: usize,
    plane_k0: usize,
    plane_k1: usize,
}

/// One step of `dkdv`'s query loop: `rows` rows from index `start` of the sequence's order, of
/// query head `head` of the group, under `window`.
#[derive(CubeType)]
struct Step {
    head: usize,
    start: usize,
    rows: usize,
    window: usize,
}

/// Steps of `q_step` rows that cover `seen`.
#[cube]
fn step_count(seen: &SeenRows, #[comptime] q_step: usize) -> usize {
    let mut n = 0usize;
    if seen.end > seen.first {
        n = (seen.end - seen.first + q_step - 1) / q_step;
    }
    n
}

/// Step `u` of query head `head` of the group: segment 0's steps, then segment 1's.
#[cube]
fn step_of(
    head: usize,
    u: usize,
    steps0: usize,
    seen0: &SeenRows,
    seen1: &SeenRows,
    #[comptime] q_step: usize,
) -> Step {
    let mut start = seen0.first + u * q_step;
    let mut end = seen0.end;
    let mut window = seen0.window;
    if u >= steps0 {
        start = seen1.first + (u - steps0) * q_step;
        end = seen1.end;
        window = seen1.window;
    }
    let mut rows = end - start;
    if rows > q_step {
        rows = q_step;
    }
    Step { head, start, rows, window }
}

/// Step `t` of the pipelined query loop, which runs over every head's steps as one index.
#[cube]
fn step_at(
    t: usize,
    per_head: usize,
    steps0: usize,
    seen0: &SeenRows,
    seen1: &SeenRows,
    #[comptime] q_step: usize,
) -> Step {
    step_of(t / per_head, t % per_head, steps0, seen0, seen1, q_step)
}

/// One query step of `dV += Pᵀ dO`, `dK += dSᵀ Q` for the plane's 16 keys: query rows are rows
/// `row0 .. row0 + q_step` of `qs`/`dos` and of the statistics `pos`/`lse`/`delta`
/// (`rows` of them live). Skipped when no row sees a key of the plane.
#[cube]
#[allow(clippy::too_many_arguments)]
fn dkdv_step<F: Float, N: Size>(
    ks: &Shared<[Vector<F, N>]>,
    vs: &Shared<[Vector<F, N>]>,
    qs: &Shared<[Vector<F, N>]>,
    dos: &Shared<[Vector<F, N>]>,
    pos: &Shared<[u32]>,
    lse: &Shared<[f32]>,
    delta: &Shared<[f32]>,
    row0: usize,
    rows: usize,
    window: usize,
    keys: &KeySpan,
    dk_acc: &mut Sequence<Array<Pair<f32>>>,
    dv_acc: &mut Sequence<Array<Pair<f32>>>,
    scale: f32,
    #[comptime] head_dim: usize,
    #[comptime] q_step: usize,
) {
    let plane = UNIT_POS_Y as usize;
    let p_first = pos[row0] as usize;
    let p_last = pos[row0 + rows - 1] as usize;
    let (plane_k0, plane_k1) = (keys.plane_k0, keys.plane_k1);
    if p_last >= plane_k0 && first_key(p_first, window) < plane_k1 {
        let mut st = products_t::<F, N>(ks, plane * 16, qs, row0, head_dim, q_step, 1usize);
        let mut dpt = products_t::<F, N>(vs, plane * 16, dos, row0, head_dim, q_step, 1usize);
        // Every pair visible: a whole tile of rows, all of the plane's keys held and inside
        // every row's span.
        let whole = rows == q_step
            && plane_k1 == plane_k0 + 16
            && plane_k1 <= p_first + 1
            && (window == 0 || plane_k0 + window > p_last);
        let (kl, kh) = (keys.kpos_lo, keys.kpos_hi);
        if whole {
            transposed_ds(&mut st, &mut dpt, pos, lse, delta, row0, rows, window, kl, kh, scale, q_step, false);
        } else {
            transposed_ds(&mut st, &mut dpt, pos, lse, delta, row0, rows, window, kl, kh, scale, q_step, true);
        }
        accumulate::<F, N>(&st, dos, row0, dv_acc, head_dim, q_step, 1usize);
        accumulate::<F, N>(&dpt, qs, row0, dk_acc, head_dim, q_step, 1usize);
    }
}

/// Like [`super::backward::dkdv_kernel`], on tensor cores; `CubeDim` is `(32, PLANES)`, a cube
/// covers [`DKDV_KEYS`] keys of one KV head, plane `p` keys `16p .. 16p + 16`, `N` = 8, steps of
/// `q_step` query rows.
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
    #[comptime] q_step: usize,
    #[comptime] pipelined: bool,
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

    // Head dim 128, bf16 (64 rows per step): K, V, and per stage Q and dO tiles of 17 KB each.
    let ld = comptime!(row_stride(head_dim));
    let stage_rows = comptime!(if pipelined { 2 * q_step } else { q_step });
    let mut ks = Shared::<[Vector<F, N>]>::new_aligned_slice(DKDV_KEYS * ld, 16usize);
    let mut vs = Shared::<[Vector<F, N>]>::new_aligned_slice(DKDV_KEYS * ld, 16usize);
    let mut qs = Shared::<[Vector<F, N>]>::new_aligned_slice(stage_rows * ld, 16usize);
    let mut dos = Shared::<[Vector<F, N>]>::new_aligned_slice(stage_rows * ld, 16usize);
    let mut pos = Shared::<[u32]>::new_slice(stage_rows);
    let mut lse_s = Shared::<[f32]>::new_aligned_slice(stage_rows, 16usize);
    let mut delta_s = Shared::<[f32]>::new_aligned_slice(stage_rows, 16usize);

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

    let keys = KeySpan { kpos_lo, kpos_hi, plane_k0, plane_k1 };
    let mut dk_acc = zero_accs(comptime!(head_dim / 8));
    let mut dv_acc = zero_accs(comptime!(head_dim / 8));
    // Only the rows that see a key of this cube (per segment; the same for every head of the
    // group), `q_step` at a time.
    let (wa, wb, q_start) = (dims.window_a as usize, dims.window_b as usize, dims.q_start as usize);
    let seen0 = rows_seeing::<I>(order, split, b, q_len, q_start, 0u32, wa, wb, cube_k0, cube_k1);
    let seen1 = rows_seeing::<I>(order, split, b, q_len, q_start, 1u32, wa, wb, cube_k0, cube_k1);
    let steps0 = step_count(&seen0, q_step);
    let per_head = steps0 + step_count(&seen1, q_step);
    let steps = group * per_head;
    if pipelined {
        // Two stages of Q/dO rows and their statistics ([`super::pipeline`]).
        sync_cube();
        let full0 = Barrier::shared(CUBE_DIM, UNIT_POS == 0);
        let full1 = Barrier::shared(CUBE_DIM, UNIT_POS == 0);
        if steps > 0 {
            let st = step_at(0usize, per_head, steps0, &seen0, &seen1, q_step);
            let q_base = (b * dims.q_heads as usize + hk * group + st.head) * q_len;
            issue_query_rows::<F, I, N>(
                q,
                grad,
                lse,
                delta,
                order,
                b * q_len + st.start,
                st.rows,
                dims.q_start,
                q_base,
                &mut qs,
                &mut dos,
                &mut pos,
                &mut lse_s,
                &mut delta_s,
                0usize,
                q_step,
                head_dim,
                threads,
            );
            publish(&full0);
        }
        let mut stage = 0usize;
        let mut phase0 = 0u32;
        let mut phase1 = 0u32;
        for t in 0..steps {
            if t + 1 < steps {
                let st = step_at(t + 1, per_head, steps0, &seen0, &seen1, q_step);
                let q_base = (b * dims.q_heads as usize + hk * group + st.head) * q_len;
                let row0 = (1 - stage) * q_step;
                issue_query_rows::<F, I, N>(
                    q,
                    grad,
                    lse,
                    delta,
                    order,
                    b * q_len + st.start,
                    st.rows,
                    dims.q_start,
                    q_base,
                    &mut qs,
                    &mut dos,
                    &mut pos,
                    &mut lse_s,
                    &mut delta_s,
                    row0,
                    q_step,
                    head_dim,
                    threads,
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
            let st = step_at(t, per_head, steps0, &seen0, &seen1, q_step);
            dkdv_step::<F, N>(
                &ks,
                &vs,
                &qs,
                &dos,
                &pos,
                &lse_s,
                &delta_s,
                stage * q_step,
                st.rows,
                st.window,
                &keys,
                &mut dk_acc,
                &mut dv_acc,
                dims.scale,
                head_dim,
                q_step,
            );
            sync_cube();
            stage = 1 - stage;
        }
    } else {
        // Head by head: no division per step.
        for head in 0..group {
            for u in 0..per_head {
                let st = step_of(head, u, steps0, &seen0, &seen1, q_step);
                let q_base = (b * dims.q_heads as usize + hk * group + st.head) * q_len;
                let order_at = b * q_len + st.start;
                let rows = st.rows;
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
                    q_step,
                );
                load_tile::<F, I, N>(q, order, order_at, 0, rows, q_base, &mut qs, q_step, head_dim, threads, true);
                load_tile::<F, I, N>(grad, order, order_at, 0, rows, q_base, &mut dos, q_step, head_dim, threads, true);
                sync_cube();
                dkdv_step::<F, N>(
                    &ks,
                    &vs,
                    &qs,
                    &dos,
                    &pos,
                    &lse_s,
                    &delta_s,
                    0usize,
                    rows,
                    st.window,
                    &keys,
                    &mut dk_acc,
                    &mut dv_acc,
                    dims.scale,
                    head_dim,
                    q_step,
                );
                sync_cube();
            }
        }
    }
    let valid_lo = key_lo < k_len;
    let valid_hi = key_hi < k_len;
    write_rows::<F>(&dv_acc, dv, kv_base + key_lo, valid_lo, kv_base + key_hi, valid_hi, 1.0, head_dim);
    write_rows::<F>(&dk_acc, dk, kv_base + key_lo, valid_lo, kv_base + key_hi, valid_hi, dims.scale, head_dim);
}
