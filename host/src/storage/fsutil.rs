//! Durable file writes: temp file in the same directory, fsync, then a link
//! that never replaces an existing file, fsync of the directory. After
//! `write_durable_new` returns, the file is entirely there (and survives a
//! power cut); if the process died before, it is absent and a temp file
//! `.tmp-<pid>-*` may remain, which [`remove_stale_temps`] removes.

use std::io::Write;
use std::path::Path;

/// The prefix of temp files: `.tmp-<pid>-`.
pub fn temp_prefix() -> String {
    format!(".tmp-{}-", std::process::id())
}

/// The folder `path` is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Write `bytes` to the new file `path` atomically and durably; fails with
/// `AlreadyExists` (writing nothing) if `path` exists.
pub fn write_durable_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durable_new_with(path, |file| file.write_all(bytes))
}

/// [`write_durable_new`] with `fill` writing the contents into the temp file.
pub fn write_durable_new_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let dir = folder_of(path);
    let mut tmp = tempfile::Builder::new().prefix(&temp_prefix()).tempfile_in(dir)?;
    let out = fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(dir)?;
    Ok(out)
}

/// Write a new file `path` as [`write_durable_new_with`] does, without
/// syncing: the file appears whole (temp file, link that never replaces)
/// and is returned open, for [`sync_together`] to make it durable with
/// others in one round.
pub fn write_new_unsynced_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<T>,
) -> std::io::Result<(T, std::fs::File)> {
    let dir = folder_of(path);
    let mut tmp = tempfile::Builder::new().prefix(&temp_prefix()).tempfile_in(dir)?;
    let out = fill(tmp.as_file_mut())?;
    let file = tmp.persist_noclobber(path).map_err(|e| e.error)?;
    Ok((out, file))
}

/// `bytes` in a new temp file in `dir`, not synced (for [`sync_together`],
/// then [`persist_durable`]).
pub fn temp_with(dir: &Path, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new().prefix(&temp_prefix()).tempfile_in(dir)?;
    tmp.as_file_mut().write_all(bytes)?;
    Ok(tmp)
}

/// Link the synced temp file `tmp` to `path` without replacing anything,
/// and sync the directory so the name is durable.
pub fn persist_durable(tmp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    let dir = folder_of(path);
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Make `files` (all in `dir`) and their names durable in one round: each
/// file's fsync, then the directory's. On a journaling file system the first
/// fsync commits the others' metadata with it, so a round costs about one
/// commit where a file-by-file protocol costs one per file and per name.
pub fn sync_together(files: &[&std::fs::File], dir: &Path) -> std::io::Result<()> {
    for file in files {
        file.sync_all()?;
    }
    sync_dir(dir)
}

/// Remove temp files in `dir` left by writers that died: those whose process
/// is gone, and nameless old ones (from graflow-host 0.1) older than an hour.
/// Call it only while holding the directory lock. Returns how many went.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(".tmp-")) else { continue };
        let stale = match rest.split_once('-').and_then(|(pid, _)| pid.parse::<i32>().ok()) {
            Some(pid) => pid != std::process::id() as i32 && !process_alive(pid),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600)),
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            tracing::debug!("removed stale temp file {}", entry.path().display());
            removed += 1;
        }
    }
    removed
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// fsync a directory, so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Create `dir` (and parents) and make its entry durable.
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p)?,
        _ => sync_dir(Path::new("."))?,
    }
    Ok(())
}

/// A file writer that starts the kernel's write-back of every 4 MiB as soon as
/// it is written (`sync_file_range`, Linux; 4 MiB measured fastest here), so the final fsync of a large
/// checkpoint overlaps with producing it instead of following it.
pub struct EagerWriteback<'a> {
    file: &'a mut std::fs::File,
    written: u64,
    started: u64,
}

const WRITEBACK_CHUNK: u64 = 4 << 20;

impl<'a> EagerWriteback<'a> {
    /// Wrap `file`.
    pub fn new(file: &'a mut std::fs::File) -> Self {
        EagerWriteback { file, written: 0, started: 0 }
    }

    fn start_writeback(&mut self) {
        if self.written - self.started < WRITEBACK_CHUNK {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for the life of `self.file`; the
            // call only starts write-back of a byte range and reads no memory.
            // A failure is harmless: the final fsync writes everything.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.started as libc::off64_t,
                    (self.written - self.started) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.started = self.written;
    }
}

impl Write for EagerWriteback<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(&buf[..buf.len().min(WRITEBACK_CHUNK as usize)])?;
        self.written += n as u64;
        self.start_writeback();
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl std::io::Seek for EagerWriteback<'_> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}
