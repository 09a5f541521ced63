//! The requests a task makes for human input, as the engine knows them: their
//! kinds, ids, bounds and answers' checks, and the [`FeedbackDesk`] trait
//! through which they are kept. Where they are kept (files beside the
//! checkpoints, the terminal, Redis) is above the engine, in
//! [`crate::feedback`] and [`crate::distributed`]: the engine never reaches
//! storage.

use crate::json::Json;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Longest prompt, in bytes.
pub const MAX_PROMPT_BYTES: usize = 64 << 10;
/// Most options of a selection.
pub const MAX_OPTIONS: usize = 1000;
/// Longest option, in bytes.
pub const MAX_OPTION_BYTES: usize = 4096;
/// Most requests one execution may make.
pub const MAX_REQUESTS_PER_EXECUTION: u32 = 100;
/// Largest request or answer file read.
pub const MAX_FILE_BYTES: u64 = 32 << 20;
/// Largest metadata of a request, in bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 64 << 10;
/// Largest answer, in bytes of JSON.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;
/// How often a waiting request looks for its answer.
pub const POLL: Duration = Duration::from_millis(100);

/// What kind of answer a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedbackKind {
    /// `{"approved": bool, "reason": string | null}`.
    Approval,
    /// `{"text": string}`.
    Text,
    /// `{"selected": string}`, one of the options.
    Selection,
    /// `{"selected": [string]}`, options.
    MultiSelection,
    /// `{"value": any}`.
    Custom,
}

impl std::fmt::Display for FeedbackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeedbackKind::Approval => "approval",
            FeedbackKind::Text => "text",
            FeedbackKind::Selection => "selection",
            FeedbackKind::MultiSelection => "multi-selection",
            FeedbackKind::Custom => "custom",
        })
    }
}

impl FeedbackKind {
    /// The JSON an answer of this kind is (what the `serve` API takes).
    pub fn answer_shape(self) -> &'static str {
        match self {
            FeedbackKind::Approval => r#"{"approved": true|false, "reason": "..."|null}"#,
            FeedbackKind::Text => r#"{"text": "..."}"#,
            FeedbackKind::Selection => r#"{"selected": "<one of the options>"}"#,
            FeedbackKind::MultiSelection => r#"{"selected": ["<an option>", ...]}"#,
            FeedbackKind::Custom => r#"{"value": <any JSON>}"#,
        }
    }

    /// How to answer this kind with `graflow-host feedback answer`.
    pub fn how_to_answer(self) -> &'static str {
        match self {
            FeedbackKind::Approval => "--approve | --reject [--reason TEXT]",
            FeedbackKind::Text => "--text TEXT",
            FeedbackKind::Selection => "--select OPTION",
            FeedbackKind::MultiSelection => "--select OPTION [--select OPTION ...]",
            FeedbackKind::Custom => "--json VALUE",
        }
    }
}

/// A question a task asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRequest {
    /// 16 hex digits (see [`FeedbackRequest::id_for`]).
    pub id: String,
    /// The run.
    pub session_id: String,
    /// The execution that asked.
    pub task_id: String,
    /// The kind of answer.
    pub kind: FeedbackKind,
    /// The question.
    pub prompt: String,
    /// The choices (selections).
    pub options: Vec<String>,
    /// Shown with the request.
    pub metadata: Option<Json>,
    /// How long the task waits before the run pauses.
    pub timeout_ms: u64,
    /// When it was asked (Unix milliseconds).
    pub requested_at_ms: u64,
}

/// An answer, as kept beside the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    /// The request it answers.
    pub id: String,
    /// The answer (checked against the request's kind).
    pub answer: Json,
    /// When (Unix milliseconds).
    pub answered_at_ms: u64,
    /// Who or what answered (`cli`, `terminal`, `web`, ...).
    pub by: String,
}

impl FeedbackRequest {
    /// The id of the `seq`-th request (0-based) of execution `task_id` in its
    /// `cycle` of run `session`: the same when the execution runs again, so
    /// an answer given while the run was paused is found.
    pub fn id_for(session: &str, task_id: &str, cycle: u32, seq: u32) -> String {
        let digest = crate::digest::Sha256::of(format!("{session}\0{task_id}\0{cycle}\0{seq}").as_bytes());
        digest.to_hex()[..16].to_string()
    }

    /// Check the request a guest made; the reason names the bound or field.
    pub fn validate(&self) -> Result<(), String> {
        if self.prompt.len() > MAX_PROMPT_BYTES {
            return Err(format!(
                "feedback prompt of {} bytes exceeds the bound feedback::MAX_PROMPT_BYTES = {MAX_PROMPT_BYTES}",
                self.prompt.len()
            ));
        }
        if self.options.len() > MAX_OPTIONS {
            return Err(format!(
                "{} feedback options exceed the bound feedback::MAX_OPTIONS = {MAX_OPTIONS}",
                self.options.len()
            ));
        }
        if let Some(o) = self.options.iter().find(|o| o.len() > MAX_OPTION_BYTES) {
            return Err(format!(
                "a feedback option of {} bytes exceeds the bound feedback::MAX_OPTION_BYTES = {MAX_OPTION_BYTES}",
                o.len()
            ));
        }
        let selecting = matches!(self.kind, FeedbackKind::Selection | FeedbackKind::MultiSelection);
        if selecting && self.options.is_empty() {
            return Err(format!("a {} request needs at least one option", self.kind));
        }
        if let Some(m) = &self.metadata {
            if !m.is_object() && !m.is_null() {
                return Err("feedback metadata must be a JSON object (or null)".into());
            }
            if m.len() > MAX_METADATA_BYTES {
                return Err(format!(
                    "feedback metadata of {} bytes exceeds the bound feedback::MAX_METADATA_BYTES = {MAX_METADATA_BYTES}",
                    m.len()
                ));
            }
        }
        Ok(())
    }

