//! A component whose `workflow` export gives settings for a task it does not
//! export: the host refuses to load it, naming the task.
use graflow_guest::prelude::*;

fn only() -> Result<i64, TaskError> {
    Ok(1)
}

graflow_guest::export_tasks!(
    workflow = Workflow::flow("only").task("ghost", Settings::new().max_retries(1));
    only,
);
