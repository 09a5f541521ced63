//! Checkpoint and resume through the CLI and real guests (Graflow's
//! test_checkpoint.py, test_checkpoint_scenarios.py and
//! test_checkpoint_resume_bug.py behaviours), bad checkpoints, portability and
//! crash consistency.

use crate::support::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Every committed checkpoint under `dir`, oldest first (via the CLI's JSON).
fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    graflow_host::checkpoint::list(dir).unwrap().into_iter().map(|s| s.base).collect()
}

fn show(wf: &Wf, base: &Path) -> Value {
    let out = cli(wf.dir.path(), &["checkpoints", "show", "--json", base.to_str().unwrap()]);
    out.ok().json()
}

fn resume(wf: &Wf, base: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["resume", base.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli(wf.dir.path(), &args)
}

fn chain(tasks: &[&str], extra: &str) -> Wf {
    workflow(&format!("[workflow]\nflow = \"{}\"\n{extra}\n{}", tasks.join(" >> "), scripted(tasks)))
}

/// [`chain`] of `t1 >> ... >> t<n>`.
fn chain_of(n: usize, extra: &str) -> Wf {
    let names: Vec<String> = (1..=n).map(|i| format!("t{i}")).collect();
    chain(&names.iter().map(String::as_str).collect::<Vec<_>>(), extra)
}

#[test]
fn deferred_checkpoint_resumes_with_successors() {
    let wf = chain(&["step_1", "step_2", "step_3"], "");
    let input = scripts(
        json!({"step_2": [{"op": "checkpoint", "metadata": {"stage": "mid"}}], "step_3": [{"op": "result", "value": "completed"}]}),
    );
    let full = wf.run(&input, &[]);
    assert_eq!(full.ok().json(), json!("completed"));
    let cps = checkpoints(&wf.checkpoints());
    assert_eq!(cps.len(), 1);
    let v = show(&wf, &cps[0]);
    assert_eq!(v["state"]["completed_tasks"], json!(["step_1", "step_2"]));
    assert_eq!(v["state"]["pending_tasks"][0]["task_id"], "step_3");
    assert_eq!(v["state"]["resuming_task_id"], Value::Null);
    assert_eq!(v["meta"]["steps"], 2);
    let meta = &v["meta"]["user_metadata"];
    assert_eq!(
        (meta["stage"].as_str(), meta["task_id"].as_str(), meta["cycle_count"].as_u64(), meta["mode"].as_str()),
        (Some("mid"), Some("step_2"), Some(1), Some("deferred"))
    );
    assert!(meta["elapsed_time"].as_f64().unwrap() >= 0.0);
    let resumed = resume(&wf, &cps[0], &[]);
    assert_eq!(resumed.ok().json(), json!("completed"), "same result as the uninterrupted run");
}

#[test]
fn resume_does_not_rerun_completed_tasks() {
    let wf = chain(&["a", "b", "c", "d"], "");
    let input = scripts(json!({"b": [{"op": "checkpoint"}], "d": [{"op": "return", "key": "order"}]}));
    assert_eq!(wf.run(&input, &[]).ok().json(), json!(["a", "b", "c", "d"]));
    let cp = &checkpoints(&wf.checkpoints())[0];
    assert_eq!(
        resume(&wf, cp, &[]).ok().json(),
        json!(["a", "b", "c", "d"]),
        "the channel's order list came from the checkpoint; c and d ran once more only after it"
    );
}

#[test]
fn state_machine_resumed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let wf_path = example("order");
    let wf = Wf { path: wf_path.clone(), dir };
    let cp = wf.checkpoints();
    let run = cli(
        wf.dir.path(),
        &["run", wf_path.to_str().unwrap(), "--input", r#"{"order_id":"X","work":10}"#, "--max-steps", "1"],
    );
    assert_eq!(run.code, 3, "{run:?}");
    let first = graflow_host::checkpoint::latest(&cp).unwrap();
    assert_eq!(first.meta.user_metadata["stage"], "validation_complete");
    let second = cli(wf.dir.path(), &["resume", "--latest", cp.to_str().unwrap(), "--max-steps", "2"]);
    assert_eq!(second.code, 3, "{second:?}");
    let latest = graflow_host::checkpoint::latest(&cp).unwrap();
    assert_eq!(latest.meta.steps, 2);
    let stages: Vec<String> = graflow_host::checkpoint::list(&cp)
        .unwrap()
        .iter()
        .filter_map(|s| s.meta.user_metadata["stage"].as_str().map(String::from))
        .collect();
    assert_eq!(stages, ["validation_complete", "payment_complete"]);
    let last = cli(wf.dir.path(), &["resume", "--latest", cp.to_str().unwrap()]);
    assert_eq!(last.ok().json(), json!("ORDER_COMPLETE"));
    let loaded = load_cp(&graflow_host::checkpoint::latest(&cp).unwrap().base);
    assert_eq!(loaded.context.channel["order_state"].to_value().unwrap(), json!("SHIPPED"));
    assert_eq!(loaded.context.state.session_id, first.meta.session_id, "one session across resumes");
}

#[test]
fn periodic_checkpoints_in_a_loop_keep_cycle_counts() {
    let wf = workflow("[workflow]\nflow = \"train\"\n[tasks.train]\nexport = \"script\"\nmax_cycles = 10");
    let script = json!({"train": [
        {"op": "add", "key": "iteration"},
        {"op": "checkpoint", "cycle": 3, "metadata": {"iteration": 3}},
        {"op": "checkpoint", "cycle": 6, "metadata": {"iteration": 6}},
        {"op": "iterate_below", "cycles": 10},
        {"op": "return", "key": "iteration"}
    ]});
    assert_eq!(wf.run(&scripts(script.clone()), &[]).ok().json(), json!(10));
    let cps = checkpoints(&wf.checkpoints());
    assert_eq!(cps.len(), 2);
    let v = show(&wf, &cps[1]);
    assert_eq!(v["meta"]["user_metadata"]["iteration"], 6);
    assert_eq!(v["state"]["cycle_counts"]["train"], 6);
    assert_eq!(v["state"]["pending_tasks"][0]["task_id"], "train@7");
    assert_eq!(resume(&wf, &cps[1], &[]).ok().json(), json!(10), "4 more runs reach iteration 10");
}

#[test]
fn a_long_loop_keeps_a_window_of_iteration_results_and_a_resume_keeps_the_window() {
    let wf = workflow(
        "[workflow]\nflow = \"train\"\nkeep_iteration_results = 3\n[tasks.train]\nexport = \"script\"\nmax_cycles = 12",
    );
    let script = json!({"train": [
        {"op": "add", "key": "iteration"},
        {"op": "checkpoint", "cycle": 6},
        {"op": "iterate_below", "cycles": 12},
        {"op": "return", "key": "iteration"}
    ]});
    assert_eq!(wf.run(&scripts(script), &[]).ok().json(), json!(12));
    let cp = &checkpoints(&wf.checkpoints())[0];
    let loaded = load_cp(cp);
    let kept = |channel: &std::collections::BTreeMap<String, graflow_host::json::Json>| -> Vec<String> {
        channel.keys().filter(|k| k.starts_with("train@")).cloned().collect()
    };
    assert_eq!(kept(&loaded.context.channel), ["train@4.__result__", "train@5.__result__", "train@6.__result__"]);
    assert_eq!(loaded.meta.keep_iteration_results, Some(3), "the window is in the signed record");
    assert_eq!(loaded.context.workflow.settings.keep_iteration_results, 3);
    // Resumed at iteration 7: the window still holds, up to the last.
    let out = cli(wf.dir.path(), &["resume", cp.to_str().unwrap(), "--json", "--checkpoint-every", "6"]);
    assert_eq!(out.ok().json()["result"], json!(12));
    let newest = load_cp(&graflow_host::checkpoint::latest(&wf.checkpoints()).unwrap().base);
    assert_eq!(newest.context.state.steps, 12);
    assert_eq!(kept(&newest.context.channel), ["train@10.__result__", "train@11.__result__", "train@12.__result__"]);
}

#[test]
fn recovery_after_a_failing_task() {
    let wf = chain(&["step_1", "step_2", "step_3"], "");
    let input = scripts(json!({"step_2": [{"op": "checkpoint"}], "step_3": [{"op": "fail", "message": "disk full"}]}));
    let out = wf.run(&input, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    let cp = &checkpoints(&wf.checkpoints())[0];
    let v = show(&wf, cp);
    assert_eq!(v["state"]["completed_tasks"], json!(["step_1", "step_2"]));
    assert_eq!(v["state"]["pending_tasks"][0]["task_id"], "step_3");
    let loaded = load_cp(cp);
    assert!(
        loaded.context.channel.contains_key("step_1.__result__")
            && loaded.context.channel.contains_key("step_2.__result__")
    );
}

#[test]
fn dynamic_tasks_survive_resume() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"coordinator >> gather\"\n{}",
        scripted(&["coordinator", "gather", "worker"])
    ));
    let spawn: Vec<Value> = (0..3)
        .map(|i| json!({"op": "next_task", "task": "worker", "input": {"x": i}}))
        .chain([json!({"op": "checkpoint"})])
        .collect();
    let input = scripts(json!({"coordinator": spawn, "gather": [{"op": "return", "key": "order"}]}));
    let expected = json!(["coordinator", "worker#1", "worker#2", "worker#3", "gather"]);
    assert_eq!(wf.run(&input, &[]).ok().json(), expected);
    let cp = &checkpoints(&wf.checkpoints())[0];
    let v = show(&wf, cp);
    let pending: Vec<&str> =
        v["state"]["pending_tasks"].as_array().unwrap().iter().map(|p| p["task_id"].as_str().unwrap()).collect();
    assert_eq!(pending, ["worker#1", "worker#2", "worker#3", "gather"]);
    assert_eq!(v["state"]["pending_tasks"][1]["input"], json!({"x": 1}));
    let loaded = load_cp(cp);
    assert_eq!(loaded.context.state.dynamic_tasks.len(), 3, "run-time graph additions are in the context");
    assert_eq!(resume(&wf, cp, &[]).ok().json(), expected);
}

