//! Outbound HTTP through the gate (docs/network.md), through the real
//! sandbox and CLI, against servers on loopback.

use crate::netserver::Server;
use crate::support::*;
use serde_json::{Value, json};

/// A workflow of scripted tasks `names` (a >> b ...), with `extra` TOML.
fn net_workflow(names: &[&str], extra: &str) -> Wf {
    workflow(&format!("[workflow]\nflow = \"{}\"\n{extra}\n{}", names.join(" >> "), scripted(names)))
}

/// Run `wf` with `input` and the model key `NET_TEST_LLM_KEY = key` in the
/// host's environment: the exit code, the run's result (`--json`) and stdout.
fn run_keyed(wf: &Wf, key: &str, input: &Value) -> (Option<i32>, Value, String) {
    let out = command(wf.dir.path())
        .env("NET_TEST_LLM_KEY", key)
        .args(["run", "workflow.toml", "--input", &input.to_string(), "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let result = serde_json::from_str::<Value>(&stdout).map(|v| v["result"].clone()).unwrap_or_else(|_| {
        panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    });
    (out.status.code(), result, stdout)
}

fn list(out: &Out, key: &str) -> Vec<Value> {
    let _ = key;
    let v = out.json();
    v.as_array().cloned().unwrap_or_else(|| vec![v])
}

#[test]
fn a_granted_task_gets_and_posts_and_an_ungranted_one_is_refused_with_a_log_line() {
    let srv = Server::start();
    let wf = net_workflow(
        &["fetch", "other"],
        &format!("[workflow.http]\n\n[tasks.fetch.http]\nallow = [\"http://127.0.0.1:{}\"]\n", srv.port),
    );
    let input = scripts(json!({
        "fetch": [
            {"op": "http", "url": srv.url("/echo?q=secret-query"), "key": "got"},
            {"op": "http", "method": "POST", "url": srv.url("/echo"), "body": "{\"a\":1}", "headers": [["content-type", "application/json"]], "key": "got"},
            {"op": "wasi_http", "url": srv.url("/echo")},
            {"op": "return", "key": "got"}
        ],
        "other": [{"op": "http", "url": srv.url("/echo"), "key": "denied"}, {"op": "return", "key": "denied"}]
    }));
    let out = wf.run(&input, &["--json"]);
    out.ok();
    let seen = srv.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].body, "{\"a\":1}");
    assert!(seen.iter().all(|r| r.headers.get("idempotency-key").is_some_and(|k| k.len() == 32)), "{seen:?}");
    let result = out.json()["result"].clone();
    let denied = result.as_array().unwrap()[0]["error"].as_str().unwrap().to_string();
    assert!(denied.contains("denied") && denied.contains("other"), "{denied}");
    assert!(out.stderr.contains("outbound request refused: task 'other' (module 'kit')"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("http://127.0.0.1:{}", srv.port)), "{}", out.stderr);
    let _ = list;
}

