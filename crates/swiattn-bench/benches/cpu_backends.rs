//! One training step (forward + loss + backward) of a 4-layer hybrid model, batch 4 × 256 tokens,
//! on each compiled CPU backend. Used to choose the default CPU backend (docs/backends.md).

use burn::tensor::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use swiattn_bench::{bench_model, bench_tokens, train_step};

fn backends() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut out = vec![("flex", Device::flex())];
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    out.push(("ndarray", Device::ndarray()));
    out
}

fn train_steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step_b4_t256");
    group.sample_size(10);
    for (name, device) in backends() {
        let device = device.autodiff();
        let model = bench_model(&device);
        let tokens = bench_tokens(4, 257, 512, &device);
        group.bench_function(name, |b| b.iter(|| train_step(&model, &tokens)));
    }
    group.finish();
}

criterion_group!(benches, train_steps);
criterion_main!(benches);
