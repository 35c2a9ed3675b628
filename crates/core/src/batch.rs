//! Staged emits (BND-6): the facade numbers each `emit` itself, keeps the record's parts in
//! JS and hands them to the core in one call per batch, so the cost of a crossing is paid once
//! per batch instead of once per event. This module reads that batch and applies it, record by
//! record, with [`Service::emit`], exactly as separate calls would have.
//!
//! A batch crosses as two values:
//!
//! - a header of numbers, [`FIELDS_PER_RECORD`] per record: the run's slot, the id the facade
//!   gave the record, the event name (an interned number ≥ 0, [`NAME_IN_TEXT`] or
//!   [`NAME_ABSENT`]), the flags ([`DATA_IN_TEXT`], [`PERSIST`]) and the timestamp;
//! - one text holding, in record order, the record's event JSON when its name is
//!   [`NAME_IN_TEXT`], then its data JSON when it has [`DATA_IN_TEXT`], each followed by `\n`.
//!   The parts are `JSON.stringify` output, which never holds a raw line feed (JSON escapes
//!   every control character), so `\n` cannot occur inside a part.

use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::history::EventName;
use crate::log_writer::{LogBatch, LogFailure, LogOperation, LogWriter};
use crate::service::Service;

/// Numbers per record in the header.
pub const FIELDS_PER_RECORD: usize = 5;
/// Event name field: the event's JSON is the record's next text part (a name that is not an
/// interned string: another type, or a string the facade chose not to intern).
pub const NAME_IN_TEXT: f64 = -1.0;
/// Event name field: the event was `undefined` (the record has no `event` key).
pub const NAME_ABSENT: f64 = -2.0;
/// Flag: the data JSON is the record's next text part (else `data` was `undefined`).
pub const DATA_IN_TEXT: u32 = 1;
/// Flag: the record may be logged (clear when serializing `data` threw: LOG-6).
pub const PERSIST: u32 = 2;

/// A header number that must be a non-negative integer no larger than `max`.
fn whole(value: f64, max: f64, record: usize, what: &str) -> CoreResult<f64> {
    // (A cast and a compare: `fract()` is a libm call on baseline x86-64.)
    if (0.0..=max).contains(&value) && (value as u64) as f64 == value {
        Ok(value)
    } else {
        Err(CoreError::StagedBatch(format!(
            "record {record}: {what} is {value}, expected an integer from 0 to {max}"
        )))
    }
}

impl Service {
    /// Applies a batch of staged emits (see the module docs) in order and returns how many
    /// records it stored. Each record must carry the id the run's next emit gets: the facade
    /// hands out ids itself, and a record whose id disagrees is refused (with the records after
    /// it) rather than stored under another id than the one its callers saw.
    pub fn emit_staged(&mut self, header: &[f64], text: &str) -> CoreResult<usize> {
        // The batch's log lines are queued together at its end (one lock, one reservation),
        // in record order, also when a record is refused.
        self.pending_lines = Some(
            self.writer
                .as_ref()
                .map_or_else(LogBatch::default, LogWriter::batch),
        );
        let applied = self.apply_staged(header, text);
        if let Some(pending) = self.pending_lines.take().filter(|batch| !batch.is_empty()) {
            match self.writer() {
                // (Refused lines are counted and reported by the writer.)
                Ok(writer) => writer.append_batch(pending),
                Err(error) => self.log_shared.fail(pending.len() as u64, || {
                    LogFailure::io(pending.first_path(), LogOperation::StartWriter, &error)
                }),
            }
        }
        applied
    }