#[test]
fn terminate_with_checkpoint() {
    let wf = chain(&["step_1", "step_2", "step_3"], "");
    let input = scripts(
        json!({"step_2": [{"op": "checkpoint", "metadata": {"stage": "before_terminate"}}, {"op": "terminate", "message": "done early"}, {"op": "result", "value": "terminated"}]}),
    );
    assert_eq!(wf.run(&input, &[]).ok().json(), json!("terminated"));
    let cp = &checkpoints(&wf.checkpoints())[0];
    let v = show(&wf, cp);
    assert_eq!(v["state"]["completed_tasks"], json!(["step_1", "step_2"]));
    assert_eq!(v["state"]["pending_tasks"], json!([]), "step_3 was never queued");
    assert_eq!(v["meta"]["user_metadata"]["stage"], "before_terminate");
    let loaded = load_cp(cp);
    assert_eq!(loaded.context.channel["step_2.__result__"].to_value().unwrap(), json!("terminated"));
}

#[test]
fn user_metadata_keys_win_over_enrichment() {
    let wf = chain(&["only"], "");
    let input = scripts(json!({"only": [{"op": "checkpoint", "metadata": {"custom_field": [1, 2], "mode": "mine"}}]}));
    wf.run(&input, &[]).ok();
    let meta = &show(&wf, &checkpoints(&wf.checkpoints())[0])["meta"]["user_metadata"];
    assert_eq!(meta["custom_field"], json!([1, 2]));
    assert_eq!(meta["mode"], "mine");
    assert_eq!(meta["task_id"], "only");
}

#[test]
fn several_checkpoints_in_one_session_have_distinct_ids() {
    let wf = chain(&["a", "b", "c", "d"], "");
    let marks: Vec<Value> = vec![json!({"op": "checkpoint", "metadata": {"progress": 25}})];
    let input = scripts(
        json!({"a": marks, "b": [{"op": "checkpoint", "metadata": {"progress": 50}}], "c": [{"op": "checkpoint", "metadata": {"progress": 75}}], "d": [{"op": "checkpoint", "metadata": {"progress": 100}}]}),
    );
    wf.run(&input, &[]).ok();
    let all = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap();
    let ids: std::collections::BTreeSet<_> = all.iter().map(|s| s.meta.checkpoint_id.clone()).collect();
    assert_eq!(ids.len(), 4);
    let half = all.iter().find(|s| s.meta.user_metadata["progress"] == 50).unwrap();
    assert_eq!(half.meta.steps, 2);
    let session = &all[0].meta.session_id;
    assert!(all.iter().all(|s| &s.meta.session_id == session && s.meta.checkpoint_id.starts_with(session.as_str())));
    assert_eq!(resume(&wf, &half.base, &[]).code, 0);
}

