//! The loop of one queue: the whole run, or one branch of a parallel group.

use super::context::{HostBounds, IdAllocator, IdUndo, TaskContext, TaskInfo, result_key};
use super::runner::{FailureKind, TaskFailure};
use super::state::{Origin, RunState, Target, TaskSpec};
use super::{CheckpointMode, CheckpointRequest, EventKind, RunError, Shared, input, now_ms};
use crate::channel::Channel;
use crate::json::Json;
use crate::model::TaskDef;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How a frame's loop ended without error.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameEnd {
    /// The queue is empty.
    Drained,
    /// A task terminated the workflow.
    Terminated(String),
    /// The interrupt flag was set; the state is at a task boundary.
    Interrupted,
}

/// How one step ended.
pub(super) enum StepEnd {
    Continue,
    Terminate(String),
    /// A group was interrupted: it has been put back at the front of the queue.
    Interrupted,
}

/// What a completed execution asks the frame to do next.
pub(super) struct Completion {
    pub result: Json,
    pub next: Vec<TaskSpec>,
    pub skip_successors: bool,
    pub terminate: Option<String>,
    pub checkpoint: Option<CheckpointRequest>,
}

/// One queue being drained, with the channel its executions work on.
pub(crate) struct Frame<'s, 'a> {
    pub shared: &'s Shared<'a>,
    pub state: &'s mut RunState,
    pub channel: Arc<dyn Channel>,
    /// Prefix of dynamic ids inside a branch (`<member>.`), empty at the top.
    pub prefix: String,
    /// This frame stops with `MaxSteps` once `state.steps` reaches it.
    pub step_budget: u64,
    /// A checkpoint asked for by the last step, for the caller to write.
    pub pending_checkpoint: Option<CheckpointRequest>,
    /// Queued executions and their input bytes outside this frame (the
    /// parent's queue, for a branch): counted against the queue bounds.
    queue_base: (u64, u64),
    /// Parallel groups this frame runs inside (0 at the top level).
    pub depth: usize,
    /// At the top level, after a task failed for good: the state at the
    /// boundary before its last attempt (the task queued again, its cycle
    /// count and ids as before it), for a checkpoint owed by write-behind.
    pub before_failure: Option<Box<RunState>>,
    /// Where in the queue the execution running now was taken from.
    popped_at: usize,
}

impl<'s, 'a> Frame<'s, 'a> {
    pub fn new(
        shared: &'s Shared<'a>,
        state: &'s mut RunState,
        channel: Arc<dyn Channel>,
        prefix: String,
        step_budget: u64,
        queue_base: (u64, u64),
    ) -> Self {
        Frame {
            shared,
            state,
            channel,
            prefix,
            step_budget,
            pending_checkpoint: None,
            queue_base,
            depth: 0,
            before_failure: None,
            popped_at: 0,
        }
    }

    /// Executions queued (here and outside this frame) and their input bytes.
    pub fn queue_usage(&self) -> (u64, u64) {
        (self.queue_base.0 + self.state.queue.len() as u64, self.queue_base.1 + self.state.queue.input_bytes())
    }

    /// Fail if the queue grew past its bounds.
    fn check_queue(&self) -> Result<(), RunError> {
        let b = &self.shared.workflow.settings.bounds;
        let (tasks, bytes) = self.queue_usage();
        if tasks > b.max_queued_tasks {
            return Err(RunError::Bound {
                bound: "max_queued_tasks",
                limit: b.max_queued_tasks,
                detail: format!("the queue grew to {tasks} executions"),
            });
        }
        if bytes > b.max_queued_input_bytes {
            return Err(RunError::Bound {
                bound: "max_queued_input_bytes",
                limit: b.max_queued_input_bytes,
                detail: format!("queued executions hold {bytes} bytes of input"),
            });
        }
        Ok(())
    }