#[test]
fn denied_origins_redirects_inward_names_and_the_metadata_address_are_refused_before_connecting() {
    let srv = Server::start();
    let other = Server::start();
    let p = srv.port;
    let wf = net_workflow(
        &["t"],
        &format!("[workflow.http]\nallow = [\"http://127.0.0.1:{p}\", \"http://*:{p}\", \"http://*\"]\n"),
    );
    let redirect = srv.url(&format!("/redirect?to=http%3A%2F%2F127.0.0.1%3A{}%2Fecho", other.port));
    let input = scripts(json!({"t": [
        {"op": "http", "url": other.url("/echo")},
        {"op": "http", "url": redirect},
        {"op": "http", "url": format!("http://localhost:{p}/echo")},
        {"op": "http", "url": "http://169.254.169.254/latest/meta-data/"},
        {"op": "wasi_http", "url": other.url("/echo")},
        {"op": "wasi_http", "url": format!("http://localhost:{p}/echo")},
        {"op": "return", "key": "http"}
    ]}));
    let out = wf.run(&input, &["--json"]);
    out.ok();
    let r = out.json()["result"].clone();
    let errors: Vec<String> =
        r.as_array().unwrap().iter().map(|v| v["error"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(errors.len(), 4, "{r}");
    assert!(errors.iter().all(|e| e.contains("denied")), "{errors:?}");
    assert!(errors[2].contains("127.0.0.1") && errors[2].contains("loopback"), "{}", errors[2]);
    assert!(other.seen().is_empty(), "the denied origin was reached: {:?}", other.seen());
    // Only the redirect itself reached the allowed server.
    assert_eq!(srv.seen().len(), 1, "{:?}", srv.seen());
    let run = out.json();
    let _ = run;
    assert!(out.stderr.matches("outbound request refused").count() >= 5, "{}", out.stderr);
}

#[test]
fn a_response_over_the_bound_and_an_endless_body_are_cut_with_the_key_named() {
    let srv = Server::start();
    let wf = net_workflow(
        &["t"],
        &format!("[workflow.http]\nallow = [\"http://127.0.0.1:{}\"]\nmax_response_bytes = 10000\n", srv.port),
    );
    let input = scripts(json!({"t": [
        {"op": "http", "url": srv.url("/big?n=9000")},
        {"op": "http", "url": srv.url("/big?n=20000")},
        {"op": "http", "url": srv.url("/endless")},
        {"op": "wasi_http", "url": srv.url("/endless")},
        {"op": "return", "key": "http"}
    ]}));
    let out = wf.run(&input, &["--json"]);
    out.ok();
    let r = out.json()["result"].clone();
    assert_eq!(r[0]["status"], 200);
    assert_eq!(r[0]["body"].as_str().unwrap().len(), 9000);
    for i in [1, 2] {
        let e = r[i]["error"].as_str().unwrap();
        assert!(e.contains("max_response_bytes = 10000"), "{e}");
    }
    let w = out.json();
    let _ = w;
}

#[test]
fn a_slow_server_is_cut_at_the_tasks_deadline() {
    let srv = Server::start();
    let wf = net_workflow(
        &["t"],
        &format!("[workflow.http]\nallow = [\"http://127.0.0.1:{}\"]\n[tasks.t.limits]\ntimeout_ms = 700\n", srv.port),
    );
    let input = scripts(
        json!({"t": [{"op": "wasi_http", "url": srv.url("/slow?ms=20000")}, {"op": "http", "url": srv.url("/slow?ms=20000")}]}),
    );
    let started = std::time::Instant::now();
    let out = wf.run(&input, &["--json"]);
    let took = started.elapsed();
    // Each request ends at the deadline; the task then fails on its time limit.
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
    assert!(out.stderr.contains("time limit") || out.stdout.contains("time limit"), "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn ctrl_c_stops_a_task_waiting_on_the_network_within_the_grace_period() {
    let srv = Server::start();
    let wf = net_workflow(&["t"], &format!("[workflow.http]\nallow = [\"http://127.0.0.1:{}\"]\n", srv.port));
    let input = scripts(json!({"t": [{"op": "http", "url": srv.url("/slow?ms=60000")}]})).to_string();
    let child = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", &input, "--grace-period-ms", "300"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    srv.wait_for("/slow");
    let started = std::time::Instant::now();
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 5: interrupted, with a checkpoint to resume (docs/cli.md).
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("resume"), "{stderr}");
}

#[test]
fn a_host_held_key_reaches_only_its_origin_and_nothing_the_host_writes() {
    let keyed = Server::start();
    let echo = Server::start();
    let secret = "sk-test-secret";
    let wf = net_workflow(
        &["t"],
        &format!(
            "[workflow.http]\nallow = [\"http://127.0.0.1:{k}\", \"http://127.0.0.1:{e}\"]\n\
             [[workflow.http.headers]]\norigin = \"http://127.0.0.1:{k}\"\nname = \"Authorization\"\nvalue = \"Bearer ${{NET_TEST_KEY}}\"\n\
             ",
            k = keyed.port,
            e = echo.port
        ),
    );
    let input = scripts(json!({"t": [
        {"op": "http", "url": keyed.url("/echo"), "key": "keyed"},
        {"op": "http", "url": echo.url("/echo"), "key": "echo"},
        {"op": "env", "name": "NET_TEST_KEY"},
        {"op": "checkpoint", "metadata": {}}
    ]}));
    let report = wf.dir.path().join("run.html");
    let out = command(wf.dir.path())
        .env("NET_TEST_KEY", secret)
        .args(["run", "workflow.toml", "--input", &input.to_string(), "--json", "--report"])
        .arg(&report)
        .env("GRAFLOW_LOG", "debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // It reached its origin, and only that one.
    assert_eq!(keyed.seen()[0].headers.get("authorization").map(String::as_str), Some("Bearer sk-test-secret"));
    assert!(!echo.seen()[0].headers.contains_key("authorization"), "{:?}", echo.seen());
    // The guest never saw it (environment, the other origin's echo).
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["result"].as_str().is_none_or(|s| !s.contains(secret)), "{v}");
    // Nowhere the host writes: stdout, stderr, checkpoints, journal, report.
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    let mut files = vec![report.clone()];
    let mut stack = vec![wf.checkpoints()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() { stack.push(e.path()) } else { files.push(e.path()) }
        }
    }
    assert!(files.len() > 4, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds the key", f.display());
    }
    // The keyed origin's own echo shows the guest the key, as that origin chose: documented.
    let _ = echo;
}

#[test]
fn a_key_missing_on_this_machine_fails_the_task_naming_the_variable_and_sends_nothing() {
    let srv = Server::start();
    let wf = net_workflow(
        &["t"],
        &format!(
            "[workflow.http]\nallow = [\"http://127.0.0.1:{p}\"]\n[[workflow.http.headers]]\norigin = \"http://127.0.0.1:{p}\"\nname = \"x-api-key\"\nvalue = \"${{NET_TEST_ABSENT}}\"\n",
            p = srv.port
        ),
    );
    let out = wf.run(&scripts(json!({"t": [{"op": "http", "url": srv.url("/echo")}]})), &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("NET_TEST_ABSENT"), "{}", out.stderr);
    assert!(srv.seen().is_empty());
}

#[test]
fn the_idempotency_key_is_the_same_across_a_retry_and_across_kill_9_and_resume() {
    let srv = Server::start();
    let wf = workflow(&format!(
        "[workflow]\nflow = \"a >> b\"\n[workflow.http]\nallow = [\"http://127.0.0.1:{}\"]\n\
         [tasks.a]\nexport = \"script\"\n[tasks.b]\nexport = \"script\"\nmax_retries = 1\n[tasks.b.backoff]\ninitial_ms = 10\n",
        srv.port
    ));
    // b: request, then fail retryably on its first attempt; the retry asks again.
    let input = scripts(json!({
        "a": [{"op": "checkpoint", "metadata": {}}],
        "b": [{"op": "http", "url": srv.url("/echo")}, {"op": "retryable", "message": "again", "attempt": 0}]
    }));
    wf.run(&input, &[]).ok();
    let keys: Vec<String> = srv.seen().iter().map(|r| r.headers["idempotency-key"].clone()).collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "a retried attempt sends the same key");

    // kill -9 while b waits on a slow answer, then resume: the same key again.
    let srv2 = Server::start();
    let wf2 = net_workflow(&["a", "b"], &format!("[workflow.http]\nallow = [\"http://127.0.0.1:{}\"]\n", srv2.port));
    let input = scripts(json!({
        "a": [{"op": "checkpoint", "metadata": {}}],
        "b": [{"op": "http", "url": srv2.url("/slowonce")}]
    }))
    .to_string();
    let mut child = command(wf2.dir.path())
        .args(["run", "workflow.toml", "--input", &input])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    srv2.wait_for("/slowonce");
    child.kill().unwrap();
    child.wait().unwrap();
    cli(wf2.dir.path(), &["resume", "--latest"]).ok();
    let seen = srv2.seen();
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(seen[0].headers["idempotency-key"], seen[1].headers["idempotency-key"]);
}

