//! `graflow-host`: a thin command line over the `graflow_host` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
