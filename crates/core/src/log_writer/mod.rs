//! The JSONL appender: one background thread per service that writes every persisted
//! record to `<runsLogDir>/<runId>/events.jsonl`, off the JS thread.
//!
//! Commands arrive in emit order in a mailbox. The thread takes everything queued at once, groups
//! the lines of each file and appends them with one `write(2)` per file per batch, so a burst of
//! emits costs a few syscalls, and appends during a burst do not wake the thread one by one
//! (it polls every millisecond while busy and parks when idle). `Close` flushes and closes one file (IMP-1/IMP-2), `Barrier`
//! completes once everything queued before it is on the OS (IMP-4). Errors never reach the
//! emitter: they are counted and the first one of a service is reported through its sink.
//!
//! Resources are bounded ([`LogLimits`]): at most `max_open_files` descriptors per service
//! (least recently written files are closed and reopened for append when needed, so thousands
//! of concurrent runs never hit `EMFILE`), and at most `max_queued_bytes` of lines waiting for
//! the thread (what it has taken and is writing no longer counts, so one oversized line does
//! not hold back the lines after it: at most twice the cap, plus one such line, is held). At
//! that cap `append` waits up to `backpressure_wait` for room (the JS thread is
//! never blocked longer), then refuses the line: it is counted as dropped and reported, never
//! lost silently. The record itself stays in the run's in-memory history.

mod batch;
mod failure;
mod target;
mod writer_thread;

pub use batch::LogBatch;
pub use failure::{LogFailure, LogFailureCause, LogOperation};
pub use target::LogTarget;
use writer_thread::run_writer;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Receives the first failure of a service (see `LogShared`).
pub type FailureSink = Box<dyn Fn(LogFailure) + Send + Sync>;

/// The writer's resource bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Log files kept open at once, per service ([`open_files_budget`] by default).
    pub max_open_files: usize,
    /// Bytes of lines waiting for the writer thread to take them, per service.
    pub max_queued_bytes: usize,
    /// How long `append` may wait for room at the cap before it refuses the line.
    pub backpressure_wait: Duration,
}

/// Log files a service keeps open at most: 64, or an eighth of the process's file descriptor
/// limit when that is lower (at least 4). A process started with a low limit (`ulimit -n 100`)
/// would otherwise give most of its descriptors to the open journals and have none left for the
/// state files (LC-1), the index scan and hydrations (LC-2), or the host's own sockets. Read
/// when the service is created.
pub fn open_files_budget() -> usize {
    #[cfg(unix)]
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
        .filter(|&soft| soft != nix::sys::resource::RLIM_INFINITY);
    #[cfg(not(unix))]
    let limit: Option<u64> = None;
    budget_for(limit)
}

/// The most log files a service keeps open (BND-2).
const MOST_OPEN_FILES: usize = 64;

fn budget_for(descriptor_limit: Option<u64>) -> usize {
    descriptor_limit.map_or(MOST_OPEN_FILES, |limit| {
        usize::try_from(limit / 8)
            .map_or(MOST_OPEN_FILES, |eighth| eighth.clamp(4, MOST_OPEN_FILES))
    })
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_open_files: open_files_budget(),
            max_queued_bytes: 64 * 1024 * 1024,
            backpressure_wait: Duration::from_millis(10),
        }
    }
}

/// Counters and the error sink shared by a service and its writer thread.
pub struct LogShared {
    sink: Option<FailureSink>,
    reported: AtomicBool,
    lines_written: AtomicU64,
    lines_failed: AtomicU64,
    lines_dropped: AtomicU64,
    open_files: AtomicU64,
    /// Lines waiting for the writer thread (what the queue cap bounds).
    queued_bytes: AtomicUsize,
    queued_lines: AtomicUsize,
    /// Lines the writer thread took and has not written yet.
    writing_bytes: AtomicUsize,
    writing_lines: AtomicUsize,
    waiting: AtomicBool,
    /// Journals opened early that wait for the writer ([`LogTarget::open_early`]).
    early_open: Arc<AtomicUsize>,
    /// How many of those may wait at once: they add to the writer's own open journals, so
    /// they take no more than those may (the service sets it from its
    /// [`LogLimits::max_open_files`]; 64 until then).
    pub(crate) max_early_open: usize,
    room: Mutex<()>,
    room_freed: Condvar,
}

