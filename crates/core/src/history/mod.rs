//! The `maxEvents` history of one run, kept off the V8 heap in compact form.
//!
//! A record is kept as its parts (the event name interned per run, the `JSON.stringify(data)`
//! text, the timestamp; the id is implicit, ids being contiguous). The newest records sit in an
//! uncompressed tail; every [`BLOCK_LEN`] records the tail is sealed into an LZ4-compressed
//! block. Lines (`{"id":…,"event":…,"data":…,"timestamp":…}`, exactly what `events.jsonl`
//! holds) are rebuilt on read, for `run.events` and `stream()` replay. Trimming to `maxEvents`
//! drops whole blocks once every record in them is out of range.

mod line;

use line::safe_whole;
pub use line::{push_json_number, push_json_string, record_line, write_line, Record};

use std::collections::VecDeque;
use std::sync::Arc;

/// Records per compressed block.
pub const BLOCK_LEN: usize = 64;

/// How the event name reaches the core.
#[derive(Clone, Copy, Debug)]
pub enum EventName<'a> {
    /// A well-formed JS string, stored as given and escaped here.
    Text(&'a str),
    /// A JSON fragment already produced by `JSON.stringify(event)` in JS, or `None` when that
    /// returned `undefined` (the key is then omitted, as `JSON.stringify(record)` would).
    Json(Option<&'a str>),
}

/// One retained record as stored: its id, interned event name, timestamp and data JSON
/// (borrowed from the tail or from a block decoded for the visit).
#[derive(Clone, Copy, Debug)]
pub struct Part<'a> {
    pub id: u64,
    event: u32,
    pub timestamp: f64,
    pub data: Option<&'a str>,
}

/// What `push` stored, for the log writer to format the same line off the JS thread.
#[derive(Clone, Copy, Debug)]
pub struct Pushed {
    /// Length of the record's line.
    pub line_len: u32,
    /// The record's interned event name (see [`History::name_fragment`]).
    pub event: u32,
}

/// An interned event name: the raw JS string (for a `Text` name) and the JSON fragment the line
/// carries (`None` = the `event` key is omitted).
#[derive(Debug)]
struct Name {
    raw: Option<Box<str>>,
    fragment: Option<Arc<str>>,
}

/// One record of the uncompressed tail; its data JSON, if any, follows the previous records'
/// in the history's `tail_text`.
#[derive(Debug)]
struct Hot {
    timestamp: f64,
    event: u32,
    /// Byte length of the data JSON, or [`NO_DATA`] (the `data` key is omitted). Records come
    /// from JS strings (at most 2^29 UTF-16 units, so under 2^31 UTF-8 bytes): a length always
    /// fits.
    data_len: u32,
}

impl Hot {
    fn data_bytes(&self) -> usize {
        if self.data_len == NO_DATA {
            0
        } else {
            self.data_len as usize
        }
    }
}

/// A sealed, compressed run of up to [`BLOCK_LEN`] records.
#[derive(Debug)]
struct Block {
    first_id: u64,
    len: u32,
    /// The uncompressed size (u32 LE), then the LZ4 block of: the headers' length (u32 LE); per
    /// record a header: `varint event`, the timestamp as [`put_timestamp`] writes it, then
    /// `varint 0` for no data, or `varint (data length + 1)` and `varint prefix`, the bytes its
    /// data JSON shares with the previous record's that has one; then, back to back, the rest
    /// of each data JSON after that prefix. Agent events of one kind start alike (`{"type":
    /// "text_delta","delta":"`), so the prefix is where much of a record goes; the headers come
    /// first so that the texts sit together for LZ4.
    packed: Box<[u8]>,
}

