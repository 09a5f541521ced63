//! The coordinator's side of a distributed run: a [`TaskRunner`] that sends
//! each execution to the workers through Redis and applies what comes back,
//! and the root channel that writes every commit through to Redis.

use super::wire::{self, Completion, Dispatch};
use super::{ALIVE_WINDOW, GROUP, Keys, RedisError, RedisOptions};
use crate::channel::{Channel, ChannelError, MemoryChannel, PendingWrite};
use crate::engine::{ControlCall, FailureKind, HostCallError, RunState, TaskContext, TaskFailure, TaskRunner};
use crate::json::Json;
use crate::model::{TaskDef, Workflow};
use crate::module_store::ModuleBytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deletes a run's keys if KEYS[1] (live) holds ARGV[1] (this epoch).
const FINISH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 1
end
return 0
";

/// Keeps KEYS[1] (live) at ARGV[1] (this epoch) for ARGV[2] seconds, unless
/// another epoch holds it; then 0.
const REFRESH: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
";

/// Counts workers that heartbeated within ARGV[1] ms, by Redis's clock.
const ALIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')
";

/// How long module and workflow blobs stay in Redis after their last use.
const BLOB_TTL_SECS: u64 = 7 * 24 * 3600;

/// How long a run's keys outlive their coordinator's last refresh (a
/// coordinator killed with kill -9 leaves nothing behind for longer).
const RUN_TTL_SECS: u64 = 600;

/// Timeout of connecting and of one command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Fields per `HSET` when a channel is restored.
const RESTORE_BATCH: usize = 1000;

/// What a waiting execution receives.
enum Message {
    Done(Box<Completion>),
    Stop,
}

/// One channel change not yet sent to Redis.
enum Op {
    Set(String, Json),
    Delete(String),
}

/// The connection used for channel writes and dispatches, in that order:
/// pending channel writes are sent in the same pipeline as, and before, the
/// next dispatch, so a worker never reads an older channel than the
/// coordinator committed.
struct Link {
    con: redis::Connection,
    pending: Vec<Op>,
}

/// Why a distributed run had to stop.
#[derive(Debug, Clone)]
enum Stop {
    /// Redis stopped answering (the message says how).
    RedisLost(String),
    /// No worker was alive for the worker timeout.
    NoWorker(String),
    /// Another coordinator of the same run took over (a second resume).
    Superseded(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::RedisLost(m) | Stop::NoWorker(m) | Stop::Superseded(m) => f.write_str(m),
        }
    }
}

/// State the coordinator, its root channel and its completion reader share.
struct Shared {
    shown: String,
    client: redis::Client,
    /// Module and workflow keys, whose expiry the run keeps extending.
    blobs: Vec<String>,
    session: String,
    epoch: String,
    link: Mutex<Link>,
    waiters: Mutex<HashMap<String, mpsc::Sender<Message>>>,
    /// Why the run must stop, once known.
    stopped: Mutex<Option<Stop>>,
    /// The session's interrupt flag: set when the run must stop.
    interrupt: Arc<AtomicBool>,
}

impl Shared {
    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop the run: remember why, stop at the next task boundary (where it
    /// checkpoints), and release every waiting execution (queued again).
    fn stop(&self, reason: Stop) {
        {
            let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
            if stopped.is_none() {
                tracing::error!("{reason}");
                *stopped = Some(reason);
            }
        }
        self.interrupt.store(true, Ordering::SeqCst);
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, tx) in waiters {
            let _ = tx.send(Message::Stop);
        }
    }

