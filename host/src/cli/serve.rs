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
    /// Where to listen: an IP address and port, or a host name that resolves
    /// to this machine's loopback (`localhost:8787`). Loopback by default; any
    /// other address needs --token.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR:PORT", value_parser = listen_addr)]
    listen: SocketAddr,
    /// A secret every request must carry (?token=..., or Authorization:
    /// Bearer ...). Required to listen beyond loopback. Also read from
    /// GRAFLOW_SERVE_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

/// `--listen`: `IP:PORT`, or `HOST:PORT` for a host name all of whose
/// addresses are loopback (its IPv4 one first).
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let usage = "use IP:PORT, e.g. 127.0.0.1:8787 (this machine only) or 0.0.0.0:8787 (every interface, with --token)";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("no port: {usage}"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("'{port}' is not a port number: {usage}"));
    };
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve '{host}' ({e}): {usage}"))?.collect();
    let chosen = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied();
    match chosen {
        Some(addr) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(addr),
        _ => Err(format!("'{host}' is not only this machine's loopback: {usage}")),
    }
}

pub fn serve(args: ServeArgs) -> Result<ExitStatus, CliError> {
    // A mistyped folder would serve an empty page that never fills.
    let location = graflow_host::storage::Location::parse(&args.dir).map_err(CliError::bad_input)?;
    if location.bucket().is_none() && !args.dir.is_dir() {
        let what = if args.dir.exists() { "is not a folder" } else { "does not exist" };
        return Err(CliError::bad_input(anyhow::anyhow!(
            "{} {what}: serve shows a checkpoint directory (where runs write checkpoints: --checkpoint-dir, \
             default `checkpoints`)",
            args.dir.display()
        )));
    }
    let token = args.token.or_else(|| std::env::var("GRAFLOW_SERVE_TOKEN").ok()).filter(|t| !t.is_empty());
    let state = ServeState { dir: args.dir.clone(), location, token: token.clone() };
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
