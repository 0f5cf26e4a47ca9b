//! Conformance checks: every fast attention path against the reference (forward and input
//! gradients), and the three-path golden check of whole models (masked forward == chunked
//! prefill == token-by-token decode), on any backend. The test suite asserts them on the CPU and
//! on wgpu; `swiattn selftest --backend …` runs them on whatever device a user has, e.g. CUDA.
//!
//! Inputs are fresh seeded random, ragged sizes: lengths 1, 63, 111, 257; windows 1, w-1, w,
//! w+1 and >= T around w = 32; GQA ratios 1, 3 and 4; chunks after cached tokens.
//! Tolerances (fp32): outputs 2e-5, gradients 1e-4, model logits 1e-4 (absolute, inputs ~ N(0, 1));
//! scaled to the roundoff of fp16/bf16 inputs, and of TF32 where a backend multiplies fp32
//! matrices in TF32 (see [`Matmul`]).

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::BackendKind;
use crate::attention::{
    Positions, RouteMask, Span, Visibility, Window, attention_reference, default_block, dense_attention,
    head_mixed_attention, routed_attention, sliding_attention,
};
use crate::model::{LayerAttention, ModelConfig, Routes, Transformer};
use crate::testing::{max_abs_diff, randn, random_bools, randomize};

/// How a backend multiplies fp32 matrices. burn 0.22's CUDA backend (cubek-matmul) runs fp32
/// matmuls on TF32 tensor cores where the GPU has them — inputs rounded to a 10-bit mantissa, like
/// PyTorch with `allow_tf32` — so fp32 results there agree with an exact reference only to TF32
/// precision (measured on an H100: up to 6e-4 on these checks, vs 1e-5 on the CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matmul {
    Fp32,
    Tf32,
}

impl Matmul {
    /// The fp32 matmul precision of a backend.
    pub fn of(backend: BackendKind) -> Self {
        match backend {
            BackendKind::Cuda => Matmul::Tf32,
            BackendKind::Cpu | BackendKind::Wgpu => Matmul::Fp32,
        }
    }

    /// Unit roundoff of the operands of a matmul on `dtype` inputs, `None` for exact fp32.
    fn roundoff(self, dtype: DType) -> Option<f32> {
        match (dtype, self) {
            (DType::F16, _) | (DType::F32, Matmul::Tf32) => Some(2f32.powi(-11)),
            (DType::BF16, _) => Some(2f32.powi(-8)),
            _ => None,
        }
    }
}

/// Absolute tolerances `(outputs, gradients)` of a fast path against the fp32 reference: 2e-5 and
/// 1e-4 in exact fp32; otherwise 8 and 64 units of the operands' roundoff (fp16 and TF32 2^-11,
/// bf16 2^-8), the reference seeing the same rounded inputs.
pub fn tolerances(dtype: DType, matmul: Matmul) -> (f32, f32) {
    matmul.roundoff(dtype).map_or((2e-5, 1e-4), |unit| (8.0 * unit, 64.0 * unit))
}

/// Absolute tolerance on fp32 logits of the golden models: 1e-4, or 8 units of TF32 roundoff.
pub fn logit_tolerance(matmul: Matmul) -> f32 {
    matmul.roundoff(DType::F32).map_or(1e-4, |unit| 8.0 * unit)
}

/// One comparison: what was compared and how far apart the two were.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub diff: f32,
    pub tol: f32,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.diff <= self.tol
    }
}

/// Panic with every failed check (for tests).
pub fn assert_passed(checks: &[Check]) {
    assert!(!checks.is_empty(), "no checks ran");
    let failed: Vec<String> =
        checks.iter().filter(|c| !c.passed()).map(|c| format!("{}: {:.3e} > {:.0e}", c.name, c.diff, c.tol)).collect();
    assert!(failed.is_empty(), "{} of {} checks failed:\n{}", failed.len(), checks.len(), failed.join("\n"));
}

/// How many shapes to sweep: all of them, or a subset for slow backends (software Vulkan JITs
/// every new shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    Full,
    Quick,
}

