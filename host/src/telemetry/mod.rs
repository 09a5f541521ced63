//! What an operator sees of runs and workers from outside: OpenTelemetry
//! traces over OTLP ([`spans`]) and Prometheus metrics with health endpoints
//! ([`metrics`]).
//!
//! Invariant: with no endpoint configured and no `--metrics-listen`, nothing
//! here is built: no exporter, no thread, no listener in the run's event
//! stream ([`TraceConfig::from_env`] answers `None`), so a run costs what it
//! cost before this module existed.
//!
//! Traces are made from the run's events ([`crate::engine::Event`]), the one
//! stream the progress display and the journal read too, rather than from
//! `tracing` spans: the events already carry the structure (executions,
//! attempts, groups, checkpoints, requests) and exist on every path, local
//! and distributed, while the host's `tracing` calls are log lines.

pub mod metrics;
pub mod spans;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

pub use crate::engine::TraceParent;
use std::time::Duration;

pub use metrics::{Metrics, MetricsServer, Readiness};
pub use spans::{RunTracer, WorkerTracer};

/// The trace context of an OpenTelemetry span context (`None` if it is not
/// valid).
pub fn traceparent_of(sc: &SpanContext) -> Option<TraceParent> {
    sc.is_valid().then(|| TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        sampled: sc.is_sampled(),
    })
}

/// `tp` as a remote OpenTelemetry span context.
pub fn span_context(tp: &TraceParent) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.span_id),
        if tp.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() },
        true,
        TraceState::default(),
    )
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// The OTLP/HTTP traces URL (`http://.../v1/traces`).
    pub endpoint: String,
    /// `service.name`: `OTEL_SERVICE_NAME`, else `graflow-host`.
    pub service_name: String,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, ms;
    /// default 10 s).
    pub export_timeout: Duration,
}

/// The longest the end of a process waits for its last spans to be sent.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// An environment variable, if set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl TraceConfig {
    /// The configuration `--otlp-endpoint URL` (or, without it, the
    /// standard `OTEL_*` variables) asks for; `None` when tracing is off:
    /// no endpoint anywhere, `OTEL_SDK_DISABLED=true`, or
    /// `OTEL_TRACES_EXPORTER=none`. An endpoint that is not an `http://`
    /// URL is an error naming where it came from.
    pub fn from_env(flag: Option<&str>) -> Result<Option<TraceConfig>, TraceSetupError> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if flag.is_none() && var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
            return Ok(None);
        }
        let (endpoint, source) =
            match (flag, var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), var("OTEL_EXPORTER_OTLP_ENDPOINT")) {
                (Some(url), _, _) => (traces_url(url), "--otlp-endpoint"),
                (None, Some(url), _) => (url.trim().to_string(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                (None, None, Some(url)) => (traces_url(&url), "OTEL_EXPORTER_OTLP_ENDPOINT"),
                (None, None, None) => return Ok(None),
            };
        match endpoint.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {}
            Ok(uri) if uri.scheme_str() == Some("https") => {
                return Err(TraceSetupError(format!(
                    "{source} = {}: this build exports over plain http only; send to an OpenTelemetry \
                     collector on this machine or network (http://HOST:4318), which can forward over TLS",
                    crate::redacted_url(&endpoint)
                )));
            }
            _ => {
                return Err(TraceSetupError(format!(
                    "{source} = '{}' is not an http:// URL (e.g. http://127.0.0.1:4318)",
                    crate::redacted_url(&endpoint)
                )));
            }
        }
        let export_timeout = var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis);
        Ok(Some(TraceConfig {
            endpoint,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "graflow-host".into()),
            export_timeout,
        }))
    }
}

/// `--otlp-endpoint`: a collector's base URL (`http://host:4318`) gets the
/// traces path appended, as `OTEL_EXPORTER_OTLP_ENDPOINT` does; a URL with a
/// path is used as it is.
pub fn traces_url(url: &str) -> String {
    let url = url.trim();
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.split_once('/') {
        None => format!("{url}/v1/traces"),
        Some((_, "")) => format!("{url}v1/traces"),
        Some(_) => url.to_string(),
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces: {0}")]
pub struct TraceSetupError(String);

/// The span pipeline of one process: a batch processor (its own thread, a
/// bounded queue of `OTEL_BSP_MAX_QUEUE_SIZE` spans, 2,048 by default; a
/// span that finds it full is dropped, never waited for) and the OTLP/HTTP
/// exporter.
pub struct Tracing {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::SdkTracer,
}

impl Tracing {
    /// Build the pipeline (no connection is made until spans are sent).
    pub fn start(config: &TraceConfig) -> Result<Tracing, TraceSetupError> {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(config.export_timeout)
            .with_endpoint(config.endpoint.clone());
        // reqwest's blocking client, with the export timeout as its own (a
        // collector that accepts and never answers holds one export at most
        // that long).
        // reqwest is built with rustls and no provider of its own (for the
        // bucket client): its builder needs the process's provider.
        crate::storage::bucket::install_crypto_provider();
        let client = reqwest::blocking::Client::builder()
            .timeout(config.export_timeout)
            .connect_timeout(config.export_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| TraceSetupError(crate::error_chain(&e)))?;
        builder = builder.with_http_client(client);
        let exporter = builder.build().map_err(|e| TraceSetupError(e.to_string()))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("graflow-host");
        Ok(Tracing { provider, tracer })
    }

    /// The tracer spans are made with.
    pub fn tracer(&self) -> &opentelemetry_sdk::trace::SdkTracer {
        &self.tracer
    }

    /// Send what is queued and stop, waiting at most [`SHUTDOWN_WAIT`]
    /// (an unreachable collector loses the spans, never holds the exit).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_WAIT) {
            tracing::warn!("traces not all sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_malformed_values() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).expect("valid");
        assert_eq!(tp.header(), text);
        assert!(tp.sampled);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_collector_base_url_gets_the_traces_path() {
        assert_eq!(traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/custom/v1/traces"), "http://c:4318/custom/v1/traces");
    }
}
