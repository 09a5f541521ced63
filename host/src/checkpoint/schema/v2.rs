//! Schema version 2, written and read by this host.
//!
//! - `<id>.ctx`: the container of `format.rs` around the bincode of
//!   [`ContextOut`] / [`ContextIn`] (the same layout; the first borrows what
//!   it writes, the second borrows channel values from the payload).
//! - `<id>.state.json`: [`super::StateFile`].
//! - `<id>.meta.json`: `{"schema_version": "2", "record": {...}, "signature":
//!   {...}}`; the signature is HMAC-SHA256 over [`MAC_CONTEXT`] followed by the
//!   exact bytes of `record`, which records the SHA-256 and size of the other
//!   two files.
//!
//! The commit record of an increment (schema 3, `v3.rs`) is this record with
//! `base` set, under `"schema_version": "3"` and [`MAC_CONTEXT_V3`].

use super::{BaseRef, Context, FileDigest, Invalid, Meta, SchemaVersion, Signature, Values, json};
use crate::checkpoint::signing::SigningKey;
use crate::digest::Sha256;
use crate::engine::feedback::{FeedbackKind, FeedbackRequest};
use crate::engine::{Origin, Queue, RunState, Target, TaskSpec};
use crate::json::Json;
use crate::model;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the MAC of a schema-2 commit record is computed over, before the
/// record's bytes (so a MAC of anything else never verifies as one).
pub const MAC_CONTEXT: &[u8] = b"graflow-checkpoint-meta-v2\n";

/// What the MAC of a schema-3 (increment) commit record is computed over,
/// before the record's bytes.
pub const MAC_CONTEXT_V3: &[u8] = b"graflow-checkpoint-meta-v3\n";

fn mac_context(base: bool) -> &'static [u8] {
    if base { MAC_CONTEXT_V3 } else { MAC_CONTEXT }
}

/// The MAC algorithm's name in the meta file.
pub const ALGORITHM: &str = "hmac-sha256";

/// The signed part of `<id>.meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// See [`Meta::checkpoint_id`].
    pub checkpoint_id: String,
    /// See [`Meta::session_id`].
    pub session_id: String,
    /// See [`Meta::created_at`].
    pub created_at: String,
    /// See [`Meta::steps`].
    pub steps: u64,
    /// See [`Meta::start_node`].
    pub start_node: String,
    /// See [`Meta::backend`].
    pub backend: String,
    /// See [`Meta::workflow`].
    pub workflow: String,
    /// See [`Meta::mode`].
    pub mode: super::ModeFile,
    /// See [`Meta::after`].
    pub after: Option<String>,
    /// See [`Meta::user_metadata`].
    pub user_metadata: serde_json::Value,
    /// See [`Meta::files`].
    pub files: BTreeMap<String, FileDigest>,
    /// See [`Meta::base`]: set in (and only in) a schema-3 record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    /// See [`Meta::outbound`]: absent when the workflow grants no network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<crate::outbound::Policy>,
    /// See [`Meta::trace`]: absent when the run was not traced (a malformed
    /// value is read as absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::engine::TraceParent::deserialize_lenient"
    )]
    pub trace: Option<crate::engine::TraceParent>,
    /// See [`Meta::keep_checkpoints`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_checkpoints: Option<u64>,
    /// See [`Meta::keep_iteration_results`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_iteration_results: Option<u64>,
    /// See [`Meta::records`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    schema_version: &'a str,
    record: &'a RawValue,
    signature: &'a Signature,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn<'a> {
    #[allow(dead_code)]
    schema_version: String,
    #[serde(borrow)]
    record: &'a RawValue,
    signature: Option<Signature>,
}

/// The bytes of `<id>.meta.json` for `record`, signed with `key`: schema 2,
/// or schema 3 when the record names a base.
pub fn meta_file(record: &Record, key: &SigningKey) -> Result<Vec<u8>, serde_json::Error> {
    let has_base = record.base.is_some();
    // Compact: pretty-printing deeply nested metadata would multiply its size.
    let record = serde_json::value::to_raw_value(record)?;
    let mut message = mac_context(has_base).to_vec();
    message.extend_from_slice(record.get().as_bytes());
    let signature = Signature { algorithm: ALGORITHM.into(), key_id: key.id().into(), mac: key.sign(&message) };
    let schema_version = if has_base { "3" } else { "2" };
    let mut out = serde_json::to_vec_pretty(&EnvelopeOut { schema_version, record: &record, signature: &signature })?;
    out.push(b'\n');
    Ok(out)
}

