//! Write graflow-host tasks in Rust.
//!
//! A task is a plain function from a serde-deserializable input to a
//! `Result<impl Serialize, TaskError>`. Its declared inputs are the field names of
//! its input struct, so `fn store(input: Store)` with `struct Store { transform_a:
//! Vec<i64> }` receives the result of the task `transform_a` automatically.
//! One line exports a component's tasks:
//!
//! ```ignore
//! use graflow_guest::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Greet { name: String }
//!
//! fn greet(input: Greet) -> Result<String, TaskError> {
//!     channel::set("greeted", &input.name)?;
//!     Ok(format!("hello, {}", input.name))
//! }
//!
//! graflow_guest::export_tasks!(greet: "Greets someone");
//! ```
//!
//! A component may declare its own workflow, so that `graflow-host run
//! crate/` runs it without a workflow file:
//!
//! ```ignore
//! graflow_guest::export_tasks!(
//!     workflow = Workflow::flow("greet >> shout").task("greet", Settings::new().max_retries(3));
//!     greet: "Greets someone",
//!     shout,
//! );
//! ```
//!
//! Settings declared in code are defaults: a workflow file's value wins where
//! it gives one. Nothing a component declares grants it a capability.
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the `.wasm` file is a
//! component that `graflow-host` runs.

#![deny(missing_docs)]

mod error;
mod introspect;

pub use error::TaskError;

/// The generated WIT bindings (`wit/graflow.wit`). Task code rarely needs them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "task-app",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_task_module",
        default_bindings_module: "graflow_guest::bindings",
    });
}

use bindings::graflow::task as wit;
use serde::{Serialize, de::DeserializeOwned};

/// Everything a task module usually imports.
pub mod prelude {
    pub use crate::{Settings, TaskError, TaskInfo, Workflow, channel, control, feedback, http, llm, log, results};
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::{Value, json};
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, TaskError> {
    serde_json::to_string(value).map_err(|e| TaskError::failed(format!("cannot encode value as JSON: {e}")))
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, TaskError> {
    serde_json::from_str(text).map_err(|e| TaskError::failed(format!("{what}: {e}")))
}

/// The workflow's shared key-value store, with typed helpers.
pub mod channel {
    use super::*;

    /// The value under `key`, decoded as `T`; `Ok(None)` if the key is missing.
    pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, TaskError> {
        match wit::channel::get(key) {
            Some(text) => from_json(&format!("channel key '{key}'"), &text).map(Some),
            None => Ok(None),
        }
    }
    /// Store `value` under `key`.
    pub fn set<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), TaskError> {
        wit::channel::set(key, &to_json(value)?).map_err(TaskError::failed)
    }
    /// Remove `key`; true if it existed.
    pub fn delete(key: &str) -> bool {
        wit::channel::delete(key)
    }
    /// True if `key` holds a value.
    pub fn exists(key: &str) -> bool {
        wit::channel::exists(key)
    }
    /// Every key, sorted.
    pub fn keys() -> Vec<String> {
        wit::channel::keys()
    }
    /// Append `value` to the list under `key`; the new length.
    pub fn append<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<u32, TaskError> {
        wit::channel::append(key, &to_json(value)?).map_err(TaskError::failed)
    }
    /// Insert `value` at the front of the list under `key`; the new length.
    pub fn prepend<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<u32, TaskError> {
        wit::channel::prepend(key, &to_json(value)?).map_err(TaskError::failed)
    }
    /// Add `amount` to the number under `key` (missing counts as 0); the new value.
    pub fn atomic_add(key: &str, amount: f64) -> Result<f64, TaskError> {
        wit::channel::atomic_add(key, amount).map_err(TaskError::failed)
    }
}

/// Task results.
pub mod results {
    use super::*;

    /// Set the current task's result now; it replaces the value the task returns.
    pub fn set<T: Serialize + ?Sized>(value: &T) -> Result<(), TaskError> {
        wit::results::set_result(&to_json(value)?).map_err(TaskError::failed)
    }
    /// The result of another task (by id or name), decoded as `T`.
    pub fn get<T: DeserializeOwned>(task: &str) -> Result<Option<T>, TaskError> {
        match wit::results::get_result(task) {
            Some(text) => from_json(&format!("result of task '{task}'"), &text).map(Some),
            None => Ok(None),
        }
    }
}

/// About the running task.
pub type TaskInfo = wit::types::TaskInfo;

/// Steering the workflow: next tasks, iterations, terminate, cancel, checkpoints.
pub mod control {
    use super::*;

