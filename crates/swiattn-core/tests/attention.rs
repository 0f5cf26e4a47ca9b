//! Every fast attention path against the reference, forward and input gradients, on fresh random
//! ragged inputs: lengths 1, 63, 111, 257; windows 1, w-1, w, w+1 and >= T around w = 32; GQA
//! ratios 1, 3 and 4; a second call at a position offset (a chunk after cached tokens).
//!
//! Tolerances (fp32): outputs within 2e-5 and gradients within 1e-4 (absolute, inputs ~ N(0, 1)).

use burn::tensor::{Device, Tensor};
use swiattn_core::attention::{
    Positions, RouteMask, Span, Visibility, Window, attention_reference, causal_attention,
    default_block, head_mixed_attention, routed_attention, sliding_attention,
};
use swiattn_core::testing::{max_abs_diff, on_gpu_backend, randn, random_bools, test_device};

const FWD_TOL: f32 = 2e-5;
const GRAD_TOL: f32 = 1e-4;

#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_len: usize,
    head_dim: usize,
    /// Cached tokens before the queries; keys cover positions `0..q_start + q_len`.
    q_start: usize,
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
}

/// Runs `fast` and the reference on the same autodiff inputs; compares outputs and the gradients
/// of `sum(out * r)` with respect to q, k and v.
fn check(
    what: &str,
    case: Case,
    seed: u64,
    visibility: &Visibility,
    fast: impl Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
) {
    let device = test_device().autodiff();
    let Case {
        batch: b,
        q_heads: hq,
        kv_heads: hkv,
        q_len: tq,
        head_dim: d,
        ..
    } = case;
    let tk = case.k_len();
    let leaf =
        |dims: [usize; 4], s: u64, dev: &Device| randn(dims, seed * 31 + s, dev).require_grad();
    let run = |f: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>| {
        let (q, k, v) = (
            leaf([b, hq, tq, d], 1, &device),
            leaf([b, hkv, tk, d], 2, &device),
            leaf([b, hkv, tk, d], 3, &device),
        );
        let out = f(q.clone(), k.clone(), v.clone());
        let r = randn([b, hq, tq, d], seed * 31 + 4, &device);
        let grads = (out.clone() * r).sum().backward();
        let g = |x: &Tensor<4>| x.grad(&grads).expect("gradient");
        (out.inner(), [g(&q), g(&k), g(&v)])
    };
    let scale = case.scale();
    let (want, want_grads) = run(&|q, k, v| attention_reference(q, k, v, visibility, scale));
    let (got, got_grads) = run(&fast);
    let diff = max_abs_diff(&got, &want);
    assert!(
        diff <= FWD_TOL,
        "{what} {case:?}: forward differs by {diff}"
    );
    for (name, (g, w)) in ["dq", "dk", "dv"]
        .iter()
        .zip(got_grads.iter().zip(&want_grads))
    {
        let diff = max_abs_diff(g, w);
        assert!(
            diff <= GRAD_TOL,
            "{what} {case:?}: {name} differs by {diff}"
        );
    }
}

fn lengths() -> Vec<usize> {
    if on_gpu_backend() {
        vec![1, 63, 257]
    } else {
        vec![1, 63, 111, 257]
    }
}

/// Windows around w = 32 and at/past the sequence length.
fn windows(len: usize) -> Vec<usize> {
    let mut ws = vec![1, 31, 32, 33, len.max(1), len + 9];
    if on_gpu_backend() {
        ws = vec![1, 32, len + 9];
    }
    ws.dedup();
    ws
}

fn head_layouts() -> Vec<(usize, usize)> {
    if on_gpu_backend() {
        vec![(6, 2)]
    } else {
        vec![(2, 2), (6, 2), (4, 1)]
    }
}

fn cases() -> Vec<(Case, Window)> {
    let mut out = Vec::new();
    for q_len in lengths() {
        for (q_heads, kv_heads) in head_layouts() {
            for w in windows(q_len) {
                let case = Case {
                    batch: 2,
                    q_heads,
                    kv_heads,
                    q_len,
                    head_dim: 8,
                    q_start: 0,
                };
                out.push((case, Window::new(w).unwrap()));
            }
        }
    }
    // A chunk of new queries after cached tokens (decode is q_len = 1).
    for (q_start, q_len) in [(40, 1), (70, 17)] {
        let case = Case {
            batch: 2,
            q_heads: 6,
            kv_heads: 2,
            q_len,
            head_dim: 8,
            q_start,
        };
        out.push((case, Window::new(32).unwrap()));
    }
    out
}

#[test]
fn sliding_matches_reference() {
    for (i, (case, window)) in cases().into_iter().enumerate() {
        let vis = Visibility::span(Span::Sliding(window), case.pos(), case.q_len, case.k_len());
        for block in [default_block(window), 7] {
            check("sliding", case, i as u64, &vis, |q, k, v| {
                sliding_attention(q, k, v, window, case.pos(), case.scale(), block)
            });
        }
    }
}

