//! Resolving a parsed workflow file into a validated [`Workflow`]: modules
//! loaded, tasks matched to their exports, the graph built, settings checked.
//! Every check runs before anything executes.

use super::file_schema::*;
use super::flow;
use super::*;
use serde::{Deserialize, Serialize};
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
    /// The digest of the file's bytes (computed once, when they were read).
    pub sha256: crate::digest::Sha256,
    /// Size in bytes.
    pub size: u64,
    /// The tasks the component exports.
    pub tasks: Vec<TaskDecl>,
    /// The workflow the component declares (empty without the export).
    pub workflow: DeclaredWorkflow,
}

/// Loads module files; the sandbox implements it (tests use a fake).
pub trait ModuleExports {
    /// Load the module `name` from `path` (reading at most `max_bytes`) and
    /// list its tasks.
    fn load(&mut self, name: &str, path: &Path, max_bytes: u64) -> Result<ModuleInfo, ModuleLoadError>;
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
/// alone (before any module is loaded) or from a resolved [`Workflow`]; the
/// sandbox sizes its engine from this alone (`EngineSettings::for_needs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineNeeds {
    /// Some task has a fuel budget.
    pub fuel: bool,
    /// The largest memory limit of any task, in bytes (at most 4 GiB).
    pub max_memory_bytes: u64,
    /// The most task executions that can run at once.
    pub concurrency: usize,
}

impl EngineNeeds {
    /// Needs with the memory limit capped at [`MAX_MEMORY_MB`] and at least one
    /// execution at a time.
    pub fn new(fuel: bool, max_memory_bytes: u64, concurrency: usize) -> EngineNeeds {
        EngineNeeds {
            fuel,
            max_memory_bytes: max_memory_bytes.min(MAX_MEMORY_MB << 20),
            concurrency: concurrency.max(1),
        }
    }

    /// What `workflow` needs.
    pub fn of(workflow: &Workflow) -> EngineNeeds {
        let tasks = workflow.tasks.values();
        EngineNeeds::new(
            tasks.clone().any(|t| t.limits.fuel.is_some()),
            tasks.map(|t| t.limits.memory_bytes).max().unwrap_or(Limits::default().memory_bytes),
            workflow.max_concurrency(),
        )
    }
}

/// A workflow file, parsed but not yet resolved; or a component run without
/// one, as the file that names just that component.
pub struct WorkflowFile {
    path: PathBuf,
    file: File,
    /// True for [`WorkflowFile::for_component`]: errors name the component.
    component_only: bool,
}

impl WorkflowFile {
    /// Read and parse the file at `path`.
    pub fn read(path: &Path) -> Result<WorkflowFile, LoadError> {
        let text = crate::files::read_text_bounded(path, MAX_WORKFLOW_FILE_BYTES, "MAX_WORKFLOW_FILE_BYTES (16 MiB)")?;
        let file: File = toml::from_str(&text).map_err(|e| LoadError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Ok(WorkflowFile { path: path.to_path_buf(), file, component_only: false })
    }

    /// A workflow file, or (a path ending in `.wasm`) a component alone
    /// ([`WorkflowFile::for_component`], named after the file's stem).
    pub fn open(path: &Path) -> Result<WorkflowFile, LoadError> {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("wasm")) {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            return Ok(WorkflowFile::for_component(path, &module_name(&stem)));
        }
        WorkflowFile::read(path)
    }

    /// The workflow of the component at `component` alone, as if a file named
    /// it as its only module `module` and said nothing else: the component's
    /// declared flow and settings apply, and nothing is granted.
    pub fn for_component(component: &Path, module: &str) -> WorkflowFile {
        let path = std::path::absolute(component).unwrap_or_else(|_| component.to_path_buf());
        let mut file = File::default();
        file.modules.insert(module.to_string(), path.clone());
        WorkflowFile { path, file, component_only: true }
    }