/// Shapes of one attention comparison.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_len: usize,
    pub head_dim: usize,
    /// Cached tokens before the queries; keys cover positions `0..q_start + q_len`.
    pub q_start: usize,
    pub window: Window,
    /// Dtype of q, k and v (the reference computes in fp32 from the same rounded values).
    pub dtype: DType,
    /// The backend's fp32 matmul precision.
    pub matmul: Matmul,
}

impl Case {
    fn k_len(&self) -> usize {
        self.q_start + self.q_len
    }
    fn pos(&self) -> Positions {
        Positions::new(self.q_start, 0)
    }
    fn scale(&self) -> f64 {
        (self.head_dim as f64).powf(-0.5)
    }
    fn label(&self) -> String {
        format!(
            "T={} w={} heads={}/{} start={} {:?}",
            self.q_len,
            self.window.size(),
            self.q_heads,
            self.kv_heads,
            self.q_start,
            self.dtype
        )
    }
}

/// The swept shapes, fp32, on a backend with this matmul precision.
pub fn cases(sweep: Sweep, matmul: Matmul) -> Vec<Case> {
    let quick = sweep == Sweep::Quick;
    let lengths: &[usize] = if quick { &[1, 63, 257] } else { &[1, 63, 111, 257] };
    let heads: &[(usize, usize)] = if quick { &[(6, 2)] } else { &[(2, 2), (6, 2), (4, 1)] };
    let mut out = Vec::new();
    for &q_len in lengths {
        for &(q_heads, kv_heads) in heads {
            let mut windows = if quick { vec![1, 32, q_len + 9] } else { vec![1, 31, 32, 33, q_len.max(1), q_len + 9] };
            windows.dedup();
            for w in windows {
                let window = Window::new(w).expect("w >= 1");
                out.push(Case {
                    batch: 2,
                    q_heads,
                    kv_heads,
                    q_len,
                    head_dim: 8,
                    q_start: 0,
                    window,
                    dtype: DType::F32,
                    matmul,
                });
            }
        }
    }
    // New queries after cached tokens (decode is q_len = 1).
    for (q_start, q_len) in [(40, 1), (70, 17)] {
        let window = Window::new(32).expect("w >= 1");
        let dtype = DType::F32;
        out.push(Case { batch: 2, q_heads: 6, kv_heads: 2, q_len, head_dim: 8, q_start, window, dtype, matmul });
    }
    out
}

type Attention<'a> = dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4> + 'a;

/// Compare `fast` with the reference under `visibility`: the outputs, and the gradients of
/// `sum(out · r)` for a random `r` with respect to q, k and v.
pub fn compare(
    name: &str,
    case: &Case,
    seed: u64,
    visibility: &Visibility,
    fast: &Attention,
    device: &Device,
) -> Vec<Check> {
    let device = device.clone().autodiff();
    let Case { batch: b, q_heads: hq, kv_heads: hkv, q_len: tq, head_dim: d, .. } = *case;
    let tk = case.k_len();
    let leaf = |dims: [usize; 4], s: u64| randn(dims, seed * 31 + s, &device).cast(case.dtype).require_grad();
    let run = |f: &Attention| {
        let (q, k, v) = (leaf([b, hq, tq, d], 1), leaf([b, hkv, tk, d], 2), leaf([b, hkv, tk, d], 3));
        let out = f(q.clone(), k.clone(), v.clone());
        let r = randn([b, hq, tq, d], seed * 31 + 4, &device).cast(case.dtype);
        let grads = (out.clone() * r).sum().backward();
        let g = |x: &Tensor<4>| x.grad(&grads).expect("a gradient for every input");
        let f32 = |x: Tensor<4>| x.cast(DType::F32);
        (f32(out.inner()), [f32(g(&q)), f32(g(&k)), f32(g(&v))])
    };
    let scale = case.scale();
    let (want, want_grads) = run(&|q, k, v| attention_reference(q, k, v, visibility, scale));
    let (got, got_grads) = run(fast);
    let label = format!("{name} {}", case.label());
    let (out_tol, grad_tol) = tolerances(case.dtype, case.matmul);
    let mut checks = vec![Check { name: format!("{label} out"), diff: max_abs_diff(&got, &want), tol: out_tol }];
    for (grad, (g, w)) in ["dq", "dk", "dv"].iter().zip(got_grads.iter().zip(&want_grads)) {
        checks.push(Check { name: format!("{label} {grad}"), diff: max_abs_diff(g, w), tol: grad_tol });
    }
    checks
}

