//! Batched log-likelihoods against independent per-request computations on a small random model:
//! the chunked-cache NLL of `swiattn_core::score` for the log-probability and an unpadded forward
//! for the greedy flag; lm-eval's pair encoding.

use burn::tensor::{Int, Tensor, TensorData};
use swiattn_core::model::{ModelConfig, Routes, Transformer};
use swiattn_core::score::token_nll;
use swiattn_core::testing::{randomize, test_device, word_tokenizer_json};
use swiattn_eval::request::Request;
use swiattn_eval::score::{Encoded, encode_pair, score, score_shared};
use tokenizers::Tokenizer;

const WORDS: [&str; 12] = ["<eot>", "<unk>", "the", "cat", "sat", "on", "a", "mat", "and", "slept", "dog", "ran"];

fn tokenizer() -> Tokenizer {
    Tokenizer::from_bytes(word_tokenizer_json(&WORDS).as_bytes()).unwrap()
}

fn model() -> Transformer {
    let json = serde_json::json!({
        "model_type": "llama", "vocab_size": WORDS.len(), "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "tie_word_embeddings": false,
    });
    let config = ModelConfig::from_json_str(&json.to_string(), "test").unwrap();
    randomize(Transformer::new(config, &test_device()).unwrap(), 7, 0.4)
}

fn request(context: &str, continuation: &str) -> Request {
    Request { context: context.into(), continuation: continuation.into() }
}

#[test]
fn pairs_are_encoded_as_lm_eval_does() {
    let tok = tokenizer();
    // Trailing space moves to the continuation; ids are the words' positions.
    let e = encode_pair(&tok, &request("the cat ", "sat on"), 0, 100).unwrap();
    assert_eq!(e, Encoded { ids: vec![2, 3, 4, 5], scored: 2 });
    // An empty context is the end-of-text token.
    assert_eq!(encode_pair(&tok, &request("", "the mat"), 0, 100).unwrap(), Encoded { ids: vec![0, 2, 7], scored: 2 });
    // Too long: keep the last max_len + 1 tokens, all of the continuation among them.
    let e = encode_pair(&tok, &request("the cat sat on a", " mat and"), 0, 4).unwrap();
    assert_eq!(e, Encoded { ids: vec![4, 5, 6, 7, 8], scored: 2 });
    let err = encode_pair(&tok, &request("the", " cat sat on a mat"), 0, 3).unwrap_err().to_string();
    assert!(err.contains("5 tokens"), "{err}");
    let err = encode_pair(&tok, &request("the", "  "), 0, 10).unwrap_err().to_string();
    assert!(err.contains("no tokens"), "{err}");
}

#[test]
fn batched_scores_equal_per_request_references() {
    let (tok, model) = (tokenizer(), model());
    let requests = [
        request("the cat", " sat on the mat"),
        request("a dog", " ran"),
        request("", "the cat slept"),
        request("the dog sat on a mat and", " slept"),
        request("cat", " the dog ran and the cat sat on a mat"),
        request("the", " cat"),
        request("mat", " a"),
    ];
    let encoded: Vec<Encoded> = requests.iter().map(|r| encode_pair(&tok, r, 0, 64).unwrap()).collect();
    let device = test_device();
    for batch in [1, 3, 7] {
        let scored = score(&model, &encoded, batch, |_| {}).unwrap();
        for (e, s) in encoded.iter().zip(&scored) {
            // fp32, sums of ≤ 9 log-probabilities: 1e-4 absolute.
            let nll = token_nll(&model, &e.ids, 2, |_| {}).unwrap();
            let want: f64 = -nll[nll.len() - e.scored..].iter().sum::<f64>();
            assert!((s.logprob - want).abs() < 1e-4, "batch {batch}: {} vs {want} for {e:?}", s.logprob);
            assert_eq!(s.tokens, e.scored);

            let n = e.ids.len() - 1;
            let input: Vec<i64> = e.ids[..n].iter().map(|&t| t as i64).collect();
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(input, [1, n]), &device);
            let logits = model.logits(model.hidden_states(tokens, &mut Routes::none(), None).unwrap());
            let argmax: Vec<i64> = logits.argmax(2).into_data().convert::<i64>().try_into_vec().unwrap();
            let greedy = (n - e.scored..n).all(|p| argmax[p] == e.ids[p + 1] as i64);
            assert_eq!(s.greedy, greedy, "batch {batch}: {e:?}");
        }
    }
}

/// Choices scored from one cached context equal each choice scored whole, with a sliding layer
/// whose ring buffer wraps inside the context (window 3; contexts of 1 to 7 tokens) and choices of
/// one token (no continuation pass) or several; a question whose contexts differ falls back.
#[test]
fn shared_context_scores_equal_whole_sequences() {
    let tok = tokenizer();
    let json = serde_json::json!({
        "model_type": "llama", "vocab_size": WORDS.len(), "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "sliding_window": 3, "attention_pattern": "SF",
    });
    let config = ModelConfig::from_json_str(&json.to_string(), "test").unwrap();
    let model = randomize(Transformer::new(config, &test_device()).unwrap(), 9, 0.4);
    let questions: Vec<Vec<Request>> = vec![
        vec![request("the", " cat sat"), request("the", " dog"), request("the", " mat and the cat slept")],
        vec![request("the cat sat", " on"), request("the cat sat", " a mat"), request("the cat sat", " and")],
        vec![request("the dog sat on a mat and", " slept"), request("the dog sat on a mat and", " ran on a mat")],
        vec![request("", "the cat"), request("", "a dog ran")],
        vec![request("the cat", " sat"), request("a dog", " sat")],
    ];
    let encoded: Vec<Vec<Encoded>> =
        questions.iter().map(|q| q.iter().map(|r| encode_pair(&tok, r, 0, 64).unwrap()).collect()).collect();
    let mut done = 0;
    let shared = score_shared(&model, &encoded, |d| done = d).unwrap();
    assert_eq!(done, questions.len());
    for (q, (choices, scores)) in encoded.iter().zip(&shared).enumerate() {
        let whole = score(&model, choices, 1, |_| {}).unwrap();
        for (s, w) in scores.iter().zip(&whole) {
            // fp32, sums of ≤ 6 log-probabilities: 1e-4 absolute.
            assert!((s.logprob - w.logprob).abs() < 1e-4, "question {q}: {} vs {}", s.logprob, w.logprob);
            assert_eq!((s.greedy, s.tokens), (w.greedy, w.tokens), "question {q}");
        }
    }
}