    /// Name `source` (the task source a component was built from) in
    /// errors instead of the component's path.
    pub fn built_from(mut self, source: &Path) -> WorkflowFile {
        self.path = std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf());
        self
    }

    /// The file's modules and their paths (relative ones made absolute
    /// against the file's folder).
    pub fn module_paths(&self) -> Vec<(String, PathBuf)> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.file
            .modules
            .iter()
            .map(|(name, rel)| (name.clone(), std::path::absolute(dir.join(rel)).unwrap_or_else(|_| dir.join(rel))))
            .collect()
    }

    /// Load module `module` from `component` instead of the path the file
    /// gives (a task source the caller built).
    pub fn use_component(&mut self, module: &str, component: PathBuf) {
        if let Some(path) = self.file.modules.get_mut(module) {
            *path = component;
        }
    }

    /// The file (or the component run alone).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the engine must support to run this workflow.
    pub fn needs(&self) -> EngineNeeds {
        let wf = &self.file.workflow;
        let limits = std::iter::once(&wf.limits).chain(self.file.tasks.values().map(|t| &t.limits)).flatten();
        let fuel = limits.clone().any(|l| l.fuel.is_some());
        let default_mb = wf.limits.as_ref().and_then(|l| l.memory_mb).unwrap_or(Limits::default().memory_bytes >> 20);
        let max_mb = limits.filter_map(|l| l.memory_mb).chain([default_mb]).max().unwrap_or(default_mb);
        // A flow that does not parse is reported by `resolve`; one instance
        // at a time is enough to get there.
        let declared = |name: &str| self.file.tasks.contains_key(name);
        let concurrency = wf.flow.as_deref().and_then(|f| flow::parse_reserving(f, &declared).ok()).map_or(1, |f| {
            let groups: std::collections::HashMap<&str, &[String]> =
                f.groups.iter().map(|(g, m)| (g.as_str(), m.as_slice())).collect();
            let members = |n: &str| groups.get(n).copied();
            super::concurrency(f.groups.iter().map(|(g, _)| g), &members, parallelism_of(wf))
        });
        EngineNeeds::new(fuel, max_mb.saturating_mul(1 << 20), concurrency)
    }

    /// Validate the file and load its modules through `modules`.
    pub fn resolve(&self, modules: &mut dyn ModuleExports) -> Result<Workflow, LoadError> {
        Resolver { path: &self.path, file: &self.file, component_only: self.component_only }.resolve(modules)
    }
}

/// The loaded modules: where each is, its tasks, what it declares.
type Loaded = BTreeMap<String, (ModuleRef, Vec<TaskDecl>, DeclaredWorkflow)>;

struct Resolver<'a> {
    path: &'a Path,
    file: &'a File,
    component_only: bool,
}

