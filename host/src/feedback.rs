//! Human in the loop: a task asks a person, the run waits or pauses durably,
//! and resumes with the answer.
//!
//! A task calls `feedback.request` (wit/graflow.wit). The request gets an id
//! that depends only on the run, the execution and how many questions that
//! execution asked before ([`FeedbackRequest::id_for`]): when the task runs
//! again after a pause, it asks the same question under the same id, and the
//! answer given meanwhile comes back at once. Requests and answers are kept by
//! a [`FeedbackDesk`]: files beside the checkpoints ([`FileDesk`],
//! `<dir>/<session>/feedback/<id>.request.json` and `<id>.answer.json`), Redis
//! for a distributed run (`distributed::RedisDesk`), or the terminal
//! ([`PromptDesk`], which asks right there and records the answer like any
//! other). An answer file is written once, atomically; a second answer is
//! refused.
//!
//! The request types and the desk trait live with the engine
//! ([`crate::engine::feedback`], re-exported here); this module keeps them.

pub use crate::engine::feedback::*;
use crate::json::Json;
use crate::storage::{Storage, StorageError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Requests and answers as objects beside a run's checkpoints, in a folder
/// or a bucket ([`Storage`]): `<session>/feedback/<id>.request.json` and
/// `<id>.answer.json`. Each is created once, never replaced.
pub struct FileDesk {
    storage: Arc<dyn Storage>,
}

fn storage_error(storage: &dyn Storage, key: &str) -> impl FnOnce(StorageError) -> FeedbackError {
    let name = storage.name(key);
    move |e| FeedbackError::Io { path: PathBuf::from(name), source: std::io::Error::other(e) }
}

fn read_json<T: for<'de> Deserialize<'de>>(storage: &dyn Storage, key: &str) -> Result<Option<T>, FeedbackError> {
    let corrupt = |why: String| FeedbackError::Corrupt { path: PathBuf::from(storage.name(key)), why };
    match storage.get(key, MAX_FILE_BYTES, "feedback::MAX_FILE_BYTES") {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| corrupt(e.to_string())),
        Ok(None) => Ok(None),
        Err(e) => Err(corrupt(e.to_string())),
    }
}

/// The newest checkpoint of run `session` under `dir` (a folder or an
/// `s3://` URL): what resumes it.
pub fn latest_of(dir: &Path, session: &str) -> Option<PathBuf> {
    latest_in(&crate::storage::Location::parse(dir).ok()?, session)
}

/// The newest checkpoint of run `session` in `location`: its path or URL.
pub fn latest_in(location: &crate::storage::Location, session: &str) -> Option<PathBuf> {
    match location {
        crate::storage::Location::Bucket(bucket) => crate::checkpoint::remote::list(bucket)
            .ok()?
            .into_iter()
            .rfind(|c| c.meta.session_id == session)
            .map(|c| PathBuf::from(c.url)),
        crate::storage::Location::Dir(dir) => {
            crate::checkpoint::list(dir).ok()?.into_iter().rfind(|c| c.meta.session_id == session).map(|c| c.base)
        }
    }
}

/// One request found in a directory, with its answer if it has one.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The request.
    pub request: FeedbackRequest,
    /// Its answer.
    pub answer: Option<AnswerRecord>,
}

impl Entry {
    /// The request and its answer as one JSON object (`feedback list --json`,
    /// the web API).
    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.request;
        serde_json::json!({
            "id": r.id, "session": r.session_id, "task_id": r.task_id, "kind": r.kind, "prompt": r.prompt,
            "options": r.options, "metadata": r.metadata.as_ref().and_then(|m| m.to_value().ok()),
            "timeout_ms": r.timeout_ms, "requested_at_ms": r.requested_at_ms,
            "answer": self.answer.as_ref().and_then(|a| a.answer.to_value().ok()),
            "answered_by": self.answer.as_ref().map(|a| a.by.clone()),
            "answered_at_ms": self.answer.as_ref().map(|a| a.answered_at_ms),
        })
    }
}

