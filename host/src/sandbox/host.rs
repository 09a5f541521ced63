//! The host side of the WIT imports (`wit/graflow.wit`), over a
//! [`TaskContext`]. Refusals go back to the guest as error values; a call that
//! breaks a host bound traps the guest, and the recorded failure names the bound.

use super::limits::Limiter;
use super::output::Captured;
use crate::engine::{HostCallError, TaskContext};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "task-module",
    path: "../wit",
    imports: { default: trappable },
});

/// The record a WIT 0.1.3 component's `workflow` export returns.
pub use graflow::task::types::WorkflowDecl as WitWorkflowDecl;
use graflow::task::types::{LogLevel, TaskInfo as WitTaskInfo};

/// The data of one task execution's store.
pub struct HostState {
    /// The task's context; `None` while listing a component's tasks.
    pub ctx: Option<TaskContext>,
    /// WASI state: grants nothing unless the workflow grants it.
    pub wasi: WasiCtx,
    /// WASI resources.
    pub table: ResourceTable,
    /// Memory limit.
    pub limiter: Limiter,
    /// Set when the host stops every task (the interrupt grace period ran
    /// out): clock sleeps end at once.
    pub abort: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// When the execution's time limit runs out (clock sleeps are cut here).
    pub deadline: std::time::Instant,
    /// What the guest wrote to stdout (when captured).
    pub stdout: Captured,
    /// What the guest wrote to stderr (when captured; panic messages land here).
    pub stderr: Captured,
    /// `wasi:http` state (nothing is reachable unless granted).
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    /// The outbound gate's view of this execution.
    pub hooks: crate::outbound::wasi::Hooks,
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

impl HostState {
    /// Write what the guest printed since the last call to the host log.
    pub fn emit_output(&mut self, ctx: &TaskContext) {
        let (task, module) = (ctx.info.task_id.as_str(), ctx.info.module.as_str());
        for (stream, captured) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (kept, dropped) = captured.take();
            for line in String::from_utf8_lossy(&kept).lines() {
                let line = ctx.log_line(line);
                if stream == "stdout" {
                    tracing::info!(target: "task", task, module, "stdout: {line}");
                } else {
                    tracing::warn!(target: "task", task, module, "stderr: {line}");
                }
                ctx.log_event(if stream == "stdout" { "info" } else { "warn" }, &format!("{stream}: {line}"));
            }
            if dropped > 0 {
                tracing::warn!(target: "task", task, module, "{stream}: {dropped} more bytes not kept (the first {} bytes of each execution are)", super::output::CAPTURE_BYTES);
            }
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl HostState {
    fn task(&mut self) -> wasmtime::Result<&mut TaskContext> {
        self.ctx
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("host calls are not available while the component lists its tasks"))
    }
}

/// Map a host-call outcome: refusals become error values, aborts trap.
fn refusable<T>(r: Result<T, HostCallError>) -> wasmtime::Result<Result<T, String>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(HostCallError::Refused(msg)) => Ok(Err(msg)),
        Err(HostCallError::Abort(failure)) => Err(wasmtime::format_err!("{}", failure.message)),
    }
}

impl graflow::task::types::Host for HostState {}

impl graflow::task::channel::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.task()?.channel_get(&key).map(|v| v.as_str().to_string()))
    }
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
        refusable(self.task()?.channel_set(&key, &value))
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<bool> {
        match self.task()?.channel_delete(&key) {
            Ok(existed) => Ok(existed),
            Err(HostCallError::Refused(_)) => Ok(false),
            Err(HostCallError::Abort(failure)) => Err(wasmtime::format_err!("{}", failure.message)),
        }
    }
    fn exists(&mut self, key: String) -> wasmtime::Result<bool> {
        Ok(self.task()?.channel_exists(&key))
    }
    fn keys(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.task()?.channel_keys())
    }
    fn append(&mut self, key: String, value: String) -> wasmtime::Result<Result<u32, String>> {
        refusable(self.task()?.channel_push(&key, &value, false))
    }
    fn prepend(&mut self, key: String, value: String) -> wasmtime::Result<Result<u32, String>> {
        refusable(self.task()?.channel_push(&key, &value, true))
    }
    fn atomic_add(&mut self, key: String, amount: f64) -> wasmtime::Result<Result<f64, String>> {
        refusable(self.task()?.channel_add(&key, amount))
    }
}

