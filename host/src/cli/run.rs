//! `graflow-host run` and `graflow-host resume`: flags, output and exit codes
//! over [`graflow_host::session::Session`].

use super::progress::{Progress, Written};
use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::Json;
use graflow_host::checkpoint::{self, Trust};
use graflow_host::distributed::RedisOptions;
use graflow_host::engine::{Fanout, Listener, RunListener};
use graflow_host::engine::{RunError, RunReport, RunStatus};
use graflow_host::session::{ModuleChange, ResumeOptions, RunOptions, Session};
use graflow_host::telemetry::{RunTracer, Tracing};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// With --checkpoint-every: make each of those boundaries durable as a
    /// small record appended to the run's record log (one append and
    /// fdatasync) before the next task starts, and write the checkpoints
    /// themselves in the background (at most one a second). A resume
    /// replays the records after the checkpoint it loads, so a crash loses
    /// nothing that completed. With a bucket, no records are kept: a crash
    /// loses at most the tasks since the newest committed checkpoint. The
    /// last boundary is written as a checkpoint before the run ends.
    #[arg(long, requires = "checkpoint_every")]
    write_behind: bool,
    /// Keep only the newest N checkpoints of this run: older ones are removed
    /// as each new one commits (the full checkpoints kept ones are written
    /// over stay). Overrides the workflow's `keep_checkpoints`. With it,
    /// `max_checkpoints` no longer stops the run's checkpoints.
    #[arg(long, value_name = "N")]
    keep_checkpoints: Option<u64>,
    /// After Ctrl-C, how long running tasks may take to finish before they are
    /// stopped and queued again (milliseconds).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    grace_period_ms: u64,
    /// Do not use the compiled-module cache.
    #[arg(long)]
    no_cache: bool,
    /// Print one JSON object on stdout instead of the result: status, exit
    /// code, result, steps, checkpoints, failures (docs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// Run the tasks on the workers of this Redis server
    /// (`graflow-host worker --redis URL`); the graph, queue and checkpoints
    /// stay here (docs/distributed.md).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// With --redis: how long to wait while no worker is alive before the run
    /// stops with a checkpoint (seconds).
    #[arg(long, default_value_t = 60, value_name = "SECS", requires = "redis")]
    worker_timeout: u64,
    /// Never ask on the terminal: a task's feedback request waits for an answer
    /// from `graflow-host feedback answer` (or the web page), then the run
    /// pauses. (On a terminal, the default is to ask right there.)
    #[arg(long)]
    no_prompt: bool,
    /// Write a self-contained HTML report of the run to FILE: the graph with
    /// its tasks coloured by status, a timeline of every attempt and the
    /// checkpoints.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub telemetry: super::telemetry::TelemetryArgs,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The workflow file (TOML); or a component (`app.wasm`) or a task source
    /// (`app.py`, `app.js`, a Rust crate's folder) that declares its own
    /// workflow: a source is built first, and again only when it changed.
    workflow: PathBuf,
    /// The run's input: a JSON object, @FILE to read it from a file, or @- to
    /// read it from standard input. The start task receives it; other tasks'
    /// declared inputs fall back to its fields.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Where checkpoints go [default: checkpoints]: a folder, or a bucket
    /// (`s3://bucket/prefix`, S3 or S3-compatible; credentials and endpoint
    /// from the AWS environment or profile, docs/checkpoints.md). The run's
    /// events (`graflow-host logs`) are kept there too, in
    /// DIR/<session>/events.jsonl; without this flag, only once the run
    /// writes a checkpoint or a feedback request (a run that writes neither
    /// leaves nothing in the current folder).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    #[command(flatten)]
    pub exec: ExecOptions,
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    /// The checkpoint: its base path (`DIR/<session>/<id>`) or any of its files,
    /// or its URL in a bucket (`s3://bucket/prefix/<session>/<id>`). With
    /// --latest: the checkpoint directory (default `checkpoints`) or bucket,
    /// or one run's folder in it (`DIR/<session>`).
    #[arg(value_name = "CHECKPOINT")]
    checkpoint: Option<PathBuf>,
    /// Resume the newest checkpoint in the directory (or of the run whose
    /// folder is named).
    #[arg(long)]
    latest: bool,
    /// Resume even if a module's file changed since the checkpoint, running the
    /// new code (a warning names the module and both hashes); later
    /// checkpoints record and store the new code.
    #[arg(long)]
    allow_module_change: bool,
    /// Resume a checkpoint that is unsigned (written by graflow-host 0.1) or not
    /// signed with this machine's key, after printing what it would run and
    /// grant. Only for checkpoints you trust.
    #[arg(long)]
    trust_unsigned: bool,
    /// Resume the checkpoint's own state, without replaying the durable
    /// records its run wrote after it (`--write-behind`; docs/checkpoints.md).
    #[arg(long)]
    without_records: bool,
    #[command(flatten)]
    pub exec: ExecOptions,
}