    /// Queue a new instance of a declared task (or jump to a flow node); its id.
    pub fn next_task<T: Serialize + ?Sized>(task: &str, input: &T) -> Result<String, TaskError> {
        wit::control::next_task(task, &to_json(input)?, false).map_err(TaskError::failed)
    }
    /// Queue `task` and skip this task's successors; its id.
    pub fn goto<T: Serialize + ?Sized>(task: &str, input: &T) -> Result<String, TaskError> {
        wit::control::next_task(task, &to_json(input)?, true).map_err(TaskError::failed)
    }
    /// Run this task again with `input`; the iteration's id. Fails once the task
    /// has run `max_cycles` times (the task then fails with the cycle-limit error).
    pub fn next_iteration<T: Serialize + ?Sized>(input: &T) -> Result<String, TaskError> {
        wit::control::next_iteration(&to_json(input)?).map_err(TaskError::failed)
    }
    /// True while another iteration is allowed.
    pub fn can_iterate() -> bool {
        wit::control::can_iterate()
    }
    /// End the workflow successfully after this task.
    pub fn terminate_workflow(message: &str) {
        wit::control::terminate_workflow(message)
    }
    /// Fail the workflow with `message`.
    pub fn cancel_workflow(message: &str) {
        wit::control::cancel_workflow(message)
    }
    /// Write a checkpoint after this task succeeds; `metadata` is stored with it.
    pub fn checkpoint<T: Serialize + ?Sized>(metadata: &T) -> Result<(), TaskError> {
        wit::control::request_checkpoint(&to_json(metadata)?).map_err(TaskError::failed)
    }
    /// About the running task: id, name, session, cycle and retry counts.
    pub fn info() -> TaskInfo {
        wit::control::info()
    }
}

/// Outbound HTTP through the host's gate: only the origins the workflow
/// grants this task are reachable, and headers the workflow attaches (API
/// keys) are added by the host, never visible here. Docs: docs/network.md.
///
/// ```ignore
/// let page = http::get("https://api.example.com/v1/items")?.text();
/// let made = http::Request::post("https://api.example.com/v1/items").json(&json!({"a": 1}))?.send()?;
/// ```
pub mod http {
    use super::*;
    use std::time::Duration;
    use wit::http as w;

    /// Why a request got no response.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum HttpError {
        /// The task's grant does not allow the origin (or the address it resolves to).
        Denied(String),
        /// A bound was reached; the text names its key.
        Limit(String),
        /// A wait ran out.
        Timeout(String),
        /// The URL, a header or the method is malformed.
        Invalid(String),
        /// DNS, connection, TLS or protocol failure.
        Failed(String),
    }