/// Blocked sliding-window attention vs the reference (default and odd block sizes).
pub fn sliding(device: &Device, cases: &[Case]) -> Vec<Check> {
    let mut checks = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let w = case.window;
        let vis = Visibility::span(Span::Sliding(w), case.pos(), case.q_len, case.k_len());
        for block in [default_block(w), 7] {
            let fast = |q, k, v| sliding_attention(q, k, v, w, case.pos(), case.scale(), block);
            checks.extend(compare(&format!("sliding block={block}"), case, i as u64, &vis, &fast, device));
        }
    }
    checks
}

/// Dense causal (full) attention vs the reference.
pub fn causal(device: &Device, cases: &[Case]) -> Vec<Check> {
    let mut checks = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let vis = Visibility::span(Span::Full, case.pos(), case.q_len, case.k_len());
        let fast = |q, k, v| dense_attention(q, k, v, Span::Full, case.pos(), case.scale());
        checks.extend(compare("dense", case, 100 + i as u64, &vis, &fast, device));
    }
    checks
}

/// Routed attention vs the reference, for sparse, dense, all-FA and all-SWA routes.
pub fn routed(device: &Device, cases: &[Case]) -> Vec<Check> {
    let mut checks = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (b, t, w) = (case.batch, case.q_len, case.window);
        let routes = [
            ("p=0.3", RouteMask { batch: b, len: t, fa: random_bools(b * t, 0.3, i as u64) }),
            ("p=0.8", RouteMask { batch: b, len: t, fa: random_bools(b * t, 0.8, 7 + i as u64) }),
            ("all-FA", RouteMask::uniform(b, t, true)),
            ("all-SWA", RouteMask::uniform(b, t, false)),
        ];
        for (label, route) in &routes {
            let vis = Visibility::routed(&route.fa, b, w, case.pos(), t, case.k_len());
            for block in [default_block(w), 5] {
                let fast = |q, k, v| routed_attention(q, k, v, route, w, case.pos(), case.scale(), block);
                checks.extend(compare(
                    &format!("routed {label} block={block}"),
                    case,
                    200 + i as u64,
                    &vis,
                    &fast,
                    device,
                ));
            }
        }
    }
    checks
}

/// Shapes for the fused kernels: head dims that are multiples of their 16-wide tiles, windows
/// just below, at and past a tile edge and past the sequence, GQA ratios 1, 4 and 8, and chunks
/// after cached tokens (a decode step is the 1-token chunk; past 1024 cached keys it takes the
/// split-key decode kernel).
#[cfg(feature = "kernels")]
pub fn fused_cases(sweep: Sweep, matmul: Matmul) -> Vec<Case> {
    let quick = sweep == Sweep::Quick;
    let lengths: &[usize] = if quick { &[1, 63, 257] } else { &[1, 63, 111, 257, 1000] };
    let shapes: &[(usize, usize, usize)] =
        if quick { &[(4, 1, 16), (2, 2, 32)] } else { &[(2, 2, 16), (8, 2, 64), (8, 1, 128)] };
    let mut out = Vec::new();
    for &q_len in lengths {
        for &(q_heads, kv_heads, head_dim) in shapes {
            let mut windows = if quick { vec![1, 16, 17, q_len + 9] } else { vec![1, 15, 16, 17, 33, q_len + 9] };
            windows.dedup();
            for w in windows {
                let window = Window::new(w).expect("w >= 1");
                let dtype = DType::F32;
                out.push(Case { batch: 2, q_heads, kv_heads, q_len, head_dim, q_start: 0, window, dtype, matmul });
            }
        }
    }
    // (1500, 1): a decode step long enough for the split-key decode kernel (3 chunks, of which a
    // window of 32 sees only the last).
    for (q_start, q_len) in [(40, 1), (70, 17), (300, 1), (1500, 1)] {
        let window = Window::new(32).expect("w >= 1");
        let dtype = DType::F32;
        out.push(Case { batch: 2, q_heads: 8, kv_heads: 2, q_len, head_dim: 32, q_start, window, dtype, matmul });
    }
    out
}

