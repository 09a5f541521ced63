//! The HTML report of a run (`--report run.html`): one self-contained file,
//! no network, no script: the graph with its tasks coloured by status, a
//! timeline of every attempt (retries and iterations included) with the
//! checkpoints, and a table of executions. Built from the run's events.

use crate::engine::{Event, EventKind, RunListener, RunState};
use crate::model::{Node, Workflow};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;

/// Events kept for a report (older ones beyond this are dropped, and said so).
pub const MAX_RECORDED_EVENTS: usize = 200_000;

/// Keeps a run's events for the report.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<(Vec<Event>, u64)>,
}

impl RunListener for Recorder {
    fn event(&self, event: &Event) {
        // Only what the report draws is kept: no log lines, no error texts,
        // no member lists (so the store is bounded by count times a small size).
        let kind = match &event.kind {
            EventKind::Log { .. }
            | EventKind::GroupStarted { .. }
            | EventKind::BranchStarted { .. }
            | EventKind::BranchFinished { .. }
            | EventKind::GroupFinished { .. }
            | EventKind::FeedbackWaited { .. } => return,
            EventKind::TaskFailed { task_id, attempt, duration_ms, kind, retrying, .. } => EventKind::TaskFailed {
                task_id: task_id.clone(),
                attempt: *attempt,
                duration_ms: *duration_ms,
                error: String::new(),
                kind,
                bound: None,
                retrying: *retrying,
            },
            other => other.clone(),
        };
        let mut e = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if e.0.len() < MAX_RECORDED_EVENTS {
            e.0.push(Event { at_ms: event.at_ms, queued: event.queued, kind });
        } else {
            e.1 += 1;
        }
    }
}

