//! Graflow's dynamic-control behaviours (tests/scenario/test_dynamic_tasks.py,
//! test_goto_functionality.py, test_workflow_control_scenarios.py,
//! tests/core/test_next_iteration.py), through real guests.

use crate::support::*;
use graflow_host::engine::{FailureKind, RunError, RunStatus};
use serde_json::json;

fn lib(flow: &str, tasks: &[&str], extra: &str, script: serde_json::Value) -> LibRun {
    let wf = workflow(&format!("[workflow]\nflow = \"{flow}\"\n{extra}\n{}", scripted(tasks)));
    run_lib(&wf, scripts(script))
}

#[test]
fn dynamic_task_runs_before_the_successor() {
    let r = lib(
        "start_task >> successor_task >> final_task",
        &["start_task", "successor_task", "final_task", "dynamic_urgent"],
        "",
        json!({
            "start_task": [{"op": "next_task", "task": "dynamic_urgent"}]
        }),
    );
    r.result.as_ref().unwrap();
    assert_eq!(r.order(), ["start_task", "dynamic_urgent#1", "successor_task", "final_task"]);
    assert_eq!(r.get("spawned"), Some(json!(["dynamic_urgent#1"])));
    assert!(r.state.completed.contains(&"final_task".to_string()));
}

#[test]
fn multiple_dynamic_tasks_complete_before_cleanup() {
    let spawn: Vec<_> = (0..3).map(|i| json!({"op": "next_task", "task": "worker", "input": {"x": i}})).collect();
    let r = lib("coordinator >> cleanup", &["coordinator", "cleanup", "worker"], "", json!({ "coordinator": spawn }));
    r.result.as_ref().unwrap();
    assert_eq!(r.order(), ["coordinator", "worker#1", "worker#2", "worker#3", "cleanup"]);
    assert_eq!(r.get("worker#3.__result__").unwrap()["x"], 2, "each instance gets its own input");
}

#[test]
fn jump_to_existing_nodes_skips_successors() {
    let flow = "start_node >> successor_node >> final_node; existing_task >> other_existing";
    let extra = "start = \"start_node\"";
    let r = lib(
        flow,
        &["start_node", "successor_node", "final_node", "existing_task", "other_existing"],
        extra,
        json!({
            "start_node": [{"op": "next_task", "task": "existing_task"}]
        }),
    );
    r.result.as_ref().unwrap();
    assert_eq!(r.order(), ["start_node", "existing_task", "other_existing"]);
}

#[test]
fn goto_skips_successors_and_plain_next_task_does_not() {
    let tasks = ["controller", "normal_successor", "worker", "special_task"];
    let r = lib(
        "controller >> normal_successor",
        &tasks,
        "",
        json!({
            "controller": [{"op": "next_task", "task": "worker"}, {"op": "next_task", "task": "special_task", "goto": true}]
        }),
    );
    r.result.as_ref().unwrap();
    assert_eq!(r.order(), ["controller", "worker#1", "special_task#1"]);
    let r = lib(
        "controller >> normal_successor",
        &tasks,
        "",
        json!({ "controller": [{"op": "next_task", "task": "worker"}] }),
    );
    r.result.as_ref().unwrap();
    assert_eq!(r.order(), ["controller", "worker#1", "normal_successor"]);
}

#[test]
fn cache_hit_terminates_and_cache_miss_runs_the_pipeline() {
    let tasks = ["check_cache", "fetch_data", "transform_data"];
    let hit = lib(
        "check_cache >> fetch_data >> transform_data",
        &tasks,
        "",
        json!({
            "check_cache": [{"op": "terminate", "message": "cache hit"}, {"op": "result", "value": "cached"}]
        }),
    );
    let report = hit.result.as_ref().unwrap().clone();
    assert_eq!(report.status, RunStatus::Terminated("cache hit".into()));
    assert_eq!(report.result.unwrap().to_value().unwrap(), json!("cached"));
    assert_eq!(hit.order(), ["check_cache"]);
    assert_eq!(hit.state.completed, ["check_cache"]);
    let miss = lib("check_cache >> fetch_data >> transform_data", &tasks, "", json!({}));
    miss.result.as_ref().unwrap();
    assert_eq!(miss.state.completed, tasks);
}

#[test]
fn validation_failure_cancels_the_workflow() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"validate_input >> process_data >> store_result\"\n{}",
        scripted(&["validate_input", "process_data", "store_result"])
    ));
    let input = scripts(json!({"validate_input": [{"op": "cancel", "message": "Validation failed: missing id"}]}));
    let r = run_lib(&wf, input.clone());
    assert_eq!(
        r.result.unwrap_err(),
        RunError::Cancelled { task_id: "validate_input".into(), message: "Validation failed: missing id".into() }
    );
    assert!(r.state.completed.is_empty(), "the canceling task is not completed");
    let out = wf.run(&input, &[]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stderr.contains("workflow canceled by task 'validate_input': Validation failed: missing id"),
        "{out:?}"
    );
}

#[test]
fn cancel_wins_over_terminate() {
    let r = lib(
        "task_cancel >> after",
        &["task_cancel", "after"],
        "",
        json!({
            "task_cancel": [{"op": "cancel", "message": "integrity"}, {"op": "terminate", "message": "done"}]
        }),
    );
    assert!(matches!(r.result, Err(RunError::Cancelled { ref message, .. }) if message == "integrity"));
    assert!(r.state.completed.is_empty());
}

