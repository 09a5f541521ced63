//! The durable record: with `--write-behind`, every due task boundary of a
//! run is first appended to the run's record log and synced (one small
//! append and `fdatasync`), before the next task starts; checkpoints are
//! written behind the run from the same boundaries, and a resume replays the
//! records that follow the checkpoint it loads.
//!
//! A log is `<dir>/<session>/<log id>.records`, written by one run only (its
//! id is random, made when the run starts writing behind); every checkpoint
//! that run writes names it in its signed commit record (`records`). Layout:
//! the header [`MAGIC`], then frames of `u32` body length (little-endian),
//! the body, the body's BLAKE3 hash (32 bytes: a frame an interrupted append
//! left is told from a changed one by it) and the body's HMAC-SHA256 under
//! the checkpoint key (64 hex bytes, over [`TAG_CONTEXT`], the log id, a
//! newline and the body). A body
//! is the boundary's `u64` steps before (the boundary the record follows) and
//! after, then a schema-3 increment (`format::write_increment`): the run
//! state whole and the channel keys set and deleted since the boundary it
//! follows.
//!
//! Invariants: records of one log follow each other (each one's `steps
//! before` is the previous one's `steps after`, or the boundary of a
//! checkpoint the run wrote synchronously in between); a record is applied
//! only over the state it follows, so a replay stops at the first record that
//! does not follow, and applies nothing it cannot verify. A torn tail (a
//! crash during the last append, which was never acknowledged: frames whose
//! hash does not match, with no whole frame after them) is ignored; a whole
//! frame whose tag does not verify, or a damaged one before a whole one, is
//! refused, naming the log.

use super::format::{self, Decoded};
use super::schema::v3;
use super::{CheckpointError, SigningKey};
use crate::engine::RunState;
use crate::json::Json;
use crate::model::Workflow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first bytes of a record log.
pub const MAGIC: &[u8; 18] = b"GRAFLOW-RECORDS 1\n";

/// What a record's tag signs before the log id and the body.
pub const TAG_CONTEXT: &[u8] = b"graflow-record-v1\n";

/// The extension of record logs.
pub const RECORDS_EXT: &str = "records";

/// Largest record log a resume reads; past it the resume fails naming it.
/// Every log this host writes fits: a log is replaced once it holds
/// [`ROTATE_RECORD_LOG_BYTES`], and one record is at most `u32::MAX` bytes.
pub const MAX_RECORD_LOG_BYTES: u64 = ROTATE_RECORD_LOG_BYTES + (4 << 30) + 4096;

/// A run starts a new log (over a checkpoint written at that boundary) once
/// its log holds this many bytes, so a long run's log stays bounded.
pub const ROTATE_RECORD_LOG_BYTES: u64 = 64 << 20;

const SUM: usize = 32;
const TAG: usize = 64;

/// The bytes that follow a frame's body: its hash and its tag.
pub const FRAME_TRAILER: usize = SUM + TAG;

/// The log `log` of the session folder `folder`.
pub fn path_of(folder: &Path, log: &str) -> PathBuf {
    folder.join(format!("{log}.{RECORDS_EXT}"))
}

/// True for a log id this host makes (16 lowercase hex digits): anything
/// else named by a commit record is refused before it becomes a path.
pub fn is_log_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh log id.
pub fn new_log_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// What a record's tag signs: [`TAG_CONTEXT`], the log id, a newline, the body.
fn signed(log: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(TAG_CONTEXT.len() + log.len() + 1 + body.len());
    message.extend_from_slice(TAG_CONTEXT);
    message.extend_from_slice(log.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body);
    message
}

fn tag(key: &SigningKey, log: &str, body: &[u8]) -> Vec<u8> {
    key.sign(&signed(log, body)).into_bytes()
}

fn verifies(key: &SigningKey, log: &str, body: &[u8], tag: &[u8]) -> bool {
    std::str::from_utf8(tag).is_ok_and(|tag| key.verify(&signed(log, body), tag))
}

