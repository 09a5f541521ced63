//! Writing checkpoints: [`CheckpointStore`], the engine's sink for one run.
//!
//! A commit holds the directory's exclusive lock. It stores the code of every
//! module in the module store, then writes `.ctx`, `.state.json` and last the
//! signed `.meta.json`, each durably and never over an existing file.
//!
//! The `.ctx` is full (schema 2) or an increment (schema 3) over the last full
//! checkpoint this store wrote (or the run was resumed from), its base: see
//! [`CheckpointStore::write_checkpoint`] for when each is written.

use super::directory::{DirLock, remove_stale_temps_under};
use super::layout::with_ext;
use super::read::Base;
use super::schema::{
    BaseRef, ContentDigest, FileDigest, ModuleFile, OriginFile, PendingKind, PendingTask, StateFile, v2, v3,
};
use super::signing::SigningKey;
use super::{CheckpointError, format, fsutil, io};
use crate::digest::Sha256;
use crate::engine::{CheckpointMode, CheckpointRequest, CheckpointSink, Origin, RunState, SinkError, Target, Written};
use crate::json::Json;
use crate::model::Workflow;
use crate::module_store::{ModuleBytes, ModuleStore};
use std::collections::BTreeMap;
use std::io::Seek;
use std::path::{Path, PathBuf};

/// Increments written over one base before the next checkpoint is full.
pub const MAX_INCREMENTS: u32 = 1_000;

/// Changed bytes an increment may always hold, however small its base.
pub const MIN_INCREMENT_BYTES: u64 = 64 << 10;

/// An increment may hold the changed bytes of up to this fraction (1/n) of
/// its base's channel; more, and the checkpoint is written in full.
pub const INCREMENT_FRACTION: u64 = 4;

/// The full checkpoint increments are written over, and how many were.
struct Chain {
    base: Base,
    /// Keys plus values of the base's channel, in bytes.
    channel_bytes: u64,
    increments: u32,
    /// The base's `.ctx` as this store wrote it or started from it, held open
    /// (so its inode cannot be reused while the chain lives), and its device
    /// and inode: a file of the same name and size made since (the base
    /// pruned, and another resume writing that id again) is not taken for it.
    /// `None` when it could not be opened: the next checkpoint is full.
    file: Option<((u64, u64), std::fs::File)>,
}

/// How the next checkpoint is written.
enum Plan<'c, 'b> {
    Full,
    /// Over `base`: the keys set (with their values) and deleted since it.
    Increment {
        base: BaseRef,
        set: Vec<(&'c str, &'c Json)>,
        deleted: Vec<&'b str>,
        bytes: u64,
    },
}

impl Plan<'_, '_> {
    fn version(&self) -> super::schema::SchemaVersion {
        match self {
            Plan::Full => super::schema::CURRENT,
            Plan::Increment { .. } => super::schema::SchemaVersion::V3,
        }
    }
}

/// Writes the checkpoints of one run into a checkpoint directory.
pub struct CheckpointStore {
    root: PathBuf,
    modules: BTreeMap<String, ModuleBytes>,
    /// The signing key; this machine's key is loaded (or made) at the first
    /// write when none was given.
    key: Option<SigningKey>,
    /// The last checkpoint written: session, steps, retry state and base path.
    last: Option<(String, u64, u64, PathBuf)>,
    /// Module copies whose bytes this process checked.
    verified: std::collections::HashSet<Sha256>,
    /// Temp files of dead writers were removed (once per store: a writer
    /// that dies later leaves its files to the next store or `prune`).
    swept: bool,
    /// The base of the next increment. Invariant: its channel is the channel
    /// of the checkpoint it names, so holding it costs only the values
    /// changed since (they are shared with the run's channel otherwise).
    chain: Option<Chain>,
    /// The run's trace context, recorded in each commit record.
    trace: Option<crate::engine::TraceParent>,
    /// Ids this store committed, per session, oldest first (for retention;
    /// ids retention removed are dropped, so with a rule it holds about
    /// `keep_checkpoints` + 1; without one, only the newest).
    written: BTreeMap<String, Vec<String>>,
    /// Completed tasks of the checkpoint this store's run was resumed from.
    resumed_steps: Option<u64>,
    /// The bucket each checkpoint is published to (`root` is then its
    /// working copy): see `remote.rs`.
    remote: Option<std::sync::Arc<crate::storage::Bucket>>,
    /// Module copies this store put in the bucket (or found there).
    published: std::collections::HashSet<Sha256>,
    /// The bucket's create-only puts were checked.
    probed: bool,
    /// The record log of this store's run, named in every checkpoint it
    /// writes once set ([`CheckpointSink::open_records`]).
    records_log: Option<String>,
}

