//! Checkpoints: reading weights from Hugging Face safetensors (single or sharded) and GGUF,
//! writing safetensors, and the one mapping between checkpoint keys and module parameters.
//!
//! Module field names *are* the Hugging Face keys (`model.layers.3.mlp.up_proj.weight`), so
//! loading walks the module tree with a [`burn::module::ModuleMapper`], asks a [`WeightSource`]
//! for each parameter by its path, checks the shape, and transposes the weights of `Linear`
//! layers (burn stores `[in, out]`, checkpoints `[out, in]`). Saving walks the same tree the other
//! way.

pub mod gguf;
pub mod safetensors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, Tensor, TensorData};

use crate::model::{Allocation, ModelConfig, Transformer};
use crate::{Error, Result};

/// A dense fp32 tensor on the host, in checkpoint (PyTorch) layout.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Somewhere named tensors can be read from, in Hugging Face naming and layout.
pub trait WeightSource {
    /// The file (or directory) the tensors come from, for error messages.
    fn origin(&self) -> String;
    /// Read a tensor, `None` if the checkpoint has no tensor of that name.
    fn read(&self, name: &str) -> Result<Option<HostTensor>>;
    /// A tensor's shape from the file's header alone, `None` if there is no tensor of that name.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
}

/// Options for loading a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Dtype of the parameters on the device (checkpoints are converted on load).
    pub dtype: DType,
    /// Replace every layer's attention with this pattern (see [`ModelConfig::attention_pattern`]).
    pub attention_pattern: Option<String>,
    /// Replace the sliding window of every windowed layer.
    pub sliding_window: Option<usize>,
    /// Apply a static allocation artifact (per-layer or per-KV-head FA/SWA).
    pub allocation: Option<Allocation>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { dtype: DType::F32, attention_pattern: None, sliding_window: None, allocation: None }
    }
}

impl LoadOptions {
    /// `config` with this load's attention overrides applied and validated.
    fn apply(&self, mut config: ModelConfig) -> Result<ModelConfig> {
        if let Some(allocation) = &self.allocation {
            if self.attention_pattern.is_some() {
                return Err(Error::Invalid("give either an attention pattern or an allocation, not both".into()));
            }
            config = allocation.apply(config)?;
        }
        if let Some(pattern) = &self.attention_pattern {
            config.attention_pattern = Some(pattern.clone());
            config.attention_types = None;
        }
        if let Some(w) = self.sliding_window {
            config.sliding_window = Some(w);
        }
        config.resolve("model config with the requested attention")?;
        Ok(config)
    }
}

/// A loaded model and where it came from.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Transformer,
    /// The tokenizer shipped with the checkpoint (`tokenizer.json` beside safetensors, or the
    /// vocabulary inside a GGUF file), when there is one.
    pub tokenizer: Option<tokenizers::Tokenizer>,
    pub path: PathBuf,
}

/// Load a model from a GGUF file or a Hugging Face directory (`config.json` + safetensors).
pub fn load_model(path: &Path, device: &burn::tensor::Device, options: &LoadOptions) -> Result<LoadedModel> {
    if !path.exists() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory")));
    }
    if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
        let file = gguf::GgufFile::open(path)?;
        let config = options.apply(gguf::config_from_gguf(&file)?)?;
        let tokenizer = gguf::tokenizer_from_gguf(&file).ok();
        let source = gguf::GgufSource::new(file, &config)?;
        check_sizes(&config, &source)?;
        let model = load_weights(Transformer::new(config, device)?, &source, options)?;
        return Ok(LoadedModel { model, tokenizer, path: path.to_path_buf() });
    }
    let dir = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")) };
    let config = options.apply(ModelConfig::from_file(&dir.join("config.json"))?)?;
    let source = safetensors::SafetensorsSource::open(path)?;
    check_sizes(&config, &source)?;
    let model = load_weights(Transformer::new(config, device)?, &source, options)?;
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer =
        if tokenizer_path.exists() { Some(crate::tokenizer::load_tokenizer(&tokenizer_path)?) } else { None };
    Ok(LoadedModel { model, tokenizer, path: path.to_path_buf() })
}

/// Check, from `source`'s headers alone, the tensors whose shapes fix how much a model of `config`
/// allocates — the embeddings, an untied LM head, the projections of its first and last layers —
/// and that the checkpoint has no layer past its last: a config (or GGUF metadata) that disagrees
/// with its weights is then one error naming the tensor, before a model of the wrong size (maybe
/// terabytes) is allocated. [`load_weights`] still checks every tensor as it loads it.
pub fn check_sizes(config: &ModelConfig, source: &dyn WeightSource) -> Result<()> {
    let arch = config.resolve(&source.origin())?;
    let (hidden, inter, d) = (arch.hidden_size, arch.intermediate_size, arch.head_dim);
    let (q, kv) = (arch.num_heads * d, arch.num_kv_heads * d);
    let layers = arch.layers.len();
    let mut want = vec![("model.embed_tokens.weight".to_string(), vec![arch.vocab_size, hidden])];
    if !arch.tie_word_embeddings {
        want.push(("lm_head.weight".to_string(), vec![arch.vocab_size, hidden]));
    }
    for layer in [0, layers - 1] {
        let at = |name: &str| format!("model.layers.{layer}.{name}.weight");
        want.extend([
            (at("self_attn.q_proj"), vec![q, hidden]),
            (at("self_attn.k_proj"), vec![kv, hidden]),
            (at("self_attn.v_proj"), vec![kv, hidden]),
            (at("self_attn.o_proj"), vec![hidden, q]),
            (at("mlp.gate_proj"), vec![inter, hidden]),
            (at("mlp.up_proj"), vec![inter, hidden]),
            (at("mlp.down_proj"), vec![hidden, inter]),
        ]);
    }
    let origin = source.origin();
    for (name, want) in want {
        match source.shape(&name) {
            None => return Err(Error::checkpoint(&origin, &name, "missing from the checkpoint")),
            Some(shape) if shape != want => {
                return Err(Error::checkpoint(
                    &origin,
                    &name,
                    format!("shape {shape:?} does not match the config, which implies {want:?}"),
                ));
            }
            Some(_) => {}
        }
    }
    let past = format!("model.layers.{layers}.self_attn.q_proj.weight");
    if source.shape(&past).is_some() {
        return Err(Error::checkpoint(
            &origin,
            &past,
            format!("the checkpoint has more layers than the config's {layers} (num_hidden_layers / block_count)"),
        ));
    }
    Ok(())
}

