//! The `.ctx` file: the only place that knows bincode.
//!
//! Layout (every schema version): the magic `GRAFLOW-CTX\n`, the schema
//! version (u32 little endian), a 16-byte checksum of the payload, the payload
//! length (u64 little endian), then the payload: bincode 2 (standard
//! configuration) of the version's context type (`schema/v1.rs`,
//! `schema/v2.rs`; `schema/v3.rs` for an increment) through serde. The
//! payload is streamed to the file.
//!
//! The checksum is XXH3-128 in schema 1 (detects damage, not tampering) and
//! the first 16 bytes of the payload's BLAKE3 hash from schema 2 on; the
//! commit record then holds the whole BLAKE3 hash and is signed. The payload is verified
//! before it is decoded. Golden files (`host/tests/golden/`) pin each
//! version's encoding.

use super::schema::{self, ContentDigest, Context, SchemaVersion, Values, v1, v2, v3};
use crate::engine::RunState;
use crate::json::Json;
use crate::model::Workflow;
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use xxhash_rust::xxh3::xxh3_128;

const MAGIC: &[u8; 12] = b"GRAFLOW-CTX\n";
const HEADER: usize = 12 + 4 + 16 + 8;

/// Why a `.ctx` file could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// Shorter than the header, or not starting with the magic.
    #[error("not a graflow context file (bad header)")]
    BadHeader,
    /// Written by a schema version this host does not read.
    #[error("schema version {found}, but this graflow-host reads versions {}", schema::readable_versions())]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The payload does not match its checksum: truncated or damaged.
    #[error("the payload is damaged or truncated (checksum mismatch)")]
    Checksum,
    /// The payload is intact but not the one the commit record names.
    #[error("the payload's digest is {found}, but the commit record names {expected}")]
    NotRecorded {
        /// What the record names.
        expected: ContentDigest,
        /// What the payload has.
        found: ContentDigest,
    },
    /// The checksum matched but the payload does not decode.
    #[error("the payload does not decode: {0}")]
    Decode(String),
    /// The payload decodes to something the host refuses.
    #[error("the context is not valid: {0}")]
    Invalid(#[from] schema::Invalid),
}

/// Passes bytes through to `inner`, hashing and counting them.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
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

/// Stream a schema-2 context (a full checkpoint) into `out` as a `.ctx` file
/// (no copy of the payload is held in memory); returns the payload's digest
/// (BLAKE3).
pub fn write<W: Write + Seek>(
    out: &mut W,
    checkpoint_id: &str,
    workflow: &Workflow,
    state: &RunState,
    channel: &BTreeMap<String, Json>,
) -> std::io::Result<ContentDigest> {
    let ctx = v2::ContextOut::new(checkpoint_id, workflow, state, channel);
    write_payload(out, SchemaVersion::V2, &ctx)
}

/// Stream a schema-3 increment into `out` as a `.ctx` file: the run state
/// whole and the channel keys `set` and `deleted` since its base (both
/// sorted by key; the workflow is the base's); returns the payload's digest
/// (BLAKE3).
pub fn write_increment<W: Write + Seek>(
    out: &mut W,
    checkpoint_id: &str,
    state: &RunState,
    set: &[(&str, &Json)],
    deleted: &[&str],
) -> std::io::Result<ContentDigest> {
    let delta = v3::DeltaOut::new(checkpoint_id, state, set, deleted);
    write_payload(out, SchemaVersion::V3, &delta)
}

fn write_payload<W: Write + Seek, T: serde::Serialize>(
    out: &mut W,
    version: SchemaVersion,
    payload: &T,
) -> std::io::Result<ContentDigest> {
    out.write_all(&[0; HEADER])?;
    let mut hashing =
        Hashing { inner: std::io::BufWriter::with_capacity(1 << 20, &mut *out), hasher: blake3::Hasher::new(), len: 0 };
    bincode::serde::encode_into_std_write(payload, &mut hashing, bincode::config::standard()).map_err(|e| match e {
        bincode::error::EncodeError::Io { inner, .. } => inner,
        other => std::io::Error::other(other.to_string()),
    })?;
    hashing.flush()?;
    let len = hashing.len;
    let digest: [u8; 32] = hashing.hasher.finalize().into();
    drop(hashing);
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&header(version, short(&digest), len))?;
    out.seek(SeekFrom::End(0))?;
    Ok(ContentDigest::Blake3(digest))
}

