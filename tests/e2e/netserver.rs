//! A small HTTP/1.1 server on loopback for the outbound tests: it records
//! every request (method, path, headers, body) and answers by path.
//!
//! - `/echo`: 200 with the request as JSON (method, path, headers, body).
//! - `/big?n=N`: 200 with N bytes.
//! - `/endless`: 200, chunked, never ends.
//! - `/slow?ms=N`: answers after N ms; `/slowonce`: after 60 s the first time, at once after.
//! - `/redirect?to=URL`: 302 to URL.
//! - `/v1/chat/completions`: a scripted OpenAI-compatible model (see `chat`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

pub struct Server {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || handle(conn, &s));
            }
        });
        Server { port, seen }
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    /// Wait until a request for `path` arrived (up to 20 s).
    pub fn wait_for(&self, path: &str) {
        for _ in 0..2000 {
            if self.seen().iter().any(|r| r.path.starts_with(path)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no request for {path} arrived");
    }
}

fn query(path: &str, key: &str) -> Option<String> {
    let q = path.split_once('?')?.1;
    q.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(|v| v.replace("%3A", ":").replace("%2F", "/")))
}

fn handle(conn: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len.min(64 << 20)];
    let _ = reader.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).into_owned();
    let req = Seen { method, path: path.clone(), headers, body };
    seen.lock().unwrap().push(req.clone());
    let mut out = conn;
    let reply = |out: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n", body.len());
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body);
    };
    let route = path.split('?').next().unwrap_or("");
    match route {
        "/echo" => {
            let v =
                serde_json::json!({"method": req.method, "path": req.path, "headers": req.headers, "body": req.body});
            reply(&mut out, "200 OK", "content-type: application/json\r\n", v.to_string().as_bytes());
        }
        "/big" => {
            let n: usize = query(&path, "n").and_then(|n| n.parse().ok()).unwrap_or(1000);
            reply(&mut out, "200 OK", "", &vec![b'x'; n]);
        }
        "/endless" => {
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            let chunk = format!("{:x}\r\n{}\r\n", 4096, "z".repeat(4096));
            while out.write_all(chunk.as_bytes()).is_ok() {}
        }
        "/slowonce" => {
            // Slow the first time only.
            let first = seen.lock().unwrap().iter().filter(|r| r.path.starts_with("/slowonce")).count() == 1;
            if first {
                std::thread::sleep(Duration::from_secs(60));
            }
            reply(&mut out, "200 OK", "", b"done");
        }
        "/slow" => {
            let ms: u64 = query(&path, "ms").and_then(|n| n.parse().ok()).unwrap_or(5000);
            std::thread::sleep(Duration::from_millis(ms));
            reply(&mut out, "200 OK", "", b"slow");
        }
        "/redirect" => {
            let to = query(&path, "to").unwrap_or_default();
            reply(&mut out, "302 Found", &format!("location: {to}\r\n"), b"");
        }
        "/v1/chat/completions" => {
            let (status, body) = chat(&req);
            reply(&mut out, status, "content-type: application/json\r\n", body.as_bytes());
        }
        _ => reply(&mut out, "404 Not Found", "", b"no such path"),
    }
}

/// The scripted model: with a tool offered and no tool result yet, it asks
/// for the first tool with `{"city": "Paris"}`; after a tool result it
/// answers `final: <result>`; else `echo: <last user message>`. Usage:
/// 10 prompt tokens per message, 5 completion tokens. Without
/// `authorization: Bearer sk-test-secret` it answers 401 naming the key it got.
fn chat(req: &Seen) -> (&'static str, String) {
    let auth = req.headers.get("authorization").cloned().unwrap_or_default();
    if auth != "Bearer sk-test-secret" {
        let e = serde_json::json!({"error": {"message": format!("Incorrect API key provided: {auth}")}});
        return ("401 Unauthorized", e.to_string());
    }
    let v: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
    let messages = v["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or_default();
    let tools = v["tools"].as_array().cloned().unwrap_or_default();
    let message = if last["role"] == "tool" {
        serde_json::json!({"role": "assistant", "content": format!("final: {}", last["content"].as_str().unwrap_or(""))})
    } else if let Some(tool) = tools.first() {
        serde_json::json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": tool["function"]["name"], "arguments": "{\"city\": \"Paris\"}"}
        }]})
    } else {
        serde_json::json!({"role": "assistant", "content": format!("echo: {}", last["content"].as_str().unwrap_or(""))})
    };
    let finish = if message.get("tool_calls").is_some() { "tool_calls" } else { "stop" };
    let prompt = 10 * messages.len() as u64;
    let said = last["content"].as_str().unwrap_or("");
    // "leak": the answer echoes the key, written with JSON escapes;
    // "negative": the usage it reports is negative.
    let (message, usage) = match said {
        "leak" => (
            serde_json::json!({"role": "assistant", "content": format!("your key: {auth}")}),
            serde_json::json!({"prompt_tokens": 1, "completion_tokens": 1}),
        ),
        "negative" => (message, serde_json::json!({"prompt_tokens": -8, "completion_tokens": -8, "total_tokens": -16})),
        _ => {
            (message, serde_json::json!({"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5}))
        }
    };
    let body = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": v["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage
    });
    ("200 OK", body.to_string().replace("sk-test-secret", "\\u0073k-test-secret"))
}
