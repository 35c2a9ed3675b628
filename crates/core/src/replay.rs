//! The compact form in which `stream()` replay crosses to JS.
//!
//! `send(event, data, id)` needs neither the record objects nor their timestamps, so replay
//! does not ship `{id,event,data,timestamp}` records for JS to parse and take apart. It ships
//! one JSON text:
//!
//! ```text
//! [datas, ids, names, nameIndex, missing]
//! ```
//!
//! - `datas`: each record's `data` JSON, `null` standing in for an absent key;
//! - `ids`: the id of the first record when the ids are contiguous (always, for records from
//!   memory), else the array of every id (records read back from a log can have gaps);
//! - `names`: the distinct event names, each wrapped in an array: `["agent"]`, or `[]` for a
//!   record without an `event` key;
//! - `nameIndex`: the index into `names` shared by every record, or one index per record;
//! - `missing`: the indexes whose `data` key is absent (`undefined` in JS).
//!
//! One `JSON.parse` in JS then builds only the `data` values the client is handed. The data
//! goes first so the text is written in one pass into one buffer.
//!
//! Which records a replay sends (STR-3, STR-4, IMP-8, and IMP-3 for cursors older than the
//! in-memory history) is decided here too, by [`Service::replay_batch`] (and by
//! [`Service::replay`], which returns the same records whole, for tests).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::backfill;
use crate::error::CoreResult;
use crate::history::{self, History};
use crate::run::RunState;
use crate::service::Service;

/// How long a backfill waits for the log writer to drain before reading (a stuck disk must not
/// hang `stream()`; what is not on disk by then is skipped, as IMP-3 allows).
pub const BACKFILL_SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// What `stream()` must send (STR-3, STR-4, IMP-8), as whole records.
pub struct Replay {
    pub terminal: bool,
    /// JSON array of the records to send, in order.
    pub records_json: String,
}

/// What a replay sends, before it is encoded.
struct Picked {
    terminal: bool,
    /// Lines read back from the log (IMP-3), older than everything in `held`.
    logged: Vec<String>,
    held: Held,
}

/// The records of the in-memory history a replay sends.
enum Held {
    Nothing,
    /// Every record with id ≥ this.
    From(u64),
    /// This one record.
    Only(u64),
}

impl Picked {
    /// About the serialized size of the held records (their share of the history's bytes).
    fn held_bytes(&self, history: &History) -> usize {
        let count = match self.held {
            Held::Nothing => 0,
            Held::From(from) => history
                .oldest_id()
                .zip(history.newest_id())
                .map_or(0, |(oldest, newest)| {
                    (newest + 1).saturating_sub(from.max(oldest)) as usize
                }),
            Held::Only(_) => 1,
        };
        history.retained_bytes() / history.len().max(1) * count
    }

    fn visit(&self, history: &History, f: impl FnMut(history::Part<'_>)) {
        match self.held {
            Held::Nothing => {}
            Held::From(from) => history.visit(from, usize::MAX, f),
            Held::Only(id) => history.visit(id, 1, f),
        }
    }
}

impl Service {
    /// `run.events` as one JSON array text (RUN-5).
    pub fn events_json(&self, slot: u32) -> CoreResult<String> {
        Ok(self.run(slot)?.history.to_json_array())
    }

    /// `run.events` as consecutive JSON array texts of at most `max_bytes` each (see
    /// [`History::to_json_arrays`]), for a history too large for one JS string.
    pub fn events_json_chunks(&self, slot: u32, max_bytes: usize) -> CoreResult<Vec<String>> {
        Ok(self.run(slot)?.history.to_json_arrays(max_bytes))
    }

    /// STR-3/STR-4 with IMP-8, and IMP-3 when the run has a log. `cursor` is JS `Number(raw)`.
    /// Each record as its whole line (what `events.jsonl` holds).
    pub fn replay(&self, slot: u32, cursor: f64) -> CoreResult<Replay> {
        let (run, picked) = self.pick(slot, cursor)?;
        let mut records_json = String::from("[");
        for line in &picked.logged {
            records_json.push_str(line);
            records_json.push(',');
        }
        picked.visit(&run.history, |part| {
            let event = run.history.event_fragment(&part);
            history::write_line(&mut records_json, part.id, event, part.data, part.timestamp);
            records_json.push(',');
        });
        if records_json.len() > 1 {
            records_json.pop();
        }
        records_json.push(']');
        Ok(Replay {
            terminal: picked.terminal,
            records_json,
        })
    }

