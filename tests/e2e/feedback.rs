//! Human in the loop: every kind of request from a Rust, a Python and a
//! JavaScript guest, answered while the task waits or after the run paused;
//! a pause inside a parallel group; the wait kept out of the time limit; the
//! `feedback` commands and their errors; the question on a terminal.

use crate::parity::LANGS;
use crate::support::*;
use graflow_host::Json;
use graflow_host::channel::Channel;
use graflow_host::engine::RunStatus;
use graflow_host::feedback::{FeedbackKind, FileDesk};
use graflow_host::session::{ResumeOptions, RunOptions, Session};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const KINDS: [&str; 5] = ["approval", "text", "selection", "multi-selection", "custom"];

/// A workflow with the testkit (`kit`) and the parity component of `lang` (`p`).
fn two_modules(lang: &str, body: &str) -> Wf {
    let file = LANGS.iter().find(|(l, _)| *l == lang).unwrap().1;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("tests/guests").join(file), dir.path().join("p.wasm")).unwrap();
    std::fs::copy(testkit(), dir.path().join("kit.wasm")).unwrap();
    let path = dir.path().join("workflow.toml");
    std::fs::write(&path, format!("{body}\n[modules]\nkit = \"kit.wasm\"\np = \"p.wasm\"\n")).unwrap();
    Wf { dir, path }
}

/// The answer the tests give to a request of `kind`, and what the SDK
/// helper returns for it.
fn answer_for(kind: FeedbackKind) -> (Value, Value) {
    match kind {
        FeedbackKind::Approval => (json!({"approved": true, "reason": "fine"}), json!(true)),
        FeedbackKind::Text => (json!({"text": "ada"}), json!("ada")),
        FeedbackKind::Selection => (json!({"selected": "green"}), json!("green")),
        FeedbackKind::MultiSelection => (json!({"selected": ["red", "blue"]}), json!(["red", "blue"])),
        FeedbackKind::Custom => (json!({"value": {"n": 1}}), json!({"n": 1})),
    }
}

fn kind_of(name: &str) -> FeedbackKind {
    serde_json::from_value(json!(name)).unwrap()
}

/// Answer every pending request under `root` until `stop`.
fn answerer(root: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let desk = FileDesk::new(&root);
        let mut answered = 0;
        while !stop.load(Ordering::SeqCst) {
            for e in desk.list().unwrap_or_default().into_iter().filter(|e| e.answer.is_none()) {
                let (a, _) = answer_for(e.request.kind);
                desk.answer_request(&e.request.id, &Json::from(a), "test").unwrap();
                answered += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        answered
    })
}

fn options(wf: &Wf) -> RunOptions {
    RunOptions { checkpoint_dir: Some(wf.checkpoints()), session_id: Some("hitl".into()), ..lib_options() }
}

#[test]
fn every_kind_answered_while_the_task_waits_in_every_language() {
    for (lang, _) in LANGS {
        let wf = two_modules(
            lang,
            "[workflow]\nflow = \"start\"\n[tasks.start]\nexport = \"script\"\nmodule = \"kit\"\n[tasks.ask]\nexport = \"ask\"\nmodule = \"p\"\n",
        );
        let asks: Vec<Value> = KINDS
            .iter()
            .map(|k| json!({"op": "next_task", "task": "ask", "input": {"kind": k, "timeout": 60}}))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let helper = answerer(&wf.checkpoints(), stop.clone());
        let mut s = Session::start(&wf.path, Json::from(scripts(json!({"start": asks}))), options(&wf)).unwrap();
        let report = s.run().unwrap_or_else(|e| panic!("{lang}: {e:#}"));
        stop.store(true, Ordering::SeqCst);
        assert_eq!(helper.join().unwrap(), 5, "{lang}: five questions asked");
        assert_eq!(report.status, RunStatus::Completed, "{lang}");
        for (i, k) in KINDS.iter().enumerate() {
            let result = s.channel().get(&format!("ask#{}.__result__", i + 1)).unwrap().to_value().unwrap();
            assert_eq!(result, json!({"lang": lang, "answer": answer_for(kind_of(k)).1}), "{lang} {k}");
        }
    }
}