impl graflow::task::results::Host for HostState {
    fn set_result(&mut self, value: String) -> wasmtime::Result<Result<(), String>> {
        refusable(self.task()?.set_result(&value))
    }
    fn get_result(&mut self, task: String) -> wasmtime::Result<Option<String>> {
        Ok(self.task()?.get_result(&task).map(|v| v.as_str().to_string()))
    }
}

impl graflow::task::control::Host for HostState {
    fn next_task(&mut self, task: String, input: String, goto: bool) -> wasmtime::Result<Result<String, String>> {
        refusable(self.task()?.next_task(&task, &input, goto))
    }
    fn next_iteration(&mut self, input: String) -> wasmtime::Result<Result<String, String>> {
        refusable(self.task()?.next_iteration(&input))
    }
    fn can_iterate(&mut self) -> wasmtime::Result<bool> {
        Ok(self.task()?.can_iterate())
    }
    fn terminate_workflow(&mut self, message: String) -> wasmtime::Result<()> {
        self.task()?.terminate(&message);
        Ok(())
    }
    fn cancel_workflow(&mut self, message: String) -> wasmtime::Result<()> {
        self.task()?.cancel(&message);
        Ok(())
    }
    fn request_checkpoint(&mut self, metadata: String) -> wasmtime::Result<Result<(), String>> {
        refusable(self.task()?.request_checkpoint(&metadata))
    }
    fn info(&mut self) -> wasmtime::Result<WitTaskInfo> {
        let i = &self.task()?.info;
        Ok(WitTaskInfo {
            task_id: i.task_id.clone(),
            task_name: i.task_name.clone(),
            session_id: i.session_id.clone(),
            cycle_count: i.cycle_count,
            max_cycles: i.max_cycles,
            retry_count: i.retry_count,
            max_retries: i.max_retries,
        })
    }
}

impl graflow::task::logging::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let ctx = self.task()?;
        let line = ctx.log_line(&message).into_owned();
        if !ctx.admit_log(line.len()) {
            return Ok(());
        }
        let (task, module) = (ctx.info.task_id.as_str(), ctx.info.module.as_str());
        match level {
            LogLevel::Trace => tracing::trace!(target: "task", task, module, "{line}"),
            LogLevel::Debug => tracing::debug!(target: "task", task, module, "{line}"),
            LogLevel::Info => tracing::info!(target: "task", task, module, "{line}"),
            LogLevel::Warn => tracing::warn!(target: "task", task, module, "{line}"),
            LogLevel::Error => tracing::error!(target: "task", task, module, "{line}"),
        }
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        ctx.log_event(level, &line);
        Ok(())
    }
}

