//! Checkpoints in a bucket, against a real S3-compatible server (moto's
//! `moto_server`, started here on a free loopback port): resume on "another
//! machine" (another working directory, cache and `HOME`) equal to an
//! uninterrupted run, byte flips refused, writers killed at many points,
//! two writers at once, prune during commits, coordinator failover through
//! the bucket, a paused run answered and resumed through it, and clear
//! errors that never show a secret.
//!
//! Skipped, with a message, when `moto_server` is not installed, unless
//! `GRAFLOW_REQUIRE_MOTO=1` (set by `.ci/run`, which installs it).

use crate::distributed::{Redis, free_port};
use crate::support::*;
use graflow_host::storage::{Bucket, BucketUrl, Settings, Storage};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCESS_KEY: &str = "graflow-test-key";
const SECRET: &str = "graflow-test-secret-4f1d";

/// A `moto_server` on a free loopback port, stopped when dropped.
pub(crate) struct Moto {
    child: Child,
    port: u16,
}

fn http(port: u16, request: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Some(out)
}

impl Moto {
    /// A new server, or `None` (with a message) when moto_server is missing.
    pub(crate) fn start() -> Option<Moto> {
        let installed = Command::new("moto_server").arg("--help").output().is_ok_and(|o| o.status.success());
        if !installed {
            skipped(
                "GRAFLOW_REQUIRE_MOTO",
                "moto_server is not installed (pip install 'moto[server]'); bucket test not run",
            );
            return None;
        }
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET / HTTP/1.0\r\n\r\n").is_none_or(|r| !r.starts_with("HTTP/")) {
            assert!(Instant::now() < deadline, "moto_server did not answer on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new bucket; its `s3://` URL with `prefix`.
    pub(crate) fn bucket(&self, name: &str, prefix: &str) -> String {
        let port = self.port;
        let request =
            format!("PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let reply = http(port, &request).unwrap_or_default();
        assert!(reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"), "create bucket: {reply}");
        format!("s3://{name}/{prefix}").trim_end_matches('/').to_string()
    }

    /// The AWS environment of a process that reaches this server.
    pub(crate) fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
    }

    /// A client of `url` for the test itself (its own working copy).
    fn client(&self, url: &str, mirror: &Path) -> Bucket {
        let settings = Settings {
            endpoint: Some(self.endpoint()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET.into()),
            mirror: Some(mirror.to_path_buf()),
            ..Settings::default()
        };
        Bucket::open_with(BucketUrl::parse(url).unwrap(), settings).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A machine: its own working directory, `HOME` and cache (so its own
/// working copy of the bucket); the checkpoint key shared (the test key).
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Machine { dir }
    }

    fn command(&self, moto: &Moto) -> Command {
        let mut cmd = command(self.dir.path());
        cmd.env("HOME", self.dir.path().join("home")).env("GRAFLOW_CACHE_DIR", self.dir.path().join("cache"));
        moto.env(&mut cmd);
        cmd
    }

    /// `run workflow.toml --input INPUT --checkpoint-dir DIR` and `extra`.
    fn run_to(&self, moto: &Moto, input: &str, dir: &str, extra: &[&str]) -> Out {
        let mut args = vec!["run", "workflow.toml", "--input", input, "--checkpoint-dir", dir];
        args.extend_from_slice(extra);
        self.cli(moto, &args)
    }

    fn cli(&self, moto: &Moto, args: &[&str]) -> Out {
        let out = self.command(moto).args(args).output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
}

/// `a >> b >> c >> d >> e`, each adding 1 to `total` (so a task run twice
/// shows) and setting its own key; `e` returns `total`. `a` also sets a
/// value of `big` bytes (so the `.ctx` of a full checkpoint goes up in a
/// multipart upload above 8 MiB).
fn chain(big: u64) -> (Wf, Value) {
    let names = ["a", "b", "c", "d", "e"];
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b >> c >> d >> e\"\n{}", scripted(&names)));
    let mut s = serde_json::Map::new();
    for n in names {
        let mut ops =
            vec![json!({"op": "add", "key": "total", "amount": 1}), json!({"op": "set", "key": n, "value": n})];
        if n == "a" {
            ops.push(json!({"op": "big_value", "key": "big", "bytes": big}));
        }
        if n == "e" {
            ops.push(json!({"op": "return", "key": "total"}));
        }
        s.insert(n.into(), Value::Array(ops));
    }
    (wf, scripts(Value::Object(s)))
}

fn copy_workflow(wf: &Wf, to: &Machine) {
    std::fs::copy(&wf.path, to.dir.path().join("workflow.toml")).unwrap();
    std::fs::copy(wf.dir.path().join("kit.wasm"), to.dir.path().join("kit.wasm")).unwrap();
}

/// A new bucket `name` with `prefix` (its URL), the [`chain`] workflow with a
/// value of `big` bytes, its input as text, and a machine that has the
/// workflow.
fn setup(moto: &Moto, name: &str, prefix: &str, big: u64) -> (String, Wf, String, Machine) {
    let url = moto.bucket(name, prefix);
    let (wf, input) = chain(big);
    let m = Machine::new();
    copy_workflow(&wf, &m);
    (url, wf, input.to_string(), m)
}

/// Every key under the bucket URL's prefix.
fn keys(client: &Bucket) -> Vec<String> {
    let mut k: Vec<String> = client.list("").unwrap().into_iter().map(|o| o.key).collect();
    k.sort();
    k
}

#[test]
fn a_run_checkpointed_to_a_bucket_resumes_on_another_machine_as_if_uninterrupted() {
    let Some(moto) = Moto::start() else { return };
    let url = moto.bucket("resume", "team/runs");
    let (wf, input) = chain(9 << 20);
    let expected = wf.run(&input, &["--json"]).ok().json();
    let first = Machine::new();
    copy_workflow(&wf, &first);
    let input_text = input.to_string();
    // Stopped after 3 tasks, every boundary checkpointed.
    let out = first.run_to(&moto, &input_text, &url, &["--checkpoint-every", "1", "--max-steps", "3", "--json"]);
    let v = out.json();
    assert_eq!(v["status"], "max_steps", "{}", out.stderr);
    let cp = v["checkpoint"].as_str().unwrap().to_string();
    assert!(cp.starts_with(&format!("{url}/")), "the checkpoint is named by its URL: {cp}");
    // In the bucket: modules, and for each checkpoint its claim, files and
    // commit record; later ones are increments over the first (9 MiB).
    let test_copy = tempfile::tempdir().unwrap();
    let client = moto.client(&url, test_copy.path());
    let all = keys(&client);
    assert!(all.iter().any(|k| k.starts_with("modules/") && k.ends_with(".wasm")), "{all:?}");
    let listed = first.cli(&moto, &["checkpoints", "list", &url, "--json"]).ok().json();
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 3, "3 boundaries: {listed:?}");
    assert!(listed.iter().any(|c| !c["base"].is_null()), "increments are written over a base: {listed:?}");
    for c in &listed {
        let (session, id) = (c["session"].as_str().unwrap(), c["id"].as_str().unwrap());
        for ext in ["claim", "ctx", "state.json", "meta.json"] {
            assert!(all.contains(&format!("{session}/{id}.{ext}")), "{session}/{id}.{ext} in {all:?}");
        }
    }
    let big =
        client.head(&format!("{}/{}.ctx", listed[0]["session"].as_str().unwrap(), listed[0]["id"].as_str().unwrap()));
    assert!(big.unwrap().unwrap().size > 9 << 20, "the full checkpoint holds the 9 MiB value (a multipart upload)");
    // Another machine resumes it: same result as the uninterrupted run.
    let second = Machine::new();
    copy_workflow(&wf, &second);
    let resumed = second.cli(&moto, &["resume", &cp, "--json", "--checkpoint-every", "1"]);
    assert_eq!(resumed.json()["result"], expected["result"], "{}", resumed.stderr);
    assert_eq!(resumed.json()["result"], json!(5), "every task ran once");
    assert_eq!(resumed.json()["status"], "completed");
    // Its checkpoints went to the bucket too, and its events: `logs` on a
    // third machine shows the whole run, from both machines.
    let third = Machine::new();
    let session = cp.trim_start_matches(&format!("{url}/")).split('/').next().unwrap().to_string();
    let logs = third.cli(&moto, &["logs", &format!("{url}/{session}")]).ok().stdout.clone();
    assert!(logs.contains("started   a") && logs.contains("finished  e"), "{logs}");
    // The secret key is in no object and no file any machine wrote.
    for k in keys(&client) {
        let bytes = client.get(&k, 1 << 30, "test").unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET), "{k} holds the secret");
    }
    for machine in [&first, &second, &third] {
        let mut stack = vec![machine.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else if let Ok(bytes) = std::fs::read(e.path()) {
                    let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
                    assert!(!found, "{} holds the secret", e.path().display());
                }
            }
        }
    }
    // `resume --latest` of the bucket on the third machine: the run's final
    // checkpoint, nothing left to do, the same result.
    let latest = third.cli(&moto, &["resume", "--latest", &url, "--json"]);
    assert_eq!(latest.json()["result"], expected["result"], "{}", latest.stderr);
}