#[test]
fn unanswered_requests_in_a_parallel_group_pause_the_run_which_resumes_with_the_answers() {
    for (lang, _) in LANGS {
        let members: Vec<String> = (1..=5).map(|i| format!("m{i}")).collect();
        let mut body = format!("[workflow]\nflow = \"({}) >> done\"\n", members.join(" | "));
        for t in members.iter().map(String::as_str).chain(["done"]) {
            body.push_str(&format!("[tasks.{t}]\nexport = \"script\"\nmodule = \"kit\"\n"));
        }
        body.push_str("[tasks.ask]\nexport = \"ask\"\nmodule = \"p\"\n");
        let wf = two_modules(lang, &body);
        let mut scr = serde_json::Map::new();
        for (m, k) in members.iter().zip(KINDS) {
            scr.insert(
                m.clone(),
                json!([{"op": "set", "key": format!("{m}_ran"), "value": true},
                       {"op": "next_task", "task": "ask", "input": {"kind": k, "timeout": 0}}]),
            );
        }
        let input = json!({"scripts": Value::Object(scr)});
        let mut s = Session::start(&wf.path, Json::from(input), options(&wf)).unwrap();
        let mut report = s.run().unwrap_or_else(|e| panic!("{lang}: {e:#}"));
        assert!(s.channel().get("m1_ran").is_none(), "{lang}: the paused group left no writes");
        // Each pause stops the other branches at their next boundary; the
        // group runs again after the answers, until every branch has its own.
        let desk = FileDesk::new(wf.checkpoints());
        let mut asked = std::collections::BTreeSet::new();
        let mut rounds = 0;
        let mut resumed = s;
        while let RunStatus::Paused { checkpoint, requests } = report.status {
            rounds += 1;
            assert!(rounds <= 5, "{lang}: more pauses than questions");
            assert!(!requests.is_empty());
            let loaded = load_cp(std::path::Path::new(&checkpoint.id));
            assert_eq!(loaded.context.state.pending_input, requests, "{lang}: the checkpoint keeps the requests");
            for r in &requests {
                assert!(asked.insert(r.id.clone()), "{lang}: request {} asked twice", r.id);
                desk.answer_request(&r.id, &Json::from(answer_for(r.kind).0), "test").unwrap();
            }
            let base = std::path::PathBuf::from(&checkpoint.id);
            resumed = Session::resume(&base, ResumeOptions::default(), lib_options()).unwrap();
            report = resumed.run().unwrap_or_else(|e| panic!("{lang}: {e:#}"));
        }
        assert!(rounds >= 1, "{lang}: the run paused");
        assert_eq!(asked.len(), 5, "{lang}: every branch asked once");
        assert_eq!(report.status, RunStatus::Completed, "{lang}");
        for (m, k) in members.iter().zip(KINDS) {
            let r = resumed.channel().get(&format!("ask#{m}.1.__result__")).unwrap().to_value().unwrap();
            assert_eq!(r, json!({"lang": lang, "answer": answer_for(kind_of(k)).1}), "{lang} {k}");
            assert!(resumed.channel().get(&format!("{m}_ran")).is_some());
        }
    }
}

