//! A run's process tree (LC-7): the child, its verified process group (IMP-5) and every
//! descendant, found natively and remembered per run, so that `cancel()` and
//! `shutdownActive()` can stop all of it and wait until all of it is gone.
//!
//! A process is known by its identity, [`ProcId`]: its pid together with its start time. A
//! signal only ever goes to a process whose start time still matches the one captured (and on
//! Linux through a pidfd opened before that check, so the check and the signal are about the
//! same process): a pid that was reused by an unrelated process is never signalled.
//!
//! What is captured, and when ([`Tree::capture`]): the child when the host attaches it (only a
//! direct child of this process that Node has not reaped: running, or a zombie), then at every capture the descendants of every captured
//! process that is still alive, and the live members of the verified group while one of them is
//! a captured process. Capture happens when the host sets `run.child` / `run.processGroupId`,
//! every second while the run is not terminal ([`Tree::watch`], the facade's timer), at every
//! signal step and while the facade waits for the tree to exit. So a tree whose leader
//! already exited is still found: its grandchildren were captured while the leader lived, or
//! are members of its group.
//!
//! Before the SIGKILL step the tree is stopped (`freeze.rs`), so that nothing of it can fork
//! between the last capture and the kill. The limit that remains (measured in
//! `__test__/teardown.test.ts`): without a process group, a process born after the last capture
//! whose parent exits on its own before the next one is reparented to init and is no longer
//! anybody's descendant; nothing here can find it. See SPEC LC-7.
//!
//! The operating system is behind [`ProcessTable`], so the logic is tested with a scripted
//! table (`tests.rs`) as well as with real processes. [`System`] is the real one: Linux reads
//! `/proc`, macOS asks `proc_pidinfo`, Windows takes a toolhelp snapshot; elsewhere nothing is
//! found and the facade falls back to `child.kill()`.

mod freeze;
mod shared;
mod table;
pub use shared::{SharedTable, SNAPSHOT_REUSE};
pub use table::{is_own_child, Handle, Kill, ProcId, ProcInfo, ProcessTable, Sent, System};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "linux")]
pub(crate) use linux::{pidfd_open, pidfd_send};

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod other;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
use other as os;

/// What one signal step reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reached {
    /// The child itself was signalled (directly or as a member of the signalled group).
    pub child: bool,
    /// The child is captured and known to be gone: nothing may be sent to its pid.
    pub child_gone: bool,
    /// The verified group was signalled.
    pub group: bool,
    /// Other processes of the tree that were signalled one by one.
    pub others: u32,
}

impl Reached {
    /// Anything at all was signalled.
    pub fn any(&self) -> bool {
        self.child || self.group || self.others > 0
    }
}

/// A process group IMP-5 verified for the run's child, and who led it then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Group {
    pgid: i32,
    /// The process whose pid is the group id at verification, running or a zombie (none when
    /// that pid was free then: the leader had been reaped).
    leader: Option<ProcId>,
}

/// What the verified group is now, as [`Tree::group_state`] tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupState {
    /// No group was verified for the current child.
    Unverified,
    /// Still the run's group.
    Ours(i32),
    /// Over for good: it was seen without a member, or another process holds its id (which the
    /// OS gives out again only after the group and everything of it is gone).
    Ended,
}

/// How many groups made by a run's tree are remembered ([`Tree::holds_group`]); a tree that
/// makes more (each process its own group) keeps the newest.
const MAX_LED_GROUPS: usize = 64;

/// One run's captured process tree.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// The child the host attached, when it was captured (a direct child of ours, not reaped).
    child: Option<ProcId>,
    /// A handle on the captured child, opened before its identity was checked (so it is that
    /// process), where the OS has them.
    child_handle: Option<Handle>,
    /// The child's pid as the host gave it, captured or not (a new pid is a new child).
    child_pid: Option<i32>,
    /// The verified group (IMP-5), for this child.
    group: Option<Group>,
    /// Every captured process not yet seen gone, the child included.
    captured: Vec<ProcId>,
    /// The groups a process of this tree was seen leading while captured (its pid is the
    /// group's id: the tree made that group), the verified one included; SIG-6 signals no
    /// other group. At most [`MAX_LED_GROUPS`], the newest kept.
    led_groups: Vec<i32>,
    /// The last signal the teardown sent; processes found later get it too.
    last: Option<Kill>,
    /// The verified group is over ([`GroupState::Ended`]); a group with its id found later is
    /// another program's and is never signalled or captured from.
    group_ended: bool,
    /// A SIGKILL reached a process of this child's tree (at a SIGKILL step, or a process a wait
    /// found after one): the verdict's signal (LC-7).
    kill_delivered: bool,
}