#[test]
fn byte_flips_in_the_bucket_are_refused() {
    let Some(moto) = Moto::start() else { return };
    let (url, wf, input_text, m) = setup(&moto, "flips", "cp", 1000);
    let out = m.run_to(&moto, &input_text, &url, &["--max-steps", "2", "--json"]);
    let cp = out.json()["checkpoint"].as_str().unwrap().to_string();
    let rel = cp.trim_start_matches(&format!("{url}/")).to_string();
    let test_copy = tempfile::tempdir().unwrap();
    let client = moto.client(&url, test_copy.path());
    for (ext, expect) in [("ctx", "does not match"), ("state.json", "does not match"), ("meta.json", "signature")] {
        let key = format!("{rel}.{ext}");
        let original = client.get(&key, 1 << 30, "test").unwrap().unwrap();
        let mut flipped = original.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        client.delete(&key).unwrap();
        client.put_new(&key, &flipped).unwrap();
        // A machine that never saw it, and one that has a good copy: both
        // refuse the bucket's bytes (the copy is replaced, then verified).
        for machine in [Machine::new(), Machine::new()] {
            copy_workflow(&wf, &machine);
            let out = machine.cli(&moto, &["resume", &cp]);
            assert_ne!(out.code, 0, "a flipped byte in {ext} was resumed: {}", out.stderr);
            assert!(
                out.stderr.contains(expect)
                    || out.stderr.contains("torn")
                    || out.stderr.contains("not trusted")
                    || out.stderr.contains("corrupt JSON"),
                "{ext}: {}",
                out.stderr
            );
        }
        client.delete(&key).unwrap();
        client.put_new(&key, &original).unwrap();
    }
    let ok = Machine::new();
    copy_workflow(&wf, &ok);
    assert_eq!(ok.cli(&moto, &["resume", &cp, "--json"]).ok().json()["status"], "completed");
}

