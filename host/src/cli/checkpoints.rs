//! `graflow-host checkpoints list | show | prune`.

use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::checkpoint::{self, remote};
use graflow_host::storage::{Bucket, Location, is_bucket_url};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The bucket `url` (`s3://bucket/prefix`) names.
pub(super) fn open_bucket(url: &Path) -> Result<Arc<Bucket>, CliError> {
    match Location::parse(url).map_err(CliError::bad_input)? {
        Location::Bucket(b) => Ok(b),
        Location::Dir(d) => Err(CliError::bad_input(anyhow!("{} is not an s3:// URL", d.display()))),
    }
}

/// The checkpoint `path` names, downloaded into its bucket's working copy
/// when it is an `s3://` URL (its signature checked first, per `trust`):
/// its local base path, and the bucket.
pub(super) fn fetched(path: &Path, trust: checkpoint::Trust) -> Result<(PathBuf, Option<Arc<Bucket>>), CliError> {
    if !is_bucket_url(path) {
        return Ok((path.to_path_buf(), None));
    }
    let (root, session, id) = remote::split_checkpoint_url(&path.to_string_lossy()).map_err(CliError::bad_input)?;
    let bucket = open_bucket(Path::new(&root))?;
    let key = checkpoint::SigningKey::load_or_create().map_err(CliError::bad_input)?;
    let local = remote::fetch(&bucket, &session, &id, &key, trust).map_err(CliError::bad_input)?;
    Ok((local, Some(bucket)))
}

/// The newest checkpoint in the bucket `url`, or (when `url` names a run's
/// folder, `s3://bucket/prefix/<session>`) of that run.
fn newest_in_bucket(url: &Path) -> Result<checkpoint::Summary, CliError> {
    let bucket = open_bucket(url)?;
    let summary = |l: remote::Listed| checkpoint::Summary { base: PathBuf::from(l.url), meta: l.meta };
    if let Some(l) = remote::list(&bucket).map_err(CliError::bad_input)?.pop() {
        return Ok(summary(l));
    }
    let text = url.to_string_lossy();
    if let Some((root, session)) = text.trim_end_matches('/').rsplit_once('/')
        && root.len() > "s3://".len()
        && checkpoint::schema::is_valid_id(session)
        && let Ok(Location::Bucket(parent)) = Location::parse(Path::new(root))
        && let Some(l) =
            remote::list(&parent).map_err(CliError::bad_input)?.into_iter().rfind(|l| l.meta.session_id == session)
    {
        return Ok(summary(l));
    }
    Err(CliError::bad_input(checkpoint::CheckpointError::Empty { dir: url.to_path_buf() }))
}