impl Tree {
    /// The host attached a child (`pid`, when it has one, and whether it is still running)
    /// with a group IMP-5 verified for it (`group`), then the tree is captured. See
    /// [`Tree::set_child`] and [`Tree::set_group`].
    pub fn attach(
        &mut self,
        table: &impl ProcessTable,
        pid: Option<i32>,
        alive: bool,
        group: Option<i32>,
    ) {
        self.host_set_child(table, pid, alive);
        if let Some(pgid) = group {
            self.set_group(table, pgid);
        }
        self.capture(table);
    }

    /// A pid other than the current child's is a new child (the host replaced `run.child`, as
    /// a retry does); no pid (the host cleared `run.child`, or set one without a pid) keeps
    /// the tree captured so far. The new child is captured only when the host says it runs
    /// (`alive`: Node has not reaped it) and it is a direct child of this process, running or
    /// a zombie (so a fake or stale pid never brings an unrelated process into the tree). What the earlier child left alive stays part of the run's tree: it is
    /// captured once more (its group's members and descendants, as they are now), and those
    /// processes keep being signalled by identity; the earlier group itself is no longer
    /// signalled as a group, nor the earlier child through its handle. A signal step passes
    /// the host's child this way (it may have been replaced without a write the service saw).
    pub fn set_child(&mut self, table: &impl ProcessTable, pid: Option<i32>, alive: bool) {
        self.switch_child(table, pid, alive, false);
    }

    /// [`Tree::set_child`] for a write of the host (`run.child`): there the same pid is a new
    /// child too when the captured child is gone while the host says its child runs and a
    /// live process of another start time has the pid (the OS gave the earlier child's pid to
    /// the new one). Only asked at a host write, so a signal step costs no extra look.
    pub fn host_set_child(&mut self, table: &impl ProcessTable, pid: Option<i32>, alive: bool) {
        self.switch_child(table, pid, alive, true);
    }

    fn switch_child(
        &mut self,
        table: &impl ProcessTable,
        pid: Option<i32>,
        alive: bool,
        check_reuse: bool,
    ) {
        let Some(pid) = pid else {
            return;
        };
        if Some(pid) != self.child_pid || (check_reuse && alive && self.pid_reused(table, pid)) {
            let earlier = self.leave_child(table);
            *self = Tree {
                captured: earlier,
                led_groups: std::mem::take(&mut self.led_groups),
                last: self.last,
                ..Tree::default()
            };
            self.child_pid = Some(pid);
            if alive {
                let own = table.own_pid();
                // The handle first, the identity second: if the pid is still our child after
                // the handle was opened, the handle is that child. A child that has exited but
                // is not reaped yet (a zombie: Node has not seen its exit, so the host still
                // says it runs) is still that child, and still in its group: captured, so its
                // group can be verified and what it left in the group reaped (LC-7). Its
                // handle reports it gone.
                let handle = table.open_handle(pid);
                if let Some(info) = table.probe(pid).filter(|i| i.ppid == own) {
                    self.child = Some(info.id);
                    self.child_handle = handle;
                    self.note_led_group(&info);
                    if !self.captured.contains(&info.id) {
                        self.captured.push(info.id);
                    }
                }
            }
        }
    }

    /// The captured child (whose pid is `pid`) has exited and a live process of another start
    /// time now has that pid. Asks the table only once the child's handle (or a probe) says
    /// the child is gone, so a running child costs one look at its handle.
    fn pid_reused(&self, table: &impl ProcessTable, pid: i32) -> bool {
        let Some(child) = self.child else {
            return false;
        };
        !self.is_alive(table, child)
            && table
                .probe(pid)
                .is_some_and(|info| info.alive && info.id != child)
    }

