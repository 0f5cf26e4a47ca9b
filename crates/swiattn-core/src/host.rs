//! Reading tensors back to the host: one place for the conversion and its error, so that every
//! read-back (a score, a token, a route) says what could not be read instead of panicking.

use burn::tensor::{Int, Tensor};

use crate::{Error, Result};

/// The values of a float tensor as fp32, row-major; `what` names them in the error.
pub fn floats<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec()
        .map_err(|e| Error::Invalid(format!("{what} could not be read: {e:?}")))
}

/// The values of an int tensor, row-major; `what` names them in the error.
pub fn ints<const D: usize>(t: Tensor<D, Int>, what: &str) -> Result<Vec<i64>> {
    t.into_data()
        .convert::<i64>()
        .try_into_vec()
        .map_err(|e| Error::Invalid(format!("{what} could not be read: {e:?}")))
}
