//! What one task execution may see and do: the host side of every WIT import.
//!
//! A [`TaskContext`] is built by the engine before an attempt, lives inside the
//! sandbox's store while the guest runs, and is handed back afterwards. It holds
//! the task's channel overlay (committed only if the attempt succeeds) and
//! records the effects the guest asked for; the engine applies them after the
//! task returns. It never holds guest memory.

use super::runner::{FailureKind, TaskFailure};
use super::state::{Origin, Target, TaskSpec};
use crate::channel::{Channel, Overlay};
use crate::json::Json;
pub use crate::model::HostBounds;
use crate::model::Workflow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// About the running execution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskInfo {
    /// Execution id.
    pub task_id: String,
    /// Declared task name.
    pub task_name: String,
    /// Module that provides the task.
    pub module: String,
    /// Run id.
    pub session_id: String,
    /// 1-based run count of this task's cycle key.
    pub cycle_count: u32,
    /// `max_cycles` of the task.
    pub max_cycles: u32,
    /// 0 on the first attempt.
    pub retry_count: u32,
    /// `max_retries` of the task.
    pub max_retries: u32,
}

/// Flags that end a feedback wait early, shared by every execution of a run
/// (made once per run, cloned per execution by reference count).
pub type WaitStops = Arc<[Arc<std::sync::atomic::AtomicBool>]>;

/// The effects a task asked for, applied by the engine after it returns.
#[derive(Debug, Default)]
pub struct Effects {
    /// Executions to queue, in call order.
    pub next: Vec<TaskSpec>,
    /// Skip this execution's graph successors.
    pub goto: bool,
    /// `next-iteration` was called: successors wait for the last iteration.
    pub iterating: bool,
    /// `terminate-workflow` message.
    pub terminate: Option<String>,
    /// `cancel-workflow` message.
    pub cancel: Option<String>,
    /// `request-checkpoint` metadata (the last request wins).
    pub checkpoint: Option<Json>,
    /// `set-result` value.
    pub result: Option<Json>,
    /// A failure the host decided (cycle limit, host bound); it overrides what
    /// the guest returns.
    pub failure: Option<TaskFailure>,
    /// The feedback request nobody answered in time: the run pauses on it.
    pub paused: Option<super::feedback::FeedbackRequest>,
    /// The `next-task` and `next-iteration` calls that queued an execution, in
    /// call order: what a coordinator replays to apply a remote execution's
    /// effects through the same checks (`distributed`).
    pub calls: Vec<ControlCall>,
}

/// A `control` call that queued an execution, with its arguments.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ControlCall {
    /// `next-task(task, input)`, or `goto` when `goto` is set.
    NextTask {
        /// The task or flow node named.
        task: String,
        /// The explicit input (none for `null`).
        input: Option<Json>,
        /// Whether the call skips the caller's successors.
        goto: bool,
    },
    /// `next-iteration(input)`.
    NextIteration {
        /// The explicit input (none for `null`).
        input: Option<Json>,
    },
}

/// Why a host call did not do what the guest asked.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCallError {
    /// Refused: the guest gets the message as an error value and may go on.
    Refused(String),
    /// The execution must stop: the failure is recorded and the guest trapped.
    Abort(TaskFailure),
}

/// The state one task execution works on (see the module docs).
pub struct TaskContext {
    /// About the execution.
    pub info: TaskInfo,
    /// The execution's writes, over the channel it started from.
    pub channel: Overlay,
    /// The effects asked for so far.
    pub effects: Effects,
    workflow: Arc<Workflow>,
    spec: TaskSpec,
    ids: IdAllocator,
    bounds: HostBounds,
    written: u64,
    /// Executions queued when this one started, and their input bytes.
    queue_usage: (u64, u64),
    /// Why a checkpoint request would be refused (the run's checkpoint
    /// bounds are spent).
    checkpoint_refusal: Option<String>,
    /// Where the task's log lines go as events.
    listener: super::Listener,
    /// Where feedback requests and answers are kept.
    /// `None`: requests are refused ([`super::feedback::NoDesk`]); nothing is
    /// allocated per execution for it.
    feedback: Option<Arc<dyn super::feedback::FeedbackDesk>>,
    /// Feedback requests made so far by this execution.
    feedback_asked: u32,
    /// Flags that end a feedback wait early (the run pauses or is
    /// interrupted): the request then pauses the run at once.
    wait_stops: WaitStops,
    /// Log bytes written so far (see [`MAX_LOG_BYTES_PER_EXECUTION`]).
    logged: u64,
}

