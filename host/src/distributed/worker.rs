//! `graflow-host worker`: takes task executions of any run from Redis, runs
//! each in the local sandbox under the limits and grants it carries (never
//! wider), and records its completion once.

use super::wire::{self, Completion, Dispatch};
use super::{GROUP, HEARTBEAT, Keys, RedisError};
use crate::channel::{Channel, ChannelError};
use crate::digest::Sha256;
use crate::engine::{
    Event, EventKind, FailureKind, IdAllocator, Listener, RunListener, TaskContext, TaskFailure, TaskRunner,
};
use crate::json::Json;
use crate::model::{EngineNeeds, MAX_MEMORY_MB, Workflow};
use crate::module_store::{DEFAULT_MAX_MODULE_BYTES, ModuleBytes};
use crate::sandbox::Sandbox;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The Redis URL.
    pub url: String,
    /// Task executions run at once.
    pub concurrency: usize,
    /// A task held by a worker that stopped heartbeating is given to another
    /// worker after this long.
    pub visibility_timeout: Duration,
    /// The compiled-module cache (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Honour directory and environment-variable grants (off: a task that has
    /// any fails with a message saying so).
    pub allow_grants: bool,
    /// After a stop is asked for, how long running tasks may take before they
    /// are stopped and handed back.
    pub grace: Duration,
    /// The worker's name (default: `<host>-<pid>-<random>`).
    pub id: Option<String>,
    /// What this worker lets tasks reach (`--allow-outbound`), intersected
    /// with each task's grant; empty (the default): nothing.
    pub allow_outbound: crate::outbound::Grant,
}

impl WorkerOptions {
    /// Defaults for `url`: one slot per core, a 15 s visibility timeout, a
    /// 30 s grace period, no grants.
    pub fn new(url: impl Into<String>) -> WorkerOptions {
        WorkerOptions {
            url: url.into(),
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            visibility_timeout: Duration::from_secs(15),
            cache_dir: None,
            allow_grants: false,
            grace: Duration::from_secs(30),
            id: None,
            allow_outbound: Default::default(),
        }
    }
}

/// A task delivered this many times without a recorded completion (every
/// worker that took it stopped before finishing) fails instead.
pub const MAX_DELIVERIES: u64 = 5;

/// Workflows kept decoded per worker.
const MAX_CACHED_WORKFLOWS: usize = 64;

/// Log bytes of one execution forwarded to the coordinator.
const MAX_FORWARDED_LOG_BYTES: usize = 4 << 20;

/// Records a completion once, acknowledges and deletes the task entry.
/// KEYS: recorded, done, tasks, live. ARGV: dispatch, completion, group,
/// entry id, epoch.
const RECORD: &str = r"
local recorded = 0
if redis.call('GET', KEYS[4]) == ARGV[5] then
  if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 1 then
    redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'c', ARGV[2])
    recorded = 1
  end
end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[3], ARGV[4])
return recorded
";

/// Records a heartbeat at Redis's time and forgets workers silent for an
/// hour. KEYS: workers. ARGV: worker id.
const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)
return now
";

/// Puts a task back on the stream as a new entry and removes the old one.
/// KEYS: tasks. ARGV: group, entry id, session, payload.
const HAND_BACK: &str = r"
redis.call('XADD', KEYS[1], '*', 's', ARGV[3], 'd', ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
";

/// What a worker did, for its exit message.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerStats {
    /// Executions whose completion was recorded.
    pub completed: u64,
    /// Of those, executions that failed.
    pub failed: u64,
    /// Executions handed back to other workers.
    pub handed_back: u64,
}

/// A worker process's state, shared by its threads.
pub struct Worker {
    opts: WorkerOptions,
    id: String,
    shown: String,
    client: redis::Client,
    /// Without and with fuel metering, made on first use.
    sandboxes: [Mutex<Option<Arc<Sandbox>>>; 2],
    workflows: Mutex<HashMap<String, Arc<Workflow>>>,
    inflight: Mutex<HashSet<String>>,
    stopping: Arc<AtomicBool>,
    completed: AtomicU64,
    failed: AtomicU64,
    handed_back: AtomicU64,
    /// Spans of the executions it runs (`--otlp-endpoint`).
    tracer: Option<crate::telemetry::WorkerTracer>,
    /// Its metrics (`--metrics-listen`).
    metrics: Option<Arc<crate::telemetry::Metrics>>,
}

/// Why a dispatch could not be run.
enum Refusal {
    /// Redis failed: leave the entry pending (it is delivered again).
    Redis(redis::RedisError),
    /// The task fails with this message.
    Fail(String),
}

