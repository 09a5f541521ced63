//! `--otlp-endpoint` and `--metrics-listen`, shared by `run`, `resume` and
//! `worker` (docs/observability.md).

use super::CliError;
use anyhow::anyhow;
use graflow_host::telemetry::{Metrics, MetricsServer, Readiness, TraceConfig, Tracing};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct TelemetryArgs {
    /// Export OpenTelemetry traces over OTLP/HTTP (protobuf) to this collector
    /// (`http://HOST:4318`; `/v1/traces` is added). Without it, the standard
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT
    /// variables are read; with neither, nothing is traced.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Serve Prometheus metrics at /metrics, and /healthz and /readyz, on this
    /// address (`IP:PORT` or `PORT`; loopback, 127.0.0.1:9464, when no
    /// address is given).
    #[arg(long, value_name = "ADDR:PORT", value_parser = metrics_addr, num_args = 0..=1,
          default_missing_value = "127.0.0.1:9464")]
    pub metrics_listen: Option<SocketAddr>,
}

/// `--metrics-listen`: `IP:PORT`, or a port on loopback.
fn metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "'{text}' is not IP:PORT or a port, e.g. 127.0.0.1:9464 (this machine) or 0.0.0.0:9464 (every interface)"
        )
    })
}

impl TelemetryArgs {
    /// The span pipeline, if tracing is asked for (flag or environment).
    pub fn tracing(&self) -> Result<Option<Tracing>, CliError> {
        let config =
            TraceConfig::from_env(self.otlp_endpoint.as_deref()).map_err(|e| CliError::bad_input(anyhow!(e)))?;
        let Some(config) = config else { return Ok(None) };
        let tracing = Tracing::start(&config).map_err(|e| CliError::bad_input(anyhow!(e)))?;
        let shown = graflow_host::redacted_url(&config.endpoint);
        tracing::info!("exporting traces to {shown} as service {}", config.service_name);
        Ok(Some(tracing))
    }

    /// The metrics, if `--metrics-listen` asks for them.
    pub fn metrics(&self) -> Option<Arc<Metrics>> {
        self.metrics_listen.map(|_| Metrics::new())
    }

    /// Serve `metrics` (made by [`TelemetryArgs::metrics`]) and `readiness`.
    pub fn serve_metrics(
        &self,
        metrics: Option<&Arc<Metrics>>,
        readiness: Arc<dyn Readiness>,
    ) -> Result<Option<MetricsServer>, CliError> {
        let (Some(addr), Some(metrics)) = (self.metrics_listen, metrics) else { return Ok(None) };
        let server =
            MetricsServer::start(addr, metrics.clone(), readiness).map_err(|e| CliError::bad_input(anyhow!(e)))?;
        let scope =
            if server.addr().ip().is_loopback() { " (loopback only)" } else { " (reachable from other machines)" };
        eprintln!("metrics at http://{}/metrics, health at /healthz and /readyz{scope}", server.addr());
        Ok(Some(server))
    }
}