impl LogShared {
    pub fn new(sink: Option<FailureSink>) -> Self {
        Self {
            sink,
            reported: AtomicBool::new(false),
            lines_written: AtomicU64::new(0),
            lines_failed: AtomicU64::new(0),
            lines_dropped: AtomicU64::new(0),
            open_files: AtomicU64::new(0),
            queued_bytes: AtomicUsize::new(0),
            queued_lines: AtomicUsize::new(0),
            writing_bytes: AtomicUsize::new(0),
            writing_lines: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            early_open: Arc::new(AtomicUsize::new(0)),
            max_early_open: MOST_OPEN_FILES,
            room: Mutex::new(()),
            room_freed: Condvar::new(),
        }
    }

    /// Lines the writer appended to their files.
    pub fn lines_written(&self) -> u64 {
        self.lines_written.load(Ordering::Relaxed)
    }

    /// Lines lost to a disk error (mkdir, open or write failed).
    pub fn lines_failed(&self) -> u64 {
        self.lines_failed.load(Ordering::Relaxed)
    }

    /// Lines refused because the writer's queue stayed full (see [`LogLimits`]).
    pub fn lines_dropped(&self) -> u64 {
        self.lines_dropped.load(Ordering::Relaxed)
    }

    pub fn open_files(&self) -> u64 {
        self.open_files.load(Ordering::Relaxed)
    }

    /// Lines and bytes not written yet: waiting for the writer thread, or taken by it.
    pub fn queue_depth(&self) -> (usize, usize) {
        (
            self.queued_lines.load(Ordering::Relaxed) + self.writing_lines.load(Ordering::Relaxed),
            self.queued_bytes.load(Ordering::Relaxed) + self.writing_bytes.load(Ordering::Relaxed),
        )
    }

    /// Reports a failure if it is the service's first; `failure` is only built then (the
    /// queue-cap path runs on the JS thread, once per refused line).
    fn report(&self, failure: impl FnOnce() -> LogFailure) {
        if !self.reported.swap(true, Ordering::AcqRel) {
            if let Some(sink) = &self.sink {
                sink(failure());
            }
        }
    }

    /// Counts `lines` as lost and reports the failure (the first one of the service only).
    pub(crate) fn fail(&self, lines: u64, failure: impl FnOnce() -> LogFailure) {
        self.lines_failed.fetch_add(lines, Ordering::Relaxed);
        self.report(failure);
    }

    /// Lines that leave the queue unwritten (their command could not be queued).
    fn dequeued(&self, lines: usize, bytes: usize) {
        self.queued_lines.fetch_sub(lines, Ordering::Relaxed);
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.wake_waiters();
    }

    /// The writer thread took these lines: they no longer count against the cap, which bounds
    /// what waits (while the writer writes one oversized line, the lines after it can queue).
    fn taken(&self, lines: usize, bytes: usize) {
        if lines == 0 {
            return;
        }
        self.writing_lines.fetch_add(lines, Ordering::Relaxed);
        self.writing_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.dequeued(lines, bytes);
    }

