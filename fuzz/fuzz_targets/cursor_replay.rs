//! Arbitrary cursors (any f64: NaN, ±Infinity, negatives, fractions, huge) and arbitrary event
//! names / data strings through `Service::emit` + `finish` + `replay`, with and without a log
//! (IMP-3 backfill). Properties: no panic; `replay` and `events_json` always give a JSON array
//! of records whose ids are strictly increasing and below `nextEventId`; a non-terminal run
//! with a cursor at or past its last id replays nothing (STR-3); the compact `replay_batch`
//! that `stream()` parses carries exactly the same ids, events and data.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use chat_run_core::history::EventName;
use chat_run_core::log_writer::{LogLimits, LogShared};
use chat_run_core::replay::{self, Sent};
use chat_run_core::{CreateMeta, LogLayout, Service, ServiceConfig, TextField};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
enum Action {
    /// `event` as a JS string, or (`encoded`) as `JSON.stringify(event)` of a string; `data` as
    /// `JSON.stringify(data)` of a string (`None` = undefined).
    Emit {
        event: String,
        encoded: bool,
        data: Option<String>,
        number: Option<f64>,
        persist: bool,
    },
    Finish {
        status: u8,
    },
    HostStatus {
        status: u8,
    },
    Drop,
    Create,
    Replay {
        run: u8,
        cursor: f64,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    max_events: u8,
    log: bool,
    actions: Vec<Action>,
}

const STATUSES: [&str; 6] = ["succeeded", "failed", "canceled", "queued", "running", ""];

fn status(n: u8) -> Option<String> {
    STATUSES.get(n as usize).map(|s| (*s).to_owned())
}

fn check_array(text: &str, next_id: u64, what: &str) -> usize {
    let parsed: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text}"));
    let records = parsed
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not an array: {text}"));
    let mut last = 0u64;
    for record in records {
        let id = record["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: record without id: {record}"));
        assert!(id > last, "{what}: ids not strictly increasing: {text}");
        assert!(id < next_id, "{what}: id {id} >= nextEventId {next_id}");
        last = id;
    }
    records.len()
}

/// What `send` receives for each record of a `replay()` text.
fn sends(records_json: &str) -> Vec<Sent> {
    let records: Vec<Value> = serde_json::from_str(records_json).unwrap_or_default();
    records.iter().map(Sent::of_record).collect()
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fuzz_target!(|input: Input| {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let max_events = match input.max_events % 8 {
        0 => None,
        n => Some(n as usize),
    };
    let dir = input.log.then(|| {
        Dir(std::env::temp_dir().join(format!(
            "chat-run-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    });
    let log = dir.as_ref().map(|d| LogLayout {
        prefix: format!("{}/", d.0.display()),
        suffix: "/events.jsonl".into(),
    });
    let mut svc = Service::new(
        ServiceConfig {
            max_events,
            log,
            log_limits: LogLimits {
                max_open_files: 2,
                ..LogLimits::default()
            },
        },
        LogShared::new(None),
    );
    let mut slots = vec![svc.create(CreateMeta::default(), 0.0).slot];
    let mut now = 1.0;
    for action in input.actions.iter().take(200) {
        now += 1.0;
        let slot = *slots.last().unwrap_or(&0);
        match action {
            Action::Emit {
                event,
                encoded,
                data,
                number,
                persist,
            } => {
                let fragment = serde_json::to_string(event).unwrap_or_default();
                let name = if *encoded {
                    EventName::Json(Some(&fragment))
                } else {
                    EventName::Text(event)
                };
                let data_json = match (data, number) {
                    (Some(s), _) => Some(serde_json::to_string(s).unwrap_or_default()),
                    (None, Some(n)) => Some(serde_json::to_string(n).unwrap_or_default()),
                    (None, None) => None,
                };
                let data_json = if *persist {
                    data_json
                } else {
                    Some("null".into())
                };
                svc.emit(slot, name, data_json.as_deref(), *persist, now)
                    .unwrap();
            }
            Action::Finish { status: s } => {
                let end = serde_json::json!({ "code": null, "signal": null, "status": status(*s) });
                svc.finish(slot, status(*s), None, None, &end.to_string(), now)
                    .unwrap();
            }
            Action::HostStatus { status: s } => {
                svc.set_text(slot, TextField::Status, status(*s)).unwrap();
            }
            Action::Drop => {
                svc.drop_run(slot, now).unwrap();
            }
            Action::Create => {
                if slots.len() < 4 {
                    slots.push(svc.create(CreateMeta::default(), now).slot);
                }
            }
            Action::Replay { run, cursor } => {
                let slot = slots[*run as usize % slots.len()];
                let state = svc.state(slot).unwrap();
                let next = state.next_event_id;
                let terminal = state.is_terminal();
                let replay = svc.replay(slot, *cursor).unwrap();
                assert_eq!(replay.terminal, terminal);
                let n = check_array(&replay.records_json, next, "replay");
                let batch = svc.replay_batch(slot, *cursor).unwrap();
                assert_eq!(
                    replay::decode(&batch),
                    Some(sends(&replay.records_json)),
                    "compact replay differs from the records: {batch}"
                );
                if !terminal && cursor.is_finite() && *cursor >= (next - 1) as f64 {
                    assert_eq!(n, 0, "STR-3: nothing after the last id");
                }
                if terminal && next > 1 {
                    assert!(
                        n >= 1 || svc.state(slot).unwrap().history.is_empty(),
                        "STR-4"
                    );
                }
                check_array(&svc.events_json(slot).unwrap(), next, "events_json");
            }
        }
    }
});
