//! `graflow-host graph`: a picture of a workflow's graph.

use super::{CliError, ExitStatus};
use graflow_host::Json;
use graflow_host::model::picture::{self, Format};
use graflow_host::session::{RunOptions, Session};
use std::path::PathBuf;

/// A picture format on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT (`| dot -Tsvg > graph.svg`).
    Dot,
    /// Plain text.
    Ascii,
}

#[derive(clap::Args)]
pub struct GraphArgs {
    /// The workflow file (TOML), or a component or task source that declares
    /// its own workflow (as `run` takes).
    workflow: PathBuf,
    /// The picture's format.
    #[arg(long, value_enum, default_value_t = FormatArg::Ascii)]
    format: FormatArg,
    /// Do not use the compiled-module cache.
    #[arg(long)]
    no_cache: bool,
}

pub fn graph(args: GraphArgs) -> Result<ExitStatus, CliError> {
    let opts = RunOptions { cache_dir: super::cache_dir(args.no_cache), ..RunOptions::default() };
    let session = Session::start_file(super::open_target(&args.workflow)?, Json::null(), opts)
        .map_err(|e| super::start_failed(&args.workflow, e))?;
    let format = match args.format {
        FormatArg::Mermaid => Format::Mermaid,
        FormatArg::Dot => Format::Dot,
        FormatArg::Ascii => Format::Ascii,
    };
    print!("{}", picture::draw(session.workflow(), format));
    Ok(ExitStatus::Success)
}
