//! The checkpoint schema: owned, versioned types for the three files of a
//! checkpoint, and their conversions to and from the engine's types.
//!
//! The engine's types ([`crate::model::Workflow`], [`crate::engine::RunState`])
//! may change freely; what is on disk changes only with a new version here.
//! Every version ever written can be read: [`v1`] (graflow-host 0.1: unsigned,
//! XXH3 context checksum) is read and upgraded; [`v2`] (a full checkpoint)
//! and [`v3`] (an increment over a full one) are read and written. Golden
//! files (`host/tests/golden/`) pin each version's bytes.

pub mod v1;
pub mod v2;
pub mod v3;

use crate::digest::Sha256;
use crate::engine::RunState;
use crate::json::Json;
use crate::model::{MAX_MEMORY_MB, Node, Workflow};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A schema version this host reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SchemaVersion {
    /// graflow-host 0.1: unsigned; `.ctx` checked by XXH3-128.
    V1 = 1,
    /// Signed commit record (HMAC-SHA256); `.ctx` identified by BLAKE3;
    /// typed origin of each queued execution; room for pending human-input
    /// requests; the queue and checkpoint bounds. Still what a full
    /// checkpoint is written as.
    V2 = 2,
    /// An increment: the run state and the channel keys set or deleted since
    /// a full (schema 2) checkpoint of the same run, its base, which the
    /// signed commit record names by id, size and BLAKE3 digest.
    V3 = 3,
}

/// The version a full checkpoint is written as (an increment is
/// [`SchemaVersion::V3`]).
pub const CURRENT: SchemaVersion = SchemaVersion::V2;

/// The newest version this host reads.
pub const NEWEST: SchemaVersion = SchemaVersion::V3;

impl SchemaVersion {
    /// The version numbered `n`.
    pub fn from_number(n: u32) -> Option<SchemaVersion> {
        match n {
            1 => Some(SchemaVersion::V1),
            2 => Some(SchemaVersion::V2),
            3 => Some(SchemaVersion::V3),
            _ => None,
        }
    }

    /// Its number.
    pub fn number(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.number().to_string())
    }
}

/// The versions this host reads, for messages: "1 to 3".
pub fn readable_versions() -> String {
    format!("{} to {}", SchemaVersion::V1, NEWEST)
}

/// A digest recorded in a commit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentDigest {
    /// SHA-256 of the whole file (`.state.json`).
    Sha256(Sha256),
    /// BLAKE3 of a `.ctx` payload (schema 2).
    Blake3([u8; 32]),
    /// XXH3-128 of a `.ctx` payload, as its header records it (schema 1 only:
    /// detects damage, not tampering).
    Xxh3(u128),
}

impl fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentDigest::Sha256(d) => write!(f, "sha256:{d}"),
            ContentDigest::Blake3(d) => write!(f, "blake3:{}", hex::encode(d)),
            ContentDigest::Xxh3(c) => write!(f, "xxh3:{c:032x}"),
        }
    }
}

impl Serialize for ContentDigest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ContentDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ContentDigest, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "'{text}' is not a digest (sha256:<64 hex>, blake3:<64 hex> or xxh3:<32 hex>)"
            ))
        };
        match text.split_once(':') {
            Some(("sha256", hex)) => hex.parse().map(ContentDigest::Sha256).map_err(|_| bad()),
            Some(("blake3", h))
                if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h, &mut out).map_err(|_| bad())?;
                Ok(ContentDigest::Blake3(out))
            }
            Some(("xxh3", hex)) if hex.len() == 32 => {
                u128::from_str_radix(hex, 16).map(ContentDigest::Xxh3).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

/// A file's digest and size, as the commit record keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Its digest.
    pub digest: ContentDigest,
    /// Bytes.
    pub size: u64,
}

/// The full checkpoint an increment (schema 3) is written over, as its
/// commit record names it: the base's `.ctx` lies beside the increment, in
/// the same session folder, and must have this size and payload digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseRef {
    /// The base checkpoint's id (its files are `<id>.*` in the same folder).
    pub checkpoint_id: String,
    /// The digest (BLAKE3 of the payload) and size of the base's `.ctx`.
    pub ctx: FileDigest,
}

/// The signature of a commit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Always `hmac-sha256`.
    pub algorithm: String,
    /// The id of the key that signed (see `checkpoint/signing.rs`).
    pub key_id: String,
    /// The MAC, hex.
    pub mac: String,
}

