//! [`send`]: one request through the gate (see the module above for the
//! checks, in order). Runs on wasmtime-wasi's tokio runtime.

use super::grant::{Host, Origin, Refusal, Scheme};
use super::{ExecNet, RequestRecord};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use wasmtime_wasi_http::Error as WasiError;
use wasmtime_wasi_http::io::TokioIo;

/// A request body as the gate takes it.
pub type GateRequestBody = wasmtime_wasi_http::WasiBody;

/// Connect timeout when the guest sets none (clamped to the task's deadline).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// First-byte timeout when the guest sets none (clamped likewise).
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);
/// Between-bytes timeout when the guest sets none (clamped likewise).
pub const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a wait checks whether the host stopped every task.
const STOP_CHECK: Duration = Duration::from_millis(10);

/// Why a request did not get a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The grant does not allow it (origin, address, missing key).
    Denied(String),
    /// A bound was reached; the text names its key.
    Bound(String),
    /// A wait ran out; the text says which.
    Timeout(String),
    /// The host stopped every task (interrupt grace period).
    Stopped,
    /// The request itself is malformed.
    Invalid(String),
    /// DNS, connection, TLS or protocol failure.
    Failed(String),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Denied(s) => write!(f, "denied: {s}"),
            NetError::Bound(s) => write!(f, "{s}"),
            NetError::Timeout(s) => write!(f, "timed out: {s}"),
            NetError::Stopped => f.write_str("stopped by the host after the interrupt grace period"),
            NetError::Invalid(s) => write!(f, "invalid request: {s}"),
            NetError::Failed(s) => write!(f, "{s}"),
        }
    }
}

impl NetError {
    /// The `wasi:http` error code a guest sees.
    pub fn to_wasi(&self) -> WasiError {
        match self {
            NetError::Denied(_) => WasiError::HttpRequestDenied,
            NetError::Bound(s) if s.contains("max_request_bytes") => WasiError::HttpRequestBodySize(None),
            NetError::Bound(s) if s.contains("max_response_bytes") => WasiError::HttpResponseBodySize(None),
            NetError::Bound(_) => WasiError::ConnectionLimitReached,
            NetError::Timeout(s) if s.starts_with("connect") => WasiError::ConnectionTimeout,
            NetError::Timeout(s) if s.starts_with("DNS") => WasiError::DnsTimeout,
            NetError::Timeout(_) | NetError::Stopped => WasiError::ConnectionReadTimeout,
            NetError::Invalid(_) => WasiError::HttpRequestUriInvalid,
            NetError::Failed(s) if s.starts_with("DNS") => WasiError::DnsError { rcode: None, info_code: None },
            NetError::Failed(s) if s.starts_with("TLS") => WasiError::TlsProtocolError,
            NetError::Failed(s) if s.starts_with("connect") => WasiError::ConnectionRefused,
            NetError::Failed(_) => WasiError::HttpProtocolError,
        }
    }
}

/// Timeouts a caller asks for (each clamped to the task's remaining time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeouts {
    /// Connect (DNS, TCP, TLS, handshake).
    pub connect: Option<Duration>,
    /// Until the response head.
    pub first_byte: Option<Duration>,
    /// Between two frames of the body.
    pub between_bytes: Option<Duration>,
}

/// The deadline and the stop flag every wait of an execution honours.
#[derive(Clone)]
struct Stop {
    deadline: Instant,
    abort: Arc<std::sync::atomic::AtomicBool>,
}

