//! The journal: a run's events kept beside its checkpoints, in
//! `<checkpoint dir>/<session>/events.jsonl` (one JSON object per line, see
//! [`crate::engine::Event`]), bounded at [`MAX_JOURNAL_BYTES`] per session.
//! `graflow-host logs` prints it. A resumed run appends to the same file.
//! Lines are buffered (no write per event on the task path) and flushed at
//! every checkpoint, failure and stop, on the first event a second after the
//! last flush, and when the run ends; a process that is killed loses at most
//! the unflushed tail.
//!
//! A [`Journal::deferred`] journal (a `run` given no `--checkpoint-dir`)
//! creates nothing until the run has a session folder (it wrote a checkpoint
//! or a feedback request): until then its lines wait in memory (within the
//! same bound), and a run that writes nothing leaves nothing behind.

use crate::engine::{Event, EventKind, RunListener};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The journal's file name in a session folder.
pub const JOURNAL_FILE: &str = "events.jsonl";

/// Largest journal of one session; past it one last line says so and
/// nothing more is written.
pub const MAX_JOURNAL_BYTES: u64 = 16 << 20;

/// Longest a buffered event waits before the journal is flushed (checked
/// when the next event comes).
const FLUSH_EVERY_MS: u64 = 1000;

/// Appends a run's events to its journal.
pub struct Journal {
    inner: Mutex<Inner>,
}

struct Inner {
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
    limit: u64,
    /// `at_ms` of the event at the last flush.
    flushed_at_ms: u64,
    /// A deferred journal not opened yet: where it goes and its lines so far.
    waiting: Option<Waiting>,
}

/// The lines of a deferred journal whose session folder does not exist yet.
struct Waiting {
    /// `<dir>/<session>`.
    folder: PathBuf,
    /// The lines, at most `limit` bytes.
    lines: Vec<u8>,
    /// Lines were dropped at the bound.
    full: bool,
}

/// The journal of `session` in the checkpoint directory `dir`.
pub fn path_of(dir: &Path, session: &str) -> PathBuf {
    dir.join(session).join(JOURNAL_FILE)
}

impl Journal {
    /// Open (or create) the journal of `session` in `dir` for appending.
    pub fn open(dir: &Path, session: &str) -> std::io::Result<Journal> {
        Journal::open_with_limit(dir, session, MAX_JOURNAL_BYTES)
    }

    /// [`Journal::open`] with another bound than [`MAX_JOURNAL_BYTES`].
    pub fn open_with_limit(dir: &Path, session: &str, limit: u64) -> std::io::Result<Journal> {
        let folder = dir.join(session);
        if std::fs::symlink_metadata(&folder).is_ok_and(|m| !m.is_dir()) {
            return Err(std::io::Error::other(format!("{} is not a folder", folder.display())));
        }
        std::fs::create_dir_all(&folder)?;
        let (file, written) = open_file(&folder, limit)?;
        Ok(Journal { inner: Mutex::new(Inner { file, written, limit, flushed_at_ms: 0, waiting: None }) })
    }

    /// The journal of `session` in `dir`, created only once the session's
    /// folder exists (the run wrote a checkpoint or a feedback request
    /// there): until then the events wait in memory, and if the folder never
    /// comes, nothing is written.
    pub fn deferred(dir: &Path, session: &str) -> Journal {
        Journal::deferred_with_limit(dir, session, MAX_JOURNAL_BYTES)
    }

    /// [`Journal::deferred`] with another bound than [`MAX_JOURNAL_BYTES`].
    pub fn deferred_with_limit(dir: &Path, session: &str, limit: u64) -> Journal {
        let waiting = Waiting { folder: dir.join(session), lines: Vec::new(), full: false };
        Journal { inner: Mutex::new(Inner { file: None, written: 0, limit, flushed_at_ms: 0, waiting: Some(waiting) }) }
    }
}

/// Open (or create) the journal file in the session folder `folder`: the
/// writer (none once the file is at `limit`) and the bytes it holds.
fn open_file(folder: &Path, limit: u64) -> std::io::Result<(Option<std::io::BufWriter<std::fs::File>>, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .mode(0o600)
        .open(folder.join(JOURNAL_FILE))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("the journal is not a regular file"));
    }
    // A journal already at its bound (and marked so) takes nothing more.
    let file = (meta.len() < limit).then(|| std::io::BufWriter::with_capacity(64 << 10, file));
    Ok((file, meta.len()))
}

impl Inner {
    /// Append one line (flushing if `flush`); past the bound, one last line
    /// says so and the file is closed.
    fn append(&mut self, line: &[u8], flush: bool) {
        if self.written + line.len() as u64 > self.limit {
            self.close_full();
            return;
        }
        let Some(f) = &mut self.file else { return };
        if f.write_all(line).and_then(|()| if flush { f.flush() } else { Ok(()) }).is_err() {
            self.file = None;
            return;
        }
        self.written += line.len() as u64;
    }

    /// The bound is reached: one last line says so, and nothing more is written.
    fn close_full(&mut self) {
        if let Some(f) = &mut self.file {
            let _ = f.write_all(b"{\"event\":\"journal_full\"}\n").and_then(|()| f.flush());
        }
        self.file = None;
    }

    /// A deferred journal whose session folder now exists: open the file and
    /// write the lines kept so far. False while the folder does not exist.
    fn materialize(&mut self) -> bool {
        let Some(waiting) = &self.waiting else { return true };
        // A linked folder is not followed (as the checkpoint writer does not).
        if !std::fs::symlink_metadata(&waiting.folder).is_ok_and(|m| m.is_dir()) {
            return false;
        }
        let Some(waiting) = self.waiting.take() else { return true };
        match open_file(&waiting.folder, self.limit) {
            Ok((file, written)) => {
                self.file = file;
                self.written = written;
            }
            Err(e) => {
                tracing::warn!("no journal of this run's events in {}: {e}", waiting.folder.display());
                return true;
            }
        }
        for line in waiting.lines.split_inclusive(|b| *b == b'\n') {
            self.append(line, false);
        }
        if waiting.full {
            self.close_full();
        }
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
        true
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        inner.materialize();
    }
}

