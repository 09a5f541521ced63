//! A router that picks a branch with next-task, and jumps to an error handler
//! with goto when the request is invalid.
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Request {
    kind: String,
    #[serde(default)]
    amount: i64,
}

fn route(input: Request) -> Result<String, TaskError> {
    if input.amount < 0 {
        control::goto("handle_error", &json!({"reason": format!("negative amount {}", input.amount)}))?;
        return Ok("rejected".into());
    }
    let handler = if input.kind == "refund" { "refund" } else { "purchase" };
    control::next_task(handler, &json!({"amount": input.amount}))?;
    Ok(handler.into())
}

#[derive(Deserialize)]
struct Amount {
    amount: i64,
}

fn purchase(input: Amount) -> Result<Value, TaskError> {
    Ok(json!({"charged": input.amount}))
}

fn refund(input: Amount) -> Result<Value, TaskError> {
    Ok(json!({"refunded": input.amount}))
}

#[derive(Deserialize)]
struct Failure {
    reason: String,
}

fn handle_error(input: Failure) -> Result<Value, TaskError> {
    Ok(json!({"error": input.reason}))
}

fn audit(_: Value) -> Result<String, TaskError> {
    Ok("audited".into())
}

graflow_guest::export_tasks!(route, purchase, refund, handle_error, audit);
