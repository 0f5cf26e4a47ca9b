//! `swiattn selftest`: the conformance checks of `swiattn_core::conformance` on the chosen
//! backend, summarized per group.

use std::time::Instant;

use burn::tensor::{DType, Device};
use swiattn_core::BackendKind;
use swiattn_core::conformance::{self, Check, Matmul, Sweep};

#[derive(clap::Args)]
pub struct Args {
    /// Sweep fewer shapes (for slow backends such as software Vulkan).
    #[arg(long)]
    quick: bool,
    /// Print every check, not only the per-group summary.
    #[arg(long)]
    verbose: bool,
    /// Low-precision input dtypes to check as well (comma separated: f16, bf16; WGSL has no
    /// bf16, and f16 depends on the adapter).
    #[arg(long, value_delimiter = ',', default_value = "f16,bf16")]
    dtypes: Vec<String>,
    /// Run only the groups whose name contains this text (e.g. `fused`).
    #[arg(long)]
    only: Option<String>,
    /// Check the tensor-core kernels with their tiles loaded through registers, not by the
    /// `cp.async` pipeline they take where the device has it.
    #[cfg(feature = "kernels")]
    #[arg(long)]
    sync_loads: bool,
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let sweep = if args.quick { Sweep::Quick } else { Sweep::Full };
    println!("swiattn selftest on {backend} ({sweep:?} sweep)");
    println!("{:<34} {:>6} {:>11} {:>8} {:>8}", "group", "checks", "max |diff|", "result", "seconds");
    let matmul = Matmul::of(backend);
    println!("fp32 matmuls: {matmul:?} (tolerances scale with the operands' roundoff)");
    let cases = conformance::cases(sweep, matmul);
    let mut groups: Vec<(&str, Box<dyn Fn() -> Vec<Check> + '_>)> = vec![
        ("dense (full) vs reference", Box::new(|| conformance::causal(device, &cases))),
        ("sliding (blocked) vs reference", Box::new(|| conformance::sliding(device, &cases))),
        ("routed vs reference", Box::new(|| conformance::routed(device, &cases))),
        ("head-mixed vs reference", Box::new(|| conformance::head_mixed(device, &cases))),
        ("uniform routes == full / sliding", Box::new(|| conformance::uniform_routes(device))),
        ("models: forward == prefill == decode", Box::new(|| conformance::models(device, sweep, matmul))),
    ];
    #[cfg(feature = "kernels")]
    let fused = swiattn_core::kernel::runs_on(device);
    #[cfg(feature = "kernels")]
    swiattn_core::kernel::set_async_copies(!args.sync_loads);
    #[cfg(feature = "kernels")]
    if fused {
        let cases = conformance::fused_cases(sweep, matmul);
        let probe = cases.clone();
        groups.push(("fused kernels vs reference", Box::new(move || conformance::fused(device, &cases))));
        groups.push(("fused visibility (exact lse)", Box::new(move || conformance::fused_visibility(device, &probe))));
    }
    for (name, dtype) in [("all paths, f16 inputs", DType::F16), ("all paths, bf16 inputs", DType::BF16)] {
        if args.dtypes.contains(&format!("{dtype:?}").to_lowercase()) {
            let low = conformance::low_precision_cases(dtype, matmul);
            #[cfg(feature = "kernels")]
            if fused {
                let tiles = conformance::fused_low_precision_cases(dtype, matmul, sweep);
                let probe = tiles.clone();
                let (name, exact) = if dtype == DType::F16 {
                    ("fused kernels, f16 inputs", "fused visibility, f16 inputs")
                } else {
                    ("fused kernels, bf16 inputs", "fused visibility, bf16 inputs")
                };
                groups.push((name, Box::new(move || conformance::fused(device, &tiles))));
                groups.push((exact, Box::new(move || conformance::fused_visibility(device, &probe))));
            }
            groups.push((name, Box::new(move || conformance::attention_paths(device, &low))));
        }
    }
    if let Some(only) = &args.only {
        groups.retain(|(name, _)| name.contains(only.as_str()));
        anyhow::ensure!(!groups.is_empty(), "--only {only}: no check group matches");
    }
    let mut failed = 0;
    for (name, group) in groups {
        let started = Instant::now();
        let checks = group();
        let worst = checks.iter().map(|c| c.diff).fold(0.0f32, f32::max);
        let bad: Vec<&Check> = checks.iter().filter(|c| !c.passed()).collect();
        let status = if bad.is_empty() { "ok" } else { "FAILED" };
        println!("{name:<34} {:>6} {worst:>11.2e} {status:>8} {:>8.1}", checks.len(), started.elapsed().as_secs_f64());
        for c in checks.iter().filter(|c| args.verbose || !c.passed()) {
            println!("    {:<70} {:.2e} (tol {:.0e})", c.name, c.diff, c.tol);
        }
        failed += bad.len();
    }
    anyhow::ensure!(failed == 0, "{failed} checks failed on {backend}");
    println!("all checks passed on {backend}");
    Ok(())
}
