//! A service's health snapshot, in exactly the shape `getChatRunServiceStats(service)`
//! returns (the facade only parses [`Stats::to_json`]):
//!
//! ```text
//! { runs: { registered, active, byStatus: { <status>: count, … }, live },
//!   events: { retained, retainedBytes },
//!   log: { enabled, linesWritten, openFiles, queue: { lines, bytes },
//!          notPersisted: { diskError, queueFull, unserializable, afterClose } },
//!   stateFile: { written, failed },
//!   hydration: { indexed, hydrated, skipped, unreadable } }
//! ```

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::durable::HydrationStats;
use crate::error::CoreResult;
use crate::service::Service;

/// Snapshot of a service's health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub runs: RunStats,
    pub events: EventStats,
    pub log: LogStats,
    pub state_file: StateFileStats,
    pub hydration: HydrationStats,
}

/// The runs' `state.json` writes (LC-1): done, and failed (each failure is also counted here
/// only; the first failure of the service is reported, OBS-2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StateFileStats {
    pub written: u64,
    pub failed: u64,
}

/// The runs of the service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStats {
    /// Runs in the registry (what `get` and `list` see).
    pub registered: u64,
    /// Registered runs that are not terminal.
    pub active: u64,
    /// Registered runs by status, in first-seen slot order (a non-string status counts as
    /// `""`). Serialized as an object.
    #[serde(serialize_with = "pairs_as_object")]
    pub by_status: Vec<(String, u64)>,
    /// Runs whose JS object is still alive, registered or not.
    pub live: u64,
}

/// The retained event histories of the live runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventStats {
    pub retained: u64,
    pub retained_bytes: u64,
}

/// The JSONL log of the service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStats {
    /// Logging is on for this service (a `runsLogDir` was given).
    pub enabled: bool,
    pub lines_written: u64,
    pub open_files: u64,
    pub queue: QueueStats,
    pub not_persisted: NotPersisted,
}

/// Lines and bytes waiting for the writer thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub lines: u64,
    pub bytes: u64,
}

/// Lines that were not persisted, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotPersisted {
    /// mkdir, open or write failed.
    pub disk_error: u64,
    /// The writer's queue stayed full (see `LogLimits`).
    pub queue_full: u64,
    /// The event data could not be serialized.
    pub unserializable: u64,
    /// The run's log was already closed (IMP-1).
    pub after_close: u64,
}

fn pairs_as_object<S: Serializer>(
    pairs: &[(String, u64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (key, value) in pairs {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

impl Stats {
    pub fn to_json(&self) -> CoreResult<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// How many invalid entries of `runsLogDir` one `stats()` checks for removal (an `lstat` each):
/// the count follows a host's deletions within a few calls, and a directory full of foreign
/// files does not make one call slow.
const PRUNE_PER_STATS: usize = 256;

impl Service {
    /// OBS-1. Waits for the construction scan of `runsLogDir` (its counts are part of it).
    pub fn stats(&mut self) -> Stats {
        self.disk.settle();
        self.disk.prune_gone_invalid(PRUNE_PER_STATS);
        let shared = &self.log_shared;
        let (queue_lines, queue_bytes) = shared.queue_depth();
        let mut stats = Stats {
            runs: RunStats {
                registered: self.order.len() as u64,
                ..RunStats::default()
            },
            events: EventStats::default(),
            log: LogStats {
                enabled: self.cfg.log.is_some(),
                lines_written: shared.lines_written(),
                open_files: shared.open_files(),
                queue: QueueStats {
                    lines: queue_lines as u64,
                    bytes: queue_bytes as u64,
                },
                not_persisted: NotPersisted {
                    disk_error: shared.lines_failed(),
                    queue_full: shared.lines_dropped(),
                    unserializable: self.unserializable,
                    after_close: self.after_close,
                },
            },
            state_file: StateFileStats {
                written: self.disk.stats.state_written,
                failed: self.disk.stats.state_failed,
            },
            hydration: self.disk.stats,
        };
        for run in self.live_runs() {
            stats.runs.live += 1;
            if run.registered {
                if !run.is_terminal() {
                    stats.runs.active += 1;
                }
                let status = run.status.as_deref().unwrap_or("");
                let by_status = &mut stats.runs.by_status;
                match by_status.iter_mut().find(|(seen, _)| seen == status) {
                    Some((_, count)) => *count += 1,
                    None => by_status.push((status.to_owned(), 1)),
                }
            }
            stats.events.retained += run.history.len() as u64;
            stats.events.retained_bytes += run.history.retained_bytes() as u64;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use crate::run::TextField;
    use crate::service::CreateMeta;
    use crate::test_support::{emit, service};

    #[test]
    fn stats_serialize_to_the_shape_get_chat_run_service_stats_returns() {
        let mut svc = service(Some(10), None);
        let a = svc.create(CreateMeta::default(), 0.0).slot;
        let b = svc.create(CreateMeta::default(), 0.0).slot;
        let c = svc.create(CreateMeta::default(), 0.0).slot;
        let d = svc.create(CreateMeta::default(), 0.0).slot;
        emit(&mut svc, a, "1");
        svc.set_text(b, TextField::Status, Some("running".into()))
            .unwrap();
        svc.finish(c, Some("failed".into()), None, None, "{}", 1.0)
            .unwrap();
        svc.set_text(d, TextField::Status, None).unwrap();
        let dropped = svc.create(CreateMeta::default(), 0.0).slot;
        svc.drop_run(dropped, 2.0).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&svc.stats().to_json().unwrap()).unwrap();
        let retained_bytes = json["events"]["retainedBytes"].as_u64().unwrap();
        assert!(retained_bytes > 0);
        assert_eq!(
            json,
            serde_json::json!({
                "runs": {
                    "registered": 4,
                    "active": 3,
                    "byStatus": { "queued": 1, "running": 1, "failed": 1, "": 1 },
                    "live": 5
                },
                "events": { "retained": 2, "retainedBytes": retained_bytes },
                "log": {
                    "enabled": false,
                    "linesWritten": 0,
                    "openFiles": 0,
                    "queue": { "lines": 0, "bytes": 0 },
                    "notPersisted": {
                        "diskError": 0,
                        "queueFull": 0,
                        "unserializable": 0,
                        "afterClose": 0
                    }
                },
                "stateFile": { "written": 0, "failed": 0 },
                "hydration": { "indexed": 0, "hydrated": 0, "skipped": 0, "unreadable": 0 }
            })
        );
        // Key order is part of the shape (preserve_order keeps it in the comparison above
        // only for maps, so check the text too).
        let text = svc.stats().to_json().unwrap();
        assert!(text.starts_with(r#"{"runs":{"registered":4,"active":3,"byStatus":{"queued":1,"running":1,"failed":1,"":1},"live":5},"events":{"retained":2,"retainedBytes":"#));
        assert!(text.ends_with(concat!(
            r#"},"log":{"enabled":false,"linesWritten":0,"openFiles":0,"queue":{"lines":0,"bytes":0},"#,
            r#""notPersisted":{"diskError":0,"queueFull":0,"unserializable":0,"afterClose":0}},"#,
            r#""stateFile":{"written":0,"failed":0},"hydration":{"indexed":0,"hydrated":0,"skipped":0,"unreadable":0}}"#
        )));
    }
}
