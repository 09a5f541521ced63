//! Where a task's limits are enforced: linear memory ([`Limiter`]), and the
//! host's capacity of live instances ([`InstancePermits`]). Time is enforced
//! by the epoch callback in `mod.rs` and by the clock in `clock.rs`; fuel by
//! wasmtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A linear-memory growth refused by the limiter; traps the guest.
#[derive(Debug)]
pub struct MemoryLimitHit {
    /// The limit in bytes.
    pub limit: usize,
    /// The size the guest asked for, in bytes.
    pub desired: usize,
}

impl std::fmt::Display for MemoryLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "memory limit of {} bytes reached (the guest asked for {} bytes)", self.limit, self.desired)
    }
}

impl std::error::Error for MemoryLimitHit {}

/// Enforces a task's memory limit.
pub struct Limiter {
    /// Maximum linear memory, in bytes.
    pub memory: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return Err(wasmtime::Error::new(MemoryLimitHit { limit: self.memory, desired }));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Counts live instances against the engine's pool capacity: a task that
/// finds the pool full waits for an instance instead of failing.
pub struct InstancePermits {
    free: Mutex<usize>,
    freed: Condvar,
    waiting: std::sync::atomic::AtomicUsize,
}

/// One live instance's place in the pool; given back when dropped.
pub struct Permit {
    permits: Arc<InstancePermits>,
}

impl InstancePermits {
    /// `n` places.
    pub fn new(n: usize) -> Arc<InstancePermits> {
        Arc::new(InstancePermits { free: Mutex::new(n), freed: Condvar::new(), waiting: Default::default() })
    }

    /// Take a place if one is free.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(Permit { permits: self.clone() })
    }

    /// Wait for a place; `None` if `abort` is set while waiting.
    pub fn acquire(self: &Arc<Self>, abort: &AtomicBool) -> Option<Permit> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while *free == 0 {
            if abort.load(Ordering::Relaxed) {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return None;
            }
            free = self.freed.wait_timeout(free, Duration::from_millis(20)).unwrap_or_else(|e| e.into_inner()).0;
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        *free -= 1;
        Some(Permit { permits: self.clone() })
    }

    /// True while some task waits for a place (idle instances then go).
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        *self.permits.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.permits.freed.notify_one();
    }
}