/// A checkpoint's commit record, whatever version wrote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    /// The schema version of the checkpoint.
    pub schema_version: SchemaVersion,
    /// The checkpoint id (`<session>_<steps>_<n>`).
    pub checkpoint_id: String,
    /// The run.
    pub session_id: String,
    /// UTC, RFC 3339.
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
    /// Digests of the `.ctx` (`ctx`) and `.state.json` (`state`) files.
    pub files: BTreeMap<String, FileDigest>,
    /// Why it was taken (schema 2; schema 1 kept it only in `user_metadata`).
    pub mode: Option<ModeFile>,
    /// The execution that asked for it or completed last (schema 2).
    pub after: Option<String>,
    /// The signature (schema 2); `None` for schema 1.
    pub signature: Option<Signature>,
    /// The full checkpoint this one is an increment over (schema 3 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    /// The workflow's outbound policy (grants by task, attached headers by
    /// variable name, the model provider, the bounds). Stored here, in the
    /// signed record, rather than in the payload, so schema 2 stays as it
    /// was; a reader restores it into the workflow it loads.
    pub outbound: Option<crate::outbound::Policy>,
    /// The trace context of the run that wrote it (its run span), when that
    /// run was traced: a resume links its own run span to it.
    pub trace: Option<crate::engine::TraceParent>,
    /// The run's retention rule (`keep_checkpoints`), when it has one: in
    /// the record, not the payload, and put back into the workflow a reader
    /// loads.
    pub keep_checkpoints: Option<u64>,
    /// The run's `keep_iteration_results`, in the record like
    /// `keep_checkpoints`; absent in checkpoints of older hosts, which then
    /// resume with the default.
    pub keep_iteration_results: Option<u64>,
    /// The record log of the run that wrote it (`checkpoint/records.rs`):
    /// with write-behind, the durable records of the boundaries after it,
    /// which a resume replays. In the signed record.
    pub records: Option<String>,
}

impl Meta {
    /// The run's `keep_iteration_results`: the record's, else (a record of
    /// an older host, or a value below 1) the default.
    pub fn iteration_results_kept(&self) -> u64 {
        self.keep_iteration_results.filter(|&n| n >= 1).unwrap_or(crate::model::DEFAULT_KEEP_ITERATION_RESULTS)
    }

    /// Why it was taken: the typed field, else what the metadata says.
    pub fn mode_name(&self) -> Option<&str> {
        match self.mode {
            Some(m) => Some(m.as_str()),
            None => self.user_metadata.get("mode").and_then(|v| v.as_str()),
        }
    }

    /// Why it was taken, for people: the mode, and for a pause the requests
    /// it waits for (`waiting for input: <id>, ...`); `-` when unknown.
    pub fn mode_label(&self) -> String {
        match self.mode_name() {
            Some("waiting_for_input") => {
                let ids: Vec<&str> = self
                    .user_metadata
                    .get("requests")
                    .and_then(|r| r.as_array())
                    .map(|a| a.iter().filter_map(|i| i.as_str()).collect())
                    .unwrap_or_default();
                if ids.is_empty() {
                    "waiting for input".into()
                } else {
                    format!("waiting for input: {}", ids.join(", "))
                }
            }
            Some(mode) => mode.to_string(),
            None => "-".into(),
        }
    }

    /// The execution it was taken after: the typed field, else the metadata's.
    pub fn after_task(&self) -> Option<&str> {
        match self.schema_version {
            SchemaVersion::V1 => self.user_metadata.get("task_id").and_then(|v| v.as_str()),
            _ => self.after.as_deref(),
        }
    }
}

/// Why a checkpoint was taken, as the commit record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeFile {
    /// A task asked.
    Deferred,
    /// `--checkpoint-every`.
    Auto,
    /// Ctrl-C / SIGTERM.
    Interrupt,
    /// `max_steps` reached.
    MaxSteps,
    /// The run paused for a person's answer.
    WaitingForInput,
}

impl ModeFile {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModeFile::Deferred => "deferred",
            ModeFile::Auto => "auto",
            ModeFile::Interrupt => "interrupt",
            ModeFile::MaxSteps => "max_steps",
            ModeFile::WaitingForInput => "waiting_for_input",
        }
    }
}

