//! Runs that outlive their process (SPEC LC-1, LC-2).
//!
//! With logging on, every run has `<runsLogDir>/<runId>/state.json` beside its journal
//! (`events.jsonl`): one JSON object in the upstream daemon's format (schema version 1, its
//! field names), so a daemon can switch between this package and the upstream module over the
//! same directory without losing a run. The file is written synchronously, in the calling thread,
//! at the lifecycle points LC-1 lists (never per ordinary emit), atomically (a temp file, then
//! `rename`), owner-only.
//!
//! A new service reads no run into memory ([`index`]): it scans the directory once for the two
//! indexes `list({ projectId })` and `createOrReuse` need, and hydrates a run ([`hydrate`]) only
//! when `get`, `list({ projectId })` or `createOrReuse` asks for it. A file that says its run
//! was still active is an interrupted run: hydration marks it failed with
//! [`INTERRUPTED_CODE`], appends an `'error'` and an `'end'` record to its journal and
//! rewrites the file.
//!
//! - [`state`]: the file's typed form, the host-owned values ([`HostFields`]), writing it;
//! - [`journal`]: reading a journal's tail back and appending to a closed journal;
//! - [`index`]: the scan at construction and the disk indexes;
//! - [`hydrate`]: loading one run (and marking it interrupted);
//! - [`legacy`]: the `run.json` this package wrote before, read for migration only.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub mod hydrate;
pub mod index;
pub mod journal;
pub mod legacy;
pub mod state;

pub use hydrate::HydrationStats;
pub use index::DiskIndex;
pub use legacy::{read_log_state, LogState, RunIds, RunSnapshot, SnapshotMeta, SNAPSHOT_FILE};
pub use state::{HostFields, StateFile, SCHEMA_VERSION, STATE_FILE};

/// `errorCode` of a run whose file said it was active when a service hydrated it (LC-2).
pub const INTERRUPTED_CODE: &str = "DAEMON_RESTARTED";
/// `error` of such a run.
pub const INTERRUPTED_MESSAGE: &str = "Run interrupted because the daemon restarted.";
/// `terminalTrigger` and `terminalRecoveryReason` of such a run.
pub const DAEMON_RESTART: &str = "daemon_restart";

/// LC-2: `id` has the shape of a run id as `create` makes them (a hyphenated UUID,
/// `8-4-4-4-12` hex digits). Only such an id ever becomes a path: `'../../etc'`, `/`, `\`, NUL
/// or `..` never reach the filesystem.
pub fn is_run_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, &byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// Reads a field without ever failing the whole file: `null` or a value of the wrong type
/// gives the field's default (as a missing field does, through `#[serde(default)]`).
pub(crate) fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = Value::deserialize(deserializer)?;
    if value.is_null() {
        return Ok(T::default());
    }
    Ok(T::deserialize(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_2_only_uuid_shaped_ids_are_run_ids() {
        assert!(is_run_id("2cc18791-ff17-4bc7-a6cf-1248bd434fd3"));
        assert!(is_run_id("2CC18791-FF17-4BC7-A6CF-1248BD434FD3"));
        for hostile in [
            "",
            "../../etc",
            "/",
            "\\",
            "..",
            "a\0b",
            "2cc18791-ff17-4bc7-a6cf-1248bd434fd",
            "2cc18791-ff17-4bc7-a6cf-1248bd434fd3/",
            "2cc18791/ff17-4bc7-a6cf-1248bd434fd3",
            "2cc18791-ff17-4bc7-a6cf-1248bd434f..",
            "{2cc18791-ff17-4bc7-a6cf-1248bd434f}",
            "urn:uuid:2cc18791-ff17-4bc7-a6cf-12",
            "2cc18791ff174bc7a6cf1248bd434fd3",
        ] {
            assert!(!is_run_id(hostile), "{hostile:?}");
        }
    }
}
