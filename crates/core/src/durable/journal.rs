//! A run's journal (`events.jsonl`) as hydration reads it: the last id, and the newest records
//! in an unbroken id sequence (what a hydrated run's history holds); and appending to a journal
//! whose writer is gone (the records hydration adds to an interrupted run).

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{self, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

pub use crate::backfill::MAX_RECORD_ID;
use crate::backfill::{line_id, ordered_records};
use crate::files;
use crate::history::{EventName, History};

/// One journal record, borrowed from its line. `event` and `data` keep their JSON text (`None`:
/// the key is absent; a JSON `null` is `Some("null")`).
#[derive(Deserialize)]
struct Line<'a> {
    id: u64,
    #[serde(default, borrow, deserialize_with = "present")]
    event: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "number")]
    timestamp: f64,
}

/// A key that is present, `null` included (`#[serde(default, deserialize_with = "present")]`
/// leaves an absent key `None`). Replay reads log lines with it too.
pub(crate) fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// A timestamp that is not a number reads as 0; one beyond f64's range as JS reads it (an
/// infinity: `JSON.parse` accepts `1e400`).
fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let raw = <&RawValue>::deserialize(deserializer)?;
    Ok(lenient_number(raw))
}

fn lenient_number(raw: &RawValue) -> f64 {
    let text = raw.get();
    // (A JSON number's text is a valid f64 literal; strings, objects and the rest are not.)
    if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        text.parse().unwrap_or(0.0)
    } else {
        0.0
    }
}

/// [`Line`] as `JSON.parse` reads it, for a line the derived reader refuses although IMP-3's
/// reader takes it (a key given twice: the last one counts, as in JS).
fn lenient_line(text: &str) -> Option<Line<'_>> {
    let (id, fields) = crate::backfill::fields_as_js_reads(text)?;
    Some(Line {
        id,
        event: fields.get("event").copied(),
        data: fields.get("data").copied(),
        timestamp: fields
            .get("timestamp")
            .map_or(0.0, |raw| lenient_number(raw)),
    })
}

/// What hydration needs of a journal.
#[derive(Debug, Default, PartialEq)]
pub struct Tail {
    /// The id of the last whole record (0 for an empty or missing journal).
    pub last_id: u64,
    /// The newest whole lines whose ids run without a gap up to `last_id`, at most `cap` of
    /// them (older records, and those before a gap, stay reachable through IMP-3's backfill).
    pub lines: VecDeque<String>,
}

/// A journal longer than this, with a bounded history, is read from its end (only the tail's
/// bytes are read) instead of from its start.
const READ_FROM_END_ABOVE: u64 = 8 << 20;

/// Reads the journal at `path` (whole, well-formed lines with growing ids only, as IMP-3's
/// reader takes them). A missing or unreadable file gives an empty tail, except when the
/// process is short of a resource to open it ([`files::is_transient`]: too many open files,
/// say): that error is returned, since an empty tail would number the run's next records from
/// 1 again. A long journal with a bounded `cap` is read from its end.
pub fn read_tail(path: &Path, cap: Option<usize>) -> io::Result<Tail> {
    if let Some(cap) = cap {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len > READ_FROM_END_ABOVE {
            match read_tail_from_end(path, cap, len) {
                Ok(Some(tail)) => return Ok(tail),
                Ok(None) => {}
                Err(error) if files::is_transient(&error) => return Err(error),
                Err(_) => {}
            }
        }
    }
    read_tail_from_start(path, cap)
}

/// [`read_tail`] for a journal written in id order (one writer): from the last whole line back,
/// while the ids go down by one, at most `cap` lines. `None` as soon as a line breaks that
/// sequence (a gap, a copy, a line out of place): what the tail is then is the forward read's
/// to decide ([`ordered_records`]), so both readers always give the same tail.
fn read_tail_from_end(path: &Path, cap: usize, len: u64) -> io::Result<Option<Tail>> {
    let mut file = files::open_read(path)?;
    let mut tail = Tail::default();
    let mut newest_first: Vec<String> = Vec::new();
    let mut expected: Option<u64> = None;
    let mut in_order = true;
    files::lines_from_end(&mut file, len, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return true;
        };
        let Some(id) = line_id(text) else {
            return true;
        };
        match expected {
            None => tail.last_id = id,
            Some(want) if want == id => {}
            Some(_) => {
                in_order = false;
                return false;
            }
        }
        newest_first.push(text.to_owned());
        expected = id.checked_sub(1).filter(|&next| next > 0);
        newest_first.len() < cap && expected.is_some()
    })?;
    if !in_order {
        return Ok(None);
    }
    newest_first.reverse();
    tail.lines = newest_first.into();
    Ok(Some(tail))
}

