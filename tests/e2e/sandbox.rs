//! Traps, panics and limits are contained: a typed task error naming the task
//! and module, never a host crash, and the other tasks are unaffected.

use crate::support::*;
use graflow_host::engine::{FailureKind, RunError};
use serde_json::json;

fn failure(body: &str) -> (FailureKind, String) {
    let wf = workflow(body);
    match run_lib(&wf, json!({})).result {
        Err(RunError::TaskFailed { failure, .. }) => (failure.kind, failure.message),
        other => panic!("expected a task failure, got {other:?}"),
    }
}

#[test]
fn a_trapping_guest_fails_its_task_with_exit_code_1() {
    let wf = workflow("[workflow]\nflow = \"noop >> trap\"");
    let out = wf.run(&json!({}), &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("task 'trap' (module 'kit') trapped: wasm trap"), "{out:?}");
}

#[test]
fn a_panic_message_reaches_the_error() {
    let (kind, message) = failure("[workflow]\nflow = \"panic\"");
    assert_eq!(kind, FailureKind::Trap);
    assert!(message.contains("this guest panics on purpose"), "{message}");
}

#[test]
fn an_infinite_loop_hits_the_time_limit() {
    let (kind, message) = failure("[workflow]\nflow = \"spin\"\n[tasks.spin]\nlimits = { timeout_ms = 200 }");
    assert_eq!(kind, FailureKind::Timeout);
    assert_eq!(message, "time limit of 200 ms exceeded");
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let (kind, message) = failure("[workflow]\nflow = \"alloc_bomb\"\n[tasks.alloc_bomb]\nlimits = { memory_mb = 64 }");
    assert_eq!(kind, FailureKind::Memory);
    assert!(message.starts_with("memory limit of 67108864 bytes reached"), "{message}");
}

#[test]
fn the_other_tasks_of_the_workflow_complete() {
    let body = "[workflow]\nflow = \"(spin | alloc_bomb | trap | echo) >> noop\"\nlimits = { timeout_ms = 300, memory_mb = 32 }\n[groups.g]\nmembers = [\"spin\", \"alloc_bomb\", \"trap\", \"echo\"]\npolicy = \"best_effort\"";
    let wf = workflow(body);
    let run = run_lib(&wf, json!({"x": 1}));
    let report = run.result.as_ref().unwrap().clone();
    assert!(run.get("group_1.__result__").is_none());
    assert_eq!(run.get("g.__result__"), Some(json!({"echo": {}})));
    assert!(run.state.completed.contains(&"noop".to_string()));
    assert_eq!(report.steps, 3);
}

#[test]
fn a_trap_is_retried_like_a_retryable_error() {
    let wf = workflow("[workflow]\nflow = \"trap\"\nmax_retries = 2\nbackoff = { initial_ms = 1 }");
    let err = run_lib(&wf, json!({})).result.unwrap_err();
    assert!(matches!(err, RunError::TaskFailed { attempts: 3, .. }), "{err}");
}

#[test]
fn a_task_may_take_no_input() {
    let wf = workflow("[workflow]\nflow = \"noop >> unit\"");
    assert_eq!(wf.run(&json!({"x": 1}), &[]).ok().json(), json!("no input needed"));
}
