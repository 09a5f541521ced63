//! Distributed runs: one coordinator, many workers, Redis between them.
//!
//! The coordinator is an ordinary [`Session`](crate::session::Session) whose
//! engine runs tasks through a [`Coordinator`] instead of the local sandbox:
//! the graph, the queue, ordering, retry and group policies and checkpoints
//! stay in the coordinator, so a distributed run has the semantics of a local
//! one. What moves (all keys under the prefix `graflow-host:`, see [`Keys`]):
//!
//! - **Code**, by content: each module's bytes once under `module:<sha256>`,
//!   the workflow (tasks, limits, grants, graph) once under
//!   `workflow:<blake3>`. A worker fetches what it lacks, verifies the digest
//!   and keeps the compiled artifact in its local cache.
//! - **Tasks**, on the stream `tasks` read by the consumer group `workers`
//!   (Redis Streams): a task taken by a worker that dies is claimed by
//!   another after the visibility timeout. Delivery is at least once.
//! - **Completions**, on the run's stream `run:<session>:done`. A worker
//!   records a completion only if none is recorded for that dispatch yet
//!   (`run:<session>:recorded`), and the coordinator applies each dispatch's
//!   completion once: a task that ran twice is committed once.
//! - **The channel**, in the hash `run:<session>:channel`, written through by
//!   the coordinator when it commits; a task's own writes travel back in its
//!   completion and reach the channel only when the coordinator commits them.
//!   Branches of a parallel group see the channel as it was when the group
//!   started: their dispatches carry their branch's pending writes.
//! - **Liveness**: workers heartbeat in the sorted set `workers`; the
//!   coordinator refreshes `run:<session>:live` (its epoch) while it runs.
//!
//! Every key of a run is scoped by its session id; a run's keys are deleted
//! when its coordinator ends.

pub mod coordinator;
pub mod desk;
pub mod wire;
pub mod worker;

pub use coordinator::Coordinator;
pub use desk::RedisDesk;
pub use worker::{Worker, WorkerOptions};

use std::time::Duration;

/// The key prefix of everything graflow-host keeps in Redis.
pub const PREFIX: &str = "graflow-host";

/// The consumer group of the workers on the task stream.
pub const GROUP: &str = "workers";

/// How a coordinator reaches Redis and waits for its workers.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`, `unix://`).
    pub url: String,
    /// How long the coordinator waits while no worker is alive before it
    /// stops the run with a checkpoint.
    pub worker_timeout: Duration,
}

impl RedisOptions {
    /// Options for `url` with the default worker timeout (60 s).
    pub fn new(url: impl Into<String>) -> RedisOptions {
        RedisOptions { url: url.into(), worker_timeout: DEFAULT_WORKER_TIMEOUT }
    }
}

/// How long a coordinator waits with no worker alive, by default.
pub const DEFAULT_WORKER_TIMEOUT: Duration = Duration::from_secs(60);

/// A worker counts as alive this long after its last heartbeat.
pub const ALIVE_WINDOW: Duration = Duration::from_secs(5);

/// How often a worker heartbeats (and extends the tasks it holds).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Key names.
pub struct Keys;

impl Keys {
    /// The task stream.
    pub fn tasks() -> String {
        format!("{PREFIX}:tasks")
    }
    /// Live workers: worker id → last heartbeat (Unix ms).
    pub fn workers() -> String {
        format!("{PREFIX}:workers")
    }
    /// A module's bytes.
    pub fn module(sha256: &crate::digest::Sha256) -> String {
        format!("{PREFIX}:module:{sha256}")
    }
    /// A workflow blob.
    pub fn workflow(blake3_hex: &str) -> String {
        format!("{PREFIX}:workflow:{blake3_hex}")
    }
    /// A workflow's outbound policy (JSON).
    pub fn outbound(blake3_hex: &str) -> String {
        format!("{PREFIX}:outbound:{blake3_hex}")
    }
    /// A run's channel.
    pub fn channel(session: &str) -> String {
        format!("{PREFIX}:run:{session}:channel")
    }
    /// A run's completion stream.
    pub fn done(session: &str) -> String {
        format!("{PREFIX}:run:{session}:done")
    }
    /// A run's recorded dispatches.
    pub fn recorded(session: &str) -> String {
        format!("{PREFIX}:run:{session}:recorded")
    }
    /// A run's live marker: the epoch of its coordinator.
    pub fn live(session: &str) -> String {
        format!("{PREFIX}:run:{session}:live")
    }
}

/// Why Redis could not be used. Each names the URL.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL is not a Redis URL.
    #[error("'{url}' is not a Redis URL (redis[s]://[user:password@]host:port[/db])")]
    BadUrl {
        /// The URL given.
        url: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// No connection.
    #[error("cannot reach Redis at {url}")]
    Unreachable {
        /// The URL (without its password).
        url: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// A command failed.
    #[error("Redis at {url}: {what} failed")]
    Command {
        /// The URL (without its password).
        url: String,
        /// What was asked.
        what: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// A module or workflow blob is not what its key says.
    #[error("Redis at {url}: {what}")]
    Content {
        /// The URL (without its password).
        url: String,
        /// What is wrong.
        what: String,
    },
}

/// `url` without its password, for messages (see [`crate::redacted_url`]).
pub fn redacted(url: &str) -> String {
    crate::redacted_url(url)
}

/// The environment variable naming a PEM file of the certificate
/// authorities a `rediss://` server's certificate is checked against
/// (default: the system's).
pub const REDIS_CA_ENV: &str = "GRAFLOW_REDIS_CA_FILE";

/// The largest CA file read.
const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// A client of `url`: plain (`redis://`), or TLS (`rediss://`) with the CA of
/// [`REDIS_CA_ENV`] when it is set. A user and password in the URL log in
/// as that ACL user.
fn client(url: &str, shown: &str) -> Result<redis::Client, RedisError> {
    let bad_url = |source| RedisError::BadUrl { url: shown.to_string(), source };
    let ca = std::env::var_os(REDIS_CA_ENV).filter(|p| !p.is_empty());
    let Some(ca) = ca.filter(|_| url.starts_with("rediss://")) else {
        return redis::Client::open(url).map_err(bad_url);
    };
    let unreadable = |why: String| RedisError::Content {
        url: shown.to_string(),
        what: format!("the CA file {} ({REDIS_CA_ENV}) {why}", std::path::Path::new(&ca).display()),
    };
    let pem = crate::files::read_bounded(std::path::Path::new(&ca), MAX_CA_FILE_BYTES, "the 1 MiB bound on a CA file")
        .map_err(|e| unreadable(format!("cannot be read: {e}")))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(unreadable("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(pem) })
        .map_err(bad_url)
}

/// A client and one checked connection to `url` (PING answered), with
/// `timeout` for connecting, reading and writing.
pub fn connect(url: &str, timeout: Duration) -> Result<(redis::Client, redis::Connection), RedisError> {
    let shown = redacted(url);
    let client = client(url, &shown)?;
    let con = open(&client, &shown, timeout)?;
    Ok((client, con))
}

/// Another checked connection of `client`.
pub fn open(client: &redis::Client, shown: &str, timeout: Duration) -> Result<redis::Connection, RedisError> {
    let unreachable = |source| RedisError::Unreachable { url: shown.to_string(), source };
    let mut con = client.get_connection_with_timeout(timeout).map_err(unreachable)?;
    con.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    con.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    redis::cmd("PING").query::<String>(&mut con).map_err(unreachable)?;
    Ok(con)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(super::redacted("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(super::redacted("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(super::redacted("redis://h:1"), "redis://h:1");
    }
}
