//! Building task components from any folder (`graflow-host build`), only
//! when something changed (`cached.rs`: `graflow-host run app.py`), and
//! starting a project (`graflow-host new`).
//!
//! The contract (`wit/graflow.wit`) and the SDKs travel inside the binary. The
//! pinned toolchains (componentize-py for Python, componentize-js for
//! JavaScript) are installed on first use into the per-user cache
//! (`<cache>/toolchains/`), never into the user's project; a build reads only
//! what it needs: the source file and its sibling modules (`.py`; `.js`,
//! `.mjs`, `.json`), not the rest of the folder's tree.

mod cached;

pub use cached::{KEEP_PER_SOURCE, MAX_SOURCE_BYTES, MAX_SOURCE_FILES, Prepared, inputs_digest, prepare};
use std::path::{Path, PathBuf};
use std::process::Command;

const WIT: &str = include_str!("../../../wit/graflow.wit");
const PY_SDK: &str = include_str!("../../../guest-sdk/python/graflow.py");
const PY_REQUIREMENTS: &str = include_str!("../../../guest-sdk/python/requirements.txt");
const JS_SDK: &str = include_str!("../../../guest-sdk/js/graflow.js");
const JS_PACKAGE: &str = include_str!("../../../guest-sdk/js/package.json");
const JS_LOCK: &str = include_str!("../../../guest-sdk/js/package-lock.json");
const RUST_SDK: [(&str, &str); 4] = [
    ("Cargo.toml", include_str!("../../../guest-sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    ("src/error.rs", include_str!("../../../guest-sdk/src/error.rs")),
    ("src/introspect.rs", include_str!("../../../guest-sdk/src/introspect.rs")),
];

/// Why a build or a new project failed. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Not a `.py`, `.js` or Rust crate.
    #[error("{}: not a Python file (.py), a JavaScript file (.js) or a Rust crate (a folder with Cargo.toml)", path.display())]
    UnknownSource {
        /// The source.
        path: PathBuf,
    },
    /// A file or folder could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A source's file name cannot be a module name.
    #[error("{}: {why}", path.display())]
    BadName {
        /// The source.
        path: PathBuf,
        /// Why not.
        why: String,
    },
    /// A source folder is over a bound of what a build reads.
    #[error("{}: {what}, over the bound of {bound}: build from a folder that holds only the task's sources", path.display())]
    TooLarge {
        /// The folder.
        path: PathBuf,
        /// What was counted.
        what: String,
        /// The bound.
        bound: String,
    },
    /// The Rust target for components is not installed.
    #[error("the Rust target wasm32-wasip2 is not installed: run `rustup target add wasm32-wasip2`")]
    MissingTarget,
    /// A program the build needs is not there.
    #[error("`{program}` is needed to {purpose} and was not found on PATH")]
    MissingProgram {
        /// The program.
        program: &'static str,
        /// What for.
        purpose: &'static str,
    },
    /// A tool failed.
    #[error("{tool} failed ({status}):\n{output}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        output: String,
    },
    /// A Python or JavaScript source does not parse: the language's own
    /// message (file, line, the line and a caret), instead of the tool's.
    #[error("{report}")]
    Syntax {
        /// The message.
        report: String,
    },
    /// `new` into a folder that already holds one of its files.
    #[error("{} already exists: `new` replaces nothing; choose a new folder", path.display())]
    Exists {
        /// The file that exists.
        path: PathBuf,
    },
    /// No cache folder for the toolchains.
    #[error("no cache folder for the toolchains: set GRAFLOW_CACHE_DIR or HOME")]
    NoCache,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io { path: path.to_path_buf(), source }
}

/// The language of a task source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A Python file.
    Python,
    /// A JavaScript file.
    Js,
    /// A Rust crate.
    Rust,
}

fn hash(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..12].to_string()
}

fn cache_root() -> Result<PathBuf, BuildError> {
    crate::sandbox::cache::default_dir().ok_or(BuildError::NoCache)
}

