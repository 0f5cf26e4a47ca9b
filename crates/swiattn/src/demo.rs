//! `swiattn demo`: the embedded default hybrid model, end to end on one backend.
//!
//! 1. Builds a small random model whose layers cover every attention kind (sliding, routed,
//!    head-mixed, full) from the embedded `default_model.json`.
//! 2. Prints each layer's FA ratio and window-aware attention cost relative to full attention,
//!    and the KV-cache positions each layer holds.
//! 3. Checks that the masked forward, chunked prefill and token-by-token decode agree.
//! 4. Times the attention paths on one long sequence, each against dense full attention measured
//!    in the same run, after checking that the fast paths equal their dense counterparts.
//!
//! Routed layers take their per-token routes from a fixed random draw at the requested FA ratio
//! (a learned router belongs to swiattn-router).

use std::time::Instant;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use swiattn_core::BackendKind;
use swiattn_core::attention::cost::total_keys;
use swiattn_core::attention::{
    Positions, RouteMask, Span, default_block, dense_attention, routed_attention, sliding_attention,
};
use swiattn_core::conformance::{Matmul, tolerances};
use swiattn_core::model::{LayerAttention, ModelConfig, Routes, Transformer};
use swiattn_core::testing::{max_abs_diff, randn, random_bools, randomize};

use crate::info::{describe, layer_string};

#[derive(clap::Args)]
pub struct Args {
    /// Tokens for the three-path check (past the window of 32, so rings wrap).
    #[arg(long, default_value_t = 160)]
    len: usize,
    /// Fraction of tokens the routed layers send to full attention.
    #[arg(long, default_value_t = 0.25)]
    fa_ratio: f64,
    /// Sequence length for the attention timings.
    #[arg(long, default_value_t = 2048)]
    bench_len: usize,
    /// Sliding window for the attention timings.
    #[arg(long, default_value_t = 128)]
    bench_window: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) const DEFAULT_MODEL: &str = include_str!("default_model.json");

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&args.fa_ratio), "--fa-ratio must be in [0, 1], got {}", args.fa_ratio);
    let config = ModelConfig::from_json_str(DEFAULT_MODEL, "embedded default_model.json")?;
    let model = randomize(Transformer::new(config, device)?, args.seed, 0.2);
    let arch = &model.arch;
    println!("swiattn demo on {backend}: a random {} ({})", describe(arch), layer_string(&arch.layers));

    let (batch, len) = (2, args.len);
    let mut routes = Routes::none();
    for (i, layer) in arch.layers.iter().enumerate() {
        if matches!(layer, LayerAttention::Routed(_)) {
            let fa = random_bools(batch * len, args.fa_ratio, args.seed + i as u64);
            routes = routes.with(i, RouteMask { batch, len, fa });
        }
    }

    println!(
        "\nper layer at {len} tokens (attention keys relative to full attention; KV positions held after the sequence):"
    );
    println!("{:>5}  {:<22} {:>8} {:>10} {:>12}", "layer", "attention", "FA ratio", "keys/full", "KV positions");
    let full_keys = total_keys(len, |_| Span::Full) as f64;
    let mut cache = model.new_cache();
    let ids: Vec<i64> = (0..batch * len).map(|i| ((i * 131 + 7) % arch.vocab_size) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, len]), device);
    let prefilled = model.forward_cached(tokens.clone(), &mut routes.clone(), &mut cache)?;
    let (mut sum_keys, mut sum_kv) = (0.0, 0usize);
    for (i, (layer, layer_cache)) in arch.layers.iter().zip(&cache.layers).enumerate() {
        let (ratio, keys) = match layer {
            LayerAttention::Full => (1.0, full_keys),
            LayerAttention::Sliding(w) => (0.0, total_keys(len, |_| Span::Sliding(*w)) as f64),
            LayerAttention::Routed(w) => {
                // Averaged over the batch: each sequence's own routes.
                let route = &routes.0[&i];
                let keys: u64 = (0..batch)
                    .map(|b| total_keys(len, |t| if route.fa[b * len + t] { Span::Full } else { Span::Sliding(*w) }))
                    .sum();
                (route.fa_ratio(), keys as f64 / batch as f64)
            }
            LayerAttention::HeadMixed { window, full_kv_heads } => {
                let f = full_kv_heads.iter().filter(|&&h| h).count() as f64 / full_kv_heads.len() as f64;
                (f, f * full_keys + (1.0 - f) * total_keys(len, |_| Span::Sliding(*window)) as f64)
            }
        };
        let name = match layer.window() {
            Some(w) => format!("{} (w={})", layer.type_name(), w.size()),
            None => layer.type_name().to_string(),
        };
        println!("{i:>5}  {name:<22} {ratio:>8.3} {:>10.3} {:>12}", keys / full_keys, layer_cache.capacity());
        sum_keys += keys;
        sum_kv += layer_cache.capacity();
    }
    let n = arch.layers.len() as f64;
    println!(
        "model: attention keys {:.3} of all-full, KV positions {} vs {} for all-full (capacity rounded up to powers of two)",
        sum_keys / (n * full_keys),
        sum_kv,
        arch.layers.len() * len.next_power_of_two().max(16)
    );

    println!("\nthree paths over {len} tokens, batch {batch} (fp32 logits):");
    let full = model.forward(tokens.clone(), &routes)?;
    println!("  masked forward vs chunked prefill (one chunk): max |diff| {:.2e}", max_abs_diff(&full, &prefilled));
    let mut cache = model.new_cache();
    let mut chunks = Vec::new();
    for start in (0..len).step_by(48) {
        let n = 48.min(len - start);
        chunks.push(model.forward_cached(
            tokens.clone().slice([0..batch, start..start + n]),
            &mut routes.narrow(start, n),
            &mut cache,
        )?);
    }
    println!(
        "  masked forward vs chunked prefill (48 at a time): max |diff| {:.2e}",
        max_abs_diff(&full, &Tensor::cat(chunks, 1))
    );
    let mut cache = model.new_cache();
    let started = Instant::now();
    let mut steps = Vec::new();
    for t in 0..len {
        steps.push(model.forward_cached(
            tokens.clone().slice([0..batch, t..t + 1]),
            &mut routes.narrow(t, 1),
            &mut cache,
        )?);
    }
    let decode_s = started.elapsed().as_secs_f64();
    println!(
        "  masked forward vs token-by-token decode: max |diff| {:.2e} ({:.0} tokens/s)",
        max_abs_diff(&full, &Tensor::cat(steps, 1)),
        (batch * len) as f64 / decode_s
    );

    bench(&args, backend, device)
}

