//! Prometheus metrics and health endpoints of a worker (or a run):
//! `--metrics-listen ADDR` serves `/metrics` (the text exposition format),
//! `/healthz` (the process serves) and `/readyz` (it can take work).
//!
//! Invariant: the metric families are fixed at [`Metrics::new`]; the only
//! label is a failure's kind, from a closed set ([`crate::engine::FailureKind`]),
//! so nothing a task does can grow what a scrape returns.

use crate::engine::{Event, EventKind, RunListener};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

type KindLabel = [(&'static str, &'static str); 1];

/// The metrics of one process.
pub struct Metrics {
    registry: Registry,
    started: Counter,
    succeeded: Counter,
    failed: Family<KindLabel, Counter>,
    retried: Counter,
    redelivered: Counter,
    duration: Histogram,
    in_flight: Gauge,
    cache_hits: Counter,
    cache_misses: Counter,
    /// Compilations and cache loads already counted (from the sandbox's
    /// process-wide counts).
    seen_compiles: (AtomicU64, AtomicU64),
    redis_rtt: Gauge<f64, AtomicU64>,
    last_heartbeat: Gauge<f64, AtomicU64>,
    checkpoints: Counter,
}

impl Metrics {
    /// Every family, registered and at zero.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("graflow");
        let started = Counter::default();
        let succeeded = Counter::default();
        let failed = Family::<KindLabel, Counter>::default();
        let retried = Counter::default();
        let redelivered = Counter::default();
        // 1 ms to about 9 hours, doubling.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 25));
        let in_flight = Gauge::default();
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let redis_rtt = Gauge::<f64, AtomicU64>::default();
        let last_heartbeat = Gauge::<f64, AtomicU64>::default();
        let checkpoints = Counter::default();
        registry.register("tasks_started", "Task attempts started", started.clone());
        registry.register("tasks_succeeded", "Task attempts that completed", succeeded.clone());
        registry.register("tasks_failed", "Task attempts that failed, by kind of failure", failed.clone());
        registry.register("tasks_retried", "Failed attempts that are retried", retried.clone());
        registry.register(
            "tasks_redelivered",
            "Tasks taken over from a worker that stopped heartbeating",
            redelivered.clone(),
        );
        registry.register_with_unit(
            "task_duration",
            "Time a task attempt ran",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        registry.register("tasks_in_flight", "Task attempts running now", in_flight.clone());
        registry.register(
            "module_cache_hits",
            "Modules read from the compiled-module cache instead of compiled",
            cache_hits.clone(),
        );
        registry.register("module_cache_misses", "Modules compiled", cache_misses.clone());
        registry.register_with_unit(
            "redis_round_trip",
            "Round-trip time of the last heartbeat to Redis",
            prometheus_client::registry::Unit::Seconds,
            redis_rtt.clone(),
        );
        registry.register(
            "last_heartbeat_timestamp_seconds",
            "Unix time of the last heartbeat Redis acknowledged",
            last_heartbeat.clone(),
        );
        registry.register("checkpoints_written", "Checkpoints written", checkpoints.clone());
        Arc::new(Metrics {
            registry,
            started,
            succeeded,
            failed,
            retried,
            redelivered,
            duration,
            in_flight,
            cache_hits,
            cache_misses,
            seen_compiles: (AtomicU64::new(0), AtomicU64::new(0)),
            redis_rtt,
            last_heartbeat,
            checkpoints,
        })
    }

    /// An attempt started.
    pub fn task_started(&self) {
        self.started.inc();
        self.in_flight.inc();
    }

    /// An attempt completed after `seconds`.
    pub fn task_succeeded(&self, seconds: f64) {
        self.succeeded.inc();
        self.in_flight.dec();
        self.duration.observe(seconds);
    }

    /// An attempt failed (`kind`: [`crate::engine::FailureKind::name`]) after
    /// `seconds`; `retrying`: it is retried.
    pub fn task_failed(&self, kind: &'static str, seconds: f64, retrying: bool) {
        self.failed.get_or_create(&[("kind", kind)]).inc();
        if retrying {
            self.retried.inc();
        }
        self.in_flight.dec();
        self.duration.observe(seconds);
    }

    /// An attempt that retries an earlier failed one ran (a worker's count).
    pub fn task_retried(&self) {
        self.retried.inc();
    }

    /// An attempt was stopped and handed back (not a failure).
    pub fn task_stopped(&self) {
        self.in_flight.dec();
    }

    /// A task was taken over from a silent worker.
    pub fn task_redelivered(&self) {
        self.redelivered.inc();
    }

