//! Feedback requests and answers of distributed runs, in Redis: the task
//! waits on the worker that runs it, and an answer given with `graflow-host
//! feedback answer --redis URL` (from any machine) wakes it at once.
//!
//! Keys (prefix `graflow-host:feedback:`): `<id>:request` and `<id>:answer`
//! (JSON, kept 7 days), `<id>:notify` (a list the waiting task blocks on) and
//! `pending` (the ids without an answer).

use super::{PREFIX, RedisError};
use crate::feedback::{AnswerRecord, FeedbackDesk, FeedbackError, FeedbackRequest};
use crate::json::Json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long requests and answers stay in Redis.
const TTL_SECS: u64 = 7 * 24 * 3600;

fn key(id: &str, what: &str) -> String {
    format!("{PREFIX}:feedback:{id}:{what}")
}

fn pending() -> String {
    format!("{PREFIX}:feedback:pending")
}

/// Stores the answer once; wakes the waiting task. KEYS: request, answer,
/// notify, pending. ARGV: answer record, ttl, id. Returns -1 (no such
/// request), 0 (answered already) or 1.
const ANSWER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('LPUSH', KEYS[3], 1)
  redis.call('EXPIRE', KEYS[3], ARGV[2])
  redis.call('SREM', KEYS[4], ARGV[3])
  return 1
end
return 0
";

/// A feedback desk in Redis.
pub struct RedisDesk {
    client: redis::Client,
    shown: String,
    con: Arc<Mutex<redis::Connection>>,
    /// On a worker: the run's `live` key and the epoch of the coordinator
    /// that sent the task; a wait ends when another (or none) holds it.
    fence: Option<(String, String)>,
}

fn failed(shown: &str, e: redis::RedisError) -> FeedbackError {
    FeedbackError::Unavailable(format!("Redis at {shown}: {e}"))
}

impl RedisDesk {
    /// A desk over `con` (a connection of `client`).
    pub fn new(client: redis::Client, shown: String, con: Arc<Mutex<redis::Connection>>) -> RedisDesk {
        RedisDesk { client, shown, con, fence: None }
    }

    /// End waits once run `session` is no longer coordinated by `epoch` (its
    /// coordinator died or was replaced): the task's answer would reach no one.
    pub fn fenced(mut self, session: &str, epoch: &str) -> RedisDesk {
        self.fence = Some((super::Keys::live(session), epoch.to_string()));
        self
    }

    /// Connect to `url`.
    pub fn connect(url: &str) -> Result<RedisDesk, RedisError> {
        let (client, con) = super::connect(url, Duration::from_secs(10))?;
        Ok(RedisDesk::new(client, super::redacted(url), Arc::new(Mutex::new(con))))
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, FeedbackError> {
        let mut con = self.con.lock().unwrap_or_else(|e| e.into_inner());
        match cmd.query(&mut *con) {
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                *con = super::open(&self.client, &self.shown, Duration::from_secs(10))
                    .map_err(|_| failed(&self.shown, e))?;
                cmd.query(&mut *con).map_err(|e| failed(&self.shown, e))
            }
            other => other.map_err(|e| failed(&self.shown, e)),
        }
    }

    fn get_json<T: for<'de> serde::Deserialize<'de>>(&self, k: &str) -> Result<Option<T>, FeedbackError> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(k))?;
        bytes.map(|b| serde_json::from_slice(&b)).transpose().map_err(|e| {
            FeedbackError::Unavailable(format!("Redis at {}: {k} does not hold a feedback record: {e}", self.shown))
        })
    }

    /// The requests waiting for an answer, oldest first.
    pub fn pending(&self) -> Result<Vec<FeedbackRequest>, FeedbackError> {
        let ids: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(pending()))?;
        let mut out = Vec::new();
        for id in ids {
            match self.get_json::<FeedbackRequest>(&key(&id, "request"))? {
                Some(r) => out.push(r),
                None => {
                    let _: () = self.query(redis::cmd("SREM").arg(pending()).arg(&id))?;
                }
            }
        }
        out.sort_by_key(|r| (r.requested_at_ms, r.id.clone()));
        Ok(out)
    }

    /// Request `id` and its answer, if any.
    pub fn find(&self, id: &str) -> Result<(FeedbackRequest, Option<AnswerRecord>), FeedbackError> {
        let unknown = || FeedbackError::Unknown { id: id.into(), dir: format!("Redis at {}", self.shown).into() };
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let request = self.get_json::<FeedbackRequest>(&key(id, "request"))?.ok_or_else(unknown)?;
        Ok((request, self.get_json::<AnswerRecord>(&key(id, "answer"))?))
    }

    /// Answer request `id` (checked against its kind), once; wakes the task.
    pub fn answer_request(&self, id: &str, answer: &Json, by: &str) -> Result<FeedbackRequest, FeedbackError> {
        let (request, existing) = self.find(id)?;
        if let Some(a) = existing {
            return Err(FeedbackError::AlreadyAnswered { id: id.into(), by: a.by, answer: a.answer.as_str().into() });
        }
        let answer = request.check_answer(answer).map_err(FeedbackError::WrongAnswer)?;
        let record = AnswerRecord { id: id.into(), answer, answered_at_ms: crate::engine::now_ms(), by: by.into() };
        let stored: i64 = self.query(
            redis::cmd("EVAL")
                .arg(ANSWER)
                .arg(4)
                .arg(key(id, "request"))
                .arg(key(id, "answer"))
                .arg(key(id, "notify"))
                .arg(pending())
                .arg(serde_json::to_string(&record).unwrap_or_default())
                .arg(TTL_SECS)
                .arg(id),
        )?;
        match stored {
            1 => Ok(request),
            0 => Err(FeedbackError::AlreadyAnswered {
                id: id.into(),
                by: "?".into(),
                answer: "(given meanwhile)".into(),
            }),
            _ => Err(FeedbackError::Unknown { id: id.into(), dir: format!("Redis at {}", self.shown).into() }),
        }
    }
}

impl FeedbackDesk for RedisDesk {
    fn answer(&self, request: &FeedbackRequest) -> Result<Option<Json>, FeedbackError> {
        Ok(self.get_json::<AnswerRecord>(&key(&request.id, "answer"))?.map(|a| a.answer))
    }

    fn post(&self, request: &FeedbackRequest) -> Result<(), FeedbackError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key(&request.id, "request"))
            .arg(serde_json::to_string(request).unwrap_or_default())
            .arg("NX")
            .arg("EX")
            .arg(TTL_SECS)
            .ignore();
        pipe.cmd("SADD").arg(pending()).arg(&request.id).ignore();
        let mut con = self.con.lock().unwrap_or_else(|e| e.into_inner());
        pipe.query::<()>(&mut *con).map_err(|e| failed(&self.shown, e))
    }

    /// Woken at once by an answer (`BLPOP` on its notify list); on a worker,
    /// stops the wait once the run has another coordinator, or none.
    fn nap(&self, request: &FeedbackRequest, max: Duration) -> Result<bool, FeedbackError> {
        let secs = max.max(Duration::from_millis(10)).as_secs_f64();
        let _: Option<(String, String)> =
            self.query(redis::cmd("BLPOP").arg(key(&request.id, "notify")).arg(format!("{secs:.3}")))?;
        if let Some((live, epoch)) = &self.fence {
            let holder: Option<String> = self.query(redis::cmd("GET").arg(live))?;
            return Ok(holder.as_deref() == Some(epoch.as_str()));
        }
        Ok(true)
    }
}