/// The fused kernels vs the reference, with outputs NaN-poisoned before every launch: full,
/// sliding, and routed attention (sparse, dense, all-FA and all-SWA routes).
#[cfg(feature = "kernels")]
pub fn fused(device: &Device, cases: &[Case]) -> Vec<Check> {
    use crate::kernel::{fused_routed_attention, fused_span_attention, poison_outputs};
    poison_outputs(true);
    let mut checks = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (b, t, w, pos, scale) = (case.batch, case.q_len, case.window, case.pos(), case.scale());
        let seed = 500 + i as u64;
        for span in [Span::Full, Span::Sliding(w)] {
            let vis = Visibility::span(span, pos, t, case.k_len());
            let fast = |q, k, v| fused_span_attention(q, k, v, span, pos, scale);
            let name = if span == Span::Full { "fused full" } else { "fused sliding" };
            checks.extend(compare(name, case, seed, &vis, &fast, device));
        }
        let routes = [
            ("p=0.3", RouteMask { batch: b, len: t, fa: random_bools(b * t, 0.3, seed) }),
            ("p=0.8", RouteMask { batch: b, len: t, fa: random_bools(b * t, 0.8, seed + 7) }),
            ("all-FA", RouteMask::uniform(b, t, true)),
            ("all-SWA", RouteMask::uniform(b, t, false)),
        ];
        for (label, route) in &routes {
            let vis = Visibility::routed(&route.fa, b, w, pos, t, case.k_len());
            let fast = |q, k, v| fused_routed_attention(q, k, v, route, w, pos, scale);
            checks.extend(compare(&format!("fused routed {label}"), case, seed, &vis, &fast, device));
        }
        checks.extend(ragged(case, seed, device));
    }
    poison_outputs(false);
    checks
}

/// The fused ragged attention (each row seeing the key columns from its own floor on, as a
/// [`crate::cache::RowsCache`] gives them; decoding when `q_len == 1`, left-padded prefill
/// otherwise) vs the reference, forward only (it has no backward), under both spans. Five rows:
/// floors at 0, `k_len - w`, a third of the way, the last column, and half-way into the queries
/// (whose first half are padding queries that see nothing and return zeros).
#[cfg(feature = "kernels")]
fn ragged(case: &Case, seed: u64, device: &Device) -> Vec<Check> {
    use crate::kernel::fused_ragged_attention;
    let Case { q_heads: hq, kv_heads: hkv, head_dim: d, q_len: tq, .. } = *case;
    let tk = case.k_len();
    let floor = [0, tk.saturating_sub(case.window.size()), tk / 3, tk - 1, tk - tq + tq / 2];
    let b = floor.len();
    let input = |dims: [usize; 4], s: u64| randn(dims, seed * 37 + s, device).cast(case.dtype);
    let (q, k, v) = (input([b, hq, tq, d], 1), input([b, hkv, tk, d], 2), input([b, hkv, tk, d], 3));
    let tol = tolerances(case.dtype, case.matmul).0;
    [Span::Full, Span::Sliding(case.window)]
        .into_iter()
        .map(|span| {
            let vis = Visibility::build([b, 1, tq, tk], |r, _, t, j| j >= floor[r] && span.sees(tk - tq + t, j));
            let want = attention_reference(q.clone(), k.clone(), v.clone(), &vis, case.scale()).cast(DType::F32);
            let got = fused_ragged_attention(q.clone(), k.clone(), v.clone(), span, &floor, case.scale());
            let name = if span == Span::Full { "full" } else { "sliding" };
            let diff = max_abs_diff(&got.cast(DType::F32), &want);
            Check { name: format!("fused ragged {name} {} out", case.label()), diff, tol }
        })
        .collect()
}

