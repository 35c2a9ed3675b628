//! The tree logic against a scripted process table, then against real processes (Linux).

use std::cell::RefCell;

use super::*;

const OWN: i32 = 100;

/// One scripted process: how it reacts to signals, and what it received.
#[derive(Clone, Debug)]
struct Fake {
    info: ProcInfo,
    /// The weakest signal that kills it (`None`: nothing does).
    dies_on: Option<Kill>,
    got: Vec<Kill>,
}

#[derive(Default)]
struct FakeTable {
    procs: RefCell<Vec<Fake>>,
    groups_signalled: RefCell<Vec<(i32, Kill)>>,
    /// Forks in flight: (parent, child pid, child start). One completes when its parent is
    /// stopped (the child is the parent's) or killed unstopped (the parent is gone at once, so
    /// the child is reparented to init).
    forks: RefCell<Vec<(i32, i32, u64)>>,
    /// The pids that were stopped, in order.
    stopped: RefCell<Vec<i32>>,
    /// What a shared recent scan returns instead of the table as it is now (a scan taken a
    /// few milliseconds ago), while set.
    recent: RefCell<Option<Vec<ProcInfo>>>,
    /// The table lists each process's children (as Linux does): `descendants` answers.
    lists_children: std::cell::Cell<bool>,
    /// How many times the whole table was read.
    scans: std::cell::Cell<usize>,
}

impl FakeTable {
    fn add(&self, pid: i32, start: u64, ppid: i32, pgrp: i32, dies_on: Option<Kill>) {
        self.procs.borrow_mut().push(Fake {
            info: ProcInfo {
                id: ProcId { pid, start },
                ppid,
                pgrp,
                alive: true,
                stopped: false,
            },
            dies_on,
            got: Vec::new(),
        });
    }

    fn got(&self, pid: i32) -> Vec<Kill> {
        self.procs
            .borrow()
            .iter()
            .filter(|p| p.info.id.pid == pid)
            .flat_map(|p| p.got.clone())
            .collect()
    }

    fn alive(&self, pid: i32) -> bool {
        self.procs
            .borrow()
            .iter()
            .any(|p| p.info.id.pid == pid && p.info.alive)
    }

    /// The process exits on its own; its children are reparented to init (pid 1).
    fn exit(&self, pid: i32) {
        let mut procs = self.procs.borrow_mut();
        for p in procs.iter_mut() {
            if p.info.id.pid == pid {
                p.info.alive = false;
            }
        }
        for p in procs.iter_mut() {
            if p.info.ppid == pid && p.info.alive {
                p.info.ppid = 1;
            }
        }
    }

    /// The process is reaped: it leaves the table (and its group, when it was the last member).
    fn reap(&self, pid: i32) {
        self.procs.borrow_mut().retain(|p| p.info.id.pid != pid);
    }

    /// The process's parent is reparented away (it exited: the process now belongs to init).
    fn exit_parent_of(&self, pid: i32) {
        for p in self.procs.borrow_mut().iter_mut() {
            if p.info.id.pid == pid {
                p.info.ppid = 1;
            }
        }
    }

    /// The pid is recycled: the old process is reaped, a new one takes its number.
    fn recycle(&self, pid: i32, start: u64, ppid: i32) {
        self.procs.borrow_mut().retain(|p| p.info.id.pid != pid);
        self.add(pid, start, ppid, pid, Some(Kill::Term));
    }

    fn fork_in_flight(&self, parent: i32, child: i32, start: u64) {
        self.forks.borrow_mut().push((parent, child, start));
    }

    /// Completes `parent`'s fork in flight, if any: the child appears with `ppid`.
    fn complete_fork(&self, parent: i32, ppid: i32) {
        let pending: Vec<(i32, i32, u64)> = self.forks.borrow().clone();
        self.forks.borrow_mut().retain(|f| f.0 != parent);
        for (_, child, start) in pending.into_iter().filter(|f| f.0 == parent) {
            self.add(child, start, ppid, OWN, Some(Kill::Kill));
        }
    }

    fn deliver(p: &mut Fake, kill: Kill) {
        p.got.push(kill);
        let dies = matches!(
            (p.dies_on, kill),
            (Some(Kill::Term), _) | (Some(Kill::Kill), Kill::Kill)
        );
        if dies {
            p.info.alive = false;
        }
    }
}