#[test]
fn causal_matches_reference() {
    for (i, (case, _)) in cases().into_iter().enumerate() {
        let vis = Visibility::span(Span::Full, case.pos(), case.q_len, case.k_len());
        check("causal", case, 100 + i as u64, &vis, |q, k, v| {
            causal_attention(q, k, v, Span::Full, case.pos(), case.scale())
        });
    }
}

#[test]
fn routed_matches_reference() {
    for (i, (case, window)) in cases().into_iter().enumerate() {
        let n = case.batch * case.q_len;
        let routes = [
            RouteMask {
                batch: case.batch,
                len: case.q_len,
                fa: random_bools(n, 0.3, i as u64),
            },
            RouteMask {
                batch: case.batch,
                len: case.q_len,
                fa: random_bools(n, 0.8, 7 + i as u64),
            },
            RouteMask::uniform(case.batch, case.q_len, true),
            RouteMask::uniform(case.batch, case.q_len, false),
        ];
        for route in &routes {
            let vis = Visibility::routed(
                &route.fa,
                case.batch,
                window,
                case.pos(),
                case.q_len,
                case.k_len(),
            );
            for block in [default_block(window), 5] {
                check("routed", case, 200 + i as u64, &vis, |q, k, v| {
                    routed_attention(q, k, v, route, window, case.pos(), case.scale(), block)
                });
            }
        }
    }
}

#[test]
fn head_mixed_matches_reference() {
    for (i, (case, window)) in cases().into_iter().enumerate() {
        let layouts: Vec<Vec<bool>> = match case.kv_heads {
            1 => vec![vec![true], vec![false]],
            _ => vec![vec![true, false], vec![false, true]],
        };
        for full in &layouts {
            let vis = Visibility::head_mixed(full, window, case.pos(), case.q_len, case.k_len());
            check("head_mixed", case, 300 + i as u64, &vis, |q, k, v| {
                head_mixed_attention(
                    q,
                    k,
                    v,
                    full,
                    window,
                    case.pos(),
                    case.scale(),
                    default_block(window),
                )
            });
        }
    }
}

/// Routing every token to one branch is the same computation as that branch's own path: the same
/// keys are visible (checked exactly on the masks) and the outputs agree to fp32 rounding.
#[test]
fn uniform_routes_equal_full_and_sliding() {
    let device = test_device();
    let window = Window::new(16).unwrap();
    let (b, hq, hkv, t, d) = (2, 4, 2, 75, 8);
    let pos = Positions::default();
    let (q, k, v) = (
        randn([b, hq, t, d], 1, &device),
        randn([b, hkv, t, d], 2, &device),
        randn([b, hkv, t, d], 3, &device),
    );
    let scale = 0.25;
    for (fa, span) in [(true, Span::Full), (false, Span::Sliding(window))] {
        let route = RouteMask::uniform(b, t, fa);
        let by_route = Visibility::routed(&route.fa, b, window, pos, t, t);
        let by_span = Visibility::span(span, pos, t, t);
        for s in 0..b {
            for i in 0..t {
                for j in 0..t {
                    assert_eq!(by_route.get(s, 0, i, j), by_span.get(s, 0, i, j));
                }
            }
        }
        let routed = routed_attention(
            q.clone(),
            k.clone(),
            v.clone(),
            &route,
            window,
            pos,
            scale,
            16,
        );
        let direct = match span {
            Span::Full => causal_attention(q.clone(), k.clone(), v.clone(), span, pos, scale),
            Span::Sliding(w) => {
                sliding_attention(q.clone(), k.clone(), v.clone(), w, pos, scale, 16)
            }
        };
        let diff = max_abs_diff(&routed, &direct);
        assert!(diff <= 1e-6, "uniform route fa={fa}: differs by {diff}");
    }
}

/// A query row that sees no key (possible with a hand-made visibility) gives zeros and finite
/// gradients, not NaN.
#[test]
fn reference_is_nan_safe_for_empty_rows() {
    let device = test_device().autodiff();
    let (q, k, v) = (
        randn([1, 2, 3, 4], 1, &device).require_grad(),
        randn([1, 2, 3, 4], 2, &device).require_grad(),
        randn([1, 2, 3, 4], 3, &device).require_grad(),
    );
    let mut vis = Visibility::span(Span::Full, Positions::default(), 3, 3);
    vis.seen[0] = false; // row 0 saw only key 0
    let out = attention_reference(q.clone(), k.clone(), v.clone(), &vis, 0.5);
    let row0: Vec<f32> = out
        .clone()
        .slice([0..1, 0..2, 0..1, 0..4])
        .into_data()
        .try_into_vec()
        .unwrap();
    assert!(row0.iter().all(|&x| x == 0.0), "{row0:?}");
    let grads = out.sum().backward();
    for x in [&q, &k, &v] {
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_into_vec().unwrap();
        assert!(g.iter().all(|x| x.is_finite()));
    }
}