    /// Drain the queue; `after_step` runs after every completed step (the top
    /// level writes checkpoints there).
    pub fn run(
        &mut self,
        after_step: &mut dyn FnMut(&mut Frame) -> Result<(), RunError>,
    ) -> Result<FrameEnd, RunError> {
        loop {
            if self.state.queue.is_empty() {
                return Ok(FrameEnd::Drained);
            }
            // A branch goes on after an interrupt, so a group can finish within
            // the grace period; the host's stop (abort) still ends its tasks.
            if self.depth == 0 && self.shared.interrupt.load(Ordering::Relaxed) {
                return Ok(FrameEnd::Interrupted);
            }
            // A pause stops every branch at its boundary: what they would do
            // is thrown away when the group runs again after the answer.
            if self.shared.pausing.load(Ordering::Relaxed) {
                return Ok(FrameEnd::Interrupted);
            }
            if self.state.steps >= self.step_budget
                || self.shared.steps_done.load(Ordering::Relaxed) >= self.shared.max_steps
            {
                return Err(RunError::MaxSteps {
                    max_steps: self.shared.max_steps,
                    pending: self.state.pending_ids(),
                    checkpoint: None,
                });
            }
            let Some(spec) = self.pop_ready() else {
                return Ok(FrameEnd::Interrupted);
            };
            let end = match spec.target.clone() {
                Target::Task(task) => self.run_task(spec, &task)?,
                Target::Group(group) => self.run_group(spec, &group)?,
            };
            match end {
                StepEnd::Continue => after_step(self)?,
                StepEnd::Terminate(message) => {
                    after_step(self)?;
                    return Ok(FrameEnd::Terminated(message));
                }
                StepEnd::Interrupted => return Ok(FrameEnd::Interrupted),
            }
        }
    }

    /// The first execution whose back-off has passed; waits (without blocking
    /// ready executions, which are taken first) when every queued one is backing
    /// off. `None` if the interrupt flag is set while waiting.
    fn pop_ready(&mut self) -> Option<TaskSpec> {
        loop {
            let now = now_ms();
            if let Some(i) = self.state.queue.iter().position(|s| s.not_before_ms <= now) {
                self.popped_at = i;
                return self.state.queue.remove(i);
            }
            let wake = self.state.queue.iter().map(|s| s.not_before_ms).min().unwrap_or(now);
            std::thread::sleep(Duration::from_millis(wake.saturating_sub(now).clamp(1, 50)));
            if self.shared.interrupt.load(Ordering::Relaxed) {
                return None;
            }
        }
    }

    /// A checkpoint request at a task boundary, not asked by a task: it names
    /// the execution that completed last.
    pub fn boundary_request(&self, mode: CheckpointMode) -> CheckpointRequest {
        let task_id = self.state.last_completed.clone();
        let cycle_count = if task_id.is_some() { self.state.last_cycle } else { 0 };
        CheckpointRequest { task_id, cycle_count, elapsed_time: 0.0, mode, user_metadata: Json::null() }
    }

    /// The state at the boundary before `spec` ran (it is out of the queue,
    /// its cycle counted when `spec.attempt` is 0 (`new_count`: the count was
    /// created then), its ids made): `spec` back where it was taken from, the
    /// count and the ids undone.
    fn boundary_before(&self, spec: TaskSpec, undo: &IdUndo, new_count: bool) -> RunState {
        let mut state = self.state.clone();
        if spec.attempt == 0 {
            if new_count {
                state.cycle_counts.remove(&spec.cycle_key);
            } else if let Some(count) = state.cycle_counts.get_mut(&spec.cycle_key) {
                *count = count.saturating_sub(1);
            }
        }
        state.queue.insert(self.popped_at, spec);
        state.id_counters = undo.apply(std::mem::take(&mut state.id_counters));
        state
    }

