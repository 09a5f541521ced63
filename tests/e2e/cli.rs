//! The command line around a run: `--json` objects, `graph`, `cache`,
//! completions and the man page, logs, "did you mean".

use crate::support::*;
use serde_json::{Value, json};

fn object(out: &Out) -> Value {
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one JSON object on stdout: {out:?}");
    serde_json::from_str(lines[0]).unwrap()
}

#[test]
fn json_objects_for_every_outcome() {
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b\"\n{}", scripted(&["a", "b"])));
    let done = object(&wf.run(&scripts(json!({"b": [{"op": "result", "value": 7}]})), &["--json"]));
    assert_eq!(
        (done["status"].as_str(), done["exit_code"].as_i64(), done["result"].clone()),
        (Some("completed"), Some(0), json!(7))
    );
    assert_eq!(done["steps"], 2);
    let failed = wf.run(&scripts(json!({"b": [{"op": "fail", "message": "no"}]})), &["--json"]);
    assert_eq!(failed.code, 1);
    let failed = object(&failed);
    assert_eq!((failed["status"].as_str(), failed["exit_code"].as_i64()), (Some("failed"), Some(1)));
    assert_eq!(failed["failures"][0]["task_id"], "b");
    assert_eq!(failed["failures"][0]["message"], "no");
    let max = object(&wf.run(&json!({}), &["--json", "--max-steps", "1"]));
    assert_eq!((max["status"].as_str(), max["exit_code"].as_i64()), (Some("max_steps"), Some(3)));
    let cp = max["checkpoint"].as_str().unwrap().to_string();
    let resumed = object(&cli(wf.dir.path(), &["resume", &cp, "--json"]));
    assert_eq!(resumed["status"], "completed");
    let bad = cli(wf.dir.path(), &["run", "nope.toml", "--json"]);
    assert_eq!(bad.code, 2);
    let bad = object(&bad);
    assert_eq!(bad["status"], "bad_input");
    assert!(bad["error"].as_str().unwrap().contains("nope.toml"), "{bad}");
    let listed = cli(wf.dir.path(), &["checkpoints", "list", "--json"]);
    let listed = object(&listed);
    assert_eq!(listed[0]["mode"], "max_steps");
    assert_eq!(listed[0]["after"], "a");
    assert_eq!(listed[0]["schema_version"], 2);
    let valid = object(&cli(wf.dir.path(), &["validate", "workflow.toml", "--json"]));
    assert_eq!((valid["status"].as_str(), valid["start"].as_str()), (Some("valid"), Some("a")));
    assert_eq!(valid["tasks"]["b"]["export"], "script");
}

#[test]
fn graph_pictures_in_three_formats() {
    let etl = example("etl");
    let dir = etl.parent().unwrap();
    let mermaid = cli(dir, &["graph", "workflow.toml", "--format", "mermaid"]);
    let text = mermaid.ok().stdout.clone();
    assert!(
        text.starts_with("flowchart LR") && text.contains("subgraph") && text.contains("(parallel, strict)"),
        "{text}"
    );
    let dot = cli(dir, &["graph", "workflow.toml", "--format", "dot"]);
    assert!(dot.ok().stdout.contains("subgraph \"cluster_"), "{dot:?}");
    let ascii = cli(dir, &["graph", "workflow.toml"]);
    let text = &ascii.ok().stdout;
    assert!(text.contains("+= transforms (parallel, strict) =+"), "{text}");
    assert!(text.contains("| | transform_a | | transform_b | |"), "{text}");
    assert!(text.contains("| fetch |\n+-------+\n    |\n    v\n"), "boxes joined by arrows: {text}");
    let wf = workflow(&format!("[workflow]\nflow = \"coordinator\"\n{}", scripted(&["coordinator", "worker"])));
    let out = cli(wf.dir.path(), &["graph", "workflow.toml"]);
    assert!(out.ok().stdout.contains("only reachable by next_task: worker"), "{out:?}");
}

#[test]
fn typos_get_a_did_you_mean() {
    let wf = workflow("[workflow]\nflow = \"scirpt\"");
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("did you mean 'script'?") && out.stderr.contains("it exports: "), "{out:?}");
    let wf = workflow("[workflow]\nflow = \"a\"\n[tasks.a]\nmodule = \"kitt\"\nexport = \"script\"");
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert!(out.stderr.contains("did you mean 'kit'?"), "{out:?}");
}

