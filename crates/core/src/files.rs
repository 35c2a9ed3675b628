//! Opening the files of `runsLogDir` without trusting what is there. The directory is shared
//! with other programs (an upstream daemon, the host's own cleanup, whatever a user put
//! there), so a path the core reads or appends to may name a FIFO, a socket, a device or a
//! directory. A plain `open` of a FIFO blocks until the other end shows up, which would hang
//! the JS thread (a hydration, a `list({ projectId })`), the index scan (and with it the first
//! read of the index) or the writer thread (and with it `flushLogs` and `shutdownActive`). So every such open here is
//! non-blocking and then checked: anything but a regular file is an error of kind
//! `InvalidInput`, which the callers already treat as an unreadable (skipped, counted) file.
//! Symbolic links are followed, as the upstream module's `fs` calls follow them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Whether `error` says the process is short of a resource right now (file descriptors,
/// kernel memory) rather than anything about the file: the same read can succeed later, so what
/// it was reading must not be judged invalid (LC-2: such a run is neither skipped nor lost, a
/// later lookup reads it again).
pub fn is_transient(error: &io::Error) -> bool {
    if matches!(
        error.kind(),
        io::ErrorKind::OutOfMemory | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    ) {
        return true;
    }
    #[cfg(unix)]
    let transient = [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS];
    // ERROR_TOO_MANY_OPEN_FILES, ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY,
    // ERROR_NO_SYSTEM_RESOURCES; and another program (a virus scanner, a backup tool, an editor)
    // holding the file open without sharing it for a moment, which says nothing about what the
    // file holds.
    #[cfg(windows)]
    let transient = [
        4,
        8,
        14,
        1450,
        ERROR_SHARING_VIOLATION,
        ERROR_LOCK_VIOLATION,
    ];
    #[cfg(not(any(unix, windows)))]
    let transient: [i32; 0] = [];
    error
        .raw_os_error()
        .is_some_and(|code| transient.contains(&code))
}

#[cfg(windows)]
const ERROR_ACCESS_DENIED: i32 = 5;
#[cfg(windows)]
const ERROR_SHARING_VIOLATION: i32 = 32;
#[cfg(windows)]
const ERROR_LOCK_VIOLATION: i32 = 33;

/// What another handle holding a file open can make fail on Windows.
#[derive(Clone, Copy)]
pub enum Held {
    /// Opening it: the other handle shares nothing (`ERROR_SHARING_VIOLATION`) or locked a range
    /// (`ERROR_LOCK_VIOLATION`).
    Open,
    /// Moving another file over it without POSIX rename semantics: any open handle, even one
    /// that allows deletion (`ERROR_ACCESS_DENIED`), or one that shares nothing
    /// (`ERROR_SHARING_VIOLATION`).
    Replace,
}

/// How often [`while_held`] tries again, and its first pause (doubled after each try: at most
/// 1 + 2 + 4 + 8 + 16 + 32 = 63 ms in all).
#[cfg(windows)]
const HELD_RETRIES: u32 = 6;
#[cfg(windows)]
const HELD_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Runs `op`; on Windows, while it fails because another handle holds the file (a virus
/// scanner, a backup tool, another service's scan: such handles are short-lived), runs it again
/// after a pause, a few times, before its error stands. Elsewhere `op` runs once: there an open
/// handle neither blocks an open nor a rename.
pub fn while_held<T>(mut op: impl FnMut() -> io::Result<T>, what: Held) -> io::Result<T> {
    #[cfg(windows)]
    {
        let held = |error: &io::Error| {
            matches!(
                (what, error.raw_os_error()),
                (_, Some(ERROR_SHARING_VIOLATION))
                    | (Held::Open, Some(ERROR_LOCK_VIOLATION))
                    | (Held::Replace, Some(ERROR_ACCESS_DENIED))
            )
        };
        let mut pause = HELD_FIRST_PAUSE;
        for _ in 0..HELD_RETRIES {
            match op() {
                Err(error) if held(&error) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                done => return done,
            }
        }
    }
    #[cfg(not(windows))]
    let _ = what;
    op()
}

/// Opens `path` with `options`, provided it is a regular file (after following links).
/// On Unix the open itself cannot block: `O_NONBLOCK` makes a FIFO without a writer open at
/// once (for reading) or fail with `ENXIO` (for writing). The flag stays set on the returned
/// file; for a regular file it changes nothing (reads and writes of regular files never
/// return `EAGAIN`).
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    open_regular_with_len(path, options).map(|(file, _)| file)
}

#[cfg(test)]
thread_local! {
    /// Test support: the next `n` opens of this path on this thread fail as they do when the
    /// process is short of memory ([`is_transient`]).
    pub static FAIL_OPEN: std::cell::RefCell<Option<(std::path::PathBuf, u32)>> =
        const { std::cell::RefCell::new(None) };
}

