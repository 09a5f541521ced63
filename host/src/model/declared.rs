//! What a component declares about the workflow it belongs to (WIT 0.1.3,
//! the `workflow` export of the `task-app` world): a flow, a name, a step
//! bound and per-task settings. The sandbox reads it once when it loads the
//! component and checks it against the component's own task list
//! ([`DeclaredWorkflow::check`]); the resolver layers a workflow file over it.
//!
//! Invariant: a declaration holds no capability. Directories, environment,
//! network and stdio are granted only by the workflow file or the command
//! line, so a component can never grant itself anything.

use std::collections::BTreeMap;

/// The longest flow a component may declare, in bytes.
pub const MAX_DECLARED_FLOW_BYTES: usize = 64 << 10;
/// The longest workflow name a component may declare, in bytes.
pub const MAX_DECLARED_NAME_BYTES: usize = 128;

/// Settings a task declares in code: defaults under the workflow file's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeclaredSettings {
    /// Retries after a retryable failure.
    pub max_retries: Option<u32>,
    /// Runs `next_iteration` may reach.
    pub max_cycles: Option<u32>,
    /// Time limit of one attempt, ms.
    pub timeout_ms: Option<u64>,
    /// Memory limit, MiB.
    pub memory_mb: Option<u64>,
    /// Fuel budget of one attempt.
    pub fuel: Option<u64>,
}

/// A component's declared workflow. Empty for a component without the
/// `workflow` export (built against WIT 0.1.2 or older).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredWorkflow {
    /// The workflow's name.
    pub name: Option<String>,
    /// The flow, in Graflow's operators (not parsed yet).
    pub flow: Option<String>,
    /// The most task executions of one run.
    pub max_steps: Option<u64>,
    /// Settings by task name; every key is a task the component exports.
    pub tasks: BTreeMap<String, DeclaredSettings>,
}

impl DeclaredWorkflow {
    /// Check a declaration as the component returned it against the tasks
    /// it exports: bounded sizes, settings only for its own tasks and at
    /// most once each. The error says what is wrong, for the load error.
    pub fn check(
        name: Option<String>,
        flow: Option<String>,
        max_steps: Option<u64>,
        settings: Vec<(String, DeclaredSettings)>,
        exported: &[super::TaskDecl],
    ) -> Result<DeclaredWorkflow, String> {
        if let Some(f) = &flow
            && f.len() > MAX_DECLARED_FLOW_BYTES
        {
            return Err(format!(
                "its `workflow` export declares a flow of {} bytes, over the bound of {MAX_DECLARED_FLOW_BYTES} bytes",
                f.len()
            ));
        }
        if let Some(n) = &name {
            if n.len() > MAX_DECLARED_NAME_BYTES {
                return Err(format!(
                    "its `workflow` export declares a name of {} bytes, over the bound of {MAX_DECLARED_NAME_BYTES} bytes",
                    n.len()
                ));
            }
            if n.trim().is_empty() || n.chars().any(char::is_control) {
                return Err(format!("its `workflow` export declares the name {n:?}: give a non-empty name without control characters"));
            }
        }
        let mut tasks = BTreeMap::new();
        for (task, s) in settings {
            if !exported.iter().any(|d| d.name == task) {
                return Err(format!(
                    "its `workflow` export gives settings for task '{}', which its `tasks` export does not list",
                    task.escape_debug()
                ));
            }
            if tasks.insert(task.clone(), s).is_some() {
                return Err(format!("its `workflow` export gives settings for task '{task}' twice"));
            }
        }
        Ok(DeclaredWorkflow { name, flow, max_steps, tasks })
    }
}
