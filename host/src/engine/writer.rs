//! Where a run's checkpoints go: straight to the sink (the default), or, for
//! automatic checkpoints with write-behind, through one background writer.
//!
//! Write-behind: an automatic checkpoint is handed to the writer if it is
//! idle; if it is still committing an earlier one, the checkpoint is *owed*
//! and the first boundary after the writer frees up hands over the state of
//! that boundary instead (a newer one: the boundaries in between are not
//! written). So at most one checkpoint is in flight, the run never waits for
//! the disk, and state is copied only as often as the disk commits. Every other
//! checkpoint (a task's request, an interrupt, max-steps, a pause) first waits
//! for the writer, then is written before the run goes on. When the run ends
//! at a boundary with a checkpoint owed, that boundary (the newest) is written
//! before [`super::Engine::run`] returns. A failed background write stops the
//! run at its next boundary.
//!
//! Durable records: when the sink keeps them ([`CheckpointSink::open_records`]),
//! write-behind makes every due boundary durable before the next task starts
//! anyway: the first due boundary is a checkpoint written at once (the
//! records follow it), and each due boundary after it is first appended to
//! the run's record log (one append and `fdatasync`), then handed to the
//! writer if it is idle. The writer then only takes due boundaries (each has
//! its record, so a resume of its checkpoint can replay the records after
//! it), and every checkpoint written at once rebases the records on itself.
//! A log past [`crate::checkpoint::records::ROTATE_RECORD_LOG_BYTES`] is
//! replaced by a new one over a checkpoint written at once.

use super::{CheckpointRequest, CheckpointSink, EventKind, RecordSink, RunError, RunState, Shared, Written};
use crate::channel::MemoryChannel;
use crate::json::Json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Writes the checkpoints of one run.
pub(super) struct Checkpointer<'r, 's> {
    shared: &'r Shared<'s>,
    sink: Mutex<&'r mut dyn CheckpointSink>,
    /// Ids of the checkpoints written, in order.
    written: Mutex<Vec<String>>,
    /// The background writer's mailbox (write-behind only).
    behind: Option<Mailbox>,
    /// The run's durable records (write-behind with a sink that keeps them).
    records: Mutex<Records>,
}

/// The durable records of a run.
#[derive(Default)]
struct Records {
    log: Option<Box<dyn RecordSink>>,
    /// A checkpoint was written at once: the records follow it.
    anchored: bool,
    /// When a boundary was last handed to the writer.
    handed: Option<std::time::Instant>,
}

/// With durable records, the writer is handed a boundary at most this often:
/// the records make every boundary durable, so checkpoints only bound how
/// many records a resume replays, and a writer committing all the time
/// would make each record's `fdatasync` wait for its journal commits.
const RECORDED_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
struct Mailbox {
    slot: Mutex<Slot>,
    changed: Condvar,
}

#[derive(Default)]
struct Slot {
    /// Handed over, not yet taken by the writer.
    job: Option<Job>,
    /// The writer is committing a job.
    busy: bool,
    /// The writer's last failure, for the run to stop on.
    failed: Option<RunError>,
    /// Steps of the newest automatic checkpoint not handed over yet.
    owed: Option<u64>,
    /// The run ended: the writer stops once idle.
    closed: bool,
}

/// A checkpoint for the writer: the run at one boundary.
struct Job {
    state: RunState,
    channel: BTreeMap<String, Json>,
    request: CheckpointRequest,
}

