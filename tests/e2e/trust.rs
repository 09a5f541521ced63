//! Signed checkpoints: a checkpoint edited by someone without the key is
//! refused, even when every digest was recomputed; `--trust-unsigned` resumes
//! it after printing what it would run and grant; ids that would leave the
//! checkpoint directory are refused whatever the trust; a key shared through
//! the environment lets another directory (machine) resume.

use crate::support::*;
use graflow_host::checkpoint::{self, Trust, format, schema::ContentDigest};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn ext(base: &Path, e: &str) -> PathBuf {
    checkpoint::with_ext(base, e)
}

/// A run `a >> b` that checkpoints after `a`; `b` is granted a read-only
/// directory `data/` as `/data`.
fn one_checkpoint() -> (Wf, PathBuf, Value) {
    let wf = workflow(
        "[workflow]\nflow = \"a >> b\"\n[tasks.a]\nexport = \"script\"\n[tasks.b]\nexport = \"script\"\ndirs = [{ host = \"data\", guest = \"/data\" }]\n",
    );
    std::fs::create_dir(wf.dir.path().join("data")).unwrap();
    let input = scripts(json!({"a": [{"op": "checkpoint"}], "b": [{"op": "return", "key": "order"}]}));
    let expected = wf.run(&input, &[]).ok().json();
    let cp = checkpoint::list(&wf.checkpoints()).unwrap().remove(0).base;
    (wf, cp, expected)
}

