//! Hugging Face safetensors: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json` (`{"weight_map": {name: shard file}}`); F32, F16 and BF16
//! tensors are converted to fp32 on read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::{HostTensor, WeightSource};
use crate::{Error, Result};

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Start of the data section.
    data_start: usize,
    tensors: HashMap<String, (Dtype, Vec<usize>, (usize, usize))>,
}

/// The tensors of a single-file or sharded safetensors checkpoint, memory-mapped.
pub struct SafetensorsSource {
    origin: String,
    shards: Vec<Shard>,
    /// Tensor name → shard index.
    index: BTreeMap<String, usize>,
}

impl SafetensorsSource {
    /// Open `path`: a `.safetensors` file, a `model.safetensors.index.json`, or a directory that
    /// holds one of those.
    pub fn open(path: &Path) -> Result<Self> {
        let (origin, files) = if path.is_dir() {
            let index = path.join("model.safetensors.index.json");
            if index.exists() {
                (index.display().to_string(), shard_files(&index)?)
            } else {
                let single = path.join("model.safetensors");
                if !single.exists() {
                    return Err(Error::format(
                        path.display().to_string(),
                        "no model.safetensors or model.safetensors.index.json in this directory",
                    ));
                }
                (single.display().to_string(), vec![single])
            }
        } else if path.to_string_lossy().ends_with(".index.json") {
            (path.display().to_string(), shard_files(path)?)
        } else {
            (path.display().to_string(), vec![path.to_path_buf()])
        };
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for file in files {
            let shard = open_shard(&file)?;
            for name in shard.tensors.keys() {
                index.insert(name.clone(), shards.len());
            }
            shards.push(shard);
        }
        Ok(Self { origin, shards, index })
    }

    /// Names of all tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(index.display().to_string(), format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::config(index.display().to_string(), "weight_map", "missing or not an object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = map.values().filter_map(|v| v.as_str()).map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn open_shard(path: &Path) -> Result<Shard> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: opened read-only and not modified while mapped.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let (header_len, metadata) = SafeTensors::read_metadata(&mmap)
        .map_err(|e| Error::format(path.display().to_string(), format!("not a safetensors file: {e}")))?;
    let tensors = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, (info.dtype, info.shape.clone(), info.data_offsets)))
        .collect();
    Ok(Shard { path: path.to_path_buf(), mmap, data_start: 8 + header_len, tensors })
}

impl WeightSource for SafetensorsSource {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let shard = &self.shards[*self.index.get(name)?];
        Some(shard.tensors[name].1.clone())
    }

    fn read(&self, name: &str) -> Result<Option<HostTensor>> {
        let Some(&shard) = self.index.get(name) else {
            return Ok(None);
        };
        let shard = &self.shards[shard];
        let (dtype, shape, (start, end)) = &shard.tensors[name];
        let bytes = &shard.mmap[shard.data_start + start..shard.data_start + end];
        let file = shard.path.display().to_string();
        let data = match dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(Error::checkpoint(
                    file,
                    name,
                    format!("dtype {other:?} is not supported (F32, F16, BF16 are)"),
                ));
            }
        };
        Ok(Some(HostTensor { shape: shape.clone(), data }))
    }
}

/// Write named tensors to one safetensors file, each in its own dtype.
pub fn save(tensors: &[(String, TensorData)], path: &Path) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, data)| {
            let dtype = match data.dtype() {
                DType::F32 => Dtype::F32,
                DType::F16 => Dtype::F16,
                DType::BF16 => Dtype::BF16,
                other => {
                    return Err(Error::checkpoint(
                        path.display().to_string(),
                        name,
                        format!("cannot save dtype {other:?}"),
                    ));
                }
            };
            let view = TensorView::new(dtype, data.shape().to_vec(), data.as_bytes())
                .map_err(|e| Error::checkpoint(path.display().to_string(), name, e.to_string()))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize_to_file(views, metadata, path)
        .map_err(|e| Error::format(path.display().to_string(), format!("could not write: {e}")))
}
