//! Runs that survive a daemon restart: each run's status is kept next to its log as
//! `<runsLogDir>/<runId>/run.json`, written atomically (temp file + rename, owner-only
//! permissions), and a new service over the same directory reads them back.
//!
//! A snapshot is written when the run's directory first exists (its first persisted line), on
//! host status writes after that, and on `drop`. `finish` writes none: its verdict is the log's
//! `'end'` line (which `finish` writes anyway), and restore reads it back from there, so
//! finishing costs no extra file operations. A run whose snapshot and log both say it was still
//! active when the old process died comes back `failed` with [`INTERRUPTED_CODE`], and its log
//! gets a closing `'end'` line so replay ends cleanly.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// File name of the status snapshot inside a run's directory.
pub const SNAPSHOT_FILE: &str = "run.json";
/// `errorCode` of a run that was active when its daemon died.
pub const INTERRUPTED_CODE: &str = "RUN_INTERRUPTED_BY_RESTART";
/// `error` of such a run.
pub const INTERRUPTED_MESSAGE: &str =
    "The daemon stopped while this run was active; it was marked failed when the run registry restarted.";
/// Snapshot format version.
pub const SNAPSHOT_VERSION: u64 = 1;

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
    pub snapshot: Map<String, Value>,
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
        let Ok(Value::Object(snapshot)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if snapshot.get("id").and_then(Value::as_str) != Some(name) {
            continue;
        }
        found.push(Found {
            log_path: run_dir.join("events.jsonl"),
            snapshot,
        });
    }
    // Creation order: createdAt, then the old service's creation sequence for runs created in
    // the same millisecond.
    let key = |f: &Found| {
        (
            f.snapshot
                .get("createdAt")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            f.snapshot.get("seq").and_then(Value::as_u64).unwrap_or(0),
        )
    };
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
    for line in crate::core::backfill::read_range(path, 0.0, u64::MAX) {
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
            .find_map(|v| crate::core::policy::trimmed_non_empty(v.get(key)).map(str::to_owned))
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

/// Builds a snapshot object.
#[allow(clippy::too_many_arguments)]
pub fn snapshot(
    id: &str,
    seq: u64,
    project_id: Option<&str>,
    conversation_id: Option<&str>,
    constant: &Value,
    status: Option<&str>,
    created_at: f64,
    updated_at: f64,
    exit_code: Option<f64>,
    signal: Option<&str>,
    error: Option<&str>,
    error_code: Option<&str>,
    cancel_requested: bool,
    next_event_id: u64,
) -> String {
    json!({
        "version": SNAPSHOT_VERSION,
        "id": id,
        "seq": seq,
        "projectId": project_id,
        "conversationId": conversation_id,
        "meta": constant,
        "status": status,
        "createdAt": created_at,
        "updatedAt": updated_at,
        "exitCode": exit_code,
        "signal": signal,
        "error": error,
        "errorCode": error_code,
        "cancelRequested": cancel_requested,
        "nextEventId": next_event_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let ids: Vec<&str> = found
            .iter()
            .filter_map(|f| f.snapshot["id"].as_str())
            .collect();
        assert_eq!(ids, vec![b, c, a]);
        assert!(scan(&d.join("missing")).is_empty());
        let _ = fs::remove_dir_all(&d);
    }
}
