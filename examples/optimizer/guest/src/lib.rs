//! Newton's method for sqrt(target), one step per iteration, until it converges.
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Step {
    target: f64,
    guess: Option<f64>,
}

fn optimize(input: Step) -> Result<Value, TaskError> {
    let guess = input.guess.unwrap_or(input.target.max(1.0));
    let next = 0.5 * (guess + input.target / guess);
    let converged = (next - guess).abs() < 1e-9;
    if !converged {
        control::next_iteration(&json!({"target": input.target, "guess": next}))?;
    }
    Ok(json!({"estimate": next, "iteration": control::info().cycle_count, "converged": converged}))
}

#[derive(Deserialize)]
struct Report {
    optimize: Value,
}

fn report(input: Report) -> Result<Value, TaskError> {
    Ok(json!({"sqrt": input.optimize["estimate"], "iterations": input.optimize["iteration"]}))
}

graflow_guest::export_tasks!(optimize: "One Newton step; iterates until converged", report);