const NO_DATA: u32 = u32::MAX;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(input: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *input.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Timestamps are mostly whole milliseconds that grow slowly: such a timestamp is written as
/// the zigzag of its difference from the previous whole one, shifted left by one (`prev` is the
/// last whole timestamp, 0 at the start of a block); any other value as `1` and its 8 bytes.
fn put_timestamp(out: &mut Vec<u8>, timestamp: f64, prev: &mut i64) {
    if let Some(whole) = safe_whole(timestamp) {
        let delta = whole.wrapping_sub(*prev);
        let zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
        put_varint(out, zigzag << 1);
        *prev = whole;
    } else {
        put_varint(out, 1);
        out.extend_from_slice(&timestamp.to_le_bytes());
    }
}

fn get_timestamp(input: &[u8], at: &mut usize, prev: &mut i64) -> Option<f64> {
    let tag = get_varint(input, at)?;
    if tag & 1 == 1 {
        let bytes = input.get(*at..at.checked_add(8)?)?;
        *at += 8;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(bytes);
        return Some(f64::from_le_bytes(raw));
    }
    let zigzag = tag >> 1;
    let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
    *prev = prev.wrapping_add(delta);
    Some(*prev as f64)
}

/// The length of the common prefix of `a` and `b`, in bytes. Eight bytes at a time (records
/// of one kind share tens of bytes, and a byte loop over them was half of sealing a block):
/// the first differing byte of two words is where their XOR's lowest set bit is.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut same = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = word(x) ^ word(y);
        if diff != 0 {
            return same + (diff.trailing_zeros() / 8) as usize;
        }
        same += 8;
    }
    same + a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Eight bytes (a chunk of `chunks_exact(8)`) as a little-endian word.
fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// The largest scratch buffer kept between seals (a block of ordinary events needs a few KiB).
const SEAL_SCRATCH_KEPT: usize = 1 << 20;

/// Scratch buffers for sealing, reused across seals so that sealing allocates only the
/// block's final, exactly sized buffer.
#[derive(Default)]
struct SealScratch {
    raw: Vec<u8>,
    suffixes: Vec<u8>,
    compressed: Vec<u8>,
}

thread_local! {
    static SEAL_SCRATCH: std::cell::RefCell<SealScratch> =
        std::cell::RefCell::new(SealScratch::default());
}

impl Block {
    /// Seals `records`, whose data JSON texts are `text` back to back.
    fn seal(first_id: u64, records: &VecDeque<Hot>, text: &str) -> Self {
        SEAL_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let SealScratch {
                raw,
                suffixes,
                compressed,
            } = &mut *scratch;
            raw.clear();
            suffixes.clear();
            raw.extend_from_slice(&[0; 4]);
            let text = text.as_bytes();
            let mut prev_stamp = 0i64;
            let mut prev_data: &[u8] = &[];
            let mut at = 0usize;
            for record in records {
                put_varint(raw, u64::from(record.event));
                put_timestamp(raw, record.timestamp, &mut prev_stamp);
                if record.data_len == NO_DATA {
                    put_varint(raw, 0);
                    continue;
                }
                let end = (at + record.data_len as usize).min(text.len());
                let data = &text[at..end];
                at = end;
                let prefix = common_prefix(prev_data, data);
                put_varint(raw, data.len() as u64 + 1);
                put_varint(raw, prefix as u64);
                suffixes.extend_from_slice(&data[prefix..]);
                prev_data = data;
            }
            let headers = u32::try_from(raw.len() - 4).unwrap_or(u32::MAX);
            raw[..4].copy_from_slice(&headers.to_le_bytes());
            raw.extend_from_slice(suffixes);
            compressed.clear();
            compressed.resize(4 + lz4_flex::block::get_maximum_output_size(raw.len()), 0);
            let size = u32::try_from(raw.len()).unwrap_or(u32::MAX);
            compressed[..4].copy_from_slice(&size.to_le_bytes());
            // The output was sized by the codec's own bound, so compression cannot run out of
            // room; were it to fail anyway, the block would read back as empty (its records
            // lost from memory, still in the log) rather than panic.
            let written = lz4_flex::block::compress_into(raw, &mut compressed[4..]).unwrap_or(0);
            let block = Self {
                first_id,
                len: records.len() as u32,
                packed: Box::from(&compressed[..4 + written]),
            };
            // A block of very large events grew the buffers: they are not kept at that size.
            for buffer in [raw, suffixes, compressed] {
                if buffer.capacity() > SEAL_SCRATCH_KEPT {
                    *buffer = Vec::new();
                }
            }
            block
        })
    }

    fn len(&self) -> usize {
        self.len as usize
    }

    /// Calls `f` with the block's records from index `skip` on, at most `limit` of them;
    /// returns how many it visited. Decoding stops at the first corrupt byte (only a bug
    /// could cause one).
    fn visit(&self, skip: usize, limit: usize, f: &mut impl FnMut(Part<'_>)) -> usize {
        let Some((size, body)) = self.packed.split_first_chunk::<4>() else {
            return 0;
        };
        let Ok(raw) = lz4_flex::block::decompress(body, u32::from_le_bytes(*size) as usize) else {
            return 0;
        };
        let Some((headers, _)) = raw.split_first_chunk::<4>() else {
            return 0;
        };
        let mut at = 4usize;
        let mut data_at = 4 + u32::from_le_bytes(*headers) as usize;
        let mut prev_stamp = 0i64;
        // The last data JSON decoded (each one is stored as its common prefix with it and the
        // rest), and the buffer the next one is built in.
        let mut prev_data: Vec<u8> = Vec::new();
        let mut next_data: Vec<u8> = Vec::new();
        let mut visited = 0;
        for i in 0..self.len() {
            if visited == limit {
                break;
            }
            let Some(event) = get_varint(&raw, &mut at).and_then(|v| u32::try_from(v).ok()) else {
                break;
            };
            let Some(timestamp) = get_timestamp(&raw, &mut at, &mut prev_stamp) else {
                break;
            };
            let Some(len) = get_varint(&raw, &mut at) else {
                break;
            };
            let data = if len == 0 {
                None
            } else {
                let len = (len - 1) as usize;
                let Some(prefix) = get_varint(&raw, &mut at).map(|p| p as usize) else {
                    break;
                };
                if prefix > len || prefix > prev_data.len() {
                    break;
                }
                let end = data_at.saturating_add(len - prefix);
                let Some(suffix) = raw.get(data_at..end) else {
                    break;
                };
                data_at = end;
                next_data.clear();
                next_data.extend_from_slice(&prev_data[..prefix]);
                next_data.extend_from_slice(suffix);
                std::mem::swap(&mut prev_data, &mut next_data);
                if i < skip {
                    // Before the cursor: rebuilt (the next records may share its prefix), not
                    // checked.
                    continue;
                }
                let Ok(text) = std::str::from_utf8(&prev_data) else {
                    break;
                };
                Some(text)
            };
            if i >= skip {
                f(Part {
                    id: self.first_id + i as u64,
                    event,
                    timestamp,
                    data,
                });
                visited += 1;
            }
        }
        visited
    }
}

