//! Bad workflow files and bad input: each gets its own message, exit code 2,
//! before anything runs.

use crate::support::*;

fn refused(body: &str) -> String {
    let wf = workflow(body);
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert_eq!(out.code, 2, "expected exit 2: {out:?}");
    let run = cli(wf.dir.path(), &["run", "workflow.toml"]);
    assert_eq!(run.code, 2, "run refuses what validate refuses: {run:?}");
    assert!(run.stdout.is_empty(), "nothing ran: {run:?}");
    out.stderr
}

#[test]
fn flow_syntax_error_points_at_the_column() {
    let err = refused("[workflow]\nflow = \"noop >> >> echo\"");
    assert!(err.contains("flow syntax error at column 9"), "{err}");
    assert!(err.contains("noop >> >> echo\n          ^"), "{err}");
}

#[test]
fn unknown_task_in_the_flow() {
    let err = refused("[workflow]\nflow = \"noop >> nosuch\"");
    assert!(err.contains("unknown task 'nosuch'"), "{err}");
    // The typo is not listed among the tasks that exist.
    let declared = err.split("declared tasks: ").nth(1).unwrap_or_else(|| panic!("{err}"));
    assert!(declared.starts_with("noop") && !declared.contains("nosuch"), "{err}");
    let err = refused("[workflow]\nflow = \"scirpt\"");
    assert!(err.contains("declared tasks: none; did you mean 'script'?"), "{err}");
}

#[test]
fn task_the_component_does_not_export() {
    let err = refused("[workflow]\nflow = \"a\"\n[tasks.a]\nexport = \"missing_export\"");
    assert!(err.contains("task 'a': module 'kit' does not export a task named 'missing_export'"), "{err}");
    assert!(err.contains("it exports: script, noop, echo"), "{err}");
}

#[test]
fn task_with_an_unknown_module() {
    let err = refused("[workflow]\nflow = \"a\"\n[tasks.a]\nmodule = \"other\"\nexport = \"noop\"");
    assert!(err.contains("task 'a' uses module 'other', which is not in [modules]"), "{err}");
}

#[test]
fn missing_module_file() {
    let wf = workflow("[workflow]\nflow = \"noop\"");
    std::fs::remove_file(wf.dir.path().join("kit.wasm")).unwrap();
    let out = cli(wf.dir.path(), &["run", "workflow.toml"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("module 'kit': cannot read") && out.stderr.contains("kit.wasm"), "{out:?}");
}

#[test]
fn a_file_that_is_not_a_component() {
    let wf = workflow("[workflow]\nflow = \"noop\"");
    std::fs::write(wf.dir.path().join("kit.wasm"), b"just text").unwrap();
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("is not a WebAssembly component: the file does not start with the WebAssembly magic number"),
        "{out:?}"
    );
    std::fs::write(wf.dir.path().join("kit.wasm"), wat::parse_str("(module)").unwrap()).unwrap();
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert!(out.stderr.contains("it is a core WebAssembly module"), "{out:?}");
}

#[test]
fn a_component_without_the_contract() {
    let wf = workflow("[workflow]\nflow = \"noop\"");
    std::fs::write(wf.dir.path().join("kit.wasm"), wat::parse_str("(component)").unwrap()).unwrap();
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("does not fit the graflow task contract"), "{out:?}");
}

#[test]
fn bad_toml_and_unknown_fields_name_the_place() {
    let err = refused("[workflow]\nflow = \"noop\"\nmax_stepz = 3");
    assert!(err.contains("unknown field `max_stepz`"), "{err}");
    let err = refused("[workflow\nflow = 1");
    assert!(err.contains("workflow.toml") && err.contains("line 1"), "{err}");
}

#[test]
fn invalid_settings_name_the_field() {
    let err = refused("[workflow]\nflow = \"noop\"\n[tasks.noop]\nmax_cycles = 0");
    assert!(err.contains("[tasks.noop].max_cycles: must be at least 1"), "{err}");
    let err = refused(
        "[workflow]\nflow = \"(noop | echo)\"\n[groups.g]\nmembers = [\"noop\", \"echo\"]\npolicy = \"sometimes\"",
    );
    assert!(
        err.contains("line 5") && err.contains("unknown variant `sometimes`") && err.contains("`best_effort`"),
        "{err}"
    );
    let err = refused("[workflow]\nflow = \"noop >> echo; echo >> noop\"");
    assert!(err.contains("[workflow].start") && err.contains("set `start`"), "{err}");
}

