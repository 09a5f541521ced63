//! One library entry point for a run: [`Session::start`] a run from a workflow
//! file, or [`Session::resume`] one from a checkpoint; then [`Session::run`] it
//! to its end. The session sizes the wasm engine once (from
//! [`EngineNeeds`]), loads module code (hashed once, when read), and hands the
//! engine its runner, channel and checkpoint sink; the engine writes every
//! kind of checkpoint. The CLI, the tests and the benchmarks all run through
//! here.

use crate::channel::MemoryChannel;
use crate::checkpoint::{self, CheckpointError, CheckpointStore, Loaded, SignatureStatus, SigningKey, Trust};
use crate::digest::Sha256;
use crate::engine::{CheckpointSink, Engine, NoCheckpoints, RunError, RunReport, RunState};
use crate::json::Json;
use crate::model::{EngineNeeds, LoadError, ModuleLoadError, ModuleRef, Workflow, WorkflowFile};
use crate::module_store::{ModuleBytes, ModuleStore, StoreError};
use crate::sandbox::Sandbox;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How a run is carried out (the same for a start and a resume).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The compiled-module cache (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Where a started run writes checkpoints (`None`: a checkpoint request
    /// fails the run). A resume writes beside the checkpoint it resumes.
    pub checkpoint_dir: Option<PathBuf>,
    /// Also checkpoint after every N completed tasks.
    pub checkpoint_every: Option<u64>,
    /// Write those automatic checkpoints behind the run instead of waiting
    /// for each (see [`crate::engine::Engine::write_behind`]).
    pub write_behind: bool,
    /// Stop (and checkpoint) once this many tasks completed in the whole run,
    /// instead of the workflow's `max_steps`.
    pub max_steps: Option<u64>,
    /// The run's id (a new random one when `None`).
    pub session_id: Option<String>,
    /// The key that signs and verifies checkpoints (this machine's key,
    /// made on first use, when `None`).
    pub key: Option<SigningKey>,
    /// Where the run's events go (besides the journal kept beside the
    /// checkpoints).
    pub listener: crate::engine::Listener,
    /// Run the tasks on workers through Redis (`--redis`); `None`: in this
    /// process.
    pub redis: Option<crate::distributed::RedisOptions>,
    /// Create the journal of a started run only once its session folder
    /// exists (it wrote a checkpoint or a feedback request), keeping its
    /// events in memory until then ([`crate::journal::Journal::deferred`]):
    /// for a checkpoint directory the user did not ask for (the CLI's
    /// default), so a run that writes nothing leaves nothing there.
    pub defer_journal: bool,
    /// The run span's trace context (when the run is traced), recorded in
    /// its checkpoints.
    pub trace: Option<crate::engine::TraceParent>,
    /// Retention (`--keep-checkpoints`): overrides the workflow's
    /// `keep_checkpoints` (and a resumed checkpoint's).
    pub keep_checkpoints: Option<u64>,
    /// The bucket checkpoints, feedback requests and the journal are
    /// published to (`--checkpoint-dir s3://...`, or a resume of a
    /// checkpoint in a bucket): `checkpoint_dir` (for a resume, the
    /// checkpoint's folder) is then its working copy on this machine.
    pub bucket: Option<Arc<crate::storage::Bucket>>,
}

/// What a resume does when a module's file changed since the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModuleChange {
    /// Refuse: resuming would run other code than the checkpoint recorded.
    #[default]
    Refuse,
    /// Run the new code, and record its digest (and store its bytes) in every
    /// later checkpoint (`--allow-module-change`).
    Allow,
}

/// How a checkpoint is resumed.
#[derive(Debug, Clone, Copy)]
pub struct ResumeOptions {
    /// What to do when a module changed.
    pub module_change: ModuleChange,
    /// Whether a checkpoint not signed by this machine's key may be resumed.
    pub trust: Trust,
    /// Called with the checkpoint, its signature status and what it would run
    /// and grant ([`describe_grants`]) when a checkpoint that is not signed by
    /// this machine's key is resumed, before any of its code is loaded.
    pub on_untrusted: Option<fn(&Path, &SignatureStatus, &str)>,
    /// Replay the durable records written after the checkpoint (the
    /// default); `false` resumes the checkpoint's own state.
    pub replay_records: bool,
}

