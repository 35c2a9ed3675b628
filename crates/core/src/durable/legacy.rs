//! The `run.json` the previous version of this package wrote beside each run's log (the
//! DUR-1 snapshot), read for migration and never written again (LC-1).
//!
//! A `run.json` is one typed [`RunSnapshot`], read leniently the way that format always was: a
//! missing, `null` or ill-typed field takes its default (`crates/core/tests/snapshot_format.rs`
//! reads a set written by that version). Its run's verdict may be only in the log: that
//! version's `finish` wrote no snapshot, so a snapshot that says the run was active is settled by
//! the log's last `'end'` record ([`read_log_state`]) before hydration calls it interrupted.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient;
use crate::error::CoreResult;
use crate::policy;

/// File name of the status snapshot inside a run's directory.
pub const SNAPSHOT_FILE: &str = "run.json";
/// Snapshot format version.
pub const SNAPSHOT_VERSION: u64 = 1;

/// `run.json`. Field names and shapes are the on-disk format (version 1); every field is
/// read leniently: a missing, `null` or ill-typed field takes its default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunSnapshot {
    #[serde(deserialize_with = "lenient")]
    pub version: u64,
    #[serde(deserialize_with = "lenient")]
    pub id: String,
    /// Creation sequence in the service that wrote it (orders runs created in the same ms).
    #[serde(deserialize_with = "lenient")]
    pub seq: u64,
    #[serde(deserialize_with = "lenient")]
    pub project_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub conversation_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub meta: SnapshotMeta,
    #[serde(deserialize_with = "lenient")]
    pub status: Option<String>,
    /// Always written; `None` only when read from a file that lacks it.
    #[serde(deserialize_with = "lenient")]
    pub created_at: Option<f64>,
    /// Always written (`null` for a non-number the host assigned).
    #[serde(deserialize_with = "lenient")]
    pub updated_at: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub exit_code: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub signal: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub error: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub error_code: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cancel_requested: bool,
    /// Always written; `None` only when read from a file that lacks it.
    #[serde(deserialize_with = "lenient")]
    pub next_event_id: Option<u64>,
}

/// What never changes after `create`: the id fields the core does not index, and the run's
/// normalized policies (the bundle only as its redacted summary: no secrets on disk).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SnapshotMeta {
    #[serde(deserialize_with = "lenient")]
    pub ids: RunIds,
    #[serde(deserialize_with = "lenient")]
    pub media_execution: MediaExecution,
    #[serde(deserialize_with = "lenient")]
    pub tool_bundle: ToolBundleSummary,
}

impl SnapshotMeta {
    pub fn new(ids: RunIds, media_execution: Value, tool_bundle_summary: Value) -> Self {
        Self {
            ids,
            media_execution: MediaExecution(media_execution),
            tool_bundle: ToolBundleSummary(tool_bundle_summary),
        }
    }
}

/// The id fields of `create(meta)` that the core keeps only for the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunIds {
    #[serde(deserialize_with = "lenient")]
    pub assistant_message_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub client_request_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub agent_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub applied_plugin_snapshot_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub plugin_id: Option<String>,
}

/// `meta.mediaExecution`: the normalized policy of SPEC §12 (`{"mode":"enabled"}` when absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MediaExecution(pub Value);

impl Default for MediaExecution {
    fn default() -> Self {
        Self(policy::normalize_media_execution(None))
    }
}

/// `meta.toolBundle`: the redacted summary of SPEC §14 (`{"mcpServers":[]}` when absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ToolBundleSummary(pub Value);

impl Default for ToolBundleSummary {
    fn default() -> Self {
        Self(policy::tool_bundle_summary(&Value::Null))
    }
}

impl RunSnapshot {
    /// Parses a `run.json` text; `None` when it is not a JSON object.
    pub fn parse(text: &str) -> Option<Self> {
        let fields = super::parse_object(text)?;
        serde_json::from_value(Value::Object(fields)).ok()
    }

