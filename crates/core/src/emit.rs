//! Writing to a run: `emit` (with interned event names), `set_error`, `finish` (in two steps,
//! so the host's hooks run between the verdict and its `'end'` record: LC-6),
//! `prepare_restart` (LC-4), and what they queue for the log writer: the JSONL lines, the close
//! of a finished run's file, and the flush barrier. The state file (LC-1) is written by
//! [`crate::durable::state`], synchronously, at the points these functions name.

use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::history::EventName;
use crate::log_writer::{LogBatch, LogFailure, LogOperation, LogWriter};
use crate::run::TERMINATION_UNVERIFIED;
use crate::service::Service;

/// A verdict for [`Service::finish_begin`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    pub status: Option<String>,
    pub exit_code: Option<f64>,
    pub signal: Option<String>,
}

impl Service {
    /// The writer thread, started on first use (and tried again on the next use if the
    /// system refused the thread).
    pub(crate) fn writer(&mut self) -> std::io::Result<&LogWriter> {
        if self.writer.is_none() {
            self.writer = Some(LogWriter::spawn(
                Arc::clone(&self.log_shared),
                self.cfg.log_limits,
            )?);
        }
        self.writer
            .as_ref()
            .ok_or_else(|| std::io::Error::other("log writer missing"))
    }

    /// EMT-2 steps 2-6: numbers and stores the record, bumps `updatedAt`, queues the log line.
    /// `data_json` is `JSON.stringify(data)` (`None` for `undefined`); `persist` is false when
    /// serialization threw (the record is kept with `data: null`, the line is not written).
    pub fn emit(
        &mut self,
        slot: u32,
        event: EventName<'_>,
        data_json: Option<&str>,
        persist: bool,
        now: f64,
    ) -> CoreResult<u64> {
        // The slab field alone, not `run_mut`: the counters and the pending batch below are
        // other fields of `self`, written while `run` is still borrowed.
        let run = self
            .slab
            .get_mut(slot as usize)
            .and_then(Option::as_deref_mut)
            .ok_or(CoreError::UnknownRun(slot))?;
        let id = run.next_event_id;
        run.next_event_id += 1;
        let pushed = run.history.push(id, event, data_json, now);
        run.updated_at = now;
        let Some(target) = run.log.as_ref() else {
            // Logging disabled: nothing to persist, nothing to count.
            return Ok(id);
        };
        if !persist {
            self.unserializable += 1;
            return Ok(id);
        }
        if run.log_closed {
            // IMP-1: a late event after finish/drop goes to memory and clients only.
            self.after_close += 1;
            return Ok(id);
        }
        run.log_lines_queued = true;
        // The writer thread formats the line from the record's parts.
        let event = run.history.name_fragment(pushed.event);
        let len = pushed.line_len as usize;
        if let Some(batch) = self.pending_lines.as_mut() {
            // A batch of staged emits queues its lines together (crate::batch).
            batch.push(target, id, event, data_json, now, len);
            return Ok(id);
        }
        let mut single = LogBatch::default();
        single.push(target, id, event, data_json, now, len);
        let target = Arc::clone(target);
        match self.writer() {
            // (A refused line is counted and reported by the writer.)
            Ok(writer) => writer.append_batch(single),
            Err(error) => self.log_shared.fail(1, || {
                LogFailure::io(target.path.clone(), LogOperation::StartWriter, &error)
            }),
        }
        Ok(id)
    }

    /// Registers an event name and returns its number, which a staged record can carry instead
    /// of the name ([`crate::batch`]). The facade keeps the name → number map (and bounds it);
    /// the core only stores the texts.
    pub fn intern_event(&mut self, name: &str) -> u32 {
        self.event_names.push(Arc::from(name));
        (self.event_names.len() - 1) as u32
    }

