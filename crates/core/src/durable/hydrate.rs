//! Loading one run from disk into the registry (LC-2), for `get`, `list({ projectId })` and
//! `createOrReuse`.
//!
//! A hydrated run is terminal, has no child and a closed log; its history is the journal's last
//! `maxEvents` records (older ones replay through IMP-3's backfill). A file that says its run was
//! still active (the daemon died, or another writer left it so) is an interrupted run: it
//! becomes `failed` with [`INTERRUPTED_CODE`], two records (`'error'`, then `'end'`) are added
//! after the journal's last id, in memory and in the journal, and the state file is rewritten.
//! A run the previous version of this package left (a `run.json`, no `state.json`) hydrates the
//! same way, its verdict first taken from its log as that version's restore did.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::index::ordered_bits;
use super::journal;
use super::legacy::{read_log_state, RunSnapshot, SNAPSHOT_FILE, SNAPSHOT_VERSION};
use super::state::{run_dir, sweep_stale_temps, StateFile, STATE_FILE};
use super::{
    is_run_id, read_run_file, Unreadable, DAEMON_RESTART, INTERRUPTED_CODE, INTERRUPTED_MESSAGE,
};
use crate::error::CoreResult;
use crate::files;
use crate::history::{self, EventName, History};
use crate::log_writer::{LogFailure, LogOperation};
use crate::lookup::Lookup;
use crate::run::{id_number, is_terminal, NewRun, OrderKey, RunState};
use crate::service::Service;

/// What the service did with the runs on disk (part of the stats, OBS-1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HydrationStats {
    /// Runs the construction scan indexed.
    pub indexed: u64,
    /// Runs loaded into memory from disk.
    pub hydrated: u64,
    /// Entries of `runsLogDir` that are not valid runs (counted once each).
    pub skipped: u64,
    /// Reads of `runsLogDir` (the scan, a run's files) that failed for want of a resource, such
    /// as file descriptors ([`Unreadable`]), each time; what they would have read is read again
    /// by a later lookup.
    pub unreadable: u64,
    /// State files written, and writes that failed.
    #[serde(skip)]
    pub state_written: u64,
    #[serde(skip)]
    pub state_failed: u64,
}

/// A run's files as read.
enum Load {
    /// No state file (nor `run.json`): not a durable run.
    Missing,
    /// A file that is not a valid state file of this run.
    Invalid,
    /// A file that could not be read for now.
    Unreadable(Unreadable),
    Found(Box<Loaded>),
}

struct Loaded {
    file: StateFile,
    /// `nextEventId` of an old `run.json` (1 otherwise).
    next_event_id: u64,
    /// `cancelRequested` of an old `run.json`.
    cancel_requested: bool,
}

fn load(dir: &Path, log_path: &Path, id: &str) -> Load {
    match read_run_file(&dir.join(STATE_FILE)) {
        Ok(Some(text)) => {
            return match StateFile::parse(&text, id) {
                Some(file) => Load::Found(Box::new(Loaded {
                    file,
                    next_event_id: 1,
                    cancel_requested: false,
                })),
                None => Load::Invalid,
            }
        }
        Ok(None) => {}
        Err(Some(unreadable)) => return Load::Unreadable(unreadable),
        Err(None) => return Load::Invalid,
    }
    match read_run_file(&dir.join(SNAPSHOT_FILE)) {
        Ok(Some(text)) => match RunSnapshot::parse(&text) {
            Some(snapshot) if snapshot.version == SNAPSHOT_VERSION && snapshot.id == id => {
                // That version's verdict may be in its log only: a log that cannot be opened
                // now must not make a finished run look interrupted.
                match files::open_read(log_path) {
                    Err(error) if files::is_transient(&error) => {
                        Load::Unreadable(Unreadable::new(log_path, &error))
                    }
                    _ => Load::Found(Box::new(from_legacy(snapshot, log_path))),
                }
            }
            _ => Load::Invalid,
        },
        Ok(None) => Load::Missing,
        Err(Some(unreadable)) => Load::Unreadable(unreadable),
        Err(None) => Load::Invalid,
    }
}

/// An old `run.json` as a state file: its fields under the new names, the ones the new file has
/// no field for kept as extra fields (`appliedPluginSnapshotId`, `pluginId`, `mediaExecution`,
/// `toolBundle`: the redacted summary), and the log's verdict when the snapshot still says the
/// run was active (that version's `finish` wrote none).
fn from_legacy(snapshot: RunSnapshot, log_path: &Path) -> Loaded {
    let ids = snapshot.meta.ids;
    let mut file = StateFile {
        schema_version: Value::from(1),
        id: snapshot.id,
        project_id: snapshot.project_id,
        conversation_id: snapshot.conversation_id,
        status: snapshot.status,
        created_at: snapshot.created_at,
        updated_at: snapshot.updated_at,
        exit_code: snapshot.exit_code,
        signal: snapshot.signal,
        error: snapshot.error,
        error_code: snapshot.error_code,
        ..StateFile::default()
    };
    file.host.assistant_message_id = ids.assistant_message_id;
    file.host.client_request_id = ids.client_request_id;
    file.host.agent_id = ids.agent_id;
    let extra = &mut file.host.extra;
    if let Some(id) = ids.applied_plugin_snapshot_id {
        extra.insert("appliedPluginSnapshotId".into(), Value::String(id));
    }
    if let Some(id) = ids.plugin_id {
        extra.insert("pluginId".into(), Value::String(id));
    }
    extra.insert("mediaExecution".into(), snapshot.meta.media_execution.0);
    extra.insert("toolBundle".into(), snapshot.meta.tool_bundle.0);
    if is_terminal(file.status.as_deref()) {
        file.terminal_at = file.updated_at;
    } else {
        let log = read_log_state(log_path);
        if let Some((end, at)) = log.end {
            let status = end.get("status").and_then(Value::as_str);
            if is_terminal(status) {
                file.status = status.map(str::to_owned);
                file.exit_code = end.get("code").and_then(Value::as_f64);
                file.signal = end.get("signal").and_then(Value::as_str).map(str::to_owned);
                file.updated_at = Some(at);
                file.terminal_at = Some(at);
                if log.error.is_some() {
                    file.error = log.error;
                }
                if log.error_code.is_some() {
                    file.error_code = log.error_code;
                }
            }
        }
    }
    Loaded {
        file,
        next_event_id: snapshot
            .next_event_id
            .filter(|&next| next <= journal::MAX_RECORD_ID)
            .unwrap_or(1),
        cancel_requested: snapshot.cancel_requested,
    }
}