impl Stop {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
    fn stopped(&self) -> Option<NetError> {
        if self.abort.load(Ordering::Relaxed) {
            Some(NetError::Stopped)
        } else if Instant::now() >= self.deadline {
            Some(NetError::Timeout("the task's time limit (timeout_ms) ran out".into()))
        } else {
            None
        }
    }
    /// `fut`, unless `limit` passes first (`what` times out), the task's
    /// deadline passes, or the host stops every task.
    async fn bound<F: Future>(&self, fut: F, limit: Duration, what: &str) -> Result<F::Output, NetError> {
        let until = tokio::time::Instant::now() + limit.min(self.remaining());
        let limit_is_own = limit < self.remaining();
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Some(e) = self.stopped() {
                return Err(e);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Err(if limit_is_own {
                    NetError::Timeout(format!("{what} after {} ms", limit.as_millis()))
                } else {
                    NetError::Timeout(format!("{what}: the task's time limit (timeout_ms) ran out"))
                });
            }
            let nap = tokio::time::sleep((until - now).min(STOP_CHECK));
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = nap => {}
            }
        }
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// The TLS client configuration: the webpki roots, and the system's too
/// when `GRAFLOW_TLS_SYSTEM_ROOTS=1`.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            if std::env::var("GRAFLOW_TLS_SYSTEM_ROOTS").is_ok_and(|v| v == "1") {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
            // ring, named (not the process default, which is ambiguous, and
            // panics, once a second provider is linked in). Its provider is
            // deprecated only for lacking post-quantum key exchange.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config =
                match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
                    Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
                    // Not reached: ring supports the default protocol versions.
                    Err(e) => {
                        tracing::error!(
                            "ring's TLS provider refused the default protocol versions ({e}); using the process default"
                        );
                        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()
                    }
                };
            Arc::new(config)
        })
        .clone()
}

/// The checked addresses `origin` may be reached at, in resolution order.
async fn resolve(net: &ExecNet, origin: &Origin, stop: &Stop, connect: Duration) -> Result<Vec<SocketAddr>, NetError> {
    let candidates: Vec<IpAddr> = match &origin.host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), origin.port));
            let found = stop.bound(lookup, connect, "DNS lookup").await?;
            found.map_err(|e| NetError::Failed(format!("DNS lookup of {name} failed: {e}")))?.map(|a| a.ip()).collect()
        }
    };
    let mut allowed = Vec::new();
    let mut first_refusal = None;
    for ip in candidates {
        let check = net
            .grant
            .check_address(origin, ip)
            .and_then(|()| net.worker.as_ref().map_or(Ok(()), |w| w.check_address(origin, ip)));
        match check {
            Ok(()) => allowed.push(SocketAddr::new(ip, origin.port)),
            Err(r) => {
                first_refusal.get_or_insert(r);
            }
        }
    }
    if allowed.is_empty() {
        return Err(match first_refusal {
            Some(Refusal::Address(ip, kind)) => NetError::Denied(format!(
                "{origin} resolves to {ip}, a {kind} address the grant does not name (name it as an IP, `localhost`, or in allow_networks)"
            )),
            _ => NetError::Failed(format!("DNS lookup of {} found no address", origin.host)),
        });
    }
    Ok(allowed)
}

/// Open a connection to one of `addrs`, with TLS for `https`.
async fn connect(
    origin: &Origin,
    addrs: &[SocketAddr],
    stop: &Stop,
    limit: Duration,
) -> Result<Box<dyn Stream>, NetError> {
    let tcp = async {
        let mut last = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(format!("{a}: {e}")),
            }
        }
        Err(last.unwrap_or_default())
    };
    let tcp = stop
        .bound(tcp, limit, "connect")
        .await?
        .map_err(|e| NetError::Failed(format!("connect to {origin} failed ({e})")))?;
    let _ = tcp.set_nodelay(true);
    match origin.scheme {
        Scheme::Http => Ok(Box::new(tcp)),
        Scheme::Https => {
            use rustls::pki_types::ServerName;
            let name = match &origin.host {
                Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
                Host::Name(n) => ServerName::try_from(n.clone())
                    .map_err(|_| NetError::Invalid(format!("'{n}' is not a TLS server name")))?,
            };
            let connector = tokio_rustls::TlsConnector::from(tls_config());
            let tls = stop
                .bound(connector.connect(name, tcp), limit, "connect (TLS handshake)")
                .await?
                .map_err(|e| NetError::Failed(format!("TLS with {origin} failed: {e}")))?;
            Ok(Box::new(tls))
        }
    }
}

/// A request body that counts what is sent and stops at the bound.
struct CountedRequest {
    inner: GateRequestBody,
    sent: Arc<AtomicU64>,
    max: u64,
}