/// Rewrite the checkpoint's context with `edit`, then recompute its digest and
/// size in the commit record (as an attacker can; the signature stays).
fn tamper(cp: &Path, edit: impl FnOnce(&mut checkpoint::Context)) {
    let mut ctx = load_cp(cp).context;
    edit(&mut ctx);
    let bytes = format::encode(&ctx);
    let (_, digest) = format::verify(&bytes).unwrap();
    assert!(matches!(digest, ContentDigest::Blake3(_)), "schema 2 uses BLAKE3");
    std::fs::write(ext(cp, "ctx"), &bytes).unwrap();
    let mut meta: Value = serde_json::from_slice(&std::fs::read(ext(cp, "meta.json")).unwrap()).unwrap();
    meta["record"]["files"]["ctx"] = json!({"digest": digest.to_string(), "size": bytes.len()});
    std::fs::write(ext(cp, "meta.json"), serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
}

#[test]
fn widened_grants_with_recomputed_digests_are_refused() {
    let (wf, cp, expected) = one_checkpoint();
    tamper(&cp, |ctx| {
        let b = ctx.workflow.tasks.get_mut("b").unwrap();
        b.grants.dirs[0].host = "/".into();
        b.grants.dirs[0].writable = true;
    });
    let out = cli(wf.dir.path(), &["resume", cp.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("is not trusted") && out.stderr.contains("signature does not match its commit record"),
        "{out:?}"
    );
    assert!(out.stderr.contains("--trust-unsigned"), "{out:?}");
    let trusted = cli(wf.dir.path(), &["resume", cp.to_str().unwrap(), "--trust-unsigned"]);
    assert!(
        trusted.stderr.contains("task b: directory / as /data (read-write)"),
        "what it grants is printed: {trusted:?}"
    );
    assert_eq!(trusted.ok().json(), expected);
}

#[test]
fn a_substituted_module_is_refused() {
    let (wf, cp, _) = one_checkpoint();
    // Another component in the module store, and the checkpoint pointed at it.
    let other = repo().join("tests/guests/bench.wasm");
    let bytes = std::fs::read(&other).unwrap();
    let digest = graflow_host::digest::Sha256::of(&bytes);
    std::fs::write(wf.checkpoints().join("modules").join(format!("{digest}.wasm")), &bytes).unwrap();
    std::fs::remove_file(wf.dir.path().join("kit.wasm")).unwrap();
    tamper(&cp, |ctx| {
        let m = ctx.workflow.modules.get_mut("kit").unwrap();
        (m.sha256, m.size) = (digest, bytes.len() as u64);
    });
    let out = cli(wf.dir.path(), &["resume", cp.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("signature does not match"), "{out:?}");
}

#[test]
fn a_session_id_that_leaves_the_directory_is_refused_even_when_trusted() {
    let (wf, cp, _) = one_checkpoint();
    tamper(&cp, |ctx| ctx.state.session_id = "../../escape".into());
    let out = cli(wf.dir.path(), &["resume", cp.to_str().unwrap(), "--trust-unsigned"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("session id '../../escape' is not a valid id"), "{out:?}");
    assert!(!wf.dir.path().join("escape").exists() && !wf.dir.path().parent().unwrap().join("escape").exists());
}

#[test]
fn a_changed_commit_record_is_refused() {
    let (wf, cp, _) = one_checkpoint();
    let text = std::fs::read_to_string(ext(&cp, "meta.json")).unwrap();
    let edited = text.replacen("\"steps\":1", "\"steps\":9", 1);
    assert_ne!(text, edited);
    std::fs::write(ext(&cp, "meta.json"), edited).unwrap();
    let out = cli(wf.dir.path(), &["resume", cp.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("signature does not match"), "{out:?}");
    let listed = cli(wf.dir.path(), &["checkpoints", "show", cp.to_str().unwrap()]);
    assert!(listed.ok().stdout.contains("INVALID"), "{listed:?}");
}

const OTHER_KEY: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";

#[test]
fn a_shared_key_resumes_in_another_directory_and_another_key_does_not() {
    let wf = workflow(&format!("[workflow]\nflow = \"a >> b\"\n{}", scripted(&["a", "b"])));
    let input = scripts(json!({"a": [{"op": "checkpoint"}], "b": [{"op": "return", "key": "order"}]}));
    let out = command(wf.dir.path())
        .args(["run", "workflow.toml", "--input", &input.to_string()])
        .env("GRAFLOW_CHECKPOINT_KEY", OTHER_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let elsewhere = tempfile::tempdir().unwrap();
    copy_dir(&wf.checkpoints(), &elsewhere.path().join("cps"));
    let cp = checkpoint::list(&elsewhere.path().join("cps")).unwrap().remove(0).base;
    drop(wf);
    // This machine's key (the test key) is another key.
    let refused = cli(elsewhere.path(), &["resume", cp.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("was signed with key") && refused.stderr.contains("GRAFLOW_CHECKPOINT_KEY"),
        "{refused:?}"
    );
    // The shared key, from the environment...
    let shared = command(elsewhere.path())
        .args(["resume", cp.to_str().unwrap()])
        .env("GRAFLOW_CHECKPOINT_KEY", OTHER_KEY)
        .output()
        .unwrap();
    assert_eq!(shared.status.code(), Some(0), "{}", String::from_utf8_lossy(&shared.stderr));
    // ... or from a key file.
    let key_file = elsewhere.path().join("shared.key");
    std::fs::write(&key_file, format!("{OTHER_KEY}\n")).unwrap();
    let from_file = command(elsewhere.path())
        .args(["resume", cp.to_str().unwrap()])
        .env_remove("GRAFLOW_CHECKPOINT_KEY")
        .env("GRAFLOW_CHECKPOINT_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert_eq!(from_file.status.code(), Some(0), "{}", String::from_utf8_lossy(&from_file.stderr));
}

#[test]
fn a_key_is_made_on_first_use_in_the_config_directory() {
    let home = tempfile::tempdir().unwrap();
    let wf = workflow(&format!("[workflow]\nflow = \"a\"\n{}", scripted(&["a"])));
    let input = scripts(json!({"a": [{"op": "checkpoint"}]})).to_string();
    let run = |args: &[&str]| {
        command(wf.dir.path())
            .args(args)
            .env_remove("GRAFLOW_CHECKPOINT_KEY")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    assert_eq!(run(&["run", "workflow.toml", "--input", &input]).status.code(), Some(0));
    let key = home.path().join(".config/graflow-host/checkpoint.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let cp = checkpoint::list(&wf.checkpoints()).unwrap().remove(0).base;
    assert_eq!(run(&["resume", cp.to_str().unwrap()]).status.code(), Some(0), "the same key verifies");
    assert!(checkpoint::load(&cp, &test_key(), Trust::Signed).is_err(), "another key does not");
}

#[test]
fn a_checkpoint_outside_its_session_folder_is_refused() {
    let (wf, cp, _) = one_checkpoint();
    let loose = wf.dir.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    for e in ["ctx", "state.json", "meta.json"] {
        std::fs::copy(ext(&cp, e), ext(&loose.join(cp.file_name().unwrap()), e)).unwrap();
    }
    let out = cli(wf.dir.path(), &["resume", loose.join(cp.file_name().unwrap()).to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("is not inside a checkpoint directory"), "{out:?}");
    // From inside the session folder, a relative path works.
    let session = cp.parent().unwrap();
    let out = cli(session, &["resume", cp.file_name().unwrap().to_str().unwrap()]);
    out.ok();
}

#[test]
fn linked_session_folders_are_not_followed() {
    let (wf, cp, _) = one_checkpoint();
    let other = tempfile::tempdir().unwrap();
    let session = cp.parent().unwrap();
    std::os::unix::fs::symlink(session, other.path().join(session.file_name().unwrap())).unwrap();
    let listed = cli(other.path(), &["checkpoints", "list", "."]);
    assert!(listed.ok().stdout.contains("no checkpoints"), "{listed:?}");
    cli(other.path(), &["checkpoints", "prune", "--keep", "0", "."]).ok();
    assert!(ext(&cp, "meta.json").exists(), "prune did not delete through the link");
    let linked = other.path().join(session.file_name().unwrap()).join(cp.file_name().unwrap());
    let out = cli(other.path(), &["resume", linked.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("not a regular file or folder"), "{out:?}");
    drop(wf);
}