#[derive(clap::Subcommand)]
pub enum CheckpointsCommand {
    /// List the committed checkpoints in a directory, oldest first.
    List {
        /// The checkpoint directory, or a bucket (`s3://bucket/prefix`).
        #[arg(default_value = checkpoint::DEFAULT_DIR)]
        dir: PathBuf,
        /// Print one JSON array of checkpoints.
        #[arg(long)]
        json: bool,
    },
    /// Show one checkpoint: metadata, progress, queue and modules.
    Show {
        /// The checkpoint: its base path or any of its files (or its
        /// `s3://bucket/prefix/<session>/<id>` URL). With --latest: the
        /// checkpoint directory (default `checkpoints`) or bucket, or one run's
        /// folder in it (`DIR/<session>`).
        #[arg(value_name = "CHECKPOINT", required_unless_present = "latest")]
        checkpoint: Option<PathBuf>,
        /// Show the newest checkpoint in the directory (or of the run whose
        /// folder is named).
        #[arg(long)]
        latest: bool,
        /// Print the metadata and state files as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove all but the newest checkpoints, module copies no longer used,
    /// and the event journals of runs left without a checkpoint.
    ///
    /// The full checkpoint a kept increment is written over is kept too (it
    /// is listed as such), so a kept checkpoint always resumes. A run none of
    /// whose checkpoints remain loses its event journal (`graflow-host logs`)
    /// too, also a run that never wrote a checkpoint; its folder goes once it
    /// is empty (a folder with feedback requests stays).
    Prune {
        /// How many of the newest checkpoints to keep.
        #[arg(long)]
        keep: usize,
        /// The checkpoint directory, or a bucket (`s3://bucket/prefix`).
        #[arg(default_value = checkpoint::DEFAULT_DIR)]
        dir: PathBuf,
        /// In a bucket: objects no commit record names (module copies, files
        /// of checkpoints being written) are removed only when older than
        /// this, since a writer on another machine may be publishing them
        /// (docs/checkpoints.md, "Checkpoints in a bucket").
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
}

pub fn checkpoints(cmd: CheckpointsCommand) -> Result<ExitStatus, CliError> {
    match cmd {
        CheckpointsCommand::List { dir, json } => list(&dir, json),
        CheckpointsCommand::Show { checkpoint, latest, json } => {
            let path = match (latest, checkpoint) {
                (true, dir) => newest(&dir.unwrap_or_else(|| PathBuf::from(checkpoint::DEFAULT_DIR)))?.base,
                (false, Some(path)) => path,
                (false, None) => {
                    return Err(CliError::bad_input(anyhow!("name a checkpoint to show, or pass --latest [DIR]")));
                }
            };
            show(&path, json)
        }
        CheckpointsCommand::Prune { keep, dir, grace } => {
            let (pruned, folders) = if is_bucket_url(&dir) {
                let bucket = open_bucket(&dir)?;
                (remote::prune(&bucket, keep, grace).map_err(CliError::bad_input)?, 0)
            } else {
                let pruned = checkpoint::prune(&dir, keep).map_err(CliError::bad_input)?;
                (pruned, remove_empty_session_folders(&dir)?)
            };
            let removed = &pruned.checkpoints;
            println!(
                "removed {} checkpoint(s){}; {} unused module copies, {} temp files of dead writers, {} files of uncommitted checkpoints, {} event journals of runs without a checkpoint, {} empty run folders",
                removed.len(),
                if removed.is_empty() { String::new() } else { format!(": {}", removed.join(", ")) },
                pruned.modules,
                pruned.temps,
                pruned.torn,
                pruned.journals,
                folders
            );
            if pruned.records > 0 {
                println!("removed {} durable record log(s) no remaining checkpoint names", pruned.records);
            }
            if !pruned.orphans.is_empty() {
                println!(
                    "removed {} increment(s) whose base is gone (they could not be resumed): {}",
                    pruned.orphans.len(),
                    pruned.orphans.join(", ")
                );
            }
            if !pruned.bases_kept.is_empty() {
                println!(
                    "kept {} older full checkpoint(s) that kept increments are written over: {}",
                    pruned.bases_kept.len(),
                    pruned.bases_kept.join(", ")
                );
            }
            Ok(ExitStatus::Success)
        }
    }
}

/// The run folders (`DIR/<session>`) of `dir` a prune left empty, removed
/// under the directory's lock (a checkpoint being written makes its folder
/// under that lock); their count.
fn remove_empty_session_folders(dir: &Path) -> Result<usize, CliError> {
    let _lock = checkpoint::DirLock::exclusive(dir).map_err(CliError::bad_input)?;
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let is_session = name.to_str().is_some_and(checkpoint::schema::is_valid_id) && name != "modules";
        // `remove_dir` removes only an empty folder; a link is not followed.
        if is_session && entry.file_type().is_ok_and(|t| t.is_dir()) && std::fs::remove_dir(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether `dir` is one run's folder in a checkpoint directory
/// (`DIR/<session>`: it holds checkpoint files or the run's journal), not a
/// checkpoint directory.
pub(super) fn is_session_folder(dir: &Path) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".meta.json") || name == graflow_host::journal::JOURNAL_FILE
    })
}

/// The newest committed checkpoint in `dir`: a checkpoint directory, or one
/// run's folder in it (`DIR/<session>`: then that run's newest).
pub(super) fn newest(dir: &Path) -> Result<checkpoint::Summary, CliError> {
    if is_bucket_url(dir) {
        return newest_in_bucket(dir);
    }
    if !is_session_folder(dir) {
        return checkpoint::latest(dir).map_err(CliError::bad_input);
    }
    let session = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let root = checkpoint::root_of(&dir.join("x"));
    let all = checkpoint::list(&root).map_err(CliError::bad_input)?;
    all.into_iter().rfind(|s| s.meta.session_id == session).ok_or_else(|| {
        CliError::bad_input(anyhow!(
            "run {session} has no checkpoint in {} (its events: graflow-host logs {})",
            root.display(),
            dir.display()
        ))
    })
}

