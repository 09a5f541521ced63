//! The outbound gate: the only way a task reaches anything outside its
//! sandbox. A task reaches the network only when the workflow grants it
//! origins ([`grant`]); every request, whether it comes through
//! `wasi:http/outgoing-handler` ([`wasi`]), the `graflow:task/http` helper
//! call or the `llm` capability ([`llm`]), goes through [`gate::send`], which:
//!
//! 1. checks the origin against the task's grant (and a worker's own);
//! 2. resolves the name in the host and connects only to an address the
//!    grant allows (inward addresses only when named);
//! 3. counts it against the execution's request bound and the run's
//!    connection bound;
//! 4. attaches the headers the workflow configures for that exact origin,
//!    their values read from the host's environment (the guest never sees
//!    them), and an `Idempotency-Key` derived from the session, the
//!    execution and the request's index;
//! 5. bounds the request and response bodies, and clamps every wait to the
//!    task's remaining time, ending at once when the host stops tasks;
//! 6. records the request as a run event (method, origin, path without the
//!    query, status, bytes each way, time), never a header or a body.

pub mod gate;
pub mod grant;
pub mod llm;
pub mod policy;
pub mod wasi;

pub use grant::{Grant, Network, Origin, OriginPattern, Scheme};
pub use policy::{InjectedHeader, LlmProvider, NetBounds, Policy};

use crate::engine::{EventKind, Listener};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Run-wide counters, per process (a resume or a worker starts its own).
#[derive(Debug, Default)]
pub struct RunNet {
    connections: AtomicU64,
    tokens: AtomicU64,
}

/// The run-wide counters of every run a sandbox serves, by session.
#[derive(Debug, Default)]
pub struct RunNets(Mutex<HashMap<String, Arc<RunNet>>>);

/// Refusal lines one execution logs; the rest are counted, not logged.
pub const MAX_LOGGED_REFUSALS: u32 = 20;

/// Sessions whose counters a sandbox keeps before it starts over (a
/// long-lived worker serves many runs).
const MAX_TRACKED_RUNS: usize = 4096;

impl RunNets {
    /// The counters of `session`.
    pub fn of(&self, session: &str) -> Arc<RunNet> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_TRACKED_RUNS && !m.contains_key(session) {
            m.clear();
        }
        m.entry(session.to_string()).or_default().clone()
    }
}

/// What one execution may do on the network, and what it did so far.
pub struct ExecNet {
    /// Execution id (`<task>`, `<task>#n`, `<id>@cycle`).
    pub task_id: String,
    /// Declared task.
    pub task: String,
    /// Its module.
    pub module: String,
    session: String,
    grant: Grant,
    /// A worker's own allow-list: a request must pass both.
    worker: Option<Arc<Grant>>,
    policy: Arc<Policy>,
    run: Arc<RunNet>,
    deadline: Mutex<Instant>,
    abort: Arc<AtomicBool>,
    listener: Listener,
    requests: AtomicU64,
    tokens: AtomicU64,
    /// Refusals logged so far.
    logged: AtomicU32,
    /// Set when the task must fail whatever it returns (a key it needs is
    /// missing on this machine).
    failure: Mutex<Option<String>>,
}

/// Who is asking, for [`ExecNet::new`].
pub struct ExecIdentity<'a> {
    /// Execution id.
    pub task_id: &'a str,
    /// Declared task.
    pub task: &'a str,
    /// Module.
    pub module: &'a str,
    /// Session.
    pub session: &'a str,
}

impl ExecNet {
    /// The trace context requests of this execution carry (`traceparent`),
    /// when the run is traced.
    pub fn traceparent(&self) -> Option<crate::engine::TraceParent> {
        self.listener.trace_context(&self.task_id)
    }