/// [`open_regular`], with the size the check read.
pub fn open_regular_with_len(path: &Path, options: &mut OpenOptions) -> io::Result<(File, u64)> {
    #[cfg(test)]
    if FAIL_OPEN.with(|fail| match &mut *fail.borrow_mut() {
        Some((failing, left)) if failing == path && *left > 0 => {
            *left -= 1;
            true
        }
        _ => false,
    }) {
        return Err(io::Error::from(io::ErrorKind::OutOfMemory));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let metadata = file.metadata()?;
    if metadata.is_file() {
        Ok((file, metadata.len()))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ))
    }
}

/// Whether `file` (open for reading, `len` bytes long) ends in the middle of a line: its last
/// byte is not a line feed (a crash or a full disk cut the last write short). The read position
/// moves; in append mode that does not change where writes go.
pub fn ends_mid_line(file: &mut File, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// [`open_regular`] for reading.
pub fn open_read(path: &Path) -> io::Result<File> {
    open_regular(path, OpenOptions::new().read(true))
}

/// The whole of the regular file `path` as UTF-8 (`InvalidData` when it is not).
///
/// Sized from the one `fstat` the regular-file check made: `File`'s own `read_to_string` would
/// ask the OS for the size and the position again (two more system calls per file, for each of
/// the thousands of state files the index scan reads).
///
/// A file of more than `max` bytes is not read (`InvalidData`): a stray huge file where a small
/// one is expected would otherwise cost its whole size in memory and time on every read.
pub fn read_to_string(path: &Path, max: u64) -> io::Result<String> {
    let (mut file, len) = open_regular_with_len(path, OpenOptions::new().read(true))?;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        )
    };
    if len > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    // Through `Read::take`, which reads into the reserved space without asking for a size hint
    // (and stops a file that grows while it is read).
    Read::by_ref(&mut file)
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Bytes read per step by [`lines_from_end`].
const BACKWARD_CHUNK: u64 = 1 << 20;

/// A byte no journal record's line holds: a control character other than the tab and the
/// carriage return JSON allows between tokens (`JSON.stringify` escapes every control
/// character inside strings, and the line feed ends the line). The zeros a crash can leave at
/// a file's end are such bytes: a line that has one is skipped as it is read, never gathered.
fn not_in_a_record(byte: u8) -> bool {
    byte < 0x20 && byte != b'\t' && byte != b'\r'
}

/// Calls `take` with each line of the first `len` bytes of `file` (without its line feed), from
/// the last one back to the first, until `take` returns false. The part after the last line
/// feed counts as a line (it may be torn: the caller's parse tells). Each byte is read once and
/// copied at most once more, when its line spans chunks: the cost is what is read, not the
/// file's size. A line holding a byte no record can hold ([`not_in_a_record`]: a crash's zeros)
/// is skipped without being gathered, so memory stays bounded by the longest record-like line.
pub fn lines_from_end(
    file: &mut File,
    len: u64,
    mut take: impl FnMut(&[u8]) -> bool,
) -> io::Result<()> {
    // Bytes after `pos` that do not yet form a whole line (their start is before `pos`), as the
    // pieces read so far, the last one first in the file; or, once one of them held a byte no
    // record holds, nothing (`garbage`) until that line's start is found.
    let mut carry: Vec<Vec<u8>> = Vec::new();
    let mut garbage = false;
    let mut pos = len;
    while pos > 0 {
        let start = pos.saturating_sub(BACKWARD_CHUNK);
        let mut buf = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        pos = start;
        // Whole lines are those after a line feed in `buf` (or from the file's start).
        let mut end = buf.len();
        while let Some(newline) = buf[..end].iter().rposition(|&b| b == b'\n') {
            let head = &buf[newline + 1..end];
            if garbage || head.iter().any(|&b| not_in_a_record(b)) {
                garbage = false;
                carry.clear();
            } else if !take(&joined(head, &mut carry)) {
                return Ok(());
            }
            end = newline;
        }
        buf.truncate(end);
        if garbage || buf.iter().any(|&b| not_in_a_record(b)) {
            garbage = true;
            carry.clear();
        } else {
            carry.push(buf);
        }
    }
    if !garbage {
        take(&joined(&[], &mut carry));
    }
    Ok(())
}

/// The lines of `reader` (without their line feed), read forward, as `BufRead::split(b'\n')`
/// gives them, except that a line holding a byte no record holds ([`not_in_a_record`]: a
/// crash's zeros) comes back empty, its bytes skipped rather than gathered. The last line
/// counts even without a line feed. A read error ends the lines (the line it cut is dropped).
pub fn record_lines<R: io::BufRead>(reader: R) -> RecordLines<R> {
    RecordLines {
        reader,
        done: false,
    }
}

/// The iterator of [`record_lines`].
pub struct RecordLines<R> {
    reader: R,
    done: bool,
}

