//! A run's journal as the service and the writer thread share it: its path, what is known about
//! its directory and its last line, and the journal opened on the JS thread when a run's log is
//! closed before the writer created the file (LOG-3).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{writer_thread, LogOperation, LogShared};

/// One run's log file. Aligned to a cache line of its own: the writer thread reads it while the
/// JS thread counts references to it for every line it queues, and the counts (at the start of
/// the `Arc`'s allocation) then stay on another line than the fields the writer reads.
#[repr(align(64))]
pub struct LogTarget {
    pub key: u64,
    pub path: PathBuf,
    /// Set once the directory is known to exist, so reopening a file the descriptor cap
    /// closed costs one `open(2)` and no `mkdir` walk.
    pub dir_ready: AtomicBool,
    /// Set once the writer made sure the file ends with a whole line (its first write to it:
    /// a crash or a full disk may have left a torn last line). Cleared when a failed write
    /// could not be taken back, so the next write checks again.
    pub tail_whole: AtomicBool,
    /// Set once the journal was opened by the writer or by [`LogTarget::open_early`]: the file
    /// exists (unless someone removed it since).
    pub(super) created: AtomicBool,
    /// The journal [`LogTarget::open_early`] opened, until the writer takes it.
    early: Mutex<Option<EarlyFile>>,
}

/// A journal opened on the JS thread, counted while it waits for the writer.
struct EarlyFile {
    file: Option<std::fs::File>,
    waiting: Arc<AtomicUsize>,
}

impl Drop for EarlyFile {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LogTarget {
    pub fn new(key: u64, path: PathBuf) -> Self {
        Self {
            key,
            path,
            dir_ready: AtomicBool::new(false),
            tail_whole: AtomicBool::new(false),
            created: AtomicBool::new(false),
            early: Mutex::new(None),
        }
    }

    /// Whether the journal was created (opened by the writer or early).
    pub fn created(&self) -> bool {
        self.created.load(Ordering::Acquire)
    }

    /// LOG-3: creates (opens) the journal on the calling thread and leaves the descriptor for
    /// the writer to write through. The service calls it when it closes a run's log (`finish`,
    /// `drop`) and the writer has not created the file yet (a run that ends right after its
    /// first line): then nothing creates a file in the run's directory after that call returned,
    /// so a host that removes the directory at once (a test's cleanup, a conversation deleted)
    /// never races with a file appearing in it (`ENOTEMPTY`), and the lines still on their way
    /// go to the unlinked file without an error, as an upstream write stream's do. A failure
    /// here is left to the writer, which tries the open again and reports it.
    ///
    /// At most [`LogShared::max_early_open`] such descriptors wait per service (the service's
    /// budget of open journals, BND-2); past that (a burst of runs ending before the writer
    /// reaches them) the file is still created here, and closed:
    /// the directory still holds every file it will hold, and the writer opens the file again
    /// for its lines (which then fail, counted, if the host removed it meanwhile).
    ///
    /// The check and the open happen under the same lock as the writer's own first open
    /// ([`LogTarget::open_for_writer`]): a writer that found the journal not yet created and is
    /// about to create it either finishes before this returns, or sees it created and opens it
    /// without creating it. (Without the lock, its create could land after this returned and
    /// after the host emptied the directory: `ENOTEMPTY` for the host's removal, seen once in
    /// 200,000 runs removed right after `finish`.)
    pub fn open_early(&self, shared: &LogShared) {
        let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
        if self.created() {
            return;
        }
        if let Ok(file) = writer_thread::open_log(self) {
            if shared.early_open.load(Ordering::Relaxed) < shared.max_early_open {
                shared.early_open.fetch_add(1, Ordering::Relaxed);
                *early = Some(EarlyFile {
                    file: Some(file),
                    waiting: Arc::clone(&shared.early_open),
                });
            }
            self.created.store(true, Ordering::Release);
        }
    }

    /// The writer's first open of the journal: the file opened early if one waits, else the
    /// journal opened (created unless it was created before, see [`writer_thread::open_log`]),
    /// under the lock [`LogTarget::open_early`] takes.
    pub(super) fn open_for_writer(&self) -> Result<std::fs::File, (LogOperation, std::io::Error)> {
        let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
        // (Dropping the `EarlyFile` uncounts it.)
        if let Some(file) = early.take().and_then(|mut waiting| waiting.file.take()) {
            return Ok(file);
        }
        let file = writer_thread::open_log(self)?;
        self.created.store(true, Ordering::Release);
        Ok(file)
    }

    /// `prepareRestart`: the journal may be created again by the next attempt's lines.
    pub fn reopen(&self) {
        self.created.store(false, Ordering::Release);
    }

    /// The journal opened early, if it still waits (the writer takes it when it needs the file,
    /// and drops it at the run's `Close`).
    pub(super) fn take_early(&self) -> Option<std::fs::File> {
        let mut early = self
            .early
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        // (`early` is dropped here, which uncounts it.)
        early.file.take()
    }
}
