//! `graflow-host checkpoints list | show | prune`.

use super::{CliError, ExitStatus};
use graflow_host::checkpoint;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum CheckpointsCommand {
    /// List the committed checkpoints in a directory, oldest first.
    List {
        /// The checkpoint directory.
        #[arg(default_value = checkpoint::DEFAULT_DIR)]
        dir: PathBuf,
        /// Print one JSON array of checkpoints.
        #[arg(long)]
        json: bool,
    },
    /// Show one checkpoint: metadata, progress, queue and modules.
    Show {
        /// The checkpoint: its base path or any of its files.
        checkpoint: PathBuf,
        /// Print the metadata and state files as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove all but the newest checkpoints, and module copies no longer used.
    ///
    /// The full checkpoint a kept increment is written over is kept too (it
    /// is listed as such), so a kept checkpoint always resumes.
    Prune {
        /// How many of the newest checkpoints to keep.
        #[arg(long)]
        keep: usize,
        /// The checkpoint directory.
        #[arg(default_value = checkpoint::DEFAULT_DIR)]
        dir: PathBuf,
    },
}

pub fn checkpoints(cmd: CheckpointsCommand) -> Result<ExitStatus, CliError> {
    match cmd {
        CheckpointsCommand::List { dir, json } => list(&dir, json),
        CheckpointsCommand::Show { checkpoint, json } => show(&checkpoint, json),
        CheckpointsCommand::Prune { keep, dir } => {
            let pruned = checkpoint::prune(&dir, keep).map_err(CliError::bad_input)?;
            let removed = &pruned.checkpoints;
            println!(
                "removed {} checkpoint(s){}; {} unused module copies, {} temp files of dead writers, {} files of uncommitted checkpoints, {} journals",
                removed.len(),
                if removed.is_empty() { String::new() } else { format!(": {}", removed.join(", ")) },
                pruned.modules,
                pruned.temps,
                pruned.torn,
                pruned.journals
            );
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

fn list(dir: &Path, json: bool) -> Result<ExitStatus, CliError> {
    let all = checkpoint::list(dir).map_err(CliError::bad_input)?;
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
        let mode = m.mode_name().unwrap_or("-");
        println!("{}  {}  steps {:>5}  {stage} ({mode})  {}", m.created_at, m.workflow, m.steps, s.base.display());
    }
    Ok(ExitStatus::Success)
}

fn show(path: &Path, json: bool) -> Result<ExitStatus, CliError> {
    if path.is_dir() {
        return Err(CliError::bad_input(checkpoint::CheckpointError::IsDirectory { path: path.to_path_buf() }));
    }
    let key = checkpoint::SigningKey::load_or_create().map_err(CliError::bad_input)?;
    let loaded = checkpoint::load(path, &key, checkpoint::Trust::AllowUnsigned).map_err(CliError::bad_input)?;
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