impl ProcessTable for FakeTable {
    fn snapshot(&self) -> Vec<ProcInfo> {
        self.scans.set(self.scans.get() + 1);
        self.procs.borrow().iter().map(|p| p.info).collect()
    }
    fn group_exists(&self, pgid: i32) -> bool {
        // (As kill(-pgid, 0): no read of the table; a zombie counts.)
        self.procs.borrow().iter().any(|p| p.info.pgrp == pgid)
    }
    fn descendants(&self, roots: &[ProcId]) -> Option<Vec<ProcInfo>> {
        if !self.lists_children.get() {
            return None;
        }
        let procs = self.procs.borrow();
        let mut out: Vec<ProcInfo> = Vec::new();
        let mut frontier: Vec<ProcId> = roots.to_vec();
        while let Some(parent) = frontier.pop() {
            for p in procs.iter().map(|p| p.info) {
                if p.alive && p.ppid == parent.pid && !out.iter().any(|o| o.id == p.id) {
                    out.push(p);
                    frontier.push(p.id);
                }
            }
        }
        Some(out)
    }
    fn recent_snapshot(&self) -> Vec<ProcInfo> {
        match self.recent.borrow().as_ref() {
            Some(stale) => stale.clone(),
            None => self.snapshot(),
        }
    }
    fn probe(&self, pid: i32) -> Option<ProcInfo> {
        self.procs
            .borrow()
            .iter()
            .find(|p| p.info.id.pid == pid)
            .map(|p| p.info)
    }
    fn signal(&self, id: ProcId, kill: Kill) -> Sent {
        let unstopped_kill = {
            let mut procs = self.procs.borrow_mut();
            match procs.iter_mut().find(|p| p.info.id == id && p.info.alive) {
                Some(p) => {
                    let running = !p.info.stopped;
                    Self::deliver(p, kill);
                    kill == Kill::Kill && running
                }
                None => return Sent::Gone,
            }
        };
        if unstopped_kill {
            self.complete_fork(id.pid, 1);
        }
        Sent::Delivered
    }
    fn stop(&self, id: ProcId) -> Sent {
        {
            let mut procs = self.procs.borrow_mut();
            let Some(p) = procs.iter_mut().find(|p| p.info.id == id && p.info.alive) else {
                return Sent::Gone;
            };
            p.info.stopped = true;
        }
        self.stopped.borrow_mut().push(id.pid);
        self.complete_fork(id.pid, id.pid);
        Sent::Delivered
    }
    fn stop_group(&self, pgid: i32) -> bool {
        let members: Vec<ProcId> = self
            .procs
            .borrow()
            .iter()
            .filter(|p| p.info.pgrp == pgid && p.info.alive)
            .map(|p| p.info.id)
            .collect();
        for id in &members {
            self.stop(*id);
        }
        !members.is_empty()
    }
    fn signal_group(&self, pgid: i32, kill: Kill) -> bool {
        self.groups_signalled.borrow_mut().push((pgid, kill));
        let mut any = false;
        for p in self.procs.borrow_mut().iter_mut() {
            if p.info.pgrp == pgid && p.info.alive {
                Self::deliver(p, kill);
                any = true;
            }
        }
        any
    }
    fn own_pid(&self) -> i32 {
        OWN
    }
}

#[test]
fn lc_7_attach_captures_only_a_live_direct_child_of_ours() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, Some(Kill::Term));
    table.add(20, 5, 999, 20, Some(Kill::Term)); // somebody else's process
    let mut tree = Tree::default();
    tree.attach(&table, Some(20), true, None);
    assert_eq!(
        tree.child(),
        None,
        "a pid that is not our child is never captured"
    );
    assert_eq!(tree.alive(&table), 0);
    tree.attach(&table, Some(10), false, None);
    assert_eq!(
        tree.child(),
        None,
        "an exited child (pid may be reused) is not captured"
    );
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    assert_eq!(tree.child(), Some(ProcId { pid: 10, start: 5 }));
}

