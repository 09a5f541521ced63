//! A workflow's outbound policy: who may reach what, which headers the host
//! attaches from its own environment, the language-model provider, and the
//! bounds. Built from the workflow file (`model/resolve.rs`), stored in the
//! signed commit record of every checkpoint (`checkpoint/schema/v2.rs`,
//! `outbound`) and sent to workers with the workflow. Holds names of
//! environment variables, never their values.

use super::grant::{Grant, Origin};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default of [`NetBounds::max_response_bytes`]: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;
/// Default of [`NetBounds::max_request_bytes`]: 4 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Default of [`NetBounds::max_requests`]: per execution.
pub const DEFAULT_MAX_REQUESTS: u32 = 100;
/// Default of [`NetBounds::max_connections`]: per run.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// Default of [`NetBounds::max_llm_tokens_per_execution`].
pub const DEFAULT_MAX_LLM_TOKENS_PER_EXECUTION: u64 = 200_000;
/// Default of [`NetBounds::max_llm_tokens`]: per run.
pub const DEFAULT_MAX_LLM_TOKENS: u64 = 2_000_000;
/// Redirects [`crate::outbound`]'s `http.send` follows (each a new, checked request).
pub const MAX_REDIRECTS: u32 = 5;

/// Bounds on what a task's network use can make the host hold or do. Keys
/// of `[workflow.http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetBounds {
    /// Bytes of one response body a task may receive.
    pub max_response_bytes: u64,
    /// Bytes of one request body a task may send.
    pub max_request_bytes: u64,
    /// Requests (redirects and model calls included) per execution.
    pub max_requests: u32,
    /// Connections the run opens in all (one per request), per process.
    pub max_connections: u64,
    /// Model tokens (prompt and completion) one execution may use.
    pub max_llm_tokens_per_execution: u64,
    /// Model tokens the run may use, per process.
    pub max_llm_tokens: u64,
}

impl Default for NetBounds {
    fn default() -> Self {
        NetBounds {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_llm_tokens_per_execution: DEFAULT_MAX_LLM_TOKENS_PER_EXECUTION,
            max_llm_tokens: DEFAULT_MAX_LLM_TOKENS,
        }
    }
}

/// A header the host attaches to every request for one origin, its value
/// made from a host environment variable: `Authorization: Bearer
/// ${OPENAI_API_KEY}`. The guest never sees the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HeaderWire", into = "HeaderWire")]
pub struct InjectedHeader {
    /// The one origin whose requests carry it.
    pub origin: Origin,
    /// The header name, lower case.
    pub name: http::HeaderName,
    /// Text before `${VAR}`.
    pub prefix: String,
    /// The environment variable.
    pub var: String,
    /// Text after `${VAR}`.
    pub suffix: String,
}

/// [`InjectedHeader`] as written (workflow file, record).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderWire {
    /// `https://api.openai.com`.
    pub origin: String,
    /// `Authorization`.
    pub name: String,
    /// `Bearer ${OPENAI_API_KEY}`.
    pub value: String,
}

impl From<InjectedHeader> for HeaderWire {
    fn from(h: InjectedHeader) -> HeaderWire {
        HeaderWire {
            origin: h.origin.to_string(),
            name: h.name.to_string(),
            value: format!("{}${{{}}}{}", h.prefix, h.var, h.suffix),
        }
    }
}

/// An exact origin (`scheme://host[:port]`, no wildcard, no path).
pub fn parse_exact_origin(s: &str) -> Result<Origin, String> {
    let uri: http::Uri =
        s.parse().map_err(|_| format!("'{s}' is not an origin such as \"https://api.example.com\""))?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
        return Err(format!("'{s}' has a path; name the origin only (scheme://host[:port])"));
    }
    Origin::of_uri(&uri)
}

/// True if `name` can name an environment variable.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

