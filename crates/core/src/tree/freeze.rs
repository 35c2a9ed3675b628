//! Stopping a tree before it is killed (LC-7). The SIGKILL step signals each captured process
//! in turn (and the verified group at once). A process that forks meanwhile can have a child
//! the last capture did not see, and once that parent is killed the child is reparented to init
//! and is nobody's descendant: out of reach for good (an agent stuck in a restart loop left
//! one such child behind in most teardowns, `__test__/teardown.test.ts`).
//!
//! So before SIGKILL every captured process gets SIGSTOP, which cannot be caught or ignored;
//! the freeze waits until each one has stopped (a fork in flight has then either completed,
//! its child in the process table, or been undone by the kernel to restart after the stop),
//! reads the tree again and stops what is new, until a read finds nothing new. Then nothing of the tree can fork any more, and SIGKILL reaches all of
//! it (a stopped process dies of SIGKILL at once; nothing stopped is ever left stopped, since
//! the SIGKILL step always follows).
//!
//! Where processes cannot be stopped ([`ProcessTable::stop`] fails: Windows, where a process
//! keeps its parent's pid and so stays findable anyway), nothing is stopped and the SIGKILL
//! step runs as before.

use std::time::{Duration, Instant};

use super::{ProcId, ProcInfo, ProcessTable, Scan, Sent, Tree};

/// Rounds of stop-and-read at most. Each round finds what the previous round's processes
/// forked just before they stopped; a tree is still after two or three.
const ROUNDS: usize = 8;
/// How long one round waits for its processes to stop. A process in uninterruptible sleep
/// stops only when it leaves it; past this the SIGKILL step goes on without waiting for it.
const STOP_WAIT: Duration = Duration::from_millis(20);
/// Between two looks at whether they stopped.
const STOP_POLL: Duration = Duration::from_micros(200);

impl Tree {
    /// Stops the whole captured tree (see the module). Returns the view of its last read when
    /// that read found nothing new (the capture is then current, and the SIGKILL step needs no
    /// read of its own); `None` when the rounds ended otherwise.
    pub(super) fn freeze(&mut self, table: &impl ProcessTable) -> Option<Vec<ProcInfo>> {
        let mut seen: Vec<ProcId> = Vec::new();
        for round_index in 0..ROUNDS {
            // The first read finds what to stop: without a group the kernel's lists of
            // children, exact only for a stopped process (`/proc/<pid>/task/<tid>/children`
            // can skip a child while its siblings come and go); with a group a scan of the
            // whole table, which may be shared with other runs' SIGKILL steps of the last few
            // milliseconds (SNAPSHOT_REUSE: the group is stopped as a whole, so a member the
            // scan predates is stopped all the same, and a descendant it predates is found by
            // the next read). Every later read comes after its round's processes stopped and
            // reads only the tree (`rescan_stopped`): the loop ends on a round that read every
            // captured process's list of children after it was stopped.
            let snapshot = if round_index == 0 {
                self.rescan(table, Scan::Recent).0
            } else {
                self.rescan_stopped(table)
            };
            let round: Vec<ProcId> = self
                .captured
                .iter()
                .copied()
                .filter(|id| !seen.contains(id))
                .collect();
            if round.is_empty() {
                return Some(snapshot);
            }
            seen.extend(&round);
            // The group at once (its members cannot slip between two signals), then each
            // process by identity (members that left the group, descendants outside it).
            if let Some(pgid) = self.our_group(table, &snapshot) {
                table.stop_group(pgid);
            }
            let sent: Vec<ProcId> = round
                .into_iter()
                .filter(|&id| table.stop(id) == Sent::Delivered)
                .collect();
            if sent.is_empty() {
                return None;
            }
            wait_stopped(table, &sent);
        }
        None
    }
}

/// Waits (at most [`STOP_WAIT`]) until none of `ids` is still running.
fn wait_stopped(table: &impl ProcessTable, ids: &[ProcId]) {
    let deadline = Instant::now() + STOP_WAIT;
    while ids.iter().any(|&id| running(table, id)) {
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(STOP_POLL);
    }
}

/// `id` is still that process, alive and not stopped.
fn running(table: &impl ProcessTable, id: ProcId) -> bool {
    table
        .probe(id.pid)
        .is_some_and(|p| p.id == id && p.alive && !p.stopped)
}