    /// A heartbeat round trip that took `seconds`, acknowledged now.
    pub fn heartbeat(&self, seconds: f64) {
        self.redis_rtt.set(seconds);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.last_heartbeat.set(now.as_secs_f64());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        // The sandbox counts compilations for the whole process.
        let (hits, misses) = crate::sandbox::compile_counts();
        let seen_hits = self.seen_compiles.0.swap(hits, Ordering::Relaxed);
        let seen_misses = self.seen_compiles.1.swap(misses, Ordering::Relaxed);
        self.cache_hits.inc_by(hits.saturating_sub(seen_hits));
        self.cache_misses.inc_by(misses.saturating_sub(seen_misses));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A run's events counted (`run --metrics-listen`).
impl RunListener for Metrics {
    fn event(&self, event: &Event) {
        match &event.kind {
            EventKind::TaskStarted { .. } => self.task_started(),
            EventKind::TaskFinished { duration_ms, .. } => self.task_succeeded(duration_ms / 1000.0),
            EventKind::TaskFailed { duration_ms, kind, retrying, .. } => {
                self.task_failed(kind, duration_ms / 1000.0, *retrying)
            }
            EventKind::TaskStopped { .. } => self.task_stopped(),
            EventKind::Checkpoint { .. } => {
                self.checkpoints.inc();
            }
            _ => {}
        }
    }
}

/// Whether the process can take work now (`/readyz`).
pub trait Readiness: Send + Sync {
    /// `Err(why)` when it cannot.
    fn ready(&self) -> Result<(), String>;
}

/// Always ready (a run serves its metrics while it runs).
pub struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Connections the metrics endpoint serves at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// The longest one connection is served.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("--metrics-listen {addr}: cannot listen there: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No thread or runtime for it.
    #[error("--metrics-listen: cannot start the endpoint: {0}")]
    Start(std::io::Error),
}

/// The endpoint, serving on its own thread until dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl MetricsServer {
    /// Listen on `addr` (port 0: any) and serve `metrics` and `readiness`.
    pub fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        readiness: Arc<dyn Readiness>,
    ) -> Result<MetricsServer, MetricsError> {
        let std_listener = std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        std_listener.set_nonblocking(true).map_err(MetricsError::Start)?;
        let bound = std_listener.local_addr().map_err(MetricsError::Start)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(MetricsError::Start)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::Builder::new()
            .name("graflow-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else { return };
                    let live = Arc::new(AtomicUsize::new(0));
                    while !stopping.load(Ordering::Relaxed) {
                        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
                        let stream = match accepted {
                            Ok(Ok((stream, _))) => stream,
                            Err(_) => continue,
                            // Out of file descriptors, say: wait before trying again.
                            Ok(Err(_)) => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        };
                        if live.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                            continue;
                        }
                        live.fetch_add(1, Ordering::SeqCst);
                        let (metrics, readiness, live) = (metrics.clone(), readiness.clone(), live.clone());
                        tokio::spawn(async move {
                            let service =
                                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                    let (metrics, readiness) = (metrics.clone(), readiness.clone());
                                    async move {
                                        Ok::<_, std::convert::Infallible>(
                                            answer(req.uri().path(), &metrics, readiness).await,
                                        )
                                    }
                                });
                            let connection = hyper::server::conn::http1::Builder::new()
                                .timer(hyper_util::rt::TokioTimer::new())
                                .header_read_timeout(Duration::from_secs(5))
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                            live.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .map_err(MetricsError::Start)?;
        Ok(MetricsServer { addr: bound, stop })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn answer(
    path: &str,
    metrics: &Metrics,
    readiness: Arc<dyn Readiness>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (200, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.render()),
        "/healthz" => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
        "/readyz" => match tokio::task::spawn_blocking(move || readiness.ready()).await {
            Ok(Ok(())) => (200, "text/plain; charset=utf-8", "ready\n".to_string()),
            Ok(Err(why)) => (503, "text/plain; charset=utf-8", format!("not ready: {why}\n")),
            Err(_) => (503, "text/plain; charset=utf-8", "not ready: the check failed\n".to_string()),
        },
        _ => (404, "text/plain; charset=utf-8", "not found: /metrics, /healthz or /readyz\n".to_string()),
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_and_counts_failures_by_kind() {
        let m = Metrics::new();
        m.task_started();
        m.task_failed("timeout", 0.5, true);
        m.task_started();
        m.task_succeeded(0.25);
        let text = m.render();
        for family in [
            "graflow_tasks_started_total 2",
            "graflow_tasks_succeeded_total 1",
            "graflow_tasks_failed_total{kind=\"timeout\"} 1",
            "graflow_tasks_retried_total 1",
            "graflow_tasks_in_flight 0",
            "graflow_task_duration_seconds_count 2",
            "graflow_module_cache_misses_total",
            "graflow_redis_round_trip_seconds",
        ] {
            assert!(text.contains(family), "{family} missing from:\n{text}");
        }
    }
}