#[test]
fn checkpoint_every_n_tasks_and_prune() {
    let wf = chain(&["a", "b", "c", "d", "e"], "");
    wf.run(&scripts(json!({})), &["--checkpoint-every", "2"]).ok();
    let all = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap();
    assert_eq!(all.iter().map(|s| s.meta.steps).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(all[0].meta.user_metadata["mode"], "auto");
    let out = cli(wf.dir.path(), &["checkpoints", "prune", "--keep", "1"]);
    assert!(out.ok().stdout.contains("kept 1 older full checkpoint(s)"), "{out:?}");
    assert_eq!(checkpoints(&wf.checkpoints()).len(), 2, "the newest, an increment, and the full one under it");
    assert_eq!(
        std::fs::read_dir(wf.checkpoints().join("modules")).unwrap().count(),
        1,
        "the module copy is still referenced"
    );
    cli(wf.dir.path(), &["checkpoints", "prune", "--keep", "0"]).ok();
    assert_eq!(std::fs::read_dir(wf.checkpoints().join("modules")).unwrap().count(), 0);
    let list = cli(wf.dir.path(), &["checkpoints", "list"]);
    assert!(list.ok().stdout.contains("no checkpoints"), "{list:?}");
}

/// A workflow with one checkpoint after `a`, for the bad-input tests.
fn one_checkpoint() -> (Wf, PathBuf) {
    let wf = chain(&["a", "b"], "");
    wf.run(&scripts(json!({"a": [{"op": "checkpoint"}]})), &[]).ok();
    let cp = checkpoints(&wf.checkpoints()).remove(0);
    (wf, cp)
}

fn ext(base: &Path, e: &str) -> PathBuf {
    graflow_host::checkpoint::with_ext(base, e)
}

#[track_caller]
fn refused(wf: &Wf, cp: &Path, needle: &str) {
    let out = resume(wf, cp, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(needle), "expected {needle:?} in: {}", out.stderr);
}

#[test]
fn missing_checkpoint() {
    let (wf, cp) = one_checkpoint();
    refused(&wf, &cp.with_file_name("nope"), "no checkpoint at");
    let out = cli(wf.dir.path(), &["resume", "--latest", "empty-dir"]);
    assert_eq!(out.code, 2);
}

#[test]
fn corrupt_json_names_the_file() {
    let (wf, cp) = one_checkpoint();
    std::fs::write(ext(&cp, "meta.json"), "{ not json").unwrap();
    refused(&wf, &cp, "meta.json: corrupt JSON");
    let (wf, cp) = one_checkpoint();
    std::fs::write(ext(&cp, "state.json"), "{ not json").unwrap();
    refused(&wf, &cp, "is torn");
}

#[test]
fn truncated_or_damaged_ctx() {
    let (wf, cp) = one_checkpoint();
    let bytes = std::fs::read(ext(&cp, "ctx")).unwrap();
    std::fs::write(ext(&cp, "ctx"), &bytes[..bytes.len() / 2]).unwrap();
    refused(&wf, &cp, ".ctx does not match its commit record");
}

#[test]
fn unknown_schema_version() {
    let (wf, cp) = one_checkpoint();
    let meta = std::fs::read_to_string(ext(&cp, "meta.json"))
        .unwrap()
        .replace("\"schema_version\": \"2\"", "\"schema_version\": \"7\"");
    std::fs::write(ext(&cp, "meta.json"), meta).unwrap();
    refused(&wf, &cp, "schema version 7, but this graflow-host reads versions 1 to 3");
}

#[test]
fn torn_checkpoint_without_its_commit_record() {
    let (wf, cp) = one_checkpoint();
    std::fs::remove_file(ext(&cp, "meta.json")).unwrap();
    refused(&wf, &cp, "is torn (its write did not finish");
    let list = cli(wf.dir.path(), &["checkpoints", "list"]);
    assert!(list.ok().stdout.contains("no checkpoints"), "a torn checkpoint is not listed: {list:?}");
}

#[test]
fn a_module_with_a_different_hash_is_refused_unless_allowed() {
    let (wf, cp) = one_checkpoint();
    let module = wf.dir.path().join("kit.wasm");
    let mut bytes = std::fs::read(&module).unwrap();
    let before = graflow_host::digest::Sha256::of(&bytes).to_hex();
    // Append a custom section: the same code, other bytes.
    bytes.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
    std::fs::write(&module, &bytes).unwrap();
    let after = graflow_host::digest::Sha256::of(&bytes).to_hex();
    let out = resume(&wf, &cp, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(&format!("module 'kit' changed: the checkpoint recorded sha256 {before}")), "{out:?}");
    assert!(out.stderr.contains(&after), "{out:?}");
    let allowed = resume(&wf, &cp, &["--allow-module-change"]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert!(allowed.stderr.contains("changed since the checkpoint"), "a warning names the change: {allowed:?}");
}

#[test]
fn a_checkpoint_directory_moves_to_another_machine() {
    let wf = chain(&["a", "b", "c"], "");
    let input = scripts(json!({"a": [{"op": "checkpoint"}], "c": [{"op": "return", "key": "order"}]}));
    let expected = wf.run(&input, &[]).ok().json();
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("moved");
    copy_dir(&wf.checkpoints(), &copy);
    let cp = checkpoints(&copy).remove(0);
    drop(wf);
    let out = cli(elsewhere.path(), &["resume", cp.to_str().unwrap()]);
    assert_eq!(out.ok().json(), expected);
}

#[test]
fn single_byte_flips_never_resume_wrongly() {
    let wf = chain(&["a", "b"], "");
    let input = scripts(json!({"a": [{"op": "checkpoint"}], "b": [{"op": "return", "key": "order"}]}));
    let expected = wf.run(&input, &[]).ok().json();
    let cp = checkpoints(&wf.checkpoints()).remove(0);
    for e in ["meta.json", "state.json", "ctx"] {
        let path = ext(&cp, e);
        let original = std::fs::read(&path).unwrap();
        let step = (original.len() / 40).max(1);
        for i in (0..original.len()).step_by(step) {
            let mut damaged = original.clone();
            damaged[i] ^= 0x20;
            std::fs::write(&path, &damaged).unwrap();
            let out = resume(&wf, &cp, &["--checkpoint-every", "0"]);
            assert!(out.code == 0 || out.code == 2, "flip at {e}:{i} gave {out:?}");
            if out.code == 0 {
                assert_eq!(out.json(), expected, "flip at {e}:{i} resumed to another result");
            } else {
                assert!(out.stderr.starts_with("error: "), "flip at {e}:{i}: {out:?}");
            }
        }
        std::fs::write(&path, &original).unwrap();
    }
}

#[test]
fn kill_9_at_any_point_resumes_to_the_same_result() {
    let names: Vec<String> = (1..=12).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let wf = chain(&refs, "");
    let mut script = serde_json::Map::new();
    for n in &refs {
        script.insert(
            n.to_string(),
            json!([{"op": "work", "rounds": 8_000_000}, {"op": "add", "key": "total", "amount": 1}]),
        );
    }
    script.insert("t12".into(), json!([{"op": "add", "key": "total", "amount": 1}, {"op": "return", "key": "order"}]));
    let input = scripts(Value::Object(script)).to_string();
    let expected = wf
        .run(&serde_json::from_str(&input).unwrap(), &["--checkpoint-every", "1", "--checkpoint-dir", "reference"])
        .ok()
        .json();
    let reference = graflow_host::checkpoint::list(&wf.dir.path().join("reference")).unwrap();
    assert!(
        reference.iter().filter(|s| s.meta.base.is_some()).count() >= 9,
        "checkpoints after the first are increments, so the kills below hit them"
    );
    // A kill point is a place in the run, not a time: wait until the run has
    // committed `k` checkpoints, then a fraction of one task's time more, so the
    // kills land before, inside and after the writes of every checkpoint
    // whatever the machine's speed or load.
    let commits = |dir: &std::path::Path| -> usize {
        let Ok(sessions) = std::fs::read_dir(dir) else { return 0 };
        sessions
            .flatten()
            .filter_map(|s| std::fs::read_dir(s.path()).ok())
            .flatten()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().ends_with(".meta.json"))
            .count()
            // With write-behind, a boundary is a durable record first.
            + record_logs(dir).iter().map(|l| record_frames(l)).sum::<usize>()
    };
    let points = 30u32;
    let mut killed = 0;
    for point in 0..points {
        let dir = format!("crash{point}");
        let (k, fraction) = (point as usize % 11, point / 11);
        // Every other run writes its checkpoints behind the tasks.
        let behind: &[&str] = if point % 2 == 1 { &["--write-behind"] } else { &[] };
        let mut child = command(wf.dir.path())
            .args(["run", "workflow.toml", "--input", &input, "--checkpoint-every", "1", "--checkpoint-dir", &dir])
            .args(behind)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let cp = wf.dir.path().join(&dir);
        let mut last_commit = std::time::Instant::now();
        let mut seen = 0;
        let mut task_time = std::time::Duration::from_millis(20);
        while seen < k && child.try_wait().unwrap().is_none() {
            let now = commits(&cp);
            if now > seen {
                if seen > 0 {
                    task_time = last_commit.elapsed() / (now - seen) as u32;
                }
                seen = now;
                last_commit = std::time::Instant::now();
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(task_time * fraction / 3);
        let _ = child.kill();
        if child.wait().unwrap().success() {
            continue;
        }
        killed += 1;
        let out = match graflow_host::checkpoint::latest(&cp) {
            Ok(latest) => resume(&wf, &latest.base, &[]),
            Err(_) => wf.run(&serde_json::from_str(&input).unwrap(), &["--checkpoint-dir", &dir]),
        };
        assert_eq!(out.ok().json(), expected, "after a kill at point {point}");
    }
    assert!(killed >= 25, "only {killed} of {points} runs were killed before they finished");
}

#[test]
fn ctrl_c_checkpoints_at_the_boundary_and_prints_the_resume_command() {
    // a checkpoints; b waits for a file the test makes after the interrupt
    // (events, not a guess at the machine's speed): the run stops at the
    // boundary after b, and the resume runs c and d, each once.
    let wf = workflow(
        "[workflow]\nflow = \"a >> b >> c >> d\"\n[tasks.a]\nexport = \"script\"\n\
         [tasks.b]\nexport = \"script\"\ndirs = [{ host = \"gate\", guest = \"/gate\" }]\n\
         [tasks.c]\nexport = \"script\"\n[tasks.d]\nexport = \"script\"\n",
    );
    std::fs::create_dir(wf.dir.path().join("gate")).unwrap();
    let input = scripts(json!({
        "a": [{"op": "checkpoint", "metadata": {}}],
        "b": [{"op": "wait_file", "path": "/gate/go"}],
        "d": [{"op": "return", "key": "order"}]
    }))
    .to_string();
    let cp = wf.checkpoints();
    let mut child = command(wf.dir.path())
        .env("GRAFLOW_LOG", "warn,graflow_host::engine::frame=debug")
        .args(["run", "workflow.toml", "--input", &input])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once b runs (after a's checkpoint): an event the run logs,
    // not the checkpoint's files appearing, which come before its syncs end.
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut stderr = String::new();
    while !stderr.lines().any(|l| l.contains("task started") && l.contains("task=b")) {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0, "the run ended early: {stderr}");
        stderr.push_str(&line);
    }
    assert!(graflow_host::checkpoint::list(&cp).is_ok_and(|l| !l.is_empty()), "a's checkpoint is committed");
    sigint(&child);
    // b may finish once the run says it took the interrupt.
    while !stderr.contains("interrupt received") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0, "the run ended early: {stderr}");
        stderr.push_str(&line);
    }
    std::fs::write(wf.dir.path().join("gate/go"), "").unwrap();
    std::io::Read::read_to_string(&mut reader, &mut stderr).unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("resume with: graflow-host resume "), "{stderr}");
    let latest = graflow_host::checkpoint::latest(&cp).unwrap();
    assert_eq!(latest.meta.steps, 2, "stopped at the boundary after b: {:?}", latest.meta);
    let resumed = cli(wf.dir.path(), &["resume", "--latest"]);
    assert_eq!(resumed.ok().json(), json!(["a", "b", "c", "d"]), "each task ran exactly once");
}

