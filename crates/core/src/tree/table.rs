//! The operating system's process table, as a run's tree needs it: the identity of a process
//! ([`ProcId`]) and what a scan says of it ([`ProcInfo`]), the [`ProcessTable`] trait the tree
//! is written against (so its logic is tested with a scripted table, `tests.rs`) and
//! [`System`], the real table of this machine over the per-OS modules.

#[cfg(target_os = "linux")]
use std::sync::Arc;

#[cfg(target_os = "linux")]
use super::linux;
use super::os;

/// One process, as it can be told apart from any later process with the same pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcId {
    pub pid: i32,
    /// When it started, in the OS's own unit (Linux: clock ticks since boot; macOS: µs since
    /// the epoch; Windows: the creation FILETIME).
    pub start: u64,
}

/// What the process table says about one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub id: ProcId,
    pub ppid: i32,
    /// Its process group (0 where there are none).
    pub pgrp: i32,
    /// Running, sleeping or stopped: not a zombie and not dead.
    pub alive: bool,
    /// Stopped (SIGSTOP): it cannot fork until it is continued (see `freeze`).
    pub stopped: bool,
}

/// The two signals a teardown sends. On Windows both terminate the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    Term,
    Kill,
}

/// The outcome of signalling one process by identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The signal reached the captured process.
    Delivered,
    /// The captured process is gone (exited, or its pid now belongs to another process):
    /// nothing was sent.
    Gone,
    /// It is alive but the signal could not be sent (EPERM, or no way to signal here).
    Failed,
}

/// A handle on one process that can never come to mean another one (Linux: a pidfd). The tree
/// holds one for its captured child: whether the child is alive, and signalling it, then cost
/// one syscall each instead of a read of `/proc/<pid>/stat`.
#[derive(Clone, Debug)]
pub struct Handle {
    #[cfg(target_os = "linux")]
    fd: Arc<std::os::fd::OwnedFd>,
}

/// The operating system's process table, as the tree needs it.
pub trait ProcessTable {
    /// Every process there is.
    fn snapshot(&self) -> Vec<ProcInfo>;
    /// One process, by pid.
    fn probe(&self, pid: i32) -> Option<ProcInfo>;
    /// Sends `kill` to the process `id`, only if it is still that process.
    fn signal(&self, id: ProcId, kill: Kill) -> Sent;
    /// Sends `kill` to a whole process group (already verified by the caller).
    fn signal_group(&self, pgid: i32, kill: Kill) -> bool;
    /// This process's pid.
    fn own_pid(&self) -> i32;
    /// Stops the process `id` (SIGSTOP), only if it is still that process. `Failed` where
    /// processes cannot be stopped: the teardown then goes on without the freeze. (No default:
    /// a wrapper that forgot to pass it on would silently turn the freeze off.)
    fn stop(&self, id: ProcId) -> Sent;
    /// Stops a whole process group (already verified by the caller).
    fn stop_group(&self, pgid: i32) -> bool;
    /// Every process there is, read now: what decides that something survived never comes
    /// from a shared snapshot (see [`SharedTable`]).
    fn fresh_snapshot(&self) -> Vec<ProcInfo> {
        self.snapshot()
    }
    /// A scan that may be shared with other recent requests (discovery only).
    fn recent_snapshot(&self) -> Vec<ProcInfo> {
        self.snapshot()
    }
    /// The processes there are now whose pid `known` (an earlier scan) does not list, read
    /// now (Linux: one listing of the table and a read of each new process only).
    fn processes_since(&self, known: &[ProcInfo]) -> Vec<ProcInfo> {
        self.fresh_snapshot()
            .into_iter()
            .filter(|p| !known.iter().any(|k| k.id.pid == p.id.pid))
            .collect()
    }
    /// The live descendants of `roots` (zombies may be among them), read from per-process
    /// lists of children where the OS keeps them, or `None` (the caller scans the whole table).
    /// Always read now, never shared.
    fn descendants(&self, _roots: &[ProcId]) -> Option<Vec<ProcInfo>> {
        None
    }
    /// Whether any process (a zombie counts) is still in group `pgid`.
    fn group_exists(&self, pgid: i32) -> bool {
        self.snapshot().iter().any(|p| p.pgrp == pgid)
    }
    /// A handle on whatever process has `pid` now (`None` where the OS has no such handles).
    /// The caller checks the process's identity *after* opening it (see [`Tree::set_child`]).
    fn open_handle(&self, _pid: i32) -> Option<Handle> {
        None
    }
    /// The process behind `handle` is still running (a zombie is not).
    fn handle_alive(&self, _handle: &Handle) -> bool {
        false
    }
    /// Sends `kill` to the process behind `handle` (`Gone` once it exited).
    fn handle_signal(&self, _handle: &Handle, _kill: Kill) -> Sent {
        Sent::Failed
    }
}

