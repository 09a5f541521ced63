//! The `llm` capability: an OpenAI-compatible chat-completions call made by
//! the host for a task, through the same gate (grant, resolved-address
//! check, bounds, idempotency key, run event) as any other request. The
//! provider and its key's environment variable come from `[workflow.llm]`;
//! the key is attached by the gate for the provider's origin only.
//! Token budgets: per execution and per run ([`super::NetBounds`]).

use super::ExecNet;
use super::gate::{self, NetError, Timeouts};
use serde_json::{Value, json};
use std::sync::Arc;

/// What a task asks.
pub struct ChatRequest {
    /// JSON array of messages.
    pub messages: String,
    /// Model, or empty for the provider's default.
    pub model: String,
    /// JSON array of tools.
    pub tools: String,
    /// JSON object of other parameters.
    pub params: String,
}

/// A tool the model asks to call.
pub struct ToolCall {
    /// Its id, to answer with a `tool` message.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// The model's answer.
pub struct ChatAnswer {
    /// The assistant message as JSON text.
    pub message: String,
    /// Its text.
    pub content: Option<String>,
    /// Tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped.
    pub finish_reason: String,
    /// The model that answered.
    pub model: String,
    /// Prompt, completion and total tokens.
    pub usage: (u32, u32, u32),
}

/// Why a chat call failed.
#[derive(Debug)]
pub enum ChatError {
    /// Not configured, or not granted.
    Denied(String),
    /// A budget or bound.
    Limit(String),
    /// The provider said no.
    Provider(String),
    /// Malformed request.
    Invalid(String),
    /// Network or protocol failure.
    Failed(String),
    /// The host stops every task: the guest is stopped, not answered.
    Stopped,
}

impl From<NetError> for ChatError {
    fn from(e: NetError) -> ChatError {
        match e {
            NetError::Denied(s) => ChatError::Denied(s),
            NetError::Bound(s) => ChatError::Limit(s),
            NetError::Invalid(s) => ChatError::Invalid(s),
            NetError::Stopped => ChatError::Stopped,
            e @ (NetError::Timeout(_) | NetError::Failed(_)) => ChatError::Failed(e.to_string()),
        }
    }
}

fn parse_json(what: &str, text: &str, empty: Value) -> Result<Value, ChatError> {
    if text.trim().is_empty() {
        return Ok(empty);
    }
    serde_json::from_str(text).map_err(|e| ChatError::Invalid(format!("{what} is not JSON: {e}")))
}

/// Make the call (blocking the calling thread on the gate's runtime).
pub fn chat(net: Option<Arc<ExecNet>>, req: ChatRequest) -> Result<ChatAnswer, ChatError> {
    let Some(net) = net else {
        return Err(ChatError::Denied(
            "the task is granted no http origins, so it cannot reach a model provider".into(),
        ));
    };
    let Some(provider) = net.policy().llm.clone() else {
        return Err(ChatError::Denied("the workflow configures no model provider ([workflow.llm])".into()));
    };
    let (_, url) = provider.endpoint().map_err(ChatError::Denied)?;
    net.tokens_left().map_err(ChatError::Limit)?;
    let messages = parse_json("messages", &req.messages, Value::Null)?;
    if messages.as_array().is_none_or(|a| a.is_empty()) {
        return Err(ChatError::Invalid(
            "messages must be a non-empty JSON array of {\"role\", \"content\"} objects".into(),
        ));
    }
    let tools = parse_json("tools", &req.tools, json!([]))?;
    if !tools.is_array() {
        return Err(ChatError::Invalid("tools must be a JSON array".into()));
    }
    let params = parse_json("params", &req.params, json!({}))?;
    let Value::Object(mut body) = params else {
        return Err(ChatError::Invalid("params must be a JSON object".into()));
    };
    let model = if req.model.is_empty() { provider.model.clone() } else { req.model };
    body.insert("model".into(), Value::String(model.clone()));
    body.insert("messages".into(), messages);
    if tools.as_array().is_some_and(|t| !t.is_empty()) {
        body.insert("tools".into(), tools);
    }
    body.insert("stream".into(), Value::Bool(false));
    // A completion never asks for more than the budgets have left.
    let left = net.tokens_remaining();
    for key in ["max_tokens", "max_completion_tokens"] {
        if let Some(asked) = body.get(key).and_then(Value::as_u64) {
            body.insert(key.into(), Value::from(asked.min(left)));
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(body)).map_err(|e| ChatError::Invalid(e.to_string()))?;
    let sent_len = bytes.len();
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    let net2 = net.clone();
    let response = wasmtime_wasi::runtime::in_tokio(async move {
        let req = gate::BufferedRequest {
            method: http::Method::POST,
            url: url.to_string(),
            headers,
            body: bytes,
            timeouts: Timeouts::default(),
            follow_redirects: false,
            details: Some(details),
        };
        gate::send_buffered(net2, req).await
    })?;
    let text = String::from_utf8_lossy(&response.body);
    let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !(200..300).contains(&response.status) {
        let msg = parsed
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        return Err(ChatError::Provider(net.scrub(&format!("the provider answered {}: {msg}", response.status))));
    }
    let usage = parsed.get("usage").cloned().unwrap_or(Value::Null);
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).map(|v| v.min(u64::from(u32::MAX)) as u32);
    let (prompt, completion) = (n("prompt_tokens").unwrap_or(0), n("completion_tokens").unwrap_or(0));
    let reported = n("total_tokens").unwrap_or(0).max(prompt.saturating_add(completion));
    // Usage that is missing, negative or not a whole number is not taken as
    // zero: the call counts about one token per 4 bytes that went each way.
    let valid = ["prompt_tokens", "completion_tokens"].iter().all(|k| n(k).is_some());
    let total = if valid { reported } else { ((sent_len + response.body.len()) / 4).min(u32::MAX as usize) as u32 };
    let answered_model = parsed.get("model").and_then(Value::as_str).unwrap_or(&model).to_string();
    net.spend_tokens(u64::from(total)).map_err(ChatError::Limit)?;
    let choice = parsed
        .pointer("/choices/0")
        .ok_or_else(|| ChatError::Provider("the provider's answer has no choices[0]".into()))?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    if !message.is_object() {
        return Err(ChatError::Provider("the provider's answer has no choices[0].message object".into()));
    }
    // What the guest gets is scrubbed after decoding too (a key echoed as
    // JSON escapes is plain text once decoded).
    let content = message.get("content").and_then(Value::as_str).map(|c| net.scrub(c));
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: net.scrub(c.get("id").and_then(Value::as_str).unwrap_or_default()),
                    name: net.scrub(c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default()),
                    arguments: net.scrub(&match c.pointer("/function/arguments") {
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => "{}".into(),
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    let finish_reason = net.scrub(choice.get("finish_reason").and_then(Value::as_str).unwrap_or_default());
    Ok(ChatAnswer {
        message: net.scrub(&message.to_string()),
        content,
        tool_calls,
        finish_reason,
        model: net.scrub(&answered_model),
        usage: (prompt, completion, total),
    })
}

/// The model and total tokens of a provider's answer, for the run event.
fn details(body: &[u8]) -> (Option<String>, Option<u64>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = v.get("model").and_then(Value::as_str).map(str::to_string);
    let tokens = v.pointer("/usage/total_tokens").and_then(Value::as_u64);
    (model, tokens)
}
