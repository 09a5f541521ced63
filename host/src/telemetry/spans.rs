//! Spans from a run's events: one trace per run (process), the run span at
//! its root; under it the executions (`graflow.task`) with one
//! `graflow.attempt` each try, groups and their branches, checkpoint writes,
//! feedback waits and outgoing requests. A worker's spans
//! ([`WorkerTracer`]) are children of the coordinator's attempt span, whose
//! context travels in the dispatch.
//!
//! Invariant: a span is ended exactly once: by the event that ends it, or by
//! [`RunTracer::finish`] (status error, "the run ended first") for what was
//! still open; the open spans are those of executions running or waiting for
//! a retry, so the maps are bounded by the run's own bounds.

use super::TraceParent;
use crate::engine::{Event, EventKind, RunListener};
use opentelemetry::trace::{Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The context of `sc` as a parent.
fn parent(sc: &SpanContext) -> Context {
    Context::new().with_remote_span_context(sc.clone())
}

/// When something that took `ms` milliseconds and just ended started.
fn started_ms_ago(ms: f64) -> SystemTime {
    let ago = Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(1e9));
    SystemTime::now().checked_sub(ago).unwrap_or_else(SystemTime::now)
}

fn error(span: &mut Span, description: &str) {
    span.set_status(Status::error(description.to_string()));
}

/// An execution's span and its current attempt's.
struct Execution {
    span: Span,
    attempt: Option<Span>,
}

#[derive(Default)]
struct Open {
    executions: HashMap<String, Execution>,
    /// By group execution id.
    groups: HashMap<String, Span>,
    /// By branch prefix (what executions carry as `scope`).
    branches: HashMap<String, Span>,
}

impl Open {
    /// The span a new execution, group or wait in `scope` is a child of.
    fn scope_parent(&self, scope: &str, run: &SpanContext) -> SpanContext {
        if scope.is_empty() {
            return run.clone();
        }
        self.branches.get(scope).map_or_else(|| run.clone(), |s| s.span_context().clone())
    }

    /// The span work done for `task_id` is a child of: its attempt.
    fn attempt_of(&self, task_id: &str) -> Option<SpanContext> {
        let e = self.executions.get(task_id)?;
        Some(e.attempt.as_ref().unwrap_or(&e.span).span_context().clone())
    }
}

/// The spans of one run in this process (a `run` or a `resume`), made from
/// its events.
pub struct RunTracer {
    tracer: SdkTracer,
    run: Mutex<Option<Span>>,
    run_context: SpanContext,
    modules: Mutex<HashMap<String, String>>,
    open: Mutex<Open>,
}

impl RunTracer {
    /// Start the run span (`command`: `run` or `resume`); the workflow and
    /// session are named by [`RunTracer::begin`] once known.
    pub fn new(tracing: &super::Tracing, command: &'static str) -> Arc<RunTracer> {
        let tracer = tracing.tracer().clone();
        let span = tracer
            .span_builder("graflow.run")
            .with_kind(SpanKind::Internal)
            .with_attributes([KeyValue::new("graflow.command", command)])
            .start(&tracer);
        let run_context = span.span_context().clone();
        Arc::new(RunTracer {
            tracer,
            run: Mutex::new(Some(span)),
            run_context,
            modules: Mutex::default(),
            open: Mutex::default(),
        })
    }

    /// The run span's context (recorded in the checkpoints this run writes,
    /// so a resume can link to it).
    pub fn traceparent(&self) -> Option<TraceParent> {
        super::traceparent_of(&self.run_context)
    }