impl From<crate::engine::CheckpointMode> for ModeFile {
    fn from(m: crate::engine::CheckpointMode) -> ModeFile {
        use crate::engine::CheckpointMode as C;
        match m {
            C::Deferred => ModeFile::Deferred,
            C::Auto => ModeFile::Auto,
            C::Interrupt => ModeFile::Interrupt,
            C::MaxSteps => ModeFile::MaxSteps,
            C::WaitingForInput => ModeFile::WaitingForInput,
        }
    }
}

/// Where a queued execution came from, as the state file shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginFile {
    /// A flow node.
    Flow,
    /// A `next-task` instance.
    Dynamic,
    /// An iteration.
    Iteration {
        /// Its 1-based run number.
        cycle: u32,
    },
}

/// The kind of a queued execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingKind {
    /// A task.
    Task,
    /// A parallel group.
    Group,
}

/// One queued execution, in `<id>.state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingTask {
    /// Execution id.
    pub task_id: String,
    /// Task or group.
    pub kind: PendingKind,
    /// The task or group it runs.
    pub target: String,
    /// Where it came from (schema 2; `None` when read from schema 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginFile>,
    /// Its explicit input, verbatim.
    pub input: Option<Box<serde_json::value::RawValue>>,
    /// Retries made so far.
    pub retry_count: u32,
    /// Last error, for a retry.
    pub last_error: Option<String>,
}

/// A module as the state file lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleFile {
    /// Where the module was loaded from.
    pub path: std::path::PathBuf,
    /// The digest of the code that ran.
    pub sha256: Sha256,
    /// Bytes.
    pub size: u64,
}

/// `<id>.state.json`: a readable summary of the context, whatever version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    /// Schema version, as text.
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
    /// The execution that completed last (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completed: Option<String>,
    /// Run counts per task.
    pub cycle_counts: BTreeMap<String, u32>,
    /// The queue, in order.
    pub pending_tasks: Vec<PendingTask>,
    /// Human-input requests a paused run waits for (schema 2).
    #[serde(default)]
    pub pending_input: Vec<serde_json::Value>,
    /// The task resumed first: always null (checkpoints are taken at task
    /// boundaries, so no task is re-run).
    pub resuming_task_id: Option<String>,
    /// Channel backend.
    pub backend: BTreeMap<String, String>,
    /// Module name → digest, size and original path.
    pub modules: BTreeMap<String, ModuleFile>,
}

/// Everything a resume needs, in the engine's types: the workflow (graph,
/// tasks, limits, module digests), the run state and the channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// The checkpoint this context belongs to.
    pub checkpoint_id: String,
    /// The workflow as it was loaded, with its module table.
    pub workflow: Workflow,
    /// The run state at the task boundary.
    pub state: RunState,
    /// The channel's contents.
    pub channel: BTreeMap<String, Json>,
}

/// How far stored JSON values are trusted when a context is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// The checkpoint's signature verified: its values were checked when they
    /// entered the host that signed it.
    Trusted,
    /// Check every value again (unsigned or not verified).
    Check,
}

/// Why a decoded context was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A stored JSON value, checked unless trusted.
pub(crate) fn json_in(
    owner: Option<&bytes::Bytes>,
    text: &str,
    values: Values,
    what: &dyn Fn() -> String,
) -> Result<Json, Invalid> {
    match values {
        Values::Trusted => Ok(Json::trusted_in(owner, text)),
        Values::Check => {
            Json::parse_stored_in(owner, text).map_err(|e| Invalid(format!("{} is not valid JSON: {e}", what())))
        }
    }
}

/// Stored channel entries (key, JSON text) as the engine's values, checked
/// unless trusted, sharing `owner` when given.
pub(crate) fn channel_in<'k, C: FromIterator<(String, Json)>>(
    entries: impl IntoIterator<Item = (&'k str, &'k str)>,
    owner: Option<&bytes::Bytes>,
    values: Values,
) -> Result<C, Invalid> {
    entries
        .into_iter()
        .map(|(k, v)| Ok((k.to_string(), json_in(owner, v, values, &|| format!("channel key '{k}'"))?)))
        .collect()
}

/// A stored JSON value, checked unless trusted.
pub(crate) fn json(text: &str, values: Values, what: &dyn Fn() -> String) -> Result<Json, Invalid> {
    match values {
        Values::Trusted => Ok(Json::trusted(text)),
        Values::Check => Json::parse_stored(text).map_err(|e| Invalid(format!("{} is not valid JSON: {e}", what()))),
    }
}