impl Default for ResumeOptions {
    fn default() -> Self {
        ResumeOptions {
            module_change: ModuleChange::Refuse,
            trust: Trust::Signed,
            on_untrusted: None,
            replay_records: true,
        }
    }
}

/// Why a run could not be started or resumed. Each names the thing at fault.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The workflow file was refused.
    #[error(transparent)]
    Workflow(#[from] LoadError),
    /// The checkpoint was refused.
    #[error(transparent)]
    Checkpoint(Box<CheckpointError>),
    /// The wasm engine could not be built.
    #[error("cannot start the wasm engine: {0}")]
    Engine(String),
    /// An option has a value that cannot work.
    #[error("{0}")]
    Option(String),
    /// A module of a checkpoint could not be loaded.
    #[error("module '{module}'")]
    Module {
        /// The module.
        module: String,
        /// Why.
        source: ModuleLoadError,
    },
    /// A module's file changed since the checkpoint and the change is refused.
    #[error(
        "module '{module}' changed: the checkpoint recorded sha256 {expected}, but {} has sha256 {found}; \
         resuming would run different code (pass --allow-module-change to resume with it anyway)",
        path.display()
    )]
    ModuleChanged {
        /// The module.
        module: String,
        /// The digest the checkpoint recorded.
        expected: Sha256,
        /// The digest of the file now.
        found: Sha256,
        /// The file.
        path: PathBuf,
    },
    /// Neither the module store nor the original path has the recorded code.
    #[error(
        "module '{module}' (sha256 {sha256}) is missing: it is not at {} and the checkpoint directory has no copy",
        original.display()
    )]
    ModuleMissing {
        /// The module.
        module: String,
        /// Its digest.
        sha256: Sha256,
        /// The original path.
        original: PathBuf,
        /// What the module store said.
        source: Box<StoreError>,
    },
    /// Redis could not be used for a distributed run.
    #[error(transparent)]
    Redis(#[from] crate::distributed::RedisError),
    /// A module no longer exports a task the checkpoint needs.
    #[error("module '{module}' no longer exports task '{export}' (task '{task}')")]
    NotExported {
        /// The module.
        module: String,
        /// The export.
        export: String,
        /// The task.
        task: String,
    },
}

impl From<CheckpointError> for SessionError {
    fn from(e: CheckpointError) -> Self {
        SessionError::Checkpoint(Box::new(e))
    }
}

/// Stops a running session: no new task starts; after the grace period,
/// running tasks are stopped (and queued again).
#[derive(Clone)]
pub struct StopHandle {
    interrupt: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
}

impl StopHandle {
    /// Ask the run to stop at the next task boundary (where it checkpoints),
    /// giving running tasks `grace` to finish.
    pub fn stop(&self, grace: Duration) {
        if self.interrupt.swap(true, Ordering::SeqCst) {
            return;
        }
        let abort = self.abort.clone();
        let spawned = std::thread::Builder::new().name("graflow-grace".into()).spawn(move || {
            std::thread::sleep(grace);
            abort.store(true, Ordering::SeqCst);
        });
        if spawned.is_err() {
            self.abort.store(true, Ordering::SeqCst);
        }
    }

    /// True once a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }
}

/// A run ready to go: its workflow, loaded modules, state, channel and sink.
pub struct Session {
    workflow: Arc<Workflow>,
    sandbox: Sandbox,
    state: RunState,
    channel: Arc<MemoryChannel>,
    sink: Box<dyn CheckpointSink>,
    checkpoint_dir: Option<PathBuf>,
    interrupt: Arc<AtomicBool>,
    checkpoint_every: Option<u64>,
    write_behind: bool,
    max_steps: Option<u64>,
    warnings: Vec<String>,
    resumed: Option<Resumed>,
    listener: crate::engine::Listener,
    redis: Option<crate::distributed::RedisOptions>,
    coordinator: Option<crate::distributed::Coordinator>,
    feedback: Arc<dyn crate::feedback::FeedbackDesk>,
    defer_journal: bool,
    bucket: Option<Arc<crate::storage::Bucket>>,
}