impl From<redis::RedisError> for Refusal {
    fn from(e: redis::RedisError) -> Refusal {
        Refusal::Redis(e)
    }
}

/// What became of one delivered entry.
enum Outcome {
    Done(Box<Completion>),
    HandBack,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

fn bulk(v: Option<&redis::Value>) -> Option<&[u8]> {
    match v {
        Some(redis::Value::BulkString(b)) => Some(b),
        _ => None,
    }
}

impl Worker {
    /// Connect (the URL is checked with a PING) and make sure the consumer
    /// group exists.
    pub fn connect(opts: WorkerOptions) -> Result<Worker, RedisError> {
        let (client, mut con) = super::connect(&opts.url, Duration::from_secs(10))?;
        let shown = super::redacted(&opts.url);
        ensure_group(&mut con).map_err(|source| RedisError::Command {
            url: shown.clone(),
            what: "creating the consumer group".into(),
            source,
        })?;
        let id = opts
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{}-{:04x}", host_name(), std::process::id(), rand::random::<u16>()));
        Ok(Worker {
            opts,
            id,
            shown,
            client,
            sandboxes: [Mutex::new(None), Mutex::new(None)],
            workflows: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashSet::new()),
            stopping: Arc::new(AtomicBool::new(false)),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            handed_back: AtomicU64::new(0),
            tracer: None,
            metrics: None,
        })
    }

    /// Export a span for every execution through `tracing`.
    pub fn with_tracing(mut self, tracing: &crate::telemetry::Tracing) -> Worker {
        self.tracer = Some(crate::telemetry::WorkerTracer::new(tracing, &self.id));
        self
    }