fn read_tail_from_start(path: &Path, cap: Option<usize>) -> io::Result<Tail> {
    let mut tail = Tail::default();
    let file = match files::open_read(path) {
        Ok(file) => file,
        Err(error) if files::is_transient(&error) => return Err(error),
        Err(_) => return Ok(tail),
    };
    for (id, text) in ordered_records(BufReader::new(file)) {
        if id != tail.last_id + 1 {
            tail.lines.clear();
        }
        tail.last_id = id;
        tail.lines.push_back(text);
        if cap.is_some_and(|cap| tail.lines.len() > cap) {
            tail.lines.pop_front();
        }
    }
    Ok(tail)
}

/// Puts the tail's records into `history` (ids contiguous, as it requires). Returns the id of
/// the last `'end'` record among them.
pub fn fill_history(history: &mut History, tail: &Tail) -> Option<u64> {
    let mut end = None;
    for text in &tail.lines {
        let Some(line) = serde_json::from_str::<Line<'_>>(text)
            .ok()
            .or_else(|| lenient_line(text))
        else {
            // A line `line_id` accepted always parses here; stop rather than leave a gap.
            break;
        };
        let data = line.data.map(RawValue::get);
        // A string name is stored as the string (re-escaped exactly as JSON.stringify does);
        // any other name, or one that does not decode, as its JSON text.
        let decoded: Option<String> = line
            .event
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
        if decoded.as_deref() == Some("end") {
            end = Some(line.id);
        }
        let name = match (&decoded, line.event) {
            (Some(text), _) => EventName::Text(text),
            (None, raw) => EventName::Json(raw.map(RawValue::get)),
        };
        history.push(line.id, name, data, line.timestamp);
    }
    end
}