impl graflow::task::feedback::Host for HostState {
    fn request(&mut self, req: graflow::task::feedback::FeedbackRequest) -> wasmtime::Result<Result<String, String>> {
        use crate::feedback::FeedbackKind;
        use graflow::task::feedback::FeedbackKind as Wit;
        let kind = match req.kind {
            Wit::Approval => FeedbackKind::Approval,
            Wit::Text => FeedbackKind::Text,
            Wit::Selection => FeedbackKind::Selection,
            Wit::MultiSelection => FeedbackKind::MultiSelection,
            Wit::Custom => FeedbackKind::Custom,
        };
        let ctx = self.task()?;
        let request = match ctx.feedback_request(kind, req.prompt, req.options, &req.metadata, req.timeout_secs) {
            Ok(r) => r,
            Err(e) => return refusable(Err(e)),
        };
        let desk = ctx.feedback_desk();
        let listener = ctx.listener();
        match desk.answer(&request) {
            // The answer must still fit the question (a changed module may
            // ask something else under the same id).
            Ok(Some(answer)) => {
                return Ok(request.check_answer(&answer).map(|a| a.as_str().to_string()).map_err(|why| {
                    format!(
                        "the answer recorded for feedback request {} does not fit the question asked now: {why}",
                        request.id
                    )
                }));
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e.to_string())),
        }
        if let Err(e) = desk.post(&request) {
            return Ok(Err(e.to_string()));
        }
        let line = ctx
            .log_line(&format!(
                "waiting up to {} s for input: feedback request {}",
                request.timeout_ms / 1000,
                request.summary()
            ))
            .into_owned();
        tracing::info!(target: "task", task = %request.task_id, "{line}");
        ctx.log_event("info", &line);
        let started = std::time::Instant::now();
        let deadline = started + std::time::Duration::from_millis(request.timeout_ms);
        let stops = ctx.wait_stops();
        let abort = self.abort.clone();
        let stop = move || {
            abort.load(std::sync::atomic::Ordering::Relaxed)
                || stops.iter().any(|f| f.load(std::sync::atomic::Ordering::Relaxed))
        };
        let waited = desk.wait(&request, deadline, &stop);
        listener.emit(0, || crate::engine::EventKind::FeedbackWaited {
            task_id: request.task_id.clone(),
            request: request.id.clone(),
            kind: request.kind.to_string(),
            waited_ms: started.elapsed().as_secs_f64() * 1000.0,
            outcome: match &waited {
                Ok(Some(_)) => "answered",
                Ok(None) => "unanswered",
                Err(_) => "error",
            },
        });
        // The time waited does not count against the task's time limit.
        self.deadline += started.elapsed();
        if let Some(net) = &self.hooks.net {
            net.set_deadline(self.deadline);
        }
        match waited {
            // Checked like one found at once: the answer file may have been
            // written by anyone who can write the checkpoint directory.
            Ok(Some(answer)) => Ok(request.check_answer(&answer).map(|a| a.as_str().to_string()).map_err(|why| {
                format!("the answer recorded for feedback request {} does not fit the question: {why}", request.id)
            })),
            Ok(None) if self.abort.load(std::sync::atomic::Ordering::Relaxed) => {
                Err(wasmtime::Error::new(super::Aborted))
            }
            Ok(None) => refusable::<String>(Err(self.task()?.pause_for(request))),
            Err(e) => Ok(Err(e.to_string())),
        }
    }
}

impl HostState {
    /// Log that a task granted nothing tried to reach `what`, and say why.
    fn ungranted(&mut self, what: &str) -> wasmtime::Result<String> {
        self.hooks.refused = self.hooks.refused.saturating_add(1);
        let logged = self.hooks.refused <= crate::outbound::MAX_LOGGED_REFUSALS;
        let ctx = self.task()?;
        let line = format!(
            "outbound request refused: task '{}' (module '{}') is granted no http origins and may not reach {what}",
            ctx.info.task_name, ctx.info.module,
        );
        if logged && ctx.admit_log(line.len()) {
            tracing::warn!(target: "task", task = %ctx.info.task_id, module = %ctx.info.module, "{line}");
            ctx.log_event("warn", &line);
        }
        Ok(line)
    }

