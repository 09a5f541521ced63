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
mod events;
pub mod feedback;
mod frame;
mod group;
mod input;
mod runner;
mod state;
mod trace_context;
mod writer;

pub use context::{
    ControlCall, Effects, HostBounds, HostCallError, IdAllocator, MAX_LOG_BYTES_PER_EXECUTION, TaskContext, TaskInfo,
    WaitStops, one_line, result_key,
};
pub use events::{Event, EventKind, Fanout, Listener, RunListener, request_outcome};
pub use runner::{FailureKind, TaskFailure, TaskRunner};
pub use state::{Origin, Queue, RunState, Target, TaskSpec};
pub use trace_context::TraceParent;

use crate::channel::{Channel, MemoryChannel};
use crate::json::Json;
use crate::model::Workflow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Why a checkpoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// A task asked for it (`request-checkpoint`); written after the task.
    Deferred,
    /// Every N completed tasks (`--checkpoint-every`).
    Auto,
    /// The run was interrupted (Ctrl-C, SIGTERM).
    Interrupt,
    /// `max_steps` was reached; the queue is kept.
    MaxSteps,
    /// A task asked a person and nobody answered in time: the run pauses
    /// (its metadata names the requests, `requests`).
    WaitingForInput,
}

impl CheckpointMode {
    /// The name stored in a checkpoint's metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointMode::Deferred => "deferred",
            CheckpointMode::Auto => "auto",
            CheckpointMode::Interrupt => "interrupt",
            CheckpointMode::MaxSteps => "max_steps",
            CheckpointMode::WaitingForInput => "waiting_for_input",
        }
    }
}

impl std::fmt::Display for CheckpointMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checkpoint the engine asks its [`CheckpointSink`] to write.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRequest {
    /// The execution that asked, or the last one completed (for automatic,
    /// interrupt and max-steps checkpoints); `None` before any completed.
    pub task_id: Option<String>,
    /// Its cycle count.
    pub cycle_count: u32,
    /// Seconds the execution ran.
    pub elapsed_time: f64,
    /// Why it is taken.
    pub mode: CheckpointMode,
    /// The task's metadata object (`null` when none).
    pub user_metadata: Json,
}

/// A checkpoint the sink wrote (or found already written for this boundary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// How to name it to `resume` (its base path).
    pub id: String,
    /// Bytes written (0 when `fresh` is false).
    pub bytes: u64,
    /// False if nothing changed since the sink's last checkpoint of this run,
    /// which stands for this one.
    pub fresh: bool,
}

/// What a sink's failure carries: its own error, kept as the source.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where checkpoints go. Called at whole-workflow task boundaries only: the
/// state it sees is consistent (no execution in flight). With write-behind
/// ([`Engine::write_behind`]) it is called from the run's writer thread, one
/// call at a time.
pub trait CheckpointSink: Send {
    /// Persist a checkpoint of `state` and `channel`.
    fn write(
        &mut self,
        workflow: &Workflow,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
    ) -> Result<Written, SinkError>;

    /// Start the durable records of this run (write-behind): a log every
    /// checkpoint this sink writes from now on names, which the run appends
    /// a record to at each due boundary, outside the sink (so an append
    /// never waits for a checkpoint being written). `None` (the default):
    /// this sink keeps no records, and write-behind skips boundaries as
    /// before.
    fn open_records(&mut self, _session: &str) -> Option<Box<dyn RecordSink>> {
        None
    }
}

/// Where a run's durable records go (see `checkpoint/records.rs`).
/// Invariant: each record follows the boundary of the previous record or of
/// the last [`RecordSink::rebase`], and is durable when `append` returns.
pub trait RecordSink: Send {
    /// Append the boundary `state` with `channel`, durably; bytes appended.
    fn append(&mut self, state: &RunState, channel: BTreeMap<String, Json>) -> Result<u64, SinkError>;
    /// The next record follows the boundary at `steps` with `channel`: a
    /// checkpoint was written there.
    fn rebase(&mut self, steps: u64, channel: BTreeMap<String, Json>);
    /// Bytes in the log.
    fn bytes(&self) -> u64;
    /// Where it is (for messages and for removing it once superseded).
    fn path(&self) -> &std::path::Path;
}

/// A sink for runs without checkpoints: a request is an error.
pub struct NoCheckpoints;

/// The error of [`NoCheckpoints`].
#[derive(Debug, thiserror::Error)]
#[error("this run has no checkpoint directory")]
pub struct NoCheckpointDir;

impl CheckpointSink for NoCheckpoints {
    fn write(
        &mut self,
        _: &Workflow,
        _: &RunState,
        _: &BTreeMap<String, Json>,
        _: &CheckpointRequest,
    ) -> Result<Written, SinkError> {
        Err(Box::new(NoCheckpointDir))
    }
}