/// Allocates dynamic instance ids `<task>#<prefix><n>`, deterministic per run.
#[derive(Debug, Default)]
pub struct IdAllocator {
    /// Prefix inside a parallel branch (`<member>.`), empty at the top level.
    pub prefix: String,
    /// Last number used per task.
    pub counters: BTreeMap<String, u32>,
    /// The value each counter had before this execution first advanced it.
    undo: BTreeMap<String, Option<u32>>,
}

impl IdAllocator {
    /// An allocator over `counters`, with `prefix` inside a branch.
    pub fn new(prefix: String, counters: BTreeMap<String, u32>) -> IdAllocator {
        IdAllocator { prefix, counters, undo: BTreeMap::new() }
    }

    fn next(&mut self, task: &str) -> String {
        if !self.undo.contains_key(task) {
            self.undo.insert(task.to_string(), self.counters.get(task).copied());
        }
        let n = self.counters.entry(task.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        format!("{task}#{}{n}", self.prefix)
    }

    /// The counters as they were before this execution (for an attempt that
    /// runs again and must make the same ids).
    pub fn rolled_back(self) -> BTreeMap<String, u32> {
        let (counters, undo) = self.split();
        undo.apply(counters)
    }

    /// The counters now, and what undoes this execution's changes to them.
    pub fn split(self) -> (BTreeMap<String, u32>, IdUndo) {
        (self.counters, IdUndo(self.undo))
    }
}

/// What one execution changed in the id counters (each counter's value
/// before it), to undo them.
#[derive(Debug, Default)]
pub struct IdUndo(BTreeMap<String, Option<u32>>);

impl IdUndo {
    /// `counters` with this execution's changes undone.
    pub fn apply(&self, mut counters: BTreeMap<String, u32>) -> BTreeMap<String, u32> {
        for (task, before) in &self.0 {
            match before {
                Some(n) => counters.insert(task.clone(), *n),
                None => counters.remove(task),
            };
        }
        counters
    }
}

impl TaskContext {
    /// A context for running `spec`, over `channel`.
    pub fn new(
        info: TaskInfo,
        spec: TaskSpec,
        channel: Arc<dyn Channel>,
        workflow: Arc<Workflow>,
        ids: IdAllocator,
        bounds: HostBounds,
    ) -> TaskContext {
        TaskContext {
            info,
            channel: Overlay::new(channel),
            effects: Effects::default(),
            workflow,
            spec,
            ids,
            bounds,
            written: 0,
            queue_usage: (0, 0),
            checkpoint_refusal: None,
            listener: super::Listener::default(),
            feedback: None,
            feedback_asked: 0,
            wait_stops: WaitStops::default(),
            logged: 0,
        }
    }

    /// End feedback waits early once any of `flags` is set.
    pub fn set_wait_stops(&mut self, flags: WaitStops) {
        self.wait_stops = flags;
    }

    /// The flags that end a feedback wait early.
    pub fn wait_stops(&self) -> WaitStops {
        self.wait_stops.clone()
    }

    /// Keep feedback requests and answers at `desk`.
    pub fn set_feedback(&mut self, desk: Arc<dyn super::feedback::FeedbackDesk>) {
        self.feedback = Some(desk);
    }

    /// Where feedback requests and answers are kept.
    pub fn feedback_desk(&self) -> Arc<dyn super::feedback::FeedbackDesk> {
        self.feedback.clone().unwrap_or_else(|| Arc::new(super::feedback::NoDesk))
    }

