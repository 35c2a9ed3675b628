//! Runs that survive a daemon restart: each run's status is kept next to its log as
//! `<runsLogDir>/<runId>/run.json`, written atomically (temp file + rename, owner-only
//! permissions), and a new service over the same directory reads them back.
//!
//! The file is one typed [`RunSnapshot`], written and read with serde. Reading is lenient the
//! way the format always was: a missing, `null` or ill-typed field takes its default, so files
//! written by any earlier version still restore (`crates/core/tests/snapshot_format.rs` reads a
//! set written before the snapshot was typed).
//!
//! A snapshot is written when the run's directory first exists (its first persisted line), on
//! host status writes after that, and on `drop`. `finish` writes none: its verdict is the log's
//! `'end'` line (which `finish` writes anyway), and restore reads it back from there, so
//! finishing costs no extra file operations. A run whose snapshot and log both say it was still
//! active when the old process died comes back `failed` with [`INTERRUPTED_CODE`], and its log
//! gets a closing `'end'` line so replay ends cleanly.
//!
//! What restore hands the facade for each run is the same [`RunSnapshot`], after the verdict
//! was applied and every field the facade mirrors was filled in ([`Restored`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::CoreResult;
use crate::history::{self, EventName};
use crate::policy;
use crate::run::{is_terminal, NewRun, RunState};
use crate::service::Service;

/// File name of the status snapshot inside a run's directory.
pub const SNAPSHOT_FILE: &str = "run.json";
/// `errorCode` of a run that was active when its daemon died.
pub const INTERRUPTED_CODE: &str = "RUN_INTERRUPTED_BY_RESTART";
/// `error` of such a run.
pub const INTERRUPTED_MESSAGE: &str =
    "The daemon stopped while this run was active; it was marked failed when the run registry restarted.";
/// Snapshot format version.
pub const SNAPSHOT_VERSION: u64 = 1;
/// The `data` of the `'end'` line restore appends to an interrupted run's log.
const INTERRUPTED_END_DATA: &str = r#"{"code":null,"signal":null,"status":"failed"}"#;

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

/// Reads a field without ever failing the whole snapshot: `null` or a value of the wrong type
/// gives the field's default (as a missing field does, through `#[serde(default)]`).
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
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

impl RunSnapshot {
    /// Parses a `run.json` text; `None` when it is not a JSON object.
    pub fn parse(text: &str) -> Option<Self> {
        match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => serde_json::from_value(value).ok(),
            _ => None,
        }
    }

    pub fn to_json(&self) -> CoreResult<String> {
        Ok(serde_json::to_string(self)?)
    }
}

impl RunState {
    /// The run's `run.json` as of now.
    pub fn snapshot(&self) -> RunSnapshot {
        RunSnapshot {
            version: SNAPSHOT_VERSION,
            id: self.id.clone(),
            seq: self.seq,
            project_id: self.project_id.clone(),
            conversation_id: self.conversation_id.clone(),
            meta: self.meta.clone().unwrap_or_default(),
            status: self.status.clone(),
            created_at: Some(self.created_at),
            updated_at: Some(self.updated_at),
            exit_code: self.exit_code,
            signal: self.signal.clone(),
            error: self.error.clone(),
            error_code: self.error_code.clone(),
            cancel_requested: self.cancel_requested,
            next_event_id: Some(self.next_event_id),
        }
    }
}

/// One run restored by [`Service::restore`]: its slot and its snapshot with every field
/// filled in (what the facade's run object mirrors).
#[derive(Clone, Debug, PartialEq)]
pub struct Restored {
    pub slot: u32,
    pub snapshot: RunSnapshot,
}

