//! Paths as users write them in configs and on the command line.

use std::path::{Path, PathBuf};

/// `path` with a leading `~` meaning the home directory (`$HOME`); other paths as given.
pub fn expand_home(path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}
