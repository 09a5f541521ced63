//! A scriptable task component for end-to-end tests.
//!
//! `script` runs the actions listed for its task name in the run input's
//! `scripts` object (`{"scripts": {"<task>": [action, ...]}}`). It first appends
//! its execution id to the channel list `order`. Each action may carry
//! `"cycle": n` or `"attempt": n` to apply only on that cycle / retry count.
//! The other exports misbehave on purpose: they trap, panic, spin or allocate
//! without bound.
use graflow_guest::prelude::*;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct ScriptInput {
    #[serde(default)]
    scripts: BTreeMap<String, Vec<Value>>,
    /// Iteration input (`{"n": ...}`), echoed in the output.
    n: Option<Value>,
    /// Any other explicit input, echoed in the output.
    x: Option<Value>,
}

fn applies(action: &Value, info: &TaskInfo) -> bool {
    let matches = |key: &str, actual: u32| action.get(key).and_then(Value::as_u64).is_none_or(|v| v == actual as u64);
    matches("cycle", info.cycle_count) && matches("attempt", info.retry_count)
}

fn str_of<'a>(action: &'a Value, key: &str) -> &'a str {
    action.get(key).and_then(Value::as_str).unwrap_or("")
}

fn script(input: ScriptInput) -> Result<Value, TaskError> {
    let info = control::info();
    channel::append("order", &info.task_id)?;
    let mut output = json!({"task": info.task_id, "cycle": info.cycle_count, "n": input.n, "x": input.x});
    let actions = input.scripts.get(&info.task_name).cloned().unwrap_or_default();
    for action in actions.iter().filter(|a| applies(a, &info)) {
        let null = Value::Null;
        let arg = |k: &str| action.get(k).unwrap_or(&null);
        match str_of(action, "op") {
            "set" => channel::set(str_of(action, "key"), arg("value"))?,
            "add" => {
                channel::atomic_add(str_of(action, "key"), arg("amount").as_f64().unwrap_or(1.0))?;
            }
            "copy" => {
                let v: Option<Value> = channel::get(str_of(action, "from"))?;
                channel::set(str_of(action, "to"), &v)?;
            }
            "next_task" => {
                let id = wit_next(str_of(action, "task"), arg("input"), arg("goto").as_bool().unwrap_or(false))?;
                channel::append("spawned", &id)?;
            }
            "iterate_below" => {
                if info.cycle_count < arg("cycles").as_u64().unwrap_or(0) as u32 {
                    control::next_iteration(&json!({"n": info.cycle_count}))?;
                }
            }
            "iterate" => {
                let allowed = control::can_iterate();
                let r = control::next_iteration(arg("input"));
                channel::append("can_iterate", &json!([allowed, r.is_ok()]))?;
            }
            "terminate" => control::terminate_workflow(str_of(action, "message")),
            "cancel" => control::cancel_workflow(str_of(action, "message")),
            "fail" => return Err(TaskError::failed(str_of(action, "message"))),
            "retryable" => return Err(TaskError::retryable(str_of(action, "message"))),
            "checkpoint" => control::checkpoint(arg("metadata"))?,
            "set_result" => results::set(arg("value"))?,
            "result" => output = arg("value").clone(),
            "get_result" => output = json!(results::get::<Value>(str_of(action, "task"))?),
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("scripted panic in {}", info.task_id),
            "log" => log::info(str_of(action, "message")),
            "big_value" => {
                let bytes = arg("bytes").as_u64().unwrap_or(1 << 20) as usize;
                channel::set(str_of(action, "key"), &"x".repeat(bytes))?;
            }
            "spawn_many" => {
                let input = match arg("input_bytes").as_u64() {
                    Some(n) => json!({"pad": "p".repeat(n as usize)}),
                    None => Value::Null,
                };
                for _ in 0..arg("count").as_u64().unwrap_or(0) {
                    control::next_task(str_of(action, "task"), &input)?;
                }
            }
            "fill" => {
                let value = "f".repeat(arg("bytes").as_u64().unwrap_or(4096) as usize);
                for i in 0..arg("count").as_u64().unwrap_or(0) {
                    channel::set(&format!("fill{i}"), &value)?;
                }
            }
            "raw" => {
                // A host call with text that is not necessarily JSON; the
                // refusal (if any) is appended to the channel list `refused`.
                use graflow_guest::bindings::graflow::task::{channel as c, control as k, results as r};
                let (key, text) = (str_of(action, "key"), str_of(action, "text"));
                let refused = match str_of(action, "call") {
                    "set" => c::set(key, text).err(),
                    "append" => c::append(key, text).err(),
                    "prepend" => c::prepend(key, text).err(),
                    "set_result" => r::set_result(text).err(),
                    "next_task" => k::next_task(key, text, false).err(),
                    "checkpoint" => k::request_checkpoint(text).err(),
                    other => Some(format!("unknown raw call '{other}'")),
                };
                if let Some(message) = refused {
                    channel::append("refused", &message)?;
                }
            }
            "read_file" => output = json!(std::fs::read_to_string(str_of(action, "path")).map_err(|e| e.to_string())),
            "write_file" => output = json!(std::fs::write(str_of(action, "path"), str_of(action, "text")).map_err(|e| e.to_string())),
            "list_dir" => {
                let names = std::fs::read_dir(str_of(action, "path")).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>());
                output = json!(names.map_err(|e| e.to_string()));
            }
            "env" => output = json!(std::env::var(str_of(action, "name")).map_err(|e| e.to_string())),
            "env_count" => output = json!(std::env::vars().count()),
            "connect" => output = json!(std::net::TcpStream::connect(str_of(action, "addr")).map(|_| ()).map_err(|e| e.to_string())),
            "print" => {
                println!("{}", str_of(action, "text"));
                eprintln!("err: {}", str_of(action, "text"));
            }
            "wait_file" => {
                // Wait (up to 60 s) until `path` exists: a test's event, not a sleep.
                let path = std::path::Path::new(str_of(action, "path"));
                for _ in 0..6000 {
                    if path.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            "sleep" => std::thread::sleep(std::time::Duration::from_millis(arg("ms").as_u64().unwrap_or(0))),
            "recurse" => output = json!(recurse(arg("depth").as_u64().unwrap_or(1 << 30))),
            "log_big" => log::info(&"y".repeat(arg("bytes").as_u64().unwrap_or(1 << 20) as usize)),
            "return" => output = channel::get::<Value>(str_of(action, "key"))?.unwrap_or(Value::Null),
            "ask" => {
                // {"op":"ask","kind":"approval|text|select|multi|custom","prompt":..,"options":[..],"timeout":secs,"key":..}
                let opts: Vec<&str> =
                    arg("options").as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let q = feedback::Ask::new(str_of(action, "prompt"))
                    .options(&opts)
                    .metadata(arg("metadata").clone())
                    .timeout(std::time::Duration::from_secs(arg("timeout").as_u64().unwrap_or(180)));
                let answer = match str_of(action, "kind") {
                    "approval" => json!(feedback::approval_with(&q)?),
                    "text" => json!(feedback::text_with(&q)?),
                    "select" => json!(feedback::select_with(&q)?),
                    "multi" => json!(feedback::select_many_with(&q)?),
                    _ => feedback::custom::<Value>(&q)?,
                };
                let key = str_of(action, "key");
                channel::set(if key.is_empty() { "answer" } else { key }, &answer)?;
                output = answer;
            }
            "work" => {
                let rounds = arg("rounds").as_u64().unwrap_or(1_000_000);
                let mut h: u64 = 1469598103934665603;
                for i in 0..rounds {
                    h = std::hint::black_box(h ^ i).wrapping_mul(1099511628211);
                }
                channel::set("work_hash", &format!("{h:x}"))?;
            }
            "http" => {
                // {"op":"http","method":"GET","url":..,"headers":[[k,v]],"body":"..","timeout_ms":n,"no_redirects":bool,"key":..}
                let mut req = http::Request::new(
                    if str_of(action, "method").is_empty() { "GET" } else { str_of(action, "method") },
                    str_of(action, "url"),
                );
                for h in arg("headers").as_array().into_iter().flatten() {
                    req = req.header(h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
                }
                req = req.body(str_of(action, "body").as_bytes().to_vec());
                if let Some(ms) = arg("timeout_ms").as_u64() {
                    req = req.timeout(std::time::Duration::from_millis(ms));
                }
                if arg("no_redirects").as_bool() == Some(true) {
                    req = req.no_redirects();
                }
                let outcome = match req.send() {
                    Ok(r) => json!({"status": r.status, "body": r.text(), "headers": r.headers}),
                    Err(e) => json!({"error": e.to_string()}),
                };
                let key = str_of(action, "key");
                channel::append(if key.is_empty() { "http" } else { key }, &outcome)?;
                output = outcome;
            }
            "wasi_http" => {
                let outcome = match wasi_get(str_of(action, "url"), arg("body_limit").as_u64().unwrap_or(u64::MAX)) {
                    Ok((status, body)) => json!({"status": status, "body": body}),
                    Err(e) => json!({"error": e}),
                };
                channel::append("wasi_http", &outcome)?;
                output = outcome;
            }
            "llm" => {
                // {"op":"llm","messages":[..],"tools":[..],"model":".."}
                let chat = llm::Chat {
                    messages: arg("messages").as_array().cloned().unwrap_or_default(),
                    model: str_of(action, "model").to_string(),
                    tools: arg("tools").as_array().cloned().unwrap_or_default(),
                    params: Default::default(),
                };
                let outcome = match chat.send() {
                    Ok(a) => json!({
                        "content": a.content,
                        "tool_calls": a.tool_calls.iter().map(|t| json!({"id": t.id, "name": t.name, "arguments": t.arguments})).collect::<Vec<_>>(),
                        "finish_reason": a.finish_reason,
                        "model": a.model,
                        "usage": [a.usage.0, a.usage.1, a.usage.2],
                    }),
                    Err(e) => json!({"error": e.to_string()}),
                };
                channel::append("llm", &outcome)?;
                output = outcome;
            }
            other => return Err(TaskError::failed(format!("unknown action '{other}'"))),
        }
    }
    Ok(output)
}

/// `GET url` through `wasi:http/outgoing-handler` directly (no SDK helper):
/// the status and the body as text, or the error code's debug text.
fn wasi_get(url: &str, limit: u64) -> Result<(u16, String), String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    req.set_scheme(Some(&scheme)).map_err(|_| "scheme")?;
    req.set_authority(Some(authority)).map_err(|_| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|_| "path")?;
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match future.get() {
            Some(r) => break r.map_err(|_| "taken twice")?.map_err(|e| format!("{e:?}"))?,
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let body = response.consume().map_err(|_| "consume")?;
    let stream = body.stream().map_err(|_| "stream")?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                out.extend_from_slice(&chunk);
                if out.len() as u64 > limit {
                    break;
                }
            }
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                return Err(format!("body: {}", e.to_debug_string()));
            }
        }
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// Recursion that keeps a frame per level: overflows the stack for large depths.
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let frame = std::hint::black_box([depth; 16]);
    1 + recurse(depth - 1) + frame[3] % 2
}