/// Shapes for the tensor-core kernels (bf16/f16 inputs on CUDA): lengths on both sides of their
/// 64-row query tiles and 64-key tiles, windows around a key-tile edge (63, 64, 65) besides 1 and
/// past the sequence, head dims 64 and 128, GQA ratios 1, 4 and 8, and chunks after cached tokens.
pub fn fused_low_precision_cases(dtype: DType, matmul: Matmul, sweep: Sweep) -> Vec<Case> {
    let quick = sweep == Sweep::Quick;
    let lengths: &[usize] = if quick { &[63, 257] } else { &[1, 63, 111, 257, 1000] };
    let shapes: &[(usize, usize, usize)] = if quick { &[(8, 2, 64)] } else { &[(2, 2, 64), (8, 2, 128), (8, 1, 64)] };
    let mut out = Vec::new();
    for &q_len in lengths {
        for &(q_heads, kv_heads, head_dim) in shapes {
            let mut windows = if quick { vec![1, 64, q_len + 9] } else { vec![1, 63, 64, 65, q_len + 9] };
            windows.dedup();
            for w in windows {
                let window = Window::new(w).expect("w >= 1");
                out.push(Case { batch: 2, q_heads, kv_heads, q_len, head_dim, q_start: 0, window, dtype, matmul });
            }
        }
    }
    for (q_start, q_len) in [(40, 1), (70, 17), (300, 65), (1500, 1)] {
        let window = Window::new(64).expect("w >= 1");
        out.push(Case { batch: 2, q_heads: 8, kv_heads: 2, q_len, head_dim: 128, q_start, window, dtype, matmul });
    }
    out
}

/// The fused kernels' visibility, exactly, whatever the input dtype: with `q = 0` every visible
/// score is 0, so a row's log-sum-exp (fp32 statistics) is `ln` of the number of keys it sees. A
/// key missing or extra in any row moves it by at least `ln(1 + 1/k_len)`, far above the fp32
/// rounding of `ln` (tolerance 1e-5) — a check bf16 outputs cannot give. Full, sliding and routed
/// rows.
#[cfg(feature = "kernels")]
pub fn fused_visibility(device: &Device, cases: &[Case]) -> Vec<Check> {
    use crate::kernel::{QueryOrder, fused_attention_lse, poison_outputs};
    poison_outputs(true);
    let mut checks = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let Case { batch: b, q_heads: hq, kv_heads: hkv, q_len: t, head_dim: d, window: w, .. } = *case;
        let (pos, tk, seed) = (case.pos(), case.k_len(), 700 + i as u64);
        let q = Tensor::<4>::zeros([b, hq, t, d], device).cast(case.dtype);
        let (k, v) = (
            randn([b, hkv, tk, d], seed, device).cast(case.dtype),
            randn([b, hkv, tk, d], seed + 1, device).cast(case.dtype),
        );
        let route = RouteMask { batch: b, len: t, fa: random_bools(b * t, 0.3, seed) };
        let orders = [
            ("full", QueryOrder::uniform(Span::Full, b, t, device), Visibility::span(Span::Full, pos, t, tk)),
            (
                "sliding",
                QueryOrder::uniform(Span::Sliding(w), b, t, device),
                Visibility::span(Span::Sliding(w), pos, t, tk),
            ),
            ("routed p=0.3", QueryOrder::routed(&route, w, device), Visibility::routed(&route.fa, b, w, pos, t, tk)),
        ];
        for (label, order, vis) in orders {
            let (_, lse) = fused_attention_lse(q.clone(), k.clone(), v.clone(), &order, pos, case.scale());
            let got = lse.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 lse");
            let mut diff = 0.0f32;
            for (n, &x) in got.iter().enumerate() {
                let (bi, row) = (n / (hq * t), n % t);
                let seen = (0..tk).filter(|&j| vis.get(bi, 0, row, j)).count();
                // A row that sees nothing has a hidden (large negative) lse; NaN never passes.
                let err = match seen {
                    0 if x < -1e29 => 0.0,
                    0 => f32::INFINITY,
                    _ => (x - (seen as f64).ln() as f32).abs(),
                };
                diff = diff.max(if err.is_nan() { f32::INFINITY } else { err });
            }
            checks.push(Check { name: format!("fused visibility {label} {}", case.label()), diff, tol: 1e-5 });
        }
    }
    poison_outputs(false);
    checks
}

