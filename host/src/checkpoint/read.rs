//! Reading a checkpoint back: the commit record, its signature, then each file
//! it records, checked against its size and digest before it is decoded. An
//! increment (schema 3) is read over its base, whose `.ctx` its signed record
//! names by size and digest.

use super::layout::{base_of, with_ext};
use super::schema::{
    self, BaseRef, ContentDigest, Context, FileDigest, Meta, SchemaVersion, StateFile, Values, v1, v2,
};
use super::signing::SigningKey;
use super::{CheckpointError, format};
use crate::files::{self, ReadError};
use std::path::{Path, PathBuf};

/// Largest meta file read (it holds the task's metadata, itself bounded by
/// `max_value_bytes`).
pub const META_LIMIT: u64 = 256 << 20;

/// Largest file of a checkpoint whose signature did not verify: its commit
/// record's sizes are not trusted. (Decoding can hold up to about 24 times a
/// crafted file's size: a list of empty strings costs 1 byte each on disk.)
pub const MAX_UNTRUSTED_FILE_BYTES: u64 = 512 << 20;

/// Whether an unsigned or unverified checkpoint may be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Only checkpoints signed with this machine's key (the default).
    Signed,
    /// Any intact checkpoint (`--trust-unsigned`); every value is checked again.
    AllowUnsigned,
}

/// What the signature of a loaded checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Signed with the key in use.
    Valid {
        /// The key's id.
        key_id: String,
    },
    /// Schema 1: written before checkpoints were signed.
    Unsigned,
    /// Signed with another key.
    OtherKey {
        /// The id of the key that signed.
        key_id: String,
    },
    /// The MAC does not match the record: the record was changed after signing.
    Invalid,
}

impl SignatureStatus {
    /// Why a checkpoint with this status is not trusted (`None` if it is).
    pub fn distrust(&self, key: &SigningKey) -> Option<String> {
        match self {
            SignatureStatus::Valid { .. } => None,
            SignatureStatus::Unsigned => {
                Some("it is unsigned (schema version 1, written before checkpoints were signed)".into())
            }
            SignatureStatus::OtherKey { key_id } => Some(format!(
                "it was signed with key {key_id}, not this machine's key {} (share the key through GRAFLOW_CHECKPOINT_KEY to resume it here)",
                key.id()
            )),
            SignatureStatus::Invalid => Some(
                "its signature does not match its commit record: the checkpoint was changed after it was written"
                    .into(),
            ),
        }
    }
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureStatus::Valid { key_id } => write!(f, "valid (key {key_id})"),
            SignatureStatus::Unsigned => f.write_str("unsigned (schema version 1)"),
            SignatureStatus::OtherKey { key_id } => write!(f, "signed with another key ({key_id})"),
            SignatureStatus::Invalid => f.write_str("INVALID: changed after it was signed"),
        }
    }
}

/// A checkpoint read back and verified.
#[derive(Debug)]
pub struct Loaded {
    /// Its base path.
    pub base: PathBuf,
    /// The commit record.
    pub meta: Meta,
    /// What its signature says.
    pub signature: SignatureStatus,
    /// The readable state.
    pub state_file: StateFile,
    /// The context, in the engine's types (an increment applied to its base).
    pub context: Context,
    /// The full checkpoint later increments of this run can be written over:
    /// this one if it is full (schema 2), its base if it is an increment;
    /// `None` for schema 1.
    pub chain_base: Option<Base>,
}

/// A full checkpoint as increments are written over it: its id, its `.ctx`'s
/// digest and size, its workflow and its channel.
#[derive(Debug, Clone)]
pub struct Base {
    /// Its checkpoint id (its files are `<id>.*` in its session folder).
    pub checkpoint_id: String,
    /// Its run.
    pub session_id: String,
    /// The digest and size of its `.ctx`.
    pub ctx: FileDigest,
    /// Its workflow (an increment's too).
    pub workflow: crate::model::Workflow,
    /// Its channel.
    pub channel: std::collections::BTreeMap<String, crate::json::Json>,
}

#[derive(serde::Deserialize)]
struct VersionOnly {
    schema_version: serde_json::Value,
}

/// Read and parse the commit record of the checkpoint at `base`: the record,
/// and (schema 2) the message its MAC covers.
pub fn read_meta(base: &Path) -> Result<(Meta, Option<Vec<u8>>), CheckpointError> {
    let meta_path = with_ext(base, "meta.json");
    let bytes = match files::read_bounded(&meta_path, META_LIMIT, "the meta file size (256 MiB)") {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            if with_ext(base, "ctx").exists() || with_ext(base, "state.json").exists() {
                return Err(CheckpointError::Torn {
                    path: base.to_path_buf(),
                    reason: format!("{} is missing", meta_path.display()),
                });
            }
            return Err(CheckpointError::NotFound { path: base.to_path_buf() });
        }
        Err(e) => return Err(CheckpointError::Read(Box::new(e))),
    };
    parse_meta(&bytes, &meta_path)
}

