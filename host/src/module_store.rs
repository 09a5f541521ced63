//! Module code by content: [`ModuleBytes`] (bytes with their digest, computed
//! once when the bytes are read) and [`ModuleStore`], the content-addressed
//! folder `<checkpoint dir>/modules/<sha256>.wasm` that checkpoints refer to.
//!
//! Invariants: a `ModuleBytes` always holds bytes whose SHA-256 is its digest;
//! the store only ever hands out bytes it has verified against the digest they
//! are filed under, and never replaces a file it holds.

use crate::digest::Sha256;
use crate::files::{self, ReadError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default of `[workflow.bounds].max_module_bytes`: the largest module file read.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 512 << 20;

/// A module's bytes and their digest. Cloning shares the bytes.
#[derive(Clone)]
pub struct ModuleBytes {
    digest: Sha256,
    bytes: Arc<[u8]>,
}

impl std::fmt::Debug for ModuleBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModuleBytes({:?}, {} bytes)", self.digest, self.bytes.len())
    }
}

impl ModuleBytes {
    /// Wrap `bytes`, computing their digest.
    pub fn new(bytes: Vec<u8>) -> ModuleBytes {
        ModuleBytes { digest: Sha256::of(&bytes), bytes: bytes.into() }
    }

    /// Read the module file at `path`, refusing files over `limit` bytes.
    pub fn read(path: &Path, limit: u64) -> Result<ModuleBytes, ReadError> {
        Ok(ModuleBytes::new(files::read_bounded(path, limit, "max_module_bytes")?))
    }

    /// The digest of the bytes.
    pub fn digest(&self) -> Sha256 {
        self.digest
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Their length.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// True for no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Why the store could not put or get module bytes. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No copy of that digest.
    #[error("no copy of module sha256 {digest} in {}", path.display())]
    Missing {
        /// The digest looked for.
        digest: Sha256,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The copy's bytes do not have the digest it is filed under.
    #[error("{} is damaged: its sha256 is {found}, not {digest}", path.display())]
    Corrupt {
        /// The digest it is filed under.
        digest: Sha256,
        /// The digest of its bytes.
        found: Sha256,
        /// The file.
        path: PathBuf,
    },
    /// The copy cannot be read (or is too large, or not a file).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The copy cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A content-addressed folder of module files.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    dir: PathBuf,
}

impl ModuleStore {
    /// The store in `dir` (created on the first put).
    pub fn new(dir: impl Into<PathBuf>) -> ModuleStore {
        ModuleStore { dir: dir.into() }
    }

    /// The store of a checkpoint directory: `<root>/modules`.
    pub fn of_checkpoints(root: &Path) -> ModuleStore {
        ModuleStore::new(root.join("modules"))
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the bytes of `digest` are kept.
    pub fn path(&self, digest: &Sha256) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    /// True if a copy of `digest` is present (not verified).
    pub fn contains(&self, digest: &Sha256) -> bool {
        self.path(digest).is_file()
    }

    /// Store `module` durably under its digest. A copy already present is kept
    /// (content addressing: same digest, same bytes; `get` verifies).
    pub fn put(&self, module: &ModuleBytes) -> Result<(), StoreError> {
        let path = self.path(&module.digest());
        if path.is_file() {
            return Ok(());
        }
        let write = |source| StoreError::Write { path: path.clone(), source };
        crate::checkpoint::fsutil::create_dir_durable(&self.dir).map_err(write)?;
        match crate::checkpoint::fsutil::write_durable_new(&path, module.bytes()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(write(e)),
        }
    }

    /// The verified bytes of `digest`; `size` is the size recorded with the
    /// digest (a copy of another size is refused before it is read).
    pub fn get(&self, digest: &Sha256, size: u64) -> Result<ModuleBytes, StoreError> {
        let path = self.path(digest);
        let bytes = match files::read_bounded(&path, size, "the module size the checkpoint recorded") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(StoreError::Missing { digest: *digest, path }),
            Err(e) => return Err(e.into()),
        };
        let module = ModuleBytes::new(bytes);
        if module.digest() != *digest {
            return Err(StoreError::Corrupt { digest: *digest, found: module.digest(), path });
        }
        Ok(module)
    }

    /// The digests of every copy present (files with other names are ignored).
    pub fn list(&self) -> std::io::Result<Vec<Sha256>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(d) = name.to_str().and_then(|n| n.strip_suffix(".wasm")).and_then(|h| h.parse().ok()) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove the copy of `digest` (absent is fine).
    pub fn remove(&self, digest: &Sha256) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::new(dir.path().join("modules"));
        let m = ModuleBytes::new(b"\0asm module".to_vec());
        store.put(&m).unwrap();
        store.put(&m).unwrap();
        assert_eq!(store.get(&m.digest(), m.len()).unwrap().bytes(), m.bytes());
        assert_eq!(store.list().unwrap(), vec![m.digest()]);
        std::fs::write(store.path(&m.digest()), b"\0asm modulX").unwrap();
        assert!(matches!(store.get(&m.digest(), m.len()), Err(StoreError::Corrupt { .. })));
        assert!(matches!(store.get(&m.digest(), 3), Err(StoreError::Read(ReadError::TooLarge { .. }))));
        let other = Sha256::of(b"x");
        assert!(matches!(store.get(&other, 10), Err(StoreError::Missing { .. })));
    }
}