/// The bounded ring of one run's records, oldest first.
#[derive(Debug)]
pub struct History {
    cap: Option<usize>,
    /// Id of the oldest retained record (meaningless while empty).
    first_id: u64,
    len: usize,
    /// Sealed blocks, oldest first; the first may start before `first_id` (trimmed records).
    blocks: VecDeque<Block>,
    /// The line length of each record of the front block, computed when trimming first reaches
    /// it (empty until then), so blocks need not carry one per record.
    front_lens: Vec<u32>,
    /// Id of the first record of `tail`.
    tail_first_id: u64,
    tail: VecDeque<Hot>,
    /// The data JSON of the tail's records back to back, from `tail_text_start` on (the bytes
    /// before it belong to records trimmed off the tail's front).
    tail_text: String,
    tail_text_start: usize,
    /// Interned event names.
    names: Vec<Name>,
    bytes: usize,
}

/// The length of the line `write_line` would produce, without building it.
fn line_len(names: &[Name], id: u64, event: u32, data: Option<&str>, timestamp: f64) -> u32 {
    let digits = |n: u64| n.checked_ilog10().map_or(1, |log| log as usize + 1);
    // {"id": N ,"timestamp": T }
    let mut len = 6 + digits(id) + 13 + 1;
    if let Some(fragment) = names
        .get(event as usize)
        .and_then(|name| name.fragment.as_deref())
    {
        len += 9 + fragment.len(); // ,"event":
    }
    if let Some(data) = data {
        len += 8 + data.len(); // ,"data":
    }
    len += if let Some(whole) = safe_whole(timestamp) {
        usize::from(whole < 0) + digits(whole.unsigned_abs())
    } else {
        let mut text = String::new();
        push_json_number(&mut text, timestamp);
        text.len()
    };
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl History {
    /// `cap = None` keeps everything (`maxEvents: Infinity`).
    pub fn new(cap: Option<usize>) -> Self {
        Self {
            cap,
            first_id: 0,
            len: 0,
            blocks: VecDeque::new(),
            front_lens: Vec::new(),
            tail_first_id: 0,
            tail: VecDeque::new(),
            tail_text: String::new(),
            tail_text_start: 0,
            names: Vec::new(),
            bytes: 0,
        }
    }

    fn intern(&mut self, event: EventName<'_>) -> u32 {
        let found = self.names.iter().position(|name| match event {
            EventName::Text(text) => name.raw.as_deref() == Some(text),
            EventName::Json(json) => name.raw.is_none() && name.fragment.as_deref() == json,
        });
        if let Some(index) = found {
            return index as u32;
        }
        let entry = match event {
            EventName::Text(text) => {
                let mut fragment = String::with_capacity(text.len() + 2);
                push_json_string(&mut fragment, text);
                Name {
                    raw: Some(Box::from(text)),
                    fragment: Some(Arc::from(fragment)),
                }
            }
            EventName::Json(json) => Name {
                raw: None,
                fragment: json.map(Arc::from),
            },
        };
        self.names.push(entry);
        (self.names.len() - 1) as u32
    }

    fn line_len(&self, id: u64, event: u32, data: Option<&str>, timestamp: f64) -> u32 {
        line_len(&self.names, id, event, data, timestamp)
    }

    fn fragment(&self, event: u32) -> Option<&str> {
        self.names
            .get(event as usize)
            .and_then(|name| name.fragment.as_deref())
    }

    /// Appends record `id` (ids must be contiguous) and trims from the front while over
    /// capacity (EMT-2 step 4, EMT-4).
    pub fn push(
        &mut self,
        id: u64,
        event: EventName<'_>,
        data: Option<&str>,
        timestamp: f64,
    ) -> Pushed {
        let event = self.intern(event);
        let line_len = self.line_len(id, event, data, timestamp);
        if self.len == 0 {
            self.first_id = id;
        }
        if self.tail.is_empty() {
            self.tail_first_id = id;
        }
        let data_len = match data {
            Some(text) => {
                self.tail_text.push_str(text);
                u32::try_from(text.len()).unwrap_or(NO_DATA - 1)
            }
            None => NO_DATA,
        };
        self.tail.push_back(Hot {
            timestamp,
            event,
            data_len,
        });
        self.len += 1;
        self.bytes += line_len as usize;
        if let Some(cap) = self.cap {
            while self.len > cap {
                self.pop_front();
            }
        }
        if self.tail.len() >= BLOCK_LEN {
            let block = Block::seal(
                self.tail_first_id,
                &self.tail,
                &self.tail_text[self.tail_text_start..],
            );
            self.tail_first_id += self.tail.len() as u64;
            self.tail.clear();
            // Released, not kept for the next block: kept, it would hold a whole block's text
            // (up to twice that, grown by doubling) for every run, most of them idle, about
            // 2 B more per retained event than growing it again (at about 25 ns more per
            // record in the core).
            self.tail_text = String::new();
            self.tail_text_start = 0;
            self.blocks.push_back(block);
        }
        Pushed { line_len, event }
    }

    fn pop_front(&mut self) {
        if let Some(block) = self.blocks.front() {
            let index = (self.first_id - block.first_id) as usize;
            // (Emptied whenever the front block is dropped: a length mismatch means "not yet".)
            if self.front_lens.len() != block.len() {
                self.front_lens = self.line_lens_of(block);
            }
            self.bytes -= self.front_lens.get(index).copied().unwrap_or(0) as usize;
            if index + 1 >= block.len() {
                self.blocks.pop_front();
                self.front_lens.clear();
            }
        } else if let Some(hot) = self.tail.pop_front() {
            let id = self.tail_first_id;
            let start = self.tail_text_start;
            let end = start + hot.data_bytes();
            let data = (hot.data_len != NO_DATA).then(|| &self.tail_text[start..end]);
            let line_len = line_len(&self.names, id, hot.event, data, hot.timestamp);
            self.bytes -= line_len as usize;
            self.tail_first_id += 1;
            self.tail_text_start = end;
            // A history shorter than a block never seals: drop the trimmed text once it is
            // most of the buffer.
            if self.tail_text_start > 4096 && self.tail_text_start * 2 > self.tail_text.len() {
                self.tail_text.drain(..self.tail_text_start);
                self.tail_text_start = 0;
            }
        }
        self.first_id += 1;
        self.len -= 1;
    }

    /// The line length of each record of `block`.
    fn line_lens_of(&self, block: &Block) -> Vec<u32> {
        let mut lens = Vec::with_capacity(block.len());
        block.visit(0, usize::MAX, &mut |part| {
            lens.push(line_len(
                &self.names,
                part.id,
                part.event,
                part.data,
                part.timestamp,
            ));
        });
        lens
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the serialized records currently retained (what `run.events` would hold as JSON).
    pub fn retained_bytes(&self) -> usize {
        self.bytes
    }

    /// About how many bytes of the heap the history holds (its blocks as compressed, the tail,
    /// the interned names): what keeping it costs, not what it would be as JSON.
    pub fn heap_bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|block| size_of::<Block>() + block.packed.len())
            .sum();
        let names: usize = self
            .names
            .iter()
            .map(|name| {
                size_of::<Name>()
                    + name.raw.as_deref().map_or(0, str::len)
                    + name.fragment.as_deref().map_or(0, str::len)
            })
            .sum();
        blocks
            + names
            + self.front_lens.capacity() * size_of::<u32>()
            + self.tail.capacity() * size_of::<Hot>()
            + self.tail_text.capacity()
    }

    pub fn oldest_id(&self) -> Option<u64> {
        (self.len > 0).then_some(self.first_id)
    }

    /// Id of the newest retained record.
    pub fn newest_id(&self) -> Option<u64> {
        (self.len > 0).then(|| self.first_id + self.len as u64 - 1)
    }

    /// Whether record `id` is still buffered.
    pub fn holds(&self, id: u64) -> bool {
        self.len > 0 && id >= self.first_id && id - self.first_id < self.len as u64
    }

    pub fn last(&self) -> Option<Record> {
        self.get(self.newest_id()?)
    }

    /// The record with `id`, if it is still buffered.
    pub fn get(&self, id: u64) -> Option<Record> {
        if !self.holds(id) {
            return None;
        }
        let mut found = None;
        self.visit(id, 1, |part| found = Some(self.line(&part)));
        found
    }

    /// Every retained record, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        self.range(self.first_id)
    }

    /// Retained records with id ≥ `from`, oldest first.
    pub fn range(&self, from: u64) -> impl Iterator<Item = Record> + '_ {
        let mut records = Vec::new();
        self.visit(from, usize::MAX, |part| records.push(self.line(&part)));
        records.into_iter()
    }

    /// Calls `f` with at most `limit` retained records with id ≥ `from`, oldest first. Blocks
    /// wholly before `from` are skipped without being decoded.
    pub fn visit(&self, from: u64, limit: usize, mut f: impl FnMut(Part<'_>)) {
        let from = from.max(self.first_id);
        let mut left = limit;
        for block in &self.blocks {
            if left == 0 {
                return;
            }
            let end = block.first_id + block.len() as u64;
            if end <= from {
                continue;
            }
            let skip = from.saturating_sub(block.first_id) as usize;
            left -= block.visit(skip, left, &mut f);
        }
        let mut at = self.tail_text_start;
        for (i, hot) in self.tail.iter().enumerate() {
            if left == 0 {
                return;
            }
            let start = at;
            at += hot.data_bytes();
            let id = self.tail_first_id + i as u64;
            if id >= from {
                f(Part {
                    id,
                    event: hot.event,
                    timestamp: hot.timestamp,
                    data: (hot.data_len != NO_DATA).then(|| &self.tail_text[start..at]),
                });
                left -= 1;
            }
        }
    }

    /// The JSON fragment of an interned event name (`None`: the key is omitted).
    pub fn name_fragment(&self, event: u32) -> Option<&str> {
        self.fragment(event)
    }

    /// The JSON fragment of a part's event name (`None`: the key is omitted).
    pub fn event_fragment(&self, part: &Part<'_>) -> Option<&str> {
        self.fragment(part.event)
    }

    /// The record line of a part.
    pub fn line(&self, part: &Part<'_>) -> Record {
        let data = part.data;
        let mut line = String::with_capacity(48 + data.map_or(0, str::len));
        write_line(
            &mut line,
            part.id,
            self.fragment(part.event),
            data,
            part.timestamp,
        );
        Record { id: part.id, line }
    }

    /// The whole buffer as one JSON array text (what `run.events` parses): see
    /// [`History::to_json_arrays`].
    pub fn to_json_array(&self) -> String {
        self.to_json_arrays(usize::MAX).pop().unwrap_or_default()
    }

    /// The buffer as consecutive JSON array texts of at most `max_bytes` each (a record larger
    /// than that alone makes a text of its own): for a history too large for one JS string.
    /// Their arrays, concatenated, are [`History::to_json_array`]'s.
    /// Written block by block into one buffer sized from the retained bytes (up to the bound).
    pub fn to_json_arrays(&self, max_bytes: usize) -> Vec<String> {
        let mut texts = Vec::new();
        let mut out =
            String::with_capacity((self.bytes + self.len + 2).min(max_bytes.saturating_add(1)));
        out.push('[');
        self.visit(self.first_id, usize::MAX, |part| {
            let start = out.len();
            if start > 1 {
                out.push(',');
            }
            write_line(
                &mut out,
                part.id,
                self.fragment(part.event),
                part.data,
                part.timestamp,
            );
            // (+1: the closing bracket.) The record that does not fit starts the next text.
            if start > 1 && out.len() + 1 > max_bytes {
                let record = out.split_off(start + 1);
                out.truncate(start);
                out.push(']');
                texts.push(std::mem::replace(&mut out, String::from("[")));
                out.push_str(&record);
            }
        });
        out.push(']');
        texts.push(out);
        texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_in_bounded_texts_concatenates_to_the_whole() {
        let mut history = History::new(None);
        for id in 1..=150u64 {
            let data = format!("\"{}\"", "d".repeat(id as usize % 17));
            history.push(id, EventName::Text("e"), Some(&data), id as f64);
        }
        let whole: Vec<serde_json::Value> = serde_json::from_str(&history.to_json_array()).unwrap();
        assert_eq!(whole.len(), 150);
        for max_bytes in [1, 100, 4096, usize::MAX] {
            let texts = history.to_json_arrays(max_bytes);
            let mut joined = Vec::new();
            for text in &texts {
                let records: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
                // Within the bound, unless a single record is larger than it.
                assert!(
                    text.len() <= max_bytes || records.len() == 1,
                    "{max_bytes}: {}",
                    text.len()
                );
                joined.extend(records);
            }
            assert_eq!(joined, whole, "max_bytes {max_bytes}");
            match max_bytes {
                1 => assert_eq!(texts.len(), 150),
                usize::MAX => assert_eq!(texts.len(), 1),
                _ => assert!(texts.len() > 1, "max_bytes {max_bytes}"),
            }
        }
        assert_eq!(History::new(None).to_json_arrays(1), vec!["[]".to_owned()]);
    }

    fn rec(id: u64) -> Record {
        Record {
            id,
            line: record_line(id, EventName::Text("e"), Some("1"), 5.0),
        }
    }

    fn push(history: &mut History, id: u64) {
        history.push(id, EventName::Text("e"), Some("1"), 5.0);
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
            push(&mut history, id);
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.oldest_id(), Some(3));
        assert_eq!(history.get(4), Some(rec(4)));
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
            push(&mut history, id);
        }
        assert_eq!(history.len(), 100);
        assert_eq!(History::new(None).to_json_array(), "[]");
    }

    #[test]
    fn compressed_blocks_round_trip_every_line_and_trim_by_whole_blocks() {
        let events = ["agent", "stdout", "a\"b", "end"];
        let line_of = |id: u64| {
            let data = format!("{{\"n\":{id},\"text\":\"delta {id}\"}}");
            let event = EventName::Text(events[(id % 4) as usize]);
            let data = if id % 7 == 0 { None } else { Some(data) };
            (event, data, id as f64 * 1.5)
        };
        let mut history = History::new(Some(300));
        for id in 1..=1000u64 {
            let (event, data, ts) = line_of(id);
            history.push(id, event, data.as_deref(), ts);
        }
        let expected: Vec<Record> = (701..=1000u64)
            .map(|id| {
                let (event, data, ts) = line_of(id);
                Record {
                    id,
                    line: record_line(id, event, data.as_deref(), ts),
                }
            })
            .collect();
        let got: Vec<Record> = history.iter().collect();
        assert_eq!(got, expected);
        assert_eq!(history.len(), 300);
        assert_eq!(history.oldest_id(), Some(701));
        assert_eq!(
            history.retained_bytes(),
            expected.iter().map(|r| r.line.len()).sum::<usize>()
        );
        assert_eq!(history.get(777), Some(expected[76].clone()));
        assert_eq!(history.get(700), None);
        assert_eq!(history.last(), expected.last().cloned());
        assert_eq!(history.range(990).count(), 11);
        assert!(
            history.blocks.len() <= 300 / BLOCK_LEN + 1,
            "old blocks are dropped"
        );
        let parsed: Vec<serde_json::Value> =
            serde_json::from_str(&history.to_json_array()).unwrap();
        assert_eq!(parsed.len(), 300);
        assert_eq!(parsed[0]["id"], 701);
    }

    #[test]
    fn computed_line_lengths_match_the_lines() {
        let mut history = History::new(None);
        let cases: [(EventName, Option<&str>, f64); 6] = [
            (EventName::Text("agent"), Some("{\"a\":1}"), 1717171717171.0),
            (EventName::Text("é\n"), None, 0.0),
            (EventName::Json(None), Some("null"), -5.0),
            (EventName::Json(Some("42")), None, 1.5),
            (EventName::Text(""), Some("\"x\""), f64::NAN),
            (EventName::Text("x"), Some("1"), 1e300),
        ];
        for (i, (event, data, ts)) in cases.iter().enumerate() {
            history.push(i as u64 + 9, *event, *data, *ts);
        }
        let total: usize = history.iter().map(|r| r.line.len()).sum();
        assert_eq!(history.retained_bytes(), total);
    }

    #[test]
    fn timestamps_of_every_kind_survive_sealing() {
        let stamps = [
            1_796_500_000_000.0,
            1_796_500_000_007.0,
            1_796_499_999_000.0, // back in time
            -5.0,
            -0.0,
            0.5,
            f64::NAN,
            f64::INFINITY,
            9_007_199_254_740_991.0,
            -9_007_199_254_740_991.0,
            1e300,
            3.0,
        ];
        let mut history = History::new(None);
        let mut expected = Vec::new();
        for id in 1..=(BLOCK_LEN as u64 * 2) {
            let ts = stamps[id as usize % stamps.len()];
            let data = (id % 5 != 0).then(|| format!("[{id}]"));
            history.push(id, EventName::Text("e"), data.as_deref(), ts);
            expected.push(record_line(id, EventName::Text("e"), data.as_deref(), ts));
        }
        assert_eq!(history.blocks.len(), 2, "everything sealed");
        let lines: Vec<String> = history.iter().map(|r| r.line).collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn data_sharing_a_prefix_round_trips_even_when_the_prefix_splits_a_character() {
        let data = [
            "{\"t\":\"é1\"}",
            "{\"t\":\"è2\"}", // é and è share their first UTF-8 byte
            "{\"t\":\"è2\"}",
            "",
            "{\"t\":\"😀\"}",
            "{\"t\":\"😁\"}",
            "{\"u\":1}",
            "{\"t\":\"é1\",\"more\":[1,2,3]}",
        ];
        let mut history = History::new(None);
        let mut expected = Vec::new();
        for id in 1..=(BLOCK_LEN as u64 * 3) {
            let text = data[id as usize % data.len()];
            // Some records without data in between: the prefix is taken from the last one with.
            let text = (id % 3 != 0).then_some(text);
            history.push(id, EventName::Text("e"), text, id as f64);
            expected.push(record_line(id, EventName::Text("e"), text, id as f64));
        }
        let lines: Vec<String> = history.iter().map(|r| r.line).collect();
        assert_eq!(lines, expected);
        for from in [1, 2, 63, 64, 65, 100, 192] {
            let ids: Vec<u64> = history.range(from).map(|r| r.id).collect();
            assert_eq!(ids, (from..=192).collect::<Vec<u64>>());
            assert_eq!(
                history.get(from).map(|r| r.line),
                Some(expected[from as usize - 1].clone())
            );
        }
    }

    #[test]
    fn a_history_shorter_than_a_block_keeps_its_text_bounded() {
        let mut history = History::new(Some(3));
        let data = "x".repeat(100);
        for id in 1..=10_000u64 {
            history.push(id, EventName::Text("e"), Some(&data), id as f64);
        }
        assert!(history.blocks.is_empty());
        assert!(
            history.tail_text.len() < 3 * 4096,
            "trimmed text is dropped: {} bytes held",
            history.tail_text.len()
        );
        let lines: Vec<String> = history.iter().map(|r| r.line).collect();
        let expected: Vec<String> = (9998..=10_000u64)
            .map(|id| record_line(id, EventName::Text("e"), Some(&data), id as f64))
            .collect();
        assert_eq!(lines, expected);
        assert_eq!(
            history.retained_bytes(),
            expected.iter().map(String::len).sum::<usize>()
        );
    }

    #[test]
    fn non_string_event_names_are_interned_as_json_fragments() {
        let mut history = History::new(None);
        history.push(1, EventName::Json(Some("42")), None, 1.0);
        history.push(2, EventName::Json(None), Some("1"), 2.0);
        history.push(3, EventName::Text("42"), None, 3.0);
        let lines: Vec<String> = history.iter().map(|r| r.line).collect();
        assert_eq!(
            lines,
            vec![
                r#"{"id":1,"event":42,"timestamp":1}"#,
                r#"{"id":2,"data":1,"timestamp":2}"#,
                r#"{"id":3,"event":"42","timestamp":3}"#
            ]
        );
    }

    mod model {
        use super::super::*;
        use proptest::prelude::*;

        /// A record as the test describes it: (event, data, timestamp).
        type Spec = (EventName<'static>, Option<String>, f64);

        fn event() -> impl Strategy<Value = EventName<'static>> {
            prop_oneof![
                Just(EventName::Text("agent")),
                Just(EventName::Text("stdout")),
                Just(EventName::Text("é\"\n")),
                Just(EventName::Json(Some("42"))),
                Just(EventName::Json(None)),
            ]
        }

        /// Data JSON texts that often share prefixes with each other (as agent events do),
        /// with multi-byte characters where a shared prefix can end inside one.
        fn data() -> impl Strategy<Value = Option<String>> {
            let piece = prop_oneof![
                Just("{\"type\":\"text_delta\",\"delta\":\"".to_owned()),
                Just("é".to_owned()),
                Just("è".to_owned()),
                Just("😀".to_owned()),
                "[a-c]{0,6}",
                Just("\\\"".to_owned()),
            ];
            // Valid JSON, as `JSON.stringify` hands it over: an agent-like object around the
            // pieces, or the pieces as a bare string.
            let json = (prop::collection::vec(piece, 0..5), any::<bool>()).prop_map(|(p, wrap)| {
                let text = serde_json::to_string(&p.concat()).unwrap_or_default();
                if wrap {
                    format!("{{\"type\":\"text_delta\",\"delta\":{text}}}")
                } else {
                    text
                }
            });
            prop::option::weighted(0.85, json)
        }

        fn timestamp() -> impl Strategy<Value = f64> {
            prop_oneof![
                4 => (1_796_500_000_000u64..1_796_500_000_100).prop_map(|t| t as f64),
                1 => Just(-0.0),
                1 => Just(f64::NAN),
                1 => -1e6f64..1e6,
                1 => Just(9_007_199_254_740_993.0),
                1 => Just(-12.0),
            ]
        }

        fn record() -> impl Strategy<Value = Spec> {
            (event(), data(), timestamp())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// The word-at-a-time prefix is the byte-at-a-time one.
            #[test]
            fn common_prefix_is_the_bytewise_one(
                shared in prop::collection::vec(any::<u8>(), 0..40),
                a in prop::collection::vec(any::<u8>(), 0..20),
                b in prop::collection::vec(any::<u8>(), 0..20),
            ) {
                let a = [shared.clone(), a].concat();
                let b = [shared, b].concat();
                let bytewise = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
                prop_assert_eq!(common_prefix(&a, &b), bytewise);
                prop_assert_eq!(common_prefix(&b, &a), bytewise);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// The compressed history reads back exactly what a plain list of the last `cap`
            /// lines holds: every line, ranges, single records, the byte count.
            #[test]
            fn history_reads_back_what_a_plain_list_holds(
                cap in prop_oneof![Just(None), (1usize..200).prop_map(Some)],
                records in prop::collection::vec(record(), 0..400),
                first_id in 1u64..1_000,
            ) {
                let mut history = History::new(cap);
                let mut lines: Vec<(u64, String)> = Vec::new();
                for (offset, (event, data, ts)) in records.iter().enumerate() {
                    let id = first_id + offset as u64;
                    history.push(id, *event, data.as_deref(), *ts);
                    lines.push((id, record_line(id, *event, data.as_deref(), *ts)));
                }
                let kept = cap.map_or(lines.len(), |cap| cap.min(lines.len()));
                let expected = &lines[lines.len() - kept..];
                let got: Vec<(u64, String)> = history.iter().map(|r| (r.id, r.line)).collect();
                prop_assert_eq!(&got[..], expected);
                prop_assert_eq!(history.len(), kept);
                prop_assert_eq!(
                    history.retained_bytes(),
                    expected.iter().map(|(_, line)| line.len()).sum::<usize>()
                );
                for (id, line) in expected.iter().step_by(7) {
                    prop_assert_eq!(history.get(*id).map(|r| r.line), Some(line.clone()));
                    let from: Vec<u64> = history.range(*id).map(|r| r.id).collect();
                    let want: Vec<u64> = expected.iter().map(|(i, _)| *i).filter(|i| i >= id).collect();
                    prop_assert_eq!(from, want);
                }
                let parsed: Vec<serde_json::Value> =
                    serde_json::from_str(&history.to_json_array()).unwrap_or_default();
                prop_assert_eq!(parsed.len(), kept);
            }
        }
    }
}
