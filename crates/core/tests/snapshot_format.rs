//! The typed `run.json` reads what the untyped code wrote, and writes the same bytes.
//!
//! `tests/fixtures/snapshot-v1/` was produced by the service as it was before the snapshot
//! became a serde struct (`durable::snapshot` with 14 parameters, `restore` over a
//! `serde_json::Map`): four runs in a `runsLogDir` left by a service that was then dropped
//!
//! - `51d0…`: full meta (every id, a media policy, a bundle with a secret header), an
//!   `'error'` event, finished `succeeded` (its `run.json` still says `running`: `finish`
//!   writes no snapshot, the log's `'end'` line is the verdict);
//! - `f83c…`: `running`, with `cancelRequested`, `exitCode` and `signal` written by the host:
//!   interrupted by the restart;
//! - `ad5e…`: dropped (`canceled` snapshot);
//! - `2cc1…`: finished `failed` by SIGKILL (snapshot `queued`);
//!
//! and, next to them, what that code's restore (at `now = 9000`) handed to JS for each run and
//! the `run.json` it rewrote for the interrupted one.

use std::fs;
use std::path::{Path, PathBuf};

use chat_run_core::durable::{RunSnapshot, INTERRUPTED_CODE, SNAPSHOT_FILE};
use chat_run_core::log_writer::{LogLimits, LogShared};
use chat_run_core::{LogLayout, Service, ServiceConfig};
use serde_json::Value;

const INTERRUPTED: &str = "f83c364a-81da-4303-a5cc-be3c46422dcd";
const NOW: f64 = 9000.0;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot-v1")
}

/// A private copy of the fixture's `runs/` (restore appends to logs and rewrites snapshots).
fn copy_runs(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chat-run-core-v1-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    for run in fs::read_dir(fixture().join("runs")).unwrap() {
        let run = run.unwrap().path();
        let to = dir.join(run.file_name().unwrap());
        fs::create_dir_all(&to).unwrap();
        for file in fs::read_dir(&run).unwrap() {
            let file = file.unwrap().path();
            fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
        }
    }
    dir
}

fn service(dir: &Path) -> Service {
    Service::new(
        ServiceConfig {
            max_events: Some(2000),
            log: Some(LogLayout {
                prefix: format!("{}/", dir.display()),
                suffix: "/events.jsonl".into(),
            }),
            log_limits: LogLimits::default(),
        },
        LogShared::new(None),
    )
}

/// JSON with every number as an f64 (`0` and `0.0` are the same number to JS).
fn as_js(value: Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(as_js).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, as_js(v))).collect()),
        other => other,
    }
}

#[test]
fn v1_snapshots_read_back_and_write_the_same_bytes() {
    for run in fs::read_dir(fixture().join("runs")).unwrap() {
        let path = run.unwrap().path().join(SNAPSHOT_FILE);
        let text = fs::read_to_string(&path).unwrap();
        let snapshot = RunSnapshot::parse(&text).unwrap();
        assert_eq!(snapshot.to_json().unwrap(), text, "{}", path.display());
    }
}

#[test]
fn v1_runs_restore_to_what_the_untyped_restore_handed_to_js() {
    let dir = copy_runs("restore");
    let mut svc = service(&dir);
    let restored = svc.restore(&dir, NOW);
    let before: Vec<Value> =
        fs::read_to_string(fixture().join("restored-by-the-untyped-restore.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
    assert_eq!(restored.len(), before.len());
    for (now, then) in restored.iter().zip(before) {
        let mut now_json: Value = serde_json::from_str(&now.snapshot.to_json().unwrap()).unwrap();
        let mut then_json = then;
        // `seq` is the creation order in the service that holds the run: the restoring one.
        now_json["seq"] = Value::Null;
        then_json["seq"] = Value::Null;
        assert_eq!(as_js(now_json), as_js(then_json));
        // The core holds what it handed over.
        let run = svc.state(now.slot).unwrap();
        assert_eq!(run.snapshot().id, now.snapshot.id);
        assert_eq!(run.status, now.snapshot.status);
        assert_eq!(Some(run.next_event_id), now.snapshot.next_event_id);
        assert_eq!(Some(run.updated_at), now.snapshot.updated_at);
        assert_eq!(svc.get(&run.id), Some(now.slot));
    }
    let interrupted = svc.state(svc.get(INTERRUPTED).unwrap()).unwrap();
    assert_eq!(interrupted.error_code.as_deref(), Some(INTERRUPTED_CODE));
    // The interrupted run's rewritten run.json and its closing 'end' line, byte for byte.
    assert_eq!(
        fs::read_to_string(dir.join(INTERRUPTED).join(SNAPSHOT_FILE)).unwrap(),
        fs::read_to_string(fixture().join("interrupted-run.json-after-restore")).unwrap()
    );
    let log = fs::read_to_string(dir.join(INTERRUPTED).join("events.jsonl")).unwrap();
    assert_eq!(
        log.lines().last(),
        Some(
            r#"{"id":3,"event":"end","data":{"code":null,"signal":null,"status":"failed"},"timestamp":9000}"#
        )
    );
    let _ = fs::remove_dir_all(&dir);
}
