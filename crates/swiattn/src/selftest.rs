//! `swiattn selftest`: the conformance checks of `swiattn_core::conformance` on the chosen
//! backend, summarized per group.

use std::time::Instant;

use burn::tensor::Device;
use swiattn_core::BackendKind;
use swiattn_core::conformance::{self, Check, Sweep};

#[derive(clap::Args)]
pub struct Args {
    /// Sweep fewer shapes (for slow backends such as software Vulkan).
    #[arg(long)]
    quick: bool,
    /// Print every check, not only the per-group summary.
    #[arg(long)]
    verbose: bool,
}

pub fn run(args: Args, backend: BackendKind, device: &Device) -> anyhow::Result<()> {
    let sweep = if args.quick { Sweep::Quick } else { Sweep::Full };
    println!("swiattn selftest on {backend} ({sweep:?} sweep)");
    println!("{:<34} {:>6} {:>11} {:>8} {:>8}", "group", "checks", "max |diff|", "result", "seconds");
    let groups: [(&str, &dyn Fn() -> Vec<Check>); 6] = [
        ("causal (dense) vs reference", &|| conformance::causal(device, sweep)),
        ("sliding (blocked) vs reference", &|| conformance::sliding(device, sweep)),
        ("routed vs reference", &|| conformance::routed(device, sweep)),
        ("head-mixed vs reference", &|| conformance::head_mixed(device, sweep)),
        ("uniform routes == full / sliding", &|| conformance::uniform_routes(device)),
        ("models: forward == prefill == decode", &|| conformance::models(device, sweep)),
    ];
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