#[test]
fn lc_7_descendants_are_captured_while_the_leader_lives_and_reaped_after_it_exits() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, OWN, Some(Kill::Term)); // the child, in our own group (no detached)
    table.add(11, 6, 10, OWN, None); // a grandchild that ignores even SIGKILL in this script
    table.add(12, 7, 11, OWN, Some(Kill::Kill)); // a great-grandchild that ignores SIGTERM
    table.add(50, 1, OWN, OWN, Some(Kill::Term)); // a sibling: our child, not the run's
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    assert_eq!(tree.alive(&table), 3);
    // The leader exits before the cancel: its descendants are orphaned (ppid 1).
    table.exit(10);
    let reached = tree.signal(&table, Kill::Term);
    assert!(reached.child_gone && !reached.child);
    assert_eq!(reached.others, 2);
    assert_eq!(table.got(11), vec![Kill::Term]);
    assert_eq!(table.got(12), vec![Kill::Term]);
    assert!(
        table.got(50).is_empty(),
        "a process outside the tree is never signalled"
    );
    assert!(
        table.got(10).is_empty(),
        "an exited child is never signalled"
    );
    let reached = tree.signal(&table, Kill::Kill);
    assert_eq!(reached.others, 2);
    assert!(!table.alive(12));
    // The grandchild survives everything: the barrier reports it, with one more SIGKILL.
    assert_eq!(tree.alive(&table), 1);
    assert_eq!(tree.survivors(&table), vec![11]);
    assert_eq!(table.got(11), vec![Kill::Term, Kill::Kill, Kill::Kill]);
}

#[test]
fn lc_7_termination_failed_has_no_survivors_when_the_tree_is_gone() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, OWN, Some(Kill::Term));
    table.add(11, 6, 10, OWN, Some(Kill::Term));
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    let reached = tree.signal(&table, Kill::Term);
    assert!(reached.child && reached.others == 1 && reached.any());
    assert_eq!(tree.alive(&table), 0);
    assert!(tree.survivors(&table).is_empty());
}

#[test]
fn lc_7_pid_reuse_a_recycled_pid_is_never_signalled() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, OWN, Some(Kill::Term));
    table.add(11, 6, 10, OWN, Some(Kill::Term));
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    assert_eq!(tree.alive(&table), 2);
    // Both exit and are reaped; their pids go to unrelated processes started later.
    table.recycle(10, 900, OWN);
    table.recycle(11, 901, 1);
    let reached = tree.signal(&table, Kill::Kill);
    assert!(!reached.any());
    assert!(reached.child_gone);
    assert!(table.got(10).is_empty() && table.got(11).is_empty());
    assert_eq!(tree.alive(&table), 0);
    assert!(tree.survivors(&table).is_empty());
    assert!(table.got(10).is_empty() && table.got(11).is_empty());
}

#[test]
fn lc_7_a_recycled_parent_pid_does_not_make_an_older_process_a_descendant() {
    let table = FakeTable::default();
    table.add(10, 50, OWN, OWN, Some(Kill::Term));
    // Process 30 started before the child; its recorded parent pid 10 was an older process.
    table.add(30, 20, 10, OWN, Some(Kill::Term));
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    tree.signal(&table, Kill::Term);
    assert!(table.got(30).is_empty());
}

#[test]
fn lc_7_the_verified_group_is_signalled_once_and_only_while_it_is_ours() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, Some(Kill::Term)); // a detached leader
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    // After the attach: a grandchild in the group, then the leader exits. Nothing captured is
    // alive any more, but the group still is the run's: found through it.
    table.add(11, 6, 10, 10, None);
    table.exit(10);
    table.add(12, 7, 1, 10, Some(Kill::Term));
    let reached = tree.signal(&table, Kill::Term);
    assert!(reached.group && !reached.child && reached.child_gone);
    assert_eq!(reached.others, 0, "group members are not signalled twice");
    assert_eq!(table.got(11), vec![Kill::Term]);
    assert_eq!(table.got(12), vec![Kill::Term]);
    assert!(table.got(10).is_empty());
    assert_eq!(tree.alive(&table), 1);
    // The group dies; its id is recycled: a new process 10 leads a new group 10.
    table.exit(11);
    table.recycle(10, 800, 1);
    table.add(13, 801, 10, 10, Some(Kill::Term));
    let before = table.groups_signalled.borrow().len();
    let reached = tree.signal(&table, Kill::Kill);
    assert!(!reached.any());
    assert_eq!(table.groups_signalled.borrow().len(), before);
    assert!(table.got(10).is_empty() && table.got(13).is_empty());
    assert_eq!(tree.alive(&table), 0);
}

#[test]
fn lc_7_a_group_whose_id_a_foreign_process_took_is_never_captured_from_or_signalled() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, Some(Kill::Term)); // a detached leader, alone in its group
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    // It exits and is reaped; the OS gives pid 10 to another program's process, which leads
    // a new group 10.
    table.exit(10);
    table.recycle(10, 900, 1);
    tree.signal(&table, Kill::Term);
    // The wait's scan predates a child the foreign leader starts in its group: that child is
    // read as one of the processes born since the scan, a view without the foreign leader.
    *table.recent.borrow_mut() = Some(table.snapshot());
    table.add(11, 901, 10, 10, Some(Kill::Term));
    assert_eq!(tree.alive(&table), 0);
    let before = table.groups_signalled.borrow().len();
    assert!(!tree.signal(&table, Kill::Kill).any());
    assert_eq!(tree.survivors(&table), Vec::<i32>::new());
    assert_eq!(table.groups_signalled.borrow().len(), before);
    assert!(table.got(10).is_empty() && table.got(11).is_empty());
    assert!(!tree.kill_delivered());
}

