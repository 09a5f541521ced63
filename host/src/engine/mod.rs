//! The engine: Graflow's execution order over a queue of [`TaskSpec`]s.
//!
//! Order of one step (as in Graflow): take the first ready execution from the
//! FIFO queue; run it; on success store its result under `<id>.__result__`,
//! commit its channel writes, mark it completed, count a step, queue the
//! executions it asked for (in call order), then its graph successors (unless it
//! jumped, iterated or terminated); then write the checkpoint it requested. A
//! parallel group runs its members' branches concurrently and is the join: its
//! successors are queued once, after every branch finished.
//!
//! The engine does not know wasmtime: tasks run through a [`TaskRunner`].

mod context;
mod frame;
mod group;
mod input;
mod runner;
mod state;

pub use context::{Effects, HostBounds, HostCallError, IdAllocator, TaskContext, TaskInfo, result_key};
pub use runner::{FailureKind, TaskFailure, TaskRunner};
pub use state::{RunState, Target, TaskSpec};

use crate::channel::{Channel, MemoryChannel};
use crate::json::Json;
use crate::model::Workflow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// A checkpoint the engine asks its [`CheckpointSink`] to write.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRequest {
    /// The execution that asked (or the last one completed, for automatic and
    /// interrupt checkpoints).
    pub task_id: String,
    /// Its cycle count.
    pub cycle_count: u32,
    /// Seconds the execution ran.
    pub elapsed_time: f64,
    /// `deferred` (asked by a task), `auto` (every N steps) or `interrupt`.
    pub mode: &'static str,
    /// The task's metadata object (`null` when none).
    pub user_metadata: Json,
}

/// Where checkpoints go. Called at whole-workflow task boundaries only: the
/// state it sees is consistent (no execution in flight).
pub trait CheckpointSink {
    /// Persist a checkpoint of `state` and `channel`; return its id.
    fn write(
        &mut self,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
    ) -> Result<String, String>;
}

/// A sink for runs without checkpoints: a request is an error.
pub struct NoCheckpoints;

impl CheckpointSink for NoCheckpoints {
    fn write(
        &mut self,
        _: &Workflow,
        _: &RunState,
        _: &BTreeMap<String, Json>,
        r: &CheckpointRequest,
    ) -> Result<String, String> {
        Err(format!("task '{}' requested a checkpoint, but this run has no checkpoint directory", r.task_id))
    }
}

/// How a run ended without error.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// The queue drained.
    Completed,
    /// A task called `terminate-workflow` with this message.
    Terminated(String),
    /// The run was interrupted (Ctrl-C); the checkpoint id to resume from, if one
    /// was written.
    Interrupted(Option<String>),
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// How it ended.
    pub status: RunStatus,
    /// The result of the last completed execution.
    pub result: Option<Json>,
    /// Completed executions.
    pub steps: u64,
    /// Ids of the checkpoints written, in order.
    pub checkpoints: Vec<String>,
}

/// Why a run failed. Every variant names the execution or group at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// A task failed and its retries (if any) ran out.
    #[error("task '{task_id}' (task '{task}' in module '{module}') {failure}{}", attempts_note(*attempts))]
    TaskFailed {
        /// Execution id.
        task_id: String,
        /// Declared task name.
        task: String,
        /// Module.
        module: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        failure: TaskFailure,
    },
    /// A task called `cancel-workflow`.
    #[error("workflow canceled by task '{task_id}': {message}")]
    Cancelled {
        /// Execution id.
        task_id: String,
        /// The task's message.
        message: String,
    },
    /// A parallel group failed under its policy.
    #[error("parallel group '{group}' failed (policy {policy}): {summary}", summary = group_summary(failed, succeeded))]
    GroupFailed {
        /// Group name.
        group: String,
        /// Its policy, as text.
        policy: String,
        /// Failed members with their errors.
        failed: Vec<(String, String)>,
        /// Members that succeeded.
        succeeded: Vec<String>,
    },
    /// `max_steps` completions were reached with executions still queued.
    #[error("stopped after max_steps = {max_steps} completed tasks with {} still queued ({})", pending.len(), pending.join(", "))]
    MaxSteps {
        /// The limit.
        max_steps: u64,
        /// Ids still queued (kept in the run state).
        pending: Vec<String>,
    },
    /// A checkpoint could not be written.
    #[error("checkpoint after task '{task_id}' failed: {message}")]
    Checkpoint {
        /// The execution after which it was due.
        task_id: String,
        /// Why.
        message: String,
    },
    /// The run state refers to something the workflow does not have (a corrupt
    /// or mismatched checkpoint).
    #[error("inconsistent run state: {0}")]
    Inconsistent(String),
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 { format!(" (after {attempts} attempts)") } else { String::new() }
}

