//! The hostile-guest suite: tiny components written inline as WAT, plus
//! misbehaving Rust guests (the testkit). Each is contained with its specific
//! error; the host keeps running and the other tasks of the workflow complete.

use crate::support::*;
use graflow_host::engine::{FailureKind, RunError};
use serde_json::json;

/// A component implementing the task contract by hand: `tasks` declares one
/// task, `hostile`; `run` executes `body` (core wasm instructions).
fn hostile_component(body: &str) -> Vec<u8> {
    component_with(body, "(i32.const 16)")
}

/// [`hostile_component`] whose `tasks` export runs `tasks_body` (which must
/// leave the address 16 of the task list on the stack).
pub fn component_with(body: &str, tasks_body: &str) -> Vec<u8> {
    let wat = format!(
        r#"(component
  (core module $m
    (memory (export "mem") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $bump))
      (global.set $bump (i32.add (global.get $bump) (local.get 3)))
      (local.get $p))
    (data (i32.const 16) "\20\00\00\00\01\00\00\00")
    (data (i32.const 32) "\64\00\00\00\07\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
    (data (i32.const 100) "hostile")
    (func $recurse (call $recurse))
    (func (export "tasks") (result i32) {tasks_body})
    (func (export "run") (param i32 i32 i32 i32) (result i32) {body} (i32.const 0)))
  (core instance $i (instantiate $m))
  (type $decl (record (field "name" string) (field "inputs" (list string)) (field "description" string)))
  (export $decl-e "task-decl" (type $decl))
  (type $err (variant (case "failed" string) (case "retryable" string)))
  (export $err-e "task-error" (type $err))
  (func (export "tasks") (result (list $decl-e))
    (canon lift (core func $i "tasks") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (func (export "run") (param "task" string) (param "input" string) (result (result string (error $err-e)))
    (canon lift (core func $i "run") (memory (core memory $i "mem")) (realloc (core func $i "realloc")))))"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("fixture WAT: {e}"))
}

/// A workflow: `(hostile | echo) >> noop`, best effort, with the hostile
/// component as module `bad` and the testkit as `kit`.
fn with_hostile(body: &str, limits: &str) -> (Wf, LibRun) {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"(hostile | echo) >> noop\"\nlimits = {{ {limits} }}\n[groups.g]\nmembers = [\"hostile\", \"echo\"]\npolicy = \"best_effort\"\n[tasks.hostile]\nmodule = \"bad\"\n[tasks.echo]\nmodule = \"kit\"\n[tasks.noop]\nmodule = \"kit\"\n"
    ));
    std::fs::write(wf.dir.path().join("bad.wasm"), hostile_component(body)).unwrap();
    let text = std::fs::read_to_string(&wf.path).unwrap().replace("[modules]\n", "[modules]\nbad = \"bad.wasm\"\n");
    std::fs::write(&wf.path, text).unwrap();
    let run = run_lib(&wf, json!({}));
    (wf, run)
}

fn contained(body: &str, limits: &str, kind: FailureKind, needle: &str) {
    let (wf, run) = with_hostile(body, limits);
    run.result.as_ref().unwrap();
    assert!(run.state.completed.contains(&"noop".to_string()), "the rest of the workflow completed");
    assert!(run.state.completed.contains(&"echo".to_string()));
    assert!(!run.state.completed.contains(&"hostile".to_string()));
    // The same failure, alone, with its exact error:
    let text = std::fs::read_to_string(&wf.path).unwrap();
    let alone = text
        .replace("(hostile | echo) >> noop", "hostile")
        .replace("[groups.g]\nmembers = [\"hostile\", \"echo\"]\npolicy = \"best_effort\"\n", "");
    std::fs::write(&wf.path, alone).unwrap();
    match run_lib(&wf, json!({})).result {
        Err(RunError::TaskFailed { failure, task_id, module, .. }) => {
            assert_eq!((task_id.as_str(), module.as_str()), ("hostile", "bad"));
            assert_eq!(failure.kind, kind, "{}", failure.message);
            assert!(failure.message.contains(needle), "{}", failure.message);
        }
        other => panic!("expected the hostile task to fail, got {other:?}"),
    }
}

#[test]
fn wat_infinite_loop() {
    contained("(loop $l (br $l))", "timeout_ms = 150", FailureKind::Timeout, "time limit of 150 ms exceeded");
}