    /// The processes of the current child's tree that are alive, captured once more, for the
    /// next child's tree to keep (see [`Tree::set_child`]).
    fn leave_child(&mut self, table: &impl ProcessTable) -> Vec<ProcId> {
        if self.is_empty() {
            return Vec::new();
        }
        self.rescan(table, Scan::Fresh);
        std::mem::take(&mut self.captured)
    }

    /// LC-4's reopen for a retry: the next attempt starts without a child, a verified group or
    /// a last signal; what the earlier attempt's tree left alive (read again now) stays
    /// captured and is signalled process by process by the next teardown, and the groups it
    /// made stay known to SIG-6 (`reapProcessGroup` of the earlier group), as when a retry
    /// replaces `run.child` ([`Tree::set_child`]).
    pub fn next_attempt(&mut self, table: &impl ProcessTable) {
        let earlier = self.leave_child(table);
        *self = Tree {
            captured: earlier,
            led_groups: std::mem::take(&mut self.led_groups),
            ..Tree::default()
        };
    }

    /// Closes the handle held on the child (see `RunState::release_process_handles`); the child
    /// stays known by identity, each look at it becomes a probe.
    pub fn release_handle(&mut self) {
        self.child_handle = None;
    }

    /// Records the group IMP-5 verified for the child (not reaped), with its leader at this
    /// moment (none when the leader is a zombie).
    pub fn set_group(&mut self, table: &impl ProcessTable, pgid: i32) {
        self.note_group(pgid);
        if self.group.map(|g| g.pgid) != Some(pgid) {
            let leader = table.probe(pgid).map(|i| i.id);
            self.group = Some(Group { pgid, leader });
            self.group_ended = false;
        }
    }

    /// Remembers `info`'s group when `info` leads it (see `led_groups`).
    fn note_led_group(&mut self, info: &ProcInfo) {
        if info.pgrp == info.id.pid {
            self.note_group(info.pgrp);
        }
    }

    fn note_group(&mut self, pgid: i32) {
        if pgid < 2 || self.led_groups.contains(&pgid) {
            return;
        }
        if self.led_groups.len() == MAX_LED_GROUPS {
            self.led_groups.remove(0);
        }
        self.led_groups.push(pgid);
    }

    /// The verified group recorded for the current child, if any.
    pub fn group(&self) -> Option<i32> {
        self.group.map(|g| g.pgid)
    }

    /// The captured child, if any.
    pub fn child(&self) -> Option<ProcId> {
        self.child
    }

    /// The captured child is still running.
    pub fn child_alive(&self, table: &impl ProcessTable) -> bool {
        self.child.is_some_and(|id| self.is_alive(table, id))
    }

    /// The captured process `id` is still running: through the child's handle when it is the
    /// child, otherwise asked of the process table (same pid, same start time, not a zombie).
    fn is_alive(&self, table: &impl ProcessTable, id: ProcId) -> bool {
        alive_by(table, id, self.child, self.child_handle.as_ref())
    }

    /// Drops the captured processes that are gone.
    fn retain_alive(&mut self, table: &impl ProcessTable) {
        let (child, handle) = (self.child, self.child_handle.as_ref());
        self.captured
            .retain(|&id| alive_by(table, id, child, handle));
    }

    /// Signals one captured process by identity (the child through its handle).
    fn signal_one(&self, table: &impl ProcessTable, id: ProcId, kill: Kill) -> Sent {
        match self
            .child_handle
            .as_ref()
            .filter(|_| Some(id) == self.child)
        {
            Some(handle) if !table.handle_alive(handle) => Sent::Gone,
            Some(handle) => table.handle_signal(handle, kill),
            None => table.signal(id, kill),
        }
    }

    fn is_empty(&self) -> bool {
        self.captured.is_empty() && self.group.is_none()
    }

    /// Re-scans the process table: drops captured processes that are gone, adds the live
    /// descendants of the captured ones and the live members of the verified group while it
    /// is still ours. Returns the newly captured processes.
    pub fn capture(&mut self, table: &impl ProcessTable) -> Vec<ProcId> {
        if self.is_empty() {
            return Vec::new();
        }
        self.rescan(table, Scan::Shared).1
    }

