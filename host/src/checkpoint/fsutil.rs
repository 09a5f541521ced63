//! Durable file writes: temp file in the same directory, fsync, rename, fsync of
//! the directory. After `write_durable` returns, the file is either entirely
//! there (and survives a power cut) or, if the process died before, absent.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically and durably.
pub fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durable_with(path, |file| file.write_all(bytes))
}

/// Write `path` atomically and durably, with `fill` writing the contents into
/// the temp file.
pub fn write_durable_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let dir = path.parent().expect("checkpoint files live in a directory");
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    let out = fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)?;
    Ok(out)
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
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
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