impl Service {
    /// Reads back the runs an earlier service left under `dir`. Runs that were active come
    /// back `failed` with [`INTERRUPTED_CODE`]; their log gets a closing `'end'` line. Every
    /// restored run is registered, with its log closed (nothing of it is written again).
    pub fn restore(&mut self, dir: &Path, now: f64) -> Vec<Restored> {
        let mut restored = Vec::new();
        for found in scan(dir) {
            let saved = found.snapshot;
            if self.has_id(&saved.id) {
                continue;
            }
            let log = read_log_state(&found.log_path);
            let target = self.log_target(found.log_path.clone());
            let mut run = RunState::new(NewRun {
                id: saved.id.clone(),
                seq: self.next_seq(),
                max_events: self.cfg.max_events,
                log: Some(target),
                meta: Some(saved.meta.clone()),
                now,
            });
            run.project_id = saved.project_id.clone();
            run.conversation_id = saved.conversation_id.clone();
            run.status = saved.status.clone();
            run.created_at = saved.created_at.unwrap_or(now);
            run.updated_at = saved.updated_at.unwrap_or(now);
            run.exit_code = saved.exit_code;
            run.signal = saved.signal.clone();
            run.error = saved.error.clone();
            run.error_code = saved.error_code.clone();
            run.cancel_requested = saved.cancel_requested;
            run.next_event_id = saved.next_event_id.unwrap_or(1).max(log.last_id + 1);
            run.log_closed = true;
            run.snapshotted = true;
            // The log's 'end' line carries finish's verdict (finish writes no snapshot).
            if let Some((end, at)) = log.end.as_ref().filter(|_| !run.is_terminal()) {
                let end_status = end.get("status").and_then(Value::as_str);
                if is_terminal(end_status) {
                    run.status = end_status.map(str::to_owned);
                    run.exit_code = end.get("code").and_then(Value::as_f64);
                    run.signal = end.get("signal").and_then(Value::as_str).map(str::to_owned);
                    run.updated_at = *at;
                    if log.error.is_some() {
                        run.error.clone_from(&log.error);
                    }
                    if log.error_code.is_some() {
                        run.error_code.clone_from(&log.error_code);
                    }
                }
            }
            if !run.is_terminal() {
                mark_interrupted(&mut run, &found.log_path, saved.seq, now);
            }
            let snapshot = run.snapshot();
            let slot = self.insert(run);
            restored.push(Restored { slot, snapshot });
        }
        restored
    }
}

/// A run that was active when its daemon died: its log gets a closing `'end'` line, it
/// becomes `failed` with [`INTERRUPTED_CODE`], and its `run.json` says so (keeping the
/// sequence number the old service gave it, which orders the next restore).
fn mark_interrupted(run: &mut RunState, log_path: &Path, saved_seq: u64, now: f64) {
    let end = history::record_line(
        run.next_event_id,
        EventName::Text("end"),
        Some(INTERRUPTED_END_DATA),
        now,
    );
    if append_line(log_path, &end).is_ok() {
        run.next_event_id += 1;
    }
    run.status = Some("failed".to_owned());
    run.error_code = Some(INTERRUPTED_CODE.to_owned());
    run.error = Some(INTERRUPTED_MESSAGE.to_owned());
    run.exit_code = None;
    run.signal = None;
    run.updated_at = now;
    let mut rewritten = run.snapshot();
    rewritten.seq = saved_seq;
    if let Ok(json) = rewritten.to_json() {
        let _ = write_atomic(&snapshot_path(log_path), json.as_bytes());
    }
}

/// Writes `bytes` to `path` atomically: a sibling temp file (mode 0600), then rename. The
/// directory must exist (the run's first log line creates it); a snapshot never recreates a
/// directory someone deleted.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        // No fsync: the guarantee is survival of a daemon crash (the page cache outlives the
        // process), not of a power cut, and an fsync here would stall every log line queued
        // behind it on the writer thread.
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The snapshot path for a run's log path.
pub fn snapshot_path(log_path: &Path) -> PathBuf {
    log_path.with_file_name(SNAPSHOT_FILE)
}

/// One snapshot found on disk.
pub struct Found {
    pub log_path: PathBuf,
    pub snapshot: RunSnapshot,
}

