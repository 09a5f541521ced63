//! The host around the sandbox: no guest value crashes it, every resource is
//! bounded while it grows, files are read with a bound, a checkpoint
//! directory survives concurrent use, Ctrl-C holds its grace period whatever
//! the task does, and the host never fails a task for its own capacity.

use crate::support::*;
use graflow_host::engine::{FailureKind, RunError};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn raw(call: &str, key: &str, text: &str) -> Value {
    json!({"op": "raw", "call": call, "key": key, "text": text})
}

#[test]
fn json_a_value_cannot_hold_is_refused_and_the_host_stays_up() {
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b\"\n{}", scripted(&["a", "b"])));
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let input = scripts(json!({
        "a": [
            raw("set", "x", &deep),
            raw("append", "x", "1"),
            raw("set", "s", r#""\ud800""#),
            raw("set", "n", "1e400"),
            raw("append", "list", &format!("{}{}", "[".repeat(64), "]".repeat(64))),
            raw("set_result", "", r#"{"a":"\udc00"}"#),
            raw("next_task", "b", &deep),
            raw("checkpoint", "", &deep),
            raw("set", "ok", r#"{"fine":[1,2.5,"\ud83d\ude00"]}"#),
            raw("append", "ok_list", "[1]"),
            raw("append", "ok_list", "2"),
        ],
        "b": [{"op": "return", "key": "refused"}]
    }));
    let out = wf.run(&input, &[]);
    let refused = out.ok().json();
    let refused: Vec<&str> = refused.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(refused.len(), 7, "{refused:#?}");
    assert!(refused.iter().all(|m| m.contains("is not valid JSON")), "{refused:#?}");
    assert!(refused[0].contains("MAX_DEPTH") && refused[3].contains("less one for a list item"), "{refused:#?}");
    assert!(refused[1].starts_with("value for channel key 's'"), "{refused:#?}");
    assert!(refused[2].contains("number out of range") && refused[4].contains("surrogate"), "{refused:#?}");
    let lib = run_lib(&wf, input);
    lib.result.as_ref().unwrap();
    assert_eq!(lib.get("ok_list"), Some(json!([[1], 2])));
    assert_eq!(lib.get("ok"), Some(json!({"fine": [1, 2.5, "😀"]})));
}

#[test]
fn flows_nested_too_deep_or_too_long_are_refused_cleanly() {
    let deep = format!("{}noop{}", "(".repeat(20_000), ")".repeat(20_000));
    let wf = workflow(&format!("[workflow]\nflow = \"{deep}\""));
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert_eq!(out.code, 2, "{}", &out.stderr[..out.stderr.len().min(500)]);
    assert!(out.stderr.contains("parentheses nested deeper than 32 levels"), "{}", &out.stderr[..300]);
    let long: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
    let wf = workflow(&format!("[workflow]\nflow = \"{}\"", long.join(" >> ")));
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("unknown task 't0'") && out.stderr.contains("... and 99969 more"), "{}", out.stderr);
    assert!(out.stderr.len() < 4000, "the error stays one screen: {} bytes", out.stderr.len());
}

fn host_bound(bounds: &str, actions: Value) -> String {
    let wf = workflow(&format!("[workflow]\nflow = \"t\"\n[workflow.bounds]\n{bounds}\n{}", scripted(&["t"])));
    match run_lib(&wf, scripts(json!({ "t": actions }))).result {
        Err(RunError::TaskFailed { failure, .. }) => {
            assert_eq!(failure.kind, FailureKind::HostBound, "{}", failure.message);
            failure.message
        }
        other => panic!("expected a host-bound failure, got {other:?}"),
    }
}

#[test]
fn the_channel_is_bounded_at_each_write() {
    let message = host_bound("max_channel_bytes = 1000000", json!([{"op": "fill", "count": 100000, "bytes": 4096}]));
    assert!(
        message.contains("writing channel key 'fill2") && message.contains("max_channel_bytes = 1000000"),
        "{message}"
    );
    let message = host_bound("max_written_bytes = 100000", json!([{"op": "fill", "count": 100000, "bytes": 10}]));
    assert!(message.contains("max_written_bytes = 100000"), "keys count as written bytes: {message}");
}

#[test]
fn the_queue_is_bounded_when_it_grows() {
    let message = host_bound(
        "max_queued_input_bytes = 1000000",
        json!([{"op": "spawn_many", "task": "t", "count": 1000, "input_bytes": 100000}]),
    );
    assert!(message.contains("max_queued_input_bytes = 1000000"), "{message}");
    let message = host_bound("max_queued_tasks = 50", json!([{"op": "spawn_many", "task": "t", "count": 100}]));
    assert!(message.contains("max_queued_tasks = 50"), "{message}");
    let wf = workflow(&format!(
        "[workflow]\nflow = \"a >> b; a >> c; a >> d\"\n[workflow.bounds]\nmax_queued_tasks = 2\n{}",
        scripted(&["a", "b", "c", "d"])
    ));
    let out = wf.run(&json!({}), &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("the queue grew to 3 executions, over the bound max_queued_tasks = 2"), "{out:?}");
}

#[test]
fn checkpoints_a_run_writes_are_bounded() {
    let wf = workflow(
        "[workflow]\nflow = \"loop\"\n[workflow.bounds]\nmax_checkpoints = 3\n[tasks.loop]\nexport = \"script\"\nmax_cycles = 6\n",
    );
    let input = scripts(json!({"loop": [
        raw("checkpoint", "", "{}"),
        {"op": "iterate_below", "cycles": 6},
        {"op": "return", "key": "refused"}
    ]}));
    let refused = wf.run(&input, &[]).ok().json();
    assert_eq!(refused.as_array().unwrap().len(), 3, "{refused}");
    assert!(refused[0].as_str().unwrap().contains("max_checkpoints = 3"), "{refused}");
    assert_eq!(graflow_host::checkpoint::list(&wf.checkpoints()).unwrap().len(), 3);
}

#[test]
fn input_files_are_read_with_a_bound_and_must_be_regular() {
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let out = wf.run(&json!({}), &[]);
    out.ok();
    let bad = cli(wf.dir.path(), &["run", "workflow.toml", "--input", "@/dev/zero"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("/dev/zero is not a regular file (it is a character device)"), "{bad:?}");
    std::os::unix::fs::symlink("/dev/zero", wf.dir.path().join("zero.wasm")).unwrap();
    let text = std::fs::read_to_string(&wf.path).unwrap().replace("kit.wasm", "zero.wasm");
    std::fs::write(wf.dir.path().join("zero.toml"), text).unwrap();
    let bad = cli(wf.dir.path(), &["validate", "zero.toml"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("zero.wasm is not a regular file"), "{bad:?}");
    let cp = {
        let run = wf.run(&scripts(json!({"a": [{"op": "checkpoint"}]})), &[]);
        run.ok();
        graflow_host::checkpoint::list(&wf.checkpoints()).unwrap().remove(0).base
    };
    let ctx = graflow_host::checkpoint::with_ext(&cp, "ctx");
    std::fs::remove_file(&ctx).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &ctx).unwrap();
    let bad = cli(wf.dir.path(), &["resume", cp.to_str().unwrap()]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("is not a regular file"), "{bad:?}");
}

#[test]
fn an_over_large_value_names_the_bound() {
    let message = host_bound("max_value_bytes = 1000", json!([{"op": "big_value", "key": "k", "bytes": 3_000_000}]));
    assert!(message.contains("max_value_bytes = 1000"), "{message}");
    assert!(!message.contains("fuel allocated for hostcalls"), "{message}");
}

#[test]
fn a_tasks_export_that_never_returns_names_the_load_limit() {
    let wf = workflow("[workflow]\nflow = \"hostile\"\n[tasks.hostile]\nmodule = \"bad\"\n");
    let bytes = crate::hostile::component_with("", "(loop $l (br $l)) (i32.const 16)");
    std::fs::write(wf.dir.path().join("bad.wasm"), bytes).unwrap();
    let text = std::fs::read_to_string(&wf.path).unwrap().replace("[modules]\n", "[modules]\nbad = \"bad.wasm\"\n");
    std::fs::write(&wf.path, text).unwrap();
    let out = cli(wf.dir.path(), &["validate", "workflow.toml", "--no-cache"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("did not return within the load time limit of 10 s"), "{out:?}");
}

/// A group of 100 members, all at once: the instance pool is sized from the
/// workflow, and a task waits for an instance rather than failing.
#[test]
fn a_group_as_wide_as_its_parallelism_completes() {
    let names: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let wf =
        workflow(&format!("[workflow]\nflow = \"({})\"\nparallelism = 100\n{}", names.join(" | "), scripted(&refs)));
    let sleeps: serde_json::Map<String, Value> =
        names.iter().map(|n| (n.clone(), json!([{"op": "sleep", "ms": 200}]))).collect();
    let out = wf.run(&scripts(Value::Object(sleeps)), &[]);
    let result = out.ok().json();
    assert_eq!(result.as_object().unwrap().len(), 100, "{result}");
}

fn spawn_run(wf: &Wf, input: &Value, extra: &[&str]) -> std::process::Child {
    let input = input.to_string();
    let mut args = vec!["run", "workflow.toml", "--input", &input];
    args.extend_from_slice(extra);
    command(wf.dir.path()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Wait until the channel-independent sign that `task` started: the log line
/// the testkit writes (`print`), on stderr.
fn wait_started(child: &mut std::process::Child, marker: &str) -> String {
    use std::io::Read;
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(marker) {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "the run ended before {marker}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    });
    seen
}

#[test]
fn ctrl_c_stops_a_task_asleep_in_a_host_call_within_the_grace_period() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"a >> nap\"\n{}[tasks.nap]\nexport = \"script\"\nstdio = \"inherit\"\nlimits = {{ timeout_ms = 60000 }}\n",
        scripted(&["a"])
    ));
    let input = scripts(json!({"nap": [{"op": "print", "text": "napping"}, {"op": "sleep", "ms": 20000}]}));
    let mut child = spawn_run(&wf, &input, &["--grace-period-ms", "300"]);
    wait_started(&mut child, "napping");
    let signalled = Instant::now();
    sigint(&child);
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(5));
    assert!(took < Duration::from_secs(5), "exited {took:?} after the signal, with a 300 ms grace period");
    let latest = graflow_host::checkpoint::latest(&wf.checkpoints()).unwrap();
    let loaded = load_cp(&latest.base);
    assert_eq!(loaded.state_file.pending_tasks[0].task_id, "nap", "the stopped task is queued again");
    assert_eq!(latest.meta.user_metadata["task_id"], "a", "the checkpoint names the last completed task");
}

#[test]
fn a_group_that_finishes_within_the_grace_period_is_kept() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"first >> (s1 | s2) >> after\"\n{}[tasks.s1]\nexport = \"script\"\nstdio = \"inherit\"\n[tasks.s2]\nexport = \"script\"\n",
        scripted(&["first", "after"])
    ));
    let input = scripts(json!({
        "s1": [{"op": "print", "text": "branches-running"}, {"op": "sleep", "ms": 1500}],
        "s2": [{"op": "sleep", "ms": 1500}],
        "after": [{"op": "return", "key": "order"}]
    }));
    let mut child = spawn_run(&wf, &input, &["--grace-period-ms", "10000"]);
    wait_started(&mut child, "branches-running");
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    let latest = graflow_host::checkpoint::latest(&wf.checkpoints()).unwrap();
    assert_eq!(latest.meta.user_metadata["task_id"], "group_1", "{:?}", latest.meta);
    assert_eq!(latest.meta.user_metadata["mode"], "interrupt");
    let loaded = load_cp(&latest.base);
    assert_eq!(loaded.state_file.pending_tasks[0].task_id, "after", "the group's work was kept");
    let listed = cli(wf.dir.path(), &["checkpoints", "list"]);
    assert!(listed.ok().stdout.contains("after group_1 (interrupt)"), "{listed:?}");
    let resumed = cli(wf.dir.path(), &["resume", "--latest"]);
    assert_eq!(resumed.ok().json(), json!(["first", "s2", "after"]), "the branches ran once");
}