#[test]
fn wat_infinite_loop_with_fuel() {
    contained("(loop $l (br $l))", "fuel = 1000000", FailureKind::OutOfFuel, "fuel budget of 1000000 exhausted");
}

#[test]
fn wat_memory_grow_bomb() {
    contained(
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))",
        "memory_mb = 8",
        FailureKind::Memory,
        "memory limit of 8388608 bytes reached",
    );
}

#[test]
fn wat_deep_recursion() {
    contained("(call $recurse)", "timeout_ms = 5000", FailureKind::Trap, "call stack exhausted");
}

#[test]
fn wat_trap() {
    contained(
        "(unreachable)",
        "timeout_ms = 5000",
        FailureKind::Trap,
        "wasm trap: wasm `unreachable` instruction executed",
    );
}

#[test]
fn wat_out_of_bounds_result() {
    // `run` returns a pointer past the end of its memory.
    contained("(return (i32.const 70000))", "timeout_ms = 5000", FailureKind::Trap, "pointer out of bounds of memory");
}

/// Run one scripted task `t` (settings in `task_extra`), returning its result or failure.
fn one(
    task_extra: &str,
    workflow_extra: &str,
    actions: serde_json::Value,
) -> (Wf, Result<serde_json::Value, (FailureKind, String)>) {
    let wf =
        workflow(&format!("[workflow]\nflow = \"t\"\n{workflow_extra}\n[tasks.t]\nexport = \"script\"\n{task_extra}"));
    let run = run_lib(&wf, scripts(json!({ "t": actions })));
    let out = match run.result {
        Ok(report) => Ok(report.result.unwrap().to_value().unwrap()),
        Err(RunError::TaskFailed { failure, .. }) => Err((failure.kind, failure.message)),
        Err(other) => panic!("{other}"),
    };
    (wf, out)
}

fn value(r: Result<serde_json::Value, (FailureKind, String)>) -> serde_json::Value {
    r.unwrap_or_else(|e| panic!("task failed: {e:?}"))
}

#[test]
fn rust_guest_deep_recursion_is_a_trap() {
    let (_, r) = one("", "", json!([{"op": "recurse"}]));
    let (kind, message) = r.unwrap_err();
    assert_eq!(kind, FailureKind::Trap);
    // Rust's shadow stack lives in linear memory: it runs out of bounds first.
    assert!(message.contains("wasm trap: out of bounds memory access"), "{message}");
}

#[test]
fn memory_limit_obeyed_and_violated() {
    let (_, r) = one(
        "limits = { memory_mb = 64 }",
        "",
        json!([{"op": "big_value", "key": "k", "bytes": 4_000_000}, {"op": "result", "value": "fits"}]),
    );
    assert_eq!(value(r), json!("fits"));
    let (_, r) = one("limits = { memory_mb = 16 }", "", json!([{"op": "big_value", "key": "k", "bytes": 40_000_000}]));
    let (kind, message) = r.unwrap_err();
    assert_eq!(kind, FailureKind::Memory);
    assert!(message.starts_with("memory limit of 16777216 bytes reached"), "{message}");
}

#[test]
fn time_limit_obeyed_and_violated() {
    let (_, r) = one(
        "limits = { timeout_ms = 5000 }",
        "",
        json!([{"op": "work", "rounds": 1000}, {"op": "result", "value": 1}]),
    );
    assert_eq!(value(r), json!(1));
    let (_, r) = one("limits = { timeout_ms = 100 }", "", json!([{"op": "work", "rounds": 100_000_000_000u64}]));
    assert_eq!(r.unwrap_err(), (FailureKind::Timeout, "time limit of 100 ms exceeded".to_string()));
}

#[test]
fn the_time_limit_holds_while_the_guest_sleeps_in_a_host_call() {
    let (_, r) = one(
        "limits = { timeout_ms = 2000 }",
        "",
        json!([{"op": "sleep", "ms": 20}, {"op": "result", "value": "rested"}]),
    );
    assert_eq!(value(r), json!("rested"));
    let started = std::time::Instant::now();
    let (_, r) = one("limits = { timeout_ms = 200 }", "", json!([{"op": "sleep", "ms": 30000}]));
    assert_eq!(r.unwrap_err(), (FailureKind::Timeout, "time limit of 200 ms exceeded".to_string()));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "stopped at the deadline, not after the sleep");
}

