//! Ragged batches: caches of sequences at different positions stacked into one batch, and prompts
//! of different lengths prefilled left-padded together, decode exactly as each sequence does on
//! its own — and as the full forward of its whole sequence — for full, sliding and head-mixed
//! and routed layers (their own router deciding each token), with prompts below, at and past the
//! window, through the sliding rows' trimming,
//! chunks that are all padding for some rows, and multi-token steps. On a CubeCL backend
//! (`SWIATTN_TEST_BACKEND=wgpu`) every step runs the fused ragged kernels (head dim 16 is one they
//! take): decode for one token per row, the forward kernels otherwise.

use std::sync::Arc;
use swiattn_core::Error;
use swiattn_core::cache::ModelCache;

use swiattn_core::model::{ModelConfig, Real, Transformer};
use swiattn_core::testing::{TestRouter, max_abs_diff, randomize, test_device};

const WINDOW: usize = 4;

fn model(pattern: &str, device: &burn::tensor::Device) -> Transformer {
    let json = format!(
        r#"{{"model_type": "llama", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "sliding_window": {WINDOW}, "attention_pattern": "{pattern}",
            "kv_head_types": {{"0": ["full_attention", "sliding_attention"], "1": ["sliding_attention", "full_attention"],
                               "2": ["full_attention", "sliding_attention"]}}}}"#
    );
    let model =
        randomize(Transformer::new(ModelConfig::from_json_str(&json, "test").unwrap(), device).unwrap(), 11, 0.2);
    let routed = model.routed_layers();
    match routed.is_empty() {
        true => model,
        false => model.with_router(Arc::new(TestRouter::projection(routed, 32, 3, device))),
    }
}

/// Logits of the whole sequence `ids` of one row, the model's own routes deciding.
fn full_forward(model: &Transformer, ids: &[u32]) -> burn::tensor::Tensor<3> {
    let tokens = model.token_tensor(ids, [1, ids.len()]).unwrap();
    model.logits(model.hidden_states(tokens, &mut model.routes(Real::All), None).unwrap())
}

/// Token `i` of row `r`'s sequence.
fn token(r: usize, i: usize) -> u32 {
    ((r * 31 + i * 17 + 5) % 50) as u32
}

/// Prompts of 1, 3, 4 (= w), 5 and 11 tokens, prefilled in chunks of 3 (rings wrap); then steps of
/// 1, 1, 2, 1 … tokens per row (12 positions more, past 2w, where sliding rows trim).
#[test]
fn stacked_caches_decode_like_each_sequence_alone() {
    let device = test_device();
    let steps = [1, 1, 2, 1, 1, 3, 1, 1, 1];
    for pattern in ["F", "S", "H", "FSH", "R", "SRF"] {
        let model = model(pattern, &device);
        let prompts = [1usize, 3, 4, 5, 11];
        let mut alone = Vec::new();
        for (r, &n) in prompts.iter().enumerate() {
            let mut cache = model.new_cache();
            let ids: Vec<u32> = (0..n).map(|i| token(r, i)).collect();
            for chunk in ids.chunks(3) {
                model
                    .forward_cached(
                        model.token_tensor(chunk, [1, chunk.len()]).unwrap(),
                        &mut model.routes(Real::All),
                        &mut cache,
                    )
                    .unwrap();
            }
            alone.push(cache);
        }
        let mut stacked = ModelCache::stack(&alone, model.layer_attention()).unwrap();
        assert_eq!(stacked.row_positions(), Some(&prompts[..]));
        let mut at = prompts;
        for &t in &steps {
            let ids: Vec<u32> = (0..prompts.len()).flat_map(|r| (at[r]..at[r] + t).map(move |i| token(r, i))).collect();
            let together = model
                .forward_cached(
                    model.token_tensor(&ids, [prompts.len(), t]).unwrap(),
                    &mut model.routes(Real::All),
                    &mut stacked,
                )
                .unwrap();
            for (r, cache) in alone.iter_mut().enumerate() {
                let own = &ids[r * t..(r + 1) * t];
                let one = model
                    .forward_cached(model.token_tensor(own, [1, t]).unwrap(), &mut model.routes(Real::All), cache)
                    .unwrap();
                let [_, _, v] = one.dims();
                let row = together.clone().slice([r..r + 1, 0..t, 0..v]);
                let diff = max_abs_diff(&row, &one);
                assert!(diff < 1e-4, "{pattern}: row {r} at position {}: stacked vs alone differ by {diff}", at[r]);
                // And the whole sequence at once.
                let whole: Vec<u32> = (0..at[r] + t).map(|i| token(r, i)).collect();
                let full = full_forward(&model, &whole);
                let last = full.slice([0..1, at[r]..at[r] + t, 0..v]);
                let diff = max_abs_diff(&row, &last);
                assert!(
                    diff < 1e-4,
                    "{pattern}: row {r} at position {}: stacked vs full forward differ by {diff}",
                    at[r]
                );
            }
            at.iter_mut().for_each(|p| *p += t);
        }
        assert_eq!(stacked.row_positions(), Some(&at[..]));
        // Sliding rows keep O(w) columns (fewer than 2w stored, allocated by doubling from 16),
        // full rows every position of the longest row.
        let longest = at.iter().max().copied().unwrap();
        for (layer, cache) in model.layer_attention().iter().zip(&stacked.layers) {
            let columns = cache.capacity();
            match layer.type_name() {
                "sliding_attention" => assert!(columns <= (4 * WINDOW).max(16), "{pattern}: sliding keeps {columns}"),
                name => assert!(columns >= longest, "{pattern}: {name} keeps {columns} < {longest}"),
            }
        }
    }
}

