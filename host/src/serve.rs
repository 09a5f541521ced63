//! `graflow-host serve`: a small web page (and its JSON API) over a checkpoint
//! directory: its runs and checkpoints, and the feedback requests tasks made,
//! answered with a form. Plain server-rendered HTML, no script.
//!
//! Routes: `GET /` (the page), `POST /answer/{id}` (the form),
//! `GET /api/requests`, `GET /api/requests/{id}`,
//! `POST /api/requests/{id}/answer` (body: the answer object, e.g.
//! `{"approved": true}`), `GET /api/checkpoints`. With a token, every request
//! carries it: `?token=` on pages, a hidden form field, or
//! `Authorization: Bearer` for the API.

use crate::feedback::{Entry, FeedbackError, FeedbackKind, FileDesk};
use crate::json::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What the server serves.
pub struct ServeState {
    /// The checkpoint directory (or the `s3://` URL of a bucket).
    pub dir: PathBuf,
    /// Where its requests, answers and checkpoints are: the directory, or
    /// the bucket.
    pub location: crate::storage::Location,
    /// Required on every request when set.
    pub token: Option<String>,
}

type Shared = Arc<ServeState>;

/// Why `serve` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without a token.
    #[error(
        "{0} is reachable from other machines: pass --token TOKEN (or set GRAFLOW_SERVE_TOKEN), or listen on 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("the server stopped")]
    Io(#[from] std::io::Error),
}

/// The routes over `state`.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/answer/{id}", post(answer_form))
        .route("/api/requests", get(api_requests))
        .route("/api/requests/{id}", get(api_request))
        .route("/api/requests/{id}/answer", post(api_answer))
        .route("/api/checkpoints", get(api_checkpoints))
        .with_state(state)
}

/// Connections served at once; one past it is closed as soon as it is
/// accepted.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a client may take to send a request's headers (a connection
/// that sends nothing is closed after it).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long one connection may stay open, whatever it does (a body sent a
/// byte at a time, a page never read): a browser opens another.
pub const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Serve `state` on `addr` until the process ends; `ready` is called once
/// listening, with the bound address. At most [`MAX_CONNECTIONS`] at once,
/// each closed if its headers take longer than [`HEADER_READ_TIMEOUT`]; a
/// failed accept (out of file descriptors, say) is logged and retried.
pub fn run(state: ServeState, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    if !addr.ip().is_loopback() && state.token.is_none() {
        return Err(ServeError::NeedsToken(addr));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        ready(listener.local_addr()?);
        let app = router(Arc::new(state));
        let live = Arc::new(AtomicUsize::new(0));
        let refused = AtomicUsize::new(0);
        /// Gives its connection's slot back however the connection ends.
        struct Slot(Arc<AtomicUsize>);
        impl Drop for Slot {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let slot = Slot(live.clone());
            if live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                drop(slot);
                // Said at the 1st, 2nd, 4th, 8th... refusal, not at each.
                let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        "refused {n} connection(s) so far: {MAX_CONNECTIONS} are open (serve::MAX_CONNECTIONS)"
                    );
                }
                continue;
            }
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                // A connection's failure is its client's (closed, too slow).
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            });
        }
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Percent-encoding for a query value.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A request another site could have made: a `Host` that is not this
/// server's loopback name (DNS rebinding), or a form or API post whose
/// `Origin` is another site's.
fn foreign(headers: &HeaderMap, post: bool) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    // `name:port`, `[v6]:port` or a bare name.
    let name = match host.rsplit_once(':') {
        Some((n, port)) if !port.contains(']') => n,
        _ => host,
    };
    let loopback = ["127.0.0.1", "localhost", "[::1]"].iter().any(|l| name.eq_ignore_ascii_case(l));
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    // `null` (a sandboxed frame, a data: page) is another site too.
    let cross = post && origin.is_some_and(|o| !o.eq_ignore_ascii_case(&format!("http://{host}")));
    !loopback || cross
}