/// The record log a run appends to. Not shared: one run, one log.
pub struct RecordLog {
    path: PathBuf,
    id: String,
    key: SigningKey,
    file: Option<std::fs::File>,
    bytes: u64,
    /// The boundary the next record follows, and the channel there.
    prev_steps: u64,
    prev: BTreeMap<String, Json>,
}

impl std::fmt::Debug for RecordLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLog").field("path", &self.path).field("bytes", &self.bytes).finish()
    }
}

impl RecordLog {
    /// The log `id` in the session folder `folder`, signed with `key`; its
    /// first record will follow the boundary at `steps` with `channel` (a
    /// checkpoint the run wrote there). The file is made at the first
    /// append.
    pub fn new(folder: &Path, id: String, key: SigningKey, steps: u64, channel: BTreeMap<String, Json>) -> RecordLog {
        RecordLog { path: path_of(folder, &id), id, key, file: None, bytes: 0, prev_steps: steps, prev: channel }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written to it.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next record follows the boundary at `steps` with `channel` (a
    /// checkpoint written there out of turn: a task's request, say).
    pub fn rebase(&mut self, steps: u64, channel: BTreeMap<String, Json>) {
        self.prev_steps = steps;
        self.prev = channel;
    }

    /// Append the boundary `state` with `channel` and make it durable (one
    /// append and `fdatasync`; the file's creation, the first time, also
    /// syncs its folder). Returns the bytes appended.
    pub fn append(&mut self, state: &RunState, channel: BTreeMap<String, Json>) -> Result<u64, CheckpointError> {
        let io = |source: std::io::Error| CheckpointError::Io { path: self.path.clone(), source };
        let body = {
            let (set, deleted) = v3::changes(&self.prev, &channel);
            let mut ctx = std::io::Cursor::new(Vec::new());
            let id = format!("{}_{}", self.id, state.steps);
            format::write_increment(&mut ctx, &id, state, &set, &deleted).map_err(io)?;
            let ctx = ctx.into_inner();
            let mut body = Vec::with_capacity(16 + ctx.len());
            body.extend_from_slice(&self.prev_steps.to_le_bytes());
            body.extend_from_slice(&state.steps.to_le_bytes());
            body.extend_from_slice(&ctx);
            body
        };
        let len = u32::try_from(body.len()).map_err(|_| {
            io(std::io::Error::other(format!("a record of {} bytes is larger than a record log holds", body.len())))
        })?;
        let mut frame = Vec::with_capacity(4 + body.len() + FRAME_TRAILER);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&body);
        frame.extend_from_slice(blake3::hash(&body).as_bytes());
        frame.extend_from_slice(&tag(&self.key, &self.id, &body));
        if self.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            // Private like the checkpoint files (it holds channel values);
            // never an existing file or a link.
            let mut file =
                std::fs::OpenOptions::new().create_new(true).append(true).mode(0o600).open(&self.path).map_err(io)?;
            file.write_all(MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            let folder = self.path.parent().unwrap_or(Path::new("."));
            super::fsutil::sync_dir(folder).map_err(io)?;
            self.bytes = MAGIC.len() as u64;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else { unreachable!("the log file was just opened") };
        file.write_all(&frame).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.bytes += frame.len() as u64;
        self.prev_steps = state.steps;
        self.prev = channel;
        Ok(frame.len() as u64)
    }
}

impl crate::engine::RecordSink for RecordLog {
    fn append(&mut self, state: &RunState, channel: BTreeMap<String, Json>) -> Result<u64, crate::engine::SinkError> {
        Ok(RecordLog::append(self, state, channel)?)
    }
    fn rebase(&mut self, steps: u64, channel: BTreeMap<String, Json>) {
        RecordLog::rebase(self, steps, channel);
    }
    fn bytes(&self) -> u64 {
        RecordLog::bytes(self)
    }
    fn path(&self) -> &Path {
        RecordLog::path(self)
    }
}

/// The first frame of `rest`: its body, hash, tag and what follows; `None`
/// if `rest` is shorter than the frame its length field announces.
type Frame<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a [u8]);

fn frame_of(rest: &[u8]) -> Option<Frame<'_>> {
    let len = rest.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
    let end = len.checked_add(4)?.checked_add(FRAME_TRAILER)?;
    let frame = rest.get(4..end)?;
    let (body, trailer) = frame.split_at(len);
    let (sum, sig) = trailer.split_at(SUM);
    Some((body, sum, sig, &rest[end..]))
}

