//! Property tests: no input makes the flow parser, the workflow loader, the
//! checkpoint loader or a host call that takes JSON panic. Seeds come from the
//! committed corpus in `host/tests/corpus/`; each run mutates them (bounded
//! case counts, so `make test` stays fast).

use graflow_host::Json;
use graflow_host::channel::{Channel, MemoryChannel};
use graflow_host::checkpoint::{self, CheckpointStore, SigningKey, Trust};
use graflow_host::engine::{CheckpointMode, CheckpointRequest, IdAllocator, RunState, TaskContext, TaskInfo, TaskSpec};
use graflow_host::model::{self, ModuleExports, ModuleInfo, ModuleLoadError, TaskDecl};
use graflow_host::module_store::ModuleBytes;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn key() -> SigningKey {
    SigningKey::from_bytes([42; 32])
}

fn flows() -> Vec<String> {
    std::fs::read_to_string(corpus().join("flows.txt")).unwrap().lines().map(String::from).collect()
}

fn workflows() -> Vec<String> {
    let mut files: Vec<_> =
        std::fs::read_dir(corpus().join("workflows")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

/// Every module exports tasks a, b, c, d, fetch, transform_a, transform_b, store.
struct AnyModule;

impl ModuleExports for AnyModule {
    fn load(&mut self, _: &str, _: &Path, _: u64) -> Result<ModuleInfo, ModuleLoadError> {
        let names = ["a", "b", "c", "d", "fetch", "transform_a", "transform_b", "store"];
        let tasks = names
            .iter()
            .map(|n| TaskDecl { name: n.to_string(), inputs: vec![], description: String::new() })
            .collect();
        Ok(ModuleInfo {
            sha256: graflow_host::digest::Sha256::of(b"module bytes"),
            size: 12,
            tasks,
            workflow: Default::default(),
        })
    }
}

/// A text edit: replace a range of characters with a string.
fn mutate(text: &str, at: usize, len: usize, insert: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + len).min(chars.len());
    chars[..at].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect()
}

const TOKENS: &[&str] = &[
    "",
    ">>",
    "|",
    "(",
    ")",
    ";",
    "\n",
    " ",
    "a",
    "=",
    "[",
    "]",
    "\"",
    "{",
    "}",
    "0",
    "-1",
    "é",
    "\u{0}",
    "max_steps",
    "policy",
    "[tasks.a]",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(TOKENS).prop_map(String::from), ".{0,8}"]
}

fn load_text(text: &str) -> Result<model::Workflow, model::LoadError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflow.toml");
    std::fs::write(&path, text).unwrap();
    model::load_workflow(&path, &mut AnyModule)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_flow_parser_never_panics(text in ".{0,60}") {
        if let Err(e) = model::flow::parse(&text) {
            prop_assert!(e.line >= 1 && e.column >= 1);
            let _ = e.to_string();
        }
    }

    #[test]
    fn corpus_flows_mutated_never_panic(i in 0usize..64, at in 0usize..80, len in 0usize..4, insert in token()) {
        let flows = flows();
        let flow = mutate(&flows[i % flows.len()], at, len, &insert);
        match model::flow::parse(&flow) {
            Ok(g) => prop_assert!(!g.tasks.is_empty()),
            Err(e) => prop_assert!(e.line >= 1 && e.column >= 1 && !e.message.is_empty()),
        }
    }

    #[test]
    fn generated_chains_parse_to_their_names(names in prop::collection::vec("[a-z][a-z0-9_]{0,6}", 1..8), par in prop::collection::vec(any::<bool>(), 8)) {
        let mut flow = names[0].clone();
        for (i, n) in names.iter().enumerate().skip(1) {
            flow.push_str(if par[i] { " | " } else { " >> " });
            flow.push_str(n);
        }
        let g = model::flow::parse(&flow).unwrap();
        let mut expected: Vec<String> = names.clone();
        expected.dedup();
        for n in &expected {
            prop_assert!(g.tasks.contains(n));
        }
    }

    #[test]
    fn corpus_workflow_files_mutated_never_panic(i in 0usize..16, at in 0usize..800, len in 0usize..6, insert in token()) {
        let files = workflows();
        let text = mutate(&files[i % files.len()], at, len, &insert);
        if let Err(e) = load_text(&text) {
            prop_assert!(e.to_string().contains("workflow.toml"), "every error names the file: {e}");
        }
    }
}

