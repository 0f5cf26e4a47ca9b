//! The optimizer step: gradient accumulation equals one large batch, and a non-finite loss stops
//! the step with the tensor named.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Tensor};
use swiattn_core::checkpoint::param_ids;
use swiattn_core::testing::test_device;
use swiattn_train::data::Batch;
use swiattn_train::precision::Precision;
use swiattn_train::schedule::LrSchedule;
use swiattn_train::trainer::{OptimizerSettings, Trainer};

mod common;
use common::{batch, trainer};

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

/// fp32: a sum of 2 means vs one mean reorders additions, ~1e-6 relative; Adam divides by
/// √v + ε, which keeps that at ~1e-5 after the steps.
#[test]
fn accumulated_micro_batches_step_like_one_batch() {
    let device = test_device().autodiff();
    let mut whole = trainer(&device);
    let mut micro = trainer(&device);
    for step in 0..3u64 {
        let a = whole.train_step(&[batch(step * 8, 8, &device)]).unwrap();
        let b = micro.train_step(&[batch(step * 8, 4, &device), batch(step * 8 + 4, 4, &device)]).unwrap();
        assert!(close(a.loss, b.loss, 1e-5), "step {step} loss: {} vs {}", a.loss, b.loss);
        assert!(close(a.grad_norm, b.grad_norm, 1e-4), "step {step} gradient norm: {} vs {}", a.grad_norm, b.grad_norm);
        assert!(close(a.penalty.unwrap(), b.penalty.unwrap(), 1e-4), "step {step}: {a:?} vs {b:?}");
        for (layer, ratio) in &a.fa_ratio {
            assert!(close(*ratio, b.fa_ratio[layer], 1e-9), "step {step} layer {layer}: {a:?} vs {b:?}");
        }
        assert!(a.fa_ratio.values().all(|r| *r > 0.05 && *r < 0.95), "both branches in use: {a:?}");
    }
}

/// Two replicas (threads; on the CPU both on the one device) compute what accumulation does.
#[test]
fn data_parallel_steps_like_accumulation() {
    let device = test_device().autodiff();
    let mut single = trainer(&device);
    let mut parallel = trainer(&device);
    parallel.devices = vec![device.clone(), device.clone()];
    for step in 0..3u64 {
        let batches: Vec<Batch> = (0..4).map(|m| batch(step * 12 + m * 3, 3, &device)).collect();
        let a = single.train_step(&batches).unwrap();
        let b = parallel.train_step(&batches).unwrap();
        assert!(close(a.loss, b.loss, 1e-6), "step {step} loss: {} vs {}", a.loss, b.loss);
        assert!(close(a.grad_norm, b.grad_norm, 1e-5), "step {step}: {} vs {}", a.grad_norm, b.grad_norm);
        assert!(close(a.penalty.unwrap(), b.penalty.unwrap(), 1e-5), "step {step}: {a:?} vs {b:?}");
        assert_eq!(a.fa_ratio.keys().collect::<Vec<_>>(), b.fa_ratio.keys().collect::<Vec<_>>());
        for (layer, ratio) in &a.fa_ratio {
            assert!(close(*ratio, b.fa_ratio[layer], 1e-9), "step {step} layer {layer}: {a:?} vs {b:?}");
        }
    }
    let (wa, wb) = (single.model().model.norm.weight.val(), parallel.model().model.norm.weight.val());
    assert!((wa - wb).abs().max().into_scalar::<f32>() < 1e-5, "the same weights after 3 steps");
}

/// Multiplies one parameter by NaN.
struct Poison(u64);

impl ModuleMapper for Poison {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.id.val() == self.0 { param.map(|t| t.mul_scalar(f32::NAN)) } else { param }
    }
}

#[test]
fn a_non_finite_step_names_the_tensor_and_leaves_the_model_usable() {
    let device = test_device().autodiff();
    let mut trainer = trainer(&device);
    trainer.train_step(&[batch(0, 4, &device)]).unwrap();
    let name = "model.layers.1.mlp.up_proj.weight";
    let id = param_ids(trainer.model())[name];
    let (model, routing) = trainer.into_parts();
    let settings = OptimizerSettings {
        schedule: LrSchedule::constant(1e-2),
        weight_decay: 0.01,
        router_lr: 1e-2,
        grad_clip: None,
    };
    let mut poisoned = Trainer::new(model.map(&mut Poison(id)), routing, settings);
    let err = poisoned.train_step(&[batch(4, 4, &device)]).unwrap_err().to_string();
    assert!(err.contains("step 1") && err.contains(name) && err.contains("NaN"), "{err}");
    // The model is still there, and its NaN held-out loss is an error, not a result.
    let err = poisoned.evaluate(&[batch(8, 2, &device)]).unwrap_err().to_string();
    assert!(err.contains("held-out loss is NaN"), "{err}");
    assert!(poisoned.evaluate(&[]).unwrap_err().to_string().contains("at least one held-out sequence"));
}

/// bf16 compute with fp32 master weights (flex runs bf16 on the CPU): the first loss matches fp32
/// to bf16 precision (8 bits of mantissa: ~0.4 % per rounding), the master weights stay fp32 and
/// train, and the loss falls.
#[test]
fn bf16_compute_trains_fp32_master_weights() {
    let device = test_device().autodiff();
    let mut reference = trainer(&device);
    let mut bf16 = trainer(&device);
    bf16.precision = Precision::Bf16;
    let want = reference.train_step(&[batch(0, 4, &device)]).unwrap();
    let got = bf16.train_step(&[batch(0, 4, &device)]).unwrap();
    assert!(close(got.loss, want.loss, 2e-2), "{} vs {}", got.loss, want.loss);
    assert!(close(got.grad_norm, want.grad_norm, 5e-2), "{} vs {}", got.grad_norm, want.grad_norm);
    assert!(!close(got.loss, want.loss, 1e-7), "bf16 compute rounds: {} vs {}", got.loss, want.loss);
    let before = bf16.model().model.layers[0].mlp.up_proj.weight.val();
    let mut last = got.loss;
    for step in 1..6 {
        last = bf16.train_step(&[batch(0, 4, &device)]).unwrap().loss;
        assert!(last.is_finite(), "step {step}");
    }
    assert!(last < got.loss, "training lowers the loss on a repeated batch: {} → {last}", got.loss);
    let after = bf16.model().model.layers[0].mlp.up_proj.weight.val();
    assert_eq!((before.dtype(), after.dtype()), (DType::F32, DType::F32), "master weights");
    assert!((after - before).abs().max().into_scalar::<f32>() > 0.0, "the master weights moved");
    assert!(bf16.evaluate(&[batch(8, 2, &device)]).unwrap().loss.is_finite());
}