#[test]
fn lc_7_a_group_seen_without_members_stays_over_even_once_its_id_is_free_again() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, Some(Kill::Term));
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    tree.signal(&table, Kill::Term);
    table.reap(10);
    assert_eq!(tree.alive(&table), 0, "the group has no member left");
    // Another program's process takes pid 10, makes group 10, starts a child in it and
    // exits: no process holds pid 10 any more, but group 10 has a member that is not ours.
    table.add(10, 900, 1, 10, Some(Kill::Term));
    table.add(11, 901, 10, 10, Some(Kill::Term));
    table.reap(10);
    assert_eq!(tree.alive(&table), 0);
    assert!(!tree.signal(&table, Kill::Kill).any());
    assert!(table.got(11).is_empty());
    assert!(table
        .groups_signalled
        .borrow()
        .iter()
        .all(|&(_, kill)| kill == Kill::Term));
}

#[test]
fn lc_7_a_restart_loop_the_sigkill_step_s_view_missed_is_killed_by_that_step() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, Some(Kill::Term)); // the leader dies of SIGTERM
    table.add(11, 6, 10, 10, Some(Kill::Kill)); // a loop in its group that ignores it
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    let reached = tree.signal(&table, Kill::Term);
    assert!(reached.group && !table.alive(10) && table.alive(11));
    // The loop: 11 starts its successor 12 and exits, after the scan the SIGKILL step reads
    // (shared with other runs' steps) was made.
    table.exit(11);
    *table.recent.borrow_mut() = Some(table.snapshot());
    table.add(12, 7, 11, 10, Some(Kill::Kill));
    table.exit_parent_of(12);
    let reached = tree.signal(&table, Kill::Kill);
    assert!(reached.any(), "the step reached the loop's newest process");
    assert!(!table.alive(12));
    assert!(tree.kill_delivered(), "the verdict is SIGKILL");
    assert!(table.groups_signalled.borrow().contains(&(10, Kill::Kill)));
}

#[test]
fn lc_4_a_reopened_run_keeps_what_the_earlier_attempt_left_and_its_group_stays_reapable() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, Some(Kill::Term)); // attempt 1's detached leader
    table.add(11, 6, 10, 10, Some(Kill::Kill)); // a member of its group that ignores SIGTERM
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    table.exit(10);
    tree.next_attempt(&table);
    assert_eq!((tree.child(), tree.group()), (None, None));
    assert!(
        tree.holds_group(&table, &table.snapshot(), 10),
        "the earlier group stays reapable (SIG-6)"
    );
    // Attempt 2: its own child and group. Its teardown takes attempt 1's leftover too.
    table.add(20, 8, OWN, 20, Some(Kill::Term));
    tree.attach(&table, Some(20), true, Some(20));
    tree.signal(&table, Kill::Term);
    assert!(table.alive(11) && !table.alive(20));
    assert!(tree.signal(&table, Kill::Kill).any());
    assert!(!table.alive(11));
    assert!(tree.kill_delivered());
}

#[test]
fn signal_process_group_a_group_is_held_while_it_is_the_run_s_or_a_captured_process_is_in_it() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, Some(Kill::Term)); // a detached leader
    table.add(30, 9, OWN, 30, Some(Kill::Term)); // another group of ours, not the run's
    let mut tree = Tree::default();
    assert!(
        !tree.holds_group(&table, &table.snapshot(), 10),
        "an empty tree holds nothing"
    );
    tree.attach(&table, Some(10), true, Some(10));
    assert!(tree.holds_group(&table, &table.snapshot(), 10));
    assert!(!tree.holds_group(&table, &table.snapshot(), 30));
    assert!(!tree.holds_group(&table, &table.snapshot(), OWN));
    // The leader exits; its group lives on in a member captured while it lived.
    table.add(11, 6, 10, 10, None);
    tree.capture(&table);
    table.exit(10);
    assert!(tree.holds_group(&table, &table.snapshot(), 10));
    // A retry replaces the child: the earlier group is no longer the verified one, but a
    // captured process is still in it.
    table.add(20, 8, OWN, 20, Some(Kill::Term));
    tree.attach(&table, Some(20), true, Some(20));
    assert!(tree.holds_group(&table, &table.snapshot(), 10));
    assert!(tree.holds_group(&table, &table.snapshot(), 20));
    // The earlier group dies and its id is recycled by a new, foreign group: not held.
    table.exit(11);
    table.recycle(10, 900, 1);
    assert!(!tree.holds_group(&table, &table.snapshot(), 10));
}