/// Where a run keeps feedback requests: beside its checkpoints (in the
/// bucket when they are published to one), or nowhere (requests are
/// refused) without a checkpoint directory.
fn default_desk(
    dir: Option<&Path>,
    bucket: Option<&Arc<crate::storage::Bucket>>,
) -> Arc<dyn crate::feedback::FeedbackDesk> {
    match (dir, bucket) {
        (_, Some(b)) => Arc::new(crate::feedback::FileDesk::on(b.clone())),
        (Some(d), None) => Arc::new(crate::feedback::FileDesk::new(d)),
        (None, None) => Arc::new(crate::feedback::NoDesk),
    }
}

/// About the checkpoint a session resumes.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// Its base path.
    pub base: PathBuf,
    /// Its id.
    pub checkpoint_id: String,
    /// What its signature says.
    pub signature: SignatureStatus,
    /// The trace context of the run that wrote it, if that run was traced.
    pub trace: Option<crate::engine::TraceParent>,
}

/// A new run id: 32 hex digits.
pub fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn engine_error(e: wasmtime::Error) -> SessionError {
    SessionError::Engine(format!("{e:#}"))
}

fn check_options(opts: &RunOptions) -> Result<(), SessionError> {
    if opts.max_steps == Some(0) {
        return Err(SessionError::Option("--max-steps must be at least 1".into()));
    }
    if opts.checkpoint_every == Some(0) {
        return Err(SessionError::Option("--checkpoint-every must be at least 1".into()));
    }
    if opts.keep_checkpoints == Some(0) {
        return Err(SessionError::Option(
            "--keep-checkpoints must be at least 1 (the newest checkpoint is always kept)".into(),
        ));
    }
    if let Some(id) = &opts.session_id
        && !checkpoint::schema::is_valid_id(id)
    {
        return Err(SessionError::Option(format!("'{id}' is not a valid session id")));
    }
    Ok(())
}

impl Session {
    /// Start a run of the workflow file at `path` with `input`.
    /// `path` is a workflow file, or a component (`.wasm`) that declares its
    /// own workflow ([`WorkflowFile::open`]).
    pub fn start(path: &Path, input: Json, opts: RunOptions) -> Result<Session, SessionError> {
        check_options(&opts)?;
        Session::start_file(WorkflowFile::open(path)?, input, opts)
    }

    /// Start a run of a parsed workflow file (or of a component alone,
    /// [`WorkflowFile::for_component`]) with `input`.
    pub fn start_file(file: WorkflowFile, input: Json, opts: RunOptions) -> Result<Session, SessionError> {
        check_options(&opts)?;
        let mut sandbox = Sandbox::for_needs(&file.needs(), opts.cache_dir.clone()).map_err(engine_error)?;
        let workflow = file.resolve(&mut sandbox)?;
        // What a component declares (fuel, a larger memory, a wide flow) may
        // need an engine the file alone did not show: load again into one
        // sized for the resolved workflow (compiled code comes from the cache).
        if !sandbox.suits(&EngineNeeds::of(&workflow)) {
            return Session::from_workflow(workflow, input, opts);
        }
        Session::new(workflow, sandbox, input, opts)
    }

    /// Start a run of a workflow built in code (benchmarks, tests): its modules
    /// are read from their paths and must have the digests it records.
    pub fn from_workflow(workflow: Workflow, input: Json, opts: RunOptions) -> Result<Session, SessionError> {
        check_options(&opts)?;
        let sandbox = Sandbox::for_needs(&EngineNeeds::of(&workflow), opts.cache_dir.clone()).map_err(engine_error)?;
        for (name, m) in &workflow.modules {
            let module_err = |source| SessionError::Module { module: name.clone(), source };
            let code = ModuleBytes::read(&m.path, workflow.settings.bounds.max_module_bytes)
                .map_err(|e| module_err(e.into()))?;
            if code.digest() != m.sha256 {
                return Err(SessionError::ModuleChanged {
                    module: name.clone(),
                    expected: m.sha256,
                    found: code.digest(),
                    path: m.path.clone(),
                });
            }
            sandbox.load_module(name, &code).map_err(module_err)?;
        }
        Session::new(workflow, sandbox, input, opts)
    }