/// Largest `--input` read from a file or standard input.
const MAX_INPUT_BYTES: u64 = 128 << 20;

/// Parse `--input`: JSON text, `@file` or `@-`; it must be an object.
pub fn parse_input(arg: &str) -> Result<Json, CliError> {
    let text = match arg.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_INPUT_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|e| CliError::bad_input(anyhow!("--input @-: cannot read standard input: {e}")))?;
            if text.len() as u64 > MAX_INPUT_BYTES {
                return Err(CliError::bad_input(anyhow!("--input @-: more than {MAX_INPUT_BYTES} bytes")));
            }
            text
        }
        Some(file) => graflow_host::files::read_text_bounded(
            std::path::Path::new(file),
            MAX_INPUT_BYTES,
            "the --input size (128 MiB)",
        )
        .map_err(|e| CliError::bad_input(anyhow::Error::new(e).context("--input")))?,
        None => arg.to_string(),
    };
    let json = Json::parse(text).map_err(|e| {
        let given = match arg.strip_prefix('@') {
            Some("-") => "standard input (--input @-)".to_string(),
            Some(file) => format!("the file {file} (--input @{file})"),
            None => {
                let shown = super::printable(&arg.chars().take(40).collect::<String>());
                let cut = if arg.chars().count() > 40 { "..." } else { "" };
                format!("'{shown}{cut}'")
            }
        };
        CliError::bad_input(anyhow!(
            "--input is not valid JSON: {given}: {e}; the run input is a JSON object, e.g. \
             --input '{{\"day\": \"2026-11-27\"}}' (@FILE or @- to read it from a file or standard input)"
        ))
    })?;
    if !json.is_object() {
        return Err(CliError::bad_input(anyhow!("--input must be a JSON object, e.g. '{{\"day\": \"2026-11-27\"}}'")));
    }
    Ok(json)
}

/// What watches a run from the command line: the checkpoints it writes (for
/// `--json`) and, on a terminal, the live display.
struct Watch {
    written: Arc<Written>,
    progress: Option<Arc<Progress>>,
    recorder: Option<Arc<graflow_host::report::Recorder>>,
    /// Spans of the run (`--otlp-endpoint`), and their pipeline.
    tracer: Option<(Arc<RunTracer>, Tracing)>,
    /// Its metrics (`--metrics-listen`) and their endpoint.
    metrics: Option<(Arc<graflow_host::telemetry::Metrics>, graflow_host::telemetry::MetricsServer)>,
}

impl Watch {
    fn new(live: bool, exec: &ExecOptions, command: &'static str) -> Result<Watch, CliError> {
        let tracer = exec.telemetry.tracing()?.map(|t| (RunTracer::new(&t, command), t));
        let metrics = match exec.telemetry.metrics() {
            Some(m) => {
                let ready = Arc::new(graflow_host::telemetry::metrics::AlwaysReady);
                exec.telemetry.serve_metrics(Some(&m), ready)?.map(|server| (m, server))
            }
            None => None,
        };
        let progress = live.then(|| {
            let p = Progress::start(None);
            p.loading("loading the workflow and its modules (a first compile can take a while)");
            Arc::new(p)
        });
        let recorder = exec.report.as_ref().map(|_| Arc::default());
        Ok(Watch { written: Arc::default(), progress, recorder, tracer, metrics })
    }

    fn listener(&self) -> Listener {
        let mut all: Vec<Arc<dyn RunListener>> = vec![self.written.clone()];
        if let Some(p) = &self.progress {
            all.push(p.clone());
        }
        if let Some(r) = &self.recorder {
            all.push(r.clone());
        }
        if let Some((t, _)) = &self.tracer {
            all.push(t.clone());
        }
        if let Some((m, _)) = &self.metrics {
            all.push(m.clone());
        }
        Listener(Some(Arc::new(Fanout(all))))
    }

