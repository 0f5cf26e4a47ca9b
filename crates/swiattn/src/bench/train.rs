//! `swiattn bench train`: optimizer steps of a model shape on random tokens, each timed up to a
//! device sync, as `tools/gpu_train/torch_baseline.py` times PyTorch on the same shape and batch
//! (the speed of a step depends on neither the weights nor the tokens). Reports the median, the
//! fastest and the slowest step, the model FLOP rate with swiattn's MFU count
//! ([`swiattn_train::mfu`]), the achieved FA ratio of routed layers, and the device's memory pool
//! at each phase of one extra step: what the weights and optimizer state hold, what the forward
//! keeps for the backward, what the gradients add, and the most the pool reserved.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use swiattn_core::BackendKind;
use swiattn_core::model::{LayerAttention, Routes, Transformer};
use swiattn_router::regularizer::{Coefficient, EfficiencyRegularizer};
use swiattn_router::router::{GradientPath, RouterConfig, Routers, SwiAttn};
use swiattn_router::{Budget, Scope};
use swiattn_train::data::Batch;
use swiattn_train::loss::next_token_nll;
use swiattn_train::precision::Precision;
use swiattn_train::routing::Routing;
use swiattn_train::schedule::LrSchedule;
use swiattn_train::trainer::{OptimizerSettings, Trainer};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    shape: super::Shape,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 2)]
    accum: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 1024)]
    seq: usize,
    /// Timed steps, after `--warmup` untimed ones.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Compute dtype: f32, bf16 or f16 (fp32 master weights either way).
    #[arg(long, default_value = "bf16", value_parser = crate::model_config::parse_dtype)]
    dtype: DType,
    /// Routed layers: the fraction of tokens the routers send to full attention at the start
    /// (their output bias is set for it; the achieved ratio is reported) and the regularizer's
    /// target.
    #[arg(long, default_value_t = 0.25)]
    fa_ratio: f64,
    /// Routed layouts: the routers' straight-through gradient paths, `mix`, `mix_dense` or
    /// `scaled`; each routed layout runs once per path.
    #[arg(long = "gradient", value_delimiter = ',', default_value = "mix")]
    gradients: Vec<String>,
    /// Append the results, one JSON line per layout, to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `(in use, reserved)` bytes of the device's memory pool once its queued work is done; `None` on
/// backends without a pool report (the CPU).
fn pool(device: &Device) -> anyhow::Result<Option<(u64, u64)>> {
    device.sync().map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
    Ok(device.memory_pool_usage().map(|u| (u.bytes_in_use, u.bytes_reserved)))
}

