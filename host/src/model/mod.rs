//! The workflow model: what a workflow file describes, validated and resolved.
//!
//! [`Workflow`] is immutable while a run executes. A checkpoint stores it whole
//! (through its own versioned schema, `checkpoint/schema/`), so a resume needs
//! neither the workflow file nor the original module files. Files:
//! `file_schema.rs` the TOML the user writes, `resolve.rs` its validation into
//! a [`Workflow`], `load_error.rs` every way that fails, `declared.rs` what a component
//! declares about its own workflow, `limits.rs` the
//! sandbox limits and host bounds, `flow.rs` the flow expression.

mod declared;
mod file_schema;
pub mod flow;
mod limits;
mod load_error;
pub mod picture;
mod resolve;

pub use declared::{DeclaredSettings, DeclaredWorkflow, MAX_DECLARED_FLOW_BYTES, MAX_DECLARED_NAME_BYTES};
pub use limits::{HostBounds, Limits, MAX_DURATION_MS, MAX_MEMORY_MB, MAX_WORKFLOW_FILE_BYTES};
pub use load_error::{LoadError, ModuleLoadError};
pub use resolve::{
    DEFAULT_MAX_CYCLES, DEFAULT_MAX_STEPS, EngineNeeds, ModuleExports, ModuleInfo, TaskDecl, WorkflowFile,
    load_workflow, module_name,
};

use crate::digest::Sha256;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A validated workflow: modules, tasks, graph and settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// A name for logs and checkpoints.
    pub name: String,
    /// The flow expression as written.
    pub flow: String,
    /// The node the run starts at.
    pub start: String,
    /// Component modules by name.
    pub modules: BTreeMap<String, ModuleRef>,
    /// Declared tasks by name (flow tasks and tasks only reachable by `next-task`).
    pub tasks: BTreeMap<String, TaskDef>,
    /// Nodes and edges.
    pub graph: Graph,
    /// Run-wide settings.
    pub settings: RunSettings,
    /// What tasks may reach outside the sandbox (nothing by default).
    pub outbound: std::sync::Arc<crate::outbound::Policy>,
}

/// A component module, identified by content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef {
    /// Where the `.wasm` file was loaded from (absolute).
    pub path: PathBuf,
    /// The digest of the module's bytes: the code that runs.
    pub sha256: Sha256,
    /// Size in bytes.
    pub size: u64,
}

/// A declared task: which component export runs it, and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDef {
    /// The task name (key of `[tasks]`).
    pub name: String,
    /// The module that provides it.
    pub module: String,
    /// The name the component exports it under.
    pub export: String,
    /// Declared inputs, filled by automatic data flow.
    pub inputs: Vec<String>,
    /// Runs allowed by `next-iteration` (1-based, retries excluded).
    pub max_cycles: u32,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Sandbox limits.
    pub limits: Limits,
    /// Capabilities granted to the task (none by default).
    pub grants: Grants,
    /// Let one instance serve several runs of this task (opt-in; see
    /// docs/security.md for what runs then share).
    pub reuse_instance: bool,
}

/// Capabilities a task is granted. Nothing is granted by default: no file
/// system, no environment variables, no network; the guest's stdout and stderr
/// go to the host log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Host directories the guest may open.
    pub dirs: Vec<DirGrant>,
    /// Names of host environment variables passed to the guest (values are read
    /// when the task starts, never stored in checkpoints).
    pub env: Vec<String>,
    /// Where the guest's stdout and stderr go.
    pub stdio: Stdio,
}

/// A preopened directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory (absolute).
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// Whether the guest may create, write and delete files in it.
    pub writable: bool,
}

/// Where a guest's stdout and stderr go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stdio {
    /// Captured (up to 64 KiB per stream) and written to the host log after the
    /// task: stdout at info level, stderr at warn level.
    #[default]
    Log,
    /// Streamed to the host's stderr as the guest writes (the host's stdout
    /// stays reserved for the workflow result).
    Inherit,
}

/// How a failed task is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: never retried).
    pub max_retries: u32,
    /// Delay before the first retry, in milliseconds.
    pub initial_ms: u64,
    /// Multiplier applied to the delay after each retry.
    pub factor: f64,
    /// Upper bound of the delay, in milliseconds.
    pub max_ms: u64,
    /// Multiply each delay by a random factor in [0.5, 1.5) (then cap it).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 0, initial_ms: 1000, factor: 2.0, max_ms: 60_000, jitter: false }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), in milliseconds, without jitter.
    pub fn base_delay_ms(&self, retry: u32) -> u64 {
        let delay = self.initial_ms as f64 * self.factor.powi(retry.saturating_sub(1) as i32);
        delay.min(self.max_ms as f64) as u64
    }
}

/// `; did you mean 'x'?` for the candidate closest to `name`, if one is close
/// enough to be a typo; else nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let best = candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, c)) => format!("; did you mean '{c}'?"),
        None => String::new(),
    }
}

