//! The JSONL line of a record (LOG-4): `{"id":…,"event":…,"data":…,"timestamp":…}`, exactly as
//! `JSON.stringify(record)` writes it, built from the record's parts.

use std::fmt::Write as _;

use super::EventName;

/// One history record, as its JSON line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub line: String,
}

/// Serializes one record with the key order `id, event, data, timestamp` (LOG-4).
/// `data_json` is `None` when `JSON.stringify(data)` returned `undefined` (key omitted).
pub fn record_line(
    id: u64,
    event: EventName<'_>,
    data_json: Option<&str>,
    timestamp: f64,
) -> String {
    let mut line = String::with_capacity(48 + data_json.map_or(0, str::len));
    match event {
        EventName::Text(text) => {
            let mut fragment = String::with_capacity(text.len() + 2);
            push_json_string(&mut fragment, text);
            write_line(&mut line, id, Some(&fragment), data_json, timestamp);
        }
        EventName::Json(fragment) => write_line(&mut line, id, fragment, data_json, timestamp),
    }
    line
}

/// Writes one record line (no newline) into `out`.
pub fn write_line(
    out: &mut String,
    id: u64,
    event: Option<&str>,
    data: Option<&str>,
    timestamp: f64,
) {
    out.push_str("{\"id\":");
    let _ = write!(out, "{id}");
    if let Some(fragment) = event {
        out.push_str(",\"event\":");
        out.push_str(fragment);
    }
    if let Some(data) = data {
        out.push_str(",\"data\":");
        out.push_str(data);
    }
    out.push_str(",\"timestamp\":");
    push_json_number(out, timestamp);
    out.push('}');
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

/// `value` as an integer when it is a whole number of magnitude below 2^53 (what JSON prints
/// without a fraction); a cast and a compare, cheaper than `fract()` (a libm call on baseline
/// x86-64).
pub(super) fn safe_whole(value: f64) -> Option<i64> {
    if value.abs() < 9_007_199_254_740_992.0 {
        let whole = value as i64;
        (whole as f64 == value).then_some(whole)
    } else {
        None
    }
}

/// Appends a JS number the way `JSON.stringify` prints it for the values we store
/// (timestamps): integers without a fraction, non-finite values as `null`.
pub fn push_json_number(out: &mut String, value: f64) {
    if !value.is_finite() {
        out.push_str("null");
    } else if let Some(whole) = safe_whole(value) {
        let _ = write!(out, "{whole}");
    } else {
        let _ = write!(out, "{value}");
    }
}