    /// The watch between steps ([`crate::service::Service::capture_trees`]): a capture that
    /// may share a recent scan with the other runs' (with a group), or reads the lists of
    /// children (without one). While a teardown is under way (`tearing_down`), a process it
    /// finds gets the last signal sent, as one a wait's poll finds does (LC-7). True while
    /// anything captured is alive.
    pub fn watch(&mut self, table: &impl ProcessTable, tearing_down: bool) -> bool {
        if self.is_empty() {
            return false;
        }
        let (_, added) = self.rescan(table, Scan::Recent);
        if tearing_down {
            self.signal_found(table, added);
        }
        self.holds_live()
    }

    /// A teardown begins while no other is under way: it has sent no signal yet. What an
    /// earlier teardown of the run sent (before the host reset the run for a retry without
    /// [`Tree::next_attempt`], FIN-5) is neither what processes found now get nor this
    /// teardown's verdict.
    pub fn begin_teardown(&mut self) {
        self.last = None;
        self.kill_delivered = false;
    }

    /// The processes captured so far (see [`Tree::signal_captured_since`]).
    pub fn captured(&self) -> &[ProcId] {
        &self.captured
    }

    /// LC-7: the host attached a child while a teardown is under way (after a signal step):
    /// every process captured since `before` (the new child and what its tree holds) gets the
    /// last signal sent at once, as a process a wait or the watch finds does, rather than at
    /// the next step. Returns how many it reached.
    pub fn signal_captured_since(&mut self, table: &impl ProcessTable, before: &[ProcId]) -> u32 {
        if self.last.is_none() {
            return 0;
        }
        let added: Vec<ProcId> = self
            .captured
            .iter()
            .copied()
            .filter(|id| !before.contains(id))
            .collect();
        self.signal_found(table, added)
    }

    /// LC-7: processes found during a teardown get the last signal it sent (none before its
    /// first signal step). Returns how many it reached.
    fn signal_found(&mut self, table: &impl ProcessTable, found: Vec<ProcId>) -> u32 {
        let Some(kill) = self.last else {
            return 0;
        };
        let mut reached: u32 = 0;
        for id in found {
            if self.signal_one(table, id, kill) == Sent::Delivered {
                reached = reached.saturating_add(1);
                self.kill_delivered |= kill == Kill::Kill;
            }
        }
        reached
    }

    /// Something captured was alive at the last capture (which drops what is gone).
    pub fn holds_live(&self) -> bool {
        !self.captured.is_empty()
    }

    /// One capture: reads what `scan` says, drops the captured processes that are gone, then
    /// adds what the view shows. Returns the view (a signal step reads the group from it) and
    /// the newly captured processes.
    fn rescan(&mut self, table: &impl ProcessTable, scan: Scan) -> (Vec<ProcInfo>, Vec<ProcId>) {
        let found = self.candidates(table, scan);
        self.retain_alive(table);
        let added = self.capture_from(table, &found);
        (found, added)
    }

    /// A capture after every captured process was stopped (the freeze's later rounds): the
    /// captured processes as they are now and their descendants, read from the kernel's lists
    /// of children, exact for a stopped parent, where the OS keeps them (a few small files
    /// instead of the whole table, also with a group: a member born since the last read was
    /// forked by a captured process, and one whose parent already exited was stopped with the
    /// group and dies with it); elsewhere a scan of the whole table made now.
    fn rescan_stopped(&mut self, table: &impl ProcessTable) -> Vec<ProcInfo> {
        self.retain_alive(table);
        let view = match table.descendants(&self.captured) {
            Some(mut found) => {
                found.extend(
                    self.captured
                        .iter()
                        .filter_map(|id| table.probe(id.pid).filter(|p| p.id == *id)),
                );
                found
            }
            None => table.fresh_snapshot(),
        };
        self.capture_from(table, &view);
        view
    }

    /// What a capture looks through: without a verified group it adds descendants only, so
    /// where the OS lists each process's children ([`ProcessTable::descendants`]) those lists
    /// are read, a few small files for a small tree instead of every process there is. With a
    /// group (whose members need not descend from anything captured), or where the OS keeps
    /// no such lists, the whole table, as `scan` says.
    fn candidates(&self, table: &impl ProcessTable, scan: Scan) -> Vec<ProcInfo> {
        if self.group.is_none() {
            if let Some(found) = table.descendants(&self.captured) {
                return found;
            }
        }
        match scan {
            Scan::Shared => table.snapshot(),
            Scan::Recent => table.recent_snapshot(),
            Scan::Fresh => table.fresh_snapshot(),
        }
    }

