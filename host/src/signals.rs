//! Ctrl-C and SIGTERM for a running [`Session`](crate::session::Session): the
//! first signal stops the run at the next task boundary (running tasks get
//! the grace period, then are stopped and queued again), and the run
//! checkpoints; a second signal exits at once with code 130.

use crate::session::StopHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The exit code of a second signal.
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// Stop `handle`'s run on SIGINT or SIGTERM, giving running tasks `grace`.
pub fn stop_on_signals(handle: StopHandle, grace: Duration) -> std::io::Result<()> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, EXIT_SECOND_SIGNAL, flag.clone())?;
        signal_hook::flag::register(signal, flag.clone())?;
    }
    std::thread::Builder::new().name("graflow-signals".into()).spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(
            "interrupt received: no new task starts; running tasks get {} ms to finish (interrupt again to quit at once)",
            grace.as_millis()
        );
        handle.stop(grace);
    })?;
    Ok(())
}
