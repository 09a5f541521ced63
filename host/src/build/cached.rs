//! Building a source only when it changed (`graflow-host run app.py`, `dev`).
//!
//! A build's inputs are hashed: the source files a build reads (the task file
//! and its sibling modules; a Rust crate's folder and the folders of its path
//! dependencies, without `target/` and hidden entries), the SDK and contract
//! this binary carries, the build recipe, and the toolchain (the pinned
//! componentize-py / componentize-js, or `rustc -vV`). The component is kept
//! under `<cache>/apps/<source id>-<inputs digest>.wasm`; the same inputs
//! reuse it without running any tool.
//!
//! Invariants: an entry is renamed into place only once whole, so a reader
//! never sees a partial component; the newest [`KEEP_PER_SOURCE`] builds of
//! each source are kept and older ones removed (a checkpoint stores its own
//! copy of the code, so a resume never needs them).

use super::{BuildError, JS_LOCK, JS_SDK, Lang, PY_REQUIREMENTS, PY_SDK, RUST_SDK, Source, WIT, cache_root, io};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds of one source kept in the cache.
pub const KEEP_PER_SOURCE: usize = 3;
/// The most files a build's inputs may hold.
pub const MAX_SOURCE_FILES: usize = 20_000;
/// The most bytes a build's inputs may hold.
pub const MAX_SOURCE_BYTES: u64 = 512 << 20;
/// Bumped when the way a source is built changes (entry modules, flags).
const RECIPE: &str = "graflow-host build recipe 2 (task-app world, generated entry module)";

/// A component built from a source, or found in the cache.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The component in the cache.
    pub path: PathBuf,
    /// The source it was built from.
    pub source: Source,
    /// False when nothing changed and the cached build was used.
    pub rebuilt: bool,
}

/// The component for the source at `src`, built only if its inputs changed;
/// `building` is called just before a build starts (for progress output).
pub fn prepare(src: &Path, building: &dyn Fn(&Source)) -> Result<Prepared, BuildError> {
    let source = Source::of(src)?;
    if source.lang == Lang::Rust {
        ensure_lock_file(&source.path)?;
    }
    let digest = inputs_digest(&source)?;
    let dir = cache_root()?.join("apps");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let id = &blake3::hash(source.path.as_os_str().as_encoded_bytes()).to_hex()[..16];
    let path = dir.join(format!("{id}-{}.wasm", &digest[..32]));
    if path.is_file() {
        touch(&path);
        return Ok(Prepared { path, source, rebuilt: false });
    }
    building(&source);
    let partial = tempfile::Builder::new().prefix(".building-").suffix(".wasm").tempfile_in(&dir).map_err(io(&dir))?;
    source.build_into(partial.path())?;
    // Kept under the digest taken before the build: if a file changed while
    // it ran, the next run's digest differs and it builds again, never
    // reusing output older than the files.
    partial.persist(&path).map_err(|e| BuildError::Io { path: path.clone(), source: e.error })?;
    forget_older(&dir, id, &path);
    Ok(Prepared { path, source, rebuilt: true })
}

/// Write the lock file a crate's first build would write (cargo resolves its
/// dependencies), so that the digest taken before the build is the one the
/// next run computes.
fn ensure_lock_file(crate_dir: &Path) -> Result<(), BuildError> {
    if crate_dir.ancestors().any(|d| d.join("Cargo.lock").is_file()) {
        return Ok(());
    }
    let out = Command::new("cargo")
        .args(["generate-lockfile", "--quiet", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .current_dir(crate_dir)
        .output()
        .map_err(|_| BuildError::MissingProgram { program: "cargo", purpose: "build a Rust task crate" })?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            tool: "cargo generate-lockfile".into(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
        });
    }
    Ok(())
}

/// Mark `path` as the newest use (its modification time orders the builds).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Remove this source's builds beyond the newest [`KEEP_PER_SOURCE`].
fn forget_older(dir: &Path, id: &str, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut builds: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{id}-")))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(_, p)| p != keep)
        .collect();
    builds.sort_by(|a, b| b.0.cmp(&a.0));
    for (_, old) in builds.into_iter().skip(KEEP_PER_SOURCE.saturating_sub(1)) {
        let _ = std::fs::remove_file(old);
    }
}

/// How deep a build's folders may nest (symbolic links followed).
const MAX_SOURCE_DEPTH: usize = 64;

