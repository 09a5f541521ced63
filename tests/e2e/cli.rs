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
    assert!(ascii.ok().stdout.contains("[parallel, strict: transform_a | transform_b]"), "{ascii:?}");
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
    let pruned = with_cache(&["cache", "prune"]);
    assert!(pruned.contains("removed 1 compiled components"), "{pruned}");
    assert!(with_cache(&["cache", "prune", "--all"]).contains("removed 1 compiled components"));
}

#[test]
fn completions_man_page_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let bash = cli(dir.path(), &["completions", "bash"]);
    assert!(bash.ok().stdout.contains("graflow-host"));
    let man = cli(dir.path(), &["man"]);
    assert!(man.ok().stdout.starts_with(".ie") || man.stdout.contains(".TH graflow-host"), "{}", &man.stdout[..200]);
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
        "b": [{"op": "retryable", "message": "flaky", "attempt": 0}]
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
    let json = cli(wf.dir.path(), &["logs", cp.parent().unwrap().to_str().unwrap(), "--json"]);
    let events: Vec<Value> = json.ok().stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().any(|e| e["event"] == "task_failed" && e["retrying"] == true), "{events:?}");
    let none = cli(wf.dir.path(), &["logs", "nowhere"]);
    assert_eq!(none.code, 2, "{none:?}");
}

/// The live line and the summary, through a pseudo-terminal (`script`).
#[test]
fn a_terminal_gets_a_live_line_and_a_summary() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: `script` (util-linux) is not installed; the pseudo-terminal test needs it");
        return;
    }
    let wf = workflow(&format!("[workflow]\nflow = \"a >> (b | c)\"\n{}", scripted(&["a", "b", "c"])));
    let input = scripts(json!({"a": [{"op": "checkpoint"}], "b": [{"op": "sleep", "ms": 300}]})).to_string();
    let bin = env!("CARGO_BIN_EXE_graflow-host");
    let line = format!("{bin} run workflow.toml --input '{input}'");
    let out = command(wf.dir.path()).get_program().to_owned();
    assert_eq!(out, std::ffi::OsString::from(bin));
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
    let dir = cli(wf.dir.path(), &["resume", "checkpoints"]);
    assert_eq!(dir.code, 2);
    assert!(dir.stderr.contains("pass --latest"), "{dir:?}");
    let missing = cli(wf.dir.path(), &["run", "nope.toml"]);
    assert_eq!(missing.stderr.matches("No such file or directory").count(), 1, "the OS error once: {missing:?}");
}