#[test]
fn the_time_waited_does_not_count_against_the_time_limit() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"deploy\"\n{}[tasks.deploy.limits]\ntimeout_ms = 300\n",
        scripted(&["deploy"])
    ));
    let input = scripts(json!({"deploy": [{"op": "ask", "kind": "approval", "prompt": "ship?", "timeout": 30}]}));
    let root = wf.checkpoints();
    let late = std::thread::spawn(move || {
        // Answer after three times the task's time limit.
        std::thread::sleep(Duration::from_millis(900));
        let desk = FileDesk::new(&root);
        loop {
            if let Some(e) = desk.list().unwrap().into_iter().next() {
                desk.answer_request(&e.request.id, &Json::from(json!({"approved": true})), "test").unwrap();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut s = Session::start(&wf.path, Json::from(input), options(&wf)).unwrap();
    let report = s.run().unwrap_or_else(|e| panic!("{e:#}"));
    late.join().unwrap();
    assert_eq!(report.result.unwrap().to_value().unwrap(), json!([true, null]));
}

#[test]
fn the_cli_pauses_answers_and_resumes_with_clear_errors() {
    let wf = workflow(&format!("[workflow]\nflow = \"prep >> deploy\"\n{}", scripted(&["prep", "deploy"])));
    let input = scripts(json!({
        "prep": [{"op": "set", "key": "prepared", "value": true}],
        "deploy": [{"op": "set", "key": "half", "value": 1},
                   {"op": "ask", "kind": "select", "prompt": "Which region?", "options": ["eu", "us"], "timeout": 0}],
    }));
    let paused = wf.run(&input, &["--json", "--no-prompt"]);
    assert_eq!(paused.code, 6, "{}", paused.stderr);
    let v = paused.json();
    assert_eq!(v["status"], "waiting_for_input");
    let id = v["requests"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(v["requests"][0]["prompt"], "Which region?");
    assert!(paused.stderr.contains(&format!("graflow-host feedback answer {id} --select OPTION")), "{}", paused.stderr);
    assert!(paused.stderr.contains("then resume with: graflow-host resume checkpoints/"), "{}", paused.stderr);
    let dir = wf.dir.path();
    // The pause's checkpoint says what it is and which request it waits for.
    let checkpoints = cli(dir, &["checkpoints", "list"]);
    assert!(checkpoints.ok().stdout.contains(&format!("(waiting for input: {id})")), "{}", checkpoints.stdout);
    let listed = cli(dir, &["checkpoints", "list", "--json"]).json();
    assert_eq!(listed[0]["mode"], "waiting_for_input", "{listed}");
    let list = cli(dir, &["feedback", "list", "--json"]);
    assert_eq!(list.ok().json()[0]["id"], json!(id));
    let show = cli(dir, &["feedback", "show", &id]);
    assert!(show.ok().stdout.contains("Which region?") && show.stdout.contains("eu | us"), "{}", show.stdout);
    let unknown = cli(dir, &["feedback", "answer", "0123456789abcdef", "--select", "eu"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("no feedback request '0123456789abcdef'"), "{}", unknown.stderr);
    let wrong_kind = cli(dir, &["feedback", "answer", &id, "--approve"]);
    assert_eq!(wrong_kind.code, 2);
    assert!(wrong_kind.stderr.contains("asks for selection: the answer is {\"selected\": \"<one of the options>\"} (on the command line: graflow-host feedback answer --select OPTION)"), "{}", wrong_kind.stderr);
    let not_an_option = cli(dir, &["feedback", "answer", &id, "--select", "mars"]);
    assert!(not_an_option.stderr.contains("'mars' is not an option"), "{}", not_an_option.stderr);
    cli(dir, &["feedback", "answer", &id, "--select", "us"]).ok();
    let twice = cli(dir, &["feedback", "answer", &id, "--select", "eu"]);
    assert_eq!(twice.code, 2);
    assert!(twice.stderr.contains("already answered"), "{}", twice.stderr);
    assert!(cli(dir, &["feedback", "list", "--json"]).ok().json().as_array().unwrap().is_empty());
    let resumed = cli(dir, &["resume", "--latest", "--no-prompt"]);
    assert_eq!(resumed.ok().json(), json!("us"));
}

#[test]
fn on_a_terminal_the_question_is_asked_right_there() {
    let wf = workflow(&format!("[workflow]\nflow = \"deploy\"\n{}", scripted(&["deploy"])));
    let input =
        scripts(json!({"deploy": [{"op": "ask", "kind": "approval", "prompt": "Deploy v2 now?", "timeout": 0}]}))
            .to_string();
    let (mut master, slave) = pty();
    let mut child = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", &input])
        .stdin(slave.try_clone().unwrap())
        .stderr(slave)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read what the host writes to the terminal until it asks; then answer.
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    use std::io::{Read, Write};
    let mut buf = [0u8; 4096];
    while !seen.contains("approve? [y/n]") {
        assert!(std::time::Instant::now() < deadline, "no question on the terminal: {seen}");
        let n = master.read(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("Deploy v2 now?"), "{seen}");
    master.write_all(b"y\nship it\n").unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        json!([true, "ship it"]),
        "approved, with the reason typed"
    );
    let answered = FileDesk::new(wf.checkpoints()).list().unwrap();
    assert_eq!(answered[0].answer.as_ref().unwrap().by, "terminal", "the answer is recorded");
}

/// A pseudo-terminal: the master side (to read and write as the person) and
/// the slave side (the child's terminal).
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new file descriptors into the two integers.
    let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(r, 0, "openpty failed");
    // SAFETY: both descriptors were just opened and are owned here.
    unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(slave)) }
}

/// With a checkpoint after every task (and written behind the run), the
/// checkpoint a pause leaves still records the request: it is not taken for
/// the automatic one of the same boundary.
#[test]
fn a_pause_after_an_automatic_checkpoint_records_its_request() {
    for extra in [&["--checkpoint-every", "1"][..], &["--checkpoint-every", "1", "--write-behind"]] {
        let wf = workflow(&format!("[workflow]\nflow = \"prep >> deploy\"\n{}", scripted(&["prep", "deploy"])));
        let input = scripts(json!({
            "deploy": [{"op": "ask", "kind": "approval", "prompt": "Ship it?", "timeout": 0}],
        }));
        let mut args = vec!["--json", "--no-prompt"];
        args.extend_from_slice(extra);
        let paused = wf.run(&input, &args);
        assert_eq!(paused.code, 6, "{}", paused.stderr);
        let checkpoint = paused.json()["checkpoint"].as_str().unwrap().to_string();
        let shown = cli(wf.dir.path(), &["checkpoints", "show", &checkpoint]);
        assert!(shown.ok().stdout.contains("waits for:  feedback request"), "{extra:?}: {}", shown.stdout);
    }
}
