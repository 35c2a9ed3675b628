//! The chat-run registry of the open-design daemon, as plain Rust. Nothing in this crate
//! knows about Node: it has no napi dependency, every module is exercised by `cargo test` on
//! its own, and the napi crate at the repository root only converts arguments and results.
//!
//! One [`Service`] is one `createChatRunService` instance. Its methods are spread over the
//! files that own each job:
//!
//! - [`service`]: the [`Service`] itself: the slab of runs, the indexes by id, project and
//!   conversation, create / get / list, host field writes, drop / evict / release.
//! - [`run`]: one run's state ([`RunState`], with its one constructor), the terminal statuses,
//!   the host-writable fields ([`TextField`], [`NumberField`]) and [`MirrorFields`].
//! - [`emit`]: emit, event-name interning, `set_error`, `finish` (in two steps for the hooks),
//!   `prepare_restart`, and queueing log lines to the writer.
//! - [`batch`]: the batches of staged emits the facade hands over in one call (BND-6).
//! - [`replay`]: what `stream()` replays for a cursor, and the compact batch it crosses in.
//! - [`control`]: cancel and shutdown (the plan stepping, the cancel origin), signalling the
//!   child, the run's process tree (LC-7).
//! - [`lookup`]: the keys a run is found by besides its id (`clientRequestId`, the plugin
//!   workflow id).
//! - [`durable`]: runs that outlive their process: each run's `state.json` (LC-1), the disk
//!   indexes and lazy hydration (LC-2), and reading the previous version's `run.json`.
//! - [`stats`]: the health snapshot, in the shape the JS facade returns.
//! - [`config`]: construction options and their defaults; [`service_table`]: the services
//!   of one host environment, addressed by ids that are never reused.
//! - [`history`]: the `maxEvents` event ring, kept compressed.
//! - [`log_writer`]: the JSONL appender thread (batched writes, close, flush barrier).
//! - [`backfill`]: reads evicted records back from a run's log for old cursors (IMP-3).
//! - [`files`]: opening what `runsLogDir` holds without blocking on a FIFO or reading a
//!   directory (only regular files are read or appended to).
//! - [`escalation`]: the cancel / shutdown plan as a step machine.
//! - [`signals`]: the process-group guard (IMP-5) and the `kill`/`killpg` calls.
//! - [`tree`]: a run's process tree (LC-7): the child, its group and its descendants, captured
//!   and signalled by identity (pid and start time).
//! - [`timing`]: the timer clamp and the env-var rules (TMR, ENV).
//! - [`policy`]: mediaExecution / toolBundle normalization and the redacted summary.
//! - [`error`]: what can go wrong, with the messages users see.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod backfill;
pub mod batch;
pub mod config;
pub mod control;
pub mod durable;
pub mod emit;
pub mod error;
pub mod escalation;
pub mod files;
pub mod history;
pub mod log_writer;
pub mod lookup;
pub mod policy;
pub mod replay;
pub mod run;
pub mod service;
pub mod service_table;
pub mod signals;
pub mod stats;
pub mod timing;
pub mod tree;

#[cfg(test)]
mod test_support;

pub use config::{LogLayout, ServiceConfig, ServiceDefaults};
pub use control::{CancelStart, PlanKind};
pub use error::{CoreError, CoreResult};
pub use run::{
    is_terminal, MirrorFields, NumberField, RunState, TextField, TERMINAL_STATUSES,
    TERMINATION_UNVERIFIED,
};
pub use service::{CreateMeta, Created, ListFilter, Service};
pub use service_table::ServiceTable;
pub use stats::Stats;