fn wit_next(task: &str, input: &Value, goto: bool) -> Result<String, TaskError> {
    if goto { control::goto(task, input) } else { control::next_task(task, input) }
}

fn noop(_: Value) -> Result<(), TaskError> {
    Ok(())
}

/// Takes no input at all.
fn unit(_: ()) -> Result<&'static str, TaskError> {
    Ok("no input needed")
}

/// Takes no argument at all.
fn bare() -> Result<&'static str, TaskError> {
    Ok("no argument at all")
}

#[derive(Deserialize)]
struct Load {
    path: String,
}

/// Needs the declared input `path`.
fn load(input: Load) -> Result<String, TaskError> {
    Ok(input.path)
}

fn echo(input: Value) -> Result<Value, TaskError> {
    Ok(input)
}

fn trap(_: Value) -> Result<(), TaskError> {
    core::arch::wasm32::unreachable()
}

fn panic(_: Value) -> Result<(), TaskError> {
    panic!("this guest panics on purpose")
}

fn spin(_: Value) -> Result<(), TaskError> {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn alloc_bomb(_: Value) -> Result<(), TaskError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 16 << 20]);
        std::hint::black_box(&hoard);
    }
}

graflow_guest::export_tasks!(
    script: "Runs the actions scripted for its task name",
    noop: "Does nothing",
    echo: "Returns its input",
    unit: "Takes `()` as its input",
    bare: "Takes no argument",
    load: "Needs the declared input `path`",
    trap: "Executes unreachable",
    panic: "Panics",
    spin: "Loops forever",
    alloc_bomb: "Allocates until the memory limit stops it",
);
