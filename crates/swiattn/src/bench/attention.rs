//! `swiattn bench attention`: the fused kernels timed over sequence length, head dim and FA
//! ratio, forward and forward+backward, against the ideal mix of their own full and sliding
//! times measured in the same run. Refuses to report when the kernels disagree with the reference
//! on this device. Each configuration's row order (`QueryOrder`, the routed rows sorted into FA
//! and SWA segments) is built before its timing starts, as FlexAttention's block mask is.
//! `crates/swiattn-bench/python/torch_attention.py` times PyTorch SDPA and FlexAttention on the
//! same configurations and joins the two tables.

use std::time::Instant;

use burn::tensor::{DType, Device};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use serde::Serialize;
use swiattn_core::BackendKind;
use swiattn_core::attention::cost::total_keys;
use swiattn_core::attention::{Positions, RouteMask, Span, Visibility, Window};
use swiattn_core::conformance::{self, Case, Matmul};
use swiattn_core::kernel::{
    BackwardTiles, ForwardTiles, QueryOrder, fused_attention, fused_routed_attention, runs_on, set_async_copies,
    set_backward_tiles, set_forward_tiles, set_tensor_cores, supports_head_dim,
};
use swiattn_core::testing::randn;

#[derive(clap::Args)]
pub struct Args {
    /// Sequence lengths.
    #[arg(long, value_delimiter = ',', default_value = "4096,8192,16384,32768")]
    lens: Vec<usize>,
    /// Head dims.
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    head_dims: Vec<usize>,
    /// FA ratios of the routed runs (fraction of queries routed to full attention).
    #[arg(long, value_delimiter = ',', default_value = "0,0.125,0.25,0.5,1")]
    ratios: Vec<f64>,
    #[arg(long, default_value_t = 1024)]
    window: usize,
    #[arg(long, default_value_t = 16)]
    heads: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Input dtype: bf16, f16 or f32.
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Timed repetitions per measurement (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Also time forward+backward.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    backward: bool,
    /// Also time the forward of the portable kernel (no tensor cores) for full and sliding
    /// attention, next to the tensor-core forward.
    #[arg(long)]
    portable: bool,
    /// Also time full and sliding attention with the tensor-core kernels' tiles loaded through
    /// registers instead of the `cp.async` pipeline (where the device has it), forward and
    /// forward+backward, next to the default.
    #[arg(long)]
    sync_loads: bool,
    /// Also time decode steps (one new token per sequence) against a cache of this many tokens
    /// (0: skip), for routes with the FA ratios 1, 0.25 and 0 over `--decode-batch` sequences.
    #[arg(long, default_value_t = 32768)]
    decode_len: usize,
    #[arg(long, default_value_t = 8)]
    decode_batch: usize,
    /// Write the rows as JSON (for `torch_attention.py --ours`).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The tensor-core forward's tile shape for every head dim, as `M×K`: M 16-row m-tiles per
    /// plane (1 or 2) and K keys per tile (16, 32 or 64), e.g. `1x64`. Default: per head dim.
    #[arg(long)]
    forward_tiles: Option<ForwardTiles>,
    /// The tensor-core backward's tile shapes for every head dim, as `K×Q`: K keys per tile of
    /// the dQ kernel (32, 64 or 128) and Q query rows per step of the dK/dV kernel (16, 32 or
    /// 64), e.g. `128x64`. Default: per head dim.
    #[arg(long)]
    backward_tiles: Option<BackwardTiles>,
}

#[derive(Serialize)]
struct Row {
    len: usize,
    head_dim: usize,
    /// `"full"`, `"sliding"`, `"routed"`, `"full-portable"` / `"sliding-portable"` (the forward
    /// without tensor cores) or `"full-sync"` / `"sliding-sync"` (no `cp.async` pipeline).
    kind: &'static str,
    fa_ratio: f64,
    /// `"fwd"` or `"fwd+bwd"`.
    pass: &'static str,
    ms: f64,
    /// Window-aware: FLOPs of the visible (query, key) pairs only; backward counted as 2.5×
    /// the forward (FlashAttention's convention).
    tflops: f64,
    /// Routed time over `r · T_full + (1 − r) · T_sliding` of this run; 1 for full and sliding.
    /// For decode rows: the all-FA decode time over this one (the speed-up).
    vs_ideal: f64,
}

/// `len · ratio` tokens of each sequence, chosen at random, routed to full attention.
fn route_with_ratio(batch: usize, len: usize, ratio: f64, seed: u64) -> RouteMask {
    let n_fa = (len as f64 * ratio).round() as usize;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fa = Vec::with_capacity(batch * len);
    for _ in 0..batch {
        let mut row: Vec<bool> = (0..len).map(|t| t < n_fa).collect();
        row.shuffle(&mut rng);
        fa.extend(row);
    }
    RouteMask { batch, len, fa }
}

/// Median seconds of `reps` runs of `f` after one warm-up, synchronizing the device around each.
fn time(device: &Device, reps: usize, f: impl Fn()) -> anyhow::Result<f64> {
    let sync = || device.sync().map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"));
    f();
    sync()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let started = Instant::now();
        f();
        sync()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    anyhow::ensure!(runs_on(device), "the fused kernels run on CubeCL backends: use --backend cuda or wgpu");
    let dtype = crate::model_config::parse_dtype(&args.dtype)?;
    let window = Window::new(args.window)?;
    for &d in &args.head_dims {
        anyhow::ensure!(supports_head_dim(d), "head dim {d}: the fused kernels take multiples of 16 up to 256");
    }
    if let Some(t) = args.backward_tiles {
        for &d in &args.head_dims {
            anyhow::ensure!(
                t.fits(d),
                "--backward-tiles {}x{}: {}-key dQ tiles do not fit in shared memory at head dim {d} (keys × head \
                 dim at most 16384)",
                t.dq_keys,
                t.dkdv_queries,
                t.dq_keys
            );
        }
    }
    set_forward_tiles(args.forward_tiles);
    set_backward_tiles(args.backward_tiles);
    check(&args, backend, dtype, device)?;

    let (b, h) = (args.batch, args.heads);
    let mut rows = Vec::new();
    let tiles = args.forward_tiles.map_or("per head dim".to_string(), |t| format!("{}x{}", t.m_tiles, t.keys));
    let bwd_tiles =
        args.backward_tiles.map_or("per head dim".to_string(), |t| format!("{}x{}", t.dq_keys, t.dkdv_queries));
    println!(
        "fused attention on {backend}: batch {b}, heads {h}, window {}, {:?}, forward tiles {tiles}, backward tiles \
         {bwd_tiles}, median of {} (ms)",
        window.size(),
        dtype,
        args.reps
    );
    println!(
        "{:>6} {:>4} {:>8} {:>6} {:>8} {:>10} {:>8} {:>9}",
        "N", "d", "kind", "r", "pass", "ms", "TFLOP/s", "vs ideal"
    );
    for &n in &args.lens {
        for &d in &args.head_dims {
            let scale = (d as f64).powf(-0.5);
            let pos = Positions::default();
            let full_pairs = total_keys(n, |_| Span::Full) as f64;
            let swa_pairs = total_keys(n, |_| Span::Sliding(window)) as f64;
            let mut runs: Vec<(&'static str, f64, Option<RouteMask>)> =
                vec![("full", 1.0, None), ("sliding", 0.0, None)];
            if args.portable {
                runs.extend([("full-portable", 1.0, None), ("sliding-portable", 0.0, None)]);
            }
            if args.sync_loads {
                runs.extend([("full-sync", 1.0, None), ("sliding-sync", 0.0, None)]);
            }
            for &r in &args.ratios {
                runs.push(("routed", r, Some(route_with_ratio(b, n, r, args.seed))));
            }
            let passes: &[&'static str] = if args.backward { &["fwd", "fwd+bwd"] } else { &["fwd"] };
            for &pass in passes {
                let grad = pass == "fwd+bwd";
                let dev = if grad { device.clone().autodiff() } else { device.clone() };
                let input = |dims: [usize; 4], seed: u64| {
                    let x = randn(dims, seed, &dev).cast(dtype);
                    if grad { x.require_grad() } else { x }
                };
                let (q, k, v) = (input([b, h, n, d], 1), input([b, h, n, d], 2), input([b, h, n, d], 3));
                let mut base = [0.0f64; 2];
                for (kind, r, route) in &runs {
                    let portable = kind.ends_with("-portable");
                    if portable && grad {
                        continue;
                    }
                    set_tensor_cores(!portable);
                    set_async_copies(!kind.ends_with("-sync"));
                    let order = match (kind, route) {
                        (_, Some(route)) => QueryOrder::routed(route, window, &dev),
                        (kind, None) if kind.starts_with("full") => QueryOrder::uniform(Span::Full, b, n, &dev),
                        _ => QueryOrder::uniform(Span::Sliding(window), b, n, &dev),
                    };
                    let attend = || fused_attention(q.clone(), k.clone(), v.clone(), &order, pos, scale);
                    let secs = time(device, args.reps, || {
                        let out = attend();
                        if grad {
                            let _ = out.sum().backward();
                        }
                    })?;
                    set_tensor_cores(true);
                    set_async_copies(true);
                    let pairs = r * full_pairs + (1.0 - r) * swa_pairs;
                    let flops = 4.0 * d as f64 * pairs * (b * h) as f64 * if grad { 3.5 } else { 1.0 };
                    match *kind {
                        "full" => base[0] = secs,
                        "sliding" => base[1] = secs,
                        _ => {}
                    }
                    let vs_ideal = if *kind == "routed" { secs / (r * base[0] + (1.0 - r) * base[1]) } else { 1.0 };
                    let row = Row {
                        len: n,
                        head_dim: d,
                        kind,
                        fa_ratio: *r,
                        pass,
                        ms: secs * 1e3,
                        tflops: flops / secs / 1e12,
                        vs_ideal,
                    };
                    println!(
                        "{:>6} {:>4} {:>8} {:>6.3} {:>8} {:>10.3} {:>8.1} {:>9.3}",
                        row.len, row.head_dim, row.kind, row.fa_ratio, row.pass, row.ms, row.tflops, row.vs_ideal
                    );
                    rows.push(row);
                }
            }
        }
    }
    if args.decode_len > 0 {
        rows.extend(decode(&args, window, dtype, device)?);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
        println!("rows written to {}", path.display());
    }
    Ok(())
}

/// Decode steps: one query per sequence at position `decode_len - 1` against a full cache of
/// `decode_len` keys; a sequence routed to SWA sees only the last `window` of them.
fn decode(args: &Args, window: Window, dtype: DType, device: &Device) -> anyhow::Result<Vec<Row>> {
    let (b, h, n) = (args.decode_batch, args.heads, args.decode_len);
    println!("\ndecode: {b} sequences × {h} heads, one token after {n} cached, window {}", window.size());
    println!("{:>6} {:>4} {:>6} {:>10} {:>12}", "N", "d", "r", "ms", "r=1 / this");
    let mut rows = Vec::new();
    for &d in &args.head_dims {
        let scale = (d as f64).powf(-0.5);
        let q = randn([b, h, 1, d], 1, device).cast(dtype);
        let (k, v) = (randn([b, h, n, d], 2, device).cast(dtype), randn([b, h, n, d], 3, device).cast(dtype));
        let pos = Positions::new(n - 1, 0);
        let mut full_ms = 0.0;
        for r in [1.0, 0.25, 0.0] {
            let route = route_with_ratio(1, b, r, args.seed).fa;
            let order = QueryOrder::routed(&RouteMask { batch: b, len: 1, fa: route }, window, device);
            let secs = time(device, args.reps.max(10), || {
                let _ = fused_attention(q.clone(), k.clone(), v.clone(), &order, pos, scale);
            })?;
            let ms = secs * 1e3;
            if r == 1.0 {
                full_ms = ms;
            }
            println!("{n:>6} {d:>4} {r:>6.2} {ms:>10.3} {:>12.2}", full_ms / ms);
            let pairs = b as f64 * h as f64 * (r * n as f64 + (1.0 - r) * window.size().min(n) as f64);
            let tflops = 4.0 * d as f64 * pairs / secs / 1e12;
            rows.push(Row {
                len: n,
                head_dim: d,
                kind: "decode",
                fa_ratio: r,
                pass: "fwd",
                ms,
                tflops,
                vs_ideal: full_ms / ms,
            });
        }
    }
    Ok(rows)
}

/// The kernels on this device against the reference, forward and gradients, in the bench's
/// dtype, head dims and window regime (a window of 256 inside 1000 tokens, sparse and dense
/// routes): the timings are not printed if any check fails.
fn check(args: &Args, backend: BackendKind, dtype: DType, device: &Device) -> anyhow::Result<()> {
    let matmul = Matmul::of(backend);
    let window = Window::new(256)?;
    let mut checks = Vec::new();
    for &d in &args.head_dims {
        let case =
            Case { batch: 1, q_heads: 4, kv_heads: 4, q_len: 1000, head_dim: d, q_start: 0, window, dtype, matmul };
        for r in [0.0, 0.25, 1.0] {
            let route = route_with_ratio(1, 1000, r, args.seed + 1);
            let vis = Visibility::routed(&route.fa, 1, window, Positions::default(), 1000, 1000);
            let fast =
                |q, k, v| fused_routed_attention(q, k, v, &route, window, Positions::default(), (d as f64).powf(-0.5));
            checks.extend(conformance::compare(&format!("bench check r={r}"), &case, 7, &vis, &fast, device));
        }
    }
    let worst = checks.iter().map(|c| c.diff).fold(0.0f32, f32::max);
    let failed: Vec<String> =
        checks.iter().filter(|c| !c.passed()).map(|c| format!("{}: {:.2e} > {:.0e}", c.name, c.diff, c.tol)).collect();
    anyhow::ensure!(
        failed.is_empty(),
        "the kernels disagree with the reference; not reporting timings:\n{}",
        failed.join("\n")
    );
    println!("correctness: {} checks against the reference passed (max |diff| {worst:.2e})", checks.len());
    Ok(())
}
