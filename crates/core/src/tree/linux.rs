//! Linux: `/proc/<pid>/stat` for the table, a pidfd for every signal.
//!
//! The stat line is `pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt
//! majflt cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime …`.
//! `comm` may hold spaces and `)`, so the fields are read after the **last** `)`.

use std::fmt::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{Kill, ProcId, ProcInfo, Sent};

/// Parses one `/proc/<pid>/stat` line (the pid is the directory's, not re-read from the text).
pub(super) fn parse_stat(pid: i32, text: &str) -> Option<ProcInfo> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    let ppid: i32 = fields.next()?.parse().ok()?;
    let pgrp: i32 = fields.next()?.parse().ok()?;
    // session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    // priority nice, then num_threads, itrealvalue and starttime.
    let threads: u64 = fields.nth(14)?.parse().ok()?;
    let start: u64 = fields.nth(1)?.parse().ok()?;
    Some(ProcInfo {
        id: ProcId { pid, start },
        ppid,
        pgrp,
        // A process whose main thread exited (`pthread_exit`) while others run shows `Z` for
        // its pid, with more than one thread: it is alive (a zombie has one).
        alive: !matches!(state, "X" | "x") && (state != "Z" || threads > 1),
        // T: stopped by a signal; t: stopped by a tracer.
        stopped: matches!(state, "T" | "t"),
    })
}

/// A `/proc/<pid>/stat` line is a few hundred bytes: one `read` into this buffer takes it whole
/// (a longer one is read on into a `Vec`).
const STAT_BUFFER: usize = 1024;

/// Reads `path` (a `/proc/<pid>/stat`) with one `open`, usually one `read`, and one `close`:
/// `read_to_string` would also ask for the file's size and position, which `/proc` does not
/// know, for three more syscalls per process of a scan.
fn read_stat(path: &str, out: &mut Vec<u8>) -> Option<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    out.clear();
    let mut buffer = [0u8; STAT_BUFFER];
    loop {
        let read = file.read(&mut buffer).ok()?;
        out.extend_from_slice(&buffer[..read]);
        // /proc hands out the whole line in one read when it fits: a short read is the end.
        if read < buffer.len() {
            return Some(());
        }
    }
}

fn stat_of(pid: i32, path: &str, bytes: &mut Vec<u8>) -> Option<ProcInfo> {
    read_stat(path, bytes)?;
    parse_stat(pid, std::str::from_utf8(bytes).ok()?)
}

pub(super) fn probe(pid: i32) -> Option<ProcInfo> {
    let mut bytes = Vec::with_capacity(STAT_BUFFER);
    stat_of(pid, &format!("/proc/{pid}/stat"), &mut bytes)
}

pub(super) fn snapshot() -> Vec<ProcInfo> {
    scan(|_| true)
}

/// The processes whose pid `known` does not list: one listing of `/proc`, and a stat read
/// only for each new pid.
pub(super) fn processes_since(known: &[ProcInfo]) -> Vec<ProcInfo> {
    let known: std::collections::HashSet<i32> = known.iter().map(|p| p.id.pid).collect();
    scan(|pid| !known.contains(&pid))
}

/// Every process `/proc` lists whose pid `wanted` accepts.
fn scan(wanted: impl Fn(i32) -> bool) -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(256);
    let mut path = String::with_capacity(24);
    let mut bytes = Vec::with_capacity(STAT_BUFFER);
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if !wanted(pid) {
            continue;
        }
        path.clear();
        // Writing to a String cannot fail.
        let _ = write!(path, "/proc/{pid}/stat");
        // A process may exit between the listing and the read: skip it.
        if let Some(info) = stat_of(pid, &path, &mut bytes) {
            out.push(info);
        }
    }
    out
}

/// Whether this kernel lists each task's children (`/proc/<pid>/task/<tid>/children`,
/// `CONFIG_PROC_CHILDREN`, on in the usual distribution kernels). Asked once.
fn children_listed() -> bool {
    static LISTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LISTED.get_or_init(|| std::path::Path::new("/proc/thread-self/children").exists())
}

/// How many processes one [`descendants`] call reads at most (a bound against a runaway fork
/// loop; beyond it the caller gets what was found so far, the next capture goes on).
const MAX_DESCENDANTS: usize = 65_536;