#[test]
fn bad_input_json() {
    let wf = workflow("[workflow]\nflow = \"noop\"");
    let out = cli(wf.dir.path(), &["run", "workflow.toml", "--input", "{nope"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--input is not valid JSON"), "{out:?}");
    let out = cli(wf.dir.path(), &["run", "workflow.toml", "--input", "[1]"]);
    assert!(out.stderr.contains("--input must be a JSON object"), "{out:?}");
    // A bare value: what was given, and what a run input looks like.
    let out = cli(wf.dir.path(), &["run", "workflow.toml", "--input", "2026-11-27"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--input is not valid JSON: '2026-11-27': ")
            && out.stderr.contains("the run input is a JSON object, e.g. --input '{\"day\": \"2026-11-27\"}'"),
        "{out:?}"
    );
}

#[test]
fn a_folder_named_instead_of_its_workflow_file() {
    let wf = workflow("[workflow]\nflow = \"noop\"");
    for command in ["run", "validate", "graph"] {
        let out = cli(wf.dir.path(), &[command, "."]);
        assert_eq!(out.code, 2, "{command}: {out:?}");
        assert!(out.stderr.contains(". is a folder: did you mean ./workflow.toml?"), "{command}: {out:?}");
    }
}

#[test]
fn a_module_not_built_yet_gets_the_build_command() {
    let dir = tempfile::tempdir().unwrap();
    cli(dir.path(), &["new", "proj", "--lang", "python"]).ok();
    let project = dir.path().join("proj");
    std::fs::rename(project.join("app.py"), project.join("tasks.py")).unwrap();
    std::fs::write(
        project.join("workflow.toml"),
        "[workflow]\nflow = \"greet >> shout\"\n[modules]\ntasks = \"tasks.wasm\"\n",
    )
    .unwrap();
    let out = cli(&project, &["run", "workflow.toml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("tasks.wasm") && out.stderr.contains("No such file or directory"), "{out:?}");
    assert!(out.stderr.contains("the module is not built yet: graflow-host build tasks.py -o tasks.wasm"), "{out:?}");
    // From elsewhere, the paths say where.
    let out = cli(dir.path(), &["validate", "proj/workflow.toml"]);
    assert!(out.stderr.contains("graflow-host build proj/tasks.py -o proj/tasks.wasm"), "{out:?}");
}

/// A syntax error in a Python or JavaScript task module is reported as the
/// language reports it (file, line), not as the build tool's backtrace or
/// error count.
#[test]
fn a_syntax_error_in_build_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "from graflow import task\n\n\n@task\ndef greet(name: str) -> str\n    return name\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["build", "app.py"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("app.py:5:") && out.stderr.contains("SyntaxError"), "{out:?}");
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"), "{out:?}");
    std::fs::write(
        dir.path().join("app.js"),
        "import { task, tasks, run } from './graflow.js';\n\ntask(function greet({ name }) {\n  return `hi ${name}`;\n);\nexport { tasks, run };\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["build", "app.js"]);
    assert_eq!(out.code, 2, "{out:?}");
    if std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        assert!(out.stderr.contains("app.js:5") && out.stderr.contains("SyntaxError"), "{out:?}");
    }
}

#[test]
fn help_documents_commands_and_exit_codes() {
    let out = cli(std::path::Path::new("."), &["--help"]);
    out.ok();
    for word in ["run", "resume", "checkpoints", "validate", "Exit codes", "interrupted"] {
        assert!(out.stdout.contains(word), "--help lacks {word}: {}", out.stdout);
    }
    let out = cli(std::path::Path::new("."), &["run", "--help"]);
    assert!(out.stdout.contains("--checkpoint-every") && out.stdout.contains("--max-steps"), "{}", out.stdout);
    let out = cli(std::path::Path::new("."), &["frobnicate"]);
    assert_eq!(out.code, 2);
}

#[test]
fn tasks_resolve_to_the_one_module_that_exports_them() {
    let wf = workflow("[workflow]\nflow = \"noop >> lang\"");
    std::fs::copy(repo().join("tests/guests/parity_rust.wasm"), wf.dir.path().join("parity.wasm")).unwrap();
    let text =
        std::fs::read_to_string(&wf.path).unwrap().replace("[modules]\n", "[modules]\nparity = \"parity.wasm\"\n");
    std::fs::write(&wf.path, text).unwrap();
    assert_eq!(wf.run(&serde_json::json!({}), &[]).ok().json(), serde_json::json!("rust"));
    std::fs::copy(testkit(), wf.dir.path().join("kit2.wasm")).unwrap();
    let text = std::fs::read_to_string(&wf.path).unwrap().replace("[modules]\n", "[modules]\nkit2 = \"kit2.wasm\"\n");
    std::fs::write(&wf.path, text).unwrap();
    let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("[tasks.noop].module: modules 'kit' and 'kit2' all export 'noop': set `module`"),
        "{out:?}"
    );
}

#[test]
fn a_missing_declared_input_is_named_with_where_the_host_looked() {
    let wf = workflow("[workflow]\nflow = \"load\"");
    let out = wf.run(&serde_json::json!({}), &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("missing field `path`"), "the task's own error, not a null: {out:?}");
    assert!(
        out.stderr.contains("declared input 'path' was not found: the host looked for channel key 'path.__result__', channel key 'path' and field 'path' of the run input"),
        "{out:?}"
    );
    let noted = command(wf.dir.path()).args(["run", "workflow.toml"]).env("GRAFLOW_LOG", "info").output().unwrap();
    let noted = String::from_utf8_lossy(&noted.stderr);
    assert!(
        noted.contains("task 'load' runs first and declares the input 'path', which the run input does not give"),
        "said before the run: {noted}"
    );
    let ok = wf.run(&serde_json::json!({"path": "/x"}), &[]);
    assert_eq!(ok.ok().json(), serde_json::json!("/x"));
}

#[test]
fn a_task_function_without_an_argument_is_a_task() {
    let wf = workflow("[workflow]\nflow = \"bare\"");
    assert_eq!(wf.run(&serde_json::json!({}), &[]).ok().json(), serde_json::json!("no argument at all"));
}