impl CheckpointStore {
    /// A store writing into `root` (created on first write), storing the code
    /// in `modules` (by module name: the bytes that run) and signing with
    /// `key` (this machine's key when `None`).
    pub fn new(
        root: impl Into<PathBuf>,
        modules: BTreeMap<String, ModuleBytes>,
        key: Option<SigningKey>,
    ) -> CheckpointStore {
        CheckpointStore {
            root: root.into(),
            modules,
            key,
            last: None,
            verified: Default::default(),
            swept: false,
            chain: None,
            trace: None,
            written: BTreeMap::new(),
            resumed_steps: None,
            remote: None,
            published: Default::default(),
            probed: false,
            records_log: None,
        }
    }

    /// Publish every checkpoint to `bucket` once committed in `root`, its
    /// working copy (see `remote.rs`).
    pub fn publishing_to(mut self, bucket: Option<std::sync::Arc<crate::storage::Bucket>>) -> CheckpointStore {
        self.remote = bucket;
        self
    }

    /// The run this store writes for was resumed from a checkpoint with
    /// `steps` completed tasks: the checkpoints of its folder up to there are
    /// its history (retention may remove them).
    pub fn resumed_at(mut self, steps: u64) -> CheckpointStore {
        self.resumed_steps = Some(steps);
        self
    }

    /// Record `trace` (the run span's context) in every checkpoint written.
    pub fn with_trace(mut self, trace: Option<crate::engine::TraceParent>) -> CheckpointStore {
        self.trace = trace;
        self
    }

    /// Write the next checkpoints as increments over `base` (a full
    /// checkpoint in this directory, of the run being resumed: what
    /// [`super::Loaded::chain_base`] gives) while they qualify.
    pub fn continuing(mut self, base: Option<Base>) -> CheckpointStore {
        self.chain = base.map(|base| {
            let ctx = with_ext(&self.root.join(&base.session_id).join(&base.checkpoint_id), "ctx");
            Chain::new(base, &ctx)
        });
        self
    }

    /// The checkpoint directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Put the code of every module of `workflow` in the module store: the
    /// bytes the run loaded, which have the digest the workflow records.
    fn store_modules(&mut self, workflow: &Workflow) -> Result<u64, CheckpointError> {
        let store = ModuleStore::of_checkpoints(&self.root);
        let mut bytes = 0;
        for (name, m) in &workflow.modules {
            let Some(code) = self.modules.get(name).filter(|c| c.digest() == m.sha256) else {
                return Err(CheckpointError::ModuleNotLoaded { module: name.clone(), sha256: m.sha256 });
            };
            let path = store.path(&m.sha256);
            match std::fs::symlink_metadata(&path) {
                // Checked once per process: a copy of the right size with
                // other bytes would fail every resume that needs it.
                Ok(meta) if meta.is_file() && meta.len() == code.len() && self.verified.contains(&m.sha256) => continue,
                Ok(meta) if meta.is_file() && meta.len() == code.len() && store.get(&m.sha256, code.len()).is_ok() => {
                    self.verified.insert(m.sha256);
                    continue;
                }
                // A copy of the wrong size is damaged: the run holds the
                // right bytes, so it is replaced (under the lock).
                Ok(_) => store.remove(&m.sha256).map_err(io(&path))?,
                Err(_) => {}
            }
            store.put(code).map_err(|e| match e {
                crate::module_store::StoreError::Write { path, source } => written_error(&path, source, code.len()),
                other => CheckpointError::Store(Box::new(other)),
            })?;
            self.verified.insert(m.sha256);
            bytes += code.len();
        }
        Ok(bytes)
    }