    fn new(mut workflow: Workflow, sandbox: Sandbox, input: Json, opts: RunOptions) -> Result<Session, SessionError> {
        if opts.keep_checkpoints.is_some() {
            workflow.settings.keep_checkpoints = opts.keep_checkpoints;
        }
        let max = workflow.settings.bounds.max_value_bytes;
        if input.len() as u64 > max {
            return Err(SessionError::Option(format!(
                "the run input has {} bytes, over the bound max_value_bytes = {max} bytes",
                input.len()
            )));
        }
        let session_id = opts.session_id.clone().unwrap_or_else(new_session_id);
        if input.is_object() {
            warn_missing_start_inputs(&workflow, &input);
        }
        let state = RunState::new(&workflow, session_id, input);
        let sink: Box<dyn CheckpointSink> = match &opts.checkpoint_dir {
            Some(dir) => Box::new(
                CheckpointStore::new(dir, sandbox.module_code(), opts.key.clone())
                    .with_trace(opts.trace)
                    .publishing_to(opts.bucket.clone()),
            ),
            None => Box::new(NoCheckpoints),
        };
        Session {
            workflow: Arc::new(workflow),
            sandbox,
            state,
            channel: Arc::new(MemoryChannel::default()),
            sink,
            feedback: default_desk(opts.checkpoint_dir.as_deref(), opts.bucket.as_ref()),
            checkpoint_dir: opts.checkpoint_dir,
            interrupt: Arc::new(AtomicBool::new(false)),
            checkpoint_every: opts.checkpoint_every,
            write_behind: opts.write_behind,
            max_steps: opts.max_steps,
            warnings: Vec::new(),
            resumed: None,
            listener: opts.listener,
            redis: opts.redis,
            coordinator: None,
            defer_journal: opts.defer_journal,
            bucket: opts.bucket,
        }
        .connected()
    }

