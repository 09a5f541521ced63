//! The workflow file as the user writes it (TOML): serde types only. Modes
//! and kinds are enums, so a misspelt one is refused by the parser with its
//! line, column and the accepted values. `resolve.rs` validates the rest.

use super::Stdio;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    pub(super) workflow: WorkflowSection,
    #[serde(default)]
    pub(super) modules: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub(super) tasks: BTreeMap<String, TaskSection>,
    #[serde(default)]
    pub(super) groups: BTreeMap<String, GroupSection>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkflowSection {
    pub(super) name: Option<String>,
    /// None: a module declares the flow (its `workflow` export).
    pub(super) flow: Option<String>,
    pub(super) start: Option<String>,
    pub(super) max_steps: Option<u64>,
    pub(super) parallelism: Option<usize>,
    /// Retention: the newest N checkpoints of a run are kept.
    pub(super) keep_checkpoints: Option<u64>,
    /// The newest N iteration results stay in the channel.
    pub(super) keep_iteration_results: Option<u64>,
    #[serde(default)]
    pub(super) bounds: BoundsSection,
    pub(super) max_cycles: Option<u32>,
    pub(super) max_retries: Option<u32>,
    pub(super) backoff: Option<BackoffSection>,
    pub(super) limits: Option<LimitsSection>,
    /// The default outbound grant, the attached headers and the bounds.
    pub(super) http: Option<HttpSection>,
    /// The language-model provider.
    pub(super) llm: Option<crate::outbound::LlmProvider>,
}

/// `[workflow.http]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpSection {
    /// Origins every task may reach unless it says otherwise.
    #[serde(default)]
    pub(super) allow: Vec<String>,
    /// Inward networks a granted name may resolve to.
    #[serde(default)]
    pub(super) allow_networks: Vec<String>,
    /// Headers the host attaches, each to one origin.
    #[serde(default)]
    pub(super) headers: Vec<crate::outbound::policy::HeaderWire>,
    pub(super) max_response_bytes: Option<u64>,
    pub(super) max_request_bytes: Option<u64>,
    pub(super) max_requests: Option<u32>,
    pub(super) max_connections: Option<u64>,
    pub(super) max_llm_tokens_per_execution: Option<u64>,
    pub(super) max_llm_tokens: Option<u64>,
}

/// `http = { allow = [...] }` of a task: replaces the workflow's default.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskHttpSection {
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default)]
    pub(super) allow_networks: Vec<String>,
}

impl WorkflowSection {
    pub(super) fn defaults(&self) -> TaskSettings {
        TaskSettings {
            max_cycles: self.max_cycles,
            max_retries: self.max_retries,
            backoff: self.backoff.clone(),
            limits: self.limits.clone(),
        }
    }
}

/// Settings a task may set and the workflow may default.
#[derive(Default, Clone)]
pub(super) struct TaskSettings {
    pub(super) max_cycles: Option<u32>,
    pub(super) max_retries: Option<u32>,
    pub(super) backoff: Option<BackoffSection>,
    pub(super) limits: Option<LimitsSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskSection {
    pub(super) module: Option<String>,
    pub(super) export: Option<String>,
    pub(super) inputs: Option<Vec<String>>,
    #[serde(default)]
    pub(super) dirs: Vec<DirSection>,
    #[serde(default)]
    pub(super) env: Vec<String>,
    pub(super) stdio: Option<Stdio>,
    /// Outbound HTTP grant (replaces `[workflow.http].allow`).
    pub(super) http: Option<TaskHttpSection>,
    #[serde(default)]
    pub(super) reuse_instance: bool,
    pub(super) max_cycles: Option<u32>,
    pub(super) max_retries: Option<u32>,
    pub(super) backoff: Option<BackoffSection>,
    pub(super) limits: Option<LimitsSection>,
}

impl TaskSection {
    pub(super) fn settings(&self) -> TaskSettings {
        TaskSettings {
            max_cycles: self.max_cycles,
            max_retries: self.max_retries,
            backoff: self.backoff.clone(),
            limits: self.limits.clone(),
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct DirSection {
    pub(super) host: PathBuf,
    pub(super) guest: String,
    pub(super) mode: Option<DirMode>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct BoundsSection {
    pub(super) max_value_bytes: Option<u64>,
    pub(super) max_key_bytes: Option<u64>,
    pub(super) max_next_tasks: Option<u64>,
    pub(super) max_log_bytes: Option<u64>,
    pub(super) max_written_bytes: Option<u64>,
    pub(super) max_channel_bytes: Option<u64>,
    pub(super) max_queued_tasks: Option<u64>,
    pub(super) max_queued_input_bytes: Option<u64>,
    pub(super) max_checkpoints: Option<u64>,
    pub(super) max_checkpoint_bytes: Option<u64>,
    pub(super) max_module_bytes: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct BackoffSection {
    pub(super) initial_ms: Option<u64>,
    pub(super) factor: Option<f64>,
    pub(super) max_ms: Option<u64>,
    pub(super) jitter: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsSection {
    pub(super) memory_mb: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) fuel: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupSection {
    pub(super) members: Option<Vec<String>>,
    pub(super) policy: Option<PolicyName>,
    pub(super) min_success: Option<u32>,
    pub(super) critical: Option<Vec<String>>,
}

/// `mode` of a granted directory.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub(super) enum DirMode {
    /// Read-only (the default).
    #[default]
    Ro,
    /// Read-write.
    Rw,
}

/// `policy` of a parallel group.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub(super) enum PolicyName {
    /// Any failed member fails the group.
    #[default]
    Strict,
    /// The group never fails.
    BestEffort,
    /// At least `min_success` members must succeed.
    AtLeastN,
    /// The members listed in `critical` must succeed.
    Critical,
}