/// Write `files` (relative path, text) under `dir` once; the folder's name
/// carries their hash, so a changed SDK gets a new folder.
fn materialize(dir: &Path, files: &[(&str, &str)]) -> Result<(), BuildError> {
    if dir.join(".complete").exists() {
        return Ok(());
    }
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    std::fs::write(dir.join(".complete"), b"").map_err(io(dir))
}

/// The contract and SDKs, unpacked into the cache.
fn assets() -> Result<PathBuf, BuildError> {
    let dir = cache_root()?.join("sdk").join(hash(&[WIT, PY_SDK, JS_SDK]));
    materialize(&dir, &[("wit/graflow.wit", WIT), ("python/graflow.py", PY_SDK), ("js/graflow.js", JS_SDK)])?;
    Ok(dir)
}

fn run(tool: &str, cmd: &mut Command) -> Result<(), BuildError> {
    // The tools are Rust programs: without this, a user's RUST_BACKTRACE=1
    // makes the end of their output (what the error shows) a Rust backtrace
    // instead of the error, e.g. the task module's Python traceback.
    cmd.env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0");
    let out = cmd.output().map_err(|e| BuildError::Tool {
        tool: tool.to_string(),
        status: "did not start".into(),
        output: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n");
    Err(BuildError::Tool { tool: tool.to_string(), status: out.status.to_string(), output: tail })
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Install a toolchain into `dir` once (a venv cannot move: it is built in
/// place). A marker file written last says it is whole; a half-made one is
/// removed and made again; concurrent builds wait on a lock.
fn toolchain(dir: &Path, install: impl FnOnce(&Path) -> Result<(), BuildError>) -> Result<(), BuildError> {
    if dir.join(".complete").exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let lock = std::fs::File::create(parent.join(".lock")).map_err(io(parent))?;
    lock.lock().map_err(io(parent))?;
    if dir.join(".complete").exists() {
        return Ok(());
    }
    eprintln!("installing {} (first use; later builds reuse it)", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if let Err(e) = install(dir) {
        let _ = std::fs::remove_dir_all(dir);
        return Err(e);
    }
    std::fs::write(dir.join(".complete"), b"").map_err(io(dir))
}

/// What `build` made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The component.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its language.
    pub lang: Lang,
}

/// A task source: where it is, its language, the name of what it builds.
#[derive(Debug, Clone)]
pub struct Source {
    /// The `.py` or `.js` file, or the Rust crate's folder (absolute).
    pub path: PathBuf,
    /// Its language.
    pub lang: Lang,
    /// The component's name: the file's stem, or the crate folder's name
    /// (`-` as `_`).
    pub stem: String,
}

/// True if `path` names a task source (`.py`, `.js`, `.mjs`, a Rust crate's
/// folder or its `Cargo.toml`) rather than a component or a workflow file.
pub fn is_source(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("py") | Some("js") | Some("mjs") => true,
        _ => {
            (path.is_dir() && path.join("Cargo.toml").is_file()) || path.file_name().is_some_and(|n| n == "Cargo.toml")
        }
    }
}

impl Source {
    /// Recognise `src`: a `.py` or `.js`/`.mjs` file, or a Rust crate (its
    /// folder or its `Cargo.toml`).
    pub fn of(src: &Path) -> Result<Source, BuildError> {
        let src = std::path::absolute(src).map_err(io(src))?;
        let lang = match src.extension().and_then(|e| e.to_str()) {
            Some("py") => Lang::Python,
            Some("js") | Some("mjs") => Lang::Js,
            _ if src.is_dir() && src.join("Cargo.toml").is_file() => Lang::Rust,
            _ if src.file_name().is_some_and(|n| n == "Cargo.toml") => Lang::Rust,
            _ => return Err(BuildError::UnknownSource { path: src }),
        };
        if lang != Lang::Rust && !src.is_file() {
            return Err(BuildError::Io {
                path: src.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        if let (Lang::Python, Some(stem)) = (lang, src.file_stem().and_then(|s| s.to_str()))
            && stem.contains('.')
        {
            return Err(BuildError::BadName {
                path: src.clone(),
                why: "a Python module's file name cannot contain '.' besides the one before `py`; rename it".into(),
            });
        }
        if lang == Lang::Js && src.file_name().is_some_and(|n| n.to_string_lossy().contains(['#', '?', '%', '\\'])) {
            return Err(BuildError::BadName {
                path: src.clone(),
                why: "a JavaScript module's file name cannot contain '#', '?', '%' or '\\' (it is imported by URL); rename it"
                    .into(),
            });
        }
        let (path, stem) = match lang {
            Lang::Rust => {
                let dir = if src.is_dir() { src.clone() } else { src.parent().unwrap_or(Path::new(".")).to_path_buf() };
                let stem =
                    dir.file_name().map(|n| n.to_string_lossy().replace('-', "_")).unwrap_or_else(|| "task".into());
                (dir, stem)
            }
            _ => {
                let stem = src.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "task".into());
                (src, stem)
            }
        };
        Ok(Source { path, lang, stem })
    }

    fn build_into(&self, out: &Path) -> Result<(), BuildError> {
        match self.lang {
            Lang::Python => build_python(&self.path, out),
            Lang::Js => build_js(&self.path, out),
            Lang::Rust => build_rust(&self.path, out),
        }
    }
}

/// Build the task source at `src` (a `.py` or `.js` file, or a Rust crate
/// folder or its `Cargo.toml`) into the component `out` (default: next to
/// the current folder, named after the source).
pub fn build(src: &Path, out: Option<&Path>) -> Result<Built, BuildError> {
    let source = Source::of(src)?;
    let out = match out {
        Some(o) => std::path::absolute(o).map_err(io(o))?,
        None => std::path::absolute(format!("{}.wasm", source.stem)).map_err(io(Path::new(".")))?,
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    source.build_into(&out)?;
    let bytes = std::fs::metadata(&out).map_err(io(&out))?.len();
    Ok(Built { path: out, bytes, lang: source.lang })
}

/// The app module componentize-py starts from: it imports the task module
/// (which registers its tasks and may declare its workflow) and the SDK's
/// `WitWorld`, so the task module itself needs no boilerplate.
const PY_ENTRY: &str = "graflow_app_entry";

/// The entry module componentize-js starts from: it imports the task module
/// and re-exports the SDK's `tasks`, `run` and `workflow`.
const JS_ENTRY: &str = "graflow_app_entry.js";

fn build_python(src: &Path, out: &Path) -> Result<(), BuildError> {
    if !have("python3") {
        return Err(BuildError::MissingProgram { program: "python3", purpose: "install componentize-py" });
    }
    let assets = assets()?;
    let tools = cache_root()?.join("toolchains").join(format!("py-{}", hash(&[PY_REQUIREMENTS])));
    toolchain(&tools, |dir| {
        run("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(dir))?;
        let req = dir.join("requirements.txt");
        std::fs::write(&req, PY_REQUIREMENTS).map_err(io(&req))?;
        run(
            "pip install componentize-py",
            Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&req),
        )
    })?;
    let module = src.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // The source and its sibling modules only, in a scratch folder: never the
    // rest of the folder's tree.
    let scratch = tempfile::tempdir().map_err(io(Path::new("/tmp")))?;
    let parent = src.parent().unwrap_or(Path::new("."));
    for e in std::fs::read_dir(parent).map_err(io(parent))?.flatten() {
        let name = e.file_name();
        if Path::new(&name).extension().is_some_and(|x| x == "py") && e.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(e.path(), scratch.path().join(&name)).map_err(io(&e.path()))?;
        }
    }
    let folder = scratch.path();
    let entry = folder.join(format!("{PY_ENTRY}.py"));
    let quoted = serde_json::to_string(&module).unwrap_or_default();
    let entry_text =
        format!("import importlib\nimportlib.import_module({quoted})\nfrom graflow import WitWorld  # noqa: F401\n");
    std::fs::write(&entry, entry_text).map_err(io(&entry))?;
    run(
        "componentize-py",
        Command::new(tools.join("bin/componentize-py"))
            .arg("-d")
            .arg(assets.join("wit"))
            .args(["-w", "task-app", "componentize", "-p"])
            .arg(assets.join("python"))
            .arg("-p")
            .arg(folder)
            .arg(PY_ENTRY)
            .arg("-o")
            .arg(out),
    )
    .map_err(|e| match python_syntax(src, parent) {
        Some(syntax) => syntax,
        // componentize-py mounts the folders it is given as /0 (the SDK) and
        // /1 (the sources): name the user's files by their own path.
        None => match e {
            BuildError::Tool { tool, status, output } => {
                let here = format!("File \"{}/", parent.display());
                BuildError::Tool { tool, status, output: output.replace("File \"/1/", &here) }
            }
            other => other,
        },
    })
}

/// The source `src` and its sibling files with extension `ext` (`src`
/// first, the others by name).
fn with_siblings(src: &Path, folder: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut siblings: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p != src && p.extension().and_then(|x| x.to_str()).is_some_and(|x| exts.contains(&x)))
        .collect();
    siblings.sort();
    let mut files = vec![src.to_path_buf()];
    files.extend(siblings);
    files
}

/// Prints the first syntax error of the files named as Python shows it, and
/// exits with 1; exits with 0 if they all compile.
const PY_SYNTAX_CHECK: &str = include_str!("../../../scripts/py_syntax_check.py");

/// After componentize-py failed: the first syntax error of the task module
/// or a sibling module, as Python reports it, instead of the tool's Rust
/// backtrace. Checked only then, since the Python on PATH may be older than
/// the one componentize-py embeds (and refuse newer syntax).
fn python_syntax(src: &Path, folder: &Path) -> Option<BuildError> {
    let files = with_siblings(src, folder, &["py"]);
    let out = Command::new("python3").arg("-I").arg("-c").arg(PY_SYNTAX_CHECK).args(&files).output().ok()?;
    let report = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    (out.status.code() == Some(1) && !report.is_empty()).then_some(BuildError::Syntax { report })
}

/// After componentize-js failed: the first syntax error of the entry or a
/// sibling module, as `node --check` reports it (file, line, the line, a
/// caret, the error), instead of the tool's error count. Nothing without
/// `node`.
fn js_syntax(src: &Path, folder: &Path) -> Option<BuildError> {
    if !have("node") {
        return None;
    }
    let scratch = tempfile::tempdir().ok()?;
    // As an ES module whatever the extension, as componentize-js reads it.
    let copy = scratch.path().join("check.mjs");
    for file in with_siblings(src, folder, &["js", "mjs"]) {
        std::fs::copy(&file, &copy).ok()?;
        let out = Command::new("node").arg("--check").arg(&copy).output().ok()?;
        if out.status.success() {
            continue;
        }
        let (scratch_name, name) = (copy.display().to_string(), file.display().to_string());
        let text = String::from_utf8_lossy(&out.stderr).replace(&scratch_name, &name);
        // Up to the error's own line (`SyntaxError: ...`); not node's stack.
        let mut report = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            report.push(line);
            let error_line = line
                .split_once(": ")
                .is_some_and(|(kind, _)| kind.ends_with("Error") && kind.chars().all(|c| c.is_ascii_alphabetic()));
            if error_line {
                break;
            }
        }
        return Some(BuildError::Syntax { report: report.join("\n") });
    }
    None
}

fn build_js(src: &Path, out: &Path) -> Result<(), BuildError> {
    if !have("npm") {
        return Err(BuildError::MissingProgram { program: "npm", purpose: "install componentize-js" });
    }
    let assets = assets()?;
    let tools = cache_root()?.join("toolchains").join(format!("js-{}", hash(&[JS_LOCK])));
    toolchain(&tools, |dir| {
        for (name, text) in [("package.json", JS_PACKAGE), ("package-lock.json", JS_LOCK)] {
            std::fs::write(dir.join(name), text).map_err(io(dir))?;
        }
        run("npm ci", Command::new("npm").args(["ci", "--silent", "--no-audit", "--no-fund"]).current_dir(dir))
    })?;
    // A scratch folder with the entry, its sibling modules (not their
    // subfolders: never a neighbouring node_modules or target/) and the SDK.
    let scratch = tempfile::tempdir().map_err(io(Path::new("/tmp")))?;
    let folder = src.parent().unwrap_or(Path::new("."));
    for e in std::fs::read_dir(folder).map_err(io(folder))?.flatten() {
        let name = e.file_name();
        let is_module = Path::new(&name).extension().is_some_and(|x| x == "js" || x == "mjs" || x == "json");
        if is_module && e.file_type().is_ok_and(|t| t.is_file()) && name != "package-lock.json" {
            std::fs::copy(e.path(), scratch.path().join(&name)).map_err(io(&e.path()))?;
        }
    }
    std::fs::copy(assets.join("js/graflow.js"), scratch.path().join("graflow.js")).map_err(io(&assets))?;
    let module = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let entry = scratch.path().join(JS_ENTRY);
    let quoted = serde_json::to_string(&format!("./{module}")).unwrap_or_default();
    let entry_text = format!("import {quoted};\nexport {{ tasks, run, workflow_ as workflow }} from './graflow.js';\n");
    std::fs::write(&entry, entry_text).map_err(io(&entry))?;
    run(
        "componentize-js",
        Command::new(tools.join("node_modules/.bin/componentize-js"))
            .arg(JS_ENTRY)
            .arg("--wit")
            .arg(assets.join("wit"))
            .args(["-n", "task-app", "-d", "http", "fetch-event", "-o"])
            .arg(out)
            .current_dir(scratch.path()),
    )
    .map_err(|e| js_syntax(src, folder).unwrap_or(e))
}

fn build_rust(src: &Path, out: &Path) -> Result<(), BuildError> {
    let manifest = if src.is_dir() { src.join("Cargo.toml") } else { src.to_path_buf() };
    let crate_dir = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    if !have("cargo") {
        return Err(BuildError::MissingProgram { program: "cargo", purpose: "build a Rust task crate" });
    }
    // Run where the crate is: its rust-toolchain.toml and .cargo/config.toml apply.
    let targets = Command::new("rustup").args(["target", "list", "--installed"]).current_dir(&crate_dir).output();
    if let Ok(t) = targets
        && t.status.success()
        && !String::from_utf8_lossy(&t.stdout).lines().any(|l| l.trim() == "wasm32-wasip2")
    {
        return Err(BuildError::MissingTarget);
    }
    run(
        "cargo build",
        Command::new("cargo")
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(&manifest)
            .current_dir(&crate_dir),
    )?;
    let meta = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .current_dir(&crate_dir)
        .output()
        .map_err(io(&manifest))?;
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap_or_default();
    let target_dir = meta["target_directory"].as_str().map(PathBuf::from).unwrap_or_default();
    let manifest_abs = std::fs::canonicalize(&manifest).unwrap_or(manifest.clone());
    let package = meta["packages"].as_array().and_then(|ps| {
        ps.iter().find(|p| {
            p["manifest_path"].as_str().and_then(|m| std::fs::canonicalize(m).ok()).as_deref() == Some(&manifest_abs)
        })
    });
    // The component is named after the cdylib target (`[lib] name`).
    let name = package
        .and_then(|p| p["targets"].as_array())
        .and_then(|ts| ts.iter().find(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"))))
        .and_then(|t| t["name"].as_str())
        .unwrap_or_default()
        .replace('-', "_");
    let built = target_dir.join("wasm32-wasip2/release").join(format!("{name}.wasm"));
    std::fs::copy(&built, out).map_err(io(&built))?;
    Ok(())
}

/// Write a starter project into `dir`: one task source in `lang` that
/// declares its workflow (`app.py`, `app.js`, or a Rust crate), which `run`
/// accepts unchanged. Returns the files written.
pub fn new_project(dir: &Path, lang: Lang) -> Result<Vec<PathBuf>, BuildError> {
    // The folder's name, as a TOML-safe workflow name.
    let name: String = dir
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
                .collect()
        })
        .filter(|n: &String| !n.is_empty())
        .unwrap_or_else(|| "starter".into());
    let sources: Vec<(String, String)> = match lang {
        Lang::Python => vec![("app.py".into(), PY_STARTER.into())],
        Lang::Js => vec![("app.js".into(), JS_STARTER.into())],
        Lang::Rust => {
            let mut files = vec![
                ("Cargo.toml".to_string(), RUST_STARTER_TOML.replace("{name}", &crate_name(&name))),
                ("src/lib.rs".to_string(), RUST_STARTER.to_string()),
                ("wit/graflow.wit".to_string(), WIT.to_string()),
            ];
            for (rel, text) in RUST_SDK {
                files.push((format!("graflow-guest/{rel}"), text.to_string()));
            }
            files
        }
    };
    let files: Vec<(&str, &str)> = sources.iter().map(|(r, t)| (r.as_str(), t.as_str())).collect();
    // Nothing of an existing project is replaced: every file is checked first,
    // and each is created only if absent.
    if let Some((rel, _)) = files.iter().find(|(rel, _)| std::fs::symlink_metadata(dir.join(rel)).is_ok()) {
        return Err(BuildError::Exists { path: dir.join(rel) });
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(io(&path))?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

const PY_STARTER: &str = r#""""A workflow in one file. Run it (built on the first run, and again only
after a change):

    graflow-host run app.py --input '{"name": "world"}'

`greet` makes a greeting from the run input's `name`; `shout` receives greet's
result (its parameter is named after the task)."""
from graflow import task, workflow, channel, log


@task
def greet(name: str = "world") -> str:
    log.info(f"greeting {name}")
    channel.set("greeted", name)
    return f"hello {name}"


@task(max_retries=2)
def shout(greet: str) -> str:
    return greet.upper() + "!"


workflow(flow="greet >> shout")
"#;

const JS_STARTER: &str = r#"// A workflow in one file. Run it (built on the first run, and again only
// after a change):
//
//   graflow-host run app.js --input '{"name": "world"}'
//
// `greet` makes a greeting from the run input's `name`; `shout` receives
// greet's result (its parameter is named after the task).
import { task, workflow, channel, log } from './graflow.js';

task(function greet({ name = 'world' }) {
  log.info(`greeting ${name}`);
  channel.set('greeted', name);
  return `hello ${name}`;
});

task(function shout({ greet }) {
  return greet.toUpperCase() + '!';
}, { maxRetries: 2 });

workflow({ flow: 'greet >> shout' });
"#;

/// A Cargo package name from a folder name.
fn crate_name(name: &str) -> String {
    let n: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if n.starts_with(|c: char| c.is_ascii_alphabetic()) { n } else { format!("tasks_{n}") }
}

const RUST_STARTER_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
graflow-guest = { path = "graflow-guest" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

# A project of its own, not part of an enclosing workspace.
[workspace]
members = ["."]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#;

const RUST_STARTER: &str = r#"//! A workflow in one crate. Run it (built on the first run, and again only
//! after a change):
//!
//!     graflow-host run . --input '{"name": "world"}'
//!
//! `greet` makes a greeting from the run input's `name`; `shout` receives
//! greet's result (its input field is named after the task).
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Greet {
    #[serde(default = "world")]
    name: String,
}

fn world() -> String {
    "world".into()
}

fn greet(input: Greet) -> Result<String, TaskError> {
    log::info(&format!("greeting {}", input.name));
    channel::set("greeted", &input.name)?;
    Ok(format!("hello {}", input.name))
}

#[derive(Deserialize)]
struct Shout {
    greet: String,
}

fn shout(input: Shout) -> Result<String, TaskError> {
    Ok(input.greet.to_uppercase() + "!")
}

graflow_guest::export_tasks!(
    workflow = Workflow::flow("greet >> shout").task("shout", Settings::new().max_retries(2));
    greet: "Greets the name in the input",
    shout,
);
"#;