    /// The same records as [`Service::replay`], in the compact form `stream()` parses (see
    /// the module docs): [`Service::replay_batches`] without a bound.
    pub fn replay_batch(&self, slot: u32, cursor: f64) -> CoreResult<String> {
        Ok(self
            .replay_batches(slot, cursor, usize::MAX)?
            .pop()
            .unwrap_or_default())
    }

    /// The same records as [`Service::replay_batch`], in consecutive batches whose data JSON
    /// holds at most about `max_bytes` each (a record larger than that alone makes a batch of
    /// its own): for a replay too large for one JS string. Sent one after the other, they make
    /// the same sends.
    pub fn replay_batches(
        &self,
        slot: u32,
        cursor: f64,
        max_bytes: usize,
    ) -> CoreResult<Vec<String>> {
        let (run, picked) = self.pick(slot, cursor)?;
        // The first batch is one allocation when the estimate is right.
        let logged: usize = picked.logged.iter().map(String::len).sum();
        let expected = logged + picked.held_bytes(&run.history);
        let mut batches = Batches::new(max_bytes, expected.min(max_bytes));
        for line in &picked.logged {
            batches.current(line.len()).push_line(line);
        }
        picked.visit(&run.history, |part| {
            let size = part.data.map_or(4, str::len);
            batches
                .current(size)
                .push(part.id, run.history.event_fragment(&part), part.data);
        });
        Ok(batches.finish())
    }

    /// The records a replay sends: those after `cursor` (all of them for a non-finite or
    /// negative cursor), read back from the log first when the cursor is older than the
    /// history (IMP-3); for a terminal run with nothing after the cursor, its final record.
    fn pick(&self, slot: u32, cursor: f64) -> CoreResult<(&RunState, Picked)> {
        let run = self.run(slot)?;
        let logged = self.backfill(run, cursor);
        let from = if cursor.is_finite() && cursor >= 0.0 {
            // The smallest integer id greater than the cursor (`as` saturates huge cursors).
            (cursor.floor() as u64).saturating_add(1)
        } else {
            0
        };
        let terminal = run.is_terminal();
        let newest = run.history.newest_id();
        let held = if newest.is_some_and(|newest| newest >= from) {
            Held::From(from)
        } else if logged.is_empty() && terminal {
            // STR-4 / IMP-8: the end record if still held, else the newest one.
            match run.end_event_id.filter(|&id| run.history.holds(id)) {
                Some(id) => Held::Only(id),
                None => newest.map_or(Held::Nothing, Held::Only),
            }
        } else {
            Held::Nothing
        };
        Ok((
            run,
            Picked {
                terminal,
                logged,
                held,
            },
        ))
    }

    /// IMP-3: the log records with `cursor < id < oldest`, when the cursor is older than the
    /// history. Waits (bounded) for the writer to drain first, so records that just left memory
    /// are on disk before they are read.
    fn backfill(&self, run: &RunState, cursor: f64) -> Vec<String> {
        let Some(target) = run.log.as_ref() else {
            return Vec::new();
        };
        let cursor = backfill::normalize_cursor(cursor);
        let oldest = run.history.oldest_id().unwrap_or(run.next_event_id);
        if cursor >= oldest.saturating_sub(1) as f64 {
            return Vec::new();
        }
        if let Some(writer) = &self.writer {
            writer.sync(BACKFILL_SYNC_TIMEOUT);
        }
        backfill::read_range(&target.path, cursor, oldest)
    }
}

/// Replay batches of a bounded size, in order (see [`Service::replay_batches`]).
struct Batches {
    max_bytes: usize,
    done: Vec<String>,
    open: BatchWriter,
    records: usize,
}

impl Batches {
    fn new(max_bytes: usize, capacity: usize) -> Self {
        Self {
            max_bytes,
            done: Vec::new(),
            open: BatchWriter::new(capacity),
            records: 0,
        }
    }

    /// The batch the next record, of about `size` bytes of data, goes to.
    fn current(&mut self, size: usize) -> &mut BatchWriter {
        if self.records > 0 && self.open.data_len().saturating_add(size) >= self.max_bytes {
            let full = std::mem::replace(&mut self.open, BatchWriter::new(0));
            self.done.push(full.finish());
            self.records = 0;
        }
        self.records += 1;
        &mut self.open
    }

