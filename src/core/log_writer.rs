//! The JSONL appender: one background thread per service that writes every persisted
//! record to `<runsLogDir>/<runId>/events.jsonl`, off the JS thread.
//!
//! Commands arrive in emit order over a channel. The thread drains what is queued, groups the
//! lines of each file and appends them with one `write(2)` per file per batch, so a burst of
//! emits costs a few syscalls. `Close` flushes and closes one file (IMP-1/IMP-2), `Barrier`
//! completes once everything queued before it is on the OS (IMP-4). Errors never reach the
//! emitter: they are counted and the first one of a service is reported through its sink.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;

/// What the writer reports about a failed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFailure {
    pub path: PathBuf,
    /// `mkdir`, `open` or `write`.
    pub operation: &'static str,
    pub message: String,
}

/// Receives the first failure of a service (see `LogShared`).
pub type FailureSink = Box<dyn Fn(LogFailure) + Send + Sync>;

/// Counters and the error sink shared by a service and its writer thread.
pub struct LogShared {
    sink: Option<FailureSink>,
    reported: AtomicBool,
    lines_written: AtomicU64,
    lines_failed: AtomicU64,
    open_files: AtomicU64,
}

impl LogShared {
    pub fn new(sink: Option<FailureSink>) -> Self {
        Self {
            sink,
            reported: AtomicBool::new(false),
            lines_written: AtomicU64::new(0),
            lines_failed: AtomicU64::new(0),
            open_files: AtomicU64::new(0),
        }
    }

    pub fn lines_written(&self) -> u64 {
        self.lines_written.load(Ordering::Relaxed)
    }

    pub fn lines_failed(&self) -> u64 {
        self.lines_failed.load(Ordering::Relaxed)
    }

    pub fn open_files(&self) -> u64 {
        self.open_files.load(Ordering::Relaxed)
    }

    fn fail(&self, lines: u64, failure: LogFailure) {
        self.lines_failed.fetch_add(lines, Ordering::Relaxed);
        if !self.reported.swap(true, Ordering::AcqRel) {
            if let Some(sink) = &self.sink {
                sink(failure);
            }
        }
    }
}

/// One run's log file.
pub struct LogTarget {
    pub key: u64,
    pub path: PathBuf,
}

enum Command {
    Append(Arc<LogTarget>, Arc<str>),
    Close(u64),
    Barrier(Box<dyn FnOnce() + Send>),
}

/// Handle to the writer thread. Dropping it lets the thread drain its queue and exit.
pub struct LogWriter {
    tx: Sender<Command>,
}

impl LogWriter {
    /// Starts the writer thread.
    pub fn spawn(shared: Arc<LogShared>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("chat-run-log".into())
            .spawn(move || run_writer(&rx, &shared))?;
        Ok(Self { tx })
    }

    /// Queues one line (without its trailing newline).
    pub fn append(&self, target: &Arc<LogTarget>, line: &Arc<str>) -> bool {
        self.tx
            .send(Command::Append(Arc::clone(target), Arc::clone(line)))
            .is_ok()
    }

    /// Queues the close of a run's file, after every line queued before it.
    pub fn close(&self, key: u64) {
        let _ = self.tx.send(Command::Close(key));
    }

    /// Calls `done` once every command queued before it has been carried out.
    /// If the thread is gone, `done` runs at once (there is nothing left to wait for).
    pub fn barrier(&self, done: Box<dyn FnOnce() + Send>) {
        if let Err(mpsc::SendError(Command::Barrier(done))) = self.tx.send(Command::Barrier(done)) {
            done();
        }
    }

