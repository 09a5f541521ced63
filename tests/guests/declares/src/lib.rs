//! A component that declares its own workflow (WIT 0.1.3): the flow, and
//! settings in code that a workflow file may override.
//!
//! - `fetch` fails retryably on its first two attempts: it completes only
//!   with the 2 retries its code declares (the built-in default is none).
//! - `double` and `square` run in parallel on fetch's values; `total` sums
//!   both.
//! - `peek` tries every capability a task could want (an environment
//!   variable, the file system, the network) and reports what it got: a
//!   component alone is granted nothing, whatever it declares.
use graflow_guest::prelude::*;

fn fetch(_run_input: Value) -> Result<Vec<i64>, TaskError> {
    if control::info().retry_count < 2 {
        return Err(TaskError::retryable("the source is not ready yet"));
    }
    Ok(vec![1, 2, 3])
}

#[derive(Deserialize)]
struct Values {
    fetch: Vec<i64>,
}

fn double(input: Values) -> Result<Vec<i64>, TaskError> {
    Ok(input.fetch.iter().map(|v| v * 2).collect())
}

fn square(input: Values) -> Result<Vec<i64>, TaskError> {
    Ok(input.fetch.iter().map(|v| v * v).collect())
}

#[derive(Deserialize)]
struct Both {
    double: Vec<i64>,
    square: Vec<i64>,
}

fn total(input: Both) -> Result<i64, TaskError> {
    Ok(input.double.iter().chain(&input.square).sum())
}

#[derive(Deserialize)]
struct Peek {
    total: i64,
}

fn peek(input: Peek) -> Result<Value, TaskError> {
    let env = std::env::var("HOME").ok();
    let env_count = std::env::vars().count();
    let root = std::fs::read_dir("/").map(|d| d.count()).ok();
    let file = std::fs::read_to_string("/etc/hostname").ok();
    let net = http::get("http://127.0.0.1:9/");
    Ok(json!({
        "total": input.total,
        "env": env,
        "env_count": env_count,
        "root": root,
        "file": file,
        "net_denied": matches!(net, Err(http::HttpError::Denied(_))),
    }))
}

graflow_guest::export_tasks!(
    workflow = Workflow::flow("fetch >> (double | square) >> total >> peek")
        .name("declared")
        .max_steps(50)
        .task("fetch", Settings::new().max_retries(2).timeout_ms(20_000))
        .task("total", Settings::new().max_cycles(3));
    fetch: "Fails twice, then gives [1, 2, 3]",
    double,
    square,
    total,
    peek: "Reports which capabilities it reached",
);