#[test]
fn terminate_in_explicit_fan_out_stops_the_join() {
    let flow = "start >> branch_a >> final_task; start >> branch_b >> final_task";
    let r = lib(
        flow,
        &["start", "branch_a", "branch_b", "final_task"],
        "",
        json!({
            "branch_a": [{"op": "terminate", "message": "stop"}]
        }),
    );
    r.result.as_ref().unwrap();
    assert_eq!(r.order(), ["start", "branch_a"]);
}

#[test]
fn iteration_counts_up_and_successors_run_after_the_last() {
    let r = lib(
        "setup >> retry_task >> finalize",
        &["setup", "retry_task", "finalize"],
        "",
        json!({
            "retry_task": [{"op": "iterate_below", "cycles": 3}]
        }),
    );
    r.result.as_ref().unwrap();
    assert_eq!(r.order(), ["setup", "retry_task", "retry_task@2", "retry_task@3", "finalize"]);
    assert_eq!(r.get("retry_task@3.__result__").unwrap()["n"], json!({"n": 2})["n"]);
    assert_eq!(r.state.cycle_counts["retry_task"], 3);
}

#[test]
fn cycle_limit_allows_exactly_max_cycles_runs() {
    for limit in [1u32, 2, 5] {
        let extra = format!("[tasks.infinite_loop]\nexport = \"script\"\nmax_cycles = {limit}");
        let wf = workflow(&format!("[workflow]\nflow = \"infinite_loop\"\n{extra}"));
        let r = run_lib(&wf, scripts(json!({"infinite_loop": [{"op": "iterate"}]})));
        let err = r.result.unwrap_err();
        let RunError::TaskFailed { ref failure, .. } = err else { panic!("{err}") };
        assert_eq!(failure.kind, FailureKind::CycleLimit);
        assert!(
            failure.message.contains(&format!("after {limit} of max_cycles = {limit} runs")),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("'infinite_loop'"));
        assert_eq!(r.state.cycle_counts["infinite_loop"], limit);
    }
}

#[test]
fn can_iterate_guards_the_last_iteration() {
    let wf = workflow("[workflow]\nflow = \"guarded\"\nmax_cycles = 3\n[tasks.guarded]\nexport = \"script\"");
    let script = json!({"guarded": [{"op": "iterate", "cycle": 1}, {"op": "iterate", "cycle": 2}, {"op": "set", "key": "last", "value": true, "cycle": 3}]});
    let r = run_lib(&wf, scripts(script));
    r.result.as_ref().unwrap();
    assert_eq!(r.get("can_iterate"), Some(json!([[true, true], [true, true]])));
    assert_eq!(r.get("last"), Some(json!(true)));
}

#[test]
fn cycle_limit_exits_with_code_1_and_names_task_and_limit() {
    let wf = workflow("[workflow]\nflow = \"looper\"\nmax_cycles = 2\n[tasks.looper]\nexport = \"script\"");
    let out = wf.run(&scripts(json!({"looper": [{"op": "iterate"}]})), &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("hit the cycle limit: task 'looper' asked for another iteration after 2 of max_cycles = 2 runs"),
        "{out:?}"
    );
}

#[test]
fn graph_cycle_reaching_max_steps_is_its_own_outcome() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"agent >> tool >> agent\"\nstart = \"agent\"\nmax_steps = 7\n{}",
        scripted(&["agent", "tool"])
    ));
    let out = wf.run(&scripts(json!({})), &[]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("stopped after max_steps = 7 completed tasks with 1 still queued (tool)"), "{out:?}");
    assert!(out.stderr.contains("graflow-host resume"), "the queue is kept in a checkpoint: {out:?}");
}

#[test]
fn retryable_errors_retry_and_failed_errors_do_not() {
    let extra = "max_retries = 3\nbackoff = { initial_ms = 5 }";
    let r = lib(
        "flaky >> after",
        &["flaky", "after"],
        extra,
        json!({
            "flaky": [{"op": "retryable", "message": "down", "attempt": 0}, {"op": "retryable", "message": "still down", "attempt": 1}]
        }),
    );
    r.result.as_ref().unwrap();
    assert_eq!(r.order(), ["flaky", "after"], "failed attempts leave no writes");
    assert_eq!(r.state.cycle_counts["flaky"], 1, "retries are not cycles");

    let r = lib("broken", &["broken"], extra, json!({"broken": [{"op": "fail", "message": "bad data"}]}));
    let err = r.result.unwrap_err();
    assert!(matches!(err, RunError::TaskFailed { attempts: 1, .. }), "{err}");

    let r = lib("down", &["down"], extra, json!({"down": [{"op": "retryable", "message": "nope"}]}));
    let err = r.result.unwrap_err();
    assert!(err.to_string().contains("failed (retryable): nope (after 4 attempts)"), "{err}");
}

#[test]
fn parallel_diamond_runs_store_once_after_both_transforms() {
    let r = lib(
        "fetch >> (transform_a | transform_b) >> store",
        &["fetch", "transform_a", "transform_b", "store"],
        "",
        json!({}),
    );
    r.result.as_ref().unwrap();
    let order = r.order();
    assert_eq!(order.iter().filter(|t| *t == "store").count(), 1);
    assert_eq!(order.last().unwrap(), "store");
    assert_eq!(order[0], "fetch");
}

#[test]
fn strict_group_failure_lists_failed_and_successful_members() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"(ok_one | bad_one | ok_two) >> after\"\n{}",
        scripted(&["ok_one", "bad_one", "ok_two", "after"])
    ));
    let out = wf.run(&scripts(json!({"bad_one": [{"op": "fail", "message": "bad!"}]})), &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("parallel group 'group_1' failed (policy strict): 1 failed ['bad_one': task 'bad_one'"),
        "{out:?}"
    );
    assert!(out.stderr.contains("bad!]; succeeded: ok_one, ok_two"), "{out:?}");
}
