//! IMP-3: reading back, from a run's `events.jsonl`, the records that have already left the
//! in-memory history, so a client reattaching with an old cursor gets a transcript with no hole.
//!
//! The log is append-only and written in id order by one writer, so a forward scan that keeps
//! the first well-formed line of each id in `(after, before)` yields them in order, once each.
//! Unreadable or torn lines are skipped (the stream then continues as without a log), and so are
//! lines no writer of this run made ([`ordered_records`]: a foreign id, or one line out of place),
//! so that one such line never hides the records after it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufReader;
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

/// A journal longer than this is read from its end first (see [`read_range`]).
const READ_FROM_END_ABOVE: u64 = 1 << 20;

/// Lines of `path` whose record id is strictly between `after` and `before`, in id order,
/// each id at most once. A missing or unreadable file gives nothing.
///
/// A client reattaching just past the in-memory history asks for the last few records of a
/// journal that may hold hundreds of thousands: a long journal is read from its end, back to
/// the first id at or below `after`, so the cost is the records asked for (plus those after
/// `before`), not the journal's size. That reading holds only for a journal whose ids grow
/// line by line, as one writer writes them; on any line out of that order it gives up and the
/// journal is read from its start, the reference.
pub fn read_range(path: &Path, after: f64, before: u64) -> Vec<String> {
    if let Ok((mut file, len)) =
        crate::files::open_regular_with_len(path, std::fs::OpenOptions::new().read(true))
    {
        if len > READ_FROM_END_ABOVE {
            if let Some(lines) = read_range_from_end(&mut file, len, after, before) {
                return lines;
            }
        }
    }
    read_range_from_start(path, after, before)
}

/// The largest id a journal line of a run can have: ids count from 1, one per record, so no run
/// comes near 2^52; a larger one is a foreign or crafted line. (The records a run gets next must
/// stay integers JS holds exactly, below 2^53.)
pub const MAX_RECORD_ID: u64 = 1 << 52;

/// The id of a journal line that is a record of a run: [`record_id`] from 1 to
/// [`MAX_RECORD_ID`] (a larger one is a foreign or crafted line, SPEC LC-2).
pub(crate) fn line_id(text: &str) -> Option<u64> {
    record_id(text).filter(|&id| (1..=MAX_RECORD_ID).contains(&id))
}

/// A record line's id and its keys as `JSON.parse` reads them (a key given twice: the last one
/// counts), for a line [`line_id`] takes but a reader derived for its keys refuses.
pub(crate) fn fields_as_js_reads(
    text: &str,
) -> Option<(u64, HashMap<Cow<'_, str>, &serde_json::value::RawValue>)> {
    let fields = serde_json::from_str(text).ok()?;
    Some((line_id(text)?, fields))
}

/// The records of a journal read forward, as both readers take them (IMP-3 here, LC-2's tail in
/// `durable::journal`): each whole line with a [`line_id`], in file order, its id above every id
/// given before (a copy of an earlier line, or a line of another writer, is skipped). One line
/// out of place is skipped too: a line whose id is above the next line's while that next id
/// still comes after the last one given (a stray `100` between `3` and `5`), so that it does not
/// make every record after it look like a copy. A line only the journal's end follows is taken
/// as it is (a jump in ids is a gap: records whose data could not be written leave one, LOG-6).
pub(crate) fn ordered_records<R: std::io::BufRead>(
    reader: R,
) -> impl Iterator<Item = (u64, String)> {
    let mut records = crate::files::record_lines(reader)
        .filter_map(|bytes| {
            let text = String::from_utf8(bytes).ok()?;
            Some((line_id(&text)?, text))
        })
        .peekable();
    let mut last: Option<u64> = None;
    std::iter::from_fn(move || loop {
        let (id, text) = records.next()?;
        if last.is_some_and(|last| id <= last) {
            continue;
        }
        if let Some(&(next, _)) = records.peek() {
            if next < id && last.is_none_or(|last| next > last) {
                continue;
            }
        }
        last = Some(id);
        return Some((id, text));
    })
}

/// [`read_range`] from the journal's end; `None` when its ids do not grow line by line (or it
/// cannot be read), for the caller to read it from the start instead.
fn read_range_from_end(
    file: &mut std::fs::File,
    len: u64,
    after: f64,
    before: u64,
) -> Option<Vec<String>> {
    let mut newest_first: Vec<String> = Vec::new();
    let mut previous: Option<u64> = None;
    let mut ordered = true;
    crate::files::lines_from_end(file, len, |bytes| {
        let Some((id, text)) = std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| Some((line_id(text)?, text)))
        else {
            return true;
        };
        if previous.is_some_and(|p| id >= p) {
            ordered = false;
            return false;
        }
        previous = Some(id);
        if (id as f64) <= after {
            return false;
        }
        if id < before {
            newest_first.push(text.to_owned());
        }
        true
    })
    .ok()?;
    if !ordered {
        return None;
    }
    newest_first.reverse();
    Some(newest_first)
}

