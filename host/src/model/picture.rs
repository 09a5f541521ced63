//! Pictures of a workflow's graph: Mermaid, Graphviz DOT and plain text.
//! Parallel groups are drawn as groups (a subgraph or cluster holding their
//! members); tasks only reachable through `next_task` are drawn apart.

use super::{Node, Workflow};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A picture format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Mermaid flowchart (renders on GitHub, in many editors).
    Mermaid,
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// Plain text.
    Ascii,
}

/// Draw `workflow` in `format`.
pub fn draw(workflow: &Workflow, format: Format) -> String {
    match format {
        Format::Mermaid => mermaid(workflow),
        Format::Dot => dot(workflow),
        Format::Ascii => ascii(workflow),
    }
}

/// Tasks declared but not nodes of the flow: reachable only by `next_task`.
fn dynamic_only(wf: &Workflow) -> Vec<&str> {
    wf.tasks.keys().filter(|t| !wf.graph.nodes.contains_key(*t)).map(String::as_str).collect()
}

/// The group each node is a direct member of.
fn parents(wf: &Workflow) -> BTreeMap<&str, &str> {
    let mut out = BTreeMap::new();
    for (name, node) in &wf.graph.nodes {
        if let Node::Group(g) = node {
            for m in &g.members {
                out.insert(m.as_str(), name.as_str());
            }
        }
    }
    out
}

/// Text inside a quoted label: quotes escaped, control characters dropped.
fn quote(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect::<String>().replace('\\', "\\\\").replace('"', "\\\"")
}

/// Text inside a Mermaid label (Mermaid does not read backslash escapes).
fn mermaid_label(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect::<String>().replace('"', "#quot;")
}

fn mermaid(wf: &Workflow) -> String {
    let ids: BTreeMap<&str, String> =
        wf.graph.nodes.keys().chain(wf.tasks.keys()).enumerate().map(|(i, n)| (n.as_str(), format!("n{i}"))).collect();
    let parents = parents(wf);
    let mut out = String::from("flowchart LR\n");
    fn node(out: &mut String, wf: &Workflow, name: &str, ids: &BTreeMap<&str, String>, depth: usize) {
        let pad = "  ".repeat(depth);
        match wf.graph.nodes.get(name) {
            Some(Node::Group(g)) => {
                let _ =
                    writeln!(out, "{pad}subgraph {}[\"{} (parallel, {})\"]", ids[name], mermaid_label(name), g.policy);
                for m in &g.members {
                    node(out, wf, m, ids, depth + 1);
                }
                let _ = writeln!(out, "{pad}end");
            }
            _ => {
                let start = if name == wf.start { " (start)" } else { "" };
                let _ = writeln!(out, "{pad}{}[\"{}{start}\"]", ids[name], mermaid_label(name));
            }
        }
    }
    for name in wf.graph.nodes.keys().filter(|n| !parents.contains_key(n.as_str())) {
        node(&mut out, wf, name, &ids, 1);
    }
    for (a, bs) in &wf.graph.successors {
        for b in bs {
            let _ = writeln!(out, "  {} --> {}", ids[a.as_str()], ids[b.as_str()]);
        }
    }
    let dynamic = dynamic_only(wf);
    if !dynamic.is_empty() {
        out.push_str("  subgraph dynamic[\"only reachable by next_task\"]\n");
        for t in dynamic {
            let _ = writeln!(out, "    {}[\"{}\"]", ids[t], mermaid_label(t));
        }
        out.push_str("  end\n");
    }
    out
}

