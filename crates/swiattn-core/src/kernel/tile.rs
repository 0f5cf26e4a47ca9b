//! What every fused kernel shares: the tile shape, the window predicate in `#[cube]` form, which
//! keys a query tile needs, how a cube finds its query rows in a [`super::QueryOrder`], and the
//! portable kernels' tile loads.

use burn_cubecl::cubecl;
use cubecl::prelude::*;

/// Query rows per tile.
pub(crate) const BLOCK_Q: usize = 16;
/// Keys per tile; also the number of lanes that share one query row, so the head dim must be a
/// multiple of it ([`super::supports_head_dim`]).
pub(crate) const BLOCK_K: usize = 16;
/// Threads per cube: one per (row, lane) of a tile.
pub(crate) const THREADS: usize = BLOCK_Q * BLOCK_K;
/// A hidden score. Finite, because WGSL cannot spell `-inf`; real scores never come near it.
pub(crate) const HIDDEN: f32 = -1.0e30;
/// Scores at or below this are hidden ones.
pub(crate) const HIDDEN_BELOW: f32 = -1.0e29;

/// The runtime scalars of a launch: sizes, the positions of query row 0 and key 0, the windows of
/// the two row segments (0 = full attention) and the softmax scale.
#[derive(CubeLaunch, CubeType)]
pub(crate) struct Problem {
    pub q_heads: u32,
    pub kv_heads: u32,
    pub q_len: u32,
    pub k_len: u32,
    pub q_start: u32,
    pub k_start: u32,
    pub window_a: u32,
    pub window_b: u32,
    pub scale: f32,
}

/// The window predicate of [`crate::attention::visible`] in kernel form: query position `q` sees
/// key position `k` iff `q - w < k <= q`; `window == 0` means full attention (no lower bound).
/// Written without a subtraction so that it cannot wrap.
#[cube]
pub(crate) fn sees(q: usize, k: usize, window: usize) -> bool {
    k <= q && (window == 0 || k + window > q)
}

/// The first key position a query at position `q` sees (0 for full attention).
#[cube]
pub(crate) fn first_key(q: usize, window: usize) -> usize {
    let mut first = 0usize;
    if window != 0 && q + 1 > window {
        first = q + 1 - window;
    }
    first
}