    /// Name the run: its workflow, session and modules; a resumed run links
    /// to the run that wrote `resumed`'s checkpoint (when it recorded one).
    pub fn begin(
        &self,
        workflow: &crate::model::Workflow,
        session_id: &str,
        resumed: Option<(&str, Option<TraceParent>)>,
    ) {
        *self.modules.lock().unwrap_or_else(|e| e.into_inner()) =
            workflow.modules.iter().map(|(name, m)| (name.clone(), m.sha256.to_hex())).collect();
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner());
        let Some(span) = run.as_mut() else { return };
        span.set_attribute(KeyValue::new("graflow.workflow", workflow.name.clone()));
        span.set_attribute(KeyValue::new("graflow.session_id", session_id.to_string()));
        if let Some((checkpoint, previous)) = resumed {
            span.set_attribute(KeyValue::new("graflow.resumed_from", checkpoint.to_string()));
            if let Some(tp) = previous {
                span.add_link(
                    super::span_context(&tp),
                    vec![KeyValue::new("graflow.checkpoint.id", checkpoint.to_string())],
                );
            }
        }
    }

    /// End the run span with `outcome` (`completed`, `failed`, ...; `error`
    /// when it failed), and every span still open.
    pub fn finish(&self, outcome: &str, error_text: Option<&str>) {
        let mut open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner()));
        let unfinished = "the run ended before this did";
        for (_, mut e) in open.executions.drain() {
            if let Some(mut a) = e.attempt.take() {
                a.set_attribute(KeyValue::new("graflow.outcome", "unfinished"));
                error(&mut a, unfinished);
                a.end();
            }
            e.span.set_attribute(KeyValue::new("graflow.outcome", "unfinished"));
            error(&mut e.span, unfinished);
            e.span.end();
        }
        for (_, mut s) in open.branches.drain().chain(open.groups.drain()) {
            error(&mut s, unfinished);
            s.end();
        }
        if let Some(mut run) = self.run.lock().unwrap_or_else(|e| e.into_inner()).take() {
            run.set_attribute(KeyValue::new("graflow.outcome", outcome.to_string()));
            if let Some(text) = error_text {
                error(&mut run, text);
            }
            run.end();
        }
    }

    fn span(&self, name: &'static str, parent_sc: &SpanContext, attributes: Vec<KeyValue>) -> Span {
        self.tracer.span_builder(name).with_attributes(attributes).start_with_context(&self.tracer, &parent(parent_sc))
    }
}

