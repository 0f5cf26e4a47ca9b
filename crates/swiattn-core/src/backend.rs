//! Run-time backend choice among those compiled in.
//!
//! burn 0.22 picks the backend through the [`Device`]; cargo features decide which devices exist
//! in a build: `flex` (the pure-Rust CPU backend, default), `wgpu` (WebGPU / Vulkan / Metal,
//! including Mesa's software Vulkan on a machine without a GPU) and `cuda`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::{Error, Result};

/// What burn runs on the GPU backends of this build: `"fusion + autotune"` (cargo features `wgpu` /
/// `cuda`), `"unfused"` (`wgpu-unfused` / `cuda-unfused`, for A/B measurements), or one of the two
/// (`fusion` or `autotune` added to an unfused backend).
pub fn gpu_stack() -> &'static str {
    match (cfg!(feature = "fusion"), cfg!(feature = "autotune")) {
        (true, true) => "fusion + autotune",
        (true, false) => "fusion",
        (false, true) => "autotune",
        (false, false) => "unfused",
    }
}

/// A backend a user can ask for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// burn's `flex` CPU backend.
    Cpu,
    /// burn's `wgpu` backend (WebGPU / Vulkan / Metal; WGSL has no bf16).
    Wgpu,
    /// burn's `cuda` backend.
    Cuda,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

    /// The backends compiled into this build.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// Whether this build has the backend's cargo feature.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Cpu => cfg!(feature = "flex"),
            BackendKind::Wgpu => cfg!(any(feature = "wgpu", feature = "wgpu-unfused")),
            BackendKind::Cuda => cfg!(any(feature = "cuda", feature = "cuda-unfused")),
        }
    }

    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            BackendKind::Cpu => "flex",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// `n` devices of this backend for data parallelism: CUDA devices 0..n, the first n discrete
    /// GPUs for wgpu; the CPU has one device, which `n` threads then share.
    pub fn devices(self, n: usize) -> Result<Vec<Device>> {
        let first = self.device()?;
        Ok(match self {
            #[cfg(any(feature = "cuda", feature = "cuda-unfused"))]
            BackendKind::Cuda => (0..n).map(Device::cuda).collect(),
            #[cfg(any(feature = "wgpu", feature = "wgpu-unfused"))]
            BackendKind::Wgpu if n > 1 => {
                (0..n).map(|i| Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i))).collect()
            }
            _ => vec![first; n],
        })
    }

    /// The default device of this backend, or an error naming the missing cargo feature.
    pub fn device(self) -> Result<Device> {
        match self {
            #[cfg(feature = "flex")]
            BackendKind::Cpu => Ok(Device::flex()),
            #[cfg(any(feature = "wgpu", feature = "wgpu-unfused"))]
            BackendKind::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(any(feature = "cuda", feature = "cuda-unfused"))]
            BackendKind::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(Error::Invalid(format!(
                "backend `{other}` is not compiled into this build (compiled: {}); rebuild with \
                 `--features {}`",
                Self::compiled().iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", "),
                other.feature()
            ))),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        })
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            _ => Err(Error::Invalid(format!("unknown backend `{s}` (expected cpu, wgpu or cuda)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_missing_features() {
        assert_eq!("wgpu".parse::<BackendKind>().unwrap(), BackendKind::Wgpu);
        assert!("tpu".parse::<BackendKind>().is_err());
        for kind in BackendKind::ALL {
            match kind.device() {
                Ok(_) => assert!(kind.is_compiled()),
                Err(e) => {
                    assert!(!kind.is_compiled());
                    assert!(e.to_string().contains(kind.feature()), "{e}");
                }
            }
        }
    }
}
