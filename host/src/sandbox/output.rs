//! A task's captured stdout or stderr: the first [`CAPTURE_BYTES`] of each
//! execution are kept for the log; what follows is counted and dropped. A
//! guest is never told the stream is full (a Rust `println!` would panic on
//! that), and a reused instance starts each run empty.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of each stream kept per execution.
pub const CAPTURE_BYTES: usize = 64 << 10;

/// A captured stream; clones share it.
#[derive(Clone, Default)]
pub struct Captured {
    inner: Arc<Mutex<(Vec<u8>, usize)>>,
}

impl Captured {
    fn keep(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = CAPTURE_BYTES.saturating_sub(inner.0.len());
        let kept = bytes.len().min(room);
        inner.0.extend_from_slice(&bytes[..kept]);
        inner.1 += bytes.len() - kept;
    }

    /// What was kept so far (not cleared).
    pub fn contents(&self) -> Vec<u8> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// What was kept and how many bytes were dropped since the last take;
    /// the stream starts empty again.
    pub fn take(&self) -> (Vec<u8>, usize) {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl OutputStream for Captured {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

#[async_trait::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Captured {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