impl Body for CountedRequest {
    type Data = Bytes;
    type Error = WasiError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, WasiError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(d) = f.data_ref()
        {
            let total = self.sent.fetch_add(d.len() as u64, Ordering::Relaxed) + d.len() as u64;
            if total > self.max {
                return Poll::Ready(Some(Err(WasiError::HttpRequestBodySize(Some(total)))));
            }
        }
        Poll::Ready(frame)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body under the gate's bounds: at most `max` bytes, the
/// between-bytes timeout and the task's deadline, ending when the host
/// stops every task. Records the request's run event when it ends (or is
/// dropped).
pub struct GateBody {
    incoming: hyper::body::Incoming,
    received: u64,
    max: u64,
    between: Duration,
    idle_until: tokio::time::Instant,
    nap: Pin<Box<tokio::time::Sleep>>,
    stop: Stop,
    net: Arc<ExecNet>,
    record: Option<RequestRecord>,
    /// Scrub secret values from what is received (buffered callers only).
    pub(crate) failed: Option<NetError>,
}

impl GateBody {
    fn finish(&mut self, error: Option<String>) {
        if let Some(mut r) = self.record.take() {
            r.received = self.received;
            r.error = error;
            self.net.record(r);
        }
    }
    /// Read the whole body (bounded); its run event is emitted at the end.
    pub async fn collect(self) -> Result<Vec<u8>, NetError> {
        self.collect_with(None).await
    }

    /// [`GateBody::collect`]; for a model call (`details`), the event is
    /// emitted here, with the model and tokens read from the body.
    pub(crate) async fn collect_with(mut self, details: Option<ModelDetails>) -> Result<Vec<u8>, NetError> {
        use http_body_util::BodyExt;
        let record = if details.is_some() { self.record.take() } else { None };
        let mut out = Vec::new();
        let result = loop {
            match self.frame().await {
                None => break Ok(()),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        out.extend_from_slice(&d);
                    }
                }
                Some(Err(_)) => {
                    break Err(self
                        .failed
                        .take()
                        .unwrap_or_else(|| NetError::Failed("the response body failed".into())));
                }
            }
        };
        if let (Some(mut rec), Some(details)) = (record, details) {
            rec.received = out.len() as u64;
            match &result {
                Ok(()) => (rec.model, rec.tokens) = details(&out),
                Err(e) => rec.error = Some(e.to_string()),
            }
            self.net.record(rec);
        }
        result.map(|()| out)
    }

    fn fail(&mut self, e: NetError) -> Poll<Option<Result<Frame<Bytes>, WasiError>>> {
        let wasi = e.to_wasi();
        self.finish(Some(e.to_string()));
        self.failed = Some(e);
        Poll::Ready(Some(Err(wasi)))
    }
}

impl Drop for GateBody {
    fn drop(&mut self) {
        self.finish(None);
    }
}

impl Body for GateBody {
    type Data = Bytes;
    type Error = WasiError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, WasiError>>> {
        let this = &mut *self;
        if this.failed.is_some() {
            return Poll::Ready(None);
        }
        loop {
            if let Some(e) = this.stop.stopped() {
                return this.fail(e);
            }
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(None) => {
                    this.finish(None);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    return this.fail(NetError::Failed(format!("reading the response failed: {e}")));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        this.received += d.len() as u64;
                        if this.received > this.max {
                            let max = this.max;
                            return this.fail(NetError::Bound(format!(
                                "the response is over [workflow.http].max_response_bytes = {max}"
                            )));
                        }
                    }
                    this.idle_until = tokio::time::Instant::now() + this.between;
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Pending => {}
            }
            // Wait: wake within STOP_CHECK to look at the stop flag.
            let now = tokio::time::Instant::now();
            if now >= this.idle_until {
                let ms = this.between.as_millis();
                return this.fail(NetError::Timeout(format!("no response bytes for {ms} ms (between-bytes timeout)")));
            }
            let wake = (now + STOP_CHECK).min(this.idle_until);
            this.nap.as_mut().reset(wake);
            match this.nap.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => continue,
            }
        }
    }
    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// What [`send`] is asked to send.