/// Runs, resumes and prunes at once on one directory; afterwards every
/// committed checkpoint resumes from a copy without the original `.wasm`.
#[test]
fn concurrent_runs_resumes_and_prunes_lose_nothing() {
    let tasks = ["a", "b", "c", "d", "e"];
    let wf = workflow(&format!("[workflow]\nflow = \"{}\"\n{}", tasks.join(" >> "), scripted(&tasks)));
    let input = scripts(json!({"e": [{"op": "return", "key": "order"}]}));
    let expected = wf.run(&input, &["--checkpoint-every", "1"]).ok().json();
    let first = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap().remove(0).base;
    let dir = wf.dir.path().to_path_buf();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(("run", spawn_run(&wf, &input, &["--checkpoint-every", "1"])));
    }
    for _ in 0..2 {
        let mut c = command(&dir);
        c.args(["resume", first.to_str().unwrap(), "--checkpoint-every", "1"]);
        children.push(("resume", c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()));
    }
    let pruner = std::thread::spawn(move || {
        (0..6)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(15));
                cli(&dir, &["checkpoints", "prune", "--keep", "4"])
            })
            .collect::<Vec<_>>()
    });
    for (what, child) in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match (what, out.status.code()) {
            (_, Some(0)) => assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), expected),
            ("resume", Some(2)) => assert!(stderr.contains("no checkpoint at"), "pruned before it was read: {stderr}"),
            other => panic!("{other:?}: {stderr}"),
        }
    }
    for prune in pruner.join().unwrap() {
        prune.ok();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    copy_dir(&wf.checkpoints(), &elsewhere.path().join("cps"));
    drop(wf);
    let all = graflow_host::checkpoint::list(&elsewhere.path().join("cps")).unwrap();
    assert!(all.len() >= 4, "{} committed checkpoints", all.len());
    for s in all {
        let out = cli(elsewhere.path(), &["resume", s.base.to_str().unwrap()]);
        assert_eq!(out.ok().json(), expected, "{}", s.base.display());
    }
    let leftovers: Vec<PathBuf> = walk(&elsewhere.path().join("cps"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp-")))
        .collect();
    assert!(leftovers.is_empty(), "no temp files are left: {leftovers:?}");
}

#[test]
fn two_resumes_of_one_checkpoint_never_overwrite_each_other() {
    let tasks = ["a", "b", "c"];
    let wf = workflow(&format!("[workflow]\nflow = \"{}\"\n{}", tasks.join(" >> "), scripted(&tasks)));
    let input = scripts(json!({"a": [{"op": "checkpoint"}], "c": [{"op": "return", "key": "order"}]}));
    let expected = wf.run(&input, &[]).ok().json();
    let first = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap().remove(0).base;
    let children: Vec<_> = (0..2)
        .map(|_| {
            command(wf.dir.path())
                .args(["resume", first.to_str().unwrap(), "--checkpoint-every", "1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let all = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap();
    assert_eq!(all.len(), 1 + 2 * 2, "each resume wrote its own two checkpoints");
    for s in all {
        assert_eq!(cli(wf.dir.path(), &["resume", s.base.to_str().unwrap()]).ok().json(), expected);
    }
}

#[test]
fn stale_temp_files_of_dead_writers_are_removed() {
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    wf.run(&scripts(json!({"a": [{"op": "checkpoint"}]})), &[]).ok();
    let session = std::fs::read_dir(wf.checkpoints())
        .unwrap()
        .flatten()
        .find(|e| e.file_name() != "modules" && e.path().is_dir())
        .unwrap()
        .path();
    // A pid that cannot be alive (above the kernel's pid_max).
    let stale = session.join(".tmp-99999999-abc");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let out = cli(wf.dir.path(), &["checkpoints", "prune", "--keep", "10"]);
    assert!(out.ok().stdout.contains("1 temp files of dead writers"), "{out:?}");
    assert!(!stale.exists());
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn a_guest_printing_past_the_capture_keeps_running() {
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b\"\n{}", scripted(&["a", "b"])));
    let text = "x".repeat(100_000);
    let input = scripts(json!({
        "a": [{"op": "print", "text": text}, {"op": "print", "text": "again"}],
        "b": [{"op": "result", "value": "done"}]
    }));
    let out = wf.run(&input, &[]);
    assert_eq!(out.ok().json(), json!("done"));
    assert!(out.stderr.contains("more bytes not kept"), "{}", &out.stderr[out.stderr.len().saturating_sub(400)..]);
}

#[test]
fn a_group_that_re_enters_itself_from_its_branches_stops_at_the_nesting_bound() {
    let wf = workflow(&format!("[workflow]\nflow = \"(a | b)\"\n{}", scripted(&["a", "b"])));
    let again = json!([{"op": "next_task", "task": "group_1", "input": null}]);
    let out = wf.run(&scripts(json!({"a": again, "b": again})), &["--json"]);
    // Threads for branches are a run-wide budget: past it a group runs its
    // members on its own thread, so the nesting bound is reached, not the
    // machine's thread limit.
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.json()["error"].as_str().unwrap().contains("flow::MAX_DEPTH = 32"), "{out:?}");
}

#[test]
fn a_groups_result_is_bounded_like_any_value() {
    let members = ["a", "b", "c"];
    let body = |bounds: &str| {
        format!(
            "[workflow]\nflow = \"(a | b | c) >> d\"\n[workflow.bounds]\n{bounds}\n{}",
            scripted(&["a", "b", "c", "d"])
        )
    };
    let mut s = serde_json::Map::new();
    for m in members {
        let key = format!("k{m}");
        s.insert(m.into(), json!([{"op": "big_value", "key": key, "bytes": 1_000_000}, {"op": "return", "key": key}]));
    }
    let input = scripts(Value::Object(s));
    let out = workflow(&body("max_value_bytes = 2000000")).run(&input, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("the result of group 'group_1'") && out.stderr.contains("max_value_bytes"), "{out:?}");
    let out = workflow(&body("max_channel_bytes = 7000000")).run(&input, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("the branches of group 'group_1' and its result")
            && out.stderr.contains("max_channel_bytes"),
        "the group is named, not its successor: {out:?}"
    );
}

#[test]
fn ids_made_in_a_group_that_runs_again_are_new() {
    let wf =
        workflow(&format!("[workflow]\nflow = \"(a | b) >> c\"\nmax_steps = 14\n{}", scripted(&["a", "b", "c", "d"])));
    let input = scripts(json!({
        "a": [{"op": "next_task", "task": "d", "input": null}],
        "c": [{"op": "next_task", "task": "group_1", "input": null}],
    }));
    let run = run_lib(&wf, input);
    assert!(matches!(run.result, Err(RunError::MaxSteps { .. })), "{:?}", run.result.as_ref().err());
    let spawned: Vec<String> = serde_json::from_value(run.get("spawned").unwrap()).unwrap();
    let ds: Vec<&String> = spawned.iter().filter(|id| id.starts_with("d#")).collect();
    assert!(ds.len() >= 2, "the group ran at least twice: {spawned:?}");
    let unique: std::collections::BTreeSet<&&String> = ds.iter().collect();
    assert_eq!(unique.len(), ds.len(), "an id made twice: {spawned:?}");
}

#[test]
fn generated_group_names_skip_tasks_declared_outside_the_flow() {
    let wf =
        workflow(&format!("[workflow]\nflow = \"a >> (b | c) >> d\"\n{}", scripted(&["a", "b", "c", "d", "group_1"])));
    let valid = cli(wf.dir.path(), &["validate", "workflow.toml", "--json"]).ok().json();
    assert_eq!(valid["groups"]["group_2"]["members"], json!(["b", "c"]), "{valid}");
    assert!(valid["groups"].get("group_1").is_none(), "{valid}");
    assert_eq!(valid["tasks"]["group_1"]["in_flow"], json!(false), "{valid}");
}

/// Run `wf` with the guests' log lines on stderr: success, and stderr.
fn run_logging(wf: &Wf, input: &Value) -> (bool, String) {
    let out = command(wf.dir.path())
        .env("GRAFLOW_LOG", "task=info")
        .args(["run", "workflow.toml", "--input", &input.to_string()])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn guest_log_lines_are_one_line_each_and_bounded_per_execution() {
    let wf = workflow(&format!("[workflow]\nflow = \"t\"\n{}", scripted(&["t"])));
    let input = scripts(json!({"t": [
        {"op": "log", "message": "first\nFORGED host line\rover\u{1b}[31mred"},
        {"op": "print", "text": "out\rback"},
    ]}));
    let (ok, stderr) = run_logging(&wf, &input);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("first\\nFORGED host line\\rover\\u{1b}[31mred"), "{stderr}");
    assert!(!stderr.lines().any(|l| l.starts_with("FORGED")), "{stderr}");
    assert!(stderr.contains("out\\rback") && !stderr.contains('\r'), "{stderr}");
    // Its error message too.
    let failing = scripts(json!({"t": [{"op": "fail", "message": "boom\nFORGED host line"}]}));
    let out = wf.run(&failing, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("boom\\nFORGED host line"), "{out:?}");
    assert!(!out.stderr.lines().any(|l| l.starts_with("FORGED")), "{out:?}");
    // 80 lines of 60,000 bytes: past MAX_LOG_BYTES_PER_EXECUTION (4 MiB) the
    // rest are dropped, said once.
    let input = scripts(json!({"t": vec![json!({"op": "log_big", "bytes": 60_000}); 80]}));
    let (ok, stderr) = run_logging(&wf, &input);
    assert!(ok, "{stderr}");
    assert_eq!(stderr.matches("MAX_LOG_BYTES_PER_EXECUTION").count(), 1);
    assert!(stderr.len() < (4 << 20) + 200_000, "{} bytes of log", stderr.len());
}