    /// Count executions, takeovers and heartbeats in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::telemetry::Metrics>) -> Worker {
        self.metrics = Some(metrics);
        self
    }

    /// Ready to take work: Redis answers a PING within a second and a slot
    /// is free (`/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("the worker is stopping".into());
        }
        let mut con = self
            .client
            .get_connection_with_timeout(Duration::from_secs(1))
            .map_err(|e| format!("Redis at {} does not answer: {e}", self.shown))?;
        let _ = con.set_read_timeout(Some(Duration::from_secs(1)));
        redis::cmd("PING")
            .query::<String>(&mut con)
            .map_err(|e| format!("Redis at {} does not answer: {e}", self.shown))?;
        let busy = self.inflight.lock().unwrap_or_else(|e| e.into_inner()).len();
        if busy >= self.opts.concurrency.max(1) {
            return Err(format!("all {busy} slots are running tasks"));
        }
        Ok(())
    }

    /// The worker's name (its consumer name in Redis).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Setting this flag stops the worker: it takes no new task, gives
    /// running ones the grace period, hands back what is still running, and
    /// returns from [`Worker::run`].
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// Serve until the stop flag is set.
    pub fn run(self: &Arc<Self>) -> WorkerStats {
        tracing::info!(
            "worker {} serving {} with {} slots (visibility timeout {} ms{})",
            self.id,
            self.shown,
            self.opts.concurrency,
            self.opts.visibility_timeout.as_millis(),
            if self.opts.allow_grants { ", grants honoured" } else { "" }
        );
        let done = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (me, done) = (self.clone(), done.clone());
            std::thread::Builder::new().name("graflow-heartbeat".into()).spawn(move || me.heartbeat(&done))
        };
        let mut slots = Vec::new();
        for n in 0..self.opts.concurrency.max(1) {
            let me = self.clone();
            match std::thread::Builder::new().name(format!("graflow-slot-{n}")).spawn(move || me.serve()) {
                Ok(t) => slots.push(t),
                Err(e) => tracing::error!("cannot start worker slot {n}: {e}"),
            }
        }
        // Wait for a stop; then the grace period; then stop running tasks.
        while !self.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let running = self.inflight.lock().unwrap_or_else(|e| e.into_inner()).len();
        if running > 0 {
            tracing::warn!(
                "stopping: no new task is taken; {running} running task(s) get {} ms to finish, then are handed back",
                self.opts.grace.as_millis()
            );
        }
        let deadline = Instant::now() + self.opts.grace;
        while Instant::now() < deadline && slots.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for sandbox in &self.sandboxes {
            if let Some(s) = sandbox.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                s.abort_handle().store(true, Ordering::SeqCst);
            }
        }
        for t in slots {
            let _ = t.join();
        }
        done.store(true, Ordering::SeqCst);
        if let Ok(h) = heartbeat {
            let _ = h.join();
        }
        self.leave();
        WorkerStats {
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            handed_back: self.handed_back.load(Ordering::Relaxed),
        }
    }

    fn open(&self) -> Result<redis::Connection, RedisError> {
        super::open(&self.client, &self.shown, Duration::from_secs(10))
    }

    /// Leave the worker set and, when it holds nothing, the consumer group.
    fn leave(&self) {
        let Ok(mut con) = self.open() else { return };
        let _ = redis::cmd("ZREM").arg(Keys::workers()).arg(&self.id).query::<()>(&mut con);
        let pending: Result<Vec<redis::Value>, _> =
            redis::cmd("XPENDING").arg(Keys::tasks()).arg(GROUP).arg("-").arg("+").arg(1).arg(&self.id).query(&mut con);
        if pending.is_ok_and(|p| p.is_empty()) {
            let _ = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(Keys::tasks())
                .arg(GROUP)
                .arg(&self.id)
                .query::<()>(&mut con);
        }
    }

    /// Every [`HEARTBEAT`]: say this worker is alive, and extend the tasks it
    /// holds (so no other worker claims them while they run).
    fn heartbeat(&self, done: &AtomicBool) {
        let mut con = None;
        while !done.load(Ordering::SeqCst) {
            if con.is_none() {
                con = self.open().map_err(|e| tracing::warn!("heartbeat: {e:#}")).ok();
            }
            if let Some(c) = con.as_mut() {
                let held: Vec<String> =
                    self.inflight.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
                let mut pipe = redis::pipe();
                // Scored with Redis's clock: machines' clocks need not agree.
                pipe.cmd("EVAL").arg(HEARTBEAT_SCRIPT).arg(1).arg(Keys::workers()).arg(&self.id).ignore();
                if !held.is_empty() {
                    pipe.cmd("XCLAIM")
                        .arg(Keys::tasks())
                        .arg(GROUP)
                        .arg(&self.id)
                        .arg(0)
                        .arg(&held)
                        .arg("JUSTID")
                        .ignore();
                }
                let sent = Instant::now();
                match pipe.query::<()>(c) {
                    Ok(()) => {
                        if let Some(m) = &self.metrics {
                            m.heartbeat(sent.elapsed().as_secs_f64());
                        }
                    }
                    Err(e) => {
                        tracing::warn!("heartbeat to Redis at {} failed: {e}", self.shown);
                        con = None;
                    }
                }
            }
            let until = Instant::now() + HEARTBEAT;
            while Instant::now() < until && !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// One slot: take a task (claiming one a dead worker held first, now and
    /// then), run it, record it; until the stop flag is set.
    fn serve(&self) {
        let mut cons: Option<(redis::Connection, Arc<Mutex<redis::Connection>>)> = None;
        let mut last_claim = Instant::now() - self.opts.visibility_timeout;
        let mut cursor = "0-0".to_string();
        let mut complained: Option<Instant> = None;
        while !self.stopping.load(Ordering::SeqCst) {
            if cons.is_none() {
                match self.open().and_then(|a| Ok((a, Arc::new(Mutex::new(self.open()?))))) {
                    Ok(c) => {
                        if complained.take().is_some() {
                            tracing::info!("reconnected to Redis at {}", self.shown);
                        }
                        cons = Some(c);
                    }
                    Err(e) => {
                        if complained.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                            tracing::error!("{:#}; retrying every second", anyhow::Error::new(e));
                            complained = Some(Instant::now());
                        }
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let Some((con, view_con)) = cons.as_mut() else { continue };
            let claim_due = last_claim.elapsed() >= self.opts.visibility_timeout / 2;
            let step = (|| -> Result<bool, redis::RedisError> {
                if claim_due {
                    last_claim = Instant::now();
                    if let Some(entry) = self.claim(con, &mut cursor)? {
                        self.handle(con, view_con, entry)?;
                        return Ok(true);
                    }
                }
                match self.take(con)? {
                    Some(entry) => {
                        self.handle(con, view_con, entry)?;
                        Ok(true)
                    }
                    None => {
                        // Idle: look for abandoned tasks at once next time.
                        last_claim = Instant::now() - self.opts.visibility_timeout;
                        Ok(false)
                    }
                }
            })();
            if let Err(e) = step {
                if e.code() == Some("NOGROUP") {
                    let _ = ensure_group(con);
                    continue;
                }
                tracing::warn!("Redis at {}: {e}; reconnecting", self.shown);
                cons = None;
                complained = Some(Instant::now());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// The next new task, waiting up to a second.
    fn take(&self, con: &mut redis::Connection) -> Result<Option<redis::streams::StreamId>, redis::RedisError> {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.id)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(Keys::tasks())
            .arg(">")
            .query(con)?;
        Ok(reply.keys.into_iter().flat_map(|k| k.ids).next())
    }

    /// A task whose worker stopped heartbeating for the visibility timeout,
    /// now held by this worker. One delivered too often fails instead.
    fn claim(
        &self,
        con: &mut redis::Connection,
        cursor: &mut String,
    ) -> Result<Option<redis::streams::StreamId>, redis::RedisError> {
        // The scan goes on where the last one stopped (Redis examines at most
        // ten pending entries per call here), so every entry is looked at in
        // turn.
        let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(Keys::tasks())
            .arg(GROUP)
            .arg(&self.id)
            .arg(self.opts.visibility_timeout.as_millis() as u64)
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(1)
            .query(con)?;
        *cursor = reply.next_stream_id;
        let Some(entry) = reply.claimed.into_iter().next() else { return Ok(None) };
        let pending: Vec<(String, String, u64, u64)> =
            redis::cmd("XPENDING").arg(Keys::tasks()).arg(GROUP).arg(&entry.id).arg(&entry.id).arg(1).query(con)?;
        let deliveries = pending.first().map_or(0, |p| p.3);
        tracing::warn!(
            "worker {} took over task entry {} (delivery {deliveries}): the worker that held it stopped heartbeating",
            self.id,
            entry.id
        );
        if let Some(m) = &self.metrics {
            m.task_redelivered();
        }
        if deliveries > MAX_DELIVERIES {
            let payload = bulk(entry.map.get("d")).unwrap_or_default();
            let why = format!(
                "the task was delivered {deliveries} times and every worker that took it stopped before finishing \
                 (over the bound of {MAX_DELIVERIES} deliveries)"
            );
            match head(payload) {
                Some(h) => {
                    let c = Completion::failed(&h.dispatch, &self.id, TaskFailure::new(FailureKind::Failed, why));
                    self.record(con, &entry.id, &h.session, &h.epoch, &c)?;
                }
                None => ack_delete(con, &entry.id)?,
            }
            return Ok(None);
        }
        Ok(Some(entry))
    }

    fn handle(
        &self,
        con: &mut redis::Connection,
        view_con: &Arc<Mutex<redis::Connection>>,
        entry: redis::streams::StreamId,
    ) -> Result<(), redis::RedisError> {
        /// Takes the entry out of the held set however handling ends (a
        /// panic included): the heartbeat stops extending it, so another
        /// worker takes it after the visibility timeout.
        struct Held<'a>(&'a Mutex<HashSet<String>>, &'a str);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(self.1);
            }
        }
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).insert(entry.id.clone());
        let _held = Held(&self.inflight, &entry.id);
        let handled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle_held(con, view_con, &entry)));
        handled.unwrap_or_else(|_| {
            tracing::error!(
                "worker {}: handling task entry {} panicked; it is delivered again later",
                self.id,
                entry.id
            );
            Ok(())
        })
    }

    fn handle_held(
        &self,
        con: &mut redis::Connection,
        view_con: &Arc<Mutex<redis::Connection>>,
        entry: &redis::streams::StreamId,
    ) -> Result<(), redis::RedisError> {
        let payload = bulk(entry.map.get("d")).unwrap_or_default();
        let d = match wire::decode_dispatch(payload) {
            Ok(d) => d,
            Err(e) => {
                let Some(h) = head(payload) else {
                    tracing::warn!("dropped task entry {}: {e}", entry.id);
                    return ack_delete(con, &entry.id);
                };
                let why = format!("worker {} cannot read the task: {e}", self.id);
                let c = Completion::failed(&h.dispatch, &self.id, TaskFailure::new(FailureKind::Failed, why));
                return self.record(con, &entry.id, &h.session, &h.epoch, &c);
            }
        };
        let live: Option<String> = redis::cmd("GET").arg(Keys::live(&d.session)).query(con)?;
        if live.as_deref() != Some(d.epoch.as_str()) {
            tracing::debug!("skipped task {} of run {}: no coordinator waits for it", d.info.task_id, d.session);
            return ack_delete(con, &entry.id);
        }
        let started = Instant::now();
        let span = self.tracer.as_ref().map(|t| {
            t.execution(
                d.traceparent,
                crate::telemetry::spans::ExecutionAttributes {
                    session: &d.session,
                    task_id: &d.info.task_id,
                    task: &d.task,
                    module: &d.info.module,
                    attempt: d.spec.attempt,
                },
            )
        });
        /// Counts the attempt out of `tasks_in_flight` however handling ends
        /// (a panic included), unless its outcome was counted.
        struct Flight<'a>(Option<&'a crate::telemetry::Metrics>);
        impl Drop for Flight<'_> {
            fn drop(&mut self) {
                if let Some(m) = self.0.take() {
                    m.task_stopped();
                }
            }
        }
        let mut flight = Flight(self.metrics.as_deref());
        if let Some(m) = flight.0 {
            m.task_started();
        }
        let outcome = match self.execute(con, view_con, &d, span.clone()) {
            Ok(o) => o,
            Err(Refusal::Redis(e)) => {
                if let Some(s) = &span {
                    s.finish("redis_error", None);
                }
                return Err(e);
            }
            Err(Refusal::Fail(why)) => {
                tracing::warn!("task {} of run {}: {why}", d.info.task_id, d.session);
                Outcome::Done(Box::new(Completion::failed(
                    &d.dispatch,
                    &self.id,
                    TaskFailure::new(FailureKind::Failed, why),
                )))
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        match &outcome {
            Outcome::Done(c) => {
                let failure = c.failure.as_ref().or(c.outcome.as_ref().err());
                if let Some(m) = flight.0.take() {
                    match failure {
                        Some(f) => m.task_failed(f.kind.name(), seconds, false),
                        None => m.task_succeeded(seconds),
                    }
                    if d.spec.attempt > 0 {
                        m.task_retried();
                    }
                }
                if let Some(s) = &span {
                    s.finish(if failure.is_some() { "failed" } else { "completed" }, failure);
                }
            }
            Outcome::HandBack => {
                // `flight` counts it out.
                if let Some(s) = &span {
                    s.finish("handed_back", None);
                }
            }
        }
        match outcome {
            Outcome::Done(c) => {
                let failed = c.outcome.is_err() || c.failure.is_some();
                tracing::debug!(
                    task = %d.info.task_id, session = %d.session, ms = started.elapsed().as_secs_f64() * 1000.0,
                    failed, "task finished"
                );
                self.record(con, &entry.id, &d.session, &d.epoch, &c)?;
                self.completed.fetch_add(1, Ordering::Relaxed);
                if failed {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Outcome::HandBack => {
                tracing::warn!("handing task {} of run {} back (this worker is stopping)", d.info.task_id, d.session);
                redis::cmd("EVAL")
                    .arg(HAND_BACK)
                    .arg(1)
                    .arg(Keys::tasks())
                    .arg(GROUP)
                    .arg(&entry.id)
                    .arg(&d.session)
                    .arg(payload)
                    .query::<()>(con)?;
                self.handed_back.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn record(
        &self,
        con: &mut redis::Connection,
        entry: &str,
        session: &str,
        epoch: &str,
        c: &Completion,
    ) -> Result<(), redis::RedisError> {
        let mut payload = wire::encode(c);
        if payload.len() as u64 > wire::MAX_MESSAGE_BYTES {
            let why = format!(
                "the task's completion has {} bytes, over the bound of {} bytes for a message through Redis",
                payload.len(),
                wire::MAX_MESSAGE_BYTES
            );
            let failed = Completion::failed(&c.dispatch, &self.id, TaskFailure::new(FailureKind::HostBound, why));
            payload = wire::encode(&failed);
        }
        let script = || {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(RECORD)
                .arg(4)
                .arg(Keys::recorded(session))
                .arg(Keys::done(session))
                .arg(Keys::tasks())
                .arg(Keys::live(session))
                .arg(&c.dispatch)
                .arg(&payload)
                .arg(GROUP)
                .arg(entry)
                .arg(epoch);
            cmd
        };
        // A connection idle for the whole task may have been closed by the
        // server or the network: the script is idempotent, so it is sent once
        // more on a fresh connection.
        let recorded: i64 = match script().query(con) {
            Ok(r) => r,
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                tracing::debug!("recording over a fresh connection ({e})");
                *con = self.open().map_err(|_| e)?;
                script().query(con)?
            }
            Err(e) => return Err(e),
        };
        if recorded == 0 {
            tracing::debug!("dispatch {} already had its completion recorded (the task ran twice)", c.dispatch);
        }
        Ok(())
    }

    /// Run one dispatch in the local sandbox.
    fn execute(
        &self,
        con: &mut redis::Connection,
        view_con: &Arc<Mutex<redis::Connection>>,
        d: &Dispatch,
        span: Option<Arc<crate::telemetry::spans::ExecutionSpan>>,
    ) -> Result<Outcome, Refusal> {
        let workflow = self.workflow(con, &d.workflow, d.outbound.as_deref())?;
        let Some(def) = workflow.tasks.get(&d.task) else {
            return Err(Refusal::Fail(format!("the run's workflow has no task '{}'", d.task)));
        };
        let Some(module) = workflow.modules.get(&def.module) else {
            return Err(Refusal::Fail(format!("the run's workflow has no module '{}'", def.module)));
        };
        if !self.opts.allow_grants && (!def.grants.dirs.is_empty() || !def.grants.env.is_empty()) {
            return Err(Refusal::Fail(format!(
                "task '{}' is granted host directories or environment variables, and worker {} grants neither \
                 (start it with --allow-grants to honour them)",
                def.name, self.id
            )));
        }
        let fuel = def.limits.fuel.is_some();
        let key = module.sha256.to_hex();
        let sandbox = self.ensure_module(con, fuel, &def.module, &module.sha256)?;
        if let Some(s) = &span {
            s.set_module_sha256(&key);
        }
        let view = Arc::new(RemoteView {
            client: self.client.clone(),
            con: view_con.clone(),
            key: Keys::channel(&d.session),
            delta: d.view.clone(),
            bytes: d.view_bytes,
            failed: Mutex::new(None),
        });
        let mut ctx = TaskContext::new(
            d.info.clone(),
            d.spec.clone(),
            view.clone(),
            workflow.clone(),
            IdAllocator::new(d.id_prefix.clone(), d.id_counters.clone()),
            d.bounds.clone(),
        );
        ctx.set_queue_usage(d.queue_usage);
        ctx.set_checkpoint_refusal(d.checkpoint_refusal.clone());
        let logs = Arc::new(LogCollector::default());
        ctx.set_listener(match span {
            Some(span) => Listener(Some(Arc::new(crate::engine::Fanout(vec![logs.clone(), span])))),
            None => Listener(Some(logs.clone())),
        });
        // A question waits here, on the worker; an answer given in Redis
        // (`feedback answer --redis`) wakes it.
        ctx.set_feedback(Arc::new(
            super::RedisDesk::new(self.client.clone(), self.shown.clone(), view_con.clone())
                .fenced(&d.session, &d.epoch),
        ));
        let mut local = def.clone();
        local.module = key;
        // An instance is never reused across runs (tenants) on a worker.
        local.reuse_instance = false;
        let (mut ctx, outcome) = sandbox.run(&local, &d.input, ctx);
        if let Some(e) = view.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(Refusal::Redis(e));
        }
        if matches!(&outcome, Err(f) if f.kind == FailureKind::Aborted) {
            return Ok(Outcome::HandBack);
        }
        let effects = std::mem::take(&mut ctx.effects);
        Ok(Outcome::Done(Box::new(Completion {
            v: wire::WIRE_VERSION,
            dispatch: d.dispatch.clone(),
            worker: self.id.clone(),
            outcome,
            writes: ctx.channel.writes(),
            calls: effects.calls,
            result: effects.result,
            terminate: effects.terminate,
            cancel: effects.cancel,
            checkpoint: effects.checkpoint,
            failure: effects.failure,
            logs: logs.take(),
            paused: effects.paused,
        })))
    }

    /// The workflow blob `key`, decoded (and verified) once per worker.
    fn workflow(
        &self,
        con: &mut redis::Connection,
        key: &str,
        outbound: Option<&str>,
    ) -> Result<Arc<Workflow>, Refusal> {
        let cache_key = match outbound {
            Some(o) => format!("{key}+{o}"),
            None => key.to_string(),
        };
        if let Some(w) = self.workflows.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key) {
            return Ok(w.clone());
        }
        let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(Keys::workflow(key)).query(con)?;
        let Some(bytes) = bytes else {
            return Err(Refusal::Fail(format!("the run's workflow (blake3 {key}) is not in Redis")));
        };
        let bad = |why: String| Refusal::Fail(format!("the run's workflow in Redis (blake3 {key}) is refused: {why}"));
        let (_, digest) = crate::checkpoint::format::verify(&bytes).map_err(|e| bad(e.to_string()))?;
        match digest {
            crate::checkpoint::schema::ContentDigest::Blake3(d) if hex::encode(d) == key => {}
            other => return Err(bad(format!("its content has digest {other}"))),
        }
        let ctx = crate::checkpoint::format::decode(&bytes, crate::checkpoint::schema::Values::Check, &digest)
            .map_err(|e| bad(e.to_string()))?;
        let mut workflow = ctx.workflow;
        if let Some(okey) = outbound {
            let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(Keys::outbound(okey)).query(con)?;
            let bad = |why: String| {
                Refusal::Fail(format!("the run's outbound policy in Redis (blake3 {okey}) is refused: {why}"))
            };
            let Some(bytes) = bytes else { return Err(bad("it is not in Redis".into())) };
            if bytes.len() > MAX_POLICY_BYTES {
                return Err(bad(format!("it has {} bytes, over {MAX_POLICY_BYTES}", bytes.len())));
            }
            if blake3::hash(&bytes).to_hex().as_str() != okey {
                return Err(bad("its content does not match its digest".into()));
            }
            let policy: crate::outbound::Policy = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            policy.validate().map_err(bad)?;
            workflow.outbound = Arc::new(policy);
        }
        let workflow = Arc::new(workflow);
        let mut cache = self.workflows.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_WORKFLOWS {
            cache.clear();
        }
        cache.insert(cache_key, workflow.clone());
        Ok(workflow)
    }

    /// Make sure module `digest` is loaded in the sandbox for `fuel`: fetched
    /// from Redis, verified, compiled (or taken from the local cache).
    fn ensure_module(
        &self,
        con: &mut redis::Connection,
        fuel: bool,
        name: &str,
        digest: &Sha256,
    ) -> Result<Arc<Sandbox>, Refusal> {
        let key = digest.to_hex();
        let sandbox = {
            let mut slot = self.sandboxes[usize::from(fuel)].lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(s) => s.clone(),
                None => {
                    let needs = EngineNeeds::new(fuel, MAX_MEMORY_MB << 20, self.opts.concurrency);
                    let sandbox = Sandbox::for_needs(&needs, self.opts.cache_dir.clone()).map_err(|e| {
                        Refusal::Fail(format!("worker {} cannot start its wasm engine: {e:#}", self.id))
                    })?;
                    if self.stopping.load(Ordering::SeqCst) {
                        sandbox.abort_handle().store(true, Ordering::SeqCst);
                    }
                    let mut sandbox = sandbox;
                    sandbox.set_outbound_allow(self.opts.allow_outbound.clone());
                    let sandbox = Arc::new(sandbox);
                    *slot = Some(sandbox.clone());
                    sandbox
                }
            }
        };
        if sandbox.has_module(&key) {
            return Ok(sandbox);
        }
        let len: u64 = redis::cmd("STRLEN").arg(Keys::module(digest)).query(con)?;
        if len > DEFAULT_MAX_MODULE_BYTES {
            return Err(Refusal::Fail(format!(
                "module '{name}' in Redis has {len} bytes, over the bound max_module_bytes = {DEFAULT_MAX_MODULE_BYTES}"
            )));
        }
        let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(Keys::module(digest)).query(con)?;
        let Some(bytes) = bytes else {
            return Err(Refusal::Fail(format!(
                "worker {} cannot load module '{name}': its code (sha256 {digest}) is not in Redis",
                self.id
            )));
        };
        let code = ModuleBytes::new(bytes);
        if code.digest() != *digest {
            return Err(Refusal::Fail(format!(
                "worker {} cannot load module '{name}': the bytes in Redis have sha256 {}, not {digest}",
                self.id,
                code.digest()
            )));
        }
        sandbox.load_module(&key, &code).map_err(|e| {
            Refusal::Fail(format!("worker {} cannot load module '{name}' (sha256 {digest}): {e}", self.id))
        })?;
        tracing::info!("worker {}: module '{name}' (sha256 {digest}) loaded", self.id);
        Ok(sandbox)
    }
}

fn ensure_group(con: &mut redis::Connection) -> Result<(), redis::RedisError> {
    match redis::cmd("XGROUP").arg("CREATE").arg(Keys::tasks()).arg(GROUP).arg("0").arg("MKSTREAM").query::<()>(con) {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
        _ => Ok(()),
    }
}

fn ack_delete(con: &mut redis::Connection, entry: &str) -> Result<(), redis::RedisError> {
    let mut pipe = redis::pipe();
    pipe.cmd("XACK").arg(Keys::tasks()).arg(GROUP).arg(entry).ignore();
    pipe.cmd("XDEL").arg(Keys::tasks()).arg(entry).ignore();
    pipe.query(con)
}

/// The fields of a dispatch that say where its completion goes.
#[derive(serde::Deserialize)]
struct Head {
    session: String,
    epoch: String,
    dispatch: String,
}

fn head(payload: &[u8]) -> Option<Head> {
    let h: Head = serde_json::from_slice(payload).ok()?;
    crate::checkpoint::schema::is_valid_id(&h.session).then_some(h)
}

/// The channel a remote execution reads: the run's channel in Redis with the
/// dispatch's view on top. It is the base of the execution's overlay, which
/// never writes to its base: the write methods are never called.
struct RemoteView {
    client: redis::Client,
    con: Arc<Mutex<redis::Connection>>,
    key: String,
    delta: BTreeMap<String, Option<Json>>,
    bytes: u64,
    /// The first Redis error: the execution is not recorded.
    failed: Mutex<Option<redis::RedisError>>,
}

impl RemoteView {
    fn fail(&self, e: redis::RedisError) {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
    }

    /// Run `cmd`; if the connection was closed while idle, once more on a
    /// fresh one.
    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, redis::RedisError> {
        let mut con = self.con.lock().unwrap_or_else(|e| e.into_inner());
        match cmd.query(&mut *con) {
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                *con = self.client.get_connection_with_timeout(Duration::from_secs(10)).map_err(|_| e)?;
                let _ = con.set_read_timeout(Some(Duration::from_secs(10)));
                cmd.query(&mut *con)
            }
            other => other,
        }
    }
}