fn authorized(state: &ServeState, given: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        // Without a token the server listens on loopback only; requests must
        // come from this machine's browser, for this server.
        return true;
    };
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    [given, bearer].into_iter().flatten().any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuse a request that lacks the token, or (without a token) comes from
/// another site; `None` lets it through.
fn guard(s: &ServeState, given: Option<&str>, headers: &HeaderMap, post: bool) -> Option<Response> {
    if !authorized(s, given, headers) {
        return Some(forbidden());
    }
    if s.token.is_none() && foreign(headers, post) {
        return Some(foreign_refused());
    }
    None
}

fn forbidden() -> Response {
    (StatusCode::UNAUTHORIZED, "a token is required: add ?token=... (or Authorization: Bearer ...)").into_response()
}

fn foreign_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "without a token this server answers only this machine's browser, for http://127.0.0.1 or http://localhost \
         (another site or host name cannot use it)",
    )
        .into_response()
}

fn json_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn status_of(e: &FeedbackError) -> StatusCode {
    match e {
        FeedbackError::Unknown { .. } => StatusCode::NOT_FOUND,
        FeedbackError::AlreadyAnswered { .. } => StatusCode::CONFLICT,
        FeedbackError::WrongAnswer(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn api_requests(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = guard(&s, q.get("token").map(String::as_str), &headers, false) {
        return refused;
    }
    match FileDesk::on(s.location.storage()).list() {
        Ok(list) => axum::Json(list.iter().map(Entry::to_json).collect::<Vec<_>>()).into_response(),
        Err(e) => json_error(status_of(&e), e.to_string()),
    }
}

async fn api_request(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = guard(&s, q.get("token").map(String::as_str), &headers, false) {
        return refused;
    }
    match FileDesk::on(s.location.storage()).find(&id) {
        Ok(e) => axum::Json(e.to_json()).into_response(),
        Err(e) => json_error(status_of(&e), e.to_string()),
    }
}

async fn api_answer(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = guard(&s, q.get("token").map(String::as_str), &headers, true) {
        return refused;
    }
    // A JSON content type: another site cannot send one without the browser
    // asking this server first (which it does not allow).
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the answer as Content-Type: application/json".into(),
        );
    }
    let answer = match std::str::from_utf8(&body).ok().map(Json::parse) {
        Some(Ok(a)) => a,
        _ => return json_error(StatusCode::BAD_REQUEST, "the body must be the answer, as a JSON object".into()),
    };
    match FileDesk::on(s.location.storage()).answer_request(&id, &answer, "api") {
        Ok(r) => axum::Json(serde_json::json!({"answered": r.id, "task_id": r.task_id})).into_response(),
        Err(e) => json_error(status_of(&e), e.to_string()),
    }
}

async fn api_checkpoints(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = guard(&s, q.get("token").map(String::as_str), &headers, false) {
        return refused;
    }
    let list = checkpoints_of(&s.location).unwrap_or_default();
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            serde_json::json!({
                "checkpoint": c.base.display().to_string(), "session": c.meta.session_id, "id": c.meta.checkpoint_id,
                "steps": c.meta.steps, "created_at": c.meta.created_at, "mode": c.meta.mode_name(),
                "after": c.meta.after_task(), "workflow": c.meta.workflow,
            })
        })
        .collect();
    axum::Json(rows).into_response()
}

