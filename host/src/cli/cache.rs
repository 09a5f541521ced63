//! `graflow-host cache list | prune`: the compiled-module cache.

use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::sandbox::cache;
use std::time::{Duration, SystemTime};

#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// List the compiled components in the cache, least recently used first.
    List,
    /// Remove compiled components this host can no longer load (compiled by
    /// another engine version or configuration) and those not used for a while.
    Prune {
        /// Also remove those not used for this long (e.g. `30d`, `12h`).
        #[arg(long, value_name = "AGE", default_value = "30d", value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Remove every compiled component (the toolchains of `build` stay).
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
                    "  {}  {:>10}  used {} ago{usable}",
                    &e.module[..e.module.len().min(16)],
                    mib(e.size),
                    age(e.last_used)
                );
            }
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
            println!("removed {removed} compiled components ({}) from {}", mib(bytes), dir.display());
        }
    }
    Ok(ExitStatus::Success)
}