/// A real checkpoint of a two-task workflow, written to `dir`, with `channel`
/// and a request carrying `metadata`.
fn checkpoint_of(
    dir: &Path,
    channel: BTreeMap<String, Json>,
    metadata: Json,
    queued_input: Option<Json>,
) -> (PathBuf, checkpoint::Context) {
    let text = "[workflow]\nflow = \"a >> b\"\n[modules]\nm = \"m.wasm\"\n";
    std::fs::write(dir.join("workflow.toml"), text).unwrap();
    std::fs::write(dir.join("m.wasm"), b"module bytes").unwrap();
    let workflow = model::load_workflow(&dir.join("workflow.toml"), &mut AnyModule).unwrap();
    let mut state = RunState::new(&workflow, "sess".into(), Json::parse(r#"{"k":[1,2]}"#).unwrap());
    state.queue.remove(0);
    state.queue.push_back(TaskSpec::for_node(&workflow, "b", queued_input));
    state.mark_completed("a");
    state.steps = 1;
    let request = CheckpointRequest {
        task_id: Some("a".into()),
        cycle_count: 1,
        elapsed_time: 0.5,
        mode: CheckpointMode::Deferred,
        user_metadata: metadata,
    };
    let code = BTreeMap::from([("m".to_string(), ModuleBytes::new(b"module bytes".to_vec()))]);
    let written = CheckpointStore::new(dir.join("cp"), code, Some(key()))
        .write_checkpoint(&workflow, &state, &channel, &request)
        .unwrap();
    let base = PathBuf::from(written.id);
    let context = checkpoint::load(&base, &key(), Trust::Signed).unwrap().context;
    (base, context)
}

fn sample_checkpoint(dir: &Path) -> (PathBuf, checkpoint::Context) {
    let channel = BTreeMap::from([("a.__result__".to_string(), Json::parse("\"x\"").unwrap())]);
    checkpoint_of(dir, channel, Json::parse(r#"{"stage":"s"}"#).unwrap(), None)
}

/// JSON-ish text: valid values, deep nests, lone surrogates, huge numbers,
/// truncations.
fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        (0usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (0usize..300).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
        prop::sample::select(vec![
            r#""\ud800""#,
            r#""\udfff x""#,
            r#"{"\ud800":1}"#,
            "1e400",
            "-1e999",
            "123456789012345678901234567890",
            "[1,2",
            "{}",
            "null",
            "\"ok\"",
            r#"{"a":[1,{"b":null}]}"#,
            "0.1e-400",
            "[\"\\u0000\"]",
        ])
        .prop_map(String::from),
    ]
}

fn context(channel: Arc<MemoryChannel>, wf: Arc<model::Workflow>) -> TaskContext {
    let info = TaskInfo {
        task_id: "a".into(),
        task_name: "a".into(),
        module: "m".into(),
        session_id: "sess".into(),
        cycle_count: 1,
        max_cycles: 3,
        retry_count: 0,
        max_retries: 0,
    };
    let spec = TaskSpec::for_node(&wf, "a", None);
    let bounds = wf.settings.bounds.clone();
    TaskContext::new(info, spec, channel, wf, IdAllocator::default(), bounds)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every host call that takes JSON, fed anything: refused or accepted,
    /// never a panic; what was accepted commits, checkpoints and loads back.
    #[test]
    fn host_calls_taking_json_never_panic(texts in prop::collection::vec(json_text(), 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("workflow.toml"), "[workflow]\nflow = \"a >> b\"\n[modules]\nm = \"m.wasm\"\n").unwrap();
        let wf = Arc::new(model::load_workflow(&dir.path().join("workflow.toml"), &mut AnyModule).unwrap());
        let base = Arc::new(MemoryChannel::default());
        let mut ctx = context(base.clone(), wf);
        let mut metadata = Json::null();
        let mut queued = None;
        for (i, text) in texts.iter().enumerate() {
            let _ = ctx.channel_set(&format!("k{i}"), text);
            let _ = ctx.channel_push("list", text, i % 2 == 0);
            let _ = ctx.channel_push(&format!("k{i}"), text, false);
            let _ = ctx.set_result(text);
            if let Ok(_id) = ctx.next_task("b", text, false) {
                queued = ctx.effects.next.last().and_then(|s| s.input.clone());
            }
            if ctx.request_checkpoint(text).is_ok() {
                metadata = ctx.effects.checkpoint.clone().unwrap_or_else(Json::null);
            }
        }
        ctx.channel.commit_into(base.as_ref());
        for key in base.keys() {
            let v = base.get(&key).unwrap();
            prop_assert!(v.to_value().is_ok(), "every stored value decodes: {key}");
        }
        let (_, loaded) = checkpoint_of(dir.path(), base.snapshot(), metadata, queued);
        prop_assert_eq!(loaded.channel, base.snapshot());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn damaged_checkpoints_load_the_original_or_fail_clearly(file in 0usize..3, at in any::<prop::sample::Index>(), bytes in prop::collection::vec(any::<u8>(), 0..4), truncate in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let (base, original) = sample_checkpoint(dir.path());
        let path = checkpoint::with_ext(&base, ["meta.json", "state.json", "ctx"][file]);
        let mut data = std::fs::read(&path).unwrap();
        let i = at.index(data.len());
        if truncate {
            data.truncate(i);
        } else {
            for (k, b) in bytes.iter().enumerate() {
                if let Some(slot) = data.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        std::fs::write(&path, &data).unwrap();
        match checkpoint::load(&base, &key(), Trust::Signed) {
            Ok(loaded) => prop_assert_eq!(loaded.context, original),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_bytes_never_decode_as_a_context(data in prop::collection::vec(any::<u8>(), 0..300)) {
        prop_assert!(checkpoint::format::verify(&data).is_err());
    }
}

#[test]
fn the_corpus_itself_is_valid() {
    for flow in flows() {
        model::flow::parse(&flow).unwrap_or_else(|e| panic!("{flow}: {e}"));
    }
    for text in workflows() {
        load_text(&text).unwrap_or_else(|e| panic!("{e}"));
    }
}