pub struct Outgoing {
    /// The request; its URI is absolute (`scheme://authority/path?query`).
    pub request: http::Request<GateRequestBody>,
    /// What the caller asked for.
    pub timeouts: Timeouts,
    /// `http` (a guest request) or `llm` (a model call).
    pub kind: &'static str,
}

/// Send one request through the gate. The response's body is a
/// [`GateBody`]; the returned future drives the connection and ends with it.
pub async fn send(
    net: Arc<ExecNet>,
    out: Outgoing,
) -> Result<(http::Response<GateBody>, Pin<Box<dyn Future<Output = Result<(), WasiError>> + Send>>), NetError> {
    let Outgoing { request, timeouts, kind } = out;
    let started = Instant::now();
    let stop = Stop { deadline: net.deadline(), abort: net.abort.clone() };
    let (mut parts, body) = request.into_parts();
    let origin = Origin::of_uri(&parts.uri).map_err(NetError::Invalid)?;
    let path = parts.uri.path().to_string();
    let method = parts.method.to_string();
    let refused = |why: String| {
        net.log(
            "warn",
            &format!(
                "outbound request refused: task '{}' (module '{}') may not reach {origin}: {why}",
                net.task, net.module
            ),
        );
        NetError::Denied(format!("{origin}: {why}"))
    };
    // 1. The count: refused requests count too, so a looping guest meets the bound.
    let b = net.policy.bounds;
    let index = net.requests.fetch_add(1, Ordering::SeqCst);
    if index >= u64::from(b.max_requests) {
        return Err(NetError::Bound(format!(
            "more than [workflow.http].max_requests = {} requests in one execution",
            b.max_requests
        )));
    }
    // 2. The origin.
    if net.grant.check_origin(&origin).is_err() {
        return Err(refused("no pattern of the task's http grant allows it".into()));
    }
    if let Some(w) = &net.worker
        && w.check_origin(&origin).is_err()
    {
        return Err(refused("this worker's --allow-outbound does not allow it".into()));
    }
    // 3. The run's connections.
    if net.run.connections.fetch_add(1, Ordering::SeqCst) >= b.max_connections {
        return Err(NetError::Bound(format!(
            "the run opened [workflow.http].max_connections = {} connections",
            b.max_connections
        )));
    }
    if let Some(len) = body.size_hint().exact()
        && len > b.max_request_bytes
    {
        return Err(NetError::Bound(format!(
            "the request body of {len} bytes is over [workflow.http].max_request_bytes = {}",
            b.max_request_bytes
        )));
    }
    // 4. Headers: the host's own for this origin, the idempotency key, Host.
    for h in net.policy.injected_headers().iter().filter(|h| h.origin == origin) {
        let Ok(secret) = std::env::var(&h.var) else {
            let why = format!(
                "the workflow attaches header '{}' to {origin} from the host environment variable {}, which is not set on this machine; the request was not sent",
                h.name, h.var
            );
            net.log("error", &why);
            net.fail_task(&why);
            return Err(NetError::Denied(why));
        };
        let value = http::HeaderValue::from_str(&format!("{}{}{}", h.prefix, secret, h.suffix))
            .map_err(|_| NetError::Denied(format!("the value of {} cannot be sent in a header", h.var)))?;
        let mut value = value;
        value.set_sensitive(true);
        parts.headers.insert(h.name.clone(), value);
        // An uncompressed answer: the host's redaction of an echoed key
        // (`ExecNet::scrub`) can only see the key in plain text.
        parts.headers.insert(http::header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
    }
    let key_name = http::HeaderName::from_static("idempotency-key");
    if !parts.headers.contains_key(&key_name)
        && let Ok(v) = http::HeaderValue::from_str(&net.idempotency_key(index))
    {
        parts.headers.insert(key_name, v);
    }
    // W3C trace context: the task's span, when the run is traced (the
    // host's value replaces one the guest set).
    if let Some(tp) = net.traceparent()
        && let Ok(v) = http::HeaderValue::from_str(&tp.header())
    {
        parts.headers.insert(http::HeaderName::from_static("traceparent"), v);
        // A guest's `tracestate` belongs to its own `traceparent`.
        parts.headers.remove(http::HeaderName::from_static("tracestate"));
    }
    if let Some(a) = parts.uri.authority()
        && let Ok(v) = http::HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(http::header::HOST, v);
    }
    parts.uri = http::Uri::builder()
        .path_and_query(parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .build()
        .map_err(|e| NetError::Invalid(e.to_string()))?;
    // 5. Resolve, check, connect.
    let connect_limit = timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let addrs = match resolve(&net, &origin, &stop, connect_limit).await {
        Err(NetError::Denied(why)) => {
            let msg =
                format!("outbound request refused: task '{}' (module '{}') may not reach {why}", net.task, net.module);
            net.log("warn", &msg);
            return Err(NetError::Denied(why));
        }
        other => other?,
    };
    let stream = connect(&origin, &addrs, &stop, connect_limit).await?;
    let (mut sender, conn) = stop
        .bound(hyper::client::conn::http1::handshake(TokioIo::new(stream)), connect_limit, "connect (HTTP handshake)")
        .await?
        .map_err(|e| NetError::Failed(format!("HTTP with {origin} failed: {e}")))?;
    // 6. Send, bounded.
    let sent = Arc::new(AtomicU64::new(0));
    let body = CountedRequest { inner: body, sent: sent.clone(), max: b.max_request_bytes };
    let request = http::Request::from_parts(parts, body);
    let first_byte = timeouts.first_byte.unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
    let mut conn = Box::pin(conn);
    let mut conn_done = false;
    let response = {
        let send = sender.send_request(request);
        let drive = async {
            let mut send = std::pin::pin!(send);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = send.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
                if !conn_done && let Poll::Ready(r) = conn.as_mut().poll(cx) {
                    conn_done = true;
                    if let Err(e) = r {
                        // The send future reports the cause next.
                        tracing::debug!("connection ended: {e}");
                    }
                    return send.as_mut().poll(cx);
                }
                Poll::Pending
            })
            .await
        };
        stop.bound(drive, first_byte, "waiting for the response").await?
    };
    let response = response.map_err(|e| {
        if sent.load(Ordering::Relaxed) > b.max_request_bytes {
            NetError::Bound(format!(
                "the request body is over [workflow.http].max_request_bytes = {}",
                b.max_request_bytes
            ))
        } else {
            NetError::Failed(format!("the request to {origin} failed: {e}"))
        }
    })?;
    let status = response.status().as_u16();
    let between = timeouts.between_bytes.unwrap_or(DEFAULT_BETWEEN_BYTES_TIMEOUT).max(Duration::from_millis(1));
    let record = RequestRecord {
        kind,
        method,
        origin: origin.to_string(),
        path,
        status: Some(status),
        sent: sent.load(Ordering::Relaxed),
        received: 0,
        started,
        error: None,
        model: None,
        tokens: None,
    };
    let response = response.map(|incoming| GateBody {
        incoming,
        received: 0,
        max: b.max_response_bytes,
        between,
        idle_until: tokio::time::Instant::now() + between,
        nap: Box::pin(tokio::time::sleep(STOP_CHECK)),
        stop,
        net: net.clone(),
        record: Some(record),
        failed: None,
    });
    let io: Pin<Box<dyn Future<Output = Result<(), WasiError>> + Send>> = if conn_done {
        Box::pin(async { Ok(()) })
    } else {
        Box::pin(async move { conn.await.map_err(WasiError::from) })
    };
    Ok((response, io))
}

