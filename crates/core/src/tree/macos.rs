//! macOS: `proc_listallpids` and `proc_pidinfo(PROC_PIDTBSDINFO)` from libproc, through the
//! `libc` crate's declarations (the `libproc` crate would add a bindgen build step against
//! the SDK for the same two calls). There is no pidfd: the start time is checked just before
//! `kill(2)`, and a pid recycled in the microseconds between is the residual risk.
//!
//! A zombie has no BSD info any more, so it reads as gone.

use super::{Kill, ProcId, ProcInfo, Sent};

pub(super) fn probe(pid: i32) -> Option<ProcInfo> {
    // SAFETY: `proc_bsdinfo` is plain old data (integers and byte arrays): all zeroes is a
    // valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = i32::try_from(std::mem::size_of::<libc::proc_bsdinfo>()).ok()?;
    // SAFETY: the buffer is a live `proc_bsdinfo` of exactly `size` bytes, which is what the
    // PROC_PIDTBSDINFO flavour writes; the call writes nothing else.
    let written = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if written != size {
        return None;
    }
    let start = info
        .pbi_start_tvsec
        .saturating_mul(1_000_000)
        .saturating_add(info.pbi_start_tvusec);
    Some(ProcInfo {
        id: ProcId { pid, start },
        ppid: i32::try_from(info.pbi_ppid).ok()?,
        pgrp: i32::try_from(info.pbi_pgid).ok()?,
        alive: info.pbi_status != libc::SZOMB,
        stopped: info.pbi_status == libc::SSTOP,
    })
}

pub(super) fn snapshot() -> Vec<ProcInfo> {
    // SAFETY: a null buffer asks only for the number of pids.
    let count = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
    let Ok(count) = usize::try_from(count) else {
        return Vec::new();
    };
    // Room for processes started since the count.
    let mut pids: Vec<libc::pid_t> = vec![0; count + 64];
    let Ok(bytes) = i32::try_from(pids.len() * std::mem::size_of::<libc::pid_t>()) else {
        return Vec::new();
    };
    // SAFETY: the buffer holds `bytes` bytes of `pid_t`s; the call writes at most that much
    // and returns how many pids it wrote.
    let written = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
    let Ok(written) = usize::try_from(written) else {
        return Vec::new();
    };
    pids.truncate(written.min(pids.len()));
    pids.into_iter()
        .filter(|pid| *pid > 0)
        .filter_map(probe)
        .collect()
}

fn signo(kill: Kill) -> i32 {
    match kill {
        Kill::Term => libc::SIGTERM,
        Kill::Kill => libc::SIGKILL,
    }
}

pub(super) fn signal(id: ProcId, kill: Kill) -> Sent {
    send(id, signo(kill))
}

/// SIGSTOP to the process `id`, as [`signal`] sends its signals.
pub(super) fn stop(id: ProcId) -> Sent {
    send(id, libc::SIGSTOP)
}

fn send(id: ProcId, sig: i32) -> Sent {
    match probe(id.pid) {
        Some(info) if info.id == id && info.alive => {}
        _ => return Sent::Gone,
    }
    // SAFETY: kill(2) takes two plain integers; `id.pid` ≥ 2 (checked by the caller).
    if unsafe { libc::kill(id.pid, sig) } == 0 {
        Sent::Delivered
    } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        Sent::Gone
    } else {
        Sent::Failed
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