    /// Adds what `snapshot` shows of the tree: the verified group's members while it is ours,
    /// and the descendants of every captured process. Its callers ([`Self::rescan`], `alive`)
    /// drop the captured processes that are gone first ([`Self::retain_alive`]): whether one is
    /// gone is asked of the OS directly, never read from the snapshot, since a shared snapshot
    /// may predate a process captured since (SNAPSHOT_REUSE) and its absence there must not
    /// drop it.
    fn capture_from(&mut self, table: &impl ProcessTable, snapshot: &[ProcInfo]) -> Vec<ProcId> {
        let own = table.own_pid();
        let mut added = Vec::new();
        if let Some(pgid) = self.our_group(table, snapshot) {
            for p in snapshot {
                if p.alive && p.pgrp == pgid && p.id.pid != own && !self.captured.contains(&p.id) {
                    self.captured.push(p.id);
                    added.push(p.id);
                }
            }
        }
        // Descendants: breadth first from every live captured process. A process counts as a
        // child of a parent only if it started no earlier than that parent did (a ppid that
        // names a recycled pid cannot make an older process look like a descendant).
        let mut frontier: Vec<ProcId> = self.captured.clone();
        while let Some(parent) = frontier.pop() {
            for p in snapshot {
                if p.alive
                    && p.ppid == parent.pid
                    && p.id.start >= parent.start
                    && p.id.pid != own
                    && !self.captured.contains(&p.id)
                {
                    self.captured.push(p.id);
                    added.push(p.id);
                    frontier.push(p.id);
                }
            }
        }
        // The groups captured processes lead, as the view shows them now (a process that made
        // its own group since its capture, `setsid` or `setpgid(0, 0)`, included).
        for p in snapshot {
            if p.alive && p.pgrp == p.id.pid && self.captured.contains(&p.id) {
                self.note_group(p.pgrp);
            }
        }
        added
    }

    /// Whether the verified group is still the run's. A group id is a pid, and the OS gives a
    /// pid out again only once no process has it as its own, its group's or its session's id:
    /// so while the group has a member, no other process can have its id, and a new group
    /// with that id can only be made by a new process with that pid, after the run's group is
    /// gone for good. So the group is ours while a captured process is in it (as `view`
    /// shows it), or else while the process holding its id is the one that held it at
    /// verification, or none; that is asked of the table now, by identity, never read from
    /// `view`, which may be a partial read (the lists of children, the processes born since a
    /// scan) or a few milliseconds old. Once another process holds the id, the group is
    /// [`GroupState::Ended`] (and [`Tree::our_group`] remembers it).
    fn group_state(&self, table: &impl ProcessTable, view: &[ProcInfo]) -> GroupState {
        let Some(group) = self.group else {
            return GroupState::Unverified;
        };
        if self.group_ended {
            return GroupState::Ended;
        }
        let member_captured = view
            .iter()
            .any(|p| p.alive && p.pgrp == group.pgid && self.captured.contains(&p.id));
        if member_captured {
            return GroupState::Ours(group.pgid);
        }
        match table.probe(group.pgid) {
            Some(holder) if Some(holder.id) != group.leader => GroupState::Ended,
            _ => GroupState::Ours(group.pgid),
        }
    }

    /// The verified group's id while it is still the run's group ([`Tree::group_state`]);
    /// remembers when it is over.
    fn our_group(&mut self, table: &impl ProcessTable, view: &[ProcInfo]) -> Option<i32> {
        match self.group_state(table, view) {
            GroupState::Ours(pgid) => Some(pgid),
            GroupState::Ended => {
                self.group_ended = true;
                None
            }
            GroupState::Unverified => None,
        }
    }