    /// Blocks until every command queued so far is carried out, or `timeout` passes.
    /// Returns false on timeout. Used before reading a log back (IMP-3), where the lines just
    /// evicted from memory may still be queued.
    pub fn sync(&self, timeout: std::time::Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        self.barrier(Box::new(move || {
            let _ = tx.send(());
        }));
        !matches!(
            rx.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }
}

struct OpenFile {
    file: File,
    path: PathBuf,
}

struct Pending {
    target: Arc<LogTarget>,
    bytes: Vec<u8>,
    lines: u64,
}

fn run_writer(rx: &Receiver<Command>, shared: &LogShared) {
    let mut files: HashMap<u64, OpenFile> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Drain what is already queued (bounded, so a barrier is never starved).
        let mut budget = 4096usize;
        while let Some(command) = next.take() {
            match command {
                Command::Append(target, line) => queue_line(&mut pending, target, &line),
                Command::Close(key) => {
                    flush_pending(&mut pending, &mut files, shared);
                    if files.remove(&key).is_some() {
                        shared.open_files.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                Command::Barrier(done) => {
                    flush_pending(&mut pending, &mut files, shared);
                    done();
                }
            }
            budget -= 1;
            if budget > 0 {
                next = rx.try_recv().ok();
            }
        }
        flush_pending(&mut pending, &mut files, shared);
    }
    flush_pending(&mut pending, &mut files, shared);
    shared
        .open_files
        .fetch_sub(files.len() as u64, Ordering::Relaxed);
}

fn queue_line(pending: &mut Vec<Pending>, target: Arc<LogTarget>, line: &str) {
    let slot = match pending.iter_mut().rposition(|p| p.target.key == target.key) {
        Some(index) => &mut pending[index],
        None => {
            pending.push(Pending {
                target,
                bytes: Vec::with_capacity(line.len() + 1),
                lines: 0,
            });
            let last = pending.len() - 1;
            &mut pending[last]
        }
    };
    slot.bytes.extend_from_slice(line.as_bytes());
    slot.bytes.push(b'\n');
    slot.lines += 1;
}

fn flush_pending(
    pending: &mut Vec<Pending>,
    files: &mut HashMap<u64, OpenFile>,
    shared: &LogShared,
) {
    for batch in pending.drain(..) {
        write_batch(batch, files, shared);
    }
}

fn write_batch(batch: Pending, files: &mut HashMap<u64, OpenFile>, shared: &LogShared) {
    let key = batch.target.key;
    let open = match files.entry(key) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => match open_log(&batch.target.path) {
            Ok(file) => {
                shared.open_files.fetch_add(1, Ordering::Relaxed);
                entry.insert(OpenFile {
                    file,
                    path: batch.target.path.clone(),
                })
            }
            Err((operation, error)) => {
                shared.fail(
                    batch.lines,
                    LogFailure {
                        path: batch.target.path.clone(),
                        operation,
                        message: error.to_string(),
                    },
                );
                return;
            }
        },
    };
    match open.file.write_all(&batch.bytes) {
        Ok(()) => {
            shared
                .lines_written
                .fetch_add(batch.lines, Ordering::Relaxed);
        }
        Err(error) => {
            let path = open.path.clone();
            files.remove(&key);
            shared.open_files.fetch_sub(1, Ordering::Relaxed);
            shared.fail(
                batch.lines,
                LogFailure {
                    path,
                    operation: "write",
                    message: error.to_string(),
                },
            );
        }
    }
}

/// LOG-3: create the directory recursively, then open for append (never truncate).
fn open_log(path: &Path) -> Result<File, (&'static str, io::Error)> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| ("mkdir", e))?;
        }
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| ("open", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chat-run-writer-{name}-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn barrier(writer: &LogWriter) {
        let (tx, rx) = mpsc::channel();
        writer.barrier(Box::new(move || {
            let _ = tx.send(());
        }));
        assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn log_3_and_5_lines_are_appended_in_order_and_files_never_truncated() {
        let dir = temp_dir("order");
        let path = dir.join("run").join("events.jsonl");
        std::fs::create_dir_all(dir.join("run")).unwrap_or(());
        std::fs::write(&path, "existing\n").unwrap_or(());
        let shared = Arc::new(LogShared::new(None));
        let writer = LogWriter::spawn(Arc::clone(&shared)).map_err(|e| e.to_string());
        let Ok(writer) = writer else {
            panic!("spawn failed")
        };
        let target = Arc::new(LogTarget {
            key: 1,
            path: path.clone(),
        });
        for i in 0..1000 {
            assert!(writer.append(&target, &Arc::from(format!("{{\"id\":{i}}}"))));
        }
        writer.close(1);
        barrier(&writer);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1001);
        assert_eq!(lines[0], "existing");
        assert_eq!(lines[1], "{\"id\":0}");
        assert_eq!(lines[1000], "{\"id\":999}");
        assert_eq!(shared.lines_written(), 1000);
        assert_eq!(shared.open_files(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_6_failures_are_counted_and_reported_once_and_the_next_line_retries() {
        let dir = temp_dir("fail");
        std::fs::create_dir_all(&dir).unwrap_or(());
        // A regular file where the run directory should be: mkdir fails.
        let blocker = dir.join("run");
        std::fs::write(&blocker, "not a dir").unwrap_or(());
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink_reports = Arc::clone(&reports);
        let shared = Arc::new(LogShared::new(Some(Box::new(move |f: LogFailure| {
            if let Ok(mut r) = sink_reports.lock() {
                r.push(f);
            }
        }))));
        let Ok(writer) = LogWriter::spawn(Arc::clone(&shared)) else {
            panic!("spawn failed")
        };
        let target = Arc::new(LogTarget {
            key: 7,
            path: blocker.join("events.jsonl"),
        });
        writer.append(&target, &Arc::from("{\"id\":1}"));
        barrier(&writer);
        writer.append(&target, &Arc::from("{\"id\":2}"));
        barrier(&writer);
        assert_eq!(shared.lines_failed(), 2);
        let reports = reports.lock().map(|r| r.clone()).unwrap_or_default();
        assert_eq!(reports.len(), 1, "reported once per service");
        assert_eq!(reports[0].operation, "mkdir");
        // Fix the directory: the next line is written.
        std::fs::remove_file(&blocker).unwrap_or(());
        writer.append(&target, &Arc::from("{\"id\":3}"));
        writer.close(7);
        barrier(&writer);
        let text = std::fs::read_to_string(blocker.join("events.jsonl")).unwrap_or_default();
        assert_eq!(text, "{\"id\":3}\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn barrier_runs_even_when_nothing_is_queued() {
        let shared = Arc::new(LogShared::new(None));
        let Ok(writer) = LogWriter::spawn(shared) else {
            panic!("spawn failed")
        };
        barrier(&writer);
    }
}