/// A document that fits one window scores like the plain chunked NLL of EOT + its tokens; cut into
/// windows of 3, each token is still predicted exactly once, from at most 3 tokens before it.
#[test]
fn rolling_windows_score_every_token_once() {
    use swiattn_eval::rolling::windows;
    let (tok, model) = (tokenizer(), model());
    let ids = tok.encode("the cat sat on a mat and the dog ran", false).unwrap().get_ids().to_vec();
    let whole = score(&model, &windows(&ids, 0, 64), 4, |_| {}).unwrap();
    assert_eq!(whole.len(), 1);
    let with_eot: Vec<u32> = std::iter::once(0).chain(ids.iter().copied()).collect();
    let want: f64 = -token_nll(&model, &with_eot, 4, |_| {}).unwrap().iter().sum::<f64>();
    assert!((whole[0].logprob - want).abs() < 1e-4, "{} vs {want}", whole[0].logprob);

    let cut = windows(&ids, 0, 3);
    assert_eq!(cut.iter().map(|w| w.scored).sum::<usize>(), ids.len());
    let short: f64 = score(&model, &cut, 4, |_| {}).unwrap().iter().map(|s| s.logprob).sum();
    assert!(short < want - 1e-3 || short > want + 1e-3, "less context changes the score: {short} vs {want}");
}

/// Greedy decoding through the cache equals re-running the whole sequence and taking the argmax at
/// its end, token by token; stop strings cut the text.
#[test]
fn cached_greedy_generation_equals_full_recomputation() {
    use swiattn_eval::generate::{Until, generate};
    let (tok, model) = (tokenizer(), model());
    let device = test_device();
    let context = tok.encode("the cat sat on a mat and the dog", false).unwrap().get_ids().to_vec();
    let until = Until { stop: vec![], max_new_tokens: 6, eos: vec![], chunk: Some(4) };
    let got = generate(&model, &tok, &context, &until).unwrap();
    let mut ids = context.clone();
    for _ in 0..6 {
        let input: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(input, [1, ids.len()]), &device);
        let logits = model.logits(model.hidden_states(tokens, &mut Routes::none(), None).unwrap());
        let argmax: Vec<i64> = logits.argmax(2).into_data().convert::<i64>().try_into_vec().unwrap();
        ids.push(*argmax.last().unwrap() as u32);
    }
    assert_eq!(got.ids, ids[context.len()..]);
    assert_eq!(got.text, tok.decode(&got.ids, true).unwrap());

    // A stop string: the text ends before it, and decoding stops as soon as it appears.
    let first_word = tok.decode(&got.ids[..1], true).unwrap();
    let second = tok.decode(&got.ids[1..2], true).unwrap();
    let stopped = generate(&model, &tok, &context, &Until { stop: vec![second.clone()], ..until.clone() }).unwrap();
    assert!(stopped.ids.len() <= got.ids.len() && !stopped.text.contains(&second), "{stopped:?}");
    assert!(stopped.text.starts_with(&first_word) || first_word == second, "{stopped:?} {first_word}");
    // An end-of-text id ends it without being part of the text.
    let eos = generate(&model, &tok, &context, &Until { eos: vec![got.ids[2]], ..until }).unwrap();
    assert_eq!(eos.ids, got.ids[..eos.ids.len()]);
    assert!(!eos.ids.contains(&got.ids[2]));
}

/// Decoding contexts of different lengths together (stacked caches, one token per row per step)
/// gives every context the tokens and text it gets alone, also when rows stop at different steps.
#[test]
fn batched_generation_equals_one_context_at_a_time() {
    use swiattn_eval::generate::{Until, generate, generate_batch};
    let (tok, model) = (tokenizer(), model());
    let texts = ["the", "the cat sat on a mat and the dog", "a dog ran", "the cat", "mat and the dog ran on a mat"];
    let contexts: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(*t, false).unwrap().get_ids().to_vec()).collect();
    let base = Until { stop: vec![], max_new_tokens: 7, eos: vec![], chunk: Some(3) };
    let alone: Vec<_> = contexts.iter().map(|c| generate(&model, &tok, c, &base).unwrap()).collect();
    // A stop word and an end-of-text id that some rows produce early and others never.
    let until = Until { stop: vec![tok.decode(&alone[4].ids[..1], true).unwrap()], eos: vec![alone[2].ids[1]], ..base };
    let want: Vec<_> = contexts.iter().map(|c| generate(&model, &tok, c, &until).unwrap()).collect();
    let lengths: Vec<usize> = want.iter().map(|g| g.ids.len()).collect();
    assert!(
        lengths.iter().any(|&n| n < 7) && lengths.contains(&7),
        "rows should finish at different steps: {lengths:?}"
    );
    for batch in [1, 2, 5, 8] {
        let mut done = Vec::new();
        let got = generate_batch(&model, &tok, &contexts, &until, batch, |n| done.push(n)).unwrap();
        assert_eq!(got, want, "batch {batch}");
        assert_eq!(done.last(), Some(&contexts.len()));
    }
}