    /// Block on `fut` on the gate's runtime; a stop of every task traps.
    fn stopped(&self) -> bool {
        self.abort.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl graflow::task::http::Host for HostState {
    fn send(
        &mut self,
        req: graflow::task::http::Request,
    ) -> wasmtime::Result<Result<graflow::task::http::Response, graflow::task::http::HttpError>> {
        use crate::outbound::gate::{self, NetError, Timeouts};
        use graflow::task::http::{HttpError, Response};
        let Some(net) = self.hooks.net.clone() else {
            let origin = req.url.parse::<::http::Uri>().ok().and_then(|u| crate::outbound::Origin::of_uri(&u).ok());
            let what = origin.map_or_else(|| "an invalid URL".to_string(), |o| o.to_string());
            return Ok(Err(HttpError::Denied(self.ungranted(&what)?)));
        };
        let Ok(method) = ::http::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes()) else {
            return Ok(Err(HttpError::Invalid(format!("'{}' is not an HTTP method", req.method))));
        };
        let limit = req.timeout_ms.map(|ms| std::time::Duration::from_millis(u64::from(ms)));
        let timeouts = Timeouts { connect: limit, first_byte: limit, between_bytes: limit };
        let (url, headers, body, follow) = (req.url, req.headers, req.body, req.follow_redirects);
        let outcome = wasmtime_wasi::runtime::in_tokio(async move {
            let req =
                gate::BufferedRequest { method, url, headers, body, timeouts, follow_redirects: follow, details: None };
            let send = gate::send_buffered(net, req);
            match limit {
                Some(d) => tokio::time::timeout(d, send).await.unwrap_or_else(|_| {
                    Err(NetError::Timeout(format!("the request's timeout-ms of {} ms", d.as_millis())))
                }),
                None => send.await,
            }
        });
        Ok(match outcome {
            Ok(r) => Ok(Response { status: r.status, headers: r.headers, body: r.body }),
            Err(NetError::Stopped) => return Err(wasmtime::Error::new(super::Aborted)),
            Err(_) if self.stopped() => return Err(wasmtime::Error::new(super::Aborted)),
            Err(NetError::Denied(s)) => Err(HttpError::Denied(s)),
            Err(NetError::Bound(s)) => Err(HttpError::Limit(s)),
            Err(NetError::Timeout(s)) => Err(HttpError::Timeout(s)),
            Err(NetError::Invalid(s)) => Err(HttpError::Invalid(s)),
            Err(e @ NetError::Failed(_)) => Err(HttpError::Failed(e.to_string())),
        })
    }
}

impl graflow::task::llm::Host for HostState {
    fn chat(
        &mut self,
        req: graflow::task::llm::ChatRequest,
    ) -> wasmtime::Result<Result<graflow::task::llm::ChatResponse, graflow::task::llm::LlmError>> {
        use crate::outbound::llm::{self, ChatError};
        use graflow::task::llm::{ChatResponse, LlmError, ToolCall, Usage};
        if self.hooks.net.is_none() {
            let line = self.ungranted("a model provider")?;
            return Ok(Err(LlmError::Denied(line)));
        }
        let asked = llm::ChatRequest { messages: req.messages, model: req.model, tools: req.tools, params: req.params };
        Ok(match llm::chat(self.hooks.net.clone(), asked) {
            Ok(a) => Ok(ChatResponse {
                message: a.message,
                content: a.content,
                tool_calls: a
                    .tool_calls
                    .into_iter()
                    .map(|t| ToolCall { id: t.id, name: t.name, arguments: t.arguments })
                    .collect(),
                finish_reason: a.finish_reason,
                model: a.model,
                usage: Usage { prompt_tokens: a.usage.0, completion_tokens: a.usage.1, total_tokens: a.usage.2 },
            }),
            Err(ChatError::Stopped) => return Err(wasmtime::Error::new(super::Aborted)),
            Err(_) if self.stopped() => return Err(wasmtime::Error::new(super::Aborted)),
            Err(ChatError::Denied(s)) => Err(LlmError::Denied(s)),
            Err(ChatError::Limit(s)) => Err(LlmError::Limit(s)),
            Err(ChatError::Provider(s)) => Err(LlmError::Provider(s)),
            Err(ChatError::Invalid(s)) => Err(LlmError::Invalid(s)),
            Err(ChatError::Failed(s)) => Err(LlmError::Failed(s)),
        })
    }
}