#[test]
fn lc_7_a_process_found_while_waiting_gets_the_last_signal() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, OWN, None);
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    assert_eq!(tree.alive(&table), 1);
    table.add(11, 6, 10, OWN, None);
    assert_eq!(tree.alive(&table), 2);
    assert!(
        table.got(11).is_empty(),
        "nothing was sent yet: nothing to repeat"
    );
    tree.signal(&table, Kill::Term);
    table.add(12, 7, 11, OWN, None);
    assert_eq!(tree.alive(&table), 3);
    assert_eq!(table.got(12), vec![Kill::Term]);
}

#[test]
fn lc_7_a_restart_loop_in_the_group_is_alive_though_a_recent_scan_shows_only_its_exited_processes()
{
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, None); // a detached leader that ignores SIGTERM
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    tree.signal(&table, Kill::Term);
    // The loop: 10 starts its successor 11 in the group and exits. The shared scan the wait
    // reads was taken just before 11 existed and after 10 exited.
    table.add(11, 6, 10, 10, None);
    table.exit(10);
    let stale: Vec<ProcInfo> = table
        .snapshot()
        .into_iter()
        .filter(|p| p.id.pid != 11)
        .collect();
    *table.recent.borrow_mut() = Some(stale);
    assert_eq!(tree.alive(&table), 1, "11 is found by a scan made now");
    assert_eq!(table.got(11), vec![Kill::Term], "and gets the last signal");
    // The group holds only zombies: gone, even though the stale scan is still served.
    table.exit(11);
    assert_eq!(tree.alive(&table), 0);
    // SIGKILL would find nothing to signal.
    assert!(!tree.signal(&table, Kill::Kill).any());
}

#[test]
fn lc_7_a_replaced_child_leaves_what_its_tree_still_runs_in_the_run_s_tree() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, 10, Some(Kill::Term)); // the first attempt, detached
    table.add(11, 6, 10, OWN, Some(Kill::Term)); // its helper, outside the group
    table.add(20, 8, OWN, OWN, Some(Kill::Term)); // the retry
    table.add(40, 2, OWN, OWN, Some(Kill::Term)); // another child of ours, not the run's
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    // No pid (the host cleared run.child, or a fake replaced it): the tree is kept.
    tree.attach(&table, None, false, None);
    assert_eq!(tree.alive(&table), 2);
    // The first attempt exits; a member of its group born since is found when the child is
    // replaced (its group is gone from the tree after that, its members are not).
    table.add(12, 7, 1, 10, Some(Kill::Term)); // an orphan in its group
    table.exit(10);
    tree.attach(&table, Some(20), true, None);
    assert_eq!(tree.child(), Some(ProcId { pid: 20, start: 8 }));
    assert_eq!(
        tree.group(),
        None,
        "the earlier child's group is not the new child's"
    );
    assert_eq!(tree.alive(&table), 3);
    let reached = tree.signal(&table, Kill::Term);
    assert!(reached.child && !reached.group);
    assert_eq!(reached.others, 2);
    assert_eq!(table.got(20), vec![Kill::Term]);
    assert_eq!(table.got(11), vec![Kill::Term]);
    assert_eq!(table.got(12), vec![Kill::Term]);
    assert!(
        table.got(10).is_empty(),
        "the exited first attempt is never signalled"
    );
    assert!(
        table.got(40).is_empty(),
        "a process outside the run is never signalled"
    );
    assert!(
        table.groups_signalled.borrow().is_empty(),
        "the earlier group is not signalled as a group"
    );
    assert_eq!(tree.alive(&table), 0);
}

#[test]
fn lc_7_a_new_child_that_got_the_earlier_child_s_pid_is_captured_as_the_child() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, OWN, Some(Kill::Term));
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    // The child exits and is reaped; the retry the host spawns gets the same pid.
    table.recycle(10, 900, OWN);
    // The exited child object again (its exit seen): nothing changes.
    tree.attach(&table, Some(10), false, None);
    assert_eq!(tree.child(), Some(ProcId { pid: 10, start: 5 }));
    // The new child object, running: it is the run's child now.
    tree.attach(&table, Some(10), true, None);
    assert_eq!(
        tree.child(),
        Some(ProcId {
            pid: 10,
            start: 900
        })
    );
    let reached = tree.signal(&table, Kill::Term);
    assert!(reached.child && !reached.child_gone);
    assert_eq!(table.got(10), vec![Kill::Term]);
}

