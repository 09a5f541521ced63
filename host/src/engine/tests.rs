//! Engine semantics with an in-process fake runner (no wasm).

use super::*;
use crate::model::{ModuleExports, ModuleInfo, ModuleLoadError, TaskDecl, load_workflow};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

type Behavior = Box<dyn Fn(&Json, &mut TaskContext) -> Result<Json, TaskFailure> + Send + Sync>;

/// Runs tasks as closures keyed by export name, and logs execution ids.
#[derive(Default)]
struct Fake {
    tasks: HashMap<String, Behavior>,
    log: Mutex<Vec<String>>,
    inputs: Mutex<Vec<(String, serde_json::Value)>>,
}

impl Fake {
    fn on(
        mut self,
        name: &str,
        f: impl Fn(&Json, &mut TaskContext) -> Result<Json, TaskFailure> + Send + Sync + 'static,
    ) -> Self {
        self.tasks.insert(name.to_string(), Box::new(f));
        self
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn input_of(&self, id: &str) -> serde_json::Value {
        self.inputs.lock().unwrap().iter().find(|(i, _)| i == id).map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

impl TaskRunner for Fake {
    fn run(
        &self,
        task: &crate::model::TaskDef,
        input: &Json,
        mut ctx: TaskContext,
    ) -> (TaskContext, Result<Json, TaskFailure>) {
        self.log.lock().unwrap().push(ctx.info.task_id.clone());
        self.inputs.lock().unwrap().push((ctx.info.task_id.clone(), input.to_value().unwrap()));
        let result = match self.tasks.get(&task.export) {
            Some(f) => f(input, &mut ctx),
            None => Ok(Json::encode(&task.name)),
        };
        (ctx, result)
    }
}

/// Declares every task name given, with inputs.
struct FakeModules(Vec<TaskDecl>);

impl ModuleExports for FakeModules {
    fn load(&mut self, _: &str, _: &Path, _: u64) -> Result<ModuleInfo, ModuleLoadError> {
        Ok(ModuleInfo {
            sha256: crate::digest::Sha256::of(b""),
            size: 0,
            tasks: self.0.clone(),
            workflow: Default::default(),
        })
    }
}

fn decl(name: &str, inputs: &[&str]) -> TaskDecl {
    TaskDecl { name: name.into(), inputs: inputs.iter().map(|s| s.to_string()).collect(), description: String::new() }
}

fn workflow(toml: &str, decls: Vec<TaskDecl>) -> Arc<Workflow> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflow.toml");
    std::fs::write(&path, format!("{toml}\n[modules]\nm = \"m.wasm\"\n")).unwrap();
    Arc::new(load_workflow(&path, &mut FakeModules(decls)).unwrap())
}

fn names(names: &[&str]) -> Vec<TaskDecl> {
    names.iter().map(|n| decl(n, &[])).collect()
}

struct Run {
    result: Result<RunReport, RunError>,
    state: RunState,
    channel: Arc<MemoryChannel>,
}

fn run(wf: &Arc<Workflow>, fake: &Fake, input: &str) -> Run {
    let mut state = RunState::new(wf, "s".into(), Json::parse(input).unwrap());
    let channel = Arc::new(MemoryChannel::default());
    let result = Engine::new(wf.clone(), fake).run(&mut state, &channel, &mut NoCheckpoints);
    Run { result, state, channel }
}

fn j(s: &str) -> Json {
    Json::parse(s).unwrap()
}

fn ok(v: serde_json::Value) -> Result<Json, TaskFailure> {
    Ok(Json::from(v))
}

#[test]
fn chain_runs_in_order_and_stores_results() {
    let wf = workflow("[workflow]\nflow = \"a >> b >> c\"", names(&["a", "b", "c"]));
    let fake = Fake::default();
    let r = run(&wf, &fake, "{}");
    let report = r.result.unwrap();
    assert_eq!(fake.log(), ["a", "b", "c"]);
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.result, Some(j("\"c\"")));
    assert_eq!(report.steps, 3);
    assert_eq!(r.state.completed, ["a", "b", "c"]);
    assert_eq!(r.channel.get("a.__result__"), Some(j("\"a\"")));
}

#[test]
fn declared_inputs_flow_from_results_channel_and_run_input() {
    let decls = vec![decl("a", &["day"]), decl("b", &["a", "day", "color"])];
    let wf = workflow("[workflow]\nflow = \"a >> b\"", decls);
    let fake = Fake::default().on("a", |_, ctx| {
        ctx.channel_set("color", "\"red\"").unwrap();
        ok(serde_json::json!(1))
    });
    run(&wf, &fake, r#"{"day":"mon","extra":true}"#).result.unwrap();
    assert_eq!(fake.input_of("a"), serde_json::json!({"day":"mon","extra":true}));
    assert_eq!(fake.input_of("b"), serde_json::json!({"a":1,"day":"mon","color":"red"}));
}

#[test]
fn explicit_fan_out_runs_the_join_node_once_per_arrival() {
    let wf = workflow("[workflow]\nflow = \"a >> b >> d; a >> c >> d\"", names(&["a", "b", "c", "d"]));
    let fake = Fake::default();
    let r = run(&wf, &fake, "{}");
    assert_eq!(fake.log(), ["a", "b", "c", "d", "d"]);
    assert_eq!(r.state.completed, ["a", "b", "c", "d"]);
    assert_eq!(r.state.steps, 5);
}

#[test]
fn group_is_the_join_and_merges_in_member_order() {
    let wf = workflow(
        "[workflow]\nflow = \"fetch >> (slow | fast) >> store\"",
        vec![decl("fetch", &[]), decl("slow", &[]), decl("fast", &[]), decl("store", &["slow", "fast"])],
    );
    let fake = Fake::default()
        .on("fetch", |_, ctx| {
            ctx.channel_set("k", "\"fetch\"").unwrap();
            ok(serde_json::json!(0))
        })
        .on("slow", |_, ctx| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(ctx.channel_get("k"), Some(j("\"fetch\"")));
            ctx.channel_set("k", "\"slow\"").unwrap();
            ctx.channel_set("seen_by_slow", &ctx.channel_get("fast_key").map_or("null".into(), |v| v.to_string()))
                .unwrap();
            ok(serde_json::json!(1))
        })
        .on("fast", |_, ctx| {
            ctx.channel_set("k", "\"fast\"").unwrap();
            ctx.channel_set("fast_key", "true").unwrap();
            ok(serde_json::json!(2))
        });
    let r = run(&wf, &fake, "{}");
    let report = r.result.unwrap();
    let log = fake.log();
    assert_eq!(log.first().unwrap(), "fetch");
    assert_eq!(log.last().unwrap(), "store");
    assert_eq!(log.iter().filter(|t| *t == "store").count(), 1);
    // fast finishes first, but slow is the earlier member: fast's write wins.
    assert_eq!(r.channel.get("k"), Some(j("\"fast\"")));
    // branches see the channel as it was when the group started
    assert_eq!(r.channel.get("seen_by_slow"), Some(j("null")));
    assert_eq!(fake.input_of("store"), serde_json::json!({"slow":1,"fast":2}));
    assert_eq!(
        r.channel.get("group_1.__result__").unwrap().to_value().unwrap(),
        serde_json::json!({"slow":1,"fast":2})
    );
    assert_eq!(report.steps, 5);
    assert!(r.state.completed.contains(&"slow".to_string()) && r.state.completed.contains(&"group_1".to_string()));
}

#[test]
fn atomic_adds_of_branches_sum() {
    let wf = workflow("[workflow]\nflow = \"(a | b | c) >> d\"", names(&["a", "b", "c", "d"]));
    let add = |_: &Json, ctx: &mut TaskContext| {
        ctx.channel_add("n", 2.0).unwrap();
        ok(serde_json::json!(null))
    };
    let fake = Fake::default().on("a", add).on("b", add).on("c", add);
    let r = run(&wf, &fake, "{}");
    r.result.unwrap();
    assert_eq!(r.channel.get("n"), Some(j("6")));
}

#[test]
fn a_failed_attempt_leaves_no_writes() {
    let wf = workflow("[workflow]\nflow = \"a\"\nmax_retries = 1\n[workflow.backoff]\ninitial_ms = 1", names(&["a"]));
    let fake = Fake::default().on("a", |_, ctx| {
        let first = ctx.info.retry_count == 0;
        if first {
            ctx.channel_set("dirty", "1").unwrap();
            return Err(TaskFailure::new(FailureKind::Retryable, "flaky"));
        }
        assert_eq!(ctx.channel_get("dirty"), None);
        ok(serde_json::json!("done"))
    });
    let r = run(&wf, &fake, "{}");
    assert_eq!(r.result.unwrap().result, Some(j("\"done\"")));
    assert_eq!(r.channel.get("dirty"), None);
}

#[test]
fn retries_go_to_the_back_and_do_not_block_ready_tasks() {
    let toml = "[workflow]\nflow = \"start >> after\"\n[tasks.flaky]\nmax_retries = 3\n[tasks.flaky.backoff]\ninitial_ms = 30\n[tasks.other]";
    let wf = workflow(toml, names(&["start", "after", "flaky", "other"]));
    let fake = Fake::default()
        .on("start", |_, ctx| {
            ctx.next_task("flaky", "null", false).unwrap();
            ctx.next_task("other", "null", false).unwrap();
            ok(serde_json::json!(null))
        })
        .on("flaky", |_, ctx| {
            if ctx.info.retry_count < 2 {
                return Err(TaskFailure::new(FailureKind::Retryable, format!("attempt {}", ctx.info.retry_count)));
            }
            assert_eq!(ctx.info.cycle_count, 1, "retries do not count as cycles");
            ok(serde_json::json!("third time"))
        });
    let r = run(&wf, &fake, "{}");
    r.result.unwrap();
    assert_eq!(fake.log(), ["start", "flaky#1", "other#1", "after", "flaky#1", "flaky#1"]);
    assert_eq!(r.channel.get("flaky#1.__result__"), Some(j("\"third time\"")));
    assert_eq!(r.state.cycle_counts["flaky#1"], 1);
}

#[test]
fn exhausted_retries_name_attempts_and_last_error() {
    let wf = workflow("[workflow]\nflow = \"a\"\nmax_retries = 2\n[workflow.backoff]\ninitial_ms = 1", names(&["a"]));
    let fake = Fake::default()
        .on("a", |_, ctx| Err(TaskFailure::new(FailureKind::Trap, format!("boom {}", ctx.info.retry_count))));
    let err = run(&wf, &fake, "{}").result.unwrap_err();
    let RunError::TaskFailed { attempts, ref failure, .. } = err else { panic!("{err}") };
    assert_eq!(attempts, 3);
    assert_eq!(failure.message, "boom 2");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}

#[test]
fn permanent_failures_are_not_retried() {
    let wf = workflow("[workflow]\nflow = \"a\"\nmax_retries = 5", names(&["a"]));
    let fake = Fake::default().on("a", |_, _| Err(TaskFailure::new(FailureKind::Failed, "bad input")));
    let err = run(&wf, &fake, "{}").result.unwrap_err();
    assert_eq!(fake.log(), ["a"]);
    assert!(matches!(err, RunError::TaskFailed { attempts: 1, .. }));
}

#[test]
fn next_task_new_instance_runs_before_successors() {
    let wf = workflow(
        "[workflow]\nflow = \"start >> successor\"\n[tasks.dynamic]",
        names(&["start", "successor", "dynamic"]),
    );
    let fake = Fake::default().on("start", |_, ctx| {
        assert_eq!(ctx.next_task("dynamic", r#"{"x":1}"#, false).unwrap(), "dynamic#1");
        assert_eq!(ctx.next_task("dynamic", "null", false).unwrap(), "dynamic#2");
        ok(serde_json::json!(null))
    });
    let r = run(&wf, &fake, "{}");
    r.result.unwrap();
    assert_eq!(fake.log(), ["start", "dynamic#1", "dynamic#2", "successor"]);
    assert_eq!(fake.input_of("dynamic#1"), serde_json::json!({"x":1}));
    // Completed, they left the run-time graph; the flow's nodes are the
    // completions the state keeps (the journal has every execution).
    assert!(r.state.dynamic_tasks.is_empty(), "{:?}", r.state.dynamic_tasks);
    assert_eq!(r.state.completed, ["start", "successor"]);
    assert_eq!(r.state.steps, 4);
}

#[test]
fn goto_and_existing_nodes_skip_successors() {
    let wf = workflow(
        "[workflow]\nflow = \"start >> successor; target >> after_target\"\nstart = \"start\"\n[tasks.worker]",
        names(&["start", "successor", "target", "after_target", "worker"]),
    );
    let fake = Fake::default().on("start", |_, ctx| {
        ctx.next_task("worker", "null", false).unwrap();
        ctx.next_task("target", "null", false).unwrap();
        ok(serde_json::json!(null))
    });
    run(&wf, &fake, "{}").result.unwrap();
    assert_eq!(fake.log(), ["start", "worker#1", "target", "after_target"]);

    let fake = Fake::default().on("start", |_, ctx| {
        ctx.next_task("worker", "null", true).unwrap();
        ok(serde_json::json!(null))
    });
    run(&wf, &fake, "{}").result.unwrap();
    assert_eq!(fake.log(), ["start", "worker#1"]);
}

#[test]
fn next_iteration_counts_cycles_and_runs_successors_once_at_the_end() {
    let wf = workflow(
        "[workflow]\nflow = \"setup >> loop >> fin\"\n[tasks.loop]\nmax_cycles = 5",
        names(&["setup", "loop", "fin"]),
    );
    let fake = Fake::default().on("loop", |input, ctx| {
        let n = input.to_value().unwrap().get("n").and_then(|v| v.as_u64()).unwrap_or(0);
        assert_eq!(ctx.info.cycle_count as u64, n + 1);
        if n < 2 {
            let id = ctx.next_iteration(&format!("{{\"n\":{}}}", n + 1)).unwrap();
            assert_eq!(id, format!("loop@{}", n + 2));
        }
        ok(serde_json::json!(n))
    });
    let r = run(&wf, &fake, "{}");
    assert_eq!(r.result.unwrap().result, Some(j("\"fin\"")));
    assert_eq!(fake.log(), ["setup", "loop", "loop@2", "loop@3", "fin"]);
    assert_eq!(r.state.cycle_counts["loop"], 3);
    assert_eq!(r.channel.get("loop.__result__"), Some(j("2")), "the base name holds the latest run's result");
    assert_eq!(r.channel.get("loop@2.__result__"), Some(j("1")));
}

/// A loop of `runs` runs of `loop` under `toml`'s workflow table.
fn long_loop(toml: &str, runs: u64) -> Run {
    let wf =
        workflow(&format!("[workflow]\nflow = \"loop >> fin\"\nmax_cycles = 1000\n{toml}"), names(&["loop", "fin"]));
    let fake = Fake::default().on("loop", move |_, ctx| {
        let n = u64::from(ctx.info.cycle_count);
        if n < runs {
            ctx.next_iteration("null").unwrap();
        }
        ok(serde_json::json!(n))
    });
    run(&wf, &fake, "{}")
}

#[test]
fn iteration_results_are_kept_for_a_window() {
    let r = long_loop("keep_iteration_results = 5", 30);
    assert_eq!(r.result.unwrap().result, Some(j("\"fin\"")));
    let kept: Vec<u64> = (2..=30).filter(|c| r.channel.get(&format!("loop@{c}.__result__")).is_some()).collect();
    assert_eq!(kept, [26, 27, 28, 29, 30], "the newest five iterations' results");
    assert_eq!(r.channel.get("loop@30.__result__"), Some(j("30")));
    assert_eq!(r.channel.get("loop.__result__"), Some(j("30")), "the latest stays under the task's name");
    // The default keeps a thousand: a short loop keeps every result.
    let r = long_loop("", 30);
    assert!((2..=30).all(|c| r.channel.get(&format!("loop@{c}.__result__")).is_some()));
    // A window of 0 is refused, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflow.toml");
    std::fs::write(&path, "[workflow]\nflow = \"loop\"\nkeep_iteration_results = 0\n[modules]\nm = \"m.wasm\"\n")
        .unwrap();
    let err = load_workflow(&path, &mut FakeModules(names(&["loop"]))).unwrap_err();
    assert!(err.to_string().contains("keep_iteration_results"), "{err}");
}

#[test]
fn max_cycles_allows_exactly_n_runs() {
    let wf = workflow("[workflow]\nflow = \"infinite_loop\"\nmax_cycles = 3", names(&["infinite_loop"]));
    let fake = Fake::default().on("infinite_loop", |_, ctx| {
        let allowed = ctx.can_iterate();
        let r = ctx.next_iteration("null");
        assert_eq!(allowed, r.is_ok());
        ok(serde_json::json!("should stop"))
    });
    let r = run(&wf, &fake, "{}");
    let err = r.result.unwrap_err();
    assert_eq!(fake.log(), ["infinite_loop", "infinite_loop@2", "infinite_loop@3"]);
    let RunError::TaskFailed { ref failure, ref task_id, .. } = err else { panic!("{err}") };
    assert_eq!(failure.kind, FailureKind::CycleLimit);
    assert_eq!(task_id, "infinite_loop@3");
    assert!(failure.message.contains("max_cycles = 3"), "{}", failure.message);
    assert_eq!(r.channel.get("infinite_loop.__result__"), Some(j("\"should stop\"")));
}

#[test]
fn terminate_completes_the_task_and_stops() {
    let wf = workflow("[workflow]\nflow = \"check >> fetch >> store\"", names(&["check", "fetch", "store"]));
    let fake = Fake::default().on("check", |_, ctx| {
        ctx.terminate("cache hit");
        ok(serde_json::json!("cached"))
    });
    let r = run(&wf, &fake, "{}");
    let report = r.result.unwrap();
    assert_eq!(report.status, RunStatus::Terminated("cache hit".into()));
    assert_eq!(report.result, Some(j("\"cached\"")));
    assert_eq!(fake.log(), ["check"]);
    assert_eq!(r.state.completed, ["check"]);
}

#[test]
fn cancel_fails_the_run_and_wins_over_terminate() {
    let wf = workflow("[workflow]\nflow = \"prepare >> validate >> store\"", names(&["prepare", "validate", "store"]));
    let fake = Fake::default().on("validate", |_, ctx| {
        ctx.cancel("validation failed: integrity");
        ctx.terminate("done");
        ok(serde_json::json!(null))
    });
    let r = run(&wf, &fake, "{}");
    let err = r.result.unwrap_err();
    assert_eq!(err, RunError::Cancelled { task_id: "validate".into(), message: "validation failed: integrity".into() });
    assert_eq!(err.to_string(), "workflow canceled by task 'validate': validation failed: integrity");
    assert_eq!(r.state.completed, ["prepare"]);
    assert_eq!(fake.log(), ["prepare", "validate"]);
}

#[test]
fn graph_cycles_stop_at_max_steps_and_keep_the_queue() {
    let wf = workflow(
        "[workflow]\nflow = \"agent >> tool >> agent\"\nstart = \"agent\"\nmax_steps = 5",
        names(&["agent", "tool"]),
    );
    let fake = Fake::default();
    let r = run(&wf, &fake, "{}");
    let err = r.result.unwrap_err();
    assert_eq!(err, RunError::MaxSteps { max_steps: 5, pending: vec!["tool".into()], checkpoint: None });
    assert_eq!(fake.log(), ["agent", "tool", "agent", "tool", "agent"]);
    assert_eq!(r.state.pending_ids(), ["tool"]);
    assert_eq!(r.state.cycle_counts["agent"], 3);
}

#[test]
fn agent_loop_ends_by_terminate() {
    let wf = workflow("[workflow]\nflow = \"agent >> tool >> agent\"\nstart = \"agent\"", names(&["agent", "tool"]));
    let fake = Fake::default().on("agent", |_, ctx| {
        if ctx.info.cycle_count == 3 {
            ctx.terminate("answer found");
        }
        ok(serde_json::json!(ctx.info.cycle_count))
    });
    let report = run(&wf, &fake, "{}").result.unwrap();
    assert_eq!(report.result, Some(j("3")));
    assert_eq!(fake.log(), ["agent", "tool", "agent", "tool", "agent"]);
}

fn group_run(policy: &str, fail: &'static [&'static str]) -> (Result<RunReport, RunError>, Vec<String>) {
    let toml = format!(
        "[workflow]\nflow = \"(a | b | c) >> after\"\n[groups.trio]\nmembers = [\"a\", \"b\", \"c\"]\n{policy}"
    );
    let wf = workflow(&toml, names(&["a", "b", "c", "after"]));
    let mut fake = Fake::default();
    for m in ["a", "b", "c"] {
        fake = fake.on(m, move |_, ctx| {
            ctx.channel_set(&format!("wrote_{m}"), "true").unwrap();
            if fail.contains(&m) {
                Err(TaskFailure::new(FailureKind::Failed, format!("{m} broke")))
            } else {
                ok(serde_json::json!(m))
            }
        });
    }
    let r = run(&wf, &fake, "{}");
    let keys = r.channel.keys().into_iter().filter(|k| k.starts_with("wrote_")).collect();
    (r.result, keys)
}

#[test]
fn strict_group_fails_on_any_member_and_names_them() {
    let (r, _) = group_run("", &["b"]);
    let err = r.unwrap_err();
    let RunError::GroupFailed { ref group, ref failed, ref succeeded, .. } = err else { panic!("{err}") };
    assert_eq!(group, "trio");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "b");
    assert!(failed[0].1.contains("b broke"));
    assert_eq!(succeeded, &["a", "c"]);
}

#[test]
fn best_effort_group_discards_failed_writes() {
    let (r, keys) = group_run("policy = \"best_effort\"", &["b"]);
    let report = r.unwrap();
    assert_eq!(report.result, Some(j("\"after\"")));
    assert_eq!(keys, ["wrote_a", "wrote_c"]);
}

#[test]
fn at_least_n_and_critical_policies() {
    assert!(group_run("policy = \"at_least_n\"\nmin_success = 2", &["b"]).0.is_ok());
    let err = group_run("policy = \"at_least_n\"\nmin_success = 2", &["a", "b"]).0.unwrap_err();
    assert!(err.to_string().contains("policy at_least_n (2)"), "{err}");
    assert!(group_run("policy = \"critical\"\ncritical = [\"a\"]", &["b", "c"]).0.is_ok());
    assert!(matches!(
        group_run("policy = \"critical\"\ncritical = [\"a\"]", &["a"]).0,
        Err(RunError::GroupFailed { .. })
    ));
}

#[test]
fn next_task_inside_a_branch_stays_in_the_branch() {
    let wf = workflow("[workflow]\nflow = \"(a | b) >> after\"\n[tasks.helper]", names(&["a", "b", "after", "helper"]));
    let fake = Fake::default().on("a", |_, ctx| {
        assert_eq!(ctx.next_task("helper", "null", false).unwrap(), "helper#a.1");
        ok(serde_json::json!(null))
    });
    let r = run(&wf, &fake, "{}");
    r.result.unwrap();
    let log = fake.log();
    let helper = log.iter().position(|t| t == "helper#a.1").unwrap();
    assert!(helper < log.iter().position(|t| t == "after").unwrap());
    assert!(!r.state.completed.contains(&"helper#a.1".to_string()), "only the flow's nodes are kept");
    assert!(r.state.completed.contains(&"after".to_string()));
}

#[test]
fn cancel_inside_a_branch_cancels_the_workflow() {
    let wf = workflow(
        "[workflow]\nflow = \"(a | b) >> after\"\n[groups.g]\nmembers = [\"a\", \"b\"]\npolicy = \"best_effort\"",
        names(&["a", "b", "after"]),
    );
    let fake = Fake::default().on("a", |_, ctx| {
        ctx.cancel("stop everything");
        ok(serde_json::json!(null))
    });
    let err = run(&wf, &fake, "{}").result.unwrap_err();
    assert!(matches!(err, RunError::Cancelled { ref task_id, .. } if task_id == "a"));
    assert!(!fake.log().contains(&"after".to_string()));
}

#[test]
fn terminate_inside_a_branch_ends_the_workflow_after_the_group() {
    let wf = workflow("[workflow]\nflow = \"(a | b) >> after\"", names(&["a", "b", "after"]));
    let fake = Fake::default().on("a", |_, ctx| {
        ctx.terminate("enough");
        ok(serde_json::json!(null))
    });
    let report = run(&wf, &fake, "{}").result.unwrap();
    assert_eq!(report.status, RunStatus::Terminated("enough".into()));
    assert!(fake.log().contains(&"b".to_string()));
    assert!(!fake.log().contains(&"after".to_string()));
}

/// Keeps every checkpoint the engine asks for at once; ids are `cp1`, `cp2`, ...
fn keep() -> Slow {
    Slow::new(0, usize::MAX)
}

#[test]
fn interrupt_stops_at_a_task_boundary_with_the_queue_intact() {
    let wf = workflow("[workflow]\nflow = \"a >> b >> c\"", names(&["a", "b", "c"]));
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = flag.clone();
    let fake = Fake::default().on("b", move |_, _| {
        f2.store(true, std::sync::atomic::Ordering::Relaxed);
        ok(serde_json::json!("b"))
    });
    let mut sink = keep();
    let mut state = RunState::new(&wf, "s".into(), j("{}"));
    let channel = Arc::new(MemoryChannel::default());
    let report = Engine::new(wf.clone(), &fake).with_interrupt(flag).run(&mut state, &channel, &mut sink).unwrap();
    assert_eq!(report.status, RunStatus::Interrupted(Written { id: "cp1".into(), bytes: 1, fresh: true }));
    assert_eq!(fake.log(), ["a", "b"]);
    assert_eq!(sink.kept[0].0.pending_ids(), ["c"]);
    assert_eq!(sink.kept[0].1.mode, CheckpointMode::Interrupt);
    assert_eq!(sink.kept[0].1.task_id.as_deref(), Some("b"), "the interrupt checkpoint names the last completed task");
}

#[test]
fn deferred_checkpoint_is_written_after_successors_are_queued() {
    let wf = workflow("[workflow]\nflow = \"a >> b >> c\"", names(&["a", "b", "c"]));
    let fake = Fake::default().on("b", |_, ctx| {
        ctx.request_checkpoint(r#"{"stage":"mid"}"#).unwrap();
        ok(serde_json::json!("b"))
    });
    let mut sink = keep();
    let mut state = RunState::new(&wf, "s".into(), j("{}"));
    let channel = Arc::new(MemoryChannel::default());
    Engine::new(wf.clone(), &fake).run(&mut state, &channel, &mut sink).unwrap();
    let (s, r) = &sink.kept[0];
    assert_eq!(s.completed, ["a", "b"]);
    assert_eq!(s.pending_ids(), ["c"]);
    assert_eq!((r.task_id.as_deref(), r.cycle_count, r.mode), (Some("b"), 1, CheckpointMode::Deferred));
    assert_eq!(r.user_metadata, j(r#"{"stage":"mid"}"#));
}

#[test]
fn deletes_are_bounded_and_a_missing_key_records_nothing() {
    let wf = workflow(
        "[workflow]\nflow = \"a\"\n[workflow.bounds]\nmax_key_bytes = 8\nmax_written_bytes = 20",
        names(&["a"]),
    );
    let fake = Fake::default().on("a", |_, ctx| {
        assert_eq!(ctx.channel_delete("nothing"), Ok(false));
        assert_eq!(ctx.channel.written_keys(), 0, "deleting a missing key records no write");
        assert!(matches!(ctx.channel_delete("a-key-too-long"), Err(HostCallError::Abort(_))));
        ok(serde_json::json!(null))
    });
    let err = run(&wf, &fake, "{}").result.unwrap_err();
    assert!(err.to_string().contains("max_key_bytes = 8"), "{err}");
    let wf = workflow("[workflow]\nflow = \"a\"\n[workflow.bounds]\nmax_written_bytes = 20", names(&["a"]));
    let fake = Fake::default().on("a", |_, ctx| {
        for i in 0..100 {
            if ctx.channel_delete(&format!("key{i}")).is_err() {
                return ok(serde_json::json!(i));
            }
        }
        ok(serde_json::json!("unbounded"))
    });
    let err = run(&wf, &fake, "{}").result.unwrap_err();
    assert!(err.to_string().contains("max_written_bytes = 20"), "{err}");
}

#[test]
fn a_group_reentered_through_next_task_is_bounded() {
    let wf = workflow("[workflow]\nflow = \"(a | b)\"", names(&["a", "b"]));
    let fake = Fake::default().on("a", |_, ctx| {
        ctx.next_task("group_1", "null", false).unwrap();
        ok(serde_json::json!("a"))
    });
    match run(&wf, &fake, "{}").result {
        Err(RunError::Bound { bound, .. }) => assert_eq!(bound, "flow::MAX_DEPTH"),
        other => panic!("expected the nesting bound, got {other:?}"),
    }
}

#[test]
fn branches_finish_their_chains_after_an_interrupt() {
    let wf = workflow("[workflow]\nflow = \"(a >> b | c) >> d\"", names(&["a", "b", "c", "d"]));
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = flag.clone();
    let fake = Fake::default().on("a", move |_, _| {
        f2.store(true, std::sync::atomic::Ordering::Relaxed);
        ok(serde_json::json!("a"))
    });
    let mut sink = keep();
    let mut state = RunState::new(&wf, "s".into(), j("{}"));
    let channel = Arc::new(MemoryChannel::default());
    let report = Engine::new(wf.clone(), &fake).with_interrupt(flag).run(&mut state, &channel, &mut sink).unwrap();
    assert!(matches!(report.status, RunStatus::Interrupted(_)));
    assert!(fake.log().contains(&"b".to_string()), "the branch's chain went on: {:?}", fake.log());
    assert_eq!(sink.kept[0].0.pending_ids(), ["d"], "the group completed; its successor waits");
    assert_eq!(sink.kept[0].1.task_id.as_deref(), Some("group_1"));
}

#[test]
fn max_steps_counts_every_branch() {
    let wf = workflow(
        "[workflow]\nflow = \"(x | y); x >> x; y >> y\"\nmax_steps = 20\nmax_cycles = 1000",
        names(&["x", "y"]),
    );
    let fake = Fake::default();
    let r = run(&wf, &fake, "{}");
    assert!(matches!(r.result, Err(RunError::MaxSteps { .. })), "{:?}", r.result);
    assert!(fake.log().len() <= 22, "the branches shared one budget: {} executions", fake.log().len());
}

/// A sink that keeps every checkpoint, taking `delay` for each (a slow disk),
/// failing from the `fail_from`-th write on.
struct Slow {
    kept: Vec<(RunState, CheckpointRequest)>,
    delay: std::time::Duration,
    fail_from: usize,
    /// The first write waits until this is set (by a task: an event, not a
    /// guess at how fast the machine runs the tasks in between).
    hold: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Slow {
    fn new(delay_ms: u64, fail_from: usize) -> Slow {
        Slow { kept: Vec::new(), delay: std::time::Duration::from_millis(delay_ms), fail_from, hold: None }
    }

    /// A sink whose first write waits for `flag` (at most 30 s).
    fn held(flag: &Arc<std::sync::atomic::AtomicBool>, fail_from: usize) -> Slow {
        Slow { hold: Some(flag.clone()), ..Slow::new(0, fail_from) }
    }
}

/// A flag a fake task sets.
fn flag() -> Arc<std::sync::atomic::AtomicBool> {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}

/// Run `wf` from the start with `--checkpoint-every 1`, written behind if
/// `behind`, into `sink`.
fn every_1(wf: &Arc<Workflow>, fake: &Fake, behind: bool, sink: &mut Slow) -> Result<RunReport, RunError> {
    let mut state = RunState::new(wf, "s".into(), j("{}"));
    let channel = Arc::new(MemoryChannel::default());
    Engine::new(wf.clone(), fake).checkpoint_every(Some(1)).write_behind(behind).run(&mut state, &channel, sink)
}

impl CheckpointSink for Slow {
    fn write(
        &mut self,
        _: &Workflow,
        s: &RunState,
        _: &BTreeMap<String, Json>,
        r: &CheckpointRequest,
    ) -> Result<Written, SinkError> {
        std::thread::sleep(self.delay);
        if let Some(hold) = self.hold.take() {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !hold.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        if self.kept.len() + 1 >= self.fail_from {
            return Err("the disk is gone".into());
        }
        self.kept.push((s.clone(), r.clone()));
        Ok(Written { id: format!("cp{}", self.kept.len()), bytes: 1, fresh: true })
    }
}

fn chain_of(n: usize) -> Arc<Workflow> {
    let names_: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names_.iter().map(String::as_str).collect();
    workflow(&format!("[workflow]\nflow = \"{}\"", refs.join(" >> ")), names(&refs))
}

#[test]
fn write_behind_skips_boundaries_while_the_writer_is_busy_and_writes_the_last() {
    let wf = chain_of(40);
    // Written behind, the first write lasts until t39 runs.
    let last = flag();
    let set = last.clone();
    let fake = Fake::default().on("t39", move |_, _| {
        set.store(true, std::sync::atomic::Ordering::SeqCst);
        ok(serde_json::json!(null))
    });
    for behind in [false, true] {
        let mut sink = if behind { Slow::held(&last, usize::MAX) } else { Slow::new(0, usize::MAX) };
        let report = every_1(&wf, &fake, behind, &mut sink).unwrap();
        let steps: Vec<u64> = sink.kept.iter().map(|(s, _)| s.steps).collect();
        assert_eq!(report.checkpoints.len(), steps.len());
        assert_eq!(steps.last(), Some(&40), "the last boundary is always written");
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "in order: {steps:?}");
        assert!(sink.kept.iter().all(|(_, r)| r.mode == CheckpointMode::Auto));
        if behind {
            assert!(steps.len() < 40, "boundaries are skipped while the writer is busy: {steps:?}");
            assert_eq!(steps[0], 1, "the first boundary goes to the idle writer");
        } else {
            assert_eq!(steps, (1..=40).collect::<Vec<_>>());
        }
    }
}

#[test]
fn write_behind_reports_a_failed_checkpoint_and_writes_deferred_ones_in_turn() {
    let wf = chain_of(30);
    // The first write lasts until t5 runs (and asks for a checkpoint).
    let t5 = flag();
    let set = t5.clone();
    let fake = Fake::default().on("t5", move |_, ctx| {
        ctx.request_checkpoint("null").unwrap();
        set.store(true, std::sync::atomic::Ordering::SeqCst);
        ok(serde_json::json!(null))
    });
    let mut sink = Slow::held(&t5, 3);
    let err = every_1(&wf, &fake, true, &mut sink).unwrap_err();
    assert!(matches!(&err, RunError::Checkpoint { .. }), "{err:?}");
    assert!(crate::error_chain(&err).contains("the disk is gone"), "{}", crate::error_chain(&err));
    let kept: Vec<(u64, CheckpointMode)> = sink.kept.iter().map(|(s, r)| (s.steps, r.mode)).collect();
    assert_eq!(
        kept,
        [(1, CheckpointMode::Auto), (6, CheckpointMode::Deferred)],
        "the deferred one waited for the writer"
    );
}

#[test]
fn write_behind_never_writes_the_state_of_a_failed_task() {
    let wf = chain_of(12);
    let fake = Fake::default().on("t6", |_, _| Err(TaskFailure::new(FailureKind::Failed, "no")));
    let mut sink = Slow::new(30, usize::MAX);
    let err = every_1(&wf, &fake, true, &mut sink).unwrap_err();
    assert!(matches!(err, RunError::TaskFailed { .. }), "{err:?}");
    assert!(!sink.kept.is_empty());
    for (s, _) in &sink.kept {
        assert_eq!(s.pending_ids(), [format!("t{}", s.steps)], "every checkpoint is a boundary of the chain");
    }
}

#[test]
fn a_failed_task_is_named_once_and_a_dynamic_one_with_its_declared_task() {
    let error = |id: &str| {
        RunError::TaskFailed {
            task_id: id.into(),
            task: "weather".into(),
            module: "enrich".into(),
            attempts: 1,
            failure: TaskFailure::new(FailureKind::Failed, "no data"),
        }
        .to_string()
    };
    assert!(error("weather").starts_with("task 'weather' (module 'enrich') "), "{}", error("weather"));
    assert!(
        error("weather#1").starts_with("task 'weather#1' (task 'weather' in module 'enrich') "),
        "{}",
        error("weather#1")
    );
}

#[test]
fn a_long_loop_keeps_a_bounded_state() {
    // 5,000 iterations of one task: the state keeps the flow's node once,
    // the last completion, the cycle count; nothing per iteration.
    let wf = workflow(
        "[workflow]\nflow = \"step\"\nmax_steps = 100000\n[tasks.step]\nmax_cycles = 100000",
        names(&["step"]),
    );
    let fake = Fake::default().on("step", |input, ctx| {
        let n = input.to_value().unwrap().get("n").and_then(|v| v.as_u64()).unwrap_or(0);
        if n + 1 < 5000 {
            ctx.next_iteration(&format!("{{\"n\":{}}}", n + 1)).unwrap();
        }
        ok(serde_json::json!(n + 1))
    });
    let r = run(&wf, &fake, "{}");
    assert_eq!(r.result.unwrap().result, Some(j("5000")));
    assert_eq!(r.state.steps, 5000);
    assert_eq!(r.state.completed, ["step"], "only the flow's node is kept");
    assert_eq!(r.state.last_completed.as_deref(), Some("step@5000"));
    assert!(r.state.dynamic_tasks.is_empty());
    assert_eq!(r.state.cycle_counts.len(), 1);
}

/// What a recording sink saw, in order: `checkpoint <steps> <mode>`,
/// `record <after> (<before>)`, `rebase <steps>`.
type Seen = Arc<std::sync::Mutex<Vec<String>>>;

/// A sink that keeps records: checkpoints and records go to `seen`.
struct Recording(Seen);

struct Log {
    seen: Seen,
    prev: u64,
}

impl super::RecordSink for Log {
    fn append(&mut self, state: &RunState, _: BTreeMap<String, Json>) -> Result<u64, SinkError> {
        self.seen.lock().unwrap().push(format!("record {} ({})", state.steps, self.prev));
        self.prev = state.steps;
        Ok(1)
    }
    fn rebase(&mut self, steps: u64, _: BTreeMap<String, Json>) {
        self.seen.lock().unwrap().push(format!("rebase {steps}"));
        self.prev = steps;
    }
    fn bytes(&self) -> u64 {
        0
    }
    fn path(&self) -> &std::path::Path {
        std::path::Path::new("log")
    }
}

impl CheckpointSink for Recording {
    fn write(
        &mut self,
        _: &Workflow,
        s: &RunState,
        _: &BTreeMap<String, Json>,
        r: &CheckpointRequest,
    ) -> Result<Written, SinkError> {
        self.0.lock().unwrap().push(format!("checkpoint {} {}", s.steps, r.mode));
        Ok(Written { id: format!("cp{}", s.steps), bytes: 1, fresh: true })
    }
    fn open_records(&mut self, _: &str) -> Option<Box<dyn super::RecordSink>> {
        Some(Box::new(Log { seen: self.0.clone(), prev: 0 }))
    }
}

#[test]
fn write_behind_with_records_makes_every_boundary_durable_in_order() {
    let wf = workflow("[workflow]\nflow = \"a >> b >> c >> d >> e\"", names(&["a", "b", "c", "d", "e"]));
    let fake = Fake::default().on("c", |_, ctx| {
        ctx.request_checkpoint("{}").unwrap();
        ok(serde_json::json!("c"))
    });
    let seen: Seen = Default::default();
    let mut state = RunState::new(&wf, "s".into(), j("{}"));
    let channel = Arc::new(MemoryChannel::default());
    let report = Engine::new(wf.clone(), &fake)
        .checkpoint_every(Some(1))
        .write_behind(true)
        .run(&mut state, &channel, &mut Recording(seen.clone()))
        .unwrap();
    assert_eq!(report.result, Some(j("\"e\"")));
    let seen = seen.lock().unwrap().clone();
    // The first boundary is a checkpoint written at once, the records follow
    // it; a task's request is written at once and the records follow it;
    // background checkpoints (at most one a second) are of recorded
    // boundaries only, and the end is written.
    let records: Vec<&String> = seen.iter().filter(|s| !s.starts_with("checkpoint")).collect();
    assert_eq!(records, ["rebase 1", "record 2 (1)", "rebase 3", "record 4 (3)", "record 5 (4)"], "{seen:?}");
    assert_eq!(seen[0], "checkpoint 1 auto");
    assert!(seen.contains(&"checkpoint 3 deferred".to_string()), "{seen:?}");
    let background: Vec<u64> = seen
        .iter()
        .filter_map(|s| s.strip_prefix("checkpoint ").and_then(|s| s.strip_suffix(" auto")))
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(background.last(), Some(&5), "the end is written: {seen:?}");
}