    /// Resume the run checkpointed at `path` (its base path or any of its
    /// files). Its checkpoints go beside it; `opts.checkpoint_dir` is ignored.
    pub fn resume(path: &Path, resume: ResumeOptions, opts: RunOptions) -> Result<Session, SessionError> {
        check_options(&opts)?;
        if path.is_dir() {
            return Err(CheckpointError::IsDirectory { path: path.to_path_buf() }.into());
        }
        let key = match opts.key.clone() {
            Some(k) => k,
            None => SigningKey::load_or_create().map_err(CheckpointError::from)?,
        };
        // The checkpoint's own folder is `<dir>/<session>`: from it follows
        // where new checkpoints and module copies go, wherever the user is.
        let base = checkpoint::base_of(path);
        let base = std::path::absolute(&base).unwrap_or(base);
        // Links are not followed: a linked session folder or commit record
        // would make resume write beside the link's target.
        for p in
            [base.parent().map(Path::to_path_buf), Some(checkpoint::with_ext(&base, "meta.json"))].into_iter().flatten()
        {
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(CheckpointError::NotRegular { path: p }.into());
            }
        }
        let root = checkpoint::root_of(&base);
        let shared = checkpoint::DirLock::shared(&root)?;
        let Loaded { base, meta, signature, mut context, chain_base, .. } =
            checkpoint::load(&base, &key, resume.trust)?;
        if base.parent().and_then(Path::file_name).is_none_or(|n| n != meta.session_id.as_str()) {
            return Err(CheckpointError::NotInDirectory { path: base, session: meta.session_id }.into());
        }
        // The durable records the run wrote after this checkpoint
        // (write-behind): replayed over it, so the resume starts at the last
        // boundary that was durable, not at the checkpoint.
        if let Some(log) = meta.records.as_ref().filter(|_| resume.replay_records) {
            if matches!(signature, SignatureStatus::Valid { .. }) {
                let folder = base.parent().unwrap_or(Path::new("."));
                let checkpoint::Context { workflow, state, channel, .. } = &mut context;
                if let Some(r) = checkpoint::records::replay(folder, log, &key, workflow, state, channel)?
                    && r.records > 0
                {
                    tracing::info!(
                        "replayed {} durable record{} of {} after checkpoint {} (step {}): resuming at step {}",
                        r.records,
                        if r.records == 1 { "" } else { "s" },
                        r.path.display(),
                        meta.checkpoint_id,
                        meta.steps,
                        r.steps
                    );
                }
            } else {
                tracing::warn!(
                    "the durable records of an unverified checkpoint are not replayed: resuming at its own step"
                );
            }
        }
        let mut workflow = context.workflow;
        // A retention rule removes files: only a signed record's is honoured
        // (an untrusted one runs with the command line's rule, or none).
        if !matches!(signature, SignatureStatus::Valid { .. }) {
            workflow.settings.keep_checkpoints = None;
        }
        // A budget the checkpoint already used up would stop the run at once
        // with a copy of this checkpoint: refuse it before anything runs.
        let max_steps = opts.max_steps.unwrap_or(workflow.settings.max_steps);
        let steps = context.state.steps;
        if steps >= max_steps {
            return Err(SessionError::Option(match opts.max_steps {
                Some(n) => format!(
                    "--max-steps {n} allows no more tasks: checkpoint {} already has {steps} completed tasks \
                     (max_steps counts the whole run); pass a --max-steps above {steps}",
                    meta.checkpoint_id
                ),
                None => format!(
                    "checkpoint {} already has {steps} completed tasks, the workflow's max_steps = {max_steps}; \
                     pass a --max-steps above {steps} to allow more",
                    meta.checkpoint_id
                ),
            }));
        }
        if opts.keep_checkpoints.is_some() {
            workflow.settings.keep_checkpoints = opts.keep_checkpoints;
        }
        if let (Some(notify), false) = (resume.on_untrusted, matches!(signature, SignatureStatus::Valid { .. })) {
            // Before any of its code is compiled or run.
            notify(&base, &signature, &describe_grants(&workflow));
        }
        let sandbox = Sandbox::for_needs(&EngineNeeds::of(&workflow), opts.cache_dir.clone()).map_err(engine_error)?;
        let store = ModuleStore::of_checkpoints(&root);
        let mut warnings = Vec::new();
        let recorded_modules: Vec<(String, ModuleRef)> =
            workflow.modules.iter().map(|(k, m)| (k.clone(), m.clone())).collect();
        for (name, recorded) in recorded_modules {
            let (code, warning) = module_code(&store, &name, &recorded, resume.module_change, &workflow)?;
            let tasks = sandbox
                .load_module(&name, &code)
                .map_err(|source| SessionError::Module { module: name.clone(), source })?
                .tasks;
            for def in workflow.tasks.values().filter(|d| d.module == name) {
                if !tasks.iter().any(|t| t.name == def.export) {
                    return Err(SessionError::NotExported {
                        module: name.clone(),
                        export: def.export.clone(),
                        task: def.name.clone(),
                    });
                }
            }
            if let Some(w) = warning {
                warnings.push(w);
                // Every later checkpoint records the code that actually runs.
                workflow
                    .modules
                    .insert(name.clone(), ModuleRef { path: recorded.path, sha256: code.digest(), size: code.len() });
            }
        }
        drop(shared);
        // Later checkpoints are increments over the full checkpoint this one
        // is (or is written over), while they qualify.
        let sink = CheckpointStore::new(&root, sandbox.module_code(), Some(key))
            .continuing(chain_base)
            .with_trace(opts.trace)
            .resumed_at(meta.steps)
            .publishing_to(opts.bucket.clone());
        if let Some(bucket) = &opts.bucket
            && let Err(e) = checkpoint::remote::pull_journal(bucket, &meta.session_id)
        {
            tracing::warn!("the run's journal was not downloaded: {}", crate::error_chain(&e));
        }
        Session {
            workflow: Arc::new(workflow),
            sandbox,
            state: context.state,
            channel: Arc::new(MemoryChannel::from_map(context.channel)),
            sink: Box::new(sink),
            feedback: default_desk(Some(&root), opts.bucket.as_ref()),
            checkpoint_dir: Some(root),
            interrupt: Arc::new(AtomicBool::new(false)),
            checkpoint_every: opts.checkpoint_every,
            write_behind: opts.write_behind,
            max_steps: opts.max_steps,
            warnings,
            resumed: Some(Resumed { base, checkpoint_id: meta.checkpoint_id, signature, trace: meta.trace }),
            listener: opts.listener,
            redis: opts.redis,
            coordinator: None,
            // The session folder exists: the checkpoint resumed is in it.
            defer_journal: false,
            bucket: opts.bucket,
        }
        .connected()
    }

    /// For a distributed run: connect to Redis, upload the modules and the
    /// workflow, and put the channel in place (a resume restores the
    /// checkpoint's channel there).
    fn connected(mut self) -> Result<Session, SessionError> {
        self.connect_redis()?;
        Ok(self)
    }

    fn connect_redis(&mut self) -> Result<(), SessionError> {
        if let Some(opts) = &self.redis {
            let coordinator = crate::distributed::Coordinator::connect(
                opts,
                &self.workflow,
                &self.state,
                &self.sandbox.module_code(),
                &self.channel.snapshot(),
                self.interrupt.clone(),
                self.sandbox.abort_handle(),
            )?;
            tracing::info!("tasks run on the workers of {}", coordinator.url());
            self.coordinator = Some(coordinator);
        }
        Ok(())
    }

    /// Keep the tasks' feedback requests and answers at `desk` instead of
    /// beside the checkpoints (a terminal prompt, Redis).
    pub fn set_feedback_desk(&mut self, desk: Arc<dyn crate::feedback::FeedbackDesk>) {
        self.feedback = desk;
    }

    /// Where the tasks' feedback requests and answers are kept.
    pub fn feedback_desk(&self) -> Arc<dyn crate::feedback::FeedbackDesk> {
        self.feedback.clone()
    }

    /// The coordinator of a distributed run.
    pub fn coordinator(&self) -> Option<&crate::distributed::Coordinator> {
        self.coordinator.as_ref()
    }

    /// The workflow being run.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// The run state (at the last task boundary).
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The channel.
    pub fn channel(&self) -> &Arc<MemoryChannel> {
        &self.channel
    }

    /// The sandbox that runs the tasks.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Where checkpoints go.
    pub fn checkpoint_dir(&self) -> Option<&Path> {
        self.checkpoint_dir.as_deref()
    }

    /// Warnings from loading (a module that changed and is run anyway).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The checkpoint this session resumes, if it does.
    pub fn resumed(&self) -> Option<&Resumed> {
        self.resumed.as_ref()
    }

    /// What the run will execute and grant (see [`describe_grants`]).
    pub fn describe_grants(&self) -> String {
        describe_grants(&self.workflow)
    }

    /// Make this session a new run of the same workflow with `input` (same
    /// session id, same loaded modules, an empty channel): for running one
    /// workflow many times (benchmarks, tests).
    pub fn restart(&mut self, input: Json) -> Result<(), SessionError> {
        self.state = RunState::new(&self.workflow, self.state.session_id.clone(), input);
        self.channel = Arc::new(MemoryChannel::default());
        self.interrupt.store(false, Ordering::SeqCst);
        self.sandbox.abort_handle().store(false, Ordering::SeqCst);
        self.coordinator = None;
        self.connect_redis()
    }

    /// A handle that stops this run (signals, a timeout, another thread).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { interrupt: self.interrupt.clone(), abort: self.sandbox.abort_handle() }
    }

    /// Run to the end: until the queue drains, a task terminates, cancels or
    /// fails, `max_steps` is reached (checkpointed), or a stop is asked for
    /// (checkpointed at the task boundary).
    pub fn run(&mut self) -> Result<RunReport, RunError> {
        if self.redis.is_some()
            && self.coordinator.is_none()
            && let Err(e) = self.connect_redis()
        {
            return Err(RunError::Stopped { reason: crate::error_chain(&e), checkpoint: None });
        }
        let mut listeners: Vec<Arc<dyn crate::engine::RunListener>> = self.listener.0.iter().cloned().collect();
        if let Some(dir) = &self.checkpoint_dir {
            if self.defer_journal {
                listeners.push(Arc::new(crate::journal::Journal::deferred(dir, &self.state.session_id)));
            } else {
                match crate::journal::Journal::open(dir, &self.state.session_id) {
                    Ok(journal) => listeners.push(Arc::new(journal)),
                    Err(e) => tracing::warn!("no journal of this run's events: {e}"),
                }
            }
        }
        let listener = match listeners.len() {
            0 => crate::engine::Listener::default(),
            1 => crate::engine::Listener(listeners.pop()),
            _ => crate::engine::Listener(Some(Arc::new(crate::engine::Fanout(listeners)))),
        };
        let runner: &dyn crate::engine::TaskRunner = match &self.coordinator {
            Some(c) => c,
            None => &self.sandbox,
        };
        let mut engine = Engine::new(self.workflow.clone(), runner)
            .with_interrupt(self.interrupt.clone())
            .checkpoint_every(self.checkpoint_every)
            .write_behind(self.write_behind)
            .max_steps(self.max_steps)
            .with_listener(listener)
            .with_feedback(self.feedback.clone());
        if let Some(c) = &self.coordinator {
            engine = engine.with_root_channel(c.root_channel(self.channel.clone()));
        }
        let outcome = engine.run(&mut self.state, &self.channel, self.sink.as_mut());
        drop(engine);
        if let Some(bucket) = &self.bucket
            && let Some(dir) = &self.checkpoint_dir
            && crate::journal::path_of(dir, &self.state.session_id).exists()
            && let Err(e) = checkpoint::remote::push_journal(bucket, &self.state.session_id)
        {
            tracing::warn!("the run's journal was not uploaded: {}", crate::error_chain(&e));
        }
        // A coordinator serves one run: the next `run` connects anew.
        let Some(c) = self.coordinator.take() else { return outcome };
        c.finish();
        match (c.stop_reason(), outcome) {
            // The backend's stop is why the run was interrupted; any other
            // outcome (completed, failed) stands.
            (Some(reason), Ok(RunReport { status: crate::engine::RunStatus::Interrupted(w), .. })) => {
                Err(RunError::Stopped { reason, checkpoint: Some(w) })
            }
            (Some(reason), Err(RunError::Checkpoint { .. })) => Err(RunError::Stopped { reason, checkpoint: None }),
            (_, outcome) => outcome,
        }
    }
}

