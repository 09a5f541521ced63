//! A task that fails with a retryable error twice, then succeeds.
use graflow_guest::prelude::*;

fn call_service(_: Value) -> Result<Value, TaskError> {
    let attempt = control::info().retry_count + 1;
    if attempt < 3 {
        return Err(TaskError::retryable(format!("service unavailable (attempt {attempt})")));
    }
    Ok(json!({"status": "ok", "attempts": attempt}))
}

graflow_guest::export_tasks!(call_service: "Succeeds on its third attempt");