/// The id of a journal line that is a whole record: a JSON object with a numeric `id` (a torn or
/// foreign line has none). The whole line is parsed (unknown keys too, then ignored), which also
/// rejects a torn line that merely starts like a record; and it must be an object, since serde
/// would also read `[id]` as this struct.
pub(crate) fn record_id(text: &str) -> Option<u64> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<IdOnly>(text)
        .ok()
        .map(|line| line.id)
}

fn read_range_from_start(path: &Path, after: f64, before: u64) -> Vec<String> {
    let Ok(file) = crate::files::open_read(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (id, text) in ordered_records(BufReader::new(file)) {
        if id >= before {
            break;
        }
        if (id as f64) > after {
            out.push(text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempFile;

    fn write(name: &str, text: &str) -> TempFile {
        TempFile::with_text(&format!("backfill-{name}"), text)
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
        // A journal that is gone reads as nothing.
        let _ = std::fs::remove_file(&path);
        assert!(read_range(&path, 0.0, 10).is_empty());
    }

    #[test]
    fn imp_3_a_foreign_or_stray_line_hides_no_record_after_it() {
        // A foreign id (above 2^52), a stray `100` between 3 and 4, an id 0 and a copy of an
        // earlier line: each skipped, every record after them read.
        let huge = MAX_RECORD_ID + 1;
        let path = write(
            "stray",
            &format!(
                "{{\"id\":1}}\n{{\"id\":2}}\n{{\"id\":{huge}}}\n{{\"id\":3}}\n{{\"id\":100}}\n{{\"id\":4}}\n{{\"id\":5}}\n{{\"id\":0}}\n{{\"id\":2}}\n{{\"id\":6}}\n"
            ),
        );
        let ids = |lines: Vec<String>| -> Vec<u64> {
            lines.iter().filter_map(|line| record_id(line)).collect()
        };
        assert_eq!(ids(read_range(&path, 0.0, 7)), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(ids(read_range(&path, 2.0, 6)), vec![3, 4, 5]);
        assert_eq!(
            ids(read_range(&path, 0.0, u64::MAX)),
            vec![1, 2, 3, 4, 5, 6]
        );
        // A jump that the journal's end follows is a gap, not a stray: kept.
        let path = write("jump", "{\"id\":1}\n{\"id\":2}\n{\"id\":9}\n");
        assert_eq!(ids(read_range(&path, 0.0, u64::MAX)), vec![1, 2, 9]);
    }

    #[test]
    fn imp_3_a_long_journal_read_from_its_end_gives_what_the_forward_read_gives() {
        let mut text = String::new();
        let mut id: u64 = 0;
        while text.len() as u64 <= 3 * READ_FROM_END_ABOVE {
            id += 1;
            let pad = "x".repeat(((id * 53) % 900) as usize);
            text.push_str(&format!("{{\"id\":{id},\"data\":\"{pad}\"}}\n"));
            if id % 700 == 0 {
                text.push_str("torn {\"id\":\n");
            }
        }
        text.push_str("{\"id\":");
        let path = write("long", &text);
        let last = id;
        for (after, before) in [
            (0.0, 3),
            (0.0, last + 1),
            ((last - 20) as f64, last - 5),
            ((last - 20) as f64, u64::MAX),
            (last as f64, u64::MAX),
            (10.5, 200),
        ] {
            let mut file = std::fs::File::open(&path).unwrap();
            let from_end = read_range_from_end(&mut file, text.len() as u64, after, before);
            assert_eq!(
                from_end,
                Some(read_range_from_start(&path, after, before)),
                "({after}, {before})"
            );
            assert_eq!(
                read_range(&path, after, before),
                read_range_from_start(&path, after, before)
            );
        }
        // Ids out of order within what is read: the forward read decides.
        let shuffled = format!("{text}\n{{\"id\":{}}}\n{{\"id\":{}}}\n", last - 5, last + 1);
        let path = write("shuffled", &shuffled);
        let after = (last - 10) as f64;
        let mut file = std::fs::File::open(&path).unwrap();
        let len = shuffled.len() as u64;
        assert_eq!(read_range_from_end(&mut file, len, after, u64::MAX), None);
        let lines = read_range(&path, after, u64::MAX);
        assert_eq!(lines, read_range_from_start(&path, after, u64::MAX));
        assert_eq!(lines.len(), 11);
    }
}
