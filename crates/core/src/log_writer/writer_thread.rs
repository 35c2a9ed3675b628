//! The writer thread: takes what the mailbox holds, groups the lines of each file, appends them
//! with one `write(2)` per file, and keeps at most `max_open_files` descriptors open (least
//! recently written closed first).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::files;

use super::{Command, LogBatch, LogFailure, LogOperation, LogShared, LogTarget, Mailbox};

struct OpenFile {
    file: File,
    path: PathBuf,
    last_used: u64,
}

struct Pending {
    target: Arc<LogTarget>,
    bytes: String,
    lines: u64,
}

/// How many emptied per-file buffers the writer keeps for the next round, and the largest it
/// keeps.
const SPARE_BUFFERS: usize = 256;
pub(super) const SPARE_BUFFER_BYTES: usize = 64 * 1024;

/// The lines taken from the mailbox, grouped by file in order of first appearance, so that each
/// file gets one `write(2)`; emptied buffers are kept for the next round.
#[derive(Default)]
struct Grouped {
    files: Vec<Pending>,
    /// Target key → index in `files`.
    index: HashMap<u64, usize>,
    spare: Vec<String>,
}

impl Grouped {
    fn slot(&mut self, target: &Arc<LogTarget>) -> &mut Pending {
        let index = match self.index.entry(target.key) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let bytes = self.spare.pop().unwrap_or_default();
                self.files.push(Pending {
                    target: Arc::clone(target),
                    bytes,
                    lines: 0,
                });
                *entry.insert(self.files.len() - 1)
            }
        };
        &mut self.files[index]
    }

    fn line(&mut self, target: &Arc<LogTarget>, line: &str) {
        let slot = self.slot(target);
        slot.bytes.push_str(line);
        slot.bytes.push('\n');
        slot.lines += 1;
    }

    fn batch(&mut self, batch: &LogBatch) {
        for line in batch.parts() {
            let slot = self.slot(line.target);
            crate::history::write_line(
                &mut slot.bytes,
                line.id,
                line.event,
                line.data,
                line.timestamp,
            );
            slot.bytes.push('\n');
            slot.lines += 1;
        }
    }

    /// Writes every file's lines, in order of first appearance.
    fn flush(&mut self, files: &mut Files, shared: &LogShared) {
        self.index.clear();
        for mut pending in self.files.drain(..) {
            let (lines, bytes) = (pending.lines as usize, pending.bytes.len());
            write_batch(&pending, files, shared);
            shared.written_out(lines, bytes);
            // Kept for reuse unless it grew large (one run's burst): at most
            // SPARE_BUFFERS × SPARE_BUFFER_BYTES (16 MiB) stay with the writer.
            if pending.bytes.capacity() <= SPARE_BUFFER_BYTES && self.spare.len() < SPARE_BUFFERS {
                pending.bytes.clear();
                self.spare.push(std::mem::take(&mut pending.bytes));
            }
        }
    }
}

struct Files {
    open: HashMap<u64, OpenFile>,
    max_open: usize,
    tick: u64,
}

pub(super) fn run_writer(mailbox: &Mailbox, shared: &LogShared, max_open: usize) {
    let mut files = Files {
        open: HashMap::new(),
        max_open,
        tick: 0,
    };
    let mut pending = Grouped::default();
    let mut written: Vec<LogBatch> = Vec::new();
    let mut active = false;
    while let Some(batch) = mailbox.take(active) {
        let (lines, bytes) = batch.iter().fold((0, 0), |(lines, bytes), command| {
            let (l, b) = command.queued();
            (lines + l, bytes + b)
        });
        shared.taken(lines, bytes);
        for command in batch {
            match command {
                Command::Append(target, line) => pending.line(&target, &line),
                Command::Batch(batch) => {
                    pending.batch(&batch);
                    written.push(batch);
                }
                Command::Close(target) => {
                    pending.flush(&mut files, shared);
                    drop(target.take_early());
                    if files.open.remove(&target.key).is_some() {
                        shared.open_files.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                // The close frees what the file system still held for it (see `release`).
                Command::Release(file) => {
                    drop(file);
                    mailbox.releasing.fetch_sub(1, Ordering::Relaxed);
                }
                Command::Barrier(done) => {
                    pending.flush(&mut files, shared);
                    done();
                }
            }
        }
        pending.flush(&mut files, shared);
        mailbox.give_back(&mut written);
        active = true;
    }
    shared
        .open_files
        .fetch_sub(files.open.len() as u64, Ordering::Relaxed);
}

/// Closes the least recently written file when the descriptor budget is used up.
fn make_room(files: &mut Files, shared: &LogShared) {
    while files.open.len() >= files.max_open {
        let Some(oldest) = files
            .open
            .iter()
            .min_by_key(|(_, f)| f.last_used)
            .map(|(key, _)| *key)
        else {
            return;
        };
        files.open.remove(&oldest);
        shared.open_files.fetch_sub(1, Ordering::Relaxed);
    }
}

fn write_batch(batch: &Pending, files: &mut Files, shared: &LogShared) {
    let key = batch.target.key;
    files.tick += 1;
    let tick = files.tick;
    if !files.open.contains_key(&key) {
        make_room(files, shared);
    }
    let open = match files.open.entry(key) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => match batch.target.open_for_writer() {
            Ok(file) => {
                shared.open_files.fetch_add(1, Ordering::Relaxed);
                entry.insert(OpenFile {
                    file,
                    path: batch.target.path.clone(),
                    last_used: tick,
                })
            }
            Err((operation, error)) => {
                shared.fail(batch.lines, || {
                    LogFailure::io(batch.target.path.clone(), operation, &error)
                });
                return;
            }
        },
    };
    open.last_used = tick;
    let target = &batch.target;
    if !target.tail_whole.load(Ordering::Relaxed) {
        // A file that cannot be read back (opened write-only, an I/O error) is appended to as
        // it is, never left unwritten for it. But when the line feed that ends a torn line
        // cannot be written (a full disk), appending would glue the batch's first line to the
        // torn one: the batch fails, and the next one tries the repair again.
        if let Err(error) = end_torn_line(&mut open.file) {
            let path = open.path.clone();
            files.open.remove(&key);
            shared.open_files.fetch_sub(1, Ordering::Relaxed);
            shared.fail(batch.lines, || {
                LogFailure::io(path, LogOperation::Write, &error)
            });
            return;
        }
        target.tail_whole.store(true, Ordering::Relaxed);
    }
    match append(&mut open.file, batch.bytes.as_bytes()) {
        Ok(()) => {
            shared
                .lines_written
                .fetch_add(batch.lines, Ordering::Relaxed);
        }
        Err((error, written)) => {
            // A write that failed part way (a full disk, a file size limit) is taken back, so
            // the file keeps ending with a whole line and the next batch's lines stay
            // readable; the batch's lines all count as not persisted. When it cannot be taken
            // back, the next write ends the torn line first.
            if written > 0 && take_back(&open.file, written).is_err() {
                target.tail_whole.store(false, Ordering::Relaxed);
            }
            let path = open.path.clone();
            files.open.remove(&key);
            shared.open_files.fetch_sub(1, Ordering::Relaxed);
            shared.fail(batch.lines, || {
                LogFailure::io(path, LogOperation::Write, &error)
            });
        }
    }
}

/// Appends `bytes`; on failure, the error and how many bytes did reach the file.
fn append(file: &mut File, bytes: &[u8]) -> Result<(), (io::Error, u64)> {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), written as u64)),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err((error, written as u64)),
        }
    }
    Ok(())
}

