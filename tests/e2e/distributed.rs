//! Distributed runs against a real `redis-server` (started here on a free
//! loopback port) and real `graflow-host worker` processes: the same results
//! as a local run, nothing lost when a worker or the coordinator is killed,
//! no collision between runs, and clear errors when Redis is missing or lost.
//!
//! Skipped, with a message, when `redis-server` is not installed, unless
//! `GRAFLOW_REQUIRE_REDIS=1` (set by `.ci/run`).

use crate::support::*;
use graflow_host::Json;
use graflow_host::channel::Channel;
use graflow_host::distributed::RedisOptions;
use graflow_host::engine::{Event, EventKind, Listener, RunListener, RunStatus};
use graflow_host::session::{RunOptions, Session};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, stopped when dropped.
pub(crate) struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Redis {
    /// A new server, or `None` (with a message) when redis-server is missing.
    pub(crate) fn start() -> Option<Redis> {
        let installed = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
        if !installed {
            skipped(
                "GRAFLOW_REQUIRE_REDIS",
                "redis-server is not installed (apt-get install redis-server); distributed test not run",
            );
            return None;
        }
        Some(Redis::on_port(free_port()))
    }

    fn on_port(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(port) {
            assert!(Instant::now() < deadline, "redis-server did not answer on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port, _dir: dir }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `graflow-host worker` process, killed (SIGKILL) when dropped.
pub(crate) struct WorkerProc {
    pub(crate) child: Child,
}

impl WorkerProc {
    fn start(redis: &Redis, concurrency: u32) -> WorkerProc {
        WorkerProc::with_args(redis, concurrency, &[])
    }

    fn with_args(redis: &Redis, concurrency: u32, extra: &[&str]) -> WorkerProc {
        let dir = std::env::temp_dir();
        let child = command(&dir)
            .args(["worker", "--redis", &redis.url(), "--concurrency", &concurrency.to_string()])
            .args(["--visibility-timeout-ms", "3000"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        WorkerProc { child }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr(mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Run an example through the CLI, locally or with `--redis`.
fn example_run(name: &str, input: &str, redis: Option<&str>) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let wf = example(name);
    let mut args = vec!["run", wf.to_str().unwrap(), "--input", input];
    if let Some(url) = redis {
        args.extend(["--redis", url]);
    }
    cli(dir.path(), &args)
}

#[test]
fn every_example_gives_the_same_result_with_two_workers() {
    let Some(redis) = Redis::start() else { return };
    let _w = (WorkerProc::start(&redis, 2), WorkerProc::start(&redis, 2));
    let cases = [
        ("hello", r#"{"name":"graflow"}"#),
        ("etl", r#"{"day":"2026-11-27"}"#),
        ("shared-state", r#"{"text":"a bee and a cat"}"#),
        ("agent-loop", "{}"),
        ("optimizer", r#"{"target":2}"#),
        ("router", r#"{"kind":"refund","amount":12}"#),
        ("router", r#"{"kind":"purchase","amount":-5}"#),
        ("flaky", "{}"),
        ("best-effort", "{}"),
        ("order", r#"{"order_id":"A-1"}"#),
        ("mixed", r#"{"readings":[3,1,4,1,5,9,2,6]}"#),
    ];
    for (name, input) in cases {
        let local = example_run(name, input, None);
        let remote = example_run(name, input, Some(&redis.url()));
        assert_eq!(local.code, 0, "{name} locally: {}", local.stderr);
        assert_eq!(remote.code, 0, "{name} with --redis: {}", remote.stderr);
        assert_eq!(local.json(), remote.json(), "{name}: the distributed run gives another result");
    }
}

/// Counts finished executions per id, and all of them.
#[derive(Default)]
struct Finished(Mutex<BTreeMap<String, u32>>);

impl RunListener for Finished {
    fn event(&self, event: &Event) {
        if let EventKind::TaskFinished { task_id, .. } = &event.kind {
            *self.0.lock().unwrap().entry(task_id.clone()).or_default() += 1;
        }
    }
}

impl Finished {
    fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }
}

/// `start >> (66 members) >> mid >> (66) >> (65) >> end`: 200 tasks. Every
/// member sleeps, counts itself into `total` and sets its own key.
fn wide_workflow(sleep_ms: u64) -> (Wf, Value) {
    let group = |p: &str, n: usize| (1..=n).map(|i| format!("{p}_{i}")).collect::<Vec<_>>();
    let (a, b, c) = (group("a", 66), group("b", 66), group("c", 65));
    let flow = format!("start >> ({}) >> mid >> ({}) >> ({}) >> end", a.join(" | "), b.join(" | "), c.join(" | "));
    let mut names: Vec<&str> = vec!["start", "mid", "end"];
    names.extend(a.iter().chain(&b).chain(&c).map(String::as_str));
    let wf = workflow(&format!("[workflow]\nflow = \"{flow}\"\nparallelism = 6\n{}", scripted(&names)));
    let mut scripts = serde_json::Map::new();
    for m in a.iter().chain(&b).chain(&c) {
        scripts.insert(
            m.clone(),
            json!([{"op": "sleep", "ms": sleep_ms}, {"op": "add", "key": "total", "amount": 1}, {"op": "set", "key": m, "value": m}]),
        );
    }
    scripts.insert("end".into(), json!([{"op": "return", "key": "total"}]));
    (wf, json!({ "scripts": Value::Object(scripts) }))
}

fn redis_options(redis: &Redis) -> RunOptions {
    RunOptions { redis: Some(RedisOptions::new(redis.url())), ..lib_options() }
}

#[test]
fn a_worker_killed_mid_run_loses_nothing_and_commits_each_task_once() {
    let Some(redis) = Redis::start() else { return };
    let (wf, input) = wide_workflow(40);
    let local = run_lib(&wf, input.clone());
    assert!(local.result.is_ok(), "{:?}", local.result);

    let mut victim = WorkerProc::start(&redis, 2);
    let _others = (WorkerProc::start(&redis, 2), WorkerProc::start(&redis, 2));
    let finished = Arc::new(Finished::default());
    let opts = RunOptions {
        session_id: Some("e2e".into()),
        listener: Listener(Some(finished.clone())),
        ..redis_options(&redis)
    };
    let mut session = Session::start(&wf.path, Json::from(input), opts).unwrap_or_else(|e| panic!("{e:#}"));
    let counter = finished.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while counter.total() < 40 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        victim.kill9();
    });
    let report = session.run().unwrap_or_else(|e| panic!("{e:#}"));
    killer.join().unwrap();
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.steps, local.state.steps);
    let counts = finished.0.lock().unwrap().clone();
    assert_eq!(counts.len(), 200, "every task finished");
    assert!(counts.values().all(|n| *n == 1), "a task was committed twice: {counts:?}");
    assert_eq!(session.channel().get("total").map(|v| v.as_str().to_string()), Some("197".to_string()));
    assert_eq!(session.channel().snapshot(), local.channel.snapshot(), "the channel equals a local run's");
}

#[test]
fn a_coordinator_killed_mid_run_resumes_with_the_same_result() {
    let Some(redis) = Redis::start() else { return };
    let _w = (WorkerProc::start(&redis, 3), WorkerProc::start(&redis, 3));
    let (wf, input) = wide_workflow(30);
    let input = input.to_string();
    let url = redis.url();
    let mut child = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", &input, "--redis", &url, "--checkpoint-every", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = graflow_host::checkpoint::list(&wf.checkpoints()).map(|l| l.len()).unwrap_or(0);
        if written >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoints were written");
        if child.try_wait().unwrap().is_some() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the run ended before it could be killed: {err}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = cli(wf.dir.path(), &["resume", "--latest", "--redis", &url, "--json"]);
    let v = resumed.json();
    assert_eq!(v["status"], "completed", "{}", resumed.stderr);
    assert_eq!(v["result"], json!(197), "every member counted once across the crash");
    assert_eq!(v["steps"], 203, "200 tasks and 3 group joins");
}

#[test]
fn two_runs_on_one_redis_do_not_collide() {
    let Some(redis) = Redis::start() else { return };
    let _w = (WorkerProc::start(&redis, 2), WorkerProc::start(&redis, 2));
    // The same workflow (the same group names, task ids and keys) twice at
    // once, with different inputs.
    let wf = workflow(&format!(
        "[workflow]\nflow = \"first >> (left | right) >> last\"\n{}",
        scripted(&["first", "left", "right", "last"])
    ));
    let input = |tag: &str| {
        scripts(json!({
            "first": [{"op": "set", "key": "tag", "value": tag}],
            "left": [{"op": "sleep", "ms": 50}, {"op": "copy", "from": "tag", "to": "left_tag"}],
            "right": [{"op": "sleep", "ms": 50}, {"op": "copy", "from": "tag", "to": "right_tag"}],
            "last": [{"op": "return", "key": "right_tag"}],
        }))
    };
    let runs: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|tag| {
            let (path, opts, input) = (wf.path.clone(), redis_options(&redis), input(tag));
            std::thread::spawn(move || {
                let mut s = Session::start(&path, Json::from(input), opts).unwrap();
                let report = s.run().unwrap();
                (
                    report.result.map(|r| r.to_value().unwrap()),
                    s.channel().get("left_tag").map(|v| v.to_value().unwrap()),
                )
            })
        })
        .collect();
    for (tag, run) in ["one", "two"].into_iter().zip(runs) {
        let (result, left) = run.join().unwrap();
        assert_eq!(result, Some(json!(tag)));
        assert_eq!(left, Some(json!(tag)));
    }
}

#[test]
fn redis_unreachable_names_the_url() {
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = wf.run(&json!({}), &["--redis", &url]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("cannot reach Redis at {url}")), "{}", out.stderr);
    let bad = wf.run(&json!({}), &["--redis", "http://example"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("is not a Redis URL"), "{}", bad.stderr);
    let worker = cli(Path::new("."), &["worker", "--redis", &url]);
    assert_eq!(worker.code, 2);
    assert!(worker.stderr.contains(&format!("cannot reach Redis at {url}")), "{}", worker.stderr);
}

#[test]
fn redis_stopped_mid_run_stops_with_a_checkpoint_that_resumes() {
    let Some(mut redis) = Redis::start() else { return };
    let port = redis.port;
    let worker = WorkerProc::start(&redis, 2);
    let names: Vec<String> = (1..=30).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let wf = workflow(&format!("[workflow]\nflow = \"{}\"\n{}", refs.join(" >> "), scripted(&refs)));
    let mut s = serde_json::Map::new();
    for n in &names {
        s.insert(n.clone(), json!([{"op": "sleep", "ms": 50}, {"op": "add", "key": "total", "amount": 1}]));
    }
    s.insert("s30".into(), json!([{"op": "add", "key": "total", "amount": 1}, {"op": "return", "key": "total"}]));
    let input = json!({"scripts": Value::Object(s)}).to_string();
    let url = redis.url();
    let child = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", &input, "--redis", &url, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    redis.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains(&format!("lost the connection to Redis at {url}")), "{stderr}");
    assert!(stderr.contains("resume with: graflow-host resume"), "{stderr}");
    drop(worker);
    // Redis back (empty), a worker back: the checkpoint resumes to the end.
    let redis = Redis::on_port(port);
    let _w = WorkerProc::start(&redis, 2);
    let resumed = cli(wf.dir.path(), &["resume", "--latest", "--redis", &url, "--json"]);
    let v = resumed.json();
    assert_eq!(v["status"], "completed", "{}", resumed.stderr);
    assert_eq!(v["result"], json!(30));
}

#[test]
fn no_worker_alive_stops_the_run_with_a_checkpoint() {
    let Some(redis) = Redis::start() else { return };
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b\"\n{}", scripted(&["a", "b"])));
    let out = wf.run(&json!({}), &["--redis", &redis.url(), "--worker-timeout", "3", "--json"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("no graflow-host worker is alive"), "the wait is announced: {}", out.stderr);
    assert!(out.stderr.contains("no graflow-host worker was alive"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("graflow-host worker --redis {}", redis.url())), "{}", out.stderr);
    assert_eq!(out.json()["status"], "interrupted");
    // A worker, then the resume: the run completes.
    let _w = WorkerProc::start(&redis, 1);
    let resumed = cli(wf.dir.path(), &["resume", "--latest", "--redis", &redis.url(), "--json"]);
    assert_eq!(resumed.json()["status"], "completed", "{}", resumed.stderr);
}

#[test]
fn a_worker_that_cannot_load_a_module_fails_the_task_and_stays_up() {
    let Some(redis) = Redis::start() else { return };
    let worker = WorkerProc::start(&redis, 1);
    // Someone put other bytes of the right size under the module's key: the
    // worker verifies the digest and refuses them.
    let bytes = std::fs::read(testkit()).unwrap();
    let digest = graflow_host::module_store::ModuleBytes::new(bytes.clone()).digest();
    let mut con = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    let key = format!("graflow-host:module:{digest}");
    let garbage = vec![b'x'; bytes.len()];
    let mut cmd = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n", key.len(), garbage.len()).into_bytes();
    cmd.extend_from_slice(&garbage);
    cmd.extend_from_slice(b"\r\n");
    con.write_all(&cmd).unwrap();
    let mut ok = [0u8; 5];
    con.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let out = wf.run(&json!({}), &["--redis", &redis.url()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot load module 'kit'"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("not {digest}")), "{}", out.stderr);
    // The same worker runs the next workflow.
    let hello = example_run("hello", r#"{"name":"again"}"#, Some(&redis.url()));
    assert_eq!(hello.code, 0, "{}", hello.stderr);
    assert_eq!(hello.json()["task"], "c");
    drop(worker);
}

#[test]
fn a_stopped_worker_hands_its_task_back() {
    let Some(redis) = Redis::start() else { return };
    // The task tells a local server it started (an event, not a guess at how
    // long a loaded machine takes to get there), then sleeps.
    let started = crate::netserver::Server::start();
    let origin = format!("http://127.0.0.1:{}", started.port);
    let first = WorkerProc::with_args(&redis, 1, &["--grace-period-ms", "200", "--allow-outbound", &origin]);
    let wf = workflow(&format!(
        "[workflow]\nflow = \"slow\"\n[workflow.http]\nallow = [\"{origin}\"]\n{}",
        scripted(&["slow"])
    ));
    let input = scripts(json!({"slow": [
        {"op": "http", "url": started.url("/echo")},
        {"op": "sleep", "ms": 1500},
        {"op": "result", "value": "done"}
    ]}))
    .to_string();
    let url = redis.url();
    let run = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", &input, "--redis", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    started.wait_for("/echo");
    let status = Command::new("kill").args(["-TERM", &first.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let second = WorkerProc::with_args(&redis, 1, &["--allow-outbound", &origin]);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"done\"");
    let mut first = first;
    let code = first.child.wait().unwrap().code();
    assert_eq!(code, Some(0), "the stopped worker exits cleanly");
    assert!(first.stderr().contains("handing task slow"), "the first worker handed its task back");
    drop(second);
}

#[test]
fn a_question_asked_on_a_worker_is_answered_through_redis() {
    let Some(redis) = Redis::start() else { return };
    let _w = WorkerProc::start(&redis, 2);
    let wf = workflow(&format!("[workflow]\nflow = \"deploy\"\n{}", scripted(&["deploy"])));
    // Answered while the task waits on the worker: the run goes on.
    let input = scripts(json!({"deploy": [{"op": "ask", "kind": "approval", "prompt": "ship?", "timeout": 60}]}));
    let url = redis.url();
    let answerer = std::thread::spawn(move || {
        let desk = graflow_host::distributed::RedisDesk::connect(&url).unwrap();
        loop {
            if let Some(r) = desk.pending().unwrap().into_iter().next() {
                desk.answer_request(&r.id, &Json::from(json!({"approved": true, "reason": "ok"})), "test").unwrap();
                return r.prompt;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut s = Session::start(&wf.path, Json::from(input), redis_options(&redis)).unwrap();
    let report = s.run().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(answerer.join().unwrap(), "ship?");
    assert_eq!(report.result.unwrap().to_value().unwrap(), json!([true, "ok"]));

    // Nobody answers in time: the run pauses; answered through Redis, it resumes.
    let input = scripts(json!({"deploy": [{"op": "ask", "kind": "text", "prompt": "name?", "timeout": 0}]}));
    let paused = wf.run(&input, &["--redis", &redis.url(), "--json", "--no-prompt"]);
    assert_eq!(paused.code, 6, "{}", paused.stderr);
    let id = paused.json()["requests"][0]["id"].as_str().unwrap().to_string();
    assert!(paused.stderr.contains(&format!("--redis {}", redis.url())), "{}", paused.stderr);
    let listed = cli(wf.dir.path(), &["feedback", "list", "--redis", &redis.url(), "--json"]);
    assert_eq!(listed.ok().json()[0]["id"], json!(id));
    cli(wf.dir.path(), &["feedback", "answer", &id, "--text", "ada", "--redis", &redis.url()]).ok();
    let resumed = cli(wf.dir.path(), &["resume", "--latest", "--redis", &redis.url(), "--no-prompt"]);
    assert_eq!(resumed.ok().json(), json!("ada"));
}

/// `SET key value` over a raw connection to the Redis on `port`.
fn redis_set_port(port: u16, key: &str, value: &str) {
    let mut con = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let cmd = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n", key.len(), value.len());
    con.write_all(cmd.as_bytes()).unwrap();
    let mut ok = [0u8; 5];
    con.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
}

#[test]
fn another_coordinator_taking_over_stops_this_one_and_frees_the_waiting_worker() {
    let Some(redis) = Redis::start() else { return };
    let _w = WorkerProc::start(&redis, 1);
    let wf = workflow(&format!("[workflow]\nflow = \"deploy\"\n{}", scripted(&["deploy"])));
    let input = scripts(json!({"deploy": [{"op": "ask", "kind": "approval", "prompt": "ship?", "timeout": 600}]}));
    let opts = RunOptions {
        session_id: Some("fenced".into()),
        checkpoint_dir: Some(wf.checkpoints()),
        ..redis_options(&redis)
    };
    let mut s = Session::start(&wf.path, Json::from(input), opts).unwrap();
    let url = redis.url();
    let port = redis.port;
    let usurper = std::thread::spawn(move || {
        let desk = graflow_host::distributed::RedisDesk::connect(&url).unwrap();
        while desk.pending().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        // What a second `resume` of the same run does first.
        redis_set_port(port, "graflow-host:run:fenced:live", "another-epoch");
    });
    let started = Instant::now();
    let err = s.run().unwrap_err().to_string();
    assert!(err.contains("another coordinator took over run fenced"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "stopped long before the question's timeout");
    usurper.join().unwrap();
    // The worker's single slot is free again: another run completes.
    let hello = example_run("hello", r#"{"name":"next"}"#, Some(&redis.url()));
    assert_eq!(hello.code, 0, "{}", hello.stderr);
}

#[test]
fn a_worker_reaches_only_what_it_and_the_workflow_allow_with_the_key_from_its_own_environment() {
    let Some(redis) = Redis::start() else { return };
    let srv = crate::netserver::Server::start();
    let p = srv.port;
    let wf = workflow(&format!(
        "[workflow]\nflow = \"t\"\n[workflow.http]\nallow = [\"http://127.0.0.1:{p}\"]\n\
         [[workflow.http.headers]]\norigin = \"http://127.0.0.1:{p}\"\nname = \"x-api-key\"\nvalue = \"${{NET_WORKER_KEY}}\"\n\
         [tasks.t]\nexport = \"script\"\n"
    ));
    let input = scripts(json!({"t": [{"op": "http", "url": srv.url("/echo")}, {"op": "return", "key": "http"}]}));
    let spawn = |extra: &[&str]| {
        let child = command(&std::env::temp_dir())
            .args(["worker", "--redis", &redis.url(), "--concurrency", "1", "--visibility-timeout-ms", "3000"])
            .args(extra)
            .env("NET_WORKER_KEY", "wk-from-the-worker")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        WorkerProc { child }
    };
    // A worker that allows nothing: the request is refused there.
    let w = spawn(&[]);
    let out = wf.run(&input, &["--redis", &redis.url(), "--json"]);
    let r = out.ok().json()["result"].clone();
    assert!(r[0]["error"].as_str().unwrap_or_default().contains("--allow-outbound"), "{r}");
    assert!(srv.seen().is_empty());
    drop(w);
    // A worker that allows the origin sends it, with the key of its own environment.
    let origin = format!("http://127.0.0.1:{p}");
    let w = spawn(&["--allow-outbound", &origin]);
    let out = wf.run(&input, &["--redis", &redis.url(), "--json"]);
    let r = out.ok().json()["result"].clone();
    assert_eq!(r[0]["status"], 200, "{r}");
    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-api-key"], "wk-from-the-worker");
    assert!(!out.stdout.contains("wk-from-the-worker"));
    drop(w);
}

/// A redis-server speaking only TLS on a free port, with an ACL user
/// `alice` (password `s3cret`) and the default user off; its CA in `ca.pem`.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start() -> Option<TlsRedis> {
        Redis::start()?.kill();
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out =
                Command::new("openssl").args(args).current_dir(dir.path()).output().expect("openssl is installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=graflow-test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(dir.path().join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem"])
            .args([
                "--tls-auth-clients",
                "no",
                "--user",
                "default",
                "off",
                "--user",
                "alice",
                "on",
                ">s3cret",
                "~*",
                "&*",
                "+@all",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server (TLS) did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(TlsRedis { child, port, dir })
    }
    fn url(&self, password: &str) -> String {
        format!("rediss://alice:{password}@127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_run_through_redis_over_tls_with_an_acl_user_and_a_wrong_password_named_without_it() {
    let Some(redis) = TlsRedis::start() else { return };
    let ca = redis.dir.path().join("ca.pem");
    let url = redis.url("s3cret");
    let wf =
        workflow("[workflow]\nflow = \"a >> b\"\n[tasks.a]\nexport = \"script\"\n[tasks.b]\nexport = \"script\"\n");
    let input = scripts(json!({"a": [{"op": "set", "key": "k", "value": 7}], "b": [{"op": "return", "key": "k"}]}));
    let worker = command(&std::env::temp_dir())
        .args(["worker", "--redis", &url, "--concurrency", "2", "--visibility-timeout-ms", "3000"])
        .env("GRAFLOW_REDIS_CA_FILE", &ca)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _worker = WorkerProc { child: worker };
    let run = |url: &str, ca: &Path| {
        let out = command(wf.dir.path())
            .args(["run", "workflow.toml", "--input", &input.to_string(), "--redis", url])
            .env("GRAFLOW_REDIS_CA_FILE", ca)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&url, &ca);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "7");
    // A wrong password: a clear error, the password not in it.
    let (code, _, stderr) = run(&redis.url("not-the-password"), &ca);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("rediss://alice:***@127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    // A CA that did not sign the server's certificate: refused.
    let other = redis.dir.path().join("server.pem");
    let (code, _, stderr) = run(&url, &other);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
