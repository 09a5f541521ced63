//! `graflow-host dev`: build, validate and run a workflow, then again on
//! every change of its sources, with the same input; Ctrl-C ends it.
//!
//! What is watched follows from the target: a task source's folder (its
//! sibling modules are part of the build), a Rust crate's folder, or a
//! workflow file's folder and the sources or components its modules name.
//! Events are gathered until the files have been quiet for [`QUIET`], so an
//! editor's save (write, rename, chmod) is one change; then the target's
//! fingerprint (the digest of what its builds read, the workflow file, the
//! components' bytes) decides: a run starts only when it changed, so a touch,
//! an editor's swap file or a task writing into a watched folder starts none.

use super::{CliError, ExitStatus};
use graflow_host::Json;
use graflow_host::session::{RunOptions, Session};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the files must be quiet before a change is acted on.
const QUIET: Duration = Duration::from_millis(200);
/// The longest a burst of events delays a run.
const MAX_SETTLE: Duration = Duration::from_secs(2);
/// Folder names whose changes are never looked at: build output, caches,
/// checkpoints.
const IGNORED_DIRS: [&str; 4] = ["target", "checkpoints", "__pycache__", "node_modules"];

#[derive(clap::Args)]
pub struct DevArgs {
    /// A task source that declares its workflow (`app.py`, `app.js`, a Rust
    /// crate's folder), a component, or a workflow file (whose modules may
    /// name sources).
    target: PathBuf,
    /// The input of every run: a JSON object, @FILE or @- (as `run` takes).
    #[arg(long, default_value = "{}")]
    input: String,
    /// Do not use the compiled-module cache.
    #[arg(long)]
    no_cache: bool,
}

pub fn dev(args: DevArgs) -> Result<ExitStatus, CliError> {
    let input = super::run::parse_input(&args.input)?;
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(|e| CliError::bad_input(anyhow::anyhow!("cannot watch files for changes: {e}")))?;
    let mut watching: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    let mut reason = String::from("start");
    for n in 1.. {
        // Watched before the run, so that a save during a build is seen.
        let wanted = watch_set(&args.target);
        for (path, _) in watching.iter().filter(|w| !wanted.contains(w)) {
            let _ = watcher.unwatch(path);
        }
        for (path, mode) in wanted.iter().filter(|w| !watching.contains(w)) {
            if let Err(e) = watcher.watch(path, *mode) {
                eprintln!("warning: cannot watch {}: {e}", path.display());
            }
        }
        watching = wanted;
        let ran_on = fingerprint(&args.target);
        eprintln!("--- dev: run {n} ({reason}) ---");
        once(&args, &input);
        let folders: Vec<String> = watching.iter().map(|(p, _)| p.display().to_string()).collect();
        eprintln!("--- dev: watching {} for changes (Ctrl-C to stop) ---", folders.join(", "));
        reason = loop {
            let Some(changed) = next_change(&rx, &watching) else {
                return Err(CliError::bad_input(anyhow::anyhow!("the file watcher stopped")));
            };
            if fingerprint(&args.target) != ran_on {
                break format!("{} changed", changed.display());
            }
        };
    }
    Ok(ExitStatus::Success)
}

/// Build (when the sources changed), validate and run once; print the result
/// or the error. Nothing here ends `dev`.
fn once(args: &DevArgs, input: &Json) {
    let started = Instant::now();
    let file = match super::open_target(&args.target) {
        Ok(f) => f,
        Err(e) => return eprintln!("error: {}", super::error_text(&e.error)),
    };
    let opts = RunOptions {
        cache_dir: super::cache_dir(args.no_cache),
        checkpoint_dir: Some(PathBuf::from(graflow_host::checkpoint::DEFAULT_DIR)),
        defer_journal: true,
        ..RunOptions::default()
    };
    let mut session = match Session::start_file(file, input.clone(), opts) {
        Ok(s) => s,
        Err(e) => return eprintln!("error: {}", super::error_text(&super::start_failed(&args.target, e).error)),
    };
    let outcome = session.run();
    let (session_id, steps) = (session.state().session_id.clone(), session.state().steps);
    let status = super::run::report(outcome, false, &session_id, steps, Vec::new(), None, Default::default());
    let took = started.elapsed();
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            if !e.printed {
                eprintln!("error: {}", super::error_text(&e.error));
            }
            e.status
        }
    };
    eprintln!("--- dev: {} (exit code {}) after {took:.2?} ---", status.name(), status as u8);
}

