//! A component whose `workflow` export traps: the host refuses to load it,
//! naming the export.
use graflow_guest::prelude::*;

fn only() -> Result<i64, TaskError> {
    Ok(1)
}

fn declaration() -> Workflow {
    panic!("this declaration fails on purpose")
}

graflow_guest::export_tasks!(workflow = declaration(); only);
