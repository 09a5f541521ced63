//! Loading a workflow file (TOML) into a validated [`Workflow`].
//!
//! Every check runs before anything executes; each kind of mistake has its own
//! [`LoadError`] variant whose message names the file and the thing at fault.

use super::flow::{self, FlowError};
use super::*;
use serde::Deserialize;
use std::path::Path;

/// A task a component declares through its `tasks` export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDecl {
    /// Export name.
    pub name: String,
    /// Declared inputs.
    pub inputs: Vec<String>,
    /// One line of description.
    pub description: String,
}

/// What loading a module file tells the workflow loader.
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    /// Hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The tasks the component exports.
    pub tasks: Vec<TaskDecl>,
}

/// Why a module file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModuleLoadError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a WebAssembly component.
    #[error("{0}")]
    NotAComponent(String),
    /// The component does not fit the graflow contract (`wit/graflow.wit`).
    #[error("{0}")]
    Incompatible(String),
}

/// Loads module files; the sandbox implements it (tests use a fake).
pub trait ModuleExports {
    /// Load the module `name` from `path` and list its tasks.
    fn load(&mut self, name: &str, path: &Path) -> Result<ModuleInfo, ModuleLoadError>;
}

/// Why a workflow file was refused. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The workflow file could not be read.
    #[error("cannot read workflow file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The flow expression does not parse.
    #[error("{path}: [workflow].flow: {error}")]
    Flow {
        /// The file.
        path: PathBuf,
        /// The parse error (with column).
        error: FlowError,
    },
    /// The flow or a setting names a task that is not declared.
    #[error("{path}: unknown task '{task}' ({context}); declared tasks: {declared}")]
    UnknownTask {
        /// The file.
        path: PathBuf,
        /// The name.
        task: String,
        /// Where it was named.
        context: String,
        /// The tasks that exist.
        declared: String,
    },
    /// A task names a module that is not in `[modules]`.
    #[error("{path}: task '{task}' uses module '{module}', which is not in [modules] (modules: {declared})")]
    UnknownModule {
        /// The file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The module name.
        module: String,
        /// The modules that exist.
        declared: String,
    },
    /// A module file is missing or unreadable.
    #[error("{path}: module '{module}': cannot read {file}: {source}")]
    ModuleFile {
        /// The workflow file.
        path: PathBuf,
        /// The module.
        module: String,
        /// The module file.
        file: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A module file is not a WebAssembly component.
    #[error("{path}: module '{module}': {file} is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The workflow file.
        path: PathBuf,
        /// The module.
        module: String,
        /// The module file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A component does not implement the graflow task contract.
    #[error("{path}: module '{module}' ({file}) does not fit the graflow task contract: {reason}")]
    Incompatible {
        /// The workflow file.
        path: PathBuf,
        /// The module.
        module: String,
        /// The module file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A task's export is not provided by its module.
    #[error(
        "{path}: task '{task}': module '{module}' does not export a task named '{export}' (it exports: {available})"
    )]
    NotExported {
        /// The workflow file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The module.
        module: String,
        /// The export name looked for.
        export: String,
        /// What the module exports.
        available: String,
    },
    /// A setting has a value that cannot work.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The workflow file.
        path: PathBuf,
        /// The setting, as `[table].key`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    workflow: WorkflowSection,
    #[serde(default)]
    modules: BTreeMap<String, PathBuf>,
    #[serde(default)]
    tasks: BTreeMap<String, TaskSection>,
    #[serde(default)]
    groups: BTreeMap<String, GroupSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowSection {
    name: Option<String>,
    flow: String,
    start: Option<String>,
    max_steps: Option<u64>,
    parallelism: Option<usize>,
    #[serde(default)]
    bounds: BoundsSection,
    max_cycles: Option<u32>,
    max_retries: Option<u32>,
    backoff: Option<BackoffSection>,
    limits: Option<LimitsSection>,
}