#[test]
fn a_task_still_running_after_the_grace_period_is_stopped_and_queued_again() {
    let wf = workflow("[workflow]\nflow = \"noop >> spin\"\n[tasks.spin]\nlimits = { timeout_ms = 60000 }");
    let mut child = command(wf.dir.path())
        .args(["run", "workflow.toml", "--grace-period-ms", "100"])
        .env("GRAFLOW_LOG", "graflow_host=debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once `spin` has started, however slow the machine.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("task started task=spin") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0, "the run ended early: {log}");
        log.push_str(&line);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    sigint(&child);
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5), "{log}");
    let latest = graflow_host::checkpoint::latest(&wf.checkpoints()).unwrap();
    let loaded = load_cp(&latest.base);
    assert_eq!(loaded.state_file.completed_tasks, ["noop"]);
    assert_eq!(loaded.state_file.pending_tasks[0].task_id, "spin", "the stopped task is queued again");
    assert_eq!(loaded.state_file.cycle_counts.get("spin"), Some(&0), "the stopped run is not counted");
}

/// A chain whose first task writes a 300 KB value and whose last returns the
/// order, checkpointed after every task: one full checkpoint, then
/// increments over it.
fn incremental_run() -> (Wf, Value, Vec<graflow_host::checkpoint::Summary>) {
    let names: Vec<String> = (1..=6).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let wf = chain(&refs, "");
    let input = scripts(json!({
        "t1": [{"op": "big_value", "key": "blob", "bytes": 300_000}],
        "t3": [{"op": "set", "key": "note", "value": {"at": "t3"}}],
        "t6": [{"op": "return", "key": "order"}],
    }));
    let expected = wf.run(&input, &["--checkpoint-every", "1"]).ok().json();
    let all = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap();
    (wf, expected, all)
}