/// A sink error shared by the clones of a [`RunError`] (compared by message).
#[derive(Debug, Clone)]
pub struct CheckpointFailure(pub Arc<dyn std::error::Error + Send + Sync + 'static>);

impl PartialEq for CheckpointFailure {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl std::fmt::Display for CheckpointFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CheckpointFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// How a run ended without error.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// The queue drained.
    Completed,
    /// A task called `terminate-workflow` with this message.
    Terminated(String),
    /// The run was interrupted (Ctrl-C) at a task boundary and checkpointed.
    Interrupted(Written),
    /// Tasks asked people and nobody answered in time: the run stopped at a
    /// task boundary and checkpointed; resume it once they are answered.
    Paused {
        /// The checkpoint.
        checkpoint: Written,
        /// The requests it waits for.
        requests: Vec<super::feedback::FeedbackRequest>,
    },
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
    #[error("task '{task_id}' ({}) {failure}{}", task_origin(task_id, task, module), attempts_note(*attempts))]
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
    #[error("stopped after max_steps = {max_steps} completed tasks with {} still queued ({})", pending.len(), listed(pending))]
    MaxSteps {
        /// The limit.
        max_steps: u64,
        /// Ids still queued (kept in the run state).
        pending: Vec<String>,
        /// The checkpoint keeping the queue, when one could be written.
        checkpoint: Option<Written>,
    },
    /// A checkpoint could not be written.
    #[error("checkpoint {} failed", after(task_id))]
    Checkpoint {
        /// The execution after which it was due.
        task_id: Option<String>,
        /// Why.
        source: CheckpointFailure,
    },
    /// The run grew past one of its bounds (`[workflow.bounds]`).
    #[error("{detail}, over the bound {bound} = {limit}")]
    Bound {
        /// The bound's key in `[workflow.bounds]`.
        bound: &'static str,
        /// Its value.
        limit: u64,
        /// What grew.
        detail: String,
    },
    /// What runs the tasks stopped the run (Redis lost, no worker alive); it
    /// stopped at a task boundary, with a checkpoint when one was written.
    #[error("{reason}")]
    Stopped {
        /// Why.
        reason: String,
        /// The checkpoint it stopped at.
        checkpoint: Option<Written>,
    },
    /// The run state refers to something the workflow does not have (a corrupt
    /// or mismatched checkpoint).
    #[error("inconsistent run state: {0}")]
    Inconsistent(String),
}

fn after(task: &Option<String>) -> String {
    match task {
        Some(t) => format!("after task '{t}'"),
        None => "before any task completed".into(),
    }
}

/// At most 20 ids, then how many more.
fn listed(ids: &[String]) -> String {
    if ids.len() <= 20 { ids.join(", ") } else { format!("{}, ... and {} more", ids[..20].join(", "), ids.len() - 20) }
}

/// Where a failed execution comes from: its module, and its declared task
/// when the execution id is not the task's own name (`d#1`, `a@2`).
fn task_origin(task_id: &str, task: &str, module: &str) -> String {
    if task_id == task { format!("module '{module}'") } else { format!("task '{task}' in module '{module}'") }
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
    listener: Listener,
    root: Option<Arc<dyn Channel>>,
    feedback: Arc<dyn super::feedback::FeedbackDesk>,
    write_behind: bool,
}

/// What every frame of one run shares (read-only but for the checkpoint
/// budget, which branches read and the top level spends).
pub(crate) struct Shared<'a> {
    pub workflow: Arc<Workflow>,
    pub runner: &'a dyn TaskRunner,
    pub interrupt: &'a AtomicBool,
    pub run_input: BTreeMap<String, Json>,
    pub max_steps: u64,
    /// Checkpoints written by this run, counting one handed to the
    /// write-behind writer from the moment it is handed over (taken back if
    /// it is not written), so a task told its request is accepted is never
    /// refused at its boundary. And their bytes (once written).
    pub checkpoints_written: AtomicU64,
    pub checkpoint_bytes: AtomicU64,
    /// Threads running branches of parallel groups, in the whole run.
    pub branch_threads: group::BranchThreads,
    /// Where events go.
    pub listener: Listener,
    /// Steps completed in the whole run, branches included (for `max_steps`
    /// across parallel branches).
    pub steps_done: AtomicU64,
    /// Where feedback requests and answers are kept.
    pub feedback: Arc<dyn super::feedback::FeedbackDesk>,
    /// Requests nobody answered in time: the run pauses on them.
    pub paused: std::sync::Mutex<Vec<super::feedback::FeedbackRequest>>,
    /// Set when a task paused the run: every frame, branches included, stops
    /// at its next boundary, and waiting requests stop waiting.
    pub pausing: Arc<AtomicBool>,
    /// `pausing` and the run's interrupt flag (Ctrl-C): what ends a waiting
    /// feedback request early.
    pub wait_stops: context::WaitStops,
}

