//! The wasmtime sandbox: loads task components and runs each task execution in
//! a fresh store and instance.
//!
//! Per module, once: read the file, hash it (sha256), compile it (or load the
//! cached artifact), link it and make its `InstancePre`, and list its tasks.
//! Per execution: a new store (WASI context granting nothing, memory limiter,
//! epoch deadline, optional fuel), an instance from the `InstancePre`, one call
//! of `run`, then the store is dropped, and with it everything the guest held.

pub mod cache;
mod clock;
pub mod config;
mod host;
pub mod limits;
mod output;

use crate::engine::{FailureKind, TaskContext, TaskFailure, TaskRunner};
use crate::json::Json;
use crate::model::{
    DeclaredSettings, DeclaredWorkflow, EngineNeeds, Grants, ModuleExports, ModuleInfo, ModuleLoadError, Stdio,
    TaskDecl, TaskDef,
};
use crate::module_store::ModuleBytes;
use config::{EngineSettings, Ticker};
use host::{HostState, TaskModulePre};
use limits::{InstancePermits, Limiter, MemoryLimitHit, Permit};
use output::Captured;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtx};

/// A loaded module: ready to instantiate, with the code it was made from.
struct LoadedModule {
    pre: TaskModulePre<HostState>,
    code: ModuleBytes,
    /// It imports `wasi:http/outgoing-handler`.
    uses_http: bool,
}

/// How long a component's `tasks` export may take when it is loaded.
pub const LOAD_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Linear memory a component gets while its `tasks` export runs.
pub const LOAD_MEMORY_LIMIT: u64 = 256 << 20;

/// A WASI context and the pipes capturing its output.
struct Wasi {
    ctx: WasiCtx,
    stdout: Captured,
    stderr: Captured,
}

/// Modules of this process read from the compiled-module cache, and
/// compiled (for the metrics endpoint).
static COMPILE_CACHE: (std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64) =
    (std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0));

/// Modules this process read from the compiled-module cache, and compiled.
pub fn compile_counts() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (COMPILE_CACHE.0.load(Relaxed), COMPILE_CACHE.1.load(Relaxed))
}

/// The wasmtime runner: an engine, a linker and the loaded modules.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    /// Loaded modules; looked up (and the entry cloned) per execution, so a
    /// load never waits for running tasks.
    modules: std::sync::RwLock<HashMap<String, Arc<LoadedModule>>>,
    cache: Option<cache::ModuleCache>,
    fuel: bool,
    /// What the engine was built with.
    settings: EngineSettings,
    abort: Arc<AtomicBool>,
    /// Idle instances for tasks with `reuse_instance`, by module.
    pool: std::sync::Mutex<HashMap<String, Vec<Pooled>>>,
    /// Places in the engine's instance pool.
    permits: Arc<InstancePermits>,
    /// A worker's own allow-list (`--allow-outbound`): every request must
    /// pass it too. `None`: only the workflow's grants apply.
    outbound_allow: Option<Arc<crate::outbound::Grant>>,
    /// Run-wide outbound counters, by session.
    run_nets: crate::outbound::RunNets,
    _ticker: Ticker,
}

/// The error a store's epoch callback raises when the host stops a task.
#[derive(Debug)]
struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by the host after the interrupt grace period")
    }
}

impl std::error::Error for Aborted {}

impl Sandbox {
    /// A sandbox with `settings`, caching compiled modules in `cache_dir` (none: no cache).
    pub fn new(settings: &EngineSettings, cache_dir: Option<std::path::PathBuf>) -> wasmtime::Result<Sandbox> {
        let engine = config::build_engine(settings)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        clock::add_to_linker(&mut linker)?;
        host::TaskModule::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let cache = cache_dir.map(|d| cache::ModuleCache::new(d, &engine));
        let ticker = Ticker::start(&engine)?;
        Ok(Sandbox {
            permits: InstancePermits::new(settings.task_instances()),
            engine,
            linker,
            modules: Default::default(),
            cache,
            fuel: settings.fuel,
            settings: settings.clone(),
            abort: Arc::new(AtomicBool::new(false)),
            pool: Default::default(),
            outbound_allow: None,
            run_nets: Default::default(),
            _ticker: ticker,
        })
    }

