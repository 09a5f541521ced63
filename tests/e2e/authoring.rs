//! Writing tasks from a folder outside the repository: `new` writes a starter,
//! `build` makes its component (installing the pinned toolchain into the
//! cache on first use), `run` runs it unchanged.

use crate::support::*;
use serde_json::json;

fn in_new_project(lang: &str, build_src: &str) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(format!("starter-{lang}"));
    let out = cli(dir.path(), &["new", project.to_str().unwrap(), "--lang", lang]);
    assert!(out.ok().stdout.contains("graflow-host build"), "{out:?}");
    let built = cli(&project, &["build", build_src, "-o", "tasks.wasm"]);
    assert_eq!(built.code, 0, "{lang}: {built:?}");
    assert!(built.stderr.contains("built ") && project.join("tasks.wasm").exists(), "{built:?}");
    let run = cli(&project, &["run", "workflow.toml", "--input", r#"{"name":"graflow"}"#]);
    assert_eq!(run.ok().json(), json!("HELLO GRAFLOW!"), "{lang}");
    let again = cli(dir.path(), &["new", project.to_str().unwrap(), "--lang", lang]);
    assert_eq!(again.code, 2, "a second `new` into the same folder is refused: {again:?}");
}

#[test]
fn a_python_starter_builds_and_runs() {
    in_new_project("python", "tasks.py");
}

#[test]
fn a_javascript_starter_builds_and_runs() {
    in_new_project("js", "tasks.js");
}

#[test]
fn a_rust_starter_builds_and_runs() {
    in_new_project("rust", ".");
}

#[test]
fn common_mistakes_get_one_line_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), "from graflow import task\n\n@task\ndef a() -> int:\n    return 1\n")
        .unwrap();
    let out = cli(dir.path(), &["build", "app.py"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("import WitWorld from graflow"), "{out:?}");
    std::fs::write(
        dir.path().join("app.js"),
        "import { task } from './graflow.js';\ntask(function a() { return 1; });\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["build", "app.js"]);
    assert!(out.stderr.contains("export { tasks, run };"), "{out:?}");
    std::fs::write(dir.path().join("notes.txt"), "").unwrap();
    let out = cli(dir.path(), &["build", "notes.txt"]);
    assert!(out.stderr.contains("not a Python file (.py), a JavaScript file (.js) or a Rust crate"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
}