/// The header checksum of schema 2: the digest's first 16 bytes.
fn short(digest: &[u8; 32]) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(b)
}

/// Encode a schema-2 context in memory (tests, golden files).
pub fn encode(ctx: &Context) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    match write(&mut out, &ctx.checkpoint_id, &ctx.workflow, &ctx.state, &ctx.channel) {
        Ok(_) => out.into_inner(),
        // Writing to memory fails only if bincode refuses a value; the
        // engine's types hold none it refuses.
        Err(e) => {
            tracing::error!("encoding a context in memory failed: {e}");
            Vec::new()
        }
    }
}

fn header(version: SchemaVersion, checksum: u128, len: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..12].copy_from_slice(MAGIC);
    h[12..16].copy_from_slice(&version.number().to_le_bytes());
    h[16..32].copy_from_slice(&checksum.to_le_bytes());
    h[32..40].copy_from_slice(&len.to_le_bytes());
    h
}

/// The header's fields: version number, checksum, payload length.
fn read_header(bytes: &[u8]) -> Option<(u32, u128, u64)> {
    let h = bytes.get(..HEADER)?;
    if &h[..12] != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(h[12..16].try_into().ok()?);
    let checksum = u128::from_le_bytes(h[16..32].try_into().ok()?);
    let len = u64::from_le_bytes(h[32..40].try_into().ok()?);
    Some((version, checksum, len))
}

/// The payload checksum recorded in a `.ctx` file's header (not verified).
pub fn recorded_checksum(bytes: &[u8]) -> Option<u128> {
    read_header(bytes).map(|(_, c, _)| c)
}

/// Check a `.ctx` file's header and payload; the schema version and the
/// payload's digest (XXH3 for schema 1, BLAKE3 from schema 2 on).
pub fn verify(bytes: &[u8]) -> Result<(SchemaVersion, ContentDigest), FormatError> {
    let (number, checksum, len) = read_header(bytes).ok_or(FormatError::BadHeader)?;
    let version = SchemaVersion::from_number(number).ok_or(FormatError::Version { found: number })?;
    let payload = &bytes[HEADER..];
    if len != payload.len() as u64 {
        return Err(FormatError::Checksum);
    }
    let digest = match version {
        SchemaVersion::V1 => ContentDigest::Xxh3(xxh3_128(payload)),
        SchemaVersion::V2 | SchemaVersion::V3 => ContentDigest::Blake3(hash(payload)),
    };
    let matches = match digest {
        ContentDigest::Xxh3(c) => c == checksum,
        ContentDigest::Blake3(d) => short(&d) == checksum,
        ContentDigest::Sha256(_) => false,
    };
    if !matches {
        return Err(FormatError::Checksum);
    }
    Ok((version, digest))
}

/// BLAKE3 of `payload`, on every core for a large one.
fn hash(payload: &[u8]) -> [u8; 32] {
    if payload.len() >= 1 << 20 {
        blake3::Hasher::new().update_rayon(payload).finalize().into()
    } else {
        blake3::hash(payload).into()
    }
}

/// What a `.ctx` payload holds.
#[derive(Debug)]
pub enum Decoded {
    /// A whole context (schema 1 and 2).
    Full(Box<Context>),
    /// An increment (schema 3), to be applied to its base's channel.
    Increment(Box<v3::Delta>),
}

/// Verify and decode a full `.ctx` file whose commit record names `expected`
/// into the engine's types; stored JSON is checked unless `values` trusts it
/// (only ever for a payload that matched a signed record). An increment is
/// refused: it needs its base (see [`decode_shared`]).
pub fn decode(bytes: &[u8], values: Values, expected: &ContentDigest) -> Result<Context, FormatError> {
    match decode_in(bytes, None, values, expected)? {
        (_, Decoded::Full(ctx)) => Ok(*ctx),
        (_, Decoded::Increment(_)) => {
            Err(FormatError::Decode("an increment (schema 3) cannot be read without its base".into()))
        }
    }
}

