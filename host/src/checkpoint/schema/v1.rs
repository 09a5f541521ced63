//! Schema version 1 (graflow-host 0.1), read-only: the `.ctx` payload was the
//! bincode of the engine's own types at the time; they are frozen here, field
//! for field and variant for variant. On load they are upgraded to schema 2
//! (`v2.rs`), which alone converts to the engine's types.
//! `host/tests/golden/ctx_v1.ctx` and `host/tests/golden/v1/` pin them.

use super::{Context, FileDigest, Invalid, Meta, SchemaVersion, Values, v2};
use crate::model;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

/// `<id>.meta.json` of schema 1 (flat, unsigned).
#[derive(Deserialize)]
pub struct MetaV1 {
    checkpoint_id: String,
    session_id: String,
    created_at: String,
    steps: u64,
    start_node: String,
    backend: String,
    workflow: String,
    user_metadata: serde_json::Value,
    files: BTreeMap<String, FileDigest>,
}

impl From<MetaV1> for Meta {
    fn from(m: MetaV1) -> Meta {
        Meta {
            schema_version: SchemaVersion::V1,
            checkpoint_id: m.checkpoint_id,
            session_id: m.session_id,
            created_at: m.created_at,
            steps: m.steps,
            start_node: m.start_node,
            backend: m.backend,
            workflow: m.workflow,
            user_metadata: m.user_metadata,
            files: m.files,
            mode: None,
            after: None,
            signature: None,
            base: None,
            outbound: None,
            trace: None,
            keep_checkpoints: None,
            keep_iteration_results: None,
            records: None,
        }
    }
}

/// The `.ctx` payload of schema 1. Channel values are borrowed from the
/// payload and copied once.
#[derive(Deserialize)]
pub struct ContextV1<'a> {
    checkpoint_id: String,
    workflow: Workflow,
    state: State,
    #[serde(borrow)]
    channel: BTreeMap<String, &'a str>,
}

#[derive(Deserialize)]
struct Workflow {
    name: String,
    flow: String,
    start: String,
    modules: BTreeMap<String, ModuleRef>,
    tasks: BTreeMap<String, TaskDef>,
    graph: Graph,
    settings: RunSettings,
}

#[derive(Deserialize)]
struct ModuleRef {
    path: PathBuf,
    sha256: String,
    size: u64,
}

#[derive(Deserialize)]
struct TaskDef {
    name: String,
    module: String,
    export: String,
    inputs: Vec<String>,
    max_cycles: u32,
    retry: RetryPolicy,
    limits: Limits,
    grants: Grants,
    reuse_instance: bool,
}

#[derive(Deserialize)]
struct RetryPolicy {
    max_retries: u32,
    initial_ms: u64,
    factor: f64,
    max_ms: u64,
    jitter: bool,
}

#[derive(Deserialize)]
struct Limits {
    memory_bytes: u64,
    timeout_ms: u64,
    fuel: Option<u64>,
}

#[derive(Deserialize)]
struct Grants {
    dirs: Vec<DirGrant>,
    env: Vec<String>,
    stdio: Stdio,
}

#[derive(Deserialize)]
struct DirGrant {
    host: PathBuf,
    guest: String,
    writable: bool,
}

#[derive(Deserialize)]
enum Stdio {
    Log,
    Inherit,
}

#[derive(Deserialize)]
struct RunSettings {
    max_steps: u64,
    parallelism: usize,
    bounds: HostBounds,
}

#[derive(Deserialize)]
struct HostBounds {
    max_value_bytes: u64,
    max_key_bytes: u64,
    max_next_tasks: u64,
    max_log_bytes: u64,
    max_written_bytes: u64,
    max_channel_bytes: u64,
}

#[derive(Deserialize)]
struct Graph {
    nodes: BTreeMap<String, Node>,
    successors: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
enum Node {
    Task,
    Group(GroupDef),
}

#[derive(Deserialize)]
struct GroupDef {
    members: Vec<String>,
    policy: GroupPolicy,
}

#[derive(Deserialize)]
enum GroupPolicy {
    Strict,
    BestEffort,
    AtLeast(u32),
    Critical(Vec<String>),
}

#[derive(Deserialize)]
struct State {
    session_id: String,
    input: String,
    queue: VecDeque<Spec>,
    completed: Vec<String>,
    cycle_counts: BTreeMap<String, u32>,
    id_counters: BTreeMap<String, u32>,
    steps: u64,
    last_result: Option<String>,
    dynamic_tasks: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Spec {
    id: String,
    target: SpecTarget,
    node: Option<String>,
    cycle_key: String,
    input: Option<String>,
    attempt: u32,
    not_before_ms: u64,
    last_error: Option<String>,
}

#[derive(Deserialize)]
enum SpecTarget {
    Task(String),
    Group(String),
}

impl<'a> ContextV1<'a> {
    /// Upgrade to schema 2, then to the engine's types. Schema 1 is unsigned,
    /// so every stored value is checked again whatever `values` says.
    pub fn upgrade(self, _values: Values) -> Result<Context, Invalid> {
        self.into_v2()?.into_context(Values::Check, None)
    }