impl FileDesk {
    /// The desk of the checkpoint directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> FileDesk {
        FileDesk { storage: Arc::new(crate::storage::Directory::new(root)) }
    }

    /// The desk of a checkpoint location (a folder or a bucket).
    pub fn on(storage: Arc<dyn Storage>) -> FileDesk {
        FileDesk { storage }
    }

    fn key(session: &str, id: &str, kind: &str) -> String {
        format!("{session}/feedback/{id}.{kind}.json")
    }

    fn valid(id: &str) -> bool {
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The request `id` of run `session` and its answer; a file whose
    /// contents do not match its name and folder is refused.
    fn entry(&self, session: &str, id: &str) -> Result<Option<Entry>, FeedbackError> {
        let key = Self::key(session, id, "request");
        let Some(request) = read_json::<FeedbackRequest>(&*self.storage, &key)? else { return Ok(None) };
        if request.id != id || request.session_id != session {
            return Err(FeedbackError::Corrupt {
                path: PathBuf::from(self.storage.name(&key)),
                why: format!("it holds request '{}' of run '{}'", request.id, request.session_id),
            });
        }
        let answer = read_json::<AnswerRecord>(&*self.storage, &Self::key(session, id, "answer"))?;
        Ok(Some(Entry { request, answer }))
    }

    /// The (session, id) of every request object.
    fn requests(&self) -> Vec<(String, String)> {
        let objects = match self.storage.list("") {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("cannot list {}: {e}", self.storage.name(""));
                return Vec::new();
            }
        };
        objects
            .into_iter()
            .filter_map(|o| {
                let mut parts = o.key.splitn(3, '/');
                let (session, folder, file) = (parts.next()?, parts.next()?, parts.next()?);
                let id = file.strip_suffix(".request.json").filter(|id| Self::valid(id))?;
                (folder == "feedback" && crate::checkpoint::schema::is_valid_id(session) && session != "modules")
                    .then(|| (session.to_string(), id.to_string()))
            })
            .collect()
    }

    /// Every request under the directory, oldest first. A file that cannot be
    /// read is skipped with a warning naming it.
    pub fn list(&self) -> Result<Vec<Entry>, FeedbackError> {
        let mut out = Vec::new();
        for (session, id) in self.requests() {
            match self.entry(&session, &id) {
                Ok(Some(e)) => out.push(e),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipped a feedback request: {e}"),
            }
        }
        out.sort_by_key(|e| (e.request.requested_at_ms, e.request.id.clone()));
        Ok(out)
    }

    /// The request `id`.
    pub fn find(&self, id: &str) -> Result<Entry, FeedbackError> {
        let unknown = || FeedbackError::Unknown { id: id.to_string(), dir: PathBuf::from(self.storage.name("")) };
        if !Self::valid(id) {
            return Err(unknown());
        }
        for (session, found) in self.requests() {
            if found == id
                && let Some(e) = self.entry(&session, id)?
            {
                return Ok(e);
            }
        }
        Err(unknown())
    }

    /// Answer request `id` with `answer` (checked against its kind), once.
    pub fn answer_request(&self, id: &str, answer: &Json, by: &str) -> Result<FeedbackRequest, FeedbackError> {
        let entry = self.find(id)?;
        if let Some(a) = entry.answer {
            return Err(FeedbackError::AlreadyAnswered { id: id.into(), by: a.by, answer: a.answer.as_str().into() });
        }
        let request = entry.request;
        let answer = request.check_answer(answer).map_err(FeedbackError::WrongAnswer)?;
        self.record(&request, answer, by)?;
        Ok(request)
    }

    /// Write the answer file of `request` (refused if it exists).
    pub fn record(&self, request: &FeedbackRequest, answer: Json, by: &str) -> Result<(), FeedbackError> {
        let key = Self::key(&request.session_id, &request.id, "answer");
        let record =
            AnswerRecord { id: request.id.clone(), answer, answered_at_ms: crate::engine::now_ms(), by: by.into() };
        let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        match self.storage.put_new(&key, &bytes) {
            Ok(()) => Ok(()),
            Err(StorageError::AlreadyExists { .. }) => {
                let by = read_json::<AnswerRecord>(&*self.storage, &key)?.map_or_else(|| "?".into(), |a| a.by);
                Err(FeedbackError::AlreadyAnswered { id: request.id.clone(), by, answer: "(see the file)".into() })
            }
            Err(e) => Err(storage_error(&*self.storage, &key)(e)),
        }
    }
}

impl FeedbackDesk for FileDesk {
    fn answer(&self, request: &FeedbackRequest) -> Result<Option<Json>, FeedbackError> {
        let key = Self::key(&request.session_id, &request.id, "answer");
        Ok(read_json::<AnswerRecord>(&*self.storage, &key)?.map(|a| a.answer))
    }

    fn post(&self, request: &FeedbackRequest) -> Result<(), FeedbackError> {
        let key = Self::key(&request.session_id, &request.id, "request");
        let bytes = serde_json::to_vec_pretty(request).unwrap_or_default();
        match self.storage.put_new(&key, &bytes) {
            // Asked again (the task runs again after a pause): the first
            // request stays.
            Err(StorageError::AlreadyExists { .. }) => Ok(()),
            other => other.map_err(storage_error(&*self.storage, &key)),
        }
    }
}