#[cfg(target_os = "linux")]
mod linux_real {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn stat_lines_are_read_after_the_last_parenthesis() {
        let line = "42 (a) b) c (d)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1 2";
        let info = linux::parse_stat(42, line).unwrap();
        assert_eq!(
            info.id,
            ProcId {
                pid: 42,
                start: 123456
            }
        );
        assert_eq!((info.ppid, info.pgrp, info.alive), (7, 42, true));
        let zombie = "43 (z) Z 7 43 43 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0";
        assert!(!linux::parse_stat(43, zombie).unwrap().alive);
        // A live process whose main thread exited (pthread_exit) also shows Z, with its threads.
        let headless = "44 (h) Z 7 44 44 0 -1 0 0 0 0 0 0 0 0 0 20 0 2 0 99 0 0";
        let info = linux::parse_stat(44, headless).unwrap();
        assert!(info.alive);
        assert_eq!(info.id.start, 99);
        assert!(
            !linux::parse_stat(
                45,
                "45 (x) X 7 45 45 0 -1 0 0 0 0 0 0 0 0 0 20 0 2 0 99 0 0"
            )
            .unwrap()
            .alive
        );
        assert!(linux::parse_stat(1, "garbage").is_none());
        assert!(linux::parse_stat(1, "1 (x) S 0").is_none());
    }