/// Reads every `<dir>/<uuid>/run.json` under `dir`. Unreadable or foreign entries are skipped.
pub fn scan(dir: &Path) -> Vec<Found> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if uuid::Uuid::parse_str(name).is_err() {
            continue;
        }
        let run_dir = entry.path();
        let Ok(text) = fs::read_to_string(run_dir.join(SNAPSHOT_FILE)) else {
            continue;
        };
        let Some(snapshot) = RunSnapshot::parse(&text) else {
            continue;
        };
        if snapshot.id != name {
            continue;
        }
        found.push(Found {
            log_path: run_dir.join("events.jsonl"),
            snapshot,
        });
    }
    // Creation order: createdAt, then the old service's creation sequence for runs created in
    // the same millisecond.
    let key = |f: &Found| (f.snapshot.created_at.unwrap_or(0.0), f.snapshot.seq);
    found.sort_by(|a, b| {
        let (ta, sa) = key(a);
        let (tb, sb) = key(b);
        ta.total_cmp(&tb).then(sa.cmp(&sb))
    });
    found
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
        let Ok(record) = serde_json::from_str::<Value>(&line) else {
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

/// Appends one line to a log, first ending a torn last line (a crash mid-write) so the new
/// line stays whole.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut out = Vec::with_capacity(line.len() + 2);
    if len > 0 {
        let mut last = [0u8; 1];
        let mut reader = File::open(path)?;
        reader.seek(SeekFrom::Start(len - 1))?;
        reader.read_exact(&mut last)?;
        if last[0] != b'\n' {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    file.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::TextField;
    use crate::service::{CreateMeta, ListFilter};
    use crate::test_support::{emit, flush, log_dir, meta, replay_ids, service};

    #[test]
    fn restart_restores_runs_and_marks_interrupted_ones_failed_with_a_closing_end_line() {
        let (dir, layout) = log_dir("restore");
        let mut old = service(Some(10), Some(layout.clone()));
        let done = old.create(meta("p", "c1"), 1.0);
        emit(&mut old, done.slot, "1");
        // As the facade does: the end data carries the verdict, which restore reads back.
        old.finish(
            done.slot,
            Some("succeeded".into()),
            Some(0.0),
            None,
            r#"{"code":0,"signal":null,"status":"succeeded"}"#,
            2.0,
        )
        .unwrap();
        let active = old.create(meta("p", "c2"), 3.0);
        emit(&mut old, active.slot, "1");
        emit(&mut old, active.slot, "2");
        old.set_text(active.slot, TextField::Status, Some("running".into()))
            .unwrap();
        let never = old.create(meta("p", "c3"), 4.0);
        flush(&old);
        drop(old); // the old daemon dies

        let mut new = service(Some(10), Some(layout));
        let restored = new.restore(&dir, 50.0);
        assert_eq!(
            restored.len(),
            2,
            "a run that never emitted has no directory to restore"
        );
        assert_eq!(new.get(&never.id), None);
        let done_slot = new.get(&done.id).unwrap();
        let active_slot = new.get(&active.id).unwrap();
        let d = new.state(done_slot).unwrap();
        assert_eq!(d.status.as_deref(), Some("succeeded"));
        assert_eq!(d.exit_code, Some(0.0));
        let a = new.state(active_slot).unwrap();
        assert_eq!(a.status.as_deref(), Some("failed"));
        assert_eq!(a.error_code.as_deref(), Some(INTERRUPTED_CODE));
        assert_eq!(a.next_event_id, 4);
        assert_eq!(replay_ids(&new, active_slot, 0.0), vec![1, 2, 3]);
        let filtered = new.list(&ListFilter {
            conversation_id: Some("c2"),
            ..ListFilter::default()
        });
        assert_eq!(filtered, vec![active_slot]);
        // What the facade gets is what the core now holds.
        let handed = &restored[1].snapshot;
        assert_eq!(restored[1].slot, active_slot);
        assert_eq!(handed.status.as_deref(), Some("failed"));
        assert_eq!(handed.next_event_id, Some(4));
        assert_eq!(handed.updated_at, Some(50.0));
        assert_eq!(handed.meta, SnapshotMeta::default());
        // Restoring twice does not duplicate.
        assert!(new.restore(&dir, 60.0).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_snapshot_is_written_and_read_as_the_same_typed_struct() {
        let (dir, layout) = log_dir("roundtrip");
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(
            CreateMeta::from_lowered(
                Some("p".into()),
                None,
                Some(r#"{"mode":"disabled"}"#),
                None,
                Some(r#"{"assistantMessageId":"a","pluginId":"x"}"#),
            ),
            1.0,
        );
        emit(&mut svc, created.slot, "1");
        svc.set_text(created.slot, TextField::Status, Some("running".into()))
            .unwrap();
        flush(&svc);
        let path = dir.join(&created.id).join(SNAPSHOT_FILE);
        let text = fs::read_to_string(path).unwrap();
        let read = RunSnapshot::parse(&text).unwrap();
        assert_eq!(read, svc.state(created.slot).unwrap().snapshot());
        assert_eq!(read.to_json().unwrap(), text);
        assert_eq!(read.meta.ids.assistant_message_id.as_deref(), Some("a"));
        assert_eq!(read.meta.ids.agent_id, None);
        assert_eq!(read.meta.media_execution.0["mode"], "disabled");
        let _ = fs::remove_dir_all(&dir);
    }

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
    fn snapshots_are_written_atomically_with_owner_only_permissions() {
        let d = dir("atomic");
        let path = d.join("x").join(SNAPSHOT_FILE);
        fs::create_dir_all(d.join("x")).unwrap();
        write_atomic(&path, b"{\"a\":1}").unwrap();
        write_atomic(&path, b"{\"a\":2}").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":2}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(d.join("x")).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        let _ = fs::remove_dir_all(&d);
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
                "{\"id\":3,\"event\":\"end\",\"data\":{\"code\":1,\"signal\":null,\"status\":\"failed\"},\"timestamp\":3}\n",
                "{\"id\":4,\"ev"
            ),
        )
        .unwrap();
        let state = read_log_state(&path);
        assert_eq!(state.last_id, 3);
        assert_eq!(state.error.as_deref(), Some("inner"));
        assert_eq!(state.error_code.as_deref(), Some("E1"));
        let (data, ts) = state.end.unwrap();
        assert_eq!(data["status"], "failed");
        assert_eq!(ts, 3.0);
        assert_eq!(read_log_state(&d.join("missing")), LogState::default());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn append_line_ends_a_torn_last_line_first() {
        let d = dir("torn");
        fs::create_dir_all(&d).unwrap();
        let path = d.join("events.jsonl");
        fs::write(&path, "{\"id\":1}\n{\"id\":2,\"ev").unwrap();
        append_line(&path, "{\"id\":3}").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"id\":1}\n{\"id\":2,\"ev\n{\"id\":3}\n"
        );
        assert_eq!(read_log_state(&path).last_id, 3);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn scan_reads_uuid_dirs_in_creation_order_and_skips_foreign_entries() {
        let d = dir("scan");
        let a = "11111111-1111-4111-8111-111111111111";
        let b = "22222222-2222-4222-8222-222222222222";
        let c = "44444444-4444-4444-8444-444444444444";
        fs::create_dir_all(d.join(c)).unwrap();
        // Same millisecond as `a`, created before it: the sequence decides.
        write_atomic(
            &d.join(c).join(SNAPSHOT_FILE),
            format!("{{\"id\":\"{c}\",\"createdAt\":5,\"seq\":1}}").as_bytes(),
        )
        .unwrap();
        for name in [a, b, "not-a-run"] {
            fs::create_dir_all(d.join(name)).unwrap();
        }
        write_atomic(
            &d.join(a).join(SNAPSHOT_FILE),
            format!("{{\"id\":\"{a}\",\"createdAt\":5,\"seq\":2}}").as_bytes(),
        )
        .unwrap();
        write_atomic(
            &d.join(b).join(SNAPSHOT_FILE),
            format!("{{\"id\":\"{b}\",\"createdAt\":1}}").as_bytes(),
        )
        .unwrap();
        write_atomic(&d.join("not-a-run").join(SNAPSHOT_FILE), b"{}").unwrap();
        fs::create_dir_all(d.join("33333333-3333-4333-8333-333333333333")).unwrap();
        let found = scan(&d);
        let ids: Vec<&str> = found.iter().map(|f| f.snapshot.id.as_str()).collect();
        assert_eq!(ids, vec![b, c, a]);
        assert!(scan(&d.join("missing")).is_empty());
        let _ = fs::remove_dir_all(&d);
    }
}
