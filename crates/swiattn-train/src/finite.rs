//! NaN/Inf detection: when a step's loss or gradient norm is not finite, name the tensor — the
//! first parameter (in module order) whose value holds a NaN or Inf, else the first gradient.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use swiattn_core::checkpoint::param_ids;

/// The first non-finite parameter value of `module` (`"<name>"`), else the first non-finite
/// gradient in `grads` (`"gradient of <name>"`); names are checkpoint names. A bad value is looked
/// for first because it poisons every gradient before it in module order. Reads every tensor back
/// to the host, so only call it once something is known to be wrong.
pub fn first_non_finite<M: Module>(module: &M, grads: Option<&GradientsParams>) -> Option<String> {
    struct Scan<'a> {
        names: BTreeMap<u64, String>,
        grads: Option<&'a GradientsParams>,
        found: Option<String>,
    }
    impl ModuleVisitor for Scan<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.found.is_some() {
                return;
            }
            let name = || self.names.get(&param.id.val()).cloned().unwrap_or_else(|| format!("parameter {}", param.id));
            match self.grads {
                None if !finite(param.val()) => self.found = Some(name()),
                Some(grads) if grads.get::<D>(param.id).is_some_and(|g| !finite(g)) => {
                    self.found = Some(format!("gradient of {}", name()))
                }
                _ => {}
            }
        }
    }
    let names: BTreeMap<u64, String> = param_ids(module).into_iter().map(|(name, id)| (id, name)).collect();
    let mut values = Scan { names, grads: None, found: None };
    module.visit(&mut values);
    if values.found.is_some() || grads.is_none() {
        return values.found;
    }
    let mut gradients = Scan { names: values.names, grads, found: None };
    module.visit(&mut gradients);
    gradients.found
}

fn finite<const D: usize>(t: Tensor<D>) -> bool {
    t.cast(burn::tensor::DType::F32).into_data().iter::<f32>().all(f32::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;
    use swiattn_core::testing::test_device;

    #[derive(Module, Debug)]
    struct Two {
        first: Linear,
        second: Linear,
    }

    #[test]
    fn names_the_parameter_or_gradient_that_is_not_finite() {
        let device = test_device().autodiff();
        let two = Two { first: LinearConfig::new(3, 3).init(&device), second: LinearConfig::new(3, 1).init(&device) };
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
        let grads =
            GradientsParams::from_grads(two.second.forward(two.first.forward(x.clone())).sum().backward(), &two);
        assert_eq!(first_non_finite(&two, Some(&grads)), None);

        // An infinite input makes the first layer's weight gradient infinite.
        let inf = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, f32::INFINITY, 3.0], [1, 3]), &device);
        let grads = GradientsParams::from_grads(two.second.forward(two.first.forward(inf)).sum().backward(), &two);
        assert_eq!(first_non_finite(&two, Some(&grads)).as_deref(), Some("gradient of first.weight"));

        let mut poisoned = two.clone();
        poisoned.second.bias = poisoned.second.bias.map(|b| b.map(|t| t.mul_scalar(f32::NAN)));
        assert_eq!(first_non_finite(&poisoned, None).as_deref(), Some("second.bias"));
    }
}