/// Parse the commit record `bytes` (named `meta_path` in errors): the
/// record, and (schema 2 and 3) the message its MAC covers.
pub fn parse_meta(bytes: &[u8], meta_path: &Path) -> Result<(Meta, Option<Vec<u8>>), CheckpointError> {
    let meta_path = meta_path.to_path_buf();
    let json = |e: serde_json::Error| CheckpointError::Json { path: meta_path.clone(), message: e.to_string() };
    let version: VersionOnly = serde_json::from_slice(bytes).map_err(json)?;
    let number = match &version.schema_version {
        serde_json::Value::String(s) => s.parse::<u32>().ok(),
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    };
    match number.and_then(SchemaVersion::from_number) {
        Some(SchemaVersion::V1) => {
            let meta: v1::MetaV1 = serde_json::from_slice(bytes).map_err(json)?;
            Ok((meta.into(), None))
        }
        Some(version @ (SchemaVersion::V2 | SchemaVersion::V3)) => {
            let (meta, message) = v2::read_meta(bytes, version).map_err(json)?;
            Ok((meta, Some(message)))
        }
        None => {
            let found = match &version.schema_version {
                serde_json::Value::String(s) => s.chars().take(40).collect(),
                other => other.to_string().chars().take(40).collect(),
            };
            Err(CheckpointError::Schema { path: meta_path, found })
        }
    }
}

pub(crate) fn signature_of(meta: &Meta, message: Option<&[u8]>, key: &SigningKey) -> SignatureStatus {
    match (&meta.signature, message) {
        (Some(sig), Some(message)) => {
            if sig.algorithm != v2::ALGORITHM {
                SignatureStatus::Invalid
            } else if sig.key_id != key.id() {
                SignatureStatus::OtherKey { key_id: sig.key_id.chars().take(64).collect() }
            } else if key.verify(message, &sig.mac) {
                SignatureStatus::Valid { key_id: sig.key_id.clone() }
            } else {
                SignatureStatus::Invalid
            }
        }
        (None, _) if meta.schema_version == SchemaVersion::V1 => SignatureStatus::Unsigned,
        _ => SignatureStatus::Invalid,
    }
}

/// Read a file recorded in the commit record, bounded by its recorded size,
/// and check its size (and, for the state file, its digest).
fn read_recorded(
    base: &Path,
    meta: &Meta,
    key: &str,
    ext: &str,
    trusted: bool,
) -> Result<(PathBuf, Vec<u8>, ContentDigest), CheckpointError> {
    let path = with_ext(base, ext);
    let Some(recorded) = meta.files.get(key) else {
        return Err(CheckpointError::Json {
            path: with_ext(base, "meta.json"),
            message: format!("`files` has no entry `{key}`"),
        });
    };
    let bytes = read_sized(base, &path, recorded, trusted)?;
    if key == "state" && recorded.digest != ContentDigest::Sha256(crate::digest::Sha256::of(&bytes)) {
        return Err(CheckpointError::Torn {
            path: base.to_path_buf(),
            reason: format!("{} does not match the digest its commit record gives", path.display()),
        });
    }
    Ok((path, bytes, recorded.digest))
}

/// Read `path`, a file of the checkpoint at `base` that its commit record
/// gives `recorded` for, bounded by the recorded size (by
/// [`MAX_UNTRUSTED_FILE_BYTES`] when the record is not trusted), and check
/// its size.
fn read_sized(base: &Path, path: &Path, recorded: &FileDigest, trusted: bool) -> Result<Vec<u8>, CheckpointError> {
    let torn = |reason: String| CheckpointError::Torn { path: base.to_path_buf(), reason };
    let (limit, bound) = if trusted || recorded.size <= MAX_UNTRUSTED_FILE_BYTES {
        (recorded.size, "the size its commit record gives")
    } else {
        (
            MAX_UNTRUSTED_FILE_BYTES,
            "MAX_UNTRUSTED_FILE_BYTES (512 MiB, for a checkpoint whose signature did not verify)",
        )
    };
    let bytes = match files::read_bounded(path, limit, bound) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Err(torn(format!("{} is missing", path.display()))),
        Err(ReadError::TooLarge { size, .. }) if limit == recorded.size => {
            return Err(torn(format!(
                "{} does not match its commit record: it has {size} bytes, the record says {} (damaged or from another write)",
                path.display(),
                recorded.size
            )));
        }
        Err(e) => return Err(CheckpointError::Read(Box::new(e))),
    };
    if bytes.len() as u64 != recorded.size {
        return Err(torn(format!(
            "{} does not match its commit record: it has {} bytes, the record says {} (truncated or from another write)",
            path.display(),
            bytes.len(),
            recorded.size
        )));
    }
    Ok(bytes)
}