#[test]
fn the_compiled_module_cache_is_listed_and_pruned() {
    let cache = tempfile::tempdir().unwrap();
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let with_cache = |args: &[&str]| {
        let out = command(wf.dir.path()).args(args).env("GRAFLOW_CACHE_DIR", cache.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    with_cache(&["run", "workflow.toml"]);
    std::fs::write(cache.path().join(format!("{}-0000000000000000.cwasm", "ab".repeat(32))), b"stale").unwrap();
    let listed = with_cache(&["cache", "list"]);
    assert!(listed.contains("2 entries") && listed.contains("(other engine: unusable)"), "{listed}");
    // The module's name and file where a run recorded them; said where not.
    let kit = wf.dir.path().join("kit.wasm");
    assert!(listed.contains(&format!("kit ({})", std::path::absolute(&kit).unwrap().display())), "{listed}");
    assert!(listed.contains("(module name not recorded)"), "{listed}");
    let pruned = with_cache(&["cache", "prune"]);
    assert!(pruned.contains("removed 1 compiled components"), "{pruned}");
    assert!(with_cache(&["cache", "prune", "--all"]).contains("removed 1 compiled components"));
    let names = std::fs::read_dir(cache.path().join("names")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(names, 0, "the names of modules no longer compiled are removed with them");
}

#[test]
fn completions_man_page_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let bash = cli(dir.path(), &["completions", "bash"]);
    assert!(bash.ok().stdout.contains("graflow-host"));
    let man = cli(dir.path(), &["man"]);
    assert!(man.ok().stdout.starts_with(".ie") || man.stdout.contains(".TH graflow-host"), "{}", &man.stdout[..200]);
    // The main page names the commands' pages; each can be produced.
    let plain = |page: &str| page.replace("\\-", "-");
    assert!(plain(&man.stdout).contains("graflow-host-run(1)"), "{}", man.stdout);
    assert!(!plain(&man.stdout).contains("--max-steps"), "the main page has the global options only");
    let run = cli(dir.path(), &["man", "run"]);
    assert!(plain(&run.ok().stdout).contains("--max-steps") && run.stdout.contains("graflow"), "{run:?}");
    let list = cli(dir.path(), &["man", "checkpoints", "list"]);
    assert!(plain(&list.ok().stdout).contains("--json"), "{list:?}");
    let nosuch = cli(dir.path(), &["man", "frobnicate"]);
    assert_eq!(nosuch.code, 2, "{nosuch:?}");
    assert!(nosuch.stderr.contains("no command 'frobnicate'") && nosuch.stderr.contains("resume"), "{nosuch:?}");
    cli(dir.path(), &["man", "--out-dir", "pages"]).ok();
    let pages =
        ["graflow-host.1", "graflow-host-run.1", "graflow-host-checkpoints-list.1", "graflow-host-feedback-answer.1"];
    for page in pages {
        assert!(dir.path().join("pages").join(page).is_file(), "{page} written");
    }
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let out = command(wf.dir.path())
        .args([
            "--log-format",
            "json",
            "run",
            "workflow.toml",
            "--input",
            &scripts(json!({"a": [{"op": "log", "message": "hi"}]})).to_string(),
        ])
        .env_remove("GRAFLOW_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("\"hi\"")).unwrap_or_else(|| panic!("{stderr}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!((v["fields"]["task"].as_str(), v["fields"]["module"].as_str()), (Some("a"), Some("kit")), "{v}");
    assert!(!stderr.contains('\u{1b}'), "no colour codes when stderr is not a terminal");
}

#[test]
fn logs_print_the_events_of_a_run() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"a >> b\"\nmax_retries = 1\nbackoff = {{ initial_ms = 1 }}\n{}",
        scripted(&["a", "b"])
    ));
    let input = scripts(json!({
        "a": [{"op": "log", "message": "hello from a"}, {"op": "checkpoint"}],
        "b": [{"op": "retryable", "message": "the 'fetch' was flaky", "attempt": 0}]
    }));
    wf.run(&input, &[]).ok();
    let cp = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap().remove(0).base;
    let out = cli(wf.dir.path(), &["logs", cp.to_str().unwrap()]);
    let text = out.ok().stdout.clone();
    for needle in [
        "started   a (a in kit, attempt 1)",
        "info      a [kit] hello from a",
        "checkpoint ",
        "failed    b",
        "(retrying): ",
        "finished  b",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
    assert!(text.contains("the 'fetch' was flaky") && !text.contains("\\'"), "quotes as they are: {text}");
    let json = cli(wf.dir.path(), &["logs", cp.parent().unwrap().to_str().unwrap(), "--json"]);
    let events: Vec<Value> = json.ok().stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().any(|e| e["event"] == "task_failed" && e["retrying"] == true), "{events:?}");
    // Attempts count from 1 in both forms.
    let attempts = |event: &str, task: &str| -> Vec<Value> {
        events.iter().filter(|e| e["event"] == event && e["task_id"] == task).map(|e| e["attempt"].clone()).collect()
    };
    assert_eq!(attempts("task_started", "a"), [json!(1)], "{events:?}");
    assert_eq!(attempts("task_failed", "b"), [json!(1)], "{events:?}");
    assert_eq!(attempts("task_started", "b"), [json!(1), json!(2)], "{events:?}");
    assert_eq!(attempts("task_finished", "b"), [json!(2)], "{events:?}");
    assert!(text.contains("started   b (b in kit, attempt 2)"), "{text}");
    let none = cli(wf.dir.path(), &["logs", "nowhere"]);
    assert_eq!(none.code, 2, "{none:?}");
}