    fn stopped(&self) -> Option<Stop> {
        self.stopped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Redis stopped answering: the run stops.
    fn lost(&self, e: &redis::RedisError) {
        self.stop(Stop::RedisLost(format!("lost the connection to Redis at {}: {e}", self.shown)));
    }

    /// Send the pending channel writes (and `then`, in the same pipeline).
    fn flush(&self, then: Option<redis::Cmd>) -> Result<(), redis::RedisError> {
        let mut link = self.link();
        if link.pending.is_empty() && then.is_none() {
            return Ok(());
        }
        let key = Keys::channel(&self.session);
        let mut pipe = redis::pipe();
        for op in link.pending.drain(..) {
            match op {
                Op::Set(k, v) => pipe.cmd("HSET").arg(&key).arg(k).arg(v.as_str()).ignore(),
                Op::Delete(k) => pipe.cmd("HDEL").arg(&key).arg(k).ignore(),
            };
        }
        if let Some(cmd) = then {
            pipe.add_command(cmd).ignore();
        }
        match pipe.query::<()>(&mut link.con) {
            // Idle through a long task, the connection may have been closed
            // by the server or the network: once more on a fresh one (a
            // dispatch sent twice runs twice and is committed once).
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                link.con = super::open(&self.client, &self.shown, COMMAND_TIMEOUT).map_err(|_| e)?;
                pipe.query::<()>(&mut link.con)
            }
            other => other,
        }
    }
}

