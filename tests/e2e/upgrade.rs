//! Checkpoints across changes: of the module code (`--allow-module-change`
//! records the code that ran, so a copied directory resumes it anywhere) and
//! of the host (a schema-1 checkpoint written by graflow-host 0.1 resumes,
//! upgraded, to the same result).

use crate::support::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn committed(dir: &Path) -> Vec<PathBuf> {
    graflow_host::checkpoint::list(dir).unwrap().into_iter().map(|s| s.base).collect()
}

fn module_digest(base: &Path) -> String {
    load_cp(base).state_file.modules["kit"].sha256.to_hex()
}

/// Change the module, resume with the flag, checkpoint, copy the directory
/// elsewhere without the `.wasm` (and without the old code's copy), resume
/// without the flag: the new code runs.
#[test]
fn a_module_change_is_recorded_and_travels_with_the_checkpoint() {
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b >> c\"\n{}", scripted(&["a", "b", "c"])));
    let input = scripts(json!({
        "a": [{"op": "checkpoint"}],
        "b": [{"op": "checkpoint"}],
        "c": [{"op": "return", "key": "order"}]
    }));
    let expected = wf.run(&input, &[]).ok().json();
    let first = committed(&wf.checkpoints()).remove(0);
    let old = module_digest(&first);
    let module = wf.dir.path().join("kit.wasm");
    let mut bytes = std::fs::read(&module).unwrap();
    bytes.extend_from_slice(&[0, 8, 7, b'v', b'e', b'r', b's', b'i', b'o', b'n']);
    std::fs::write(&module, &bytes).unwrap();
    let new = graflow_host::digest::Sha256::of(&bytes).to_hex();
    assert_ne!(old, new);

    let refused = cli(wf.dir.path(), &["resume", first.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{refused:?}");
    let resumed = cli(wf.dir.path(), &["resume", first.to_str().unwrap(), "--allow-module-change"]);
    assert_eq!(resumed.ok().json(), expected);
    let after: Vec<PathBuf> = committed(&wf.checkpoints()).into_iter().filter(|b| b != &first).collect();
    let newest = after.last().unwrap().clone();
    assert_eq!(module_digest(&newest), new, "the new checkpoint records the code that ran");
    assert!(wf.checkpoints().join("modules").join(format!("{new}.wasm")).exists(), "and stores it");

    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("moved");
    copy_dir(&wf.checkpoints(), &copy);
    std::fs::remove_file(copy.join("modules").join(format!("{old}.wasm"))).unwrap();
    let moved = copy.join(newest.strip_prefix(wf.checkpoints()).unwrap());
    drop(wf);
    let out = cli(elsewhere.path(), &["resume", moved.to_str().unwrap()]);
    assert_eq!(out.ok().json(), expected, "resumed with the new code, without the flag: {out:?}");
}

/// The committed schema-1 checkpoint directory (`host/tests/golden/v1/`),
/// written by graflow-host 0.1 from `workflow.toml` and `input.json`.
fn golden_v1() -> (tempfile::TempDir, Vec<PathBuf>, Value) {
    let golden = repo().join("host/tests/golden/v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden.join("checkpoints"), &dir.path().join("checkpoints"));
    let expected: Value = serde_json::from_slice(&std::fs::read(golden.join("result.json")).unwrap()).unwrap();
    let cps = committed(&dir.path().join("checkpoints"));
    assert_eq!(cps.len(), 2, "the golden directory holds two checkpoints");
    (dir, cps, expected)
}

#[test]
fn a_schema_1_checkpoint_resumes_to_the_same_result() {
    let (dir, cps, expected) = golden_v1();
    for cp in &cps {
        let meta = graflow_host::checkpoint::read_meta(cp).unwrap().0;
        assert_eq!(meta.schema_version.number(), 1);
        let shown = cli(dir.path(), &["checkpoints", "show", cp.to_str().unwrap()]);
        assert!(shown.ok().stdout.contains("unsigned (schema version 1)"), "{shown:?}");
        let refused = cli(dir.path(), &["resume", cp.to_str().unwrap()]);
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(
            refused.stderr.contains("it is unsigned (schema version 1") && refused.stderr.contains("--trust-unsigned"),
            "{refused:?}"
        );
        let out = cli(dir.path(), &["resume", cp.to_str().unwrap(), "--trust-unsigned"]);
        assert_eq!(out.ok().json(), expected, "{out:?}");
        assert!(out.stderr.contains("module kit: sha256 012d6477"), "what it runs is printed first: {out:?}");
    }
    // Resuming the first one wrote a checkpoint of its own (train@2): schema
    // 2, signed, and it resumes without the flag.
    let written: Vec<PathBuf> =
        committed(&dir.path().join("checkpoints")).into_iter().filter(|b| !cps.contains(b)).collect();
    assert!(!written.is_empty());
    for cp in written {
        assert_eq!(graflow_host::checkpoint::read_meta(&cp).unwrap().0.schema_version.number(), 2);
        assert_eq!(cli(dir.path(), &["resume", cp.to_str().unwrap()]).ok().json(), expected);
    }
}

#[test]
fn a_schema_1_queue_is_upgraded_with_typed_origins() {
    let (_dir, cps, _) = golden_v1();
    let key = test_key();
    let first = graflow_host::checkpoint::load(&cps[0], &key, graflow_host::checkpoint::Trust::AllowUnsigned).unwrap();
    use graflow_host::engine::Origin;
    let origins: Vec<(String, Origin)> = first.context.state.queue.iter().map(|s| (s.id.clone(), s.origin)).collect();
    assert_eq!(
        origins,
        [
            ("worker#1".to_string(), Origin::Dynamic),
            ("worker#2".to_string(), Origin::Dynamic),
            ("group_1".to_string(), Origin::Flow)
        ]
    );
    let second = graflow_host::checkpoint::load(&cps[1], &key, graflow_host::checkpoint::Trust::AllowUnsigned).unwrap();
    let spec = second.context.state.queue.iter().next().unwrap();
    assert_eq!((spec.id.as_str(), spec.origin), ("train@3", Origin::Iteration { cycle: 3 }));
    assert_eq!(second.context.state.last_completed.as_deref(), Some("train@2"));
}