impl Recorder {
    /// The events kept so far, and how many were dropped.
    pub fn events(&self) -> (Vec<Event>, u64) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One attempt on the timeline.
struct Bar {
    start: u64,
    end: Option<u64>,
    /// What the attempt's own clock measured (its end event), to the
    /// microsecond; the bar's place on the timeline is in milliseconds.
    ran_ms: Option<f64>,
    outcome: &'static str,
    attempt: u32,
}

impl Bar {
    /// Milliseconds it ran (to `t1` while still running).
    fn ms(&self, t1: u64) -> f64 {
        self.ran_ms.unwrap_or_else(|| self.end.unwrap_or(t1).saturating_sub(self.start) as f64)
    }
}

/// A duration for people: microseconds below a millisecond.
fn duration(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// The report of a run of `workflow` that ended in `state` with `status`.
pub fn html(workflow: &Workflow, state: &RunState, status: &str, events: &[Event], dropped: u64) -> String {
    let t0 = events.first().map_or(0, |e| e.at_ms);
    let t1 = events.last().map_or(t0, |e| e.at_ms).max(t0 + 1);
    let mut rows: Vec<String> = Vec::new();
    let mut bars: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
    let mut task_of: BTreeMap<String, String> = BTreeMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut checkpoints: Vec<(u64, String, String)> = Vec::new();
    let mut requests: Vec<&Event> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::TaskStarted { task_id, task, attempt, .. } => {
                if !bars.contains_key(task_id) {
                    rows.push(task_id.clone());
                }
                task_of.insert(task_id.clone(), task.clone());
                bars.entry(task_id.clone()).or_default().push(Bar {
                    start: e.at_ms,
                    end: None,
                    ran_ms: None,
                    outcome: "running",
                    attempt: *attempt,
                });
            }
            EventKind::TaskFinished { task_id, duration_ms, .. } => {
                close(&mut bars, task_id, e.at_ms, Some(*duration_ms), "completed")
            }
            EventKind::TaskFailed { task_id, retrying, duration_ms, .. } => {
                close(&mut bars, task_id, e.at_ms, Some(*duration_ms), if *retrying { "retried" } else { "failed" });
                if !retrying {
                    failed.insert(task_id.clone());
                }
            }
            EventKind::TaskStopped { task_id } => close(&mut bars, task_id, e.at_ms, None, "stopped"),
            EventKind::Checkpoint { id, mode, .. } => checkpoints.push((e.at_ms, id.clone(), mode.to_string())),
            EventKind::Request { .. } => requests.push(e),
            EventKind::GroupStarted { .. }
            | EventKind::BranchStarted { .. }
            | EventKind::BranchFinished { .. }
            | EventKind::GroupFinished { .. }
            | EventKind::FeedbackWaited { .. }
            | EventKind::Log { .. }
            | EventKind::WaitingForInput { .. } => {}
        }
    }
    let completed: BTreeSet<&str> = state.completed.iter().map(String::as_str).collect();
    let node_status = |name: &str| -> &'static str {
        if failed.contains(name) {
            "failed"
        } else if completed.contains(name) {
            "completed"
        } else if state.queue.iter().any(|s| s.id == name) {
            "queued"
        } else {
            "not-run"
        }
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>graflow run {name}: {status}</title><style>{CSS}</style></head><body>\
         <h1>{name} <span class=\"badge {status}\">{status}</span></h1>\
         <p class=\"facts\">session <code>{session}</code> · {steps} completed executions · {ms} ms of events · {cps} checkpoints{dropped_note}</p>",
        name = esc(&workflow.name),
        status = esc(status),
        session = esc(&state.session_id),
        steps = state.steps,
        ms = t1.saturating_sub(t0),
        cps = checkpoints.len(),
        dropped_note = if dropped > 0 { format!(" · {dropped} later events not shown") } else { String::new() },
    );
    out.push_str("<section id=\"graph\"><h2>Graph</h2>");
    out.push_str(&graph_svg(workflow, &node_status));
    out.push_str("<p class=\"legend\"><span class=\"completed\">completed</span> <span class=\"failed\">failed</span> <span class=\"queued\">queued</span> <span class=\"not-run\">not run</span></p></section>");
    out.push_str("<section id=\"timeline\"><h2>Timeline</h2>");
    out.push_str(&timeline_svg(&rows, &bars, &checkpoints, t0, t1));
    out.push_str("</section><section id=\"executions\"><h2>Executions</h2><table><thead><tr><th>execution</th><th>task</th><th>attempts</th><th>time</th><th>outcome</th></tr></thead><tbody>");
    for id in &rows {
        let b = &bars[id];
        let ms: f64 = b.iter().map(|b| b.ms(t1)).sum();
        let outcome = b.last().map_or("", |b| b.outcome);
        let _ = write!(
            out,
            "<tr class=\"{outcome}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{outcome}</td></tr>",
            esc(id),
            esc(task_of.get(id).map_or("", String::as_str)),
            b.len(),
            duration(ms)
        );
    }
    out.push_str("</tbody></table></section>");
    if !requests.is_empty() {
        out.push_str("<section id=\"requests\"><h2>Outbound requests</h2><table><thead><tr><th>execution</th><th>kind</th><th>request</th><th>status</th><th>sent</th><th>received</th><th>time</th><th>model, tokens</th></tr></thead><tbody>");
        for e in &requests {
            let EventKind::Request {
                task_id,
                kind,
                method,
                origin,
                path,
                status,
                sent_bytes,
                received_bytes,
                duration_ms,
                error,
                model,
                tokens,
                ..
            } = &e.kind
            else {
                continue;
            };
            let status = esc(&crate::engine::request_outcome(*status, error.as_deref()));
            let model = match (model, tokens) {
                (Some(m), Some(t)) => format!("{}, {t}", esc(m)),
                (Some(m), None) => esc(m),
                (None, Some(t)) => t.to_string(),
                (None, None) => String::new(),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{kind}</td><td>{} {}{}</td><td>{status}</td><td>{sent_bytes} B</td><td>{received_bytes} B</td><td>{duration_ms:.1} ms</td><td>{model}</td></tr>",
                esc(task_id),
                esc(method),
                esc(origin),
                esc(path),
            );
        }
        out.push_str("</tbody></table></section>");
    }
    out.push_str("</body></html>\n");
    out
}