    /// True if this sandbox's engine provides what `needs` asks: the same
    /// fuel setting, at least its memory and instances.
    pub fn suits(&self, needs: &EngineNeeds) -> bool {
        let want = EngineSettings::for_needs(needs);
        want.fuel == self.settings.fuel
            && want.max_memory_bytes <= self.settings.max_memory_bytes
            && want.max_instances <= self.settings.max_instances
    }

    /// A sandbox whose engine provides what a workflow needs (fuel, memory,
    /// concurrent instances): the one place a run's engine is sized.
    pub fn for_needs(needs: &EngineNeeds, cache_dir: Option<std::path::PathBuf>) -> wasmtime::Result<Sandbox> {
        Sandbox::new(&EngineSettings::for_needs(needs), cache_dir)
    }

    /// Intersect every task's outbound grant with `allow` (a worker's
    /// `--allow-outbound`; empty: nothing is reachable).
    pub fn set_outbound_allow(&mut self, allow: crate::outbound::Grant) {
        self.outbound_allow = Some(Arc::new(allow));
    }

    /// Setting this flag stops every running task at its next epoch tick (within
    /// about 10 ms); the engine queues such tasks again.
    pub fn abort_handle(&self) -> Arc<AtomicBool> {
        self.abort.clone()
    }

    /// Load module `name` from its code.
    pub fn load_module(&self, name: &str, code: &ModuleBytes) -> Result<ModuleInfo, ModuleLoadError> {
        let bytes = code.bytes();
        check_header(bytes)?;
        let component = self
            .compile(name, &code.digest().to_hex(), bytes)
            .map_err(|e| ModuleLoadError::NotAComponent(format!("{e:#}")))?;
        let instance_pre =
            self.linker.instantiate_pre(&component).map_err(|e| ModuleLoadError::Incompatible(format!("{e:#}")))?;
        let pre = TaskModulePre::new(instance_pre).map_err(|e| ModuleLoadError::Incompatible(format!("{e:#}")))?;
        let (tasks, workflow) = self.list_tasks(&pre).map_err(|e| {
            if let Some(d) = e.downcast_ref::<DeclarationError>() {
                return ModuleLoadError::Incompatible(d.0.clone());
            }
            let why = match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => format!(
                    "its `tasks` export did not return within the load time limit of {} s",
                    LOAD_TIME_LIMIT.as_secs()
                ),
                _ if e.downcast_ref::<MemoryLimitHit>().is_some() => {
                    format!("its `tasks` export hit the load memory limit of {} MiB", LOAD_MEMORY_LIMIT >> 20)
                }
                _ => format!("calling its `tasks` export failed: {e:#}"),
            };
            ModuleLoadError::Incompatible(why)
        })?;
        let uses_http = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name.starts_with("wasi:http/outgoing-handler"));
        self.modules_mut().insert(name.to_string(), Arc::new(LoadedModule { pre, code: code.clone(), uses_http }));
        Ok(ModuleInfo { sha256: code.digest(), size: code.len(), tasks, workflow })
    }

    /// True if module `name` is loaded.
    pub fn has_module(&self, name: &str) -> bool {
        self.modules_ref().contains_key(name)
    }

    /// The code of every loaded module, by name: what a checkpoint stores.
    pub fn module_code(&self) -> BTreeMap<String, ModuleBytes> {
        self.modules_ref().iter().map(|(k, m)| (k.clone(), m.code.clone())).collect()
    }

    fn modules_ref(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<LoadedModule>>> {
        self.modules.read().unwrap_or_else(|e| e.into_inner())
    }

    fn modules_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<LoadedModule>>> {
        self.modules.write().unwrap_or_else(|e| e.into_inner())
    }

    fn compile(&self, name: &str, sha256: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        use std::sync::atomic::Ordering::Relaxed;
        let started = Instant::now();
        let (component, hit) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, sha256, bytes)?,
            None => (Component::new(&self.engine, bytes)?, false),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if hit {
            COMPILE_CACHE.0.fetch_add(1, Relaxed);
            tracing::debug!("module '{name}': loaded from the compiled-module cache in {ms:.1} ms");
        } else {
            COMPILE_CACHE.1.fetch_add(1, Relaxed);
            let note = if self.cache.is_some() { " (cached for later runs)" } else { "" };
            tracing::info!("module '{name}': compiled {} bytes in {ms:.0} ms{note}", bytes.len());
        }
        Ok(component)
    }

    /// A WASI context granting only what `grants` lists (stdout and stderr
    /// captured unless inherited).
    fn wasi(grants: &Grants) -> Result<Wasi, String> {
        let stdout = Captured::default();
        let stderr = Captured::default();
        let mut wasi = WasiCtx::builder();
        match grants.stdio {
            Stdio::Log => wasi.stdout(stdout.clone()).stderr(stderr.clone()),
            Stdio::Inherit => wasi.stdout(std::io::stderr()).stderr(std::io::stderr()),
        };
        for dir in &grants.dirs {
            let perms = if dir.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| format!("granted directory {} cannot be opened: {e:#}", dir.host.display()))?;
        }
        for name in &grants.env {
            if let Ok(value) = std::env::var(name) {
                wasi.env(name, value);
            }
        }
        Ok(Wasi { ctx: wasi.build(), stdout, stderr })
    }

    /// A fresh store with `wasi`, the memory limiter and epoch interruption.
    fn store(&self, ctx: Option<TaskContext>, memory: u64, deadline: Instant, wasi: Wasi) -> Store<HostState> {
        let state = HostState {
            ctx,
            deadline,
            wasi: wasi.ctx,
            table: ResourceTable::new(),
            limiter: Limiter { memory: usize::try_from(memory).unwrap_or(usize::MAX) },
            abort: self.abort.clone(),
            stdout: wasi.stdout,
            stderr: wasi.stderr,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            hooks: Default::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store
    }

    /// Instantiate the component once, with nothing granted, and read its
    /// `tasks` and (WIT 0.1.3) `workflow` exports. A component without the
    /// `workflow` export declares nothing; one whose `workflow` export has
    /// another type, or declares settings for tasks it does not export, is
    /// refused ([`DeclarationError`]).
    fn list_tasks(&self, pre: &TaskModulePre<HostState>) -> wasmtime::Result<(Vec<TaskDecl>, DeclaredWorkflow)> {
        let wasi = Self::wasi(&Grants::default()).map_err(|e| wasmtime::format_err!("{e}"))?;
        let mut store = self.store(None, LOAD_MEMORY_LIMIT, Instant::now() + LOAD_TIME_LIMIT, wasi);
        store.set_epoch_deadline((LOAD_TIME_LIMIT.as_millis() / config::EPOCH_TICK.as_millis()) as u64);
        if self.fuel {
            store.set_fuel(u64::MAX)?;
        }
        let instance = pre.instance_pre().instantiate(&mut store)?;
        let module = host::TaskModule::new(&mut store, &instance)?;
        let decls = module.call_tasks(&mut store)?;
        if decls.len() > MAX_EXPORTED_TASKS {
            return Err(DeclarationError(format!(
                "its `tasks` export lists {} tasks, over the bound of {MAX_EXPORTED_TASKS} (MAX_EXPORTED_TASKS)",
                decls.len()
            ))
            .into());
        }
        let tasks: Vec<TaskDecl> = decls
            .into_iter()
            .map(|d| TaskDecl { name: d.name, inputs: d.inputs, description: d.description })
            .collect();
        if instance.get_export_index(&mut store, None, "workflow").is_none() {
            return Ok((tasks, DeclaredWorkflow::default()));
        }
        type WorkflowFn = wasmtime::component::TypedFunc<(), (host::WitWorkflowDecl,)>;
        let func: WorkflowFn = instance.get_typed_func(&mut store, "workflow").map_err(|e| {
            DeclarationError(format!("its `workflow` export does not have the type WIT 0.1.3 gives it: {e:#}"))
        })?;
        let (w,) = func.call(&mut store, ()).map_err(|e| {
            let why = match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => format!(
                    "its `workflow` export did not return within the load time limit of {} s",
                    LOAD_TIME_LIMIT.as_secs()
                ),
                // The trap, without the guest's backtrace: a declaration
                // the guest's own bindings could not lower (a number where
                // the contract has a string) ends here too.
                Some(trap) => format!("its `workflow` export trapped: {trap}"),
                _ if e.downcast_ref::<MemoryLimitHit>().is_some() => {
                    format!("its `workflow` export hit the load memory limit of {} MiB", LOAD_MEMORY_LIMIT >> 20)
                }
                _ => format!("calling its `workflow` export failed: {e:#}"),
            };
            DeclarationError(why)
        })?;
        let settings = w
            .tasks
            .into_iter()
            .map(|t| {
                let s = DeclaredSettings {
                    max_retries: t.max_retries,
                    max_cycles: t.max_cycles,
                    timeout_ms: t.timeout_ms,
                    memory_mb: t.memory_mb,
                    fuel: t.fuel,
                };
                (t.task, s)
            })
            .collect();
        let declared =
            DeclaredWorkflow::check(w.name, w.flow, w.max_steps, settings, &tasks).map_err(DeclarationError)?;
        Ok((tasks, declared))
    }
}

