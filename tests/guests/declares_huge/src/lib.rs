//! A component that declares a flow over the host's bound (64 KiB): refused,
//! naming the bound.
use graflow_guest::prelude::*;

fn only() -> Result<i64, TaskError> {
    Ok(1)
}

graflow_guest::export_tasks!(workflow = Workflow::flow(&"only >> ".repeat(10_000)); only);
