//! Checkpoints: durable, portable snapshots of a run at a task boundary.
//!
//! A checkpoint directory holds one folder per session and one shared folder of
//! module copies:
//!
//! ```text
//! <dir>/modules/<sha256>.wasm            every module any checkpoint refers to, stored once
//! <dir>/<session>/<id>.ctx               the whole host context (see format)
//! <dir>/<session>/<id>.state.json        readable summary: queue, counters, module table
//! <dir>/<session>/<id>.meta.json         the commit record, written last
//! ```
//!
//! Every file is written durably (temp file, fsync, rename, fsync of the
//! directory) and carries the checkpoint id. The metadata file is written last
//! and records the sha256 of the other two: a checkpoint without it, or whose
//! files do not match it, is torn and is reported, never loaded.

pub mod format;
mod fsutil;

use crate::engine::{CheckpointRequest, CheckpointSink, RunState, Target};
use crate::json::Json;
use crate::model::{ModuleRef, Workflow};
use crate::sandbox::sha256_hex;
use format::{Context, ContextRef, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Seek;
use std::path::{Path, PathBuf};

/// The default checkpoint directory (relative to the working directory).
pub const DEFAULT_DIR: &str = "checkpoints";

/// Why a checkpoint could not be written, found or loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// No checkpoint at that path.
    #[error("no checkpoint at {path} (expected {path}.meta.json)")]
    NotFound {
        /// The base path looked at.
        path: PathBuf,
    },
    /// No checkpoint in a directory.
    #[error("no checkpoint in {dir}")]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
    /// Files exist but the commit record is missing or does not match them.
    #[error("checkpoint {path} is torn (its write did not finish): {reason}")]
    Torn {
        /// The base path.
        path: PathBuf,
        /// What is missing or does not match.
        reason: String,
    },
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file does not parse or lacks fields.
    #[error("{path}: corrupt JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// Written by another schema version.
    #[error("{path}: schema version {found}, but this graflow-host reads version {SCHEMA_VERSION}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: String,
    },
    /// The `.ctx` file is damaged.
    #[error("{path}: {error}")]
    Context {
        /// The file.
        path: PathBuf,
        /// What is wrong.
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
    /// A module's bytes are not the ones the checkpoint recorded.
    #[error(
        "module '{module}' changed: the checkpoint recorded sha256 {expected}, but {} has sha256 {found}; \
         resuming would run different code (pass --allow-module-change to resume with it anyway)", path.display()
    )]
    ModuleChanged {
        /// The module.
        module: String,
        /// The recorded sha256.
        expected: String,
        /// The sha256 found.
        found: String,
        /// The file that differs.
        path: PathBuf,
    },
    /// A module is in neither the checkpoint directory nor its original place.
    #[error("module '{module}' (sha256 {sha256}) is missing: neither {} nor {} exists", copy.display(), original.display())]
    ModuleMissing {
        /// The module.
        module: String,
        /// Its sha256.
        sha256: String,
        /// The content-addressed copy looked for.
        copy: PathBuf,
        /// The original path.
        original: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// A file's digest and size, as the commit record keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// `sha256:<hex>` of the whole file (`.state.json`), or `xxh3:<hex>`: the
    /// payload checksum in the `.ctx` header.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// `<id>.meta.json`: the commit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Schema version of the checkpoint.
    pub schema_version: String,
    /// The checkpoint id (`<session>_<steps>_<n>`).
    pub checkpoint_id: String,
    /// The run.
    pub session_id: String,
    /// UTC, ISO 8601.
    pub created_at: String,
    /// Completed tasks at the checkpoint.
    pub steps: u64,
    /// The workflow's start node.
    pub start_node: String,
    /// Storage backend (`local`).
    pub backend: String,
    /// The workflow's name.
    pub workflow: String,
    /// Metadata: the task's keys, plus task_id, cycle_count, elapsed_time and
    /// mode where the task did not set them.
    pub user_metadata: serde_json::Value,
    /// Digests of the `.ctx` and `.state.json` files.
    pub files: BTreeMap<String, FileDigest>,
}