    /// `answer` if it has the shape this request's kind asks for (the
    /// options of a selection included), normalised; else why not.
    pub fn check_answer(&self, answer: &Json) -> Result<Json, String> {
        if answer.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "an answer of {} bytes exceeds the bound feedback::MAX_ANSWER_BYTES = {MAX_ANSWER_BYTES}",
                answer.len()
            ));
        }
        let value = answer.to_value().map_err(|e| e.to_string())?;
        let want = || {
            format!(
                "request '{}' asks for {}: the answer is {} (on the command line: graflow-host feedback answer {})",
                self.id,
                self.kind,
                self.kind.answer_shape(),
                self.kind.how_to_answer()
            )
        };
        let field = |k: &str| value.as_object().and_then(|o| o.get(k));
        let known = |s: &str| {
            if self.options.iter().any(|o| o == s) {
                Ok(())
            } else {
                Err(format!("'{s}' is not an option of request '{}' (options: {})", self.id, self.options.join(", ")))
            }
        };
        let normal = match self.kind {
            FeedbackKind::Approval => {
                let approved = field("approved").and_then(|v| v.as_bool()).ok_or_else(want)?;
                let reason = field("reason").and_then(|v| v.as_str()).map(str::to_string);
                serde_json::json!({"approved": approved, "reason": reason})
            }
            FeedbackKind::Text => {
                let text = field("text").and_then(|v| v.as_str()).ok_or_else(want)?;
                serde_json::json!({ "text": text })
            }
            FeedbackKind::Selection => {
                let s = field("selected").and_then(|v| v.as_str()).ok_or_else(want)?;
                known(s)?;
                serde_json::json!({ "selected": s })
            }
            FeedbackKind::MultiSelection => {
                let list = field("selected").and_then(|v| v.as_array()).ok_or_else(want)?;
                let mut chosen = Vec::new();
                for item in list {
                    let s = item.as_str().ok_or_else(want)?;
                    known(s)?;
                    chosen.push(s.to_string());
                }
                serde_json::json!({ "selected": chosen })
            }
            FeedbackKind::Custom => {
                let v = field("value").ok_or_else(want)?;
                serde_json::json!({ "value": v })
            }
        };
        Ok(Json::encode(&normal))
    }

    /// One line: id, kind, task and prompt (cut to 200 bytes).
    pub fn summary(&self) -> String {
        let p = &self.prompt[..self.prompt.floor_char_boundary(200)];
        let more = if p.len() < self.prompt.len() { "..." } else { "" };
        format!("{} ({}) from task '{}': {p}{more}", self.id, self.kind, self.task_id)
    }
}

/// Why a request or answer could not be kept or found.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// No such request.
    #[error("no feedback request '{id}' in {}", dir.display())]
    Unknown {
        /// The id asked for.
        id: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// The request has an answer already.
    #[error("feedback request '{id}' was already answered (by {by}): {answer}")]
    AlreadyAnswered {
        /// The request.
        id: String,
        /// Who answered.
        by: String,
        /// The answer.
        answer: String,
    },
    /// The answer does not fit the request.
    #[error("{0}")]
    WrongAnswer(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{}: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// This run cannot keep requests.
    #[error("{0}")]
    Unavailable(String),
}

/// Where a run's requests and answers are kept.
pub trait FeedbackDesk: Send + Sync {
    /// The answer given to `request`, if any.
    fn answer(&self, request: &FeedbackRequest) -> Result<Option<Json>, FeedbackError>;
    /// Record `request` as waiting for an answer.
    fn post(&self, request: &FeedbackRequest) -> Result<(), FeedbackError>;
    /// Wait for an answer until `deadline` (`None`: none came, or `stop`
    /// said to stop waiting: the run pauses or stops).
    fn wait(
        &self,
        request: &FeedbackRequest,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Json>, FeedbackError> {
        loop {
            if let Some(a) = self.answer(request)? {
                return Ok(Some(a));
            }
            let now = Instant::now();
            if now >= deadline || stop() || !self.nap(request, POLL.min(deadline - now))? {
                return Ok(None);
            }
        }
    }

    /// Between two looks for an answer: wait up to `max` (a desk that can be
    /// woken by the answer returns early). False: stop waiting, nobody can
    /// answer any more.
    fn nap(&self, _request: &FeedbackRequest, max: Duration) -> Result<bool, FeedbackError> {
        std::thread::sleep(max);
        Ok(true)
    }
}

/// For runs that cannot keep requests (no checkpoint directory).
pub struct NoDesk;

impl FeedbackDesk for NoDesk {
    fn answer(&self, _: &FeedbackRequest) -> Result<Option<Json>, FeedbackError> {
        Ok(None)
    }
    fn post(&self, _: &FeedbackRequest) -> Result<(), FeedbackError> {
        Err(FeedbackError::Unavailable(
            "this run has no checkpoint directory, so it cannot keep feedback requests".into(),
        ))
    }
}