/// Head-mixed attention vs the reference, for each split of the KV heads.
pub fn head_mixed(device: &Device, cases: &[Case]) -> Vec<Check> {
    let mut checks = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let layouts: Vec<Vec<bool>> = match case.kv_heads {
            1 => vec![vec![true], vec![false]],
            _ => vec![vec![true, false], vec![false, true]],
        };
        for full in &layouts {
            let w = case.window;
            let vis = Visibility::head_mixed(full, w, case.pos(), case.q_len, case.k_len());
            let fast = |q, k, v| head_mixed_attention(q, k, v, full, w, case.pos(), case.scale(), default_block(w));
            checks.extend(compare(&format!("head_mixed {full:?}"), case, 300 + i as u64, &vis, &fast, device));
        }
    }
    checks
}

/// Routing every token to one branch sees exactly the keys of that branch's own path (checked
/// on the visibility grids) and gives its outputs to fp32 rounding (1e-6).
pub fn uniform_routes(device: &Device) -> Vec<Check> {
    let window = Window::new(16).expect("16 >= 1");
    let (b, hq, hkv, t, d) = (2, 4, 2, 75, 8);
    let pos = Positions::default();
    let (q, k, v) =
        (randn([b, hq, t, d], 1, device), randn([b, hkv, t, d], 2, device), randn([b, hkv, t, d], 3, device));
    let scale = 0.25;
    let mut checks = Vec::new();
    for (fa, span) in [(true, Span::Full), (false, Span::Sliding(window))] {
        let route = RouteMask::uniform(b, t, fa);
        let by_route = Visibility::routed(&route.fa, b, window, pos, t, t);
        let by_span = Visibility::span(span, pos, t, t);
        let mismatched = (0..b * t * t)
            .filter(|&n| by_route.get(n / (t * t), 0, n / t % t, n % t) != by_span.get(0, 0, n / t % t, n % t))
            .count();
        checks.push(Check {
            name: format!("uniform route fa={fa}: visibility mismatches"),
            diff: mismatched as f32,
            tol: 0.0,
        });
        let routed = routed_attention(q.clone(), k.clone(), v.clone(), &route, window, pos, scale, 16);
        let direct = match span {
            Span::Full => dense_attention(q.clone(), k.clone(), v.clone(), span, pos, scale),
            Span::Sliding(w) => sliding_attention(q.clone(), k.clone(), v.clone(), w, pos, scale, 16),
        };
        checks.push(Check {
            name: format!("uniform route fa={fa}: outputs"),
            diff: max_abs_diff(&routed, &direct),
            tol: 1e-6,
        });
    }
    checks
}

/// The window of the golden models.
pub const GOLDEN_WINDOW: usize = 5;

/// A small model of each family; head dim 16 so that on CubeCL backends (wgpu, CUDA) its layers
/// run the fused kernels, and on the CPU the tensor-op paths.
fn golden_config(model_type: &str, pattern: &str) -> ModelConfig {
    let json = format!(
        r#"{{
            "model_type": "{model_type}", "vocab_size": 61, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "sliding_window": {GOLDEN_WINDOW}, "attention_pattern": "{pattern}", "query_pre_attn_scalar": 8,
            "kv_head_types": {{"0": ["full_attention", "sliding_attention"], "1": ["sliding_attention", "full_attention"],
                              "2": ["sliding_attention", "full_attention"], "3": ["full_attention", "sliding_attention"]}}
        }}"#
    );
    ModelConfig::from_json_str(&json, "golden config").expect("valid golden config")
}

