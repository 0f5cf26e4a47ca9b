//! One error type for everything a user can get wrong: files, fields, shapes, layer types.
//!
//! Every variant names the file, field or tensor it is about, so that a bad input produces one
//! readable line instead of a panic deep inside a tensor op.

use std::path::PathBuf;

/// Errors raised by `swiattn-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is missing, malformed or unsupported.
    #[error("{origin}: field `{field}`: {message}")]
    Config {
        /// The file (or "model config" when built in code) the field came from.
        origin: String,
        field: String,
        message: String,
    },
    /// A checkpoint tensor is missing, has the wrong shape or an unsupported type.
    #[error("{file}: tensor `{tensor}`: {message}")]
    Checkpoint { file: String, tensor: String, message: String },
    /// A checkpoint file is malformed as a whole (bad header, truncated, unknown format).
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// A tensor passed to a public function has the wrong shape.
    #[error("{what}: expected shape {expected}, got {actual:?}")]
    Shape { what: String, expected: String, actual: Vec<usize> },
    /// A request that is well formed but not valid for this model or backend.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn config(origin: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { origin: origin.into(), field: field.into(), message: message.into() }
    }

    pub fn checkpoint(file: impl Into<String>, tensor: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Checkpoint { file: file.into(), tensor: tensor.into(), message: message.into() }
    }

    pub fn format(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Format { file: file.into(), message: message.into() }
    }

    pub fn shape(what: impl Into<String>, expected: impl Into<String>, actual: &[usize]) -> Self {
        Error::Shape { what: what.into(), expected: expected.into(), actual: actual.to_vec() }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
