//! The tests' shared small run: a 2-layer SwiAttn model on the lagged-copy task.

use burn::tensor::Device;
use swiattn_core::attention::Window;
use swiattn_core::model::{LayerAttention, ModelConfig, Transformer};
use swiattn_router::regularizer::{Coefficient, EfficiencyRegularizer};
use swiattn_router::router::{RouterConfig, Routers, SwiAttn};
use swiattn_router::{Budget, Scope};
use swiattn_train::data::Batch;
use swiattn_train::routing::Routing;
use swiattn_train::schedule::LrSchedule;
use swiattn_train::synthetic::LaggedCopy;
use swiattn_train::trainer::{OptimizerSettings, Trainer};

pub const HIDDEN: usize = 32;

pub fn task() -> LaggedCopy {
    LaggedCopy { seq_len: 40, lag: 12, ..LaggedCopy::default() }
}

/// A 2-layer model with both layers routed (window 4) and SwiAttn routers.
pub fn trainer(device: &Device) -> Trainer {
    // The device's seed is process-wide state: hold it against the other tests' threads.
    static SEED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _seeded = SEED.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(3);
    let json = serde_json::json!({
        "model_type": "llama", "vocab_size": task().vocab_size(), "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": HIDDEN / 2, "tie_word_embeddings": true,
    });
    let config = ModelConfig::from_json_str(&json.to_string(), "test model").unwrap();
    let window = Window::new(4).unwrap();
    let model =
        Transformer::new(config, device).unwrap().with_attention(&vec![LayerAttention::Routed(window); 2]).unwrap();
    // Start near a 50/50 split so that routes, gates and the regularizer all matter.
    let router_config = RouterConfig { init_bias: 0.0, ..RouterConfig::default() };
    let routers = Routers::new(vec![0, 1], HIDDEN, &router_config, device);
    let regularizer =
        EfficiencyRegularizer::new(Budget::new(0.25).unwrap(), Coefficient::DualAscent { lr: 0.5 }, Scope::Global);
    let routing = Routing::SwiAttn { policy: SwiAttn::new(routers, router_config), regularizer };
    let settings = OptimizerSettings {
        schedule: LrSchedule::constant(1e-2),
        weight_decay: 0.01,
        router_lr: 1e-2,
        grad_clip: None,
    };
    Trainer::new(model, routing, settings)
}

pub fn batch(start: u64, n: usize, device: &Device) -> Batch {
    Batch::from_examples((0..n as u64).map(|i| task().example(0, start + i)).collect(), device)
}
