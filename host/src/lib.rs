//! graflow-host: run workflows of WebAssembly-sandboxed tasks, with checkpoint and
//! resume.
//!
//! The data flow is one-directional: [`model`] parses and validates a workflow file
//! into an immutable [`model::Workflow`]; [`engine`] executes it against a
//! [`engine::TaskRunner`], keeping all run state as plain serde data
//! ([`engine::RunState`]); [`sandbox`] is the wasmtime runner (one place builds the
//! wasmtime configuration); [`checkpoint`] persists run state. The engine does
//! not know wasmtime: its semantics are tested with an in-process fake runner.

#![deny(missing_docs)]

pub mod channel;
pub mod checkpoint;
pub mod engine;
pub mod json;
pub mod model;
pub mod sandbox;

#[cfg(test)]
mod robustness;

pub use json::Json;