fn dot(wf: &Workflow) -> String {
    let parents = parents(wf);
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n  compound=true;\n  node [shape=box];\n", quote(&wf.name));
    /// The node an edge to or from `name` attaches to (a group: its first
    /// task, with the edge clipped at the group's cluster).
    fn anchor<'a>(wf: &'a Workflow, name: &'a str) -> &'a str {
        match wf.graph.nodes.get(name) {
            Some(Node::Group(g)) => g.members.first().map_or(name, |m| anchor(wf, m)),
            _ => name,
        }
    }
    fn node(out: &mut String, wf: &Workflow, name: &str, depth: usize) {
        let pad = "  ".repeat(depth);
        match wf.graph.nodes.get(name) {
            Some(Node::Group(g)) => {
                let _ = writeln!(out, "{pad}subgraph \"cluster_{}\" {{", quote(name));
                let _ = writeln!(out, "{pad}  label=\"{} (parallel, {})\";", quote(name), g.policy);
                for m in &g.members {
                    node(out, wf, m, depth + 1);
                }
                let _ = writeln!(out, "{pad}}}");
            }
            _ => {
                let style = if name == wf.start { " [penwidth=2]" } else { "" };
                let _ = writeln!(out, "{pad}\"{}\"{style};", quote(name));
            }
        }
    }
    for name in wf.graph.nodes.keys().filter(|n| !parents.contains_key(n.as_str())) {
        node(&mut out, wf, name, 1);
    }
    for (a, bs) in &wf.graph.successors {
        for b in bs {
            let mut attrs = Vec::new();
            if matches!(wf.graph.nodes.get(a), Some(Node::Group(_))) {
                attrs.push(format!("ltail=\"cluster_{}\"", quote(a)));
            }
            if matches!(wf.graph.nodes.get(b), Some(Node::Group(_))) {
                attrs.push(format!("lhead=\"cluster_{}\"", quote(b)));
            }
            let attrs = if attrs.is_empty() { String::new() } else { format!(" [{}]", attrs.join(", ")) };
            let _ = writeln!(out, "  \"{}\" -> \"{}\"{attrs};", quote(anchor(wf, a)), quote(anchor(wf, b)));
        }
    }
    let dynamic = dynamic_only(wf);
    if !dynamic.is_empty() {
        out.push_str(
            "  subgraph \"cluster_dynamic\" {\n    label=\"only reachable by next_task\";\n    style=dashed;\n",
        );
        for t in dynamic {
            let _ = writeln!(out, "    \"{}\";", quote(t));
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// A box around `label`: three lines of the same width.
fn boxed(label: &str) -> [String; 3] {
    let label: String = label.chars().filter(|c| !c.is_control()).collect();
    let w = label.chars().count();
    let edge = format!("+{}+", "-".repeat(w + 2));
    [edge.clone(), format!("| {label} |"), edge]
}

/// The lines drawing top-level node `name`: a box, or for a group a frame
/// holding its members' boxes side by side.
fn node_lines(wf: &Workflow, name: &str) -> Vec<String> {
    let Some(Node::Group(g)) = wf.graph.nodes.get(name) else { return boxed(name).to_vec() };
    let members: Vec<[String; 3]> = g
        .members
        .iter()
        .map(|m| match wf.graph.nodes.get(m) {
            Some(Node::Group(inner)) => boxed(&format!("{m} (group: {})", inner.members.join(" | "))),
            _ => boxed(m),
        })
        .collect();
    let inner: Vec<String> =
        (0..3).map(|i| members.iter().map(|b| b[i].as_str()).collect::<Vec<_>>().join(" ")).collect();
    let title = format!(" {name} (parallel, {}) ", g.policy);
    // Edges inside the branches (`(a >> b) | c`: a to b).
    let edges: Vec<String> =
        g.members.iter().flat_map(|m| wf.graph.successors(m).iter().map(move |s| format!("{m} --> {s}"))).collect();
    let len = |s: &String| s.chars().count();
    // Every line is `width + 4` characters.
    let width = inner.iter().chain(&edges).map(len).chain([len(&title)]).max().unwrap_or(0);
    let mut lines = vec![format!("+={title}{}+", "=".repeat(width - len(&title) + 1))];
    for row in inner.iter().chain(&edges) {
        lines.push(format!("| {row}{} |", " ".repeat(width - len(row))));
    }
    lines.push(format!("+{}+", "=".repeat(width + 2)));
    lines
}

/// The flow drawn top-down in plain text: each node of the flow in a box
/// (a group as a frame around its members' boxes), in the order the run
/// reaches them from the start; an arrow down to the next box when a node
/// leads there, `+--> name` for its other successors (`(back)` when that one
/// is drawn above: a cycle).
fn ascii(wf: &Workflow) -> String {
    let members = parents(wf);
    let top = |n: &str| !members.contains_key(n);
    // Breadth first from the start; a group leads on from its members' chains too.
    let mut order: Vec<&str> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut queue = std::collections::VecDeque::from([wf.start.as_str()]);
    while let Some(n) = queue.pop_front() {
        if !seen.insert(n) {
            continue;
        }
        if top(n) {
            order.push(n);
        }
        let mut next: Vec<&str> = wf.graph.successors(n).iter().map(String::as_str).collect();
        if let Some(Node::Group(g)) = wf.graph.nodes.get(n) {
            next.extend(g.members.iter().map(String::as_str));
        }
        queue.extend(next);
    }
    let rest: Vec<&str> = wf.graph.nodes.keys().map(String::as_str).filter(|n| top(n) && !seen.contains(n)).collect();
    order.extend(rest);
    let mut out = format!("workflow {} (start: {})\n\n", wf.name, wf.start);
    for (i, name) in order.iter().enumerate() {
        let lines = node_lines(wf, name);
        for l in &lines {
            let _ = writeln!(out, "{l}");
        }
        let below = order.get(i + 1).copied();
        let successors = wf.graph.successors(name);
        for s in successors.iter().filter(|s| Some(s.as_str()) != below) {
            let back = if order[..=i].contains(&s.as_str()) { " (back)" } else { "" };
            let _ = writeln!(out, "  +--> {s}{back}");
        }
        if let Some(b) = below {
            let middle = lines[0].chars().count() / 2;
            if successors.iter().any(|s| s == b) {
                let _ = writeln!(out, "{}|\n{}v", " ".repeat(middle), " ".repeat(middle));
            } else {
                out.push('\n');
            }
        }
    }
    let dynamic = dynamic_only(wf);
    if !dynamic.is_empty() {
        let _ = writeln!(out, "\nonly reachable by next_task: {}", dynamic.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use std::collections::BTreeMap;

    fn etl() -> Workflow {
        let mut graph = Graph::default();
        for n in ["fetch", "a", "b", "store"] {
            graph.nodes.insert(n.into(), Node::Task);
        }
        graph.nodes.insert(
            "group_1".into(),
            Node::Group(GroupDef { members: vec!["a".into(), "b".into()], policy: GroupPolicy::Strict }),
        );
        graph.successors.insert("fetch".into(), vec!["group_1".into()]);
        graph.successors.insert("group_1".into(), vec!["store".into()]);
        let task = |n: &str| TaskDef {
            name: n.into(),
            module: "m".into(),
            export: n.into(),
            inputs: vec![],
            max_cycles: 1,
            retry: RetryPolicy::default(),
            limits: Limits::default(),
            grants: Grants::default(),
            reuse_instance: false,
        };
        let tasks = ["fetch", "a", "b", "store", "worker"].iter().map(|n| (n.to_string(), task(n))).collect();
        Workflow {
            name: "etl".into(),
            flow: String::new(),
            start: "fetch".into(),
            modules: BTreeMap::new(),
            tasks,
            graph,
            settings: RunSettings {
                max_steps: 1,
                parallelism: 2,
                bounds: HostBounds::default(),
                keep_checkpoints: None,
                keep_iteration_results: crate::model::DEFAULT_KEEP_ITERATION_RESULTS,
            },
            outbound: Default::default(),
        }
    }

    #[test]
    fn groups_are_drawn_as_groups_and_dynamic_tasks_apart() {
        let wf = etl();
        let m = draw(&wf, Format::Mermaid);
        assert!(m.starts_with("flowchart LR\n"), "{m}");
        assert!(m.contains("subgraph") && m.contains("group_1 (parallel, strict)"), "{m}");
        assert!(m.contains("only reachable by next_task") && m.contains("\"worker\""), "{m}");
        let d = draw(&wf, Format::Dot);
        assert!(
            d.contains("subgraph \"cluster_group_1\"") && d.contains("\"fetch\" -> \"a\" [lhead=\"cluster_group_1\"]"),
            "{d}"
        );
        assert!(d.contains("\"a\" -> \"store\" [ltail=\"cluster_group_1\"]"), "{d}");
        let a = draw(&wf, Format::Ascii);
        let expected = "\
workflow etl (start: fetch)

+-------+
| fetch |
+-------+
    |
    v
+= group_1 (parallel, strict) =+
| +---+ +---+                  |
| | a | | b |                  |
| +---+ +---+                  |
+==============================+
                |
                v
+-------+
| store |
+-------+

only reachable by next_task: worker
";
        assert_eq!(a, expected, "{a}");
    }

    #[test]
    fn ascii_draws_a_cycle_as_a_back_arrow_and_a_branch_chain_inside_its_group() {
        let mut wf = etl();
        // fetch >> group_1 >> store >> fetch, and a >> x inside group_1's branch.
        wf.graph.successors.insert("store".into(), vec!["fetch".into()]);
        wf.graph.nodes.insert("x".into(), Node::Task);
        wf.graph.successors.insert("a".into(), vec!["x".into()]);
        let a = draw(&wf, Format::Ascii);
        assert!(a.contains("| store |\n+-------+\n  +--> fetch (back)\n"), "{a}");
        assert!(a.contains("| a --> x "), "{a}");
        // Every line of the group's frame has the same width.
        let frame: Vec<usize> =
            a.lines().filter(|l| l.starts_with('|') || l.starts_with("+=")).map(|l| l.chars().count()).collect();
        assert!(frame.windows(2).all(|w| w[0] == w[1] || w[0] == 9 || w[1] == 9), "{a}");
    }
}
