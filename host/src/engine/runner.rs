//! The seam between the engine and whatever runs a task.

use super::context::TaskContext;
use crate::json::Json;
use crate::model::TaskDef;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Runs one task execution. The engine calls it once per attempt, from the
/// thread of the branch that runs the task; implementations must not share
/// mutable state between executions.
pub trait TaskRunner: Send + Sync {
    /// Run `task` with `input`. `ctx` carries the task's view of the channel and
    /// records its effects; it is handed back with the outcome.
    fn run(&self, task: &TaskDef, input: &Json, ctx: TaskContext) -> (TaskContext, Result<Json, TaskFailure>);
}

/// How a task execution failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The task returned a permanent error.
    Failed,
    /// The task returned a retryable error.
    Retryable,
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, ...).
    Trap,
    /// The wall-clock limit ran out.
    Timeout,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The memory limit was hit.
    Memory,
    /// `next-iteration` past `max_cycles`.
    CycleLimit,
    /// The task exceeded a bound on what it may ask of the host.
    HostBound,
    /// The host stopped the task (the grace period after an interrupt ran
    /// out); the task is queued again, not failed.
    Aborted,
    /// Nobody answered the task's feedback request in time: the run pauses;
    /// the task is queued again, not failed.
    Paused,
}

impl FailureKind {
    /// Its name in events and metrics.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Failed => "failed",
            FailureKind::Retryable => "retryable",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::Memory => "memory",
            FailureKind::CycleLimit => "cycle_limit",
            FailureKind::HostBound => "host_bound",
            FailureKind::Aborted => "aborted",
            FailureKind::Paused => "paused",
        }
    }

    /// True if the retry policy applies.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Retryable
                | FailureKind::Trap
                | FailureKind::Timeout
                | FailureKind::OutOfFuel
                | FailureKind::Memory
        )
    }
}

/// A failed task execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The message, naming the limit or carrying the guest's text.
    pub message: String,
}

impl TaskFailure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> TaskFailure {
        TaskFailure { kind, message: message.into() }
    }

    /// The bound that stopped the execution, when one did: the task's limit
    /// for a timeout, fuel, memory or cycles; for a host bound, the bound's
    /// key when the message names one (`max_...`).
    pub fn bound(&self) -> Option<String> {
        match self.kind {
            FailureKind::Timeout => Some("limits.timeout_ms".into()),
            FailureKind::OutOfFuel => Some("limits.fuel".into()),
            FailureKind::Memory => Some("limits.memory_mb".into()),
            FailureKind::CycleLimit => Some("max_cycles".into()),
            FailureKind::HostBound => {
                let at = self.message.find("max_")?;
                let key: String = self.message[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':' || *c == '.')
                    .collect();
                let key = key.trim_end_matches(['.', ':']).to_string();
                Some(key).filter(|k| k.len() > 4)
            }
            _ => None,
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FailureKind::Failed => "failed",
            FailureKind::Retryable => "failed (retryable)",
            FailureKind::Trap => "trapped",
            FailureKind::Timeout => "timed out",
            FailureKind::OutOfFuel => "ran out of fuel",
            FailureKind::Memory => "hit the memory limit",
            FailureKind::CycleLimit => "hit the cycle limit",
            FailureKind::HostBound => "exceeded a host bound",
            FailureKind::Aborted => "was stopped by the host",
            FailureKind::Paused => "waits for input",
        };
        write!(f, "{kind}: {}", self.message)
    }
}
