//! `graflow-host`: a thin command line over the `graflow_host` library.

mod cli;

/// mimalloc: measured faster than the system allocator for fresh sandboxes
/// and large checkpoints (see host/Cargo.toml and bench/notes.md).
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
