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

#[derive(Deserialize)]
struct NetInput {
    base: String,
}

/// GET and POST through the gate, a denied origin, a model call with a tool, a token budget.
fn net(input: NetInput) -> Result<Value, TaskError> {
    let base = input.base;
    let got = http::get(&format!("{base}/echo"))?;
    let posted: Value = http::post_json(&format!("{base}/echo"), &json!({"lang": LANG}))?.json()?;
    let denied = match http::get(&format!("{}/echo", base.replace("127.0.0.1", "localhost"))) {
        Ok(_) => "none".to_string(),
        Err(http::HttpError::Denied(_)) => "denied".to_string(),
        Err(e) => e.to_string(),
    };
    let mut chat = llm::Chat::new()
        .user("weather in Paris?")
        .tool("get_weather", "", json!({"type": "object"}));
    let first = chat.send()?;
    let call = first.tool_calls[0].clone();
    chat.push_answer(&first);
    chat.tool_result(&call.id, "sunny");
    let last = chat.send()?;
    let mut budget = "none".to_string();
    for _ in 0..10 {
        match llm::Chat::new().user("more").send() {
            Ok(_) => {}
            Err(llm::LlmError::Limit(_)) => {
                budget = "limit".into();
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({"lang": LANG, "get": got.status, "post": [posted["method"], posted["body"]], "denied": denied,
        "tool": call.name, "final": last.content, "budget": budget}))
}

graflow_guest::export_tasks!(produce, consume, checkpointer, looper, forever, flaky, lang, ask, net);
