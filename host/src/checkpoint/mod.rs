//! Checkpoints: durable, portable, signed snapshots of a run at a task boundary.
//!
//! Where things are, by file:
//! - `layout.rs`: the paths of a checkpoint directory;
//! - `write.rs`: [`CheckpointStore`], where a checkpoint is written;
//! - `read.rs`: [`load`], where one is read back and verified;
//! - `directory.rs`: the directory lock, [`list`], [`latest`], [`prune`];
//! - `signing.rs`: the key that signs commit records;
//! - `schema/`: the versioned file types (`v1`, `v2`) and their conversions;
//! - `format.rs`: the `.ctx` container, the only place that knows bincode;
//! - `crate::storage::fsutil`: durable, no-clobber file writes.
//!
//! A checkpoint is full (schema 2) or an increment (schema 3): the run state
//! and the channel keys changed since a full checkpoint of the same run, its
//! base, which the increment's signed record names by digest (see
//! `schema/v3.rs`; [`CheckpointStore`] decides which to write).
//!
//! Every file is written durably (temp file, fsync, link that never replaces,
//! fsync of the directory) and carries the checkpoint id. The commit record
//! (`.meta.json`) is written last, records the size and SHA-256 of the other
//! two files and is signed (HMAC-SHA256): a checkpoint without it, or whose
//! files do not match it, is torn and is reported, never loaded; one whose
//! signature does not verify is refused unless the user trusts it explicitly.

pub mod directory;
pub mod format;
pub(crate) use crate::storage::fsutil;
pub mod layout;
pub mod read;
pub mod records;
pub mod remote;
pub mod schema;
pub mod signing;
pub mod write;

pub use directory::{DirLock, Pruned, Retention, Summary, latest, list, prune, retain};
pub use layout::{DEFAULT_DIR, base_of, root_of, with_ext};
pub use read::{Base, Loaded, SignatureStatus, Trust, load, read_meta};
pub use schema::{Context, Meta, StateFile};
pub use signing::SigningKey;
pub use write::CheckpointStore;

use crate::digest::Sha256;
use std::path::{Path, PathBuf};

/// Why a checkpoint could not be written, found or loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// No checkpoint at that path.
    #[error("no checkpoint at {path} (expected {path}.meta.json)")]
    NotFound {
        /// The base path looked at.
        path: PathBuf,
    },
    /// A directory was named where a checkpoint was expected.
    #[error("{path} is a checkpoint directory, not a checkpoint: pass --latest to resume its newest checkpoint")]
    IsDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// The checkpoint directory does not exist.
    #[error(
        "there is no checkpoint directory {dir} here (runs write checkpoints to ./checkpoints, or to the directory --checkpoint-dir names: name that one)"
    )]
    NoDirectory {
        /// The directory.
        dir: PathBuf,
    },
    /// No checkpoint in a directory.
    #[error("no checkpoint in {dir}")]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
    /// Files exist but the commit record is missing or does not match them.
    #[error("checkpoint {path} is torn (its write did not finish, or a file was changed): {reason}")]
    Torn {
        /// The base path.
        path: PathBuf,
        /// What is missing or does not match.
        reason: String,
    },
    /// The signature does not verify and the user did not trust it.
    #[error(
        "checkpoint {path} is not trusted: {reason}; pass --trust-unsigned to resume it anyway (what it would run and grant is printed first)"
    )]
    Untrusted {
        /// The base path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file cannot be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A bounded read failed (too large, not a file, unreadable).
    #[error(transparent)]
    Read(Box<crate::files::ReadError>),
    /// The disk (or quota) is full.
    #[error(
        "no space left on the device writing {path}{}",
        if *needed > 0 { format!(": the checkpoint needs about {needed} bytes") } else { String::new() }
    )]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// About how many bytes the file needed (0: small).
        needed: u64,
    },
    /// A JSON file does not parse or lacks fields.
    #[error("{path}: corrupt JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// Written by a schema version this host does not read.
    #[error("{path}: schema version {found}, but this graflow-host reads versions {}", schema::readable_versions())]
    Schema {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: String,
    },
    /// The `.ctx` file is damaged or invalid.
    #[error("{path}")]
    Context {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        error: format::FormatError,
    },
    /// The files of a checkpoint belong to different checkpoints.
    #[error("{path}: belongs to checkpoint '{found}', not '{expected}'")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The id the commit record names.
        expected: String,
        /// The id in the file.
        found: String,
    },
    /// The module store refused to store or give back code.
    #[error(transparent)]
    Store(Box<crate::module_store::StoreError>),
    /// A module the workflow records was not loaded by this run.
    #[error("module '{module}' (sha256 {sha256}) is not loaded in this run, so its code cannot be stored")]
    ModuleNotLoaded {
        /// The module.
        module: String,
        /// Its digest.
        sha256: Sha256,
    },
    /// A file or folder of the checkpoint directory that is a link, a FIFO or
    /// a device, where the host writes or locks.
    #[error("{path} is not a regular file or folder (a link, FIFO or device); refusing to use it")]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// A checkpoint that does not sit in `<dir>/<session>/<id>`.
    #[error(
        "checkpoint {path} is not inside a checkpoint directory: expected <dir>/{session}/<id> (resume writes new checkpoints beside it)"
    )]
    NotInDirectory {
        /// The checkpoint.
        path: PathBuf,
        /// Its session.
        session: String,
    },
    /// An id that is not a plain file name.
    #[error("'{id}' is not a valid session id (1 to 128 of A-Z a-z 0-9 _ . -)")]
    BadId {
        /// The id.
        id: String,
    },
    /// The signing key could not be had.
    #[error(transparent)]
    Key(#[from] signing::KeyError),
    /// The bucket (or the folder, through [`crate::storage`]) refused.
    #[error(transparent)]
    Storage(Box<crate::storage::StorageError>),
}

impl From<crate::storage::StorageError> for CheckpointError {
    fn from(e: crate::storage::StorageError) -> Self {
        CheckpointError::Storage(Box::new(e))
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}