/// `data` of the `'error'` record an interrupted run gets.
fn interrupted_error_data() -> String {
    serde_json::json!({
        "error": {
            "code": INTERRUPTED_CODE,
            "message": INTERRUPTED_MESSAGE,
            "retryable": true,
        }
    })
    .to_string()
}

/// `data` of the `'end'` record an interrupted run gets (LC-5's key order).
fn interrupted_end_data(terminal_at: f64, ended_with_unfinished_work: bool) -> String {
    let mut data = String::from(r#"{"code":1,"signal":null,"status":"failed","terminalAt":"#);
    history::push_json_number(&mut data, terminal_at);
    data.push_str(r#","resumable":false,"endedWithUnfinishedWork":"#);
    data.push_str(if ended_with_unfinished_work {
        "true"
    } else {
        "false"
    });
    data.push('}');
    data
}

/// LC-2: an interrupted run becomes `failed` (`DAEMON_RESTARTED`, trigger and recovery reason
/// `daemon_restart`) and gets its two records, in memory and appended to its journal (a torn
/// last line ended first), unless `add_records` is false: its journal already ends with them
/// (see the call), or they would take ids a journal reader takes for foreign lines (above
/// [`journal::MAX_RECORD_ID`]: the next restart would not read them back), so the state file
/// alone holds the verdict, as for a terminal file whose journal has no `'end'`. Returns the
/// journal append's outcome.
fn mark_interrupted(
    run: &mut RunState,
    log_path: &Path,
    now: f64,
    add_records: bool,
) -> io::Result<()> {
    run.status = Some("failed".to_owned());
    run.error = Some(INTERRUPTED_MESSAGE.to_owned());
    run.error_code = Some(INTERRUPTED_CODE.to_owned());
    run.exit_code = Some(1.0);
    run.signal = None;
    run.updated_at = now;
    run.terminal_at = Some(now);
    run.terminal_trigger = Some(DAEMON_RESTART.to_owned());
    run.host.terminal_recovery_reason = Some(DAEMON_RESTART.to_owned());
    run.host.resumable = false;
    if !add_records || run.next_event_id.saturating_add(1) > journal::MAX_RECORD_ID {
        return Ok(());
    }
    let error_data = interrupted_error_data();
    let end_data = interrupted_end_data(now, run.host.ended_with_unfinished_work);
    let error_id = run.next_event_id;
    let end_id = error_id + 1;
    let lines = [
        history::record_line(error_id, EventName::Text("error"), Some(&error_data), now),
        history::record_line(end_id, EventName::Text("end"), Some(&end_data), now),
    ];
    run.history
        .push(error_id, EventName::Text("error"), Some(&error_data), now);
    run.history
        .push(end_id, EventName::Text("end"), Some(&end_data), now);
    run.next_event_id = end_id + 1;
    run.end_event_id = Some(end_id);
    journal::append_lines(log_path, &lines)
}

/// Whether the journal's tail ends with what [`mark_interrupted`] appends (an `'error'` record
/// with [`INTERRUPTED_CODE`] and then an `'end'`): `Some` with the time that `'end'` gives (its
/// `terminalAt`, else its timestamp; `None` inside when it gives none), else `None`.
fn interruption_in(tail: &journal::Tail) -> Option<Option<f64>> {
    let record = |at: Option<usize>| {
        at.and_then(|at| tail.lines.get(at))
            .and_then(|line| serde_json::from_str::<Value>(line).ok())
    };
    let count = tail.lines.len();
    let (error, end) = (record(count.checked_sub(2))?, record(count.checked_sub(1))?);
    let is_pair = end.get("event").and_then(Value::as_str) == Some("end")
        && error.get("event").and_then(Value::as_str) == Some("error")
        && error.pointer("/data/error/code").and_then(Value::as_str) == Some(INTERRUPTED_CODE);
    let finite = |value: Option<&Value>| value.and_then(Value::as_f64).filter(|t| t.is_finite());
    is_pair
        .then(|| finite(end.pointer("/data/terminalAt")).or_else(|| finite(end.get("timestamp"))))
}

impl Service {
    /// The registry key of run `id`, hydrated now, that was created at `created_at`: just
    /// before the first run this service created after it (see [`OrderKey`]).
    fn hydrated_order(&mut self, created_at: f64, id: &str) -> OrderKey {
        self.disk.order_tie += 1;
        let marks = &self.created_marks;
        let first_later = marks.partition_point(|&(at, _)| at <= created_at);
        let major = marks
            .get(first_later)
            .map_or(2 * self.created_count() + 2, |&(_, major)| major - 1);
        OrderKey {
            major,
            created: ordered_bits(created_at),
            id: id_number(id),
            tie: self.disk.order_tie,
        }
    }

    /// LC-2: the registered run with this id, else the run loaded from its files under
    /// `runsLogDir` (registered from now on). `None` without logging, for an id that is not a
    /// run id (no filesystem access then), and when no valid state file exists (an invalid one
    /// is counted as skipped). A dropped run's file is gone, so it is never found again.
    ///
    /// `Err` when its state file or journal could not be read for want of a resource (too many
    /// open files): nothing is registered, counted as skipped or written, and the next call
    /// reads again.
    pub fn hydrate(&mut self, id: &str, now: f64) -> Result<Option<u32>, Unreadable> {
        if let Some(slot) = self.get(id) {
            return Ok(Some(slot));
        }
        if !is_run_id(id) {
            return Ok(None);
        }
        let Some(log) = self.cfg.log.as_ref() else {
            return Ok(None);
        };
        let log_path = PathBuf::from(log.path_of(id));
        let dir = run_dir(&log_path);
        let loaded = match load(&dir, &log_path, id) {
            Load::Missing => {
                self.disk.gone(id);
                return Ok(None);
            }
            Load::Invalid => {
                self.disk.skip(id);
                return Ok(None);
            }
            Load::Unreadable(unreadable) => return Err(self.disk.unreadable(unreadable)),
            Load::Found(loaded) => loaded,
        };
        // The journal's tail, read before anything changes: a journal that cannot be opened now
        // would give the run no history and number its next records from 1 again.
        let read_journal = |cap| {
            journal::read_tail(&log_path, cap).map_err(|error| Unreadable::new(&log_path, &error))
        };
        let tail = match read_journal(self.cfg.max_events) {
            Ok(tail) => tail,
            Err(unreadable) => return Err(self.disk.unreadable(unreadable)),
        };
        // For a run left active whose history holds fewer than two records (maxEvents 1), the
        // journal's last two lines (see `ended` below).
        let last_two = if !is_terminal(loaded.file.status.as_deref()) && tail.lines.len() < 2 {
            match read_journal(Some(2)) {
                Ok(last_two) => Some(last_two),
                Err(unreadable) => return Err(self.disk.unreadable(unreadable)),
            }
        } else {
            None
        };
        // What a daemon killed in the middle of a state write left (LC-1).
        sweep_stale_temps(&dir);
        let Loaded {
            file,
            next_event_id,
            cancel_requested,
        } = *loaded;
        let created_at = file.created_at.unwrap_or(now);
        let order = self.hydrated_order(created_at, id);
        let target = self.log_target(log_path.clone());
        target
            .dir_ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut run = RunState::new(NewRun {
            id: id.to_owned(),
            order,
            max_events: self.cfg.max_events,
            log: Some(target),
            now,
        });
        run.project_id = file.project_id;
        run.conversation_id = file.conversation_id;
        run.status = file.status;
        run.created_at = created_at;
        run.updated_at = file.updated_at.unwrap_or(created_at);
        run.terminal_at = file.terminal_at;
        run.exit_code = file.exit_code;
        run.signal = file.signal;
        run.error = file.error;
        run.error_code = file.error_code;
        run.cancel_origin = file.cancel_origin;
        run.terminal_trigger = file.terminal_trigger;
        run.cancel_requested = cancel_requested;
        run.keys = file.host.lookup_keys();
        run.host = file.host;
        run.log_closed = true;
        run.end_event_id = journal::fill_history(&mut run.history, &tail);
        run.next_event_id = (tail.last_id + 1).max(next_event_id);
        if run
            .history
            .newest_id()
            .is_some_and(|newest| newest + 1 != run.next_event_id)
        {
            // Ids were used that the journal lacks (lines lost): the history must stay
            // contiguous with the records added next, so it starts over (IMP-3 still reads the
            // journal).
            run.history = History::new(self.cfg.max_events);
            run.end_event_id = None;
        }
        let interrupted = !run.is_terminal();
        // A journal that already ends with the two records while the file says active: a
        // hydration that appended them crashed before it rewrote the state file (the engine
        // writes a verdict's state file before its 'end' line). Marked again, not appended
        // again. (Any other 'end' last, such as the previous attempt's after prepareRestart,
        // gets the two records.)
        // Its time is that of the records (the first hydration's), so that the state file and
        // the journal's 'end' agree on when the run ended.
        let ended_at = (interrupted
            && run.end_event_id.is_some()
            && run.end_event_id == run.history.newest_id())
        .then(|| {
            // A history shorter than the two records (maxEvents 1): the journal's own end.
            interruption_in(last_two.as_ref().unwrap_or(&tail))
        })
        .flatten()
        // A pair older than the file's own last write belongs to an earlier attempt: the
        // daemon died right after a prepareRestart (written before its record reached the
        // journal), so this attempt gets its own two records.
        .filter(|at| at.is_none_or(|at| at >= run.updated_at));
        let ended = ended_at.is_some();
        let marked_at = ended_at.flatten().unwrap_or(now);
        let appended =
            interrupted.then(|| mark_interrupted(&mut run, &log_path, marked_at, !ended));
        let (project_id, keys) = (run.project_id.clone(), run.keys.clone());
        let slot = self.insert(run);
        if let Some(Err(error)) = appended {
            self.log_shared.fail(2, || {
                LogFailure::io(log_path.clone(), LogOperation::Write, &error)
            });
        }
        if interrupted {
            self.write_state(slot);
        }
        self.disk.add(id, project_id, keys, created_at);
        self.disk.stats.hydrated += 1;
        Ok(Some(slot))
    }

    /// What the facade builds a hydrated run's object from, as JSON:
    /// `{"state":<its state file as now written>,"nextEventId":n,"cancelRequested":b}`.
    pub fn hydrated_json(&self, slot: u32) -> CoreResult<String> {
        let run = self.run(slot)?;
        Ok(format!(
            r#"{{"state":{},"nextEventId":{},"cancelRequested":{}}}"#,
            run.state_json()?,
            run.next_event_id,
            run.cancel_requested
        ))
    }

    /// LC-2: the durable runs of `project_id` that are not registered (to hydrate for
    /// `list({ projectId })`), oldest first.
    pub fn unregistered_project_runs(&mut self, project_id: &str) -> Vec<String> {
        let mut ids = self.disk.project_runs(project_id);
        ids.retain(|id| self.get(id).is_none());
        ids
    }

    /// LC-3, HF-8: the newest durable run created with this key, when it is not registered.
    /// `Err` while part of `runsLogDir` could not be read yet ([`Unreadable`]): the newest run
    /// with the key may be there.
    pub fn unregistered_keyed_run(
        &mut self,
        lookup: Lookup,
        key: &str,
    ) -> Result<Option<String>, Unreadable> {
        Ok(self
            .disk
            .keyed_run(lookup, key)?
            .filter(|id| self.get(id).is_none()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ListFilter;
    use crate::test_support::{emit, flush, log_dir, meta, service, succeed, NO_SUCH_PID};
    use std::fs;

    fn layout_of(dir: &Path) -> crate::config::LogLayout {
        crate::config::LogLayout {
            prefix: format!("{}/", dir.display()),
            suffix: "/events.jsonl".into(),
        }
    }

    fn state_of(dir: &Path, id: &str) -> Value {
        serde_json::from_str(&fs::read_to_string(dir.join(id).join(STATE_FILE)).unwrap()).unwrap()
    }

    /// A run left active (one journal line, its state file written) by a service that is gone,
    /// created at `created_at`: the log dir and the run's id.
    fn active_run_on_disk(name: &str, created_at: f64) -> (PathBuf, String) {
        let (dir, layout) = log_dir(name);
        let mut old = service(Some(10), Some(layout));
        let run = old.create(meta("p", "c"), created_at);
        emit(&mut old, run.slot, "1");
        old.persist_state(run.slot).unwrap();
        flush(&old);
        (dir, run.id)
    }

    #[test]
    fn lc_2_a_line_js_reads_but_a_strict_reader_would_not_keeps_the_history_whole() {
        // An out-of-range timestamp (JSON.parse: Infinity) and a key given twice (the last
        // counts): both are records to IMP-3's reader, so both must be to the history.
        for (name, odd) in [
            (
                "range",
                r#"{"id":2,"event":"stdout","data":2,"timestamp":1e400}"#,
            ),
            (
                "twice",
                r#"{"id":2,"event":"x","event":"stdout","data":1,"data":2,"timestamp":10}"#,
            ),
        ] {
            let (dir, layout) = log_dir(&format!("hydrate-odd-{name}"));
            let mut old = service(Some(10), Some(layout));
            let run = old.create(meta("p", "c"), 1.0);
            emit(&mut old, run.slot, "1");
            emit(&mut old, run.slot, "2");
            succeed(&mut old, run.slot, 20.0);
            flush(&old);
            drop(old);
            let journal = dir.join(&run.id).join("events.jsonl");
            let mut lines: Vec<String> = fs::read_to_string(&journal)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            lines[1] = odd.to_owned();
            fs::write(&journal, format!("{}\n", lines.join("\n"))).unwrap();

            let mut new = service(Some(10), Some(layout_of(&dir)));
            let slot = new.hydrate(&run.id, 50.0).unwrap().unwrap();
            let events: Vec<Value> = serde_json::from_str(&new.events_json(slot).unwrap()).unwrap();
            let ids: Vec<u64> = events.iter().filter_map(|e| e["id"].as_u64()).collect();
            assert_eq!(ids, vec![1, 2, 3], "{name}");
            assert_eq!(events[1]["event"], "stdout", "{name}");
            assert_eq!(events[1]["data"], 2, "{name}");
            // What stream() sends: STR-4 at the last id, the 'end' again; and IMP-3 reads the
            // line the same way when it is older than the history.
            let sent = |svc: &Service, slot: u32, cursor: f64| -> Vec<(u64, Option<Value>)> {
                crate::replay::decode(&svc.replay_batch(slot, cursor).unwrap())
                    .unwrap()
                    .into_iter()
                    .map(|sent| (sent.id, sent.data))
                    .collect()
            };
            let at_end: Vec<u64> = sent(&new, slot, 3.0).iter().map(|(id, _)| *id).collect();
            assert_eq!(at_end, vec![3], "{name}");
            let mut short = service(Some(1), Some(layout_of(&dir)));
            let slot = short.hydrate(&run.id, 50.0).unwrap().unwrap();
            let replayed = sent(&short, slot, 0.0);
            let ids: Vec<u64> = replayed.iter().map(|(id, _)| *id).collect();
            assert_eq!(ids, vec![1, 2, 3], "{name}");
            assert_eq!(replayed[1].1, Some(serde_json::json!(2)), "{name}");
            let _ = fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn lc_2_an_interrupted_run_whose_records_would_pass_the_id_bound_gets_none_and_stays_put() {
        // The journal's last line has the largest id a reader takes for a record: the two
        // records would get ids it reads as foreign, so the verdict is the state file's alone,
        // and a second restart finds the same run.
        let (dir, id) = active_run_on_disk("hydrate-id-bound", 1.0);
        let journal = dir.join(&id).join("events.jsonl");
        let last = format!(
            r#"{{"id":{},"event":"stdout","data":1,"timestamp":10}}"#,
            journal::MAX_RECORD_ID
        );
        fs::write(&journal, format!("{last}\n")).unwrap();
        for (round, at) in [(1, 50.0), (2, 99.0)] {
            let mut new = service(Some(10), Some(layout_of(&dir)));
            let slot = new.hydrate(&id, at).unwrap().unwrap();
            let state = new.state(slot).unwrap();
            assert_eq!(state.status.as_deref(), Some("failed"), "round {round}");
            assert_eq!(
                state.error_code.as_deref(),
                Some(INTERRUPTED_CODE),
                "round {round}"
            );
            assert_eq!(state.terminal_at, Some(50.0), "round {round}");
            assert_eq!(
                state.next_event_id,
                journal::MAX_RECORD_ID + 1,
                "round {round}"
            );
            let events: Vec<Value> = serde_json::from_str(&new.events_json(slot).unwrap()).unwrap();
            let ids: Vec<u64> = events.iter().filter_map(|e| e["id"].as_u64()).collect();
            assert_eq!(ids, vec![journal::MAX_RECORD_ID], "round {round}");
            assert_eq!(fs::read_to_string(&journal).unwrap(), format!("{last}\n"));
            assert_eq!(state_of(&dir, &id)["status"], "failed", "round {round}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_a_run_left_active_hydrates_failed_with_two_records_and_a_rewritten_file() {
        let (dir, layout) = log_dir("hydrate-interrupted");
        let mut old = service(Some(10), Some(layout));
        let run = old.create(meta("p", "c"), 1.0);
        emit(&mut old, run.slot, "1");
        emit(&mut old, run.slot, "2");
        old.persist_state_with(run.slot, Some(r#"{"endedWithUnfinishedWork":true}"#))
            .unwrap();
        flush(&old);
        drop(old);

        let mut new = service(Some(10), Some(layout_of(&dir)));
        new.index_runs(&dir);
        assert!(
            new.list(&ListFilter::default()).is_empty(),
            "nothing loaded"
        );
        let slot = new.hydrate(&run.id, 50.0).unwrap().unwrap();
        let state = new.state(slot).unwrap();
        assert_eq!(state.status.as_deref(), Some("failed"));
        assert_eq!(state.error_code.as_deref(), Some(INTERRUPTED_CODE));
        assert_eq!(state.terminal_trigger.as_deref(), Some(DAEMON_RESTART));
        assert_eq!(state.terminal_at, Some(50.0));
        assert_eq!(state.next_event_id, 5);
        let events: Vec<Value> = serde_json::from_str(&new.events_json(slot).unwrap()).unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(events[2]["event"], "error");
        assert_eq!(events[2]["data"]["error"]["code"], INTERRUPTED_CODE);
        assert_eq!(events[2]["data"]["error"]["retryable"], true);
        assert_eq!(
            events[3]["data"],
            serde_json::json!({ "code": 1, "signal": null, "status": "failed", "terminalAt": 50,
                "resumable": false, "endedWithUnfinishedWork": true })
        );
        let file = state_of(&dir, &run.id);
        assert_eq!(file["status"], "failed");
        assert_eq!(file["terminalRecoveryReason"], DAEMON_RESTART);
        let journal = fs::read_to_string(dir.join(&run.id).join("events.jsonl")).unwrap();
        assert_eq!(journal.lines().count(), 4);
        // Hydrating again (a third service) marks nothing twice.
        let mut third = service(Some(10), Some(layout_of(&dir)));
        let again = third.hydrate(&run.id, 99.0).unwrap().unwrap();
        assert_eq!(third.state(again).unwrap().terminal_at, Some(50.0));
        assert_eq!(third.state(again).unwrap().next_event_id, 5);
        assert_eq!(third.stats().hydration.hydrated, 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_temp_files_of_a_writer_that_died_are_removed_when_the_run_is_hydrated() {
        let (dir, layout) = log_dir("hydrate-temps");
        let mut old = service(Some(10), Some(layout));
        let run = old.create(meta("p", "c"), 1.0);
        emit(&mut old, run.slot, "1");
        flush(&old);
        drop(old);
        let run_dir = dir.join(&run.id);
        let uuid = "0f0e0d0c-0b0a-4908-8706-050403020100";
        let dead = format!("{STATE_FILE}.{NO_SUCH_PID}.{uuid}.tmp");
        let legacy_dead = format!("run.json.tmp-{NO_SUCH_PID}");
        // Left alone: a writer that may still run (this process), and names of other shapes.
        let own = format!("{STATE_FILE}.{}.{uuid}.tmp", std::process::id());
        let others = [
            format!("{STATE_FILE}.{NO_SUCH_PID}.not-a-uuid.tmp"),
            format!("{STATE_FILE}.x{NO_SUCH_PID}.{uuid}.tmp"),
            "notes.tmp".to_owned(),
        ];
        for name in [&dead, &legacy_dead, &own].into_iter().chain(&others) {
            fs::write(run_dir.join(name), "{}").unwrap();
        }

        let mut new = service(Some(10), Some(layout_of(&dir)));
        let slot = new.hydrate(&run.id, 50.0).unwrap().unwrap();
        assert_eq!(
            new.state(slot).unwrap().error_code.as_deref(),
            Some(INTERRUPTED_CODE)
        );
        let mut left: Vec<String> = fs::read_dir(&run_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected: Vec<String> = [STATE_FILE, "events.jsonl", own.as_str()]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(others.iter().cloned())
            .collect();
        expected.sort();
        assert_eq!(left, expected);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_a_hydration_that_crashed_before_its_state_write_adds_no_second_pair_of_records() {
        let (dir, id) = active_run_on_disk("hydrate-crashed", 1.0);
        let state_path = dir.join(&id).join(STATE_FILE);
        let active = fs::read_to_string(&state_path).unwrap();
        // The first restart appends its two records; its state write is then undone, as if
        // the process had died between the two.
        let mut first = service(Some(10), Some(layout_of(&dir)));
        first.hydrate(&id, 50.0).unwrap().unwrap();
        fs::write(&state_path, &active).unwrap();
        let journal = dir.join(&id).join("events.jsonl");
        assert_eq!(fs::read_to_string(&journal).unwrap().lines().count(), 3);

        let mut second = service(Some(10), Some(layout_of(&dir)));
        let slot = second.hydrate(&id, 60.0).unwrap().unwrap();
        assert_eq!(fs::read_to_string(&journal).unwrap().lines().count(), 3);
        let state = second.state(slot).unwrap();
        assert_eq!(state.status.as_deref(), Some("failed"));
        assert_eq!(state.error_code.as_deref(), Some(INTERRUPTED_CODE));
        assert_eq!(state.next_event_id, 4);
        // Marked at the time its records carry (the first hydration's), not at this one's.
        assert_eq!(state.terminal_at, Some(50.0));
        assert_eq!(state.updated_at, 50.0);
        assert_eq!(state_of(&dir, &id)["terminalAt"], 50.0);
        let events: Vec<Value> = serde_json::from_str(&second.events_json(slot).unwrap()).unwrap();
        let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(names, ["stdout", "error", "end"]);
        assert_eq!(state_of(&dir, &id)["status"], "failed");

        // A run that ended once and was restarted (an 'end' earlier in its journal, other
        // records after it) is still marked with its own two records.
        let mut third = service(Some(10), Some(layout_of(&dir)));
        let again = third.hydrate(&id, 70.0).unwrap().unwrap();
        third.prepare_restart(again, None, 71.0).unwrap();
        emit(&mut third, again, "2");
        flush(&third);
        drop(third);
        let mut fourth = service(Some(10), Some(layout_of(&dir)));
        let slot = fourth.hydrate(&id, 80.0).unwrap().unwrap();
        assert_eq!(fs::read_to_string(&journal).unwrap().lines().count(), 6);
        assert_eq!(fourth.state(slot).unwrap().terminal_at, Some(80.0));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_with_max_events_1_a_crashed_hydration_still_adds_no_second_pair() {
        let (dir, layout) = log_dir("hydrate-crashed-one");
        let mut old = service(Some(1), Some(layout));
        let run = old.create(meta("p", "c"), 1.0);
        emit(&mut old, run.slot, "1");
        flush(&old);
        drop(old);
        let state_path = dir.join(&run.id).join(STATE_FILE);
        let active = fs::read_to_string(&state_path).unwrap();
        let mut first = service(Some(1), Some(layout_of(&dir)));
        first.hydrate(&run.id, 1.0).unwrap().unwrap();
        // Undone as if the process died before the state write; same millisecond as before.
        fs::write(&state_path, &active).unwrap();
        let journal = dir.join(&run.id).join("events.jsonl");
        assert_eq!(fs::read_to_string(&journal).unwrap().lines().count(), 3);
        let mut second = service(Some(1), Some(layout_of(&dir)));
        let slot = second.hydrate(&run.id, 1.0).unwrap().unwrap();
        assert_eq!(fs::read_to_string(&journal).unwrap().lines().count(), 3);
        assert_eq!(second.state(slot).unwrap().next_event_id, 4);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_a_crash_right_after_prepare_restart_gets_the_two_records_after_the_old_end() {
        for max_events in [Some(10), Some(1)] {
            let (dir, layout) = log_dir("hydrate-prepared");
            let mut old = service(max_events, Some(layout));
            let run = old.create(meta("p", "c"), 1.0);
            emit(&mut old, run.slot, "1");
            succeed(&mut old, run.slot, 2.0);
            flush(&old);
            let journal = dir.join(&run.id).join("events.jsonl");
            let ended = fs::read_to_string(&journal).unwrap();
            // The host restarts the run; the process dies before anything after it is written.
            old.prepare_restart(run.slot, None, 3.0).unwrap();
            flush(&old);
            drop(old);
            fs::write(&journal, &ended).unwrap();
            assert_eq!(state_of(&dir, &run.id)["status"], "queued");

            let mut new = service(max_events, Some(layout_of(&dir)));
            let slot = new.hydrate(&run.id, 50.0).unwrap().unwrap();
            let lines: Vec<Value> = fs::read_to_string(&journal)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            let names: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
            assert_eq!(names, ["stdout", "end", "error", "end"], "{max_events:?}");
            assert_eq!(lines[3]["data"]["status"], "failed");
            let state = new.state(slot).unwrap();
            assert_eq!(state.error_code.as_deref(), Some(INTERRUPTED_CODE));
            assert_eq!(state.next_event_id, 5);
            let _ = fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn lc_2_a_journal_that_cannot_be_opened_for_now_leaves_the_run_unloaded_and_untouched() {
        let (dir, layout) = log_dir("hydrate-unreadable-journal");
        let mut old = service(Some(10), Some(layout.clone()));
        let run = old.create(meta("p", "c"), 1.0);
        for n in 0..3 {
            emit(&mut old, run.slot, &n.to_string());
        }
        flush(&old);
        // The daemon dies with the run active.
        drop(old);
        let journal = dir.join(&run.id).join("events.jsonl");
        let state = dir.join(&run.id).join("state.json");
        let (journal_before, state_before) = (
            fs::read_to_string(&journal).unwrap(),
            fs::read_to_string(&state).unwrap(),
        );
        let mut new = service(Some(10), Some(layout));
        files::FAIL_OPEN.with(|fail| *fail.borrow_mut() = Some((journal.clone(), 1)));
        let unreadable = new.hydrate(&run.id, 5.0).unwrap_err();
        assert_eq!(unreadable.path, journal);
        assert_eq!(new.get(&run.id), None, "nothing registered");
        assert_eq!(fs::read_to_string(&journal).unwrap(), journal_before);
        assert_eq!(fs::read_to_string(&state).unwrap(), state_before);
        let stats = new.stats().hydration;
        assert_eq!((stats.unreadable, stats.skipped, stats.hydrated), (1, 0, 0));
        // Once it can be opened, the run hydrates as interrupted, numbered after its journal.
        files::FAIL_OPEN.with(|fail| *fail.borrow_mut() = None);
        let slot = new.hydrate(&run.id, 6.0).unwrap().unwrap();
        assert_eq!(
            new.state(slot).unwrap().next_event_id,
            6,
            "3 records, then error and end"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    // Windows only: there another program can open a file without sharing it.
    #[cfg(windows)]
    #[test]
    fn lc_2_a_state_file_another_program_holds_unshared_is_read_later_not_skipped() {
        use std::os::windows::fs::OpenOptionsExt;
        let (dir, layout) = log_dir("hydrate-unshared");
        let mut old = service(Some(10), Some(layout.clone()));
        let run = old.create(meta("p", "c"), 1.0);
        succeed(&mut old, run.slot, 2.0);
        flush(&old);
        drop(old);
        let state = dir.join(&run.id).join(STATE_FILE);
        // A virus scanner or a backup tool: share mode 0, nobody else may open it meanwhile.
        let held = fs::OpenOptions::new()
            .read(true)
            .share_mode(0)
            .open(&state)
            .unwrap();
        let mut new = service(Some(10), Some(layout));
        let unreadable = new.hydrate(&run.id, 5.0).unwrap_err();
        assert_eq!(unreadable.path, state);
        assert_eq!(new.get(&run.id), None, "nothing registered");
        let stats = new.stats().hydration;
        assert_eq!((stats.unreadable, stats.skipped, stats.hydrated), (1, 0, 0));
        drop(held);
        let slot = new.hydrate(&run.id, 6.0).unwrap().unwrap();
        assert_eq!(
            new.state(slot).unwrap().status.as_deref(),
            Some("succeeded")
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_a_run_json_whose_log_cannot_be_opened_for_now_is_not_taken_for_interrupted() {
        // The previous version's run: its run.json says running, its log ends with the verdict.
        let id = "51d0e635-c245-4563-803d-e9252490a464";
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/snapshot-v1/runs")
            .join(id);
        let (dir, layout) = log_dir("hydrate-legacy-unreadable");
        fs::create_dir_all(dir.join(id)).unwrap();
        for name in [SNAPSHOT_FILE, "events.jsonl"] {
            fs::copy(fixture.join(name), dir.join(id).join(name)).unwrap();
        }
        let journal = dir.join(id).join("events.jsonl");
        let mut svc = service(Some(10), Some(layout));
        // Its first open fails (the log's verdict), the next one would not (the tail).
        files::FAIL_OPEN.with(|fail| *fail.borrow_mut() = Some((journal.clone(), 1)));
        assert_eq!(svc.hydrate(id, 5.0).unwrap_err().path, journal);
        assert!(!dir.join(id).join(STATE_FILE).exists(), "nothing written");
        files::FAIL_OPEN.with(|fail| *fail.borrow_mut() = None);
        let slot = svc.hydrate(id, 6.0).unwrap().unwrap();
        assert_eq!(
            svc.state(slot).unwrap().status.as_deref(),
            Some("succeeded")
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_hostile_ids_and_missing_runs_touch_nothing() {
        let (dir, layout) = log_dir("hydrate-hostile");
        let mut svc = service(Some(10), Some(layout));
        for id in ["../../etc", "/", "\\", "a\0b", "..", ""] {
            assert_eq!(svc.hydrate(id, 1.0).unwrap(), None);
        }
        assert_eq!(
            svc.hydrate("11111111-1111-4111-8111-111111111111", 1.0)
                .unwrap(),
            None
        );
        assert!(!dir.exists(), "nothing created");
        let mut off = service(Some(10), None);
        assert_eq!(
            off.hydrate("11111111-1111-4111-8111-111111111111", 1.0)
                .unwrap(),
            None
        );
    }

    #[test]
    fn lc_2_a_hydrated_run_sorts_by_creation_among_this_services_runs() {
        let (dir, layout) = log_dir("hydrate-order");
        let mut old = service(Some(10), Some(layout.clone()));
        let early = old.create(meta("p", "c"), 5.0);
        old.finish(early.slot, Some("succeeded".into()), None, None, "{}", 6.0)
            .unwrap();
        drop(old);
        let mut new = service(Some(10), Some(layout));
        new.index_runs(&dir);
        let before = new.create(meta("p", "c"), 1.0).slot;
        let after = new.create(meta("p", "c"), 10.0).slot;
        let hydrated = new.hydrate(&early.id, 20.0).unwrap().unwrap();
        assert_eq!(
            new.list(&ListFilter::default()),
            vec![before, hydrated, after]
        );
        assert_eq!(new.unregistered_project_runs("p"), Vec::<String>::new());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn hf_8_a_plugin_workflow_id_finds_its_run_registered_after_a_restart_and_not_once_dropped() {
        use crate::test_support::{keyed_meta, keys};
        let (dir, layout) = log_dir("hydrate-workflow");
        let analytics = r#"{"externalPluginAnalytics":{"externalPluginId":"open-design","pluginWorkflowId":"w"}}"#;
        let mut old = service(Some(10), Some(layout));
        let first = old.create(keyed_meta(Some("p"), keys(None, Some("w")), analytics), 1.0);
        let second = old.create(keyed_meta(Some("p"), keys(None, Some("w")), analytics), 2.0);
        // A host text naming another workflow than the create-time key: the key stands.
        let other = old.create(keyed_meta(None, keys(None, Some("v")), analytics), 3.0);
        assert_eq!(
            old.find(Lookup::PluginWorkflowId, "w"),
            Some(second.slot),
            "the newest"
        );
        assert_eq!(old.find(Lookup::PluginWorkflowId, "v"), Some(other.slot));
        assert_eq!(old.find(Lookup::ClientRequestId, "w"), None);
        assert!(old.drop_run(second.slot, 4.0).unwrap());
        assert_eq!(
            old.find(Lookup::PluginWorkflowId, "w"),
            Some(first.slot),
            "a dropped run is never found"
        );
        flush(&old);
        drop(old);

        // A restart: the scan reads each file's externalPluginAnalytics (the file of `other`
        // names "w" too, so after a restart it is the newest run for "w").
        let mut new = service(Some(10), Some(layout_of(&dir)));
        new.index_runs(&dir);
        assert_eq!(
            new.unregistered_keyed_run(Lookup::PluginWorkflowId, "w")
                .unwrap()
                .as_deref(),
            Some(other.id.as_str())
        );
        assert_eq!(
            new.unregistered_keyed_run(Lookup::PluginWorkflowId, "v")
                .unwrap(),
            None
        );
        let slot = new.hydrate(&first.id, 5.0).unwrap().unwrap();
        assert_eq!(new.find(Lookup::PluginWorkflowId, "w"), Some(slot));
        assert_eq!(
            new.unregistered_keyed_run(Lookup::PluginWorkflowId, "w")
                .unwrap()
                .as_deref(),
            Some(other.id.as_str()),
            "a registered run is not reported as unregistered"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_a_restart_pair_older_than_the_state_file_is_an_earlier_attempts_and_gets_new_records() {
        let (dir, id) = active_run_on_disk("hydrate-old-pair", 50.0);
        // Interrupted once (its pair at 100), then reopened at 200; the daemon dies before the
        // reopen's record reaches the journal, which still ends with the pair.
        let mut first = service(Some(10), Some(layout_of(&dir)));
        let slot = first.hydrate(&id, 100.0).unwrap().unwrap();
        first.prepare_restart(slot, None, 200.0).unwrap();
        flush(&first);
        drop(first);
        assert_eq!(state_of(&dir, &id)["updatedAt"], 200.0);
        let mut second = service(Some(10), Some(layout_of(&dir)));
        let slot = second.hydrate(&id, 300.0).unwrap().unwrap();
        let state = second.state(slot).unwrap();
        assert_eq!(state.status.as_deref(), Some("failed"));
        assert_eq!(state.terminal_at, Some(300.0));
        assert_eq!(state.updated_at, 300.0);
        let journal = dir.join(&id).join("events.jsonl");
        assert_eq!(fs::read_to_string(&journal).unwrap().lines().count(), 5);
        assert_eq!(state_of(&dir, &id)["terminalAt"], 300.0);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Two runs of project "p" with clientRequestId "req", created at `created` by a service
    /// that is gone: the log dir and their ids.
    fn keyed_runs_on_disk(name: &str, created: [f64; 2]) -> (PathBuf, [String; 2]) {
        use crate::test_support::{keyed_meta, keys};
        let (dir, layout) = log_dir(name);
        let mut old = service(Some(10), Some(layout));
        let host = r#"{"clientRequestId":"req"}"#;
        let ids = created.map(|at| {
            old.create(keyed_meta(Some("p"), keys(Some("req"), None), host), at)
                .id
        });
        flush(&old);
        (dir, ids)
    }

    #[test]
    fn lc_2_runs_hydrated_before_and_after_a_run_of_this_service_left_still_sort_by_created_at() {
        let (dir, [a, b]) = keyed_runs_on_disk("hydrate-after-drop", [1.0, 2.0]);
        let mut new = service(Some(10), Some(layout_of(&dir)));
        new.index_runs(&dir);
        let x = new.create(meta("q", "c"), 3.0);
        let b_slot = new.hydrate(&b, 4.0).unwrap().unwrap();
        assert!(new.drop_run(x.slot, 5.0).unwrap());
        let a_slot = new.hydrate(&a, 6.0).unwrap().unwrap();
        let filter = ListFilter {
            project_id: Some("p"),
            ..ListFilter::default()
        };
        assert_eq!(new.list(&filter), vec![a_slot, b_slot]);
        assert_eq!(
            new.find(Lookup::ClientRequestId, "req"),
            Some(b_slot),
            "the newest"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_runs_created_in_the_same_millisecond_sort_by_id_whatever_order_they_are_loaded_in() {
        let (dir, [a, b]) = keyed_runs_on_disk("hydrate-same-ms", [7.0, 7.0]);
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        for load in [[&low, &high], [&high, &low]] {
            let mut new = service(Some(10), Some(layout_of(&dir)));
            new.index_runs(&dir);
            let first = new.hydrate(load[0], 8.0).unwrap().unwrap();
            let second = new.hydrate(load[1], 8.0).unwrap().unwrap();
            let slot_of = |id: &String| if id == load[0] { first } else { second };
            assert_eq!(
                new.find(Lookup::ClientRequestId, "req"),
                Some(slot_of(&high)),
                "the larger id is the newest, loaded {load:?}"
            );
            assert_eq!(
                new.list(&ListFilter::default()),
                vec![slot_of(&low), slot_of(&high)],
                "loaded {load:?}"
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
