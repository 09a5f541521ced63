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

fn ascii(wf: &Workflow) -> String {
    let mut out = format!("workflow {} (start: {})\n", wf.name, wf.start);
    for (name, node) in &wf.graph.nodes {
        let what = match node {
            Node::Group(g) => format!("{name}  [parallel, {}: {}]", g.policy, g.members.join(" | ")),
            Node::Task => name.clone(),
        };
        let _ = writeln!(out, "{what}");
        for b in wf.graph.successors(name) {
            let _ = writeln!(out, "  -> {b}");
        }
    }
    let dynamic = dynamic_only(wf);
    if !dynamic.is_empty() {
        let _ = writeln!(out, "only reachable by next_task: {}", dynamic.join(", "));
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
        assert!(
            a.contains("group_1  [parallel, strict: a | b]") && a.contains("only reachable by next_task: worker"),
            "{a}"
        );
    }
}