    fn wait_gone(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if System.probe(pid).is_none_or(|i| !i.alive) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn lc_7_real_tree_is_found_and_killed_and_a_stale_start_time_is_never_signalled() {
        // sh -c 'sleep 30 & echo $!; trap "" TERM; sleep 30 & echo $!; wait'
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("sleep 30 & echo $!; (trap '' TERM; exec sleep 30) & echo $!; wait")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = String::new();
        let mut stdout = child.stdout.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.lines().count() < 2 && Instant::now() < deadline {
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
            out.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        let kids: Vec<i32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
        // The second grandchild prints its pid before its subshell has set the trap: wait until
        // it has exec'd `sleep` (after the trap), or a SIGTERM could still reach the shell.
        let comm = format!("/proc/{}/comm", kids[1]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = child.id() as i32;
        let mut tree = Tree::default();
        tree.attach(&System, Some(pid), true, None);
        assert_eq!(tree.alive(&System), 3, "the child and both grandchildren");

        // Pid reuse safety: the same pid with another start time is never signalled.
        let real = System.probe(kids[0]).unwrap();
        let stale = ProcId {
            pid: real.id.pid,
            start: real.id.start + 1,
        };
        assert_eq!(System.signal(stale, Kill::Kill), Sent::Gone);
        assert!(System.probe(kids[0]).unwrap().alive);

        let reached = tree.signal(&System, Kill::Term);
        assert!(reached.child);
        assert_eq!(reached.others, 2);
        let _ = child.wait();
        assert!(wait_gone(kids[0]));
        assert!(
            System.probe(kids[1]).is_some_and(|i| i.alive),
            "ignores SIGTERM"
        );
        assert_eq!(tree.alive(&System), 1);
        let reached = tree.signal(&System, Kill::Kill);
        assert!(reached.child_gone && reached.others == 1);
        assert!(wait_gone(kids[1]));
        assert_eq!(tree.alive(&System), 0);
        assert!(tree.survivors(&System).is_empty());
    }

    /// The pids of the live descendants of `root` in a scan of the whole table.
    fn scanned_descendants(root: ProcId) -> Vec<i32> {
        let snapshot = System.snapshot();
        let mut found: Vec<ProcId> = Vec::new();
        let mut frontier = vec![root];
        while let Some(parent) = frontier.pop() {
            for p in &snapshot {
                if p.alive && p.ppid == parent.pid && p.id.start >= parent.start {
                    found.push(p.id);
                    frontier.push(p.id);
                }
            }
        }
        let mut pids: Vec<i32> = found.iter().map(|id| id.pid).collect();
        pids.sort_unstable();
        pids
    }

    #[test]
    fn lc_7_the_lists_of_children_find_what_a_scan_of_the_table_finds() {
        // A child with two grandchildren, one of which has a child of its own.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("sleep 30 & sh -c 'sleep 30 & wait' & wait")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let root = System.probe(pid).unwrap().id;
        // Whatever happens below, everything this test started is SIGKILLed at the end.
        struct Reap(ProcId);
        impl Drop for Reap {
            fn drop(&mut self) {
                for p in scanned_descendants(self.0) {
                    if let Some(info) = System.probe(p) {
                        System.signal(info.id, Kill::Kill);
                    }
                }
                System.signal(self.0, Kill::Kill);
            }
        }
        let reap = Reap(root);
        let deadline = Instant::now() + Duration::from_secs(5);
        while scanned_descendants(root).len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let scanned = scanned_descendants(root);
        assert_eq!(scanned.len(), 3, "two grandchildren and a great-grandchild");
        let Some(listed) = System.descendants(&[root]) else {
            // A kernel without CONFIG_PROC_CHILDREN: captures scan the table (other tests).
            eprintln!("skipped: this kernel keeps no lists of children");
            drop(reap);
            let _ = child.wait();
            return;
        };
        let mut pids: Vec<i32> = listed
            .iter()
            .filter(|p| p.alive)
            .map(|p| p.id.pid)
            .collect();
        pids.sort_unstable();
        assert_eq!(pids, scanned);
        // This process is multi-threaded and the test runs on a thread of the harness, which
        // forked `sh`: the kernel lists it under that thread, and every thread is read.
        let own = System.probe(System.own_pid()).unwrap().id;
        assert_ne!(
            std::fs::read_dir(format!("/proc/{}/task", own.pid))
                .unwrap()
                .count(),
            1,
            "the test harness runs tests on threads"
        );
        let ours = System.descendants(&[own]).unwrap_or_default();
        assert!(
            ours.iter().any(|p| p.id == root),
            "a thread's child is found"
        );
        // A root whose start time does not match (a recycled pid) has no descendants.
        let stale = ProcId {
            pid,
            start: root.start + 1,
        };
        assert_eq!(System.descendants(&[stale]).map(|v| v.len()), Some(0));
        // Cleanup through the tree, which captures from the lists now (no group).
        let mut tree = Tree::default();
        tree.attach(&System, Some(pid), true, None);
        assert_eq!(tree.alive(&System), 4);
        tree.signal(&System, Kill::Kill);
        let _ = child.wait();
        for gone in scanned {
            assert!(wait_gone(gone));
        }
        assert_eq!(tree.alive(&System), 0);
    }

    #[test]
    fn lc_7_the_child_is_held_by_a_pidfd_and_a_zombie_counts_as_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let mut tree = Tree::default();
        tree.attach(&System, Some(pid), true, None);
        assert!(tree.child_handle.is_some(), "this kernel has pidfds");
        assert!(tree.child_alive(&System));
        assert_eq!(tree.alive(&System), 1);
        let reached = tree.signal(&System, Kill::Term);
        assert!(reached.child && !reached.child_gone);
        // Not reaped yet: the child is a zombie, which the handle reports as gone.
        assert!(wait_gone(pid));
        assert_eq!(tree.alive(&System), 0);
        assert!(!tree.child_alive(&System));
        let reached = tree.signal(&System, Kill::Kill);
        assert!(reached.child_gone && !reached.child);
        // Reaped: the pid may be anybody's now; the handle still refuses it.
        let _ = child.wait();
        let handle = tree.child_handle.clone().unwrap();
        assert!(!System.handle_alive(&handle));
        assert_eq!(System.handle_signal(&handle, Kill::Kill), Sent::Gone);
        assert!(tree.survivors(&System).is_empty());
    }

    #[test]
    fn lc_7_never_init_or_self() {
        let own = System.own_pid();
        let me = System.probe(own).unwrap();
        assert_eq!(System.signal(me.id, Kill::Term), Sent::Failed);
        let init = ProcId { pid: 1, start: 0 };
        assert_eq!(System.signal(init, Kill::Term), Sent::Failed);
        assert!(!System.signal_group(1, Kill::Term));
        assert!(!System.signal_group(0, Kill::Term));
    }

    #[test]
    fn snapshot_cost_is_small() {
        let t0 = Instant::now();
        let n = 20;
        let mut count = 0;
        for _ in 0..n {
            count = System.snapshot().len();
        }
        let per = t0.elapsed() / n;
        eprintln!("snapshot of {count} processes: {per:?}");
        assert!(count > 1);
    }
}

#[test]
fn lc_7_sigkill_is_preceded_by_a_freeze_so_a_fork_in_flight_is_found_and_killed() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, OWN, Some(Kill::Kill)); // ignores SIGTERM; no group of its own
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    table.fork_in_flight(10, 11, 6);
    tree.signal(&table, Kill::Term);
    assert!(table.alive(10));
    let reached = tree.signal(&table, Kill::Kill);
    // The fork completed when 10 stopped: 11 is 10's child, found by the next read, stopped,
    // then killed with it. Without the freeze 10 died mid-fork and 11 went to init, unseen.
    assert_eq!(*table.stopped.borrow(), vec![10, 11]);
    assert!(!table.alive(10) && !table.alive(11));
    assert_eq!(table.got(11), vec![Kill::Kill]);
    assert_eq!(
        reached,
        Reached {
            child: true,
            child_gone: false,
            group: false,
            others: 1
        }
    );
    assert_eq!(tree.alive(&table), 0);
}