impl Channel for RemoteView {
    fn get(&self, key: &str) -> Option<Json> {
        if let Some(v) = self.delta.get(key) {
            return v.clone();
        }
        match self.query::<Option<Vec<u8>>>(redis::cmd("HGET").arg(&self.key).arg(key)) {
            Ok(None) => None,
            Ok(Some(bytes)) => match String::from_utf8(bytes)
                .map_err(|e| e.to_string())
                .and_then(|t| Json::parse(t).map_err(|e| e.to_string()))
            {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!("channel key '{key}' in Redis does not hold JSON ({e}); read as missing");
                    None
                }
            },
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }
    fn set(&self, _: &str, _: Json) {}
    fn delete(&self, _: &str) -> bool {
        false
    }
    fn keys(&self) -> Vec<String> {
        let stored: Vec<String> = match self.query(redis::cmd("HKEYS").arg(&self.key)) {
            Ok(k) => k,
            Err(e) => {
                self.fail(e);
                Vec::new()
            }
        };
        let mut keys: Vec<String> = stored.into_iter().filter(|k| !self.delta.contains_key(k)).collect();
        keys.extend(self.delta.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k.clone()));
        keys.sort();
        keys
    }
    fn add(&self, key: &str, _: f64) -> Result<f64, ChannelError> {
        Err(ChannelError::NotANumber(key.to_string()))
    }
    fn size_bytes(&self) -> u64 {
        self.bytes
    }
}