    impl std::fmt::Display for HttpError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                HttpError::Denied(s) => write!(f, "request denied: {s}"),
                HttpError::Limit(s) => write!(f, "request over a bound: {s}"),
                HttpError::Timeout(s) => write!(f, "request timed out: {s}"),
                HttpError::Invalid(s) => write!(f, "invalid request: {s}"),
                HttpError::Failed(s) => write!(f, "request failed: {s}"),
            }
        }
    }

    impl std::error::Error for HttpError {}

    impl From<w::HttpError> for HttpError {
        fn from(e: w::HttpError) -> HttpError {
            match e {
                w::HttpError::Denied(s) => HttpError::Denied(s),
                w::HttpError::Limit(s) => HttpError::Limit(s),
                w::HttpError::Timeout(s) => HttpError::Timeout(s),
                w::HttpError::Invalid(s) => HttpError::Invalid(s),
                w::HttpError::Failed(s) => HttpError::Failed(s),
            }
        }
    }

    /// A whole response.
    #[derive(Debug, Clone)]
    pub struct Response {
        /// Status code.
        pub status: u16,
        /// Headers, names in lower case.
        pub headers: Vec<(String, String)>,
        /// The body.
        pub body: Vec<u8>,
    }

    impl Response {
        /// The body as text (invalid UTF-8 replaced).
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
        /// The body decoded from JSON.
        pub fn json<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
            serde_json::from_slice(&self.body).map_err(|e| TaskError::failed(format!("the response is not the JSON expected: {e}")))
        }
        /// The first value of header `name` (any case).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
        /// True for a 2xx status.
        pub fn ok(&self) -> bool {
            (200..300).contains(&self.status)
        }
    }

    /// A request being built.
    #[derive(Debug, Clone)]
    pub struct Request {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        timeout: Option<Duration>,
        follow_redirects: bool,
    }

    impl Request {
        /// A request with `method` to `url` (follows redirects).
        pub fn new(method: &str, url: &str) -> Request {
            Request { method: method.into(), url: url.into(), headers: vec![], body: vec![], timeout: None, follow_redirects: true }
        }
        /// `GET url`.
        pub fn get(url: &str) -> Request {
            Request::new("GET", url)
        }
        /// `POST url`.
        pub fn post(url: &str) -> Request {
            Request::new("POST", url)
        }
        /// Add a header.
        pub fn header(mut self, name: &str, value: &str) -> Request {
            self.headers.push((name.into(), value.into()));
            self
        }
        /// Set the body.
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
            self.body = body.into();
            self
        }
        /// Set a JSON body (and `content-type: application/json`).
        pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Request, TaskError> {
            Ok(self.header("content-type", "application/json").body(to_json(value)?))
        }
        /// Give up after `timeout` (never later than the task's own limit).
        pub fn timeout(mut self, timeout: Duration) -> Request {
            self.timeout = Some(timeout);
            self
        }
        /// Do not follow redirects.
        pub fn no_redirects(mut self) -> Request {
            self.follow_redirects = false;
            self
        }
        /// Send it and wait for the whole response.
        pub fn send(self) -> Result<Response, HttpError> {
            let req = w::Request {
                method: self.method,
                url: self.url,
                headers: self.headers,
                body: self.body,
                timeout_ms: self.timeout.map(|t| t.as_millis().min(u32::MAX as u128) as u32),
                follow_redirects: self.follow_redirects,
            };
            let r = w::send(&req)?;
            Ok(Response { status: r.status, headers: r.headers, body: r.body })
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response, HttpError> {
        Request::get(url).send()
    }

    /// `POST url` with `value` as a JSON body.
    pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, TaskError> {
        Ok(Request::post(url).json(value)?.send()?)
    }
}

/// A language model configured by the workflow (`[workflow.llm]`), called
/// by the host: the API key stays in the host. Like Graflow's injected LLM
/// client. Docs: docs/network.md.
///
/// ```ignore
/// let answer = llm::Chat::new().system("Be brief.").user("Capital of France?").send()?;
/// ```
pub mod llm {
    use super::*;
    use serde::Deserialize;
    use serde_json::{Value, json};
    use wit::llm as w;