/// Median seconds of `f` over 3 runs after one warm-up; `f` reads its result back so the
/// backend has finished.
fn time(f: impl Fn() -> Tensor<4>) -> (f64, Tensor<4>) {
    let out = f();
    let _ = out.to_data();
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let _ = f().to_data();
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[1], out)
}

fn bench(args: &Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let (t, w) = (args.bench_len, swiattn_core::attention::Window::new(args.bench_window)?);
    let (b, hq, hkv, d) = (1, 8, 2, 64);
    println!("\nattention forward, T={t}, window {}, heads {hq}/{hkv}, head_dim {d}, fp32 (median of 3):", w.size());
    let q = randn([b, hq, t, d], 1, device);
    let k = randn([b, hkv, t, d], 2, device);
    let v = randn([b, hkv, t, d], 3, device);
    let (pos, scale) = (Positions::default(), (d as f64).powf(-0.5));
    let route = RouteMask { batch: b, len: t, fa: random_bools(b * t, args.fa_ratio, args.seed) };

    let (full_s, _) = time(|| dense_attention(q.clone(), k.clone(), v.clone(), Span::Full, pos, scale));
    let (dense_swa_s, dense_swa) =
        time(|| dense_attention(q.clone(), k.clone(), v.clone(), Span::Sliding(w), pos, scale));
    let (blocked_s, blocked) =
        time(|| sliding_attention(q.clone(), k.clone(), v.clone(), w, pos, scale, default_block(w)));
    let (routed_s, routed) =
        time(|| routed_attention(q.clone(), k.clone(), v.clone(), &route, w, pos, scale, default_block(w)));
    // The routed output must equal dense attention under the same per-token visibility.
    let by_route: Vec<Tensor<4>> = [true, false]
        .iter()
        .map(|&fa| {
            let span = if fa { Span::Full } else { Span::Sliding(w) };
            dense_attention(q.clone(), k.clone(), v.clone(), span, pos, scale)
        })
        .collect();
    let fa_rows = Tensor::<4, burn::tensor::Bool>::from_data(TensorData::new(route.fa.clone(), [1, 1, t, 1]), device)
        .expand([b, hq, t, d]);
    let routed_dense = by_route[1].clone().mask_where(fa_rows, by_route[0].clone());

    let sliding_diff = max_abs_diff(&blocked, &dense_swa);
    let routed_diff = max_abs_diff(&routed, &routed_dense);
    let (tol, _) = tolerances(DType::F32, Matmul::of(backend));
    anyhow::ensure!(
        sliding_diff <= tol && routed_diff <= tol,
        "fast paths disagree with dense attention (sliding {sliding_diff:.2e}, routed {routed_diff:.2e}); not reporting timings"
    );
    let swa_keys = total_keys(t, |_| Span::Sliding(w)) as f64 / total_keys(t, |_| Span::Full) as f64;
    println!("{:<36} {:>10} {:>9} {:>11}", "path", "ms", "vs full", "max |diff|");
    println!("{:<36} {:>10.2} {:>9.3} {:>11}", "full causal (dense)", full_s * 1e3, 1.0, "-");
    println!("{:<36} {:>10.2} {:>9.3} {:>11}", "sliding, dense masked", dense_swa_s * 1e3, dense_swa_s / full_s, "-");
    println!(
        "{:<36} {:>10.2} {:>9.3} {:>11.2e}",
        "sliding, blocked O(n·w)",
        blocked_s * 1e3,
        blocked_s / full_s,
        sliding_diff
    );
    println!(
        "{:<36} {:>10.2} {:>9.3} {:>11.2e}",
        format!("routed, FA ratio {:.2}", route.fa_ratio()),
        routed_s * 1e3,
        routed_s / full_s,
        routed_diff
    );
    let ideal = route.fa_ratio() + (1.0 - route.fa_ratio()) * swa_keys;
    println!("(keys per query relative to full: sliding {swa_keys:.3}, routed {ideal:.3})");
    Ok(())
}