    /// End the run's spans with `outcome` and send them (bounded wait).
    fn end_trace(&self, outcome: &str, error: Option<&str>) {
        if let Some((tracer, tracing)) = &self.tracer {
            tracer.finish(outcome, error);
            tracing.shutdown();
        }
    }

    fn finish(&self) {
        if let Some(p) = &self.progress {
            p.finish();
        }
    }
}

fn options(exec: &ExecOptions, checkpoint_dir: Option<PathBuf>, defer_journal: bool, watch: &Watch) -> RunOptions {
    RunOptions {
        listener: watch.listener(),
        trace: watch.tracer.as_ref().and_then(|(t, _)| t.traceparent()),
        cache_dir: super::cache_dir(exec.no_cache),
        checkpoint_dir,
        defer_journal,
        checkpoint_every: exec.checkpoint_every,
        write_behind: exec.write_behind,
        keep_checkpoints: exec.keep_checkpoints,
        max_steps: exec.max_steps,
        redis: exec.redis.as_ref().map(|url| RedisOptions {
            url: url.clone(),
            worker_timeout: Duration::from_secs(exec.worker_timeout.max(1)),
        }),
        ..RunOptions::default()
    }
}

pub fn run(args: RunArgs, live: bool) -> Result<ExitStatus, CliError> {
    let input = parse_input(&args.input)?;
    let file = super::open_target(&args.workflow)?;
    let watch = Watch::new(live, &args.exec, "run")?;
    // Without --checkpoint-dir, checkpoints still go to `checkpoints`, but the
    // journal waits until the run writes one (or a feedback request).
    let (dir, defer_journal) = match args.checkpoint_dir {
        Some(dir) => (dir, false),
        None => (PathBuf::from(checkpoint::DEFAULT_DIR), true),
    };
    // A bucket: checkpoints are committed in its working copy, then published.
    let bucket = match graflow_host::storage::is_bucket_url(&dir) {
        true => Some(super::checkpoints::open_bucket(&dir).inspect_err(|_| watch.finish())?),
        false => None,
    };
    let dir = bucket.as_ref().map_or(dir, |b| b.mirror().to_path_buf());
    let mut opts = options(&args.exec, Some(dir), defer_journal, &watch);
    opts.bucket = bucket;
    let session = Session::start_file(file, input, opts).map_err(|e| {
        watch.finish();
        let e = super::start_failed(&args.workflow, e);
        watch.end_trace("bad_input", Some(&super::error_text(&e.error)));
        e
    })?;
    if !args.exec.no_cache {
        super::cache::remember_names(session.workflow());
    }
    tracing::info!(workflow = %session.workflow().name, session = %session.state().session_id, "run started");
    execute(session, &args.exec, &watch)
}

pub fn resume(args: ResumeArgs, live: bool) -> Result<ExitStatus, CliError> {
    let base = match (args.latest, args.checkpoint) {
        (true, dir) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(checkpoint::DEFAULT_DIR));
            super::checkpoints::newest(&dir)?.base
        }
        (false, Some(path)) => path,
        (false, None) => {
            return Err(CliError::bad_input(anyhow!("name a checkpoint to resume, or pass --latest [DIR]")));
        }
    };
    let resume = ResumeOptions {
        module_change: if args.allow_module_change { ModuleChange::Allow } else { ModuleChange::Refuse },
        trust: if args.trust_unsigned { Trust::AllowUnsigned } else { Trust::Signed },
        replay_records: !args.without_records,
        on_untrusted: Some(|base, signature, grants| {
            eprintln!(
                "warning: resuming checkpoint {} whose signature is {signature} (--trust-unsigned); it runs and grants:\n{}",
                base.display(),
                if grants.is_empty() { "  nothing beyond its modules\n" } else { grants }.trim_end()
            );
        }),
    };
    let watch = Watch::new(live, &args.exec, "resume")?;
    // In a bucket: downloaded (after its signature is checked) into the
    // bucket's working copy; new checkpoints are published to the bucket.
    let (base, bucket) = super::checkpoints::fetched(&base, resume.trust).inspect_err(|_| watch.finish())?;
    let mut opts = options(&args.exec, None, false, &watch);
    opts.bucket = bucket;
    let session = Session::resume(&base, resume, opts).map_err(|e| {
        watch.finish();
        let e = CliError::bad_input(e);
        watch.end_trace("bad_input", Some(&super::error_text(&e.error)));
        e
    })?;
    if !args.exec.no_cache {
        super::cache::remember_names(session.workflow());
    }
    for w in session.warnings() {
        tracing::warn!("{w}");
    }
    if let Some(r) = session.resumed() {
        tracing::info!(checkpoint = %r.checkpoint_id, steps = session.state().steps, pending = session.state().queue.len(), "resuming");
    }
    execute(session, &args.exec, &watch)
}

