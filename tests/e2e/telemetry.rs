//! Traces and metrics seen from outside: an OTLP/HTTP receiver started here
//! on loopback (protobuf decoded with the OTLP messages), runs and workers
//! started through the CLI, `/metrics`, `/healthz` and `/readyz` scraped
//! over HTTP.

use crate::distributed::{Redis, WorkerProc, free_port};
use crate::support::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct SpanRec {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
    attrs: BTreeMap<String, String>,
    /// 0 unset, 1 ok, 2 error.
    status: i32,
    message: String,
    links: Vec<(String, String, BTreeMap<String, String>)>,
}

impl SpanRec {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map_or("", String::as_str)
    }
}

fn attrs(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// An OTLP/HTTP traces receiver on a free loopback port.
struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<SpanRec>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let spans: Arc<Mutex<Vec<SpanRec>>> = Arc::default();
        let s = spans.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Collector { port, spans }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spans(&self) -> Vec<SpanRec> {
        self.spans.lock().unwrap().clone()
    }

    /// Wait (up to 30 s) until `done` holds for the spans received.
    fn wait(&self, what: &str, done: impl Fn(&[SpanRec]) -> bool) -> Vec<SpanRec> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "{what}: not received; spans so far: {spans:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Serve one keep-alive connection: `POST /v1/traces` with a protobuf body.
fn serve(conn: TcpStream, spans: &Mutex<Vec<SpanRec>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request_line = line.clone();
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        assert!(request_line.starts_with("POST /v1/traces "), "the exporter sent {request_line}");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP trace export");
        for rs in request.resource_spans {
            let resource = rs.resource.map(|r| attrs(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.lock().unwrap().push(SpanRec {
                        service: service.clone(),
                        name: span.name,
                        trace: hex::encode(&span.trace_id),
                        id: hex::encode(&span.span_id),
                        parent: hex::encode(&span.parent_span_id),
                        attrs: attrs(&span.attributes),
                        status: span.status.as_ref().map_or(0, |s| s.code),
                        message: span.status.map(|s| s.message).unwrap_or_default(),
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id), attrs(&l.attributes)))
                            .collect(),
                    });
                }
            }
        }
        let reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if conn.write_all(reply).is_err() {
            return;
        }
    }
}

fn named<'a>(spans: &'a [SpanRec], name: &str) -> Vec<&'a SpanRec> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[test]
fn a_local_run_exports_its_tree_of_spans_and_puts_traceparent_on_its_requests() {
    let col = Collector::start();
    let srv = crate::netserver::Server::start();
    let p = srv.port;
    let wf = workflow(&format!(
        "[workflow]\nflow = \"a >> (b | c) >> d\"\n[workflow.http]\nallow = [\"http://127.0.0.1:{p}\"]\n{}",
        scripted(&["a", "b", "c", "d"])
    ));
    let input = scripts(json!({"b": [{"op": "http", "url": srv.url("/echo")}], "d": [{"op": "result", "value": 7}]}));
    let out = wf.run(&input, &["--json", "--checkpoint-every", "1", "--otlp-endpoint", &col.url()]);
    assert_eq!(out.ok().json()["result"], 7);
    // The run span is exported last (at the end of the process, which waits for the export).
    let spans = col.wait("the run span", |s| !named(s, "graflow.run").is_empty());
    let run = named(&spans, "graflow.run")[0];
    assert_eq!(run.service, "graflow-host");
    assert_eq!(run.parent, "", "the run span is the root");
    assert_eq!(run.attr("graflow.outcome"), "completed");
    assert_eq!(run.attr("graflow.command"), "run");
    assert_eq!(run.attr("graflow.session_id").len(), 32);
    assert!(spans.iter().all(|s| s.trace == run.trace), "one trace: {spans:#?}");
    let by_id: BTreeMap<&str, &SpanRec> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let parent_of = |s: &SpanRec| by_id.get(s.parent.as_str()).copied();
    // Executions: a, b, c, d, each with one attempt under it.
    let tasks = named(&spans, "graflow.task");
    let mut ids: Vec<&str> = tasks.iter().map(|t| t.attr("graflow.task.id")).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    for t in &tasks {
        assert_eq!(t.attr("graflow.module.name"), "kit");
        assert_eq!(t.attr("graflow.module.sha256").len(), 64);
        assert_eq!(t.attr("graflow.outcome"), "completed");
        assert_eq!(t.attr("graflow.cycle"), "1");
        let attempts: Vec<_> = spans.iter().filter(|s| s.name == "graflow.attempt" && s.parent == t.id).collect();
        assert_eq!(attempts.len(), 1, "{}", t.attr("graflow.task.id"));
        assert_eq!(attempts[0].attr("graflow.attempt"), "0");
    }
    // The group's members run in its branches; a and d under the run.
    let group = named(&spans, "graflow.group")[0];
    assert_eq!(group.parent, run.id);
    for t in &tasks {
        let parent = parent_of(t).expect("a parent");
        match t.attr("graflow.task.id") {
            "a" | "d" => assert_eq!(parent.name, "graflow.run"),
            member => {
                assert_eq!(parent.name, "graflow.branch");
                assert_eq!(parent.attr("graflow.branch.member"), member);
                assert_eq!(parent.parent, group.id);
            }
        }
    }
    // Checkpoints under the run, with their size.
    let checkpoints = named(&spans, "graflow.checkpoint");
    assert!(!checkpoints.is_empty());
    assert!(checkpoints.iter().all(|c| c.parent == run.id && c.attr("graflow.checkpoint.bytes") != "0"));
    // b's request: a client span under b's attempt, and the header it sent names that attempt.
    let get = named(&spans, "GET")[0];
    let b_attempt = parent_of(get).expect("the request's parent");
    assert_eq!(b_attempt.name, "graflow.attempt");
    assert_eq!(b_attempt.attr("graflow.task.id"), "b");
    assert_eq!(get.attr("http.response.status_code"), "200");
    assert_eq!(get.attr("url.path"), "/echo");
    let seen = srv.seen();
    assert_eq!(seen[0].headers["traceparent"], format!("00-{}-{}-01", run.trace, b_attempt.id));
}