impl RunListener for RunTracer {
    fn event(&self, event: &Event) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match &event.kind {
            EventKind::TaskStarted { task_id, task, module, attempt, cycle, scope } => {
                if !open.executions.contains_key(task_id) {
                    let digest = self.modules.lock().unwrap_or_else(|e| e.into_inner()).get(module).cloned();
                    let mut attributes = vec![
                        KeyValue::new("graflow.task.id", task_id.clone()),
                        KeyValue::new("graflow.task.name", task.clone()),
                        KeyValue::new("graflow.module.name", module.clone()),
                        KeyValue::new("graflow.cycle", i64::from(*cycle)),
                    ];
                    if let Some(d) = digest {
                        attributes.push(KeyValue::new("graflow.module.sha256", d));
                    }
                    let parent_sc = open.scope_parent(scope, &self.run_context);
                    let span = self.span("graflow.task", &parent_sc, attributes);
                    open.executions.insert(task_id.clone(), Execution { span, attempt: None });
                }
                let Some(e) = open.executions.get_mut(task_id) else { return };
                if let Some(mut stale) = e.attempt.take() {
                    stale.end();
                }
                let attempt = self.span(
                    "graflow.attempt",
                    &e.span.span_context().clone(),
                    vec![
                        KeyValue::new("graflow.task.id", task_id.clone()),
                        KeyValue::new("graflow.attempt", i64::from(*attempt)),
                    ],
                );
                e.attempt = Some(attempt);
            }
            EventKind::TaskFinished { task_id, .. } => {
                if let Some(mut e) = open.executions.remove(task_id) {
                    if let Some(mut a) = e.attempt.take() {
                        a.set_attribute(KeyValue::new("graflow.outcome", "completed"));
                        a.set_status(Status::Ok);
                        a.end();
                    }
                    e.span.set_attribute(KeyValue::new("graflow.outcome", "completed"));
                    e.span.set_status(Status::Ok);
                    e.span.end();
                }
            }
            EventKind::TaskFailed { task_id, error: text, kind, bound, retrying, .. } => {
                let Some(e) = open.executions.get_mut(task_id) else { return };
                if let Some(mut a) = e.attempt.take() {
                    a.set_attribute(KeyValue::new("graflow.outcome", if *retrying { "retrying" } else { "failed" }));
                    a.set_attribute(KeyValue::new("graflow.failure.kind", *kind));
                    if let Some(b) = bound {
                        a.set_attribute(KeyValue::new("graflow.failure.bound", b.clone()));
                    }
                    error(&mut a, text);
                    a.end();
                }
                if !*retrying && let Some(mut e) = open.executions.remove(task_id) {
                    e.span.set_attribute(KeyValue::new("graflow.outcome", "failed"));
                    e.span.set_attribute(KeyValue::new("graflow.failure.kind", *kind));
                    if let Some(b) = bound {
                        e.span.set_attribute(KeyValue::new("graflow.failure.bound", b.clone()));
                    }
                    error(&mut e.span, text);
                    e.span.end();
                }
            }
            EventKind::TaskStopped { task_id } => {
                if let Some(mut e) = open.executions.remove(task_id) {
                    if let Some(mut a) = e.attempt.take() {
                        a.set_attribute(KeyValue::new("graflow.outcome", "stopped"));
                        a.end();
                    }
                    e.span.set_attribute(KeyValue::new("graflow.outcome", "stopped"));
                    e.span.end();
                }
            }
            EventKind::WaitingForInput { task_id, request, kind, .. } => {
                if let Some(a) = open.executions.get_mut(task_id).and_then(|e| e.attempt.as_mut()) {
                    a.add_event(
                        "graflow.waiting_for_input",
                        vec![
                            KeyValue::new("graflow.feedback.request", request.clone()),
                            KeyValue::new("graflow.feedback.kind", kind.clone()),
                        ],
                    );
                }
            }
            EventKind::GroupStarted { group, task_id, members, scope } => {
                let parent_sc = open.scope_parent(scope, &self.run_context);
                let span = self.span(
                    "graflow.group",
                    &parent_sc,
                    vec![
                        KeyValue::new("graflow.group", group.clone()),
                        KeyValue::new("graflow.task.id", task_id.clone()),
                        KeyValue::new("graflow.group.members", members.len() as i64),
                    ],
                );
                if let Some(mut old) = open.groups.insert(task_id.clone(), span) {
                    old.end();
                }
            }
            EventKind::BranchStarted { group_id, member, scope } => {
                let parent_sc =
                    open.groups.get(group_id).map_or_else(|| self.run_context.clone(), |g| g.span_context().clone());
                let span = self.span(
                    "graflow.branch",
                    &parent_sc,
                    vec![
                        KeyValue::new("graflow.task.id", group_id.clone()),
                        KeyValue::new("graflow.branch.member", member.clone()),
                    ],
                );
                if let Some(mut old) = open.branches.insert(scope.clone(), span) {
                    old.end();
                }
            }
            EventKind::BranchFinished { scope, error: failed, .. } => {
                if let Some(mut s) = open.branches.remove(scope) {
                    if let Some(text) = failed {
                        error(&mut s, text);
                    }
                    s.end();
                }
            }
            EventKind::GroupFinished { task_id, error: failed } => {
                if let Some(mut s) = open.groups.remove(task_id) {
                    if let Some(text) = failed {
                        error(&mut s, text);
                    }
                    s.end();
                }
            }
            EventKind::FeedbackWaited { task_id, request, kind, waited_ms, outcome } => {
                let parent_sc = open.attempt_of(task_id).unwrap_or_else(|| self.run_context.clone());
                drop(open);
                feedback_span(&self.tracer, &parent_sc, request, kind, *waited_ms, outcome);
            }
            EventKind::Checkpoint { id, mode, after, bytes, duration_ms } => {
                drop(open);
                // `id` is the path `resume` takes; the id is its last part.
                let name = std::path::Path::new(id).file_name().and_then(|n| n.to_str()).unwrap_or(id);
                let mut attributes = vec![
                    KeyValue::new("graflow.checkpoint.id", name.to_string()),
                    KeyValue::new("graflow.checkpoint.mode", *mode),
                    KeyValue::new("graflow.checkpoint.bytes", *bytes as i64),
                ];
                if let Some(a) = after {
                    attributes.push(KeyValue::new("graflow.checkpoint.after", a.clone()));
                }
                let mut span = self
                    .tracer
                    .span_builder("graflow.checkpoint")
                    .with_start_time(started_ms_ago(*duration_ms))
                    .with_attributes(attributes)
                    .start_with_context(&self.tracer, &parent(&self.run_context));
                span.end();
            }
            EventKind::Request { task_id, .. } => {
                let parent_sc = open.attempt_of(task_id).unwrap_or_else(|| self.run_context.clone());
                drop(open);
                request_span(&self.tracer, &parent_sc, &event.kind);
            }
            EventKind::Log { .. } => {}
        }
    }

    fn trace_context(&self, task_id: &str) -> Option<TraceParent> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        super::traceparent_of(&open.attempt_of(task_id)?)
    }
}

