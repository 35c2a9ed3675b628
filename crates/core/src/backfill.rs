//! IMP-3: reading back, from a run's `events.jsonl`, the records that have already left the
//! in-memory history, so a client reattaching with an old cursor gets a transcript with no hole.
//!
//! The log is append-only and written in id order by one writer, so a forward scan that keeps
//! the first well-formed line of each id in `(after, before)` yields them in order, once each.
//! Unreadable or torn lines are skipped (the stream then continues as without a log).

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

/// The cursor rule of IMP-3: with a log, NaN, ±Infinity and negative cursors count as 0.
pub fn normalize_cursor(cursor: f64) -> f64 {
    if cursor.is_finite() && cursor > 0.0 {
        cursor
    } else {
        0.0
    }
}

/// Lines of `path` whose record id is strictly between `after` and `before`, in id order,
/// each id at most once. A missing or unreadable file gives nothing.
pub fn read_range(path: &Path, after: f64, before: u64) -> Vec<String> {
    let Ok(file) = crate::files::open_read(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut last: Option<u64> = None;
    for line in BufReader::new(file).split(b'\n') {
        let Ok(bytes) = line else {
            break;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        // A record is an object (serde would also read `[id]` as this struct).
        if !text.trim_start().starts_with('{') {
            continue;
        }
        // Parsing the whole line (unknown keys are still parsed, then ignored) also rejects a
        // torn line that merely starts like a record.
        let Ok(IdOnly { id }) = serde_json::from_str::<IdOnly>(&text) else {
            continue;
        };
        if id >= before {
            break;
        }
        if (id as f64) <= after || last.is_some_and(|l| id <= l) {
            continue;
        }
        last = Some(id);
        out.push(text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "chat-run-backfill-{name}-{}.jsonl",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn imp_3_cursor_rule_treats_nan_infinity_and_negatives_as_zero() {
        assert_eq!(normalize_cursor(f64::NAN), 0.0);
        assert_eq!(normalize_cursor(f64::INFINITY), 0.0);
        assert_eq!(normalize_cursor(f64::NEG_INFINITY), 0.0);
        assert_eq!(normalize_cursor(-4.0), 0.0);
        assert_eq!(normalize_cursor(2.5), 2.5);
    }

    #[test]
    fn imp_3_reads_the_open_range_in_order_and_skips_bad_lines() {
        let path = write(
            "range",
            "{\"id\":1,\"event\":\"a\"}\n{\"id\":2,\"ev\ngarbage\n[2]\n{\"id\":3,\"event\":\"c\"}\n{\"id\":3,\"event\":\"dup\"}\n{\"id\":4}\n{\"id\":5}\n",
        );
        let lines = read_range(&path, 0.0, 5);
        assert_eq!(
            lines,
            vec![
                "{\"id\":1,\"event\":\"a\"}",
                "{\"id\":3,\"event\":\"c\"}",
                "{\"id\":4}"
            ]
        );
        assert_eq!(read_range(&path, 3.0, 5), vec!["{\"id\":4}"]);
        assert_eq!(
            read_range(&path, 1.5, 4),
            vec!["{\"id\":3,\"event\":\"c\"}"]
        );
        let _ = std::fs::remove_file(&path);
        assert!(read_range(&path, 0.0, 10).is_empty());
    }
}
