//! `graflow-host cache list | prune`: the compiled-module cache.

use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::sandbox::cache;
use std::time::{Duration, SystemTime};

#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// List the compiled components in the cache, least recently used first,
    /// and the components `run <source>` built.
    List,
    /// Remove compiled components this host can no longer load (compiled by
    /// another engine version or configuration) and those not used for a
    /// while; the same for the components `run <source>` built.
    Prune {
        /// Also remove those not used for this long (e.g. `30d`, `12h`).
        #[arg(long, value_name = "AGE", default_value = "30d", value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Remove every compiled and built component (the toolchains of
        /// `build` stay).
        #[arg(long)]
        all: bool,
    },
}

fn dir() -> Result<std::path::PathBuf, CliError> {
    cache::default_dir()
        .ok_or_else(|| CliError::bad_input(anyhow!("no cache directory: set GRAFLOW_CACHE_DIR or HOME")))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn age(t: SystemTime) -> String {
    let secs = t.elapsed().map_or(0, |d| d.as_secs());
    humantime::format_duration(Duration::from_secs(secs - secs % 60)).to_string()
}

/// Where `cache list` finds the module names: `<cache>/names/<sha256>`, one
/// `name<TAB>file` line per workflow module seen with that code (the newest
/// first, a few at most). The compiled artifacts know only the digest.
const NAMES: &str = "names";

/// Where `run <source>` keeps its builds (`graflow_host::build::prepare`).
const APPS: &str = "apps";

/// The builds in `<cache>/apps/`: path, size, last use.
fn builds(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, SystemTime)> {
    std::fs::read_dir(dir.join(APPS))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| (e.path(), m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
        })
        .collect()
}

/// Record the name and file of each module of `workflow` for `cache list`
/// (best effort: a cache that cannot be written only loses the names).
pub fn remember_names(workflow: &graflow_host::model::Workflow) {
    let Some(dir) = cache::default_dir().map(|d| d.join(NAMES)) else { return };
    for (name, module) in &workflow.modules {
        let path = dir.join(module.sha256.to_string());
        let line = format!("{name}\t{}", module.path.display()).replace(['\n', '\r'], " ");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old.lines().next() == Some(line.as_str()) {
            continue;
        }
        let mut lines: Vec<&str> = vec![line.as_str()];
        lines.extend(old.lines().filter(|l| *l != line).take(3));
        let text = lines.join("\n") + "\n";
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes())?;
            tmp.persist(&path).map(|_| ()).map_err(|e| e.error)
        });
        if let Err(e) = written {
            tracing::debug!("cannot record the name of module '{name}' in {}: {e}", dir.display());
        }
    }
}

/// The names and files recorded for the module with digest `sha256`.
fn names_of(dir: &std::path::Path, sha256: &str) -> String {
    let text = std::fs::read_to_string(dir.join(NAMES).join(sha256)).unwrap_or_default();
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(name, file)| format!("{} ({})", super::printable(name), super::printable(file)))
        .collect();
    if names.is_empty() { "(module name not recorded)".to_string() } else { names.join(", ") }
}

pub fn cache(cmd: CacheCommand) -> Result<ExitStatus, CliError> {
    let dir = dir()?;
    let entries = cache::entries(&dir)
        .map_err(|e| CliError::bad_input(anyhow::Error::new(e).context(dir.display().to_string())))?;
    let current = cache::current_engine_hashes()
        .map_err(|e| CliError::bad_input(anyhow!("cannot build the wasm engine: {e:#}")))?;
    match cmd {
        CacheCommand::List => {
            println!("{} ({} entries, {})", dir.display(), entries.len(), mib(entries.iter().map(|e| e.size).sum()));
            for e in &entries {
                let usable = if current.contains(&e.engine_hash) { "" } else { "  (other engine: unusable)" };
                println!(
                    "  {}  {:>10}  used {} ago  {}{usable}",
                    &e.module[..e.module.len().min(16)],
                    mib(e.size),
                    age(e.last_used),
                    names_of(&dir, &e.module)
                );
            }
            let built = builds(&dir);
            println!(
                "{} ({} components built by `run <source>`, {})",
                dir.join(APPS).display(),
                built.len(),
                mib(built.iter().map(|b| b.1).sum())
            );
        }
        CacheCommand::Prune { older_than, all } => {
            let (mut removed, mut bytes) = (0, 0);
            for e in &entries {
                let old = e.last_used.elapsed().is_ok_and(|a| a > older_than);
                if (all || old || !current.contains(&e.engine_hash)) && std::fs::remove_file(&e.path).is_ok() {
                    removed += 1;
                    bytes += e.size;
                }
            }
            // The names of modules no compiled component is left of.
            let left: std::collections::HashSet<String> =
                cache::entries(&dir).unwrap_or_default().into_iter().map(|e| e.module).collect();
            for entry in std::fs::read_dir(dir.join(NAMES)).into_iter().flatten().flatten() {
                if !left.contains(entry.file_name().to_string_lossy().as_ref()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            println!("removed {removed} compiled components ({}) from {}", mib(bytes), dir.display());
            let (mut removed, mut bytes) = (0, 0);
            for (path, size, used) in builds(&dir) {
                let old = used.elapsed().is_ok_and(|a| a > older_than);
                // A build still being written (`.building-*`) is left alone
                // for an hour.
                let in_flight = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".building-"))
                    && used.elapsed().is_ok_and(|a| a < Duration::from_secs(3600));
                if (all || old) && !in_flight && std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                    bytes += size;
                }
            }
            println!("removed {removed} built components ({}) from {}", mib(bytes), dir.join(APPS).display());
        }
    }
    Ok(ExitStatus::Success)
}
