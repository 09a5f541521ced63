//! The guest's monotonic clock (`wasi:clocks/monotonic-clock`), shadowing
//! WASI's: a sleep never outlasts the execution's time limit, and ends at once
//! when the host stops every task (the interrupt grace period ran out). So a
//! guest blocked in a clock wait is stopped as promptly as a busy one: it wakes,
//! and the next epoch check stops it.

use super::host::HostState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::clocks::{WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{self, Duration, Host, Instant as WasiInstant};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// How often a sleeping guest checks for the host's stop.
const STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(10);

/// The view the shadowing implementation works on.
pub struct Clamped<'a> {
    inner: WasiClocksCtxView<'a>,
    deadline: Instant,
    abort: Arc<AtomicBool>,
}

struct ClampedClock;

impl HasData for ClampedClock {
    type Data<'a> = Clamped<'a>;
}

/// A sleep that ends at `until` or when `abort` is set, whichever is first.
struct Sleep {
    until: tokio::time::Instant,
    abort: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= self.until {
                return;
            }
            tokio::time::sleep((self.until - now).min(STOP_CHECK)).await;
        }
    }
}

impl Clamped<'_> {
    fn remaining_nanos(&self) -> u64 {
        self.deadline.saturating_duration_since(Instant::now()).as_nanos().min(u64::MAX as u128) as u64
    }

    fn sleep(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let nanos = nanos.min(self.remaining_nanos());
        if nanos == 0 {
            // WASI's zero-length subscription yields to its runtime once;
            // keep that behaviour for guests that poll with a zero timeout.
            return self.inner.subscribe_duration(0);
        }
        let until = tokio::time::Instant::now() + std::time::Duration::from_nanos(nanos);
        let sleep = self.inner.table.push(Sleep { until, abort: self.abort.clone() })?;
        subscribe(self.inner.table, sleep)
    }
}

impl Host for Clamped<'_> {
    fn now(&mut self) -> wasmtime::Result<WasiInstant> {
        self.inner.now()
    }
    fn resolution(&mut self) -> wasmtime::Result<Duration> {
        self.inner.resolution()
    }
    fn subscribe_instant(&mut self, when: WasiInstant) -> wasmtime::Result<Resource<DynPollable>> {
        let now = self.inner.now()?;
        self.sleep(when.saturating_sub(now))
    }
    fn subscribe_duration(&mut self, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        self.sleep(duration)
    }
}

/// Replace the monotonic clock of `linker` (which already has WASI) with this one.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<HostState, ClampedClock>(linker, |s: &mut HostState| {
        let (deadline, abort) = (s.deadline, s.abort.clone());
        Clamped { inner: s.clocks(), deadline, abort }
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