/// A schema-2 or schema-3 meta file (`version`): the record as [`Meta`], and
/// the message its MAC covers. A schema-3 record names its base; a schema-2
/// record does not.
pub fn read_meta(bytes: &[u8], version: SchemaVersion) -> Result<(Meta, Vec<u8>), serde_json::Error> {
    use serde::de::Error;
    let envelope: EnvelopeIn = serde_json::from_slice(bytes)?;
    let increment = version == SchemaVersion::V3;
    let mut message = mac_context(increment).to_vec();
    message.extend_from_slice(envelope.record.get().as_bytes());
    let r: Record = serde_json::from_str(envelope.record.get())?;
    match (&r.base, increment) {
        (None, true) => return Err(serde_json::Error::custom("a schema-3 record must name its base")),
        (Some(_), false) => return Err(serde_json::Error::custom("a schema-2 record cannot name a base")),
        _ => {}
    }
    let meta = Meta {
        schema_version: version,
        checkpoint_id: r.checkpoint_id,
        session_id: r.session_id,
        created_at: r.created_at,
        steps: r.steps,
        start_node: r.start_node,
        backend: r.backend,
        workflow: r.workflow,
        user_metadata: r.user_metadata,
        files: r.files,
        mode: Some(r.mode),
        after: r.after,
        signature: envelope.signature,
        base: r.base,
        outbound: r.outbound,
        trace: r.trace,
        keep_checkpoints: r.keep_checkpoints,
        keep_iteration_results: r.keep_iteration_results,
        records: r.records,
    };
    Ok((meta, message))
}

/// The `.ctx` payload as written: borrows the channel.
#[derive(Serialize)]
pub struct ContextOut<'a> {
    checkpoint_id: &'a str,
    workflow: Workflow,
    state: State,
    channel: &'a BTreeMap<String, Json>,
}