fn close(bars: &mut BTreeMap<String, Vec<Bar>>, id: &str, at: u64, ran_ms: Option<f64>, outcome: &'static str) {
    if let Some(b) = bars.get_mut(id).and_then(|v| v.iter_mut().rev().find(|b| b.end.is_none())) {
        b.end = Some(at);
        b.ran_ms = ran_ms.filter(|ms| ms.is_finite() && *ms >= 0.0);
        b.outcome = outcome;
    }
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}\
.badge{font-size:13px;padding:2px 8px;border-radius:8px;background:#ddd}.badge.completed{background:#c8efc8}\
.badge.failed{background:#f6c6c6}.badge.interrupted,.badge.max_steps{background:#f7e3b0}\
svg{border:1px solid #ddd;background:#fcfcfc}rect.completed{fill:#c8efc8}rect.failed{fill:#f6c6c6}\
rect.queued{fill:#f7e3b0}rect.not-run{fill:#eee}rect.retried{fill:#f3d19c}rect.stopped{fill:#c9d7f0}\
rect.running{fill:#e0e0ff}rect.node{stroke:#666}rect.group{fill:none;stroke:#888;stroke-dasharray:4 3}\
line.edge{stroke:#888;marker-end:url(#arrow)}line.cp{stroke:#7a55c9;stroke-dasharray:3 3}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}\
.legend span{padding:1px 6px;margin-right:4px;border-radius:4px}.legend .completed{background:#c8efc8}\
.legend .failed{background:#f6c6c6}.legend .queued{background:#f7e3b0}.legend .not-run{background:#eee}\
tr.failed td{background:#fbe3e3}text{font:12px system-ui,sans-serif}";

/// Nodes in columns by their distance from the start; a group as a dashed
/// box around its members.
fn graph_svg(wf: &Workflow, status: &dyn Fn(&str) -> &'static str) -> String {
    let members: BTreeSet<&str> = wf
        .graph
        .nodes
        .values()
        .filter_map(|n| match n {
            Node::Group(g) => Some(g.members.iter().map(String::as_str)),
            Node::Task => None,
        })
        .flatten()
        .collect();
    let mut column: BTreeMap<&str, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([(wf.start.as_str(), 0usize)]);
    while let Some((n, c)) = queue.pop_front() {
        if column.contains_key(n) || column.len() > 2000 {
            continue;
        }
        column.insert(n, c);
        for s in wf.graph.successors(n) {
            queue.push_back((s.as_str(), c + 1));
        }
    }
    for n in wf.graph.nodes.keys().filter(|n| !members.contains(n.as_str())) {
        let next = column.values().max().map_or(0, |m| m + 1);
        column.entry(n.as_str()).or_insert(next);
    }
    let (w, h, gap) = (150.0, 28.0, 12.0);
    let mut pos: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    let mut heights: BTreeMap<usize, f64> = BTreeMap::new();
    let mut body = String::new();
    for (n, c) in &column {
        if members.contains(n) {
            continue;
        }
        let x = 20.0 + *c as f64 * (w + 60.0);
        let y = *heights.get(c).unwrap_or(&20.0);
        match wf.graph.nodes.get(*n) {
            Some(Node::Group(_)) => {
                let inner = draw_group(&mut body, wf, n, x, y, status, &mut pos, 0);
                heights.insert(*c, y + inner + gap * 2.0);
            }
            _ => {
                node_box(&mut body, n, x, y, w, h, status(n));
                pos.insert(n, (x, y, h));
                heights.insert(*c, y + h + gap * 2.0);
            }
        }
    }
    for (a, bs) in &wf.graph.successors {
        for b in bs {
            if let (Some((ax, ay, ah)), Some((bx, by, bh))) = (pos.get(a.as_str()), pos.get(b.as_str())) {
                let aw = if matches!(wf.graph.nodes.get(a), Some(Node::Group(_))) { w + 16.0 } else { w };
                let _ = write!(
                    body,
                    "<line class=\"edge\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
                    ax + aw,
                    ay + ah / 2.0,
                    bx - 2.0,
                    by + bh / 2.0
                );
            }
        }
    }
    let dynamic: Vec<&str> = wf.tasks.keys().filter(|t| !wf.graph.nodes.contains_key(*t)).map(String::as_str).collect();
    let mut height = heights.values().cloned().fold(60.0, f64::max);
    if !dynamic.is_empty() {
        let _ = write!(body, "<text x=\"20\" y=\"{}\">only reachable by next_task:</text>", height + 4.0);
        for (i, t) in dynamic.iter().enumerate() {
            node_box(&mut body, t, 20.0 + i as f64 * (w + 12.0), height + 12.0, w, h, "not-run");
        }
        height += h + 40.0;
    }
    let width = 40.0 + (column.values().max().copied().unwrap_or(0) + 1) as f64 * (w + 60.0);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\"><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#888\"/></marker></defs>{body}</svg>"
    )
}

/// A group as a dashed box around its members, nested groups drawn inside;
/// its height.
#[allow(clippy::too_many_arguments)]
fn draw_group<'a>(
    body: &mut String,
    wf: &'a Workflow,
    name: &'a str,
    x: f64,
    y: f64,
    status: &dyn Fn(&str) -> &'static str,
    pos: &mut BTreeMap<&'a str, (f64, f64, f64)>,
    depth: usize,
) -> f64 {
    let (w, h, gap) = (150.0, 28.0, 12.0);
    let Some(Node::Group(g)) = wf.graph.nodes.get(name) else { return h };
    let inset = 8.0 * (depth as f64 + 1.0);
    let mut cursor = y + 18.0;
    let mut inner_body = String::new();
    for m in &g.members {
        if depth < crate::model::flow::MAX_DEPTH && matches!(wf.graph.nodes.get(m), Some(Node::Group(_))) {
            let mh = draw_group(&mut inner_body, wf, m, x, cursor, status, pos, depth + 1);
            cursor += mh + gap;
        } else {
            node_box(&mut inner_body, m, x, cursor, w, h, status(m));
            pos.insert(m.as_str(), (x, cursor, h));
            cursor += h + gap;
        }
    }
    let height = cursor - y;
    let _ = write!(
        body,
        "<rect class=\"group\" x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{height}\"/><text x=\"{}\" y=\"{}\">{} ({})</text>{inner_body}",
        x - inset,
        w + 2.0 * inset,
        x - inset + 4.0,
        y + 12.0,
        esc(name),
        esc(&g.policy.to_string())
    );
    pos.insert(name, (x - inset, y, height));
    height
}

fn node_box(out: &mut String, name: &str, x: f64, y: f64, w: f64, h: f64, status: &str) {
    let _ = write!(
        out,
        "<g class=\"task\" data-task=\"{n}\"><rect class=\"node {status}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"4\"/><text x=\"{}\" y=\"{}\">{n}</text><title>{n}: {status}</title></g>",
        x + 6.0,
        y + h / 2.0 + 4.0,
        n = esc(name)
    );
}

/// One row per execution, one bar per attempt, checkpoints as lines.
fn timeline_svg(
    rows: &[String],
    bars: &BTreeMap<String, Vec<Bar>>,
    checkpoints: &[(u64, String, String)],
    t0: u64,
    t1: u64,
) -> String {
    let (label, width, row) = (180.0, 720.0, 20.0);
    let shown = rows.len().min(500);
    // Wall-clock times may step back: clamp into the run's span.
    let span = t1.saturating_sub(t0).max(1) as f64;
    let x = |t: u64| label + (t.clamp(t0, t1) - t0) as f64 / span * width;
    let mut body = String::new();
    for (i, id) in rows[..shown].iter().enumerate() {
        let y = 10.0 + i as f64 * row;
        let _ = write!(body, "<text x=\"4\" y=\"{}\">{}</text>", y + 13.0, esc(id));
        for b in &bars[id] {
            let (x0, x1) = (x(b.start), x(b.end.unwrap_or(t1)));
            let _ = write!(
                body,
                "<rect class=\"bar {}\" x=\"{x0}\" y=\"{y}\" width=\"{}\" height=\"{}\"><title>{} attempt {}: {}, {}</title></rect>",
                b.outcome,
                (x1 - x0).max(2.0),
                row - 4.0,
                esc(id),
                b.attempt + 1,
                duration(b.ms(t1)),
                b.outcome
            );
        }
    }
    let height = 20.0 + shown as f64 * row;
    for (at, id, mode) in checkpoints {
        let cx = x(*at);
        let _ = write!(
            body,
            "<line class=\"cp\" x1=\"{cx}\" y1=\"0\" x2=\"{cx}\" y2=\"{height}\"><title>checkpoint ({}) {}</title></line>",
            esc(mode),
            esc(id)
        );
    }
    let more = if rows.len() > shown {
        format!("<p>... and {} more executions</p>", rows.len() - shown)
    } else {
        String::new()
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\">{body}</svg><p class=\"legend\"><span class=\"completed\">attempt completed</span> <span class=\"failed\">failed</span> <span class=\"queued\">retried</span> dashed lines: checkpoints</p>{more}",
        label + width + 20.0
    )
}