/// The live line and the summary, through a pseudo-terminal (`script`).
#[test]
fn a_terminal_gets_a_live_line_and_a_summary() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        skipped(
            "GRAFLOW_REQUIRE_SCRIPT",
            "`script` is not installed (apt-get install bsdutils); the pseudo-terminal test needs it",
        );
        return;
    }
    let wf = workflow(&format!("[workflow]\nflow = \"a >> (b | c)\"\n{}", scripted(&["a", "b", "c"])));
    let input = scripts(json!({"a": [{"op": "checkpoint"}], "b": [{"op": "sleep", "ms": 300}]})).to_string();
    let bin = env!("CARGO_BIN_EXE_graflow-host");
    let line = format!("{bin} run workflow.toml --input '{input}'");
    let out = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .current_dir(wf.dir.path())
        .env("GRAFLOW_CACHE_DIR", cache_dir())
        .env("GRAFLOW_CHECKPOINT_KEY", TEST_KEY_HEX)
        .env("GRAFLOW_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("done, ") && text.contains("running b"), "the live line: {text}");
    assert!(text.contains("execution") && text.contains("attempts"), "the summary: {text}");
    assert!(text.contains("checkpoints written: 1"), "{text}");
    // Not on a terminal: neither.
    let plain = wf.run(&serde_json::from_str(&input).unwrap(), &[]);
    assert!(!plain.ok().stderr.contains("done, "), "{plain:?}");
}

#[test]
fn input_from_stdin_and_resume_of_a_directory() {
    use std::io::Write;
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let mut child = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", "@-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = scripts(json!({"a": [{"op": "result", "value": "from stdin"}]})).to_string();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "\"from stdin\"",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (A run without a checkpoint directory leaves none: make one to name.)
    std::fs::create_dir_all(wf.dir.path().join("checkpoints")).unwrap();
    let dir = cli(wf.dir.path(), &["resume", "checkpoints"]);
    assert_eq!(dir.code, 2);
    assert!(dir.stderr.contains("pass --latest"), "{dir:?}");
    let missing = cli(wf.dir.path(), &["run", "nope.toml"]);
    assert_eq!(missing.stderr.matches("No such file or directory").count(), 1, "the OS error once: {missing:?}");
}

/// Without --checkpoint-dir, a run that writes no checkpoint leaves nothing in
/// the current folder; one that does keeps its whole journal. `prune` removes
/// the journals of runs without a checkpoint, and their folders.
#[test]
fn a_run_without_a_checkpoint_dir_leaves_nothing_behind() {
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    wf.run(&json!({}), &[]).ok();
    assert!(!wf.checkpoints().exists(), "nothing in ./checkpoints for a run that wrote no checkpoint");
    let input = scripts(json!({"a": [{"op": "log", "message": "before the checkpoint"}, {"op": "checkpoint"}]}));
    wf.run(&input, &[]).ok();
    let logs = cli(wf.dir.path(), &["logs", "--latest"]);
    let text = logs.ok().stdout.clone();
    assert!(text.contains("started   a (a in kit, attempt 1)") && text.contains("before the checkpoint"), "{text}");
    // Asked for, the directory keeps the journal from the start.
    let out = wf.run(&json!({}), &["--checkpoint-dir", "cps", "--json"]);
    let session = out.ok().json()["session"].as_str().unwrap().to_string();
    let folder = wf.dir.path().join("cps").join(&session);
    assert!(folder.join("events.jsonl").is_file(), "{out:?}");
    let pruned = cli(wf.dir.path(), &["checkpoints", "prune", "--keep", "1", "cps"]);
    let said = pruned.ok().stdout.clone();
    assert!(said.contains("1 event journals of runs without a checkpoint, 1 empty run folders"), "{said}");
    assert!(!folder.exists(), "the emptied run folder is removed: {said}");
}