/// Runs a session's tasks on workers through Redis (see the module docs of
/// [`crate::distributed`]). Built by the session for `--redis`.
pub struct Coordinator {
    shared: Arc<Shared>,
    workflow_key: String,
    outbound_key: Option<String>,
    next: AtomicU64,
    abort: Arc<AtomicBool>,
    reader_stop: Arc<AtomicBool>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Coordinator {
    /// Connect to Redis, upload the modules and the workflow (once, by
    /// content), put `channel` in place as the run's channel, and start
    /// reading completions. `interrupt` and `abort` are the session's stop
    /// flags.
    pub fn connect(
        opts: &RedisOptions,
        workflow: &Workflow,
        state: &RunState,
        modules: &BTreeMap<String, ModuleBytes>,
        channel: &BTreeMap<String, Json>,
        interrupt: Arc<AtomicBool>,
        abort: Arc<AtomicBool>,
    ) -> Result<Coordinator, RedisError> {
        let (client, mut con) = super::connect(&opts.url, COMMAND_TIMEOUT)?;
        let shown = super::redacted(&opts.url);
        let session = state.session_id.clone();
        let failed = |what: &str| {
            let (url, what) = (shown.clone(), what.to_string());
            move |source| RedisError::Command { url, what, source }
        };
        // The consumer group, made once for every run on this Redis.
        match redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(Keys::tasks())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query::<()>(&mut con)
        {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(failed("creating the consumer group")(e)),
        }
        let mut blobs = Vec::new();
        for (name, code) in modules {
            // Uploaded once: a blob of the right size is kept (and its expiry
            // extended); anything else under the key is replaced. Workers
            // verify the digest whatever is there.
            let key = Keys::module(&code.digest());
            let len: u64 = redis::cmd("STRLEN").arg(&key).query(&mut con).map_err(failed("STRLEN"))?;
            let cmd = if len == code.len() {
                let mut c = redis::cmd("EXPIRE");
                c.arg(&key).arg(BLOB_TTL_SECS);
                c
            } else {
                let mut c = redis::cmd("SET");
                c.arg(&key).arg(code.bytes()).arg("EX").arg(BLOB_TTL_SECS);
                c
            };
            cmd.query::<()>(&mut con).map_err(failed(&format!("uploading module '{name}'")))?;
            blobs.push(key);
        }
        let blob = workflow_blob(workflow);
        let workflow_key = match crate::checkpoint::format::verify(&blob) {
            Ok((_, crate::checkpoint::schema::ContentDigest::Blake3(d))) => hex::encode(d),
            _ => return Err(RedisError::Content { url: shown, what: "the workflow cannot be encoded".into() }),
        };
        blobs.push(Keys::workflow(&workflow_key));
        redis::cmd("SET")
            .arg(Keys::workflow(&workflow_key))
            .arg(&blob)
            .arg("EX")
            .arg(BLOB_TTL_SECS)
            .query::<()>(&mut con)
            .map_err(failed("uploading the workflow"))?;
        // The outbound policy travels beside it (names of key variables, never values).
        let outbound_key = if *workflow.outbound == crate::outbound::Policy::default() {
            None
        } else {
            let json = serde_json::to_vec(&*workflow.outbound)
                .map_err(|e| RedisError::Content { url: shown.clone(), what: format!("the outbound policy: {e}") })?;
            let key = blake3::hash(&json).to_hex().to_string();
            blobs.push(Keys::outbound(&key));
            redis::cmd("SET")
                .arg(Keys::outbound(&key))
                .arg(&json)
                .arg("EX")
                .arg(BLOB_TTL_SECS)
                .query::<()>(&mut con)
                .map_err(failed("uploading the outbound policy"))?;
            Some(key)
        };
        let epoch = format!("{:016x}", rand::random::<u64>());
        // The run's keys start from what this coordinator holds: an earlier
        // coordinator's completions and channel (before a resume) are gone.
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(Keys::channel(&session)).arg(Keys::done(&session)).arg(Keys::recorded(&session)).ignore();
        pipe.cmd("SET").arg(Keys::live(&session)).arg(&epoch).arg("EX").arg(RUN_TTL_SECS).ignore();
        let entries: Vec<(&String, &Json)> = channel.iter().collect();
        for batch in entries.chunks(RESTORE_BATCH) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(Keys::channel(&session));
            for (k, v) in batch {
                cmd.arg(k.as_str()).arg(v.as_str());
            }
            pipe.add_command(cmd).ignore();
        }
        pipe.cmd("EXPIRE").arg(Keys::channel(&session)).arg(RUN_TTL_SECS).ignore();
        pipe.query::<()>(&mut con).map_err(failed("putting the run's channel in place"))?;
        let reader_con = super::open(&client, &shown, COMMAND_TIMEOUT)?;
        let shared = Arc::new(Shared {
            shown,
            client: client.clone(),
            blobs,
            session,
            epoch,
            link: Mutex::new(Link { con, pending: Vec::new() }),
            waiters: Mutex::new(HashMap::new()),
            stopped: Mutex::new(None),
            interrupt,
        });
        let reader_stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shared, stop, timeout) = (shared.clone(), reader_stop.clone(), opts.worker_timeout);
            std::thread::Builder::new()
                .name("graflow-completions".into())
                .spawn(move || read_completions(&shared, reader_con, &stop, timeout))
                .map_err(|e| RedisError::Content {
                    url: super::redacted(&opts.url),
                    what: format!("cannot start the completion reader thread: {e}"),
                })?
        };
        Ok(Coordinator {
            shared,
            workflow_key,
            outbound_key,
            next: AtomicU64::new(0),
            abort,
            reader_stop,
            reader: Mutex::new(Some(reader)),
        })
    }

    /// The run's root channel: `mirror` (which checkpoints snapshot), with
    /// every write also sent to Redis.
    pub fn root_channel(&self, mirror: Arc<MemoryChannel>) -> Arc<dyn Channel> {
        Arc::new(RedisChannel { mirror, shared: self.shared.clone() })
    }

    /// Why the run had to stop (Redis lost, no worker alive), if it had to.
    pub fn stop_reason(&self) -> Option<String> {
        self.shared.stopped().map(|s| s.to_string())
    }

    /// The Redis URL, without its password.
    pub fn url(&self) -> &str {
        &self.shared.shown
    }

    /// Empty the run's channel in Redis (a restarted session).
    pub fn clear_channel(&self) -> Result<(), RedisError> {
        let mut link = self.shared.link();
        link.pending.clear();
        redis::cmd("DEL").arg(Keys::channel(&self.shared.session)).query::<()>(&mut link.con).map_err(|source| {
            RedisError::Command { url: self.shared.shown.clone(), what: "clearing the channel".into(), source }
        })
    }

    /// Stop reading completions and delete the run's keys (unless Redis was
    /// lost). Called when the run ends; idempotent.
    pub fn finish(&self) {
        self.reader_stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = reader.join();
        }
        if matches!(self.shared.stopped(), Some(Stop::RedisLost(_))) {
            return;
        }
        let s = &self.shared.session;
        let mut link = self.shared.link();
        link.pending.clear();
        // Only while this coordinator is the run's: a later one (a second
        // resume) keeps its keys.
        let deleted = redis::cmd("EVAL")
            .arg(FINISH)
            .arg(4)
            .arg(Keys::live(s))
            .arg(Keys::channel(s))
            .arg(Keys::done(s))
            .arg(Keys::recorded(s))
            .arg(&self.shared.epoch)
            .query::<()>(&mut link.con);
        if let Err(e) = deleted {
            tracing::warn!("cannot delete the run's keys in Redis at {}: {e}", self.shared.shown);
        }
    }

    fn dispatch(&self, id: &str, task: &TaskDef, input: &Json, ctx: &TaskContext) -> Dispatch {
        Dispatch {
            v: wire::WIRE_VERSION,
            session: self.shared.session.clone(),
            epoch: self.shared.epoch.clone(),
            dispatch: id.to_string(),
            workflow: self.workflow_key.clone(),
            outbound: self.outbound_key.clone(),
            task: task.name.clone(),
            input: input.clone(),
            info: ctx.info.clone(),
            spec: ctx.spec().clone(),
            id_prefix: ctx.ids().prefix.clone(),
            id_counters: ctx.ids().counters.clone(),
            bounds: ctx.bounds().clone(),
            queue_usage: ctx.queue_usage(),
            checkpoint_refusal: ctx.checkpoint_refusal().map(str::to_string),
            view: ctx.channel.pending_over_root(),
            view_bytes: ctx.channel.size_bytes(),
            traceparent: ctx.listener().trace_context(&ctx.info.task_id),
        }
    }

    fn forget(&self, id: &str) {
        self.shared.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.reader_stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = reader.join();
        }
    }
}