    /// Write a checkpoint. One not asked for by a task (automatic, interrupt,
    /// max-steps) at the boundary where the last one was written is that same
    /// checkpoint: nothing changed in between, so it is not written twice
    /// (unless it records requests a paused run waits for, which the earlier
    /// one lacks).
    ///
    /// It is written as an increment over the base (the last full checkpoint
    /// of this run that this store wrote or continues) unless: there is no
    /// base, the base's files are gone, [`MAX_INCREMENTS`] were written over
    /// it, or the channel bytes changed since it exceed 1/[`INCREMENT_FRACTION`]
    /// of its channel (and [`MIN_INCREMENT_BYTES`]). A full checkpoint becomes
    /// the next base.
    pub fn write_checkpoint(
        &mut self,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
    ) -> Result<Written, CheckpointError> {
        // Retries change the queue without completing a step: they count.
        let retries: u64 = state.queue.iter().map(|s| u64::from(s.attempt)).sum();
        if request.mode != CheckpointMode::Deferred
            && state.pending_input.is_empty()
            && let Some((session, steps, tries, base)) = &self.last
            && session == &state.session_id
            && *steps == state.steps
            && *tries == retries
        {
            return Ok(Written { id: self.name_of(base), bytes: 0, fresh: false });
        }
        let (mut base, mut bytes, base_lost) = self.commit(workflow, state, channel, request)?;
        if base_lost {
            // The increment's base went from the bucket while it was
            // published (a prune elsewhere): the same state again, in full.
            tracing::warn!(
                "the base of checkpoint {} was removed from the bucket meanwhile: writing the checkpoint again in full",
                base.display()
            );
            self.chain = None;
            let (again, more, _) = self.commit(workflow, state, channel, request)?;
            (base, bytes) = (again, bytes + more);
        }
        self.last = Some((state.session_id.clone(), state.steps, retries, base.clone()));
        Ok(Written { id: self.name_of(&base), bytes, fresh: true })
    }

    /// How the checkpoint at `base` is named to the user: its path, or its
    /// URL in the bucket it was published to.
    fn name_of(&self, base: &Path) -> String {
        match &self.remote {
            Some(bucket) => {
                let id = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let session = base
                    .parent()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                crate::storage::Storage::name(&**bucket, &format!("{session}/{id}"))
            }
            None => base.display().to_string(),
        }
    }