/// `--latest` for `checkpoints show`, `logs` and `resume`, with the directory
/// or one run's folder (what the error for a folder suggests).
#[test]
fn latest_takes_the_directory_or_a_run_folder() {
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b\"\n{}", scripted(&["a", "b"])));
    let max = wf.run(&json!({}), &["--max-steps", "1", "--json"]);
    assert_eq!(max.code, 3, "{max:?}");
    let session = max.json()["session"].as_str().unwrap().to_string();
    let folder = format!("checkpoints/{session}");
    let show = cli(wf.dir.path(), &["checkpoints", "show", "--latest"]);
    assert!(show.ok().stdout.contains(&format!("session:    {session}")), "{show:?}");
    let show = cli(wf.dir.path(), &["checkpoints", "show", "--latest", &folder]);
    assert!(show.ok().stdout.contains("pending:    b"), "{show:?}");
    let dir = cli(wf.dir.path(), &["checkpoints", "show", "checkpoints"]);
    assert_eq!(dir.code, 2);
    assert!(dir.stderr.contains("pass --latest"), "{dir:?}");
    let logs = cli(wf.dir.path(), &["logs", "--latest", &folder]);
    assert!(logs.ok().stdout.contains("started   a"), "{logs:?}");
    let refused = cli(wf.dir.path(), &["resume", &folder]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("pass --latest"), "{refused:?}");
    let resumed = cli(wf.dir.path(), &["resume", "--latest", &folder]);
    assert_eq!(resumed.ok().json()["task"], "b", "{resumed:?}");
}

/// A --max-steps the checkpoint already reached is refused before anything
/// runs (no stop "after max_steps = 2" at 3 steps, no copy of the checkpoint);
/// --checkpoint-every 0 is refused like --max-steps 0.
#[test]
fn step_options_that_cannot_work_are_refused() {
    let tasks = scripted(&["a", "b", "c", "d"]);
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b >> c >> d\"\n{tasks}"));
    let max = wf.run(&json!({}), &["--max-steps", "3", "--json"]);
    assert_eq!(max.code, 3, "{max:?}");
    let cp = max.json()["checkpoint"].as_str().unwrap().to_string();
    let before = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap().len();
    let out = cli(wf.dir.path(), &["resume", &cp, "--max-steps", "2"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--max-steps 2 allows no more tasks")
            && out.stderr.contains("already has 3 completed tasks"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("stopped after"), "{out:?}");
    assert_eq!(graflow_host::checkpoint::list(&wf.checkpoints()).unwrap().len(), before, "no checkpoint written");
    let more = cli(wf.dir.path(), &["resume", &cp, "--max-steps", "4"]);
    assert_eq!(more.ok().json()["task"], "d");
    let zero = wf.run(&json!({}), &["--checkpoint-every", "0"]);
    assert_eq!(zero.code, 2, "{zero:?}");
    assert!(zero.stderr.contains("--checkpoint-every must be at least 1"), "{zero:?}");
}

/// `serve` refuses a folder that is not there, and takes `localhost:PORT`.
#[test]
fn serve_refuses_a_missing_folder_and_listens_on_localhost() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let missing = cli(dir.path(), &["serve", "nosuchdir"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("nosuchdir does not exist"), "{missing:?}");
    let no_port = cli(dir.path(), &["serve", "--listen", "localhost"]);
    assert_eq!(no_port.code, 2, "{no_port:?}");
    assert!(no_port.stderr.contains("use IP:PORT, e.g. 127.0.0.1:8787"), "{no_port:?}");
    std::fs::create_dir(dir.path().join("checkpoints")).unwrap();
    let mut child = command(dir.path())
        .args(["serve", "--listen", "localhost:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.contains("at http://127.0.0.1:"), "{line}");
}

/// An unknown feedback id says where the pending ones are listed.
#[test]
fn an_unknown_feedback_id_points_at_feedback_list() {
    let dir = tempfile::tempdir().unwrap();
    let id = "0123456789abcdef";
    for args in [&["feedback", "show", id][..], &["feedback", "answer", id, "--approve"]] {
        let out = cli(dir.path(), args);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains("no feedback request '0123456789abcdef'")
                && out.stderr.contains("graflow-host feedback list checkpoints")
                && out.stderr.contains("--redis URL"),
            "{out:?}"
        );
    }
}

/// An unreachable Redis: its OS error once.
#[test]
fn an_unreachable_redis_says_its_os_error_once() {
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let out = wf.run(&json!({}), &["--redis", "redis://127.0.0.1:1"]);
    assert_eq!(out.code, 2, "{out:?}");
    let line = out.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(line.contains("cannot reach Redis at redis://127.0.0.1:1"), "{line}");
    assert_eq!(line.matches("os error").count(), 1, "{line}");
}

#[test]
fn commands_on_a_missing_checkpoint_directory_say_so() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["resume", "--latest"][..], &["checkpoints", "list"], &["checkpoints", "show", "--latest"]] {
        let out = cli(dir.path(), args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains("there is no checkpoint directory checkpoints here"), "{args:?}: {}", out.stderr);
    }
}
