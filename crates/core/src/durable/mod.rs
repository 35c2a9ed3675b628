//! Runs that outlive their process (SPEC LC-1, LC-2).
//!
//! With logging on, every run has `<runsLogDir>/<runId>/state.json` beside its journal
//! (`events.jsonl`): one JSON object in the upstream daemon's format (schema version 1, its
//! field names), so a daemon can switch between this package and the upstream module over the
//! same directory without losing a run. The file is written synchronously, in the calling thread,
//! at the lifecycle points LC-1 lists (never per ordinary emit), atomically (a temp file, then
//! `rename`), owner-only.
//!
//! A new service reads no run into memory ([`index`]): it scans the directory once for the two
//! indexes `list({ projectId })` and `createOrReuse` need, and hydrates a run ([`hydrate`]) only
//! when `get`, `list({ projectId })` or `createOrReuse` asks for it. A file that says its run
//! was still active is an interrupted run: hydration marks it failed with
//! [`INTERRUPTED_CODE`], appends an `'error'` and an `'end'` record to its journal and
//! rewrites the file.
//!
//! - [`state`]: the file's typed form, the host-owned values ([`HostFields`]), writing it;
//! - [`journal`]: reading a journal's tail back and appending to a closed journal;
//! - [`index`]: the scan at construction and the disk indexes;
//! - [`hydrate`]: loading one run (and marking it interrupted);
//! - [`legacy`]: the `run.json` this package wrote before, read for migration only.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub mod hydrate;
pub mod index;
pub mod journal;
pub mod legacy;
pub mod state;

pub use hydrate::HydrationStats;
pub use index::DiskIndex;
pub use legacy::{read_log_state, LogState, RunIds, RunSnapshot, SnapshotMeta, SNAPSHOT_FILE};
pub use state::{HostFields, StateFile, SCHEMA_VERSION, STATE_FILE};

/// `errorCode` of a run whose file said it was active when a service hydrated it (LC-2).
pub const INTERRUPTED_CODE: &str = "DAEMON_RESTARTED";
/// `error` of such a run.
pub const INTERRUPTED_MESSAGE: &str = "Run interrupted because the daemon restarted.";
/// `terminalTrigger` and `terminalRecoveryReason` of such a run.
pub const DAEMON_RESTART: &str = "daemon_restart";

/// LC-2: the files of `runsLogDir` could not be read because the process was short of a
/// resource ([`crate::files::is_transient`]: too many open files, say). Nothing was judged from
/// them: the run is neither counted as skipped nor forgotten, and the next lookup reads again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The file or directory that could not be read.
    pub path: std::path::PathBuf,
    /// The OS's error.
    pub message: String,
}

impl Unreadable {
    pub fn new(path: &std::path::Path, error: &std::io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            message: error.to_string(),
        }
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not read {}: {}; the runs under runsLogDir are not all known until it can be read (the next lookup tries again)",
            self.path.display(),
            self.message
        )
    }
}

/// LC-2: one of a run's small files (`state.json`, the previous version's `run.json`): its
/// text, `Ok(None)` when it does not exist, `Err(None)` when it cannot be such a file
/// (unreadable, too large, not UTF-8, not a regular file), `Err(Some(_))` when it could not be
/// read for now ([`crate::files::is_transient`]: nothing may be judged from it).
pub(crate) fn read_run_file(path: &std::path::Path) -> Result<Option<String>, Option<Unreadable>> {
    match crate::files::read_to_string(path, state::MAX_STATE_FILE_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) if crate::files::is_transient(&error) => {
            Err(Some(Unreadable::new(path, &error)))
        }
        Err(_) => Err(None),
    }
}

/// LC-2: `id` has the shape of a run id as `create` makes them (a hyphenated UUID,
/// `8-4-4-4-12` hex digits). Only such an id ever becomes a path: `'../../etc'`, `/`, `\`, NUL
/// or `..` never reach the filesystem.
pub fn is_run_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, &byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// Reads a field without ever failing the whole file: `null` or a value of the wrong type
/// gives the field's default (as a missing field does, through `#[serde(default)]`).
pub(crate) fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = Value::deserialize(deserializer)?;
    if value.is_null() {
        return Ok(T::default());
    }
    Ok(T::deserialize(value).unwrap_or_default())
}

/// A JSON object as a state file, an old `run.json` or the host's text holds it (LC-1, LC-2),
/// read without losing what JSON's producers write and `serde_json` would refuse:
///
/// - a lone surrogate escape (`"\\ud83d"`, which `JSON.stringify` writes for a string that is
///   not well-formed UTF-16) reads as U+FFFD, as the core holds every string in UTF-8;
/// - a value nested deeper than `serde_json`'s limit (128) loses only its own field; every
///   other field of the object is read.
///
/// `None` when the text is not a JSON object.
pub(crate) fn parse_object(text: &str) -> Option<Map<String, Value>> {
    let text = well_formed_escapes(text);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Some(map),
        Ok(_) => None,
        // The top level again, each field's value as raw text (read without a depth limit);
        // then each field on its own. Only a syntax error anywhere fails the whole.
        Err(_) => {
            let Fields(fields) = serde_json::from_str(&text).ok()?;
            Some(
                fields
                    .into_iter()
                    .filter_map(|(key, raw)| Some((key, serde_json::from_str(raw.get()).ok()?)))
                    .collect(),
            )
        }
    }
}

