//! Every example runs and its output is asserted.

use crate::support::*;
use serde_json::json;

fn run_example(name: &str, input: &str) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let wf = example(name);
    let out = cli(dir.path(), &["run", wf.to_str().unwrap(), "--input", input]);
    out.ok();
    out
}

#[test]
fn hello_chains_results() {
    let out = run_example("hello", r#"{"name":"graflow"}"#);
    assert_eq!(out.json(), json!({"greeting": "hello graflow, from b and c", "task": "c"}));
}

#[test]
fn etl_prints_the_merged_result_of_the_diamond() {
    let out = run_example("etl", r#"{"day":"2026-11-27"}"#);
    assert_eq!(
        out.json(),
        json!({"day":"2026-11-27","doubled":[20,40,60,80,100],"stats":{"count":5,"max":50,"sum":150}})
    );
}

#[test]
fn shared_state_through_the_channel() {
    let out = run_example("shared-state", r#"{"text":"a bee and a cat"}"#);
    let v = out.json();
    assert_eq!(v["words"], 5);
    assert_eq!(v["with_a"], 4);
    assert_eq!(v["with_e"], 1);
    assert_eq!(v["letters_seen"], 5, "the additions of both branches sum");
}

#[test]
fn agent_loop_ends_by_terminate() {
    let out = run_example("agent-loop", "{}");
    assert_eq!(out.json(), json!({"answer": "sandboxed resumable fast", "turns": 4}));
}

#[test]
fn optimizer_iterates_until_it_converges() {
    let v = run_example("optimizer", r#"{"target":2}"#).json();
    assert!((v["sqrt"].as_f64().unwrap() - 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(v["iterations"], 5);
}

#[test]
fn router_picks_a_branch_or_jumps_to_the_error_handler() {
    let dir = tempfile::tempdir().unwrap();
    let wf = example("router");
    let refund = cli(dir.path(), &["run", wf.to_str().unwrap(), "--input", r#"{"kind":"refund","amount":12}"#]);
    assert_eq!(refund.ok().json(), json!("audited"), "audit still runs after the new instance");
    let bad = cli(dir.path(), &["run", wf.to_str().unwrap(), "--input", r#"{"kind":"purchase","amount":-5}"#]);
    assert_eq!(bad.ok().json(), json!({"error": "negative amount -5"}), "goto skips audit");
}

#[test]
fn flaky_succeeds_on_its_third_attempt() {
    assert_eq!(run_example("flaky", "{}").json(), json!({"status": "ok", "attempts": 3}));
}

#[test]
fn best_effort_group_with_one_failing_member() {
    assert_eq!(run_example("best-effort", "{}").json(), json!({"geo": "Lisbon", "weather": null, "news": 3}));
}

#[test]
fn order_state_machine_completes() {
    assert_eq!(run_example("order", r#"{"order_id":"A-1"}"#).json(), json!("ORDER_COMPLETE"));
}

#[test]
fn validate_describes_the_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path(), &["validate", example("etl").to_str().unwrap()]);
    out.ok();
    assert!(out.stdout.contains("workflow 'etl' is valid"), "{out:?}");
    assert!(out.stdout.contains("group transforms: transform_a | transform_b (policy strict)"), "{out:?}");
    assert!(out.stdout.contains("task store: etl.store inputs [day, transform_a, transform_b]"), "{out:?}");
}

#[test]
fn the_reference_workflow_file_in_the_docs_loads_beside_the_etl_component() {
    let doc = std::fs::read_to_string(repo().join("docs/workflow-file.md")).unwrap();
    let start = doc.find("```toml\n").expect("docs/workflow-file.md has a TOML block") + "```toml\n".len();
    let toml = &doc[start..start + doc[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/etl"), dir.path());
    std::fs::write(dir.path().join("reference.toml"), toml).unwrap();
    let out = cli(dir.path(), &["validate", "reference.toml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = cli(dir.path(), &["run", "reference.toml", "--input", r#"{"day":"2026-11-27"}"#]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

fn readme_text() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The README's first workflow, one file per language, run with one command
/// exactly as the README shows it.
#[test]
fn the_one_file_workflow_of_the_readme_runs_in_python_javascript_and_rust() {
    let want = serde_json::json!({"doubled": [20, 40, 60], "stats": {"count": 3, "sum": 60}});
    for src in ["examples/one-file/app.py", "examples/one-file/app.js", "examples/one-file/guest"] {
        let out = cli(&repo(), &["run", src, "--input", r#"{"day": "2026-11-27"}"#]);
        assert_eq!(out.ok().json(), want, "{src}");
        if src.ends_with(".py") {
            // The result is printed as the task wrote it (Python's spacing),
            // as the README shows it.
            let line = out.stdout.trim();
            assert!(
                readme_text()
                    .contains(&format!("$ graflow-host run app.py --input '{{\"day\": \"2026-11-27\"}}'\n{line}\n")),
                "{line}"
            );
        }
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let python = std::fs::read_to_string(repo().join("examples/one-file/app.py")).unwrap();
    let body = |text: &str| text[text.find("from graflow").unwrap()..].trim().to_string();
    assert!(readme.contains(&body(&python).replace("\n\n\n", "\n\n")), "the README shows examples/one-file/app.py");
    for src in ["examples/one-file/app.js", "examples/one-file/guest"] {
        assert!(readme.contains(&format!("graflow-host run {src} --input")), "{src}");
    }
    // A workflow file may name the source as a module: built the same way
    // (here: found in the cache), its flow declared, the file's settings win.
    let dir = tempfile::tempdir().unwrap();
    let app = repo().join("examples/one-file/app.py");
    let text =
        format!("[workflow]\nname = \"from-file\"\n\n[modules]\napp = {:?}\n\n[tasks.fetch]\nmax_retries = 0\n", app);
    std::fs::write(dir.path().join("workflow.toml"), text).unwrap();
    let v = cli(dir.path(), &["validate", "workflow.toml", "--json"]).ok().json();
    assert_eq!(v["workflow"], "from-file", "{v}");
    assert_eq!(v["flow"], "fetch >> (double | stats) >> store", "{v}");
    assert_eq!(v["tasks"]["fetch"]["max_retries"], 0, "the file wins over the code's 2: {v}");
    let out = cli(dir.path(), &["run", "workflow.toml", "--input", r#"{"day": "2026-11-27"}"#]);
    assert_eq!(out.ok().json(), want);
}
