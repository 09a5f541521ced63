//! `graflow-host logs`: the events of a run, from its journal.

use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::checkpoint;
use graflow_host::journal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct LogsArgs {
    /// A checkpoint of the run (any of its files or its base path), or the
    /// run's folder in the checkpoint directory (`DIR/<session>`).
    run: PathBuf,
    /// Print the events as JSON lines, as they are kept.
    #[arg(long)]
    json: bool,
}

pub fn logs(args: LogsArgs) -> Result<ExitStatus, CliError> {
    let folder = if args.run.is_dir() {
        args.run.clone()
    } else {
        let base = checkpoint::base_of(&args.run);
        base.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
    };
    let path = folder.join(journal::JOURNAL_FILE);
    let events = journal::read(&path).map_err(|e| {
        CliError::bad_input(anyhow::Error::new(e).context(format!(
            "no events for {} (a run keeps them beside its checkpoints, in <dir>/<session>/{})",
            args.run.display(),
            journal::JOURNAL_FILE
        )))
    })?;
    if events.is_empty() {
        return Err(CliError::bad_input(anyhow!("{} holds no events", path.display())));
    }
    for e in events {
        if args.json {
            println!("{e}");
            continue;
        }
        // Years past 9999 cannot be written as RFC 3339: such a time is shown raw.
        let at = match e["at_ms"].as_u64() {
            Some(ms) if ms < 253_402_300_800_000 => {
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
                    .to_string()
            }
            Some(ms) => ms.to_string(),
            None => String::new(),
        };
        // Guest text never reaches the terminal raw (no control sequences).
        let s = |k: &str| e[k].as_str().unwrap_or("").chars().flat_map(char::escape_default).collect::<String>();
        let line = match e["event"].as_str().unwrap_or("") {
            "task_started" => format!(
                "started   {} ({} in {}, attempt {})",
                s("task_id"),
                s("task"),
                s("module"),
                e["attempt"].as_u64().unwrap_or(0).saturating_add(1)
            ),
            "task_finished" => {
                format!("finished  {} in {:.1} ms", s("task_id"), e["duration_ms"].as_f64().unwrap_or(0.0))
            }
            "task_failed" => format!(
                "failed    {} after {:.1} ms{}: {}",
                s("task_id"),
                e["duration_ms"].as_f64().unwrap_or(0.0),
                if e["retrying"].as_bool() == Some(true) { " (retrying)" } else { "" },
                s("error")
            ),
            "task_stopped" => format!("stopped   {} (queued again)", s("task_id")),
            "group_started" => format!("group     {}: {}", s("group"), e["members"]),
            "checkpoint" => {
                format!("checkpoint {} ({}, after {})", s("id"), s("mode"), e["after"].as_str().unwrap_or("-"))
            }
            "log" => format!("{:<9} {} [{}] {}", s("level"), s("task_id"), s("module"), s("line")),
            "journal_full" => format!("(the journal reached its bound of {} bytes)", journal::MAX_JOURNAL_BYTES),
            other => format!("{} {e}", other.escape_default()),
        };
        println!("{at}  {line}");
    }
    Ok(ExitStatus::Success)
}