impl Resolver<'_> {
    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> LoadError {
        LoadError::Invalid { path: self.path.to_path_buf(), field: field.into(), message: message.into() }
    }

    fn resolve(&self, loader: &mut dyn ModuleExports) -> Result<Workflow, LoadError> {
        let wf = &self.file.workflow;
        // Task and group names become ids, file contents and picture labels:
        // the flow's name grammar holds for those declared in tables too.
        for (table, name) in
            self.file.tasks.keys().map(|k| ("tasks", k)).chain(self.file.groups.keys().map(|k| ("groups", k)))
        {
            if !is_flow_name(name) {
                return Err(self.invalid(
                    format!("[{table}.\"{}\"]", name.escape_debug()),
                    "a name is letters, digits, '_' and '-', starting with a letter or '_' (as in the flow)",
                ));
            }
        }
        // A flow the file gives is checked before any module is loaded.
        let file_declared = |name: &str| self.file.tasks.contains_key(name);
        let file_flow = match &wf.flow {
            Some(f) => Some(flow::parse_reserving(f, &file_declared).map_err(|error| LoadError::Flow {
                path: self.path.to_path_buf(),
                origin: "[workflow].flow".into(),
                error,
            })?),
            None => None,
        };
        let loaded = self.load_modules(loader)?;
        let (flow, flow_text, declared_by, extra) = match (file_flow, &wf.flow) {
            (Some(flow), Some(text)) => (flow, text.clone(), None, std::collections::BTreeSet::new()),
            _ => {
                let (module, declared) = self.declaring_module(&loaded)?;
                // A flow a module declares may use every task that module
                // exports (each whose name fits the flow's grammar), as a
                // file's flow may use the tasks `[tasks]` declares.
                let extra: std::collections::BTreeSet<String> = loaded
                    .get(module)
                    .map(|(_, decls, _)| decls.iter().map(|d| d.name.clone()).filter(|n| is_flow_name(n)).collect())
                    .unwrap_or_default();
                let reserved = |name: &str| file_declared(name) || extra.contains(name);
                let text = declared.flow.clone().unwrap_or_default();
                let flow = flow::parse_reserving(&text, &reserved).map_err(|error| LoadError::Flow {
                    path: self.path.to_path_buf(),
                    origin: format!("the flow module '{module}' declares"),
                    error,
                })?;
                (flow, text, Some((module.to_string(), declared.clone())), extra)
            }
        };
        let declaring = declared_by.as_ref().map(|(m, _)| m.as_str());
        let tasks = self.tasks(&flow, &loaded, &extra, declaring)?;
        let declared_by = declared_by.map(|(_, d)| d);
        let modules: BTreeMap<String, ModuleRef> = loaded.into_iter().map(|(n, (r, _, _))| (n, r)).collect();
        let graph = self.graph(&flow)?;
        let start = self.start(&graph)?;
        let max_steps = wf.max_steps.or(declared_by.as_ref().and_then(|d| d.max_steps)).unwrap_or(DEFAULT_MAX_STEPS);
        if max_steps == 0 {
            return Err(self.invalid("[workflow].max_steps", "must be at least 1"));
        }
        let keep_checkpoints = wf.keep_checkpoints;
        if keep_checkpoints == Some(0) {
            return Err(self
                .invalid("[workflow].keep_checkpoints", "must be at least 1 (the newest checkpoint is always kept)"));
        }
        let keep_iteration_results = wf.keep_iteration_results.unwrap_or(super::DEFAULT_KEEP_ITERATION_RESULTS);
        if keep_iteration_results == 0 {
            return Err(self.invalid(
                "[workflow].keep_iteration_results",
                "must be at least 1 (the newest iteration's result is always kept)",
            ));
        }
        let parallelism = parallelism_of(wf);
        if parallelism == 0 {
            return Err(self.invalid("[workflow].parallelism", "must be at least 1"));
        }
        let name = wf.name.clone().or(declared_by.and_then(|d| d.name)).unwrap_or_else(|| {
            match (self.component_only, self.file.modules.keys().next()) {
                (true, Some(module)) => module.clone(),
                _ => default_name(self.path),
            }
        });
        let tasks_names: Vec<String> = tasks.keys().cloned().collect();
        Ok(Workflow {
            name,
            flow: flow_text,
            start,
            modules,
            tasks,
            graph,
            settings: RunSettings {
                max_steps,
                parallelism,
                bounds: self.bounds()?,
                keep_checkpoints,
                keep_iteration_results,
            },
            outbound: std::sync::Arc::new(self.outbound(&tasks_names)?),
        })
    }

    /// The outbound policy: each task's grant (its own `http`, else the
    /// workflow's `allow`), the attached headers, the provider, the bounds.
    fn outbound(&self, tasks: &[String]) -> Result<crate::outbound::Policy, LoadError> {
        use crate::outbound::{Grant, NetBounds, Network, OriginPattern, Policy};
        let wf = &self.file.workflow;
        let http = wf.http.as_ref();
        let grant = |field: &str, allow: &[String], networks: &[String]| -> Result<Grant, LoadError> {
            let allow = allow
                .iter()
                .map(|p| OriginPattern::parse(p).map_err(|e| self.invalid(format!("{field}.allow"), e)))
                .collect::<Result<Vec<_>, _>>()?;
            let allow_networks = networks
                .iter()
                .map(|n| Network::parse(n).map_err(|e| self.invalid(format!("{field}.allow_networks"), e)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Grant { allow, allow_networks })
        };
        let default = match http {
            Some(h) => grant("[workflow.http]", &h.allow, &h.allow_networks)?,
            None => Grant::default(),
        };
        let mut granted = BTreeMap::new();
        for name in tasks {
            let own = self.file.tasks.get(name).and_then(|t| t.http.as_ref());
            let g = match own {
                Some(t) => grant(&format!("[tasks.{name}].http"), &t.allow, &t.allow_networks)?,
                None => default.clone(),
            };
            if !g.is_empty() {
                granted.insert(name.clone(), g);
            }
        }
        let mut headers = Vec::new();
        for (i, h) in http.map(|h| h.headers.as_slice()).unwrap_or_default().iter().enumerate() {
            let header = crate::outbound::InjectedHeader::try_from(h.clone())
                .map_err(|e| self.invalid(format!("[workflow.http].headers[{i}]"), e))?;
            headers.push(header);
        }
        if let Some(p) = &wf.llm {
            p.validate().map_err(|e| self.invalid("[workflow.llm]", e))?;
        }
        let d = NetBounds::default();
        let bounds = NetBounds {
            max_response_bytes: http.and_then(|h| h.max_response_bytes).unwrap_or(d.max_response_bytes),
            max_request_bytes: http.and_then(|h| h.max_request_bytes).unwrap_or(d.max_request_bytes),
            max_requests: http.and_then(|h| h.max_requests).unwrap_or(d.max_requests),
            max_connections: http.and_then(|h| h.max_connections).unwrap_or(d.max_connections),
            max_llm_tokens_per_execution: http
                .and_then(|h| h.max_llm_tokens_per_execution)
                .unwrap_or(d.max_llm_tokens_per_execution),
            max_llm_tokens: http.and_then(|h| h.max_llm_tokens).unwrap_or(d.max_llm_tokens),
        };
        let policy = Policy { tasks: granted, headers, llm: wf.llm.clone(), bounds };
        policy.validate().map_err(|e| self.invalid("[workflow.http]", e))?;
        Ok(policy)
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
            max_queued_tasks: b.max_queued_tasks.unwrap_or(d.max_queued_tasks),
            max_queued_input_bytes: b.max_queued_input_bytes.unwrap_or(d.max_queued_input_bytes),
            max_checkpoints: b.max_checkpoints.unwrap_or(d.max_checkpoints),
            max_checkpoint_bytes: b.max_checkpoint_bytes.unwrap_or(d.max_checkpoint_bytes),
            max_module_bytes: b.max_module_bytes.unwrap_or(d.max_module_bytes),
        };
        if let Some((name, _)) = bounds.named().iter().find(|(n, v)| *v == 0 && *n != "max_next_tasks") {
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
            let writable = d.mode.unwrap_or_default() == DirMode::Rw;
            dirs.push(DirGrant { host, guest: d.guest.clone(), writable });
        }
        if let Some(bad) = section.env.iter().find(|v| v.is_empty() || v.contains('=')) {
            return Err(
                self.invalid(format!("[tasks.{name}].env"), format!("'{bad}' is not an environment variable name"))
            );
        }
        let stdio = section.stdio.unwrap_or_default();
        Ok(Grants { dirs, env: section.env.clone(), stdio })
    }

    /// The one module that declares a flow (for a file without one).
    fn declaring_module<'m>(&self, loaded: &'m Loaded) -> Result<(&'m str, &'m DeclaredWorkflow), LoadError> {
        let declaring: Vec<(&String, &DeclaredWorkflow)> =
            loaded.iter().filter(|(_, (_, _, w))| w.flow.is_some()).map(|(m, (_, _, w))| (m, w)).collect();
        let no_flow = |message: String| LoadError::NoFlow { path: self.path.to_path_buf(), message };
        match declaring.as_slice() {
            [(m, w)] => Ok((m.as_str(), w)),
            [] if self.component_only => Err(no_flow(
                "the component declares no flow: declare one in code (Python `workflow(flow=\"a >> b\")`, \
                 JavaScript `workflow({ flow: 'a >> b' })`, Rust `export_tasks!(workflow = Workflow::flow(\"a >> b\"); ...)`), \
                 or write a workflow file that names this component in [modules]"
                    .into(),
            )),
            [] => Err(no_flow(format!(
                "[workflow].flow is missing and none of its modules ({}) declares a flow: set [workflow].flow",
                listed(loaded.keys().map(String::as_str))
            ))),
            several => Err(no_flow(format!(
                "[workflow].flow is missing and modules {} each declare a flow: set [workflow].flow to choose",
                several.iter().map(|(m, _)| format!("'{m}'")).collect::<Vec<_>>().join(" and ")
            ))),
        }
    }

    fn load_modules(&self, loader: &mut dyn ModuleExports) -> Result<Loaded, LoadError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut out = BTreeMap::new();
        if self.file.modules.is_empty() {
            return Err(self.invalid("[modules]", "no modules: name at least one component, e.g. `app = \"app.wasm\"`"));
        }
        for (name, rel) in &self.file.modules {
            let file = std::path::absolute(dir.join(rel)).unwrap_or_else(|_| dir.join(rel));
            let max = self.file.workflow.bounds.max_module_bytes.unwrap_or(HostBounds::default().max_module_bytes);
            let info = loader.load(name, &file, max).map_err(|e| {
                let (path, module, file) = (self.path.to_path_buf(), name.clone(), file.clone());
                match e {
                    ModuleLoadError::Read(source) => LoadError::ModuleFile { path, module, file, source },
                    ModuleLoadError::NotAComponent(reason) => LoadError::NotAComponent { path, module, file, reason },
                    ModuleLoadError::Incompatible(reason) => LoadError::Incompatible { path, module, file, reason },
                }
            })?;
            out.insert(
                name.clone(),
                (ModuleRef { path: file, sha256: info.sha256, size: info.size }, info.tasks, info.workflow),
            );
        }
        Ok(out)
    }

    /// The tasks declared or named in the flow, but `unknown` (the one an
    /// error is about).
    fn declared_names(&self, flow: &flow::FlowGraph, unknown: &str) -> String {
        let mut names: Vec<&str> = self.file.tasks.keys().map(String::as_str).collect();
        names.extend(flow.tasks.iter().map(String::as_str).filter(|t| !self.file.tasks.contains_key(*t)));
        listed(names.into_iter().filter(|t| *t != unknown))
    }

    /// Every task: those `[tasks]` declares, those the flow names, and
    /// `extra` (the tasks of `declaring`, the module that declares the flow,
    /// which is also the module of a task no table places elsewhere).
    fn tasks(
        &self,
        flow: &flow::FlowGraph,
        modules: &Loaded,
        extra: &std::collections::BTreeSet<String>,
        declaring: Option<&str>,
    ) -> Result<BTreeMap<String, TaskDef>, LoadError> {
        let mut names: Vec<String> = self.file.tasks.keys().cloned().collect();
        let mut seen: std::collections::HashSet<String> = names.iter().cloned().collect();
        for t in flow.tasks.iter().chain(extra) {
            if seen.insert(t.clone()) {
                names.push(t.clone());
            }
        }
        let only_module = if modules.len() == 1 { modules.keys().next().cloned() } else { None };
        let defaults = &self.file.workflow.defaults();
        let mut out = BTreeMap::new();
        for name in names {
            let section = self.file.tasks.get(&name);
            let export_name = section.and_then(|s| s.export.clone()).unwrap_or_else(|| name.clone());
            let declaring_exports =
                |m: &str| modules.get(m).is_some_and(|(_, decls, _)| decls.iter().any(|d| d.name == export_name));
            let by_declaring = declaring.filter(|m| declaring_exports(m)).map(str::to_string);
            let module = match section.and_then(|s| s.module.clone()).or_else(|| only_module.clone()).or(by_declaring) {
                Some(m) => m,
                None => self.module_exporting(&name, &export_name, modules, flow)?,
            };
            let Some((_, decls, declared)) = modules.get(&module) else {
                return Err(LoadError::UnknownModule {
                    path: self.path.to_path_buf(),
                    task: name,
                    declared: listed(modules.keys().map(String::as_str))
                        + &super::did_you_mean(&module, modules.keys().map(String::as_str)),
                    module,
                });
            };
            let export = export_name;
            let Some(decl) = decls.iter().find(|d| d.name == export) else {
                if section.is_none() && only_module.is_some() {
                    return Err(LoadError::UnknownTask {
                        path: self.path.to_path_buf(),
                        task: name.clone(),
                        context: format!(
                            "named in the flow, not declared in [tasks], and module '{module}' exports no task of that name; it exports: {}",
                            listed(decls.iter().map(|d| d.name.as_str()))
                        ),
                        declared: self.declared_names(flow, &name)
                            + &super::did_you_mean(&name, decls.iter().map(|d| d.name.as_str())),
                    });
                }
                let available = listed(decls.iter().map(|d| d.name.as_str()));
                return Err(LoadError::NotExported {
                    path: self.path.to_path_buf(),
                    task: name,
                    module,
                    available: available + &super::did_you_mean(&export, decls.iter().map(|d| d.name.as_str())),
                    export,
                });
            };
            let settings = section.map(TaskSection::settings).unwrap_or_default();
            let inputs = section.and_then(|s| s.inputs.clone()).unwrap_or_else(|| decl.inputs.clone());
            let code = declared.tasks.get(&export).copied().unwrap_or_default();
            let mut def = self.task_def(&name, module, export, inputs, &settings, defaults, &code)?;
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
        modules: &Loaded,
        flow: &flow::FlowGraph,
    ) -> Result<String, LoadError> {
        let found: Vec<&String> = modules
            .iter()
            .filter(|(_, (_, decls, _))| decls.iter().any(|d| d.name == export))
            .map(|(m, _)| m)
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(LoadError::UnknownTask {
                path: self.path.to_path_buf(),
                task: task.to_string(),
                context: format!(
                    "no module exports a task named '{export}'; the modules export: {}",
                    modules
                        .iter()
                        .map(|(m, (_, d, _))| format!("{m}: {}", listed(d.iter().map(|d| d.name.as_str()))))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                declared: self.declared_names(flow, task)
                    + &super::did_you_mean(
                        export,
                        modules.values().flat_map(|(_, d, _)| d.iter().map(|d| d.name.as_str())),
                    ),
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

    /// A task's definition. Each setting comes from the file's `[tasks]`
    /// table `s`, else the file's `[workflow]` default `d`, else what the
    /// component declares in code `c`, else the built-in default: the file
    /// wins wherever it says something.
    #[allow(clippy::too_many_arguments)]
    fn task_def(
        &self,
        name: &str,
        module: String,
        export: String,
        inputs: Vec<String>,
        s: &TaskSettings,
        d: &TaskSettings,
        c: &DeclaredSettings,
    ) -> Result<TaskDef, LoadError> {
        let table = format!("[tasks.{name}]");
        let max_cycles = s.max_cycles.or(d.max_cycles).or(c.max_cycles).unwrap_or(DEFAULT_MAX_CYCLES);
        if max_cycles == 0 {
            return Err(
                self.invalid(format!("{table}.max_cycles"), "must be at least 1 (max_cycles = N allows N runs)")
            );
        }
        let (sb, db) = (s.backoff.clone().unwrap_or_default(), d.backoff.clone().unwrap_or_default());
        let base = RetryPolicy::default();
        let retry = RetryPolicy {
            max_retries: s.max_retries.or(d.max_retries).or(c.max_retries).unwrap_or(base.max_retries),
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
        let memory_mb = sl.memory_mb.or(dl.memory_mb).or(c.memory_mb);
        if memory_mb == Some(0) || memory_mb.is_some_and(|m| m > 4096) {
            return Err(self.invalid(
                format!("{table}.limits.memory_mb"),
                "must be between 1 and 4096 (a wasm32 memory holds at most 4 GiB)",
            ));
        }
        let limits = Limits {
            memory_bytes: memory_mb.map_or(base.memory_bytes, |m| m << 20),
            timeout_ms: sl.timeout_ms.or(dl.timeout_ms).or(c.timeout_ms).unwrap_or(base.timeout_ms),
            fuel: sl.fuel.or(dl.fuel).or(c.fuel),
        };
        if limits.timeout_ms == 0 || limits.timeout_ms > MAX_DURATION_MS {
            return Err(self.invalid(
                format!("{table}.limits.timeout_ms"),
                format!("must be between 1 and {MAX_DURATION_MS} (one day)"),
            ));
        }
        if retry.initial_ms > MAX_DURATION_MS || retry.max_ms > MAX_DURATION_MS {
            return Err(self.invalid(
                format!("{table}.backoff"),
                format!("initial_ms and max_ms must be at most {MAX_DURATION_MS} (one day)"),
            ));
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
        let policy = match section.policy.unwrap_or_default() {
            PolicyName::Strict => GroupPolicy::Strict,
            PolicyName::BestEffort => GroupPolicy::BestEffort,
            PolicyName::AtLeastN => {
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
            PolicyName::Critical => {
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
                        listed(graph.nodes.keys().map(String::as_str))
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
                format!(
                    "the flow has several nodes without predecessors ({}): set `start`",
                    listed(candidates.iter().map(String::as_str))
                ),
            )),
        }
    }
}

/// `[workflow].parallelism`, by default the machine's cores (at least 4).
fn parallelism_of(wf: &WorkflowSection) -> usize {
    wf.parallelism.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()).max(4))
}

/// Names for an error message: at most 30, then how many more.
fn listed<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut names = names.into_iter();
    let shown: Vec<&str> = names.by_ref().take(30).collect();
    let more = names.count();
    match (shown.is_empty(), more) {
        (true, _) => "none".into(),
        (false, 0) => shown.join(", "),
        (false, n) => format!("{}, ... and {n} more", shown.join(", ")),
    }
}

fn describe_groups(flow: &flow::FlowGraph) -> String {
    if flow.groups.is_empty() {
        return "none".into();
    }
    flow.groups.iter().map(|(g, m)| format!("{g} = {}", m.join(" | "))).collect::<Vec<_>>().join("; ")
}

/// True if `name` fits the flow's name grammar: letters, digits, `_` and
/// `-`, starting with a letter or `_`.
fn is_flow_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A module name from a file's stem: letters, digits, `_` and `-` kept,
/// anything else `_`; `app` if nothing is left.
pub fn module_name(stem: &str) -> String {
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if name.is_empty() { "app".into() } else { name }
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
