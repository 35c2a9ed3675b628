//! A batch of log lines queued as one command: the parts of every line in one text, formatted
//! by the writer thread.

use std::path::PathBuf;
use std::sync::Arc;

use super::writer_thread::SPARE_BUFFER_BYTES;
use super::LogTarget;

/// The log lines of a batch of emits, queued as one command ([`LogWriter::append_batch`]):
/// the parts of every line (its event JSON and data JSON) back to back in one text, and per
/// line its file, id, timestamp and part lengths. The writer formats the lines from these, off
/// the JS thread; a batch costs a few allocations however many lines it holds.
#[derive(Default)]
pub struct LogBatch {
    /// The files of the lines; consecutive lines of one file share an entry.
    targets: Vec<Arc<LogTarget>>,
    lines: Vec<BatchLine>,
    text: String,
    /// Queue bytes of the lines (each line's length with its newline).
    pub(super) bytes: usize,
}

struct BatchLine {
    /// Index into `targets`.
    target: u32,
    id: u64,
    timestamp: f64,
    /// Byte lengths of the parts in the text, [`ABSENT`] for an omitted key.
    event: u32,
    data: u32,
}

const ABSENT: u32 = u32::MAX;

/// One line of a [`LogBatch`], its parts borrowed from the batch's text.
pub(super) struct LineParts<'a> {
    pub(super) target: &'a Arc<LogTarget>,
    pub(super) id: u64,
    pub(super) event: Option<&'a str>,
    pub(super) data: Option<&'a str>,
    pub(super) timestamp: f64,
}

impl LogBatch {
    /// Adds a record's line. `len`: the line's length without its newline. Parts come from JS
    /// strings (under 2^31 bytes), so their lengths fit the batch's 32-bit fields.
    pub fn push(
        &mut self,
        target: &Arc<LogTarget>,
        id: u64,
        event: Option<&str>,
        data: Option<&str>,
        timestamp: f64,
        len: usize,
    ) {
        if !self
            .targets
            .last()
            .is_some_and(|last| Arc::ptr_eq(last, target))
        {
            self.targets.push(Arc::clone(target));
        }
        let mut part = |text: Option<&str>| match text {
            Some(text) => {
                self.text.push_str(text);
                u32::try_from(text.len()).unwrap_or(ABSENT - 1)
            }
            None => ABSENT,
        };
        let event = part(event);
        let data = part(data);
        self.lines.push(BatchLine {
            target: (self.targets.len() - 1) as u32,
            id,
            timestamp,
            event,
            data,
        });
        self.bytes += len + 1;
    }

    /// Empties the batch, keeping its buffers (unless a very large batch grew them).
    pub fn clear(&mut self) {
        self.targets.clear();
        self.lines.clear();
        self.text.clear();
        self.bytes = 0;
        if self.text.capacity() > SPARE_BUFFER_BYTES {
            self.text = String::new();
        }
    }

    /// How many lines the batch holds.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The file of the batch's first line (empty when the batch is), for a report.
    pub fn first_path(&self) -> PathBuf {
        self.targets
            .first()
            .map(|target| target.path.clone())
            .unwrap_or_default()
    }

    /// The lines in order, with their parts.
    pub(super) fn parts(&self) -> impl Iterator<Item = LineParts<'_>> {
        let mut at = 0usize;
        self.lines.iter().filter_map(move |line| {
            let mut part = |len: u32| {
                if len == ABSENT {
                    return Some(None);
                }
                let end = at + len as usize;
                let text = self.text.get(at..end)?;
                at = end;
                Some(Some(text))
            };
            let event = part(line.event)?;
            let data = part(line.data)?;
            Some(LineParts {
                target: self.targets.get(line.target as usize)?,
                id: line.id,
                event,
                data,
                timestamp: line.timestamp,
            })
        })
    }
}
