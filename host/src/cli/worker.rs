//! `graflow-host worker`: serve task executions of distributed runs.

use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::distributed::{Worker, WorkerOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The Redis server the coordinators use: redis://[user:password@]host:port[/db].
    #[arg(long, value_name = "URL")]
    redis: String,
    /// Task executions run at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// A task held by a worker that stopped heartbeating goes to another worker
    /// after this long (milliseconds). Workers heartbeat every second.
    #[arg(long, default_value_t = 15_000, value_name = "MS")]
    visibility_timeout_ms: u64,
    /// After SIGTERM / Ctrl-C, how long running tasks may take before they are
    /// stopped and handed back to other workers (milliseconds).
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    grace_period_ms: u64,
    /// Honour the host directories and environment variables a workflow grants
    /// its tasks (paths and variables of this machine). Without it, a task that
    /// is granted any fails with a message saying so.
    #[arg(long)]
    allow_grants: bool,
    /// Let tasks reach this origin (`scheme://host[:port]`, `*` and
    /// `*.domain` wildcards, as in a workflow's `http.allow`), when their
    /// workflow grants it too. Repeat for several. Without it, no task run
    /// here reaches the network (docs/network.md).
    #[arg(long, value_name = "PATTERN")]
    allow_outbound: Vec<String>,
    /// An inward network (a CIDR such as 10.0.0.0/8, or an address) that a
    /// name allowed by --allow-outbound may resolve to. Repeat for several.
    #[arg(long, value_name = "CIDR")]
    allow_outbound_network: Vec<String>,
    /// The worker's name in Redis (default: <host>-<pid>-<random>).
    #[arg(long, value_name = "NAME")]
    id: Option<String>,
    /// Do not use the compiled-module cache.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    telemetry: super::telemetry::TelemetryArgs,
}

/// `/readyz` of a worker: its answer is reused for a second, so scrapes
/// cannot make the worker hammer Redis with connections.
struct WorkerReady(Arc<Worker>, std::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>);

impl graflow_host::telemetry::Readiness for WorkerReady {
    fn ready(&self) -> Result<(), String> {
        let mut last = self.1.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < Duration::from_secs(1)
        {
            return answer.clone();
        }
        let answer = self.0.readiness();
        *last = Some((std::time::Instant::now(), answer.clone()));
        answer
    }
}

pub fn worker(args: WorkerArgs) -> Result<ExitStatus, CliError> {
    if args.concurrency == Some(0) {
        return Err(CliError::bad_input(anyhow!("--concurrency must be at least 1")));
    }
    if args.visibility_timeout_ms < 3_000 {
        return Err(CliError::bad_input(anyhow!(
            "--visibility-timeout-ms must be at least 3000: workers heartbeat every second, and a shorter timeout \
             would take tasks from live workers"
        )));
    }
    let mut opts = WorkerOptions::new(args.redis);
    if let Some(n) = args.concurrency {
        opts.concurrency = n;
    }
    opts.visibility_timeout = Duration::from_millis(args.visibility_timeout_ms);
    opts.grace = Duration::from_millis(args.grace_period_ms);
    opts.allow_grants = args.allow_grants;
    for p in &args.allow_outbound {
        let pattern = graflow_host::outbound::OriginPattern::parse(p)
            .map_err(|e| CliError::bad_input(anyhow!("--allow-outbound: {e}")))?;
        opts.allow_outbound.allow.push(pattern);
    }
    for n in &args.allow_outbound_network {
        let net = graflow_host::outbound::Network::parse(n)
            .map_err(|e| CliError::bad_input(anyhow!("--allow-outbound-network: {e}")))?;
        opts.allow_outbound.allow_networks.push(net);
    }
    opts.id = args.id;
    opts.cache_dir = super::cache_dir(args.no_cache);
    let tracing = args.telemetry.tracing()?;
    let metrics = args.telemetry.metrics();
    let mut worker = Worker::connect(opts).map_err(CliError::bad_input)?;
    if let Some(t) = &tracing {
        worker = worker.with_tracing(t);
    }
    if let Some(m) = &metrics {
        worker = worker.with_metrics(m.clone());
    }
    let worker = Arc::new(worker);
    let _metrics_server =
        args.telemetry.serve_metrics(metrics.as_ref(), Arc::new(WorkerReady(worker.clone(), Default::default())))?;
    // The first SIGINT / SIGTERM stops the worker gracefully; a second quits at once.
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(
            signal,
            graflow_host::signals::EXIT_SECOND_SIGNAL,
            flag.clone(),
        )
        .and_then(|_| signal_hook::flag::register(signal, flag.clone()))
        .map_err(|e| CliError::bad_input(anyhow!("cannot install the signal handlers: {e}")))?;
    }
    let stop = worker.stop_flag();
    std::thread::Builder::new()
        .name("graflow-signals".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::SeqCst);
        })
        .map_err(|e| CliError::bad_input(anyhow!("cannot start the signal thread: {e}")))?;
    let stats = worker.run();
    if let Some(t) = &tracing {
        t.shutdown();
    }
    tracing::info!(
        "worker {} stopped: {} tasks completed ({} failed), {} handed back",
        worker.id(),
        stats.completed,
        stats.failed,
        stats.handed_back
    );
    Ok(ExitStatus::Success)
}