/// The error an execution gets when the run stops under it: it is queued
/// again, not failed.
fn stopped(why: &str) -> TaskFailure {
    TaskFailure::new(FailureKind::Aborted, why.to_string())
}

impl TaskRunner for Coordinator {
    fn run(&self, task: &TaskDef, input: &Json, ctx: TaskContext) -> (TaskContext, Result<Json, TaskFailure>) {
        if let Some(why) = self.shared.stopped() {
            return (ctx, Err(stopped(&why.to_string())));
        }
        let id = format!("{}-{}", self.shared.epoch, self.next.fetch_add(1, Ordering::Relaxed));
        let payload = wire::encode(&self.dispatch(&id, task, input, &ctx));
        if payload.len() as u64 > wire::MAX_MESSAGE_BYTES {
            let why = format!(
                "the task's input and channel view make a message of {} bytes, over the bound of {} bytes for a \
                 message through Redis",
                payload.len(),
                wire::MAX_MESSAGE_BYTES
            );
            return (ctx, Err(TaskFailure::new(FailureKind::HostBound, why)));
        }
        let (tx, rx) = mpsc::channel();
        self.shared.waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), tx);
        // A stop that came before the waiter was in place released nobody.
        if let Some(why) = self.shared.stopped() {
            self.forget(&id);
            return (ctx, Err(stopped(&why.to_string())));
        }
        let mut xadd = redis::cmd("XADD");
        xadd.arg(Keys::tasks()).arg("*").arg("s").arg(&self.shared.session).arg("d").arg(payload);
        if let Err(e) = self.shared.flush(Some(xadd)) {
            self.forget(&id);
            self.shared.lost(&e);
            return (ctx, Err(stopped("Redis was lost")));
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Message::Done(c)) => return apply(ctx, *c),
                Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let why = self.shared.stopped().map_or_else(|| "the run stopped".into(), |s| s.to_string());
                    return (ctx, Err(stopped(&why)));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(why) = self.shared.stopped() {
                        self.forget(&id);
                        return (ctx, Err(stopped(&why.to_string())));
                    }
                    if self.abort.load(Ordering::Relaxed) {
                        // The grace period ran out: the execution is queued
                        // again; its completion, if one comes, is ignored.
                        self.forget(&id);
                        return (ctx, Err(stopped("stopped by the host after the interrupt grace period")));
                    }
                }
            }
        }
    }
}

/// Longest worker name kept from a completion (longer ones are cut).
const MAX_WORKER_NAME_BYTES: usize = 128;

/// A worker's name as a completion gives it, made one line and cut to
/// [`MAX_WORKER_NAME_BYTES`].
fn worker_name(name: &str) -> String {
    let name = crate::engine::one_line(name);
    let cut = name.floor_char_boundary(MAX_WORKER_NAME_BYTES);
    if cut < name.len() { format!("{}...", &name[..cut]) } else { name.into_owned() }
}