#[test]
fn a_failed_attempt_carries_its_error_and_the_bound_and_a_resume_links_to_the_run_it_resumes() {
    let col = Collector::start();
    let wf = workflow(&format!(
        "[workflow]\nflow = \"a >> slow\"\n{}[tasks.slow]\nexport = \"script\"\nlimits = {{ timeout_ms = 300 }}\n\
         max_retries = 1\nbackoff = {{ initial_ms = 1 }}\n",
        scripted(&["a"])
    ));
    let input = scripts(json!({"slow": [{"op": "sleep", "ms": 5000}]}));
    // First: stop after one step, with a checkpoint.
    let out = wf.run(&input, &["--json", "--max-steps", "1", "--otlp-endpoint", &col.url()]);
    assert_eq!(out.code, 3, "{out:?}");
    let first = col.wait("the first run span", |s| !named(s, "graflow.run").is_empty());
    let first_run = named(&first, "graflow.run")[0].clone();
    assert_eq!(first_run.attr("graflow.outcome"), "max_steps");
    let checkpoint = out.json()["checkpoint"].as_str().unwrap().to_string();
    // Then resume: `slow` times out twice; the run fails.
    let out = cli(wf.dir.path(), &["resume", &checkpoint, "--json", "--otlp-endpoint", &col.url()]);
    assert_eq!(out.code, 1, "{out:?}");
    let spans = col.wait("the resumed run span", |s| named(s, "graflow.run").len() == 2);
    let run = named(&spans, "graflow.run").into_iter().find(|r| r.attr("graflow.command") == "resume").unwrap();
    assert_ne!(run.trace, first_run.trace, "a resume is a trace of its own");
    assert_eq!(run.links.len(), 1, "{run:#?}");
    let (trace, span, link_attrs) = &run.links[0];
    assert_eq!((trace, span), (&first_run.trace, &first_run.id));
    let cp_id = std::path::Path::new(&checkpoint).file_name().unwrap().to_str().unwrap();
    assert_eq!(link_attrs["graflow.checkpoint.id"], cp_id);
    assert_eq!(run.attr("graflow.resumed_from"), cp_id);
    assert_eq!(run.attr("graflow.outcome"), "failed");
    assert_eq!(run.status, 2);
    let attempts: Vec<_> = named(&spans, "graflow.attempt").into_iter().filter(|a| a.trace == run.trace).collect();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    for a in &attempts {
        assert_eq!(a.attr("graflow.failure.kind"), "timeout");
        assert_eq!(a.attr("graflow.failure.bound"), "limits.timeout_ms");
        assert_eq!(a.status, 2);
        assert!(a.message.contains("timed out"), "{}", a.message);
    }
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.attr("graflow.outcome")).collect();
    assert!(outcomes.contains(&"retrying") && outcomes.contains(&"failed"), "{outcomes:?}");
    let task = named(&spans, "graflow.task").into_iter().find(|t| t.trace == run.trace).unwrap();
    assert_eq!(task.attr("graflow.outcome"), "failed");
    assert!(attempts.iter().all(|a| a.parent == task.id));
}