/// Before anything runs: the start task's declared inputs can only come from
/// the run input; say which it lacks (the task may treat them as optional).
fn warn_missing_start_inputs(workflow: &Workflow, input: &Json) {
    let mut starts = vec![workflow.start.as_str()];
    if let Some(crate::model::Node::Group(g)) = workflow.graph.nodes.get(&workflow.start) {
        starts = g.members.iter().map(String::as_str).collect();
    }
    let present: BTreeMap<String, serde::de::IgnoredAny> = serde_json::from_str(input.as_str()).unwrap_or_default();
    for name in starts {
        let Some(task) = workflow.tasks.get(name) else { continue };
        for missing in task.inputs.iter().filter(|i| !present.contains_key(*i)) {
            tracing::info!(
                "task '{name}' runs first and declares the input '{missing}', which the run input does not give \
                 (fine if the task treats it as optional)"
            );
        }
    }
}

/// What a workflow runs and grants: modules with their digests, granted
/// directories with their modes, environment variable names, inherited stdio;
/// one line each.
pub fn describe_grants(workflow: &Workflow) -> String {
    let mut out = String::new();
    for (name, m) in &workflow.modules {
        out.push_str(&format!("  module {}: sha256 {} ({} bytes)\n", name.escape_debug(), m.sha256, m.size));
    }
    for (name, t) in &workflow.tasks {
        for d in &t.grants.dirs {
            let mode = if d.writable { "read-write" } else { "read-only" };
            out.push_str(&format!(
                "  task {}: directory {} as {} ({mode})\n",
                name.escape_debug(),
                d.host.display().to_string().escape_debug(),
                d.guest.escape_debug()
            ));
        }
        if !t.grants.env.is_empty() {
            out.push_str(&format!(
                "  task {}: environment variables {}\n",
                name.escape_debug(),
                t.grants.env.join(", ").escape_debug()
            ));
        }
        if t.grants.stdio == crate::model::Stdio::Inherit {
            out.push_str(&format!("  task {}: writes to this terminal (stdio = inherit)\n", name.escape_debug()));
        }
        if let Some(g) = workflow.outbound.grant(name) {
            let allow: Vec<String> = g.allow.iter().map(|p| p.to_string()).collect();
            out.push_str(&format!("  task {}: network {}\n", name.escape_debug(), allow.join(", ").escape_debug()));
            if !g.allow_networks.is_empty() {
                let nets: Vec<String> = g.allow_networks.iter().map(|n| String::from(n.clone())).collect();
                out.push_str(&format!("  task {}: inward networks {}\n", name.escape_debug(), nets.join(", ")));
            }
        }
    }
    for h in workflow.outbound.injected_headers() {
        out.push_str(&format!(
            "  header {} from environment variable {} attached to {}\n",
            h.name,
            h.var.escape_debug(),
            h.origin.to_string().escape_debug()
        ));
    }
    out
}