/// The level names a completion may carry.
fn level(name: &str) -> &'static str {
    match name {
        "trace" => "trace",
        "debug" => "debug",
        "warn" => "warn",
        "error" => "error",
        _ => "info",
    }
}

/// Apply a completion to the execution's context by replaying its effects
/// through the same checks a local execution's host calls go through: the
/// same channel view, the same id allocator and the same bounds give the same
/// outcome as on the worker, and a worker cannot make the engine hold more
/// than a local task could.
pub fn apply(mut ctx: TaskContext, mut c: Completion) -> (TaskContext, Result<Json, TaskFailure>) {
    let (task, module) = (ctx.info.task_id.clone(), ctx.info.module.clone());
    let bounds = ctx.bounds().clone();
    // The worker's name goes into log lines and messages: one short line.
    c.worker = worker_name(&c.worker);
    // What a worker says is checked as a local execution's would be.
    let cut = |m: &str| ctx.log_line(m).into_owned();
    let fix = |f: TaskFailure| match f.kind {
        // A worker hands a stopped task back instead of reporting it.
        FailureKind::Aborted => TaskFailure::new(FailureKind::Failed, format!("worker said: {}", cut(&f.message))),
        _ => TaskFailure::new(f.kind, cut(&f.message)),
    };
    c.outcome = match c.outcome {
        Ok(out) if out.len() as u64 > bounds.max_value_bytes => Err(TaskFailure::new(
            FailureKind::HostBound,
            format!(
                "the task returned {} bytes, over the bound max_value_bytes = {} bytes",
                out.len(),
                bounds.max_value_bytes
            ),
        )),
        Ok(out) => Ok(out),
        Err(f) => Err(fix(f)),
    };
    c.failure = c.failure.map(fix);
    for (lvl, line) in &c.logs {
        let line = ctx.log_line(line);
        // The budget of a local execution's log lines.
        if !ctx.admit_log(line.len()) {
            break;
        }
        match level(lvl) {
            "error" => tracing::error!(target: "task", task, module, worker = %c.worker, "{line}"),
            "warn" => tracing::warn!(target: "task", task, module, worker = %c.worker, "{line}"),
            "debug" => tracing::debug!(target: "task", task, module, worker = %c.worker, "{line}"),
            "trace" => tracing::trace!(target: "task", task, module, worker = %c.worker, "{line}"),
            _ => tracing::info!(target: "task", task, module, worker = %c.worker, "{line}"),
        }
        ctx.log_event(level(lvl), &line);
    }
    tracing::debug!(task, worker = %c.worker, "completion received");
    let replayed = (|| -> Result<(), HostCallError> {
        // Deletes first, so the channel bound sees the task's final size
        // whatever order its writes came in.
        for (key, write) in &c.writes {
            if matches!(write, PendingWrite::Delete) {
                ctx.channel_delete(key)?;
            }
        }
        for (key, write) in &c.writes {
            match write {
                PendingWrite::Set(v) => ctx.replay_set(key, v)?,
                PendingWrite::Delete => {}
                PendingWrite::Add(delta) => {
                    ctx.channel_add(key, *delta)?;
                }
            }
        }
        for call in &c.calls {
            let text = |i: &Option<Json>| i.as_ref().map_or("null", Json::as_str).to_string();
            match call {
                ControlCall::NextTask { task, input, goto } => {
                    ctx.next_task(task, &text(input), *goto)?;
                }
                ControlCall::NextIteration { input } => {
                    ctx.next_iteration(&text(input))?;
                }
            }
        }
        if let Some(r) = &c.result {
            ctx.set_result(r.as_str())?;
        }
        if let Some(m) = &c.checkpoint {
            ctx.request_checkpoint(m.as_str())?;
        }
        if let Some(m) = &c.terminate {
            ctx.terminate(m);
        }
        if let Some(m) = &c.cancel {
            ctx.cancel(m);
        }
        Ok(())
    })();
    let pausing =
        [c.failure.as_ref(), c.outcome.as_ref().err()].into_iter().flatten().any(|f| f.kind == FailureKind::Paused);
    if let Some(f) = c.failure {
        ctx.effects.failure.get_or_insert(f);
    }
    // A question nobody answered in time on the worker: the run pauses on it
    // (the request must be this execution's).
    if let Some(r) = c.paused {
        let ours = r.session_id == ctx.info.session_id && r.task_id == ctx.info.task_id && r.validate().is_ok();
        if ours && pausing {
            ctx.effects.paused = Some(r);
        } else {
            let why = format!("worker '{}' reported a feedback request that is not this execution's", c.worker);
            return (ctx, Err(TaskFailure::new(FailureKind::Failed, why)));
        }
    } else if pausing {
        let why = format!("worker '{}' reported a pause without its feedback request", c.worker);
        return (ctx, Err(TaskFailure::new(FailureKind::Failed, why)));
    }
    match replayed {
        Ok(()) => (ctx, c.outcome),
        Err(HostCallError::Abort(f)) => (ctx, Err(f)),
        Err(HostCallError::Refused(m)) => {
            let why = format!("the effects worker '{}' reported do not apply on the coordinator: {m}", c.worker);
            (ctx, Err(TaskFailure::new(FailureKind::Failed, why)))
        }
    }
}