/// Cuts the last `written` bytes, the part of a failed batch that reached the file. (On
/// Windows a file opened for appending cannot be resized; the error leaves the torn line to
/// `end_torn_line`.)
fn take_back(file: &File, written: u64) -> io::Result<()> {
    let len = file.metadata()?.len();
    file.set_len(len.saturating_sub(written))
}

/// Ends a torn last line (a crash mid-write, or a write that could not be taken back) with a
/// line feed, so that the lines appended next are whole lines of their own. The file is open
/// for reading and appending: the read position does not move where appends go.
fn end_torn_line(file: &mut File) -> io::Result<()> {
    // Only the line feed's write can fail this: a file whose end cannot be checked is left as
    // it is.
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Ok(());
    };
    match files::ends_mid_line(file, len) {
        Ok(true) => file.write_all(b"\n"),
        _ => Ok(()),
    }
}

/// LOG-3: create the directory recursively (once), then open for append (never truncate).
///
/// Once the run's directory has existed (the state file at `create` made it, or an earlier
/// open), it is never created again: a directory that vanished was removed by someone (the
/// host deleting a conversation, a test cleaning up right after `finish`), and bringing back a
/// directory holding a stray tail of the journal would leave a run without its state file.
/// The lines fail instead (counted and reported, LOG-6), as the upstream module's lines go
/// nowhere once its open stream's file is unlinked.
pub(super) fn open_log(target: &LogTarget) -> Result<File, (LogOperation, io::Error)> {
    // Read as well: the first write checks the file's last byte (`end_torn_line`). A journal
    // this process may append to but not read is opened for appending only. A journal this
    // service created is never created again (a reopen after the descriptor cap closed it): if
    // it is gone, someone removed it (the host, after the run ended or under a live run), its
    // lines fail (counted), and a new file holding only the journal's last lines would be a
    // stray, in a directory the host may be removing.
    // On Windows another program may hold the journal for a moment without sharing it (a
    // virus scanner, a backup tool): the open waits that out (`files::while_held`, at most
    // 63 ms) before the lines count as failed; on the writer thread, or on the calling thread
    // for the early open at `finish` (`LogTarget::open_early`).
    let create = !target.created();
    let open = || {
        files::while_held(
            || match files::open_regular(
                &target.path,
                OpenOptions::new().read(true).append(true).create(create),
            ) {
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => files::open_regular(
                    &target.path,
                    OpenOptions::new().append(true).create(create),
                ),
                opened => opened,
            },
            files::Held::Open,
        )
    };
    if target.dir_ready.load(Ordering::Relaxed) {
        return open().map_err(|e| (LogOperation::Open, e));
    }
    create_run_dir(target)?;
    target.dir_ready.store(true, Ordering::Relaxed);
    open().map_err(|e| (LogOperation::Open, e))
}

/// The run's directory, with its parents (an existing one is fine).
fn create_run_dir(target: &LogTarget) -> Result<(), (LogOperation, io::Error)> {
    match target.path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| (LogOperation::CreateDir, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_6_a_torn_line_that_cannot_be_ended_fails_the_repair_and_one_that_cannot_be_read_is_left()
    {
        let dir = std::env::temp_dir().join(format!("chat-run-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or(());
        let path = dir.join("events.jsonl");
        std::fs::write(&path, "{\"id\":1}\n{\"id\":2,\"ev").unwrap_or(());
        // Readable but not writable: the line feed cannot be written.
        let mut read_only = OpenOptions::new().read(true).open(&path).unwrap();
        assert!(end_torn_line(&mut read_only).is_err());
        // Writable but not readable: its end cannot be checked, it is left as it is.
        let mut append_only = OpenOptions::new().append(true).open(&path).unwrap();
        assert!(end_torn_line(&mut append_only).is_ok());
        let mut both = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert!(end_torn_line(&mut both).is_ok());
        assert!(std::fs::read_to_string(&path)
            .unwrap_or_default()
            .ends_with("\"ev\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