/// Counts what a digest has read, against the bounds.
struct Inputs {
    hasher: blake3::Hasher,
    files: usize,
    bytes: u64,
    root: PathBuf,
    depth: usize,
}

impl Inputs {
    fn part(&mut self, label: &str, bytes: &[u8]) {
        self.hasher.update(&(label.len() as u64).to_le_bytes());
        self.hasher.update(label.as_bytes());
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    fn file(&mut self, label: &str, path: &Path) -> Result<(), BuildError> {
        self.files += 1;
        if self.files > MAX_SOURCE_FILES {
            return Err(BuildError::TooLarge {
                path: self.root.clone(),
                what: format!("more than {MAX_SOURCE_FILES} files"),
                bound: format!("MAX_SOURCE_FILES ({MAX_SOURCE_FILES})"),
            });
        }
        let bytes = std::fs::read(path).map_err(io(path))?;
        self.bytes += bytes.len() as u64;
        if self.bytes > MAX_SOURCE_BYTES {
            return Err(BuildError::TooLarge {
                path: self.root.clone(),
                what: format!("more than {} MiB of files", MAX_SOURCE_BYTES >> 20),
                bound: format!("MAX_SOURCE_BYTES ({} MiB)", MAX_SOURCE_BYTES >> 20),
            });
        }
        self.part(label, &bytes);
        Ok(())
    }

    /// Every file under `dir` but `target/` and hidden entries (`.cargo/`
    /// excepted), in name order; symbolic links are followed (a loop ends
    /// at [`MAX_SOURCE_FILES`]).
    fn tree(&mut self, label: &str, dir: &Path) -> Result<(), BuildError> {
        let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir).map_err(io(dir))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.starts_with('.') && name != ".cargo") || name == "target" {
                continue;
            }
            let Ok(meta) = std::fs::metadata(e.path()) else { continue };
            let label = format!("{label}/{name}");
            if meta.is_dir() {
                self.files += 1;
                if self.depth >= MAX_SOURCE_DEPTH {
                    return Err(BuildError::TooLarge {
                        path: self.root.clone(),
                        what: format!(
                            "folders nested deeper than {MAX_SOURCE_DEPTH} (a symbolic link loop?) at {}",
                            e.path().display()
                        ),
                        bound: format!("MAX_SOURCE_DEPTH ({MAX_SOURCE_DEPTH})"),
                    });
                }
                self.depth += 1;
                let walked = self.tree(&label, &e.path());
                self.depth -= 1;
                walked?;
            } else if meta.is_file() {
                self.file(&label, &e.path())?;
            }
        }
        Ok(())
    }
}

/// The digest of everything a build of `source` depends on (`dev` compares
/// it to tell a real change from a touch).
pub fn inputs_digest(source: &Source) -> Result<String, BuildError> {
    let root = source.path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut inputs = Inputs { hasher: blake3::Hasher::new(), files: 0, bytes: 0, root, depth: 0 };
    inputs.part("recipe", RECIPE.as_bytes());
    inputs.part("wit", WIT.as_bytes());
    match source.lang {
        Lang::Python => {
            inputs.part("sdk", PY_SDK.as_bytes());
            inputs.part("toolchain", PY_REQUIREMENTS.as_bytes());
            siblings(&mut inputs, source, &["py"])?;
        }
        Lang::Js => {
            inputs.part("sdk", JS_SDK.as_bytes());
            inputs.part("toolchain", JS_LOCK.as_bytes());
            siblings(&mut inputs, source, &["js", "mjs", "json"])?;
        }
        Lang::Rust => {
            for (rel, text) in RUST_SDK {
                inputs.part(rel, text.as_bytes());
            }
            inputs.root = source.path.clone();
            let rustc = Command::new("rustc")
                .arg("-vV")
                .current_dir(&source.path)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .ok_or(BuildError::MissingProgram { program: "rustc", purpose: "build a Rust task crate" })?;
            inputs.part("toolchain", &rustc.stdout);
            // What else steers cargo: its configuration files above the
            // crate, and the environment (RUSTFLAGS, CARGO_*, RUSTC, ...).
            for dir in source.path.ancestors().skip(1) {
                for name in ["config.toml", "config"] {
                    let config = dir.join(".cargo").join(name);
                    if config.is_file() {
                        inputs.file(&config.to_string_lossy(), &config)?;
                    }
                }
            }
            let mut env: Vec<(String, String)> = std::env::vars()
                .filter(|(k, _)| k.starts_with("CARGO") || k.starts_with("RUST"))
                .filter(|(k, _)| k != "CARGO_TERM_COLOR" && k != "CARGO_TERM_PROGRESS_WHEN")
                .collect();
            env.sort();
            for (k, v) in env {
                inputs.part(&format!("env {k}"), v.as_bytes());
            }
            let mut seen = Vec::new();
            crate_tree(&mut inputs, &source.path, &mut seen)?;
            // An enclosing workspace: its manifest (shared dependency
            // versions and paths, profiles), the folders of its path
            // dependencies, and its lock file.
            if let Some(root) = source.path.ancestors().skip(1).find(|d| is_workspace_root(d)) {
                let manifest = root.join("Cargo.toml");
                inputs.file("workspace Cargo.toml", &manifest)?;
                if let Some(doc) = std::fs::read_to_string(&manifest).ok().and_then(|t| t.parse::<toml::Table>().ok()) {
                    for dep in path_dependencies(&doc) {
                        let dir = root.join(dep);
                        if dir.join("Cargo.toml").is_file() {
                            crate_tree(&mut inputs, &dir, &mut seen)?;
                        }
                    }
                }
            }
            if let Some(lock) = source.path.ancestors().skip(1).map(|d| d.join("Cargo.lock")).find(|l| l.is_file()) {
                inputs.file("workspace Cargo.lock", &lock)?;
            }
        }
    }
    Ok(inputs.hasher.finalize().to_hex().to_string())
}

