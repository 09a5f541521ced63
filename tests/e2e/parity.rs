//! The same behaviour checks for a Rust, a Python and a JavaScript guest: one
//! contract, the same semantics in every language.

use crate::support::*;
use graflow_host::engine::{FailureKind, RunError};
use serde_json::json;

pub const LANGS: [(&str, &str); 3] =
    [("rust", "parity_rust.wasm"), ("python", "parity_py.wasm"), ("javascript", "parity_js.wasm")];

/// A workflow over the parity component of `lang`.
pub fn parity(lang: &str, body: &str) -> Wf {
    let file = LANGS.iter().find(|(l, _)| *l == lang).unwrap().1;
    let module = repo().join("tests/guests").join(file);
    assert!(module.exists(), "{} is missing: run `make guests` first", module.display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&module, dir.path().join("parity.wasm")).unwrap();
    let path = dir.path().join("workflow.toml");
    std::fs::write(&path, format!("{body}\n[modules]\np = \"parity.wasm\"\n")).unwrap();
    Wf { dir, path }
}

fn each(check: impl Fn(&str)) {
    for (lang, _) in LANGS {
        check(lang);
    }
}

#[test]
fn every_language_declares_its_inputs() {
    each(|lang| {
        let wf = parity(lang, "[workflow]\nflow = \"lang\"\n[tasks.produce]\n[tasks.consume]");
        let out = cli(wf.dir.path(), &["validate", "workflow.toml"]);
        assert!(out.ok().stdout.contains("task consume (dynamic only): p.consume inputs [produce]"), "{lang}: {out:?}");
        assert!(out.stdout.contains("task produce (dynamic only): p.produce inputs [seed]"), "{lang}: {out:?}");
        assert_eq!(wf.run(&json!({}), &[]).ok().json(), json!(lang));
    });
}

#[test]
fn channel_results_and_data_flow() {
    each(|lang| {
        let wf = parity(lang, "[workflow]\nflow = \"produce >> consume\"");
        let out = wf.run(&json!({"seed": 5}), &[]);
        // 10 (data flow) + 5 (channel) + 10 (results::get)
        assert_eq!(out.ok().json(), json!(25), "{lang}");
    });
}

#[test]
fn checkpoint_request_and_resume() {
    each(|lang| {
        let wf = parity(lang, "[workflow]\nflow = \"checkpointer >> produce >> consume\"");
        assert_eq!(wf.run(&json!({"seed": 1}), &[]).ok().json(), json!(5), "{lang}");
        let cp = graflow_host::checkpoint::latest(&wf.checkpoints()).unwrap();
        assert_eq!(cp.meta.user_metadata["lang"], lang);
        assert_eq!(cp.meta.user_metadata["task_id"], "checkpointer");
        let resumed = cli(wf.dir.path(), &["resume", cp.base.to_str().unwrap()]);
        assert_eq!(resumed.ok().json(), json!(5), "{lang}");
    });
}

#[test]
fn next_iteration_and_the_cycle_limit() {
    each(|lang| {
        let wf = parity(lang, "[workflow]\nflow = \"looper\"");
        assert_eq!(wf.run(&json!({}), &[]).ok().json(), json!({"n": 2, "cycle": 3}), "{lang}");
        let wf = parity(lang, "[workflow]\nflow = \"forever\"\n[tasks.forever]\nmax_cycles = 3");
        let run = run_lib(&wf, json!({}));
        match run.result {
            Err(RunError::TaskFailed { failure, task_id, .. }) => {
                assert_eq!(failure.kind, FailureKind::CycleLimit, "{lang}: {}", failure.message);
                assert_eq!(task_id, "forever@3", "{lang}");
                assert!(failure.message.contains("after 3 of max_cycles = 3 runs"), "{lang}: {}", failure.message);
            }
            other => panic!("{lang}: expected the cycle limit, got {other:?}"),
        }
    });
}