/// Run-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    /// The run stops with a max-steps outcome once this many tasks completed.
    pub max_steps: u64,
    /// Branches of one parallel group that run at the same time.
    pub parallelism: usize,
    /// Bounds on what a guest can make the host hold or do.
    pub bounds: HostBounds,
    /// Retention: keep the newest N checkpoints of the run; older ones are
    /// removed as each new one commits (`keep_checkpoints`,
    /// `--keep-checkpoints`). With it, `max_checkpoints` no longer stops a
    /// run's checkpoints (`max_checkpoint_bytes` still does). Invariant: at
    /// least 1 when set.
    pub keep_checkpoints: Option<u64>,
    /// The newest N results of each iterating task's iterations stay in the
    /// channel under their iteration ids (`<key>@<cycle>.__result__`); when
    /// iteration c stores its result, the one of iteration c - N leaves
    /// (`keep_iteration_results`, default
    /// [`DEFAULT_KEEP_ITERATION_RESULTS`]). The latest result, under the
    /// task's name, always stays. Invariant: at least 1.
    pub keep_iteration_results: u64,
}

/// How many iteration results a run keeps by default (see
/// [`RunSettings::keep_iteration_results`]): enough for any loop that reads
/// back its recent iterations, and a bound, so a loop of a million
/// iterations holds no more than one of a thousand.
pub const DEFAULT_KEEP_ITERATION_RESULTS: u64 = 1000;

impl Workflow {
    /// The most task executions that can run at the same time (see
    /// [`concurrency`]).
    pub fn max_concurrency(&self) -> usize {
        let members = |n: &str| match self.graph.nodes.get(n) {
            Some(Node::Group(g)) => Some(g.members.as_slice()),
            _ => None,
        };
        let groups = self.graph.nodes.iter().filter(|(_, n)| matches!(n, Node::Group(_))).map(|(k, _)| k);
        concurrency(groups, &members, self.settings.parallelism)
    }
}

/// The most executions a graph runs at once: a group runs at most
/// `parallelism` members at a time, each as wide as itself (nested groups
/// multiply). Tasks run one at a time per branch.
fn concurrency<'a>(
    nodes: impl Iterator<Item = &'a String>,
    members: &dyn Fn(&str) -> Option<&'a [String]>,
    parallelism: usize,
) -> usize {
    type Memo = std::collections::HashMap<String, usize>;
    fn width<'a>(
        node: &str,
        members: &dyn Fn(&str) -> Option<&'a [String]>,
        p: usize,
        depth: usize,
        memo: &mut Memo,
    ) -> usize {
        if let Some(w) = memo.get(node) {
            return *w;
        }
        let w = match members(node) {
            Some(ms) if depth < flow::MAX_DEPTH => {
                let mut widths: Vec<usize> = ms.iter().map(|m| width(m, members, p, depth + 1, memo)).collect();
                widths.sort_unstable_by(|a, b| b.cmp(a));
                widths.iter().take(p.max(1)).fold(0usize, |a, w| a.saturating_add(*w))
            }
            _ => 1,
        };
        memo.insert(node.to_string(), w);
        w
    }
    let mut memo = Memo::new();
    nodes.map(|n| width(n, members, parallelism, 0, &mut memo)).max().unwrap_or(1).max(1)
}

/// The workflow graph: task and group nodes, and successor edges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// Every node by name.
    pub nodes: BTreeMap<String, Node>,
    /// Successors of each node, in the order the edges were written.
    pub successors: BTreeMap<String, Vec<String>>,
}

impl Graph {
    /// The successors of `node` (none for an unknown node).
    pub fn successors(&self, node: &str) -> &[String] {
        self.successors.get(node).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The nodes with no incoming edge that are not members of a group.
    pub fn start_candidates(&self) -> Vec<String> {
        let mut reached: std::collections::BTreeSet<&str> =
            self.successors.values().flatten().map(String::as_str).collect();
        for node in self.nodes.values() {
            if let Node::Group(g) = node {
                reached.extend(g.members.iter().map(String::as_str));
            }
        }
        self.nodes.keys().filter(|n| !reached.contains(n.as_str())).cloned().collect()
    }
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Runs the declared task of the same name.
    Task,
    /// A parallel group: the join of its members.
    Group(GroupDef),
}

/// A parallel group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDef {
    /// Member nodes; each runs in its own branch.
    pub members: Vec<String>,
    /// What makes the group fail.
    pub policy: GroupPolicy,
}

/// What makes a parallel group fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupPolicy {
    /// Any failed member fails the group (the default).
    Strict,
    /// The group never fails; failed members' writes are discarded.
    BestEffort,
    /// The group fails when fewer than this many members succeed.
    AtLeast(u32),
    /// The group fails when one of these members fails.
    Critical(Vec<String>),
}

impl std::fmt::Display for GroupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupPolicy::Strict => f.write_str("strict"),
            GroupPolicy::BestEffort => f.write_str("best_effort"),
            GroupPolicy::AtLeast(n) => write!(f, "at_least_n ({n})"),
            GroupPolicy::Critical(c) => write!(f, "critical ({})", c.join(", ")),
        }
    }
}