/// Whether `pid` is a process this process started and has not reaped (its parent is this
/// process; a zombie counts): the only pid a host's request may have signalled natively, as the
/// child itself or to verify its group (SIG-2, SIG-5). Any other pid (a fake child object's, a
/// foreign process's, this process's own) is left to the host's `child.kill()`. Race-free while
/// the child is not reaped, which is what the facade's `exited(child)` check before the call
/// establishes for a real `ChildProcess`: until Node reaps it, the pid stays this child's.
pub fn is_own_child(table: &impl ProcessTable, pid: i32) -> bool {
    table
        .probe(pid)
        .is_some_and(|info| info.ppid == table.own_pid())
}

/// The real process table of this machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

impl ProcessTable for System {
    fn snapshot(&self) -> Vec<ProcInfo> {
        os::snapshot()
    }
    fn probe(&self, pid: i32) -> Option<ProcInfo> {
        if pid < 1 {
            return None;
        }
        os::probe(pid)
    }
    fn signal(&self, id: ProcId, kill: Kill) -> Sent {
        // Never init, the kernel's pids or this process, whatever the table says.
        if id.pid < 2 || id.pid == self.own_pid() {
            return Sent::Failed;
        }
        os::signal(id, kill)
    }
    fn signal_group(&self, pgid: i32, kill: Kill) -> bool {
        pgid >= 2 && os::signal_group(pgid, kill)
    }
    fn stop(&self, id: ProcId) -> Sent {
        // The same guard as `signal`.
        if id.pid < 2 || id.pid == self.own_pid() {
            return Sent::Failed;
        }
        os::stop(id)
    }
    fn stop_group(&self, pgid: i32) -> bool {
        pgid >= 2 && os::stop_group(pgid)
    }
    fn own_pid(&self) -> i32 {
        // Asked once: a Node process does not fork without exec, so its pid never changes
        // under a loaded addon (and getpid is a syscall per signal step otherwise).
        static OWN_PID: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
        *OWN_PID.get_or_init(|| i32::try_from(std::process::id()).unwrap_or(i32::MAX))
    }
    #[cfg(target_os = "linux")]
    fn descendants(&self, roots: &[ProcId]) -> Option<Vec<ProcInfo>> {
        linux::descendants(roots)
    }
    #[cfg(target_os = "linux")]
    fn processes_since(&self, known: &[ProcInfo]) -> Vec<ProcInfo> {
        linux::processes_since(known)
    }
    #[cfg(unix)]
    fn group_exists(&self, pgid: i32) -> bool {
        use nix::errno::Errno;
        // Signal 0 to the group: delivered to nothing, but it says whether the group has a
        // member (EPERM: it has one we may not signal). One syscall instead of a scan.
        pgid >= 2
            && matches!(
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None),
                Ok(()) | Err(Errno::EPERM)
            )
    }
    #[cfg(not(unix))]
    fn group_exists(&self, _pgid: i32) -> bool {
        false
    }
    #[cfg(target_os = "linux")]
    fn open_handle(&self, pid: i32) -> Option<Handle> {
        if pid < 2 || pid == self.own_pid() {
            return None;
        }
        linux::pidfd_open(pid).map(|fd| Handle { fd: Arc::new(fd) })
    }
    #[cfg(target_os = "linux")]
    fn handle_alive(&self, handle: &Handle) -> bool {
        linux::pidfd_alive(&handle.fd)
    }
    #[cfg(target_os = "linux")]
    fn handle_signal(&self, handle: &Handle, kill: Kill) -> Sent {
        linux::signal_pidfd(&handle.fd, kill)
    }
}
