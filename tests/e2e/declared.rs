//! A component that declares its own workflow (WIT 0.1.3, world `task-app`):
//! run alone, overridden by a workflow file, granted nothing by itself,
//! refused when its declaration is hostile, resumed without its file.

use crate::support::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// A test guest copied into a fresh folder outside the repository.
fn guest_in(dir: &Path, name: &str) -> PathBuf {
    let from = repo().join(format!("tests/guests/{name}.wasm"));
    assert!(from.exists(), "{} is missing: run `make guests` first", from.display());
    let to = dir.join(format!("{name}.wasm"));
    std::fs::copy(&from, &to).unwrap();
    to
}

/// What `peek` reports when the component is granted nothing.
fn granted_nothing(total: i64) -> serde_json::Value {
    json!({"total": total, "env": null, "env_count": 0, "root": null, "file": null, "net_denied": true})
}

#[test]
fn a_component_runs_its_own_flow_with_the_settings_it_declares_and_gets_no_capability() {
    let dir = tempfile::tempdir().unwrap();
    guest_in(dir.path(), "declares");
    // fetch fails twice: only the max_retries = 2 its code declares lets it
    // complete. peek reaches nothing: a component alone is granted nothing.
    let out = cli(dir.path(), &["run", "declares.wasm"]);
    assert_eq!(out.ok().json(), granted_nothing(2 + 4 + 6 + 1 + 4 + 9));
    let valid = cli(dir.path(), &["validate", "declares.wasm", "--json"]);
    let v = valid.ok().json();
    assert_eq!(v["workflow"], "declared", "{v}");
    assert_eq!(v["flow"], "fetch >> (double | square) >> total >> peek", "{v}");
    assert_eq!(v["tasks"]["fetch"]["max_retries"], 2, "{v}");
    assert_eq!(v["tasks"]["total"]["max_cycles"], 3, "{v}");
    assert_eq!(v["tasks"]["double"]["max_retries"], 0, "built-in default: {v}");
    let graph = cli(dir.path(), &["graph", "declares.wasm", "--format", "mermaid"]);
    assert!(graph.ok().stdout.contains("fetch") && graph.stdout.contains("peek"), "{graph:?}");
}