/// Whether any of the tile's `rows` (positions in `pos`, ascending) sees a key in positions
/// `k0..k1`: the first row at or after `k0` has the smallest first key among the rows that could,
/// so a binary search for it decides (a row's keys are `first_key(p)..=p`).
#[cube]
pub(crate) fn tile_needed(pos: &Shared<[u32]>, rows: usize, window: usize, k0: usize, k1: usize) -> bool {
    let mut lo = 0usize;
    let mut hi = rows;
    while lo < hi {
        let mid = (lo + hi) / 2;
        if (pos[mid] as usize) < k0 {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut needed = false;
    if lo < rows {
        needed = first_key(pos[lo] as usize, window) < k1;
    }
    needed
}

/// Key indices `lo..end`: every key that some row of a tile sees, from the first key of its first
/// row (position `first_pos`) to its last row (`last_pos`), clipped to the `k_len` keys held from
/// position `k_start` on.
#[derive(CubeType)]
pub(crate) struct KeyRange {
    pub lo: usize,
    pub end: usize,
}

/// The first key index of a tile's loop, `lo`, raised to `floor[b]` in a ragged launch (the
/// sequence's first held key column): a key tile then never starts left of it, so every key the
/// loop loads is held and the window predicate alone decides the rest.
#[cube]
pub(crate) fn clip_to_floor<I: Int>(lo: usize, floor: &Tensor<I>, b: usize, #[comptime] ragged: bool) -> usize {
    let mut lo = lo;
    if ragged {
        let first = u32::cast_from(floor[b]) as usize;
        if first > lo {
            lo = first;
        }
    }
    lo
}

#[cube]
pub(crate) fn key_range(first_pos: usize, last_pos: usize, window: usize, k_start: usize, k_len: usize) -> KeyRange {
    let mut lo = 0usize;
    let lo_pos = first_key(first_pos, window);
    if lo_pos > k_start {
        lo = lo_pos - k_start;
    }
    let mut end = 0usize;
    if last_pos + 1 > k_start {
        end = last_pos + 1 - k_start;
        if end > k_len {
            end = k_len;
        }
    }
    KeyRange { lo, end }
}

/// A plane's rows of a query tile: how many are valid, and the positions of the first and last
/// valid one (both 0 when none is).
#[derive(CubeType)]
pub(crate) struct PlaneRows {
    pub count: usize,
    pub first_pos: usize,
    pub last_pos: usize,
}

/// Rows `row0..row0 + plane` of a tile whose `rows` valid rows have positions `pos` (ascending).
#[cube]
pub(crate) fn plane_rows(pos: &Shared<[u32]>, rows: usize, row0: usize, #[comptime] plane: usize) -> PlaneRows {
    let mut count = 0usize;
    let mut first_pos = 0usize;
    let mut last_pos = 0usize;
    if rows > row0 {
        count = rows - row0;
        if count > plane {
            count = plane;
        }
        first_pos = pos[row0] as usize;
        last_pos = pos[row0 + count - 1] as usize;
    }
    PlaneRows { count, first_pos, last_pos }
}

/// What a plane's rows see of the key tile at index `j0` (positions `kp0..kp1`, clipped at the
/// key loop's end `j_end`): `any` key (else the plane skips the tile) and `all` keys from every
/// row (else the scores need the window mask).
#[derive(CubeType)]
pub(crate) struct PlaneKeys {
    pub kp0: usize,
    pub kp1: usize,
    pub any: bool,
    pub all: bool,
}

#[cube]
pub(crate) fn plane_keys(
    rows: &PlaneRows,
    j0: usize,
    j_end: usize,
    k_start: usize,
    window: usize,
    #[comptime] block: usize,
) -> PlaneKeys {
    let kp0 = k_start + j0;
    let mut kp1 = kp0 + block;
    if kp1 > k_start + j_end {
        kp1 = k_start + j_end;
    }
    let any = rows.count > 0 && rows.last_pos >= kp0 && first_key(rows.first_pos, window) < kp1;
    let all = kp1 == kp0 + block && kp1 <= rows.first_pos + 1 && (window == 0 || kp0 + window > rows.last_pos);
    PlaneKeys { kp0, kp1, any, all }
}

/// The query rows of one cube: `count` rows `order[b, start..start + count]`, under `window`.
#[derive(CubeType)]
pub(crate) struct RowTile {
    /// Index into `order` of the tile's first row.
    pub start: usize,
    /// Rows in this tile (0 when the cube has none).
    pub count: usize,
    /// The window of the tile's segment (0 = full attention).
    pub window: usize,
}

/// Tile `tile` of sequence `b`'s query rows: the tiles of segment A (`order[b, ..split[b]]`, under
/// `window_a`) come first, then those of segment B (`order[b, split[b]..]`, under `window_b`).
/// A launch has `ceil(q_len / BLOCK_Q) + 1` tiles per sequence, so cubes past the last tile get
/// `count == 0`. Launches put tiles in the slowest grid dimension (`CUBE_POS_Z`), heads and
/// sequences in the others, so all heads' longest tiles are scheduled first.
#[cube]
pub(crate) fn row_tile<I: Int>(
    split: &Tensor<I>,
    b: usize,
    tile: usize,
    q_len: usize,
    window_a: usize,
    window_b: usize,
) -> RowTile {
    row_tile_of::<I>(split, b, tile, q_len, window_a, window_b, BLOCK_Q)
}

/// [`row_tile`] with `block_q` rows per tile.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_tile_of<I: Int>(
    split: &Tensor<I>,
    b: usize,
    tile: usize,
    q_len: usize,
    window_a: usize,
    window_b: usize,
    #[comptime] block_q: usize,
) -> RowTile {
    let split_b = u32::cast_from(split[b]) as usize;
    let tiles_a = (split_b + block_q - 1) / block_q;
    let mut seg_start = 0usize;
    let mut seg_end = split_b;
    let mut window = window_a;
    let mut local = tile;
    if tile >= tiles_a {
        seg_start = split_b;
        seg_end = q_len;
        window = window_b;
        local = tile - tiles_a;
    }
    // Within a segment the last tile (the latest positions, the most keys) comes first, so that
    // the longest cubes start first and the short ones fill in behind them.
    let n_seg = (seg_end - seg_start + block_q - 1) / block_q;
    let mut start = seg_start;
    let mut count = 0usize;
    if local < n_seg {
        start = seg_start + (n_seg - 1 - local) * block_q;
        count = seg_end - start;
        if count > block_q {
            count = block_q;
        }
    }
    RowTile { start, count, window }
}

/// The query rows of one segment of sequence `b` (segment 0: `order[b, ..split[b]]` under
/// `window_a`; 1: the rest under `window_b`) that see a key in positions `k0..k1`: indices
/// `first..end` into the sequence's `order`, and the segment's window.
#[derive(CubeType)]
pub(crate) struct SeenRows {
    pub first: usize,
    pub end: usize,
    pub window: usize,
}

/// [`SeenRows`] by two binary searches: rows are sorted by position within a segment, a row at
/// `p` sees the range iff `p >= k0` and (sliding) `first_key(p) < k1`, i.e. `p < k1 - 1 + w`.
/// The dK/dV kernels visit only these rows instead of testing every query tile.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows_seeing<I: Int>(
    order: &Tensor<I>,
    split: &Tensor<I>,
    b: usize,
    q_len: usize,
    q_start: usize,
    segment: u32,
    window_a: usize,
    window_b: usize,
    k0: usize,
    k1: usize,
) -> SeenRows {
    let split_b = u32::cast_from(split[b]) as usize;
    let mut lo = 0usize;
    let mut hi = split_b;
    let mut window = window_a;
    if segment == 1 {
        lo = split_b;
        hi = q_len;
        window = window_b;
    }
    let base = b * q_len;
    let first = rows_from::<I>(order, base, lo, hi, q_start, k0);
    let mut end = hi;
    if window != 0 {
        end = rows_from::<I>(order, base, first, hi, q_start, k1 - 1 + window);
    }
    SeenRows { first, end, window }
}

