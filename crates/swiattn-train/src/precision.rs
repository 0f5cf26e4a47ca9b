//! Mixed precision: the model's parameters (and the optimizer's state) stay fp32 — the master
//! weights — while each forward runs on a copy cast to the compute dtype. The cast is part of the
//! autodiff graph, so gradients arrive in fp32 on the master weights. Softmaxes, norms, the loss and
//! the routers/gates compute in fp32 whatever the compute dtype.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// The compute dtype of a training run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    /// The compute precision of a float dtype (`None` for others).
    pub fn of(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F32 => Some(Precision::F32),
            DType::BF16 => Some(Precision::Bf16),
            DType::F16 => Some(Precision::F16),
            _ => None,
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// The copy of `module` that a forward pass runs on: every float parameter cast to the compute
    /// dtype, same parameter ids, gradients flowing back to `module`'s parameters. Make a fresh one
    /// for every backward pass (a backward consumes the casts). Identity for fp32.
    pub fn compute_copy<M: Module>(self, module: &M) -> M {
        struct Cast(DType);
        impl ModuleMapper for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let dtype = self.0;
                param.map(|t| t.cast(dtype))
            }
        }
        let copy = module.clone();
        match self {
            Precision::F32 => copy,
            _ => copy.map(&mut Cast(self.dtype())),
        }
    }
}
