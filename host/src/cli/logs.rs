//! `graflow-host logs`: the events of a run, from its journal.

use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::checkpoint;
use graflow_host::journal;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct LogsArgs {
    /// A checkpoint of the run (any of its files or its base path), or the
    /// run's folder in the checkpoint directory (`DIR/<session>`); in a
    /// bucket, `s3://bucket/prefix/<session>[/<id>]`. With --latest: the
    /// checkpoint directory (default `checkpoints`) or bucket.
    #[arg(value_name = "RUN", required_unless_present = "latest")]
    run: Option<PathBuf>,
    /// The events of the run whose journal was written last in the
    /// directory.
    #[arg(long)]
    latest: bool,
    /// Print the events as JSON lines, as they are kept, except `attempt`,
    /// which counts from 1 as in the text.
    #[arg(long)]
    json: bool,
}

/// The run folder (`DIR/<session>`) of `dir` whose journal was written last
/// (`dir` itself if it is a run's folder).
fn latest_run(dir: &Path) -> Result<PathBuf, CliError> {
    if super::checkpoints::is_session_folder(dir) {
        return Ok(dir.to_path_buf());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        let context = format!("cannot read the checkpoint directory {}", dir.display());
        CliError::bad_input(anyhow::Error::new(e).context(context))
    })?;
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let journal = e.path().join(journal::JOURNAL_FILE);
            let written = std::fs::symlink_metadata(&journal).ok().filter(|m| m.is_file())?.modified().ok()?;
            Some((written, e.path()))
        })
        .max()
        .map(|(_, folder)| folder)
        .ok_or_else(|| {
            CliError::bad_input(anyhow!(
                "no run in {} has events (a run keeps them in <dir>/<session>/{})",
                dir.display(),
                journal::JOURNAL_FILE
            ))
        })
}

/// The journal of a run in a bucket, downloaded into the bucket's working
/// copy: `url` is the bucket (with `latest`: the run whose journal was
/// written last), a run's folder `s3://bucket/prefix/<session>`, or one of
/// its checkpoints.
fn bucket_journal(url: &Path, latest: bool) -> Result<PathBuf, CliError> {
    let text = url.to_string_lossy().trim_end_matches('/').to_string();
    let journal_of = |root: &str, session: &str| -> Result<Option<PathBuf>, CliError> {
        let bucket = super::checkpoints::open_bucket(Path::new(root))?;
        let key = format!("{session}/{}", journal::JOURNAL_FILE);
        if bucket.head(&key).map_err(CliError::bad_input)?.is_none() {
            return Ok(None);
        }
        checkpoint::remote::pull_journal(&bucket, session).map(Some).map_err(CliError::bad_input)
    };
    if latest {
        let bucket = super::checkpoints::open_bucket(url)?;
        let newest = graflow_host::storage::Storage::list(&*bucket, "")
            .map_err(CliError::bad_input)?
            .into_iter()
            .filter(|o| o.key.ends_with(&format!("/{}", journal::JOURNAL_FILE)) && o.key.matches('/').count() == 1)
            .max_by_key(|o| o.modified)
            .ok_or_else(|| CliError::bad_input(anyhow!("no run in {text} has events")))?;
        let session = newest.key.split('/').next().unwrap_or_default().to_string();
        return checkpoint::remote::pull_journal(&bucket, &session).map_err(CliError::bad_input);
    }
    if let Some((root, session)) = text.rsplit_once('/')
        && root.len() > "s3://".len()
        && checkpoint::schema::is_valid_id(session)
        && let Some(path) = journal_of(root, session)?
    {
        return Ok(path);
    }
    let (root, session, _) = checkpoint::remote::split_checkpoint_url(&text).map_err(CliError::bad_input)?;
    journal_of(&root, &session)?.ok_or_else(|| {
        CliError::bad_input(anyhow!(
            "no events for {text} (a run keeps them in <bucket>/<session>/{})",
            journal::JOURNAL_FILE
        ))
    })
}

