//! Reading files the host does not control (modules, `--input @file`,
//! checkpoint files, workflow files) with a bound: the file is opened, checked
//! to be a regular file no larger than the bound, and read with that bound, so
//! `/dev/zero`, a FIFO or a file that grows while read never makes the host
//! hold more than the bound.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a bounded read failed. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened or read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file (a device, a FIFO, a directory, a socket).
    #[error("{} is not a regular file (it is {kind})", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Larger than the bound.
    #[error("{} has {size} bytes, over the bound {bound} = {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or the bytes read before giving up).
        size: u64,
        /// The bound in bytes.
        limit: u64,
        /// The bound's name (a workflow-file key or a documented constant).
        bound: &'static str,
    },
}

impl ReadError {
    /// True if the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Read the regular file at `path` (symbolic links are followed), refusing it
/// if it holds more than `limit` bytes; `bound` names the limit in the error.
pub fn read_bounded(path: &Path, limit: u64, bound: &'static str) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ReadError::Io { path: path.to_path_buf(), source };
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile { path: path.to_path_buf(), kind: kind_of(&meta) });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), size: meta.len(), limit, bound });
    }
    // Room for the whole file at once (its size is at most `limit`, checked
    // above): a large file is not copied again as the buffer grows. One byte
    // more lets `read_to_end` see the end without growing.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().saturating_add(1)).unwrap_or(usize::MAX));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), size: bytes.len() as u64, limit, bound });
    }
    Ok(bytes)
}

/// [`read_bounded`] for text: the file must be UTF-8.
pub fn read_text_bounded(path: &Path, limit: u64, bound: &'static str) -> Result<String, ReadError> {
    let bytes = read_bounded(path, limit, bound)?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_large_files_are_refused() {
        assert!(matches!(read_bounded(Path::new("/dev/zero"), 10, "b"), Err(ReadError::NotAFile { .. })));
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(read_bounded(&link, 10, "b"), Err(ReadError::NotAFile { .. })));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(read_bounded(&fifo, 10, "b"), Err(ReadError::NotAFile { .. })));
        let big = dir.path().join("big");
        std::fs::write(&big, [0u8; 11]).unwrap();
        let err = read_bounded(&big, 10, "max_x").unwrap_err();
        assert!(err.to_string().contains("max_x = 10 bytes"), "{err}");
        assert_eq!(read_bounded(&big, 11, "b").unwrap().len(), 11);
        assert!(read_bounded(&dir.path().join("nope"), 1, "b").unwrap_err().is_not_found());
    }
}