/// One queued execution, in `<id>.state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingTask {
    /// Execution id.
    pub task_id: String,
    /// `task` or `group`.
    pub kind: String,
    /// The task or group it runs.
    pub target: String,
    /// Its explicit input.
    pub input: Option<serde_json::Value>,
    /// Retries made so far.
    pub retry_count: u32,
    /// Last error, for a retry.
    pub last_error: Option<String>,
}

/// `<id>.state.json`: a readable summary of the context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Schema version.
    pub schema_version: String,
    /// The checkpoint id.
    pub checkpoint_id: String,
    /// The run.
    pub session_id: String,
    /// The start node.
    pub start_node: String,
    /// Completed tasks.
    pub steps: u64,
    /// Completed execution ids, in order.
    pub completed_tasks: Vec<String>,
    /// Run counts per task.
    pub cycle_counts: BTreeMap<String, u32>,
    /// The queue, in order.
    pub pending_tasks: Vec<PendingTask>,
    /// The task resumed first: always null (checkpoints are taken at task
    /// boundaries, so no task is re-run).
    pub resuming_task_id: Option<String>,
    /// Channel backend.
    pub backend: BTreeMap<String, String>,
    /// Module name → sha256, size and original path.
    pub modules: BTreeMap<String, ModuleRef>,
}

/// Writes the checkpoints of one run into a checkpoint directory.
pub struct CheckpointStore {
    root: PathBuf,
    copied: HashSet<String>,
    written: u32,
    /// The last checkpoint written: session, steps and base path.
    last: Option<(String, u64, PathBuf)>,
}

impl CheckpointStore {
    /// A store writing into `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> CheckpointStore {
        CheckpointStore { root: root.into(), copied: HashSet::new(), written: 0, last: None }
    }

    /// The checkpoint directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn copy_modules(&mut self, workflow: &Workflow) -> Result<(), CheckpointError> {
        let dir = self.root.join("modules");
        for (name, m) in &workflow.modules {
            if self.copied.contains(&m.sha256) {
                continue;
            }
            let copy = dir.join(format!("{}.wasm", m.sha256));
            if !copy.exists() {
                fsutil::create_dir_durable(&dir).map_err(io(&dir))?;
                let bytes = std::fs::read(&m.path).map_err(io(&m.path))?;
                verify_module(name, &m.sha256, &bytes, &m.path)?;
                fsutil::write_durable(&copy, &bytes).map_err(io(&copy))?;
            }
            self.copied.insert(m.sha256.clone());
        }
        Ok(())
    }

    fn next_id(&mut self, dir: &Path, state: &RunState) -> String {
        loop {
            self.written += 1;
            let id = format!("{}_{}_{}", state.session_id, state.steps, self.written);
            if !dir.join(format!("{id}.meta.json")).exists() && !dir.join(format!("{id}.ctx")).exists() {
                return id;
            }
        }
    }

    /// Write a checkpoint; its base path (`<dir>/<session>/<id>`). A checkpoint
    /// not asked for by a task (automatic, interrupt, max-steps) at the boundary
    /// where the last one was written is that same checkpoint: nothing changed
    /// in between, so it is not written twice.
    pub fn write_checkpoint(
        &mut self,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
    ) -> Result<PathBuf, CheckpointError> {
        if request.mode != "deferred"
            && let Some((session, steps, base)) = &self.last
            && session == &state.session_id
            && *steps == state.steps
        {
            return Ok(base.clone());
        }
        let base = self.write_new(workflow, state, channel, request)?;
        self.last = Some((state.session_id.clone(), state.steps, base.clone()));
        Ok(base)
    }

    fn write_new(
        &mut self,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
    ) -> Result<PathBuf, CheckpointError> {
        self.copy_modules(workflow)?;
        let dir = self.root.join(&state.session_id);
        fsutil::create_dir_durable(&dir).map_err(io(&dir))?;
        let id = self.next_id(&dir, state);
        let base = dir.join(&id);
        let ctx = ContextRef { checkpoint_id: &id, workflow, state, channel };
        let ctx_path = with_ext(&base, "ctx");
        let (checksum, ctx_size) = fsutil::write_durable_with(&ctx_path, |file| {
            let checksum = format::write(&mut fsutil::EagerWriteback::new(file), &ctx)?;
            Ok((checksum, file.stream_position()?))
        })
        .map_err(io(&ctx_path))?;
        let state_json = serde_json::to_vec_pretty(&state_file(&id, workflow, state)).expect("state encodes");
        let state_path = with_ext(&base, "state.json");
        fsutil::write_durable(&state_path, &state_json).map_err(io(&state_path))?;
        let meta = Meta {
            schema_version: SCHEMA_VERSION.to_string(),
            checkpoint_id: id.clone(),
            session_id: state.session_id.clone(),
            created_at: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            steps: state.steps,
            start_node: workflow.start.clone(),
            backend: "local".into(),
            workflow: workflow.name.clone(),
            user_metadata: enriched(request),
            files: BTreeMap::from([
                ("ctx".to_string(), FileDigest { digest: format!("xxh3:{checksum:032x}"), size: ctx_size }),
                (
                    "state".to_string(),
                    FileDigest { digest: format!("sha256:{}", sha256_hex(&state_json)), size: state_json.len() as u64 },
                ),
            ]),
        };
        let meta_path = with_ext(&base, "meta.json");
        fsutil::write_durable(&meta_path, &serde_json::to_vec_pretty(&meta).expect("meta encodes"))
            .map_err(io(&meta_path))?;
        Ok(base)
    }
}

