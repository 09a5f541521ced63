//! A component of the `task-module` world alone (no `workflow` export), as
//! every component built before WIT 0.1.3 is: it must keep loading and
//! running from a workflow file.

wit_bindgen::generate!({ world: "task-module", path: "../../../wit" });


struct Legacy;

impl Guest for Legacy {
    fn tasks() -> Vec<TaskDecl> {
        vec![TaskDecl { name: "hello".into(), inputs: vec![], description: "Says hello".into() }]
    }

    fn run(task: String, _input: String) -> Result<String, TaskError> {
        match task.as_str() {
            "hello" => Ok("\"hello from a task-module component\"".into()),
            other => Err(TaskError::Failed(format!("no task '{other}'"))),
        }
    }
}

export!(Legacy);
