//! The `maxEvents` history of one run, kept off the V8 heap as serialized records.
//!
//! Each record is stored as the exact JSON line that goes to `events.jsonl`
//! (`{"id":…,"event":…,"data":…,"timestamp":…}`), shared with the log writer through an
//! `Arc<str>`, so an emit serializes once and `run.events` is materialized by joining lines.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;

/// How the event name reaches the core.
#[derive(Clone, Copy, Debug)]
pub enum EventName<'a> {
    /// A well-formed JS string, stored as given and escaped here.
    Text(&'a str),
    /// A JSON fragment already produced by `JSON.stringify(event)` in JS, or `None` when that
    /// returned `undefined` (the key is then omitted, as `JSON.stringify(record)` would).
    Json(Option<&'a str>),
}

/// One history record.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: u64,
    pub line: Arc<str>,
}

/// Serializes one record with the key order `id, event, data, timestamp` (LOG-4).
/// `data_json` is `None` when `JSON.stringify(data)` returned `undefined` (key omitted).
pub fn record_line(
    id: u64,
    event: EventName<'_>,
    data_json: Option<&str>,
    timestamp: f64,
) -> String {
    let data_len = data_json.map_or(0, str::len);
    let mut line = String::with_capacity(48 + data_len);
    line.push_str("{\"id\":");
    let _ = write!(line, "{id}");
    match event {
        EventName::Text(text) => {
            line.push_str(",\"event\":");
            push_json_string(&mut line, text);
        }
        EventName::Json(Some(fragment)) => {
            line.push_str(",\"event\":");
            line.push_str(fragment);
        }
        EventName::Json(None) => {}
    }
    if let Some(data) = data_json {
        line.push_str(",\"data\":");
        line.push_str(data);
    }
    line.push_str(",\"timestamp\":");
    push_json_number(&mut line, timestamp);
    line.push('}');
    line
}

/// Appends `text` as a JSON string literal with the escapes `JSON.stringify` uses.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape: Option<&str> = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&text[start..index]);
        match escape {
            Some(sequence) => out.push_str(sequence),
            None => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        start = index + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Appends a JS number the way `JSON.stringify` prints it for the values we store
/// (timestamps): integers without a fraction, non-finite values as `null`.
pub fn push_json_number(out: &mut String, value: f64) {
    if !value.is_finite() {
        out.push_str("null");
    } else if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// The bounded ring of one run's records, oldest first.
#[derive(Debug)]
pub struct History {
    ring: VecDeque<Record>,
    cap: Option<usize>,
    bytes: usize,
}

impl History {
    /// `cap = None` keeps everything (`maxEvents: Infinity`).
    pub fn new(cap: Option<usize>) -> Self {
        Self {
            ring: VecDeque::new(),
            cap,
            bytes: 0,
        }
    }

    /// Appends a record and trims from the front while over capacity (EMT-2 step 4, EMT-4).
    pub fn push(&mut self, record: Record) {
        self.bytes += record.line.len();
        self.ring.push_back(record);
        if let Some(cap) = self.cap {
            while self.ring.len() > cap {
                if let Some(old) = self.ring.pop_front() {
                    self.bytes -= old.line.len();
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Bytes of serialized records currently retained.
    pub fn retained_bytes(&self) -> usize {
        self.bytes
    }

    pub fn oldest_id(&self) -> Option<u64> {
        self.ring.front().map(|r| r.id)
    }

    pub fn last(&self) -> Option<&Record> {
        self.ring.back()
    }

    /// The record with `id`, if it is still buffered (ids are contiguous in the ring).
    pub fn get(&self, id: u64) -> Option<&Record> {
        let oldest = self.oldest_id()?;
        let index = usize::try_from(id.checked_sub(oldest)?).ok()?;
        self.ring.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.ring.iter()
    }

    /// The whole buffer as one JSON array text (what `run.events` parses).
    pub fn to_json_array(&self) -> String {
        join_json(self.ring.iter())
    }
}

/// Joins record lines into a JSON array text.
pub fn join_json<'a>(records: impl Iterator<Item = &'a Record>) -> String {
    let mut out = String::from("[");
    for (index, record) in records.enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&record.line);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64) -> Record {
        Record {
            id,
            line: record_line(id, EventName::Text("e"), Some("1"), 5.0).into(),
        }
    }

    #[test]
    fn log_4_record_key_order_is_id_event_data_timestamp() {
        let line = record_line(
            1,
            EventName::Text("agent"),
            Some(r#"{"type":"text_delta","delta":"hello"}"#),
            1717171717171.0,
        );
        assert_eq!(
            line,
            r#"{"id":1,"event":"agent","data":{"type":"text_delta","delta":"hello"},"timestamp":1717171717171}"#
        );
    }

    #[test]
    fn log_4_undefined_data_and_undefined_event_omit_their_keys() {
        assert_eq!(
            record_line(3, EventName::Text("x"), None, 2.0),
            r#"{"id":3,"event":"x","timestamp":2}"#
        );
        assert_eq!(
            record_line(4, EventName::Json(None), Some("null"), 2.0),
            r#"{"id":4,"data":null,"timestamp":2}"#
        );
        assert_eq!(
            record_line(5, EventName::Json(Some("42")), None, 2.5),
            r#"{"id":5,"event":42,"timestamp":2.5}"#
        );
    }

    #[test]
    fn event_names_are_escaped_like_json_stringify() {
        let line = record_line(1, EventName::Text("a\"b\\c\n\u{1}\u{7f}é"), None, 0.0);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(parsed["event"], "a\"b\\c\n\u{1}\u{7f}é");
        assert!(line.contains(r#""a\"b\\c\n\u0001"#));
    }

    #[test]
    fn emt_4_ring_keeps_the_last_max_events_records() {
        let mut history = History::new(Some(3));
        for id in 1..=5 {
            history.push(rec(id));
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.oldest_id(), Some(3));
        assert_eq!(history.get(4).map(|r| r.id), Some(4));
        assert!(history.get(2).is_none());
        assert!(history.get(6).is_none());
        let parsed: Vec<serde_json::Value> =
            serde_json::from_str(&history.to_json_array()).unwrap_or_default();
        let ids: Vec<u64> = parsed.iter().filter_map(|v| v["id"].as_u64()).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        assert_eq!(history.retained_bytes(), 3 * rec(3).line.len());
    }

    #[test]
    fn unbounded_history_keeps_everything() {
        let mut history = History::new(None);
        for id in 1..=100 {
            history.push(rec(id));
        }
        assert_eq!(history.len(), 100);
        assert_eq!(History::new(None).to_json_array(), "[]");
    }
}