#[test]
fn a_retryable_error_is_retried() {
    each(|lang| {
        let wf = parity(lang, "[workflow]\nflow = \"flaky\"\nmax_retries = 2\nbackoff = { initial_ms = 1 }");
        assert_eq!(wf.run(&json!({}), &[]).ok().json(), json!(3), "{lang}: succeeds on the third attempt");
        let wf = parity(lang, "[workflow]\nflow = \"flaky\"\nmax_retries = 1\nbackoff = { initial_ms = 1 }");
        let out = wf.run(&json!({}), &[]);
        assert_eq!(out.code, 1, "{lang}: {out:?}");
        assert!(
            out.stderr.contains(&"failed (retryable)".to_string())
                && out.stderr.contains(&format!("try again ({lang})")),
            "{lang}: {out:?}"
        );
        assert!(out.stderr.contains("(after 2 attempts)"), "{lang}: {out:?}");
    });
}

#[test]
fn mixed_languages_in_one_workflow_compile_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let wf = example("mixed");
    for m in ["stats.wasm", "format.wasm"] {
        assert!(wf.parent().unwrap().join(m).exists(), "run `make guests` first");
    }
    let input = r#"{"readings":[21.5,-1,23.25,22]}"#;
    let run = |extra: &[&str]| {
        let mut args = vec!["run", wf.to_str().unwrap(), "--input", input];
        args.extend_from_slice(extra);
        let out = command(dir.path())
            .env("GRAFLOW_CACHE_DIR", &cache)
            .env("GRAFLOW_LOG", "graflow_host=debug")
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let expected = r#"{"languages":["rust","python","javascript"],"report":"3 readings in celsius: 21.5, 23.3, 22.0","stats":{"count":3,"max":23.25,"mean":22.25,"min":21.5}}"#;
    let (code, stdout, stderr) = run(&[]);
    assert_eq!((code, stdout.as_str()), (Some(0), expected), "{stderr}");
    assert_eq!(stderr.matches("': compiled ").count(), 3, "the first run compiles each module: {stderr}");
    let (code, stdout, stderr) = run(&[]);
    assert_eq!((code, stdout.as_str()), (Some(0), expected));
    assert!(!stderr.contains("': compiled "), "the second run compiles nothing: {stderr}");
    assert_eq!(stderr.matches("loaded from the compiled-module cache").count(), 3, "{stderr}");
    // A checkpoint after the Rust task, and a resume into the Python and JS tasks.
    let (code, _, _) = run(&["--max-steps", "1", "--checkpoint-dir", "cp"]);
    assert_eq!(code, Some(3));
    let out = command(dir.path()).env("GRAFLOW_CACHE_DIR", &cache).args(["resume", "--latest", "cp"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected, "{}", String::from_utf8_lossy(&out.stderr));
}

/// An exception names its type, message and innermost frame; a result the
/// language cannot write as JSON fails with the language's own error text.
#[test]
fn exceptions_and_unwritable_results_are_named() {
    for (lang, exception, frame, unwritable) in [
        ("python", "ZeroDivisionError", "parity.py:", "TypeError: Object of type set is not JSON serializable"),
        ("javascript", "TypeError", "parity.js:", "TypeError"),
    ] {
        let wf = parity(lang, "[workflow]\nflow = \"crash\"");
        let out = wf.run(&json!({}), &[]);
        assert_eq!(out.code, 1, "{lang}: {out:?}");
        assert!(out.stderr.contains(exception) && out.stderr.contains(frame), "{lang}: {out:?}");
        let wf = parity(lang, "[workflow]\nflow = \"not_json\"");
        let out = wf.run(&json!({}), &[]);
        assert_eq!(out.code, 1, "{lang}: {out:?}");
        assert!(
            out.stderr.contains("returned a value that is not JSON") && out.stderr.contains(unwritable),
            "{lang}: {out:?}"
        );
        assert!(!out.stderr.contains("unreachable"), "{lang}: no trap: {out:?}");
    }
}