    /// Why a chat call failed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum LlmError {
        /// No provider configured, or the task may not reach it.
        Denied(String),
        /// A token budget or another bound; the text names its key.
        Limit(String),
        /// The provider answered with an error.
        Provider(String),
        /// The request is malformed.
        Invalid(String),
        /// Timeout, connection or protocol failure.
        Failed(String),
    }

    impl std::fmt::Display for LlmError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                LlmError::Denied(s) => write!(f, "model call denied: {s}"),
                LlmError::Limit(s) => write!(f, "model call over a bound: {s}"),
                LlmError::Provider(s) => write!(f, "model provider error: {s}"),
                LlmError::Invalid(s) => write!(f, "invalid model call: {s}"),
                LlmError::Failed(s) => write!(f, "model call failed: {s}"),
            }
        }
    }

    impl std::error::Error for LlmError {}

    /// A tool the model asks to call.
    #[derive(Debug, Clone)]
    pub struct ToolCall {
        /// Its id (answer with [`Chat::tool_result`]).
        pub id: String,
        /// The function name.
        pub name: String,
        /// The arguments, JSON text.
        pub arguments: String,
    }

    impl ToolCall {
        /// The arguments decoded.
        pub fn args<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
            from_json("tool call arguments", &self.arguments)
        }
    }

    /// The model's answer.
    #[derive(Debug, Clone)]
    pub struct Answer {
        /// The assistant message (append it to the conversation).
        pub message: Value,
        /// Its text.
        pub content: Option<String>,
        /// Tools it asks to call.
        pub tool_calls: Vec<ToolCall>,
        /// `stop`, `tool_calls`, ...
        pub finish_reason: String,
        /// The model that answered.
        pub model: String,
        /// Prompt, completion and total tokens.
        pub usage: (u32, u32, u32),
    }

    /// A conversation (messages, tools, parameters), kept as JSON so it can
    /// be stored in the channel between iterations.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Chat {
        /// OpenAI-style messages.
        pub messages: Vec<Value>,
        /// Model; empty: the workflow's default.
        #[serde(default)]
        pub model: String,
        /// Tools in OpenAI's form.
        #[serde(default)]
        pub tools: Vec<Value>,
        /// Other parameters.
        #[serde(default)]
        pub params: serde_json::Map<String, Value>,
    }

    impl Chat {
        /// An empty conversation.
        pub fn new() -> Chat {
            Chat::default()
        }
        /// Add a system message.
        pub fn system(mut self, text: &str) -> Chat {
            self.messages.push(json!({"role": "system", "content": text}));
            self
        }
        /// Add a user message.
        pub fn user(mut self, text: &str) -> Chat {
            self.messages.push(json!({"role": "user", "content": text}));
            self
        }
        /// Add a tool (a function with a JSON-schema `parameters`).
        pub fn tool(mut self, name: &str, description: &str, parameters: Value) -> Chat {
            self.tools.push(json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}));
            self
        }
        /// Set a parameter (`temperature`, `max_tokens`, ...).
        pub fn param(mut self, name: &str, value: Value) -> Chat {
            self.params.insert(name.into(), value);
            self
        }
        /// Use `model`.
        pub fn model(mut self, model: &str) -> Chat {
            self.model = model.into();
            self
        }
        /// Append the model's answer to the conversation.
        pub fn push_answer(&mut self, answer: &Answer) {
            self.messages.push(answer.message.clone());
        }
        /// Append a tool's result for tool call `id`.
        pub fn tool_result(&mut self, id: &str, content: &str) {
            self.messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
        }
        /// Ask the model.
        pub fn send(&self) -> Result<Answer, LlmError> {
            let req = w::ChatRequest {
                messages: enc(&self.messages),
                model: self.model.clone(),
                tools: enc(&self.tools),
                params: enc(&self.params),
            };
            let a = w::chat(&req).map_err(|e| match e {
                w::LlmError::Denied(s) => LlmError::Denied(s),
                w::LlmError::Limit(s) => LlmError::Limit(s),
                w::LlmError::Provider(s) => LlmError::Provider(s),
                w::LlmError::Invalid(s) => LlmError::Invalid(s),
                w::LlmError::Failed(s) => LlmError::Failed(s),
            })?;
            Ok(Answer {
                message: serde_json::from_str(&a.message).unwrap_or(Value::Null),
                content: a.content,
                tool_calls: a.tool_calls.into_iter().map(|t| ToolCall { id: t.id, name: t.name, arguments: t.arguments }).collect(),
                finish_reason: a.finish_reason,
                model: a.model,
                usage: (a.usage.prompt_tokens, a.usage.completion_tokens, a.usage.total_tokens),
            })
        }
    }

    /// JSON text of values that always encode (JSON values, strings).
    fn enc<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_else(|_| "null".into())
    }

    /// One question, one answer: `chat(&[json!({"role": "user", "content": "hi"})])`.
    pub fn chat(messages: &[Value]) -> Result<Answer, LlmError> {
        Chat { messages: messages.to_vec(), ..Chat::default() }.send()
    }
}

/// Asking a person (human in the loop). Each helper waits up to `timeout`
/// for an answer; when nobody answers in time the run pauses durably (the
/// call does not return), and after the answer the run resumes: this task
/// runs again from its start and the same question gets the answer at once.
/// Docs: docs/human-in-the-loop.md.
pub mod feedback {
    use super::*;
    use std::time::Duration;
    use wit::feedback::{FeedbackKind, FeedbackRequest};