/// [`decode`] of a file read into `bytes`, also giving its schema version
/// (the payload is hashed once); an increment is given as it is. Channel
/// values of a schema-2 or schema-3 payload share `bytes` instead of being
/// copied out of it. A full context is validated; an increment is, when
/// applied.
pub fn decode_shared(
    bytes: &bytes::Bytes,
    values: Values,
    expected: &ContentDigest,
) -> Result<(SchemaVersion, Decoded), FormatError> {
    decode_in(bytes, Some(bytes), values, expected)
}

/// Verify and decode the increment a durable record carries
/// (`records.rs`): the digest expected is its own header's, since the
/// record's tag, checked before, signs the bytes; values are trusted as a
/// signed checkpoint's are.
pub fn decode_record(bytes: &bytes::Bytes) -> Result<Decoded, FormatError> {
    let (_, found) = verify(bytes)?;
    decode_in(bytes, Some(bytes), Values::Trusted, &found).map(|(_, d)| d)
}

fn decode_in(
    bytes: &[u8],
    owner: Option<&bytes::Bytes>,
    values: Values,
    expected: &ContentDigest,
) -> Result<(SchemaVersion, Decoded), FormatError> {
    let (version, found) = verify(bytes)?;
    if &found != expected {
        return Err(FormatError::NotRecorded { expected: *expected, found });
    }
    let payload = &bytes[HEADER..];
    let decoded = decode_bounded(payload, owner, version, values)?;
    if let Decoded::Full(ctx) = &decoded {
        schema::validate(ctx)?;
    }
    Ok((version, decoded))
}

/// [`decode_payload`] with bincode's limit set from the payload's size: the
/// smallest of 64 KiB, 256 KiB, 1 MiB, ... 64 GiB that is at least
/// [`CLAIM_PER_BYTE`] times the payload's length.
///
/// Invariant: bincode counts against the limit, before reading them, the
/// width of every integer it decodes (a 1-byte varint counts 8 as a u64, 16 as
/// a u128) and the length of every string and byte buffer; through serde it
/// never gives a count back. So a valid payload counts at most
/// `CLAIM_PER_BYTE` per byte and always decodes, while a length prefix in a
/// crafted one (a 65-byte file saying "a string of 16 GiB follows") is refused
/// with `LimitExceeded` before an owned string of that length is allocated:
/// what a crafted file can make the decoder allocate up front is less than 64
/// times its size (4 times `CLAIM_PER_BYTE`, the tiers' step; at least 64 KiB).
fn decode_bounded(
    payload: &[u8],
    owner: Option<&bytes::Bytes>,
    version: SchemaVersion,
    values: Values,
) -> Result<Decoded, FormatError> {
    let config = bincode::config::standard();
    let claim = payload.len().saturating_mul(CLAIM_PER_BYTE);
    macro_rules! tiers {
        ($($bits:literal)*) => {$(
            if claim <= 1usize << $bits {
                return decode_payload(payload, owner, version, values, config.with_limit::<{ 1usize << $bits }>());
            }
        )*};
    }
    tiers!(16 18 20 22 24 26 28 30 32 34);
    decode_payload(payload, owner, version, values, config.with_limit::<{ 1usize << 36 }>())
}

/// The most bincode counts against its limit per byte of a payload (a u128
/// varint of one byte); see [`decode_bounded`].
const CLAIM_PER_BYTE: usize = 16;

fn decode_payload<C: bincode::config::Config>(
    payload: &[u8],
    owner: Option<&bytes::Bytes>,
    version: SchemaVersion,
    values: Values,
    config: C,
) -> Result<Decoded, FormatError> {
    Ok(match version {
        SchemaVersion::V1 => Decoded::Full(Box::new(whole::<v1::ContextV1, C>(payload, config)?.upgrade(values)?)),
        SchemaVersion::V2 => {
            Decoded::Full(Box::new(whole::<v2::ContextIn, C>(payload, config)?.into_context(values, owner)?))
        }
        SchemaVersion::V3 => {
            Decoded::Increment(Box::new(whole::<v3::DeltaIn, C>(payload, config)?.into_delta(values, owner)?))
        }
    })
}