/// A span for a feedback wait that just ended.
fn feedback_span(
    tracer: &SdkTracer,
    parent_sc: &SpanContext,
    request: &str,
    kind: &str,
    waited_ms: f64,
    outcome: &str,
) {
    let mut span = tracer
        .span_builder("graflow.feedback.wait")
        .with_start_time(started_ms_ago(waited_ms))
        .with_attributes([
            KeyValue::new("graflow.feedback.request", request.to_string()),
            KeyValue::new("graflow.feedback.kind", kind.to_string()),
            KeyValue::new("graflow.outcome", outcome.to_string()),
        ])
        .start_with_context(tracer, &parent(parent_sc));
    span.end();
}

/// A client span for an outgoing request that just ended (a `Request`
/// event): never a header, a body or the query string.
fn request_span(tracer: &SdkTracer, parent_sc: &SpanContext, kind: &EventKind) {
    let EventKind::Request {
        kind,
        method,
        origin,
        path,
        status,
        sent_bytes,
        received_bytes,
        duration_ms,
        error: failed,
        model,
        tokens,
        ..
    } = kind
    else {
        return;
    };
    let name = match (*kind, model) {
        ("llm", Some(m)) => format!("chat {m}"),
        ("llm", None) => "chat".to_string(),
        _ => method.clone(),
    };
    let mut attributes = vec![
        KeyValue::new("graflow.request.kind", *kind),
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("graflow.request.origin", origin.clone()),
        KeyValue::new("url.path", path.clone()),
        KeyValue::new("graflow.request.sent_bytes", *sent_bytes as i64),
        KeyValue::new("graflow.request.received_bytes", *received_bytes as i64),
    ];
    if let Some((scheme, rest)) = origin.split_once("://") {
        attributes.push(KeyValue::new("url.scheme", scheme.to_string()));
        let host = rest.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).map_or(rest, |(h, _)| h);
        attributes.push(KeyValue::new("server.address", host.to_string()));
    }
    if let Some(s) = status {
        attributes.push(KeyValue::new("http.response.status_code", i64::from(*s)));
    }
    if *kind == "llm" {
        attributes.push(KeyValue::new("gen_ai.operation.name", "chat"));
        if let Some(m) = model {
            attributes.push(KeyValue::new("gen_ai.response.model", m.clone()));
        }
        if let Some(t) = tokens {
            attributes.push(KeyValue::new("gen_ai.usage.total_tokens", *t as i64));
        }
    }
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(started_ms_ago(*duration_ms))
        .with_attributes(attributes)
        .start_with_context(tracer, &parent(parent_sc));
    if let Some(text) = failed {
        span.set_attribute(KeyValue::new("error.type", "refused_or_failed"));
        error(&mut span, text);
    } else if status.is_some_and(|s| s >= 500) {
        error(&mut span, &format!("status {}", status.unwrap_or_default()));
    }
    span.end();
}

