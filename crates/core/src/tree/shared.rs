//! The machine's process table as a service uses it ([`SharedTable`]): scans are expensive
//! (every process's stat file), so a shutdown pins one for its synchronous loop and the waits'
//! discovery polls share recent ones.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Handle, Kill, ProcId, ProcInfo, ProcessTable, Sent, System};

/// How long one full scan serves the discovery polls of the waits ([`super::Tree::alive`]): while a
/// shutdown waits on many runs, their polls fire in the same timer batch and share one scan.
/// Discovery reads it (a process forked inside the window is found by the next poll, and a
/// group with a member but nothing alive in the scan is followed by a read of the processes
/// born since), and so does the first read of a SIGKILL step's freeze (the group is stopped as
/// a whole, and the freeze's later reads come after the stop); captures at attach and at the
/// other signal steps scan afresh, and whether a captured process is gone is always asked of
/// the OS directly.
pub const SNAPSHOT_REUSE: Duration = Duration::from_millis(10);

/// The machine's process table ([`System`]) as a service uses it: fresh scans, except that
/// a shutdown pins one scan for the synchronous loop that starts every run's teardown (one
/// scan instead of one per run), and the waits' discovery polls share scans for
/// [`SNAPSHOT_REUSE`]. One per service (per-environment state, never a static); clones share.
#[derive(Clone, Debug, Default)]
pub struct SharedTable {
    cache: Arc<Mutex<Scans>>,
}

#[derive(Debug, Default)]
struct Scans {
    pin: Pin,
    recent: Option<(Instant, Vec<ProcInfo>)>,
}

/// Whether a shutdown's scan is in force.
#[derive(Debug, Default)]
enum Pin {
    #[default]
    Off,
    /// Pinned, not scanned yet: the first capture scans (a shutdown whose runs have no child
    /// never reads the process table).
    Armed,
    Taken(Vec<ProcInfo>),
}

impl Scans {
    /// The pinned scan, taken now if the pin is armed; None when nothing is pinned.
    fn pinned(&mut self) -> Option<Vec<ProcInfo>> {
        match &self.pin {
            Pin::Off => None,
            Pin::Taken(procs) => Some(procs.clone()),
            Pin::Armed => {
                let procs = System.snapshot();
                self.pin = Pin::Taken(procs.clone());
                Some(procs)
            }
        }
    }
}

impl SharedTable {
    /// From now until [`SharedTable::unpin`], every capture uses one scan, taken by the first.
    pub fn pin(&self) {
        if let Ok(mut scans) = self.cache.lock() {
            scans.pin = Pin::Armed;
        }
    }

    /// Back to fresh scans.
    pub fn unpin(&self) {
        if let Ok(mut scans) = self.cache.lock() {
            scans.pin = Pin::Off;
        }
    }
}

impl ProcessTable for SharedTable {
    fn snapshot(&self) -> Vec<ProcInfo> {
        if let Ok(mut scans) = self.cache.lock() {
            if let Some(pinned) = scans.pinned() {
                return pinned;
            }
        }
        System.snapshot()
    }
    fn recent_snapshot(&self) -> Vec<ProcInfo> {
        let Ok(mut scans) = self.cache.lock() else {
            return System.snapshot();
        };
        if let Some(pinned) = scans.pinned() {
            return pinned;
        }
        if let Some((taken, procs)) = scans.recent.as_ref() {
            if taken.elapsed() <= SNAPSHOT_REUSE {
                return procs.clone();
            }
        }
        let procs = System.snapshot();
        scans.recent = Some((Instant::now(), procs.clone()));
        procs
    }
    fn fresh_snapshot(&self) -> Vec<ProcInfo> {
        System.snapshot()
    }
    fn processes_since(&self, known: &[ProcInfo]) -> Vec<ProcInfo> {
        System.processes_since(known)
    }
    fn descendants(&self, roots: &[ProcId]) -> Option<Vec<ProcInfo>> {
        System.descendants(roots)
    }
    fn probe(&self, pid: i32) -> Option<ProcInfo> {
        System.probe(pid)
    }
    fn signal(&self, id: ProcId, kill: Kill) -> Sent {
        System.signal(id, kill)
    }
    fn signal_group(&self, pgid: i32, kill: Kill) -> bool {
        System.signal_group(pgid, kill)
    }
    fn stop(&self, id: ProcId) -> Sent {
        System.stop(id)
    }
    fn stop_group(&self, pgid: i32) -> bool {
        System.stop_group(pgid)
    }
    fn own_pid(&self) -> i32 {
        System.own_pid()
    }
    fn group_exists(&self, pgid: i32) -> bool {
        System.group_exists(pgid)
    }
    fn open_handle(&self, pid: i32) -> Option<Handle> {
        System.open_handle(pid)
    }
    fn handle_alive(&self, handle: &Handle) -> bool {
        System.handle_alive(handle)
    }
    fn handle_signal(&self, handle: &Handle, kill: Kill) -> Sent {
        System.handle_signal(handle, kill)
    }
}
