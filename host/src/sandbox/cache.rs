//! The compiled-artifact cache: `<dir>/<module sha256>-<engine hash>.cwasm`.
//!
//! Compiling an 18 MB Python component takes seconds; loading its cached
//! artifact takes milliseconds. Entries are written atomically (temp file, then
//! rename) and only by this host: loading an artifact trusts it to be what
//! wasmtime wrote, so the directory must not be writable by others.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept.
pub struct ModuleCache {
    dir: PathBuf,
    engine_hash: String,
}

/// The default cache directory: `$GRAFLOW_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/graflow-host`, else `~/.cache/graflow-host`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("GRAFLOW_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("graflow-host"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("graflow-host"))
}

impl ModuleCache {
    /// A cache in `dir` for artifacts of `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> ModuleCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ModuleCache { dir, engine_hash: format!("{:016x}", hasher.finish()) }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_hash))
    }

    /// The component for `bytes` (whose sha256 is `sha256`): loaded from the
    /// cache, or compiled and stored. A cache that cannot be written only costs
    /// the next run a compile.
    pub fn load_or_compile(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let path = self.path(sha256);
        if path.exists() {
            // SAFETY: entries are written only by `store` below, from
            // `Engine::precompile_component` of an engine with the same
            // compatibility hash (part of the file name).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    // The modification time records the last use, for `cache prune`.
                    let _ = std::fs::File::options()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                    return Ok((component, true));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable cached artifact")
                }
            }
        }
        let artifact = engine.precompile_component(bytes)?;
        if let Err(e) = store(&path, &artifact) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-artifact cache");
        }
        // SAFETY: `artifact` was produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        Ok((component, false))
    }
}

fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, artifact)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// One compiled artifact in a cache directory.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file.
    pub path: PathBuf,
    /// The sha256 of the module it was compiled from.
    pub module: String,
    /// The compatibility hash of the engine that compiled it.
    pub engine_hash: String,
    /// Bytes.
    pub size: u64,
    /// When it was last written or loaded.
    pub last_used: std::time::SystemTime,
}

/// Every artifact in `dir` (files of other names are ignored), oldest use first.
pub fn entries(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((module, engine_hash)) = name.strip_suffix(".cwasm").and_then(|s| s.split_once('-')) else { continue };
        if module.parse::<crate::digest::Sha256>().is_err() {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        out.push(Entry {
            path: e.path(),
            module: module.to_string(),
            engine_hash: engine_hash.to_string(),
            size: meta.len(),
            last_used: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
        });
    }
    out.sort_by_key(|e| e.last_used);
    Ok(out)
}

/// The engine hashes this host's engines have (with and without fuel): an
/// artifact with another one can never be loaded again.
pub fn current_engine_hashes() -> wasmtime::Result<Vec<String>> {
    let mut out = Vec::new();
    for fuel in [false, true] {
        let settings = super::config::EngineSettings { fuel, pooling: false, ..Default::default() };
        let engine = super::config::build_engine(&settings)?;
        out.push(ModuleCache::new(PathBuf::new(), &engine).engine_hash);
    }
    Ok(out)
}
