//! `swiattn plot`: PNG heatmaps of an allocation (layers × heads) or of a routing map (layers ×
//! tokens of one input).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use swiattn_core::model::Allocation;

#[derive(clap::Args)]
pub struct Args {
    /// An allocation JSON (from `swiattn allocate` or a learned policy).
    #[arg(long, conflicts_with = "routes")]
    allocation: Option<PathBuf>,
    /// A routing map JSON: `{"<layer>": [true, false, ...], ...}`, one FA flag per token.
    #[arg(long)]
    routes: Option<PathBuf>,
    /// Where to write the PNG.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match (&args.allocation, &args.routes) {
        (Some(path), _) => swiattn_router::plot::allocation(&Allocation::load(path)?, &args.out)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            let routes: BTreeMap<String, Vec<bool>> = serde_json::from_str(&text)
                .with_context(|| format!("{}: expected {{\"<layer>\": [bools]}}", path.display()))?;
            let routes = routes
                .into_iter()
                .map(|(l, r)| {
                    Ok((
                        l.parse::<usize>()
                            .with_context(|| format!("{}: `{l}` is not a layer index", path.display()))?,
                        r,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut routes = routes;
            routes.sort_by_key(|(l, _)| *l);
            swiattn_router::plot::routing(&routes, &path.display().to_string(), &args.out)?;
        }
        (None, None) => anyhow::bail!("give --allocation or --routes"),
    }
    println!("{}", args.out.display());
    Ok(())
}
