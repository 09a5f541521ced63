//! The approval example both ways (the `feedback` commands, and the web page
//! of `graflow-host serve` in headless Chromium), and the server's guards.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const INPUT: &str = r#"{"version":"2.1.0","wait_secs":0}"#;

/// Run the approval example unattended in `dir`: it pauses; the request id.
fn paused_approval(dir: &Path) -> String {
    let wf = example("approval");
    let out = cli(dir, &["run", wf.to_str().unwrap(), "--input", INPUT, "--no-prompt", "--json"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["requests"][0]["prompt"], "Deploy 2.1.0 to production?");
    v["requests"][0]["id"].as_str().unwrap().to_string()
}

#[test]
fn the_approval_example_pauses_and_deploys_once_approved_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let id = paused_approval(dir.path());
    cli(dir.path(), &["feedback", "answer", &id, "--approve", "--reason", "tests are green"]).ok();
    let resumed = cli(dir.path(), &["resume", "--latest", "--no-prompt"]);
    assert_eq!(resumed.ok().json(), json!("DEPLOYED"));
    // Rejected, it does not deploy, and says why.
    let other = tempfile::tempdir().unwrap();
    let id = paused_approval(other.path());
    cli(other.path(), &["feedback", "answer", &id, "--reject", "--reason", "change freeze"]).ok();
    let resumed = cli(other.path(), &["resume", "--latest", "--no-prompt"]);
    assert_eq!(resumed.ok().json(), json!("NOT DEPLOYED: change freeze"));
}