#[test]
fn a_workflow_file_wins_over_what_the_component_declares() {
    let dir = tempfile::tempdir().unwrap();
    guest_in(dir.path(), "declares");
    let write = |text: &str| std::fs::write(dir.path().join("workflow.toml"), text).unwrap();
    // No flow in the file: the component's; its task table wins for fetch.
    write("[modules]\ndeclares = \"declares.wasm\"\n\n[tasks.fetch]\nmax_retries = 1\n");
    let v = cli(dir.path(), &["validate", "workflow.toml", "--json"]).ok().json();
    assert_eq!(v["tasks"]["fetch"]["max_retries"], 1, "the file's task table wins: {v}");
    assert_eq!(v["tasks"]["total"]["max_cycles"], 3, "the code's setting where the file is silent: {v}");
    assert_eq!(v["workflow"], "declared", "{v}");
    let failed = cli(dir.path(), &["run", "workflow.toml"]);
    assert_eq!(failed.code, 1, "fetch needs 2 retries and the file allows 1: {failed:?}");
    assert!(failed.stderr.contains("fetch"), "{failed:?}");
    // The file's [workflow] default wins over the code too.
    write("[workflow]\nmax_retries = 0\n\n[modules]\ndeclares = \"declares.wasm\"\n");
    let v = cli(dir.path(), &["validate", "workflow.toml", "--json"]).ok().json();
    assert_eq!(v["tasks"]["fetch"]["max_retries"], 0, "{v}");
    // The file's flow and name win over the declared ones; the file grants
    // what the component could not grant itself.
    write(
        "[workflow]\nname = \"mine\"\nflow = \"fetch >> double >> peek_all\"\n\n[modules]\ndeclares = \"declares.wasm\"\n\n\
         [tasks.peek_all]\nexport = \"peek\"\nenv = [\"HOME\"]\ninputs = [\"total\"]\n\n[tasks.double]\nmax_retries = 0\n",
    );
    let v = cli(dir.path(), &["validate", "workflow.toml", "--json"]).ok().json();
    assert_eq!(v["workflow"], "mine", "{v}");
    assert_eq!(v["tasks"]["fetch"]["max_retries"], 2, "code settings follow the export: {v}");
    let out = command(dir.path())
        .args(["run", "workflow.toml", "--input", r#"{"total": 7}"#])
        .env("HOME", "/granted/home")
        .output()
        .unwrap();
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(result["env"], "/granted/home", "granted by the file: {result}");
    assert_eq!(result["env_count"], 1, "{result}");
    assert_eq!(result["total"], 7, "{result}");
    assert_eq!(result["root"], serde_json::Value::Null, "no directory granted: {result}");
}

#[test]
fn hostile_or_missing_declarations_are_refused_naming_the_component() {
    let dir = tempfile::tempdir().unwrap();
    guest_in(dir.path(), "declares_bad");
    guest_in(dir.path(), "legacy");
    guest_in(dir.path(), "declares");
    let bad = cli(dir.path(), &["run", "declares_bad.wasm"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("declares_bad") && bad.stderr.contains("settings for task #4294967295"), "{bad:?}");
    // A declaration that traps, and one over the flow bound.
    guest_in(dir.path(), "declares_trap");
    guest_in(dir.path(), "declares_huge");
    let trap = cli(dir.path(), &["validate", "declares_trap.wasm"]);
    assert_eq!(trap.code, 2, "{trap:?}");
    assert!(
        trap.stderr.contains("declares_trap")
            && trap.stderr.contains("its `workflow` export trapped: wasm trap: wasm `unreachable`"),
        "{trap:?}"
    );
    let huge = cli(dir.path(), &["validate", "declares_huge.wasm"]);
    assert_eq!(huge.code, 2, "{huge:?}");
    assert!(huge.stderr.contains("a flow of 80000 bytes, over the bound of 65536 bytes"), "{huge:?}");
    // A component built against WIT 0.1.2 (no `workflow` export) is still a
    // task module: it runs from a workflow file, and alone it says what to do.
    let alone = cli(dir.path(), &["run", "legacy.wasm"]);
    assert_eq!(alone.code, 2, "{alone:?}");
    assert!(alone.stderr.contains("legacy.wasm: the component declares no flow"), "{alone:?}");
    std::fs::write(
        dir.path().join("workflow.toml"),
        "[workflow]\nflow = \"hello\"\n[modules]\nold = \"legacy.wasm\"\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["run", "workflow.toml"]);
    assert_eq!(out.ok().json(), json!("hello from a task-module component"));
    // Two modules that each declare a flow, and a file without one: refused.
    std::fs::write(
        dir.path().join("two.toml"),
        "[modules]\none = \"declares.wasm\"\ntwo = \"declares.wasm\"\n\n[tasks.fetch]\nmodule = \"one\"\n",
    )
    .unwrap();
    let two = cli(dir.path(), &["validate", "two.toml"]);
    assert_eq!(two.code, 2, "{two:?}");
    assert!(two.stderr.contains("modules 'one' and 'two' each declare a flow"), "{two:?}");
    // None declares one: the file must give it.
    std::fs::write(dir.path().join("none.toml"), "[modules]\nold = \"legacy.wasm\"\n").unwrap();
    let none = cli(dir.path(), &["validate", "none.toml"]);
    assert!(none.stderr.contains("[workflow].flow is missing"), "{none:?}");
}

#[test]
fn a_run_of_a_component_alone_resumes_without_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest_in(dir.path(), "declares");
    let stopped = cli(dir.path(), &["run", "declares.wasm", "--max-steps", "3"]);
    assert_eq!(stopped.code, 3, "{stopped:?}");
    std::fs::remove_file(&wasm).unwrap();
    let resumed = cli(dir.path(), &["resume", "--latest", "--max-steps", "50"]);
    assert_eq!(resumed.ok().json(), granted_nothing(26), "the checkpoint pins the component");
}