#[test]
fn lc_7_with_a_group_the_freeze_reads_the_whole_table_once_then_the_stopped_tree_only() {
    let table = FakeTable::default();
    table.lists_children.set(true);
    table.add(10, 5, OWN, 10, Some(Kill::Kill)); // a detached leader that ignores SIGTERM
    table.add(11, 6, 10, 10, Some(Kill::Kill));
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    tree.signal(&table, Kill::Term);
    // 11 forks as it is stopped: its child is found in its list of children, not by a scan.
    table.fork_in_flight(11, 12, 7);
    let before = table.scans.get();
    let reached = tree.signal(&table, Kill::Kill);
    assert_eq!(table.scans.get() - before, 1, "one scan: the first read");
    assert!(reached.group && reached.child);
    assert!(!table.alive(10) && !table.alive(11) && !table.alive(12));
    assert_eq!(tree.alive(&table), 0);
    // Once the zombies are reaped (nothing alive, no member left), the last reap reads no
    // table at all.
    table.procs.borrow_mut().retain(|p| p.info.alive);
    let before = table.scans.get();
    assert!(tree.survivors(&table).is_empty());
    assert_eq!(table.scans.get(), before);
}

#[test]
fn lc_7_a_sigterm_step_stops_nothing() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, OWN, Some(Kill::Kill));
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    tree.signal(&table, Kill::Term);
    assert!(table.stopped.borrow().is_empty());
    assert_eq!(table.got(10), vec![Kill::Term]);
}

#[test]
fn lc_7_a_child_attached_as_a_zombie_is_captured_and_its_group_reaped() {
    let table = FakeTable::default();
    // A detached leader started a grandchild in its group and exited before the host attached
    // it; Node has not reaped it yet, so the host still says it runs.
    table.add(10, 5, OWN, 10, Some(Kill::Term));
    table.add(11, 6, 10, 10, Some(Kill::Kill));
    table.exit(10);
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, Some(10));
    assert_eq!(
        tree.child().map(|c| c.pid),
        Some(10),
        "the zombie child is captured"
    );
    assert!(!tree.child_alive(&table));
    let reached = tree.signal(&table, Kill::Term);
    assert!(reached.group && reached.child_gone);
    assert_eq!(table.got(11), vec![Kill::Term]);
    assert_eq!(tree.alive(&table), 1);
    tree.signal(&table, Kill::Kill);
    assert_eq!(table.got(11), vec![Kill::Term, Kill::Kill]);
    assert_eq!(tree.alive(&table), 0);
    // A child that is not ours, zombie or not, is never captured.
    let mut other = Tree::default();
    table.add(20, 8, 1, 20, None);
    table.exit(20);
    other.attach(&table, Some(20), true, None);
    assert_eq!(other.child(), None);
}

#[test]
fn signal_process_group_a_group_the_tree_did_not_make_is_not_held_though_a_run_process_joined_it() {
    let table = FakeTable::default();
    table.add(10, 5, OWN, OWN, Some(Kill::Term)); // the run's child, in the daemon's group
    table.add(30, 6, OWN, 30, Some(Kill::Term)); // a decoy of the daemon's, leading group 30
    table.add(11, 7, 10, 30, Some(Kill::Term)); // the run's grandchild joined group 30
    table.add(12, 8, 10, 12, Some(Kill::Term)); // another one made its own group, 12
    let mut tree = Tree::default();
    tree.attach(&table, Some(10), true, None);
    assert_eq!(tree.alive(&table), 3);
    assert!(!tree.holds_group(&table, &table.snapshot(), 30));
    assert!(tree.holds_group(&table, &table.snapshot(), 12));
    assert!(!tree.holds_group(&table, &table.snapshot(), OWN));
}
