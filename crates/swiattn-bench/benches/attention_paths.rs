//! The CPU attention paths (the tensor-op paths the fused GPU kernels replace on CubeCL
//! backends): dense full, blocked sliding and routed attention at FA ratio 0.25, forward and
//! forward+backward, on flex. Heads 8/2, head dim 64, window 256, fp32.
//!
//! `cargo bench -p swiattn-bench --bench attention_paths`

use burn::tensor::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use swiattn_core::attention::{
    Positions, RouteMask, Span, Window, default_block, dense_attention, routed_attention, sliding_attention,
};
use swiattn_core::testing::{randn, random_bools};

type Path = fn(Tensor<4>, Tensor<4>, Tensor<4>, &RouteMask, Window) -> Tensor<4>;

fn full(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, _: &RouteMask, _: Window) -> Tensor<4> {
    dense_attention(q, k, v, Span::Full, Positions::default(), 0.125)
}

fn sliding(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, _: &RouteMask, w: Window) -> Tensor<4> {
    sliding_attention(q, k, v, w, Positions::default(), 0.125, default_block(w))
}

fn routed(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, route: &RouteMask, w: Window) -> Tensor<4> {
    routed_attention(q, k, v, route, w, Positions::default(), 0.125, default_block(w))
}

fn paths(c: &mut Criterion) {
    let window = Window::new(256).expect("256 >= 1");
    let (b, hq, hkv, d) = (1, 8, 2, 64);
    let named: [(&str, Path); 3] = [("full", full), ("sliding", sliding), ("routed_r0.25", routed)];
    for backward in [false, true] {
        let mut group = c.benchmark_group(if backward { "attention_fwd_bwd" } else { "attention_fwd" });
        group.sample_size(10);
        let device = if backward { Device::flex().autodiff() } else { Device::flex() };
        for t in [1024, 2048] {
            let leaf = |dims, seed| {
                let x = randn(dims, seed, &device);
                if backward { x.require_grad() } else { x }
            };
            let (q, k, v) = (leaf([b, hq, t, d], 1), leaf([b, hkv, t, d], 2), leaf([b, hkv, t, d], 3));
            let route = RouteMask { batch: b, len: t, fa: random_bools(b * t, 0.25, 7) };
            for (name, path) in named {
                group.bench_with_input(BenchmarkId::new(name, t), &t, |bench, _| {
                    bench.iter(|| {
                        let out = path(q.clone(), k.clone(), v.clone(), &route, window);
                        if backward {
                            let _ = out.sum().backward();
                        } else {
                            let _ = out.into_data();
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, paths);
criterion_main!(benches);