    fn task_def(&self, task: &str) -> Result<&'s TaskDef, RunError> {
        let shared: &'s Shared<'a> = self.shared;
        shared.workflow.tasks.get(task).ok_or_else(|| {
            RunError::Inconsistent(format!("the queue names task '{task}', which the workflow does not declare"))
        })
    }

    fn run_task(&mut self, spec: TaskSpec, task: &str) -> Result<StepEnd, RunError> {
        let def = self.task_def(task)?;
        let (cycle_count, new_count) = {
            use std::collections::btree_map::Entry;
            let (count, new_count) = match self.state.cycle_counts.entry(spec.cycle_key.clone()) {
                Entry::Occupied(e) => (e.into_mut(), false),
                Entry::Vacant(e) => (e.insert(0), true),
            };
            if spec.attempt == 0 {
                *count = count.saturating_add(1);
            }
            ((*count).max(1), new_count)
        };
        let input = input::resolve(&def.inputs, spec.input.as_ref(), self.channel.as_ref(), &self.shared.run_input);
        let info = TaskInfo {
            task_id: spec.id.clone(),
            task_name: def.name.clone(),
            module: def.module.clone(),
            session_id: self.state.session_id.clone(),
            cycle_count,
            max_cycles: def.max_cycles,
            retry_count: spec.attempt,
            max_retries: def.retry.max_retries,
        };
        let ids = IdAllocator::new(self.prefix.clone(), std::mem::take(&mut self.state.id_counters));
        let bounds: HostBounds = self.shared.workflow.settings.bounds.clone();
        let mut ctx =
            TaskContext::new(info, spec.clone(), self.channel.clone(), self.shared.workflow.clone(), ids, bounds);
        ctx.set_queue_usage(self.queue_usage());
        ctx.set_checkpoint_refusal(self.shared.checkpoint_refusal());
        ctx.set_listener(self.shared.listener.clone());
        ctx.set_feedback(self.shared.feedback.clone());
        ctx.set_wait_stops(self.shared.wait_stops.clone());
        let started = Instant::now();
        tracing::debug!(task = %spec.id, attempt = spec.attempt, "task started");
        self.shared.listener.emit(self.state.queue.len(), || EventKind::TaskStarted {
            task_id: spec.id.clone(),
            task: def.name.clone(),
            module: def.module.clone(),
            attempt: spec.attempt,
            cycle: cycle_count,
            scope: self.prefix.clone(),
        });
        let (mut ctx, outcome) = self.shared.runner.run(def, &input, ctx);
        if let Some(request) = ctx.effects.paused.take() {
            // Nobody answered in time: the run stops at the next boundary
            // and checkpoints, waiting for this request.
            self.shared.listener.emit(self.state.queue.len(), || EventKind::WaitingForInput {
                task_id: spec.id.clone(),
                request: request.id.clone(),
                kind: request.kind.to_string(),
                prompt: request.prompt.clone(),
            });
            self.shared.paused.lock().unwrap_or_else(|e| e.into_inner()).push(request);
            self.shared.pausing.store(true, Ordering::SeqCst);
        }
        let outcome = match ctx.effects.failure.take() {
            Some(failure) => Err(failure),
            None => outcome,
        };
        // An aborted attempt runs again on resume: it must make the same ids.
        let (counters, undo) = ctx.take_ids().split();
        let aborted = matches!(&outcome, Err(f) if matches!(f.kind, FailureKind::Aborted | FailureKind::Paused));
        self.state.id_counters = if aborted { undo.apply(counters) } else { counters };
        let output = match outcome {
            Ok(output) => output,
            Err(mut failure) => {
                if failure.kind == FailureKind::Failed && failure.message.starts_with("invalid input for task") {
                    failure.message.push_str(&input::missing_note(&def.inputs, &input));
                }
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let again = (self.depth == 0 && !aborted).then(|| spec.clone());
                let end = self.fail_or_retry(spec, def, failure, ms);
                if let (Err(RunError::TaskFailed { .. }), Some(spec)) = (&end, again) {
                    self.before_failure = Some(Box::new(self.boundary_before(spec, &undo, new_count)));
                }
                return end;
            }
        };
        if let Some(message) = ctx.effects.cancel.take() {
            self.shared.listener.emit(self.state.queue.len(), || EventKind::TaskFailed {
                task_id: spec.id.clone(),
                attempt: spec.attempt,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                error: format!("canceled the workflow: {message}"),
                kind: "canceled",
                bound: None,
                retrying: false,
            });
            return Err(RunError::Cancelled { task_id: spec.id, message });
        }
        let effects = std::mem::take(&mut ctx.effects);
        let result = effects.result.unwrap_or(output);
        ctx.channel.set(&result_key(&spec.id), result.clone());
        if spec.id != def.name {
            ctx.channel.set(&result_key(&def.name), result.clone());
        }
        // Iteration results are kept for a window (`keep_iteration_results`):
        // the one `keep` iterations back leaves as this one arrives, so a
        // long loop holds a bounded channel.
        if let Origin::Iteration { cycle } = spec.origin {
            let keep = self.shared.workflow.settings.keep_iteration_results;
            if let Some(old) = u64::from(cycle).checked_sub(keep).filter(|&c| c >= 2) {
                ctx.channel.delete(&result_key(&format!("{}@{old}", spec.cycle_key)));
            }
        }
        let total = ctx.channel.size_bytes();
        if total > ctx.bounds().max_channel_bytes {
            let msg = format!(
                "with its result the channel would hold {total} bytes, over the bound max_channel_bytes = {} bytes",
                ctx.bounds().max_channel_bytes
            );
            self.shared.listener.emit(self.state.queue.len(), || EventKind::TaskFailed {
                task_id: spec.id.clone(),
                attempt: spec.attempt,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                error: msg.clone(),
                kind: FailureKind::HostBound.name(),
                bound: Some("max_channel_bytes".into()),
                retrying: false,
            });
            if self.depth == 0 {
                self.before_failure = Some(Box::new(self.boundary_before(spec.clone(), &undo, new_count)));
            }
            return Err(RunError::TaskFailed {
                task_id: spec.id,
                task: def.name.clone(),
                module: def.module.clone(),
                attempts: spec.attempt.saturating_add(1),
                failure: TaskFailure::new(FailureKind::HostBound, msg),
            });
        }
        ctx.channel.commit_into(self.channel.as_ref());
        for next in &effects.next {
            if let (Origin::Dynamic, Target::Task(t)) = (next.origin, &next.target) {
                self.state.dynamic_tasks.insert(next.id.clone(), t.clone());
            }
        }
        let checkpoint = effects.checkpoint.map(|user_metadata| CheckpointRequest {
            task_id: Some(spec.id.clone()),
            cycle_count,
            elapsed_time: super::seconds_since(started),
            mode: CheckpointMode::Deferred,
            user_metadata,
        });
        tracing::debug!(task = %spec.id, "task completed");
        self.shared.listener.emit(self.state.queue.len(), || EventKind::TaskFinished {
            task_id: spec.id.clone(),
            attempt: spec.attempt,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
        self.complete(
            &spec,
            Completion {
                result,
                next: effects.next,
                skip_successors: effects.goto || effects.iterating,
                terminate: effects.terminate,
                checkpoint,
            },
        )
    }

    fn fail_or_retry(
        &mut self,
        spec: TaskSpec,
        def: &TaskDef,
        failure: TaskFailure,
        duration_ms: f64,
    ) -> Result<StepEnd, RunError> {
        let retrying = failure.kind.is_retryable() && spec.attempt < def.retry.max_retries;
        let stopped = matches!(failure.kind, FailureKind::Aborted | FailureKind::Paused);
        if stopped {
            self.shared.listener.emit(self.state.queue.len(), || EventKind::TaskStopped { task_id: spec.id.clone() });
        } else {
            self.shared.listener.emit(self.state.queue.len(), || EventKind::TaskFailed {
                task_id: spec.id.clone(),
                attempt: spec.attempt,
                duration_ms,
                error: failure.to_string(),
                kind: failure.kind.name(),
                bound: failure.bound(),
                retrying,
            });
        }
        if stopped {
            // Not a failure: undo this attempt's cycle count and queue it again.
            if spec.attempt == 0
                && let Some(count) = self.state.cycle_counts.get_mut(&spec.cycle_key)
            {
                *count -= 1;
            }
            self.state.queue.push_front(spec);
            return Ok(StepEnd::Interrupted);
        }
        if retrying {
            let retry = spec.attempt.saturating_add(1);
            let mut delay = def.retry.base_delay_ms(retry) as f64;
            if def.retry.jitter {
                delay = (delay * (0.5 + rand::random::<f64>())).min(def.retry.max_ms as f64);
            }
            tracing::warn!(task = %spec.id, attempt = retry, delay_ms = delay as u64, error = %failure, "task failed; retrying");
            let retry_spec = TaskSpec {
                attempt: retry,
                not_before_ms: now_ms().saturating_add(delay as u64),
                last_error: Some(failure.to_string()),
                ..spec
            };
            self.state.queue.push_back(retry_spec);
            return Ok(StepEnd::Continue);
        }
        Err(RunError::TaskFailed {
            task_id: spec.id,
            task: def.name.clone(),
            module: def.module.clone(),
            attempts: spec.attempt.saturating_add(1),
            failure,
        })
    }

    /// Apply a completed execution: result, completion, step, queue, checkpoint.
    pub(super) fn complete(&mut self, spec: &TaskSpec, c: Completion) -> Result<StepEnd, RunError> {
        self.state.complete_execution(&spec.id, spec.origin);
        self.shared.steps_done.fetch_add(1, Ordering::Relaxed);
        self.state.last_cycle = self.state.cycle_counts.get(&spec.cycle_key).copied().unwrap_or(1);
        self.state.steps += 1;
        self.state.last_result = Some(c.result);
        self.state.queue.extend(c.next);
        if c.checkpoint.is_some() {
            self.pending_checkpoint = c.checkpoint;
        }
        if let Some(message) = c.terminate {
            return Ok(StepEnd::Terminate(message));
        }
        if !c.skip_successors
            && let Some(node) = &spec.node
        {
            let workflow = &self.shared.workflow;
            for successor in workflow.graph.successors(node) {
                self.state.queue.push_back(TaskSpec::for_node(workflow, successor, None));
            }
        }
        self.check_queue()?;
        Ok(StepEnd::Continue)
    }
}
