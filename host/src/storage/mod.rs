//! Where checkpoint directories live: a folder on this machine
//! ([`Directory`]) or a prefix of an S3 or S3-compatible bucket ([`Bucket`]),
//! named on the command line as a path or as `s3://bucket/prefix`
//! ([`Location`]).
//!
//! Both are [`Storage`]: named objects (`modules/<sha256>.wasm`,
//! `<session>/<id>.meta.json`, `<session>/feedback/<id>.answer.json`, ...)
//! that are created once and never replaced ([`Storage::put_new`]), read with
//! a bound ([`Storage::get`]), listed and deleted. The feedback desk reads and
//! writes through it; checkpoints are committed in the directory (or, for a
//! bucket, in its working copy on this machine, see [`Bucket::mirror`]) and
//! published to the bucket by `checkpoint::remote`.
//!
//! Invariant: a key is relative, `/`-separated, and each segment is a valid
//! file name (no `..`, no empty segment): [`check_key`] refuses others, so a
//! key never leaves the directory or the prefix.

pub mod bucket;
pub mod directory;
pub mod fsutil;

pub use bucket::{Bucket, BucketUrl, Settings};
pub use directory::Directory;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// One object of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key, relative to the storage's root.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// Why a storage operation failed. Each names the object (a path, or an
/// `s3://` URL without credentials).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A create-only write found the object there already.
    #[error("{name} exists already (objects are created once, never replaced)")]
    AlreadyExists {
        /// The object.
        name: String,
    },
    /// An object larger than the bound its reader gives.
    #[error("{name} has {size} bytes, over the bound {bound} = {limit} bytes")]
    TooLarge {
        /// The object.
        name: String,
        /// Its size (or the bytes read before giving up).
        size: u64,
        /// The bound.
        limit: u64,
        /// The bound's name.
        bound: String,
    },
    /// An object that does not have the size its reader was told (a
    /// commit record's).
    #[error("{name} has {found} bytes, not the {expected} it should have")]
    WrongSize {
        /// The object.
        name: String,
        /// Its size.
        found: u64,
        /// The size expected.
        expected: u64,
    },
    /// A file of a directory cannot be read or written.
    #[error("{name}")]
    Io {
        /// The file.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bucket refused or did not answer.
    #[error("{name}: {message}")]
    Bucket {
        /// The object or bucket.
        name: String,
        /// What the service (or the client) said.
        message: String,
    },
    /// A bucket URL or its configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// A key that could leave the storage's root.
    #[error("'{0}' is not a valid object key")]
    BadKey(String),
}

impl StorageError {
    /// True if a read found no object.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Named objects, created once. See the module documentation.
pub trait Storage: Send + Sync {
    /// How `key` is named in messages (a path, an `s3://` URL).
    fn name(&self, key: &str) -> String;
    /// The object `key`, if there is one; refused without reading it whole if
    /// it has more than `limit` bytes (`bound` names the limit).
    fn get(&self, key: &str, limit: u64, bound: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Create `key` with `bytes`, durably; [`StorageError::AlreadyExists`]
    /// (writing nothing) if it exists.
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Every object whose key starts with `prefix` (a folder: `"<session>/"`,
    /// or `""` for all), in no particular order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// Remove `key` (nothing if it is not there).
    fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// Refuse a key that is absolute, empty, has an empty, `.` or `..` segment,
/// or a character other than `A-Z a-z 0-9 _ . -` and `/` between segments.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        });
    if ok { Ok(()) } else { Err(StorageError::BadKey(key.chars().take(200).collect())) }
}

/// Where a checkpoint directory is: a folder, or a bucket prefix.
#[derive(Clone)]
pub enum Location {
    /// A folder on this machine.
    Dir(PathBuf),
    /// A prefix of a bucket (checkpoints are committed in its working copy,
    /// then published).
    Bucket(Arc<Bucket>),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "Dir({})", p.display()),
            Location::Bucket(b) => write!(f, "Bucket({})", b.url()),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "{}", p.display()),
            Location::Bucket(b) => write!(f, "{}", b.url()),
        }
    }
}

/// True if `text` names a bucket (`s3://`).
pub fn is_bucket_url(text: &Path) -> bool {
    text.to_str().is_some_and(|s| s.starts_with("s3://"))
}

impl Location {
    /// The location `text` names: `s3://bucket/prefix` is a bucket (opened
    /// with the AWS environment and profile, see [`Bucket::open`]), anything
    /// else a folder.
    pub fn parse(text: &Path) -> Result<Location, StorageError> {
        if !is_bucket_url(text) {
            if text.to_str().is_some_and(|s| s.contains("://")) {
                return Err(StorageError::Config(format!(
                    "'{}' is not a folder or an s3:// URL (only S3 and S3-compatible buckets are supported)",
                    crate::redacted_url(&text.to_string_lossy())
                )));
            }
            return Ok(Location::Dir(text.to_path_buf()));
        }
        let url = text.to_str().unwrap_or_default();
        Ok(Location::Bucket(Arc::new(Bucket::open(BucketUrl::parse(url)?)?)))
    }

    /// The folder checkpoints are committed in: the directory itself, or the
    /// bucket's working copy on this machine.
    pub fn local_root(&self) -> &Path {
        match self {
            Location::Dir(p) => p,
            Location::Bucket(b) => b.mirror(),
        }
    }

    /// The bucket, if this is one.
    pub fn bucket(&self) -> Option<&Arc<Bucket>> {
        match self {
            Location::Dir(_) => None,
            Location::Bucket(b) => Some(b),
        }
    }

    /// This location as [`Storage`].
    pub fn storage(&self) -> Arc<dyn Storage> {
        match self {
            Location::Dir(p) => Arc::new(Directory::new(p.clone())),
            Location::Bucket(b) => b.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_leave_the_root() {
        for bad in ["", "/a", "a//b", "../a", "a/../b", "a/./b", "a/", "a b", "a\\b", "a/\0"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["modules/abc.wasm", "s1/s1_3_1.meta.json", "s/feedback/0123.answer.json"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn only_s3_urls_are_buckets() {
        assert!(matches!(Location::parse(Path::new("checkpoints")), Ok(Location::Dir(_))));
        let err = Location::parse(Path::new("gs://user:secret@b/p")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("only S3") && !err.contains("secret"), "{err}");
    }
}
