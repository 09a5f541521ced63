//! The parity tasks in Rust; parity.py and parity.js implement the same ones.
use graflow_guest::prelude::*;

const LANG: &str = "rust";

#[derive(Deserialize)]
struct Produce {
    seed: i64,
}

fn produce(input: Produce) -> Result<Value, TaskError> {
    channel::set("seen", &input.seed)?;
    Ok(json!({"value": input.seed * 2}))
}

#[derive(Deserialize)]
struct Consume {
    produce: Value,
}

fn consume(input: Consume) -> Result<i64, TaskError> {
    let seen: i64 = channel::get("seen")?.unwrap_or(0);
    let again: Value = results::get("produce")?.unwrap_or(Value::Null);
    Ok(input.produce["value"].as_i64().unwrap_or(0) + seen + again["value"].as_i64().unwrap_or(0))
}

fn checkpointer(_: Value) -> Result<&'static str, TaskError> {
    control::checkpoint(&json!({"lang": LANG}))?;
    Ok(LANG)
}

#[derive(Deserialize)]
struct Looper {
    #[serde(default)]
    n: i64,
}

fn looper(input: Looper) -> Result<Value, TaskError> {
    if input.n < 2 {
        control::next_iteration(&json!({"n": input.n + 1}))?;
    }
    Ok(json!({"n": input.n, "cycle": control::info().cycle_count}))
}

fn forever(_: Value) -> Result<u32, TaskError> {
    control::next_iteration(&json!({}))?;
    Ok(control::info().cycle_count)
}

fn flaky(_: Value) -> Result<u32, TaskError> {
    let retry = control::info().retry_count;
    if retry < 2 {
        return Err(TaskError::retryable(format!("try again ({LANG})")));
    }
    Ok(retry + 1)
}

fn lang(_: Value) -> Result<&'static str, TaskError> {
    Ok(LANG)
}

#[derive(Deserialize)]
struct AskInput {
    kind: String,
    #[serde(default)]
    timeout: u64,
}

/// Asks one question of `kind` through the SDK helper of that kind.
fn ask(input: AskInput) -> Result<Value, TaskError> {
    let t = std::time::Duration::from_secs(input.timeout);
    let colors: &[&str] = &["red", "green", "blue"];
    let q = feedback::Ask::new("pick").timeout(t).options(colors);
    let answer = match input.kind.as_str() {
        "approval" => json!(feedback::approval_with(&feedback::Ask::new("ship it?").timeout(t))?.0),
        "text" => json!(feedback::text_with(&feedback::Ask::new("name?").timeout(t))?),
        "selection" => json!(feedback::select_with(&q)?),
        "multi-selection" => json!(feedback::select_many_with(&q)?),
        _ => feedback::custom::<Value>(&feedback::Ask::new("any JSON?").timeout(t))?,
    };
    Ok(json!({"lang": LANG, "answer": answer}))
}

graflow_guest::export_tasks!(produce, consume, checkpointer, looper, forever, flaky, lang, ask);