/// The live descendants of `roots` (and zombies among them), read from the lists of children
/// the kernel keeps per task, or `None` when this kernel keeps none. A root that is gone, or
/// whose pid now names another process (start time), is skipped; a listed child counts only if
/// it is still that parent's (its ppid) and started no earlier (as in [`super::Tree`]'s scan).
/// For a tree of a few processes this reads a few small files instead of the whole table.
pub(super) fn descendants(roots: &[ProcId]) -> Option<Vec<ProcInfo>> {
    if !children_listed() {
        return None;
    }
    let mut out: Vec<ProcInfo> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut bytes = Vec::with_capacity(STAT_BUFFER);
    let mut path = String::with_capacity(48);
    let mut frontier: Vec<ProcId> = Vec::new();
    for root in roots {
        path.clear();
        let _ = write!(path, "/proc/{}/stat", root.pid);
        if stat_of(root.pid, &path, &mut bytes).is_some_and(|info| info.id == *root && info.alive) {
            frontier.push(*root);
        }
    }
    let mut listed = Vec::with_capacity(STAT_BUFFER);
    while let Some(parent) = frontier.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", parent.pid)) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            path.clear();
            let _ = write!(path, "/proc/{}/task/{tid}/children", parent.pid);
            if read_stat(&path, &mut listed).is_none() {
                continue;
            }
            let Ok(text) = std::str::from_utf8(&listed) else {
                continue;
            };
            for pid in text
                .split_ascii_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if out.len() >= MAX_DESCENDANTS {
                    return Some(out);
                }
                if !seen.insert(pid) {
                    continue;
                }
                path.clear();
                let _ = write!(path, "/proc/{pid}/stat");
                let Some(info) = stat_of(pid, &path, &mut bytes) else {
                    continue;
                };
                if info.ppid != parent.pid || info.id.start < parent.start {
                    continue;
                }
                if info.alive {
                    frontier.push(info.id);
                }
                out.push(info);
            }
        }
    }
    Some(out)
}

fn signo(kill: Kill) -> i32 {
    match kill {
        Kill::Term => libc::SIGTERM,
        Kill::Kill => libc::SIGKILL,
    }
}

/// A pidfd for `pid` (Linux ≥ 5.3), or `None`. Shared with the IMP-5 child handle (signals.rs).
pub(crate) fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes two plain integers and returns a new descriptor or -1; it
    // reads and writes no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by the kernel, is valid and owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Signal number `sig` (0 probes) to the process behind `fd`.
pub(crate) fn pidfd_send(fd: &OwnedFd, sig: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor we own, a signal number, a null siginfo
    // pointer (allowed: the kernel then fills it as for kill(2)) and flags 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The process behind `fd` has not exited: a pidfd becomes readable when its process exits
/// (a zombie is readable too), so `poll` with no timeout answers without touching `/proc`.
pub(super) fn pidfd_alive(fd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1, timeout 0: poll only writes `revents` of it.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    // 0: nothing ready, the process runs. An error (not expected for a valid pidfd) counts as
    // alive: the barrier then waits on rather than declare the tree gone.
    ready <= 0
}

/// Sends `kill` through a pidfd that is known to be the captured process.
pub(super) fn signal_pidfd(fd: &OwnedFd, kill: Kill) -> Sent {
    match pidfd_send(fd, signo(kill)) {
        Ok(()) => Sent::Delivered,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Sent::Gone,
        Err(_) => Sent::Failed,
    }
}

/// The pidfd is opened first, the start time checked second: if the check passes, the pid
/// still belonged to the captured process after the descriptor was opened, so the descriptor
/// is that process and the signal cannot reach anything else. Without pidfds (kernels before
/// 5.3) the start time is checked just before `kill(2)`: a pid recycled in the microseconds
/// between is the one residual risk.
pub(super) fn signal(id: ProcId, kill: Kill) -> Sent {
    send(id, signo(kill))
}

/// SIGSTOP to the process `id`, as [`signal`] sends its signals.
pub(super) fn stop(id: ProcId) -> Sent {
    send(id, libc::SIGSTOP)
}

fn send(id: ProcId, sig: i32) -> Sent {
    let fd = pidfd_open(id.pid);
    match probe(id.pid) {
        Some(info) if info.id == id && info.alive => {}
        _ => return Sent::Gone,
    }
    let result = match &fd {
        Some(fd) => pidfd_send(fd, sig),
        // SAFETY: kill(2) takes two plain integers; `id.pid` ≥ 2 (checked by the caller).
        None => match unsafe { libc::kill(id.pid, sig) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        },
    };
    match result {
        Ok(()) => Sent::Delivered,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Sent::Gone,
        Err(_) => Sent::Failed,
    }
}

pub(super) fn signal_group(pgid: i32, kill: Kill) -> bool {
    send_group(pgid, signo(kill))
}

pub(super) fn stop_group(pgid: i32) -> bool {
    send_group(pgid, libc::SIGSTOP)
}

fn send_group(pgid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) with a negative pid signals that group; `pgid` ≥ 2 (checked by the
    // caller), so this is never 0 (our own group) or -1 (everything).
    unsafe { libc::kill(-pgid, sig) == 0 }
}