/// The folders to watch for `target`.
fn watch_set(target: &Path) -> Vec<(PathBuf, RecursiveMode)> {
    let mut set = Vec::new();
    let mut add = |path: &Path| {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let entry = if abs.is_dir() {
            (abs, RecursiveMode::Recursive)
        } else {
            (abs.parent().unwrap_or(Path::new("/")).to_path_buf(), RecursiveMode::NonRecursive)
        };
        if !set.contains(&entry) {
            set.push(entry);
        }
    };
    let crate_dir = |p: &Path| {
        if p.file_name().is_some_and(|n| n == "Cargo.toml") { p.parent().map(Path::to_path_buf) } else { None }
    };
    add(&crate_dir(target).unwrap_or_else(|| target.to_path_buf()));
    if !graflow_host::build::is_source(target)
        && let Ok(file) = graflow_host::model::WorkflowFile::open(target)
    {
        for (_, module) in file.module_paths() {
            add(&crate_dir(&module).unwrap_or(module));
        }
    }
    set
}

/// True if a change of `path` may start a new run: no hidden entry or
/// ignored folder between the watched folder and the file (the watched
/// folder itself may be anywhere, a hidden one included).
fn relevant(path: &Path, roots: &[(PathBuf, RecursiveMode)]) -> bool {
    let below = roots.iter().filter_map(|(r, _)| path.strip_prefix(r).ok()).min_by_key(|p| p.as_os_str().len());
    let Some(below) = below else { return false };
    let hidden_or_ignored = below.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        (c.starts_with('.') && c != "." && c != "..") || IGNORED_DIRS.contains(&c.as_ref())
    });
    !hidden_or_ignored
}

/// What a run of `target` depends on, as one digest: the inputs of every
/// build (`graflow_host::build::inputs_digest`), the workflow file's text,
/// the bytes of the components it names. An error (a file half-written, a
/// source gone) is part of the fingerprint too, so it changes again when
/// the error goes away.
fn fingerprint(target: &Path) -> String {
    use graflow_host::build;
    let mut h = blake3::Hasher::new();
    let mut part = |label: &str, bytes: &[u8]| {
        h.update(&(label.len() as u64).to_le_bytes());
        h.update(label.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let one = |path: &Path, part: &mut dyn FnMut(&str, &[u8])| {
        let label = path.display().to_string();
        if build::is_source(path) {
            match build::Source::of(path).and_then(|s| build::inputs_digest(&s)) {
                Ok(d) => part(&label, d.as_bytes()),
                Err(e) => part(&label, e.to_string().as_bytes()),
            }
        } else {
            match std::fs::read(path) {
                Ok(bytes) => part(&label, blake3::hash(&bytes).as_bytes()),
                Err(e) => part(&label, e.to_string().as_bytes()),
            }
        }
    };
    one(target, &mut part);
    if !build::is_source(target)
        && let Ok(file) = graflow_host::model::WorkflowFile::open(target)
    {
        for (_, module) in file.module_paths() {
            one(&module, &mut part);
        }
    }
    h.finalize().to_hex().to_string()
}

/// Wait for a relevant change, then for the files to be quiet; the first
/// changed file. None if the watcher is gone.
fn next_change(
    rx: &mpsc::Receiver<notify::Result<notify::Event>>,
    roots: &[(PathBuf, RecursiveMode)],
) -> Option<PathBuf> {
    let changed = |event: notify::Result<notify::Event>| -> Option<PathBuf> {
        // A watcher error (an overflowed queue, a rescan) may hide a change:
        // the fingerprint decides.
        let Ok(event) = event else { return roots.first().map(|(r, _)| r.clone()) };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return None;
        }
        if event.need_rescan() {
            return roots.first().map(|(r, _)| r.clone());
        }
        event.paths.into_iter().find(|p| relevant(p, roots))
    };
    let first = loop {
        if let Some(p) = changed(rx.recv().ok()?) {
            break p;
        }
    };
    let settle_until = Instant::now() + MAX_SETTLE;
    while Instant::now() < settle_until {
        match rx.recv_timeout(QUIET) {
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
    Some(first)
}
