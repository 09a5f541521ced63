//! `graflow-host`: a thin command line over the `graflow_host` library.

mod cli;

/// mimalloc: a fresh sandbox per task makes many small allocations; it cut
/// the per-task cost measured in docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Like other Unix tools: when the reader of stdout goes away
    // (`graflow-host checkpoints list | head -1`), end quietly instead of
    // panicking on a write error.
    // SAFETY: setting a signal's disposition to the default has no
    // preconditions; no other thread runs yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::main()
}
