//! `swiattn compare`: the same forward and one training step on each compiled backend, with the
//! differences from the first one — what to look at before trusting a WebGPU or CUDA number.

use std::path::PathBuf;
use std::time::Instant;

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use swiattn_core::BackendKind;
use swiattn_core::attention::RouteMask;
use swiattn_core::host;
use swiattn_core::model::{Arch, ModelConfig, Routes, Transformer};
use swiattn_core::testing::{random_bools, randomize};
use swiattn_train::checkpoint::open_model;
use swiattn_train::loss::next_token_nll;

use crate::model_config::{AttentionArgs, read_config_with};

#[derive(clap::Args)]
pub struct Args {
    /// Backends to compare, the first one being the baseline; those not compiled in are skipped.
    #[arg(long, value_delimiter = ',', default_value = "cpu,wgpu,cuda")]
    backends: Vec<BackendKind>,
    /// A GGUF file, a Hugging Face directory or a training checkpoint [default: the embedded default
    /// model, weights drawn from --seed on the host, so every backend gets the same ones].
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    attention: AttentionArgs,
    /// Tokens per sequence (ids drawn from --seed).
    #[arg(long, default_value_t = 256)]
    len: usize,
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// FA ratio of the random routes given to routed layers (a checkpoint's routers too are set
    /// aside: the same host routes on every backend leave no ties to explain).
    #[arg(long, default_value_t = 0.25)]
    fa_ratio: f64,
    /// Learning rate of the SGD step.
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

struct Outcome {
    backend: BackendKind,
    logits: Vec<f32>,
    forward_s: f64,
    loss: f64,
    loss_after: f64,
    step_s: f64,
}

fn default_config() -> swiattn_core::Result<ModelConfig> {
    ModelConfig::from_json_str(crate::demo::DEFAULT_MODEL, "embedded default_model.json")
}

fn build(args: &Args, device: &Device) -> anyhow::Result<Transformer> {
    Ok(match &args.model {
        Some(path) => open_model(path, device, &args.attention.load_options()?)?.model,
        None => randomize(Transformer::new(default_config()?, device)?, args.seed, 0.2),
    })
}

/// The compared model's architecture, from its config alone (no weights loaded).
fn arch(args: &Args) -> anyhow::Result<Arch> {
    let config = match &args.model {
        Some(path) => read_config_with(path, &args.attention)?,
        None => default_config()?,
    };
    Ok(config.resolve("compared model")?)
}

fn scalar(x: Tensor<1>) -> anyhow::Result<f64> {
    Ok(host::floats(x, "the loss")?[0] as f64)
}

fn run_one(args: &Args, backend: BackendKind, ids: &[i64], routes: &Routes) -> anyhow::Result<Outcome> {
    let device = backend.device()?;
    let (b, t) = (args.batch, args.len);
    let tokens = |device: &Device| Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [b, t]), device);

    let model = build(args, &device)?;
    let started = Instant::now();
    let logits = model.forward(tokens(&device), routes)?;
    let logits = host::floats(logits, "logits")?;
    let forward_s = started.elapsed().as_secs_f64();

    let ad = device.autodiff();
    let model = build(args, &ad)?;
    let tokens = tokens(&ad);
    let loss_of = |model: &Transformer| -> anyhow::Result<Tensor<1>> {
        let logits = model.forward(tokens.clone().slice([0..b, 0..t - 1]), &routes.narrow(0, t - 1))?;
        Ok(next_token_nll(logits, tokens.clone().slice([0..b, 1..t])).0)
    };
    let started = Instant::now();
    let loss = loss_of(&model)?;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut sgd = SgdConfig::new().init();
    let model = sgd.step(args.lr, model, grads);
    let loss_after = scalar(loss_of(&model)?.inner())?;
    let step_s = started.elapsed().as_secs_f64();
    Ok(Outcome { backend, logits, forward_s, loss: scalar(loss.inner())?, loss_after, step_s })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.len >= 2, "--len must be at least 2 (the training step predicts the next token)");
    let backends: Vec<BackendKind> = args.backends.iter().copied().filter(|b| b.is_compiled()).collect();
    for b in args.backends.iter().filter(|b| !b.is_compiled()) {
        println!("skipping {b}: not compiled in (rebuild with --features {})", b.feature());
    }
    anyhow::ensure!(!backends.is_empty(), "none of the backends asked for is compiled in");

    // Token ids and routes on the host, so that every backend sees the same ones.
    let arch = arch(&args)?;
    let vocab = arch.vocab_size;
    let (b, t) = (args.batch, args.len);
    let ids: Vec<i64> = {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
        (0..b * t).map(|_| rng.random_range(0..vocab as i64)).collect()
    };
    let mut routes = Routes::none();
    for (i, layer) in arch.layers.iter().enumerate() {
        if layer.is_routed() {
            routes =
                routes.with(i, RouteMask { batch: b, len: t, fa: random_bools(b * t, args.fa_ratio, 17 + i as u64) });
        }
    }

    println!(
        "{:<6} {:>10} {:>14} {:>10} {:>12} {:>12} {:>10}",
        "backend", "forward s", "max |Δlogits|", "loss", "|Δloss|", "loss after", "step s"
    );
    let mut first: Option<Outcome> = None;
    for backend in backends {
        let o = run_one(&args, backend, &ids, &routes)?;
        let (dlogits, dloss) = match &first {
            None => (0.0, 0.0),
            Some(f) => (
                f.logits.iter().zip(&o.logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max),
                (f.loss - o.loss).abs(),
            ),
        };
        println!(
            "{:<6} {:>10.3} {:>14.3e} {:>10.5} {:>12.3e} {:>12.5} {:>10.3}",
            o.backend.to_string(),
            o.forward_s,
            dlogits,
            o.loss,
            dloss,
            o.loss_after,
            o.step_s
        );
        if first.is_none() {
            first = Some(o);
        }
    }
    println!("(differences against the first backend; fp32 matmuls on CUDA run as TF32)");
    Ok(())
}