/// Run `session` to its end, with signal handling; print the outcome.
fn execute(mut session: Session, opts: &ExecOptions, watch: &Watch) -> Result<ExitStatus, CliError> {
    use std::io::IsTerminal;
    if !opts.no_prompt && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let mut desk =
            graflow_host::feedback::PromptDesk::new(session.feedback_desk(), session.checkpoint_dir().map(Into::into));
        desk.display = Box::new(super::progress::hidden);
        session.set_feedback_desk(Arc::new(desk));
    }
    graflow_host::signals::stop_on_signals(session.stop_handle(), Duration::from_millis(opts.grace_period_ms))
        .map_err(|e| CliError::bad_input(anyhow!("cannot install the signal handlers: {e}")))?;
    if let Some(p) = &watch.progress {
        p.loading("running");
    }
    if let Some((tracer, _)) = &watch.tracer {
        let resumed = session.resumed().map(|r| (r.checkpoint_id.as_str(), r.trace));
        tracer.begin(session.workflow(), &session.state().session_id, resumed);
    }
    let outcome = session.run();
    watch.finish();
    let (status, error) = match &outcome {
        Ok(r) => match r.status {
            RunStatus::Completed => ("completed", None),
            RunStatus::Terminated(_) => ("terminated", None),
            RunStatus::Interrupted(_) => ("interrupted", None),
            RunStatus::Paused { .. } => ("waiting_for_input", None),
        },
        Err(e @ RunError::MaxSteps { .. }) => ("max_steps", Some(e.to_string())),
        Err(e @ RunError::Cancelled { .. }) => ("canceled", Some(e.to_string())),
        Err(e) => ("failed", Some(e.to_string())),
    };
    watch.end_trace(status, error.as_deref());
    if let (Some(path), Some(recorder)) = (&opts.report, &watch.recorder) {
        let status = match &outcome {
            Ok(r) => match r.status {
                RunStatus::Completed => "completed",
                RunStatus::Terminated(_) => "terminated",
                RunStatus::Interrupted(_) => "interrupted",
                RunStatus::Paused { .. } => "waiting for input",
            },
            Err(RunError::MaxSteps { .. }) => "max_steps",
            Err(RunError::Cancelled { .. }) => "canceled",
            Err(_) => "failed",
        };
        let (events, dropped) = recorder.events();
        let html = graflow_host::report::html(session.workflow(), session.state(), status, &events, dropped);
        match std::fs::write(path, html) {
            Ok(()) => tracing::info!("report written to {}", path.display()),
            Err(e) => tracing::warn!("cannot write the report {}: {e}", path.display()),
        }
    }
    let steps = session.state().steps;
    let written = watch.written.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let outbound = *watch.written.1.lock().unwrap_or_else(|e| e.into_inner());
    let redis = opts.redis.as_deref().map(graflow_host::distributed::redacted);
    report(outcome, opts.json, &session.state().session_id, steps, written, redis.as_deref(), outbound)
}

