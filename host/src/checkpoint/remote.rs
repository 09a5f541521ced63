//! Checkpoints in a bucket (`s3://bucket/prefix`), with the same layout as a
//! directory (`layout.rs`) under the prefix.
//!
//! **Writing.** A checkpoint is committed in the bucket's working copy on
//! this machine ([`crate::storage::Bucket::mirror`], under its lock, exactly
//! as in a directory), and published:
//! 1. its id is **claimed**: `<session>/<id>.claim` is created with a
//!    create-only conditional put (`If-None-Match: *`). A writer that loses
//!    the claim (another machine took that id) takes the next id, before
//!    anything of it is written;
//! 2. module copies the bucket lacks (`modules/<sha256>.wasm`, create-only);
//! 3. the `.ctx` (a multipart upload above 8 MiB: only the claim's holder
//!    writes that key) and the `.state.json` (create-only);
//! 4. last the signed commit record `.meta.json` (create-only). Until it is
//!    there, readers do not see the checkpoint; once it is, every file it
//!    names is complete.
//!
//! Then the writer checks that what the record relies on is still there (the
//! module copies, an increment's base): a prune on another machine that
//! listed the bucket before this commit could have removed them. A module
//! copy that went is uploaded again; an increment whose base went is
//! followed at once by a full checkpoint ([`Published::base_lost`]).
//!
//! **Reading.** [`fetch`] downloads a checkpoint (and its base, and the
//! module copies it names) into the working copy: the commit record first,
//! bounded; its signature is checked before any other byte is fetched;
//! each file then with exactly the size the record gives. `load` verifies
//! the copies as for any directory.
//!
//! **Pruning.** See [`prune`] and docs/checkpoints.md: objects nobody's
//! commit record names are removed only when older than the grace age.