/// The most tasks one component's `tasks` export may list.
pub const MAX_EXPORTED_TASKS: usize = 10_000;

/// A component's `tasks` or `workflow` export returned something the host
/// refuses, or failed; the text says why, naming the export.
#[derive(Debug)]
struct DeclarationError(String);

impl std::fmt::Display for DeclarationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeclarationError {}

/// Tell a component from a core module or a file that is not WebAssembly.
fn check_header(bytes: &[u8]) -> Result<(), ModuleLoadError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(ModuleLoadError::NotAComponent("the file does not start with the WebAssembly magic number".into()));
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(ModuleLoadError::NotAComponent(
            "it is a core WebAssembly module; build for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)".into(),
        ));
    }
    Ok(())
}

impl ModuleExports for Sandbox {
    fn load(&mut self, name: &str, path: &Path, max_bytes: u64) -> Result<ModuleInfo, ModuleLoadError> {
        let code = ModuleBytes::read(path, max_bytes)?;
        self.load_module(name, &code)
    }
}

/// A live instance kept for a task with `reuse_instance`, with its store.
struct Pooled {
    store: Store<HostState>,
    instance: host::TaskModule,
    runs: u32,
    /// What the store was built with: only a task with the same grants and
    /// memory limit may take it.
    grants: Grants,
    memory: u64,
    /// Its place in the engine's instance pool (dropped after the store).
    _permit: Permit,
}

