//! Runs left by the previous version of this package (a `run.json` beside each log, no
//! `state.json`) still hydrate (LC-1's migration), and their `run.json` reads and writes the
//! same bytes.
//!
//! `tests/fixtures/snapshot-v1/runs/` was written by that version (four runs in a `runsLogDir`
//! left by a service that was then dropped):
//!
//! - `51d0…`: full meta (every id, a media policy, a bundle with a secret header), an
//!   `'error'` event, finished `succeeded` (its `run.json` still says `running`: that version's
//!   `finish` wrote no snapshot, the log's `'end'` line is the verdict);
//! - `f83c…`: `running`, with `cancelRequested`, `exitCode` and `signal` written by the host:
//!   interrupted;
//! - `ad5e…`: dropped (`canceled` snapshot);
//! - `2cc1…`: finished `failed` by SIGKILL (snapshot `queued`).

use std::fs;
use std::path::{Path, PathBuf};

use chat_run_core::durable::{RunSnapshot, INTERRUPTED_CODE, SNAPSHOT_FILE, STATE_FILE};
use chat_run_core::log_writer::{LogLimits, LogShared};
use chat_run_core::{ListFilter, LogLayout, Service, ServiceConfig};
use serde_json::{json, Value};

const SUCCEEDED: &str = "51d0e635-c245-4563-803d-e9252490a464";
const INTERRUPTED: &str = "f83c364a-81da-4303-a5cc-be3c46422dcd";
const DROPPED: &str = "ad5e83e0-c75c-4f97-9f26-2453429425ac";
const KILLED: &str = "2cc18791-ff17-4bc7-a6cf-1248bd434fd3";
const NOW: f64 = 9000.0;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot-v1")
}

/// A private copy of the fixture's `runs/` (hydration appends to logs and writes state files).
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
    let mut service = Service::new(
        ServiceConfig {
            max_events: Some(2000),
            log: Some(LogLayout {
                prefix: format!("{}/", dir.display()),
                suffix: "/events.jsonl".into(),
            }),
            log_limits: LogLimits::default(),
        },
        LogShared::new(None),
    );
    service.index_runs(dir);
    service
}

fn state(svc: &Service, id: &str) -> Value {
    let slot = svc.get(id).unwrap();
    let hydrated: Value = serde_json::from_str(&svc.hydrated_json(slot).unwrap()).unwrap();
    hydrated["state"].clone()
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
fn lc_1_a_v1_runs_dir_is_indexed_and_its_runs_hydrate_with_their_verdicts() {
    let dir = copy_runs("hydrate");
    let mut svc = service(&dir);
    let stats = svc.stats();
    assert_eq!((stats.hydration.indexed, stats.hydration.skipped), (4, 0));
    assert!(
        svc.list(&ListFilter::default()).is_empty(),
        "LC-2: nothing loaded"
    );
    for id in [SUCCEEDED, INTERRUPTED, DROPPED, KILLED] {
        assert!(svc.hydrate(id, NOW).unwrap().is_some(), "{id}");
    }

    let succeeded = state(&svc, SUCCEEDED);
    assert_eq!(succeeded["status"], "succeeded");
    assert_eq!(succeeded["exitCode"], 0);
    assert_eq!(succeeded["error"], "boom");
    assert_eq!(succeeded["errorCode"], "E_BOOM");
    assert_eq!(succeeded["terminalAt"], 1003);
    assert_eq!(succeeded["assistantMessageId"], "am-1");
    assert_eq!(succeeded["clientRequestId"], "cr-1");
    assert_eq!(succeeded["pluginId"], "pl-1");
    assert_eq!(succeeded["mediaExecution"], json!({ "mode": "question" }));
    assert_eq!(
        succeeded["toolBundle"]["mcpServers"][0],
        json!({ "id": "s1", "label": "Search", "transport": "http", "enabled": true, "authMode": "oauth" })
    );
    let slot = svc.get(SUCCEEDED).unwrap();
    assert_eq!(svc.state(slot).unwrap().next_event_id, 4);
    assert!(
        !dir.join(SUCCEEDED).join(STATE_FILE).exists(),
        "a terminal old run is only read"
    );

    let killed = state(&svc, KILLED);
    assert_eq!(
        (&killed["status"], &killed["signal"], &killed["exitCode"]),
        (&json!("failed"), &json!("SIGKILL"), &Value::Null)
    );
    assert_eq!(state(&svc, DROPPED)["status"], "canceled");

    // The interrupted run: failed, two records after the log's last id, a state file written.
    let interrupted = state(&svc, INTERRUPTED);
    assert_eq!(interrupted["status"], "failed");
    assert_eq!(interrupted["errorCode"], INTERRUPTED_CODE);
    assert_eq!(interrupted["terminalTrigger"], "daemon_restart");
    let slot = svc.get(INTERRUPTED).unwrap();
    let run = svc.state(slot).unwrap();
    assert!(run.cancel_requested);
    assert_eq!(run.next_event_id, 5);
    let written: Value =
        serde_json::from_str(&fs::read_to_string(dir.join(INTERRUPTED).join(STATE_FILE)).unwrap())
            .unwrap();
    assert_eq!(written, interrupted);
    assert_eq!(written["schemaVersion"], 1);
    let log = fs::read_to_string(dir.join(INTERRUPTED).join("events.jsonl")).unwrap();
    let last: Vec<Value> = log
        .lines()
        .skip(2)
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(last.len(), 2);
    assert_eq!(
        (&last[0]["id"], &last[0]["event"]),
        (&json!(3), &json!("error"))
    );
    assert_eq!(
        last[1],
        json!({ "id": 4, "event": "end", "data": { "code": 1, "signal": null, "status": "failed",
            "terminalAt": 9000, "resumable": false, "endedWithUnfinishedWork": false },
            "timestamp": 9000 })
    );
    // The old run.json is never written again.
    assert_eq!(
        fs::read_to_string(dir.join(INTERRUPTED).join(SNAPSHOT_FILE)).unwrap(),
        fs::read_to_string(fixture().join("runs").join(INTERRUPTED).join(SNAPSHOT_FILE)).unwrap()
    );
    // Creation order, by the old runs' createdAt.
    let ids: Vec<String> = svc
        .list(&ListFilter::default())
        .into_iter()
        .map(|slot| svc.state(slot).unwrap().id.clone())
        .collect();
    assert_eq!(ids, vec![SUCCEEDED, INTERRUPTED, DROPPED, KILLED]);
    let _ = fs::remove_dir_all(&dir);
}
