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
    ///
    /// `settings` name each task by its index in `exported` (WIT 0.1.3
    /// `task-settings.task`).
    pub fn check(
        name: Option<String>,
        flow: Option<String>,
        max_steps: Option<u64>,
        settings: Vec<(u32, DeclaredSettings)>,
        exported: &[super::TaskDecl],
    ) -> Result<DeclaredWorkflow, String> {
        if settings.len() > exported.len() {
            return Err(format!(
                "its `workflow` export gives {} task settings for the {} tasks its `tasks` export lists",
                settings.len(),
                exported.len()
            ));
        }
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
                return Err(format!(
                    "its `workflow` export declares the name {n:?}: give a non-empty name without control characters"
                ));
            }
        }
        if max_steps == Some(0) {
            return Err("its `workflow` export declares max_steps = 0: must be at least 1".into());
        }
        let mut tasks = BTreeMap::new();
        for (index, s) in settings {
            let Some(decl) = usize::try_from(index).ok().and_then(|i| exported.get(i)) else {
                return Err(format!(
                    "its `workflow` export gives settings for task #{index}, but its `tasks` export lists {} tasks (#0 to #{})",
                    exported.len(),
                    exported.len().saturating_sub(1)
                ));
            };
            let task = decl.name.clone();
            let bad = |what: &str, rule: &str| {
                Err(format!("its `workflow` export declares {what} for task '{}': {rule}", task.escape_debug()))
            };
            if s.max_cycles == Some(0) {
                return bad("max_cycles = 0", "must be at least 1 (max_cycles = N allows N runs)");
            }
            if let Some(mb) = s.memory_mb.filter(|m| *m == 0 || *m > super::MAX_MEMORY_MB) {
                return bad(&format!("memory_mb = {mb}"), &format!("must be between 1 and {}", super::MAX_MEMORY_MB));
            }
            if let Some(ms) = s.timeout_ms.filter(|t| *t == 0 || *t > super::MAX_DURATION_MS) {
                return bad(
                    &format!("timeout_ms = {ms}"),
                    &format!("must be between 1 and {}", super::MAX_DURATION_MS),
                );
            }
            if tasks.insert(task.clone(), s).is_some() {
                return Err(format!("its `workflow` export gives settings for task '{}' twice", task.escape_debug()));
            }
        }
        Ok(DeclaredWorkflow { name, flow, max_steps, tasks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModuleExports, ModuleInfo, ModuleLoadError, TaskDecl, WorkflowFile};
    use std::path::Path;

    fn decls(names: &[&str]) -> Vec<TaskDecl> {
        names.iter().map(|n| TaskDecl { name: n.to_string(), inputs: vec![], description: String::new() }).collect()
    }

    /// Every module exports `a`, `b`, `c` and declares `declared`.
    struct Declaring(DeclaredWorkflow);

    impl ModuleExports for Declaring {
        fn load(&mut self, _: &str, _: &Path, _: u64) -> Result<ModuleInfo, ModuleLoadError> {
            Ok(ModuleInfo {
                sha256: crate::digest::Sha256::of(b""),
                size: 0,
                tasks: decls(&["a", "b", "c"]),
                workflow: self.0.clone(),
            })
        }
    }

    fn declared() -> DeclaredWorkflow {
        let settings = vec![
            (0, DeclaredSettings { max_retries: Some(3), timeout_ms: Some(500), ..Default::default() }),
            (1, DeclaredSettings { max_cycles: Some(4), memory_mb: Some(32), ..Default::default() }),
        ];
        DeclaredWorkflow::check(
            Some("code".into()),
            Some("a >> b".into()),
            Some(77),
            settings,
            &decls(&["a", "b", "c"]),
        )
        .unwrap()
    }

    fn resolve(toml: &str) -> Result<crate::model::Workflow, crate::model::LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workflow.toml");
        std::fs::write(&path, format!("{toml}\n[modules]\nm = \"m.wasm\"\n")).unwrap();
        WorkflowFile::read(&path)?.resolve(&mut Declaring(declared()))
    }

    #[test]
    fn the_file_wins_wherever_it_says_something() {
        // Nothing in the file: the code's flow, name, steps and settings.
        let w = resolve("").unwrap();
        assert_eq!((w.flow.as_str(), w.name.as_str(), w.settings.max_steps), ("a >> b", "code", 77));
        assert_eq!((w.tasks["a"].retry.max_retries, w.tasks["a"].limits.timeout_ms), (3, 500));
        assert_eq!((w.tasks["b"].max_cycles, w.tasks["b"].limits.memory_bytes), (4, 32 << 20));
        assert!(w.tasks.contains_key("c"), "the declaring module's other tasks are next_task targets");
        // A [workflow] default beats the code; a task table beats both.
        let w = resolve("[workflow]\nmax_retries = 1\n[tasks.a]\nlimits = { timeout_ms = 900 }\n").unwrap();
        assert_eq!((w.tasks["a"].retry.max_retries, w.tasks["a"].limits.timeout_ms), (1, 900));
        assert_eq!(w.tasks["b"].max_cycles, 4, "untouched by the file");
        // The file's flow, name and steps.
        let w = resolve("[workflow]\nname = \"file\"\nflow = \"b >> a\"\nmax_steps = 5\n").unwrap();
        assert_eq!((w.flow.as_str(), w.name.as_str(), w.settings.max_steps), ("b >> a", "file", 5));
        assert!(!w.tasks.contains_key("c"), "a file's flow reaches only what the file declares");
        assert_eq!(w.tasks["a"].retry.max_retries, 3, "code settings follow the export");
    }

    #[test]
    fn a_declared_flow_that_does_not_parse_names_the_module() {
        let bad = DeclaredWorkflow { flow: Some("a >> >> b".into()), ..declared() };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workflow.toml");
        std::fs::write(&path, "[modules]\nm = \"m.wasm\"\n").unwrap();
        let e = WorkflowFile::read(&path).unwrap().resolve(&mut Declaring(bad)).unwrap_err().to_string();
        assert!(e.contains("the flow module 'm' declares:"), "{e}");
    }

    #[test]
    fn declarations_are_checked_against_the_components_own_tasks_and_bounds() {
        let tasks = decls(&["a"]);
        let one = |s: DeclaredSettings| vec![(0, s)];
        let check = |flow: Option<String>, name: Option<String>, steps, s| {
            DeclaredWorkflow::check(name, flow, steps, s, &tasks)
        };
        assert!(check(None, None, None, vec![]).is_ok());
        let e = check(None, None, None, vec![(1, DeclaredSettings::default())]).unwrap_err();
        assert!(e.contains("task #1, but its `tasks` export lists 1 tasks"), "{e}");
        let e = check(None, None, None, vec![(u32::MAX, DeclaredSettings::default())]).unwrap_err();
        assert!(e.contains("#4294967295"), "{e}");
        let twice = vec![(0, DeclaredSettings::default()); 2];
        assert!(check(None, None, None, twice).unwrap_err().contains("2 task settings for the 1 tasks"));
        let tasks2 = decls(&["a", "b"]);
        let twice = vec![(0, DeclaredSettings::default()); 2];
        assert!(DeclaredWorkflow::check(None, None, None, twice, &tasks2).unwrap_err().contains("task 'a' twice"));
        let e = check(Some("a".repeat(MAX_DECLARED_FLOW_BYTES + 1)), None, None, vec![]).unwrap_err();
        assert!(e.contains("65536 bytes"), "{e}");
        assert!(check(None, Some("n".repeat(MAX_DECLARED_NAME_BYTES + 1)), None, vec![]).is_err());
        assert!(check(None, Some("a\u{1b}[2J".into()), None, vec![]).is_err());
        assert!(check(None, None, Some(0), vec![]).unwrap_err().contains("max_steps = 0"));
        let zero_cycles = DeclaredSettings { max_cycles: Some(0), ..Default::default() };
        assert!(check(None, None, None, one(zero_cycles)).unwrap_err().contains("max_cycles = 0 for task 'a'"));
        let huge = DeclaredSettings { memory_mb: Some(5000), ..Default::default() };
        assert!(check(None, None, None, one(huge)).unwrap_err().contains("memory_mb = 5000"));
        let forever = DeclaredSettings { timeout_ms: Some(u64::MAX), ..Default::default() };
        assert!(check(None, None, None, one(forever)).unwrap_err().contains("timeout_ms"));
    }
}
