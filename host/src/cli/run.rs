//! `graflow-host run` and `graflow-host resume`, and what both share: signal
//! handling, the checkpoint store, reporting.

use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::Json;
use graflow_host::channel::MemoryChannel;
use graflow_host::checkpoint::{self, CheckpointStore};
use graflow_host::engine::{CheckpointRequest, Engine, RunError, RunReport, RunState, RunStatus};
use graflow_host::model::Workflow;
use graflow_host::sandbox::Sandbox;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Options shared by `run` and `resume`.
#[derive(clap::Args)]
pub struct ExecOptions {
    /// Stop (exit code 3, with a checkpoint) once this many tasks completed in
    /// the whole run; overrides the workflow's `max_steps`.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Also write a checkpoint after every N completed tasks.
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<u64>,
    /// After Ctrl-C, how long running tasks may take to finish before they are
    /// stopped and queued again (milliseconds).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    grace_period_ms: u64,
    /// Do not use the compiled-module cache.
    #[arg(long)]
    no_cache: bool,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The workflow file (TOML).
    workflow: PathBuf,
    /// The run's input: a JSON object, or @FILE to read it from a file. The start
    /// task receives it; other tasks' declared inputs fall back to its fields.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Where checkpoints go.
    #[arg(long, default_value = checkpoint::DEFAULT_DIR, value_name = "DIR")]
    checkpoint_dir: PathBuf,
    #[command(flatten)]
    exec: ExecOptions,
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    /// The checkpoint: its base path (`DIR/<session>/<id>`) or any of its files.
    /// With --latest: the checkpoint directory (default `checkpoints`).
    #[arg(value_name = "CHECKPOINT")]
    checkpoint: Option<PathBuf>,
    /// Resume the newest checkpoint in the directory.
    #[arg(long)]
    latest: bool,
    /// Resume even if a module's file changed since the checkpoint, running the
    /// new code (a warning names the module and both hashes).
    #[arg(long)]
    allow_module_change: bool,
    #[command(flatten)]
    exec: ExecOptions,
}

/// Parse `--input`: JSON text or `@file`; it must be an object.
pub fn parse_input(arg: &str) -> Result<Json, CliError> {
    let text = match arg.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).map_err(|e| CliError::bad_input(anyhow!("--input @{file}: {e}")))?
        }
        None => arg.to_string(),
    };
    let json = Json::parse(text).map_err(|e| CliError::bad_input(anyhow!("--input is not valid JSON: {e}")))?;
    if !json.is_object() {
        return Err(CliError::bad_input(anyhow!("--input must be a JSON object, e.g. '{{\"day\": \"2026-11-27\"}}'")));
    }
    Ok(json)
}

/// A new session id: 32 hex digits.
pub fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub fn run(args: RunArgs) -> Result<ExitStatus, CliError> {
    let input = parse_input(&args.input)?;
    let (workflow, sandbox) = super::load(&args.workflow, args.exec.no_cache)?;
    let state = RunState::new(&workflow, new_session_id(), input);
    tracing::info!(workflow = %workflow.name, session = %state.session_id, "run started");
    execute(workflow, sandbox, state, Default::default(), CheckpointStore::new(args.checkpoint_dir), &args.exec)
}

pub fn resume(args: ResumeArgs) -> Result<ExitStatus, CliError> {
    let base = match (args.latest, args.checkpoint) {
        (true, dir) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(checkpoint::DEFAULT_DIR));
            checkpoint::latest(&dir).map_err(CliError::bad_input)?.base
        }
        (false, Some(path)) => path,
        (false, None) => {
            return Err(CliError::bad_input(anyhow!("name a checkpoint to resume, or pass --latest [DIR]")));
        }
    };
    let loaded = checkpoint::load(&base).map_err(CliError::bad_input)?;
    let root = checkpoint::root_of(&loaded.base);
    let ctx = loaded.context;
    let mut sandbox = Sandbox::for_workflow(&ctx.workflow, super::cache_dir(args.exec.no_cache))
        .map_err(|e| CliError::bad_input(anyhow!("cannot start the wasm engine: {e:#}")))?;
    for (name, module) in &ctx.workflow.modules {
        let (bytes, warning) =
            checkpoint::module_bytes(&root, name, module, args.allow_module_change).map_err(CliError::bad_input)?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let sha = graflow_host::sandbox::sha256_hex(&bytes);
        let tasks =
            sandbox.load_bytes(name, &bytes, &sha).map_err(|e| CliError::bad_input(anyhow!("module '{name}': {e}")))?;
        for def in ctx.workflow.tasks.values().filter(|d| &d.module == name) {
            if !tasks.iter().any(|t| t.name == def.export) {
                return Err(CliError::bad_input(anyhow!(
                    "module '{name}' no longer exports task '{}' (task '{}')",
                    def.export,
                    def.name
                )));
            }
        }
    }
    tracing::info!(checkpoint = %loaded.meta.checkpoint_id, steps = ctx.state.steps, pending = ctx.state.queue.len(), "resuming");
    execute(ctx.workflow, sandbox, ctx.state, ctx.channel, CheckpointStore::new(root), &args.exec)
}