/// A run or checkpoint id: 1 to 128 of `[A-Za-z0-9_.-]`, not `.` or `..`.
/// Ids become file names; anything else could leave the checkpoint directory.
pub fn is_valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Refuse groups that contain themselves (directly or through other groups)
/// or nest deeper than a flow can write.
fn group_depths(wf: &Workflow) -> Result<(), Invalid> {
    type Memo = std::collections::HashMap<String, usize>;
    fn depth(wf: &Workflow, node: &str, stack: &mut Vec<String>, memo: &mut Memo) -> Result<usize, Invalid> {
        let Some(Node::Group(g)) = wf.graph.nodes.get(node) else { return Ok(0) };
        if let Some(d) = memo.get(node) {
            return Ok(*d);
        }
        if stack.iter().any(|n| n == node) {
            return Err(Invalid(format!("group '{node}' contains itself")));
        }
        if stack.len() > crate::model::flow::MAX_DEPTH {
            return Err(Invalid(format!("groups nest deeper than {} levels", crate::model::flow::MAX_DEPTH)));
        }
        stack.push(node.to_string());
        let mut deepest = 0;
        for m in &g.members {
            deepest = deepest.max(depth(wf, m, stack, memo)?);
        }
        stack.pop();
        memo.insert(node.to_string(), deepest + 1);
        Ok(deepest + 1)
    }
    let mut memo = Memo::new();
    for name in wf.graph.nodes.keys() {
        depth(wf, name, &mut Vec::new(), &mut memo)?;
    }
    Ok(())
}

/// Check what the engine and the sandbox rely on in a decoded context: ids
/// that stay inside the checkpoint directory, limits the engine can be built
/// for, a graph whose names resolve, settings that are not zero.
pub fn validate(ctx: &Context) -> Result<(), Invalid> {
    let bad = |m: String| Err(Invalid(m));
    for (what, id) in [("checkpoint id", &ctx.checkpoint_id), ("session id", &ctx.state.session_id)] {
        if !is_valid_id(id) {
            return bad(format!("{what} '{}' is not a valid id (1 to 128 of A-Z a-z 0-9 _ . -)", id.escape_debug()));
        }
    }
    let wf = &ctx.workflow;
    if wf.settings.max_steps == 0 || wf.settings.parallelism == 0 {
        return bad("max_steps and parallelism must be at least 1".into());
    }
    if let Some((name, _)) = wf.settings.bounds.named().iter().find(|(n, v)| *v == 0 && *n != "max_next_tasks") {
        return bad(format!("bound {name} is 0"));
    }
    if !wf.graph.nodes.contains_key(&wf.start) {
        return bad(format!("the start node '{}' is not in the graph", wf.start));
    }
    for (name, t) in &wf.tasks {
        if t.limits.memory_bytes == 0
            || t.limits.memory_bytes > MAX_MEMORY_MB << 20
            || t.limits.timeout_ms == 0
            || t.limits.timeout_ms > crate::model::MAX_DURATION_MS
            || t.retry.max_ms > crate::model::MAX_DURATION_MS
            || t.retry.initial_ms > crate::model::MAX_DURATION_MS
        {
            return bad(format!("task '{name}' has limits out of range"));
        }
        if !wf.modules.contains_key(&t.module) {
            return bad(format!("task '{name}' uses module '{}', which the module table lacks", t.module));
        }
        if !(t.retry.factor.is_finite() && t.retry.factor >= 1.0) || t.max_cycles == 0 {
            return bad(format!("task '{name}' has a retry factor or max_cycles out of range"));
        }
        if let Some(d) = t.grants.dirs.iter().find(|d| !d.host.is_absolute() || !d.guest.starts_with('/')) {
            return bad(format!("task '{name}' grants a directory that is not absolute ({})", d.host.display()));
        }
    }
    for (name, node) in &wf.graph.nodes {
        match node {
            Node::Task if !wf.tasks.contains_key(name) => return bad(format!("flow node '{name}' has no task")),
            Node::Group(g) if g.members.iter().any(|m| !wf.graph.nodes.contains_key(m)) => {
                return bad(format!("group '{name}' has a member that is not a node"));
            }
            _ => {}
        }
    }
    group_depths(wf)?;
    if wf
        .graph
        .successors
        .iter()
        .any(|(a, bs)| !wf.graph.nodes.contains_key(a) || bs.iter().any(|b| !wf.graph.nodes.contains_key(b)))
    {
        return bad("an edge names a node the graph lacks".into());
    }
    Ok(())
}