/// Hides (`true`) or shows again (`false`) a live display while a question
/// is on the terminal.
pub type Display = Box<dyn Fn(bool) + Send + Sync>;

/// Asks on the terminal instead of waiting (`run`/`resume` on a terminal,
/// without `--no-prompt`); the answer is recorded by the file desk like any
/// other. One question at a time. While a question is open, an answer given
/// elsewhere (`feedback answer`, the web page) is taken at once, and a stop
/// (Ctrl-C, another task's pause) or the end of standard input pauses the
/// run instead.
pub struct PromptDesk {
    inner: std::sync::Arc<dyn FeedbackDesk>,
    file: Option<FileDesk>,
    turn: std::sync::Mutex<()>,
    /// Hides and shows a live display around a question.
    pub display: Display,
}

/// What came of a question on the terminal.
enum Asked {
    Typed(Json),
    Elsewhere(Json),
    Nothing,
}

/// Lines typed on standard input, read by one thread for every question
/// (`None`: the input ended).
fn typed_lines() -> &'static std::sync::Mutex<std::sync::mpsc::Receiver<Option<String>>> {
    static LINES: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Receiver<Option<String>>>> =
        std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("graflow-stdin".into()).spawn(move || {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines() {
                let Ok(l) = line else { break };
                if tx.send(Some(l)).is_err() {
                    break;
                }
            }
            let _ = tx.send(None);
        });
        if spawned.is_err() {
            tracing::warn!("cannot read the terminal: no thread for it");
        }
        std::sync::Mutex::new(rx)
    })
}

impl PromptDesk {
    /// Ask on the terminal; record answers in `root` (the checkpoint directory).
    pub fn new(inner: std::sync::Arc<dyn FeedbackDesk>, root: Option<PathBuf>) -> PromptDesk {
        PromptDesk { inner, file: root.map(FileDesk::new), turn: Default::default(), display: Box::new(|_| {}) }
    }

    /// Show `prompt`; the line typed, or why there is none.
    fn read(&self, prompt: &str, request: &FeedbackRequest, stop: &dyn Fn() -> bool) -> Result<String, Asked> {
        use std::io::Write;
        let mut err = std::io::stderr();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
        let lines = typed_lines().lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match lines.recv_timeout(POLL) {
                Ok(Some(line)) => return Ok(line.trim_end_matches('\r').to_string()),
                Ok(None) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(Asked::Nothing),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if stop() {
                        return Err(Asked::Nothing);
                    }
                    if let Ok(Some(a)) = self.inner.answer(request) {
                        return Err(Asked::Elsewhere(a));
                    }
                }
            }
        }
    }

    fn ask(&self, request: &FeedbackRequest, stop: &dyn Fn() -> bool) -> Asked {
        let say = |line: String| eprintln!("{line}");
        say(format!("\n[input needed] task '{}' asks ({}, request {}):", request.task_id, request.kind, request.id));
        say(format!("  {}", request.prompt));
        if let Some(m) = request.metadata.as_ref().filter(|m| !m.is_null()) {
            say(format!("  details: {}", m.as_str()));
        }
        macro_rules! read {
            ($p:expr) => {
                match self.read($p, request, stop) {
                    Ok(line) => line,
                    Err(asked) => return asked,
                }
            };
        }
        loop {
            let value = match request.kind {
                FeedbackKind::Approval => {
                    let yes = read!("  approve? [y/n] ");
                    let approved = match yes.trim().to_ascii_lowercase().as_str() {
                        "y" | "yes" => true,
                        "n" | "no" => false,
                        _ => continue,
                    };
                    let reason = read!("  reason (optional): ");
                    serde_json::json!({"approved": approved, "reason": (!reason.is_empty()).then_some(reason)})
                }
                FeedbackKind::Text => serde_json::json!({"text": read!("  > ")}),
                FeedbackKind::Selection | FeedbackKind::MultiSelection => {
                    for (i, o) in request.options.iter().enumerate() {
                        say(format!("  {}. {o}", i + 1));
                    }
                    let multi = request.kind == FeedbackKind::MultiSelection;
                    let text = read!(if multi { "  numbers, separated by spaces: " } else { "  number: " });
                    let picked: Option<Vec<String>> = text
                        .split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse::<usize>().ok().and_then(|n| request.options.get(n.wrapping_sub(1)).cloned()))
                        .collect();
                    match picked {
                        Some(p) if multi => serde_json::json!({ "selected": p }),
                        Some(p) if p.len() == 1 => serde_json::json!({ "selected": p[0] }),
                        _ => continue,
                    }
                }
                FeedbackKind::Custom => {
                    let text = read!("  JSON value: ");
                    match serde_json::from_str::<serde_json::Value>(&text) {
                        Ok(v) => serde_json::json!({ "value": v }),
                        Err(e) => {
                            say(format!("  not JSON: {e}"));
                            continue;
                        }
                    }
                }
            };
            match request.check_answer(&Json::encode(&value)) {
                Ok(answer) => return Asked::Typed(answer),
                Err(why) => say(format!("  {why}")),
            }
        }
    }
}