/// The logits of `rows` (`[rows, vocab]` or `[rows, t, vocab]` at the last `t` positions) against
/// each row's whole sequence (`len[r]` tokens) through the full forward.
fn assert_like_full_forward(model: &Transformer, what: &str, got: &burn::tensor::Tensor<3>, len: &[usize]) {
    let [_, t, v] = got.dims();
    for (r, &n) in len.iter().enumerate() {
        let whole: Vec<u32> = (0..n).map(|i| token(r, i)).collect();
        let full = full_forward(model, &whole);
        let want = full.slice([0..1, n - t..n, 0..v]);
        let diff = max_abs_diff(&got.clone().slice([r..r + 1, 0..t, 0..v]), &want);
        assert!(diff < 1e-4, "{what}: row {r} ({n} tokens) vs its full forward differ by {diff}");
    }
}

/// Prompts of 1, 3, 4 (= w), 5, 9 and 11 tokens prefilled left-padded together, in one chunk and
/// in chunks of 3 (the 1-token prompt's first three chunks are all padding), then decoded on
/// past 2w: every row's logits equal its own full forward's.
#[test]
fn padded_prompts_prefill_and_decode_like_each_sequence_alone() {
    let device = test_device();
    let prompts = [1usize, 3, 4, 5, 9, 11];
    for pattern in ["F", "S", "H", "FSH", "R", "SRF"] {
        let model = model(pattern, &device);
        for chunk in [usize::MAX, 3] {
            let ids: Vec<Vec<u32>> =
                prompts.iter().enumerate().map(|(r, &n)| (0..n).map(|i| token(r, i)).collect()).collect();
            let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            model.take_fa_ratios().unwrap();
            let (mut cache, last) = model.prefill_padded(&refs, chunk).unwrap();
            // A routed layer's tally counts the prompts' tokens, not their padding.
            let padded = model.take_fa_ratios().unwrap();
            ids.iter().for_each(|p| drop(full_forward(&model, p)));
            assert_eq!(padded, model.take_fa_ratios().unwrap(), "{pattern}: the padded prefill's FA ratios");
            let what = if chunk == usize::MAX {
                format!("{pattern}, one chunk")
            } else {
                format!("{pattern}, chunks of {chunk}")
            };
            assert_eq!(cache.row_positions(), Some(&prompts[..]), "{what}");
            let vocab = last.dims()[1];
            assert_like_full_forward(
                &model,
                &format!("{what}: prefill"),
                &last.reshape([prompts.len(), 1, vocab]),
                &prompts,
            );
            let mut at = prompts;
            for t in [1, 2, 1, 1, 1, 3, 1] {
                let ids: Vec<u32> =
                    (0..prompts.len()).flat_map(|r| (at[r]..at[r] + t).map(move |i| token(r, i))).collect();
                let tokens = model.token_tensor(&ids, [prompts.len(), t]).unwrap();
                let logits = model.forward_cached(tokens, &mut model.routes(Real::All), &mut cache).unwrap();
                at.iter_mut().for_each(|p| *p += t);
                assert_like_full_forward(&model, &format!("{what}: step to {at:?}"), &logits, &at);
            }
        }
    }
    let e = ModelCache::prompts(&[3, 0], model("F", &device).layer_attention()).unwrap_err();
    assert!(e.to_string().contains("each non-empty"), "{e}");
}

#[test]
fn ragged_batches_refuse_what_they_cannot_hold() {
    let device = test_device();
    let model = model("F", &device);
    let mut cache = model.new_cache();
    model
        .forward_cached(model.token_tensor(&[1, 2], [1, 2]).unwrap(), &mut model.routes(Real::All), &mut cache)
        .unwrap();
    let mut stacked = ModelCache::stack(&[cache.clone(), cache.clone()], model.layer_attention()).unwrap();
    let e: Error = ModelCache::stack(std::slice::from_ref(&stacked), model.layer_attention()).unwrap_err();
    assert!(e.to_string().contains("do not stack again"), "{e}");
    let mut short = cache.clone();
    short.layers.truncate(1);
    let e = ModelCache::stack(&[short], model.layer_attention()).unwrap_err();
    assert!(e.to_string().contains("a cache of 1 layers for a model of 3"), "{e}");
    let e = model.forward_cached(
        model.token_tensor(&[1, 2, 3], [3, 1]).unwrap(),
        &mut model.routes(Real::All),
        &mut stacked,
    );
    assert!(e.unwrap_err().to_string().contains("ragged cache"));
    let e = model.token_tensor(&[1, 50], [1, 2]).unwrap_err();
    assert!(e.to_string().contains("token id 50 is outside the vocabulary (vocab_size = 50)"), "{e}");
    let e = model.token_tensor(&[1, 2, 3], [2, 2]).unwrap_err();
    assert!(e.to_string().contains("3 of them"), "{e}");
}
