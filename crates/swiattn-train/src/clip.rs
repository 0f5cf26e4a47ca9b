//! Gradient clipping by the global norm over all parameters of a module (burn's own clipping is
//! per parameter tensor): if `‖g‖₂ > max_norm`, every gradient is multiplied by `max_norm / ‖g‖₂`.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// The global L2 norm of the gradients of `module`'s parameters.
pub fn global_norm<M: Module>(grads: &GradientsParams, module: &M) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.cast(burn::tensor::DType::F32).square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(total) => total + s,
                    None => s,
                });
            }
        }
    }
    let mut visitor = SumSquares { grads, sum: None };
    module.visit(&mut visitor);
    visitor.sum.map_or(0.0, |s| (s.into_scalar::<f32>() as f64).sqrt())
}

/// Scale the gradients of `module` to a global norm of at most `max_norm`; returns the norm before
/// clipping.
pub fn clip_global_norm<M: Module>(grads: &mut GradientsParams, module: &M, max_norm: f64) -> f64 {
    let norm = global_norm(grads, module);
    if norm > max_norm && norm.is_finite() {
        struct Scale<'a> {
            grads: &'a mut GradientsParams,
            factor: f64,
        }
        impl ModuleVisitor for Scale<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.grads.remove::<D>(param.id) {
                    self.grads.register(param.id, g * self.factor);
                }
            }
        }
        module.visit(&mut Scale { grads, factor: max_norm / norm });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;
    use swiattn_core::testing::test_device;

    #[test]
    fn clips_to_the_global_norm() {
        let device = test_device().autodiff();
        let linear: Linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
        let loss = linear.forward(x).sum() * 10.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &linear);
        // d loss / d W = 10 · x for each of 2 outputs, d loss / d b = 10: ‖g‖² = 100·(2·14 + 2).
        let expected = (100.0f64 * 30.0).sqrt();
        let norm = clip_global_norm(&mut grads, &linear, 1.0);
        assert!((norm - expected).abs() < 1e-3, "{norm} vs {expected}");
        assert!((global_norm(&grads, &linear) - 1.0).abs() < 1e-5);
        assert!((clip_global_norm(&mut grads, &linear, 5.0) - 1.0).abs() < 1e-5, "below the bound: unchanged");
    }
}
