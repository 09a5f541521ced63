//! The checkpoint directory as a whole: its lock, listing, and pruning.
//!
//! Every change to a directory (a checkpoint's commit, a prune) holds the
//! exclusive lock on `<dir>/.lock` (an OS file lock, released when the process
//! dies); loading a checkpoint holds the shared lock. So a prune never removes
//! a module copy that a checkpoint being committed refers to, and two resumes
//! of one checkpoint never pick the same new id.

use super::layout::{LOCK_FILE, base_of, with_ext};
use super::read::read_meta;
use super::schema::Meta;
use super::{CheckpointError, fsutil, io};
use crate::files;
use crate::module_store::ModuleStore;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A held lock on a checkpoint directory; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn open(root: &Path, create: bool) -> Result<std::fs::File, CheckpointError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = root.join(LOCK_FILE);
        // Never follow a link or wait on a FIFO planted as the lock file.
        let file = std::fs::OpenOptions::new()
            .create(create)
            .truncate(false)
            .read(true)
            .write(create)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        if !file.metadata().map_err(io(&path))?.is_file() {
            return Err(CheckpointError::NotRegular { path });
        }
        Ok(file)
    }

    /// Wait for the exclusive lock (to change the directory).
    pub fn exclusive(root: &Path) -> Result<DirLock, CheckpointError> {
        fsutil::create_dir_durable(root).map_err(io(root))?;
        let file = DirLock::open(root, true)?;
        file.lock().map_err(io(&root.join(LOCK_FILE)))?;
        Ok(DirLock { _file: file })
    }

    /// Wait for the shared lock (to read a checkpoint while nothing removes
    /// it). A directory that does not exist is not created.
    pub fn shared(root: &Path) -> Result<Option<DirLock>, CheckpointError> {
        let path = root.join(LOCK_FILE);
        // A directory written by graflow-host 0.1 has no lock file: make one
        // if the directory can be written, else read without a lock.
        let create = std::fs::symlink_metadata(&path).is_err();
        let file = match DirLock::open(root, create) {
            Ok(f) => f,
            Err(CheckpointError::Io { .. }) if create => return Ok(None),
            Err(e) => return Err(e),
        };
        file.lock_shared().map_err(io(&path))?;
        Ok(Some(DirLock { _file: file }))
    }
}

/// A committed checkpoint found in a directory.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Its base path.
    pub base: PathBuf,
    /// Its commit record.
    pub meta: Meta,
}

/// Every committed checkpoint under `dir`, oldest first. Torn or unreadable ones
/// are skipped with a warning.
pub fn list(dir: &Path) -> Result<Vec<Summary>, CheckpointError> {
    let mut out = Vec::new();
    let sessions = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CheckpointError::NoDirectory { dir: dir.to_path_buf() },
        _ => io(dir)(e),
    })?;
    for session in sessions.flatten() {
        let path = session.path();
        // A linked folder is not followed (its files are not this directory's).
        if !session.file_type().is_ok_and(|t| t.is_dir()) || path.file_name().is_some_and(|n| n == "modules") {
            continue;
        }
        out.extend(list_folder(&path));
    }
    sort_oldest_first(&mut out);
    Ok(out)
}

/// The committed checkpoints of one session folder, unsorted.
fn list_folder(folder: &Path) -> Vec<Summary> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else { return out };
    for entry in entries.flatten() {
        let file = entry.path();
        if !file.to_string_lossy().ends_with(".meta.json") {
            continue;
        }
        let base = base_of(&file);
        match read_meta(&base).and_then(|(meta, _)| sizes_match(&base, &meta).map(|()| meta)) {
            Ok(meta) => out.push(Summary { base, meta }),
            Err(e) => tracing::warn!("skipping {}: {}", file.display(), crate::error_chain(&e)),
        }
    }
    out
}

fn sort_oldest_first(checkpoints: &mut [Summary]) {
    checkpoints.sort_by(|a, b| {
        (&a.meta.created_at, a.meta.steps, &a.meta.checkpoint_id).cmp(&(
            &b.meta.created_at,
            b.meta.steps,
            &b.meta.checkpoint_id,
        ))
    });
}

