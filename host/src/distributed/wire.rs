//! What travels through Redis between a coordinator and its workers: a
//! [`Dispatch`] (one task execution to run) and a [`Completion`] (what it did).
//!
//! Both are JSON. Everything read from Redis is untrusted: it is parsed into
//! these types (size-bounded, JSON values checked again), and the coordinator
//! replays a completion's effects through the same checks a local execution
//! goes through ([`super::coordinator`]), so a worker cannot make the engine
//! hold more than a local task could.

use crate::channel::PendingWrite;
use crate::engine::{ControlCall, HostBounds, TaskFailure, TaskInfo, TaskSpec};
use crate::json::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of the wire format; a worker refuses other versions with a
/// completion that names both.
pub const WIRE_VERSION: u32 = 1;

/// One task execution for a worker to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dispatch {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The run.
    pub session: String,
    /// The coordinator process that sent it (a new one after every resume):
    /// a dispatch of an earlier coordinator of the same run is skipped.
    pub epoch: String,
    /// Unique within the run: the completion names it.
    pub dispatch: String,
    /// BLAKE3 (hex) of the workflow blob (`workflow:<digest>`).
    pub workflow: String,
    /// BLAKE3 (hex) of the workflow's outbound policy (`outbound:<digest>`,
    /// JSON), when it grants any task the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<String>,
    /// The task (a key of the workflow's tasks).
    pub task: String,
    /// The input the task receives.
    pub input: Json,
    /// About the execution.
    pub info: TaskInfo,
    /// The execution.
    pub spec: TaskSpec,
    /// Dynamic-id prefix inside a parallel branch.
    pub id_prefix: String,
    /// Dynamic-id counters when the execution starts.
    pub id_counters: BTreeMap<String, u32>,
    /// The bounds the execution runs under.
    pub bounds: HostBounds,
    /// Executions queued in the run and their input bytes.
    pub queue_usage: (u64, u64),
    /// Why `request-checkpoint` would be refused.
    pub checkpoint_refusal: Option<String>,
    /// The channel as this execution sees it: the root channel in Redis with
    /// these changes (the writes of the enclosing parallel branches) on top.
    pub view: BTreeMap<String, Option<Json>>,
    /// The size of that view, in `entry_bytes` (for `max_channel_bytes`).
    pub view_bytes: u64,
    /// The coordinator's attempt span (W3C `traceparent`), when the run is
    /// traced: the worker's span is its child. A malformed value is read as
    /// none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::engine::TraceParent::deserialize_lenient"
    )]
    pub traceparent: Option<crate::engine::TraceParent>,
}

/// What one execution did, for the coordinator to apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completion {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The [`Dispatch::dispatch`] it answers.
    pub dispatch: String,
    /// The worker that ran it.
    pub worker: String,
    /// The task's output, or how it failed.
    pub outcome: Result<Json, TaskFailure>,
    /// Its channel writes (kept apart until the coordinator commits them).
    pub writes: Vec<(String, PendingWrite)>,
    /// Its `next-task` / `next-iteration` calls, in order.
    pub calls: Vec<ControlCall>,
    /// `set-result`.
    pub result: Option<Json>,
    /// `terminate-workflow`.
    pub terminate: Option<String>,
    /// `cancel-workflow`.
    pub cancel: Option<String>,
    /// `request-checkpoint` metadata.
    pub checkpoint: Option<Json>,
    /// A failure the worker's host decided (a bound, the cycle limit).
    pub failure: Option<TaskFailure>,
    /// Log lines (level, line), in order.
    pub logs: Vec<(String, String)>,
    /// The feedback request nobody answered in time: the run pauses on it.
    #[serde(default)]
    pub paused: Option<crate::feedback::FeedbackRequest>,
}

impl Completion {
    /// A completion that only carries a failure (the task did not run).
    pub fn failed(dispatch: &str, worker: &str, failure: TaskFailure) -> Completion {
        Completion {
            v: WIRE_VERSION,
            dispatch: dispatch.to_string(),
            worker: worker.to_string(),
            outcome: Err(failure),
            writes: Vec::new(),
            calls: Vec::new(),
            result: None,
            terminate: None,
            cancel: None,
            checkpoint: None,
            failure: None,
            logs: Vec::new(),
            paused: None,
        }
    }
}

/// Why a message from Redis was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Larger than the bound.
    #[error("a {what} of {len} bytes, over the bound of {max} bytes")]
    TooLarge {
        /// Dispatch or completion.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The bound.
        max: u64,
    },
    /// Not the expected JSON.
    #[error("a {what} that cannot be read: {source}")]
    Malformed {
        /// Dispatch or completion.
        what: &'static str,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// Another wire version.
    #[error("a {what} of wire version {found}; this graflow-host speaks version {WIRE_VERSION}")]
    Version {
        /// Dispatch or completion.
        what: &'static str,
        /// Its version.
        found: u32,
    },
}

/// The largest message sent or read: Redis's own bound on one string
/// (`proto-max-bulk-len`, 512 MiB by default), less room for the rest of the
/// command. A task whose dispatch or completion would be larger fails with an
/// error naming this bound.
pub const MAX_MESSAGE_BYTES: u64 = (512 << 20) - (64 << 10);

/// Encode a message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // The wire types hold strings, numbers, maps and `Json` (serialised as
    // its text): serde_json cannot fail on them.
    serde_json::to_vec(message).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() as u64 > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge { what, len: bytes.len(), max: MAX_MESSAGE_BYTES });
    }
    serde_json::from_slice(bytes).map_err(|source| WireError::Malformed { what, source })
}

/// Read a dispatch.
pub fn decode_dispatch(bytes: &[u8]) -> Result<Dispatch, WireError> {
    let d: Dispatch = decode("dispatch", bytes)?;
    if d.v != WIRE_VERSION {
        return Err(WireError::Version { what: "dispatch", found: d.v });
    }
    Ok(d)
}

/// Read a completion.
pub fn decode_completion(bytes: &[u8]) -> Result<Completion, WireError> {
    let c: Completion = decode("completion", bytes)?;
    if c.v != WIRE_VERSION {
        return Err(WireError::Version { what: "completion", found: c.v });
    }
    Ok(c)
}
