//! graflow-host: run workflows of WebAssembly-sandboxed tasks, with checkpoint and
//! resume.
//!
//! The data flow is one-directional: [`model`] parses and validates a workflow file
//! into an immutable [`model::Workflow`]; a [`session::Session`] starts or resumes
//! a run of it (sizing the wasm engine once, loading module code from the
//! [`module_store`], verifying and signing checkpoints); [`engine`] executes it
//! against an [`engine::TaskRunner`] ([`sandbox`], the wasmtime runner); and
//! [`checkpoint`] persists run state through its own versioned schema. The engine
//! does not know wasmtime: its semantics are tested with an in-process fake runner.

#![deny(missing_docs)]

pub mod build;
pub mod channel;
pub mod checkpoint;
pub mod digest;
pub mod distributed;
pub mod engine;
pub mod feedback;
pub mod files;
pub mod journal;
pub mod json;
pub mod model;
pub mod module_store;
pub mod outbound;
pub mod report;
pub mod sandbox;
pub mod serve;
pub mod session;
pub mod signals;
pub mod storage;
pub mod telemetry;

pub use json::Json;

/// `url` without its password (`scheme://user:***@host...`; a lone
/// userinfo, which may be a token, becomes `***`), for messages and logs.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => format!("{}***{}", &url[..scheme + 3], &url[at..]),
            }
        }
        _ => url.to_string(),
    }
}

/// An error and its sources, joined by `: ` (what `{:#}` prints for anyhow),
/// for places that keep an error as text.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
