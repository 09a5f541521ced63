//! Limits of one task execution (enforced by the sandbox: see
//! `sandbox/limits.rs`) and bounds on what a run may make the host hold
//! (enforced by the engine when the thing grows: see `engine/context.rs` and
//! `engine/frame.rs`). Every bound has a default here, a key in
//! `[workflow.bounds]` and a line in docs/security.md.

/// Sandbox limits of one task execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory of the instance, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock budget of one execution, in milliseconds (also while the guest
    /// waits in a host call).
    pub timeout_ms: u64,
    /// Optional fuel budget (deterministic instruction limit).
    pub fuel: Option<u64>,
}

/// Largest `memory_mb` a task may set: a wasm32 memory holds at most 4 GiB.
pub const MAX_MEMORY_MB: u64 = 4096;

/// Longest `timeout_ms` and back-off delay a workflow may set: one day.
pub const MAX_DURATION_MS: u64 = 86_400_000;

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 256 << 20, timeout_ms: 60_000, fuel: None }
    }
}

/// Bounds on what a guest can make the host hold or do. Exceeding one fails the
/// task (or the run) with an error naming the bound; it is checked when the
/// thing grows, not afterwards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostBounds {
    /// Largest channel value, result, input or metadata, in bytes.
    pub max_value_bytes: u64,
    /// Longest channel key, in bytes.
    pub max_key_bytes: u64,
    /// Most `next-task` calls in one execution.
    pub max_next_tasks: u64,
    /// Longest log line kept, in bytes (longer lines are cut, with a marker).
    pub max_log_bytes: u64,
    /// Most bytes (keys and values) one execution may write to the channel.
    pub max_written_bytes: u64,
    /// Largest total size of the channel (keys, values and
    /// [`crate::channel::ENTRY_OVERHEAD`] per key), in bytes.
    pub max_channel_bytes: u64,
    /// Most executions waiting in the queue.
    pub max_queued_tasks: u64,
    /// Most bytes of explicit input held by queued executions.
    pub max_queued_input_bytes: u64,
    /// Most checkpoints one run (one `run` or `resume` process) writes.
    pub max_checkpoints: u64,
    /// Most bytes of checkpoint files one run writes.
    pub max_checkpoint_bytes: u64,
    /// Largest module file read, in bytes.
    pub max_module_bytes: u64,
}

impl Default for HostBounds {
    fn default() -> Self {
        HostBounds {
            max_value_bytes: 128 << 20,
            max_key_bytes: 4096,
            max_next_tasks: 10_000,
            max_log_bytes: 64 << 10,
            max_written_bytes: 512 << 20,
            max_channel_bytes: 1 << 30,
            max_queued_tasks: 100_000,
            max_queued_input_bytes: 256 << 20,
            max_checkpoints: 10_000,
            max_checkpoint_bytes: 64 << 30,
            max_module_bytes: crate::module_store::DEFAULT_MAX_MODULE_BYTES,
        }
    }
}

impl HostBounds {
    /// Every bound with its `[workflow.bounds]` key, in documentation order.
    pub fn named(&self) -> [(&'static str, u64); 11] {
        [
            ("max_value_bytes", self.max_value_bytes),
            ("max_key_bytes", self.max_key_bytes),
            ("max_next_tasks", self.max_next_tasks),
            ("max_log_bytes", self.max_log_bytes),
            ("max_written_bytes", self.max_written_bytes),
            ("max_channel_bytes", self.max_channel_bytes),
            ("max_queued_tasks", self.max_queued_tasks),
            ("max_queued_input_bytes", self.max_queued_input_bytes),
            ("max_checkpoints", self.max_checkpoints),
            ("max_checkpoint_bytes", self.max_checkpoint_bytes),
            ("max_module_bytes", self.max_module_bytes),
        ]
    }
}

/// Largest workflow file read, in bytes.
pub const MAX_WORKFLOW_FILE_BYTES: u64 = 16 << 20;