/// `payload` decoded as one `T` that uses all of it.
fn whole<'p, T: serde::Deserialize<'p>, C: bincode::config::Config>(
    payload: &'p [u8],
    config: C,
) -> Result<T, FormatError> {
    let (value, used): (T, usize) = bincode::serde::borrow_decode_from_slice(payload, config).map_err(|e| match e {
        bincode::error::DecodeError::LimitExceeded => FormatError::Decode(format!(
            "a length in it claims more than the payload's {} bytes can hold (the decoder's allocation limit)",
            payload.len()
        )),
        e => FormatError::Decode(e.to_string()),
    })?;
    if used != payload.len() {
        return Err(FormatError::Decode(format!("{} bytes left over after the context", payload.len() - used)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256;
    use crate::engine::{Origin, TaskSpec};
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
        let digest: Sha256 = "ab".repeat(32).parse().unwrap();
        let modules =
            BTreeMap::from([("m".to_string(), ModuleRef { path: "/w/m.wasm".into(), sha256: digest, size: 7 })]);
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
                    ..HostBounds::default()
                },
                keep_checkpoints: None,
                keep_iteration_results: crate::model::DEFAULT_KEEP_ITERATION_RESULTS,
            },
            outbound: Default::default(),
        };
        let mut state = RunState::new(&workflow, "s1".into(), Json::parse(r#"{"x":1}"#).unwrap());
        state.mark_completed("a");
        state.last_cycle = 1;
        state.steps = 1;
        state.cycle_counts.insert("a".into(), 1);
        state.last_result = Some(Json::parse("[1,2]").unwrap());
        state.queue.push_back(TaskSpec::for_node(&workflow, "b", None));
        let channel = BTreeMap::from([("a.__result__".to_string(), Json::parse("[1,2]").unwrap())]);
        Context { checkpoint_id: "s1_1_1".into(), workflow, state, channel }
    }

    /// [`sample`] with what only schema 2 can hold.
    fn sample_v2() -> Context {
        let mut ctx = sample();
        let b = &mut ctx.workflow.settings.bounds;
        (b.max_queued_tasks, b.max_queued_input_bytes, b.max_checkpoints, b.max_checkpoint_bytes, b.max_module_bytes) =
            (7, 8, 9, 10, 11);
        let mut iteration = TaskSpec::for_node(&ctx.workflow, "a", Some(Json::parse(r#"{"n":2}"#).unwrap()));
        (iteration.id, iteration.origin) = ("a@2".into(), Origin::Iteration { cycle: 2 });
        ctx.state.queue.push_back(iteration);
        ctx
    }

    fn dec(bytes: &[u8], values: Values) -> Result<Context, FormatError> {
        verify(bytes).and_then(|(_, digest)| decode(bytes, values, &digest))
    }

    fn golden(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
    }

    #[test]
    fn round_trips() {
        let ctx = sample_v2();
        assert_eq!(dec(&encode(&ctx), Values::Check).unwrap(), ctx);
        assert_eq!(dec(&encode(&ctx), Values::Trusted).unwrap(), ctx);
    }

    /// Schema 1 as graflow-host 0.1 wrote it still decodes, upgraded.
    #[test]
    fn golden_v1_decodes_upgraded() {
        let golden = std::fs::read(golden("ctx_v1.ctx")).unwrap();
        assert_eq!(dec(&golden, Values::Trusted).unwrap(), sample(), "the v1 golden file no longer decodes");
    }

    /// The encoding of schema version 2 must never change: a change here breaks
    /// every checkpoint already on disk. Regenerate only for a new version
    /// (`GRAFLOW_BLESS=1 cargo test golden`).
    #[test]
    fn golden_file_pins_the_format() {
        let path = golden("ctx_v2.ctx");
        let bytes = encode(&sample_v2());
        if std::env::var("GRAFLOW_BLESS").as_deref() == Ok("1") {
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden = std::fs::read(&path).expect("the golden file exists (bless it once with GRAFLOW_BLESS=1)");
        assert_eq!(dec(&golden, Values::Check).unwrap(), sample_v2(), "the golden file no longer decodes");
        assert_eq!(bytes, golden, "the encoding of schema version 2 changed");
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let bytes = encode(&sample_v2());
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x55;
            assert!(dec(&damaged, Values::Check).is_err(), "flip at byte {i} went unnoticed");
        }
        for len in [0, 5, HEADER, bytes.len() - 1] {
            assert!(dec(&bytes[..len], Values::Check).is_err(), "truncation to {len} went unnoticed");
        }
    }

    /// An increment over `base` turning its channel into `now`'s, encoded.
    fn increment(now: &Context, base: &Context) -> Vec<u8> {
        let (set, deleted) = v3::changes(&base.channel, &now.channel);
        let mut out = std::io::Cursor::new(Vec::new());
        write_increment(&mut out, &now.checkpoint_id, &now.state, &set, &deleted).unwrap();
        out.into_inner()
    }

    /// [`sample_v2`] one step later: a key changed, one added, one deleted.
    fn later(base: &Context) -> Context {
        let mut now = base.clone();
        now.checkpoint_id = "s1_2_1".into();
        now.state.steps = 2;
        now.state.mark_completed("b");
        now.channel.remove("a.__result__");
        now.channel.insert("b.__result__".into(), Json::parse(r#"{"k":"v"}"#).unwrap());
        now.channel.insert("n".into(), Json::parse("3").unwrap());
        now
    }

    fn dec_increment(bytes: &[u8], base: &Context, values: Values) -> Result<Context, FormatError> {
        let (_, digest) = verify(bytes)?;
        let owned = bytes::Bytes::copy_from_slice(bytes);
        match decode_shared(&owned, values, &digest)? {
            (SchemaVersion::V3, Decoded::Increment(delta)) => {
                Ok(delta.apply(base.workflow.clone(), base.channel.clone())?)
            }
            (version, _) => panic!("an increment decoded as a full context of version {version}"),
        }
    }

    #[test]
    fn an_increment_applied_to_its_base_is_the_whole_context() {
        let base = sample_v2();
        let now = later(&base);
        let bytes = increment(&now, &base);
        assert_eq!(dec_increment(&bytes, &base, Values::Check).unwrap(), now);
        assert_eq!(dec_increment(&bytes, &base, Values::Trusted).unwrap(), now);
        let err = dec(&bytes, Values::Check).unwrap_err();
        assert!(err.to_string().contains("cannot be read without its base"), "{err}");
        // Over another base, a deleted key it lacks is refused.
        let mut other = base.clone();
        other.channel.clear();
        let err = dec_increment(&bytes, &other, Values::Check).unwrap_err();
        assert!(err.to_string().contains("deletes channel key 'a.__result__', which its base lacks"), "{err}");
    }

    #[test]
    fn every_single_byte_flip_of_an_increment_is_detected() {
        let base = sample_v2();
        let now = later(&base);
        let bytes = increment(&now, &base);
        let (_, digest) = verify(&bytes).unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x55;
            let owned = bytes::Bytes::from(damaged);
            assert!(decode_shared(&owned, Values::Check, &digest).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    /// The encoding of an increment (schema 3) must never change either.
    #[test]
    fn golden_increment_pins_the_format() {
        let path = golden("ctx_v3.ctx");
        let base = sample_v2();
        let bytes = increment(&later(&base), &base);
        if std::env::var("GRAFLOW_BLESS").as_deref() == Ok("1") {
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden = std::fs::read(&path).expect("the golden file exists (bless it once with GRAFLOW_BLESS=1)");
        assert_eq!(dec_increment(&golden, &base, Values::Check).unwrap(), later(&base));
        assert_eq!(bytes, golden, "the encoding of schema version 3 changed");
    }

    #[test]
    fn other_versions_are_refused_naming_both() {
        let mut bytes = encode(&sample_v2());
        bytes[12] = 9;
        let err = dec(&bytes, Values::Check).unwrap_err();
        assert_eq!(err, FormatError::Version { found: 9 });
        assert_eq!(err.to_string(), "schema version 9, but this graflow-host reads versions 1 to 3");
    }

    #[test]
    fn unchecked_values_and_escaping_ids_are_refused() {
        let mut ctx = sample_v2();
        ctx.channel.insert("deep".into(), Json::trusted(&format!("{}{}", "[".repeat(300), "]".repeat(300))));
        let bytes = encode(&ctx);
        assert!(dec(&bytes, Values::Check).unwrap_err().to_string().contains("channel key 'deep'"));
        let mut ctx = sample_v2();
        ctx.state.session_id = "../../etc".into();
        assert!(dec(&encode(&ctx), Values::Trusted).unwrap_err().to_string().contains("session id"));
        let mut ctx = sample_v2();
        ctx.workflow
            .graph
            .nodes
            .insert("g".into(), Node::Group(GroupDef { members: vec!["g".into()], policy: GroupPolicy::Strict }));
        assert!(dec(&encode(&ctx), Values::Trusted).unwrap_err().to_string().contains("group 'g' contains itself"));
    }

    /// A length prefix claiming far more than the file holds is refused by
    /// the allocation limit before anything is allocated, in every schema.
    #[test]
    fn a_length_prefix_past_the_file_is_refused_before_allocating() {
        for version in [SchemaVersion::V1, SchemaVersion::V2, SchemaVersion::V3] {
            let mut payload = vec![0xFD];
            payload.extend_from_slice(&((1u64 << 34) - 8).to_le_bytes());
            payload.extend_from_slice(&[b'x'; 16]);
            let checksum = match version {
                SchemaVersion::V1 => xxh3_128(&payload),
                _ => short(&hash(&payload)),
            };
            let mut bytes = header(version, checksum, payload.len() as u64).to_vec();
            bytes.extend_from_slice(&payload);
            let (_, digest) = verify(&bytes).unwrap();
            let err = decode_shared(&bytes::Bytes::from(bytes), Values::Check, &digest).unwrap_err();
            assert!(err.to_string().contains("claims more than the payload's 25 bytes can hold"), "{version:?}: {err}");
        }
    }

    /// `payload` framed as a `.ctx` file of `version` whose header checksum
    /// matches it: what a forger without the signing key can make.
    fn framed(version: SchemaVersion, payload: &[u8]) -> bytes::Bytes {
        let mut bytes = header(version, short(&hash(payload)), payload.len() as u64).to_vec();
        bytes.extend_from_slice(payload);
        bytes::Bytes::from(bytes)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// A full context or an increment whose payload is changed and whose
        /// header is made to match decodes (and applies) or is refused,
        /// never panics: what an unsigned, forged checkpoint can reach.
        #[test]
        fn forged_payloads_decode_or_fail_without_panicking(
            increment_file in proptest::bool::ANY,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            patch in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..6),
            cut in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            let base = sample_v2();
            let (version, file) = if increment_file {
                (SchemaVersion::V3, increment(&later(&base), &base))
            } else {
                (SchemaVersion::V2, encode(&base))
            };
            let mut payload = file[HEADER..].to_vec();
            let i = at.index(payload.len());
            for (k, b) in patch.iter().enumerate() {
                if let Some(slot) = payload.get_mut(i + k) {
                    *slot = *b;
                }
            }
            if let Some(cut) = cut {
                payload.truncate(cut.index(payload.len()));
            }
            let bytes = framed(version, &payload);
            let (_, digest) = verify(&bytes).unwrap();
            for values in [Values::Check, Values::Trusted] {
                match decode_shared(&bytes, values, &digest) {
                    Ok((_, Decoded::Increment(delta))) => {
                        let _ = delta.apply(base.workflow.clone(), base.channel.clone());
                    }
                    Ok((_, Decoded::Full(_))) | Err(_) => {}
                }
            }
        }
    }

    /// Valid contexts and increments of many tiny entries, the most the
    /// decoder counts per byte, decode at every size, tier edges included.
    #[test]
    fn dense_valid_payloads_decode_under_the_limit() {
        for n in [100, 2_000, 5_000, 6_000, 20_000, 80_000] {
            let mut base = sample_v2();
            for i in 0..n {
                base.channel.insert(format!("k{i}"), Json::parse("1").unwrap());
            }
            let bytes = encode(&base);
            assert_eq!(dec(&bytes, Values::Check).unwrap(), base, "{n} entries, {} bytes", bytes.len());
            let mut now = base.clone();
            now.channel.retain(|k, _| !k.starts_with('k'));
            now.checkpoint_id = "s1_2_1".into();
            let inc = increment(&now, &base);
            assert_eq!(dec_increment(&inc, &base, Values::Check).unwrap(), now, "{n} deletions, {} bytes", inc.len());
        }
    }
}
