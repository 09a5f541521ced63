//! `graflow-host validate`.

use super::{CliError, ExitStatus};
use graflow_host::Json;
use graflow_host::model::Node;
use graflow_host::session::{RunOptions, Session};
use std::path::Path;

pub fn validate(path: &Path, no_cache: bool, json: bool) -> Result<ExitStatus, CliError> {
    let opts = RunOptions { cache_dir: super::cache_dir(no_cache), ..RunOptions::default() };
    let file = super::open_target(path)?;
    let session = Session::start_file(file, Json::null(), opts).map_err(|e| super::start_failed(path, e))?;
    if !no_cache {
        super::cache::remember_names(session.workflow());
    }
    let wf = session.workflow();
    if json {
        let modules: serde_json::Map<String, serde_json::Value> = wf
            .modules
            .iter()
            .map(|(k, m)| (k.clone(), serde_json::json!({"path": m.path, "sha256": m.sha256, "size": m.size})))
            .collect();
        let tasks: serde_json::Map<String, serde_json::Value> = wf
            .tasks
            .iter()
            .map(|(k, t)| {
                let v = serde_json::json!({
                    "module": t.module, "export": t.export, "inputs": t.inputs, "max_cycles": t.max_cycles,
                    "max_retries": t.retry.max_retries, "in_flow": wf.graph.nodes.contains_key(k),
                });
                (k.clone(), v)
            })
            .collect();
        let groups: serde_json::Map<String, serde_json::Value> = wf
            .graph
            .nodes
            .iter()
            .filter_map(|(k, n)| match n {
                Node::Group(g) => {
                    Some((k.clone(), serde_json::json!({"members": g.members, "policy": g.policy.to_string()})))
                }
                Node::Task => None,
            })
            .collect();
        let object = serde_json::json!({
            "status": "valid", "exit_code": 0, "workflow": wf.name, "flow": wf.flow, "start": wf.start,
            "modules": modules, "tasks": tasks, "groups": groups,
        });
        println!("{object}");
        return Ok(ExitStatus::Success);
    }
    println!("workflow '{}' is valid", wf.name);
    println!("  flow:  {}", wf.flow);
    println!("  start: {}", wf.start);
    for (name, m) in &wf.modules {
        println!("  module {name}: {} ({} bytes, sha256 {})", m.path.display(), m.size, m.sha256);
    }
    for (name, t) in &wf.tasks {
        let inputs = if t.inputs.is_empty() { "-".to_string() } else { t.inputs.join(", ") };
        let in_flow = if wf.graph.nodes.contains_key(name) { "" } else { " (dynamic only)" };
        println!(
            "  task {name}{in_flow}: {}.{} inputs [{inputs}] max_cycles {} max_retries {}",
            t.module, t.export, t.max_cycles, t.retry.max_retries
        );
    }
    for (name, node) in &wf.graph.nodes {
        if let Node::Group(g) = node {
            println!("  group {name}: {} (policy {})", g.members.join(" | "), g.policy);
        }
    }
    Ok(ExitStatus::Success)
}