impl<'r, 's> Checkpointer<'r, 's> {
    pub fn new(shared: &'r Shared<'s>, sink: &'r mut dyn CheckpointSink, behind: bool, session: &str) -> Self {
        let log = if behind { sink.open_records(session) } else { None };
        Checkpointer {
            shared,
            sink: Mutex::new(sink),
            written: Mutex::default(),
            behind: behind.then(Mailbox::default),
            records: Mutex::new(Records { log, anchored: false, handed: None }),
        }
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        // Only the run's thread takes it; nothing panics while holding it.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True if each due boundary is a durable record.
    fn recording(&self) -> bool {
        self.records().log.is_some()
    }

    /// True if checkpoints go through a background writer.
    pub fn is_behind(&self) -> bool {
        self.behind.is_some()
    }

    /// Write a checkpoint of `state` now (after the writer's, if one is in
    /// flight).
    pub fn write(
        &self,
        state: &RunState,
        channel: &MemoryChannel,
        request: &CheckpointRequest,
    ) -> Result<Written, RunError> {
        if let Some(mailbox) = &self.behind {
            let mut slot = mailbox.settled();
            slot.owed = None;
            if let Some(e) = slot.failed.take() {
                return Err(e);
            }
        }
        let snapshot = channel.snapshot();
        let written = self.commit(state, &snapshot, request, false)?;
        let mut records = self.records();
        if let Some(log) = records.log.as_mut() {
            log.rebase(state.steps, snapshot);
            records.anchored = true;
            // A checkpoint was just written: the next one goes to the writer
            // no sooner than one it took.
            records.handed = Some(std::time::Instant::now());
        }
        Ok(written)
    }

    /// The durable record of a due boundary: `true` if a record was appended
    /// and the boundary may go on to the writer; `false` if the boundary was
    /// made durable otherwise (a checkpoint written at once: the first one,
    /// or one over a new log when the log is full) or was recorded less than
    /// [`RECORDED_CHECKPOINT_EVERY`] after the last hand-over.
    fn record(&self, state: &RunState, channel: &MemoryChannel, request: &CheckpointRequest) -> Result<bool, RunError> {
        let failed = |e: super::SinkError| RunError::Checkpoint {
            task_id: request.task_id.clone(),
            source: super::CheckpointFailure(e.into()),
        };
        let mut records = self.records();
        let (anchored, full) = match records.log.as_ref() {
            Some(log) => (records.anchored, log.bytes() >= crate::checkpoint::records::ROTATE_RECORD_LOG_BYTES),
            None => return Ok(true),
        };
        if !anchored {
            drop(records);
            self.write(state, channel, request)?;
            return Ok(false);
        }
        if full {
            // A new log over a checkpoint written now; the old log is then
            // superseded (older checkpoints resume without their records).
            let old = records.log.take().map(|l| l.path().to_path_buf());
            drop(records);
            if let Some(mailbox) = &self.behind {
                drop(mailbox.settled());
            }
            let fresh = self.sink.lock().unwrap_or_else(|e| e.into_inner()).open_records(&state.session_id);
            self.records().log = fresh;
            self.write(state, channel, request)?;
            if let Some(old) = old {
                let _ = std::fs::remove_file(old);
            }
            return Ok(false);
        }
        let Some(log) = records.log.as_mut() else { return Ok(true) };
        log.append(state, channel.snapshot()).map_err(failed)?;
        Ok(records.handed.is_none_or(|t| t.elapsed() >= RECORDED_CHECKPOINT_EVERY))
    }

    /// An automatic checkpoint at this boundary: written now, or with
    /// write-behind handed to the writer if it is idle, else owed.
    pub fn auto(&self, state: &RunState, channel: &MemoryChannel, request: &CheckpointRequest) -> Result<(), RunError> {
        let Some(mailbox) = &self.behind else { return self.write(state, channel, request).map(drop) };
        // The writer's failure stops the run here, before anything else.
        if let Some(e) = mailbox.lock().failed.take() {
            return Err(e);
        }
        if !self.record(state, channel, request)? {
            // Durable already (written at once, or recorded and not handed
            // over this often): owed, so the end of the run writes it.
            if self.records().anchored {
                mailbox.lock().owed = Some(state.steps);
            }
            return Ok(());
        }
        let mut slot = mailbox.lock();
        if let Some(e) = slot.failed.take() {
            return Err(e);
        }
        if slot.busy || slot.job.is_some() {
            slot.owed = Some(state.steps);
            return Ok(());
        }
        slot.owed = None;
        slot.job = Some(Job { state: state.clone(), channel: channel.snapshot(), request: request.clone() });
        self.records().handed = Some(std::time::Instant::now());
        // Counted now (see `Shared::checkpoints_written`).
        self.shared.checkpoints_written.fetch_add(1, Ordering::SeqCst);
        mailbox.changed.notify_all();
        Ok(())
    }

    /// True if the caller should pass this boundary to [`Checkpointer::auto`]:
    /// an automatic checkpoint is owed and the writer is free to take one, or
    /// the writer failed (`auto` then gives its failure).
    pub fn owed_and_free(&self) -> bool {
        // With records, the writer takes only due boundaries (each has its
        // record): an owed checkpoint waits for the next due one, or the end.
        let recording = self.recording();
        self.behind.as_ref().is_some_and(|m| {
            let slot = m.lock();
            slot.failed.is_some() || (!recording && slot.owed.is_some() && !slot.busy && slot.job.is_none())
        })
    }

    /// Wait for the writer to be idle; its failure, if any.
    pub fn settle(&self) -> Result<(), RunError> {
        match &self.behind {
            Some(mailbox) => mailbox.settled().failed.take().map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    /// Something that closes the writer when dropped.
    pub fn closer(&self) -> impl Drop + '_ {
        struct Closer<'c, 'r, 's>(&'c Checkpointer<'r, 's>);
        impl Drop for Closer<'_, '_, '_> {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        Closer(self)
    }

    /// The end of a run that ended at a boundary: wait for the writer, then,
    /// if an automatic checkpoint was owed, write `state` (the newest
    /// boundary; `request` builds its request). The writer's failure, if any.
    pub fn finish(
        &self,
        state: &RunState,
        channel: &MemoryChannel,
        request: impl FnOnce() -> CheckpointRequest,
    ) -> Result<(), RunError> {
        let Some(mailbox) = &self.behind else { return Ok(()) };
        let (owed, failed) = {
            let mut slot = mailbox.settled();
            (slot.owed.take(), slot.failed.take())
        };
        if let Some(e) = failed {
            return Err(e);
        }
        if owed.is_some() && self.shared.checkpoint_refusal().is_none() {
            self.commit(state, &channel.snapshot(), &request(), false)?;
        }
        Ok(())
    }

    /// Stop the writer once it is idle.
    pub fn close(&self) {
        if let Some(mailbox) = &self.behind {
            mailbox.lock().closed = true;
            mailbox.changed.notify_all();
        }
    }

    /// The writer thread: commit each job handed over until closed.
    pub fn serve(&self) {
        let Some(mailbox) = &self.behind else { return };
        loop {
            let job = {
                let mut slot = mailbox.lock();
                loop {
                    if let Some(job) = slot.job.take() {
                        slot.busy = true;
                        break job;
                    }
                    if slot.closed {
                        return;
                    }
                    slot = mailbox.changed.wait(slot).unwrap_or_else(|e| e.into_inner());
                }
            };
            // A sink that panics must not leave the run waiting for a writer
            // that is gone: the panic becomes the checkpoint's failure.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.commit(&job.state, &job.channel, &job.request, true)
            }))
            .unwrap_or_else(|_| {
                Err(RunError::Checkpoint {
                    task_id: job.request.task_id.clone(),
                    source: super::CheckpointFailure(std::sync::Arc::new(WriterPanicked)),
                })
            });
            drop(job);
            if !outcome.as_ref().is_ok_and(|w| w.fresh) {
                // Counted when handed over, and not written.
                self.shared.checkpoints_written.fetch_sub(1, Ordering::SeqCst);
            }
            let mut slot = mailbox.lock();
            slot.busy = false;
            if let Err(e) = outcome {
                slot.failed.get_or_insert(e);
            }
            mailbox.changed.notify_all();
        }
    }

    /// The ids written, in order.
    pub fn into_written(self) -> Vec<String> {
        self.written.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Write one checkpoint through the sink and count it; `counted`: it was
    /// counted in `checkpoints_written` when handed to the writer.
    fn commit(
        &self,
        state: &RunState,
        channel: &BTreeMap<String, Json>,
        request: &CheckpointRequest,
        counted: bool,
    ) -> Result<Written, RunError> {
        let shared = self.shared;
        let started = std::time::Instant::now();
        let written = {
            let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
            sink.write(&shared.workflow, state, channel, request).map_err(|e| RunError::Checkpoint {
                task_id: request.task_id.clone(),
                source: super::CheckpointFailure(e.into()),
            })?
        };
        if written.fresh {
            shared.checkpoint_bytes.fetch_add(written.bytes, Ordering::SeqCst);
            if !counted {
                shared.checkpoints_written.fetch_add(1, Ordering::SeqCst);
            }
            tracing::info!(checkpoint = %written.id, after = request.task_id.as_deref().unwrap_or("-"), mode = %request.mode, "checkpoint written");
            shared.listener.emit(state.queue.len(), || EventKind::Checkpoint {
                id: written.id.clone(),
                mode: request.mode.as_str(),
                after: request.task_id.clone(),
                bytes: written.bytes,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            });
            self.written.lock().unwrap_or_else(|e| e.into_inner()).push(written.id.clone());
        }
        Ok(written)
    }
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // No code panics while holding this lock with the slot half-changed.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot once the writer is idle and nothing waits for it.
    fn settled(&self) -> MutexGuard<'_, Slot> {
        let mut slot = self.lock();
        while slot.busy || slot.job.is_some() {
            slot = self.changed.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        slot
    }
}

/// The background writer's sink panicked.
#[derive(Debug, thiserror::Error)]
#[error("the checkpoint writer panicked (see the log)")]
struct WriterPanicked;
