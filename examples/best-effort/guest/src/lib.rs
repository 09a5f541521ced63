//! A best-effort group: one enrichment source is down; the rest still count.
use graflow_guest::prelude::*;

fn geo(_: Value) -> Result<String, TaskError> {
    Ok("Lisbon".into())
}

fn weather(_: Value) -> Result<String, TaskError> {
    Err(TaskError::failed("weather service returned 503"))
}

fn news(_: Value) -> Result<u32, TaskError> {
    Ok(3)
}

#[derive(Deserialize)]
struct Sources {
    geo: Option<String>,
    weather: Option<String>,
    news: Option<u32>,
}

fn combine(input: Sources) -> Result<Value, TaskError> {
    Ok(json!({"geo": input.geo, "weather": input.weather, "news": input.news}))
}

graflow_guest::export_tasks!(geo, weather: "Always fails", news, combine);