fn ctx_size(base: &Path) -> u64 {
    std::fs::metadata(ext(base, "ctx")).unwrap().len()
}

#[test]
fn checkpoints_after_the_first_are_increments_that_resume_alike() {
    use graflow_host::checkpoint::schema::SchemaVersion;
    let (wf, expected, all) = incremental_run();
    assert_eq!(all.iter().map(|s| s.meta.steps).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    let full = &all[0];
    assert_eq!(full.meta.schema_version, SchemaVersion::V2);
    assert!(full.meta.base.is_none());
    assert!(ctx_size(&full.base) > 300_000);
    for s in &all[1..] {
        assert_eq!(s.meta.schema_version, SchemaVersion::V3, "{}", s.meta.checkpoint_id);
        assert_eq!(s.meta.base.as_ref().unwrap().checkpoint_id, full.meta.checkpoint_id);
        assert!(ctx_size(&s.base) < 4_000, "an increment holds what changed, not the 300 KB value");
    }
    for s in &all {
        assert_eq!(resume(&wf, &s.base, &[]).ok().json(), expected, "resuming {}", s.meta.checkpoint_id);
    }
    let shown = cli(wf.dir.path(), &["checkpoints", "show", all[2].base.to_str().unwrap()]).ok().stdout.clone();
    assert!(shown.contains(&format!("increment over {}", full.meta.checkpoint_id)), "{shown}");
    assert_eq!(show(&wf, &all[2].base)["meta"]["base"]["checkpoint_id"], json!(full.meta.checkpoint_id));

    // A resumed run writes increments over the same base.
    let resumed_dir = wf.checkpoints();
    let before: Vec<_> = checkpoints(&resumed_dir);
    resume(&wf, &all[1].base, &["--checkpoint-every", "1"]).ok();
    let after = graflow_host::checkpoint::list(&resumed_dir).unwrap();
    let new: Vec<_> = after.iter().filter(|s| !before.contains(&s.base)).collect();
    assert!(!new.is_empty());
    assert!(
        new.iter().all(|s| s.meta.base.as_ref().is_some_and(|b| b.checkpoint_id == full.meta.checkpoint_id)),
        "{new:?}"
    );

    // The directory copied elsewhere resumes its increments.
    let elsewhere = tempfile::tempdir().unwrap();
    copy_dir(&wf.checkpoints(), &elsewhere.path().join("moved"));
    let moved = checkpoints(&elsewhere.path().join("moved"));
    let out = cli(elsewhere.path(), &["resume", moved[3].to_str().unwrap()]);
    assert_eq!(out.ok().json(), expected);

    // Prune keeps the base of the increment it keeps.
    let out = cli(wf.dir.path(), &["checkpoints", "prune", "--keep", "1"]).ok().stdout.clone();
    assert!(
        out.contains(&format!(
            "kept 1 older full checkpoint(s) that kept increments are written over: {}",
            full.meta.checkpoint_id
        )),
        "{out}"
    );
    let left = checkpoints(&wf.checkpoints());
    assert_eq!(left.len(), 2);
    assert_eq!(resume(&wf, left.last().unwrap(), &[]).ok().json(), expected);
}

#[test]
fn an_increment_without_its_base_is_refused_naming_it() {
    let (wf, _, all) = incremental_run();
    let full = &all[0];
    std::fs::remove_file(ext(&full.base, "ctx")).unwrap();
    let out = resume(&wf, &all[3].base, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!("it is an increment over checkpoint {}", full.meta.checkpoint_id))
            && out.stderr.contains("is missing"),
        "{out:?}"
    );
    let listed = checkpoints(&wf.checkpoints());
    assert!(listed.is_empty(), "increments without their base are not listed: {listed:?}");
    let latest = cli(wf.dir.path(), &["resume", "--latest", "checkpoints"]);
    assert_eq!(latest.code, 2, "{latest:?}");
    // Prune removes the increments nothing can resume.
    let out = cli(wf.dir.path(), &["checkpoints", "prune", "--keep", "10"]).ok().stdout.clone();
    assert!(out.contains("removed 5 increment(s) whose base is gone"), "{out}");
    for s in &all[1..] {
        for e in ["meta.json", "state.json", "ctx"] {
            assert!(!ext(&s.base, e).exists(), "{} {e} is left", s.meta.checkpoint_id);
        }
    }
}

