//! The plain-Rust core of the chat-run service. Nothing in here knows about Node:
//! every module is exercised by `cargo test` on its own, and `crate::binding` is a thin
//! napi layer over it.
//!
//! - [`registry`]: the run registry and the per-run state machine (first verdict wins,
//!   exactly one `end`, ids, eviction decisions, list/get indexes).
//! - [`history`]: the `maxEvents` event ring, kept as serialized JSON records.
//! - [`log_writer`]: the JSONL appender thread (batched writes, close, flush barrier).
//! - [`replay`]: the compact form replayed records cross to JS in.
//! - [`backfill`]: reads evicted records back from a run's log for old cursors (IMP-3).
//! - [`durable`]: per-run status snapshots (`run.json`) and restoring runs after a restart.
//! - [`escalation`]: the cancel / shutdown plan (abort → SIGTERM → grace → SIGKILL).
//! - [`signals`]: the process-group guard (IMP-5) and the `kill`/`killpg` calls.
//! - [`timing`]: the env-var and timer clamping rules (ENV, TMR).
//! - [`policy`]: mediaExecution / toolBundle normalization and the redacted summary.

pub mod backfill;
pub mod durable;
pub mod escalation;
pub mod history;
pub mod log_writer;
pub mod policy;
pub mod registry;
pub mod replay;
pub mod signals;
pub mod timing;