#[test]
fn fuel_obeyed_and_violated() {
    let (_, r) =
        one("limits = { fuel = 50000000 }", "", json!([{"op": "work", "rounds": 1000}, {"op": "result", "value": 2}]));
    assert_eq!(value(r), json!(2));
    let (_, r) = one("limits = { fuel = 5000000 }", "", json!([{"op": "work", "rounds": 100_000_000}]));
    assert_eq!(r.unwrap_err(), (FailureKind::OutOfFuel, "fuel budget of 5000000 exhausted".to_string()));
}

#[test]
fn files_are_denied_without_a_grant() {
    let (_, r) = one("", "", json!([{"op": "read_file", "path": "/etc/hostname"}]));
    let v = value(r);
    assert!(v["Err"].as_str().is_some(), "reading a host file without a grant must fail: {v}");
    let (_, r) = one("", "", json!([{"op": "list_dir", "path": "/"}]));
    assert!(value(r)["Err"].is_string());
}

#[test]
fn read_only_dir_grant_reads_but_does_not_write() {
    let wf = workflow("[workflow]\nflow = \"noop\"");
    let data = wf.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "granted").unwrap();
    let grant = format!("dirs = [{{ host = \"{}\", guest = \"/data\" }}]", data.display());
    let (_, r) = one(&grant, "", json!([{"op": "read_file", "path": "/data/in.txt"}]));
    assert_eq!(value(r), json!({"Ok": "granted"}));
    let (_, r) = one(&grant, "", json!([{"op": "write_file", "path": "/data/out.txt", "text": "x"}]));
    assert!(value(r)["Err"].is_string(), "a read-only grant refuses writes");
    assert!(!data.join("out.txt").exists());
}

#[test]
fn read_write_dir_grant_writes_inside_only() {
    let wf = workflow("[workflow]\nflow = \"noop\"");
    let data = wf.dir.path().join("out");
    std::fs::create_dir(&data).unwrap();
    let grant = format!("dirs = [{{ host = \"{}\", guest = \"/out\", mode = \"rw\" }}]", data.display());
    let (_, r) = one(&grant, "", json!([{"op": "write_file", "path": "/out/result.txt", "text": "written"}]));
    assert_eq!(value(r), json!({"Ok": null}));
    assert_eq!(std::fs::read_to_string(data.join("result.txt")).unwrap(), "written");
    for outside in ["/out/../escape.txt", "/tmp/escape.txt", "/escape.txt"] {
        let (_, r) = one(&grant, "", json!([{"op": "write_file", "path": outside, "text": "x"}]));
        assert!(value(r)["Err"].is_string(), "writing {outside} must fail");
    }
    assert!(!wf.dir.path().join("escape.txt").exists());
}

#[test]
fn environment_variables_only_when_granted() {
    // SAFETY: tests in this binary do not read this variable concurrently.
    unsafe { std::env::set_var("GRAFLOW_TEST_SECRET", "s3cret") };
    let (_, r) = one("", "", json!([{"op": "env", "name": "GRAFLOW_TEST_SECRET"}]));
    assert!(value(r)["Err"].is_string(), "not granted: not visible");
    let (_, r) = one("", "", json!([{"op": "env_count"}]));
    assert_eq!(value(r), json!(0), "no environment at all by default");
    let (_, r) = one("env = [\"GRAFLOW_TEST_SECRET\"]", "", json!([{"op": "env", "name": "GRAFLOW_TEST_SECRET"}]));
    assert_eq!(value(r), json!({"Ok": "s3cret"}));
}

#[test]
fn sockets_are_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_, r) = one("", "", json!([{"op": "connect", "addr": addr}]));
    assert!(value(r)["Err"].is_string(), "no network for guests");
}

