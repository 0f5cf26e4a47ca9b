//! Records the commit the binary is built from (`SWIATTN_GIT_COMMIT`, "unknown" outside a git
//! checkout) for results files.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rustc-env=SWIATTN_GIT_COMMIT={}", git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()));
    if let Some(dir) = git(&["rev-parse", "--git-common-dir"]) {
        for moved in ["HEAD", "refs/heads", "packed-refs"] {
            println!("cargo:rerun-if-changed={dir}/{moved}");
        }
    }
}