impl FeedbackDesk for PromptDesk {
    fn answer(&self, request: &FeedbackRequest) -> Result<Option<Json>, FeedbackError> {
        self.inner.answer(request)
    }
    fn post(&self, request: &FeedbackRequest) -> Result<(), FeedbackError> {
        self.inner.post(request)
    }
    fn wait(
        &self,
        request: &FeedbackRequest,
        _: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Json>, FeedbackError> {
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = self.inner.answer(request)? {
            return Ok(Some(a));
        }
        (self.display)(true);
        let asked = self.ask(request, stop);
        (self.display)(false);
        match asked {
            Asked::Typed(answer) => {
                let Some(file) = &self.file else { return Ok(Some(answer)) };
                match file.record(request, answer.clone(), "terminal") {
                    Ok(()) => Ok(Some(answer)),
                    // Answered elsewhere at the same moment: the recorded
                    // answer is the one every later run of the task gets.
                    Err(FeedbackError::AlreadyAnswered { .. }) => self.inner.answer(request),
                    Err(e) => {
                        tracing::warn!("the answer to request {} is not recorded: {e}", request.id);
                        Ok(Some(answer))
                    }
                }
            }
            Asked::Elsewhere(answer) => {
                eprintln!("  answered elsewhere: {}", answer.as_str());
                Ok(Some(answer))
            }
            Asked::Nothing => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: FeedbackKind, options: &[&str]) -> FeedbackRequest {
        FeedbackRequest {
            id: FeedbackRequest::id_for("s", "t", 1, 0),
            session_id: "s".into(),
            task_id: "t".into(),
            kind,
            prompt: "?".into(),
            options: options.iter().map(|s| s.to_string()).collect(),
            metadata: None,
            timeout_ms: 0,
            requested_at_ms: 0,
        }
    }

    fn j(s: &str) -> Json {
        Json::parse(s).unwrap()
    }

    #[test]
    fn answers_are_checked_against_the_kind() {
        let a = request(FeedbackKind::Approval, &[]);
        assert_eq!(a.check_answer(&j(r#"{"approved":true}"#)).unwrap().as_str(), r#"{"approved":true,"reason":null}"#);
        let wrong = a.check_answer(&j(r#"{"text":"x"}"#)).unwrap_err();
        assert!(wrong.contains("--approve | --reject"), "{wrong}");
        // An API caller gets the JSON shape, not only the command line's flags.
        assert!(wrong.contains(r#"{"approved": true|false"#), "{wrong}");
        let s = request(FeedbackKind::Selection, &["a", "b"]);
        assert!(s.check_answer(&j(r#"{"selected":"b"}"#)).is_ok());
        assert!(s.check_answer(&j(r#"{"selected":"c"}"#)).unwrap_err().contains("not an option"));
        let m = request(FeedbackKind::MultiSelection, &["a", "b"]);
        assert!(m.check_answer(&j(r#"{"selected":["a","b"]}"#)).is_ok());
        assert!(m.check_answer(&j(r#"{"selected":"a"}"#)).is_err());
        assert!(request(FeedbackKind::Selection, &[]).validate().is_err());
        assert_eq!(FeedbackRequest::id_for("s", "t", 1, 0), FeedbackRequest::id_for("s", "t", 1, 0));
        assert_ne!(FeedbackRequest::id_for("s", "t", 1, 0), FeedbackRequest::id_for("s", "t", 2, 0));
    }

    #[test]
    fn an_answer_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let desk = FileDesk::new(dir.path());
        let r = request(FeedbackKind::Text, &[]);
        desk.post(&r).unwrap();
        desk.post(&r).unwrap();
        assert_eq!(desk.answer(&r).unwrap(), None);
        desk.answer_request(&r.id, &j(r#"{"text":"hi"}"#), "cli").unwrap();
        assert_eq!(desk.answer(&r).unwrap().unwrap().as_str(), r#"{"text":"hi"}"#);
        let again = desk.answer_request(&r.id, &j(r#"{"text":"no"}"#), "cli").unwrap_err();
        assert!(matches!(again, FeedbackError::AlreadyAnswered { .. }), "{again}");
        assert!(matches!(desk.find("0123456789abcdef"), Err(FeedbackError::Unknown { .. })));
    }
}