#[test]
fn bad_grants_are_refused_with_the_field_named() {
    for (toml, needle) in [
        ("[workflow.http]\nallow = [\"api.example.com\"]\n", "[workflow.http].allow"),
        ("[workflow.http]\nallow = [\"https://x.com/v1\"]\n", "has a path"),
        ("[tasks.t.http]\nallow = [\"https://*x.com\"]\n", "[tasks.t].http.allow"),
        ("[workflow.http]\nallow_networks = [\"10.0.0.0/99\"]\n", "CIDR"),
        (
            "[[workflow.http.headers]]\norigin = \"https://a.com\"\nname = \"Authorization\"\nvalue = \"Bearer sk-literal\"\n",
            "names no environment variable",
        ),
        ("[workflow.http]\nmax_requests = 0\n", "at least 1"),
        ("[workflow.llm]\nbase_url = \"not a url\"\nmodel = \"m\"\n", "[workflow.llm]"),
    ] {
        let wf = net_workflow(&["t"], toml);
        let out = wf.run(&json!({}), &[]);
        assert_eq!(out.code, 2, "{toml}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{toml}: {}", out.stderr);
    }
}

#[test]
fn the_model_capability_calls_the_provider_with_the_host_held_key_and_tool_calls() {
    let srv = Server::start();
    let wf = net_workflow(
        &["t"],
        &format!(
            "[workflow.llm]\nbase_url = \"http://127.0.0.1:{p}/v1\"\nmodel = \"scripted\"\napi_key_env = \"NET_TEST_LLM_KEY\"\n\
             [workflow.http]\nallow = [\"http://127.0.0.1:{p}\"]\nmax_llm_tokens_per_execution = 100\n",
            p = srv.port
        ),
    );
    let tool = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}});
    let input = scripts(json!({"t": [
        {"op": "llm", "messages": [{"role": "user", "content": "hi"}]},
        {"op": "llm", "messages": [{"role": "user", "content": "weather?"}], "tools": [tool]},
        {"op": "llm", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "user", "content": "c"}, {"role": "user", "content": "d"}, {"role": "user", "content": "e"}, {"role": "user", "content": "f"}]},
        {"op": "llm", "messages": [{"role": "user", "content": "over"}]},
        {"op": "return", "key": "llm"}
    ]}));
    let (code, r, stdout) = run_keyed(&wf, "sk-test-secret", &input);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(r[0]["content"], "echo: hi");
    assert_eq!(r[0]["usage"], json!([10, 5, 15]));
    assert_eq!(r[1]["finish_reason"], "tool_calls");
    assert_eq!(r[1]["tool_calls"][0]["name"], "get_weather");
    assert_eq!(r[1]["tool_calls"][0]["arguments"], "{\"city\": \"Paris\"}");
    // 15 + 15 + 65 = 95 then 110: over the execution's budget of 100.
    let e = r[3]["error"].as_str().unwrap_or_default();
    assert!(e.contains("max_llm_tokens_per_execution = 100"), "{r}");
    // A key the provider echoes with JSON escapes is scrubbed once decoded;
    // negative usage is not taken as zero tokens.
    let input = scripts(json!({"t": [
        {"op": "llm", "messages": [{"role": "user", "content": "leak"}]},
        {"op": "llm", "messages": [{"role": "user", "content": "negative"}]},
        {"op": "return", "key": "llm"}
    ]}));
    let (_, r, _) = run_keyed(&wf, "sk-test-secret", &input);
    assert_eq!(r[0]["content"], "your key: Bearer [redacted]", "{r}");
    assert!(r[1]["usage"][2].as_u64().unwrap() > 10, "{r}");
    assert!(srv.seen().iter().all(|s| s.headers["authorization"] == "Bearer sk-test-secret"));
    assert!(!stdout.contains("sk-test-secret"));
}

