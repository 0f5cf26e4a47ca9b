//! Reading tensors back to the host: one place for the conversion and its error, so that every
//! read-back (a score, a token, a route) says what could not be read instead of panicking.

use burn::tensor::{Int, Tensor};

use crate::{Error, Result};

/// The values of a float tensor as fp32, row-major; `what` names them in the error.
pub fn floats<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.try_into_data()
        .map_err(|e| unreadable(what, e))?
        .convert::<f32>()
        .try_into_vec()
        .map_err(|e| Error::Invalid(format!("{what} could not be read: {e:?}")))
}

/// The values of an int tensor, row-major; `what` names them in the error.
pub fn ints<const D: usize>(t: Tensor<D, Int>, what: &str) -> Result<Vec<i64>> {
    t.try_into_data()
        .map_err(|e| unreadable(what, e))?
        .convert::<i64>()
        .try_into_vec()
        .map_err(|e| Error::Invalid(format!("{what} could not be read: {e:?}")))
}

/// The error of a read-back whose device work failed (e.g. a buffer larger than the backend
/// allows): its root cause — the last "Caused by" of burn's chain — rather than a panic in burn.
fn unreadable(what: &str, e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let cause = lines
        .windows(2)
        .filter(|pair| pair[0] == "Caused by:")
        .map(|pair| pair[1])
        .last()
        .or(lines.first().copied())
        .unwrap_or("no reason given");
    Error::Invalid(format!("{what} could not be read back from the device: {cause}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_read_back_names_its_root_cause() {
        let chain = "An error happened during execution\nCaused by:\n  Several failures at once\nCaused by:\n  \
                     An IO error happened\nCaused by:\n  can't allocate buffer of size: 402456576\nNo backtrace available";
        let e = super::unreadable("logits", chain).to_string();
        assert_eq!(e, "logits could not be read back from the device: can't allocate buffer of size: 402456576");
        assert!(super::unreadable("x", "just this").to_string().ends_with("device: just this"));
    }
}
