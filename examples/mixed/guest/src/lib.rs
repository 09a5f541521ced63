//! The Rust half of the mixed example: `ingest` feeds a Python and a JavaScript
//! task running in parallel; `combine` merges their results.
use graflow_guest::prelude::*;

#[derive(Deserialize)]
struct Ingest {
    readings: Vec<f64>,
}

fn ingest(input: Ingest) -> Result<Vec<f64>, TaskError> {
    let clean: Vec<f64> = input.readings.into_iter().filter(|r| r.is_finite() && *r >= 0.0).collect();
    channel::set("unit", "celsius")?;
    control::checkpoint(&json!({"stage": "ingested", "readings": clean.len()}))?;
    Ok(clean)
}

#[derive(Deserialize)]
struct Combine {
    stats: Value,
    format: String,
}

fn combine(input: Combine) -> Result<Value, TaskError> {
    Ok(json!({"report": input.format, "stats": input.stats, "languages": ["rust", "python", "javascript"]}))
}

graflow_guest::export_tasks!(ingest: "Drops invalid readings (Rust)", combine: "Merges the Python and JS results (Rust)");