    /// A question with every option: the kind, the choices (selections), a
    /// JSON object shown with it, and how long to wait before the run pauses.
    pub struct Ask<'a> {
        /// The question.
        pub prompt: &'a str,
        /// The choices of a selection.
        pub options: &'a [&'a str],
        /// Shown with the request (a JSON object), or `Value::Null`.
        pub metadata: serde_json::Value,
        /// How long to wait for an answer before the run pauses.
        pub timeout: Duration,
    }

    /// The default wait: 3 minutes, like Graflow's.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

    impl<'a> Ask<'a> {
        /// A question with no options, no metadata and the default timeout.
        pub fn new(prompt: &'a str) -> Ask<'a> {
            Ask { prompt, options: &[], metadata: serde_json::Value::Null, timeout: DEFAULT_TIMEOUT }
        }
        /// With this timeout.
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.timeout = timeout;
            self
        }
        /// With these options.
        pub fn options(mut self, options: &'a [&'a str]) -> Self {
            self.options = options;
            self
        }
        /// With this metadata (a JSON object).
        pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
            self.metadata = metadata;
            self
        }
    }

    fn ask(kind: FeedbackKind, q: &Ask) -> Result<serde_json::Value, TaskError> {
        let req = FeedbackRequest {
            kind,
            prompt: q.prompt.to_string(),
            options: q.options.iter().map(|s| s.to_string()).collect(),
            metadata: to_json(&q.metadata)?,
            timeout_secs: u32::try_from(q.timeout.as_secs()).unwrap_or(u32::MAX),
        };
        let answer = wit::feedback::request(&req).map_err(TaskError::failed)?;
        from_json("the feedback answer", &answer)
    }

    fn field<'v>(v: &'v serde_json::Value, key: &str) -> Result<&'v serde_json::Value, TaskError> {
        v.get(key).ok_or_else(|| TaskError::failed(format!("the feedback answer has no '{key}': {v}")))
    }

    /// Yes or no, with the default timeout.
    pub fn approval(prompt: &str) -> Result<bool, TaskError> {
        approval_with(&Ask::new(prompt)).map(|(approved, _)| approved)
    }
    /// Yes or no, and the reason the person gave.
    pub fn approval_with(q: &Ask) -> Result<(bool, Option<String>), TaskError> {
        let v = ask(FeedbackKind::Approval, q)?;
        let approved = field(&v, "approved")?.as_bool().unwrap_or(false);
        Ok((approved, v.get("reason").and_then(|r| r.as_str()).map(str::to_string)))
    }
    /// A line of text.
    pub fn text(prompt: &str) -> Result<String, TaskError> {
        text_with(&Ask::new(prompt))
    }
    /// A line of text, with options.
    pub fn text_with(q: &Ask) -> Result<String, TaskError> {
        let v = ask(FeedbackKind::Text, q)?;
        Ok(field(&v, "text")?.as_str().unwrap_or_default().to_string())
    }
    /// One of `options`.
    pub fn select(prompt: &str, options: &[&str]) -> Result<String, TaskError> {
        let v = ask(FeedbackKind::Selection, &Ask::new(prompt).options(options))?;
        Ok(field(&v, "selected")?.as_str().unwrap_or_default().to_string())
    }
    /// One of the question's options.
    pub fn select_with(q: &Ask) -> Result<String, TaskError> {
        let v = ask(FeedbackKind::Selection, q)?;
        Ok(field(&v, "selected")?.as_str().unwrap_or_default().to_string())
    }
    /// Any number of `options`.
    pub fn select_many(prompt: &str, options: &[&str]) -> Result<Vec<String>, TaskError> {
        select_many_with(&Ask::new(prompt).options(options))
    }
    /// Any number of the question's options.
    pub fn select_many_with(q: &Ask) -> Result<Vec<String>, TaskError> {
        let v = ask(FeedbackKind::MultiSelection, q)?;
        serde_json::from_value(field(&v, "selected")?.clone())
            .map_err(|e| TaskError::failed(format!("the feedback answer: {e}")))
    }
    /// Any JSON value, decoded as `T`.
    pub fn custom<T: DeserializeOwned>(q: &Ask) -> Result<T, TaskError> {
        let v = ask(FeedbackKind::Custom, q)?;
        serde_json::from_value(field(&v, "value")?.clone())
            .map_err(|e| TaskError::failed(format!("the feedback answer: {e}")))
    }
}

/// Task logs, collected by the host.
pub mod log {
    use super::wit::{logging, types::LogLevel};