/// Print the result or the error (or, with `--json`, one object on stdout);
/// the exit status.
pub(super) fn report(
    outcome: Result<RunReport, RunError>,
    json: bool,
    session: &str,
    steps: u64,
    written: Vec<String>,
    redis: Option<&str>,
    outbound: super::progress::Outbound,
) -> Result<ExitStatus, CliError> {
    let redis_flag = redis.map(|u| format!(" --redis {u}")).unwrap_or_default();
    let mut object = serde_json::json!({ "session": session, "steps": steps, "checkpoints": written, "failures": [] });
    if outbound.requests > 0 {
        object["outbound"] = serde_json::to_value(outbound).unwrap_or_default();
    }
    let status = match &outcome {
        Ok(report) => {
            object["steps"] = report.steps.into();
            object["checkpoints"] = report.checkpoints.clone().into();
            match &report.status {
                RunStatus::Completed => {
                    tracing::info!(steps = report.steps, checkpoints = report.checkpoints.len(), "workflow completed");
                    object["result"] = result_value(report.result.as_ref());
                    ExitStatus::Success
                }
                RunStatus::Terminated(message) => {
                    tracing::info!(steps = report.steps, "workflow terminated: {message}");
                    object["result"] = result_value(report.result.as_ref());
                    object["terminated"] = message.clone().into();
                    ExitStatus::Success
                }
                RunStatus::Interrupted(written) => {
                    let cp = &written.id;
                    if written.fresh {
                        eprintln!("interrupted after {} completed tasks; checkpoint written: {cp}", report.steps);
                    } else {
                        eprintln!(
                            "interrupted after {} completed tasks; nothing completed since checkpoint {cp}, which resumes from here",
                            report.steps
                        );
                    }
                    eprintln!("  resume with: graflow-host resume {cp}{redis_flag}");
                    object["checkpoint"] = cp.clone().into();
                    ExitStatus::Interrupted
                }
                RunStatus::Paused { checkpoint, requests } => {
                    let cp = &checkpoint.id;
                    let root = graflow_host::checkpoint::root_of(std::path::Path::new(cp));
                    let dir = root.display().to_string();
                    eprintln!("waiting for input after {} completed tasks; checkpoint written: {cp}", report.steps);
                    for r in requests {
                        eprintln!("  request {}", r.summary());
                        eprintln!(
                            "    answer with: graflow-host feedback answer {} {} {}",
                            r.id,
                            r.kind.how_to_answer(),
                            if redis_flag.is_empty() { format!("--dir {dir}") } else { redis_flag.trim().to_string() }
                        );
                    }
                    eprintln!("  then resume with: graflow-host resume {cp}{redis_flag}");
                    object["checkpoint"] = cp.clone().into();
                    object["requests"] = requests
                        .iter()
                        .map(|r| {
                            serde_json::json!({"id": r.id, "kind": r.kind, "task_id": r.task_id, "prompt": r.prompt, "options": r.options})
                        })
                        .collect();
                    ExitStatus::WaitingForInput
                }
            }
        }
        Err(error) => {
            object["error"] = super::error_text(&anyhow::Error::new(error.clone())).into();
            object["failures"] = failures(error);
            match error {
                RunError::MaxSteps { checkpoint, .. } => {
                    match checkpoint {
                        Some(w) => {
                            eprintln!(
                                "the queue is kept in checkpoint {}\n  continue with: graflow-host resume {}{redis_flag} (add --max-steps <N> to allow more steps)",
                                w.id, w.id
                            );
                            object["checkpoint"] = w.id.clone().into();
                        }
                        None => eprintln!("no checkpoint keeps the queue (this run has no checkpoint directory)"),
                    }
                    ExitStatus::MaxSteps
                }
                RunError::Cancelled { .. } => ExitStatus::Canceled,
                RunError::Inconsistent(_) => ExitStatus::BadInput,
                RunError::Stopped { checkpoint: Some(w), .. } => {
                    eprintln!(
                        "the run stopped after {steps} completed tasks at checkpoint {}\n  resume with: graflow-host resume {}{redis_flag}",
                        w.id, w.id
                    );
                    object["checkpoint"] = w.id.clone().into();
                    ExitStatus::Interrupted
                }
                _ => ExitStatus::Failed,
            }
        }
    };
    object["status"] = status.name().into();
    object["exit_code"] = (status as i32).into();
    if json {
        println!("{object}");
    } else if let Ok(report) = &outcome
        && status == ExitStatus::Success
    {
        println!("{}", report.result.clone().unwrap_or_else(Json::null));
    }
    match outcome {
        Err(error) => Err(CliError { status, error: error.into(), printed: json }),
        Ok(_) => Ok(status),
    }
}

fn result_value(result: Option<&Json>) -> serde_json::Value {
    result.and_then(|r| r.to_value().ok()).unwrap_or(serde_json::Value::Null)
}

/// The failed tasks a run error names: `{task_id, task, module, attempts,
/// kind, message}` each.
fn failures(error: &RunError) -> serde_json::Value {
    match error {
        RunError::TaskFailed { task_id, task, module, attempts, failure } => serde_json::json!([{
            "task_id": task_id, "task": task, "module": module, "attempts": attempts,
            "kind": format!("{:?}", failure.kind), "message": failure.message,
        }]),
        RunError::GroupFailed { failed, .. } => {
            failed.iter().map(|(member, error)| serde_json::json!({"task_id": member, "message": error})).collect()
        }
        RunError::Cancelled { task_id, message } => serde_json::json!([{"task_id": task_id, "message": message}]),
        _ => serde_json::json!([]),
    }
}
