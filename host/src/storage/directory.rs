//! [`Storage`] in a folder of this machine: each key a file under the root,
//! created durably and never replaced (`checkpoint::fsutil`).

use super::{ObjectInfo, Storage, StorageError, check_key};
use std::path::{Path, PathBuf};

/// The lock file of a checkpoint directory (`checkpoint::DirLock`): not an
/// object.
pub const LOCK_FILE: &str = ".lock";

/// A folder as [`Storage`].
#[derive(Debug, Clone)]
pub struct Directory {
    root: PathBuf,
}

impl Directory {
    /// The storage rooted at `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Directory {
        Directory { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { name: path.display().to_string(), source }
}

impl Storage for Directory {
    fn name(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn get(&self, key: &str, limit: u64, bound: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        match crate::files::read_bounded(&path, limit, "the reader's bound") {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(crate::files::ReadError::TooLarge { size, limit, .. }) => {
                Err(StorageError::TooLarge { name: path.display().to_string(), size, limit, bound: bound.into() })
            }
            Err(e) => Err(StorageError::Io { name: path.display().to_string(), source: std::io::Error::other(e) }),
        }
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            super::fsutil::create_dir_durable(dir).map_err(io_error(dir))?;
        }
        match super::fsutil::write_durable_new(&path, bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists { name: path.display().to_string() })
            }
            other => other.map_err(io_error(&path)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out = Vec::new();
        // Two levels deep at most below a session folder (`feedback/`):
        // every key this host writes is at most three segments.
        fn walk(dir: &Path, rel: &str, depth: u32, out: &mut Vec<ObjectInfo>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
                if name.starts_with(".tmp-") || name == LOCK_FILE {
                    continue;
                }
                let key = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                let Ok(t) = e.file_type() else { continue };
                if t.is_dir() && depth < 3 {
                    walk(&e.path(), &key, depth + 1, out);
                } else if t.is_file()
                    && let Ok(m) = e.metadata()
                {
                    out.push(ObjectInfo {
                        key,
                        size: m.len(),
                        modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
                    });
                }
            }
        }
        walk(&self.root, "", 1, &mut out);
        out.retain(|o| o.key.starts_with(prefix));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&path)(e)),
            _ => Ok(()),
        }
    }
}
