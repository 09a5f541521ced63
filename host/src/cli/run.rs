//! `graflow-host run`.

use super::{CliError, ExitStatus};
use graflow_host::Json;
use graflow_host::channel::MemoryChannel;
use graflow_host::engine::{Engine, NoCheckpoints, RunError, RunReport, RunState, RunStatus};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The workflow file (TOML).
    workflow: PathBuf,
    /// The run's input: a JSON object, or @FILE to read it from a file. The start
    /// task receives it; other tasks' declared inputs fall back to its fields.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Stop (exit code 3) once this many tasks completed; overrides the workflow's `max_steps`.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Do not use the compiled-module cache.
    #[arg(long)]
    no_cache: bool,
}

/// Parse `--input`: JSON text or `@file`; it must be an object.
pub fn parse_input(arg: &str) -> Result<Json, CliError> {
    let text = match arg.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).map_err(|e| CliError::bad_input(anyhow::anyhow!("--input @{file}: {e}")))?,
        None => arg.to_string(),
    };
    let json = Json::parse(text).map_err(|e| CliError::bad_input(anyhow::anyhow!("--input is not valid JSON: {e}")))?;
    if !json.is_object() {
        return Err(CliError::bad_input(anyhow::anyhow!("--input must be a JSON object, e.g. '{{\"day\": \"2026-11-27\"}}'")));
    }
    Ok(json)
}

/// A new session id: 32 hex digits.
pub fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub fn run(args: RunArgs) -> Result<ExitStatus, CliError> {
    let input = parse_input(&args.input)?;
    let (mut workflow, sandbox) = super::load(&args.workflow, args.no_cache)?;
    if let Some(max) = args.max_steps {
        if max == 0 {
            return Err(CliError::bad_input(anyhow::anyhow!("--max-steps must be at least 1")));
        }
        workflow.settings.max_steps = max;
    }
    let workflow = Arc::new(workflow);
    let mut state = RunState::new(&workflow, new_session_id(), input);
    let channel = Arc::new(MemoryChannel::default());
    let interrupt = Arc::new(AtomicBool::new(false));
    let engine = Engine::new(workflow.clone(), &sandbox).with_interrupt(interrupt);
    tracing::info!(workflow = %workflow.name, session = %state.session_id, "run started");
    let outcome = engine.run(&mut state, &channel, &mut NoCheckpoints);
    report(outcome)
}

/// Print the result or the error; the exit status.
pub fn report(outcome: Result<RunReport, RunError>) -> Result<ExitStatus, CliError> {
    match outcome {
        Ok(report) => {
            let result = report.result.unwrap_or_else(Json::null);
            println!("{result}");
            match report.status {
                RunStatus::Completed => tracing::info!(steps = report.steps, "workflow completed"),
                RunStatus::Terminated(message) => tracing::info!(steps = report.steps, "workflow terminated: {message}"),
                RunStatus::Interrupted(checkpoint) => {
                    tracing::warn!(steps = report.steps, checkpoint = ?checkpoint, "workflow interrupted");
                    return Ok(ExitStatus::Interrupted);
                }
            }
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