/// A buffered response: what the `http` helper call and the model call get.
pub struct Buffered {
    /// Status code.
    pub status: u16,
    /// Headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// The body (bounded by `max_response_bytes`), secrets scrubbed.
    pub body: Vec<u8>,
}

/// The guest's headers a redirect to another origin keeps; every other one
/// (credentials among them) goes only to the origin the guest named.
const CROSS_ORIGIN_HEADERS: [http::HeaderName; 4] =
    [http::header::ACCEPT, http::header::ACCEPT_LANGUAGE, http::header::CONTENT_TYPE, http::header::USER_AGENT];

/// What a model call adds to its request's run event: the model and the
/// tokens, read from the response body.
pub type ModelDetails = fn(&[u8]) -> (Option<String>, Option<u64>);

/// A request with a whole body, for [`send_buffered`].
pub struct BufferedRequest {
    /// `GET`, `POST`, ...
    pub method: http::Method,
    /// Absolute URL.
    pub url: String,
    /// Headers the guest set.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// What the caller asked for.
    pub timeouts: Timeouts,
    /// Follow redirects (each a new, checked request).
    pub follow_redirects: bool,
    /// Set for a model call (its event is of kind `llm`).
    pub details: Option<ModelDetails>,
}

/// Send a request with a whole body and read the whole response, following
/// up to [`super::policy::MAX_REDIRECTS`] redirects (each a new, checked
/// request; headers the guest set travel only to the same origin).
pub async fn send_buffered(net: Arc<ExecNet>, req: BufferedRequest) -> Result<Buffered, NetError> {
    use http_body_util::BodyExt;
    let BufferedRequest { method, url, headers, body, timeouts, follow_redirects, details } = req;
    let url = url.as_str();
    let mut uri: http::Uri = url.parse().map_err(|_| NetError::Invalid(format!("'{url}' is not a URL")))?;
    let first_origin = Origin::of_uri(&uri).map_err(NetError::Invalid)?;
    let mut method = method;
    let mut body = Bytes::from(body);
    let mut redirects = 0;
    loop {
        let origin = Origin::of_uri(&uri).map_err(NetError::Invalid)?;
        let mut builder = http::Request::builder().method(method.clone()).uri(uri.clone());
        for (k, v) in &headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| NetError::Invalid(format!("'{k}' is not a header name")))?;
            if origin != first_origin && !CROSS_ORIGIN_HEADERS.contains(&name) {
                continue;
            }
            let value = http::HeaderValue::from_str(v)
                .map_err(|_| NetError::Invalid(format!("the value of header '{k}' is not valid")))?;
            builder = builder.header(name, value);
        }
        let req_body: GateRequestBody =
            http_body_util::Full::new(body.clone()).map_err(|never| match never {}).boxed_unsync();
        let request = builder.body(req_body).map_err(|e| NetError::Invalid(e.to_string()))?;
        let kind = if details.is_some() { "llm" } else { "http" };
        let (response, io) = send(net.clone(), Outgoing { request, timeouts, kind }).await?;
        let driver = tokio::spawn(io);
        let (parts, gbody) = response.into_parts();
        let status = parts.status;
        let location = parts.headers.get(http::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
        if follow_redirects && status.is_redirection() && location.is_some() && redirects < super::policy::MAX_REDIRECTS
        {
            drop(gbody);
            driver.abort();
            let location = location.unwrap_or_default();
            uri = resolve_location(&uri, &location)
                .ok_or_else(|| NetError::Invalid(format!("redirect to '{location}' is not a URL")))?;
            redirects += 1;
            if status == http::StatusCode::SEE_OTHER
                || ((status == http::StatusCode::MOVED_PERMANENTLY || status == http::StatusCode::FOUND)
                    && method == http::Method::POST)
            {
                method = http::Method::GET;
                body = Bytes::new();
            }
            continue;
        }
        let bytes = gbody.collect_with(details).await;
        driver.abort();
        let bytes = bytes?;
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), net.scrub(v))))
            .collect();
        return Ok(Buffered { status: status.as_u16(), headers, body: net.scrub_bytes(bytes) });
    }
}

/// `location` (absolute, or a path) relative to `base`.
fn resolve_location(base: &http::Uri, location: &str) -> Option<http::Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().ok();
    }
    if location.starts_with("//") {
        return format!("{}:{location}", base.scheme_str()?).parse().ok();
    }
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    http::Uri::builder()
        .scheme(base.scheme()?.clone())
        .authority(base.authority()?.clone())
        .path_and_query(path)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tls_configuration_builds_with_the_webpki_roots() {
        let config = super::tls_config();
        assert!(config.alpn_protocols.is_empty(), "HTTP/1.1 only: no ALPN offered");
    }
}
