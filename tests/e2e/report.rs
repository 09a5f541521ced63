//! `--report run.html`: one self-contained page, opened in headless Chromium.

use crate::support::*;
use serde_json::json;
use std::path::Path;

fn headless(browser: &str, profile: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_report_shows_the_graph_and_the_timeline() {
    let wf = workflow(&format!(
        "[workflow]\nflow = \"prep >> (ok | flaky) >> loop\"\nmax_retries = 1\nbackoff = {{ initial_ms = 1 }}\n{}[tasks.loop]\nexport = \"script\"\nmax_cycles = 3\n",
        scripted(&["prep", "ok", "flaky"])
    ));
    let input = scripts(json!({
        "prep": [{"op": "checkpoint"}],
        "flaky": [{"op": "retryable", "message": "once", "attempt": 0}],
        "loop": [{"op": "iterate_below", "cycles": 3}]
    }));
    let out = wf.run(&input, &["--report", "run.html"]);
    out.ok();
    let html = std::fs::read_to_string(wf.dir.path().join("run.html")).unwrap();
    for needle in [
        "<section id=\"graph\">",
        "data-task=\"prep\"",
        "rect class=\"node completed\"",
        "rect class=\"group\"",
        "<section id=\"timeline\">",
        "rect class=\"bar retried\"",
        "loop@3",
        "line class=\"cp\"",
    ] {
        assert!(html.contains(needle), "{needle:?} missing from the report");
    }
    // Sub-millisecond attempts keep their microseconds (these no-op tasks
    // take well under a millisecond each): never "0 ms".
    assert!(html.contains(" µs</td>"), "no execution time in microseconds");
    assert!(!html.contains(">0 ms<") && !html.contains(": 0 ms,"), "a time shown as 0 ms");
    // No script, and nothing fetched: the only URL is the SVG namespace, a
    // name that is never loaded.
    assert!(!html.to_ascii_lowercase().contains("<script"), "no script");
    let rest = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for network in ["http:", "https:", "=\"//", "src=", "href=", "@import", "<link", "<iframe", "<object", "<embed"] {
        assert!(!rest.contains(network), "no network reference: {network:?} in the report");
    }
    assert!(rest.match_indices("url(").all(|(i, _)| rest[i + 4..].starts_with('#')), "url() names only #ids");
    let Some(browser) = chromium("the HTML checks still ran") else { return };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", wf.dir.path().join("run.html").display());
    let dom = headless(browser, profile.path(), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("data-task=\"flaky\"") && dom.contains("class=\"bar completed\""), "rendered DOM: {dom}");
    let shot = wf.dir.path().join("shot.png");
    headless(browser, profile.path(), &[&format!("--screenshot={}", shot.display()), "--window-size=1100,900", &url]);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "the screenshot has {size} bytes");
}