    /// `feedback.request`: the request, checked against its bounds, with its
    /// id (see [`super::feedback::FeedbackRequest::id_for`]).
    pub fn feedback_request(
        &mut self,
        kind: super::feedback::FeedbackKind,
        prompt: String,
        options: Vec<String>,
        metadata: &str,
        timeout_secs: u32,
    ) -> Result<super::feedback::FeedbackRequest, HostCallError> {
        use super::feedback::{FeedbackRequest, MAX_REQUESTS_PER_EXECUTION};
        if self.feedback_asked >= MAX_REQUESTS_PER_EXECUTION {
            let msg = format!(
                "more than {MAX_REQUESTS_PER_EXECUTION} feedback requests in one execution (the bound feedback::MAX_REQUESTS_PER_EXECUTION)"
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        let metadata = self.accept_value("feedback metadata", metadata)?;
        let timeout_ms = (u64::from(timeout_secs) * 1000).min(crate::model::MAX_DURATION_MS);
        let request = FeedbackRequest {
            id: FeedbackRequest::id_for(
                &self.info.session_id,
                &self.info.task_id,
                self.info.cycle_count,
                self.feedback_asked,
            ),
            session_id: self.info.session_id.clone(),
            task_id: self.info.task_id.clone(),
            kind,
            prompt,
            options,
            metadata: (!metadata.is_null()).then_some(metadata),
            timeout_ms,
            requested_at_ms: super::now_ms(),
        };
        request.validate().map_err(HostCallError::Refused)?;
        self.feedback_asked += 1;
        Ok(request)
    }

    /// Nobody answered `request` in time: the execution stops and the run
    /// pauses on it.
    pub fn pause_for(&mut self, request: super::feedback::FeedbackRequest) -> HostCallError {
        let msg = format!("waits for input: feedback request {}", request.id);
        self.effects.paused = Some(request);
        self.abort(TaskFailure::new(FailureKind::Paused, msg))
    }

    /// Send the task's log lines to `listener` as events.
    pub fn set_listener(&mut self, listener: super::Listener) {
        self.listener = listener;
    }

    /// Where the task's events go.
    pub fn listener(&self) -> super::Listener {
        self.listener.clone()
    }

    /// A line the task logged (or printed), as an event.
    pub fn log_event(&self, level: &'static str, line: &str) {
        self.listener.emit(0, || super::EventKind::Log {
            task_id: self.info.task_id.clone(),
            module: self.info.module.clone(),
            level,
            line: line.to_string(),
        });
    }

    /// Executions already queued in the run, and their input bytes (counted
    /// with this execution's `next-task` calls against the queue bounds).
    pub fn set_queue_usage(&mut self, usage: (u64, u64)) {
        self.queue_usage = usage;
    }

    /// Refuse `request-checkpoint` with this reason.
    pub fn set_checkpoint_refusal(&mut self, why: Option<String>) {
        self.checkpoint_refusal = why;
    }

    /// The bounds this execution runs under.
    pub fn bounds(&self) -> &HostBounds {
        &self.bounds
    }

    /// Give back the id allocator (its counters advanced by `next-task`).
    pub fn take_ids(&mut self) -> IdAllocator {
        std::mem::take(&mut self.ids)
    }

    /// The spec this context runs.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The id allocator (its prefix and counters).
    pub fn ids(&self) -> &IdAllocator {
        &self.ids
    }

    /// What [`TaskContext::set_queue_usage`] set.
    pub fn queue_usage(&self) -> (u64, u64) {
        self.queue_usage
    }

    /// What [`TaskContext::set_checkpoint_refusal`] set.
    pub fn checkpoint_refusal(&self) -> Option<&str> {
        self.checkpoint_refusal.as_deref()
    }

    /// The workflow the execution belongs to.
    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.workflow
    }

    fn abort(&mut self, failure: TaskFailure) -> HostCallError {
        self.effects.failure.get_or_insert(failure.clone());
        HostCallError::Abort(failure)
    }

    fn check_key(&mut self, key: &str) -> Result<(), HostCallError> {
        if key.len() as u64 > self.bounds.max_key_bytes {
            let msg = format!(
                "channel key of {} bytes exceeds the bound max_key_bytes = {} bytes",
                key.len(),
                self.bounds.max_key_bytes
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        Ok(())
    }

    /// Check the size bounds of `value` (and count it with `key_bytes`
    /// against the bytes this execution may write), then parse it as JSON
    /// (`item`: one nesting level less, for a list item).
    fn accept(&mut self, what: &str, value: &str, key_bytes: usize, item: bool) -> Result<Json, HostCallError> {
        self.check_value_len(what, value.len())?;
        self.count_written((value.len() + key_bytes) as u64)?;
        let parsed = if item { Json::parse_item(value) } else { Json::parse(value) };
        parsed.map_err(|e| HostCallError::Refused(format!("{what} is not valid JSON: {e}")))
    }

    /// Refuse `what`, of `len` bytes, if it is over `max_value_bytes`.
    fn check_value_len(&mut self, what: &str, len: usize) -> Result<(), HostCallError> {
        if len as u64 > self.bounds.max_value_bytes {
            let msg = format!(
                "{what} of {len} bytes exceeds the bound max_value_bytes = {} bytes",
                self.bounds.max_value_bytes
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        Ok(())
    }

    /// Count `bytes` against what this execution may write to the channel.
    fn count_written(&mut self, bytes: u64) -> Result<(), HostCallError> {
        self.written = self.written.saturating_add(bytes);
        if self.written > self.bounds.max_written_bytes {
            let msg = format!(
                "the task wrote {} bytes, over the bound max_written_bytes = {} bytes per execution",
                self.written, self.bounds.max_written_bytes
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        Ok(())
    }

    fn accept_value(&mut self, what: &str, value: &str) -> Result<Json, HostCallError> {
        self.accept(what, value, 0, false)
    }

    /// Fail the execution if storing `new_bytes` under `key` would make the
    /// channel larger than `max_channel_bytes`.
    fn check_channel_growth(&mut self, key: &str, new_bytes: usize) -> Result<(), HostCallError> {
        let old = self.channel.get(key).map_or(0, |v| crate::channel::entry_bytes(key, v.len()));
        let total = (self.channel.size_bytes() + crate::channel::entry_bytes(key, new_bytes)).saturating_sub(old);
        if total > self.bounds.max_channel_bytes {
            let msg = format!(
                "writing channel key '{key}' would make the channel {total} bytes, over the bound max_channel_bytes = {} bytes",
                self.bounds.max_channel_bytes
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        Ok(())
    }

    /// `channel.get`.
    pub fn channel_get(&self, key: &str) -> Option<Json> {
        self.channel.get(key)
    }

    /// `channel.set`.
    pub fn channel_set(&mut self, key: &str, value: &str) -> Result<(), HostCallError> {
        self.check_key(key)?;
        let value = self.accept(&format!("value for channel key '{key}'"), value, key.len(), false)?;
        self.check_channel_growth(key, value.len())?;
        self.channel.set(key, value);
        Ok(())
    }

    /// A remote execution's final value of `key` (a distributed run): checked
    /// against the key, value and channel bounds; the bytes the execution
    /// wrote were counted where it ran.
    pub fn replay_set(&mut self, key: &str, value: &Json) -> Result<(), HostCallError> {
        self.check_key(key)?;
        self.check_value_len(&format!("value for channel key '{key}'"), value.len())?;
        self.check_channel_growth(key, value.len())?;
        self.channel.set(key, value.clone());
        Ok(())
    }

    /// `channel.delete`.
    pub fn channel_delete(&mut self, key: &str) -> Result<bool, HostCallError> {
        self.check_key(key)?;
        self.count_written(key.len() as u64)?;
        // Deleting a key that is nowhere is a no-op: nothing is recorded.
        if !self.channel.exists(key) {
            return Ok(false);
        }
        Ok(self.channel.delete(key))
    }

    /// `channel.exists`.
    pub fn channel_exists(&self, key: &str) -> bool {
        self.channel.exists(key)
    }

    /// `channel.keys`.
    pub fn channel_keys(&self) -> Vec<String> {
        self.channel.keys()
    }

    /// `channel.append` / `channel.prepend`: the list is rebuilt once, as
    /// text, and checked against the value and channel bounds before it is
    /// stored.
    pub fn channel_push(&mut self, key: &str, value: &str, front: bool) -> Result<u32, HostCallError> {
        self.check_key(key)?;
        let item = self.accept(&format!("value for channel key '{key}'"), value, key.len(), true)?;
        let (list, len) = crate::channel::pushed(key, self.channel.get(key), &item, front)
            .map_err(|e| HostCallError::Refused(e.to_string()))?;
        if list.len() as u64 > self.bounds.max_value_bytes {
            let msg = format!(
                "the list under channel key '{key}' would grow to {} bytes, over the bound max_value_bytes = {} bytes",
                list.len(),
                self.bounds.max_value_bytes
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        self.check_channel_growth(key, list.len())?;
        self.channel.set(key, list);
        Ok(u32::try_from(len).unwrap_or(u32::MAX))
    }

    /// `channel.atomic-add`.
    pub fn channel_add(&mut self, key: &str, amount: f64) -> Result<f64, HostCallError> {
        self.check_key(key)?;
        if !amount.is_finite() {
            return Err(HostCallError::Refused(format!("atomic-add on '{key}': the amount must be a finite number")));
        }
        self.count_written(key.len() as u64 + 24)?;
        self.check_channel_growth(key, 24)?;
        self.channel.add(key, amount).map_err(|e| HostCallError::Refused(e.to_string()))
    }

    /// `results.set-result`.
    pub fn set_result(&mut self, value: &str) -> Result<(), HostCallError> {
        let value = self.accept_value("result", value)?;
        self.effects.result = Some(value);
        Ok(())
    }

    /// `results.get-result`: `<task>.__result__`.
    pub fn get_result(&self, task: &str) -> Option<Json> {
        self.channel.get(&result_key(task))
    }

    /// Parse a queued execution's input and check the queue bounds with it.
    fn explicit_input(&mut self, input: &str) -> Result<Option<Json>, HostCallError> {
        let input = self.accept_value("input", input)?;
        let input = (!input.is_null()).then_some(input);
        let queued: u64 = self.effects.next.iter().map(TaskSpec::input_bytes).sum();
        let tasks = self.queue_usage.0 + self.effects.next.len() as u64 + 1;
        let bytes = self.queue_usage.1 + queued + input.as_ref().map_or(0, |i| i.len() as u64);
        if tasks > self.bounds.max_queued_tasks {
            let msg = format!(
                "the queue would hold {tasks} executions, over the bound max_queued_tasks = {}",
                self.bounds.max_queued_tasks
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        if bytes > self.bounds.max_queued_input_bytes {
            let msg = format!(
                "queued executions would hold {bytes} bytes of input, over the bound max_queued_input_bytes = {}",
                self.bounds.max_queued_input_bytes
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        Ok(input)
    }

    /// `control.next-task`.
    pub fn next_task(&mut self, task: &str, input: &str, goto: bool) -> Result<String, HostCallError> {
        // No name is longer than a key may be: a longer one is refused at
        // once (and never echoed whole, nor compared for "did you mean").
        if task.len() as u64 > self.bounds.max_key_bytes {
            let cut = &task[..task.floor_char_boundary(64)];
            return Err(HostCallError::Refused(format!(
                "next-task: no task or flow node named '{cut}...' ({} bytes)",
                task.len()
            )));
        }
        if self.effects.next.len() as u64 >= self.bounds.max_next_tasks {
            let msg = format!(
                "more than {} next-task calls in one execution (the bound max_next_tasks)",
                self.bounds.max_next_tasks
            );
            return Err(self.abort(TaskFailure::new(FailureKind::HostBound, msg)));
        }
        let input = self.explicit_input(input)?;
        let spec = if self.workflow.graph.nodes.contains_key(task) {
            self.effects.goto = true;
            TaskSpec::for_node(&self.workflow, task, input)
        } else if self.workflow.tasks.contains_key(task) {
            self.effects.goto |= goto;
            let id = self.ids.next(task);
            TaskSpec {
                id: id.clone(),
                target: Target::Task(task.to_string()),
                origin: Origin::Dynamic,
                node: None,
                cycle_key: id,
                input,
                attempt: 0,
                not_before_ms: 0,
                last_error: None,
            }
        } else {
            let mut known: Vec<&str> = self.workflow.tasks.keys().map(String::as_str).collect();
            known.extend(
                self.workflow.graph.nodes.keys().map(String::as_str).filter(|n| !self.workflow.tasks.contains_key(*n)),
            );
            let hint = crate::model::did_you_mean(task, known.iter().copied());
            return Err(HostCallError::Refused(format!(
                "next-task: no task or flow node named '{task}' (known: {}{}){hint}",
                known.iter().take(30).copied().collect::<Vec<_>>().join(", "),
                if known.len() > 30 { format!(", ... and {} more", known.len() - 30) } else { String::new() }
            )));
        };
        let id = spec.id.clone();
        self.effects.calls.push(ControlCall::NextTask { task: task.to_string(), input: spec.input.clone(), goto });
        self.effects.next.push(spec);
        Ok(id)
    }

    /// `control.can-iterate`.
    pub fn can_iterate(&self) -> bool {
        self.info.cycle_count < self.info.max_cycles && !self.effects.iterating
    }

    /// `control.next-iteration`.
    pub fn next_iteration(&mut self, input: &str) -> Result<String, HostCallError> {
        if self.effects.iterating {
            return Err(HostCallError::Refused("next-iteration was already called in this run".into()));
        }
        if self.info.cycle_count >= self.info.max_cycles {
            let msg = format!(
                "task '{}' asked for another iteration after {} of max_cycles = {} runs",
                self.spec.cycle_key, self.info.cycle_count, self.info.max_cycles
            );
            self.effects.failure.get_or_insert(TaskFailure::new(FailureKind::CycleLimit, msg.clone()));
            return Err(HostCallError::Refused(msg));
        }
        let input = self.explicit_input(input)?;
        let id = format!("{}@{}", self.spec.cycle_key, self.info.cycle_count.saturating_add(1));
        let spec = TaskSpec {
            id: id.clone(),
            origin: Origin::Iteration { cycle: self.info.cycle_count.saturating_add(1) },
            input,
            attempt: 0,
            not_before_ms: 0,
            last_error: None,
            ..self.spec.clone()
        };
        self.effects.iterating = true;
        self.effects.calls.push(ControlCall::NextIteration { input: spec.input.clone() });
        self.effects.next.push(spec);
        Ok(id)
    }

    /// `control.terminate-workflow`.
    pub fn terminate(&mut self, message: &str) {
        self.effects.terminate = Some(self.log_line(message).into_owned());
    }

    /// `control.cancel-workflow`.
    pub fn cancel(&mut self, message: &str) {
        self.effects.cancel = Some(self.log_line(message).into_owned());
    }

    /// `control.request-checkpoint`: `metadata` must be a JSON object (or null).
    pub fn request_checkpoint(&mut self, metadata: &str) -> Result<(), HostCallError> {
        if let Some(why) = &self.checkpoint_refusal {
            return Err(HostCallError::Refused(format!("request-checkpoint refused: {why}")));
        }
        let metadata = self.accept_value("checkpoint metadata", metadata)?;
        if !metadata.is_object() && !metadata.is_null() {
            return Err(HostCallError::Refused("checkpoint metadata must be a JSON object".into()));
        }
        self.effects.checkpoint = Some(metadata);
        Ok(())
    }

    /// A line of text from the guest for the host's log (`logging.log`, its
    /// output, its messages): made one line ([`one_line`]), then cut to
    /// `max_log_bytes`.
    pub fn log_line<'a>(&self, message: &'a str) -> std::borrow::Cow<'a, str> {
        let max = usize::try_from(self.bounds.max_log_bytes).unwrap_or(usize::MAX);
        let line = one_line(message);
        if line.len() <= max {
            return line;
        }
        let cut = line.floor_char_boundary(max);
        format!("{}... [{} more bytes cut]", &line[..cut], line.len() - cut).into()
    }

    /// Count a log line of `bytes` against [`MAX_LOG_BYTES_PER_EXECUTION`]:
    /// true while within it. The first line past it is dropped with a
    /// warning saying so (in the host's log and as an event), the later ones
    /// silently.
    pub fn admit_log(&mut self, bytes: usize) -> bool {
        let before = self.logged;
        // A line costs its text and [`LOG_LINE_OVERHEAD`]: empty lines are
        // not free.
        self.logged = self.logged.saturating_add(bytes as u64 + LOG_LINE_OVERHEAD);
        if self.logged <= MAX_LOG_BYTES_PER_EXECUTION {
            return true;
        }
        if before <= MAX_LOG_BYTES_PER_EXECUTION {
            let note = format!(
                "further log lines of this execution are dropped: it logged more than {MAX_LOG_BYTES_PER_EXECUTION} bytes (MAX_LOG_BYTES_PER_EXECUTION)"
            );
            tracing::warn!(target: "task", task = %self.info.task_id, module = %self.info.module, "{note}");
            self.log_event("warn", &note);
        }
        false
    }
}

/// Log bytes one execution may write to the host's log (`logging.log`);
/// past it its lines are dropped, with one warning saying so. The same as a
/// worker forwards per execution.
pub const MAX_LOG_BYTES_PER_EXECUTION: u64 = 4 << 20;

/// What a log line costs against [`MAX_LOG_BYTES_PER_EXECUTION`] beside its
/// text (its timestamp, level and names in the host's log).
pub const LOG_LINE_OVERHEAD: u64 = 64;

/// `text` with its control characters (line breaks included, tab excepted)
/// written as escapes (`\n`, `\r`, `\u{1b}`): a guest's text is one line of
/// the host's log and cannot forge another, nor drive the terminal.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

/// The channel key of a task's result.
pub fn result_key(task: &str) -> String {
    format!("{task}.__result__")
}

#[cfg(test)]
mod tests {
    use super::IdAllocator;
    use std::collections::BTreeMap;

    #[test]
    fn a_guest_line_is_one_line() {
        assert_eq!(super::one_line("plain\ttext"), "plain\ttext");
        assert_eq!(super::one_line("a\nb\rc\u{1b}[31m\u{85}"), "a\\nb\\rc\\u{1b}[31m\\u{85}");
    }

    #[test]
    fn rolled_back_counters_are_those_before_the_execution() {
        let before = BTreeMap::from([("a".to_string(), 2u32)]);
        let mut ids = IdAllocator::new("b1.".to_string(), before.clone());
        assert_eq!(ids.next("a"), "a#b1.3");
        assert_eq!(ids.next("a"), "a#b1.4");
        assert_eq!(ids.next("c"), "c#b1.1");
        assert_eq!(ids.counters, BTreeMap::from([("a".to_string(), 4), ("c".to_string(), 1)]));
        let (counters, undo) =
            IdAllocator { counters: ids.counters.clone(), undo: ids.undo.clone(), ..IdAllocator::default() }.split();
        assert_eq!(undo.apply(counters), before);
        assert_eq!(ids.rolled_back(), before);
    }
}
