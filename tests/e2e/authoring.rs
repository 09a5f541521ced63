//! Writing tasks from a folder outside the repository: `new` writes a
//! one-file starter (`app.py`, `app.js`, a Rust crate) that declares its
//! flow; `run <source>` builds it (installing the pinned toolchain into the
//! cache on first use) and runs it, and builds again only after a change;
//! `dev` runs it again on every save.

use crate::support::*;
use serde_json::json;
use std::path::Path;

/// `run` with info logs (the build lines are info).
fn run_logged(dir: &Path, src: &str) -> Out {
    let out = command(dir)
        .args(["run", src, "--input", r#"{"name":"graflow"}"#])
        .env("GRAFLOW_LOG", "info")
        .output()
        .expect("run graflow-host");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn in_new_project(lang: &str, src: &str, file: &str, bang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(format!("starter-{lang}"));
    let out = cli(dir.path(), &["new", project.to_str().unwrap(), "--lang", lang]);
    assert!(out.ok().stdout.contains(&format!("graflow-host run {src}")), "{out:?}");
    assert!(!project.join("workflow.toml").exists(), "one file is the workflow");
    let first = run_logged(&project, src);
    assert_eq!(first.ok().json(), json!("HELLO GRAFLOW!"), "{lang}: {first:?}");
    assert!(first.stderr.contains("building "), "{first:?}");
    let again = run_logged(&project, src);
    assert_eq!(again.ok().json(), json!("HELLO GRAFLOW!"), "{lang}");
    assert!(again.stderr.contains("unchanged: using the cached build"), "no rebuild: {again:?}");
    assert!(!again.stderr.contains("building "), "no rebuild: {again:?}");
    // One edit: the next run builds again and runs the new code.
    let path = project.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(bang), "{text}");
    std::fs::write(&path, text.replace(bang, &bang.replace('!', "?!"))).unwrap();
    let edited = run_logged(&project, src);
    assert_eq!(edited.ok().json(), json!("HELLO GRAFLOW?!"), "{lang}: {edited:?}");
    assert!(edited.stderr.contains("building "), "{edited:?}");
    // `build` still writes a component where asked.
    let built = cli(&project, &["build", src, "-o", "out.wasm"]);
    assert!(built.ok().stderr.contains("built ") && project.join("out.wasm").exists(), "{built:?}");
    let again = cli(dir.path(), &["new", project.to_str().unwrap(), "--lang", lang]);
    assert_eq!(again.code, 2, "a second `new` into the same folder is refused: {again:?}");
}

#[test]
fn a_python_starter_runs_from_one_file() {
    in_new_project("python", "app.py", "app.py", "\"!\"");
}

#[test]
fn a_javascript_starter_runs_from_one_file() {
    in_new_project("js", "app.js", "app.js", "'!'");
}

#[test]
fn a_rust_starter_runs_from_one_crate() {
    in_new_project("rust", ".", "src/lib.rs", "\"!\"");
}

#[test]
fn common_mistakes_get_one_line_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // Tasks but no flow: run alone, the component says how to declare one.
    std::fs::write(
        dir.path().join("app.js"),
        "import { task } from './graflow.js';\ntask(function a() { return 1; });\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["run", "app.js"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("app.js: the component declares no flow"), "{out:?}");
    assert!(out.stderr.contains("workflow({ flow: 'a >> b' })"), "{out:?}");
    // A declaration the SDK refuses fails the build with the Python
    // traceback, naming the user's file and line (not the tool's paths).
    std::fs::write(
        dir.path().join("bad.py"),
        "from graflow import task, workflow\n\n\n@task\ndef a() -> int:\n    return 1\n\n\nworkflow(flow=3)\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["run", "bad.py"]);
    assert_eq!(out.code, 2, "{out:?}");
    let here = format!("File \"{}/bad.py\", line 9", dir.path().display());
    assert!(out.stderr.contains(&here), "{out:?}");
    assert!(out.stderr.contains("TypeError: workflow: flow must be a string, not int 3"), "{out:?}");
    std::fs::write(dir.path().join("notes.txt"), "").unwrap();
    let out = cli(dir.path(), &["build", "notes.txt"]);
    assert!(out.stderr.contains("not a Python file (.py), a JavaScript file (.js) or a Rust crate"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
}

/// What a process wrote to a pseudo-terminal so far, read by a thread.
struct Terminal {
    child: std::process::Child,
    text: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Terminal {
    /// A failed test must not leave `dev` watching: ending `script` closes
    /// the terminal, and `dev` ends with it (SIGHUP).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Terminal {
    /// Wait until `done` holds for the text, or fail after `secs`.
    #[track_caller]
    fn wait_for(&self, what: &str, secs: u64, done: impl Fn(&str) -> bool) -> String {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let text = self.text.lock().unwrap().clone();
            if done(&text) {
                return text;
            }
            assert!(std::time::Instant::now() < until, "no {what} within {secs} s; the terminal shows:\n{text}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// `dev app.py` through a pseudo-terminal (`script`): every save runs the
/// workflow again with the new code; a syntax error prints the file and line
/// and `dev` keeps watching; Ctrl-C ends it.
#[test]
fn dev_runs_again_on_every_save_and_survives_a_syntax_error() {
    use std::io::{Read, Write};
    if std::process::Command::new("script").arg("--version").output().is_err() {
        skipped(
            "GRAFLOW_REQUIRE_SCRIPT",
            "`script` is not installed (apt-get install bsdutils); the pseudo-terminal test needs it",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.py");
    let source = |word: &str| {
        format!(
            "from graflow import task, workflow\n\n\n@task\ndef make(name: str) -> str:\n    return f\"{word} {{name}}\"\n\n\n@task\ndef shout(make: str) -> str:\n    return make.upper()\n\n\nworkflow(flow=\"make >> shout\")\n"
        )
    };
    std::fs::write(&app, source("first")).unwrap();
    let bin = env!("CARGO_BIN_EXE_graflow-host");
    let line = format!("{bin} dev app.py --input '{{\"name\": \"dev\"}}'");
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .current_dir(dir.path())
        .env("GRAFLOW_CACHE_DIR", cache_dir())
        .env("GRAFLOW_CHECKPOINT_KEY", TEST_KEY_HEX)
        .env("GRAFLOW_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let term = Terminal { child, text };
    let watching = |n: usize| move |t: &str| t.matches("--- dev: watching").count() >= n;
    let shown = term.wait_for("first result", 600, watching(1));
    assert!(shown.contains("\"FIRST DEV\""), "{shown}");
    std::fs::write(&app, source("second")).unwrap();
    let shown = term.wait_for("second result", 300, watching(2));
    assert!(shown.contains("\"SECOND DEV\"") && shown.contains("app.py changed"), "{shown}");
    // Line 6 becomes a syntax error: the file and line are printed, and dev
    // keeps watching.
    std::fs::write(&app, source("third").replace("    return f\"third", "    return f\"third\" +")).unwrap();
    let shown = term.wait_for("the syntax error", 300, watching(3));
    let error = &shown[shown.rfind("--- dev: run 3").unwrap_or(0)..];
    assert!(error.contains("app.py:6:") && error.contains("SyntaxError"), "{error}");
    std::fs::write(&app, source("fourth")).unwrap();
    let shown = term.wait_for("fourth result", 300, watching(4));
    assert!(shown.contains("\"FOURTH DEV\""), "{shown}");
    // Ctrl-C through the terminal ends dev.
    let mut term = term;
    term.child.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = term.child.try_wait().unwrap() {
            assert!(!status.success() || status.code().is_some(), "{status:?}");
            break;
        }
        if std::time::Instant::now() > until {
            let _ = term.child.kill();
            panic!("dev did not end on Ctrl-C:\n{}", term.text.lock().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
