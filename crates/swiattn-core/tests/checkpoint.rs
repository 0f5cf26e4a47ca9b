//! Checkpoint parity against independent references (fixtures written by `tools/`):
//! - tiny Hugging Face models of each family: our logits equal `transformers`' logits;
//! - the same models converted to GGUF the way llama.cpp does (permuted q/k, `1 + w` norms);
//! - sharded and bf16 safetensors;
//! - every GGML type dequantized as llama.cpp's `gguf` Python package does;
//! - save → reload is exact;
//! - bad inputs give one clear error naming the file and field or tensor.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use swiattn_core::checkpoint::gguf::GgufFile;
use swiattn_core::checkpoint::safetensors::SafetensorsSource;
use swiattn_core::checkpoint::{LoadOptions, WeightSource, load_model, save_model};
use swiattn_core::model::{ModelConfig, Routes};
use swiattn_core::testing::{max_abs_diff, test_device};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Reference {
    ids: Vec<i64>,
    batch: usize,
    len: usize,
    logits: Vec<f32>,
    vocab: usize,
}

/// Reference ids and logits: `logits.json` in a model directory, or `<model>.gguf.json`.
fn reference(path: &Path) -> Reference {
    let file = if path.is_dir() { path.join("logits.json") } else { PathBuf::from(format!("{}.json", path.display())) };
    let text = std::fs::read_to_string(file).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows: Vec<Vec<i64>> = serde_json::from_value(json["input_ids"].clone()).unwrap();
    let logits: Vec<Vec<Vec<f32>>> = serde_json::from_value(json["logits"].clone()).unwrap();
    Reference {
        batch: rows.len(),
        len: rows[0].len(),
        vocab: logits[0][0].len(),
        ids: rows.into_iter().flatten().collect(),
        logits: logits.into_iter().flatten().flatten().collect(),
    }
}

/// Logits of the model at `path` on its reference inputs, compared with the reference logits:
/// max |Δ| relative to the largest reference logit.
fn relative_error(path: &Path) -> f32 {
    let device = test_device();
    let r = reference(path);
    let model = load_model(path, &device, &LoadOptions::default()).unwrap().model;
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(r.ids.clone(), [r.batch, r.len]), &device);
    let ours = model.forward(tokens, &Routes::none()).unwrap();
    let theirs = Tensor::<3>::from_data(TensorData::new(r.logits.clone(), [r.batch, r.len, r.vocab]), &device);
    let scale = r.logits.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    max_abs_diff(&ours, &theirs) / scale
}

const PARITY_TOL: f32 = 2e-5;

#[test]
fn safetensors_logits_match_transformers_for_every_family() {
    for family in ["llama", "qwen2", "qwen3", "gemma3", "llama_sharded", "llama_bf16"] {
        let dir = fixtures().join("hf").join(family);
        let err = relative_error(&dir);
        eprintln!("{family}: max relative logit error {err:.2e}");
        assert!(err <= PARITY_TOL, "{family}: logits differ from transformers by {err} (relative)");
    }
}

#[test]
fn gguf_conversions_match_transformers() {
    for family in ["llama", "gemma3"] {
        let err = relative_error(&fixtures().join("hf").join(format!("{family}.gguf")));
        eprintln!("{family}.gguf: max relative logit error {err:.2e}");
        assert!(err <= PARITY_TOL, "{family}.gguf: logits differ from transformers by {err} (relative)");
    }
}

#[test]
fn every_ggml_type_dequantizes_like_gguf_py() {
    let dir = fixtures().join("gguf");
    let file = GgufFile::open(&dir.join("quants.gguf")).unwrap();
    let expected = SafetensorsSource::open(&dir.join("quants_expected.safetensors")).unwrap();
    let names: Vec<String> = file.tensors.keys().cloned().collect();
    assert_eq!(names.len(), 11, "{names:?}");
    for name in names {
        let (shape, ours) = file.dequantize(&name).unwrap();
        let theirs = expected.read(&name).unwrap().unwrap();
        assert_eq!(shape, theirs.shape, "{name}");
        for (i, (a, b)) in ours.iter().zip(&theirs.data).enumerate() {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{name}[{i}]: {a} vs {b}");
        }
    }
}

