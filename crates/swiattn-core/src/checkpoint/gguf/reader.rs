//! GGUF container parsing (versions 2 and 3): header, metadata key/values, tensor table.
//!
//! Layout: `"GGUF"`, version `u32`, tensor count `u64`, metadata count `u64`, the metadata
//! (`key: string`, `type: u32`, value), the tensor infos (`name`, `n_dims: u32`, `ne: u64 × n`,
//! `type: u32`, `offset: u64`), then the data section at the next multiple of
//! `general.alignment` (default 32). `ne[0]` is the fastest-varying dimension, so a PyTorch
//! `[out, in]` weight has `ne = [in, out]`. All little-endian.

use std::collections::BTreeMap;
use std::path::Path;

use memmap2::Mmap;

use super::dequant::GgmlType;
use crate::{Error, Result};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// GGML's most dimensions of a tensor.
const MAX_DIMS: usize = 4;

/// One entry of the tensor table.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// GGML dimensions, fastest first.
    pub ne: Vec<u64>,
    pub ggml_type: u32,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The shape in PyTorch order (slowest first).
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn elements(&self) -> usize {
        self.ne.iter().product::<u64>() as usize
    }
}

/// A memory-mapped GGUF file.
pub struct GgufFile {
    pub path: String,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    data_start: usize,
    mmap: Mmap,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| Error::format(self.file, format!("truncated: needs {n} bytes at offset {}", self.at)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String> {
        let len = self.u64()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::format(self.file, format!("string at offset {} is not UTF-8", self.at - len)))
    }
    fn value(&mut self, ty: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.u8()?),
            1 => Value::I8(self.u8()? as i8),
            2 => Value::U16(self.u16()?),
            3 => Value::I16(self.u16()? as i16),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(self.u32()? as i32),
            6 => Value::F32(f32::from_bits(self.u32()?)),
            7 => Value::Bool(self.u8()? != 0),
            8 => Value::String(self.string()?),
            9 => {
                let elem = self.u32()?;
                if elem == 9 {
                    return Err(Error::format(self.file, "arrays of arrays are not supported in GGUF metadata"));
                }
                let len = self.u64()? as usize;
                if len > self.bytes.len() {
                    return Err(Error::format(self.file, format!("array of {len} values is longer than the file")));
                }
                Value::Array((0..len).map(|_| self.value(elem)).collect::<Result<_>>()?)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_bits(self.u64()?)),
            other => {
                return Err(Error::format(self.file, format!("unknown metadata value type {other}")));
            }
        })
    }
}

impl GgufFile {
    /// Open and parse a GGUF file (the tensor data stays memory-mapped).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is opened read-only and is not modified while mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let name = path.display().to_string();
        let mut c = Cursor { bytes: &mmap, at: 0, file: &name };
        if c.take(4).map_err(|_| Error::format(&name, "not a GGUF file (too short)"))? != b"GGUF" {
            return Err(Error::format(&name, "not a GGUF file (bad magic)"));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::format(&name, format!("unsupported GGUF version {version} (2 and 3 are)")));
        }
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            metadata.insert(key, c.value(ty)?);
        }
        let mut tensors = BTreeMap::new();
        for _ in 0..n_tensors {
            let name_t = c.string()?;
            let n_dims = c.u32()?;
            if n_dims as usize > MAX_DIMS {
                let message = format!("{n_dims} dimensions (GGUF tensors have at most {MAX_DIMS})");
                return Err(Error::checkpoint(&name, &name_t, message));
            }
            let ne = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
            if ne.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).and_then(|n| usize::try_from(n).ok()).is_none() {
                return Err(Error::checkpoint(
                    &name,
                    &name_t,
                    format!("dimensions {ne:?} hold more elements than fit in memory"),
                ));
            }
            let ggml_type = c.u32()?;
            let offset = c.u64()?;
            tensors.insert(name_t.clone(), TensorInfo { name: name_t, ne, ggml_type, offset });
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v.as_u64().filter(|a| a.is_power_of_two() && *a <= 1 << 20).ok_or_else(|| {
                Error::format(&name, format!("general.alignment must be a power of two up to 2^20, got {v:?}"))
            })? as usize,
        };
        let data_start = c.at.div_ceil(alignment) * alignment;
        Ok(Self { path: name, version, metadata, tensors, data_start, mmap })
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        let ty = GgmlType::from_id(info.ggml_type).map_err(|m| Error::checkpoint(&self.path, &info.name, m))?;
        let len = ty.bytes_for(info.elements()).map_err(|m| Error::checkpoint(&self.path, &info.name, m))?;
        let range = usize::try_from(info.offset)
            .ok()
            .and_then(|offset| self.data_start.checked_add(offset))
            .and_then(|start| Some(start..start.checked_add(len)?));
        range.and_then(|range| self.mmap.get(range)).ok_or_else(|| {
            let message = format!(
                "{len} bytes at data offset {} are past the end of the file ({} bytes, data from {})",
                info.offset,
                self.mmap.len(),
                self.data_start
            );
            Error::checkpoint(&self.path, &info.name, message)
        })
    }

    /// A tensor dequantized to fp32, with its PyTorch-order shape.
    pub fn dequantize(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.tensors.get(name).ok_or_else(|| Error::checkpoint(&self.path, name, "not in the file"))?;
        let bytes = self.tensor_bytes(info)?;
        let ty = GgmlType::from_id(info.ggml_type).map_err(|m| Error::checkpoint(&self.path, name, m))?;
        let data = ty.dequantize(bytes, info.elements()).map_err(|m| Error::checkpoint(&self.path, name, m))?;
        Ok((info.shape(), data))
    }
}