#[test]
fn guest_output_goes_to_the_log_or_the_hosts_stderr() {
    let wf = workflow(&format!("[workflow]\nflow = \"t\"\n{}", scripted(&["t"])));
    let input = scripts(json!({"t": [{"op": "print", "text": "hello from the guest"}]})).to_string();
    let out = command(wf.dir.path())
        .env("GRAFLOW_LOG", "info")
        .args(["run", "workflow.toml", "--input", &input])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stdout: hello from the guest") && stderr.contains("stderr: err: hello from the guest"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hello from the guest"), "stdout holds only the result");
    std::fs::write(
        &wf.path,
        std::fs::read_to_string(&wf.path)
            .unwrap()
            .replace("export = \"script\"", "export = \"script\"\nstdio = \"inherit\""),
    )
    .unwrap();
    let out = command(wf.dir.path()).args(["run", "workflow.toml", "--input", &input]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l == "hello from the guest"), "inherited output is raw: {stderr}");
}

#[test]
fn host_bounds_stop_a_greedy_guest() {
    let cases = [
        (
            "max_value_bytes = 1000",
            json!([{"op": "big_value", "key": "k", "bytes": 5000}]),
            "exceeds the bound max_value_bytes = 1000 bytes",
        ),
        (
            "max_key_bytes = 8",
            json!([{"op": "set", "key": "a-very-long-key", "value": 1}]),
            "channel key of 15 bytes exceeds the bound max_key_bytes = 8 bytes",
        ),
        (
            "max_next_tasks = 10",
            json!([{"op": "spawn_many", "task": "t", "count": 5000}]),
            "more than 10 next-task calls in one execution",
        ),
        (
            "max_written_bytes = 10000",
            json!([{"op": "big_value", "key": "a", "bytes": 6000}, {"op": "big_value", "key": "b", "bytes": 6000}]),
            "over the bound max_written_bytes = 10000 bytes per execution",
        ),
        (
            "max_channel_bytes = 3000",
            json!([{"op": "big_value", "key": "a", "bytes": 2500}, {"op": "big_value", "key": "b", "bytes": 2500}]),
            "over the bound max_channel_bytes = 3000 bytes",
        ),
    ];
    for (bound, actions, needle) in cases {
        let (_, r) = one("", &format!("[workflow.bounds]\n{bound}"), actions);
        let (kind, message) = r.unwrap_err();
        assert_eq!(kind, FailureKind::HostBound, "{bound}: {message}");
        assert!(message.contains(needle), "{bound}: {message}");
    }
    let (_, r) = one(
        "",
        "[workflow.bounds]\nmax_value_bytes = 100000",
        json!([{"op": "big_value", "key": "k", "bytes": 5000}, {"op": "result", "value": "ok"}]),
    );
    assert_eq!(value(r), json!("ok"), "within the bounds");
}

#[test]
fn long_log_lines_are_cut() {
    let wf =
        workflow(&format!("[workflow]\nflow = \"t\"\n[workflow.bounds]\nmax_log_bytes = 100\n{}", scripted(&["t"])));
    let input = scripts(json!({"t": [{"op": "log_big", "bytes": 100000}]})).to_string();
    let out = command(wf.dir.path())
        .env("GRAFLOW_LOG", "info")
        .args(["run", "workflow.toml", "--input", &input])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}... [99900 more bytes cut]", "y".repeat(100))), "{stderr}");
}

#[test]
fn resume_keeps_the_grants_of_the_checkpoint() {
    // SAFETY: tests in this binary do not read this variable concurrently.
    unsafe { std::env::set_var("GRAFLOW_TEST_WIDEN", "visible") };
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b\"\n{}", scripted(&["a", "b"])));
    let input = scripts(json!({"a": [{"op": "checkpoint"}], "b": [{"op": "env", "name": "GRAFLOW_TEST_WIDEN"}]}));
    assert!(wf.run(&input, &[]).ok().json()["Err"].is_string());
    // Widening the grant in the workflow file does not reach the checkpointed run.
    let widened = std::fs::read_to_string(&wf.path)
        .unwrap()
        .replace("[tasks.b]\nexport = \"script\"", "[tasks.b]\nexport = \"script\"\nenv = [\"GRAFLOW_TEST_WIDEN\"]");
    std::fs::write(&wf.path, widened).unwrap();
    let cp = graflow_host::checkpoint::latest(&wf.checkpoints()).unwrap();
    let loaded = load_cp(&cp.base);
    assert!(loaded.context.workflow.tasks["b"].grants.env.is_empty(), "the checkpoint records the effective grants");
    let out = cli(wf.dir.path(), &["resume", cp.base.to_str().unwrap()]);
    assert!(out.ok().json()["Err"].is_string(), "resume runs with the recorded grants");
}
