//! Helpers: paths to the binary and fixtures, workflow files in temp dirs,
//! running the CLI or the library.

#![allow(dead_code)]

use graflow_host::Json;
use graflow_host::channel::MemoryChannel;
use graflow_host::checkpoint::{Loaded, SigningKey, Trust};
use graflow_host::engine::{RunError, RunReport, RunState};
use graflow_host::session::{RunOptions, Session};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn built(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{} is missing: run `make guests` first (`make test` does)", path.display());
    path
}

/// The scriptable test component.
pub fn testkit() -> PathBuf {
    built(repo().join("tests/guests/testkit.wasm"))
}

/// An example's workflow file (its module must be built).
pub fn example(name: &str) -> PathBuf {
    let dir = repo().join("examples").join(name);
    built(dir.join(format!("{}.wasm", name.replace('-', "_"))));
    dir.join("workflow.toml")
}

/// The compiled-module cache shared by the tests.
pub fn cache_dir() -> PathBuf {
    repo().join("target/test-cache")
}

/// The output of one CLI invocation.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }
}

/// The checkpoint signing key every test uses (the CLI gets it through
/// `GRAFLOW_CHECKPOINT_KEY`), so tests never touch the user's key.
pub const TEST_KEY_HEX: &str = "0707070707070707070707070707070707070707070707070707070707070707";

/// [`TEST_KEY_HEX`] as a key.
pub fn test_key() -> SigningKey {
    SigningKey::from_bytes([7; 32])
}

/// Load a checkpoint signed with the test key.
#[track_caller]
pub fn load_cp(base: &Path) -> Loaded {
    graflow_host::checkpoint::load(base, &test_key(), Trust::Signed)
        .unwrap_or_else(|e| panic!("{}: {e:#}", base.display()))
}

/// A command for the binary, with the test cache, the test key and quiet logs.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graflow-host"));
    cmd.current_dir(dir)
        .env("GRAFLOW_CACHE_DIR", cache_dir())
        .env("GRAFLOW_LOG", "warn")
        .env("GRAFLOW_CHECKPOINT_KEY", TEST_KEY_HEX)
        .env_remove("GRAFLOW_CHECKPOINT_KEY_FILE");
    cmd
}

/// Run the binary in `dir`.
pub fn cli(dir: &Path, args: &[&str]) -> Out {
    let out = command(dir).args(args).output().expect("run graflow-host");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A workflow file in a temp dir, using the testkit component as module `kit`.
pub struct Wf {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Wf {
    /// Run it through the CLI (in its dir, checkpoints in `<dir>/checkpoints`).
    pub fn run(&self, input: &serde_json::Value, extra: &[&str]) -> Out {
        let input = input.to_string();
        let mut args = vec!["run", "workflow.toml", "--input", &input];
        args.extend_from_slice(extra);
        cli(self.dir.path(), &args)
    }

    /// `<dir>/checkpoints`.
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.path().join("checkpoints")
    }
}

/// Write `body` (workflow file text without `[modules]`) with module `kit`.
pub fn workflow(body: &str) -> Wf {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(testkit(), dir.path().join("kit.wasm")).unwrap();
    let path = dir.path().join("workflow.toml");
    std::fs::write(&path, format!("{body}\n[modules]\nkit = \"kit.wasm\"\n")).unwrap();
    Wf { dir, path }
}

/// Tasks named `names`, each running the testkit export `script`.
pub fn scripted(names: &[&str]) -> String {
    names.iter().map(|n| format!("[tasks.{n}]\nexport = \"script\"\n")).collect()
}

/// A finished library run.
pub struct LibRun {
    pub result: Result<RunReport, RunError>,
    pub state: RunState,
    pub channel: Arc<MemoryChannel>,
}

impl LibRun {
    /// The channel's `order` list: execution ids in the order they ran (and succeeded).
    pub fn order(&self) -> Vec<String> {
        use graflow_host::channel::Channel;
        self.channel.get("order").map(|o| serde_json::from_str(o.as_str()).unwrap()).unwrap_or_default()
    }
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        use graflow_host::channel::Channel;
        self.channel.get(key).map(|v| v.to_value().unwrap())
    }
}

/// The options the library tests run with: the test cache and key.
pub fn lib_options() -> RunOptions {
    RunOptions { cache_dir: Some(cache_dir()), key: Some(test_key()), ..RunOptions::default() }
}

/// Load and run `wf` through the library session with `input`.
pub fn run_lib(wf: &Wf, input: serde_json::Value) -> LibRun {
    let opts = RunOptions { session_id: Some("e2e".into()), ..lib_options() };
    let mut session = Session::start(&wf.path, Json::from(input), opts).unwrap_or_else(|e| panic!("{e:#}"));
    let result = session.run();
    LibRun { result, state: session.state().clone(), channel: session.channel().clone() }
}

/// `{"scripts": {task: [actions]}}`.
pub fn scripts(v: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "scripts": v })
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)
        } else {
            std::fs::copy(entry.path(), target).map(|_| ()).unwrap()
        }
    }
}

pub fn sigint(child: &std::process::Child) {
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Chromium, found by the rule `.ci/run` uses: `chromium` or
/// `chromium-browser` on `PATH` (Debian's package installs
/// `/usr/bin/chromium`). Without it the test says it skipped the browser part
/// (and what it did instead), unless `GRAFLOW_REQUIRE_CHROMIUM=1`, as in CI,
/// makes that a failure.
pub fn chromium(instead: &str) -> Option<&'static str> {
    static FOUND: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let found = FOUND
        .get_or_init(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            ["chromium", "chromium-browser"]
                .into_iter()
                .find_map(|name| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p)))
                .map(|p| p.to_string_lossy().into_owned())
        })
        .as_deref();
    if found.is_none() {
        skipped(
            "GRAFLOW_REQUIRE_CHROMIUM",
            &format!("chromium is not installed (apt-get install chromium); {instead}"),
        );
    }
    found
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A test (or part of one) not run because `reason` (a tool is missing):
/// a failure when the environment variable `require` is `1` (`.ci/run` sets
/// them), else a "SKIPPED" line on stderr and in the skip log that `make test`
/// prints after `cargo test` (libtest hides the stderr of passing tests):
/// `$GRAFLOW_SKIP_LOG`, by default `target/skipped-tests.txt`.
pub fn skipped(require: &str, reason: &str) {
    assert!(std::env::var(require).as_deref() != Ok("1"), "{reason}, and {require}=1 makes that a failure");
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("SKIPPED: {test}: {reason}\n");
    eprint!("{line}");
    let log = std::env::var_os("GRAFLOW_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/skipped-tests.txt"));
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One write of one line with O_APPEND: lines of tests running at once do
    // not interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        let _ = std::io::Write::write_all(&mut f, line.as_bytes());
    }
}
