//! What a person at a terminal sees while a run goes: a live line of counts
//! and current tasks on stderr, and a one-screen summary at the end. Off when
//! stderr is not a terminal, or with `--quiet`.

use graflow_host::engine::{Event, EventKind, RunListener};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The live line, once shown: log lines are written around it.
static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// stderr for log lines: printed above the live line when it is shown.
pub struct LogWriter;

impl Write for LogWriter {
    /// A line that cannot be written (nobody reads stderr any more) is
    /// dropped: an error here would make the log subscriber report it on
    /// stderr, which panics when stderr is gone.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = match BAR.get() {
            Some(bar) if !bar.is_finished() => bar.suspend(|| std::io::stderr().write_all(buf)),
            _ => std::io::stderr().write_all(buf),
        };
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// True if a live display belongs on stderr.
pub fn wanted(quiet: bool) -> bool {
    use std::io::IsTerminal;
    !quiet && std::io::stderr().is_terminal()
}

/// Executions the summary keeps rows for; later ones are only counted.
const MAX_ROWS: usize = 10_000;

/// Per execution: task name, attempts, total milliseconds, last outcome.
type ExecutionRow = (String, u32, f64, &'static str);

#[derive(Default)]
struct Counts {
    done: u64,
    failed: u64,
    retried: u64,
    queued: usize,
    running: BTreeMap<String, ()>,
    /// Per execution: task name, attempts, total milliseconds, last outcome.
    executions: BTreeMap<String, ExecutionRow>,
    /// Executions not kept in `executions` (past [`MAX_ROWS`]).
    untracked: u64,
    checkpoints: Vec<String>,
    /// Outbound requests, model calls among them, and model tokens.
    requests: u64,
    llm_calls: u64,
    tokens: u64,
    refused_requests: u64,
}

/// The live display and the summary, fed by the run's events.
pub struct Progress {
    bar: ProgressBar,
    counts: Mutex<Counts>,
}

impl Progress {
    /// Start the live line (replacing a loading spinner, if any).
    pub fn start(spinner: Option<ProgressBar>) -> Progress {
        let bar = spinner.unwrap_or_else(ProgressBar::new_spinner);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        let _ = BAR.set(bar.clone());
        Progress { bar, counts: Mutex::new(Counts::default()) }
    }

    /// Say what happens before the first task.
    pub fn loading(&self, what: &str) {
        self.bar.set_message(what.to_string());
    }

    fn render(&self, c: &Counts) {
        let current: Vec<&str> = c.running.keys().map(String::as_str).take(4).collect();
        let more = c.running.len().saturating_sub(current.len());
        let current = if current.is_empty() {
            String::new()
        } else if more > 0 {
            format!(" | running {} +{more}", current.join(", "))
        } else {
            format!(" | running {}", current.join(", "))
        };
        let net = if c.requests > 0 {
            let llm = if c.llm_calls > 0 {
                format!(" ({} model calls, {} tokens)", c.llm_calls, c.tokens)
            } else {
                String::new()
            };
            format!(", {} requests{llm}", c.requests)
        } else {
            String::new()
        };
        self.bar.set_message(format!(
            "{} done, {} running, {} queued, {} failed, {} retried{net}{current}",
            c.done,
            c.running.len(),
            c.queued,
            c.failed,
            c.retried
        ));
    }

    /// Clear the live line and print the summary: every task (or the slowest,
    /// when there are many) with its time and attempts, and the checkpoints.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.executions.is_empty() {
            return;
        }
        let mut rows: Vec<(&String, &ExecutionRow)> = c.executions.iter().collect();
        rows.sort_by(|a, b| b.1.2.total_cmp(&a.1.2));
        let shown = rows.len().min(15);
        let mut out = String::new();
        out.push_str(&format!("{:<28} {:<12} {:>8} {:>11}  outcome\n", "execution", "task", "attempts", "time"));
        for (id, (task, attempts, ms, outcome)) in &rows[..shown] {
            out.push_str(&format!(
                "{:<28} {:<12} {:>8} {:>8.1} ms  {outcome}\n",
                cut(id, 28),
                cut(task, 12),
                attempts,
                ms
            ));
        }
        if rows.len() > shown {
            let rest: f64 = rows[shown..].iter().map(|r| r.1.2).sum();
            out.push_str(&format!("... and {} more executions ({rest:.1} ms)\n", rows.len() - shown));
        }
        if c.untracked > 0 {
            out.push_str(&format!("... and {} attempts past the first {MAX_ROWS} executions\n", c.untracked));
        }
        out.push_str(&format!(
            "{} done, {} failed attempts, {} retried; checkpoints written: {}{}\n",
            c.done,
            c.failed,
            c.retried,
            c.checkpoints.len(),
            c.checkpoints.last().map(|l| format!(" (last: {l})")).unwrap_or_default()
        ));
        if c.requests > 0 || c.refused_requests > 0 {
            out.push_str(&format!(
                "outbound: {} requests ({} failed), {} model calls, {} model tokens\n",
                c.requests, c.refused_requests, c.llm_calls, c.tokens
            ));
        }
        eprint!("{out}");
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

impl RunListener for Progress {
    fn event(&self, event: &Event) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        // Log lines carry no queue; inside a group it is the branch's own.
        if !matches!(
            event.kind,
            EventKind::Log { .. }
                | EventKind::Request { .. }
                | EventKind::BranchStarted { .. }
                | EventKind::BranchFinished { .. }
                | EventKind::FeedbackWaited { .. }
        ) {
            c.queued = event.queued;
        }
        match &event.kind {
            EventKind::TaskStarted { task_id, task, .. } => {
                c.running.insert(task_id.clone(), ());
                if c.executions.len() < MAX_ROWS || c.executions.contains_key(task_id) {
                    let e = c.executions.entry(task_id.clone()).or_insert_with(|| (task.clone(), 0, 0.0, "running"));
                    e.1 += 1;
                } else {
                    c.untracked += 1;
                }
            }
            EventKind::TaskFinished { task_id, duration_ms, .. } => {
                c.running.remove(task_id);
                c.done += 1;
                if let Some(e) = c.executions.get_mut(task_id) {
                    (e.2, e.3) = (e.2 + duration_ms, "completed");
                }
            }
            EventKind::TaskFailed { task_id, duration_ms, retrying, .. } => {
                c.running.remove(task_id);
                c.failed += 1;
                if *retrying {
                    c.retried += 1;
                }
                if let Some(e) = c.executions.get_mut(task_id) {
                    (e.2, e.3) = (e.2 + duration_ms, if *retrying { "retrying" } else { "failed" });
                }
            }
            EventKind::TaskStopped { task_id } => {
                c.running.remove(task_id);
                if let Some(e) = c.executions.get_mut(task_id) {
                    e.3 = "stopped";
                }
            }
            EventKind::Checkpoint { id, .. } => c.checkpoints.push(id.clone()),
            EventKind::WaitingForInput { task_id, .. } => {
                if let Some(e) = c.executions.get_mut(task_id) {
                    e.3 = "waiting for input";
                }
            }
            EventKind::Request { kind, error, tokens, .. } => {
                c.requests += 1;
                if error.is_some() {
                    c.refused_requests += 1;
                }
                if *kind == "llm" {
                    c.llm_calls += 1;
                    c.tokens += tokens.unwrap_or(0);
                }
            }
            EventKind::GroupStarted { .. }
            | EventKind::BranchStarted { .. }
            | EventKind::BranchFinished { .. }
            | EventKind::GroupFinished { .. }
            | EventKind::FeedbackWaited { .. }
            | EventKind::Log { .. } => return,
        }
        self.render(&c);
    }
}