/// Idle instances kept per module.
const MAX_IDLE_PER_MODULE: usize = 8;

/// Runs after which a reused instance is dropped anyway, bounding what a guest
/// runtime can leak across runs.
const MAX_REUSE_RUNS: u32 = 1000;

impl Sandbox {
    /// A store and a new instance for one execution of `task`.
    fn fresh(&self, module: &LoadedModule, task: &TaskDef) -> Result<Pooled, TaskFailure> {
        let permit = match self.permits.try_acquire() {
            Some(p) => p,
            None => {
                // Idle reusable instances hold places too: let them go first.
                self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
                self.permits
                    .acquire(&self.abort)
                    .ok_or_else(|| TaskFailure::new(FailureKind::Aborted, Aborted.to_string()))?
            }
        };
        let failed = |m: String| TaskFailure::new(FailureKind::Failed, m);
        let wasi = Self::wasi(&task.grants).map_err(failed)?;
        let deadline = Instant::now() + Duration::from_millis(task.limits.timeout_ms);
        let mut store = self.store(None, task.limits.memory_bytes, deadline, wasi);
        let abort = self.abort.clone();
        store.epoch_deadline_callback(move |store| {
            if abort.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::new(Aborted));
            }
            if Instant::now() >= store.data().deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(1))
        });
        if self.fuel {
            store.set_fuel(u64::MAX).map_err(|e| failed(e.to_string()))?;
        }
        store.set_epoch_deadline(1);
        // The pool also bounds core instances, memories and tables; a
        // component with many of them can find it full with a place to
        // spare: then it waits, like for a place.
        let instance = loop {
            match module.pre.instantiate(&mut store) {
                Ok(i) => break i,
                Err(e) if format!("{e:#}").contains("concurrent limit") => {
                    if self.abort.load(Ordering::Relaxed) {
                        return Err(TaskFailure::new(FailureKind::Aborted, Aborted.to_string()));
                    }
                    self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(failed(format!("cannot instantiate module '{}': {e:#}", task.module))),
            }
        };
        Ok(Pooled {
            store,
            instance,
            runs: 0,
            grants: task.grants.clone(),
            memory: task.limits.memory_bytes,
            _permit: permit,
        })
    }

    /// The network state of one execution, if its task is granted origins.
    fn exec_net(&self, task: &TaskDef, ctx: &TaskContext, deadline: Instant) -> Option<Arc<crate::outbound::ExecNet>> {
        let policy = &ctx.workflow().outbound;
        policy.grant(&task.name)?;
        let who = crate::outbound::ExecIdentity {
            task_id: &ctx.info.task_id,
            task: &task.name,
            module: &task.module,
            session: &ctx.info.session_id,
        };
        crate::outbound::ExecNet::new(
            who,
            policy,
            self.outbound_allow.clone(),
            self.run_nets.of(&ctx.info.session_id),
            deadline,
            self.abort.clone(),
            ctx.listener(),
        )
    }

    fn take_pooled(&self, task: &TaskDef) -> Option<Pooled> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool.get_mut(&task.module)?;
        let i = idle.iter().rposition(|p| p.grants == task.grants && p.memory == task.limits.memory_bytes)?;
        Some(idle.swap_remove(i))
    }

    fn give_back(&self, task: &TaskDef, pooled: Pooled) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool.entry(task.module.clone()).or_default();
        if pooled.runs < MAX_REUSE_RUNS && idle.len() < MAX_IDLE_PER_MODULE && !self.permits.has_waiters() {
            idle.push(pooled);
        }
    }
}

