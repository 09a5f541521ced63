//! An agent loop: `agent >> tool >> agent`. The agent asks the tool for the
//! next clue until it has enough, then terminates the workflow.
use graflow_guest::prelude::*;

fn agent(_: Value) -> Result<Value, TaskError> {
    let clues: Vec<String> = channel::get("clues")?.unwrap_or_default();
    let turn = control::info().cycle_count;
    if clues.len() >= 3 {
        control::terminate_workflow("the agent has its answer");
        return Ok(json!({"answer": clues.join(" "), "turns": turn}));
    }
    channel::set("question", &format!("clue {}", clues.len() + 1))?;
    Ok(json!({"thinking": turn}))
}

fn tool(_: Value) -> Result<String, TaskError> {
    let question: String = channel::get("question")?.unwrap_or_default();
    let clue = match question.as_str() {
        "clue 1" => "sandboxed",
        "clue 2" => "resumable",
        _ => "fast",
    };
    channel::append("clues", clue)?;
    Ok(clue.to_string())
}

graflow_guest::export_tasks!(agent: "Decides; terminates once it has three clues", tool: "Answers the agent's question");
