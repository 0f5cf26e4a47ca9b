//! Paths as users write them in configs and on the command line, and files replaced whole.

use std::path::{Path, PathBuf};

/// `path` with a leading `~` meaning the home directory (`$HOME`); other paths as given.
pub fn expand_home(path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Replace `path` with `contents` through a temporary file beside it (`<name>.tmp`) renamed into
/// place, so a process killed mid-write leaves the old file whole, never a torn one.
pub fn replace_file(path: &Path, contents: impl AsRef<[u8]>) -> crate::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(|e| crate::Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| crate::Error::io(path, e))
}