/// Three paths through a small random model (weights ~ N(0, 0.2)): masked full forward, chunked
/// prefill in chunks of `chunk`, and token-by-token decode. Also checks that sliding layers hold
/// at most `w` positions.
pub fn three_paths(
    device: &Device,
    matmul: Matmul,
    model_type: &str,
    pattern: &str,
    len: usize,
    chunk: usize,
) -> Vec<Check> {
    let tol = logit_tolerance(matmul);
    let model = randomize(Transformer::new(golden_config(model_type, pattern), device).expect("valid model"), 7, 0.2);
    let batch = 2;
    let ids: Vec<i64> = (0..batch * len).map(|i| ((i * 37 + 11) % 61) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, len]), device);
    let mut routes = Routes::none();
    for (i, layer) in model.layer_attention().iter().enumerate() {
        if layer.is_routed() {
            let fa = random_bools(batch * len, 0.35, 3 + i as u64);
            routes = routes.with(i, RouteMask { batch, len, fa });
        }
    }
    let label = format!("{model_type} {pattern} T={len}");
    let full = model.forward(tokens.clone(), &routes).expect("forward");

    let mut cache = model.new_cache();
    let chunks: Vec<Tensor<3>> = (0..len)
        .step_by(chunk)
        .map(|start| {
            let n = chunk.min(len - start);
            let part = tokens.clone().slice([0..batch, start..start + n]);
            model.forward_cached(part, &mut routes.narrow(start, n), &mut cache).expect("prefill")
        })
        .collect();
    let chunked = Tensor::cat(chunks, 1);

    let mut cache = model.new_cache();
    let steps: Vec<Tensor<3>> = (0..len)
        .map(|t| {
            let step = tokens.clone().slice([0..batch, t..t + 1]);
            model.forward_cached(step, &mut routes.narrow(t, 1), &mut cache).expect("decode")
        })
        .collect();
    let decoded = Tensor::cat(steps, 1);

    let ring_excess = model
        .layer_attention()
        .iter()
        .zip(&cache.layers)
        .filter(|(l, _)| matches!(l, LayerAttention::Sliding(_)))
        .map(|(_, c)| c.capacity().saturating_sub(GOLDEN_WINDOW))
        .max()
        .unwrap_or(0);
    vec![
        Check { name: format!("{label} chunked prefill (chunk {chunk})"), diff: max_abs_diff(&chunked, &full), tol },
        Check { name: format!("{label} decode"), diff: max_abs_diff(&decoded, &full), tol },
        Check { name: format!("{label} ring positions beyond w"), diff: ring_excess as f32, tol: 0.0 },
    ]
}

/// Three paths for every layer kind (lengths below, at and well past the window, so rings wrap
/// several times), every family, and a prefill chunk longer than the window.
pub fn models(device: &Device, sweep: Sweep, matmul: Matmul) -> Vec<Check> {
    let quick = sweep == Sweep::Quick;
    let w = GOLDEN_WINDOW;
    let mut checks = Vec::new();
    let patterns: &[&str] = if quick { &["SFRH"] } else { &["F", "S", "R", "H", "SFRH"] };
    for pattern in patterns {
        for len in [w - 1, w, 23] {
            checks.extend(three_paths(device, matmul, "llama", pattern, len, 7));
        }
    }
    let families: &[&str] = if quick { &["gemma3_text"] } else { &["llama", "qwen2", "qwen3", "gemma3_text"] };
    for family in families {
        checks.extend(three_paths(device, matmul, family, "SFRH", 23, 4));
    }
    checks.extend(three_paths(device, matmul, "llama", "S", 3 * w + 2, 2 * w + 1));
    checks
}

/// A few shapes in a low-precision dtype: a ragged length past the window, windows 1, w and
/// beyond T, GQA 3, and a chunk after cached tokens.
pub fn low_precision_cases(dtype: DType, matmul: Matmul) -> Vec<Case> {
    let case = |q_len, w, q_start| Case {
        batch: 2,
        q_heads: 6,
        kv_heads: 2,
        q_len,
        head_dim: 16,
        q_start,
        window: Window::new(w).expect("w >= 1"),
        dtype,
        matmul,
    };
    vec![case(111, 1, 0), case(111, 32, 0), case(111, 120, 0), case(17, 32, 70)]
}

/// Every attention path on `cases`.
pub fn attention_paths(device: &Device, cases: &[Case]) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(causal(device, cases));
    checks.extend(sliding(device, cases));
    checks.extend(routed(device, cases));
    checks.extend(head_mixed(device, cases));
    checks
}