/// Remove a checkpoint's files, its commit record first (an interruption
/// leaves a torn checkpoint, which readers skip and `prune` removes).
fn remove_checkpoint(base: &Path) -> Result<(), CheckpointError> {
    for ext in ["meta.json", "state.json", "ctx"] {
        let path = with_ext(base, ext);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(())
}

/// What one writer's retention may remove (see [`retain`]).
#[derive(Debug, Clone, Copy)]
pub struct Retention<'a> {
    /// Checkpoints of the run to keep, at least 1.
    pub keep: u64,
    /// The ids this writer committed in the folder, oldest first (the last
    /// is the one just committed).
    pub written: &'a [String],
    /// Completed tasks of the checkpoint the writer resumed (`None` for a
    /// new run): the run's history, checkpoints of the folder at or below
    /// it, counts as its own. Checkpoints above it that it did not write
    /// (another resume of the same run, a fork) are never removed.
    pub resumed_steps: Option<u64>,
    /// Ids never removed: the base the writer's next increments go over,
    /// and (for a bucket) bases that checkpoints of other machines need.
    pub also_keep: &'a [&'a str],
}

/// Retention of one run: remove the run's checkpoints in its session
/// `folder` beyond the newest `keep` (ordered by completed tasks, then by
/// when they were written), except the full checkpoints any checkpoint of
/// the folder is written over, the one just committed and `also_keep`.
/// Newest first, commit record first, so an increment always goes before its
/// base. Nothing is removed while a commit record in the folder cannot be
/// read (its base is unknown). Module copies and the journal stay (`prune`
/// collects unused module copies). The removed ids, oldest first.
///
/// Call only while holding the directory's exclusive lock (a commit does):
/// then no reader is loading (loads hold the shared lock) and no other
/// writer is committing.
pub fn retain(folder: &Path, rule: Retention<'_>) -> Result<Vec<String>, CheckpointError> {
    let all = list_folder(folder);
    let records = std::fs::read_dir(folder)
        .map_err(io(folder))?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".meta.json") && !n.starts_with(".tmp-")))
        .count();
    if records != all.len() {
        tracing::warn!(
            "retention skipped in {}: {} commit record(s) cannot be read, so the checkpoints they need are unknown",
            folder.display(),
            records.saturating_sub(all.len())
        );
        return Ok(Vec::new());
    }
    // Every base anything in the folder is written over stays.
    let mut needed: HashSet<&str> =
        all.iter().filter_map(|s| s.meta.base.as_ref().map(|b| b.checkpoint_id.as_str())).collect();
    needed.extend(rule.also_keep.iter().copied());
    needed.extend(rule.written.last().map(String::as_str));
    let order = |id: &str| rule.written.iter().position(|w| w == id);
    let mut own: Vec<&Summary> = all
        .iter()
        .filter(|s| order(&s.meta.checkpoint_id).is_some() || rule.resumed_steps.is_some_and(|r| s.meta.steps <= r))
        .collect();
    own.sort_by(|a, b| {
        (a.meta.steps, order(&a.meta.checkpoint_id), &a.meta.created_at, &a.meta.checkpoint_id).cmp(&(
            b.meta.steps,
            order(&b.meta.checkpoint_id),
            &b.meta.created_at,
            &b.meta.checkpoint_id,
        ))
    });
    let keep = usize::try_from(rule.keep).unwrap_or(usize::MAX).max(1);
    let cut = own.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for s in own[..cut].iter().rev() {
        if needed.contains(s.meta.checkpoint_id.as_str()) {
            continue;
        }
        remove_checkpoint(&s.base)?;
        removed.push(s.meta.checkpoint_id.clone());
    }
    removed.reverse();
    Ok(removed)
}

/// A cheap check that the files a commit record names are there with their
/// recorded sizes, and for an increment its base's `.ctx` and commit record
/// (`load` checks their digests).
fn sizes_match(base: &Path, meta: &Meta) -> Result<(), CheckpointError> {
    let size_of = |path: &Path| std::fs::symlink_metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len());
    for (key, ext) in [("ctx", "ctx"), ("state", "state.json")] {
        let path = with_ext(base, ext);
        let size = size_of(&path);
        if meta.files.get(key).map(|f| f.size) != size || size.is_none() {
            return Err(CheckpointError::Torn {
                path: base.to_path_buf(),
                reason: format!("{} is missing or not the size its commit record gives", path.display()),
            });
        }
    }
    if let Some(base_ref) = &meta.base
        && super::read::base_present(base, base_ref).is_none()
    {
        return Err(CheckpointError::Torn {
            path: base.to_path_buf(),
            reason: format!(
                "it is an increment over checkpoint {}, which is missing or not the size its commit record gives",
                base_ref.checkpoint_id
            ),
        });
    }
    Ok(())
}