fn group_summary(failed: &[(String, String)], succeeded: &[String]) -> String {
    let failed: Vec<String> = failed.iter().map(|(m, e)| format!("'{m}': {e}")).collect();
    let ok = if succeeded.is_empty() { "none".to_string() } else { succeeded.join(", ") };
    format!("{} failed [{}]; succeeded: {ok}", failed.len(), failed.join("; "))
}

/// Runs workflows. One engine serves one run at a time; it is cheap to build.
pub struct Engine<'a> {
    workflow: Arc<Workflow>,
    runner: &'a dyn TaskRunner,
    interrupt: Arc<AtomicBool>,
    checkpoint_every: Option<u64>,
    max_steps: u64,
}

/// What every frame of one run shares (read-only).
pub(crate) struct Shared<'a> {
    pub workflow: Arc<Workflow>,
    pub runner: &'a dyn TaskRunner,
    pub interrupt: &'a AtomicBool,
    pub run_input: BTreeMap<String, Json>,
    pub max_steps: u64,
}

impl<'a> Engine<'a> {
    /// An engine for `workflow` that runs tasks with `runner`.
    pub fn new(workflow: Arc<Workflow>, runner: &'a dyn TaskRunner) -> Engine<'a> {
        let max_steps = workflow.settings.max_steps;
        Engine { workflow, runner, interrupt: Arc::new(AtomicBool::new(false)), checkpoint_every: None, max_steps }
    }

    /// Stop at the next task boundary once `flag` is set (then checkpoint).
    pub fn with_interrupt(mut self, flag: Arc<AtomicBool>) -> Self {
        self.interrupt = flag;
        self
    }

    /// Stop with [`RunError::MaxSteps`] once `n` tasks of the run completed,
    /// instead of the workflow's `max_steps` (for this run only: checkpoints
    /// keep the workflow's own setting).
    pub fn max_steps(mut self, n: Option<u64>) -> Self {
        if let Some(n) = n {
            self.max_steps = n;
        }
        self
    }

    /// Write a checkpoint after every `n` completed tasks.
    pub fn checkpoint_every(mut self, n: Option<u64>) -> Self {
        self.checkpoint_every = n.filter(|n| *n > 0);
        self
    }

    /// Run from `state` until the queue drains, a task terminates or cancels,
    /// a task fails, `max_steps` is reached, or the interrupt flag is set.
    /// `state` and `channel` always hold the state at the last task boundary.
    pub fn run(
        &self,
        state: &mut RunState,
        channel: &Arc<MemoryChannel>,
        sink: &mut dyn CheckpointSink,
    ) -> Result<RunReport, RunError> {
        let shared = Shared {
            workflow: self.workflow.clone(),
            runner: self.runner,
            interrupt: &self.interrupt,
            run_input: input::run_input_fields(&state.input),
            max_steps: self.max_steps,
        };
        let base: Arc<dyn Channel> = channel.clone();
        let mut checkpoints = Vec::new();
        let mut frame = frame::Frame::new(&shared, state, base, String::new(), self.max_steps);
        let every = self.checkpoint_every;
        let mut after_step = |f: &mut frame::Frame| -> Result<(), RunError> {
            let auto = every.is_some_and(|n| f.state.steps.is_multiple_of(n));
            let request = f.pending_checkpoint.take().or_else(|| auto.then(|| f.boundary_request("auto")));
            if let Some(request) = request {
                let id = sink
                    .write(&shared.workflow, f.state, &channel.snapshot(), &request)
                    .map_err(|message| RunError::Checkpoint { task_id: request.task_id.clone(), message })?;
                tracing::info!(checkpoint = %id, task = %request.task_id, "checkpoint written");
                checkpoints.push(id);
            }
            Ok(())
        };
        let end = frame.run(&mut after_step);
        let end = end?;
        let status = match end {
            frame::FrameEnd::Drained => RunStatus::Completed,
            frame::FrameEnd::Terminated(message) => RunStatus::Terminated(message),
            frame::FrameEnd::Interrupted => {
                let request = frame.boundary_request("interrupt");
                let id = sink
                    .write(&shared.workflow, frame.state, &channel.snapshot(), &request)
                    .map_err(|message| RunError::Checkpoint { task_id: request.task_id.clone(), message })?;
                checkpoints.push(id.clone());
                RunStatus::Interrupted(Some(id))
            }
        };
        Ok(RunReport { status, result: state.last_result.clone(), steps: state.steps, checkpoints })
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since `start`.
pub(crate) fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests;