    /// How the next checkpoint of `session`, whose folder is `dir`, is
    /// written (see [`CheckpointStore::write_checkpoint`]). Called under the
    /// directory's lock, so the base found here stays until the commit ends.
    fn plan<'c>(
        &self,
        session: &str,
        workflow: &Workflow,
        channel: &'c BTreeMap<String, Json>,
        dir: &Path,
    ) -> Plan<'c, '_> {
        // An increment's workflow is its base's (compared whole: about 50 us
        // for a thousand tasks, against the milliseconds of the fsyncs).
        let Some(chain) = self
            .chain
            .as_ref()
            .filter(|c| c.base.session_id == session && c.increments < MAX_INCREMENTS && c.base.workflow == *workflow)
            // With retention, a new base every `keep` checkpoints: the old
            // base then leaves the window with the increments over it.
            .filter(|c| workflow.settings.keep_checkpoints.is_none_or(|keep| u64::from(c.increments) + 1 < keep))
        else {
            return Plan::Full;
        };
        let base = BaseRef { checkpoint_id: chain.base.checkpoint_id.clone(), ctx: chain.base.ctx };
        let here = super::read::base_present(&dir.join(&base.checkpoint_id), &base);
        if here.is_none_or(|m| chain.file.as_ref().is_none_or(|(id, _)| *id != file_id(&m))) {
            return Plan::Full;
        }
        let (set, deleted) = v3::changes(&chain.base.channel, channel);
        let bytes = set.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum::<u64>()
            + deleted.iter().map(|k| k.len() as u64).sum::<u64>();
        if bytes > (chain.channel_bytes / INCREMENT_FRACTION).max(MIN_INCREMENT_BYTES) {
            return Plan::Full;
        }
        Plan::Increment { base, set, deleted, bytes }
    }

    fn commit(
        &mut self,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
    ) -> Result<(PathBuf, u64, bool), CheckpointError> {
        if !super::schema::is_valid_id(&state.session_id) {
            return Err(CheckpointError::BadId { id: state.session_id.clone() });
        }
        if self.key.is_none() {
            self.key = Some(SigningKey::load_or_create()?);
        }
        if let Some(bucket) = &self.remote
            && !self.probed
        {
            bucket.check_conditional_puts()?;
            self.probed = true;
        }
        let _lock = DirLock::exclusive(&self.root)?;
        if !self.swept {
            remove_stale_temps_under(&self.root);
            self.swept = true;
        }
        let dir = self.root.join(&state.session_id);
        for d in [&dir, &self.root.join("modules")] {
            if std::fs::symlink_metadata(d).is_ok_and(|m| !m.is_dir()) {
                return Err(CheckpointError::NotRegular { path: d.to_path_buf() });
            }
        }
        let module_bytes = self.store_modules(workflow)?;
        fsutil::create_dir_durable(&dir).map_err(io(&dir))?;
        let plan = self.plan(&state.session_id, workflow, channel, &dir);
        let values = match &plan {
            Plan::Full => channel.iter().map(|(k, v)| (k.len() + v.len() + 8) as u64).sum::<u64>(),
            Plan::Increment { bytes, set, deleted, .. } => bytes + 8 * (set.len() + deleted.len()) as u64,
        };
        let estimate =
            values + state.queue.input_bytes() + state.last_result.as_ref().map_or(0, |r| r.len() as u64) + (64 << 10);
        // Ids are `<session>_<steps>_<n>`: the first n whose files are all
        // absent. Files are created, never replaced, so a racing writer
        // (without the lock: an older host) makes this pick the next n.
        let mut written = None;
        for n in 1u32.. {
            if self.remote.is_some() && n > super::remote::MAX_CLAIM_TRIES {
                return Err(CheckpointError::Json {
                    path: dir.clone(),
                    message: format!(
                        "no free checkpoint id after {} claims in the bucket (checkpoint::remote::MAX_CLAIM_TRIES): \
                         other writers hold them, or the server refuses every create-only put",
                        super::remote::MAX_CLAIM_TRIES
                    ),
                });
            }
            let id = format!("{}_{}_{n}", state.session_id, state.steps);
            let base = dir.join(&id);
            if ["ctx", "state.json", "meta.json"].iter().any(|e| with_ext(&base, e).exists()) {
                continue;
            }
            if let Some(bucket) = &self.remote {
                let modules: Vec<Sha256> = workflow.modules.values().map(|m| m.sha256).collect();
                if !super::remote::claim(bucket, &state.session_id, &id, &modules)? {
                    continue;
                }
            }
            match self.write_files(&base, &id, workflow, state, channel, request, estimate, &plan) {
                Err(CheckpointError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                    continue;
                }
                Err(e) => return Err(e),
                Ok((bytes, ctx)) => {
                    written = Some((id, base, bytes, ctx));
                    break;
                }
            }
        }
        let full = matches!(plan, Plan::Full);
        let over = match &plan {
            Plan::Increment { base, .. } => Some(base.checkpoint_id.clone()),
            Plan::Full => None,
        };
        drop(plan);
        let Some((id, base, mut bytes, ctx)) = written else {
            return Err(CheckpointError::BadId { id: state.session_id.clone() });
        };
        let mut base_lost = false;
        if let Some(bucket) = self.remote.clone() {
            let modules: Vec<(Sha256, &[u8])> = workflow
                .modules
                .values()
                .filter_map(|m| self.modules.values().find(|c| c.digest() == m.sha256).map(|c| (m.sha256, c.bytes())))
                .collect();
            match super::remote::publish(
                &bucket,
                &state.session_id,
                &id,
                &modules,
                over.as_deref(),
                &mut self.published,
            ) {
                Ok(p) => {
                    bytes = p.bytes.max(bytes);
                    base_lost = p.base_lost;
                }
                Err(e) => {
                    // Not in the bucket: not in the working copy either.
                    for ext in ["meta.json", "state.json", "ctx"] {
                        let _ = std::fs::remove_file(with_ext(&base, ext));
                    }
                    return Err(e);
                }
            }
            if let Err(e) = super::remote::push_journal(&bucket, &state.session_id) {
                tracing::warn!("the journal was not uploaded: {}", crate::error_chain(&e));
            }
        }
        let ours = self.written.entry(state.session_id.clone()).or_default();
        ours.push(id.clone());
        if workflow.settings.keep_checkpoints.is_none() && ours.len() > 1 {
            ours.remove(0);
        }
        match &mut self.chain {
            Some(chain) if !full => chain.increments += 1,
            _ => {
                let next = Base {
                    checkpoint_id: id,
                    session_id: state.session_id.clone(),
                    ctx,
                    workflow: workflow.clone(),
                    channel: channel.clone(),
                };
                self.chain = Some(Chain::new(next, &with_ext(&base, "ctx")));
            }
        }
        if let Some(keep) = workflow.settings.keep_checkpoints {
            // Committed already: a retention that fails is reported, and the
            // next commit tries again.
            let elsewhere = match &self.remote {
                Some(bucket) => super::remote::bases_needed_elsewhere(bucket, &state.session_id).map(Some),
                None => Ok(None),
            };
            let mut also_keep: Vec<&str> =
                self.chain.as_ref().map(|c| c.base.checkpoint_id.as_str()).into_iter().collect();
            if let Ok(Some(ids)) = &elsewhere {
                also_keep.extend(ids.iter().map(String::as_str));
            }
            let written = self.written.get(&state.session_id).map_or(&[][..], Vec::as_slice);
            let rule =
                super::directory::Retention { keep, written, resumed_steps: self.resumed_steps, also_keep: &also_keep };
            let result = match elsewhere {
                Err(e) => Err(e),
                Ok(_) => super::directory::retain(&dir, rule).and_then(|removed| {
                    if let Some(bucket) = &self.remote {
                        for id in removed.iter().rev() {
                            super::remote::remove(bucket, &state.session_id, id)?;
                        }
                    }
                    Ok(removed)
                }),
            };
            match result {
                Ok(removed) if !removed.is_empty() => {
                    tracing::debug!("retention (keep_checkpoints = {keep}): removed {}", removed.join(", "));
                    if let Some(ours) = self.written.get_mut(&state.session_id) {
                        ours.retain(|id| !removed.contains(id));
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    "retention (keep_checkpoints = {keep}) could not remove older checkpoints: {}",
                    crate::error_chain(&e)
                ),
            }
        }
        Ok((base, bytes + module_bytes, base_lost))
    }

    #[allow(clippy::too_many_arguments)]
    fn write_files(
        &self,
        base: &Path,
        id: &str,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
        estimate: u64,
        plan: &Plan,
    ) -> Result<(u64, FileDigest), CheckpointError> {
        let ctx_path = with_ext(base, "ctx");
        // The three files are written whole and made durable in one round
        // (`sync_together`); then the commit record is linked into place
        // and its name synced, before this returns (the run's next task
        // starts only after that). So the record appears only once the files
        // it names are durable, as before, at two syncs of the directory
        // where one per file and per name took six.
        let ((digest, ctx_size), ctx_file) = fsutil::write_new_unsynced_with(&ctx_path, |file| {
            let mut out = fsutil::EagerWriteback::new(file);
            let digest = match plan {
                Plan::Full => format::write(&mut out, id, workflow, state, channel)?,
                Plan::Increment { set, deleted, .. } => format::write_increment(&mut out, id, state, set, deleted)?,
            };
            Ok((digest, file.stream_position()?))
        })
        .map_err(|e| written_error(&ctx_path, e, estimate))?;
        let encode = |path: &Path, e: serde_json::Error| CheckpointError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let state_path = with_ext(base, "state.json");
        let mut state_json = serde_json::to_vec_pretty(&state_file(id, plan.version(), workflow, state))
            .map_err(|e| encode(&state_path, e))
            .inspect_err(|_| remove_ours(&[&ctx_path]))?;
        state_json.push(b'\n');
        let ((), state_out) =
            fsutil::write_new_unsynced_with(&state_path, |file| std::io::Write::write_all(file, &state_json))
                .map_err(|e| written_error(&state_path, e, state_json.len() as u64))
                .inspect_err(|_| remove_ours(&[&ctx_path]))?;
        let record = v2::Record {
            checkpoint_id: id.to_string(),
            session_id: state.session_id.clone(),
            created_at: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            steps: state.steps,
            start_node: workflow.start.clone(),
            backend: if self.remote.is_some() { "s3" } else { "local" }.into(),
            workflow: workflow.name.clone(),
            mode: request.mode.into(),
            after: request.task_id.clone(),
            user_metadata: enriched(request),
            files: BTreeMap::from([
                ("ctx".to_string(), FileDigest { digest, size: ctx_size }),
                (
                    "state".to_string(),
                    FileDigest {
                        digest: ContentDigest::Sha256(Sha256::of(&state_json)),
                        size: state_json.len() as u64,
                    },
                ),
            ]),
            base: match plan {
                Plan::Full => None,
                Plan::Increment { base, .. } => Some(base.clone()),
            },
            outbound: (*workflow.outbound != crate::outbound::Policy::default()).then(|| (*workflow.outbound).clone()),
            trace: self.trace,
            keep_checkpoints: workflow.settings.keep_checkpoints,
            keep_iteration_results: Some(workflow.settings.keep_iteration_results),
            records: self.records_log.clone(),
        };
        let meta_path = with_ext(base, "meta.json");
        let Some(key) = &self.key else {
            remove_ours(&[&state_path, &ctx_path]);
            return Err(CheckpointError::Key(super::signing::KeyError::NoHome));
        };
        let meta = v2::meta_file(&record, key)
            .map_err(|e| encode(&meta_path, e))
            .inspect_err(|_| remove_ours(&[&state_path, &ctx_path]))?;
        if meta.len() as u64 > super::read::META_LIMIT {
            remove_ours(&[&state_path, &ctx_path]);
            return Err(CheckpointError::Json {
                path: meta_path,
                message: format!(
                    "the commit record would have {} bytes, more than a reader accepts ({} bytes): the checkpoint metadata is too large",
                    meta.len(),
                    super::read::META_LIMIT
                ),
            });
        }
        // The commit record is written to a temp file and synced with the
        // other two in one round, then linked into place and its name
        // synced: it appears only once the files it names are durable.
        let dir = base.parent().unwrap_or(Path::new("."));
        let meta_tmp = fsutil::temp_with(dir, &meta)
            .map_err(|e| written_error(&meta_path, e, meta.len() as u64))
            .inspect_err(|_| remove_ours(&[&state_path, &ctx_path]))?;
        let synced = fsutil::sync_together(&[&ctx_file, &state_out, meta_tmp.as_file()], dir)
            .and_then(|()| fsutil::persist_durable(meta_tmp, &meta_path));
        if let Err(e) = synced {
            // Not committed: not a checkpoint.
            remove_ours(&[&state_path, &ctx_path]);
            return Err(written_error(&meta_path, e, 0));
        }
        Ok((ctx_size + state_json.len() as u64 + meta.len() as u64, FileDigest { digest, size: ctx_size }))
    }
}