    /// The network state of one execution of `who`, under `policy` (and a
    /// worker's `worker` allow-list), ending at `deadline` or when `abort`
    /// is set. `None` when the task is granted nothing: then every request
    /// is refused without anything being built.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        who: ExecIdentity<'_>,
        policy: &Arc<Policy>,
        worker: Option<Arc<Grant>>,
        run: Arc<RunNet>,
        deadline: Instant,
        abort: Arc<AtomicBool>,
        listener: Listener,
    ) -> Option<Arc<ExecNet>> {
        let grant = policy.grant(who.task)?.clone();
        Some(Arc::new(ExecNet {
            task_id: who.task_id.to_string(),
            task: who.task.to_string(),
            module: who.module.to_string(),
            session: who.session.to_string(),
            grant,
            worker,
            policy: policy.clone(),
            run,
            deadline: Mutex::new(deadline),
            abort,
            listener,
            requests: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            logged: AtomicU32::new(0),
            failure: Mutex::new(None),
        }))
    }

    /// When the execution's time runs out.
    pub fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move the deadline (a feedback wait does not count against the task's time).
    pub fn set_deadline(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    /// The policy it runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Why the task must fail, if a request found that it must.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn fail_task(&self, why: &str) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(why.to_string());
        }
    }

    /// The `Idempotency-Key` of request number `index` (0-based) of this
    /// execution: the same for every attempt, after a resume, on any worker.
    pub fn idempotency_key(&self, index: u64) -> String {
        idempotency_key(&self.session, &self.task_id, index)
    }

    /// Every secret value this execution's requests may carry (to scrub
    /// them from text the guest or a log would see).
    fn secret_values(&self) -> Vec<String> {
        self.policy
            .injected_headers()
            .iter()
            .filter_map(|h| std::env::var(&h.var).ok())
            .filter(|v| v.len() >= 4)
            .collect()
    }

    /// `text` with every secret value replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in self.secret_values() {
            out = out.replace(&v, "[redacted]");
        }
        out
    }

    /// `bytes` with every secret value replaced by `[redacted]`.
    pub fn scrub_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        let secrets = self.secret_values();
        if secrets.is_empty() {
            return bytes;
        }
        let mut out = bytes;
        for v in secrets {
            let needle = v.as_bytes();
            if memchr::memmem::find(&out, needle).is_none() {
                continue;
            }
            let mut next = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(i) = memchr::memmem::find(rest, needle) {
                next.extend_from_slice(&rest[..i]);
                next.extend_from_slice(b"[redacted]");
                rest = &rest[i + needle.len()..];
            }
            next.extend_from_slice(rest);
            out = next;
        }
        out
    }

    /// Count `n` model tokens against the execution's and the run's budgets.
    /// `Err` names the budget the call went over.
    pub fn spend_tokens(&self, n: u64) -> Result<(), String> {
        let b = &self.policy.bounds;
        let exec = self.tokens.fetch_add(n, Ordering::SeqCst) + n;
        let run = self.run.tokens.fetch_add(n, Ordering::SeqCst) + n;
        if exec > b.max_llm_tokens_per_execution {
            return Err(format!(
                "this execution used {exec} model tokens, over [workflow.http].max_llm_tokens_per_execution = {}",
                b.max_llm_tokens_per_execution
            ));
        }
        if run > b.max_llm_tokens {
            return Err(format!(
                "the run used {run} model tokens, over [workflow.http].max_llm_tokens = {}",
                b.max_llm_tokens
            ));
        }
        Ok(())
    }

    /// Tokens left before the first of the two budgets is spent.
    pub fn tokens_remaining(&self) -> u64 {
        let b = &self.policy.bounds;
        let exec = b.max_llm_tokens_per_execution.saturating_sub(self.tokens.load(Ordering::SeqCst));
        let run = b.max_llm_tokens.saturating_sub(self.run.tokens.load(Ordering::SeqCst));
        exec.min(run)
    }

    /// Whether a budget is already spent, before a model call is made.
    pub fn tokens_left(&self) -> Result<(), String> {
        self.spend_tokens(0)
    }

    fn record(&self, r: RequestRecord) {
        self.listener.emit(0, || EventKind::Request {
            task_id: self.task_id.clone(),
            module: self.module.clone(),
            kind: r.kind,
            method: r.method,
            origin: r.origin,
            path: r.path,
            status: r.status,
            sent_bytes: r.sent,
            received_bytes: r.received,
            duration_ms: r.started.elapsed().as_secs_f64() * 1000.0,
            error: r.error,
            model: r.model,
            tokens: r.tokens,
        });
    }

    /// One log line, as the task's (the refused origin, a missing key):
    /// the first [`MAX_LOGGED_REFUSALS`] of an execution, then one saying
    /// the rest are not logged (a looping guest cannot fill the journal).
    fn log(&self, level: &'static str, line: &str) {
        let n = self.logged.fetch_add(1, Ordering::Relaxed);
        let quiet;
        let line = match n {
            _ if n < MAX_LOGGED_REFUSALS => line,
            _ if n == MAX_LOGGED_REFUSALS => {
                quiet = format!("further outbound refusals of execution {} are not logged", self.task_id);
                quiet.as_str()
            }
            _ => return,
        };
        match level {
            "error" => tracing::error!(task = %self.task_id, module = %self.module, "{line}"),
            _ => tracing::warn!(task = %self.task_id, module = %self.module, "{line}"),
        }
        self.listener.emit(0, || EventKind::Log {
            task_id: self.task_id.clone(),
            module: self.module.clone(),
            level,
            line: line.to_string(),
        });
    }
}

/// See [`ExecNet::idempotency_key`]: 32 hex digits of SHA-256 over the
/// session, the execution id and the index.
pub fn idempotency_key(session: &str, task_id: &str, index: u64) -> String {
    let mut h = Sha256::new();
    h.update(b"graflow-idempotency-key\n");
    h.update(session.as_bytes());
    h.update(b"\n");
    h.update(task_id.as_bytes());
    h.update(b"\n");
    h.update(index.to_string().as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// What a finished request looked like, for its run event.
pub(crate) struct RequestRecord {
    pub kind: &'static str,
    pub method: String,
    pub origin: String,
    pub path: String,
    pub status: Option<u16>,
    pub sent: u64,
    pub received: u64,
    pub started: Instant,
    pub error: Option<String>,
    pub model: Option<String>,
    pub tokens: Option<u64>,
}
