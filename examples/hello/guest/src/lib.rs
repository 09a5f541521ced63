//! `a >> b >> c`: each task adds its letter to the greeting it receives.
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Start {
    #[serde(default = "world")]
    name: String,
}

fn world() -> String {
    "world".into()
}

fn a(input: Start) -> Result<String, TaskError> {
    log::info(&format!("greeting {}", input.name));
    Ok(format!("hello {}", input.name))
}

/// `b` declares the input `a`: it receives the result of task `a`.
#[derive(Deserialize)]
struct AfterA {
    a: String,
}

fn b(input: AfterA) -> Result<String, TaskError> {
    Ok(format!("{}, from b", input.a))
}

#[derive(Deserialize)]
struct AfterB {
    b: String,
}

fn c(input: AfterB) -> Result<Value, TaskError> {
    Ok(json!({ "greeting": format!("{} and c", input.b), "task": control::info().task_id }))
}

graflow_guest::export_tasks!(a: "Greets the name in the input", b, c);
