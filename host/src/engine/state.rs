//! Run state: the queue, counters and completions of a run. A checkpoint
//! stores it through its own versioned schema (`checkpoint/schema/`), so these
//! types may change without changing what is on disk.

use crate::json::Json;
use crate::model::{Node, Workflow};
use std::collections::{BTreeMap, HashSet, VecDeque};

/// What a queued execution runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// A declared task.
    Task(String),
    /// A parallel group node.
    Group(String),
}

/// Where a queued execution came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    /// A node of the flow graph: the start node, a successor, or the target of
    /// a jump (`next-task` naming a flow node). Its id is the node's name.
    Flow,
    /// A dynamic instance made by `next-task` (`<task>#<n>`); it has no edges.
    Dynamic,
    /// Iteration number `cycle` of a task (`<key>@<cycle>`) made by
    /// `next-iteration`.
    Iteration {
        /// The 1-based run this iteration is.
        cycle: u32,
    },
}

/// One queued execution: everything needed to run it, so a resumed run needs
/// nothing else.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskSpec {
    /// The execution id: `<node>`, `<task>#<n>` (dynamic instance), `<key>@<cycle>`
    /// (iteration).
    pub id: String,
    /// What runs.
    pub target: Target,
    /// Where it came from.
    pub origin: Origin,
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
            origin: Origin::Flow,
            node: Some(node.to_string()),
            cycle_key: node.to_string(),
            input,
            attempt: 0,
            not_before_ms: 0,
            last_error: None,
        }
    }

    /// Bytes of explicit input it holds.
    pub fn input_bytes(&self) -> u64 {
        self.input.as_ref().map_or(0, |i| i.len() as u64)
    }
}

/// The executions waiting to run, in order, with the bytes of input they hold
/// (kept current on every change, for the queue bounds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Queue {
    items: VecDeque<TaskSpec>,
    input_bytes: u64,
}

impl Queue {
    /// Add at the end.
    pub fn push_back(&mut self, spec: TaskSpec) {
        self.input_bytes += spec.input_bytes();
        self.items.push_back(spec);
    }

    /// Add at the front.
    pub fn push_front(&mut self, spec: TaskSpec) {
        self.input_bytes += spec.input_bytes();
        self.items.push_front(spec);
    }

    /// Put `spec` at `index` (at the back if past it).
    pub fn insert(&mut self, index: usize, spec: TaskSpec) {
        self.input_bytes += spec.input_bytes();
        self.items.insert(index.min(self.items.len()), spec);
    }

    /// Remove the execution at `index`.
    pub fn remove(&mut self, index: usize) -> Option<TaskSpec> {
        let spec = self.items.remove(index)?;
        self.input_bytes -= spec.input_bytes();
        Some(spec)
    }

    /// Queued executions.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of explicit input held by queued executions.
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes
    }

    /// The executions, in order.
    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, TaskSpec> {
        self.items.iter()
    }
}

impl Extend<TaskSpec> for Queue {
    fn extend<I: IntoIterator<Item = TaskSpec>>(&mut self, iter: I) {
        for spec in iter {
            self.push_back(spec);
        }
    }
}

impl FromIterator<TaskSpec> for Queue {
    fn from_iter<I: IntoIterator<Item = TaskSpec>>(iter: I) -> Queue {
        let mut q = Queue::default();
        q.extend(iter);
        q
    }
}

/// The mutable state of a run (or of one branch of a parallel group).
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// The run's id.
    pub session_id: String,
    /// The run's `--input` object.
    pub input: Json,
    /// Executions waiting to run, in order.
    pub queue: Queue,
    /// Completed executions of the workflow's own nodes (tasks and groups
    /// of the flow, not dynamic instances or iterations), in order of first
    /// completion: bounded by the graph's size, however long the run. The
    /// whole history of executions is in the run's journal (`logs`).
    pub completed: Vec<String>,
    /// The execution that completed last (a task or a group).
    pub last_completed: Option<String>,
    /// Its cycle count.
    pub last_cycle: u32,
    /// Runs per cycle key (1-based; retries excluded).
    pub cycle_counts: BTreeMap<String, u32>,
    /// Next number per task for dynamic instance ids.
    pub id_counters: BTreeMap<String, u32>,
    /// Completed executions.
    pub steps: u64,
    /// The result of the last completed execution: the workflow's result.
    pub last_result: Option<Json>,
    /// Dynamic instances created and not yet completed (id → task): the
    /// run-time part of the graph still to run. An instance leaves when it
    /// completes, so this stays bounded by the queue.
    pub dynamic_tasks: BTreeMap<String, String>,
    /// Requests for human input the run paused on (empty while it runs).
    pub pending_input: Vec<super::feedback::FeedbackRequest>,
    completed_set: CompletedIndex,
}

/// A derived index of `completed`; never part of equality or of a checkpoint.
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
            queue: Queue::default(),
            completed: Vec::new(),
            last_completed: None,
            last_cycle: 0,
            cycle_counts: BTreeMap::new(),
            id_counters: BTreeMap::new(),
            steps: 0,
            last_result: None,
            dynamic_tasks: BTreeMap::new(),
            pending_input: Vec::new(),
            completed_set: CompletedIndex::default(),
        }
    }

    /// Record a completion (kept once in `completed`, in order of first
    /// completion; `last_completed` follows every completion).
    pub fn mark_completed(&mut self, id: &str) {
        if self.completed_set.0.len() != self.completed.len() {
            self.completed_set = CompletedIndex(self.completed.iter().cloned().collect());
        }
        if self.completed_set.0.insert(id.to_string()) {
            self.completed.push(id.to_string());
        }
        self.last_completed = Some(id.to_string());
    }

    /// Record the completion of execution `id` of `origin`: a node of the
    /// flow is kept in `completed`; every execution becomes
    /// `last_completed`; a dynamic instance leaves `dynamic_tasks`.
    pub fn complete_execution(&mut self, id: &str, origin: Origin) {
        match origin {
            Origin::Flow => self.mark_completed(id),
            Origin::Dynamic | Origin::Iteration { .. } => {
                self.dynamic_tasks.remove(id);
                self.last_completed = Some(id.to_string());
            }
        }
    }

    /// Ids of the queued executions.
    pub fn pending_ids(&self) -> Vec<String> {
        self.queue.iter().map(|s| s.id.clone()).collect()
    }
}
