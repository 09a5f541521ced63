use crate::bindings::graflow::task::types::TaskError as WitTaskError;

/// Why a task failed: permanently, or transiently (retried while the task's
/// `max_retries` allows).
///
/// Any `std::error::Error` converts into a permanent failure, so `?` works on
/// I/O, parse and serde errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// A permanent failure: never retried.
    Failed(String),
    /// A transient failure: retried while `max_retries` allows.
    Retryable(String),
}

impl TaskError {
    /// A permanent failure with `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        TaskError::Failed(message.into())
    }
    /// A transient failure with `message`.
    pub fn retryable(message: impl Into<String>) -> Self {
        TaskError::Retryable(message.into())
    }
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            TaskError::Failed(m) | TaskError::Retryable(m) => m,
        }
    }
    pub(crate) fn into_wit(self) -> WitTaskError {
        match self {
            TaskError::Failed(m) => WitTaskError::Failed(m),
            TaskError::Retryable(m) => WitTaskError::Retryable(m),
        }
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(error: E) -> Self {
        TaskError::Failed(error.to_string())
    }
}