impl TaskRunner for Sandbox {
    fn run(&self, task: &TaskDef, input: &Json, ctx: TaskContext) -> (TaskContext, Result<Json, TaskFailure>) {
        let module = self.modules_ref().get(&task.module).cloned();
        let Some(module) = module else {
            let failure = TaskFailure::new(FailureKind::Failed, format!("module '{}' is not loaded", task.module));
            return (ctx, Err(failure));
        };
        let pooled = if task.reuse_instance { self.take_pooled(task) } else { None };
        let mut p = match pooled.map_or_else(|| self.fresh(&module, task), Ok) {
            Ok(p) => p,
            Err(failure) => return (ctx, Err(failure)),
        };
        p.runs += 1;
        let max_value = ctx.bounds().max_value_bytes;
        let max_log = ctx.bounds().max_log_bytes;
        // What the guest may pass in one host call: our own bound decides
        // (with room for the key and the call's other arguments), so an
        // over-large value is refused with an error naming it.
        p.store.set_hostcall_fuel(usize::try_from(max_value.saturating_add(1 << 20)).unwrap_or(usize::MAX));
        let deadline = Instant::now() + Duration::from_millis(task.limits.timeout_ms);
        let net = self.exec_net(task, &ctx, deadline);
        let data = p.store.data_mut();
        data.ctx = Some(ctx);
        data.deadline = deadline;
        data.hooks.who = (module.uses_http && net.is_none()).then(|| (task.name.clone(), task.module.clone()));
        data.hooks.refused = 0;
        data.hooks.net = net;
        let outcome = (|| {
            // Every run sets its own budget: a reused instance must not keep
            // what an earlier task with a budget left.
            if self.fuel {
                p.store.set_fuel(task.limits.fuel.unwrap_or(u64::MAX))?;
            }
            p.store.set_epoch_deadline(1);
            p.instance.call_run(&mut p.store, &task.export, &input.as_str().to_owned())
        })();
        let trapped = outcome.is_err();
        let result = match outcome {
            Ok(Ok(output)) if output.len() as u64 > max_value => Err(TaskFailure::new(
                FailureKind::HostBound,
                format!("the task returned {} bytes, over the bound max_value_bytes = {max_value} bytes", output.len()),
            )),
            Ok(Ok(output)) => Json::parse(output).map_err(|e| {
                TaskFailure::new(FailureKind::Failed, format!("the task returned text that is not JSON: {e}"))
            }),
            // A guest's message is cut like a log line: it is kept in the
            // queue (retries), logged and checkpointed.
            Ok(Err(host::graflow::task::types::TaskError::Failed(m))) => {
                Err(TaskFailure::new(FailureKind::Failed, cut(&m, max_log)))
            }
            Ok(Err(host::graflow::task::types::TaskError::Retryable(m))) => {
                Err(TaskFailure::new(FailureKind::Retryable, cut(&m, max_log)))
            }
            Err(error) => Err(classify(&error, task, max_value, &p.store.data().stderr)),
        };
        // A request found the task must fail (a key missing on this machine).
        let net_failure = p.store.data_mut().hooks.net.take().and_then(|n| n.failure());
        let result = match net_failure {
            Some(why) => Err(TaskFailure::new(FailureKind::Failed, why)),
            None => result,
        };
        let data = p.store.data_mut();
        let Some(ctx) = data.ctx.take() else {
            // The context is put in the store above and only taken here.
            unreachable!("the task context stays in the store while the task runs")
        };
        if task.grants.stdio == Stdio::Log {
            data.emit_output(&ctx);
        }
        // A trapped instance may be in any state: it is never reused.
        if task.reuse_instance && !trapped {
            self.give_back(task, p);
        }
        (ctx, result)
    }
}