/// The `.ctx` payload as read: channel values borrowed from the payload and
/// copied once.
#[derive(Deserialize)]
pub struct ContextIn<'a> {
    pub(super) checkpoint_id: String,
    pub(super) workflow: Workflow,
    pub(super) state: State,
    #[serde(borrow)]
    pub(super) channel: BTreeMap<String, &'a str>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Workflow {
    pub(super) name: String,
    pub(super) flow: String,
    pub(super) start: String,
    pub(super) modules: BTreeMap<String, ModuleRef>,
    pub(super) tasks: BTreeMap<String, TaskDef>,
    pub(super) graph: Graph,
    pub(super) settings: RunSettings,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ModuleRef {
    pub(super) path: String,
    pub(super) sha256: [u8; 32],
    pub(super) size: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct TaskDef {
    pub(super) name: String,
    pub(super) module: String,
    pub(super) export: String,
    pub(super) inputs: Vec<String>,
    pub(super) max_cycles: u32,
    pub(super) retry: RetryPolicy,
    pub(super) limits: Limits,
    pub(super) grants: Grants,
    pub(super) reuse_instance: bool,
}

#[derive(Serialize, Deserialize)]
pub(super) struct RetryPolicy {
    pub(super) max_retries: u32,
    pub(super) initial_ms: u64,
    pub(super) factor: f64,
    pub(super) max_ms: u64,
    pub(super) jitter: bool,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Limits {
    pub(super) memory_bytes: u64,
    pub(super) timeout_ms: u64,
    pub(super) fuel: Option<u64>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Grants {
    pub(super) dirs: Vec<DirGrant>,
    pub(super) env: Vec<String>,
    pub(super) stdio: Stdio,
}

#[derive(Serialize, Deserialize)]
pub(super) struct DirGrant {
    pub(super) host: String,
    pub(super) guest: String,
    pub(super) writable: bool,
}

#[derive(Serialize, Deserialize)]
pub(super) enum Stdio {
    Log,
    Inherit,
}

#[derive(Serialize, Deserialize)]
pub(super) struct RunSettings {
    pub(super) max_steps: u64,
    pub(super) parallelism: u64,
    pub(super) bounds: HostBounds,
}

#[derive(Serialize, Deserialize)]
pub(super) struct HostBounds {
    pub(super) max_value_bytes: u64,
    pub(super) max_key_bytes: u64,
    pub(super) max_next_tasks: u64,
    pub(super) max_log_bytes: u64,
    pub(super) max_written_bytes: u64,
    pub(super) max_channel_bytes: u64,
    pub(super) max_queued_tasks: u64,
    pub(super) max_queued_input_bytes: u64,
    pub(super) max_checkpoints: u64,
    pub(super) max_checkpoint_bytes: u64,
    pub(super) max_module_bytes: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Graph {
    pub(super) nodes: BTreeMap<String, Node>,
    pub(super) successors: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize, Deserialize)]
pub(super) enum Node {
    Task,
    Group(GroupDef),
}

#[derive(Serialize, Deserialize)]
pub(super) struct GroupDef {
    pub(super) members: Vec<String>,
    pub(super) policy: GroupPolicy,
}

#[derive(Serialize, Deserialize)]
pub(super) enum GroupPolicy {
    Strict,
    BestEffort,
    AtLeast(u32),
    Critical(Vec<String>),
}

#[derive(Serialize, Deserialize)]
pub(super) struct State {
    pub(super) session_id: String,
    pub(super) input: String,
    pub(super) queue: Vec<Spec>,
    pub(super) completed: Vec<String>,
    pub(super) last_completed: Option<String>,
    pub(super) last_cycle: u32,
    pub(super) cycle_counts: BTreeMap<String, u32>,
    pub(super) id_counters: BTreeMap<String, u32>,
    pub(super) steps: u64,
    pub(super) last_result: Option<String>,
    pub(super) dynamic_tasks: BTreeMap<String, String>,
    pub(super) pending_input: Vec<InputRequest>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Spec {
    pub(super) id: String,
    pub(super) target: SpecTarget,
    pub(super) origin: SpecOrigin,
    pub(super) node: Option<String>,
    pub(super) cycle_key: String,
    pub(super) input: Option<String>,
    pub(super) attempt: u32,
    pub(super) not_before_ms: u64,
    pub(super) last_error: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) enum SpecTarget {
    Task(String),
    Group(String),
}

#[derive(Serialize, Deserialize)]
pub(super) enum SpecOrigin {
    Flow,
    Dynamic,
    Iteration(u32),
}

/// A task's request for human input that a paused run waits for. (Written
/// from graflow-host 0.3 on; `metadata` was added before any was written.)
#[derive(Serialize, Deserialize)]
pub(super) struct InputRequest {
    pub(super) id: String,
    pub(super) task_id: String,
    pub(super) kind: InputKind,
    pub(super) prompt: String,
    pub(super) options: Vec<String>,
    pub(super) timeout_ms: u64,
    pub(super) requested_at_ms: u64,
    /// Not written: answers are kept beside the checkpoints.
    pub(super) answer: Option<String>,
    pub(super) metadata: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) enum InputKind {
    Approval,
    Text,
    Selection,
    MultiSelection,
    Custom,
}

fn lossy(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

impl<'a> ContextOut<'a> {
    /// The schema-2 form of a run at a task boundary.
    pub fn new(
        checkpoint_id: &'a str,
        wf: &model::Workflow,
        s: &RunState,
        channel: &'a BTreeMap<String, Json>,
    ) -> ContextOut<'a> {
        ContextOut { checkpoint_id, workflow: Workflow::of(wf), state: State::of(s), channel }
    }
}

impl Workflow {
    /// The stored form of `wf`.
    pub(super) fn of(wf: &model::Workflow) -> Workflow {
        let b = &wf.settings.bounds;
        Workflow {
            name: wf.name.clone(),
            flow: wf.flow.clone(),
            start: wf.start.clone(),
            modules: wf
                .modules
                .iter()
                .map(|(k, m)| {
                    (k.clone(), ModuleRef { path: lossy(&m.path), sha256: *m.sha256.as_bytes(), size: m.size })
                })
                .collect(),
            tasks: wf
                .tasks
                .iter()
                .map(|(k, t)| {
                    let def = TaskDef {
                        name: t.name.clone(),
                        module: t.module.clone(),
                        export: t.export.clone(),
                        inputs: t.inputs.clone(),
                        max_cycles: t.max_cycles,
                        retry: RetryPolicy {
                            max_retries: t.retry.max_retries,
                            initial_ms: t.retry.initial_ms,
                            factor: t.retry.factor,
                            max_ms: t.retry.max_ms,
                            jitter: t.retry.jitter,
                        },
                        limits: Limits {
                            memory_bytes: t.limits.memory_bytes,
                            timeout_ms: t.limits.timeout_ms,
                            fuel: t.limits.fuel,
                        },
                        grants: Grants {
                            dirs: t
                                .grants
                                .dirs
                                .iter()
                                .map(|d| DirGrant {
                                    host: lossy(&d.host),
                                    guest: d.guest.clone(),
                                    writable: d.writable,
                                })
                                .collect(),
                            env: t.grants.env.clone(),
                            stdio: match t.grants.stdio {
                                model::Stdio::Log => Stdio::Log,
                                model::Stdio::Inherit => Stdio::Inherit,
                            },
                        },
                        reuse_instance: t.reuse_instance,
                    };
                    (k.clone(), def)
                })
                .collect(),
            graph: Graph {
                nodes: wf
                    .graph
                    .nodes
                    .iter()
                    .map(|(k, n)| {
                        let node = match n {
                            model::Node::Task => Node::Task,
                            model::Node::Group(g) => Node::Group(GroupDef {
                                members: g.members.clone(),
                                policy: match &g.policy {
                                    model::GroupPolicy::Strict => GroupPolicy::Strict,
                                    model::GroupPolicy::BestEffort => GroupPolicy::BestEffort,
                                    model::GroupPolicy::AtLeast(n) => GroupPolicy::AtLeast(*n),
                                    model::GroupPolicy::Critical(c) => GroupPolicy::Critical(c.clone()),
                                },
                            }),
                        };
                        (k.clone(), node)
                    })
                    .collect(),
                successors: wf.graph.successors.clone(),
            },
            settings: RunSettings {
                max_steps: wf.settings.max_steps,
                parallelism: wf.settings.parallelism as u64,
                bounds: HostBounds {
                    max_value_bytes: b.max_value_bytes,
                    max_key_bytes: b.max_key_bytes,
                    max_next_tasks: b.max_next_tasks,
                    max_log_bytes: b.max_log_bytes,
                    max_written_bytes: b.max_written_bytes,
                    max_channel_bytes: b.max_channel_bytes,
                    max_queued_tasks: b.max_queued_tasks,
                    max_queued_input_bytes: b.max_queued_input_bytes,
                    max_checkpoints: b.max_checkpoints,
                    max_checkpoint_bytes: b.max_checkpoint_bytes,
                    max_module_bytes: b.max_module_bytes,
                },
            },
        }
    }
}

impl State {
    /// The stored form of `s`.
    pub(super) fn of(s: &RunState) -> State {
        let text = |j: &Json| j.as_str().to_string();
        State {
            session_id: s.session_id.clone(),
            input: text(&s.input),
            queue: s
                .queue
                .iter()
                .map(|q| Spec {
                    id: q.id.clone(),
                    target: match &q.target {
                        Target::Task(t) => SpecTarget::Task(t.clone()),
                        Target::Group(g) => SpecTarget::Group(g.clone()),
                    },
                    origin: match q.origin {
                        Origin::Flow => SpecOrigin::Flow,
                        Origin::Dynamic => SpecOrigin::Dynamic,
                        Origin::Iteration { cycle } => SpecOrigin::Iteration(cycle),
                    },
                    node: q.node.clone(),
                    cycle_key: q.cycle_key.clone(),
                    input: q.input.as_ref().map(text),
                    attempt: q.attempt,
                    not_before_ms: q
                        .not_before_ms
                        .min(crate::engine::now_ms().saturating_add(crate::model::MAX_DURATION_MS)),
                    last_error: q.last_error.clone(),
                })
                .collect(),
            completed: s.completed.clone(),
            last_completed: s.last_completed.clone(),
            last_cycle: s.last_cycle,
            cycle_counts: s.cycle_counts.clone(),
            id_counters: s.id_counters.clone(),
            steps: s.steps,
            last_result: s.last_result.as_ref().map(text),
            dynamic_tasks: s.dynamic_tasks.clone(),
            pending_input: s
                .pending_input
                .iter()
                .map(|r| InputRequest {
                    id: r.id.clone(),
                    task_id: r.task_id.clone(),
                    kind: match r.kind {
                        FeedbackKind::Approval => InputKind::Approval,
                        FeedbackKind::Text => InputKind::Text,
                        FeedbackKind::Selection => InputKind::Selection,
                        FeedbackKind::MultiSelection => InputKind::MultiSelection,
                        FeedbackKind::Custom => InputKind::Custom,
                    },
                    prompt: r.prompt.clone(),
                    options: r.options.clone(),
                    timeout_ms: r.timeout_ms,
                    requested_at_ms: r.requested_at_ms,
                    answer: None,
                    metadata: r.metadata.as_ref().map(text),
                })
                .collect(),
        }
    }
}

impl ContextIn<'_> {
    /// Convert to the engine's types, checking stored JSON unless `values`
    /// trusts it.
    pub fn into_context(self, values: Values, owner: Option<&bytes::Bytes>) -> Result<Context, Invalid> {
        let workflow = self.workflow.into_model();
        let state = self.state.into_run_state(values)?;
        let channel = super::channel_in(self.channel.iter().map(|(k, v)| (k.as_str(), *v)), owner, values)?;
        Ok(Context { checkpoint_id: self.checkpoint_id, workflow, state, channel })
    }
}

impl Workflow {
    /// The engine's form.
    pub(super) fn into_model(self) -> model::Workflow {
        let w = self;
        let b = w.settings.bounds;
        model::Workflow {
            name: w.name,
            flow: w.flow,
            start: w.start,
            modules: w
                .modules
                .into_iter()
                .map(|(k, m)| {
                    let module = model::ModuleRef {
                        path: PathBuf::from(m.path),
                        sha256: Sha256::from_bytes(m.sha256),
                        size: m.size,
                    };
                    (k, module)
                })
                .collect(),
            tasks: w
                .tasks
                .into_iter()
                .map(|(k, t)| {
                    let def = model::TaskDef {
                        name: t.name,
                        module: t.module,
                        export: t.export,
                        inputs: t.inputs,
                        max_cycles: t.max_cycles,
                        retry: model::RetryPolicy {
                            max_retries: t.retry.max_retries,
                            initial_ms: t.retry.initial_ms,
                            factor: t.retry.factor,
                            max_ms: t.retry.max_ms,
                            jitter: t.retry.jitter,
                        },
                        limits: model::Limits {
                            memory_bytes: t.limits.memory_bytes,
                            timeout_ms: t.limits.timeout_ms,
                            fuel: t.limits.fuel,
                        },
                        grants: model::Grants {
                            dirs: t
                                .grants
                                .dirs
                                .into_iter()
                                .map(|d| model::DirGrant {
                                    host: PathBuf::from(d.host),
                                    guest: d.guest,
                                    writable: d.writable,
                                })
                                .collect(),
                            env: t.grants.env,
                            stdio: match t.grants.stdio {
                                Stdio::Log => model::Stdio::Log,
                                Stdio::Inherit => model::Stdio::Inherit,
                            },
                        },
                        reuse_instance: t.reuse_instance,
                    };
                    (k, def)
                })
                .collect(),
            graph: model::Graph {
                nodes: w
                    .graph
                    .nodes
                    .into_iter()
                    .map(|(k, n)| {
                        let node = match n {
                            Node::Task => model::Node::Task,
                            Node::Group(g) => model::Node::Group(model::GroupDef {
                                members: g.members,
                                policy: match g.policy {
                                    GroupPolicy::Strict => model::GroupPolicy::Strict,
                                    GroupPolicy::BestEffort => model::GroupPolicy::BestEffort,
                                    GroupPolicy::AtLeast(n) => model::GroupPolicy::AtLeast(n),
                                    GroupPolicy::Critical(c) => model::GroupPolicy::Critical(c),
                                },
                            }),
                        };
                        (k, node)
                    })
                    .collect(),
                successors: w.graph.successors,
            },
            settings: model::RunSettings {
                max_steps: w.settings.max_steps,
                parallelism: usize::try_from(w.settings.parallelism).unwrap_or(usize::MAX),
                bounds: model::HostBounds {
                    max_value_bytes: b.max_value_bytes,
                    max_key_bytes: b.max_key_bytes,
                    max_next_tasks: b.max_next_tasks,
                    max_log_bytes: b.max_log_bytes,
                    max_written_bytes: b.max_written_bytes,
                    max_channel_bytes: b.max_channel_bytes,
                    max_queued_tasks: b.max_queued_tasks,
                    max_queued_input_bytes: b.max_queued_input_bytes,
                    max_checkpoints: b.max_checkpoints,
                    max_checkpoint_bytes: b.max_checkpoint_bytes,
                    max_module_bytes: b.max_module_bytes,
                },
                // Not in the payload either: the record's `keep_checkpoints`
                // and `keep_iteration_results`.
                keep_checkpoints: None,
                keep_iteration_results: model::DEFAULT_KEEP_ITERATION_RESULTS,
            },
            // Not in the payload: the commit record carries it (`outbound`),
            // and the reader puts it back (`read.rs`).
            outbound: Default::default(),
        }
    }
}

impl State {
    /// The engine's form, checking stored JSON unless `values` trusts it.
    pub(super) fn into_run_state(self, values: Values) -> Result<RunState, Invalid> {
        let s = self;
        let mut state = RunState::empty(s.session_id, json(&s.input, values, &|| "the run input".into())?);
        for r in s.pending_input {
            let metadata = r
                .metadata
                .map(|m| json(&m, values, &|| format!("the metadata of feedback request '{}'", r.id)))
                .transpose()?;
            let request = FeedbackRequest {
                id: r.id,
                session_id: state.session_id.clone(),
                task_id: r.task_id,
                kind: match r.kind {
                    InputKind::Approval => FeedbackKind::Approval,
                    InputKind::Text => FeedbackKind::Text,
                    InputKind::Selection => FeedbackKind::Selection,
                    InputKind::MultiSelection => FeedbackKind::MultiSelection,
                    InputKind::Custom => FeedbackKind::Custom,
                },
                prompt: r.prompt,
                options: r.options,
                metadata,
                timeout_ms: r.timeout_ms,
                requested_at_ms: r.requested_at_ms,
            };
            request.validate().map_err(|e| Invalid(format!("feedback request '{}': {e}", request.id)))?;
            state.pending_input.push(request);
        }
        let mut queue = Queue::default();
        for q in s.queue {
            let input = q.input.map(|i| json(&i, values, &|| format!("the input of queued '{}'", q.id))).transpose()?;
            queue.push_back(TaskSpec {
                target: match q.target {
                    SpecTarget::Task(t) => Target::Task(t),
                    SpecTarget::Group(g) => Target::Group(g),
                },
                origin: match q.origin {
                    SpecOrigin::Flow => Origin::Flow,
                    SpecOrigin::Dynamic => Origin::Dynamic,
                    SpecOrigin::Iteration(cycle) => Origin::Iteration { cycle },
                },
                node: q.node,
                cycle_key: q.cycle_key,
                input,
                attempt: q.attempt,
                not_before_ms: q
                    .not_before_ms
                    .min(crate::engine::now_ms().saturating_add(crate::model::MAX_DURATION_MS)),
                last_error: q.last_error,
                id: q.id,
            });
        }
        state.queue = queue;
        for id in &s.completed {
            state.mark_completed(id);
        }
        state.last_completed = s.last_completed;
        state.last_cycle = s.last_cycle;
        state.cycle_counts = s.cycle_counts;
        state.id_counters = s.id_counters;
        state.steps = s.steps;
        state.last_result = s.last_result.map(|r| json(&r, values, &|| "the last result".into())).transpose()?;
        state.dynamic_tasks = s.dynamic_tasks;
        Ok(state)
    }
}
