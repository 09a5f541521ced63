//! Where the files of a checkpoint directory are:
//!
//! ```text
//! <dir>/.lock                            locked while a run, a resume or a prune changes the directory
//! <dir>/modules/<sha256>.wasm            every module any checkpoint refers to, stored once
//! <dir>/<session>/<id>.ctx               the whole host context, or for an increment the run
//!                                        state and the channel changes since its base, a full
//!                                        checkpoint in the same folder (see format.rs)
//! <dir>/<session>/<id>.state.json        readable summary: queue, counters, module table
//! <dir>/<session>/<id>.meta.json         the commit record, written last, signed
//! ```

use std::path::{Path, PathBuf};

/// The default checkpoint directory (relative to the working directory).
pub const DEFAULT_DIR: &str = "checkpoints";

/// The lock file of a checkpoint directory.
pub use crate::storage::directory::LOCK_FILE;

/// `<base>.<ext>`.
pub fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// The base path of a checkpoint named by any of its files or its base.
pub fn base_of(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    for ext in [".meta.json", ".state.json", ".ctx"] {
        if let Some(base) = s.strip_suffix(ext) {
            return PathBuf::from(base);
        }
    }
    path.to_path_buf()
}

/// The checkpoint directory a checkpoint belongs to (`<dir>` of `<dir>/<session>/<id>`).
pub fn root_of(base: &Path) -> PathBuf {
    match base.parent().and_then(Path::parent) {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