/// A worker's spans: one `graflow.worker.execute` per dispatch it runs, a
/// child of the coordinator's attempt span.
pub struct WorkerTracer {
    tracer: SdkTracer,
    worker: String,
}

/// What a worker's execution span says about the dispatch.
pub struct ExecutionAttributes<'a> {
    /// The run.
    pub session: &'a str,
    /// Execution id.
    pub task_id: &'a str,
    /// Declared task.
    pub task: &'a str,
    /// Module name.
    pub module: &'a str,
    /// 0 for the first attempt.
    pub attempt: u32,
}

impl WorkerTracer {
    /// The spans of worker `worker`.
    pub fn new(tracing: &super::Tracing, worker: &str) -> WorkerTracer {
        WorkerTracer { tracer: tracing.tracer().clone(), worker: worker.to_string() }
    }

    /// Start the span of one execution, under `parent` (the dispatch's
    /// context; a trace of its own when it carries none).
    pub fn execution(&self, parent_tp: Option<TraceParent>, a: ExecutionAttributes<'_>) -> Arc<ExecutionSpan> {
        let cx = parent_tp.map_or_else(Context::new, |tp| parent(&super::span_context(&tp)));
        let span = self
            .tracer
            .span_builder("graflow.worker.execute")
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("graflow.worker", self.worker.clone()),
                KeyValue::new("graflow.session_id", a.session.to_string()),
                KeyValue::new("graflow.task.id", a.task_id.to_string()),
                KeyValue::new("graflow.task.name", a.task.to_string()),
                KeyValue::new("graflow.module.name", a.module.to_string()),
                KeyValue::new("graflow.attempt", i64::from(a.attempt)),
            ])
            .start_with_context(&self.tracer, &cx);
        let context = span.span_context().clone();
        Arc::new(ExecutionSpan { tracer: self.tracer.clone(), span: Mutex::new(Some(span)), context })
    }
}

/// One execution on a worker: its requests and feedback waits are children.
pub struct ExecutionSpan {
    tracer: SdkTracer,
    span: Mutex<Option<Span>>,
    context: SpanContext,
}

impl ExecutionSpan {
    /// Name the code that runs (known once the module is loaded).
    pub fn set_module_sha256(&self, hex: &str) {
        if let Some(span) = self.span.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            span.set_attribute(KeyValue::new("graflow.module.sha256", hex.to_string()));
        }
    }

    /// End it: `outcome` (`completed`, `failed`, `handed_back`), and the
    /// failure's kind, text and bound when it failed.
    pub fn finish(&self, outcome: &str, failure: Option<&crate::engine::TaskFailure>) {
        let Some(mut span) = self.span.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        span.set_attribute(KeyValue::new("graflow.outcome", outcome.to_string()));
        match failure {
            Some(f) => {
                span.set_attribute(KeyValue::new("graflow.failure.kind", f.kind.name()));
                if let Some(b) = f.bound() {
                    span.set_attribute(KeyValue::new("graflow.failure.bound", b));
                }
                error(&mut span, &f.to_string());
            }
            None if outcome == "completed" => span.set_status(Status::Ok),
            None => {}
        }
        span.end();
    }
}

impl Drop for ExecutionSpan {
    fn drop(&mut self) {
        self.finish("unfinished", None);
    }
}

impl RunListener for ExecutionSpan {
    fn event(&self, event: &Event) {
        match &event.kind {
            EventKind::Request { .. } => request_span(&self.tracer, &self.context, &event.kind),
            EventKind::FeedbackWaited { request, kind, waited_ms, outcome, .. } => {
                feedback_span(&self.tracer, &self.context, request, kind, *waited_ms, outcome)
            }
            _ => {}
        }
    }

    fn trace_context(&self, _task_id: &str) -> Option<TraceParent> {
        super::traceparent_of(&self.context)
    }
}