/// `n` micro-batches of `batch` random sequences of `seq + 1` tokens.
fn random_batches(rng: &mut StdRng, n: usize, batch: usize, seq: usize, vocab: usize, device: &Device) -> Vec<Batch> {
    (0..n)
        .map(|_| {
            let tokens: Vec<i64> = (0..batch * (seq + 1)).map(|_| rng.random_range(0..vocab as i64)).collect();
            let all = Tensor::<2, Int>::from_data(TensorData::new(tokens, [batch, seq + 1]), device);
            Batch {
                input: all.clone().slice([0..batch, 0..seq]),
                target: all.slice([0..batch, 1..seq + 1]),
                recall: vec![Vec::new(); batch],
            }
        })
        .collect()
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let precision = Precision::of(args.dtype).expect("parse_dtype takes float dtypes only");
    let gradients = args
        .gradients
        .iter()
        .map(|g| match g.as_str() {
            "mix" => Ok(GradientPath::Mix),
            "mix_dense" => Ok(GradientPath::MixDense),
            "scaled" => Ok(GradientPath::Scaled),
            other => anyhow::bail!("unknown --gradient `{other}` (expected mix, mix_dense or scaled)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        args.steps > 0 && args.batch > 0 && args.accum > 0 && args.seq > 0,
        "steps, batch, accum and seq must be positive"
    );
    let device = device.clone().autodiff();
    // Layouts after one another in one process: they share its tuned and compiled kernels.
    for pattern in &args.shape.patterns {
        let routed = pattern.contains('R');
        for (name, &gradient) in args.gradients.iter().zip(&gradients) {
            let result =
                one_layout(&args, pattern, routed.then_some((name.as_str(), gradient)), precision, backend, &device)?;
            println!("{result}");
            if let Some(path) = &args.json {
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                writeln!(file, "{result}")?;
            }
            if !routed {
                break;
            }
        }
    }
    Ok(())
}

/// Build a fresh model in `pattern`, time its steps, and report them (routed layouts train their
/// routers with `gradient`).
fn one_layout(
    args: &Args,
    pattern: &str,
    gradient: Option<(&str, GradientPath)>,
    precision: Precision,
    backend: BackendKind,
    device: &Device,
) -> anyhow::Result<serde_json::Value> {
    device.seed(args.seed);
    let config = args.shape.config(pattern)?;
    let arch = config.resolve(&format!("{} with --pattern {pattern}", args.shape.config.display()))?;
    let model = Transformer::new(config, device)?;
    let routed: Vec<usize> =
        (0..arch.layers.len()).filter(|&l| matches!(arch.layers[l], LayerAttention::Routed(_))).collect();
    let routing = match gradient {
        Some((_, gradient)) if !routed.is_empty() => {
            let target = Budget::new(args.fa_ratio)?;
            let router = RouterConfig {
                init_bias: super::router_bias(args.fa_ratio, arch.hidden_size),
                gradient,
                ..Default::default()
            };
            Routing::SwiAttn {
                policy: SwiAttn::new(Routers::new(routed, arch.hidden_size, &router, device), router),
                regularizer: EfficiencyRegularizer::new(target, Coefficient::DualAscent { lr: 0.02 }, Scope::Global),
            }
        }
        _ => Routing::None,
    };
    let settings = OptimizerSettings {
        schedule: LrSchedule::constant(1e-3),
        weight_decay: 0.01,
        router_lr: 1e-2,
        grad_clip: Some(1.0),
    };
    let mut trainer = Trainer::new(model, routing, settings);
    trainer.precision = precision;

    let mut rng = StdRng::seed_from_u64(args.seed);
    let sequences = args.batch * args.accum;
    let tokens_per_step = (sequences * args.seq) as f64;
    let (mut seconds, mut fa_ratios) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for step in 0..args.warmup + args.steps {
        let batches = random_batches(&mut rng, args.accum, args.batch, args.seq, arch.vocab_size, device);
        device.sync().map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
        let t = Instant::now();
        let m = trainer.train_step(&batches)?;
        device.sync().map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
        if step >= args.warmup {
            seconds.push(t.elapsed().as_secs_f64());
            if !m.fa_ratio.is_empty() {
                fa_ratios.push(m.fa_ratio.values().sum::<f64>() / m.fa_ratio.len() as f64);
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let memory = memory_phases(&trainer, &mut rng, args, arch.vocab_size, device)?;

    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let fa = if fa_ratios.is_empty() { None } else { Some(fa_ratios.iter().sum::<f64>() / fa_ratios.len() as f64) };
    let flops = swiattn_train::mfu::step_flops(&arch, sequences, args.seq, fa.unwrap_or(0.0))?;
    let stack = match backend {
        BackendKind::Cpu => String::new(),
        _ => format!(", burn {}", swiattn_core::backend::gpu_stack()),
    };
    Ok(json!({
        "framework": format!("swiattn {} ({}), {backend}{stack}", env!("CARGO_PKG_VERSION"), env!("SWIATTN_GIT_COMMIT")),
        "pattern": pattern, "window": args.shape.window, "dtype": format!("{:?}", args.dtype).to_lowercase(), "gradient": gradient.map(|(name, _)| name),
        "batch": args.batch, "seq": args.seq, "accum": args.accum, "steps": args.steps,
        "seconds_per_step": median,
        "tokens_per_s": tokens_per_step / median,
        "tokens_per_s_min": tokens_per_step / sorted[sorted.len() - 1],
        "tokens_per_s_max": tokens_per_step / sorted[0],
        "model_tflops_per_s": flops / median / 1e12,
        "fa_ratio": fa,
        "memory_gib": memory,
        "wall_s": wall,
    }))
}

/// The memory pool through one more step of the full/sliding layouts, phase by phase (GiB, in use
/// after each phase's work is done): `state` the fp32 weights and optimizer moments between steps,
/// `forward` what a micro-batch's forward adds (the compute-dtype copy of the weights and every
/// activation autodiff keeps for the backward, logits included), `backward` what is in use once
/// its gradients exist, and `reserved` the most the pool holds. `null` without a pool report;
/// the routed layouts report `reserved` only (their forward goes through the routing policy).
fn memory_phases(
    trainer: &Trainer,
    rng: &mut StdRng,
    args: &Args,
    vocab: usize,
    device: &Device,
) -> anyhow::Result<serde_json::Value> {
    const GIB: f64 = (1u64 << 30) as f64;
    let gib = |bytes: u64| bytes as f64 / GIB;
    let Some((state, _)) = pool(device)? else { return Ok(serde_json::Value::Null) };
    if !matches!(trainer.routing, Routing::None) {
        let (_, reserved) = pool(device)?.expect("the pool reported once");
        return Ok(json!({ "state": gib(state), "reserved": gib(reserved) }));
    }
    let batch = random_batches(rng, 1, args.batch, args.seq, vocab, device).remove(0);
    let compute = trainer.precision.compute_copy(trainer.model());
    let hidden = compute.hidden_states(batch.input, &mut Routes::none(), None)?;
    let (nll, _) = next_token_nll(compute.logits(hidden), batch.target);
    let (forward, _) = pool(device)?.expect("the pool reported once");
    let grads = nll.backward();
    let (backward, reserved) = pool(device)?.expect("the pool reported once");
    drop((grads, compute));
    Ok(json!({
        "state": gib(state),
        "forward": gib(forward.saturating_sub(state)),
        "backward": gib(backward),
        "reserved": gib(reserved),
    }))
}