impl<R: io::BufRead> Iterator for RecordLines<R> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let mut line = Vec::new();
        let mut garbage = false;
        let mut read_any = false;
        loop {
            let Ok(available) = self.reader.fill_buf() else {
                // (As `split` gives the error: the line it cut is not given.)
                self.done = true;
                return None;
            };
            if available.is_empty() {
                self.done = true;
                return read_any.then_some(line);
            }
            read_any = true;
            let (piece, found) = match available.iter().position(|&b| b == b'\n') {
                Some(newline) => (&available[..newline], Some(newline)),
                None => (available, None),
            };
            if !garbage && piece.iter().any(|&b| not_in_a_record(b)) {
                garbage = true;
                line = Vec::new();
            }
            if !garbage {
                line.extend_from_slice(piece);
            }
            let used = found.map_or(piece.len(), |newline| newline + 1);
            self.reader.consume(used);
            if found.is_some() {
                return Some(line);
            }
        }
    }
}

/// `head` followed by the carried pieces (in file order), which are taken.
fn joined(head: &[u8], carry: &mut Vec<Vec<u8>>) -> Vec<u8> {
    let mut line = Vec::with_capacity(head.len() + carry.iter().map(Vec::len).sum::<usize>());
    line.extend_from_slice(head);
    for piece in carry.drain(..).rev() {
        line.extend_from_slice(&piece);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::log_dir;
    use std::io::Write;
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        let (dir, _) = log_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Lines that span the backward reader's chunks, with and without bytes no record holds:
    /// both readers give every record-like line (in their order) and skip the others whole.
    #[test]
    fn both_line_readers_skip_lines_with_bytes_no_record_holds_without_gathering_them() {
        let chunk = BACKWARD_CHUNK as usize;
        let long = |c: u8| vec![c; chunk + chunk / 2];
        let mut nul_late = long(b'a');
        nul_late[chunk + 10] = 0; // in the line's last chunk read backward: before any carry
        let mut nul_early = long(b'b');
        nul_early[3] = 0; // in the line's first bytes: found after its other pieces were carried
        let lines: Vec<Vec<u8>> = vec![
            b"{\"id\":1}".to_vec(),
            nul_late,
            b"{\"id\":2}\r".to_vec(),
            long(b'c'),
            nul_early,
            b"{\"id\":3}\t".to_vec(),
        ];
        let mut text = lines.join(&b'\n');
        text.push(b'\n');
        // A crash's zeros at the end, over more than one chunk, without a line feed.
        text.extend(std::iter::repeat_n(0u8, 2 * chunk + 7));
        let dir = temp_dir("files-lines");
        let path = dir.join("events.jsonl");
        std::fs::write(&path, &text).unwrap();

        let record_like = |line: &Vec<u8>| !line.iter().any(|&b| not_in_a_record(b));
        let mut backward = Vec::new();
        let mut file = File::open(&path).unwrap();
        lines_from_end(&mut file, text.len() as u64, |line| {
            backward.push(line.to_vec());
            true
        })
        .unwrap();
        let mut expected: Vec<Vec<u8>> = lines.iter().filter(|l| record_like(l)).cloned().collect();
        expected.reverse();
        assert_eq!(backward.len(), 4);
        assert!(
            backward == expected,
            "backward: the record-like lines, last first"
        );

        let forward: Vec<Vec<u8>> =
            record_lines(io::BufReader::new(File::open(&path).unwrap())).collect();
        let mut expected: Vec<Vec<u8>> = lines
            .iter()
            .map(|l| {
                if record_like(l) {
                    l.clone()
                } else {
                    Vec::new()
                }
            })
            .collect();
        expected.push(Vec::new()); // the zeros: a last line without a line feed, skipped
        assert_eq!(forward.len(), expected.len());
        assert!(
            forward == expected,
            "forward: skipped lines come back empty"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_regular_file_reads_and_appends() {
        let dir = temp_dir("files-regular");
        let path = dir.join("state.json");
        std::fs::write(&path, "{}\n").unwrap();
        assert_eq!(read_to_string(&path, u64::MAX).unwrap(), "{}\n");
        let mut file = open_regular(&path, OpenOptions::new().append(true)).unwrap();
        file.write_all(b"[]\n").unwrap();
        assert_eq!(read_to_string(&path, u64::MAX).unwrap(), "{}\n[]\n");
        // (Windows removes no directory while a file in it is open.)
        drop(file);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_larger_than_the_limit_is_not_read() {
        let dir = temp_dir("files-large");
        let path = dir.join("state.json");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_to_string(&path, 10).unwrap(), "0123456789");
        let error = read_to_string(&path, 9).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("larger than 9 bytes"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_is_refused_not_read() {
        let dir = temp_dir("files-dir");
        let error = read_to_string(&dir, u64::MAX).unwrap_err();
        // Unix opens a directory and the check refuses it; Windows refuses to open it as a file.
        #[cfg(unix)]
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        #[cfg(windows)]
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_keeps_its_not_found() {
        let dir = temp_dir("files-missing");
        let error = read_to_string(&dir.join("nothing"), u64::MAX).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // A FIFO nobody writes to: a blocking open would never return, so this test would hang.
    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once_for_reading_and_for_appending() {
        let dir = temp_dir("files-fifo");
        let path = dir.join("events.jsonl");
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `c_path` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read_to_string(&path, u64::MAX).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        // Without a reader, the non-blocking open for writing fails (ENXIO) instead of waiting.
        assert!(open_regular(&path, OpenOptions::new().append(true).create(true)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
