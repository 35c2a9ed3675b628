//! Platforms without a process table here: nothing is found, nothing is signalled, and the
//! facade falls back to `child.kill()` for the child.

use super::{Kill, ProcId, ProcInfo, Sent};

pub(super) fn probe(_pid: i32) -> Option<ProcInfo> {
    None
}

pub(super) fn snapshot() -> Vec<ProcInfo> {
    Vec::new()
}

pub(super) fn signal(_id: ProcId, _kill: Kill) -> Sent {
    Sent::Failed
}

pub(super) fn signal_group(_pgid: i32, _kill: Kill) -> bool {
    false
}

pub(super) fn stop(_id: ProcId) -> Sent {
    Sent::Failed
}

pub(super) fn stop_group(_pgid: i32) -> bool {
    false
}
