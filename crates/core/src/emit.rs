//! Writing to a run: `emit` (with interned event names), `set_error`, `finish`, and what
//! they queue for the log writer: the JSONL lines, the status snapshots, the close of a
//! finished run's file, and the flush barrier.

use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::history::EventName;
use crate::log_writer::{LogFailure, LogLine, LogOperation, LogWriter};
use crate::service::Service;

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
        let run = self.run_mut(slot)?;
        let id = run.next_event_id;
        run.next_event_id += 1;
        let target = run.log.clone();
        let closed = run.log_closed;
        let first = !run.snapshotted;
        let logs = target.is_some() && persist && !closed;
        let pushed = run.history.push_shared(id, event, data_json, now, logs);
        run.updated_at = now;
        if target.is_none() {
            // Logging disabled: nothing to persist, nothing to count.
        } else if !persist {
            self.unserializable += 1;
        } else if closed {
            // IMP-1: a late event after finish/drop goes to memory and clients only.
            self.after_close += 1;
        } else if let (Some(target), Some(pushed)) = (target, pushed) {
            let queued = match self.writer() {
                Ok(writer) => {
                    // The writer thread formats the line from the parts the history keeps.
                    let line = LogLine::Parts {
                        id,
                        event: pushed.event,
                        data: pushed.data,
                        timestamp: now,
                    };
                    writer.append_line(&target, line, pushed.line_len as usize)
                }
                Err(error) => {
                    self.log_shared.fail(1, || {
                        LogFailure::io(target.path.clone(), LogOperation::StartWriter, &error)
                    });
                    false
                }
            };
            // The first snapshot goes with the first line that is on its way (it creates
            // the run's directory); a refused line leaves it to the next one.
            if first && queued {
                self.write_snapshot(slot, true);
            }
        }
        Ok(id)
    }

    /// Registers an event name and returns its number for [`Service::emit_named`]. The facade
    /// keeps the name → number map (and bounds it); the core only stores the texts.
    pub fn intern_event(&mut self, name: &str) -> u32 {
        self.event_names.push(Arc::from(name));
        (self.event_names.len() - 1) as u32
    }

    /// `emit` with an event name registered by [`Service::intern_event`].
    pub fn emit_named(
        &mut self,
        slot: u32,
        event: u32,
        data_json: Option<&str>,
        now: f64,
    ) -> CoreResult<u64> {
        let Some(name) = self.event_names.get(event as usize).cloned() else {
            return Err(CoreError::UnknownEventName(event));
        };
        self.emit(slot, EventName::Text(&name), data_json, true, now)
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

    /// FIN-1..FIN-3 (core part): the first terminal verdict wins. Returns the id of the
    /// `'end'` record, or `None` when the run was already terminal.
    pub fn finish(
        &mut self,
        slot: u32,
        status: Option<String>,
        exit_code: Option<f64>,
        signal: Option<String>,
        end_data_json: &str,
        now: f64,
    ) -> CoreResult<Option<u64>> {
        let run = self.run_mut(slot)?;
        if run.is_terminal() {
            return Ok(None);
        }
        run.status = status;
        run.exit_code = exit_code;
        run.signal = signal;
        run.updated_at = now;
        let id = self.emit(slot, EventName::Text("end"), Some(end_data_json), true, now)?;
        let run = self.run_mut(slot)?;
        run.end_event_id = Some(id);
        // No snapshot: the 'end' line just queued is the durable verdict (see durable.rs).
        self.close_log(slot)?;
        Ok(Some(id))
    }

    /// Queues the run's `run.json`: always when `first` (its directory is being created by
    /// the first line), otherwise only once a first snapshot exists and the log is still open.
    pub(crate) fn write_snapshot(&mut self, slot: u32, first: bool) {
        let Ok(run) = self.run_mut(slot) else {
            return;
        };
        if run.log.is_none() || run.log_closed || (!first && !run.snapshotted) {
            return;
        }
        run.snapshotted = true;
        let Ok(json) = run.snapshot().to_json() else {
            return;
        };
        let target = run.log.clone();
        if let (Some(target), Ok(writer)) = (target, self.writer()) {
            writer.snapshot(&target, json);
        }
    }

    /// LC-1: writes the run's durable state file synchronously (before the caller returns).
    /// Placeholder for the lifecycle work: the durable-state implementation replaces it.
    pub fn persist_state(&mut self, slot: u32) -> CoreResult<()> {
        self.run(slot).map(|_| ())
    }

    /// IMP-1/IMP-2: close the run's log for good.
    pub(crate) fn close_log(&mut self, slot: u32) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        if run.log_closed {
            return Ok(());
        }
        run.log_closed = true;
        let key = run.log.as_ref().map(|t| t.key);
        if let (Some(key), Some(writer)) = (key, self.writer.as_ref()) {
            writer.close(key);
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
        let agent = svc.intern_event("agent");
        assert_eq!(svc.emit_named(slot, agent, Some("1"), 5.0).unwrap(), 1);
        svc.emit(slot, EventName::Text("agent"), Some("1"), true, 5.0)
            .unwrap();
        let events: Vec<serde_json::Value> =
            serde_json::from_str(&svc.events_json(slot).unwrap()).unwrap();
        assert_eq!(events[0]["event"], "agent");
        assert_eq!(events[0]["data"], events[1]["data"]);
        assert_eq!(
            svc.emit_named(slot, 99, None, 5.0),
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
