//! `graflow-host build` and `graflow-host new`.

use super::{CliError, ExitStatus};
use graflow_host::build::{self, Lang};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// A Python file (.py), a JavaScript file (.js), or a Rust crate (its
    /// folder or Cargo.toml).
    src: PathBuf,
    /// The component to write (default: `<name>.wasm` in the current folder).
    #[arg(short, long, value_name = "OUT.wasm")]
    output: Option<PathBuf>,
}

/// A starter's language.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LangArg {
    /// A Rust crate.
    Rust,
    /// A Python file.
    Python,
    /// A JavaScript file.
    Js,
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// The folder to create (nothing in it is replaced).
    dir: PathBuf,
    /// The language of the starter task module.
    #[arg(long, value_enum)]
    lang: LangArg,
}

pub fn build(args: BuildArgs) -> Result<ExitStatus, CliError> {
    let built = build::build(&args.src, args.output.as_deref()).map_err(CliError::bad_input)?;
    eprintln!("built {} ({} bytes)", built.path.display(), built.bytes);
    Ok(ExitStatus::Success)
}

pub fn new(args: NewArgs) -> Result<ExitStatus, CliError> {
    let lang = match args.lang {
        LangArg::Rust => Lang::Rust,
        LangArg::Python => Lang::Python,
        LangArg::Js => Lang::Js,
    };
    let written = build::new_project(&args.dir, lang).map_err(CliError::bad_input)?;
    for f in &written {
        println!("wrote {}", f.display());
    }
    let src = match lang {
        Lang::Python => "app.py",
        Lang::Js => "app.js",
        Lang::Rust => ".",
    };
    println!(
        "next (the first run builds, later runs build only after a change):\n  cd {}\n  graflow-host run {src} --input '{{\"name\": \"world\"}}'\n  graflow-host dev {src} --input '{{\"name\": \"world\"}}'   # run again on every save",
        args.dir.display()
    );
    Ok(ExitStatus::Success)
}
