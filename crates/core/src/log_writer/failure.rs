//! What the log writer reports when a line or a state file did not reach the disk: the
//! operation, the cause and the path, with the message the facade shows (OBS-2).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// What failed when a line or a state file did not reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogOperation {
    /// Creating the run's directory.
    CreateDir,
    Open,
    Write,
    /// Writing the run's `state.json` (LC-1).
    StateFile,
    /// The writer's queue stayed at its cap (see [`super::LogLimits`]).
    Queue,
    /// The writer thread could not be started.
    StartWriter,
}

impl fmt::Display for LogOperation {
    /// The verb of the report: "could not `<this>` the run event log …".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogOperation::CreateDir => "mkdir",
            LogOperation::Open => "open",
            LogOperation::Write => "write",
            LogOperation::StateFile => "write the state file of",
            LogOperation::Queue => "queue",
            LogOperation::StartWriter => "start a writer thread for",
        })
    }
}

/// Why it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFailureCause {
    /// The OS refused (the `io::Error` text).
    Io(String),
    /// The writer fell `queued_bytes` behind, past `cap`, for longer than `wait`.
    QueueFull {
        queued_bytes: usize,
        cap: usize,
        wait: Duration,
    },
}

impl fmt::Display for LogFailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogFailureCause::Io(message) => f.write_str(message),
            LogFailureCause::QueueFull {
                queued_bytes,
                cap,
                wait,
            } => write!(
                f,
                "the log writer fell {queued_bytes} bytes behind (cap {cap}) for longer than {wait:?}; the line stays in memory but is not persisted"
            ),
        }
    }
}

/// What the writer reports about a failed line. Its `Display` is the message the host sees
/// (once per service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFailure {
    pub path: PathBuf,
    pub operation: LogOperation,
    pub cause: LogFailureCause,
}

impl LogFailure {
    pub fn io(path: PathBuf, operation: LogOperation, error: &io::Error) -> Self {
        Self {
            path,
            operation,
            cause: LogFailureCause::Io(error.to_string()),
        }
    }
}

impl fmt::Display for LogFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.operation {
            LogOperation::StateFile => "run",
            _ => "run event log",
        };
        write!(
            f,
            "could not {} the {what} {}: {} (events still reach clients and memory; further log errors of this service are only counted)",
            self.operation,
            self.path.display(),
            self.cause
        )
    }
}