    fn finish(mut self) -> Vec<String> {
        self.done.push(self.open.finish());
        self.done
    }
}

/// Accumulates the records of one replay, in send order.
pub struct BatchWriter {
    ids: Vec<u64>,
    contiguous: bool,
    names: Vec<Option<String>>,
    name_index: Vec<u32>,
    uniform: bool,
    /// The text so far: `[[datas…`.
    out: String,
    missing: Vec<usize>,
}

impl BatchWriter {
    /// `capacity`: the expected size of the data JSON (the text is one allocation when it is
    /// right).
    pub fn new(capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity.saturating_add(64));
        out.push_str("[[");
        Self {
            ids: Vec::new(),
            contiguous: true,
            names: Vec::new(),
            name_index: Vec::new(),
            uniform: true,
            out,
            missing: Vec::new(),
        }
    }

    /// Adds one record: its id, the JSON fragment of its event name and its data JSON
    /// (`None`: that key is absent from the record).
    pub fn push(&mut self, id: u64, event: Option<&str>, data: Option<&str>) {
        if let Some(&last) = self.ids.last() {
            self.contiguous &= last.checked_add(1) == Some(id);
            self.out.push(',');
        }
        let index = match self.names.iter().position(|name| name.as_deref() == event) {
            Some(index) => index,
            None => {
                self.names.push(event.map(str::to_owned));
                self.names.len() - 1
            }
        } as u32;
        self.uniform &= self.name_index.first().is_none_or(|&first| first == index);
        self.name_index.push(index);
        match data {
            Some(json) => self.out.push_str(json),
            None => {
                self.missing.push(self.ids.len());
                self.out.push_str("null");
            }
        }
        self.ids.push(id);
    }

    /// Adds a record line read back from a log. Lines that are not a record object with a
    /// non-negative integer `id` are skipped (the backfill has already validated them).
    pub fn push_line(&mut self, line: &str) {
        // A record is an object (serde would also read `[id, event, data]` as the struct).
        if !line.trim_start().starts_with('{') {
            return;
        }
        if let Ok(parts) = serde_json::from_str::<LineParts<'_>>(line) {
            self.push(
                parts.id,
                parts.event.map(RawValue::get),
                parts.data.map(RawValue::get),
            );
        } else if let Some((id, fields)) = crate::backfill::fields_as_js_reads(line) {
            // A line the backfill took whose keys the derived reader refuses (one given twice).
            let get = |key: &str| fields.get(key).map(|raw| raw.get());
            self.push(id, get("event"), get("data"));
        }
    }

    /// Bytes of data JSON written so far (with the separators).
    pub fn data_len(&self) -> usize {
        self.out.len()
    }

    /// The JSON text described in the module docs.
    pub fn finish(mut self) -> String {
        let out = &mut self.out;
        out.push_str("],");
        match (self.contiguous, self.ids.first()) {
            (true, Some(first)) => {
                let _ = write!(out, "{first}");
            }
            (true, None) => out.push('0'),
            (false, _) => push_numbers(out, self.ids.iter()),
        }
        out.push_str(",[");
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            if let Some(fragment) = name {
                out.push_str(fragment);
            }
            out.push(']');
        }
        out.push_str("],");
        if self.uniform {
            out.push('0');
        } else {
            push_numbers(out, self.name_index.iter());
        }
        out.push(',');
        push_numbers(out, self.missing.iter());
        out.push(']');
        self.out
    }
}

fn push_numbers<T: std::fmt::Display>(out: &mut String, values: impl Iterator<Item = T>) {
    out.push('[');
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{value}");
    }
    out.push(']');
}

/// The parts of a log line replay needs. A key that is present keeps its raw JSON, `null`
/// included; only an absent key is `None`.
#[derive(Deserialize)]
struct LineParts<'a> {
    id: u64,
    #[serde(default, borrow, deserialize_with = "crate::durable::journal::present")]
    event: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "crate::durable::journal::present")]
    data: Option<&'a RawValue>,
}

/// One `send(event, data, id)` a replay makes (`None`: that argument is `undefined`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub id: u64,
    pub event: Option<serde_json::Value>,
    pub data: Option<serde_json::Value>,
}

impl Sent {
    /// The send a whole `{id, event, data, timestamp}` record stands for.
    pub fn of_record(record: &serde_json::Value) -> Self {
        Self {
            id: record["id"].as_u64().unwrap_or(u64::MAX),
            event: record.get("event").cloned(),
            data: record.get("data").cloned(),
        }
    }
}