/// The answer a form sends, as the answer object of its request's kind.
fn form_answer(kind: FeedbackKind, fields: &[(String, String)]) -> Result<Json, String> {
    let one = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let value = match kind {
        FeedbackKind::Approval => {
            let approved = match one("decision").as_deref() {
                Some("approve") => true,
                Some("reject") => false,
                _ => return Err("choose Approve or Reject".into()),
            };
            let reason = one("reason").filter(|r| !r.trim().is_empty());
            serde_json::json!({"approved": approved, "reason": reason})
        }
        FeedbackKind::Text => serde_json::json!({ "text": one("text").unwrap_or_default() }),
        FeedbackKind::Selection => {
            serde_json::json!({ "selected": one("selected").ok_or("choose an option")? })
        }
        FeedbackKind::MultiSelection => {
            let chosen: Vec<&String> = fields.iter().filter(|(n, _)| n == "selected").map(|(_, v)| v).collect();
            serde_json::json!({ "selected": chosen })
        }
        FeedbackKind::Custom => {
            let text = one("json").unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
            serde_json::json!({ "value": v })
        }
    };
    Ok(Json::encode(&value))
}

async fn answer_form(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let token = fields.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str());
    if let Some(refused) = guard(&s, token, &headers, true) {
        return refused;
    }
    let desk = FileDesk::on(s.location.storage());
    let outcome = desk.find(&id).and_then(|e| {
        let answer = form_answer(e.request.kind, &fields).map_err(FeedbackError::WrongAnswer)?;
        desk.answer_request(&id, &answer, "web")
    });
    let suffix = s.token.as_ref().map(|t| format!("&token={}", query_value(t))).unwrap_or_default();
    match outcome {
        Ok(r) => Redirect::to(&format!("/?answered={}{suffix}", r.id)).into_response(),
        Err(e) => {
            let back = s.token.as_ref().map(|t| format!("/?token={}", query_value(t))).unwrap_or_else(|| "/".into());
            let body = format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>not answered</title><style>{CSS}</style></head>\
                 <body><h1>Not answered</h1><p class=\"error\">{}</p><p><a href=\"{back}\">back</a></p></body></html>",
                esc(&e.to_string())
            );
            (status_of(&e), Html(body)).into_response()
        }
    }
}