/// Appends `lines` (each without its newline) to the journal at `path` in one write, first
/// ending a torn last line (a crash mid-write) so the new lines stay whole. Creates the file.
pub fn append_lines(path: &Path, lines: &[String]) -> io::Result<()> {
    // One descriptor reads the last byte and appends (in append mode a write goes to the end
    // whatever the position).
    let (mut file, len) = files::open_regular_with_len(
        path,
        OpenOptions::new().read(true).append(true).create(true),
    )?;
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 1);
    if files::ends_mid_line(&mut file, len)? {
        out.push(b'\n');
    }
    for line in lines {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    if let Err(error) = file.write_all(&out) {
        // A write cut short (a full disk) is taken back: the journal keeps ending where it did,
        // and no torn record of ours is left for the next writer to glue its lines to. (Where a
        // file in append mode cannot be resized, the next write ends the torn line first.)
        let _ = file.set_len(len);
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempFile;
    /// The backward reader's chunk (`files::lines_from_end`).
    const CHUNK: u64 = 1 << 20;
    use std::fs;

    fn file(name: &str, text: &str) -> TempFile {
        TempFile::with_text(&format!("journal-{name}"), text)
    }

    /// A crash can leave zeros at a journal's end (the file's size written, its data not): the
    /// records before them are the tail, read from the end and from the start alike.
    #[test]
    fn lc_2_zeros_after_the_last_record_are_skipped_by_both_readers() {
        let mut text = String::from(concat!(
            "{\"id\":1,\"event\":\"a\",\"data\":1,\"timestamp\":1}\n",
            "{\"id\":2,\"event\":\"a\",\"data\":2,\"timestamp\":2}\n",
        ));
        let records = text.len();
        text.push_str(&"\0".repeat((READ_FROM_END_ABOVE + 3 * CHUNK) as usize));
        let path = file("zeros.jsonl", &text);
        for cap in [Some(10), None] {
            let tail = read_tail(&path, cap).unwrap();
            assert_eq!(tail.last_id, 2, "cap {cap:?}");
            assert_eq!(tail.lines.len(), 2, "cap {cap:?}");
            assert_eq!(
                tail.lines.iter().map(|l| l.len() + 1).sum::<usize>(),
                records
            );
        }
    }

    #[test]
    fn lc_2_the_tail_is_the_newest_unbroken_run_of_ids_up_to_cap() {
        let path = file(
            "gap.jsonl",
            concat!(
                "{\"id\":1,\"event\":\"a\",\"data\":1,\"timestamp\":1}\n",
                "garbage\n",
                "{\"id\":2,\"event\":\"a\",\"data\":2,\"timestamp\":2}\n",
                "{\"id\":4,\"event\":\"a\",\"data\":4,\"timestamp\":4}\n",
                "{\"id\":3,\"event\":\"a\",\"data\":3,\"timestamp\":3}\n",
                "{\"id\":5,\"event\":\"a\",\"data\":5,\"timestamp\":5}\n",
                "{\"id\":6,\"event\":\"a\",\"data\":6,\"timestamp\":6}\n",
                "{\"id\":7,\"ev"
            ),
        );
        let tail = read_tail(&path, Some(10)).unwrap();
        assert_eq!(tail.last_id, 6);
        let ids: Vec<u64> = tail.lines.iter().map(|l| line_id(l).unwrap()).collect();
        // 4 is out of place (above the 3 after it, which continues 2): the journal's newest
        // records whose ids run without a gap are 5 and 6.
        assert_eq!(ids, vec![5, 6], "the missing 4 cuts the tail");
        assert_eq!(read_tail(&path, Some(2)).unwrap().lines.len(), 2);
        assert_eq!(
            read_tail(&path.with_extension("missing"), None).unwrap(),
            Tail::default()
        );
    }

    #[test]
    fn lc_2_the_history_rebuilt_from_the_tail_gives_back_the_same_lines() {
        let lines = [
            r#"{"id":7,"event":"agent","data":{"type":"text","s":"a\"b"},"timestamp":1717171717171}"#,
            r#"{"id":8,"data":null,"timestamp":2}"#,
            r#"{"id":9,"event":5,"timestamp":3.5}"#,
            r#"{"id":10,"event":"end","data":{"code":0},"timestamp":4}"#,
        ];
        let path = file("same.jsonl", &format!("{}\n", lines.join("\n")));
        let tail = read_tail(&path, None).unwrap();
        let mut history = History::new(None);
        assert_eq!(fill_history(&mut history, &tail), Some(10));
        let back: Vec<String> = history.iter().map(|r| r.line).collect();
        assert_eq!(back, lines);
    }

    #[test]
    fn lc_2_a_long_journal_read_from_its_end_gives_the_same_tail() {
        // Lines of different sizes, garbage, an empty line and a torn last line; above the size
        // where the end is read first.
        let mut text = String::from("garbage\n\n");
        let mut id: u64 = 0;
        while text.len() as u64 <= READ_FROM_END_ABOVE + 3 * CHUNK {
            id += 1;
            let pad = "x".repeat(((id * 37) % 3000) as usize);
            text.push_str(&format!(
                "{{\"id\":{id},\"event\":\"a\",\"data\":\"{pad}\",\"timestamp\":{id}}}\n"
            ));
            if id % 1000 == 0 {
                text.push_str("not a record\n");
            }
        }
        text.push_str(&format!("{{\"id\":{},\"ev", id + 1));
        let path = file("long.jsonl", &text);
        for cap in [1, 2, 999, 1000, 1001, 5000, 100_000] {
            let backwards = read_tail_from_end(&path, cap, text.len() as u64)
                .unwrap()
                .unwrap();
            assert_eq!(
                backwards,
                read_tail_from_start(&path, Some(cap)).unwrap(),
                "cap {cap}"
            );
            assert_eq!(backwards.last_id, id);
        }
        assert_eq!(read_tail(&path, Some(10)).unwrap().lines.len(), 10);
        // A gap ends the tail there: the read from the end leaves it to the forward read.
        let gap = file(
            "long-gap.jsonl",
            &text.replacen(&format!("{{\"id\":{},", id - 5), "{\"id\":0,", 1),
        );
        let len = fs::metadata(&gap).unwrap().len();
        assert_eq!(read_tail_from_end(&gap, 100, len).unwrap(), None);
        let tail = read_tail(&gap, Some(100)).unwrap();
        assert_eq!(tail, read_tail_from_start(&gap, Some(100)).unwrap());
        assert_eq!(tail.lines.len(), 5);
    }

    #[test]
    fn lc_2_one_line_out_of_place_does_not_hide_the_records_after_it() {
        // The line of id 4 replaced by a stray `100`; a copy of an earlier line before the last.
        let mut text = String::new();
        for id in 1..=21_u64 {
            let id = if id == 4 { 100 } else { id };
            text.push_str(&format!("{{\"id\":{id},\"event\":\"a\"}}\n"));
            if id == 20 {
                text.push_str("{\"id\":7,\"event\":\"copy\"}\n");
            }
        }
        let path = file("stray.jsonl", &text);
        let len = text.len() as u64;
        for cap in [5, 100] {
            let tail = read_tail(&path, Some(cap)).unwrap();
            assert_eq!(tail.last_id, 21, "cap {cap}");
            let ids: Vec<u64> = tail.lines.iter().filter_map(|l| line_id(l)).collect();
            let first = if cap == 5 { 17 } else { 5 };
            assert_eq!(ids, (first..=21).collect::<Vec<u64>>(), "cap {cap}");
            // Out of order: the read from the end leaves it to the forward read.
            assert_eq!(
                read_tail_from_end(&path, cap, len).unwrap(),
                None,
                "cap {cap}"
            );
        }
    }

    #[test]
    fn lc_2_ids_no_run_reaches_are_foreign_lines() {
        let text = format!(
            "{{\"id\":1}}\n{{\"id\":2}}\n{{\"id\":{}}}\n{{\"id\":18446744073709551614}}\n",
            MAX_RECORD_ID + 1
        );
        let path = file("huge-ids.jsonl", &text);
        let tail = read_tail(&path, Some(10)).unwrap();
        assert_eq!(tail.last_id, 2);
        assert_eq!(tail.lines.len(), 2);
        assert_eq!(
            read_tail_from_end(&path, 10, text.len() as u64).unwrap(),
            Some(tail)
        );
    }

    #[test]
    fn lc_2_lines_longer_than_many_chunks_are_read_whole_from_the_end() {
        // Garbage without a newline at the start (several chunks), records of which one spans
        // several chunks, and one that ends exactly at a chunk boundary.
        let mut text = "g".repeat((READ_FROM_END_ABOVE + 5 * CHUNK) as usize);
        text.push('\n');
        let big = "y".repeat((3 * CHUNK + 17) as usize);
        text.push_str(&format!("{{\"id\":1,\"data\":\"{big}\"}}\n"));
        text.push_str("{\"id\":2}\n");
        let line = format!("{{\"id\":3,\"data\":\"{}\"}}\n", "z".repeat(CHUNK as usize));
        text.push_str(&line);
        let path = file("long-lines.jsonl", &text);
        for cap in [1, 2, 3, 10] {
            let backwards = read_tail_from_end(&path, cap, text.len() as u64)
                .unwrap()
                .unwrap();
            assert_eq!(
                backwards,
                read_tail_from_start(&path, Some(cap)).unwrap(),
                "cap {cap}"
            );
        }
        let whole = read_tail_from_end(&path, 10, text.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!(whole.last_id, 3);
        assert_eq!(whole.lines.len(), 3);
        assert_eq!(whole.lines[0], format!("{{\"id\":1,\"data\":\"{big}\"}}"));
    }

    #[test]
    fn lc_2_appending_ends_a_torn_last_line_first() {
        let path = file("torn.jsonl", "{\"id\":1}\n{\"id\":2,\"ev");
        append_lines(&path, &["{\"id\":3}".to_owned(), "{\"id\":4}".to_owned()]).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"id\":1}\n{\"id\":2,\"ev\n{\"id\":3}\n{\"id\":4}\n"
        );
        assert_eq!(read_tail(&path, None).unwrap().last_id, 4);
        let fresh = TempFile::at(path.with_extension("fresh"));
        append_lines(&fresh, &["{\"id\":1}".to_owned()]).unwrap();
        assert_eq!(fs::read_to_string(&fresh).unwrap(), "{\"id\":1}\n");
    }
}