/// The code to resume module `name` with: the file at its original path if it
/// is the recorded code (or if changes are allowed: then with a warning),
/// else the verified copy in the module store.
fn module_code(
    store: &ModuleStore,
    name: &str,
    recorded: &ModuleRef,
    change: ModuleChange,
    workflow: &Workflow,
) -> Result<(ModuleBytes, Option<String>), SessionError> {
    // The module bound, never more than its default whatever a checkpoint says.
    let limit = workflow.settings.bounds.max_module_bytes.min(crate::module_store::DEFAULT_MAX_MODULE_BYTES);
    match ModuleBytes::read(&recorded.path, limit) {
        Ok(code) if code.digest() == recorded.sha256 => return Ok((code, None)),
        Ok(code) => {
            if change == ModuleChange::Refuse {
                return Err(SessionError::ModuleChanged {
                    module: name.into(),
                    expected: recorded.sha256,
                    found: code.digest(),
                    path: recorded.path.clone(),
                });
            }
            let warning = format!(
                "module '{name}' changed since the checkpoint (sha256 {} then, {} now); resuming with the new code of {}, \
                 and later checkpoints record it",
                recorded.sha256,
                code.digest(),
                recorded.path.display()
            );
            return Ok((code, Some(warning)));
        }
        Err(e) if e.is_not_found() => {}
        Err(e @ (crate::files::ReadError::NotAFile { .. } | crate::files::ReadError::TooLarge { .. })) => {
            tracing::warn!("{e}; resuming module '{name}' with the copy the checkpoint recorded");
        }
        Err(e) => return Err(SessionError::Module { module: name.into(), source: e.into() }),
    }
    match store.get(&recorded.sha256, recorded.size) {
        Ok(code) => Ok((code, None)),
        Err(source @ StoreError::Missing { .. }) => Err(SessionError::ModuleMissing {
            module: name.into(),
            sha256: recorded.sha256,
            original: recorded.path.clone(),
            source: Box::new(source),
        }),
        Err(e) => Err(CheckpointError::Store(Box::new(e)).into()),
    }
}

/// What [`BTreeMap`] of module code a checkpoint store gets (re-exported for
/// callers that build stores themselves).
pub type ModuleCode = BTreeMap<String, ModuleBytes>;