use super::directory::modules_of_state;
use super::layout::with_ext;
use super::read::{MAX_UNTRUSTED_FILE_BYTES, META_LIMIT, Trust, parse_meta, signature_of};
use super::schema::{Meta, is_valid_id};
use super::signing::SigningKey;
use super::{CheckpointError, Pruned};
use crate::digest::Sha256;
use crate::storage::{Bucket, ObjectInfo, Storage, StorageError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The default grace age of [`prune`]: objects no commit record names
/// (a claim, a module copy, the files of a checkpoint being published) are
/// removed only when older than this.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// A module copy a writer reuses that is older than this is written again
/// (half of [`DEFAULT_GRACE`]): see [`prune`].
pub const MODULE_REFRESH_AGE: Duration = Duration::from_secs(1800);

/// Largest claim object read.
const CLAIM_LIMIT: u64 = 64 << 10;

/// Most module copies one checkpoint may name (what a state file from a
/// bucket can make [`fetch`] download).
pub const MAX_MODULES: usize = 4096;

/// Most ids a writer tries for one checkpoint before giving up (each try is
/// a claim: a create-only put).
pub const MAX_CLAIM_TRIES: u32 = 1000;

/// The key of file `ext` of checkpoint `id` of `session`.
pub fn key(session: &str, id: &str, ext: &str) -> String {
    format!("{session}/{id}.{ext}")
}

/// The session and id of a commit record's key (`<session>/<id>.meta.json`).
fn record_of_key(key: &str) -> Option<(&str, &str)> {
    key.strip_suffix(".meta.json").and_then(|k| k.split_once('/'))
}

fn module_key(digest: &Sha256) -> String {
    format!("modules/{digest}.wasm")
}

/// The checkpoint an `s3://` URL names: `s3://bucket/prefix/<session>/<id>`
/// (or any of its files): the bucket prefix, the session and the id.
pub fn split_checkpoint_url(url: &str) -> Result<(String, String, String), CheckpointError> {
    let base = super::layout::base_of(Path::new(url)).to_string_lossy().to_string();
    let mut parts = base.trim_end_matches('/').rsplitn(3, '/');
    let (id, session, root) = (parts.next(), parts.next(), parts.next());
    match (id, session, root) {
        (Some(id), Some(session), Some(root))
            if is_valid_id(id) && is_valid_id(session) && root.len() > "s3://".len() && root.starts_with("s3://") =>
        {
            Ok((root.to_string(), session.to_string(), id.to_string()))
        }
        _ => Err(CheckpointError::NotInDirectory { path: PathBuf::from(url), session: "<session>".into() }),
    }
}

/// Claim checkpoint id `id` of `session` for this writer. `Ok(false)`: the
/// id is taken (another writer's claim, or its files).
pub fn claim(bucket: &Bucket, session: &str, id: &str, modules: &[Sha256]) -> Result<bool, CheckpointError> {
    let body = serde_json::json!({
        "checkpoint_id": id,
        "session_id": session,
        "host": hostname(),
        "pid": std::process::id(),
        "claimed_at": humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        "modules": modules.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
    match bucket.put_new(&key(session, id, "claim"), &bytes) {
        Ok(()) => Ok(true),
        Err(StorageError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// What [`publish`] found after the commit record was written.
#[derive(Debug, Default)]
pub struct Published {
    /// Bytes uploaded.
    pub bytes: u64,
    /// The increment's base is gone from the bucket (a concurrent prune):
    /// the checkpoint cannot be resumed; the writer writes a full one next.
    pub base_lost: bool,
}

/// Publish the checkpoint `<mirror>/<session>/<id>`, already committed in
/// the working copy and claimed in the bucket: module copies the bucket
/// lacks (from `modules`, the bytes the run loaded), `.ctx`, `.state.json`,
/// then the commit record. See the module documentation.
pub fn publish(
    bucket: &Bucket,
    session: &str,
    id: &str,
    modules: &[(Sha256, &[u8])],
    base: Option<&str>,
    published: &mut HashSet<Sha256>,
) -> Result<Published, CheckpointError> {
    let local = bucket.mirror().join(session).join(id);
    let mut out = Published::default();
    for (digest, code) in modules {
        if published.contains(digest) {
            continue;
        }
        out.bytes += put_module(bucket, digest, code)?;
        published.insert(*digest);
    }
    out.bytes += bucket.put_file(&key(session, id, "ctx"), &with_ext(&local, "ctx"))?;
    for ext in ["state.json", "meta.json"] {
        let path = with_ext(&local, ext);
        let bytes = std::fs::read(&path).map_err(super::io(&path))?;
        bucket.put_new(&key(session, id, ext), &bytes)?;
        out.bytes += bytes.len() as u64;
    }
    // Committed. What the record relies on, still there? (See the module
    // documentation.) A failure here does not undo the commit: it is
    // reported, and the next checkpoint is written in full.
    match check_published(bucket, session, id, &local, modules, base) {
        Ok((bytes, base_lost)) => {
            out.bytes += bytes;
            out.base_lost = base_lost;
        }
        Err(e) => {
            tracing::warn!(
                "checkpoint {} is committed, but what it relies on could not be checked: {}",
                bucket.name(&format!("{session}/{id}")),
                crate::error_chain(&e)
            );
            out.base_lost = base.is_some();
        }
    }
    Ok(out)
}

/// After a commit: put back the checkpoint's own files and module copies
/// if a prune took them, and say whether its base is gone.
fn check_published(
    bucket: &Bucket,
    session: &str,
    id: &str,
    local: &Path,
    modules: &[(Sha256, &[u8])],
    base: Option<&str>,
) -> Result<(u64, bool), CheckpointError> {
    let mut bytes = 0;
    // Its own files first: a prune run with a grace age shorter than this
    // publish took may have taken them for a dead writer's.
    for ext in ["ctx", "state.json"] {
        let path = with_ext(local, ext);
        let size = std::fs::metadata(&path).map_err(super::io(&path))?.len();
        if bucket.head(&key(session, id, ext))?.is_none_or(|m| m.size != size) {
            tracing::warn!("{} went while it was published: uploaded again", bucket.name(&key(session, id, ext)));
            bytes += bucket.put_file(&key(session, id, ext), &path)?;
        }
    }
    for (digest, code) in modules {
        if bucket.head(&module_key(digest))?.is_none_or(|m| m.size != code.len() as u64) {
            tracing::warn!(
                "{} went while checkpoint {id} was published: uploaded again",
                bucket.name(&module_key(digest))
            );
            bucket.delete(&module_key(digest))?;
            bytes += put_module(bucket, digest, code)?;
        }
    }
    let mut base_lost = false;
    if let Some(base) = base {
        base_lost = bucket.head(&key(session, base, "meta.json"))?.is_none()
            || bucket.head(&key(session, base, "ctx"))?.is_none();
    }
    Ok((bytes, base_lost))
}

/// Create the module copy `digest`; one already there of another size is
/// damaged and replaced; one older than [`MODULE_REFRESH_AGE`] is written
/// again (the same bytes: its name is their digest), so a prune that runs
/// meanwhile sees it as young and keeps it.
fn put_module(bucket: &Bucket, digest: &Sha256, code: &[u8]) -> Result<u64, CheckpointError> {
    let k = module_key(digest);
    match bucket.put_new(&k, code) {
        Ok(()) => Ok(code.len() as u64),
        Err(StorageError::AlreadyExists { .. }) => {
            if let Some(m) = bucket.head(&k)?.filter(|m| m.size == code.len() as u64) {
                let age = SystemTime::now().duration_since(m.modified).unwrap_or_default();
                if age < MODULE_REFRESH_AGE {
                    return Ok(0);
                }
                bucket.put_replace(&k, code.to_vec())?;
                return Ok(code.len() as u64);
            }
            bucket.delete(&k)?;
            bucket.put_new(&k, code)?;
            Ok(code.len() as u64)
        }
        Err(e) => Err(e.into()),
    }
}

/// Remove checkpoint `id` of `session` from the bucket: the commit record
/// first (an interruption leaves files no record names, which readers never
/// see and [`prune`] removes after the grace age), then its files and claim.
pub fn remove(bucket: &Bucket, session: &str, id: &str) -> Result<(), CheckpointError> {
    for ext in ["meta.json", "state.json", "ctx", "claim"] {
        bucket.delete(&key(session, id, ext))?;
    }
    Ok(())
}

/// The commit record of `<session>/<id>` in the bucket, parsed (not
/// verified: for listing); `None` if there is none.
fn get_meta(bucket: &Bucket, session: &str, id: &str) -> Result<Option<Meta>, CheckpointError> {
    let k = key(session, id, "meta.json");
    let Some(bytes) = bucket.get(&k, META_LIMIT, "the meta file size (256 MiB)")? else { return Ok(None) };
    parse_meta(&bytes, Path::new(&bucket.name(&k))).map(|(meta, _)| Some(meta))
}

/// Download checkpoint `id` of `session` (and the base it is written over,
/// and its module copies) into the working copy, and give its local base
/// path, for `load`. A record not signed with `key` is refused before any
/// other file is fetched unless `trust` allows it (its files are then
/// bounded by [`MAX_UNTRUSTED_FILE_BYTES`]). Files already in the working
/// copy with the recorded sizes are used as they are (`load` checks their
/// digests); others are replaced.
pub fn fetch(
    bucket: &Bucket,
    session: &str,
    id: &str,
    signing: &SigningKey,
    trust: Trust,
) -> Result<PathBuf, CheckpointError> {
    fetch_one(bucket, session, id, signing, trust, true)
}

/// [`fetch`]; `may_have_base`: false for a base (an increment's base is a
/// full checkpoint: one level, never a chain or a cycle).
fn fetch_one(
    bucket: &Bucket,
    session: &str,
    id: &str,
    signing: &SigningKey,
    trust: Trust,
    may_have_base: bool,
) -> Result<PathBuf, CheckpointError> {
    if !is_valid_id(session) || !is_valid_id(id) {
        return Err(CheckpointError::BadId { id: format!("{session}/{id}") });
    }
    let url = PathBuf::from(bucket.name(&format!("{session}/{id}")));
    let meta_key = key(session, id, "meta.json");
    let Some(meta_bytes) = bucket.get(&meta_key, META_LIMIT, "the meta file size (256 MiB)")? else {
        if bucket.head(&key(session, id, "ctx"))?.is_some() || bucket.head(&key(session, id, "claim"))?.is_some() {
            return Err(CheckpointError::Torn {
                path: url,
                reason: "its commit record is not in the bucket (its writer has not finished, or died)".into(),
            });
        }
        return Err(CheckpointError::NotFound { path: url });
    };
    let (meta, message) = parse_meta(&meta_bytes, Path::new(&bucket.name(&meta_key)))?;
    if meta.checkpoint_id != id || meta.session_id != session {
        return Err(CheckpointError::Mismatch {
            path: url,
            expected: format!("{session}/{id}"),
            found: format!("{}/{}", meta.session_id, meta.checkpoint_id),
        });
    }
    if meta.base.is_some() && !may_have_base {
        return Err(CheckpointError::Torn {
            path: url,
            reason: "it is named as the base of an increment but is an increment itself (a base is a full checkpoint)"
                .into(),
        });
    }
    let signature = signature_of(&meta, message.as_deref(), signing);
    let trusted = signature.distrust(signing).is_none();
    if let (Some(reason), Trust::Signed) = (signature.distrust(signing), trust) {
        return Err(CheckpointError::Untrusted { path: url, reason });
    }
    let local = bucket.mirror().join(session).join(id);
    let dir = bucket.mirror().join(session);
    super::fsutil::create_dir_durable(&dir).map_err(super::io(&dir))?;
    let _lock = super::DirLock::exclusive(bucket.mirror())?;
    let meta_path = with_ext(&local, "meta.json");
    if std::fs::read(&meta_path).ok().is_some_and(|b| b != meta_bytes) {
        // Another record under this name (a checkpoint removed and its id
        // written again): the old copy goes.
        for ext in ["meta.json", "state.json", "ctx"] {
            let _ = std::fs::remove_file(with_ext(&local, ext));
        }
    }
    let (limit, bound) = if trusted {
        (u64::MAX, "the size its commit record gives")
    } else {
        (
            MAX_UNTRUSTED_FILE_BYTES,
            "MAX_UNTRUSTED_FILE_BYTES (512 MiB, for a checkpoint whose signature did not verify)",
        )
    };
    for (file_key, ext) in [("ctx", "ctx"), ("state", "state.json")] {
        let Some(recorded) = meta.files.get(file_key) else { continue };
        // Always the bucket's bytes: a copy here that does not verify would
        // otherwise fail every resume.
        let dest = with_ext(&local, ext);
        let _ = std::fs::remove_file(&dest);
        download(bucket, &key(session, id, ext), &dest, limit, bound, recorded.size)?;
    }
    if !meta_path.exists() {
        super::fsutil::write_durable_new(&meta_path, &meta_bytes).map_err(super::io(&meta_path))?;
    }
    drop(_lock);
    drop(meta_bytes);
    if let Some(base) = &meta.base {
        if !is_valid_id(&base.checkpoint_id) || base.checkpoint_id == id {
            return Err(CheckpointError::Torn {
                path: PathBuf::from(bucket.name(&format!("{session}/{id}"))),
                reason: format!(
                    "its commit record names '{}' as its base: not another checkpoint of its folder",
                    base.checkpoint_id.chars().take(140).collect::<String>()
                ),
            });
        }
        fetch_one(bucket, session, &base.checkpoint_id, signing, trust, false)?;
    }
    fetch_modules(bucket, &local, meta.files.get("state").map(|d| d.digest))?;
    Ok(local)
}

/// Download `key`, which must have `size` bytes, into the new file `dest`;
/// refused without reading it if `size` is over `limit` (`bound` names it).
fn download(
    bucket: &Bucket,
    key: &str,
    dest: &Path,
    limit: u64,
    bound: &str,
    size: u64,
) -> Result<(), CheckpointError> {
    if size > limit {
        return Err(StorageError::TooLarge { name: bucket.name(key), size, limit, bound: bound.into() }.into());
    }
    match bucket.get_to_file(key, dest, size) {
        Err(StorageError::WrongSize { name, found, .. }) => Err(CheckpointError::Torn {
            path: PathBuf::from(&name),
            reason: format!("it has {found} bytes, its commit record says {size}"),
        }),
        other => Ok(other?),
    }
}

/// Download the module copies the state file of the checkpoint at `local`
/// names (bounded by the sizes it gives; the module store checks their
/// digests when read), once the state file matches `digest`, the one its
/// commit record gives.
fn fetch_modules(
    bucket: &Bucket,
    local: &Path,
    digest: Option<super::schema::ContentDigest>,
) -> Result<(), CheckpointError> {
    let state = with_ext(local, "state.json");
    let state = state.as_path();
    let bytes = crate::files::read_bounded(state, 1 << 30, "the state file size (1 GiB)")
        .map_err(|e| CheckpointError::Read(Box::new(e)))?;
    if digest != Some(super::schema::ContentDigest::Sha256(Sha256::of(&bytes))) {
        // The copy goes: the next fetch downloads it again.
        let _ = std::fs::remove_file(state);
        return Err(CheckpointError::Torn {
            path: local.to_path_buf(),
            reason: format!("{} does not match the digest its commit record gives", state.display()),
        });
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| CheckpointError::Json { path: state.to_path_buf(), message: e.to_string() })?;
    let Some(modules) = value.get("modules").and_then(|m| m.as_object()) else { return Ok(()) };
    if modules.len() > MAX_MODULES {
        return Err(CheckpointError::Json {
            path: state.to_path_buf(),
            message: format!(
                "it lists {} modules, over the bound checkpoint::remote::MAX_MODULES = {MAX_MODULES}",
                modules.len()
            ),
        });
    }
    let store = crate::module_store::ModuleStore::of_checkpoints(bucket.mirror());
    for m in modules.values() {
        let (Some(digest), Some(size)) = (
            m.get("sha256").and_then(|d| d.as_str()).and_then(|d| d.parse::<Sha256>().ok()),
            m.get("size").and_then(|s| s.as_u64()),
        ) else {
            continue;
        };
        // A copy here is used only if it is the module (its digest).
        if store.get(&digest, size).is_ok() {
            continue;
        }
        let _ = store.remove(&digest);
        download(
            bucket,
            &module_key(&digest),
            &store.path(&digest),
            crate::module_store::DEFAULT_MAX_MODULE_BYTES,
            "the module size bound (512 MiB)",
            size,
        )?;
    }
    Ok(())
}

/// A committed checkpoint in the bucket (see [`list`]).
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its URL (`s3://bucket/prefix/<session>/<id>`).
    pub url: String,
    /// Its commit record.
    pub meta: Meta,
}

/// Every committed checkpoint in the bucket, oldest first: a commit record
/// whose `.ctx` and `.state.json` are there with the sizes it gives, and for
/// an increment its base's record and `.ctx`. Others are skipped with a
/// warning, as in a directory.
pub fn list(bucket: &Bucket) -> Result<Vec<Listed>, CheckpointError> {
    let objects = bucket.list("")?;
    let sizes: HashMap<&str, u64> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut out = Vec::new();
    for o in &objects {
        let Some((session, id)) = record_of_key(&o.key) else { continue };
        if session == "modules" || id.contains('/') {
            continue;
        }
        let meta = match get_meta(bucket, session, id) {
            Ok(Some(meta)) => meta,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("skipping {}: {}", bucket.name(&o.key), crate::error_chain(&e));
                continue;
            }
        };
        let complete = [("ctx", "ctx"), ("state", "state.json")]
            .iter()
            .all(|(f, ext)| meta.files.get(*f).map(|d| d.size) == sizes.get(key(session, id, ext).as_str()).copied())
            && meta.base.as_ref().is_none_or(|b| {
                sizes.get(key(session, &b.checkpoint_id, "ctx").as_str()) == Some(&b.ctx.size)
                    && sizes.contains_key(key(session, &b.checkpoint_id, "meta.json").as_str())
            });
        if !complete || meta.checkpoint_id != id || meta.session_id != session {
            tracing::warn!(
                "skipping {}: its files are missing, not the sizes its commit record gives, or not its own",
                bucket.name(&o.key)
            );
            continue;
        }
        out.push(Listed { url: bucket.name(&format!("{session}/{id}")), meta });
    }
    out.sort_by(|a, b| {
        (&a.meta.created_at, a.meta.steps, &a.meta.checkpoint_id).cmp(&(
            &b.meta.created_at,
            b.meta.steps,
            &b.meta.checkpoint_id,
        ))
    });
    Ok(out)
}

/// The newest committed checkpoint in the bucket.
pub fn latest(bucket: &Bucket) -> Result<Listed, CheckpointError> {
    list(bucket)?.pop().ok_or_else(|| CheckpointError::Empty { dir: PathBuf::from(bucket.url().to_string()) })
}

/// The module digests a claim lists.
fn claimed_modules(bucket: &Bucket, key: &str) -> Option<Vec<Sha256>> {
    let bytes = bucket.get(key, CLAIM_LIMIT, "the claim size (64 KiB)").ok()??;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("modules")?.as_array()?.iter().map(|d| d.as_str()?.parse().ok()).collect()
}

/// Remove all but the `keep` newest checkpoints in the bucket (and keep the
/// bases the kept increments are written over); then objects no remaining
/// commit record names (module copies, files and claims of uncommitted
/// checkpoints), but only those older than `grace`: a writer on another
/// machine may be publishing them right now.
///
/// The rule, against a writer committing at the same time: a writer claims
/// its id (naming the module copies it will use) before it writes anything,
/// publishes within the grace age, writes its commit record last, and then
/// checks that the module copies and base it relies on are still there
/// (uploading a module copy again, or following a lost base with a full
/// checkpoint); a module copy it reuses that is older than
/// [`MODULE_REFRESH_AGE`] is written again first, so it looks young to a
/// prune. So a prune with the default grace never removes anything a commit
/// in flight or a committed checkpoint needs, except when its delete of a
/// module copy lands after the writer's refresh and after its check (the
/// copy is then missing until the writer's next checkpoint re-checks).
pub fn prune(bucket: &Bucket, keep: usize, grace: Duration) -> Result<Pruned, CheckpointError> {
    let objects = bucket.list("")?;
    let all = list(bucket)?;
    let cut = all.len().saturating_sub(keep);
    let needed: HashSet<(String, String)> = all[cut..]
        .iter()
        .filter_map(|l| l.meta.base.as_ref().map(|b| (l.meta.session_id.clone(), b.checkpoint_id.clone())))
        .collect();
    let (gone, kept_bases): (Vec<&Listed>, Vec<&Listed>) =
        all[..cut].iter().partition(|l| !needed.contains(&(l.meta.session_id.clone(), l.meta.checkpoint_id.clone())));
    let mut pruned =
        Pruned { bases_kept: kept_bases.iter().map(|l| l.meta.checkpoint_id.clone()).collect(), ..Pruned::default() };
    // Newest first: an increment goes before its base.
    for l in gone.iter().rev() {
        remove(bucket, &l.meta.session_id, &l.meta.checkpoint_id)?;
        pruned.checkpoints.push(l.meta.checkpoint_id.clone());
    }
    let now = SystemTime::now();
    let old = |o: &ObjectInfo| now.duration_since(o.modified).is_ok_and(|age| age >= grace);
    let removed: HashSet<(&str, &str)> =
        gone.iter().map(|l| (l.meta.session_id.as_str(), l.meta.checkpoint_id.as_str())).collect();
    // Module copies the remaining checkpoints name (from their state
    // files), or a claim younger than the grace age (a commit in flight).
    let mut referenced: HashSet<Sha256> = HashSet::new();
    let mut keep_all_modules = false;
    let mut records: HashSet<(String, String)> = HashSet::new();
    // The records of a listing not seen yet, and the modules their state
    // files name (one that cannot be read keeps every module copy).
    let mut note_records = |objects: &[ObjectInfo], records: &mut HashSet<(String, String)>| {
        for o in objects {
            if let Some((session, id)) = record_of_key(&o.key)
                && !removed.contains(&(session, id))
                && records.insert((session.to_string(), id.to_string()))
            {
                match bucket.get(&key(session, id, "state.json"), 1 << 30, "the state file size (1 GiB)") {
                    Ok(Some(bytes)) => match modules_of_state(&bytes) {
                        Some(d) => referenced.extend(d),
                        None => keep_all_modules = true,
                    },
                    _ => keep_all_modules = true,
                }
            }
        }
    };
    note_records(&objects, &mut records);
    // Listed again just before anything unreferenced goes: commits that
    // claimed or committed since the first listing keep what they name.
    let objects = bucket.list("")?;
    note_records(&objects, &mut records);
    for o in objects.iter().filter(|o| o.key.ends_with(".claim") && !old(o)) {
        match claimed_modules(bucket, &o.key) {
            Some(d) => referenced.extend(d),
            None => keep_all_modules = true,
        }
    }
    for o in &objects {
        if let Some(hex) = o.key.strip_prefix("modules/").and_then(|k| k.strip_suffix(".wasm")) {
            let Ok(digest) = hex.parse::<Sha256>() else { continue };
            if !keep_all_modules && !referenced.contains(&digest) && old(o) {
                bucket.delete(&o.key)?;
                pruned.modules += 1;
            }
            continue;
        }
        // Files of a checkpoint without a commit record (a writer that died,
        // or one publishing now: hence the grace age).
        let Some((session, rest)) = o.key.split_once('/') else { continue };
        let Some(id) = [".ctx", ".state.json", ".claim"].iter().find_map(|ext| rest.strip_suffix(ext)) else {
            continue;
        };
        if id.contains('/') || records.contains(&(session.to_string(), id.to_string())) {
            continue;
        }
        let just_removed = removed.contains(&(session, id));
        if !just_removed && old(o) {
            bucket.delete(&o.key)?;
            pruned.torn += 1;
        }
    }
    // The journal of a session none of whose checkpoints remain.
    let sessions_with_records: HashSet<&str> = records.iter().map(|(s, _)| s.as_str()).collect();
    for o in objects.iter().filter(|o| o.key.ends_with(&format!("/{}", crate::journal::JOURNAL_FILE))) {
        let session = o.key.split('/').next().unwrap_or_default();
        if !sessions_with_records.contains(session) && old(o) {
            bucket.delete(&o.key)?;
            pruned.journals += 1;
        }
    }
    Ok(pruned)
}

/// Ids of full checkpoints that commit records of `session` in the bucket,
/// other than those in the working copy, are written over: retention in the
/// working copy must not remove them from the bucket.
pub fn bases_needed_elsewhere(bucket: &Bucket, session: &str) -> Result<Vec<String>, CheckpointError> {
    let local = bucket.mirror().join(session);
    let mut out = Vec::new();
    for o in bucket.list(&format!("{session}/"))? {
        let Some(id) = o.key.strip_prefix(&format!("{session}/")).and_then(|k| k.strip_suffix(".meta.json")) else {
            continue;
        };
        if id.contains('/') || with_ext(&local.join(id), "meta.json").exists() {
            continue;
        }
        match get_meta(bucket, session, id) {
            Ok(Some(meta)) => out.extend(meta.base.map(|b| b.checkpoint_id)),
            // Unknown: keep everything this time.
            _ => {
                return Err(CheckpointError::Torn {
                    path: PathBuf::from(bucket.name(&o.key)),
                    reason: "its commit record cannot be read, so the checkpoints it needs are unknown".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Upload the journal of `session` from the working copy (replacing the
/// bucket's: only the run that owns the session writes it).
pub fn push_journal(bucket: &Bucket, session: &str) -> Result<(), CheckpointError> {
    let path = crate::journal::path_of(bucket.mirror(), session);
    let bytes =
        match crate::files::read_bounded(&path, crate::journal::MAX_JOURNAL_BYTES + (1 << 20), "the journal size") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(CheckpointError::Read(Box::new(e))),
        };
    bucket.put_replace(&format!("{session}/{}", crate::journal::JOURNAL_FILE), bytes)?;
    Ok(())
}

/// Download the journal of `session` into the working copy when the
/// bucket's is longer (another machine ran the session since).
pub fn pull_journal(bucket: &Bucket, session: &str) -> Result<PathBuf, CheckpointError> {
    let path = crate::journal::path_of(bucket.mirror(), session);
    let k = format!("{session}/{}", crate::journal::JOURNAL_FILE);
    let local = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if let Some(remote) = bucket.head(&k)?
        && remote.size > local
        && let Some(bytes) = bucket.get(&k, crate::journal::MAX_JOURNAL_BYTES + (1 << 20), "the journal size")?
    {
        if let Some(dir) = path.parent() {
            super::fsutil::create_dir_durable(dir).map_err(super::io(dir))?;
        }
        let tmp = path.with_extension("jsonl.download");
        std::fs::write(&tmp, &bytes).map_err(super::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(super::io(&path))?;
    }
    Ok(path)
}
