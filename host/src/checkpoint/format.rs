//! The `.ctx` file: the only place that knows bincode.
//!
//! Layout: the magic `GRAFLOW-CTX\n`, the schema version (u32 little endian),
//! the XXH3-128 checksum of the payload (16 bytes, little endian), the payload
//! length (u64 little endian), then the payload: bincode 2 (standard
//! configuration) of [`Context`] through serde. The payload is streamed to the
//! file; the checksum detects damage and truncation (it is not a signature:
//! module code is identified by sha256, see the checkpoint module). The checksum is verified before
//! decoding, so a damaged file is reported, never half-decoded. A golden file
//! (`host/tests/golden/`) pins the encoding of this schema version.

use crate::engine::RunState;
use crate::json::Json;
use crate::model::Workflow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

/// The schema version written by this host, and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

const MAGIC: &[u8; 12] = b"GRAFLOW-CTX\n";
const HEADER: usize = 12 + 4 + 16 + 8;
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
    let r = ContextRef {
        checkpoint_id: &ctx.checkpoint_id,
        workflow: &ctx.workflow,
        state: &ctx.state,
        channel: &ctx.channel,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    write(&mut out, &r).expect("writing to memory does not fail");
    out.into_inner()
}

/// Passes bytes through to `inner`, hashing and counting them.
struct Hashing<W> {
    inner: W,
    hasher: Xxh3,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Stream `ctx` into `out` as a `.ctx` file (no copy of the payload is held in
/// memory); returns the payload checksum.
pub fn write<W: Write + Seek>(out: &mut W, ctx: &ContextRef) -> std::io::Result<u128> {
    out.write_all(&[0; HEADER])?;
    let mut hashing =
        Hashing { inner: std::io::BufWriter::with_capacity(1 << 20, &mut *out), hasher: Xxh3::new(), len: 0 };
    bincode::serde::encode_into_std_write(ctx, &mut hashing, bincode::config::standard())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    hashing.flush()?;
    let (checksum, len) = (hashing.hasher.digest128(), hashing.len);
    drop(hashing);
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&header(checksum, len))?;
    out.seek(SeekFrom::End(0))?;
    Ok(checksum)
}

fn header(checksum: u128, len: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..12].copy_from_slice(MAGIC);
    h[12..16].copy_from_slice(&SCHEMA_VERSION.to_le_bytes());
    h[16..32].copy_from_slice(&checksum.to_le_bytes());
    h[32..40].copy_from_slice(&len.to_le_bytes());
    h
}

/// The payload checksum recorded in a `.ctx` file's header (not verified).
pub fn recorded_checksum(bytes: &[u8]) -> Option<u128> {
    (bytes.len() >= HEADER && &bytes[..12] == MAGIC)
        .then(|| u128::from_le_bytes(bytes[16..32].try_into().expect("16 bytes")))
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
    let len = u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes"));
    let checksum = u128::from_le_bytes(bytes[16..32].try_into().expect("16 bytes"));
    if len != payload.len() as u64 || xxh3_128(payload) != checksum {
        return Err(FormatError::Checksum);
    }
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (ctx, used): (Stored, usize) =
        bincode::serde::borrow_decode_from_slice(payload, config).map_err(|e| FormatError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(FormatError::Decode(format!("{} bytes left over after the context", payload.len() - used)));
    }
    Ok(Context {
        checkpoint_id: ctx.checkpoint_id,
        workflow: ctx.workflow,
        state: ctx.state,
        channel: ctx.channel.into_iter().map(|(k, v)| (k, v.0)).collect(),
    })
}

/// [`Context`] as decoded: channel values are taken as JSON without parsing
/// them again. They were checked when they entered the host, and the payload
/// checksum has just been verified; re-validating 100 MB of values would
/// double the cost of a resume.
#[derive(Deserialize)]
struct Stored {
    checkpoint_id: String,
    workflow: Workflow,
    state: RunState,
    channel: BTreeMap<String, Checked>,
}

/// A channel value from a verified payload, copied once out of the payload.
struct Checked(Json);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        Ok(Checked(Json::from_verified(<&'de str>::deserialize(d)?)))
    }
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
                    reuse_instance: true,
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