    /// Log at debug level.
    pub fn debug(message: &str) {
        logging::log(LogLevel::Debug, message)
    }
    /// Log at info level.
    pub fn info(message: &str) {
        logging::log(LogLevel::Info, message)
    }
    /// Log at warn level.
    pub fn warn(message: &str) {
        logging::log(LogLevel::Warn, message)
    }
    /// Log at error level.
    pub fn error(message: &str) {
        logging::log(LogLevel::Error, message)
    }
}

/// The workflow a component declares for itself (the `workflow` export):
/// its flow, name and step bound, and each task's settings. Give it to
/// [`export_tasks!`] as `workflow = ...;`.
#[derive(Debug, Clone, Default)]
pub struct Workflow {
    name: Option<String>,
    flow: Option<String>,
    max_steps: Option<u64>,
    tasks: Vec<(String, Settings)>,
}

impl Workflow {
    /// A workflow with `flow`, in Graflow's operators: `"fetch >> (clean | enrich) >> store"`.
    pub fn flow(flow: &str) -> Workflow {
        Workflow { flow: Some(flow.to_string()), ..Workflow::default() }
    }
    /// Settings without a flow (a workflow file gives the flow).
    pub fn settings_only() -> Workflow {
        Workflow::default()
    }
    /// The workflow's name (default: the component file's name).
    pub fn name(mut self, name: &str) -> Workflow {
        self.name = Some(name.to_string());
        self
    }
    /// The most task executions of one run.
    pub fn max_steps(mut self, n: u64) -> Workflow {
        self.max_steps = Some(n);
        self
    }
    /// The settings of task `name` (replacing earlier ones for it).
    pub fn task(mut self, name: &str, settings: Settings) -> Workflow {
        self.tasks.retain(|(n, _)| n != name);
        self.tasks.push((name.to_string(), settings));
        self
    }
}

/// A task's settings declared in code; each is a default a workflow file may
/// override.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    max_retries: Option<u32>,
    max_cycles: Option<u32>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    fuel: Option<u64>,
}

impl Settings {
    /// No settings (every one the workflow's default).
    pub fn new() -> Settings {
        Settings::default()
    }
    /// Retries after a retryable failure.
    pub fn max_retries(mut self, n: u32) -> Settings {
        self.max_retries = Some(n);
        self
    }
    /// How many runs `next_iteration` may reach in total.
    pub fn max_cycles(mut self, n: u32) -> Settings {
        self.max_cycles = Some(n);
        self
    }
    /// Time limit of one attempt, in milliseconds.
    pub fn timeout_ms(mut self, ms: u64) -> Settings {
        self.timeout_ms = Some(ms);
        self
    }
    /// Memory limit, in MiB.
    pub fn memory_mb(mut self, mb: u64) -> Settings {
        self.memory_mb = Some(mb);
        self
    }
    /// Fuel budget of one attempt.
    pub fn fuel(mut self, fuel: u64) -> Settings {
        self.fuel = Some(fuel);
        self
    }
}

/// Support for [`export_tasks!`]; not part of the public API.
#[doc(hidden)]
pub mod __rt {
    use super::*;
    pub use bindings::Guest;
    pub use bindings::graflow::task::types::{TaskDecl, TaskError as WitTaskError, WorkflowDecl};
    use bindings::graflow::task::types::TaskSettings;

    /// The `workflow` export's value; `names` are the exported tasks in the
    /// order `tasks` lists them (a task is named by its position; a name not
    /// among them becomes `u32::MAX`, which the host refuses, naming it).
    pub fn workflow(w: Workflow, names: &[&str]) -> WorkflowDecl {
        WorkflowDecl {
            name: w.name,
            flow: w.flow,
            max_steps: w.max_steps,
            tasks: w
                .tasks
                .into_iter()
                .map(|(task, s)| TaskSettings {
                    task: names
                        .iter()
                        .position(|n| *n == task)
                        .and_then(|i| u32::try_from(i).ok())
                        .unwrap_or(u32::MAX),
                    max_retries: s.max_retries,
                    max_cycles: s.max_cycles,
                    timeout_ms: s.timeout_ms,
                    memory_mb: s.memory_mb,
                    fuel: s.fuel,
                })
                .collect(),
        }
    }

