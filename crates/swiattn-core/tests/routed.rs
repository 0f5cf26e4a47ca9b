//! Routed models at inference: the model's own router ([`Transformer::with_router`]) decides each
//! token's route in every path. A saturated router runs exactly the static layout it stands for; a
//! router that splits the tokens gives the same logits through the masked forward, chunked
//! prefill and token-by-token decoding (past the window), and its tally counts real tokens only.

use std::sync::Arc;

use burn::tensor::Tensor;
use swiattn_core::attention::{LayerAttention, Window};
use swiattn_core::model::{ModelConfig, Real, Transformer};
use swiattn_core::score::token_nll;
use swiattn_core::testing::{TestRouter, max_abs_diff, randomize, test_device};

const WINDOW: usize = 4;

/// Layers 0 and 2 routed, layer 1 full.
fn model(device: &burn::tensor::Device) -> Transformer {
    let json = format!(
        r#"{{"model_type": "llama", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "sliding_window": {WINDOW}, "attention_pattern": "RFR"}}"#
    );
    randomize(Transformer::new(ModelConfig::from_json_str(&json, "test").unwrap(), device).unwrap(), 5, 0.2)
}

fn tokens(len: usize) -> Vec<u32> {
    (0..len).map(|i| ((i * 17 + 3) % 50) as u32).collect()
}

/// Logits of a whole sequence with the model's own routes.
fn forward(model: &Transformer, ids: &[u32]) -> Tensor<3> {
    let tokens = model.token_tensor(ids, [1, ids.len()]).unwrap();
    model.logits(model.hidden_states(tokens, &mut model.routes(Real::All), None).unwrap())
}

#[test]
fn a_saturated_router_scores_like_the_static_layout_it_stands_for() {
    let device = test_device();
    for (full, kind) in [(true, LayerAttention::Full), (false, LayerAttention::Sliding(Window::new(WINDOW).unwrap()))] {
        let routed = model(&device).with_router(Arc::new(TestRouter::Always { layers: vec![0, 2], full }));
        let layout = [kind.clone(), LayerAttention::Full, kind];
        let fixed = model(&device).with_attention(&layout).unwrap();
        for len in [WINDOW - 1, WINDOW, WINDOW + 1, 63] {
            let ids = tokens(len);
            let diff = max_abs_diff(&forward(&routed, &ids), &forward(&fixed, &ids));
            assert!(diff < 1e-5, "always {}: {len} tokens differ by {diff}", if full { "full" } else { "sliding" });
        }
        // The scoring path (chunked through the cache) too, and the tally saw every token.
        let ids = tokens(40);
        routed.take_fa_ratios().unwrap();
        let (a, b) = (token_nll(&routed, &ids, 7, |_| {}).unwrap(), token_nll(&fixed, &ids, 7, |_| {}).unwrap());
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "token NLLs differ by {worst}");
        let ratio = f64::from(u8::from(full));
        assert_eq!(routed.take_fa_ratios().unwrap(), [(0, ratio), (2, ratio)].into());
    }
}

#[test]
fn own_routes_agree_across_forward_prefill_and_decode() {
    let device = test_device();
    let model = model(&device).with_router(Arc::new(TestRouter::projection(vec![0, 2], 32, 9, &device)));
    for len in [WINDOW + 1, 3 * WINDOW + 2, 31] {
        let ids = tokens(len);
        let whole = forward(&model, &ids);
        let routes = model.take_fa_ratios().unwrap();
        if len == 31 {
            let split = routes.values().all(|r| *r > 0.1 && *r < 0.9);
            assert!(split, "the test router should split the tokens: {routes:?}");
        }
        for chunk in [3, 1] {
            let mut cache = model.new_cache();
            let mut parts = Vec::new();
            for part in ids.chunks(chunk) {
                let tokens = model.token_tensor(part, [1, part.len()]).unwrap();
                parts.push(model.forward_cached(tokens, &mut model.routes(Real::All), &mut cache).unwrap());
            }
            let diff = max_abs_diff(&Tensor::cat(parts, 1), &whole);
            assert!(diff < 1e-4, "{len} tokens in chunks of {chunk} vs the whole forward differ by {diff}");
            assert_eq!(model.take_fa_ratios().unwrap(), routes, "{len} tokens in chunks of {chunk}: other routes");
        }
    }
}

#[test]
fn routed_layers_without_a_router_are_refused_with_the_fix() {
    let device = test_device();
    let model = model(&device);
    let e = model.check_routable("score").unwrap_err().to_string();
    assert!(e.contains("routed layers but no router") && e.contains("checkpoints/step-N"), "{e}");
    let e = token_nll(&model, &tokens(5), 4, |_| {}).unwrap_err().to_string();
    assert!(e.contains("no router"), "{e}");
    let tokens = model.token_tensor(&tokens(5), [1, 5]).unwrap();
    let e = model.hidden_states(tokens.clone(), &mut model.routes(Real::All), None).unwrap_err().to_string();
    assert!(e.contains("layer 0 is routed but no route was given"), "{e}");
    let routed = model.with_router(Arc::new(TestRouter::Always { layers: vec![0, 2], full: true }));
    let e = routed.hidden_states(tokens, &mut routed.routes(Real::leading([5, 5])), None).unwrap_err().to_string();
    assert!(e.contains("real-token rows"), "{e}");
}