/// The first index `r` in `lo..hi` whose row, `order[base + r]` at position `q_start + row`, is at
/// or after position `x` (rows ascending), or `hi`.
#[cube]
fn rows_from<I: Int>(order: &Tensor<I>, base: usize, lo: usize, hi: usize, q_start: usize, x: usize) -> usize {
    let mut a = lo;
    let mut z = hi;
    while a < z {
        let mid = (a + z) / 2;
        if q_start + (u32::cast_from(order[base + mid]) as usize) < x {
            a = mid + 1;
        } else {
            z = mid;
        }
    }
    a
}

/// The positions of a tile's query rows `order[order_at..]` (`rows` of them) into `pos`, 0 past
/// `rows`; the first `block` units each write one.
#[cube]
pub(crate) fn load_positions<I: Int>(
    order: &Tensor<I>,
    order_at: usize,
    rows: usize,
    q_start: u32,
    pos: &mut Shared<[u32]>,
    #[comptime] block: usize,
) {
    let t = UNIT_POS as usize;
    if t < block {
        let mut p = 0u32;
        if t < rows {
            p = q_start + u32::cast_from(order[order_at + t]);
        }
        pos[t] = p;
    }
}

/// The positions, log-sum-exps and deltas of a backward step's query rows `order[order_at..]`
/// (`rows` of them, of the head whose rows start at `q_base`) into shared memory, zeros past
/// `rows`; the first `block` units each write one.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_row_stats<I: Int>(
    order: &Tensor<I>,
    order_at: usize,
    rows: usize,
    q_start: u32,
    q_base: usize,
    lse: &Tensor<f32>,
    delta: &Tensor<f32>,
    pos: &mut Shared<[u32]>,
    lse_s: &mut Shared<[f32]>,
    delta_s: &mut Shared<[f32]>,
    #[comptime] block: usize,
) {
    let t = UNIT_POS as usize;
    if t < block {
        let mut p = 0u32;
        let mut l = 0.0f32;
        let mut dl = 0.0f32;
        if t < rows {
            let row = u32::cast_from(order[order_at + t]) as usize;
            p = q_start + row as u32;
            l = lse[q_base + row];
            dl = delta[q_base + row];
        }
        pos[t] = p;
        lse_s[t] = l;
        delta_s[t] = dl;
    }
}

/// Portable kernels: load the `BLOCK_Q` rows of `x` (`[.., q_len, head_dim]` at `base`) listed in
/// `order` into `dst` as fp32 (row stride `head_dim + 1`), zeros past `rows`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_rows<F: Float, I: Int>(
    x: &Tensor<F>,
    order: &Tensor<I>,
    order_at: usize,
    rows: usize,
    base: usize,
    dst: &mut Shared<[f32]>,
    #[comptime] head_dim: usize,
) {
    let ld = head_dim + 1;
    let mut i = UNIT_POS as usize;
    while i < BLOCK_Q * head_dim {
        let rr = i / head_dim;
        let dd = i % head_dim;
        let mut val = 0.0f32;
        if rr < rows {
            let row = u32::cast_from(order[order_at + rr]) as usize;
            val = f32::cast_from(x[(base + row) * head_dim + dd]);
        }
        dst[rr * ld + dd] = val;
        i += BLOCK_Q * BLOCK_K;
    }
}

/// Portable kernels: load keys `j0..j0 + BLOCK_K` of `x` (`[.., k_len, head_dim]` at `base`) into
/// `dst` as fp32 (row stride `head_dim + 1`), zeros past `k_len`.
#[cube]
pub(crate) fn load_keys<F: Float>(
    x: &Tensor<F>,
    j0: usize,
    k_len: usize,
    base: usize,
    dst: &mut Shared<[f32]>,
    #[comptime] head_dim: usize,
) {
    let ld = head_dim + 1;
    let mut i = UNIT_POS as usize;
    while i < BLOCK_K * head_dim {
        let jj = i / head_dim;
        let dd = i % head_dim;
        let mut val = 0.0f32;
        if j0 + jj < k_len {
            val = f32::cast_from(x[(base + j0 + jj) * head_dim + dd]);
        }
        dst[jj * ld + dd] = val;
        i += BLOCK_Q * BLOCK_K;
    }
}