const CSS: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}.card{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}\
.prompt{font-size:1.1rem;font-weight:600}.meta{color:#666;font-size:.85rem}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #eee;padding:.3rem;text-align:left;font-size:.9rem}.ok{background:#e7f6e7;padding:.5rem}\
.error{background:#fbe9e9;padding:.5rem}button{margin:.3rem .3rem 0 0}code{font-size:.85rem}";

fn form(e: &Entry, token: Option<&str>) -> String {
    let r = &e.request;
    let mut f = format!("<form method=\"post\" action=\"/answer/{}\">", esc(&r.id));
    if let Some(t) = token {
        let _ = write!(f, "<input type=\"hidden\" name=\"token\" value=\"{}\">", esc(t));
    }
    match r.kind {
        FeedbackKind::Approval => f.push_str(
            "<input name=\"reason\" placeholder=\"reason (optional)\" size=\"40\"> \
             <button name=\"decision\" value=\"approve\">Approve</button>\
             <button name=\"decision\" value=\"reject\">Reject</button>",
        ),
        FeedbackKind::Text => f.push_str("<input name=\"text\" size=\"50\" required> <button>Answer</button>"),
        FeedbackKind::Selection | FeedbackKind::MultiSelection => {
            let input = if r.kind == FeedbackKind::Selection { "radio" } else { "checkbox" };
            for o in &r.options {
                let _ = write!(
                    f,
                    "<label><input type=\"{input}\" name=\"selected\" value=\"{v}\"> {v}</label><br>",
                    v = esc(o)
                );
            }
            f.push_str("<button>Answer</button>");
        }
        FeedbackKind::Custom => {
            f.push_str("<textarea name=\"json\" rows=\"4\" cols=\"60\" placeholder=\"a JSON value\"></textarea><br><button>Answer</button>")
        }
    }
    f.push_str("</form>");
    f
}

async fn page(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let token = q.get("token").map(String::as_str);
    if let Some(refused) = guard(&s, token, &headers, false) {
        return refused;
    }
    let token = s.token.as_deref();
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>graflow-host: {dir}</title><style>{CSS}</style></head><body>\
         <h1>graflow-host · {dir}</h1>",
        dir = esc(&s.dir.display().to_string())
    );
    if let Some(id) = q.get("answered") {
        let resume = FileDesk::on(s.location.storage())
            .find(id)
            .ok()
            .and_then(|e| crate::feedback::latest_in(&s.location, &e.request.session_id))
            .map(|cp| {
                format!(
                    " If the run paused, continue it with <code>graflow-host resume {}</code>.",
                    esc(&cp.display().to_string())
                )
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "<p class=\"ok\" id=\"answered\">Answered request <code>{}</code>; a task still waiting for it continues by itself.{resume}</p>",
            esc(id),
        );
    }
    let entries = FileDesk::on(s.location.storage()).list();
    let entries = match entries {
        Ok(e) => e,
        Err(e) => {
            let _ = write!(out, "<p class=\"error\">{}</p>", esc(&e.to_string()));
            Vec::new()
        }
    };
    let (pending, answered): (Vec<&Entry>, Vec<&Entry>) = entries.iter().partition(|e| e.answer.is_none());
    let _ = write!(out, "<h2>Waiting for an answer ({})</h2>", pending.len());
    if pending.is_empty() {
        out.push_str("<p>No request is waiting.</p>");
    }
    for e in &pending {
        let r = &e.request;
        let _ = write!(
            out,
            "<div class=\"card\" id=\"request-{id}\"><div class=\"prompt\">{prompt}</div>\
             <div class=\"meta\">{kind} · task <code>{task}</code> · run <code>{session}</code> · request <code>{id}</code></div>",
            id = esc(&r.id),
            prompt = esc(&r.prompt),
            kind = r.kind,
            task = esc(&r.task_id),
            session = esc(&r.session_id)
        );
        if let Some(m) = r.metadata.as_ref().filter(|m| !m.is_null()) {
            let _ = write!(out, "<pre>{}</pre>", esc(m.as_str()));
        }
        out.push_str(&form(e, token));
        out.push_str("</div>");
    }
    if !answered.is_empty() {
        out.push_str(
            "<h2>Answered</h2><table><tr><th>request</th><th>task</th><th>prompt</th><th>answer</th><th>by</th></tr>",
        );
        for e in answered.iter().rev().take(50) {
            let a = e.answer.as_ref().map_or(("", ""), |a| (a.answer.as_str(), a.by.as_str()));
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&e.request.id),
                esc(&e.request.task_id),
                esc(&e.request.prompt),
                esc(a.0),
                esc(a.1)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Runs and checkpoints</h2>");
    match checkpoints_of(&s.location) {
        Ok(list) if !list.is_empty() => {
            out.push_str("<table><tr><th>run</th><th>checkpoint</th><th>steps</th><th>why</th><th>after</th><th>written</th></tr>");
            for c in list.iter().rev().take(200) {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&c.meta.session_id),
                    esc(&c.meta.checkpoint_id),
                    c.meta.steps,
                    esc(&c.meta.mode_label()),
                    esc(c.meta.after_task().unwrap_or("")),
                    esc(&c.meta.created_at)
                );
            }
            out.push_str("</table>");
        }
        _ => out.push_str("<p>No checkpoints.</p>"),
    }
    out.push_str("</body></html>");
    Html(out).into_response()
}

/// The committed checkpoints of a directory or a bucket, oldest first.
fn checkpoints_of(
    location: &crate::storage::Location,
) -> Result<Vec<crate::checkpoint::Summary>, crate::checkpoint::CheckpointError> {
    match location {
        crate::storage::Location::Dir(dir) => crate::checkpoint::list(dir),
        crate::storage::Location::Bucket(b) => Ok(crate::checkpoint::remote::list(b)?
            .into_iter()
            .map(|l| crate::checkpoint::Summary { base: PathBuf::from(l.url), meta: l.meta })
            .collect()),
    }
}