/// The task file and the sibling files a build copies (the same filter as
/// the build itself).
fn siblings(inputs: &mut Inputs, source: &Source, exts: &[&str]) -> Result<(), BuildError> {
    inputs.part("entry", source.path.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
    let folder = source.path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(io(folder))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|x| x.to_str()).is_some_and(|x| exts.contains(&x)))
        .filter(|p| p.file_name().is_none_or(|n| n != "package-lock.json"))
        .collect();
    files.sort();
    for f in files {
        let label = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        inputs.file(&label, &f)?;
    }
    Ok(())
}

/// True if `dir` holds a Cargo.toml with a `[workspace]` table.
fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|doc| doc.contains_key("workspace"))
}

/// A crate's folder, then those of its path dependencies (each once).
fn crate_tree(inputs: &mut Inputs, dir: &Path, seen: &mut Vec<PathBuf>) -> Result<(), BuildError> {
    let canonical = std::fs::canonicalize(dir).map_err(io(dir))?;
    if seen.contains(&canonical) {
        return Ok(());
    }
    seen.push(canonical.clone());
    inputs.tree(&canonical.to_string_lossy(), &canonical)?;
    let manifest = canonical.join("Cargo.toml");
    let Ok(text) = std::fs::read_to_string(&manifest) else { return Ok(()) };
    let Ok(doc) = text.parse::<toml::Table>() else { return Ok(()) };
    for dep in path_dependencies(&doc) {
        let dep_dir = canonical.join(dep);
        if dep_dir.join("Cargo.toml").is_file() {
            crate_tree(inputs, &dep_dir, seen)?;
        }
    }
    Ok(())
}

/// The `path` of every dependency table of a manifest (`[dependencies]`,
/// dev, build, per target, `[workspace.dependencies]`).
fn path_dependencies(doc: &toml::Table) -> Vec<String> {
    let mut tables: Vec<&toml::Table> = Vec::new();
    let kinds = ["dependencies", "dev-dependencies", "build-dependencies"];
    for k in kinds {
        tables.extend(doc.get(k).and_then(|t| t.as_table()));
    }
    if let Some(targets) = doc.get("target").and_then(|t| t.as_table()) {
        for t in targets.values().filter_map(|t| t.as_table()) {
            for k in kinds {
                tables.extend(t.get(k).and_then(|t| t.as_table()));
            }
        }
    }
    tables.extend(doc.get("workspace").and_then(|w| w.get("dependencies")).and_then(|t| t.as_table()));
    tables
        .into_iter()
        .flat_map(|t| t.values())
        .filter_map(|d| d.get("path").and_then(|p| p.as_str()).map(str::to_string))
        .collect()
}