#[test]
fn saved_models_reload_exactly_with_their_attention() {
    let device = test_device();
    let dir = fixtures().join("hf/gemma3");
    let mut model = load_model(&dir, &device, &LoadOptions::default()).unwrap().model;
    // Switch to a hybrid layout; the saved config must carry it.
    let mut config: ModelConfig = model.config.clone();
    config.attention_pattern = Some("SFHF".into());
    config.kv_head_types = Some([("2".to_string(), vec!["full_attention".into(), "sliding_attention".into()])].into());
    model = swiattn_core::checkpoint::load_weights(
        swiattn_core::model::Transformer::new(config, &device).unwrap(),
        &SafetensorsSource::open(&dir).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    save_model(&model, out.path()).unwrap();
    let reloaded = load_model(out.path(), &device, &LoadOptions::default()).unwrap().model;
    assert_eq!(reloaded.arch, model.arch);
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new((0..26).map(|i| (i * 7 % 97) as i64).collect::<Vec<_>>(), [2, 13]),
        &device,
    );
    let a = model.forward(tokens.clone(), &Routes::none()).unwrap();
    let b = reloaded.forward(tokens, &Routes::none()).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

fn load_error(path: &Path) -> String {
    load_model(path, &test_device(), &LoadOptions::default()).unwrap_err().to_string()
}

/// A copy of a fixture with its config.json edited.
fn with_config(fixture: &str, edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let src = fixtures().join("hf").join(fixture);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}

/// A copy of a GGUF file whose u32 metadata `key` holds `value` instead.
fn gguf_with_u32(path: &Path, key: &str, value: u32) -> tempfile::NamedTempFile {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(key.len()).position(|w| w == key.as_bytes()).expect("the key is in the file") + key.len();
    assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes(), "{key} is a u32");
    bytes[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
    let out = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(out.path(), bytes).unwrap();
    out
}

#[test]
fn bad_inputs_give_one_clear_error() {
    let missing = load_error(Path::new("/nonexistent/model.gguf"));
    assert!(missing.contains("/nonexistent/model.gguf"), "{missing}");

    let shape = with_config("llama", |c| c["intermediate_size"] = 50.into());
    let e = load_error(shape.path());
    assert!(e.contains("model.safetensors") && e.contains("mlp.") && e.contains("[48, 32]"), "{e}");

    let layer = with_config("gemma3", |c| c["layer_types"][1] = "global_attention".into());
    let e = load_error(layer.path());
    assert!(e.contains("config.json") && e.contains("layer_types[1]") && e.contains("global_attention"), "{e}");

    let window = with_config("gemma3", |c| c["sliding_window"] = 0.into());
    let e = load_error(window.path());
    assert!(e.contains("config.json") && e.contains("sliding_window") && e.contains("at least 1"), "{e}");

    let pattern = with_config("llama", |c| c["attention_pattern"] = "FSX".into());
    let e = load_error(pattern.path());
    assert!(e.contains("attention_pattern") && e.contains("`X`"), "{e}");

    let unsupported = GgufFile::open(&fixtures().join("gguf/unsupported.gguf")).unwrap();
    let e = unsupported.dequantize("Q2_K").unwrap_err().to_string();
    assert!(e.contains("unsupported.gguf") && e.contains("Q2_K") && e.contains("unsupported GGML tensor type"), "{e}");

    // Configs that disagree with their weights are refused from the headers, before allocating.
    let fewer = with_config("llama", |c| c["num_hidden_layers"] = 3.into());
    let e = load_error(fewer.path());
    assert!(
        e.contains("model.layers.3.self_attn.q_proj.weight") && e.contains("more layers than the config's 3"),
        "{e}"
    );
    // A type error names its key, nested ones by their path.
    let theta = with_config("llama", |c| c["rope_theta"] = "big".into());
    let e = load_error(theta.path());
    assert!(e.contains("config.json") && e.contains("`rope_theta`") && e.contains("expected f64"), "{e}");
    let factor = with_config("llama", |c| {
        c["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": "twice"});
    });
    let e = load_error(factor.path());
    assert!(e.contains("`rope_scaling.factor`"), "{e}");
    let deep = with_config("llama", |c| c["num_hidden_layers"] = (1u64 << 40).into());
    let e = load_error(deep.path());
    assert!(e.contains("config.json") && e.contains("num_hidden_layers") && e.contains("at most 4096"), "{e}");
    let huge = with_config("llama", |c| c["hidden_size"] = (1u64 << 32).into());
    let e = load_error(huge.path());
    assert!(e.contains("model.embed_tokens.weight") && e.contains("does not match the config"), "{e}");
    for (key, value, wants) in [
        ("llama.embedding_length", 1u32 << 31, "hidden_size`: a weight of more than 1099511627776 elements"),
        ("llama.embedding_length", 1u32 << 20, "model.embed_tokens.weight"),
        ("llama.block_count", 1 << 30, "`llama.block_count`: 1073741824, but the file holds 4 blocks"),
        ("llama.block_count", 3, "`llama.block_count`: 3, but the file holds 4 blocks"),
    ] {
        let path = gguf_with_u32(&fixtures().join("hf/llama.gguf"), key, value);
        let e = load_error(path.path());
        assert!(e.contains(&path.path().display().to_string()) && e.contains(wants), "{key} = {value}: {e}");
    }

    let not_gguf = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(not_gguf.path(), b"GGML garbage").unwrap();
    let e = load_error(not_gguf.path());
    assert!(e.contains("not a GGUF file"), "{e}");
}