/// The completion reader: routes completions to the waiting executions,
/// keeps the run's keys alive, and stops the run when Redis is lost or no
/// worker has been alive for `worker_timeout` while executions wait.
fn read_completions(shared: &Shared, mut con: redis::Connection, stop: &AtomicBool, worker_timeout: Duration) {
    let s = shared.session.clone();
    let (done, live) = (Keys::done(&s), Keys::live(&s));
    let mut last = "0-0".to_string();
    let mut refreshed = Instant::now();
    let mut blobs_refreshed = Instant::now();
    let mut idle_since: Option<Instant> = None;
    let mut warned = false;
    while !stop.load(Ordering::SeqCst) {
        let read: Result<redis::streams::StreamReadReply, _> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(200)
            .arg("STREAMS")
            .arg(&done)
            .arg(&last)
            .query(&mut con);
        let reply = match read {
            Ok(r) => r,
            Err(e) => {
                if !stop.load(Ordering::SeqCst) {
                    shared.lost(&e);
                }
                return;
            }
        };
        let mut seen = Vec::new();
        let mut routed = Vec::new();
        for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
            last = entry.id.clone();
            seen.push(entry.id.clone());
            let field = |name: &str| match entry.map.get(name) {
                Some(redis::Value::BulkString(b)) => Some(b.clone()),
                _ => None,
            };
            let id = field("id").and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
            let completion = match field("c").map(|b| wire::decode_completion(&b)) {
                Some(Ok(c)) if c.dispatch == id => c,
                Some(Ok(c)) => {
                    tracing::warn!("ignored a completion naming dispatch {} under entry id {id}", c.dispatch);
                    continue;
                }
                other => {
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "a completion without its payload".to_string(),
                    };
                    Completion::failed(&id, "?", TaskFailure::new(FailureKind::Failed, format!("a worker sent {why}")))
                }
            };
            routed.push(completion.dispatch.clone());
            let waiter = shared.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&completion.dispatch);
            match waiter {
                Some(tx) => {
                    let _ = tx.send(Message::Done(Box::new(completion)));
                }
                None => tracing::debug!("completion of dispatch {} after its execution stopped waiting", id),
            }
        }
        if !seen.is_empty() {
            // A completion applied once needs no record any more: a late
            // duplicate finds no waiter and is dropped.
            let mut pipe = redis::pipe();
            pipe.cmd("XDEL").arg(&done).arg(&seen).ignore();
            pipe.cmd("HDEL").arg(Keys::recorded(&s)).arg(&routed).ignore();
            let deleted = pipe.query::<()>(&mut con);
            if let Err(e) = deleted {
                shared.lost(&e);
                return;
            }
        }
        if refreshed.elapsed() < Duration::from_secs(1) {
            continue;
        }
        refreshed = Instant::now();
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL").arg(REFRESH).arg(1).arg(&live).arg(&shared.epoch).arg(RUN_TTL_SECS);
        for key in [Keys::channel(&s), Keys::recorded(&s), done.clone()] {
            pipe.cmd("EXPIRE").arg(key).arg(RUN_TTL_SECS).ignore();
        }
        if blobs_refreshed.elapsed() >= Duration::from_secs(60) {
            blobs_refreshed = Instant::now();
            for key in &shared.blobs {
                pipe.cmd("EXPIRE").arg(key).arg(BLOB_TTL_SECS).ignore();
            }
        }
        pipe.cmd("EVAL").arg(ALIVE).arg(1).arg(Keys::workers()).arg(ALIVE_WINDOW.as_millis() as u64);
        let answer: Result<(u64, u64), _> = pipe.query(&mut con);
        let alive = match answer {
            Ok((1, n)) => n,
            Ok(_) => {
                shared.stop(Stop::Superseded(format!(
                    "another coordinator took over run {s} on {} (was it resumed a second time?); this one stops",
                    shared.shown
                )));
                return;
            }
            Err(e) => {
                shared.lost(&e);
                return;
            }
        };
        let waiting = !shared.waiters.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        if alive > 0 || !waiting {
            if warned && alive > 0 {
                tracing::info!("{alive} worker(s) alive again on {}", shared.shown);
            }
            idle_since = None;
            warned = false;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if !warned && since.elapsed() >= Duration::from_secs(2) {
            warned = true;
            tracing::warn!(
                "no graflow-host worker is alive on {url}: tasks wait (start one with `graflow-host worker --redis {url}`); \
                 the run stops with a checkpoint after {} s without one",
                worker_timeout.as_secs(),
                url = shared.shown
            );
        }
        if since.elapsed() >= worker_timeout {
            shared.stop(Stop::NoWorker(format!(
                "no graflow-host worker was alive on {} for {} s (start one with `graflow-host worker --redis {}`)",
                shared.shown,
                worker_timeout.as_secs(),
                shared.shown
            )));
            return;
        }
    }
}