#[test]
fn a_provider_error_that_echoes_the_key_reaches_the_guest_redacted() {
    let srv = Server::start();
    let wf = net_workflow(
        &["t"],
        &format!(
            "[workflow.llm]\nbase_url = \"http://127.0.0.1:{p}/v1\"\nmodel = \"m\"\napi_key_env = \"NET_TEST_LLM_KEY\"\n[workflow.http]\nallow = [\"http://127.0.0.1:{p}\"]\n",
            p = srv.port
        ),
    );
    let input = scripts(
        json!({"t": [{"op": "llm", "messages": [{"role": "user", "content": "x"}]}, {"op": "return", "key": "llm"}]}),
    );
    let (_, _, stdout) = run_keyed(&wf, "sk-wrong-but-secret", &input);
    assert!(stdout.contains("401") && stdout.contains("[redacted]"), "{stdout}");
    assert!(!stdout.contains("sk-wrong-but-secret"), "{stdout}");
}

#[test]
fn requests_are_run_events_in_the_journal_logs_json_and_report() {
    let srv = Server::start();
    let wf = net_workflow(&["t"], &format!("[workflow.http]\nallow = [\"http://127.0.0.1:{}\"]\n", srv.port));
    let input = scripts(
        json!({"t": [{"op": "http", "url": srv.url("/echo?token=hidden-query"), "method": "POST", "body": "12345"}, {"op": "checkpoint", "metadata": {}}]}),
    );
    let report = wf.dir.path().join("r.html");
    let out = wf.run(&input, &["--report", report.to_str().unwrap(), "--json"]);
    let o = out.ok().json()["outbound"].clone();
    assert_eq!(o["requests"], 1, "{o}");
    assert_eq!(o["sent_bytes"], 5, "{o}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("Outbound requests") && html.contains("POST") && html.contains("/echo"), "{html}");
    assert!(!html.contains("hidden-query"));
    let logs = cli(wf.dir.path(), &["logs", "--latest"]);
    assert!(logs.ok().stdout.contains("http      t POST http://127.0.0.1:"), "{}", logs.stdout);
    assert!(logs.stdout.contains("/echo -> 200 (5 B sent"), "{}", logs.stdout);
    let journal: String = std::fs::read_dir(wf.checkpoints())
        .unwrap()
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("events.jsonl")).ok())
        .collect();
    let line = journal.lines().find(|l| l.contains("\"event\":\"request\"")).unwrap_or_else(|| panic!("{journal}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["status"], 200);
    assert_eq!(v["sent_bytes"], 5);
    assert!(v["received_bytes"].as_u64().unwrap() > 10);
    assert!(!journal.contains("hidden-query"));
}

#[test]
fn every_language_gets_posts_is_refused_and_calls_the_model_with_a_tool_and_a_budget() {
    let srv = Server::start();
    let p = srv.port;
    for (lang, _) in crate::parity::LANGS {
        let wf = crate::parity::parity(
            lang,
            &format!(
                "[workflow]\nflow = \"net\"\n[workflow.llm]\nbase_url = \"http://127.0.0.1:{p}/v1\"\nmodel = \"m\"\napi_key_env = \"NET_TEST_LLM_KEY\"\n\
                 [workflow.http]\nallow = [\"http://127.0.0.1:{p}\"]\nmax_llm_tokens_per_execution = 120\n[tasks.net]\n"
            ),
        );
        let input = json!({"base": format!("http://127.0.0.1:{p}")}).to_string();
        let out = command(wf.dir.path())
            .env("NET_TEST_LLM_KEY", "sk-test-secret")
            .args(["run", "workflow.toml", "--input", &input])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{lang}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            v,
            json!({"lang": lang, "get": 200, "post": ["POST", format!("{{\"lang\":\"{lang}\"}}")], "denied": "denied",
                   "tool": "get_weather", "final": "final: sunny", "budget": "limit"}),
            "{lang}"
        );
    }
}