    /// Whether group `pgid` is one of this tree's, as `snapshot` shows the process table: the
    /// verified group while it is still the run's ([`Tree::our_group`]), or a group the tree
    /// made (one of its processes was seen leading it) that one of the captured processes is
    /// still alive in (a group id is not reused while it has a member), such as an earlier
    /// child's group after a retry replaced the child. A group some other process made is not
    /// the tree's even when a process of the tree joined it (`setpgid` into a group of the
    /// same session): its other members are not the run's.
    pub fn holds_group(&self, table: &impl ProcessTable, snapshot: &[ProcInfo], pgid: i32) -> bool {
        let verified = self.group.is_some_and(|g| g.pgid == pgid);
        (verified && self.group_state(table, snapshot) == GroupState::Ours(pgid))
            || (self.led_groups.contains(&pgid)
                && snapshot
                    .iter()
                    .any(|p| p.alive && p.pgrp == pgid && self.captured.contains(&p.id)))
    }

    /// One signal step: capture again, then signal the group (when verified, still ours and
    /// not empty) and every other live captured process by identity. Members of a signalled
    /// group are not signalled a second time. A group that still exists while the view shows
    /// none of it alive (a restart loop: each member starts its successor and exits, faster
    /// than a read of the table) is followed to the processes born since, as the barrier's
    /// wait does ([`Tree::alive`]), and signalled as a group all the same.
    pub fn signal(&mut self, table: &impl ProcessTable, kill: Kill) -> Reached {
        self.last = Some(kill);
        let mut reached = Reached {
            child_gone: self.child.is_some(),
            ..Reached::default()
        };
        if self.is_empty() {
            return reached;
        }
        // Without a group the view is the lists of children; with one it is the whole table
        // (the group's members are read from it). Before SIGKILL the freeze's last read is
        // that view when it found the tree still.
        let frozen = if kill == Kill::Kill {
            self.freeze(table)
        } else {
            None
        };
        let snapshot = match frozen {
            Some(snapshot) => snapshot,
            None => self.rescan(table, Scan::Shared).0,
        };
        reached.child_gone = self.child.is_some_and(|c| !self.captured.contains(&c));
        let mut grouped: Vec<ProcId> = Vec::new();
        if let Some(pgid) = self.our_group(table, &snapshot) {
            let members: Vec<ProcId> = snapshot
                .iter()
                .filter(|p| p.alive && p.pgrp == pgid)
                .map(|p| p.id)
                .collect();
            if members.is_empty() {
                if table.group_exists(pgid) {
                    // Each newcomer found gets `kill` by identity, then the group gets it.
                    let found = self.capture_newcomers(table, snapshot);
                    reached.others = reached.others.saturating_add(found);
                    if self.our_group(table, &[]).is_some() {
                        table.signal_group(pgid, kill);
                    }
                } else {
                    self.group_ended = true;
                }
            } else if table.signal_group(pgid, kill) {
                reached.group = true;
                reached.child = self.child.is_some_and(|c| members.contains(&c));
                grouped = members;
            }
        }
        for id in self.captured.clone() {
            if grouped.contains(&id) {
                continue;
            }
            if self.signal_one(table, id, kill) == Sent::Delivered {
                if Some(id) == self.child {
                    reached.child = true;
                } else {
                    reached.others += 1;
                }
            }
        }
        if kill == Kill::Kill && reached.any() {
            self.kill_delivered = true;
        }
        reached
    }

    /// A SIGKILL reached a process of this child's tree: at a SIGKILL step, or a process a wait
    /// found after one (LC-7's verdict).
    pub fn kill_delivered(&self) -> bool {
        self.kill_delivered
    }