impl RunListener for Journal {
    fn event(&self, event: &Event) {
        let Ok(mut line) = serde_json::to_vec(event) else { return };
        line.push(b'\n');
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner: &mut Inner = &mut guard;
        if let Some(waiting) = &mut inner.waiting {
            if waiting.lines.len() as u64 + line.len() as u64 <= inner.limit {
                waiting.lines.extend_from_slice(&line);
            } else {
                waiting.full = true;
            }
            // The session folder comes with the first checkpoint or feedback request.
            if matches!(event.kind, EventKind::Checkpoint { .. } | EventKind::WaitingForInput { .. }) {
                inner.materialize();
            }
            return;
        }
        let flush = matches!(
            event.kind,
            EventKind::Checkpoint { .. } | EventKind::TaskFailed { .. } | EventKind::TaskStopped { .. }
        ) || event.at_ms >= inner.flushed_at_ms.saturating_add(FLUSH_EVERY_MS);
        if flush {
            inner.flushed_at_ms = event.at_ms;
        }
        inner.append(&line, flush);
    }
}

/// The events of a journal file, one JSON value each (lines that do not
/// parse, e.g. one torn by a full disk, are skipped).
pub fn read(path: &Path) -> Result<Vec<serde_json::Value>, crate::files::ReadError> {
    let bytes = crate::files::read_bounded(path, MAX_JOURNAL_BYTES + (64 << 10), "MAX_JOURNAL_BYTES (16 MiB)")?;
    Ok(String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_stops_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open_with_limit(dir.path(), "s", 1000).unwrap();
        for i in 0..100 {
            journal.event(&Event { at_ms: i, queued: 0, kind: EventKind::TaskStopped { task_id: format!("t{i}") } });
        }
        drop(journal);
        let events = read(&path_of(dir.path(), "s")).unwrap();
        assert!(events.len() < 20, "{}", events.len());
        assert_eq!(events.last().unwrap()["event"], "journal_full");
        assert!(std::fs::metadata(path_of(dir.path(), "s")).unwrap().len() < 1100);
    }

    #[test]
    fn the_journal_flushes_at_stops_and_after_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open_with_limit(dir.path(), "s", MAX_JOURNAL_BYTES).unwrap();
        let on_disk = || read(&path_of(dir.path(), "s")).unwrap().len();
        let group = |at_ms| Event {
            at_ms,
            queued: 0,
            kind: EventKind::GroupStarted {
                group: "g".into(),
                task_id: "g".into(),
                members: vec!["a".into()],
                scope: String::new(),
            },
        };
        journal.event(&group(5000));
        assert_eq!(on_disk(), 1, "the first event is flushed");
        journal.event(&group(5100));
        assert_eq!(on_disk(), 1, "an event within a second of the last flush waits");
        journal.event(&group(6000));
        assert_eq!(on_disk(), 3, "a second after the last flush, the buffer is written");
        journal.event(&group(6001));
        journal.event(&Event { at_ms: 6002, queued: 0, kind: EventKind::TaskStopped { task_id: "t".into() } });
        assert_eq!(on_disk(), 5, "a stop is flushed at once");
        journal.event(&group(6003));
        drop(journal);
        assert_eq!(on_disk(), 6, "the rest is flushed when the journal is dropped");
    }

    #[test]
    fn a_deferred_journal_writes_nothing_until_the_session_folder_exists() {
        let dir = tempfile::tempdir().unwrap();
        let started = |at_ms| Event {
            at_ms,
            queued: 0,
            kind: EventKind::TaskStarted {
                task_id: "a".into(),
                task: "a".into(),
                module: "m".into(),
                attempt: 0,
                cycle: 1,
                scope: String::new(),
            },
        };
        let checkpoint = |at_ms| Event {
            at_ms,
            queued: 0,
            kind: EventKind::Checkpoint { id: "cp".into(), mode: "auto", after: None, bytes: 0, duration_ms: 0.0 },
        };
        // No folder ever: nothing is created.
        let journal = Journal::deferred(dir.path(), "s");
        journal.event(&started(1));
        journal.event(&checkpoint(2));
        drop(journal);
        assert!(!dir.path().join("s").exists(), "a run that wrote nothing leaves nothing");
        // The folder comes (a checkpoint): every event so far is written, then the rest.
        let journal = Journal::deferred(dir.path(), "t");
        journal.event(&started(1));
        std::fs::create_dir(dir.path().join("t")).unwrap();
        journal.event(&checkpoint(2));
        assert_eq!(read(&path_of(dir.path(), "t")).unwrap().len(), 2, "written at the checkpoint");
        journal.event(&started(3));
        drop(journal);
        assert_eq!(read(&path_of(dir.path(), "t")).unwrap().len(), 3);
        // Over the bound while waiting: the marker ends the file.
        let journal = Journal::deferred_with_limit(dir.path(), "u", 300);
        for i in 0..50 {
            journal.event(&started(i));
        }
        std::fs::create_dir(dir.path().join("u")).unwrap();
        drop(journal);
        let events = read(&path_of(dir.path(), "u")).unwrap();
        assert!(events.len() < 10, "{}", events.len());
        assert_eq!(events.last().unwrap()["event"], "journal_full");
    }
}