/// `graflow-host serve` on a free loopback port; its base URL.
fn serve(dir: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = command(dir)
        .args(["serve", "checkpoints", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(';').to_string();
    (child, url)
}

/// A GET with another `Host` header (as after DNS rebinding); the status.
fn http_host(url: &str, host_header: &str, path: &str) -> (u16, String) {
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut s = std::net::TcpStream::connect(host.replace("localhost", "127.0.0.1")).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out.split_whitespace().nth(1).unwrap().parse().unwrap(), out)
}

/// One HTTP/1.1 request; the status and body.
pub(crate) fn http(url: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn the_page_lists_the_request_and_its_form_answers_it() {
    let dir = tempfile::tempdir().unwrap();
    let id = paused_approval(dir.path());
    let (mut server, url) = serve(dir.path(), &[]);
    let (status, page) = http(&url, "GET", "/", "", "");
    assert_eq!(status, 200);
    assert!(page.contains("Deploy 2.1.0 to production?") && page.contains(&format!("action=\"/answer/{id}\"")));
    assert!(!page.contains("<script"), "plain HTML");
    let (status, api) = http(&url, "GET", "/api/requests", "", "");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&api).unwrap()[0]["id"], json!(id));
    const JSON: &str = "Content-Type: application/json\r\n";
    let (status, _) = http(&url, "POST", "/api/requests/0123456789abcdef/answer", JSON, r#"{"approved":true}"#);
    assert_eq!(status, 404);
    let (status, body) = http(&url, "POST", &format!("/api/requests/{id}/answer"), JSON, r#"{"text":"x"}"#);
    assert_eq!(status, 400, "{body}");
    // What another site could send: refused.
    let (status, _) = http(&url, "POST", &format!("/api/requests/{id}/answer"), "", r#"{"approved":true}"#);
    assert_eq!(status, 415, "a post without a JSON content type");
    let evil = "Content-Type: application/x-www-form-urlencoded\r\nOrigin: http://evil.example\r\n";
    assert_eq!(http(&url, "POST", &format!("/answer/{id}"), evil, "decision=approve").0, 403, "a cross-site form");
    let sandboxed = "Content-Type: application/x-www-form-urlencoded\r\nOrigin: null\r\n";
    assert_eq!(http(&url, "POST", &format!("/answer/{id}"), sandboxed, "decision=approve").0, 403, "a sandboxed frame");
    let (status, _) = http_host(&url, "[::1]", "/api/requests");
    assert_eq!(status, 200, "a bare IPv6 loopback host");
    let rebound = url.replace("127.0.0.1", "localhost");
    let (status, _) = http_host(&rebound, "evil.example", "/api/requests");
    assert_eq!(status, 403, "a rebound host name");

    let reason = match chromium("the form was posted over HTTP instead") {
        Some(browser) => {
            // A person in a real browser: sees the request, types a reason,
            // clicks Approve, and sees it answered.
            let profile = tempfile::tempdir().unwrap();
            let mut b = Cdp::launch(browser, profile.path());
            let session = b.open(&url);
            b.wait_for_text(&session, "Deploy 2.1.0 to production?");
            b.eval(
                &session,
                "document.querySelector('input[name=reason]').value = 'typed in chromium'; \
                 document.querySelector('button[value=approve]').click(); 'clicked'",
            );
            b.wait_for_text(&session, "Answered request");
            "typed in chromium"
        }
        None => {
            let form = "decision=approve&reason=looks+good";
            let (status, _) = http(
                &url,
                "POST",
                &format!("/answer/{id}"),
                "Content-Type: application/x-www-form-urlencoded\r\n",
                form,
            );
            assert_eq!(status, 303);
            "looks good"
        }
    };
    let (_, page) = http(&url, "GET", "/", "", "");
    assert!(page.contains("No request is waiting"), "{page}");
    let (status, again) = http(&url, "POST", &format!("/api/requests/{id}/answer"), JSON, r#"{"approved":false}"#);
    assert_eq!(status, 409, "{again}");
    server.kill().unwrap();
    let shown = cli(dir.path(), &["feedback", "show", &id, "--json"]).ok().json();
    assert_eq!(shown["answer"], json!({"approved": true, "reason": reason}));
    assert_eq!(shown["answered_by"], "web");
    let resumed = cli(dir.path(), &["resume", "--latest", "--no-prompt"]);
    assert_eq!(resumed.ok().json(), json!("DEPLOYED"));
}

#[test]
fn serving_beyond_loopback_needs_a_token_and_the_token_guards_every_route() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
    let open = cli(dir.path(), &["serve", "checkpoints", "--listen", "0.0.0.0:0"]);
    assert_eq!(open.code, 2);
    assert!(open.stderr.contains("pass --token"), "{}", open.stderr);
    let (mut server, url) = serve(dir.path(), &["--token", "s3cret"]);
    assert!(url.ends_with("?token=s3cret"), "{url}");
    let base = url.split('?').next().unwrap();
    assert_eq!(http(base, "GET", "/", "", "").0, 401);
    assert_eq!(http(base, "GET", "/api/requests", "", "").0, 401);
    assert_eq!(http(base, "GET", "/api/requests", "Authorization: Bearer wrong\r\n", "").0, 401);
    assert_eq!(http(base, "GET", "/?token=s3cret", "", "").0, 200);
    assert_eq!(http(base, "GET", "/api/requests", "Authorization: Bearer s3cret\r\n", "").0, 200);
    server.kill().unwrap();
}

/// Headless Chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: commands on fd 3, replies on fd 4, each a JSON
/// message ended by a NUL byte).
struct Cdp {
    child: Child,
    to: std::fs::File,
    from: BufReader<std::fs::File>,
    next: u64,
}

impl Cdp {
    fn launch(browser: &str, profile: &Path) -> Cdp {
        use std::os::fd::{FromRawFd, IntoRawFd};
        use std::os::unix::process::CommandExt;
        let pipe = || {
            let mut fds = [0; 2];
            // SAFETY: pipe writes two new descriptors into the array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: both were just opened and are owned here.
            unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) }
        };
        let (commands_read, commands_write) = pipe();
        let (replies_read, replies_write) = pipe();
        let (cr, rw) = (commands_read.into_raw_fd(), replies_write.into_raw_fd());
        let mut cmd = std::process::Command::new(browser);
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(cr, 3) < 0 || libc::dup2(rw, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        // SAFETY: the child has its copies; these are ours to close.
        unsafe {
            libc::close(cr);
            libc::close(rw);
        }
        Cdp { child, to: commands_write, from: BufReader::new(replies_read), next: 0 }
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
        self.next += 1;
        let mut msg = json!({"id": self.next, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.to.write_all(msg.to_string().as_bytes()).unwrap();
        self.to.write_all(b"\0").unwrap();
        loop {
            let mut buf = Vec::new();
            assert!(self.from.read_until(0, &mut buf).unwrap() > 0, "chromium closed the pipe");
            buf.pop();
            let reply: Value = serde_json::from_slice(&buf).unwrap();
            if reply["id"] == json!(self.next) {
                return match reply.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(reply["result"].clone()),
                };
            }
        }
    }

    /// A new tab at `url`, attached; its session id.
    fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", json!({"url": url})).unwrap();
        let attached =
            self.call(None, "Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true})).unwrap();
        attached["sessionId"].as_str().unwrap().to_string()
    }

    fn eval(&mut self, session: &str, expression: &str) -> Option<Value> {
        let r = self.call(Some(session), "Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        r.ok().map(|v| v["result"]["value"].clone())
    }

    fn wait_for_text(&mut self, session: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body = self.eval(session, "document.body ? document.body.innerText : ''");
            if body.as_ref().and_then(Value::as_str).is_some_and(|b| b.contains(text)) {
                return;
            }
            assert!(Instant::now() < deadline, "the page never showed {text:?}: {body:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn idle_connections_are_capped_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    paused_approval(dir.path());
    let (mut child, url) = serve(dir.path(), &[]);
    let host = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    // Connections that never finish their headers: more than serve keeps.
    let idle: Vec<std::net::TcpStream> = (0..graflow_host::serve::MAX_CONNECTIONS + 50)
        .filter_map(|_| {
            let mut s = std::net::TcpStream::connect(&host).ok()?;
            let _ = write!(s, "GET / HTTP/1.1\r\nHost: {host}\r\n");
            Some(s)
        })
        .collect();
    assert!(idle.len() > graflow_host::serve::MAX_CONNECTIONS, "{} connected", idle.len());
    // One past the cap is closed without an answer.
    let mut extra = std::net::TcpStream::connect(&host).unwrap();
    let _ = write!(extra, "GET /api/requests HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = extra.read_to_string(&mut out);
    assert!(out.is_empty(), "answered past the cap: {out}");
    assert!(child.try_wait().unwrap().is_none(), "the server is still running");
    drop(idle);
    // Once they are gone, a request is answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answered = std::net::TcpStream::connect(&host).ok().and_then(|mut s| {
            write!(s, "GET /api/requests HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out.starts_with("HTTP/1.1 200"))
        });
        if answered == Some(true) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no answer after the idle connections closed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
}