#[test]
fn the_research_agent_example_answers_after_a_pause_and_a_resume() {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (llm, kb) = (free(), free());
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("examples/research-agent");
    assert!(example.join("agent.wasm").exists(), "examples/research-agent/agent.wasm is missing: run `make guests`");
    copy_dir(&example, dir.path());
    let toml = std::fs::read_to_string(dir.path().join("workflow.toml"))
        .unwrap()
        .replace("18431", &llm.to_string())
        .replace("18432", &kb.to_string());
    std::fs::write(dir.path().join("workflow.toml"), toml).unwrap();
    /// The fake server, stopped however the test ends.
    struct Fake(std::process::Child);
    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _fake = Fake(
        std::process::Command::new("python3")
            .arg(dir.path().join("fake_openai.py"))
            .args(["--llm-port", &llm.to_string(), "--kb-port", &kb.to_string(), "--key", "k-123"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", kb)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", llm)).is_ok()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let input = json!({"question": "how?", "kb_url": format!("http://127.0.0.1:{kb}")}).to_string();
    let run = |args: &[&str]| {
        let out = command(dir.path()).env("DEMO_LLM_KEY", "k-123").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["run", "workflow.toml", "--input", &input, "--max-steps", "2"]);
    assert_eq!(code, Some(3), "{err}");
    let (code, out, err) = run(&["resume", "--latest"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rounds"], 3, "{v}");
    let answer = v["answer"].as_str().unwrap();
    assert!(answer.contains("[wasm]") && answer.contains("[checkpoints]"), "{answer}");
    assert!(!out.contains("k-123") && !err.contains("k-123"));
}

#[test]
fn refusals_count_against_max_requests_and_their_log_lines_are_bounded() {
    let srv = Server::start();
    let wf = net_workflow(
        &["t", "u"],
        &format!("[workflow.http]\nmax_requests = 30\n[tasks.t.http]\nallow = [\"http://127.0.0.1:{}\"]\n", srv.port),
    );
    let denied = json!({"op": "http", "url": "http://127.0.0.1:1/x"});
    let input = scripts(json!({"t": vec![denied.clone(); 40], "u": vec![denied; 40]}));
    let out = wf.run(&input, &["--json"]);
    out.ok();
    // t: 30 refusals then the bound; u (no grant): refusals logged up to the cap.
    let lines = out.stderr.matches("outbound request refused").count();
    assert!(lines <= 2 * 20 + 2, "{lines} refusal lines: {}", out.stderr);
    assert!(out.stderr.contains("further outbound refusals of execution t are not logged"), "{}", out.stderr);
    let order = out.json();
    let _ = order;
}