/// The newest committed checkpoint under `dir`.
pub fn latest(dir: &Path) -> Result<Summary, CheckpointError> {
    list(dir)?.pop().ok_or_else(|| CheckpointError::Empty { dir: dir.to_path_buf() })
}

/// Largest state file read while pruning.
const STATE_LIMIT: u64 = 1 << 30;

/// What a prune did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Ids of the checkpoints removed.
    pub checkpoints: Vec<String>,
    /// Module copies removed.
    pub modules: usize,
    /// Temp files of dead writers removed.
    pub temps: usize,
    /// Files of uncommitted (torn) checkpoints removed.
    pub torn: usize,
    /// Journals of sessions with no checkpoint left, removed.
    pub journals: usize,
    /// Durable record logs no remaining commit record names, removed.
    pub records: usize,
    /// Ids of older full checkpoints kept because a kept increment is
    /// written over them.
    pub bases_kept: Vec<String>,
    /// Ids of increments removed because their base is gone (or is not the
    /// file they were written over): they could not be resumed.
    pub orphans: Vec<String>,
}

/// Every file under the session folders of `dir` whose name ends with `ext`.
fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(sessions) = std::fs::read_dir(dir) else { return out };
    for session in sessions.flatten() {
        let path = session.path();
        if path.file_name().is_some_and(|n| n == "modules") || !session.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(ext) && !n.starts_with(".tmp-")) {
                out.push(e.path());
            }
        }
    }
    out
}

/// The module digests a state file (of any schema version) lists.
fn read_modules(state_path: &Path) -> Option<Vec<crate::digest::Sha256>> {
    let bytes = files::read_bounded(state_path, STATE_LIMIT, "the state file size (1 GiB)").ok()?;
    modules_of_state(&bytes)
}

/// The module digests the state file `bytes` (of any schema version) names;
/// only that field is decoded. `None` if it cannot be read.
pub(crate) fn modules_of_state(bytes: &[u8]) -> Option<Vec<crate::digest::Sha256>> {
    #[derive(serde::Deserialize)]
    struct Module {
        sha256: String,
    }
    #[derive(serde::Deserialize)]
    struct Modules {
        modules: std::collections::BTreeMap<String, Module>,
    }
    let state: Modules = serde_json::from_slice(bytes).ok()?;
    state.modules.values().map(|m| m.sha256.parse().ok()).collect()
}