/// The root channel of a distributed run: reads from the mirror, writes to
/// the mirror and (at the next dispatch, in order) to Redis.
struct RedisChannel {
    mirror: Arc<MemoryChannel>,
    shared: Arc<Shared>,
}

impl RedisChannel {
    fn push(&self, op: Op) {
        self.shared.link().pending.push(op);
    }
}

impl Channel for RedisChannel {
    fn get(&self, key: &str) -> Option<Json> {
        self.mirror.get(key)
    }
    fn set(&self, key: &str, value: Json) {
        self.mirror.set(key, value.clone());
        self.push(Op::Set(key.to_string(), value));
    }
    fn delete(&self, key: &str) -> bool {
        let existed = self.mirror.delete(key);
        self.push(Op::Delete(key.to_string()));
        existed
    }
    fn keys(&self) -> Vec<String> {
        self.mirror.keys()
    }
    fn add(&self, key: &str, amount: f64) -> Result<f64, ChannelError> {
        let sum = self.mirror.add(key, amount)?;
        if let Some(v) = self.mirror.get(key) {
            self.push(Op::Set(key.to_string(), v));
        }
        Ok(sum)
    }
    fn size_bytes(&self) -> u64 {
        self.mirror.size_bytes()
    }
}

/// The workflow as workers fetch it: a schema-2 context (the checkpoint
/// payload format, with its validation on decode) holding the workflow and an
/// empty run.
fn workflow_blob(workflow: &Workflow) -> Vec<u8> {
    let ctx = crate::checkpoint::Context {
        checkpoint_id: "workflow".to_string(),
        workflow: workflow.clone(),
        state: RunState::new(workflow, "workflow".to_string(), Json::null()),
        channel: BTreeMap::new(),
    };
    crate::checkpoint::format::encode(&ctx)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_worker_name_is_one_short_line() {
        assert_eq!(super::worker_name("w-1"), "w-1");
        let long = super::worker_name(&"W".repeat(100_000));
        assert_eq!(long.len(), super::MAX_WORKER_NAME_BYTES + 3);
        assert_eq!(super::worker_name("a\nfake line"), "a\\nfake line");
    }
}