/// Turn a wasmtime error (a trap, a limit, a host-call abort) into a typed failure.
fn classify(error: &wasmtime::Error, task: &TaskDef, max_value: u64, stderr: &Captured) -> TaskFailure {
    if error.downcast_ref::<Aborted>().is_some() {
        return TaskFailure::new(FailureKind::Aborted, Aborted.to_string());
    }
    if let Some(hit) = error.downcast_ref::<MemoryLimitHit>() {
        return TaskFailure::new(FailureKind::Memory, hit.to_string());
    }
    if format!("{error:#}").contains("fuel allocated for hostcalls") {
        return TaskFailure::new(
            FailureKind::HostBound,
            format!("a value passed to the host exceeds the bound max_value_bytes = {max_value} bytes"),
        );
    }
    let guest_said = String::from_utf8_lossy(&stderr.contents()).trim().to_string();
    let said = if guest_said.is_empty() {
        String::new()
    } else {
        format!("; the guest wrote: {}", crate::engine::one_line(&last_lines(&guest_said, 5)))
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            TaskFailure::new(FailureKind::Timeout, format!("time limit of {} ms exceeded", task.limits.timeout_ms))
        }
        Some(Trap::OutOfFuel) => TaskFailure::new(
            FailureKind::OutOfFuel,
            format!("fuel budget of {} exhausted", task.limits.fuel.unwrap_or(0)),
        ),
        Some(trap) => TaskFailure::new(FailureKind::Trap, format!("{trap}{said}")),
        None => TaskFailure::new(FailureKind::Trap, format!("{error:#}{said}")),
    }
}

/// A guest's message made one line ([`crate::engine::one_line`]) and cut to
/// `max` bytes, with a marker saying how much was cut.
fn cut(text: &str, max: u64) -> String {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let text = crate::engine::one_line(text);
    if text.len() <= max {
        return text.into_owned();
    }
    let at = text.floor_char_boundary(max);
    format!("{}... [{} more bytes cut]", &text[..at], text.len() - at)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
