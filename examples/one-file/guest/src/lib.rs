//! A workflow in one crate: the tasks and their flow (the README's one-file
//! workflow, in Rust).
//!
//!     graflow-host run examples/one-file/guest --input '{"day": "2026-11-27"}'
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Fetch {
    #[allow(dead_code)]
    day: String,
}

fn fetch(_input: Fetch) -> Result<Vec<i64>, TaskError> {
    Ok(vec![10, 20, 30])
}

#[derive(Deserialize)]
struct Fetched {
    fetch: Vec<i64>,
}

fn double(input: Fetched) -> Result<Vec<i64>, TaskError> {
    Ok(input.fetch.iter().map(|v| v * 2).collect())
}

fn stats(input: Fetched) -> Result<Value, TaskError> {
    Ok(json!({"count": input.fetch.len(), "sum": input.fetch.iter().sum::<i64>()}))
}

#[derive(Deserialize)]
struct Store {
    double: Vec<i64>,
    stats: Value,
}

fn store(input: Store) -> Result<Value, TaskError> {
    channel::set("rows", &input.double.len())?;
    Ok(json!({"doubled": input.double, "stats": input.stats}))
}

graflow_guest::export_tasks!(
    workflow = Workflow::flow("fetch >> (double | stats) >> store").task("fetch", Settings::new().max_retries(2));
    fetch,
    double,
    stats,
    store,
);