#[test]
fn an_unreachable_or_silent_collector_never_fails_or_holds_a_run() {
    // One port nobody listens on; one that accepts and never answers.
    let refused = free_port();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for c in silent.incoming().flatten() {
            h.lock().unwrap().push(c);
        }
    });
    let names: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    let flow = names.join(" >> ");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let wf = workflow(&format!("[workflow]\nflow = \"{flow}\"\n{}", scripted(&refs)));
    let input = scripts(json!({"t29": [{"op": "result", "value": "end"}]}));
    for port in [refused, silent_port] {
        let started = Instant::now();
        let out = command(wf.dir.path())
            .args(["run", "workflow.toml", "--json", "--input", &input.to_string()])
            .args(["--otlp-endpoint", &format!("http://127.0.0.1:{port}")])
            // A queue of 8 spans: most are dropped, none is waited for.
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "8")
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("\"result\":\"end\""), "{stdout}");
        // The process waits for its spans at most the shutdown wait (3 s),
        // not the 60 s export timeout the collector would otherwise hold it.
        assert!(elapsed < Duration::from_secs(30), "port {port}: the run took {elapsed:?}");
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// The value of `metric` (with its labels, as written) in an exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn wait_metric(port: u16, name: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = http_get(port, "/metrics");
        if metric(&text, name) == Some(want) {
            return text;
        }
        assert!(Instant::now() < deadline, "{name} never reached {want}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_distributed_run_is_one_trace_and_the_workers_metrics_count_its_tasks() {
    let Some(mut redis) = Redis::start() else { return };
    let col = Collector::start();
    let srv = crate::netserver::Server::start();
    let origin = format!("http://127.0.0.1:{}", srv.port);
    let metrics_port = free_port();
    let other_port = free_port();
    let spawn = |extra: Vec<String>| {
        let child = command(&std::env::temp_dir())
            .args(["worker", "--redis", &redis.url(), "--concurrency", "1", "--visibility-timeout-ms", "3000"])
            .args(["--otlp-endpoint", &col.url(), "--allow-outbound", &origin])
            .args(extra)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        WorkerProc { child }
    };
    let w1 = spawn(vec!["--metrics-listen".into(), format!("127.0.0.1:{metrics_port}")]);
    let w2 = spawn(vec!["--metrics-listen".into(), other_port.to_string()]);
    let (status, body) = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = http_get(metrics_port, "/readyz");
            if got.0 == 200 || Instant::now() > deadline {
                break got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!((status, body.trim()), (200, "ready"));
    assert_eq!(http_get(metrics_port, "/healthz").0, 200);
    let wf = workflow(&format!(
        "[workflow]\nflow = \"(b1 | b2 | b3 | b4) >> last\"\n[workflow.http]\nallow = [\"{origin}\"]\n\
         [groups.g]\nmembers = [\"b1\", \"b2\", \"b3\", \"b4\"]\npolicy = \"best_effort\"\n{}",
        scripted(&["b1", "b2", "b3", "b4", "last"])
    ));
    let input = scripts(json!({
        "b1": [{"op": "sleep", "ms": 1500}], "b2": [{"op": "sleep", "ms": 1500}],
        "b3": [{"op": "fail", "message": "b3 says no"}],
        "b4": [{"op": "sleep", "ms": 1500}, {"op": "http", "url": srv.url("/echo")}],
        "last": [{"op": "result", "value": "done"}],
    }));
    let mut run = command(wf.dir.path())
        .args(["run", "workflow.toml", "--json", "--input", &input.to_string(), "--redis", &redis.url()])
        .args(["--otlp-endpoint", &col.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // During the run: a task in flight on the worker that serves metrics.
    wait_metric(metrics_port, "graflow_tasks_in_flight", 1.0);
    let mut stdout = String::new();
    run.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(run.wait().unwrap().success(), "{stdout}");
    assert!(stdout.contains("\"result\":\"done\""), "{stdout}");
    // After: the two workers' counters add up to the run's events: five
    // executions, one failed (b3), nothing retried or in flight.
    let texts = [metrics_port, other_port].map(|p| wait_metric(p, "graflow_tasks_in_flight", 0.0));
    let sum = |name: &str| texts.iter().map(|t| metric(t, name).unwrap_or(0.0)).sum::<f64>();
    assert_eq!(sum("graflow_tasks_started_total"), 5.0, "{texts:?}");
    assert_eq!(sum("graflow_tasks_succeeded_total"), 4.0, "{texts:?}");
    assert_eq!(sum("graflow_tasks_failed_total{kind=\"failed\"}"), 1.0, "{texts:?}");
    assert_eq!(sum("graflow_tasks_retried_total"), 0.0, "{texts:?}");
    assert_eq!(sum("graflow_task_duration_seconds_count"), 5.0, "{texts:?}");
    for t in &texts {
        assert!(metric(t, "graflow_tasks_started_total").unwrap() >= 1.0, "each worker ran a task: {t}");
        assert!(metric(t, "graflow_last_heartbeat_timestamp_seconds").unwrap() > 1.7e9, "{t}");
        assert!(metric(t, "graflow_redis_round_trip_seconds").unwrap() > 0.0, "{t}");
        let ready = metric(t, "graflow_module_cache_hits_total").unwrap()
            + metric(t, "graflow_module_cache_misses_total").unwrap();
        assert!(ready >= 1.0, "the module was loaded: {t}");
    }
    // One trace: every worker span is a child of one of the coordinator's attempt spans.
    let spans = col.wait("the run span and five worker spans", |s| {
        !named(s, "graflow.run").is_empty() && named(s, "graflow.worker.execute").len() == 5
    });
    let run_span = named(&spans, "graflow.run")[0];
    let attempts: BTreeMap<&str, &SpanRec> =
        named(&spans, "graflow.attempt").into_iter().map(|a| (a.id.as_str(), a)).collect();
    let mut workers = std::collections::BTreeSet::new();
    for w in named(&spans, "graflow.worker.execute") {
        assert_eq!(w.trace, run_span.trace);
        let parent = attempts.get(w.parent.as_str()).unwrap_or_else(|| panic!("{w:#?} has no attempt parent"));
        assert_eq!(parent.attr("graflow.task.id"), w.attr("graflow.task.id"));
        assert_eq!(w.attr("graflow.module.sha256").len(), 64);
        workers.insert(w.attr("graflow.worker").to_string());
        if w.attr("graflow.task.id") == "b3" {
            assert_eq!(w.status, 2);
            assert_eq!(w.attr("graflow.failure.kind"), "failed");
        }
    }
    assert_eq!(workers.len(), 2, "both workers ran tasks: {workers:?}");
    // b4's request, sent from a worker: its traceparent names the worker's
    // execution span, and its client span is that span's child.
    let b4 = named(&spans, "graflow.worker.execute").into_iter().find(|w| w.attr("graflow.task.id") == "b4").unwrap();
    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["traceparent"], format!("00-{}-{}-01", b4.trace, b4.id));
    let get = named(&spans, "GET");
    assert_eq!(get.len(), 1, "{get:#?}");
    assert_eq!((get[0].parent.as_str(), get[0].attr("http.response.status_code")), (b4.id.as_str(), "200"));
    // Redis gone: not ready, saying why; still healthy.
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let got = http_get(metrics_port, "/readyz");
        if got.0 == 503 || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("does not answer"), "{body}");
    assert_eq!(http_get(metrics_port, "/healthz").0, 200);
    drop((w1, w2));
}

#[test]
fn a_runs_own_metrics_endpoint_counts_its_executions() {
    let port = free_port();
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b\"\n{}", scripted(&["a", "b"])));
    let input = scripts(json!({"b": [{"op": "sleep", "ms": 60000}]}));
    let mut run = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", &input.to_string(), "--metrics-listen", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let text = wait_metric(port, "graflow_tasks_in_flight", 1.0);
    assert_eq!(metric(&text, "graflow_tasks_started_total"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "graflow_tasks_succeeded_total"), Some(1.0), "{text}");
    assert_eq!(http_get(port, "/readyz").0, 200);
    assert_eq!(http_get(port, "/nothing").0, 404);
    let _ = run.kill();
    let _ = run.wait();
}

#[test]
fn a_collector_over_https_or_a_bad_url_is_refused_naming_where_it_came_from() {
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let out = wf.run(&json!({}), &["--otlp-endpoint", "https://ingest:t0ken-s3cret@collector.example:4318"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--otlp-endpoint") && out.stderr.contains("plain http"), "{}", out.stderr);
    assert!(!out.stderr.contains("t0ken-s3cret"), "the password is not printed: {}", out.stderr);
    assert!(out.stderr.contains("ingest:***@collector.example"), "{}", out.stderr);
    let out = command(wf.dir.path())
        .args(["run", "workflow.toml"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
}