/// Collects the checkpoints a run writes (for `--json`, also when it fails),
/// and counts its outbound requests.
#[derive(Default)]
pub struct Written(pub Mutex<Vec<String>>, pub Mutex<Outbound>);

/// The outbound requests of a run, for `--json`.
#[derive(Default, Clone, Copy, serde::Serialize)]
pub struct Outbound {
    /// Requests (model calls included) that ended.
    pub requests: u64,
    /// Of those, the ones without a response (refused, cut, failed).
    pub failed: u64,
    /// Model calls.
    pub model_calls: u64,
    /// Model tokens.
    pub tokens: u64,
    /// Request body bytes.
    pub sent_bytes: u64,
    /// Response body bytes.
    pub received_bytes: u64,
}

impl RunListener for Written {
    fn event(&self, event: &Event) {
        match &event.kind {
            EventKind::Checkpoint { id, .. } => self.0.lock().unwrap_or_else(|e| e.into_inner()).push(id.clone()),
            EventKind::Request { kind, error, tokens, sent_bytes, received_bytes, .. } => {
                let mut o = self.1.lock().unwrap_or_else(|e| e.into_inner());
                o.requests += 1;
                o.failed += u64::from(error.is_some());
                if *kind == "llm" {
                    o.model_calls += 1;
                    o.tokens += tokens.unwrap_or(0);
                }
                o.sent_bytes += sent_bytes;
                o.received_bytes += received_bytes;
            }
            _ => {}
        }
    }
}

/// Hide the live line (`true`) while a question is on the terminal, or show
/// it again (`false`). Log lines still print meanwhile.
pub fn hidden(hide: bool) {
    if let Some(bar) = BAR.get().filter(|b| !b.is_finished()) {
        let target =
            if hide { indicatif::ProgressDrawTarget::hidden() } else { indicatif::ProgressDrawTarget::stderr() };
        bar.set_draw_target(target);
    }
}