/// Run `state` to its end, with signal handling and checkpoints.
fn execute(
    workflow: Workflow,
    sandbox: Sandbox,
    mut state: RunState,
    channel: std::collections::BTreeMap<String, Json>,
    mut store: CheckpointStore,
    opts: &ExecOptions,
) -> Result<ExitStatus, CliError> {
    if opts.max_steps == Some(0) {
        return Err(CliError::bad_input(anyhow!("--max-steps must be at least 1")));
    }
    let workflow = Arc::new(workflow);
    let channel = Arc::new(MemoryChannel::from_map(channel));
    let interrupt = watch_signals(sandbox.abort_handle(), Duration::from_millis(opts.grace_period_ms))?;
    let engine = Engine::new(workflow.clone(), &sandbox)
        .with_interrupt(interrupt)
        .checkpoint_every(opts.checkpoint_every)
        .max_steps(opts.max_steps);
    let outcome = engine.run(&mut state, &channel, &mut store);
    if let Err(RunError::MaxSteps { .. }) = &outcome {
        let request = CheckpointRequest {
            task_id: state.completed.last().cloned().unwrap_or_default(),
            cycle_count: 0,
            elapsed_time: 0.0,
            mode: "max_steps",
            user_metadata: Json::null(),
        };
        match store.write_checkpoint(&workflow, &state, &channel.snapshot(), &request) {
            Ok(base) => eprintln!(
                "the queue is kept in checkpoint {}\n  continue with: graflow-host resume {} (add --max-steps <N> to allow more steps)",
                base.display(),
                base.display()
            ),
            Err(e) => tracing::error!("cannot checkpoint the remaining queue: {e}"),
        }
    }
    report(outcome, store.root())
}

/// Install SIGINT/SIGTERM handling: the first signal sets the returned flag (no
/// new task starts; a checkpoint is written at the boundary); once the grace
/// period passes, running tasks are stopped through `abort`. A second signal
/// exits at once (code 130).
fn watch_signals(abort: Arc<AtomicBool>, grace: Duration) -> Result<Arc<AtomicBool>, CliError> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())
            .map_err(|e| CliError::bad_input(anyhow!("cannot install signal handler: {e}")))?;
        signal_hook::flag::register(signal, flag.clone())
            .map_err(|e| CliError::bad_input(anyhow!("cannot install signal handler: {e}")))?;
    }
    let watched = flag.clone();
    std::thread::Builder::new()
        .name("graflow-signals".into())
        .spawn(move || {
            while !watched.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::warn!("interrupt received: no new task starts; running tasks get {} ms to finish (interrupt again to quit at once)", grace.as_millis());
            std::thread::sleep(grace);
            abort.store(true, Ordering::Relaxed);
        })
        .map_err(|e| CliError::bad_input(anyhow!("cannot start the signal thread: {e}")))?;
    Ok(flag)
}

/// Print the result or the error; the exit status.
fn report(outcome: Result<RunReport, RunError>, root: &Path) -> Result<ExitStatus, CliError> {
    match outcome {
        Ok(report) => {
            match report.status {
                RunStatus::Completed => {
                    tracing::info!(steps = report.steps, checkpoints = report.checkpoints.len(), "workflow completed")
                }
                RunStatus::Terminated(message) => {
                    tracing::info!(steps = report.steps, "workflow terminated: {message}")
                }
                RunStatus::Interrupted(checkpoint) => {
                    let cp = checkpoint.unwrap_or_else(|| root.display().to_string());
                    eprintln!(
                        "interrupted after {} completed tasks; checkpoint written: {cp}\n  resume with: graflow-host resume {cp}",
                        report.steps
                    );
                    return Ok(ExitStatus::Interrupted);
                }
            }
            println!("{}", report.result.unwrap_or_else(Json::null));
            Ok(ExitStatus::Success)
        }
        Err(error) => {
            let status = match error {
                RunError::MaxSteps { .. } => ExitStatus::MaxSteps,
                RunError::Cancelled { .. } => ExitStatus::Canceled,
                RunError::Inconsistent(_) => ExitStatus::BadInput,
                _ => ExitStatus::Failed,
            };
            Err(CliError { status, error: error.into() })
        }
    }
}
