//! What a core call can refuse, with the message a user of the JS package sees (the napi
//! crate prefixes it with `chat-run-service: ` and maps each kind to a napi status, in one
//! place). Disk trouble of the event log is not an error of any call: it is counted and
//! reported once per service (see [`crate::log_writer::LogFailure`]).

use std::fmt;

/// Errors the core reports to the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A service id that was destroyed or never handed out (see [`crate::ServiceTable`]).
    UnknownService(u32),
    /// Every `u32` service id of this environment was used.
    TooManyServices,
    /// A run slot that is not a live run of this service.
    UnknownRun(u32),
    /// An event-name number that was never registered with this service.
    UnknownEventName(u32),
    /// The event data argument could not be read as a string.
    EventDataNotText,
    /// The event data text was not valid UTF-8.
    EventDataNotUtf8(std::str::Utf8Error),
    /// A batch of staged emits (BND-6) that does not follow its format; the text says how.
    StagedBatch(String),
    /// A reply could not be encoded as JSON.
    Encode(String),
    /// Part of `runsLogDir` could not be read for want of a resource, so a lookup cannot be
    /// answered (LC-2, LC-3).
    Unreadable(crate::durable::Unreadable),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::UnknownService(id) => {
                write!(f, "service {id} has been destroyed or never existed")
            }
            CoreError::TooManyServices => {
                f.write_str("too many services created in this environment (limit 2^32)")
            }
            CoreError::UnknownRun(slot) => write!(
                f,
                "run handle {slot} is not a live run of this service (expected a run object returned by this service's create())"
            ),
            CoreError::UnknownEventName(id) => write!(
                f,
                "event name number {id} was never registered with this service (expected a number from intern_event)"
            ),
            CoreError::EventDataNotText => f.write_str("expected the event data as a JSON string"),
            CoreError::EventDataNotUtf8(error) => write!(f, "event data is not UTF-8 ({error})"),
            CoreError::StagedBatch(problem) => {
                write!(f, "malformed batch of staged emits: {problem}")
            }
            CoreError::Encode(error) => write!(f, "could not encode a reply as JSON ({error})"),
            CoreError::Unreadable(unreadable) => unreadable.fmt(f),
        }
    }
}

impl std::error::Error for CoreError {}

impl From<serde_json::Error> for CoreError {
    fn from(error: serde_json::Error) -> Self {
        CoreError::Encode(error.to_string())
    }
}

impl From<crate::durable::Unreadable> for CoreError {
    fn from(unreadable: crate::durable::Unreadable) -> Self {
        CoreError::Unreadable(unreadable)
    }
}

pub type CoreResult<T> = Result<T, CoreError>;