/// Replace every parameter of `model` with the tensor of the same name from `source`.
///
/// Errors name the file and tensor: a missing tensor, or one whose shape differs from what the
/// model config implies.
pub fn load_weights<M: Module>(model: M, source: &dyn WeightSource, options: &LoadOptions) -> Result<M> {
    load_weights_with_ids(model, source, options, None)
}

/// [`load_weights`], giving each parameter the id it had when saved (`ids`, from
/// [`param_ids`]): optimizer states are keyed by parameter id, so resuming training needs them.
pub fn load_weights_with_ids<M: Module>(
    model: M,
    source: &dyn WeightSource,
    options: &LoadOptions,
    ids: Option<&BTreeMap<String, u64>>,
) -> Result<M> {
    let mut loader = Loader { source, dtype: options.dtype, ids, path: Vec::new(), error: None };
    let model = model.map(&mut loader);
    match loader.error {
        Some(e) => Err(e),
        None => Ok(model),
    }
}

/// The id of every parameter of `model`, by checkpoint name.
pub fn param_ids<M: Module>(model: &M) -> BTreeMap<String, u64> {
    struct Ids {
        path: ModulePath,
        out: BTreeMap<String, u64>,
    }
    impl ModuleVisitor for Ids {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out.insert(param_name(&self.path), param.id.val());
        }
    }
    let mut ids = Ids { path: Vec::new(), out: BTreeMap::new() };
    model.visit(&mut ids);
    ids.out
}

/// Every parameter of `model` by checkpoint name, in checkpoint layout, as raw tensor data in the
/// parameter's dtype.
pub fn named_tensors<M: Module>(model: &M) -> Vec<(String, TensorData)> {
    let mut exporter = Exporter { path: Vec::new(), out: Vec::new() };
    model.visit(&mut exporter);
    exporter.out
}

/// Path of module names from the root, with the type of the struct each name is a field of.
type ModulePath = Vec<(String, String)>;

fn param_name(path: &ModulePath) -> String {
    path.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(".")
}

/// `Linear.weight` is stored transposed (`[in, out]`) in burn.
fn is_linear_weight(path: &ModulePath) -> bool {
    path.last().is_some_and(|(n, ty)| n == "weight" && ty == "Struct:Linear")
}

struct Loader<'a> {
    source: &'a dyn WeightSource,
    dtype: DType,
    ids: Option<&'a BTreeMap<String, u64>>,
    path: ModulePath,
    error: Option<Error>,
}

impl Loader<'_> {
    fn tensor<const D: usize>(&self, name: &str, dims: [usize; D], device: &burn::tensor::Device) -> Result<Tensor<D>> {
        let linear = is_linear_weight(&self.path);
        let mut want: Vec<usize> = dims.to_vec();
        if linear {
            want.reverse();
        }
        let origin = self.source.origin();
        let t =
            self.source.read(name)?.ok_or_else(|| Error::checkpoint(&origin, name, "missing from the checkpoint"))?;
        if t.shape != want {
            return Err(Error::checkpoint(
                &origin,
                name,
                format!("shape {:?} does not match the config, which implies {want:?}", t.shape),
            ));
        }
        let data = if linear { transpose(&t.data, want[0], want[1]) } else { t.data };
        Ok(Tensor::from_data(TensorData::new(data, dims), (device, self.dtype)))
    }
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let name = param_name(&self.path);
        let dims: [usize; D] = param.lazy_shape().dims();
        match self.tensor(&name, dims, &param.lazy_device()) {
            Ok(tensor) => {
                let id = self.ids.and_then(|ids| ids.get(&name)).map_or(param.id, |&id| ParamId::from(id));
                param.transform_for_load(tensor, id)
            }
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}

struct Exporter {
    path: ModulePath,
    out: Vec<(String, TensorData)>,
}

impl ModuleVisitor for Exporter {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let data = if is_linear_weight(&self.path) { value.transpose().into_data() } else { value.into_data() };
        self.out.push((param_name(&self.path), data));
    }
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Save a model as a Hugging Face directory: `config.json` and `model.safetensors` (parameters in
/// their own dtype), which [`load_model`] reloads exactly.
pub fn save_model(model: &Transformer, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config = model.config.clone().with_attention(&model.arch.layers);
    let json = serde_json::to_string_pretty(&config).expect("config serializes");
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, json).map_err(|e| Error::io(&config_path, e))?;
    safetensors::save(&named_tensors(model), &dir.join("model.safetensors"))
}