/// Remove all but the `keep` newest checkpoints under `dir` (and the full
/// checkpoints those of them that are increments are written over), then
/// module copies no remaining checkpoint refers to, and temp files of dead
/// writers.
/// Holds the directory's lock throughout. The commit record of a checkpoint
/// goes first, so an interrupted prune leaves torn checkpoints (skipped),
/// never dangling ones.
pub fn prune(dir: &Path, keep: usize) -> Result<Pruned, CheckpointError> {
    if !dir.is_dir() {
        return Err(CheckpointError::Empty { dir: dir.to_path_buf() });
    }
    let _lock = DirLock::exclusive(dir)?;
    let all = list(dir)?;
    let cut = all.len().saturating_sub(keep);
    // The bases of the increments kept stay (an increment never depends on
    // another increment, only on its base, so nothing else needs folding).
    let needed: HashSet<PathBuf> = all[cut..]
        .iter()
        .filter_map(|s| s.meta.base.as_ref().and_then(|b| super::read::base_ctx_path(&s.base, b)))
        .map(|ctx| base_of(&ctx))
        .collect();
    let (gone, kept_bases): (Vec<&Summary>, Vec<&Summary>) = all[..cut].iter().partition(|s| !needed.contains(&s.base));
    // Increments `list` skipped because their base is missing, lacks its
    // commit record or is not the size they name: nothing can resume them.
    let listed: HashSet<&Path> = all.iter().map(|s| s.base.as_path()).collect();
    let orphans: Vec<(PathBuf, String)> = files_with_ext(dir, ".meta.json")
        .iter()
        .map(|m| base_of(m))
        .filter(|b| !listed.contains(b.as_path()))
        .filter_map(|b| {
            let meta = read_meta(&b).ok()?.0;
            let base_ref = meta.base.as_ref()?;
            super::read::base_present(&b, base_ref).is_none().then_some((b, meta.checkpoint_id))
        })
        .collect();
    let mut removed: HashSet<&Path> = gone.iter().map(|s| s.base.as_path()).collect();
    removed.extend(orphans.iter().map(|(b, _)| b.as_path()));
    // What every other state file refers to, read before anything is removed:
    // also the state of checkpoints `list` skipped (a newer schema, an
    // unreadable meta). A state file that cannot be read keeps every module.
    let mut referenced = HashSet::new();
    let mut keep_all_modules = false;
    for state_path in files_with_ext(dir, ".state.json") {
        if removed.contains(base_of(&state_path).as_path()) {
            continue;
        }
        match read_modules(&state_path) {
            Some(digests) => referenced.extend(digests),
            None => {
                tracing::warn!("{} cannot be read: no module copy is removed", state_path.display());
                keep_all_modules = true;
            }
        }
    }
    let mut pruned =
        Pruned { bases_kept: kept_bases.iter().map(|s| s.meta.checkpoint_id.clone()).collect(), ..Pruned::default() };
    let remove = remove_checkpoint;
    for (base, id) in &orphans {
        remove(base)?;
        pruned.orphans.push(id.clone());
    }
    // Newest first: an increment goes before the base it is written over, so
    // an interrupted prune never leaves an increment whose base is gone.
    for s in gone.iter().rev() {
        remove(&s.base)?;
        pruned.checkpoints.push(s.meta.checkpoint_id.clone());
    }
    let store = ModuleStore::of_checkpoints(dir);
    if std::fs::symlink_metadata(store.dir()).is_ok_and(|m| !m.is_dir()) {
        return Err(CheckpointError::NotRegular { path: store.dir().to_path_buf() });
    }
    if !keep_all_modules {
        for digest in store.list().map_err(io(store.dir()))? {
            if !referenced.contains(&digest) {
                store.remove(&digest).map_err(io(&store.path(&digest)))?;
                pruned.modules += 1;
            }
        }
    }
    // The journal of a session none of whose checkpoints remain.
    if let Ok(sessions) = std::fs::read_dir(dir) {
        for session in sessions.flatten() {
            if !session.file_type().is_ok_and(|t| t.is_dir()) || session.file_name() == "modules" {
                continue;
            }
            let journal = session.path().join(crate::journal::JOURNAL_FILE);
            let committed = std::fs::read_dir(session.path())
                .map(|es| es.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".meta.json")))
                .unwrap_or(true);
            if !committed && std::fs::remove_file(&journal).is_ok() {
                pruned.journals += 1;
            }
        }
    }
    // Record logs no remaining commit record names: nothing resumes them.
    for session in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !session.file_type().is_ok_and(|t| t.is_dir()) || session.file_name() == "modules" {
            continue;
        }
        let entries: Vec<PathBuf> =
            std::fs::read_dir(session.path()).into_iter().flatten().flatten().map(|e| e.path()).collect();
        let named: HashSet<String> = entries
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".meta.json"))
            .filter_map(|m| read_meta(&base_of(m)).ok().and_then(|(meta, _)| meta.records))
            .collect();
        let unreadable = entries
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".meta.json"))
            .any(|m| read_meta(&base_of(m)).is_err());
        if unreadable {
            // A record that cannot be read may name a log: keep them all.
            continue;
        }
        for path in &entries {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some(log) = name.strip_suffix(&format!(".{}", super::records::RECORDS_EXT)) else { continue };
            if !named.contains(log) && std::fs::remove_file(path).is_ok() {
                pruned.records += 1;
            }
        }
    }
    // Files of a checkpoint without its commit record: its writer died
    // before committing (commits hold this lock, so none is in flight).
    for ext in [".ctx", ".state.json"] {
        for path in files_with_ext(dir, ext) {
            let base = base_of(&path);
            if !with_ext(&base, "meta.json").exists() && std::fs::remove_file(&path).is_ok() {
                pruned.torn += 1;
            }
        }
    }
    pruned.temps = remove_stale_temps_under(dir);
    Ok(pruned)
}

/// [`fsutil::remove_stale_temps`] in the directory, its module store and
/// every session folder. Call it only while holding the exclusive lock.
pub fn remove_stale_temps_under(dir: &Path) -> usize {
    let mut n = fsutil::remove_stale_temps(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += fsutil::remove_stale_temps(&e.path());
            }
        }
    }
    n
}
