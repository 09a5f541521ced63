//! `graflow-host feedback`: the requests tasks made for human input, and
//! answering them (docs/human-in-the-loop.md).

use super::{CliError, ExitStatus};
use anyhow::anyhow;
use graflow_host::Json;
use graflow_host::checkpoint;
use graflow_host::feedback::{Entry, FeedbackError, FeedbackKind, FileDesk};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum FeedbackCommand {
    /// The requests waiting for an answer (with --all, answered ones too).
    List {
        /// The checkpoint directory.
        #[arg(default_value = checkpoint::DEFAULT_DIR)]
        dir: PathBuf,
        /// Also list answered requests (not with --redis).
        #[arg(long)]
        all: bool,
        /// The requests of distributed runs, in this Redis.
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One request: its prompt, options, metadata and answer.
    Show {
        /// The request id (16 hex digits).
        id: String,
        /// The checkpoint directory.
        #[arg(long, default_value = checkpoint::DEFAULT_DIR)]
        dir: PathBuf,
        /// A request of a distributed run, in this Redis.
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Answer a request (once); then `resume --latest DIR` continues the run.
    Answer(AnswerArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("answer").required(true).args(["approve", "reject", "text", "select", "json"])))]
pub struct AnswerArgs {
    /// The request id (16 hex digits).
    id: String,
    /// The checkpoint directory.
    #[arg(long, default_value = checkpoint::DEFAULT_DIR)]
    dir: PathBuf,
    /// Approve (an approval request).
    #[arg(long)]
    approve: bool,
    /// Reject (an approval request).
    #[arg(long)]
    reject: bool,
    /// Why (with --approve or --reject).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The answer to a text request.
    #[arg(long, value_name = "TEXT")]
    text: Option<String>,
    /// The chosen option (selection); repeat it for a multi-selection.
    #[arg(long, value_name = "OPTION")]
    select: Vec<String>,
    /// The answer to a custom request: any JSON value.
    #[arg(long, value_name = "JSON")]
    json: Option<String>,
    /// Who answers (kept with the answer).
    #[arg(long, default_value = "cli")]
    by: String,
    /// A request of a distributed run, in this Redis: the waiting task
    /// continues at once.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

/// Where requests are looked up.
enum Desk {
    Files(FileDesk, PathBuf),
    /// Boxed: a Redis client (with its TLS settings) is far larger than a folder.
    Redis(Box<graflow_host::distributed::RedisDesk>),
}

impl Desk {
    fn open(dir: &std::path::Path, redis: Option<&str>) -> Result<Desk, CliError> {
        match redis {
            Some(url) => graflow_host::distributed::RedisDesk::connect(url)
                .map(|d| Desk::Redis(Box::new(d)))
                .map_err(CliError::bad_input),
            None => {
                let location = graflow_host::storage::Location::parse(dir).map_err(CliError::bad_input)?;
                Ok(Desk::Files(FileDesk::on(location.storage()), dir.to_path_buf()))
            }
        }
    }

    fn list(&self, all: bool) -> Result<Vec<Entry>, CliError> {
        match self {
            Desk::Files(d, _) => {
                Ok(d.list().map_err(CliError::bad_input)?.into_iter().filter(|e| all || e.answer.is_none()).collect())
            }
            Desk::Redis(d) => Ok(d
                .pending()
                .map_err(CliError::bad_input)?
                .into_iter()
                .map(|request| Entry { request, answer: None })
                .collect()),
        }
    }

    fn find(&self, id: &str) -> Result<Entry, CliError> {
        match self {
            Desk::Files(d, _) => d.find(id),
            Desk::Redis(d) => d.find(id).map(|(request, answer)| Entry { request, answer }),
        }
        .map_err(|e| self.explained(e))
    }

    fn answer(&self, id: &str, answer: &Json, by: &str) -> Result<graflow_host::feedback::FeedbackRequest, CliError> {
        match self {
            Desk::Files(d, _) => d.answer_request(id, answer, by),
            Desk::Redis(d) => d.answer_request(id, answer, by),
        }
        .map_err(|e| self.explained(e))
    }

    /// The error, and for an unknown id where to find the right one: `feedback
    /// list` of this place, or the other place (Redis or the directory).
    fn explained(&self, error: FeedbackError) -> CliError {
        if !matches!(error, FeedbackError::Unknown { .. }) {
            return CliError::bad_input(error);
        }
        let hint = match self {
            Desk::Files(_, dir) => format!(
                "`graflow-host feedback list {}` lists the pending requests (those of a run with --redis are kept \
                 in Redis: add --redis URL)",
                dir.display()
            ),
            Desk::Redis(_) => "`graflow-host feedback list --redis URL` lists the pending requests (a run without \
                 --redis keeps its requests in its checkpoint directory: drop --redis, give --dir DIR)"
                .to_string(),
        };
        CliError::bad_input(anyhow!("{error}; {hint}"))
    }

    /// Where the requests are, for messages.
    fn place(&self) -> String {
        match self {
            Desk::Files(_, dir) => dir.display().to_string(),
            Desk::Redis(_) => "Redis".to_string(),
        }
    }

    /// The flags that name this place again.
    fn flags(&self, redis: Option<&str>) -> String {
        match (self, redis) {
            (Desk::Redis(_), Some(url)) => format!("--redis {}", graflow_host::distributed::redacted(url)),
            (Desk::Files(_, dir), _) => format!("--dir {}", dir.display()),
            _ => String::new(),
        }
    }
}

pub fn feedback(cmd: FeedbackCommand) -> Result<ExitStatus, CliError> {
    match cmd {
        FeedbackCommand::List { dir, all, json, redis } => {
            let desk = Desk::open(&dir, redis.as_deref())?;
            let entries = desk.list(all)?;
            let shown: Vec<&Entry> = entries.iter().collect();
            if json {
                println!("{}", serde_json::Value::Array(shown.iter().map(|e| e.to_json()).collect()));
            } else if shown.is_empty() {
                eprintln!("no {}feedback requests in {}", if all { "" } else { "pending " }, desk.place());
            } else {
                for e in shown {
                    let state = match &e.answer {
                        Some(a) => format!("answered by {}: {}", a.by, a.answer.as_str()),
                        None => "pending".into(),
                    };
                    println!("{}  [{state}]", e.request.summary());
                }
            }
            Ok(ExitStatus::Success)
        }
        FeedbackCommand::Show { id, dir, json, redis } => {
            let desk = Desk::open(&dir, redis.as_deref())?;
            let e = desk.find(&id)?;
            if json {
                println!("{}", e.to_json());
                return Ok(ExitStatus::Success);
            }
            let r = &e.request;
            println!("request   {}\nkind      {}\nrun       {}\ntask      {}", r.id, r.kind, r.session_id, r.task_id);
            println!("prompt    {}", r.prompt);
            if !r.options.is_empty() {
                println!("options   {}", r.options.join(" | "));
            }
            if let Some(m) = &r.metadata {
                println!("metadata  {}", m.as_str());
            }
            match &e.answer {
                Some(a) => println!("answer    {} (by {})", a.answer.as_str(), a.by),
                None => println!(
                    "answer    none yet: graflow-host feedback answer {} {} {}",
                    r.id,
                    r.kind.how_to_answer(),
                    desk.flags(redis.as_deref())
                ),
            }
            Ok(ExitStatus::Success)
        }
        FeedbackCommand::Answer(a) => answer(a),
    }
}

fn answer(a: AnswerArgs) -> Result<ExitStatus, CliError> {
    let desk = Desk::open(&a.dir, a.redis.as_deref())?;
    let value = if a.approve || a.reject {
        serde_json::json!({"approved": a.approve, "reason": a.reason})
    } else if let Some(t) = a.text {
        serde_json::json!({ "text": t })
    } else if !a.select.is_empty() {
        let kind = desk.find(&a.id)?.request.kind;
        match (kind, a.select.as_slice()) {
            (FeedbackKind::MultiSelection, all) => serde_json::json!({ "selected": all }),
            (_, [one]) => serde_json::json!({ "selected": one }),
            _ => return Err(CliError::bad_input(anyhow!("request '{}' takes one --select", a.id))),
        }
    } else if let Some(j) = a.json {
        let v: serde_json::Value =
            serde_json::from_str(&j).map_err(|e| CliError::bad_input(anyhow!("--json is not valid JSON: {e}")))?;
        serde_json::json!({ "value": v })
    } else {
        return Err(CliError::bad_input(anyhow!("give the answer: --approve, --reject, --text, --select or --json")));
    };
    let request = desk.answer(&a.id, &Json::encode(&value), &a.by)?;
    match &desk {
        Desk::Files(..) => match graflow_host::feedback::latest_of(&a.dir, &request.session_id) {
            Some(cp) => eprintln!(
                "answered request {} of task '{}'; if the run paused, continue it with: graflow-host resume {}",
                request.id,
                request.task_id,
                cp.display()
            ),
            None => eprintln!("answered request {} of task '{}'", request.id, request.task_id),
        },
        Desk::Redis(_) => eprintln!(
            "answered request {} of task '{}': a task waiting for it continues now; a paused run continues with \
             graflow-host resume --latest DIR --redis URL",
            request.id, request.task_id
        ),
    }
    Ok(ExitStatus::Success)
}