impl Shared<'_> {
    /// Why a further checkpoint request would be refused, if it would:
    /// `max_checkpoints` (unless the run has a retention rule, which keeps
    /// what is on disk bounded) or `max_checkpoint_bytes` is spent.
    pub fn checkpoint_refusal(&self) -> Option<String> {
        let b = &self.workflow.settings.bounds;
        let (n, bytes) =
            (self.checkpoints_written.load(Ordering::SeqCst), self.checkpoint_bytes.load(Ordering::SeqCst));
        if n >= b.max_checkpoints && self.workflow.settings.keep_checkpoints.is_none() {
            return Some(format!("this run wrote {n} checkpoints, the bound max_checkpoints = {}", b.max_checkpoints));
        }
        if bytes >= b.max_checkpoint_bytes {
            return Some(format!(
                "this run wrote {bytes} bytes of checkpoints, over the bound max_checkpoint_bytes = {}",
                b.max_checkpoint_bytes
            ));
        }
        None
    }
}

impl<'a> Engine<'a> {
    /// An engine for `workflow` that runs tasks with `runner`.
    pub fn new(workflow: Arc<Workflow>, runner: &'a dyn TaskRunner) -> Engine<'a> {
        let max_steps = workflow.settings.max_steps;
        Engine {
            workflow,
            runner,
            interrupt: Arc::new(AtomicBool::new(false)),
            checkpoint_every: None,
            max_steps,
            listener: Listener::default(),
            root: None,
            feedback: Arc::new(super::feedback::NoDesk),
            write_behind: false,
        }
    }

    /// Keep the tasks' feedback requests and answers at `desk`.
    pub fn with_feedback(mut self, desk: Arc<dyn super::feedback::FeedbackDesk>) -> Self {
        self.feedback = desk;
        self
    }

    /// Run over `root` instead of the channel given to [`Engine::run`]:
    /// tasks read it and commits write to it. Invariant: `root` reads and
    /// writes the entries of that channel (it may also copy every write
    /// elsewhere, as the Redis channel of a distributed run does), so that
    /// checkpoints, which snapshot that channel, see what the tasks saw.
    pub fn with_root_channel(mut self, root: Arc<dyn Channel>) -> Self {
        self.root = Some(root);
        self
    }

    /// Send the run's events to `listener`.
    pub fn with_listener(mut self, listener: Listener) -> Self {
        self.listener = listener;
        self
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

    /// Write automatic checkpoints behind the run (see `writer.rs`): the run
    /// does not wait for the disk, and when tasks complete faster than
    /// checkpoints commit, the boundaries in between are not written.
    pub fn write_behind(mut self, on: bool) -> Self {
        self.write_behind = on;
        self
    }

    /// Run from `state` until the queue drains, a task terminates or cancels,
    /// a task fails, `max_steps` is reached (the queue is then checkpointed),
    /// or the interrupt flag is set (then checkpointed at the task boundary).
    /// `state` and `channel` always hold the state at the last task boundary.
    pub fn run(
        &self,
        state: &mut RunState,
        channel: &Arc<MemoryChannel>,
        sink: &mut dyn CheckpointSink,
    ) -> Result<RunReport, RunError> {
        let pausing = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            workflow: self.workflow.clone(),
            runner: self.runner,
            interrupt: &self.interrupt,
            run_input: input::run_input_fields(&state.input),
            max_steps: self.max_steps,
            checkpoints_written: AtomicU64::new(0),
            checkpoint_bytes: AtomicU64::new(0),
            branch_threads: group::BranchThreads::for_workflow(&self.workflow),
            listener: self.listener.clone(),
            steps_done: AtomicU64::new(state.steps),
            feedback: self.feedback.clone(),
            paused: Default::default(),
            wait_stops: Arc::from([pausing.clone(), self.interrupt.clone()]),
            pausing,
        };
        // A resumed run no longer waits: its tasks ask again.
        state.pending_input.clear();
        let writer = writer::Checkpointer::new(
            &shared,
            sink,
            self.write_behind && self.checkpoint_every.is_some(),
            &state.session_id,
        );
        let outcome = std::thread::scope(|scope| {
            if writer.is_behind() {
                scope.spawn(|| writer.serve());
            }
            // Closed however `run_top` ends, a panic included: the scope
            // joins the writer before it lets the panic go on.
            let _close = writer.closer();
            self.run_top(&shared, &writer, state, channel)
        });
        let (status, result, steps) = outcome?;
        Ok(RunReport { status, result, steps, checkpoints: writer.into_written() })
    }

    /// [`Engine::run`] once its checkpoint writer is set up: the top frame,
    /// its checkpoints, and how the run ended.
    fn run_top(
        &self,
        shared: &Shared,
        writer: &writer::Checkpointer,
        state: &mut RunState,
        channel: &Arc<MemoryChannel>,
    ) -> Result<(RunStatus, Option<Json>, u64), RunError> {
        let base: Arc<dyn Channel> = match &self.root {
            Some(root) => root.clone(),
            None => channel.clone(),
        };
        let mut frame = frame::Frame::new(shared, state, base, String::new(), self.max_steps, (0, 0));
        let every = self.checkpoint_every;
        let mut auto_refused = false;
        let end = frame.run(&mut |f: &mut frame::Frame| -> Result<(), RunError> {
            let auto = every.is_some_and(|n| f.state.steps.is_multiple_of(n)) || writer.owed_and_free();
            let request =
                f.pending_checkpoint.take().or_else(|| auto.then(|| f.boundary_request(CheckpointMode::Auto)));
            let Some(request) = request else { return Ok(()) };
            if request.mode != CheckpointMode::Auto {
                // A task's request was checked against the bounds when the
                // task ran (counting what the writer had in flight) and the
                // task was told it is accepted: it is written.
                return writer.write(f.state, channel, &request).map(drop);
            }
            if let Some(why) = shared.checkpoint_refusal() {
                if !auto_refused {
                    tracing::warn!("no further checkpoints are written by this run: {why}");
                    auto_refused = true;
                }
                return Ok(());
            }
            writer.auto(f.state, channel, &request)
        });
        // With write-behind: the writer's failure stops the run, and if a
        // checkpoint fell due while the writer was busy, the state now (the
        // newest boundary) is written, when the run ended at a boundary. A
        // task that failed or cancelled left the frame between boundaries
        // (its spec is out of the queue): nothing more is written then.
        // An interrupt or max-steps checkpoint is of the newest boundary: an
        // owed automatic one is not written as well (it would take its place,
        // labelled `auto`).
        let end = match end {
            Ok(frame::FrameEnd::Interrupted) => {
                if let Err(lost) = writer.settle() {
                    tracing::error!("an automatic checkpoint was not written: {}", crate::error_chain(&lost));
                }
                frame::FrameEnd::Interrupted
            }
            Ok(end) => {
                writer.finish(frame.state, channel, || frame.boundary_request(CheckpointMode::Auto))?;
                end
            }
            Err(RunError::MaxSteps { max_steps, pending, .. }) => {
                if let Err(lost) = writer.settle() {
                    tracing::error!("an automatic checkpoint was not written: {}", crate::error_chain(&lost));
                }
                let request = frame.boundary_request(CheckpointMode::MaxSteps);
                let checkpoint = match writer.write(frame.state, channel, &request) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        if !matches!(&e, RunError::Checkpoint { source, .. } if source.0.is::<NoCheckpointDir>()) {
                            tracing::error!("cannot checkpoint the remaining queue: {}", crate::error_chain(&e));
                        }
                        None
                    }
                };
                return Err(RunError::MaxSteps { max_steps, pending, checkpoint });
            }
            Err(e) => {
                // A task that failed for good at the top level: a checkpoint
                // owed is written at the boundary before it, so a resume runs
                // only that task again (as without write-behind).
                let lost = match frame.before_failure.take() {
                    Some(before) => writer.finish(&before, channel, || frame.boundary_request(CheckpointMode::Auto)),
                    None => writer.settle(),
                };
                if let Err(lost) = lost {
                    tracing::error!("an automatic checkpoint was not written: {}", crate::error_chain(&lost));
                }
                return Err(e);
            }
        };
        let status = match end {
            frame::FrameEnd::Drained => RunStatus::Completed,
            frame::FrameEnd::Terminated(message) => RunStatus::Terminated(message),
            frame::FrameEnd::Interrupted => {
                let paused = std::mem::take(&mut *shared.paused.lock().unwrap_or_else(|e| e.into_inner()));
                frame.state.pending_input = paused.clone();
                let request = if paused.is_empty() {
                    frame.boundary_request(CheckpointMode::Interrupt)
                } else {
                    let ids: Vec<&str> = paused.iter().map(|r| r.id.as_str()).collect();
                    CheckpointRequest {
                        user_metadata: Json::from(serde_json::json!({ "requests": ids })),
                        ..frame.boundary_request(CheckpointMode::WaitingForInput)
                    }
                };
                let written = writer.write(frame.state, channel, &request)?;
                if paused.is_empty() {
                    RunStatus::Interrupted(written)
                } else {
                    RunStatus::Paused { checkpoint: written, requests: paused }
                }
            }
        };
        Ok((status, frame.state.last_result.clone(), frame.state.steps))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since `start`.
pub(crate) fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests;