/// A JSON object's fields in order, each value unparsed.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// `text` with every `\\uXXXX` escape of a lone surrogate (one not part of a high-low pair)
/// replaced by `\\ufffd`, so that `serde_json` reads it (as U+FFFD) instead of failing the
/// whole text. Outside a JSON string a backslash makes the text invalid anyway.
fn well_formed_escapes(text: &str) -> Cow<'_, str> {
    const HIGH: std::ops::Range<u32> = 0xD800..0xDC00;
    const LOW: std::ops::Range<u32> = 0xDC00..0xE000;
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Option<u32> {
        if bytes.get(at) != Some(&b'\\') || bytes.get(at + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
        u32::from_str_radix(hex, 16).ok()
    };
    let mut fixed: Option<Vec<u8>> = None;
    let mut at = 0;
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        at += offset;
        let Some(code) = unit(at) else {
            // Any other escape is two bytes (a backslash and the escaped byte).
            at += 2;
            continue;
        };
        let lone = if HIGH.contains(&code) {
            if unit(at + 6).is_some_and(|next| LOW.contains(&next)) {
                at += 12;
                continue;
            }
            true
        } else {
            LOW.contains(&code)
        };
        if lone {
            fixed.get_or_insert_with(|| bytes.to_vec())[at + 2..at + 6].copy_from_slice(b"fffd");
        }
        at += 6;
    }
    match fixed {
        // Four ASCII hex digits replaced four others: still UTF-8.
        Some(bytes) => String::from_utf8(bytes).map_or(Cow::Borrowed(text), Cow::Owned),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_1_lone_surrogate_escapes_read_as_replacement_characters() {
        let text =
            r#"{"a":"x\ud83d","b":"\udc00y","c":"\ud83d\ude00","d":"\\ud800","e":"\ud800\ud800"}"#;
        let map = parse_object(text).unwrap();
        assert_eq!(map["a"], "x\u{fffd}");
        assert_eq!(map["b"], "\u{fffd}y");
        assert_eq!(map["c"], "\u{1f600}");
        assert_eq!(map["d"], "\\ud800", "an escaped backslash is not an escape");
        assert_eq!(map["e"], "\u{fffd}\u{fffd}");
        assert!(matches!(
            well_formed_escapes(r#"{"ok":"\u00e9"}"#),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn lc_1_a_text_cut_anywhere_in_an_escape_never_panics() {
        let whole = r#"{"a":"x\ud83d\ude00\n\\","b":"\udc00"}"#;
        for end in 0..=whole.len() {
            let cut = &whole[..end];
            let _ = well_formed_escapes(cut);
            let _ = parse_object(cut);
        }
        for text in [
            "\\",
            "{\"a\":\"\\",
            "\\u",
            "\\ud8",
            "\\ud800\\",
            "\\ud800\\u",
        ] {
            let _ = parse_object(text);
        }
        assert!(parse_object(whole).is_some());
    }

    #[test]
    fn lc_1_a_value_nested_too_deep_loses_only_its_own_field() {
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let text = format!(r#"{{"before":1,"deep":{deep},"after":"kept"}}"#);
        let map = parse_object(&text).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["before", "after"]);
        assert_eq!(map["after"], "kept");
        assert_eq!(parse_object(&format!("[{deep}]")), None);
        assert_eq!(
            parse_object(r#"{"a":1,"b":"#),
            None,
            "a syntax error fails the whole"
        );
        assert_eq!(parse_object("[1]"), None);
    }

    #[test]
    fn lc_2_only_uuid_shaped_ids_are_run_ids() {
        assert!(is_run_id("2cc18791-ff17-4bc7-a6cf-1248bd434fd3"));
        assert!(is_run_id("2CC18791-FF17-4BC7-A6CF-1248BD434FD3"));
        for hostile in [
            "",
            "../../etc",
            "/",
            "\\",
            "..",
            "a\0b",
            "2cc18791-ff17-4bc7-a6cf-1248bd434fd",
            "2cc18791-ff17-4bc7-a6cf-1248bd434fd3/",
            "2cc18791/ff17-4bc7-a6cf-1248bd434fd3",
            "2cc18791-ff17-4bc7-a6cf-1248bd434f..",
            "{2cc18791-ff17-4bc7-a6cf-1248bd434f}",
            "urn:uuid:2cc18791-ff17-4bc7-a6cf-12",
            "2cc18791ff174bc7a6cf1248bd434fd3",
        ] {
            assert!(!is_run_id(hostile), "{hostile:?}");
        }
    }
}
