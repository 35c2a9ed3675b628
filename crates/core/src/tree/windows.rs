//! Windows: a toolhelp snapshot for parent pids, `GetProcessTimes` for the identity (the
//! creation time), `TerminateProcess` for both signals (Windows has no SIGTERM: the tree is
//! killed as a whole, which is what Node's own `child.kill()` does to the child). There are
//! no process groups.
//!
//! The creation time is checked through the same handle that terminates, so the check and
//! the termination are about one process: a recycled pid is never hit.

use windows_sys::Win32::Foundation::{
    CloseHandle, FILETIME, HANDLE, INVALID_HANDLE_VALUE, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, TerminateProcess, WaitForSingleObject,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
};

use super::{Kill, ProcId, ProcInfo, Sent};

/// An open process handle, closed on drop.
struct Process(HANDLE);

impl Process {
    fn open(pid: i32, terminate: bool) -> Option<Self> {
        let pid = u32::try_from(pid).ok()?;
        let mut access = PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE;
        if terminate {
            access |= PROCESS_TERMINATE;
        }
        // SAFETY: OpenProcess takes plain integers and returns a new handle or null.
        let handle = unsafe { OpenProcess(access, 0, pid) };
        (!handle.is_null()).then_some(Self(handle))
    }

    /// The creation time, as one number.
    fn start(&self) -> Option<u64> {
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: the handle is open; the four pointers are live FILETIMEs the call fills.
        let ok =
            unsafe { GetProcessTimes(self.0, &mut created, &mut exited, &mut kernel, &mut user) };
        (ok != 0)
            .then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
    }

    /// Still running (its handle is not signalled yet).
    fn running(&self) -> bool {
        // SAFETY: the handle is open; a zero timeout only polls.
        unsafe { WaitForSingleObject(self.0, 0) == WAIT_TIMEOUT }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by `Process::open` and is closed exactly once.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

/// Every (pid, parent pid) pair of a toolhelp snapshot.
fn pairs() -> Vec<(i32, i32)> {
    // SAFETY: plain flags in, a new snapshot handle (or INVALID_HANDLE_VALUE) out.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snap == INVALID_HANDLE_VALUE || snap.is_null() {
        return Vec::new();
    }
    let snap = Process(snap);
    let mut out = Vec::with_capacity(256);
    let mut entry = PROCESSENTRY32W {
        dwSize: u32::try_from(std::mem::size_of::<PROCESSENTRY32W>()).unwrap_or(0),
        ..PROCESSENTRY32W::default()
    };
    // SAFETY: the snapshot handle is open and `entry` is a live PROCESSENTRY32W whose dwSize
    // is set, as both calls require.
    let mut more = unsafe { Process32FirstW(snap.0, &mut entry) } != 0;
    while more {
        if let (Ok(pid), Ok(ppid)) = (
            i32::try_from(entry.th32ProcessID),
            i32::try_from(entry.th32ParentProcessID),
        ) {
            out.push((pid, ppid));
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snap.0, &mut entry) } != 0;
    }
    out
}

fn info(pid: i32, ppid: i32) -> Option<ProcInfo> {
    let process = Process::open(pid, false)?;
    Some(ProcInfo {
        id: ProcId {
            pid,
            start: process.start()?,
        },
        ppid,
        pgrp: 0,
        alive: process.running(),
        stopped: false,
    })
}

pub(super) fn probe(pid: i32) -> Option<ProcInfo> {
    let ppid = pairs().into_iter().find(|(p, _)| *p == pid)?.1;
    info(pid, ppid)
}

pub(super) fn snapshot() -> Vec<ProcInfo> {
    pairs()
        .into_iter()
        .filter(|(pid, _)| *pid > 4) // 0 (idle) and 4 (System)
        .filter_map(|(pid, ppid)| info(pid, ppid))
        .collect()
}

pub(super) fn signal(id: ProcId, _kill: Kill) -> Sent {
    let Some(process) = Process::open(id.pid, true) else {
        return Sent::Gone;
    };
    if process.start() != Some(id.start) || !process.running() {
        return Sent::Gone;
    }
    // SAFETY: the handle is open with PROCESS_TERMINATE and is the captured process.
    if unsafe { TerminateProcess(process.0, 1) } != 0 {
        Sent::Delivered
    } else {
        Sent::Failed
    }
}

pub(super) fn signal_group(_pgid: i32, _kill: Kill) -> bool {
    false
}

/// No freeze on Windows: a process keeps its parent's pid after the parent exits, so a child
/// born during the teardown stays findable, and TerminateProcess is immediate.
pub(super) fn stop(_id: ProcId) -> Sent {
    Sent::Failed
}

pub(super) fn stop_group(_pgid: i32) -> bool {
    false
}