impl Chain {
    /// Increments over `base`, whose `.ctx` is the file at `ctx` (if it can
    /// be found).
    fn new(base: Base, ctx: &Path) -> Chain {
        let channel_bytes = base.channel.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        use std::os::unix::fs::OpenOptionsExt;
        // Not through a link, and never blocking on a FIFO put in its place.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(ctx)
            .ok()
            .and_then(|f| f.metadata().ok().filter(|m| m.is_file()).map(|m| (file_id(&m), f)));
        Chain { base, channel_bytes, increments: 0, file }
    }
}

/// A file's device and inode.
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Remove files this writer created for a checkpoint it could not finish,
/// in the order given (a commit record first, so nothing is left that looks
/// committed). Best effort: what stays is torn, and `prune` removes it.
fn remove_ours(paths: &[&Path]) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

/// A write error, saying plainly when the disk is full.
fn written_error(path: &Path, source: std::io::Error, needed: u64) -> CheckpointError {
    if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT) {
        return CheckpointError::DiskFull { path: path.to_path_buf(), needed };
    }
    CheckpointError::Io { path: path.to_path_buf(), source }
}

impl CheckpointSink for CheckpointStore {
    fn open_records(&mut self, session: &str) -> Option<Box<dyn crate::engine::RecordSink>> {
        // Records live beside the checkpoints on this machine's disk: a run
        // publishing to a bucket writes behind without them.
        if self.remote.is_some() || !super::schema::is_valid_id(session) {
            return None;
        }
        if self.key.is_none() {
            match SigningKey::load_or_create() {
                Ok(k) => self.key = Some(k),
                Err(e) => {
                    tracing::warn!("no durable records for this run: {}", crate::error_chain(&e));
                    return None;
                }
            }
        }
        let key = self.key.clone()?;
        let id = super::records::new_log_id();
        self.records_log = Some(id.clone());
        let folder = self.root.join(session);
        Some(Box::new(super::records::RecordLog::new(&folder, id, key, 0, BTreeMap::new())))
    }

