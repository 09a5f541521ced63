//! `graflow-host serve`: the web page over a checkpoint directory.

use super::{CliError, ExitStatus};
use graflow_host::checkpoint;
use graflow_host::serve::{ServeState, run};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The checkpoint directory.
    #[arg(default_value = checkpoint::DEFAULT_DIR)]
    dir: PathBuf,
    /// Where to listen. Loopback by default; any other address needs --token.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// A secret every request must carry (?token=..., or Authorization:
    /// Bearer ...). Required to listen beyond loopback. Also read from
    /// GRAFLOW_SERVE_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

pub fn serve(args: ServeArgs) -> Result<ExitStatus, CliError> {
    let token = args.token.or_else(|| std::env::var("GRAFLOW_SERVE_TOKEN").ok()).filter(|t| !t.is_empty());
    let state = ServeState { dir: args.dir.clone(), token: token.clone() };
    run(state, args.listen, |addr| {
        let scope = if addr.ip().is_loopback() { " (loopback only: other machines cannot reach it)" } else { "" };
        let query = token
            .as_ref()
            .map(|t| {
                format!(
                    "?token={}",
                    t.bytes()
                        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        })
                        .collect::<String>()
                )
            })
            .unwrap_or_default();
        eprintln!("serving {} at http://{addr}/{query}{scope}; Ctrl-C stops", args.dir.display());
    })
    .map_err(CliError::bad_input)?;
    Ok(ExitStatus::Success)
}