/// Reads a batch back the way `stream()` in `index.js` does: the sends, in order.
/// `None` when the text is not a well-formed batch. (The facade never needs this; the model
/// test and the fuzzer use it to check the batch against the whole records.)
pub fn decode(text: &str) -> Option<Vec<Sent>> {
    use serde_json::Value;
    let value: Value = serde_json::from_str(text).ok()?;
    let [datas, ids, names, name_index, missing] = value.as_array()?.as_slice() else {
        return None;
    };
    let missing: Vec<u64> = missing
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let names = names.as_array()?;
    let mut sends = Vec::new();
    for (i, data) in datas.as_array()?.iter().enumerate() {
        let id = match ids {
            Value::Array(ids) => ids.get(i)?.as_u64()?,
            first => first.as_u64()?.checked_add(i as u64)?,
        };
        let index = match name_index {
            Value::Array(indexes) => indexes.get(i)?.as_u64()?,
            shared => shared.as_u64()?,
        };
        let name = names.get(usize::try_from(index).ok()?)?.as_array()?;
        sends.push(Sent {
            id,
            event: name.first().cloned(),
            data: (!missing.contains(&(i as u64))).then(|| data.clone()),
        });
    }
    Some(sends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::CreateMeta;
    use crate::test_support::{emit, flush, log_dir, replay_ids, service};

    #[test]
    fn str_3_and_4_replay_after_cursor_and_final_event_guarantee() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        for i in 0..3 {
            emit(&mut svc, slot, &i.to_string());
        }
        assert_eq!(replay_ids(&svc, slot, 0.0), vec![1, 2, 3]);
        assert_eq!(replay_ids(&svc, slot, f64::NAN), vec![1, 2, 3]);
        assert_eq!(replay_ids(&svc, slot, f64::INFINITY), vec![1, 2, 3]);
        assert_eq!(replay_ids(&svc, slot, -1.0), vec![1, 2, 3]);
        assert_eq!(replay_ids(&svc, slot, 1.5), vec![2, 3]);
        // Not terminal: nothing after the end, nothing re-sent.
        assert_eq!(replay_ids(&svc, slot, 3.0), Vec::<u64>::new());
        svc.finish(slot, Some("succeeded".into()), None, None, "{}", 1.0)
            .unwrap();
        let replay = svc.replay(slot, 9.0).unwrap();
        assert!(replay.terminal);
        assert_eq!(replay_ids(&svc, slot, 9.0), vec![4]);
    }

    /// The sends of a replay, whole or in bounded batches, with the data of each.
    fn chunked_sends(
        svc: &Service,
        slot: u32,
        cursor: f64,
        max_bytes: usize,
    ) -> (Vec<Sent>, usize) {
        let batches = svc.replay_batches(slot, cursor, max_bytes).unwrap();
        let count = batches.len();
        let sends = batches
            .iter()
            .flat_map(|batch| decode(batch).unwrap())
            .collect();
        (sends, count)
    }

    #[test]
    fn replay_in_bounded_batches_makes_the_same_sends() {
        let (dir, layout) = log_dir("replay-batches");
        let mut svc = service(Some(4), Some(layout));
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        for i in 0..9 {
            let data = format!("\"{}\"", "x".repeat(10 * (i + 1)));
            emit(&mut svc, slot, &data);
        }
        flush(&svc);
        let whole = decode(&svc.replay_batch(slot, 2.0).unwrap()).unwrap();
        // Ids 3..9: 3 to 5 read back from the log (IMP-3), 6 to 9 held in memory.
        assert_eq!(
            whole.iter().map(|s| s.id).collect::<Vec<_>>(),
            (3..=9).collect::<Vec<_>>()
        );
        for max_bytes in [1, 40, 100, 1000, usize::MAX] {
            let (sends, batches) = chunked_sends(&svc, slot, 2.0, max_bytes);
            assert_eq!(sends, whole, "max_bytes {max_bytes}");
            // A bound below every record: one batch each; a bound no batch reaches: one batch.
            match max_bytes {
                1 => assert_eq!(batches, 7),
                1000 | usize::MAX => assert_eq!(batches, 1),
                _ => assert!(batches > 1, "max_bytes {max_bytes}: {batches} batch(es)"),
            }
        }
        // STR-4 through the same path: a terminal run, a cursor past its end.
        svc.finish(slot, Some("succeeded".into()), None, None, "{}", 1.0)
            .unwrap();
        let (sends, batches) = chunked_sends(&svc, slot, 99.0, 1);
        assert_eq!(
            (sends.iter().map(|s| s.id).collect::<Vec<_>>(), batches),
            (vec![10], 1)
        );
        flush(&svc);
        drop(svc);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn imp_8_final_event_is_the_end_record_even_after_a_late_event() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        emit(&mut svc, slot, "1");
        svc.finish(slot, Some("succeeded".into()), None, None, "{}", 1.0)
            .unwrap();
        emit(&mut svc, slot, "late");
        assert_eq!(replay_ids(&svc, slot, 3.0), vec![2]);
    }

    #[test]
    fn imp_3_old_cursors_are_backfilled_from_the_log_in_order_once() {
        let (dir, layout) = log_dir("imp3");
        let mut svc = service(Some(3), Some(layout));
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        for i in 0..1000 {
            emit(&mut svc, slot, &i.to_string());
        }
        // No flush: the backfill itself waits for the writer.
        assert_eq!(
            replay_ids(&svc, slot, 990.0),
            (991..=1000).collect::<Vec<_>>()
        );
        assert_eq!(
            replay_ids(&svc, slot, f64::NAN),
            (1..=1000).collect::<Vec<_>>()
        );
        assert_eq!(replay_ids(&svc, slot, -7.0), (1..=1000).collect::<Vec<_>>());
        assert_eq!(replay_ids(&svc, slot, 997.0), vec![998, 999, 1000]);
        svc.finish(slot, Some("succeeded".into()), None, None, "{}", 1.0)
            .unwrap();
        assert_eq!(
            replay_ids(&svc, slot, 500.0),
            (501..=1001).collect::<Vec<_>>()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    use serde_json::{json, Value};

    fn parsed(writer: BatchWriter) -> Value {
        let text = writer.finish();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    #[test]
    fn empty_batch_is_well_formed() {
        let writer = BatchWriter::new(0);
        assert_eq!(parsed(writer), json!([[], 0, [], 0, []]));
    }

    #[test]
    fn contiguous_uniform_records_ship_first_id_and_one_name() {
        let mut writer = BatchWriter::new(4);
        writer.push(7, Some("\"agent\""), Some("{\"a\":1}"));
        writer.push(8, Some("\"agent\""), Some("[1,2]"));
        assert_eq!(
            parsed(writer),
            json!([[{"a": 1}, [1, 2]], 7, [["agent"]], 0, []])
        );
    }

    #[test]
    fn gaps_mixed_names_and_absent_keys_are_spelled_out() {
        let mut writer = BatchWriter::new(0);
        writer.push(2, Some("\"a\""), Some("null"));
        writer.push(4, None, None);
        writer.push(5, Some("\"a\""), Some("\"x\""));
        writer.push(6, Some("null"), Some("3"));
        assert_eq!(
            parsed(writer),
            json!([
                [null, null, "x", 3],
                [2, 4, 5, 6],
                [["a"], [], [null]],
                [0, 1, 0, 2],
                [1]
            ])
        );
    }

    #[test]
    fn log_lines_keep_null_apart_from_absent_and_skip_what_is_not_a_record() {
        let mut writer = BatchWriter::new(1000);
        writer.push_line(r#"{"id":1,"event":"end","data":null,"timestamp":5}"#);
        writer.push_line(r#"{"id":2,"timestamp":5}"#);
        writer.push_line(r#"{"id":-3,"event":"x"}"#);
        writer.push_line("[1,2]");
        writer.push_line(r#"{"id":3,"event":{"k":[1]},"data":{"deep":{"x":"y"}}}"#);
        assert_eq!(
            parsed(writer),
            json!([[null, null, {"deep": {"x": "y"}}], 1, [["end"], [], [{"k": [1]}]], [0, 1, 2], [1]])
        );
    }

    #[test]
    fn decode_reads_back_what_was_pushed_and_refuses_malformed_text() {
        let mut writer = BatchWriter::new(0);
        writer.push(2, Some("\"a\""), None);
        writer.push(3, None, Some("{\"k\":1}"));
        let sent = |id, event: Option<Value>, data: Option<Value>| Sent { id, event, data };
        assert_eq!(
            decode(&writer.finish()),
            Some(vec![
                sent(2, Some(json!("a")), None),
                sent(3, None, Some(json!({"k": 1})))
            ])
        );
        for bad in [
            "",
            "[]",
            "[[1],1,[],0,[]]",
            "[[1],[],[[1]],0,[]]",
            "[[1],1,[[1]],[5],[]]",
            "[0,[1],1,[[1]],0,[]]",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn id_overflow_is_not_contiguous() {
        let mut writer = BatchWriter::new(0);
        writer.push(u64::MAX, Some("\"a\""), Some("1"));
        writer.push(0, Some("\"a\""), Some("2"));
        let value = parsed(writer);
        assert!(value[1].is_array(), "{value}");
    }
}
