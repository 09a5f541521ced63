//! The run's events: one stream, from the engine (and the tasks' log lines,
//! from the sandbox), to whatever listens: the progress display, the journal
//! kept beside the checkpoints, a report. With no listener, nothing is built.

use serde::Serialize;
use std::sync::Arc;

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// An attempt of an execution started.
    TaskStarted {
        /// Execution id.
        task_id: String,
        /// Declared task.
        task: String,
        /// Its module.
        module: String,
        /// 0 for the first attempt.
        attempt: u32,
        /// The cycle count of this execution (1 for the first).
        cycle: u32,
        /// The parallel branch it runs in (the branch's prefix, `<member>.`
        /// nested as `<outer>.<inner>.`); empty outside any group.
        #[serde(skip_serializing_if = "String::is_empty")]
        scope: String,
    },
    /// An execution completed.
    TaskFinished {
        /// Execution id.
        task_id: String,
        /// 0 for the first attempt.
        attempt: u32,
        /// Milliseconds the attempt ran.
        duration_ms: f64,
    },
    /// An attempt failed.
    TaskFailed {
        /// Execution id.
        task_id: String,
        /// 0 for the first attempt.
        attempt: u32,
        /// Milliseconds the attempt ran.
        duration_ms: f64,
        /// The failure.
        error: String,
        /// Its kind (`failed`, `retryable`, `trap`, `timeout`, `out_of_fuel`,
        /// `memory`, `cycle_limit`, `host_bound`, `canceled`).
        kind: &'static str,
        /// The bound that stopped it, when one did (`limits.timeout_ms`,
        /// `limits.fuel`, `limits.memory_mb`, `max_cycles`, or the host bound
        /// it names).
        #[serde(skip_serializing_if = "Option::is_none")]
        bound: Option<String>,
        /// Whether it is retried.
        retrying: bool,
    },
    /// An attempt was stopped by the host (interrupt grace period) and queued again.
    TaskStopped {
        /// Execution id.
        task_id: String,
    },
    /// A task asked a person and nobody answered in time: the run pauses.
    WaitingForInput {
        /// Execution id.
        task_id: String,
        /// The feedback request.
        request: String,
        /// Its kind.
        kind: String,
        /// Its prompt.
        prompt: String,
    },
    /// A parallel group started its branches.
    GroupStarted {
        /// The group.
        group: String,
        /// Its execution id.
        task_id: String,
        /// Its members.
        members: Vec<String>,
        /// The branch the group itself runs in (see `TaskStarted::scope`).
        #[serde(skip_serializing_if = "String::is_empty")]
        scope: String,
    },
    /// A branch of a group started.
    BranchStarted {
        /// The group's execution id.
        group_id: String,
        /// The member the branch starts from.
        member: String,
        /// The branch's prefix (what its executions carry as `scope`).
        scope: String,
    },
    /// A branch of a group ended.
    BranchFinished {
        /// The group's execution id.
        group_id: String,
        /// The member.
        member: String,
        /// The branch's prefix.
        scope: String,
        /// Why it failed, if it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A group ended (its policy judged, its branches merged or not).
    GroupFinished {
        /// Its execution id.
        task_id: String,
        /// Why it failed, if it did (`interrupted` when the run stopped in it).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A task waited for a person's answer (`feedback.request`), and the
    /// wait ended.
    FeedbackWaited {
        /// Execution id.
        task_id: String,
        /// The feedback request.
        request: String,
        /// Its kind.
        kind: String,
        /// Milliseconds waited.
        waited_ms: f64,
        /// `answered`, `unanswered` (the run pauses) or `error`.
        outcome: &'static str,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// How to name it to `resume`.
        id: String,
        /// Why.
        mode: &'static str,
        /// The execution it follows.
        after: Option<String>,
        /// Bytes written.
        bytes: u64,
        /// Milliseconds the write took.
        duration_ms: f64,
    },
    /// An outbound request of a task (through the gate), once it ended.
    /// Never carries a header, a body or the query string.
    Request {
        /// Execution id.
        task_id: String,
        /// Its module.
        module: String,
        /// `http` (a request the task made) or `llm` (a model call).
        kind: &'static str,
        /// `GET`, `POST`, ...
        method: String,
        /// `scheme://host[:port]`.
        origin: String,
        /// The path, without the query.
        path: String,
        /// The response status, if a response came.
        status: Option<u16>,
        /// Request body bytes sent.
        sent_bytes: u64,
        /// Response body bytes received.
        received_bytes: u64,
        /// Milliseconds from the request to the end of its body.
        duration_ms: f64,
        /// Why it failed, if it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The model that answered (model calls).
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Tokens used (model calls).
        #[serde(skip_serializing_if = "Option::is_none")]
        tokens: Option<u64>,
    },
    /// A line a task logged (or printed, when its output is captured).
    Log {
        /// Execution id.
        task_id: String,
        /// Its module.
        module: String,
        /// `trace` to `error`.
        level: &'static str,
        /// The line (cut to `max_log_bytes`).
        line: String,
    },
}

/// A request's outcome as text: why it failed, else its status.
pub fn request_outcome(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (_, Some(e)) => e.to_string(),
        (Some(s), None) => s.to_string(),
        (None, None) => String::new(),
    }
}

/// One event and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Queued executions at that moment (of the queue the event came from).
    pub queued: usize,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Receives a run's events, from the run's threads.
pub trait RunListener: Send + Sync {
    /// One event.
    fn event(&self, event: &Event);

    /// The trace context work done for execution `task_id` continues (a
    /// dispatch to a worker, an outgoing request), if this listener traces
    /// the run.
    fn trace_context(&self, _task_id: &str) -> Option<super::TraceParent> {
        None
    }
}

/// A listener, or none; cheap to clone.
#[derive(Clone, Default)]
pub struct Listener(pub Option<Arc<dyn RunListener>>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Listener(set)" } else { "Listener(none)" })
    }
}

impl Listener {
    /// Send the event `make` builds, if anyone listens.
    pub fn emit(&self, queued: usize, make: impl FnOnce() -> EventKind) {
        if let Some(l) = &self.0 {
            l.event(&Event { at_ms: super::now_ms(), queued, kind: make() });
        }
    }

    /// True if someone listens.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// See [`RunListener::trace_context`].
    pub fn trace_context(&self, task_id: &str) -> Option<super::TraceParent> {
        self.0.as_ref()?.trace_context(task_id)
    }
}

/// Sends every event to several listeners.
pub struct Fanout(pub Vec<Arc<dyn RunListener>>);

impl RunListener for Fanout {
    fn event(&self, event: &Event) {
        for l in &self.0 {
            l.event(event);
        }
    }

    fn trace_context(&self, task_id: &str) -> Option<super::TraceParent> {
        self.0.iter().find_map(|l| l.trace_context(task_id))
    }
}