impl TryFrom<HeaderWire> for InjectedHeader {
    type Error = String;
    fn try_from(w: HeaderWire) -> Result<Self, String> {
        let origin = parse_exact_origin(&w.origin)?;
        let name = http::HeaderName::from_bytes(w.name.as_bytes())
            .map_err(|_| format!("'{}' is not a header name", w.name))?;
        let forbidden = [
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::CONNECTION,
        ];
        if forbidden.contains(&name) {
            return Err(format!("the host does not attach '{name}'"));
        }
        let (prefix, rest) = w.value.split_once("${").ok_or_else(|| {
            format!("value '{}' names no environment variable: write it as \"Bearer ${{MY_KEY}}\"", w.value)
        })?;
        let (var, suffix) = rest.split_once('}').ok_or_else(|| format!("value '{}' has an unclosed ${{", w.value))?;
        if !is_env_name(var) {
            return Err(format!("'{var}' is not an environment variable name"));
        }
        if suffix.contains("${") {
            return Err(format!("value '{}' names more than one environment variable", w.value));
        }
        if http::HeaderValue::from_str(&format!("{prefix}{suffix}")).is_err() {
            return Err(format!("value '{}' has characters a header cannot carry", w.value));
        }
        Ok(InjectedHeader { origin, name, prefix: prefix.into(), var: var.into(), suffix: suffix.into() })
    }
}

/// An OpenAI-compatible chat-completions provider (OpenAI, Ollama, vLLM,
/// llama.cpp's server, LiteLLM's proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmProvider {
    /// The API base, e.g. `https://api.openai.com/v1`; the call goes to
    /// `<base_url>/chat/completions`.
    pub base_url: String,
    /// The model used when a call names none.
    pub model: String,
    /// The environment variable holding the API key, sent as
    /// `Authorization: Bearer <key>` to the provider's origin only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

impl LlmProvider {
    /// The provider's origin and the URL of its chat-completions endpoint.
    pub fn endpoint(&self) -> Result<(Origin, http::Uri), String> {
        let url = format!("{}/chat/completions", self.base_url.trim_end_matches('/'));
        let uri: http::Uri = url.parse().map_err(|_| format!("base_url '{}' is not a URL", self.base_url))?;
        if uri.query().is_some() || self.base_url.contains('#') {
            return Err(format!("base_url '{}' must not have a query or a fragment", self.base_url));
        }
        let origin = Origin::of_uri(&uri).map_err(|e| format!("base_url: {e}"))?;
        Ok((origin, uri))
    }

    /// Checked when the workflow is read.
    pub fn validate(&self) -> Result<(), String> {
        self.endpoint()?;
        if self.model.trim().is_empty() {
            return Err("model must name a model, e.g. \"gpt-4o-mini\"".into());
        }
        if let Some(v) = &self.api_key_env
            && !is_env_name(v)
        {
            return Err(format!("api_key_env '{v}' is not an environment variable name"));
        }
        Ok(())
    }
}

/// A workflow's outbound policy. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// What each granted task may reach (its own grant, else the workflow's
    /// default); a task not listed reaches nothing.
    pub tasks: BTreeMap<String, Grant>,
    /// Headers the host attaches, each to one origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<InjectedHeader>,
    /// The language-model provider, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmProvider>,
    /// Bounds.
    #[serde(default)]
    pub bounds: NetBounds,
}

impl Policy {
    /// True if no task is granted anything (nothing is stored or built).
    pub fn is_empty(&self) -> bool {
        self.tasks.values().all(Grant::is_empty)
    }

    /// The grant of `task`, if it has one.
    pub fn grant(&self, task: &str) -> Option<&Grant> {
        self.tasks.get(task).filter(|g| !g.is_empty())
    }

    /// Every header the host attaches, the provider's key among them.
    pub fn injected_headers(&self) -> Vec<InjectedHeader> {
        let mut out = self.headers.clone();
        if let Some(p) = &self.llm
            && let (Some(var), Ok((origin, _))) = (&p.api_key_env, p.endpoint())
        {
            out.push(InjectedHeader {
                origin,
                name: http::header::AUTHORIZATION,
                prefix: "Bearer ".into(),
                var: var.clone(),
                suffix: String::new(),
            });
        }
        out
    }

    /// Checked when a record or a worker's workflow is read (the same rules
    /// as the workflow file).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = &self.llm {
            p.validate().map_err(|e| format!("llm: {e}"))?;
        }
        let b = &self.bounds;
        if b.max_response_bytes == 0
            || b.max_request_bytes == 0
            || b.max_requests == 0
            || b.max_connections == 0
            || b.max_llm_tokens == 0
            || b.max_llm_tokens_per_execution == 0
        {
            return Err("every outbound bound must be at least 1".into());
        }
        Ok(())
    }
}