    fn into_v2(self) -> Result<v2::ContextIn<'a>, Invalid> {
        let w = self.workflow;
        let mut modules = BTreeMap::new();
        for (name, m) in w.modules {
            let sha256: crate::digest::Sha256 =
                m.sha256.parse().map_err(|e| Invalid(format!("module '{name}': {e}")))?;
            let path = m.path.to_string_lossy().into_owned();
            modules.insert(name, v2::ModuleRef { path, sha256: *sha256.as_bytes(), size: m.size });
        }
        let tasks = w
            .tasks
            .into_iter()
            .map(|(k, t)| {
                let def = v2::TaskDef {
                    name: t.name,
                    module: t.module,
                    export: t.export,
                    inputs: t.inputs,
                    max_cycles: t.max_cycles,
                    retry: v2::RetryPolicy {
                        max_retries: t.retry.max_retries,
                        initial_ms: t.retry.initial_ms,
                        factor: t.retry.factor,
                        max_ms: t.retry.max_ms,
                        jitter: t.retry.jitter,
                    },
                    limits: v2::Limits {
                        memory_bytes: t.limits.memory_bytes,
                        timeout_ms: t.limits.timeout_ms,
                        fuel: t.limits.fuel,
                    },
                    grants: v2::Grants {
                        dirs: t
                            .grants
                            .dirs
                            .into_iter()
                            .map(|d| v2::DirGrant {
                                host: d.host.to_string_lossy().into_owned(),
                                guest: d.guest,
                                writable: d.writable,
                            })
                            .collect(),
                        env: t.grants.env,
                        stdio: match t.grants.stdio {
                            Stdio::Log => v2::Stdio::Log,
                            Stdio::Inherit => v2::Stdio::Inherit,
                        },
                    },
                    reuse_instance: t.reuse_instance,
                };
                (k, def)
            })
            .collect();
        let nodes = w
            .graph
            .nodes
            .into_iter()
            .map(|(k, n)| {
                let node = match n {
                    Node::Task => v2::Node::Task,
                    Node::Group(g) => v2::Node::Group(v2::GroupDef {
                        members: g.members,
                        policy: match g.policy {
                            GroupPolicy::Strict => v2::GroupPolicy::Strict,
                            GroupPolicy::BestEffort => v2::GroupPolicy::BestEffort,
                            GroupPolicy::AtLeast(n) => v2::GroupPolicy::AtLeast(n),
                            GroupPolicy::Critical(c) => v2::GroupPolicy::Critical(c),
                        },
                    }),
                };
                (k, node)
            })
            .collect();
        let (b, d) = (w.settings.bounds, model::HostBounds::default());
        let workflow = v2::Workflow {
            name: w.name,
            flow: w.flow,
            start: w.start,
            modules,
            tasks,
            graph: v2::Graph { nodes, successors: w.graph.successors },
            settings: v2::RunSettings {
                max_steps: w.settings.max_steps,
                parallelism: w.settings.parallelism as u64,
                // Bounds schema 1 did not have take their defaults.
                bounds: v2::HostBounds {
                    max_value_bytes: b.max_value_bytes,
                    max_key_bytes: b.max_key_bytes,
                    max_next_tasks: b.max_next_tasks,
                    max_log_bytes: b.max_log_bytes,
                    max_written_bytes: b.max_written_bytes,
                    max_channel_bytes: b.max_channel_bytes,
                    max_queued_tasks: d.max_queued_tasks,
                    max_queued_input_bytes: d.max_queued_input_bytes,
                    max_checkpoints: d.max_checkpoints,
                    max_checkpoint_bytes: d.max_checkpoint_bytes,
                    max_module_bytes: d.max_module_bytes,
                },
            },
        };
        let s = self.state;
        // Schema 1 kept completions once each, in order of first completion:
        // the last of them is the best record of the last completed one.
        let last_completed = s.completed.last().cloned();
        let last_cycle = last_completed.as_ref().and_then(|id| s.cycle_counts.get(id)).copied().unwrap_or(1);
        let state = v2::State {
            session_id: s.session_id,
            input: s.input,
            queue: s.queue.into_iter().map(upgrade_spec).collect(),
            completed: s.completed,
            last_completed,
            last_cycle,
            cycle_counts: s.cycle_counts,
            id_counters: s.id_counters,
            steps: s.steps,
            last_result: s.last_result,
            dynamic_tasks: s.dynamic_tasks,
            pending_input: Vec::new(),
        };
        Ok(v2::ContextIn { checkpoint_id: self.checkpoint_id, workflow, state, channel: self.channel })
    }
}

/// Schema 1 had no origin: it is read off the id as 0.1 made it (`<key>@<n>`
/// for iterations; no node for `next-task` instances).
fn upgrade_spec(q: Spec) -> v2::Spec {
    let iteration =
        q.id.strip_prefix(q.cycle_key.as_str())
            .and_then(|rest| rest.strip_prefix('@'))
            .and_then(|n| n.parse::<u32>().ok());
    let origin = match (iteration, &q.node) {
        (Some(cycle), _) => v2::SpecOrigin::Iteration(cycle),
        (None, None) => v2::SpecOrigin::Dynamic,
        (None, Some(_)) => v2::SpecOrigin::Flow,
    };
    v2::Spec {
        target: match q.target {
            SpecTarget::Task(t) => v2::SpecTarget::Task(t),
            SpecTarget::Group(g) => v2::SpecTarget::Group(g),
        },
        origin,
        node: q.node,
        cycle_key: q.cycle_key,
        input: q.input,
        attempt: q.attempt,
        not_before_ms: q.not_before_ms,
        last_error: q.last_error,
        id: q.id,
    }
}