#[test]
fn an_increment_whose_base_lost_its_commit_record_is_refused_like_list_refuses_it() {
    let (wf, expected, all) = incremental_run();
    let full = &all[0];
    let record = ext(&full.base, "meta.json");
    let saved = std::fs::read(&record).unwrap();
    std::fs::remove_file(&record).unwrap();
    let out = resume(&wf, &all[3].base, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("it is an increment over checkpoint {}, whose commit record", full.meta.checkpoint_id)),
        "{out:?}"
    );
    assert!(checkpoints(&wf.checkpoints()).is_empty());
    // The record put back, the increments resume again.
    std::fs::write(&record, &saved).unwrap();
    assert_eq!(resume(&wf, &all[3].base, &[]).ok().json(), expected);
    // Gone again, prune removes the increments and the base's uncommitted
    // files together.
    std::fs::remove_file(&record).unwrap();
    let out = cli(wf.dir.path(), &["checkpoints", "prune", "--keep", "10"]).ok().stdout.clone();
    assert!(out.contains("removed 5 increment(s) whose base is gone"), "{out}");
    assert!(out.contains("2 files of uncommitted checkpoints"), "{out}");
}

#[test]
fn single_byte_flips_of_an_increment_or_its_base_never_resume_wrongly() {
    let (wf, expected, all) = incremental_run();
    let (full, inc) = (&all[0], &all[2]);
    let targets = [
        ext(&inc.base, "meta.json"),
        ext(&inc.base, "state.json"),
        ext(&inc.base, "ctx"),
        ext(&full.base, "ctx"),
        ext(&full.base, "meta.json"),
    ];
    let mut refused = 0;
    for path in &targets {
        let original = std::fs::read(path).unwrap();
        let step = (original.len() / 24).max(1);
        for i in (0..original.len()).step_by(step) {
            let mut damaged = original.clone();
            damaged[i] ^= 0x20;
            std::fs::write(path, &damaged).unwrap();
            let out = resume(&wf, &inc.base, &["--checkpoint-every", "0"]);
            let at = format!("{}:{i}", path.display());
            assert!(out.code == 0 || out.code == 2, "flip at {at} gave {out:?}");
            if out.code == 0 {
                assert_eq!(out.json(), expected, "flip at {at} resumed to another result");
            } else {
                assert!(out.stderr.starts_with("error: "), "flip at {at}: {out:?}");
                refused += 1;
            }
        }
        std::fs::write(path, &original).unwrap();
    }
    assert!(refused >= 60, "only {refused} flips were refused");
    assert_eq!(resume(&wf, &inc.base, &[]).ok().json(), expected);
}

#[test]
fn with_write_behind_a_request_the_task_was_told_is_accepted_is_written() {
    let wf = chain(&["t0", "t1", "t2", "t3"], "[workflow.bounds]\nmax_checkpoints = 2");
    let input = scripts(json!({
        "t1": [{"op": "sleep", "ms": 40}],
        "t2": [{"op": "raw", "call": "checkpoint", "text": "{\"why\": \"t2 asked\"}"}],
        "t3": [{"op": "return", "key": "refused"}],
    }));
    for i in 0..4 {
        let dir = format!("cp{i}");
        let refused =
            wf.run(&input, &["--checkpoint-every", "1", "--write-behind", "--checkpoint-dir", &dir]).ok().json();
        let all = graflow_host::checkpoint::list(&wf.dir.path().join(&dir)).unwrap();
        let deferred = all.iter().any(|s| s.meta.user_metadata["mode"] == "deferred");
        // Refused (the checkpoint in flight counted), or accepted and written.
        if refused.is_null() {
            assert!(deferred, "run {i}: t2 was told its request is accepted, but it was not written: {all:?}");
        } else {
            assert!(refused.to_string().contains("max_checkpoints = 2"), "run {i}: {refused}");
            assert!(!deferred, "run {i}");
            assert_eq!(all.len(), 2, "run {i}: {all:?}");
        }
    }
}

#[test]
fn with_write_behind_the_max_steps_checkpoint_keeps_its_mode() {
    let wf = chain_of(8, "");
    // A 20 MB value makes the first checkpoint slow, so boundaries are skipped
    // and one is owed when max-steps stops the run.
    let input = scripts(json!({"t1": [{"op": "big_value", "key": "blob", "bytes": 20_000_000}]}));
    let out = wf.run(&input, &["--checkpoint-every", "1", "--write-behind", "--max-steps", "6", "--json"]);
    assert_eq!(out.code, 3, "{out:?}");
    let all = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap();
    let last = all.last().unwrap();
    assert_eq!(last.meta.steps, 6);
    assert_eq!(last.meta.user_metadata["mode"], "max_steps", "{all:?}");
    assert!(all.iter().filter(|s| s.meta.steps == 6).count() == 1, "one checkpoint of the last boundary: {all:?}");
}