/// Collects an execution's log lines for its completion (at most
/// [`MAX_FORWARDED_LOG_BYTES`]; then one line says how many were dropped).
#[derive(Default)]
struct LogCollector {
    lines: Mutex<Collected>,
}

/// Lines kept (level, line), their bytes, and how many were dropped.
#[derive(Default)]
struct Collected {
    kept: Vec<(String, String)>,
    bytes: usize,
    dropped: u64,
}

impl LogCollector {
    fn take(&self) -> Vec<(String, String)> {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let Collected { mut kept, dropped, .. } = std::mem::take(&mut *l);
        if dropped > 0 {
            kept.push(("warn".into(), format!("{dropped} more log lines were not forwarded from the worker")));
        }
        kept
    }
}

impl RunListener for LogCollector {
    fn event(&self, event: &Event) {
        // A request is forwarded as a log line (the coordinator's journal has it then).
        let request_line;
        let (level, line) = match &event.kind {
            EventKind::Log { level, line, .. } => (*level, line),
            EventKind::Request {
                kind,
                method,
                origin,
                path,
                status,
                sent_bytes,
                received_bytes,
                duration_ms,
                error,
                ..
            } => {
                let outcome = crate::engine::request_outcome(*status, error.as_deref());
                request_line = format!(
                    "{kind} {method} {origin}{path} -> {outcome} ({sent_bytes} B sent, {received_bytes} B received, {duration_ms:.1} ms)"
                );
                ("info", &request_line)
            }
            _ => return,
        };
        {
            let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            if l.bytes + line.len() > MAX_FORWARDED_LOG_BYTES {
                l.dropped += 1;
                return;
            }
            l.bytes += line.len();
            l.kept.push((level.to_string(), line.clone()));
        }
    }
}

/// The largest outbound policy a worker reads from Redis.
const MAX_POLICY_BYTES: usize = 4 << 20;