/// The `.ctx` of the base an increment at `base` names: beside it, in the
/// same session folder. `None` if the id could leave that folder.
pub fn base_ctx_path(base: &Path, base_ref: &BaseRef) -> Option<PathBuf> {
    schema::is_valid_id(&base_ref.checkpoint_id).then(|| base.with_file_name(format!("{}.ctx", base_ref.checkpoint_id)))
}

/// The `.ctx` of the base an increment at `base` names, if it is there as
/// the increment's record gives it: a regular file of the recorded size, of a
/// checkpoint that has its commit record (its digest is checked when it is
/// loaded). Shared by `list` and the writer, so that what one writes the other
/// lists.
pub fn base_present(base: &Path, base_ref: &BaseRef) -> Option<std::fs::Metadata> {
    let ctx = base_ctx_path(base, base_ref)?;
    let meta = std::fs::symlink_metadata(&ctx).ok().filter(|m| m.is_file() && m.len() == base_ref.ctx.size)?;
    std::fs::symlink_metadata(with_ext(&base_of(&ctx), "meta.json")).ok().filter(|m| m.is_file())?;
    Some(meta)
}

/// Read, verify and decode the base of the increment at `base` (session
/// `session_id`): a full schema-2 context with the id, size and digest the
/// increment's record gives.
fn load_base(
    base: &Path,
    base_ref: &BaseRef,
    session_id: &str,
    values: Values,
    trusted: bool,
) -> Result<Context, CheckpointError> {
    let Some(path) = base_ctx_path(base, base_ref) else {
        return Err(CheckpointError::Json {
            path: with_ext(base, "meta.json"),
            message: format!(
                "the base it names, '{}', is not a checkpoint id (1 to 128 of A-Z a-z 0-9 _ . -)",
                base_ref.checkpoint_id.escape_debug().take(200).collect::<String>()
            ),
        });
    };
    let torn = |reason: String| CheckpointError::Torn { path: base.to_path_buf(), reason };
    // A base without its commit record is uncommitted, as `list` and prune
    // see it (prune removes its files).
    let record = with_ext(&base_of(&path), "meta.json");
    if !std::fs::symlink_metadata(&record).is_ok_and(|m| m.is_file()) {
        return Err(torn(format!(
            "it is an increment over checkpoint {}, whose commit record {} is missing (copy a session folder whole: an increment needs the full checkpoint it was written over)",
            base_ref.checkpoint_id,
            record.display()
        )));
    }
    let bytes = match read_sized(base, &path, &base_ref.ctx, trusted) {
        Err(CheckpointError::Torn { reason, .. }) => {
            return Err(torn(format!(
                "it is an increment over checkpoint {}, and {reason} (copy a session folder whole: an increment needs the full checkpoint it was written over)",
                base_ref.checkpoint_id
            )));
        }
        other => bytes::Bytes::from(other?),
    };
    let ctx_err = |error| CheckpointError::Context { path: path.clone(), error };
    match format::decode_shared(&bytes, values, &base_ref.ctx.digest) {
        Ok((SchemaVersion::V2, format::Decoded::Full(ctx))) => {
            let ctx = *ctx;
            for (what, found, expected) in [
                ("checkpoint", &ctx.checkpoint_id, &base_ref.checkpoint_id),
                ("session", &ctx.state.session_id, &session_id.to_string()),
            ] {
                if found != expected {
                    return Err(ctx_err(format::FormatError::Decode(format!(
                        "the base of an increment must be {what} '{expected}', this is '{found}'"
                    ))));
                }
            }
            Ok(ctx)
        }
        Ok((version, _)) => Err(ctx_err(format::FormatError::Decode(format!(
            "the base of an increment must be a full checkpoint of schema version 2, this is version {version}"
        )))),
        Err(error @ (format::FormatError::Checksum | format::FormatError::NotRecorded { .. })) => Err(torn(format!(
            "the .ctx of its base {} does not match the increment's commit record ({error})",
            path.display()
        ))),
        Err(error) => Err(ctx_err(error)),
    }
}