#[test]
fn with_write_behind_a_task_that_fails_leaves_the_boundary_before_it() {
    let wf = chain_of(8, "");
    // A 20 MB value makes the first checkpoint slow, so boundaries are skipped
    // while t2 to t7 run.
    let input = scripts(json!({
        "t1": [{"op": "big_value", "key": "blob", "bytes": 20_000_000}],
        "t8": [{"op": "fail", "message": "boom"}],
    }));
    let out = wf.run(&input, &["--checkpoint-every", "1", "--write-behind"]);
    assert_eq!(out.code, 1, "{out:?}");
    let latest = graflow_host::checkpoint::latest(&wf.checkpoints()).unwrap();
    assert_eq!(latest.meta.steps, 7, "the boundary before t8");
    let loaded = load_cp(&latest.base);
    assert_eq!(loaded.state_file.pending_tasks[0].task_id, "t8");
    assert_eq!(loaded.state_file.completed_tasks.len(), 7);
    assert_eq!(loaded.state_file.cycle_counts.get("t8"), None, "as at the boundary before t8 ran");
    let again = resume(&wf, &latest.base, &["--json"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(again.json()["steps"], 7, "{again:?}");
    assert!(again.stderr.contains("boom") || again.stdout.contains("boom"), "{again:?}");
}

#[test]
fn with_write_behind_a_task_over_the_channel_bound_leaves_the_boundary_before_it() {
    let wf = chain_of(8, "[workflow.bounds]\nmax_channel_bytes = 30000000");
    let input = scripts(json!({
        "t1": [{"op": "big_value", "key": "blob", "bytes": 20_000_000}],
        "t8": [{"op": "big_value", "key": "more", "bytes": 15_000_000}],
    }));
    let out = wf.run(&input, &["--checkpoint-every", "1", "--write-behind"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("max_channel_bytes"), "{out:?}");
    let latest = graflow_host::checkpoint::latest(&wf.checkpoints()).unwrap();
    assert_eq!(latest.meta.steps, 7, "the boundary before t8");
    assert_eq!(load_cp(&latest.base).state_file.pending_tasks[0].task_id, "t8");
}

/// The committed checkpoints of a directory, and every commit record file in
/// it (a record `list` skips is a torn or dangling checkpoint).
fn committed_and_records(dir: &Path) -> (Vec<graflow_host::checkpoint::Summary>, usize) {
    let all = graflow_host::checkpoint::list(dir).unwrap();
    let records = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir() && e.file_name() != "modules")
        .flat_map(|s| std::fs::read_dir(s.path()).unwrap().flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".meta.json"))
        .count();
    (all, records)
}

#[test]
fn retention_keeps_the_newest_checkpoints_and_what_they_need_and_a_resume_keeps_the_rule() {
    let wf = chain_of(12, "");
    let input = scripts(json!({"t12": [{"op": "result", "value": "end"}]}));
    let out = wf.run(&input, &["--json", "--checkpoint-every", "1", "--keep-checkpoints", "3", "--max-steps", "8"]);
    assert_eq!(out.code, 3, "{out:?}");
    let (all, records) = committed_and_records(&wf.checkpoints());
    assert_eq!(records, all.len(), "no torn or dangling checkpoint is left");
    let steps: Vec<u64> = all.iter().map(|s| s.meta.steps).collect();
    // The newest three, and at most one older full checkpoint they are written over.
    assert!(steps.ends_with(&[6, 7, 8]), "{steps:?}");
    assert!(all.len() <= 4, "{steps:?}");
    for s in &all[..all.len() - 3] {
        assert!(s.meta.base.is_none(), "an older one is kept only as a base: {steps:?}");
        assert!(
            all[all.len() - 3..].iter().any(|k| k
                .meta
                .base
                .as_ref()
                .is_some_and(|b| b.checkpoint_id == s.meta.checkpoint_id)),
            "{steps:?}"
        );
    }
    assert_eq!(all.last().unwrap().meta.keep_checkpoints, Some(3), "the rule is in the record");
    // Resumed without the flag: the same result, and the rule still holds.
    let out = cli(wf.dir.path(), &["resume", "--latest", "--json", "--checkpoint-every", "1"]);
    assert_eq!(out.ok().json()["result"], "end");
    let (all, records) = committed_and_records(&wf.checkpoints());
    assert_eq!(records, all.len());
    let steps: Vec<u64> = all.iter().map(|s| s.meta.steps).collect();
    assert!(steps.ends_with(&[10, 11, 12]) && all.len() <= 4, "{steps:?}");
    // Every checkpoint left resumes.
    for s in &all {
        graflow_host::checkpoint::load(&s.base, &test_key(), graflow_host::checkpoint::Trust::Signed)
            .unwrap_or_else(|e| panic!("{}: {e:#}", s.base.display()));
    }
}

#[test]
fn with_a_retention_rule_the_checkpoint_count_bound_no_longer_stops_durability() {
    let bounded = "[workflow.bounds]\nmax_checkpoints = 3\n";
    let input = scripts(json!({}));
    // Without retention: checkpoints stop at the bound, saying so.
    let wf = chain_of(8, bounded);
    let out = wf.run(&input, &["--checkpoint-every", "1"]);
    out.ok();
    assert!(out.stderr.contains("max_checkpoints"), "{}", out.stderr);
    let steps: Vec<u64> =
        graflow_host::checkpoint::list(&wf.checkpoints()).unwrap().iter().map(|s| s.meta.steps).collect();
    assert_eq!(steps, [1, 2, 3]);
    // With `keep_checkpoints` in the workflow file: durable to the end, two kept.
    let wf = chain_of(8, "");
    let text = std::fs::read_to_string(&wf.path).unwrap();
    let text = text.replacen("[workflow]\n", "[workflow]\nkeep_checkpoints = 2\n", 1);
    std::fs::write(&wf.path, format!("{text}\n{bounded}")).unwrap();
    let out = wf.run(&input, &["--checkpoint-every", "1"]);
    out.ok();
    assert!(!out.stderr.contains("no further checkpoints"), "{}", out.stderr);
    let (all, records) = committed_and_records(&wf.checkpoints());
    assert_eq!(records, all.len());
    let steps: Vec<u64> = all.iter().map(|s| s.meta.steps).collect();
    assert!(steps.ends_with(&[7, 8]) && all.len() <= 3, "{steps:?}");
    // A rule of 0 is refused, naming the key.
    let text = std::fs::read_to_string(&wf.path).unwrap().replace("keep_checkpoints = 2", "keep_checkpoints = 0");
    std::fs::write(&wf.path, text).unwrap();
    let out = wf.run(&input, &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("keep_checkpoints"), "{}", out.stderr);
    let out = wf.run(&input, &["--keep-checkpoints", "0"]);
    assert_eq!(out.code, 2);
}

#[test]
fn retention_never_removes_checkpoints_of_another_branch_of_the_run() {
    let wf = chain_of(8, "");
    let input = scripts(json!({}));
    let out = wf.run(&input, &["--json", "--checkpoint-every", "1", "--max-steps", "4"]);
    assert_eq!(out.code, 3, "{out:?}");
    let first = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap();
    assert_eq!(first.iter().map(|s| s.meta.steps).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Resume the checkpoint after step 2 (a second branch of the run) with a
    // rule of 1: the run's history up to there may go; steps 3 and 4 of the
    // other branch, and whatever they are written over, stay.
    let fork = first[1].base.to_str().unwrap().to_string();
    let out = cli(
        wf.dir.path(),
        &["resume", &fork, "--json", "--checkpoint-every", "1", "--keep-checkpoints", "1", "--max-steps", "3"],
    );
    assert_eq!(out.code, 3, "{out:?}");
    let (all, records) = committed_and_records(&wf.checkpoints());
    assert_eq!(records, all.len(), "nothing dangling");
    for s in &first[2..] {
        assert!(
            all.iter().any(|a| a.meta.checkpoint_id == s.meta.checkpoint_id),
            "{} was removed",
            s.meta.checkpoint_id
        );
        load_cp(&s.base);
    }
    let newest = all.iter().filter(|s| s.meta.steps == 3).count();
    assert_eq!(newest, 2, "both branches' step-3 checkpoints are there");
}

/// Records in a durable record log (`checkpoint/records.rs`): whole frames.
fn record_frames(log: &Path) -> usize {
    let Ok(bytes) = std::fs::read(log) else { return 0 };
    let mut rest = bytes.get(graflow_host::checkpoint::records::MAGIC.len()..).unwrap_or(&[]);
    let mut n = 0;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(after) = rest.get(4 + len + graflow_host::checkpoint::records::FRAME_TRAILER..) else { break };
        rest = after;
        n += 1;
    }
    n
}

fn record_logs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|s| s.file_name() != "modules")
        .flat_map(|s| std::fs::read_dir(s.path()).into_iter().flatten().flatten())
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "records"))
        .collect();
    out.sort();
    out
}

