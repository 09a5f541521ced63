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