    /// §8: records what the facade extracted from an `'error'` event.
    pub fn set_error(
        &mut self,
        slot: u32,
        message: Option<String>,
        code: Option<String>,
    ) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        if message.is_some() {
            run.error = message;
        }
        if code.is_some() {
            run.error_code = code;
        }
        Ok(())
    }

    /// FIN-1..FIN-3 (core part) in one step, for callers with no hooks between the verdict
    /// and its `'end'` record: [`Service::finish_begin`], then [`Service::finish_end`]. Returns
    /// the id of the `'end'` record, or `None` when the run was already terminal.
    pub fn finish(
        &mut self,
        slot: u32,
        status: Option<String>,
        exit_code: Option<f64>,
        signal: Option<String>,
        end_data_json: &str,
        now: f64,
    ) -> CoreResult<Option<u64>> {
        let verdict = Verdict {
            status,
            exit_code,
            signal,
        };
        if !self.finish_begin(slot, verdict, None, now)? {
            return Ok(None);
        }
        self.finish_end(slot, end_data_json, now).map(Some)
    }

    /// FIN-1/FIN-3 first half: the first terminal verdict wins. Sets `status`, `exitCode`,
    /// `signal`, `updatedAt`; for a terminal status also `terminalAt = now` (LC-5; the
    /// `terminalTrigger` is the host's, persisted as it stands); then persists the state file
    /// with the host's values (LC-1, `host_json` as in [`Service::persist_state_with`]). False
    /// (nothing changed) when the run was already terminal. The run is terminal from here on, so a
    /// `finish` from a hook before [`Service::finish_end`] is a no-op.
    pub fn finish_begin(
        &mut self,
        slot: u32,
        verdict: Verdict,
        host_json: Option<&str>,
        now: f64,
    ) -> CoreResult<bool> {
        let run = self.run_mut(slot)?;
        if run.is_terminal() {
            return Ok(false);
        }
        run.status = verdict.status;
        run.exit_code = verdict.exit_code;
        run.signal = verdict.signal;
        run.updated_at = now;
        if run.is_terminal() {
            run.terminal_at = Some(now);
            run.retrying_teardown = false;
            run.release_process_handles();
        }
        self.persist_state_with(slot, host_json)?;
        Ok(true)
    }

    /// FIN-3 second half: the `'end'` record (its data as the facade serialized it), then the
    /// log is closed (IMP-1). Returns the record's id.
    pub fn finish_end(&mut self, slot: u32, end_data_json: &str, now: f64) -> CoreResult<u64> {
        let id = self.emit(slot, EventName::Text("end"), Some(end_data_json), true, now)?;
        let run = self.run_mut(slot)?;
        run.end_event_id = Some(id);
        self.close_log(slot)?;
        Ok(id)
    }

    /// LC-4 (core part): a terminal run goes back to `queued` for a retry, with the same id:
    /// `updatedAt = now`; `exitCode`, `signal`, `error`, `errorCode`, `cancelOrigin`,
    /// `terminalAt`, `terminalTrigger` and `childExitObservedAt` cleared; `cancelRequested`
    /// false; the cancel and shutdown plans, the child's handle, the child and its verified
    /// group dropped (what the earlier attempt's tree left alive stays captured, as when a retry
    /// replaces `run.child`: [`crate::tree::Tree::next_attempt`]); the log open for append again; the run registered again if it had been
    /// evicted; the state file persisted (with `host_json`). Returns the
    /// previous `updatedAt`, or `None` (nothing changed) for a run that is not terminal or was
    /// dropped.
    pub fn prepare_restart(
        &mut self,
        slot: u32,
        host_json: Option<&str>,
        now: f64,
    ) -> CoreResult<Option<f64>> {
        let run = self.run(slot)?;
        if !run.is_terminal() || run.dropped {
            return Ok(None);
        }
        let previous = run.updated_at;
        self.reopen(slot, crate::run::QUEUED, now)?;
        let table = self.processes.clone();
        let run = self.run_mut(slot)?;
        run.exit_code = None;
        run.signal = None;
        run.cancel_origin = None;
        run.terminal_trigger = None;
        run.child_exit_observed_at = None;
        run.cancel_requested = false;
        run.child_handle = None;
        run.verified_group = None;
        run.tree.next_attempt(&table);
        run.host.forget_attempt();
        self.persist_state_with(slot, host_json)?;
        Ok(Some(previous))
    }

    /// LC-9 (core part): a run that failed with [`TERMINATION_UNVERIFIED`] (the host's tree
    /// terminator could not verify that its process tree stopped) goes back to `running`, so
    /// that a later cancel or shutdown can retry that teardown and give a new verdict: the
    /// error, `terminalAt` and any plan cleared, `updatedAt = now`, the log open for
    /// append again, the run registered again if it had been evicted. Unlike a retry of the
    /// work (LC-4), the attempt's facts stay: the exit code and signal until the new verdict,
    /// the cancel origin, the host's `terminalTrigger` and `cancelRequested`. False, and
    /// nothing changed, for any other run (another status or error code, or a dropped run).
    /// The state file is not written: until the new verdict it still says what is true after
    /// a crash, a failure to retry.
    pub fn reopen_for_teardown(&mut self, slot: u32, now: f64) -> CoreResult<bool> {
        let run = self.run(slot)?;
        if run.dropped
            || run.status.as_deref() != Some("failed")
            || run.error_code.as_deref() != Some(TERMINATION_UNVERIFIED)
        {
            return Ok(false);
        }
        self.reopen(slot, crate::run::RUNNING, now)?;
        self.run_mut(slot)?.retrying_teardown = true;
        Ok(true)
    }

    /// What both reopens of a terminal run do (LC-4, LC-9): registered again if it had been
    /// evicted, `status` and `updatedAt = now`, the error and `terminalAt` cleared, no
    /// plan left, the log open for append again (the new attempt's first line may create the
    /// journal again: the host may have removed the old one on purpose; LOG-3's rule against
    /// re-creating it is about lines of a run nobody reopened).
    fn reopen(&mut self, slot: u32, status: &str, now: f64) -> CoreResult<()> {
        self.reregister(slot)?;
        let run = self.run_mut(slot)?;
        run.status = Some(status.to_owned());
        run.updated_at = now;
        run.error = None;
        run.error_code = None;
        run.terminal_at = None;
        run.cancel = None;
        run.shutdown = None;
        run.end_event_id = None;
        run.log_closed = false;
        run.retrying_teardown = false;
        if let Some(target) = run.log.as_ref() {
            target.reopen();
        }
        Ok(())
    }

    /// IMP-1/IMP-2: close the run's log for good.
    pub(crate) fn close_log(&mut self, slot: u32) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        if run.log_closed {
            return Ok(());
        }
        run.log_closed = true;
        let lines_queued = run.log_lines_queued;
        let Some(target) = run.log.clone() else {
            return Ok(());
        };
        if let Some(writer) = self.writer.as_ref() {
            // LOG-3: the journal of a run with lines exists once its log is closed.
            if lines_queued && !target.created() {
                target.open_early(&self.log_shared);
            }
            writer.close(&target);
        }
        Ok(())
    }

    /// IMP-4: calls `done` once every line queued so far (all runs) is written and every
    /// closed run's file is closed.
    pub fn flush(&self, done: Box<dyn FnOnce() + Send>) {
        match &self.writer {
            Some(writer) => writer.barrier(done),
            None => done(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::CoreError;
    use crate::history::EventName;
    use crate::run::TERMINATION_UNVERIFIED;
    use crate::service::CreateMeta;
    use crate::test_support::{emit, flush, log_dir, service};

    #[test]
    fn emt_3_ids_grow_by_one_and_trimming_never_renumbers() {
        let mut svc = service(Some(2), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let ids: Vec<u64> = (0..5)
            .map(|i| emit(&mut svc, slot, &i.to_string()))
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        let run = svc.state(slot).unwrap();
        assert_eq!(run.next_event_id, 6);
        assert_eq!(run.history.len(), 2);
        assert_eq!(run.history.oldest_id(), Some(4));
        assert_eq!(run.updated_at, 10.0);
    }

    #[test]
    fn interned_event_names_emit_the_same_records_as_strings() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let agent = f64::from(svc.intern_event("agent"));
        let staged = [f64::from(slot), 1.0, agent, 3.0, 5.0];
        assert_eq!(svc.emit_staged(&staged, "1\n").unwrap(), 1);
        svc.emit(slot, EventName::Text("agent"), Some("1"), true, 5.0)
            .unwrap();
        let events: Vec<serde_json::Value> =
            serde_json::from_str(&svc.events_json(slot).unwrap()).unwrap();
        assert_eq!(events[0]["event"], "agent");
        assert_eq!(events[0]["data"], events[1]["data"]);
        let unknown = [f64::from(slot), 3.0, 99.0, 0.0, 5.0];
        assert_eq!(
            svc.emit_staged(&unknown, ""),
            Err(CoreError::UnknownEventName(99))
        );
    }

    #[test]
    fn fin_1_first_terminal_verdict_wins_with_one_end_event() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let end = svc
            .finish(slot, Some("succeeded".into()), Some(0.0), None, "{}", 1.0)
            .unwrap();
        assert_eq!(end, Some(1));
        let second = svc
            .finish(
                slot,
                Some("failed".into()),
                Some(1.0),
                Some("SIGTERM".into()),
                "{}",
                2.0,
            )
            .unwrap();
        assert_eq!(second, None);
        let run = svc.state(slot).unwrap();
        assert_eq!(run.status.as_deref(), Some("succeeded"));
        assert_eq!(run.exit_code, Some(0.0));
        assert_eq!(run.signal, None);
        assert_eq!(run.history.len(), 1);
    }

    #[test]
    fn lc_5_a_verdict_sets_terminal_at_keeps_the_host_trigger_then_finish_end_adds_end() {
        use super::Verdict;
        use crate::run::TextField;
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let paused = Verdict {
            status: Some("paused".into()),
            ..Verdict::default()
        };
        assert!(svc.finish_begin(slot, paused, None, 1.0).unwrap());
        let run = svc.state(slot).unwrap();
        assert_eq!(
            (run.terminal_at, run.terminal_trigger.as_deref()),
            (None, None)
        );
        assert_eq!(svc.finish_end(slot, "{}", 1.0).unwrap(), 1);
        svc.set_text(
            slot,
            TextField::TerminalTrigger,
            Some("inactivity_watchdog".into()),
        )
        .unwrap();
        let canceled = Verdict {
            status: Some("canceled".into()),
            signal: Some("SIGTERM".into()),
            ..Verdict::default()
        };
        assert!(svc.finish_begin(slot, canceled.clone(), None, 2.0).unwrap());
        let run = svc.state(slot).unwrap();
        assert_eq!(run.terminal_at, Some(2.0));
        assert_eq!(
            run.terminal_trigger.as_deref(),
            Some("inactivity_watchdog"),
            "the verdict keeps the host's trigger"
        );
        assert!(run.history.len() == 1, "no 'end' before finish_end");
        assert!(!svc.finish_begin(slot, canceled, None, 3.0).unwrap());
        assert_eq!(svc.finish_end(slot, "{}", 2.0).unwrap(), 2);
        assert!(svc.state(slot).unwrap().log_closed);
    }

    #[test]
    fn lc_9_reopen_for_teardown_takes_only_an_unverified_termination_back_to_running() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        assert!(!svc.reopen_for_teardown(slot, 1.0).unwrap(), "not terminal");
        svc.set_error(slot, Some("m".into()), Some("OTHER".into()))
            .unwrap();
        svc.finish(slot, Some("failed".into()), Some(1.0), None, "{}", 2.0)
            .unwrap();
        assert!(
            !svc.reopen_for_teardown(slot, 3.0).unwrap(),
            "another error code"
        );
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        svc.set_error(slot, Some("m".into()), Some(TERMINATION_UNVERIFIED.into()))
            .unwrap();
        svc.finish(
            slot,
            Some("failed".into()),
            Some(1.0),
            Some("SIGTERM".into()),
            "{}",
            5.0,
        )
        .unwrap();
        assert!(svc.evict(slot).unwrap());
        assert!(svc.reopen_for_teardown(slot, 9.0).unwrap());
        let run = svc.state(slot).unwrap();
        assert_eq!(run.status.as_deref(), Some("running"));
        assert_eq!(
            (run.error.as_deref(), run.error_code.as_deref()),
            (None, None)
        );
        assert_eq!((run.terminal_at, run.updated_at), (None, 9.0));
        assert_eq!(
            run.exit_code,
            Some(1.0),
            "the attempt's exit code stays until the new verdict"
        );
        assert!(!run.log_closed);
        assert_eq!(svc.get(&run.id.clone()), Some(slot), "registered again");
        let end = svc
            .finish(
                slot,
                Some("canceled".into()),
                None,
                Some("SIGTERM".into()),
                "{}",
                10.0,
            )
            .unwrap();
        assert_eq!(end, Some(2), "a new verdict with its own end");
        assert!(
            !svc.reopen_for_teardown(slot, 11.0).unwrap(),
            "canceled now"
        );
    }

    #[test]
    fn lc_4_prepare_restart_reopens_a_terminal_run_for_a_new_verdict() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        assert_eq!(svc.prepare_restart(slot, None, 1.0).unwrap(), None);
        svc.set_error(slot, Some("m".into()), Some("E".into()))
            .unwrap();
        svc.finish(slot, Some("failed".into()), Some(1.0), None, "{}", 5.0)
            .unwrap();
        assert!(svc.evict(slot).unwrap());
        assert_eq!(svc.prepare_restart(slot, None, 9.0).unwrap(), Some(5.0));
        let run = svc.state(slot).unwrap();
        assert_eq!(run.status.as_deref(), Some("queued"));
        assert_eq!(
            (run.error.as_deref(), run.error_code.as_deref()),
            (None, None)
        );
        assert_eq!(
            (run.exit_code, run.terminal_at, run.updated_at),
            (None, None, 9.0)
        );
        assert!(!run.log_closed);
        assert_eq!(svc.get(&run.id.clone()), Some(slot), "registered again");
        let end = svc
            .finish(slot, Some("succeeded".into()), Some(0.0), None, "{}", 10.0)
            .unwrap();
        assert_eq!(end, Some(2), "a new verdict with its own end");
        let dropped = svc.create(CreateMeta::default(), 0.0).slot;
        svc.drop_run(dropped, 1.0).unwrap();
        assert_eq!(svc.prepare_restart(dropped, None, 2.0).unwrap(), None);
    }

    #[test]
    fn fin_2_non_terminal_finish_can_run_again() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        assert!(svc
            .finish(slot, Some("paused".into()), None, None, "{}", 1.0)
            .unwrap()
            .is_some());
        assert!(svc
            .finish(slot, Some("failed".into()), None, None, "{}", 1.0)
            .unwrap()
            .is_some());
        assert_eq!(svc.state(slot).unwrap().history.len(), 2);
    }

    #[test]
    fn err_set_error_keeps_earlier_values_for_absent_parts() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        svc.set_error(slot, Some("first".into()), Some("E1".into()))
            .unwrap();
        svc.set_error(slot, Some("second".into()), None).unwrap();
        let run = svc.state(slot).unwrap();
        assert_eq!(run.error.as_deref(), Some("second"));
        assert_eq!(run.error_code.as_deref(), Some("E1"));
    }

    #[test]
    fn log_7_lines_emitted_right_before_a_drop_reach_the_journal() {
        let (dir, layout) = log_dir("drop-race");
        let mut svc = service(Some(10), Some(layout));
        let mut paths = Vec::new();
        for _ in 0..2000 {
            let created = svc.create(CreateMeta::default(), 0.0);
            emit(&mut svc, created.slot, "{\"a\":1}");
            svc.drop_run(created.slot, 1.0).unwrap();
            paths.push(created.events_log_path.unwrap());
        }
        flush(&svc);
        for path in &paths {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            assert_eq!(text.lines().count(), 1, "{path}");
        }
        assert_eq!(svc.stats().log.lines_written, 2000);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn imp_1_log_is_closed_by_finish_and_late_events_are_not_persisted() {
        let (dir, layout) = log_dir("imp1");
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(CreateMeta::default(), 0.0);
        emit(&mut svc, created.slot, "{\"a\":1}");
        svc.finish(
            created.slot,
            Some("succeeded".into()),
            Some(0.0),
            None,
            "{\"status\":\"succeeded\"}",
            2.0,
        )
        .unwrap();
        emit(&mut svc, created.slot, "\"late\"");
        flush(&svc);
        let path = created.events_log_path.unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("\"event\":\"end\""));
        let stats = svc.stats();
        assert_eq!(stats.log.open_files, 0);
        assert_eq!(stats.log.lines_written, 2);
        assert_eq!(stats.log.not_persisted.after_close, 1);
        assert_eq!(stats.events.retained, 3);
        assert_eq!(stats.runs.by_status, vec![("succeeded".to_owned(), 1)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