#[test]
fn two_writers_on_two_machines_never_overwrite_each_other() {
    let Some(moto) = Moto::start() else { return };
    let (url, wf, input_text, m) = setup(&moto, "writers", "", 1000);
    let out = m.run_to(&moto, &input_text, &url, &["--max-steps", "1", "--json"]);
    let cp = out.json()["checkpoint"].as_str().unwrap().to_string();
    // Two machines resume the same checkpoint at once: the same session,
    // the same steps, so the same checkpoint ids; the claims split them.
    let machines = [Machine::new(), Machine::new()];
    let children: Vec<Child> = machines
        .iter()
        .map(|machine| {
            copy_workflow(&wf, machine);
            machine
                .command(&moto)
                .args(["resume", &cp, "--checkpoint-every", "1", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let test_copy = tempfile::tempdir().unwrap();
    let client = moto.client(&url, test_copy.path());
    let all = keys(&client);
    let records: Vec<&String> = all.iter().filter(|k| k.ends_with(".meta.json")).collect();
    // 1 + 4 + 4 checkpoints, each with its own id, each loadable.
    assert_eq!(records.len(), 9, "{all:?}");
    let viewer = Machine::new();
    for r in records {
        let base = format!("{url}/{}", r.trim_end_matches(".meta.json"));
        let shown = viewer.cli(&moto, &["checkpoints", "show", &base, "--json"]);
        assert_eq!(shown.code, 0, "{base}: {}", shown.stderr);
        assert!(shown.json()["signature"].as_str().unwrap().starts_with("valid"), "{base}");
    }
}

/// Commits in the working copy of `machine` so far.
fn commits(machine: &Machine) -> usize {
    let mut n = 0;
    let root = machine.dir.path().join("cache/buckets");
    for copy in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for session in std::fs::read_dir(copy.path()).into_iter().flatten().flatten() {
            n += std::fs::read_dir(session.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".meta.json"))
                .count();
        }
    }
    n
}

#[test]
fn a_writer_killed_at_many_points_leaves_nothing_half_visible() {
    let Some(moto) = Moto::start() else { return };
    let (wf, input) = chain(12 << 20);
    let expected = wf.run(&input, &["--json"]).ok().json();
    let input_text = input.to_string();
    let mut killed = 0;
    for point in 0..8u64 {
        let url = moto.bucket(&format!("kill-{point}"), "p");
        let m = Machine::new();
        copy_workflow(&wf, &m);
        let mut child = m
            .command(&moto)
            .args(["run", "workflow.toml", "--input", &input_text, "--checkpoint-dir", &url, "--checkpoint-every", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A place in the run: after `point / 2` commits in the working copy
        // (the bucket's publish follows each), then a few milliseconds more.
        let deadline = Instant::now() + Duration::from_secs(60);
        while commits(&m) < (point / 2) as usize && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(point % 2 * 15));
        let _ = child.kill();
        if child.wait().unwrap().success() {
            continue;
        }
        killed += 1;
        // Another machine sees only whole checkpoints: each listed one loads,
        // and the newest resumes to the uninterrupted result.
        let other = Machine::new();
        copy_workflow(&wf, &other);
        let listed = other.cli(&moto, &["checkpoints", "list", &url, "--json"]).ok().json();
        for c in listed.as_array().unwrap() {
            let shown = other.cli(&moto, &["checkpoints", "show", c["path"].as_str().unwrap()]);
            assert_eq!(shown.code, 0, "point {point}: a listed checkpoint does not load: {}", shown.stderr);
        }
        let out = if listed.as_array().unwrap().is_empty() {
            other.cli(&moto, &["run", "workflow.toml", "--input", &input_text, "--json"])
        } else {
            other.cli(&moto, &["resume", "--latest", &url, "--json"])
        };
        assert_eq!(out.json()["result"], expected["result"], "point {point}: {}", out.stderr);
    }
    assert!(killed >= 5, "only {killed} of 8 writers were killed before they finished");
}

#[test]
fn prune_on_another_machine_during_commits_keeps_every_checkpoint_resumable() {
    let Some(moto) = Moto::start() else { return };
    let url = moto.bucket("prune-race", "x");
    let names: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    let flow = names.join(" >> ");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let wf = workflow(&format!("[workflow]\nflow = \"{flow}\"\n{}", scripted(&refs)));
    let mut s = serde_json::Map::new();
    for n in &names {
        s.insert(n.clone(), json!([{"op": "add", "key": "total", "amount": 1}, {"op": "return", "key": "total"}]));
    }
    let input = scripts(Value::Object(s)).to_string();
    let writer = Machine::new();
    copy_workflow(&wf, &writer);
    let mut child = writer
        .command(&moto)
        .args([
            "run",
            "workflow.toml",
            "--input",
            &input,
            "--checkpoint-dir",
            &url,
            "--checkpoint-every",
            "1",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Prunes with no grace at all (the harshest: every object no commit
    // record names yet is fair game) while the run commits.
    let pruner = Machine::new();
    let mut prunes = 0;
    while child.try_wait().unwrap().is_none() {
        let out = pruner.cli(&moto, &["checkpoints", "prune", "--keep", "1", "--grace", "0s", &url]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        prunes += 1;
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(prunes >= 2, "the prunes did not overlap the run");
    let reader = Machine::new();
    copy_workflow(&wf, &reader);
    let latest = reader.cli(&moto, &["resume", "--latest", &url, "--json"]);
    assert_eq!(latest.json()["result"], json!(30), "{}", latest.stderr);
    let listed = reader.cli(&moto, &["checkpoints", "list", &url, "--json"]).ok().json();
    for c in listed.as_array().unwrap() {
        let shown = reader.cli(&moto, &["checkpoints", "show", c["path"].as_str().unwrap()]);
        assert_eq!(shown.code, 0, "{}", shown.stderr);
    }
}

#[test]
fn a_coordinator_killed_with_kill_9_is_resumed_on_another_machine_through_the_bucket() {
    let Some(moto) = Moto::start() else { return };
    let Some(redis) = Redis::start() else { return };
    let url = moto.bucket("failover", "prod");
    let _workers: Vec<KillOnDrop> = (0..2)
        .map(|_| {
            command(&std::env::temp_dir())
                .args(["worker", "--redis", &redis.url(), "--concurrency", "3", "--visibility-timeout-ms", "3000"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .map(KillOnDrop)
        .collect();
    let names: Vec<String> = (0..24).map(|i| format!("m{i}")).collect();
    let flow = format!("start >> ({}) >> end", names.join(" | "));
    let mut all: Vec<&str> = vec!["start", "end"];
    all.extend(names.iter().map(String::as_str));
    let wf = workflow(&format!("[workflow]\nflow = \"{flow}\"\nparallelism = 4\n{}", scripted(&all)));
    let mut s = serde_json::Map::new();
    for n in &names {
        s.insert(n.clone(), json!([{"op": "sleep", "ms": 40}, {"op": "add", "key": "total", "amount": 1}]));
    }
    s.insert("end".into(), json!([{"op": "return", "key": "total"}]));
    let input = scripts(Value::Object(s));
    let local = wf.run(&input, &["--json"]).ok().json();
    let input_text = input.to_string();
    let first = Machine::new();
    copy_workflow(&wf, &first);
    let mut coordinator = first
        .command(&moto)
        .args(["run", "workflow.toml", "--input", &input_text, "--redis", &redis.url()])
        .args(["--checkpoint-dir", &url, "--checkpoint-every", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits(&first) < 3 {
        assert!(Instant::now() < deadline, "no checkpoints were written");
        assert!(coordinator.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    // Another machine: another working directory, HOME and cache; the
    // checkpoint key shared through GRAFLOW_CHECKPOINT_KEY (the test key).
    let second = Machine::new();
    copy_workflow(&wf, &second);
    let resumed = second.cli(&moto, &["resume", "--latest", &url, "--redis", &redis.url(), "--json"]);
    let v = resumed.json();
    assert_eq!(v["status"], "completed", "{}", resumed.stderr);
    assert_eq!(v["result"], local["result"], "every member counted once across the failover");
    assert_eq!(v["result"], json!(24));
}

/// A child process killed (SIGKILL) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_paused_run_is_answered_and_resumed_from_other_machines_through_the_bucket() {
    let Some(moto) = Moto::start() else { return };
    let url = moto.bucket("approvals", "hitl");
    let wf = workflow(&format!("[workflow]\nflow = \"build >> deploy\"\n{}", scripted(&["build", "deploy"])));
    let input = scripts(json!({
        "build": [{"op": "add", "key": "builds", "amount": 1}],
        "deploy": [{"op": "ask", "kind": "approval", "prompt": "Deploy v2?", "timeout": 0}],
    }))
    .to_string();
    let first = Machine::new();
    copy_workflow(&wf, &first);
    let out = first
        .cli(&moto, &["run", "workflow.toml", "--checkpoint-dir", &url, "--no-prompt", "--json", "--input", &input]);
    let v = out.json();
    assert_eq!(v["status"], "waiting_for_input", "{}", out.stderr);
    let request = v["requests"][0]["id"].as_str().unwrap().to_string();
    // A second machine serves the page over the bucket, lists and answers
    // it; a third resumes.
    let second = Machine::new();
    let mut serve =
        second.command(&moto).args(["serve", &url, "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(serve.stderr.take().unwrap()), &mut line).unwrap();
    let page = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(';').to_string();
    let (status, api) = crate::serve::http(&page, "GET", "/api/requests", "", "");
    assert_eq!(status, 200, "{api}");
    assert!(api.contains(&request), "the page's API lists the request kept in the bucket: {api}");
    let (status, html) = crate::serve::http(&page, "GET", "/", "", "");
    assert_eq!(status, 200);
    assert!(html.contains("waiting for input"), "the page shows the paused checkpoint: {html}");
    let _ = serve.kill();
    let _ = serve.wait();
    let listed = second.cli(&moto, &["feedback", "list", &url, "--json"]).ok().json();
    assert_eq!(listed[0]["id"], json!(request), "{listed}");
    second.cli(&moto, &["feedback", "answer", &request, "--approve", "--dir", &url]).ok();
    let again = second.cli(&moto, &["feedback", "answer", &request, "--reject", "--dir", &url]);
    assert_ne!(again.code, 0, "a second answer is refused");
    assert!(again.stderr.contains("already answered"), "{}", again.stderr);
    let third = Machine::new();
    copy_workflow(&wf, &third);
    let resumed = third.cli(&moto, &["resume", "--latest", &url, "--json"]);
    let v = resumed.json();
    assert_eq!(v["status"], "completed", "{}", resumed.stderr);
    assert_eq!(v["result"][0], json!(true), "the answer given on the second machine: {v}");
}

#[test]
fn bucket_errors_name_the_bucket_and_never_the_secret() {
    let Some(moto) = Moto::start() else { return };
    let (url, _wf, input_text, m) = setup(&moto, "errors", "p", 10);
    // A bucket that does not exist.
    let out = m.run_to(&moto, &input_text, "s3://no-such-bucket/x", &["--max-steps", "1"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("s3://no-such-bucket/x"), "{}", out.stderr);
    assert!(!out.stderr.contains(SECRET), "{}", out.stderr);
    // Wrong credentials (moto checks none by default; an unreachable
    // endpoint stands for a refusing service): the error names the bucket.
    let out = m
        .command(&moto)
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", free_port()))
        .args(["checkpoints", "list", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("s3://errors/p") && !err.contains(SECRET), "{err}");
    // A URL with credentials in it, or not a bucket name.
    for bad in ["s3://user:pw@errors/p", "s3://UPPER/p", "gs://errors/p"] {
        let out = m.cli(&moto, &["checkpoints", "list", bad]);
        assert_ne!(out.code, 0, "{bad}");
        assert!(!out.stderr.contains("pw@"), "{}", out.stderr);
    }
    // Credentials in the endpoint are refused, and not shown.
    let out = m
        .command(&moto)
        .env("AWS_ENDPOINT_URL", "http://admin:hunter2@127.0.0.1:9/")
        .args(["checkpoints", "list", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("AWS_ENDPOINT_URL") && !err.contains("hunter2"), "{err}");
    // A checkpoint URL that names nothing.
    let out = m.cli(&moto, &["resume", &format!("{url}/nosession/nosession_1_1")]);
    assert!(out.stderr.contains("no checkpoint at s3://errors/p/nosession/nosession_1_1"), "{}", out.stderr);
}

#[test]
fn retention_removes_old_checkpoints_from_the_bucket_too() {
    let Some(moto) = Moto::start() else { return };
    let (url, wf, input_text, m) = setup(&moto, "retention", "r", 1000);
    let out = m.run_to(&moto, &input_text, &url, &["--checkpoint-every", "1", "--keep-checkpoints", "2", "--json"]);
    assert_eq!(out.json()["result"], json!(5), "{}", out.stderr);
    let test_copy = tempfile::tempdir().unwrap();
    let client = moto.client(&url, test_copy.path());
    let all = keys(&client);
    let records: Vec<&String> = all.iter().filter(|k| k.ends_with(".meta.json")).collect();
    // 5 written, the newest 2 kept (and a base a kept increment needs).
    assert!((2..=3).contains(&records.len()), "{all:?}");
    for ext in [".ctx", ".state.json", ".claim"] {
        assert_eq!(all.iter().filter(|k| k.ends_with(ext)).count(), records.len(), "{ext} left behind: {all:?}");
    }
    let other = Machine::new();
    copy_workflow(&wf, &other);
    assert_eq!(other.cli(&moto, &["resume", "--latest", &url, "--json"]).json()["result"], json!(5));
}

#[test]
fn a_hostile_bucket_is_refused_with_errors_never_a_crash() {
    let Some(moto) = Moto::start() else { return };
    let (url, _wf, input_text, m) = setup(&moto, "hostile", "h", 1000);
    let args =
        ["run", "workflow.toml", "--input", &input_text, "--checkpoint-dir", &url, "--checkpoint-every", "1", "--json"];
    m.cli(&moto, &args).ok();
    let listed = m.cli(&moto, &["checkpoints", "list", &url, "--json"]).ok().json();
    let listed = listed.as_array().unwrap().clone();
    let increment = listed.iter().find(|c| !c["base"].is_null()).expect("an increment").clone();
    let session = increment["session"].as_str().unwrap().to_string();
    let base_id = increment["base"].as_str().unwrap().to_string();
    let test_copy = tempfile::tempdir().unwrap();
    let client = moto.client(&url, test_copy.path());
    let replace = |key: &str, bytes: &[u8]| {
        client.delete(key).unwrap();
        client.put_new(key, bytes).unwrap();
    };
    let record_of = |id: &str| -> Value {
        let bytes = client.get(&format!("{session}/{id}.meta.json"), 1 << 30, "test").unwrap().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    // 1. The base's record rewritten as an increment over itself (a cycle).
    let mut cycle = record_of(increment["id"].as_str().unwrap());
    cycle["record"]["checkpoint_id"] = json!(base_id);
    cycle["record"]["files"] = record_of(&base_id)["record"]["files"].clone();
    let base_meta = format!("{session}/{base_id}.meta.json");
    let original_base = client.get(&base_meta, 1 << 30, "test").unwrap().unwrap();
    replace(&base_meta, &serde_json::to_vec(&cycle).unwrap());
    let viewer = Machine::new();
    let out = viewer.cli(&moto, &["checkpoints", "show", increment["path"].as_str().unwrap()]);
    assert_eq!(out.code, 2, "refused as bad input, not a crash: {out:?}");
    assert!(out.stderr.contains("is an increment itself"), "{}", out.stderr);
    let out = viewer.cli(&moto, &["checkpoints", "show", &format!("{url}/{session}/{base_id}")]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("as its base"), "{}", out.stderr);
    replace(&base_meta, &original_base);
    // 2. A record (unsigned now) that claims a .ctx of a petabyte.
    let id = increment["id"].as_str().unwrap().to_string();
    let mut huge = record_of(&id);
    huge["record"]["files"]["ctx"]["size"] = json!(1u64 << 50);
    replace(&format!("{session}/{id}.meta.json"), &serde_json::to_vec(&huge).unwrap());
    let out = viewer.cli(&moto, &["checkpoints", "show", increment["path"].as_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("MAX_UNTRUSTED_FILE_BYTES"), "the bound is named: {}", out.stderr);
    let resumed = viewer.cli(&moto, &["resume", increment["path"].as_str().unwrap()]);
    assert!(resumed.stderr.contains("not trusted"), "a changed record is not resumed: {}", resumed.stderr);
    // 3. A state file that does not match its record.
    let latest = listed.last().unwrap();
    let lid = latest["id"].as_str().unwrap();
    let state_key = format!("{session}/{lid}.state.json");
    let mut state: Value = serde_json::from_slice(&client.get(&state_key, 1 << 30, "test").unwrap().unwrap()).unwrap();
    state["modules"] = json!({});
    replace(&state_key, &serde_json::to_vec_pretty(&state).unwrap());
    let out = viewer.cli(&moto, &["resume", latest["path"].as_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
}
