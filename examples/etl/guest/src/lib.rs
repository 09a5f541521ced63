//! `fetch >> (transform_a | transform_b) >> store`, wired by automatic data flow:
//! each task declares the results it needs as fields of its input struct.
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Fetch {
    day: String,
}

#[derive(Serialize, Deserialize)]
struct Records {
    day: String,
    values: Vec<i64>,
}

fn fetch(input: Fetch) -> Result<Records, TaskError> {
    let seed: i64 = input.day.bytes().map(i64::from).sum();
    let values = (1..=5).map(|i| (seed * i) % 97).collect();
    log::info(&format!("fetched 5 records for {}", input.day));
    Ok(Records { day: input.day, values })
}

#[derive(Deserialize)]
struct FromFetch {
    fetch: Records,
}

fn transform_a(input: FromFetch) -> Result<Vec<i64>, TaskError> {
    Ok(input.fetch.values.iter().map(|v| v * 2).collect())
}

fn transform_b(input: FromFetch) -> Result<Value, TaskError> {
    let v = &input.fetch.values;
    Ok(json!({"count": v.len(), "sum": v.iter().sum::<i64>(), "max": v.iter().max()}))
}

#[derive(Deserialize)]
struct Store {
    day: String,
    transform_a: Vec<i64>,
    transform_b: Value,
}

fn store(input: Store) -> Result<Value, TaskError> {
    channel::set("stored_rows", &input.transform_a.len())?;
    Ok(json!({"day": input.day, "doubled": input.transform_a, "stats": input.transform_b}))
}

graflow_guest::export_tasks!(
    fetch: "Fetches the day's records",
    transform_a: "Doubles every value",
    transform_b: "Computes count, sum and max",
    store: "Merges both transforms",
);