    /// A task function: `fn(I) -> Result<O, TaskError>`, or `fn() ->
    /// Result<O, TaskError>` for a task without input. `M` tells the two apart.
    pub trait TaskFn<M> {
        /// The input type.
        type In: DeserializeOwned;
        /// The output type.
        type Out: Serialize;
        /// Run it.
        fn invoke(&self, input: Self::In) -> Result<Self::Out, TaskError>;
    }

    impl<I: DeserializeOwned, O: Serialize, F: Fn(I) -> Result<O, TaskError>> TaskFn<(I,)> for F {
        type In = I;
        type Out = O;
        fn invoke(&self, input: I) -> Result<O, TaskError> {
            self(input)
        }
    }

    impl<O: Serialize, F: Fn() -> Result<O, TaskError>> TaskFn<()> for F {
        type In = ();
        type Out = O;
        fn invoke(&self, _: ()) -> Result<O, TaskError> {
            self()
        }
    }

    /// The declaration of a task function: its declared inputs come from its
    /// input type's field names.
    pub fn decl<M, T: TaskFn<M>>(name: &str, description: &str, _task: T) -> TaskDecl {
        TaskDecl {
            name: name.to_string(),
            inputs: introspect::field_names::<T::In>(),
            description: description.to_string(),
        }
    }

    /// Decode the input, run the task, encode its output.
    pub fn call<M, T: TaskFn<M>>(name: &str, task: T, input: &str) -> Result<String, WitTaskError> {
        // A task that takes no input (`()`, `Option<T>`) receives `{}` from the
        // host when it declares nothing: read that as null. Any other failure
        // keeps the error of the input as given.
        let input: T::In = match serde_json::from_str::<T::In>(input) {
            Ok(v) => v,
            Err(first) => match serde_json::from_str::<T::In>("null") {
                Ok(v) if input.trim() == "{}" => v,
                _ => return Err(TaskError::failed(format!("invalid input for task '{name}': {first}")).into_wit()),
            },
        };
        let output = task.invoke(input).map_err(TaskError::into_wit)?;
        to_json(&output).map_err(TaskError::into_wit)
    }

    /// The error for a task name the component does not provide.
    pub fn unknown(task: &str, known: &[&str]) -> WitTaskError {
        WitTaskError::Failed(format!("this component has no task '{task}' (it provides: {})", known.join(", ")))
    }
}

/// Export a component's tasks: `export_tasks!(fetch, transform: "Doubles every value", store);`
///
/// Each name is a function `fn(I) -> Result<O, TaskError>` in scope, with
/// `I: Deserialize` and `O: Serialize`, or `fn() -> Result<O, TaskError>` for
/// a task without input; the string after `:` is an optional description.
/// A leading `workflow = <Workflow>;` declares the component's own workflow
/// (see [`Workflow`]). Use once per component.
#[macro_export]
macro_rules! export_tasks {
    (workflow = $workflow:expr; $($task:ident $(: $desc:literal)?),+ $(,)?) => {
        $crate::export_tasks!(@impl ($workflow) $($task $(: $desc)?),+);
    };
    ($($task:ident $(: $desc:literal)?),+ $(,)?) => {
        $crate::export_tasks!(@impl ($crate::Workflow::settings_only()) $($task $(: $desc)?),+);
    };
    (@impl ($workflow:expr) $($task:ident $(: $desc:literal)?),+) => {
        struct __GraflowTasks;
        impl $crate::__rt::Guest for __GraflowTasks {
            fn workflow() -> $crate::__rt::WorkflowDecl {
                $crate::__rt::workflow($workflow, &[$(stringify!($task)),+])
            }
            fn tasks() -> ::std::vec::Vec<$crate::__rt::TaskDecl> {
                ::std::vec![$($crate::__rt::decl(stringify!($task), concat!("" $(, $desc)?), $task)),+]
            }
            fn run(task: ::std::string::String, input: ::std::string::String)
                -> ::std::result::Result<::std::string::String, $crate::__rt::WitTaskError> {
                match task.as_str() {
                    $(stringify!($task) => $crate::__rt::call(stringify!($task), $task, &input),)+
                    other => ::std::result::Result::Err($crate::__rt::unknown(other, &[$(stringify!($task)),+])),
                }
            }
        }
        $crate::bindings::__export_task_module!(__GraflowTasks);
    };
}