fn list(dir: &Path, json: bool) -> Result<ExitStatus, CliError> {
    let all = if is_bucket_url(dir) {
        let bucket = open_bucket(dir)?;
        remote::list(&bucket)
            .map_err(CliError::bad_input)?
            .into_iter()
            .map(|l| checkpoint::Summary { base: PathBuf::from(l.url), meta: l.meta })
            .collect()
    } else {
        checkpoint::list(dir).map_err(CliError::bad_input)?
    };
    if json {
        let items: Vec<serde_json::Value> = all
            .iter()
            .map(|s| {
                let m = &s.meta;
                serde_json::json!({
                    "id": m.checkpoint_id, "path": s.base, "session": m.session_id, "workflow": m.workflow,
                    "created_at": m.created_at, "steps": m.steps, "after": m.after_task(), "mode": m.mode_name(),
                    "schema_version": m.schema_version.number(), "signed": m.signature.is_some(),
                    "base": m.base.as_ref().map(|b| &b.checkpoint_id),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(ExitStatus::Success);
    }
    if all.is_empty() {
        println!("no checkpoints in {}", dir.display());
    }
    for s in all {
        let m = &s.meta;
        let stage = match m.after_task() {
            Some(task) => format!("after {task}"),
            None => "before any task".into(),
        };
        let mode = super::printable(&m.mode_label());
        println!("{}  {}  steps {:>5}  {stage} ({mode})  {}", m.created_at, m.workflow, m.steps, s.base.display());
    }
    Ok(ExitStatus::Success)
}

fn show(path: &Path, json: bool) -> Result<ExitStatus, CliError> {
    if path.is_dir() {
        return Err(CliError::bad_input(anyhow!(
            "{} is a folder, not a checkpoint: pass --latest to show its newest checkpoint",
            path.display()
        )));
    }
    let (local, bucket) = fetched(path, checkpoint::Trust::AllowUnsigned)?;
    let key = checkpoint::SigningKey::load_or_create().map_err(CliError::bad_input)?;
    let mut loaded = checkpoint::load(&local, &key, checkpoint::Trust::AllowUnsigned).map_err(CliError::bad_input)?;
    if bucket.is_some() {
        // Named by its URL, not by its copy on this machine.
        loaded.base = checkpoint::base_of(path);
    }
    if json {
        let value = serde_json::json!({
            "meta": loaded.meta,
            "state": loaded.state_file,
            "signature": loaded.signature.to_string(),
        });
        let text = serde_json::to_string_pretty(&value).map_err(|e| CliError::bad_input(anyhow::Error::new(e)))?;
        println!("{text}");
        return Ok(ExitStatus::Success);
    }
    let (m, s) = (&loaded.meta, &loaded.state_file);
    println!("checkpoint {}", m.checkpoint_id);
    println!("  path:       {}", loaded.base.display());
    println!("  workflow:   {} (start {})", m.workflow, m.start_node);
    println!("  session:    {}", m.session_id);
    println!("  created at: {}", m.created_at);
    println!("  schema:     version {}", m.schema_version);
    match &m.base {
        Some(b) => {
            println!("  stored as:  increment over {} (its channel changes only; resuming reads both)", b.checkpoint_id)
        }
        None => println!("  stored as:  full"),
    }
    println!("  signature:  {}", loaded.signature);
    println!("  steps:      {}", m.steps);
    if let Some(log) = m.records.as_deref().filter(|l| checkpoint::records::is_log_id(l)) {
        let folder = loaded.base.parent().unwrap_or(std::path::Path::new("."));
        let path = checkpoint::records::path_of(folder, log);
        let state = if path.exists() { "resume replays the records after this checkpoint" } else { "absent" };
        println!("  records:    {} ({state})", path.display());
    }
    println!("  metadata:   {}", m.user_metadata);
    println!(
        "  completed:  {}",
        if s.completed_tasks.is_empty() { "-".to_string() } else { s.completed_tasks.join(", ") }
    );
    let pending: Vec<&str> = s.pending_tasks.iter().map(|p| p.task_id.as_str()).collect();
    println!("  pending:    {}", if pending.is_empty() { "-".to_string() } else { pending.join(", ") });
    for r in &loaded.context.state.pending_input {
        println!("  waits for:  feedback request {}", r.summary());
    }
    println!("  channel:    {} keys", loaded.context.channel.len());
    for (name, module) in &s.modules {
        println!("  module {name}: sha256 {} ({} bytes, from {})", module.sha256, module.size, module.path.display());
    }
    Ok(ExitStatus::Success)
}