impl CheckpointSink for CheckpointStore {
    fn write(
        &mut self,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
    ) -> Result<String, String> {
        self.write_checkpoint(workflow, state, channel, request)
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string())
    }
}

/// The task's metadata, with task_id, cycle_count, elapsed_time and mode added
/// where the task did not set them (the task's keys win).
fn enriched(r: &CheckpointRequest) -> serde_json::Value {
    let mut map = match r.user_metadata.to_value() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let defaults = [
        ("task_id", serde_json::json!(r.task_id)),
        ("cycle_count", serde_json::json!(r.cycle_count)),
        ("elapsed_time", serde_json::json!(r.elapsed_time)),
        ("mode", serde_json::json!(r.mode)),
    ];
    for (k, v) in defaults {
        map.entry(k).or_insert(v);
    }
    serde_json::Value::Object(map)
}

fn state_file(id: &str, workflow: &Workflow, state: &RunState) -> StateFile {
    let pending_tasks = state
        .queue
        .iter()
        .map(|s| {
            let (kind, target) = match &s.target {
                Target::Task(t) => ("task", t.clone()),
                Target::Group(g) => ("group", g.clone()),
            };
            PendingTask {
                task_id: s.id.clone(),
                kind: kind.into(),
                target,
                input: s.input.as_ref().map(Json::to_value),
                retry_count: s.attempt,
                last_error: s.last_error.clone(),
            }
        })
        .collect();
    StateFile {
        schema_version: SCHEMA_VERSION.to_string(),
        checkpoint_id: id.to_string(),
        session_id: state.session_id.clone(),
        start_node: workflow.start.clone(),
        steps: state.steps,
        completed_tasks: state.completed.clone(),
        cycle_counts: state.cycle_counts.clone(),
        pending_tasks,
        resuming_task_id: None,
        backend: BTreeMap::from([("channel".to_string(), "memory".to_string())]),
        modules: workflow.modules.clone(),
    }
}

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
    base.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// A checkpoint read back and verified.