    pub fn to_json(&self) -> CoreResult<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// What a run's log says about its end: the last id, the last `'end'` record and the error
/// fields its `'error'` records set (SPEC §8, in order).
#[derive(Debug, Default, PartialEq)]
pub struct LogState {
    pub last_id: u64,
    /// `(data, timestamp)` of the last `'end'` record.
    pub end: Option<(Value, f64)>,
    pub error: Option<String>,
    pub error_code: Option<String>,
}

/// Reads a run's log back (whole, valid lines only, in id order).
pub fn read_log_state(path: &Path) -> LogState {
    let mut state = LogState::default();
    for line in crate::backfill::read_range(path, 0.0, u64::MAX) {
        // (As a state file is read: a lone surrogate escape is U+FFFD, a too deep field is
        // left out, not the whole record.)
        let Some(record) = super::parse_object(&line).map(Value::Object) else {
            continue;
        };
        if let Some(id) = record.get("id").and_then(Value::as_u64) {
            state.last_id = id;
        }
        match record.get("event").and_then(Value::as_str) {
            Some("end") => {
                let data = record.get("data").cloned().unwrap_or(Value::Null);
                let ts = record
                    .get("timestamp")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                state.end = Some((data, ts));
            }
            Some("error") => {
                let (message, code) = error_fields(record.get("data"));
                if message.is_some() {
                    state.error = message;
                }
                if code.is_some() {
                    state.error_code = code;
                }
            }
            _ => {}
        }
    }
    state
}

/// SPEC ERR-1/ERR-2 on the JSON image of an `'error'` event's data.
fn object(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| v.is_object() || v.is_array())
}

fn error_fields(data: Option<&Value>) -> (Option<String>, Option<String>) {
    let payload = object(data);
    let nested = object(payload.and_then(|p| p.get("error")));
    let pick = |key: &str| {
        [nested, payload]
            .into_iter()
            .flatten()
            .find_map(|v| crate::policy::trimmed_non_empty(v.get(key)).map(str::to_owned))
    };
    (pick("message"), pick("code"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    #[test]
    fn missing_null_and_ill_typed_fields_read_as_their_defaults() {
        let read = RunSnapshot::parse(
            r#"{"id":"x","seq":"7","status":5,"createdAt":null,"updatedAt":"soon","exitCode":2,
                "signal":["SIGTERM"],"cancelRequested":1,"nextEventId":2.5,"meta":5,"extra":true}"#,
        )
        .unwrap();
        assert_eq!(
            read,
            RunSnapshot {
                id: "x".into(),
                exit_code: Some(2.0),
                ..RunSnapshot::default()
            }
        );
        assert_eq!(
            read.meta.media_execution.0,
            serde_json::json!({ "mode": "enabled" })
        );
        assert_eq!(
            read.meta.tool_bundle.0,
            serde_json::json!({ "mcpServers": [] })
        );
        let odd_meta = RunSnapshot::parse(
            r#"{"meta":{"ids":null,"mediaExecution":null,"toolBundle":"kept","x":1}}"#,
        )
        .unwrap();
        assert_eq!(odd_meta.meta.ids, RunIds::default());
        assert_eq!(odd_meta.meta.media_execution, MediaExecution::default());
        assert_eq!(odd_meta.meta.tool_bundle.0, "kept");
        assert_eq!(RunSnapshot::parse("[1]"), None);
        assert_eq!(RunSnapshot::parse("nope"), None);
    }

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("chat-run-durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn log_state_reads_the_end_verdict_and_error_fields() {
        let d = dir("state");
        fs::create_dir_all(&d).unwrap();
        let path = d.join("events.jsonl");
        fs::write(
            &path,
            concat!(
                "{\"id\":1,\"event\":\"error\",\"data\":{\"message\":\" outer \",\"error\":{\"code\":\"E1\"}},\"timestamp\":1}\n",
                "{\"id\":2,\"event\":\"error\",\"data\":{\"error\":{\"message\":\"inner\"}},\"timestamp\":2}\n",
                "{\"id\":3,\"event\":\"error\",\"data\":{\"error\":{\"message\":\"cut \\ud83d\"}},\"timestamp\":3}\n",
                "{\"id\":4,\"event\":\"end\",\"data\":{\"code\":1,\"signal\":null,\"status\":\"failed\"},\"timestamp\":3}\n",
                "{\"id\":5,\"ev"
            ),
        )
        .unwrap();
        let state = read_log_state(&path);
        assert_eq!(state.last_id, 4);
        assert_eq!(state.error.as_deref(), Some("cut \u{fffd}"));
        assert_eq!(state.error_code.as_deref(), Some("E1"));
        let (data, ts) = state.end.unwrap();
        assert_eq!(data["status"], "failed");
        assert_eq!(ts, 3.0);
        assert_eq!(read_log_state(&d.join("missing")), LogState::default());
        let _ = fs::remove_dir_all(&d);
    }
}
