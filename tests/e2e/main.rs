//! End-to-end tests: real guest components through the real sandbox, driven
//! through the `graflow-host` binary or the library. Guests are built by
//! `make guests` (`make test` does it first).

mod authoring;
mod bucket;
mod checkpoint;
mod cli;
mod control;
mod declared;
mod distributed;
mod errors;
mod examples;
mod feedback;
mod hardening;
mod hostile;
mod netserver;
mod network;
mod parity;
mod properties;
mod report;
mod sandbox;
mod serve;
mod support;
mod telemetry;
mod trust;
mod upgrade;