    fn write(
        &mut self,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
    ) -> Result<Written, SinkError> {
        Ok(self.write_checkpoint(workflow, state, channel, request)?)
    }
}

/// The task's metadata, with task_id, cycle_count, elapsed_time and mode added
/// where the task did not set them (the task's keys win).
fn enriched(r: &CheckpointRequest) -> serde_json::Value {
    let mut map = match r.user_metadata.to_value() {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let defaults = [
        ("task_id", serde_json::json!(r.task_id)),
        ("cycle_count", serde_json::json!(r.cycle_count)),
        ("elapsed_time", serde_json::json!(r.elapsed_time)),
        ("mode", serde_json::json!(r.mode.as_str())),
    ];
    for (k, v) in defaults {
        map.entry(k).or_insert(v);
    }
    serde_json::Value::Object(map)
}

fn state_file(id: &str, version: super::schema::SchemaVersion, workflow: &Workflow, state: &RunState) -> StateFile {
    let pending_tasks = state
        .queue
        .iter()
        .map(|s| {
            let (kind, target) = match &s.target {
                Target::Task(t) => (PendingKind::Task, t.clone()),
                Target::Group(g) => (PendingKind::Group, g.clone()),
            };
            PendingTask {
                task_id: s.id.clone(),
                kind,
                target,
                origin: Some(match s.origin {
                    Origin::Flow => OriginFile::Flow,
                    Origin::Dynamic => OriginFile::Dynamic,
                    Origin::Iteration { cycle } => OriginFile::Iteration { cycle },
                }),
                input: s
                    .input
                    .as_ref()
                    .and_then(|i| serde_json::value::RawValue::from_string(i.as_str().to_string()).ok()),
                retry_count: s.attempt,
                last_error: s.last_error.clone(),
            }
        })
        .collect();
    StateFile {
        schema_version: version.to_string(),
        checkpoint_id: id.to_string(),
        session_id: state.session_id.clone(),
        start_node: workflow.start.clone(),
        steps: state.steps,
        completed_tasks: state.completed.clone(),
        last_completed: state.last_completed.clone(),
        cycle_counts: state.cycle_counts.clone(),
        pending_tasks,
        pending_input: state
            .pending_input
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or(serde_json::Value::Null))
            .collect(),
        resuming_task_id: None,
        backend: BTreeMap::from([("channel".to_string(), "memory".to_string())]),
        modules: workflow
            .modules
            .iter()
            .map(|(k, m)| (k.clone(), ModuleFile { path: m.path.clone(), sha256: m.sha256, size: m.size }))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_names_the_file_and_what_was_needed() {
        let err = written_error(Path::new("/cp/s/x.ctx"), std::io::Error::from_raw_os_error(libc::ENOSPC), 104_857_600);
        assert_eq!(
            err.to_string(),
            "no space left on the device writing /cp/s/x.ctx: the checkpoint needs about 104857600 bytes"
        );
        let other = written_error(Path::new("/cp/s/x.ctx"), std::io::Error::from_raw_os_error(libc::EACCES), 1);
        assert!(matches!(other, CheckpointError::Io { .. }));
    }
}