#[derive(Debug)]
pub struct Loaded {
    /// Its base path.
    pub base: PathBuf,
    /// The commit record.
    pub meta: Meta,
    /// The readable state.
    pub state_file: StateFile,
    /// The context.
    pub context: Context,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, CheckpointError> {
    serde_json::from_slice(bytes)
        .map_err(|e| CheckpointError::Json { path: path.to_path_buf(), message: e.to_string() })
}

fn read_meta(base: &Path) -> Result<Meta, CheckpointError> {
    let meta_path = with_ext(base, "meta.json");
    if !meta_path.exists() {
        if with_ext(base, "ctx").exists() || with_ext(base, "state.json").exists() {
            return Err(CheckpointError::Torn {
                path: base.to_path_buf(),
                reason: format!("{} is missing", meta_path.display()),
            });
        }
        return Err(CheckpointError::NotFound { path: base.to_path_buf() });
    }
    let bytes = std::fs::read(&meta_path).map_err(io(&meta_path))?;
    let version: serde_json::Value = read_json(&meta_path, &bytes)?;
    check_version(&meta_path, &version)?;
    read_json(&meta_path, &bytes)
}

fn check_version(path: &Path, value: &serde_json::Value) -> Result<(), CheckpointError> {
    match value.get("schema_version") {
        Some(serde_json::Value::String(v)) if v == &SCHEMA_VERSION.to_string() => Ok(()),
        Some(other) => Err(CheckpointError::Schema { path: path.to_path_buf(), found: other.to_string() }),
        None => {
            Err(CheckpointError::Json { path: path.to_path_buf(), message: "missing field `schema_version`".into() })
        }
    }
}

/// Read a file recorded in the commit record and check its size and digest.
fn read_recorded(base: &Path, meta: &Meta, key: &str, ext: &str) -> Result<(PathBuf, Vec<u8>), CheckpointError> {
    let path = with_ext(base, ext);
    let Some(digest) = meta.files.get(key) else {
        return Err(CheckpointError::Json {
            path: with_ext(base, "meta.json"),
            message: format!("`files` has no entry `{key}`"),
        });
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CheckpointError::Torn {
                path: base.to_path_buf(),
                reason: format!("{} is missing", path.display()),
            });
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let found = match digest.digest.split_once(':') {
        Some(("sha256", _)) => format!("sha256:{}", sha256_hex(&bytes)),
        Some(("xxh3", _)) => format::recorded_checksum(&bytes).map_or_else(String::new, |c| format!("xxh3:{c:032x}")),
        _ => {
            return Err(CheckpointError::Json {
                path: with_ext(base, "meta.json"),
                message: format!("unknown digest '{}' for `{key}`", digest.digest),
            });
        }
    };
    if bytes.len() as u64 != digest.size || found != digest.digest {
        let reason = format!(
            "{} does not match its commit record ({} bytes, expected {}): damaged, truncated or from another write",
            path.display(),
            bytes.len(),
            digest.size
        );
        return Err(CheckpointError::Torn { path: base.to_path_buf(), reason });
    }
    Ok((path, bytes))
}

/// Load and verify the checkpoint at `path` (its base or any of its files).
pub fn load(path: &Path) -> Result<Loaded, CheckpointError> {
    let base = base_of(path);
    let meta = read_meta(&base)?;
    let (state_path, state_bytes) = read_recorded(&base, &meta, "state", "state.json")?;
    let state_value: serde_json::Value = read_json(&state_path, &state_bytes)?;
    check_version(&state_path, &state_value)?;
    let state_file: StateFile = read_json(&state_path, &state_bytes)?;
    let (ctx_path, ctx_bytes) = read_recorded(&base, &meta, "ctx", "ctx")?;
    let context =
        format::decode(&ctx_bytes).map_err(|error| CheckpointError::Context { path: ctx_path.clone(), error })?;
    for (path, found) in [(&state_path, &state_file.checkpoint_id), (&ctx_path, &context.checkpoint_id)] {
        if found != &meta.checkpoint_id {
            return Err(CheckpointError::Mismatch {
                path: path.clone(),
                expected: meta.checkpoint_id.clone(),
                found: found.clone(),
            });
        }
    }
    Ok(Loaded { base, meta, state_file, context })
}

/// Check that `bytes` (read from `path`) are the module recorded as `expected`.
fn verify_module(name: &str, expected: &str, bytes: &[u8], path: &Path) -> Result<(), CheckpointError> {
    let found = sha256_hex(bytes);
    if found != expected {
        return Err(CheckpointError::ModuleChanged {
            module: name.into(),
            expected: expected.into(),
            found,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The bytes of a module for resuming: the content-addressed copy in the
/// checkpoint directory, verified. The file at the original path must not
/// differ from it unless `allow_change` (then the current file is used, and a
/// warning returned).
pub fn module_bytes(
    root: &Path,
    name: &str,
    module: &ModuleRef,
    allow_change: bool,
) -> Result<(Vec<u8>, Option<String>), CheckpointError> {
    let copy = root.join("modules").join(format!("{}.wasm", module.sha256));
    if module.path.exists() {
        let bytes = std::fs::read(&module.path).map_err(io(&module.path))?;
        let found = sha256_hex(&bytes);
        if found != module.sha256 {
            if !allow_change {
                return Err(CheckpointError::ModuleChanged {
                    module: name.into(),
                    expected: module.sha256.clone(),
                    found,
                    path: module.path.clone(),
                });
            }
            let warning = format!(
                "module '{name}' changed since the checkpoint (sha256 {} then, {found} now); resuming with the new code of {}",
                module.sha256,
                module.path.display()
            );
            return Ok((bytes, Some(warning)));
        }
        return Ok((bytes, None));
    }
    match std::fs::read(&copy) {
        Ok(bytes) => {
            verify_module(name, &module.sha256, &bytes, &copy)?;
            Ok((bytes, None))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CheckpointError::ModuleMissing {
            module: name.into(),
            sha256: module.sha256.clone(),
            copy,
            original: module.path.clone(),
        }),
        Err(e) => Err(io(&copy)(e)),
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
    let sessions = std::fs::read_dir(dir).map_err(io(dir))?;
    for session in sessions.flatten() {
        let path = session.path();
        if !path.is_dir() || path.file_name().is_some_and(|n| n == "modules") {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.path();
            if !file.to_string_lossy().ends_with(".meta.json") {
                continue;
            }
            let base = base_of(&file);
            match read_meta(&base) {
                Ok(meta) => out.push(Summary { base, meta }),
                Err(e) => tracing::warn!("skipping {}: {e}", file.display()),
            }
        }
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

/// The newest committed checkpoint under `dir`.
pub fn latest(dir: &Path) -> Result<Summary, CheckpointError> {
    list(dir)?.pop().ok_or_else(|| CheckpointError::Empty { dir: dir.to_path_buf() })
}

/// Remove all but the `keep` newest checkpoints under `dir`, then module copies
/// no remaining checkpoint refers to. The commit record goes first, so an
/// interrupted prune leaves torn checkpoints (skipped), never dangling ones.
/// Returns the ids removed.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<String>, CheckpointError> {
    let all = list(dir)?;
    let cut = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for s in &all[..cut] {
        for ext in ["meta.json", "state.json", "ctx"] {
            let path = with_ext(&s.base, ext);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        removed.push(s.meta.checkpoint_id.clone());
    }
    let mut referenced = HashSet::new();
    for s in &all[cut..] {
        let state_path = with_ext(&s.base, "state.json");
        let bytes = std::fs::read(&state_path).map_err(io(&state_path))?;
        let state: StateFile = read_json(&state_path, &bytes)?;
        referenced.extend(state.modules.into_values().map(|m| m.sha256));
    }
    let modules = dir.join("modules");
    if let Ok(entries) = std::fs::read_dir(&modules) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let sha = name.strip_suffix(".wasm").unwrap_or(&name);
            if !referenced.contains(sha) {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
    }
    Ok(removed)
}