#[test]
fn write_behind_makes_every_task_durable_and_a_resume_replays_the_records() {
    let names: Vec<String> = (1..=8).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut text = format!("[workflow]\nflow = \"{}\"\n", refs.join(" >> "));
    for n in &refs {
        text.push_str(&format!("[tasks.{n}]\nexport = \"script\"\n"));
        if *n == "t6" {
            text.push_str("dirs = [{ host = \"gate\", guest = \"/gate\" }]\n");
        }
    }
    let wf = workflow(&text);
    std::fs::create_dir(wf.dir.path().join("gate")).unwrap();
    let release = wf.dir.path().join("gate/go");
    let mut script = serde_json::Map::new();
    for n in &refs {
        script
            .insert(n.to_string(), json!([{"op": "raw", "call": "append", "key": "ran", "text": format!("\"{n}\"")}]));
    }
    script.insert(
        "t6".into(),
        json!([
            {"op": "wait_file", "path": "/gate/go"},
            {"op": "raw", "call": "append", "key": "ran", "text": "\"t6\""}
        ]),
    );
    script.insert(
        "t8".into(),
        json!([{"op": "raw", "call": "append", "key": "ran", "text": "\"t8\""}, {"op": "return", "key": "ran"}]),
    );
    let input = scripts(Value::Object(script)).to_string();
    let mut child = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", &input, "--checkpoint-every", "1", "--write-behind"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // t1's boundary is a checkpoint written at once; t2 to t5 are records.
    // With t6 waiting, their four records are on the disk: kill -9 then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while record_logs(&wf.checkpoints()).first().is_none_or(|l| record_frames(l) < 4) {
        assert!(std::time::Instant::now() < deadline, "the run wrote no four records");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = record_logs(&wf.checkpoints()).remove(0);
    assert_eq!(record_frames(&log), 4);
    let all = graflow_host::checkpoint::list(&wf.checkpoints()).unwrap();
    let anchor = &all[0];
    assert_eq!(anchor.meta.steps, 1);
    let log_id = log.file_stem().unwrap().to_str().unwrap();
    assert!(all.iter().all(|s| s.meta.records.as_deref() == Some(log_id)), "every checkpoint names the run's log");
    std::fs::write(&release, "").unwrap();
    let expected = json!(["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"]);

    // The first checkpoint and the records after it: the run goes on at step 5.
    let resume = |_: &Wf, base: &Path, extra: &[&str]| -> Out {
        let out = command(wf.dir.path())
            .env("GRAFLOW_LOG", "info")
            .args(["resume", base.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    };
    let keep = std::fs::read(&log).unwrap();
    let out = resume(&wf, &anchor.base, &["--json"]);
    assert!(
        out.stderr.contains("replayed 4 durable records") && out.stderr.contains("resuming at step 5"),
        "{}",
        out.stderr
    );
    assert_eq!(out.ok().json()["result"], expected);
    assert_eq!(out.json()["steps"], 8);

    // A torn last record (an append a crash cut short) is left out.
    std::fs::write(&log, &keep[..keep.len() - 10]).unwrap();
    let out = resume(&wf, &anchor.base, &["--json"]);
    assert!(
        out.stderr.contains("replayed 3 durable records") && out.stderr.contains("resuming at step 4"),
        "{}",
        out.stderr
    );
    assert_eq!(out.ok().json()["result"], expected);

    // A changed record is refused, naming the log; --without-records
    // resumes the checkpoint's own state.
    let mut bad = keep.clone();
    bad[graflow_host::checkpoint::records::MAGIC.len() + 40] ^= 1;
    std::fs::write(&log, &bad).unwrap();
    let out = resume(&wf, &anchor.base, &["--json"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(log_id) && out.stderr.contains("record 1 is damaged"), "{}", out.stderr);
    assert!(out.stderr.contains("--without-records"), "{}", out.stderr);
    let out = resume(&wf, &anchor.base, &["--json", "--without-records"]);
    assert!(!out.stderr.contains("replayed"), "{}", out.stderr);
    assert_eq!(out.ok().json()["result"], expected);

    // Prune keeps the log while a checkpoint names it, and removes it after.
    std::fs::write(&log, &keep).unwrap();
    cli(wf.dir.path(), &["checkpoints", "prune", "--keep", "1"]).ok();
    let named = graflow_host::checkpoint::list(&wf.checkpoints())
        .unwrap()
        .iter()
        .any(|s| s.meta.records.as_deref() == Some(log_id));
    assert_eq!(log.exists(), named);
}