pub fn logs(args: LogsArgs) -> Result<ExitStatus, CliError> {
    let bucket_run = match (args.latest, &args.run) {
        (latest, Some(url)) if graflow_host::storage::is_bucket_url(url) => Some(bucket_journal(url, latest)?),
        _ => None,
    };
    let folder = match (args.latest, &args.run) {
        _ if bucket_run.is_some() => {
            bucket_run.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
        }
        (true, dir) => latest_run(dir.as_deref().unwrap_or(Path::new(checkpoint::DEFAULT_DIR)))?,
        (false, Some(run)) if run.is_dir() => run.clone(),
        (false, Some(run)) => {
            let base = checkpoint::base_of(run);
            base.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
        }
        (false, None) => {
            return Err(CliError::bad_input(anyhow!("name a checkpoint or a run's folder, or pass --latest [DIR]")));
        }
    };
    let path = folder.join(journal::JOURNAL_FILE);
    let named = args.run.as_deref().unwrap_or(folder.as_path());
    let events = journal::read(&path).map_err(|e| {
        CliError::bad_input(anyhow::Error::new(e).context(format!(
            "no events for {} (a run keeps them beside its checkpoints, in <dir>/<session>/{})",
            named.display(),
            journal::JOURNAL_FILE
        )))
    })?;
    if events.is_empty() {
        return Err(CliError::bad_input(anyhow!("{} holds no events", path.display())));
    }
    for mut e in events {
        // The journal keeps the engine's count (0 for the first attempt);
        // both forms show attempts counted from 1.
        let attempt = e["attempt"].as_u64().map(|a| a.saturating_add(1));
        if let Some(n) = attempt {
            e["attempt"] = n.into();
        }
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
        // Guest text never reaches the terminal raw (no control sequences);
        // quotes stay as they are.
        let s = |k: &str| super::printable(e[k].as_str().unwrap_or(""));
        let line = match e["event"].as_str().unwrap_or("") {
            "task_started" => format!(
                "started   {} ({} in {}, attempt {})",
                s("task_id"),
                s("task"),
                s("module"),
                attempt.unwrap_or(1)
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
            "branch_started" => format!("branch    {} of group {} started", s("member"), s("group_id")),
            "branch_finished" | "group_finished" => {
                let what = if e["event"] == "group_finished" {
                    format!("group     {}", s("task_id"))
                } else {
                    format!("branch    {} of group {}", s("member"), s("group_id"))
                };
                match e["error"].as_str() {
                    Some(err) => format!("{what} ended: {}", super::printable(err)),
                    None => format!("{what} finished"),
                }
            }
            "feedback_waited" => format!(
                "feedback  {} waited {:.0} ms for request {}: {}",
                s("task_id"),
                e["waited_ms"].as_f64().unwrap_or(0.0),
                s("request"),
                s("outcome")
            ),
            "checkpoint" => {
                let after = super::printable(e["after"].as_str().unwrap_or("-"));
                format!("checkpoint {} ({}, after {after})", s("id"), s("mode"))
            }
            "log" => format!("{:<9} {} [{}] {}", s("level"), s("task_id"), s("module"), s("line")),
            "request" => {
                let outcome = match (e["status"].as_u64(), e["error"].as_str()) {
                    (_, Some(err)) => super::printable(err),
                    (Some(code), None) => code.to_string(),
                    (None, None) => String::new(),
                };
                let model = match (e["model"].as_str(), e["tokens"].as_u64()) {
                    (Some(m), Some(t)) => format!(", {} {t} tokens", super::printable(m)),
                    _ => String::new(),
                };
                format!(
                    "{:<9} {} {} {}{} -> {outcome} ({} B sent, {} B received, {:.1} ms{model})",
                    s("kind"),
                    s("task_id"),
                    s("method"),
                    s("origin"),
                    s("path"),
                    e["sent_bytes"].as_u64().unwrap_or(0),
                    e["received_bytes"].as_u64().unwrap_or(0),
                    e["duration_ms"].as_f64().unwrap_or(0.0)
                )
            }
            "journal_full" => format!("(the journal reached its bound of {} bytes)", journal::MAX_JOURNAL_BYTES),
            other => format!("{} {}", super::printable(other), super::printable(&e.to_string())),
        };
        println!("{at}  {line}");
    }
    Ok(ExitStatus::Success)
}