    /// While the facade waits: captures again (a newly found process gets the last signal
    /// sent, if any) and returns how many processes of the tree are alive. When no captured
    /// process is alive (a probe each) and the verified group has no member left (one
    /// `kill(-pgid, 0)`), the tree is gone and no full scan is needed: a child's exit event
    /// then costs no scan of the process table. Each captured process is probed once per call;
    /// one that dies during the scan is counted until the next call.
    ///
    /// The discovery reads a recent scan ([`SNAPSHOT_REUSE`]), which can predate a member the
    /// group gained since: in a restart loop each process starts its successor and exits, so
    /// a scan a few milliseconds old (or even one made now: a scan lists the table first and
    /// reads each process after) may show only the exited ones. Nothing captured is then
    /// alive while the group still has a member, and the answer "gone" would end the barrier
    /// with the loop running. So when the group exists and that scan found none of it alive,
    /// the processes born since are read ([`Tree::capture_newcomers`]); zombies alone leave the
    /// group existing, and count as gone.
    pub fn alive(&mut self, table: &impl ProcessTable) -> usize {
        self.retain_alive(table);
        let group_left =
            !self.group_ended && self.group.is_some_and(|g| table.group_exists(g.pgid));
        if self.group.is_some() && !group_left {
            // Seen without a member: a group with its id later is not the run's.
            self.group_ended = true;
        }
        if self.captured.is_empty() && !group_left {
            return 0;
        }
        let found = self.candidates(table, Scan::Recent);
        self.capture_signalled(table, &found);
        if self.captured.is_empty() && group_left {
            self.capture_newcomers(table, found);
        }
        self.captured.len()
    }

    /// Captures what `view` shows of the tree; a newly found process gets the last signal sent.
    /// Returns how many of them it reached.
    fn capture_signalled(&mut self, table: &impl ProcessTable, view: &[ProcInfo]) -> u32 {
        let found = self.capture_from(table, view);
        self.signal_found(table, found)
    }

    /// With nothing captured alive while the verified group still has a member: captures what
    /// was born since `known` was read, again and again while each read finds processes but
    /// none of the tree (a member that exited after starting its successor is followed to
    /// it), at most [`NEWCOMER_READS`] times. Each read lists the table once and reads only the
    /// new processes: far less than a scan of the whole table, which a shutdown of many runs
    /// would otherwise make once per run whose group holds only zombies.
    /// Returns how many of the processes it captured got the last signal.
    fn capture_newcomers(&mut self, table: &impl ProcessTable, mut known: Vec<ProcInfo>) -> u32 {
        let mut reached: u32 = 0;
        for _ in 0..NEWCOMER_READS {
            let newcomers = table.processes_since(&known);
            if newcomers.is_empty() {
                break;
            }
            reached = reached.saturating_add(self.capture_signalled(table, &newcomers));
            if !self.captured.is_empty() {
                break;
            }
            known.extend(newcomers);
        }
        reached
    }

    /// The end of the barrier: the pids still alive after the last wait (empty when the tree
    /// is gone). Each of them gets one more SIGKILL, the last reap (IMP-13).
    pub fn survivors(&mut self, table: &impl ProcessTable) -> Vec<i32> {
        // With something captured alive, a scan made now decides. Otherwise the wait's own
        // check answers (no read at all once the group is empty too; else a recent scan and
        // what was born since), and what a recent scan showed alive but is gone by now is
        // dropped: a shutdown of many runs asks this once per run.
        self.retain_alive(table);
        if !self.captured.is_empty() {
            self.rescan(table, Scan::Fresh);
        } else if self.alive(table) > 0 {
            self.retain_alive(table);
        }
        let pids: Vec<i32> = self.captured.iter().map(|id| id.pid).collect();
        for id in self.captured.clone() {
            if self.signal_one(table, id, Kill::Kill) == Sent::Delivered {
                self.kill_delivered = true;
            }
        }
        pids
    }
}

/// How many times [`Tree::capture_newcomers`] reads the processes born since its last read.
const NEWCOMER_READS: usize = 8;

/// Which scan of the whole table a capture falls back to (see [`SharedTable`]).
#[derive(Clone, Copy)]
enum Scan {
    /// [`ProcessTable::snapshot`]: the shutdown's pinned scan while there is one.
    Shared,
    /// [`ProcessTable::recent_snapshot`]: discovery during a wait.
    Recent,
    /// [`ProcessTable::fresh_snapshot`]: what decides that something survived.
    Fresh,
}

/// Whether the captured process `id` is alive: `handle` answers for `child`, the table's probe
/// for everything else.
fn alive_by(
    table: &impl ProcessTable,
    id: ProcId,
    child: Option<ProcId>,
    handle: Option<&Handle>,
) -> bool {
    match handle.filter(|_| Some(id) == child) {
        Some(handle) => table.handle_alive(handle),
        None => table
            .probe(id.pid)
            .is_some_and(|info| info.id == id && info.alive),
    }
}

#[cfg(test)]
mod tests;
