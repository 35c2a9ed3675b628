//! The Node binding of [`chat_run_core`]: `#[napi]` free functions (cheaper to call than class
//! methods) that convert arguments, call the core and convert the result. No rule of the
//! service lives here; the core crate has no napi dependency, so it cannot leak the other way.
//!
//! - [`service`]: functions on a whole service (create / destroy, get, list, stats, flush)
//!   and the service-independent ones (defaults, timer clamp, policy summary).
//! - [`durable`]: the state file and hydration (LC-1..LC-4): the index scan, hydrating a
//!   run, finding one by `clientRequestId`, re-registering, persisting, `prepareRestart`.
//! - [`run`]: functions on one run (create, emit, finish, host field writes, replay).
//! - [`control`]: stopping runs (the cancel and shutdown steps, the shutdown snapshot,
//!   signalling the child and its process tree).
//! - [`staged`]: the batch of staged emits (BND-6), one call per batch.
//! - [`codes`]: the numeric `#[napi]` enums JS compares against (`binding.d.ts` names them).
//! - [`text`]: the UTF-8 reader for the hot `emit` argument and the Latin-1 fast path out.
//! - `instances`: the services of one Node environment, in napi instance data.
//!
//! Services are addressed by a `u32` id (`svc`) and runs by a `u32` slot; the JS facade keeps
//! both. Core errors become napi errors in one place, `map_error`.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use chat_run_core::CoreError;
use napi::{Error, Status};

pub mod codes;
pub mod control;
pub mod durable;
mod instances;
pub mod run;
pub mod service;
pub mod staged;
pub mod text;

/// A core error as the napi error JS sees: the core's message, prefixed with the package name,
/// and the status that says whose fault it was.
pub(crate) fn map_error(error: CoreError) -> Error {
    let status = match &error {
        CoreError::UnknownService(_)
        | CoreError::UnknownRun(_)
        | CoreError::UnknownEventName(_)
        | CoreError::EventDataNotUtf8(_)
        | CoreError::StagedBatch(_) => Status::InvalidArg,
        CoreError::EventDataNotText => Status::StringExpected,
        CoreError::TooManyServices | CoreError::Encode(_) | CoreError::Unreadable(_) => {
            Status::GenericFailure
        }
    };
    Error::new(status, format!("chat-run-service: {error}"))
}