impl WorkflowSection {
    fn defaults(&self) -> TaskSettings {
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
struct TaskSettings {
    max_cycles: Option<u32>,
    max_retries: Option<u32>,
    backoff: Option<BackoffSection>,
    limits: Option<LimitsSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSection {
    module: Option<String>,
    export: Option<String>,
    inputs: Option<Vec<String>>,
    #[serde(default)]
    dirs: Vec<DirSection>,
    #[serde(default)]
    env: Vec<String>,
    stdio: Option<String>,
    #[serde(default)]
    reuse_instance: bool,
    max_cycles: Option<u32>,
    max_retries: Option<u32>,
    backoff: Option<BackoffSection>,
    limits: Option<LimitsSection>,
}

impl TaskSection {
    fn settings(&self) -> TaskSettings {
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
struct DirSection {
    host: PathBuf,
    guest: String,
    mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BoundsSection {
    max_value_bytes: Option<u64>,
    max_key_bytes: Option<u64>,
    max_next_tasks: Option<u64>,
    max_log_bytes: Option<u64>,
    max_written_bytes: Option<u64>,
    max_channel_bytes: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct BackoffSection {
    initial_ms: Option<u64>,
    factor: Option<f64>,
    max_ms: Option<u64>,
    jitter: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    memory_mb: Option<u64>,
    timeout_ms: Option<u64>,
    fuel: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSection {
    members: Option<Vec<String>>,
    policy: Option<String>,
    min_success: Option<u32>,
    critical: Option<Vec<String>>,
}

/// Default for `[workflow].max_steps`.
pub const DEFAULT_MAX_STEPS: u64 = 10_000;
/// Default for `max_cycles`.
pub const DEFAULT_MAX_CYCLES: u32 = 10;

/// Read, parse and validate the workflow file at `path`, loading its modules
/// through `modules`.
pub fn load_workflow(path: &Path, modules: &mut dyn ModuleExports) -> Result<Workflow, LoadError> {
    WorkflowFile::read(path)?.resolve(modules)
}

/// What the wasm engine must support for a workflow: known from the file
/// alone, before any module is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineNeeds {
    /// Some task has a fuel budget.
    pub fuel: bool,
    /// The largest memory limit of any task, in bytes.
    pub max_memory_bytes: u64,
}

/// A workflow file, parsed but not yet resolved.
pub struct WorkflowFile {
    path: PathBuf,
    file: File,
}

impl WorkflowFile {
    /// Read and parse the file at `path`.
    pub fn read(path: &Path) -> Result<WorkflowFile, LoadError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
        let file: File = toml::from_str(&text).map_err(|e| LoadError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Ok(WorkflowFile { path: path.to_path_buf(), file })
    }

    /// What the engine must support to run this workflow.
    pub fn needs(&self) -> EngineNeeds {
        let wf = &self.file.workflow;
        let limits = std::iter::once(&wf.limits).chain(self.file.tasks.values().map(|t| &t.limits)).flatten();
        let fuel = limits.clone().any(|l| l.fuel.is_some());
        let default_mb = wf.limits.as_ref().and_then(|l| l.memory_mb).unwrap_or(Limits::default().memory_bytes >> 20);
        let max_mb = limits.filter_map(|l| l.memory_mb).chain([default_mb]).max().unwrap_or(default_mb);
        EngineNeeds { fuel, max_memory_bytes: max_mb.min(4096) << 20 }
    }

    /// Validate the file and load its modules through `modules`.
    pub fn resolve(&self, modules: &mut dyn ModuleExports) -> Result<Workflow, LoadError> {
        Resolver { path: &self.path, file: &self.file }.resolve(modules)
    }
}

struct Resolver<'a> {
    path: &'a Path,
    file: &'a File,
}

impl Resolver<'_> {
    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> LoadError {
        LoadError::Invalid { path: self.path.to_path_buf(), field: field.into(), message: message.into() }
    }

    fn resolve(&self, loader: &mut dyn ModuleExports) -> Result<Workflow, LoadError> {
        let wf = &self.file.workflow;
        let flow = flow::parse(&wf.flow).map_err(|error| LoadError::Flow { path: self.path.to_path_buf(), error })?;
        let modules = self.load_modules(loader)?;
        let tasks = self.tasks(&flow, &modules)?;
        let graph = self.graph(&flow)?;
        let start = self.start(&graph)?;
        let max_steps = wf.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
        if max_steps == 0 {
            return Err(self.invalid("[workflow].max_steps", "must be at least 1"));
        }
        let parallelism =
            wf.parallelism.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()).max(4));
        if parallelism == 0 {
            return Err(self.invalid("[workflow].parallelism", "must be at least 1"));
        }
        let name = wf.name.clone().unwrap_or_else(|| default_name(self.path));
        let modules = modules.into_iter().map(|(n, (r, _))| (n, r)).collect();
        Ok(Workflow {
            name,
            flow: wf.flow.clone(),
            start,
            modules,
            tasks,
            graph,
            settings: RunSettings { max_steps, parallelism, bounds: self.bounds()? },
        })
    }

    fn bounds(&self) -> Result<HostBounds, LoadError> {
        let b = &self.file.workflow.bounds;
        let d = HostBounds::default();
        let bounds = HostBounds {
            max_value_bytes: b.max_value_bytes.unwrap_or(d.max_value_bytes),
            max_key_bytes: b.max_key_bytes.unwrap_or(d.max_key_bytes),
            max_next_tasks: b.max_next_tasks.unwrap_or(d.max_next_tasks),
            max_log_bytes: b.max_log_bytes.unwrap_or(d.max_log_bytes),
            max_written_bytes: b.max_written_bytes.unwrap_or(d.max_written_bytes),
            max_channel_bytes: b.max_channel_bytes.unwrap_or(d.max_channel_bytes),
        };
        let named = [
            ("max_value_bytes", bounds.max_value_bytes),
            ("max_key_bytes", bounds.max_key_bytes),
            ("max_log_bytes", bounds.max_log_bytes),
            ("max_written_bytes", bounds.max_written_bytes),
            ("max_channel_bytes", bounds.max_channel_bytes),
        ];
        if let Some((name, _)) = named.iter().find(|(_, v)| *v == 0) {
            return Err(self.invalid(format!("[workflow.bounds].{name}"), "must be at least 1"));
        }
        Ok(bounds)
    }

    fn grants(&self, name: &str, section: Option<&TaskSection>) -> Result<Grants, LoadError> {
        let Some(section) = section else { return Ok(Grants::default()) };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut dirs = Vec::new();
        for (i, d) in section.dirs.iter().enumerate() {
            let field = format!("[tasks.{name}].dirs[{i}]");
            let host = std::path::absolute(dir.join(&d.host)).unwrap_or_else(|_| dir.join(&d.host));
            if !host.is_dir() {
                return Err(self.invalid(format!("{field}.host"), format!("{} is not a directory", host.display())));
            }
            if !d.guest.starts_with('/') {
                return Err(self.invalid(
                    format!("{field}.guest"),
                    format!("'{}' must be an absolute guest path such as \"/data\"", d.guest),
                ));
            }
            let writable = match d.mode.as_deref().unwrap_or("ro") {
                "ro" => false,
                "rw" => true,
                other => {
                    return Err(self.invalid(
                        format!("{field}.mode"),
                        format!("'{other}' is not a mode: use \"ro\" (read-only) or \"rw\" (read-write)"),
                    ));
                }
            };
            dirs.push(DirGrant { host, guest: d.guest.clone(), writable });
        }
        if let Some(bad) = section.env.iter().find(|v| v.is_empty() || v.contains('=')) {
            return Err(
                self.invalid(format!("[tasks.{name}].env"), format!("'{bad}' is not an environment variable name"))
            );
        }
        let stdio = match section.stdio.as_deref().unwrap_or("log") {
            "log" => Stdio::Log,
            "inherit" => Stdio::Inherit,
            other => {
                return Err(self.invalid(
                    format!("[tasks.{name}].stdio"),
                    format!("'{other}' is not a choice: use \"log\" or \"inherit\""),
                ));
            }
        };
        Ok(Grants { dirs, env: section.env.clone(), stdio })
    }

    fn load_modules(
        &self,
        loader: &mut dyn ModuleExports,
    ) -> Result<BTreeMap<String, (ModuleRef, Vec<TaskDecl>)>, LoadError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut out = BTreeMap::new();
        if self.file.modules.is_empty() {
            return Err(self.invalid("[modules]", "no modules: name at least one component, e.g. `app = \"app.wasm\"`"));
        }
        for (name, rel) in &self.file.modules {
            let file = std::path::absolute(dir.join(rel)).unwrap_or_else(|_| dir.join(rel));
            let info = loader.load(name, &file).map_err(|e| {
                let (path, module, file) = (self.path.to_path_buf(), name.clone(), file.clone());
                match e {
                    ModuleLoadError::Io(source) => LoadError::ModuleFile { path, module, file, source },
                    ModuleLoadError::NotAComponent(reason) => LoadError::NotAComponent { path, module, file, reason },
                    ModuleLoadError::Incompatible(reason) => LoadError::Incompatible { path, module, file, reason },
                }
            })?;
            out.insert(name.clone(), (ModuleRef { path: file, sha256: info.sha256, size: info.size }, info.tasks));
        }
        Ok(out)
    }

    fn declared_names(&self, flow: &flow::FlowGraph) -> String {
        let mut names: Vec<&str> = self.file.tasks.keys().map(String::as_str).collect();
        names.extend(flow.tasks.iter().map(String::as_str).filter(|t| !self.file.tasks.contains_key(*t)));
        if names.is_empty() { "none".into() } else { names.join(", ") }
    }

    fn tasks(
        &self,
        flow: &flow::FlowGraph,
        modules: &BTreeMap<String, (ModuleRef, Vec<TaskDecl>)>,
    ) -> Result<BTreeMap<String, TaskDef>, LoadError> {
        let mut names: Vec<String> = self.file.tasks.keys().cloned().collect();
        names.extend(flow.tasks.iter().filter(|t| !self.file.tasks.contains_key(*t)).cloned());
        let only_module = (modules.len() == 1).then(|| modules.keys().next().expect("one module").clone());
        let defaults = &self.file.workflow.defaults();
        let mut out = BTreeMap::new();
        for name in names {
            let section = self.file.tasks.get(&name);
            let export_name = section.and_then(|s| s.export.clone()).unwrap_or_else(|| name.clone());
            let module = match section.and_then(|s| s.module.clone()).or_else(|| only_module.clone()) {
                Some(m) => m,
                None => self.module_exporting(&name, &export_name, modules, flow)?,
            };
            let Some((_, decls)) = modules.get(&module) else {
                return Err(LoadError::UnknownModule {
                    path: self.path.to_path_buf(),
                    task: name,
                    module,
                    declared: modules.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            };
            let export = export_name;
            let Some(decl) = decls.iter().find(|d| d.name == export) else {
                if section.is_none() && only_module.is_some() {
                    return Err(LoadError::UnknownTask {
                        path: self.path.to_path_buf(),
                        task: name.clone(),
                        context: format!(
                            "named in the flow, not declared in [tasks], and module '{module}' exports no task of that name"
                        ),
                        declared: self.declared_names(flow),
                    });
                }
                let available = decls.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ");
                return Err(LoadError::NotExported {
                    path: self.path.to_path_buf(),
                    task: name,
                    module,
                    export,
                    available,
                });
            };
            let settings = section.map(TaskSection::settings).unwrap_or_default();
            let inputs = section.and_then(|s| s.inputs.clone()).unwrap_or_else(|| decl.inputs.clone());
            let mut def = self.task_def(&name, module, export, inputs, &settings, defaults)?;
            def.grants = self.grants(&name, section)?;
            def.reuse_instance = section.is_some_and(|s| s.reuse_instance);
            out.insert(name, def);
        }
        Ok(out)
    }

    /// The one module that exports `export` (for a task without `module` in a
    /// workflow with several modules).
    fn module_exporting(
        &self,
        task: &str,
        export: &str,
        modules: &BTreeMap<String, (ModuleRef, Vec<TaskDecl>)>,
        flow: &flow::FlowGraph,
    ) -> Result<String, LoadError> {
        let found: Vec<&String> =
            modules.iter().filter(|(_, (_, decls))| decls.iter().any(|d| d.name == export)).map(|(m, _)| m).collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(LoadError::UnknownTask {
                path: self.path.to_path_buf(),
                task: task.to_string(),
                context: format!("no module exports a task named '{export}'"),
                declared: self.declared_names(flow),
            }),
            several => Err(self.invalid(
                format!("[tasks.{task}].module"),
                format!(
                    "modules {} all export '{export}': set `module`",
                    several.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(" and ")
                ),
            )),
        }
    }

    fn task_def(
        &self,
        name: &str,
        module: String,
        export: String,
        inputs: Vec<String>,
        s: &TaskSettings,
        d: &TaskSettings,
    ) -> Result<TaskDef, LoadError> {
        let table = format!("[tasks.{name}]");
        let max_cycles = s.max_cycles.or(d.max_cycles).unwrap_or(DEFAULT_MAX_CYCLES);
        if max_cycles == 0 {
            return Err(
                self.invalid(format!("{table}.max_cycles"), "must be at least 1 (max_cycles = N allows N runs)")
            );
        }
        let (sb, db) = (s.backoff.clone().unwrap_or_default(), d.backoff.clone().unwrap_or_default());
        let base = RetryPolicy::default();
        let retry = RetryPolicy {
            max_retries: s.max_retries.or(d.max_retries).unwrap_or(base.max_retries),
            initial_ms: sb.initial_ms.or(db.initial_ms).unwrap_or(base.initial_ms),
            factor: sb.factor.or(db.factor).unwrap_or(base.factor),
            max_ms: sb.max_ms.or(db.max_ms).unwrap_or(base.max_ms),
            jitter: sb.jitter.or(db.jitter).unwrap_or(base.jitter),
        };
        if !(retry.factor >= 1.0 && retry.factor.is_finite()) {
            return Err(self.invalid(
                format!("{table}.backoff.factor"),
                format!("must be a finite number >= 1.0, not {}", retry.factor),
            ));
        }
        let (sl, dl) = (s.limits.clone().unwrap_or_default(), d.limits.clone().unwrap_or_default());
        let base = Limits::default();
        let memory_mb = sl.memory_mb.or(dl.memory_mb);
        if memory_mb == Some(0) || memory_mb.is_some_and(|m| m > 4096) {
            return Err(self.invalid(
                format!("{table}.limits.memory_mb"),
                "must be between 1 and 4096 (a wasm32 memory holds at most 4 GiB)",
            ));
        }
        let limits = Limits {
            memory_bytes: memory_mb.map_or(base.memory_bytes, |m| m << 20),
            timeout_ms: sl.timeout_ms.or(dl.timeout_ms).unwrap_or(base.timeout_ms),
            fuel: sl.fuel.or(dl.fuel),
        };
        if limits.timeout_ms == 0 {
            return Err(self.invalid(format!("{table}.limits.timeout_ms"), "must be at least 1"));
        }
        Ok(TaskDef {
            name: name.to_string(),
            module,
            export,
            inputs,
            max_cycles,
            retry,
            limits,
            grants: Grants::default(),
            reuse_instance: false,
        })
    }

    fn graph(&self, flow: &flow::FlowGraph) -> Result<Graph, LoadError> {
        let mut graph = Graph::default();
        for t in &flow.tasks {
            graph.nodes.insert(t.clone(), Node::Task);
        }
        let names = self.group_names(flow)?;
        for (generated, members) in &flow.groups {
            let name = names.get(generated).cloned().unwrap_or_else(|| generated.clone());
            let policy = self.policy(&name, members)?;
            let members = members.iter().map(|m| names.get(m).cloned().unwrap_or_else(|| m.clone())).collect();
            graph.nodes.insert(name, Node::Group(GroupDef { members, policy }));
        }
        for (a, b) in &flow.edges {
            let a = names.get(a).cloned().unwrap_or_else(|| a.clone());
            let b = names.get(b).cloned().unwrap_or_else(|| b.clone());
            graph.successors.entry(a).or_default().push(b);
        }
        Ok(graph)
    }

    /// Generated group name → configured name, for `[groups.<name>]` tables
    /// that list `members`.
    fn group_names(&self, flow: &flow::FlowGraph) -> Result<BTreeMap<String, String>, LoadError> {
        let mut names = BTreeMap::new();
        for (name, section) in &self.file.groups {
            let field = format!("[groups.{name}]");
            if flow.tasks.contains(name) {
                return Err(self.invalid(field, "a group cannot have the name of a task"));
            }
            match &section.members {
                Some(members) => {
                    let found = flow.groups.iter().find(|(_, m)| {
                        let mut a = m.clone();
                        let mut b = members.clone();
                        a.sort();
                        b.sort();
                        a == b
                    });
                    let Some((generated, _)) = found else {
                        return Err(self.invalid(
                            format!("{field}.members"),
                            format!(
                                "the flow has no parallel group with exactly the members [{}]; its groups: {}",
                                members.join(", "),
                                describe_groups(flow)
                            ),
                        ));
                    };
                    names.insert(generated.clone(), name.clone());
                }
                None => {
                    if !flow.groups.iter().any(|(g, _)| g == name) {
                        return Err(self.invalid(field, format!("no group is named '{name}': name a group by listing its `members`, or use a generated name; the flow's groups: {}", describe_groups(flow))));
                    }
                }
            }
        }
        Ok(names)
    }

    fn policy(&self, group: &str, members: &[String]) -> Result<GroupPolicy, LoadError> {
        let Some(section) = self.file.groups.iter().find(|(n, _)| n.as_str() == group).map(|(_, s)| s) else {
            return Ok(GroupPolicy::Strict);
        };
        let field = |k: &str| format!("[groups.{group}].{k}");
        let policy = match section.policy.as_deref().unwrap_or("strict") {
            "strict" => GroupPolicy::Strict,
            "best_effort" => GroupPolicy::BestEffort,
            "at_least_n" => {
                let n = section
                    .min_success
                    .ok_or_else(|| self.invalid(field("min_success"), "policy \"at_least_n\" needs `min_success`"))?;
                if n as usize > members.len() {
                    return Err(self.invalid(
                        field("min_success"),
                        format!("{n} is more than the group's {} members", members.len()),
                    ));
                }
                GroupPolicy::AtLeast(n)
            }
            "critical" => {
                let critical = section.critical.clone().unwrap_or_default();
                if critical.is_empty() {
                    return Err(self.invalid(
                        field("critical"),
                        "policy \"critical\" needs a non-empty `critical` list of members",
                    ));
                }
                if let Some(c) = critical.iter().find(|c| !members.contains(c)) {
                    return Err(self.invalid(
                        field("critical"),
                        format!("'{c}' is not a member of the group (members: {})", members.join(", ")),
                    ));
                }
                GroupPolicy::Critical(critical)
            }
            other => {
                return Err(self.invalid(
                    field("policy"),
                    format!("unknown policy '{other}'; policies: strict, best_effort, at_least_n, critical"),
                ));
            }
        };
        if section.min_success.is_some() && !matches!(policy, GroupPolicy::AtLeast(_)) {
            return Err(self.invalid(field("min_success"), "only applies to policy \"at_least_n\""));
        }
        if section.critical.is_some() && !matches!(policy, GroupPolicy::Critical(_)) {
            return Err(self.invalid(field("critical"), "only applies to policy \"critical\""));
        }
        Ok(policy)
    }

    fn start(&self, graph: &Graph) -> Result<String, LoadError> {
        if let Some(start) = &self.file.workflow.start {
            if !graph.nodes.contains_key(start) {
                return Err(self.invalid(
                    "[workflow].start",
                    format!(
                        "'{start}' is not a node of the flow (nodes: {})",
                        graph.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            return Ok(start.clone());
        }
        let candidates = graph.start_candidates();
        match candidates.len() {
            1 => Ok(candidates[0].clone()),
            0 => Err(self.invalid(
                "[workflow].start",
                "every node of the flow has a predecessor (the flow is a cycle): set `start`",
            )),
            _ => Err(self.invalid(
                "[workflow].start",
                format!("the flow has several nodes without predecessors ({}): set `start`", candidates.join(", ")),
            )),
        }
    }
}

fn describe_groups(flow: &flow::FlowGraph) -> String {
    if flow.groups.is_empty() {
        return "none".into();
    }
    flow.groups.iter().map(|(g, m)| format!("{g} = {}", m.join(" | "))).collect::<Vec<_>>().join("; ")
}

fn default_name(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("workflow");
    if stem == "workflow"
        && let Some(dir) = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().into_owned()))
    {
        return dir;
    }
    stem.to_string()
}
