//! Every way a workflow file can be refused, each naming the file and the
//! thing at fault.

use super::flow::FlowError;
use std::path::PathBuf;

/// Why a module file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModuleLoadError {
    /// The file could not be read (missing, not a file, over `max_module_bytes`).
    #[error(transparent)]
    Read(Box<crate::files::ReadError>),
    /// The file is not a WebAssembly component.
    #[error("{0}")]
    NotAComponent(String),
    /// The component does not fit the graflow contract (`wit/graflow.wit`).
    #[error("{0}")]
    Incompatible(String),
}

/// Why a workflow file was refused. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither the workflow file nor any of its modules gives a flow, or
    /// several modules declare one.
    #[error("{path}: {message}")]
    NoFlow {
        /// The workflow file, or the component run without one.
        path: PathBuf,
        /// What is missing and how to give it.
        message: String,
    },
    /// The workflow file could not be read.
    #[error(transparent)]
    Read(Box<crate::files::ReadError>),
    /// The file is not valid TOML or does not fit the schema.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The flow expression does not parse.
    #[error("{path}: {origin}: {error}")]
    Flow {
        /// The file.
        path: PathBuf,
        /// Where the flow came from: `[workflow].flow`, or the module that
        /// declares it.
        origin: String,
        /// The parse error (with column).
        error: FlowError,
    },
    /// The flow or a setting names a task that is not declared.
    #[error("{path}: unknown task '{task}' ({context}); declared tasks: {declared}")]
    UnknownTask {
        /// The file.
        path: PathBuf,
        /// The name.
        task: String,
        /// Where it was named.
        context: String,
        /// The tasks that exist (and a "did you mean").
        declared: String,
    },
    /// A task names a module that is not in `[modules]`.
    #[error("{path}: task '{task}' uses module '{module}', which is not in [modules] (modules: {declared})")]
    UnknownModule {
        /// The file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The module name.
        module: String,
        /// The modules that exist (and a "did you mean").
        declared: String,
    },
    /// A module file is missing or unreadable.
    #[error("{path}: module '{module}'")]
    ModuleFile {
        /// The workflow file.
        path: PathBuf,
        /// The module.
        module: String,
        /// The module file.
        file: PathBuf,
        /// The cause (names the module file).
        source: Box<crate::files::ReadError>,
    },
    /// A module file is not a WebAssembly component.
    #[error("{path}: module '{module}': {file} is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The workflow file.
        path: PathBuf,
        /// The module.
        module: String,
        /// The module file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A component does not implement the graflow task contract.
    #[error("{path}: module '{module}' ({file}) does not fit the graflow task contract: {reason}")]
    Incompatible {
        /// The workflow file.
        path: PathBuf,
        /// The module.
        module: String,
        /// The module file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A task's export is not provided by its module.
    #[error(
        "{path}: task '{task}': module '{module}' does not export a task named '{export}' (it exports: {available})"
    )]
    NotExported {
        /// The workflow file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The module.
        module: String,
        /// The export name looked for.
        export: String,
        /// What the module exports (and a "did you mean").
        available: String,
    },
    /// A setting has a value that cannot work.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The workflow file.
        path: PathBuf,
        /// The setting, as `[table].key`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl From<crate::files::ReadError> for ModuleLoadError {
    fn from(e: crate::files::ReadError) -> Self {
        ModuleLoadError::Read(Box::new(e))
    }
}

impl From<crate::files::ReadError> for LoadError {
    fn from(e: crate::files::ReadError) -> Self {
        LoadError::Read(Box::new(e))
    }
}