    fn apply_staged(&mut self, header: &[f64], text: &str) -> CoreResult<usize> {
        if header.len() % FIELDS_PER_RECORD != 0 {
            return Err(CoreError::StagedBatch(format!(
                "the header holds {} numbers, expected a multiple of {FIELDS_PER_RECORD}",
                header.len()
            )));
        }
        let mut parts = text.split_terminator('\n');
        let mut next_part = |record: usize, what: &str| {
            parts.next().ok_or_else(|| {
                CoreError::StagedBatch(format!(
                    "record {record}: its {what} JSON is missing from the text"
                ))
            })
        };
        let mut names: Vec<(u32, Arc<str>)> = Vec::new();
        let mut stored = 0;
        for (record, fields) in header.chunks_exact(FIELDS_PER_RECORD).enumerate() {
            let &[slot, id, name, flags, now] = fields else {
                continue;
            };
            let slot = whole(slot, f64::from(u32::MAX), record, "the slot")? as u32;
            let id = whole(id, 9_007_199_254_740_991.0, record, "the id")? as u64;
            let flags = whole(
                flags,
                f64::from(DATA_IN_TEXT | PERSIST),
                record,
                "the flags",
            )? as u32;
            let event = if name == NAME_IN_TEXT {
                EventName::Json(Some(next_part(record, "event")?))
            } else if name == NAME_ABSENT {
                EventName::Json(None)
            } else {
                let number = whole(name, f64::from(u32::MAX), record, "the event name")? as u32;
                // The names this batch used, cloned once each: a clone per record would be an
                // atomic increment and decrement per record.
                let index = match names.iter().position(|(known, _)| *known == number) {
                    Some(index) => index,
                    None => {
                        let text = self
                            .event_names
                            .get(number as usize)
                            .cloned()
                            .ok_or(CoreError::UnknownEventName(number))?;
                        names.push((number, text));
                        names.len() - 1
                    }
                };
                EventName::Text(&names[index].1)
            };
            let data = if flags & DATA_IN_TEXT != 0 {
                Some(next_part(record, "data")?)
            } else {
                None
            };
            let expected = self.run(slot)?.next_event_id;
            if id != expected {
                return Err(CoreError::StagedBatch(format!(
                    "record {record}: id {id} for run handle {slot}, expected its next id {expected}"
                )));
            }
            self.emit(slot, event, data, flags & PERSIST != 0, now)?;
            stored += 1;
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::CreateMeta;
    use crate::test_support::{flush, log_dir, service};

    fn events(svc: &Service, slot: u32) -> Vec<serde_json::Value> {
        serde_json::from_str(&svc.events_json(slot).unwrap()).unwrap()
    }

    #[test]
    fn bnd_6_a_batch_stores_the_records_separate_emits_would() {
        let mut batched = service(Some(10), None);
        let mut single = service(Some(10), None);
        let a = batched.create(CreateMeta::default(), 0.0).slot;
        let b = batched.create(CreateMeta::default(), 0.0).slot;
        let (a1, b1) = (
            single.create(CreateMeta::default(), 0.0).slot,
            single.create(CreateMeta::default(), 0.0).slot,
        );
        single
            .emit(a1, EventName::Text("agent"), Some("{\"x\":1}"), true, 5.0)
            .unwrap();
        single
            .emit(b1, EventName::Json(Some("42")), None, true, 6.0)
            .unwrap();
        single
            .emit(a1, EventName::Json(None), Some("[1]"), false, 7.0)
            .unwrap();
        let agent = f64::from(batched.intern_event("agent"));
        let header = [
            [f64::from(a), 1.0, agent, 3.0, 5.0],
            [f64::from(b), 1.0, NAME_IN_TEXT, 2.0, 6.0],
            [f64::from(a), 2.0, NAME_ABSENT, 1.0, 7.0],
        ]
        .concat();
        let stored = batched
            .emit_staged(&header, "{\"x\":1}\n42\n[1]\n")
            .unwrap();
        assert_eq!(stored, 3);
        for (mine, theirs) in [(a, a1), (b, b1)] {
            assert_eq!(events(&batched, mine), events(&single, theirs));
            assert_eq!(
                batched.state(mine).unwrap().next_event_id,
                single.state(theirs).unwrap().next_event_id
            );
        }
        assert_eq!(events(&batched, a)[1]["data"], serde_json::json!([1]));
        assert_eq!(batched.state(a).unwrap().updated_at, 7.0);
    }

    #[test]
    fn bnd_6_a_batch_reaches_the_log_in_id_order() {
        let (dir, layout) = log_dir("batch-log");
        let mut svc = service(Some(10), Some(layout));
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let id = svc.state(slot).unwrap().id.clone();
        let name = f64::from(svc.intern_event("stdout"));
        let mut header = Vec::new();
        let mut text = String::new();
        for i in 1..=100u32 {
            header.extend([f64::from(slot), f64::from(i), name, 3.0, 1.0]);
            text.push_str(&format!("{i}\n"));
        }
        assert_eq!(svc.emit_staged(&header, &text).unwrap(), 100);
        flush(&svc);
        let log = std::fs::read_to_string(dir.join(&id).join("events.jsonl")).unwrap();
        let ids: Vec<u64> = log
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, (1..=100).collect::<Vec<u64>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bnd_6_batches_reused_after_the_writer_wrote_them_start_empty() {
        let (dir, layout) = log_dir("batch-reuse");
        let mut svc = service(Some(10), Some(layout));
        let slots: Vec<u32> = (0..3)
            .map(|_| svc.create(CreateMeta::default(), 0.0).slot)
            .collect();
        let name = f64::from(svc.intern_event("stdout"));
        let mut next = [1u32; 3];
        for round in 0..20u32 {
            let mut header = Vec::new();
            let mut text = String::new();
            for (i, &slot) in slots.iter().enumerate() {
                header.extend([f64::from(slot), f64::from(next[i]), name, 3.0, 1.0]);
                text.push_str(&format!("[{round},{i}]\n"));
                next[i] += 1;
            }
            assert_eq!(svc.emit_staged(&header, &text).unwrap(), 3);
            // The writer writes the batch and hands it back before the next one is filled.
            flush(&svc);
        }
        for (i, &slot) in slots.iter().enumerate() {
            let id = svc.state(slot).unwrap().id.clone();
            let log = std::fs::read_to_string(dir.join(&id).join("events.jsonl")).unwrap();
            let lines: Vec<serde_json::Value> = log
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            assert_eq!(lines.len(), 20, "one line per round for run {i}");
            for (round, line) in lines.iter().enumerate() {
                assert_eq!(line["id"], round as u64 + 1);
                assert_eq!(line["data"], serde_json::json!([round, i]));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bnd_6_a_record_out_of_step_is_refused_with_what_follows() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let header = [
            [f64::from(slot), 1.0, NAME_ABSENT, 0.0, 1.0],
            [f64::from(slot), 5.0, NAME_ABSENT, 0.0, 1.0],
            [f64::from(slot), 2.0, NAME_ABSENT, 0.0, 1.0],
        ]
        .concat();
        let error = svc.emit_staged(&header, "").unwrap_err();
        assert!(error.to_string().contains("id 5"), "{error}");
        assert_eq!(svc.state(slot).unwrap().next_event_id, 2);
    }

    #[test]
    fn bnd_6_malformed_batches_are_errors_that_name_the_problem() {
        let mut svc = service(Some(10), None);
        let slot = f64::from(svc.create(CreateMeta::default(), 0.0).slot);
        let cases: [(&[f64], &str, &str); 6] = [
            (&[slot, 1.0, NAME_ABSENT, 0.0], "", "multiple of 5"),
            (
                &[slot, 1.0, NAME_IN_TEXT, 0.0, 1.0],
                "",
                "event JSON is missing",
            ),
            (
                &[slot, 1.0, NAME_ABSENT, 1.0, 1.0],
                "",
                "data JSON is missing",
            ),
            (&[-1.0, 1.0, NAME_ABSENT, 0.0, 1.0], "", "the slot is -1"),
            (&[slot, 1.5, NAME_ABSENT, 0.0, 1.0], "", "the id is 1.5"),
            (&[slot, 1.0, NAME_ABSENT, 9.0, 1.0], "", "the flags is 9"),
        ];
        for (header, text, message) in cases {
            let error = svc.emit_staged(header, text).unwrap_err();
            assert!(error.to_string().contains(message), "{error} / {message}");
        }
        assert_eq!(
            svc.emit_staged(&[slot, 1.0, 7.0, 0.0, 1.0], ""),
            Err(CoreError::UnknownEventName(7))
        );
        assert_eq!(
            svc.emit_staged(&[99.0, 1.0, NAME_ABSENT, 0.0, 1.0], ""),
            Err(CoreError::UnknownRun(99))
        );
        assert_eq!(svc.state(slot as u32).unwrap().next_event_id, 1);
    }
}