/// Load and verify the checkpoint at `path` (its base or any of its files).
/// A checkpoint not signed by `key` is refused unless `trust` allows it; its
/// stored values are then checked again.
pub fn load(path: &Path, key: &SigningKey, trust: Trust) -> Result<Loaded, CheckpointError> {
    let base = base_of(path);
    let (meta, message) = read_meta(&base)?;
    let signature = signature_of(&meta, message.as_deref(), key);
    let distrust = signature.distrust(key);
    if let (Some(reason), Trust::Signed) = (&distrust, trust) {
        return Err(CheckpointError::Untrusted { path: base, reason: reason.clone() });
    }
    let values = if distrust.is_none() { Values::Trusted } else { Values::Check };
    let (state_path, state_bytes, _) = read_recorded(&base, &meta, "state", "state.json", distrust.is_none())?;
    let state_file: StateFile = serde_json::from_slice(&state_bytes)
        .map_err(|e| CheckpointError::Json { path: state_path.clone(), message: e.to_string() })?;
    if state_file.schema_version != meta.schema_version.to_string() {
        return Err(CheckpointError::Torn {
            path: base,
            reason: format!(
                "{} has schema version {}, its commit record {}",
                state_path.display(),
                state_file.schema_version,
                meta.schema_version
            ),
        });
    }
    let (ctx_path, ctx_bytes, ctx_digest) = read_recorded(&base, &meta, "ctx", "ctx", distrust.is_none())?;
    let ctx_err = |error| CheckpointError::Context { path: ctx_path.clone(), error };
    // One pass over the payload: verified against the record, then decoded;
    // channel values refer into the bytes read instead of copies.
    let ctx_bytes = bytes::Bytes::from(ctx_bytes);
    let (version, decoded) = format::decode_shared(&ctx_bytes, values, &ctx_digest).map_err(|error| match error {
        format::FormatError::Checksum | format::FormatError::NotRecorded { .. } => CheckpointError::Torn {
            path: base.clone(),
            reason: format!("{} does not match its commit record ({error})", ctx_path.display()),
        },
        error => ctx_err(error),
    })?;
    if version != meta.schema_version {
        return Err(ctx_err(format::FormatError::Decode(format!(
            "schema version {version}, but its commit record says {}",
            meta.schema_version
        ))));
    }
    // The outbound policy lives in the signed record (see `Meta::outbound`).
    let outbound = match &meta.outbound {
        Some(p) => {
            p.validate().map_err(|why| CheckpointError::Json {
                path: with_ext(&base, "meta.json"),
                message: format!("its outbound policy is refused: {why}"),
            })?;
            std::sync::Arc::new(p.clone())
        }
        None => Default::default(),
    };
    let (context, chain_base) = match (decoded, &meta.base) {
        (format::Decoded::Full(context), None) => {
            let mut context = *context;
            context.workflow.outbound = outbound.clone();
            context.workflow.settings.keep_checkpoints = meta.keep_checkpoints.filter(|&n| n >= 1);
            context.workflow.settings.keep_iteration_results = meta.iteration_results_kept();
            let chain_base = (version == SchemaVersion::V2).then(|| Base {
                checkpoint_id: meta.checkpoint_id.clone(),
                session_id: meta.session_id.clone(),
                ctx: FileDigest { digest: ctx_digest, size: ctx_bytes.len() as u64 },
                workflow: context.workflow.clone(),
                channel: context.channel.clone(),
            });
            (context, chain_base)
        }
        (format::Decoded::Increment(delta), Some(base_ref)) => {
            let mut base_ctx = load_base(&base, base_ref, &meta.session_id, values, distrust.is_none())?;
            base_ctx.workflow.outbound = outbound.clone();
            base_ctx.workflow.settings.keep_checkpoints = meta.keep_checkpoints.filter(|&n| n >= 1);
            base_ctx.workflow.settings.keep_iteration_results = meta.iteration_results_kept();
            let context =
                delta.apply(base_ctx.workflow.clone(), base_ctx.channel.clone()).map_err(|e| ctx_err(e.into()))?;
            let chain_base = Base {
                checkpoint_id: base_ref.checkpoint_id.clone(),
                session_id: meta.session_id.clone(),
                ctx: base_ref.ctx,
                workflow: base_ctx.workflow,
                channel: base_ctx.channel,
            };
            (context, Some(chain_base))
        }
        // The record's version and the payload's agree (checked above), and
        // a record names a base exactly when it is of schema 3.
        _ => {
            return Err(ctx_err(format::FormatError::Decode(
                "the payload and its commit record disagree on whether it is an increment".into(),
            )));
        }
    };
    for (path, found) in [(&state_path, &state_file.checkpoint_id), (&ctx_path, &context.checkpoint_id)] {
        if found != &meta.checkpoint_id {
            return Err(CheckpointError::Mismatch {
                path: path.clone(),
                expected: meta.checkpoint_id.clone(),
                found: found.clone(),
            });
        }
    }
    if context.state.session_id != meta.session_id || !schema::is_valid_id(&meta.session_id) {
        return Err(CheckpointError::Mismatch {
            path: ctx_path,
            expected: meta.session_id.clone(),
            found: context.state.session_id.clone(),
        });
    }
    Ok(Loaded { base, meta, signature, state_file, context, chain_base })
}
