//! Run state: plain serde data. A checkpoint stores exactly this (plus the
//! channel and the workflow), and a resume continues from its queue.

use crate::json::Json;
use crate::model::{Node, Workflow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet, VecDeque};

/// What a queued execution runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A declared task.
    Task(String),
    /// A parallel group node.
    Group(String),
}

/// One queued execution: everything needed to run it, so a resumed run needs
/// nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The execution id: `<node>`, `<task>#<n>` (dynamic instance), `<key>@<cycle>`
    /// (iteration).
    pub id: String,
    /// What runs.
    pub target: Target,
    /// The graph node whose successors are queued when this execution
    /// completes; `None` for dynamic instances, which have no edges.
    pub node: Option<String>,
    /// The key its cycle count is kept under (the node, or the dynamic instance
    /// id; iterations share the key of the run that started them).
    pub cycle_key: String,
    /// Explicit input, overlaid on the resolved declared inputs.
    pub input: Option<Json>,
    /// 0 for the first attempt; +1 per retry.
    pub attempt: u32,
    /// Not to start before this time (Unix milliseconds); 0 when ready.
    pub not_before_ms: u64,
    /// The error of the previous attempt, when this is a retry.
    pub last_error: Option<String>,
}

impl TaskSpec {
    /// An execution of the graph node `node`.
    pub fn for_node(workflow: &Workflow, node: &str, input: Option<Json>) -> TaskSpec {
        let target = match workflow.graph.nodes.get(node) {
            Some(Node::Group(_)) => Target::Group(node.to_string()),
            _ => Target::Task(node.to_string()),
        };
        TaskSpec {
            id: node.to_string(),
            target,
            node: Some(node.to_string()),
            cycle_key: node.to_string(),
            input,
            attempt: 0,
            not_before_ms: 0,
            last_error: None,
        }
    }
}

/// The mutable state of a run (or of one branch of a parallel group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The run's id.
    pub session_id: String,
    /// The run's `--input` object.
    pub input: Json,
    /// Executions waiting to run, in order.
    pub queue: VecDeque<TaskSpec>,
    /// Completed execution ids, in order of first completion.
    pub completed: Vec<String>,
    /// Runs per cycle key (1-based; retries excluded).
    pub cycle_counts: BTreeMap<String, u32>,
    /// Next number per task for dynamic instance ids.
    pub id_counters: BTreeMap<String, u32>,
    /// Completed executions.
    pub steps: u64,
    /// The result of the last completed execution: the workflow's result.
    pub last_result: Option<Json>,
    /// Dynamic instances created so far (id → task), the run-time part of the graph.
    pub dynamic_tasks: BTreeMap<String, String>,
    #[serde(skip)]
    completed_set: CompletedIndex,
}

/// A derived index of `completed` (rebuilt after loading); never part of
/// equality or of the serialized state.
#[derive(Clone, Default)]
struct CompletedIndex(HashSet<String>);

impl PartialEq for CompletedIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CompletedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl std::ops::Deref for CompletedIndex {
    type Target = HashSet<String>;
    fn deref(&self) -> &HashSet<String> {
        &self.0
    }
}

impl std::ops::DerefMut for CompletedIndex {
    fn deref_mut(&mut self) -> &mut HashSet<String> {
        &mut self.0
    }
}

impl RunState {
    /// A fresh run of `workflow` with `input`, its start node queued.
    pub fn new(workflow: &Workflow, session_id: String, input: Json) -> RunState {
        let mut state = RunState::empty(session_id, input.clone());
        state.queue.push_back(TaskSpec::for_node(workflow, &workflow.start, Some(input)));
        state
    }

    /// A state with nothing queued.
    pub fn empty(session_id: String, input: Json) -> RunState {
        RunState {
            session_id,
            input,
            queue: VecDeque::new(),
            completed: Vec::new(),
            cycle_counts: BTreeMap::new(),
            id_counters: BTreeMap::new(),
            steps: 0,
            last_result: None,
            dynamic_tasks: BTreeMap::new(),
            completed_set: CompletedIndex::default(),
        }
    }

    /// Record a completion (kept once, in order of first completion).
    pub fn mark_completed(&mut self, id: &str) {
        if self.completed_set.len() != self.completed.len() {
            self.rebuild_index();
        }
        if self.completed_set.insert(id.to_string()) {
            self.completed.push(id.to_string());
        }
    }

    fn rebuild_index(&mut self) {
        self.completed_set = CompletedIndex(self.completed.iter().cloned().collect());
    }

    /// Ids of the queued executions.
    pub fn pending_ids(&self) -> Vec<String> {
        self.queue.iter().map(|s| s.id.clone()).collect()
    }
}
