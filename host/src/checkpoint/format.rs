//! The `.ctx` file: the only place that knows bincode.
//!
//! Layout: the magic `GRAFLOW-CTX\n`, the schema version (u32 little endian),
//! the sha256 of the payload (32 bytes), then the payload: bincode 2 (standard
//! configuration) of [`Context`] through serde. The checksum is verified before
//! decoding, so a damaged file is reported, never half-decoded. A golden file
//! (`host/tests/golden/`) pins the encoding of this schema version.

use crate::engine::RunState;
use crate::json::Json;
use crate::model::Workflow;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The schema version written by this host, and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

const MAGIC: &[u8; 12] = b"GRAFLOW-CTX\n";
const HEADER: usize = 12 + 4 + 32;
/// Largest payload decoded (guards allocations driven by a hostile file).
const LIMIT: usize = 1 << 34;

/// Everything a resume needs: the workflow (graph, tasks, limits), the run state
/// (queue of full task specs, counters, completed tasks) and the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The checkpoint this context belongs to.
    pub checkpoint_id: String,
    /// The workflow as it was loaded, with its module table.
    pub workflow: Workflow,
    /// The run state at the task boundary.
    pub state: RunState,
    /// The channel's contents.
    pub channel: BTreeMap<String, Json>,
}

/// Why a `.ctx` file could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// Shorter than the header, or not starting with the magic.
    #[error("not a graflow context file (bad header)")]
    BadHeader,
    /// Written by another schema version.
    #[error("schema version {found}, but this graflow-host reads version {SCHEMA_VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The payload does not match its checksum: truncated or damaged.
    #[error("the payload is damaged or truncated (checksum mismatch)")]
    Checksum,
    /// The checksum matched but the payload does not decode.
    #[error("the payload does not decode: {0}")]
    Decode(String),
}

/// The borrowed form of [`Context`], for writing without copying the channel.
/// Its serde encoding is identical to [`Context`]'s (same fields, same order).
#[derive(Serialize)]
pub struct ContextRef<'a> {
    /// See [`Context::checkpoint_id`].
    pub checkpoint_id: &'a str,
    /// See [`Context::workflow`].
    pub workflow: &'a Workflow,
    /// See [`Context::state`].
    pub state: &'a RunState,
    /// See [`Context::channel`].
    pub channel: &'a BTreeMap<String, Json>,
}

/// Encode `ctx` as the bytes of a `.ctx` file.
pub fn encode(ctx: &Context) -> Vec<u8> {
    encode_ref(&ContextRef {
        checkpoint_id: &ctx.checkpoint_id,
        workflow: &ctx.workflow,
        state: &ctx.state,
        channel: &ctx.channel,
    })
}

/// Encode a borrowed context as the bytes of a `.ctx` file.
pub fn encode_ref(ctx: &ContextRef) -> Vec<u8> {
    let config = bincode::config::standard();
    let payload = bincode::serde::encode_to_vec(ctx, config).expect("run state encodes");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

/// Decode the bytes of a `.ctx` file.
pub fn decode(bytes: &[u8]) -> Result<Context, FormatError> {
    if bytes.len() < HEADER || &bytes[..12] != MAGIC {
        return Err(FormatError::BadHeader);
    }
    let version = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if version != SCHEMA_VERSION {
        return Err(FormatError::Version { found: version });
    }
    let payload = &bytes[HEADER..];
    if Sha256::digest(payload).as_slice() != &bytes[16..48] {
        return Err(FormatError::Checksum);
    }
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (ctx, used): (Context, usize) =
        bincode::serde::decode_from_slice(payload, config).map_err(|e| FormatError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(FormatError::Decode(format!("{} bytes left over after the context", payload.len() - used)));
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TaskSpec;
    use crate::model::*;

    /// A small, fixed context exercising every kind of field.
    fn sample() -> Context {
        let mut tasks = BTreeMap::new();
        for name in ["a", "b"] {
            tasks.insert(
                name.to_string(),
                TaskDef {
                    name: name.into(),
                    module: "m".into(),
                    export: name.into(),
                    inputs: vec!["x".into()],
                    max_cycles: 3,
                    retry: RetryPolicy { max_retries: 2, initial_ms: 10, factor: 2.0, max_ms: 100, jitter: true },
                    limits: Limits { memory_bytes: 1 << 20, timeout_ms: 500, fuel: Some(9) },
                    grants: Grants {
                        dirs: vec![DirGrant { host: "/data".into(), guest: "/in".into(), writable: false }],
                        env: vec!["HOME".into()],
                        stdio: Stdio::Inherit,
                    },
                },
            );
        }
        let mut graph = Graph::default();
        graph.nodes.insert("a".into(), Node::Task);
        graph.nodes.insert("b".into(), Node::Task);
        graph
            .nodes
            .insert("g".into(), Node::Group(GroupDef { members: vec!["a".into()], policy: GroupPolicy::AtLeast(1) }));
        graph.successors.insert("a".into(), vec!["b".into()]);
        let modules = BTreeMap::from([(
            "m".to_string(),
            ModuleRef { path: "/w/m.wasm".into(), sha256: "ab".repeat(32), size: 7 },
        )]);
        let workflow = Workflow {
            name: "w".into(),
            flow: "a >> b".into(),
            start: "a".into(),
            modules,
            tasks,
            graph,
            settings: RunSettings {
                max_steps: 100,
                parallelism: 2,
                bounds: HostBounds {
                    max_value_bytes: 1,
                    max_key_bytes: 2,
                    max_next_tasks: 3,
                    max_log_bytes: 4,
                    max_written_bytes: 5,
                    max_channel_bytes: 6,
                },
            },
        };
        let mut state = RunState::new(&workflow, "s1".into(), Json::parse(r#"{"x":1}"#).unwrap());
        state.mark_completed("a");
        state.steps = 1;
        state.cycle_counts.insert("a".into(), 1);
        state.last_result = Some(Json::parse("[1,2]").unwrap());
        state.queue.push_back(TaskSpec::for_node(&workflow, "b", None));
        let channel = BTreeMap::from([("a.__result__".to_string(), Json::parse("[1,2]").unwrap())]);
        Context { checkpoint_id: "s1_1_1".into(), workflow, state, channel }
    }

    fn golden_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ctx_v1.ctx")
    }

    #[test]
    fn round_trips() {
        let ctx = sample();
        assert_eq!(decode(&encode(&ctx)).unwrap(), ctx);
    }

    /// The encoding of schema version 1 must never change: a change here breaks
    /// every checkpoint already on disk. Regenerate only with a new version
    /// (`GRAFLOW_BLESS=1 cargo test golden`).
    #[test]
    fn golden_file_pins_the_format() {
        let path = golden_path();
        let bytes = encode(&sample());
        if std::env::var_os("GRAFLOW_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden = std::fs::read(&path).expect("the golden file exists (bless it once with GRAFLOW_BLESS=1)");
        assert_eq!(decode(&golden).unwrap(), sample(), "the golden file no longer decodes to the sample");
        assert_eq!(bytes, golden, "the encoding of schema version {SCHEMA_VERSION} changed");
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x55;
            assert!(decode(&damaged).is_err(), "flip at byte {i} went unnoticed");
        }
        for len in [0, 5, HEADER, bytes.len() - 1] {
            assert!(decode(&bytes[..len]).is_err(), "truncation to {len} went unnoticed");
        }
    }

    #[test]
    fn other_versions_are_refused_by_number() {
        let mut bytes = encode(&sample());
        bytes[12] = 9;
        assert_eq!(decode(&bytes), Err(FormatError::Version { found: 9 }));
    }
}
