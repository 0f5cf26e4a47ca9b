//! DuoAttention head gates trained on a toy problem and binarized to a budget.

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use swiattn_core::attention::Window;
use swiattn_core::model::ModelShape;
use swiattn_core::testing::test_device;
use swiattn_router::duo::DuoGates;
use swiattn_router::{Budget, Policy};

fn shape(layers: usize, heads: usize) -> ModelShape {
    ModelShape {
        model_type: "llama".into(),
        num_hidden_layers: layers,
        num_attention_heads: 2 * heads,
        num_key_value_heads: heads,
        hidden_size: 16,
    }
}

/// Heads gain `u_h` from full attention; the L1 penalty λ = 0.6 closes the gates of heads with
/// `u_h < λ` and keeps the others open; binarizing at a budget keeps exactly the top heads.
#[test]
fn duo_gates_close_heads_that_do_not_pay_for_full_attention() {
    let device: Device = test_device().autodiff();
    let (layers, heads) = (4, 4);
    let mut gates = DuoGates::new(shape(layers, heads), Window::new(8).unwrap(), 1.0, &device);
    let utility: Vec<f32> = (0..16).map(|i| ((i * 5) % 16) as f32 / 15.0 + 0.1).collect();
    let u = Tensor::<2>::from_data(TensorData::new(utility.clone(), [layers, heads]), &device);
    let mut sgd = SgdConfig::new().init();
    for _ in 0..300 {
        let loss = (gates.alpha.val() * u.clone()).mean().neg() + gates.l1_penalty(0.6);
        let grads = GradientsParams::from_grads(loss.backward(), &gates);
        gates = sgd.step(2.0, gates, grads).project();
    }
    let alpha: Vec<f32> = gates.alpha.val().inner().into_data().try_into_vec().unwrap();
    for (i, (&a, &u)) in alpha.iter().zip(&utility).enumerate() {
        let want = if u > 0.6 { 1.0 } else { 0.0 };
        assert_eq!(a, want, "head {i} (utility {u}): gate {a}");
    }
    // Binarizing at a quarter keeps exactly 4 heads, all among the open gates.
    let allocation = gates.binarize(Budget::new(0.25).unwrap()).unwrap();
    assert_eq!(allocation.fa_ratio(), 0.25);
    for i in (0..16).filter(|&i| allocation.full[i / heads][i % heads]) {
        assert_eq!(alpha[i], 1.0, "head {i} was kept with a closed gate");
    }
    let decision = gates.decide(1, &Tensor::<3>::zeros([1, 2, 16], &device)).unwrap().unwrap();
    assert_eq!(decision.hard.fa_ratio(), alpha[4..8].iter().filter(|&&a| a > 0.5).count() as f64 / 4.0);
}