    /// The writer thread is done with these lines (written or failed).
    fn written_out(&self, lines: usize, bytes: usize) {
        self.writing_lines.fetch_sub(lines, Ordering::Relaxed);
        self.writing_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn wake_waiters(&self) {
        if self.waiting.load(Ordering::Acquire) {
            let _guard = self.room.lock();
            self.room_freed.notify_all();
        }
    }

    /// Reserves room for `lines` lines of `bytes` in all, only when it is there now (never
    /// waits: a batch that does not fit goes line by line, through [`LogShared::reserve`]).
    fn reserve_now(&self, lines: usize, bytes: usize, cap: usize) -> bool {
        let queued = self.queued_bytes.load(Ordering::Acquire);
        if queued.saturating_add(bytes) > cap && queued != 0 {
            return false;
        }
        self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.queued_lines.fetch_add(lines, Ordering::Relaxed);
        true
    }

    /// Reserves room for `bytes`, waiting up to `wait` at the cap. False means no room.
    fn reserve(&self, bytes: usize, cap: usize, wait: Duration) -> bool {
        let fits = |queued: usize| queued.saturating_add(bytes) <= cap || queued == 0;
        if fits(self.queued_bytes.load(Ordering::Acquire)) {
            self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
            self.queued_lines.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let deadline = Instant::now() + wait;
        let Ok(mut guard) = self.room.lock() else {
            return false;
        };
        self.waiting.store(true, Ordering::Release);
        let mut ok = false;
        loop {
            if fits(self.queued_bytes.load(Ordering::Acquire)) {
                ok = true;
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.room_freed.wait_timeout(guard, deadline - now) {
                Ok((next, _)) => guard = next,
                Err(_) => return false,
            }
        }
        self.waiting.store(false, Ordering::Release);
        drop(guard);
        if ok {
            self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
            self.queued_lines.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

enum Command {
    /// One line, ready text without its newline.
    Append(Arc<LogTarget>, Arc<str>),
    /// The lines of a batch of emits, in order.
    Batch(LogBatch),
    /// Close the run's file (and drop a journal opened early that was not needed).
    Close(Arc<LogTarget>),
    /// Drop a file handle on the writer's thread (see [`LogWriter::release`]).
    Release(std::fs::File),
    Barrier(Box<dyn FnOnce() + Send>),
}

impl Command {
    /// The lines and bytes this command holds against the queue cap.
    fn queued(&self) -> (usize, usize) {
        match self {
            Command::Append(_, line) => (1, line.len() + 1),
            Command::Batch(batch) => (batch.len(), batch.bytes),
            _ => (0, 0),
        }
    }
}

/// How many files [`LogWriter::release`] lets wait for the writer at a time, at most: a quarter
/// of the service's budget of open journals (BND-2), so 16 under the default.
const MAX_RELEASING: usize = 16;

/// How long the writer keeps polling after it wrote something before it parks. While it
/// polls, appends do not wake it (a burst costs no futex call per line); once parked, the next
/// append wakes it at once. So a line reaches the OS within about this delay during a burst, and
/// at once after a quiet period.
const ACTIVE_POLL: Duration = Duration::from_millis(1);

/// The writer's command queue: a mutex-protected batch plus a condvar, woken only when needed.
struct Mailbox {
    state: Mutex<MailboxState>,
    ready: Condvar,
    /// Files handed to the writer by [`LogWriter::release`] that it has not closed yet.
    releasing: AtomicUsize,
}

struct MailboxState {
    queue: Vec<Command>,
    /// Batches the writer has written, handed back with their contents so that the JS thread
    /// drops their references and reuses their buffers ([`LogWriter::batch`]).
    spare: Vec<LogBatch>,
    parked: bool,
    closed: bool,
}

/// How many written batches wait to be reused.
const SPARE_BATCHES: usize = 4;

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, MailboxState> {
        // A panic while holding this lock cannot leave the queue inconsistent (push/take only).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a command; wakes the writer when it is parked or when `urgent`.
    fn push(&self, command: Command, urgent: bool) -> Result<(), Command> {
        let mut state = self.lock();
        if state.closed {
            return Err(command);
        }
        state.queue.push(command);
        let wake = urgent || state.parked;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Hands written batches back for reuse (at most [`SPARE_BATCHES`] wait; the rest are
    /// dropped here).
    fn give_back(&self, batches: &mut Vec<LogBatch>) {
        let mut state = self.lock();
        while state.spare.len() < SPARE_BATCHES {
            match batches.pop() {
                Some(batch) => state.spare.push(batch),
                None => break,
            }
        }
        drop(state);
        batches.clear();
    }

    fn take_spare(&self) -> Option<LogBatch> {
        self.lock().spare.pop()
    }

    /// The next batch, in order; `None` once closed and drained.
    fn take(&self, mut active: bool) -> Option<Vec<Command>> {
        let mut state = self.lock();
        loop {
            if !state.queue.is_empty() {
                return Some(std::mem::take(&mut state.queue));
            }
            if state.closed {
                return None;
            }
            if active {
                let (next, timeout) = self
                    .ready
                    .wait_timeout(state, ACTIVE_POLL)
                    .unwrap_or_else(PoisonError::into_inner);
                state = next;
                active = !timeout.timed_out();
            } else {
                state.parked = true;
                state = self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.parked = false;
            }
        }
    }
}

/// Handle to the writer thread. Dropping it lets the thread drain its queue and exit.
pub struct LogWriter {
    mailbox: Arc<Mailbox>,
    shared: Arc<LogShared>,
    limits: LogLimits,
    /// See [`MAX_RELEASING`].
    max_releasing: usize,
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

impl LogWriter {
    /// Starts the writer thread.
    pub fn spawn(shared: Arc<LogShared>, limits: LogLimits) -> io::Result<Self> {
        let mailbox = Arc::new(Mailbox {
            state: Mutex::new(MailboxState {
                queue: Vec::new(),
                spare: Vec::new(),
                parked: false,
                closed: false,
            }),
            ready: Condvar::new(),
            releasing: AtomicUsize::new(0),
        });
        let thread_mailbox = Arc::clone(&mailbox);
        let thread_shared = Arc::clone(&shared);
        let max_open = limits.max_open_files.max(1);
        thread::Builder::new()
            .name("chat-run-log".into())
            .spawn(move || run_writer(&thread_mailbox, &thread_shared, max_open))?;
        Ok(Self {
            mailbox,
            shared,
            max_releasing: (limits.max_open_files / 4).clamp(1, MAX_RELEASING),
            limits,
        })
    }

    /// Queues one line (without its trailing newline). False when the line was refused (queue
    /// full past the backpressure wait, or the thread is gone); the refusal is counted.
    pub fn append(&self, target: &Arc<LogTarget>, line: &Arc<str>) -> bool {
        let bytes = line.len() + 1;
        if !self.reserve_or_report(target, 1, bytes) {
            return false;
        }
        if self
            .mailbox
            .push(Command::Append(Arc::clone(target), Arc::clone(line)), false)
            .is_err()
        {
            self.shared.dequeued(1, bytes);
            self.shared.lines_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Room in the queue for `lines` lines of `bytes` bytes, waiting up to the backpressure
    /// wait; when there is none, the lines are counted as dropped and reported.
    fn reserve_or_report(&self, target: &LogTarget, lines: usize, bytes: usize) -> bool {
        let limits = &self.limits;
        if self
            .shared
            .reserve(bytes, limits.max_queued_bytes, limits.backpressure_wait)
        {
            return true;
        }
        self.shared
            .lines_dropped
            .fetch_add(lines as u64, Ordering::Relaxed);
        self.shared.report(|| LogFailure {
            path: target.path.clone(),
            operation: LogOperation::Queue,
            cause: LogFailureCause::QueueFull {
                queued_bytes: self.shared.queued_bytes.load(Ordering::Relaxed),
                cap: limits.max_queued_bytes,
                wait: limits.backpressure_wait,
            },
        });
        false
    }

    /// An empty batch to fill, reusing one the writer has written when there is one (its
    /// references are dropped here, on the thread that took them).
    pub fn batch(&self) -> LogBatch {
        let mut batch = self.mailbox.take_spare().unwrap_or_default();
        batch.clear();
        batch
    }

    /// Queues the lines of a batch of emits (BND-6), in order: as one command when they fit
    /// under the queue cap now, else line by line, each with the cap's wait and accounting
    /// (as [`LogWriter::append`] would).
    pub fn append_batch(&self, batch: LogBatch) {
        let (count, bytes) = (batch.len(), batch.bytes);
        if count == 0 {
            return;
        }
        if self
            .shared
            .reserve_now(count, bytes, self.limits.max_queued_bytes)
        {
            if self.mailbox.push(Command::Batch(batch), false).is_err() {
                self.shared.dequeued(count, bytes);
                self.shared
                    .lines_dropped
                    .fetch_add(count as u64, Ordering::Relaxed);
            }
            return;
        }
        let mut text = String::new();
        for line in batch.parts() {
            text.clear();
            crate::history::write_line(&mut text, line.id, line.event, line.data, line.timestamp);
            self.append(line.target, &Arc::from(text.as_str()));
        }
    }

    /// Queues the close of a run's file, after every line queued before it.
    pub fn close(&self, target: &Arc<LogTarget>) {
        let _ = self.mailbox.push(Command::Close(Arc::clone(target)), false);
    }

    /// Closes `file` on the writer's thread instead of the caller's: the last handle of a
    /// replaced `state.json`'s old content, whose blocks the file system frees at that close
    /// (`durable::write_state_file`). Closed at once when the thread is gone.
    ///
    /// At most `max_releasing` ([`MAX_RELEASING`]) wait at a time: past that (a burst of terminal writes while
    /// the writer is busy) the file is closed here, so held handles never crowd out the
    /// descriptors the journals need.
    pub fn release(&self, file: std::fs::File) {
        let releasing = &self.mailbox.releasing;
        if releasing.fetch_add(1, Ordering::Relaxed) >= self.max_releasing {
            releasing.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        if self.mailbox.push(Command::Release(file), false).is_err() {
            // (The command came back and was dropped: the file is closed here.)
            releasing.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Calls `done` once every command queued before it has been carried out.
    /// If the thread is gone, `done` runs at once (there is nothing left to wait for).
    pub fn barrier(&self, done: Box<dyn FnOnce() + Send>) {
        if let Err(Command::Barrier(done)) = self.mailbox.push(Command::Barrier(done), true) {
            done();
        }
    }

    /// Blocks until every command queued so far is carried out, or `timeout` passes.
    /// Returns false on timeout. Used before reading a log back (IMP-3), where the lines just
    /// evicted from memory may still be queued.
    pub fn sync(&self, timeout: Duration) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// Starts a writer thread for a test; a test cannot go on without one.
    fn spawn(shared: Arc<LogShared>, limits: LogLimits) -> LogWriter {
        match LogWriter::spawn(shared, limits) {
            Ok(writer) => writer,
            Err(error) => panic!("the log writer thread did not start: {error}"),
        }
    }

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
        let writer = spawn(Arc::clone(&shared), LogLimits::default());
        let target = Arc::new(LogTarget::new(1, path.clone()));
        for i in 0..1000 {
            assert!(writer.append(&target, &Arc::from(format!("{{\"id\":{i}}}"))));
        }
        writer.close(&target);
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
    fn log_3_a_torn_last_line_is_ended_before_the_first_append() {
        let dir = temp_dir("torn");
        let path = dir.join("run").join("events.jsonl");
        std::fs::create_dir_all(dir.join("run")).unwrap_or(());
        // What a crash mid-write (or a full disk) can leave: a last line without its newline.
        std::fs::write(&path, "{\"id\":1}\n{\"id\":2,\"ev").unwrap_or(());
        let shared = Arc::new(LogShared::new(None));
        let writer = spawn(Arc::clone(&shared), LogLimits::default());
        let target = Arc::new(LogTarget::new(1, path.clone()));
        assert!(writer.append(&target, &Arc::from("{\"id\":3}")));
        // Closed and reopened: the check is made once per target, not again.
        writer.close(&target);
        assert!(writer.append(&target, &Arc::from("{\"id\":4}")));
        writer.close(&target);
        barrier(&writer);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(text, "{\"id\":1}\n{\"id\":2,\"ev\n{\"id\":3}\n{\"id\":4}\n");
        assert_eq!(shared.lines_written(), 2);
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
        let writer = spawn(Arc::clone(&shared), LogLimits::default());
        let target = Arc::new(LogTarget::new(7, blocker.join("events.jsonl")));
        writer.append(&target, &Arc::from("{\"id\":1}"));
        barrier(&writer);
        writer.append(&target, &Arc::from("{\"id\":2}"));
        barrier(&writer);
        assert_eq!(shared.lines_failed(), 2);
        let reports = reports.lock().map(|r| r.clone()).unwrap_or_default();
        assert_eq!(reports.len(), 1, "reported once per service");
        assert_eq!(reports[0].operation, LogOperation::CreateDir);
        let message = reports[0].to_string();
        assert!(
            message.starts_with(&format!(
                "could not mkdir the run event log {}: ",
                blocker.join("events.jsonl").display()
            )),
            "{message}"
        );
        assert!(message.ends_with(
            " (events still reach clients and memory; further log errors of this service are only counted)"
        ));
        // Fix the directory: the next line is written.
        std::fs::remove_file(&blocker).unwrap_or(());
        writer.append(&target, &Arc::from("{\"id\":3}"));
        writer.close(&target);
        barrier(&writer);
        let text = std::fs::read_to_string(blocker.join("events.jsonl")).unwrap_or_default();
        assert_eq!(text, "{\"id\":3}\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_6_a_run_directory_removed_after_it_existed_is_not_created_again() {
        let dir = temp_dir("vanished");
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap_or(());
        let shared = Arc::new(LogShared::new(None));
        let writer = spawn(Arc::clone(&shared), LogLimits::default());
        let target = Arc::new(LogTarget::new(3, run.join("events.jsonl")));
        writer.append(&target, &Arc::from("{\"id\":1}"));
        writer.close(&target);
        barrier(&writer);
        assert_eq!(shared.lines_written(), 1);
        // Removed by someone else while the file is closed: the next line fails, no directory.
        std::fs::remove_dir_all(&run).unwrap_or(());
        writer.append(&target, &Arc::from("{\"id\":2}"));
        writer.close(&target);
        barrier(&writer);
        assert!(!run.exists(), "the directory is not brought back");
        assert_eq!(shared.lines_failed(), 1);
        // A directory that never existed is still created (LOG-3).
        let fresh = Arc::new(LogTarget::new(4, dir.join("fresh").join("events.jsonl")));
        writer.append(&fresh, &Arc::from("{\"id\":1}"));
        writer.close(&fresh);
        barrier(&writer);
        assert_eq!(
            std::fs::read_to_string(dir.join("fresh").join("events.jsonl")).unwrap_or_default(),
            "{\"id\":1}\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Windows only: there another program can open a file without sharing it.
    #[cfg(windows)]
    #[test]
    fn log_6_a_journal_another_program_holds_unshared_for_a_moment_loses_no_line() {
        use std::os::windows::fs::OpenOptionsExt;
        let dir = temp_dir("held-journal");
        let path = dir.join("events.jsonl");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, "").unwrap();
        let shared = Arc::new(LogShared::new(None));
        let writer = spawn(Arc::clone(&shared), LogLimits::default());
        for n in 1..=5 {
            // A virus scanner: share mode 0 for 10 ms, while the writer (re)opens the journal.
            let held = std::fs::OpenOptions::new()
                .read(true)
                .share_mode(0)
                .open(&path)
                .unwrap();
            let scanner = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                drop(held);
            });
            let target = Arc::new(LogTarget::new(n, path.clone()));
            writer.append(&target, &Arc::from(format!("{{\"id\":{n}}}").as_str()));
            writer.close(&target);
            barrier(&writer);
            scanner.join().unwrap();
        }
        assert_eq!((shared.lines_written(), shared.lines_failed()), (5, 0));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(text.lines().count(), 5, "{text}");
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // (Unix only: Windows removes no directory while a file in it is open, so there the host
    // cannot remove the directory under the journal this test holds open.)
    #[cfg(unix)]
    #[test]
    fn log_3_a_journal_opened_early_is_written_through_after_its_directory_is_removed() {
        let dir = temp_dir("early");
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap_or(());
        let shared = Arc::new(LogShared::new(None));
        let writer = spawn(Arc::clone(&shared), LogLimits::default());
        let target = Arc::new(LogTarget::new(5, run.join("events.jsonl")));
        target.open_early(&shared);
        assert!(
            target.path.is_file(),
            "the journal exists once open_early returns"
        );
        assert_eq!(shared.early_open.load(Ordering::Relaxed), 1);
        // The host removes the directory before the writer got to the line.
        std::fs::remove_dir_all(&run).unwrap_or(());
        writer.append(&target, &Arc::from("{\"id\":1}"));
        writer.close(&target);
        barrier(&writer);
        assert!(!run.exists(), "nothing is created again");
        assert_eq!((shared.lines_written(), shared.lines_failed()), (1, 0));
        assert_eq!(shared.early_open.load(Ordering::Relaxed), 0);
        // A file the writer did not need is closed with the run's log; a created journal is not
        // opened again.
        let other = Arc::new(LogTarget::new(6, dir.join("other").join("events.jsonl")));
        other.open_early(&shared);
        assert!(other.created());
        other.open_early(&shared);
        assert_eq!(shared.early_open.load(Ordering::Relaxed), 1);
        writer.close(&other);
        barrier(&writer);
        assert_eq!(shared.early_open.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_3_past_the_early_descriptors_a_closed_runs_journal_is_still_created_before_close_returns(
    ) {
        let dir = temp_dir("early-cap");
        let shared = Arc::new(LogShared::new(None));
        // The writer is not started: every journal waits for it, as in a burst of finishes.
        let targets: Vec<Arc<LogTarget>> = (0..80)
            .map(|n| {
                let target = Arc::new(LogTarget::new(
                    n,
                    dir.join(n.to_string()).join("events.jsonl"),
                ));
                target.open_early(&shared);
                target
            })
            .collect();
        assert_eq!(
            shared.early_open.load(Ordering::Relaxed),
            shared.max_early_open.min(80),
            "held open"
        );
        for target in &targets {
            assert!(target.path.is_file(), "{}", target.path.display());
            assert!(target.created());
        }
        drop(targets);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_queue_cap_report_says_what_was_lost_and_why() {
        let failure = LogFailure {
            path: PathBuf::from("/logs/r/events.jsonl"),
            operation: LogOperation::Queue,
            cause: LogFailureCause::QueueFull {
                queued_bytes: 70,
                cap: 64,
                wait: Duration::from_millis(10),
            },
        };
        assert_eq!(
            failure.to_string(),
            "could not queue the run event log /logs/r/events.jsonl: the log writer fell 70 bytes \
             behind (cap 64) for longer than 10ms; the line stays in memory but is not persisted \
             (events still reach clients and memory; further log errors of this service are only \
             counted)"
        );
        assert_eq!(
            LogOperation::StartWriter.to_string(),
            "start a writer thread for"
        );
    }

    #[test]
    fn barrier_runs_even_when_nothing_is_queued() {
        let shared = Arc::new(LogShared::new(None));
        let writer = spawn(shared, LogLimits::default());
        barrier(&writer);
    }

    #[test]
    fn released_files_are_closed_by_the_writer_and_never_more_than_the_cap_wait() {
        let dir = temp_dir("release");
        std::fs::create_dir_all(&dir).unwrap();
        let shared = Arc::new(LogShared::new(None));
        let writer = spawn(shared, LogLimits::default());
        // The writer is held inside a barrier until `go` is sent.
        let (go, wait) = mpsc::channel::<()>();
        writer.barrier(Box::new(move || {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }));
        let files: Vec<std::fs::File> = (0..MAX_RELEASING + 8)
            .map(|i| std::fs::File::create(dir.join(i.to_string())).unwrap())
            .collect();
        for file in files {
            writer.release(file);
        }
        // The first MAX_RELEASING wait for the writer; the rest were closed at once.
        assert_eq!(
            writer.mailbox.releasing.load(Ordering::Relaxed),
            MAX_RELEASING
        );
        go.send(()).unwrap();
        assert!(writer.sync(Duration::from_secs(10)));
        assert_eq!(writer.mailbox.releasing.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_3_a_journal_the_cap_closed_is_not_created_again_once_removed() {
        let dir = temp_dir("closed-evicted");
        let shared = Arc::new(LogShared::new(None));
        let limits = LogLimits {
            max_open_files: 1,
            ..LogLimits::default()
        };
        let writer = spawn(Arc::clone(&shared), limits);
        let ended = Arc::new(LogTarget::new(1, dir.join("ended").join("events.jsonl")));
        let other = Arc::new(LogTarget::new(2, dir.join("other").join("events.jsonl")));
        writer.append(&ended, &Arc::from("{\"id\":1}"));
        assert!(writer.sync(Duration::from_secs(10)));
        // The other run's line takes the one descriptor: the ended run's journal is closed.
        writer.append(&other, &Arc::from("{\"id\":1}"));
        assert!(writer.sync(Duration::from_secs(10)));
        // Its log is closed (finish) while a line is on its way, and the host removes the file.
        std::fs::remove_file(&ended.path).unwrap_or(());
        writer.append(&ended, &Arc::from("{\"id\":2}"));
        writer.close(&ended);
        barrier(&writer);
        assert!(
            !ended.path.exists(),
            "the removed journal is not created again"
        );
        assert_eq!(shared.lines_failed(), 1);
        // A journal that still exists is reopened and appended to as before.
        let kept = Arc::new(LogTarget::new(3, dir.join("kept").join("events.jsonl")));
        writer.append(&kept, &Arc::from("{\"id\":1}"));
        assert!(writer.sync(Duration::from_secs(10)));
        writer.append(&other, &Arc::from("{\"id\":2}"));
        assert!(writer.sync(Duration::from_secs(10)));
        writer.append(&kept, &Arc::from("{\"id\":2}"));
        writer.close(&kept);
        barrier(&writer);
        assert_eq!(
            std::fs::read_to_string(&kept.path).unwrap_or_default(),
            "{\"id\":1}\n{\"id\":2}\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn open_files_stay_under_the_cap_and_evicted_files_are_reopened_for_append() {
        let dir = temp_dir("lru");
        let shared = Arc::new(LogShared::new(None));
        let limits = LogLimits {
            max_open_files: 4,
            ..LogLimits::default()
        };
        let writer = spawn(Arc::clone(&shared), limits);
        let targets: Vec<Arc<LogTarget>> = (0..40)
            .map(|key| {
                Arc::new(LogTarget::new(
                    key,
                    dir.join(key.to_string()).join("events.jsonl"),
                ))
            })
            .collect();
        for round in 0..5 {
            for target in &targets {
                writer.append(target, &Arc::from(format!("{{\"id\":{round}}}")));
                if round % 2 == 0 {
                    // Force separate batches so files rotate through the cap.
                    writer.sync(Duration::from_secs(10));
                }
                assert!(shared.open_files() <= 4);
            }
        }
        writer.sync(Duration::from_secs(10));
        assert!(shared.open_files() <= 4);
        for target in &targets {
            let text = std::fs::read_to_string(&target.path).unwrap_or_default();
            let ids: Vec<&str> = text.lines().collect();
            assert_eq!(
                ids,
                vec![
                    "{\"id\":0}",
                    "{\"id\":1}",
                    "{\"id\":2}",
                    "{\"id\":3}",
                    "{\"id\":4}"
                ]
            );
        }
        assert_eq!(shared.lines_written(), 200);
        assert_eq!(shared.queue_depth(), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_queue_waits_briefly_then_refuses_and_counts_the_line() {
        let shared = Arc::new(LogShared::new(None));
        // Fill the queue by hand so the writer thread has nothing to drain.
        assert!(shared.reserve(100, 100, Duration::ZERO));
        let start = Instant::now();
        assert!(!shared.reserve(10, 100, Duration::from_millis(20)));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(20), "waited {waited:?}");
        assert!(waited < Duration::from_secs(2));
        // Room freed by the writer wakes a waiter.
        let freer = Arc::clone(&shared);
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            freer.dequeued(1, 100);
        });
        assert!(shared.reserve(10, 100, Duration::from_secs(5)));
        let _ = handle.join();
        assert_eq!(shared.queue_depth(), (1, 10));
    }

    #[test]
    fn bnd_3_lines_after_an_oversized_line_queue_while_the_writer_writes_it() {
        let dir = temp_dir("oversized");
        let path = dir.join("run").join("events.jsonl");
        let shared = Arc::new(LogShared::new(None));
        // A cap far below the line and no wait at all: the small lines get in only because the
        // line the writer took no longer counts against the cap.
        let limits = LogLimits {
            max_queued_bytes: 1024 * 1024,
            backpressure_wait: Duration::ZERO,
            ..LogLimits::default()
        };
        let writer = spawn(Arc::clone(&shared), limits);
        let target = Arc::new(LogTarget::new(1, path.clone()));
        let big = format!("{{\"id\":1,\"data\":\"{}\"}}", "x".repeat(64 * 1024 * 1024));
        assert!(writer.append(&target, &Arc::from(big.as_str())));
        let start = Instant::now();
        while shared.writing_bytes.load(Ordering::Relaxed) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the writer never took the line"
            );
            thread::yield_now();
        }
        // Still not on disk (writing 64 MiB takes far longer than this), yet the queue has room.
        for id in 2..=11 {
            assert!(writer.append(&target, &Arc::from(format!("{{\"id\":{id}}}"))));
        }
        writer.close(&target);
        barrier(&writer);
        assert_eq!(shared.lines_dropped(), 0);
        assert_eq!(shared.lines_written(), 11);
        assert_eq!(shared.queue_depth(), (0, 0));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[1], "{\"id\":2}");
        assert_eq!(lines[10], "{\"id\":11}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bnd_6_a_batch_of_lines_is_queued_in_order_and_goes_line_by_line_at_the_cap() {
        let dir = temp_dir("batch");
        let shared = Arc::new(LogShared::new(None));
        let limits = LogLimits {
            max_queued_bytes: 256,
            backpressure_wait: Duration::ZERO,
            ..LogLimits::default()
        };
        let writer = spawn(Arc::clone(&shared), limits);
        let targets = [1, 2].map(|key| {
            Arc::new(LogTarget::new(
                key,
                dir.join(format!("run-{key}")).join("events.jsonl"),
            ))
        });
        let batch_of = |ids: std::ops::RangeInclusive<u64>| {
            let mut batch = LogBatch::default();
            for id in ids {
                // Both files interleaved, as emits of two runs are.
                let target = &targets[(id % 2) as usize];
                let data = format!("[{id}]");
                let event = (id % 3 != 0).then_some("\"e\"");
                let mut line = String::new();
                crate::history::write_line(&mut line, id, event, Some(&data), 5.0);
                batch.push(target, id, event, Some(&data), 5.0, line.len());
            }
            batch
        };
        // Fits under the cap: one command, each file's lines in order.
        writer.append_batch(batch_of(1..=3));
        writer.sync(Duration::from_secs(10));
        // Thirty lines of about 40 bytes do not fit under 256 at once: line by line, each
        // reserved when there is room (an empty queue always takes one), none reordered.
        writer.append_batch(batch_of(4..=33));
        writer.close(&targets[0]);
        writer.close(&targets[1]);
        writer.sync(Duration::from_secs(10));
        let mut written = 0;
        for (parity, target) in targets.iter().enumerate() {
            let text = std::fs::read_to_string(&target.path).unwrap_or_default();
            let ids: Vec<u64> = text
                .lines()
                .map(|line| {
                    let value: serde_json::Value = serde_json::from_str(line).unwrap();
                    let id = value["id"].as_u64().unwrap();
                    assert_eq!(value["data"], serde_json::json!([id]));
                    assert_eq!(value["event"].is_string(), id % 3 != 0, "{line}");
                    id
                })
                .collect();
            assert!(ids.iter().all(|id| id % 2 == parity as u64), "{ids:?}");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
            written += ids.len();
        }
        let refused = shared.lines_dropped() as usize;
        assert_eq!(written + refused, 33, "every line written or counted");
        assert!(written >= 3, "the first batch fits");
        assert_eq!(shared.queue_depth(), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bnd_2_the_open_journals_take_at_most_an_eighth_of_the_descriptor_limit() {
        assert_eq!(budget_for(None), 64);
        assert_eq!(budget_for(Some(1_048_576)), 64);
        assert_eq!(budget_for(Some(1024)), 64);
        assert_eq!(budget_for(Some(256)), 32);
        assert_eq!(budget_for(Some(100)), 12);
        assert_eq!(budget_for(Some(16)), 4);
        assert_eq!(budget_for(Some(0)), 4);
        assert!((4..=64).contains(&open_files_budget()));
    }
}