/// True if `body` is whole: its hash is `sum`.
fn whole(body: &[u8], sum: &[u8]) -> bool {
    blake3::hash(body).as_bytes().as_slice() == sum
}

/// What a replay applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The log read.
    pub path: PathBuf,
    /// Records applied.
    pub records: u64,
    /// Completed tasks after the last one applied.
    pub steps: u64,
}

fn refused(path: &Path, message: String) -> CheckpointError {
    CheckpointError::Json { path: path.to_path_buf(), message }
}

/// Apply to `state` and `channel` (a checkpoint of `workflow` just loaded)
/// the records of the log `log` in `folder` that follow it, in order,
/// verified with `key`. `None` when the log does not exist (the run wrote no
/// record after the checkpoint, or the log was moved away).
pub fn replay(
    folder: &Path,
    log: &str,
    key: &SigningKey,
    workflow: &Workflow,
    state: &mut RunState,
    channel: &mut BTreeMap<String, Json>,
) -> Result<Option<Replayed>, CheckpointError> {
    if !is_log_id(log) {
        return Err(refused(folder, format!("the commit record names the record log '{log}', which is not a log id")));
    }
    let path = path_of(folder, log);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(CheckpointError::NotRegular { path });
    }
    let bytes = match crate::files::read_bounded(&path, MAX_RECORD_LOG_BYTES, "MAX_RECORD_LOG_BYTES") {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(CheckpointError::Read(Box::new(e))),
    };
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(refused(&path, "not a graflow record log (bad header)".into()));
    };
    let move_away = "resume with --without-records to resume the checkpoint's own state";
    let (mut cur, mut applied) = (state.steps, 0u64);
    let mut wf = workflow.clone();
    let mut index = 0u64;
    while !rest.is_empty() {
        index += 1;
        // A frame cut short is the tail of an append a crash interrupted:
        // it was never acknowledged, and nothing follows it.
        let Some((body, sum, sig, next)) = frame_of(rest) else { break };
        rest = next;
        if !whole(body, sum) {
            // An append a crash cut short (only the last one can be: each
            // returns after its sync) may leave zeros or garbage past the
            // last good record, and no whole frame after it. A whole frame
            // after this one means this one was damaged.
            let mut after = rest;
            while let Some((b, s, _, n)) = frame_of(after) {
                if whole(b, s) {
                    return Err(refused(&path, format!("record {index} is damaged; {move_away}")));
                }
                after = n;
            }
            tracing::warn!(
                "{}: the tail from record {index} on is cut short (an interrupted append): ignored",
                path.display()
            );
            break;
        }
        if !verifies(key, log, body, sig) {
            return Err(refused(
                &path,
                format!("record {index} does not verify with this machine's checkpoint key; {move_away}"),
            ));
        }
        if body.len() < 16 {
            return Err(refused(&path, format!("record {index} is too short")));
        }
        let before = u64::from_le_bytes(body[..8].try_into().unwrap_or([0; 8]));
        let after = u64::from_le_bytes(body[8..16].try_into().unwrap_or([0; 8]));
        // Records before the checkpoint. A record of the checkpoint's own
        // step that follows that step (a retry's boundary: the state
        // changed, the channel did not) applies.
        if after < cur || (after == cur && before != cur) {
            continue;
        }
        if before != cur {
            tracing::info!(
                "{}: record {index} follows step {before}, not step {cur}: the records after step {cur} are not replayed",
                path.display()
            );
            break;
        }
        let ctx = bytes::Bytes::copy_from_slice(&body[16..]);
        let decoded =
            format::decode_record(&ctx).map_err(|e| refused(&path, format!("record {index}: {e}; {move_away}")))?;
        let Decoded::Increment(delta) = decoded else {
            return Err(refused(&path, format!("record {index} is not an increment; {move_away}")));
        };
        let next = delta
            .apply(wf, std::mem::take(channel))
            .map_err(|e| refused(&path, format!("record {index}: {e}; {move_away}")))?;
        if next.state.steps != after {
            return Err(refused(
                &path,
                format!("record {index} says step {after} but holds step {}", next.state.steps),
            ));
        }
        wf = next.workflow;
        *channel = next.channel;
        *state = next.state;
        cur = after;
        applied += 1;
    }
    Ok(Some(Replayed { path, records: applied, steps: cur }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf() -> Workflow {
        use crate::model::*;
        let mut graph = Graph::default();
        graph.nodes.insert("a".into(), Node::Task);
        let task = TaskDef {
            name: "a".into(),
            module: "m".into(),
            export: "a".into(),
            inputs: vec![],
            max_cycles: 1,
            retry: RetryPolicy::default(),
            limits: Limits::default(),
            grants: Grants::default(),
            reuse_instance: false,
        };
        let digest: crate::digest::Sha256 = "ab".repeat(32).parse().unwrap();
        Workflow {
            name: "w".into(),
            flow: "a".into(),
            start: "a".into(),
            modules: BTreeMap::from([("m".into(), ModuleRef { path: "/w/m.wasm".into(), sha256: digest, size: 1 })]),
            tasks: BTreeMap::from([("a".into(), task)]),
            graph,
            settings: RunSettings {
                max_steps: 100,
                parallelism: 1,
                bounds: HostBounds::default(),
                keep_checkpoints: None,
                keep_iteration_results: DEFAULT_KEEP_ITERATION_RESULTS,
            },
            outbound: Default::default(),
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes([7; 32])
    }

    fn at(steps: u64, wf: &Workflow) -> RunState {
        let mut s = RunState::new(wf, "s".into(), Json::parse("{}").unwrap());
        s.steps = steps;
        s
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Json> {
        pairs.iter().map(|(k, v)| (k.to_string(), Json::parse(*v).unwrap())).collect()
    }

    /// A log of three records after a checkpoint at step 1.
    fn written(dir: &Path) -> (Workflow, String) {
        let wf = wf();
        let id = new_log_id();
        let mut log = RecordLog::new(dir, id.clone(), key(), 1, map(&[("a", "1")]));
        log.append(&at(2, &wf), map(&[("a", "1"), ("b", "2")])).unwrap();
        log.append(&at(3, &wf), map(&[("b", "3")])).unwrap();
        log.append(&at(4, &wf), map(&[("b", "3"), ("c", "4")])).unwrap();
        (wf, id)
    }

    #[test]
    fn records_replay_over_the_checkpoint_they_follow() {
        let dir = tempfile::tempdir().unwrap();
        let (wf, id) = written(dir.path());
        let (mut state, mut channel) = (at(1, &wf), map(&[("a", "1")]));
        let r = replay(dir.path(), &id, &key(), &wf, &mut state, &mut channel).unwrap().unwrap();
        assert_eq!((r.records, r.steps, state.steps), (3, 4, 4));
        assert_eq!(channel, map(&[("b", "3"), ("c", "4")]));
        // From a later checkpoint (step 3), only what follows it.
        let (mut state, mut channel) = (at(3, &wf), map(&[("b", "3")]));
        let r = replay(dir.path(), &id, &key(), &wf, &mut state, &mut channel).unwrap().unwrap();
        assert_eq!((r.records, r.steps), (1, 4));
        assert_eq!(channel, map(&[("b", "3"), ("c", "4")]));
        // A checkpoint no record follows (step 2 + a gap): nothing applied
        // past what follows it.
        let (mut state, mut channel) = (at(5, &wf), map(&[]));
        let r = replay(dir.path(), &id, &key(), &wf, &mut state, &mut channel).unwrap().unwrap();
        assert_eq!((r.records, state.steps), (0, 5));
        // No log: nothing.
        assert!(replay(dir.path(), &new_log_id(), &key(), &wf, &mut state, &mut channel).unwrap().is_none());
    }

    #[test]
    fn a_torn_tail_is_ignored_and_a_damaged_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (wf, id) = written(dir.path());
        let path = path_of(dir.path(), &id);
        let full = std::fs::read(&path).unwrap();
        // Cut inside the last frame: the first two apply.
        for cut in [1, 10, FRAME_TRAILER + 3] {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let (mut state, mut channel) = (at(1, &wf), map(&[("a", "1")]));
            let r = replay(dir.path(), &id, &key(), &wf, &mut state, &mut channel).unwrap().unwrap();
            assert_eq!((r.records, r.steps), (2, 3), "cut {cut}");
            assert_eq!(channel, map(&[("b", "3")]));
        }
        // Zeros past the last record (a size that reached the disk before
        // the data): ignored.
        let mut zeros = full.clone();
        zeros.extend(std::iter::repeat_n(0u8, 2000));
        std::fs::write(&path, &zeros).unwrap();
        let (mut state, mut channel) = (at(1, &wf), map(&[("a", "1")]));
        let r = replay(dir.path(), &id, &key(), &wf, &mut state, &mut channel).unwrap().unwrap();
        assert_eq!((r.records, r.steps), (3, 4));
        // A flipped byte in the first record: refused, naming the log.
        let mut bad = full.clone();
        bad[MAGIC.len() + 30] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let (mut state, mut channel) = (at(1, &wf), map(&[("a", "1")]));
        let err = replay(dir.path(), &id, &key(), &wf, &mut state, &mut channel).unwrap_err();
        assert!(err.to_string().contains(&id) && err.to_string().contains("record 1 is damaged"), "{err}");
        assert_eq!(state.steps, 1, "nothing applied past what verified");
        // Another key: refused.
        std::fs::write(&path, &full).unwrap();
        let other = SigningKey::from_bytes([8; 32]);
        assert!(replay(dir.path(), &id, &other, &wf, &mut state, &mut channel).is_err());
        // A log id that is not one: refused before it becomes a path.
        assert!(replay(dir.path(), "../x", &key(), &wf, &mut state, &mut channel).is_err());
    }

    #[test]
    fn a_record_of_the_same_step_that_follows_it_applies() {
        // A retry's boundary: the step count stays, the state changes.
        let dir = tempfile::tempdir().unwrap();
        let wf = wf();
        let id = new_log_id();
        let mut log = RecordLog::new(dir.path(), id.clone(), key(), 1, map(&[]));
        let mut retry = at(2, &wf);
        log.append(&retry, map(&[("a", "1")])).unwrap();
        retry.last_result = Some(Json::parse("7").unwrap());
        log.append(&retry, map(&[("a", "1")])).unwrap();
        let (mut state, mut channel) = (at(2, &wf), map(&[("a", "1")]));
        let r = replay(dir.path(), &id, &key(), &wf, &mut state, &mut channel).unwrap().unwrap();
        assert_eq!((r.records, state.steps), (1, 2), "only the record that follows step 2");
        assert_eq!(state.last_result, Some(Json::parse("7").unwrap()));
        let (mut state, mut channel) = (at(1, &wf), map(&[]));
        let r = replay(dir.path(), &id, &key(), &wf, &mut state, &mut channel).unwrap().unwrap();
        assert_eq!((r.records, state.last_result), (2, Some(Json::parse("7").unwrap())));
    }
}
