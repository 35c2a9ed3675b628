//! Stopping runs: `cancel()` and `shutdownActive()` as plans the facade steps through
//! ([`crate::escalation`] builds them), the cancel origin (LC-5), signalling the run's child
//! behind the IMP-5 guard (`signalChild`), and the run's process tree (LC-7, [`crate::tree`]):
//! captured when the host attaches the child, signalled as a whole at each step, and asked
//! whether anything of it is still alive while the facade waits (the barrier).
//!
//! The facade asks for the first step (`cancel_begin`, `shutdown_begin`), carries it out with
//! the objects only JS holds, and asks for the next one with [`Service::next_step`], saying
//! whether the tree exited during the last wait.

use crate::error::CoreResult;
use crate::escalation::{CancelGraces, Escalation, Step};
use crate::service::Service;
use crate::signals::{self, ChildHandle, Delivery, SignalSpec};
use crate::tree::{Kill, ProcessTable, Reached};

/// LC-5: the cancel origin `shutdownActive()` records.
pub const DAEMON_SHUTDOWN: &str = "daemon_shutdown";

/// Outcome of [`Service::shutdown_start`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ShutdownStart {
    /// The facade carries out this step of the plan next (after the SIGTERM step when the core
    /// took it).
    Step(Step),
    /// The core took the SIGTERM step, but the child is running and was not reached (not
    /// captured, no pid): the facade must `child.kill('SIGTERM')`, then ask for the next step.
    ChildKill,
}

/// Which plan [`Service::next_step`] advances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanKind {
    Cancel,
    Shutdown,
}

/// Outcome of `cancel_begin`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CancelStart {
    /// CAN-1: already terminal, nothing changed.
    Terminal,
    /// IMP-11: a cancel is already running; share its outcome.
    InFlight,
    /// The first step of a new plan.
    Step(Step),
}

impl Service {
    /// CAN-1/CAN-2 and the first step of the plan (IMP-11 for a second call). LC-5: the
    /// origin is recorded first (the first origin wins) and the state persisted, before any
    /// signal.
    pub fn cancel_begin(
        &mut self,
        slot: u32,
        has_child: bool,
        has_abort: bool,
        graces: CancelGraces,
        origin: &str,
        now: f64,
    ) -> CoreResult<CancelStart> {
        let run = self.run_mut(slot)?;
        if run.is_terminal() {
            return Ok(CancelStart::Terminal);
        }
        if run.cancel.is_some() {
            // IMP-11: the plan under way recorded (and persisted) its origin when it began.
            if run.cancel_origin.is_none() {
                self.record_cancel_origin(slot, origin)?;
            }
            return Ok(CancelStart::InFlight);
        }
        self.record_cancel_origin(slot, origin)?;
        let run = self.run_mut(slot)?;
        run.cancel_requested = true;
        run.updated_at = now;
        if run.shutdown.is_none() {
            run.tree.begin_teardown();
        }
        let mut plan = Escalation::cancel(has_child, has_abort, graces);
        let step = plan.next(false);
        run.cancel = Some(plan);
        Ok(CancelStart::Step(step))
    }

    /// HF-13: Stop of a run whose `'succeeded'` verdict still waits for the host's artifact
    /// delivery (the facade has checked `artifactDeliveryRequired` and that no receipt came):
    /// the verdict becomes `'canceled'`, with the cancel origin (the first wins),
    /// `cancelRequested`, `terminalAt` and `updatedAt` now (the trigger stays the host's); the
    /// state file is written with `host` (the host's values, as at every write). False, and
    /// nothing changed, when the run's status is not `'succeeded'`.
    pub fn cancel_pending_delivery(
        &mut self,
        slot: u32,
        origin: &str,
        host: Option<&str>,
        now: f64,
    ) -> CoreResult<bool> {
        let run = self.run_mut(slot)?;
        if run.status.as_deref() != Some("succeeded") {
            return Ok(false);
        }
        run.status = Some("canceled".to_owned());
        run.cancel_requested = true;
        run.updated_at = now;
        run.terminal_at = Some(now);
        if run.cancel_origin.is_none() {
            run.cancel_origin = Some(origin.to_owned());
        }
        self.persist_state_with(slot, host)?;
        Ok(true)
    }

    /// SHD-2: snapshot of the registered non-terminal runs in creation order.
    pub fn shutdown_snapshot(&self) -> Vec<u32> {
        // One scan of the process table serves every run's first teardown steps, which the
        // facade starts in one synchronous loop; it ends the pin with `end_shutdown_start`.
        self.processes.pin();
        self.order
            .values()
            .copied()
            .filter(|&slot| self.run(slot).is_ok_and(|r| !r.is_terminal()))
            .collect()
    }

    /// SHD-3 for one run of the snapshot: records the `daemon_shutdown` origin (LC-5), marks
    /// it `cancelRequested` with a fresh `updatedAt` and returns the first step of its
    /// shutdown plan.
    pub fn shutdown_begin(
        &mut self,
        slot: u32,
        has_child: bool,
        has_abort: bool,
        grace_ms: f64,
        now: f64,
    ) -> CoreResult<Step> {
        self.record_cancel_origin(slot, DAEMON_SHUTDOWN)?;
        let run = self.run_mut(slot)?;
        run.cancel_requested = true;
        run.updated_at = now;
        if run.cancel.is_none() && run.shutdown.is_none() {
            run.tree.begin_teardown();
        }
        let mut plan = Escalation::shutdown(has_child, has_abort, grace_ms);
        let step = plan.next(false);
        run.shutdown = Some(plan);
        Ok(step)
    }

    /// SHD-3 for one run of the snapshot in one call, as far as the core can take it:
    /// [`Service::shutdown_begin`], then the steps that need nothing of JS. The `CloseStdin`
    /// step is passed when `stdin_open` is false (there is nothing to close), and the SIGTERM
    /// step is carried out here ([`Service::signal_tree`], with the host's `pid`, `group` and
    /// `alive`); an `Abort` step, or stdin to close, stops at that step. The order of the steps
    /// is the plan's: nothing is signalled before `abort()` or before stdin is closed.
    #[allow(clippy::too_many_arguments)]
    pub fn shutdown_start(
        &mut self,
        slot: u32,
        has_child: bool,
        has_abort: bool,
        stdin_open: bool,
        grace_ms: f64,
        now: f64,
        pid: f64,
        group: f64,
        alive: bool,
    ) -> CoreResult<ShutdownStart> {
        let mut step = self.shutdown_begin(slot, has_child, has_abort, grace_ms, now)?;
        if step == Step::CloseStdin && !stdin_open {
            step = self.next_step(slot, PlanKind::Shutdown, false)?;
        }
        if step != Step::SigTerm {
            return Ok(ShutdownStart::Step(step));
        }
        let reached = self.signal_tree(slot, pid, group, alive, false)?;
        if alive && (signals::as_pid(pid).is_none() || !(reached.child || reached.child_gone)) {
            return Ok(ShutdownStart::ChildKill);
        }
        let next = self.next_step(slot, PlanKind::Shutdown, false)?;
        Ok(ShutdownStart::Step(next))
    }

    /// LC-5, as a plan begins: the first origin wins (one the host wrote before included), and
    /// the run's state is persisted with it (LC-1) before any signal, also when the host wrote
    /// it: the host's write of a field writes no file. Not while a run retries an unverified
    /// teardown (LC-9).
    fn record_cancel_origin(&mut self, slot: u32, origin: &str) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        if run.cancel_origin.is_none() {
            run.cancel_origin = Some(origin.to_owned());
        }
        // (Not for the retry of an unverified teardown: its file keeps the failure until the
        // new verdict, LC-9.)
        if run.retrying_teardown {
            return Ok(());
        }
        self.persist_state(slot).map(drop)
    }

    /// The next step of a plan; `exited` answers the previous wait (the tree exited).
    pub fn next_step(&mut self, slot: u32, kind: PlanKind, exited: bool) -> CoreResult<Step> {
        self.advance_plan(slot, kind, exited)
    }

    /// SHD-5: a plan whose steps threw in the facade is over. It is dropped, so the next
    /// `cancel` or `shutdownActive` starts a new plan instead of waiting for this one.
    pub fn abandon_plan(&mut self, slot: u32, kind: PlanKind) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        match kind {
            PlanKind::Cancel => run.cancel = None,
            PlanKind::Shutdown => run.shutdown = None,
        }
        Ok(())
    }

    /// Advances a plan by one step; a finished plan is dropped.
    fn advance_plan(&mut self, slot: u32, kind: PlanKind, exited: bool) -> CoreResult<Step> {
        let run = self.run_mut(slot)?;
        let plan = match kind {
            PlanKind::Cancel => &mut run.cancel,
            PlanKind::Shutdown => &mut run.shutdown,
        };
        let step = plan.as_mut().map_or(Step::Done, |p| p.next(exited));
        if step == Step::Done {
            *plan = None;
        }
        Ok(step)
    }

    /// SIG-2 under IMP-5: the verified group first, then the child's own pid through a handle
    /// that survives pid reuse. `Fallback` means the facade must call `child.kill(signal)`;
    /// `Gone` means the child has exited and nothing may be signalled.
    pub fn signal(
        &mut self,
        slot: u32,
        child_pid: f64,
        group: f64,
        signal: Option<SignalSpec>,
    ) -> CoreResult<Delivery> {
        let table = self.processes.clone();
        let run = self.run_mut(slot)?;
        let Some(signal) = signal else {
            return Ok(Delivery::Fallback);
        };
        let Some(pid) = signals::as_pid(child_pid) else {
            return Ok(Delivery::Fallback);
        };
        let fresh = run.child_handle.as_ref().map(|h| h.pid) != Some(pid);
        if fresh {
            // The handle first, the identity second: only this process's own child is
            // signalled here (or its group verified); any other pid in `run.child` (a fake
            // child object, a foreign process, this process itself) is `child.kill()`'s.
            let handle = ChildHandle::open(pid);
            if !crate::tree::is_own_child(&table, pid) {
                run.child_handle = None;
                return Ok(Delivery::Fallback);
            }
            run.child_handle = Some(handle);
        }
        let Some(handle) = run.child_handle.as_ref() else {
            return Ok(Delivery::Fallback);
        };
        // A child its pidfd reports as gone is never signalled, not even through its group id.
        // (A pidfd opened just now is for a live or not yet reaped child: no probe needed.)
        if !fresh && handle.has_pidfd() && handle.signal(SignalSpec::Probe) == Delivery::Gone {
            return Ok(Delivery::Gone);
        }
        if let Ok(pgid) = signals::verify_group(group, Some(pid)) {
            run.verified_group = Some(pgid);
            if signals::signal_group(pgid, signal) {
                return Ok(Delivery::Group);
            }
        }
        Ok(handle.signal(signal))
    }

    /// The facade started every run's teardown of a shutdown: scans are fresh again.
    pub fn end_shutdown_start(&self) {
        self.processes.unpin();
    }

    /// LC-7: the host set `run.child` or `run.processGroupId`. `pid` is the child's pid (NaN
    /// without one), `group` the host's group id (NaN without one), `alive` whether the child
    /// is still running as far as JS knows. Captures the child (a direct child of this process
    /// only, running or a zombie Node has not reaped), verifies the group while it is not
    /// reaped (IMP-5) and captures the tree.
    /// While a teardown of the run is under way, what this capture adds (a child attached
    /// after a signal step, and its tree) gets the last signal sent at once (a process found
    /// during a teardown gets the last signal already sent).
    /// Returns whether the tree has a live process: the facade then keeps the watch going
    /// ([`Service::capture_trees`]).
    pub fn attach(&mut self, slot: u32, pid: f64, group: f64, alive: bool) -> CoreResult<bool> {
        let before = self.run(slot)?.tree.captured().to_vec();
        self.attach_child(slot, pid, group, alive, true)?;
        let table = self.processes.clone();
        let run = self.run_mut(slot)?;
        let tearing_down = !run.is_terminal() && (run.cancel.is_some() || run.shutdown.is_some());
        run.tree.capture(&table);
        if tearing_down {
            run.tree.signal_captured_since(&table, &before);
        }
        Ok(run.tree.holds_live())
    }

    /// LC-7, between the steps (the facade's watch, every `TREE_WATCH_MS`): captures the tree
    /// of every run that is not terminal, so a descendant is known while its parent lives. A
    /// parent that exits later hands its children to init, where no capture finds them any
    /// more; what was captured before is still signalled by identity. Returns how many runs
    /// still hold a live captured process (0: the watch can stop until the next attach).
    pub fn capture_trees(&mut self) -> u32 {
        let table = self.processes.clone();
        let mut watched: u32 = 0;
        for run in self.slab.iter_mut().flatten() {
            // (A plan in flight: the teardown's last signal reaches what the watch finds.)
            let tearing_down = run.cancel.is_some() || run.shutdown.is_some();
            if !run.is_terminal() && run.tree.watch(&table, tearing_down) {
                watched = watched.saturating_add(1);
            }
        }
        watched
    }

    /// LC-7 when the service ends with its environment (a worker thread terminated, the host's
    /// process exiting): the JS timers that would take the remaining steps of a cancel or
    /// shutdown end with it. So every run still tearing down (no verdict yet) under a plan that
    /// signals its tree (one begun with a child) gets its SIGKILL step now, to what its tree
    /// holds (the signal step reads the process table afresh), each process by identity.
    /// Returns how many runs were signalled.
    pub fn kill_unfinished_teardowns(&mut self) -> usize {
        let table = self.processes.clone();
        let mut signalled = 0;
        for run in self.slab.iter_mut().flatten() {
            let tearing_down = [&run.cancel, &run.shutdown]
                .into_iter()
                .flatten()
                .any(Escalation::signals_tree);
            if run.is_terminal() || !tearing_down {
                continue;
            }
            run.tree.signal(&table, Kill::Kill);
            signalled += 1;
        }
        signalled
    }

    /// [`Service::attach`] without the capture. `host_write`: the host has just written
    /// `run.child` or `run.processGroupId` (see [`crate::tree::Tree::host_set_child`]), rather
    /// than a signal step passing the host's current values.
    fn attach_child(
        &mut self,
        slot: u32,
        pid: f64,
        group: f64,
        alive: bool,
        host_write: bool,
    ) -> CoreResult<()> {
        let table = self.processes.clone();
        let run = self.run_mut(slot)?;
        let pid = signals::as_pid(pid);
        if host_write {
            run.tree.host_set_child(&table, pid, alive);
        } else {
            run.tree.set_child(&table, pid, alive);
        }
        // The same child with the group already verified for it: nothing to verify again.
        if run.tree.group().is_some() && signals::as_pid(group) == run.tree.group() {
            return Ok(());
        }
        // The child is verified while it is not reaped (the host says it runs: Node has not
        // seen its exit), a zombie included: until Node reaps it, its pid is still its and it is
        // still in its group, whose members a leader that exited first left behind (LC-7).
        if let Some(child) = run.tree.child().filter(|_| alive) {
            if let Ok(pgid) = signals::verify_group(group, Some(child.pid)) {
                run.verified_group = Some(pgid);
                run.tree.set_group(&table, pgid);
            }
        }
        Ok(())
    }

    /// LC-7: one signal step of a cancel or shutdown, to the whole tree: the verified group
    /// and every captured process, each by identity (a recycled pid is never hit), after a
    /// fresh capture. `pid`/`group`/`alive` are the host's current values (CAN-8: a
    /// replaced child is attached first). What the facade must still do: `child.kill()` when
    /// the child was not reached and is neither captured nor known to be gone.
    pub fn signal_tree(
        &mut self,
        slot: u32,
        pid: f64,
        group: f64,
        alive: bool,
        kill: bool,
    ) -> CoreResult<Reached> {
        // The signal step captures the tree itself.
        self.attach_child(slot, pid, group, alive, false)?;
        let table = self.processes.clone();
        let run = self.run_mut(slot)?;
        let kill = if kill { Kill::Kill } else { Kill::Term };
        Ok(run.tree.signal(&table, kill))
    }

    /// `signalProcessGroup(pgid, signal)` / `reapProcessGroup(pgid)`: `signal` to the process
    /// group `pgid` only when IMP-5's id rules allow it, the group has a live member and one
    /// of this service's runs holds it ([`crate::tree::Tree::holds_group`]: its verified
    /// group, or a group a process it captured is alive in). A group no run of this service
    /// knows (a stale id whose number a new group now has, another program's group) is never
    /// signalled. True when the signal was sent.
    ///
    /// `only`: a run's slot, for `signalChild(run)` on an exited child (SIG-1 as SIG-6 amends
    /// it): then only that run's tree may hold the group.
    pub fn signal_held_group(&self, pgid: f64, signal: SignalSpec, only: Option<u32>) -> bool {
        let Ok(pgid) = signals::check_group_id(pgid) else {
            return false;
        };
        let snapshot = self.processes.fresh_snapshot();
        let has_member = snapshot.iter().any(|p| p.alive && p.pgrp == pgid);
        let held = |slot: usize| {
            let run = self.slab.get(slot).and_then(Option::as_ref);
            run.is_some_and(|run| run.tree.holds_group(&self.processes, &snapshot, pgid))
        };
        let held = match only {
            Some(slot) => held(slot as usize),
            None => (0..self.slab.len()).any(held),
        };
        has_member && held && signals::signal_group(pgid, signal)
    }

    /// LC-7, while the facade waits: how many processes of the run's tree are alive (a fresh
    /// capture; a process found only now gets the last signal sent).
    pub fn tree_alive(&mut self, slot: u32) -> CoreResult<u32> {
        let table = self.processes.clone();
        let run = self.run_mut(slot)?;
        let alive = run.tree.alive(&table);
        Ok(u32::try_from(alive).unwrap_or(u32::MAX))
    }

    /// LC-7, the end of the barrier: the pids of the tree still alive after the last wait
    /// (what `termination_failed` reports), each SIGKILLed once more.
    pub fn tree_survivors(&mut self, slot: u32) -> CoreResult<Vec<i32>> {
        let table = self.processes.clone();
        Ok(self.run_mut(slot)?.tree.survivors(&table))
    }

    /// LC-7's verdict: a SIGKILL reached a process of the run's tree (of its current child:
    /// [`crate::tree::Tree::kill_delivered`]).
    pub fn tree_killed(&self, slot: u32) -> CoreResult<bool> {
        Ok(self.run(slot)?.tree.kill_delivered())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalation::Fallback;
    use crate::service::CreateMeta;
    use crate::test_support::service;
    #[cfg(target_os = "linux")]
    use crate::test_support::Spawned;

    #[test]
    fn lc_7_a_cancel_plan_with_a_child_ends_in_its_finish_step() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let graces = CancelGraces::from_env(f64::NAN, f64::NAN, f64::NAN);
        assert_eq!(
            svc.cancel_begin(slot, true, false, graces, "user_stop", 1.0)
                .unwrap(),
            CancelStart::Step(Step::CloseStdin)
        );
        let mut steps = Vec::new();
        let mut exited = false;
        loop {
            let step = svc.next_step(slot, PlanKind::Cancel, exited).unwrap();
            steps.push(step);
            exited = matches!(step, Step::WaitExit(_));
            if step == Step::Done {
                break;
            }
        }
        assert_eq!(
            steps,
            vec![
                Step::SigTerm,
                Step::WaitExit(3000.0),
                Step::FinishFromChild(Fallback::SigTerm),
                Step::Done
            ]
        );
    }

    #[test]
    fn shd_5_an_abandoned_plan_lets_the_next_cancel_start_a_new_one() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let graces = CancelGraces::from_env(f64::NAN, f64::NAN, f64::NAN);
        let first = svc.cancel_begin(slot, true, false, graces, "user_stop", 1.0);
        assert_eq!(first.unwrap(), CancelStart::Step(Step::CloseStdin));
        let joined = svc.cancel_begin(slot, true, false, graces, "user_stop", 2.0);
        assert_eq!(joined.unwrap(), CancelStart::InFlight);
        svc.abandon_plan(slot, PlanKind::Cancel).unwrap();
        let again = svc.cancel_begin(slot, true, false, graces, "other", 3.0);
        assert_eq!(again.unwrap(), CancelStart::Step(Step::CloseStdin));
        assert_eq!(
            svc.state(slot).unwrap().cancel_origin.as_deref(),
            Some("user_stop"),
            "the first origin still wins"
        );
    }

    #[test]
    fn can_1_imp_11_lc_5_terminal_and_concurrent_cancels_and_the_first_origin() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let graces = CancelGraces::from_env(f64::NAN, f64::NAN, f64::NAN);
        let first = svc
            .cancel_begin(slot, true, false, graces, "user_stop", 7.0)
            .unwrap();
        assert_eq!(first, CancelStart::Step(Step::CloseStdin));
        assert!(svc.state(slot).unwrap().cancel_requested);
        assert_eq!(svc.state(slot).unwrap().updated_at, 7.0);
        assert_eq!(
            svc.cancel_begin(slot, true, false, graces, "project_deleted", 8.0)
                .unwrap(),
            CancelStart::InFlight
        );
        assert_eq!(
            svc.state(slot).unwrap().cancel_origin.as_deref(),
            Some("user_stop")
        );
        svc.shutdown_begin(slot, true, false, 10.0, 8.5).unwrap();
        assert_eq!(
            svc.state(slot).unwrap().cancel_origin.as_deref(),
            Some("user_stop"),
            "the first origin wins over the shutdown's"
        );
        assert_eq!(
            svc.advance_plan(slot, PlanKind::Cancel, false).unwrap(),
            Step::SigTerm
        );
        assert_eq!(
            svc.advance_plan(slot, PlanKind::Cancel, false).unwrap(),
            Step::WaitExit(3000.0)
        );
        assert_eq!(
            svc.advance_plan(slot, PlanKind::Cancel, true).unwrap(),
            Step::FinishFromChild(Fallback::SigTerm)
        );
        assert_eq!(
            svc.advance_plan(slot, PlanKind::Cancel, false).unwrap(),
            Step::Done
        );
        svc.finish(slot, Some("canceled".into()), None, None, "{}", 9.0)
            .unwrap();
        assert_eq!(
            svc.cancel_begin(slot, true, false, graces, "late", 10.0)
                .unwrap(),
            CancelStart::Terminal
        );
        assert_eq!(
            svc.state(slot).unwrap().cancel_origin.as_deref(),
            Some("user_stop")
        );
    }

    #[test]
    fn lc_5_an_origin_the_host_wrote_is_persisted_when_the_cancel_begins() {
        use crate::durable::STATE_FILE;
        use crate::run::TextField;
        use crate::test_support::log_dir;
        let (dir, layout) = log_dir("cancel-origin-host");
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(CreateMeta::default(), 0.0);
        svc.set_text(
            created.slot,
            TextField::CancelOrigin,
            Some("user_stop".into()),
        )
        .unwrap();
        let path = dir.join(&created.id).join(STATE_FILE);
        let origin = || -> serde_json::Value {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default()["cancelOrigin"]
                .clone()
        };
        assert_eq!(
            origin(),
            serde_json::Value::Null,
            "a host write writes no file"
        );
        let graces = CancelGraces::from_env(f64::NAN, f64::NAN, f64::NAN);
        svc.cancel_begin(created.slot, true, false, graces, "other", 1.0)
            .unwrap();
        assert_eq!(
            origin(),
            serde_json::json!("user_stop"),
            "the first origin wins"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_5_shutdown_records_daemon_shutdown() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        svc.shutdown_begin(slot, false, false, 10.0, 1.0).unwrap();
        assert_eq!(
            svc.state(slot).unwrap().cancel_origin.as_deref(),
            Some(DAEMON_SHUTDOWN)
        );
    }

    #[test]
    fn lc_7_a_fake_pid_attaches_nothing_and_signals_nothing() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        // Pid 1 (init) is alive, but not a child of this process: never captured.
        svc.attach(slot, 1.0, 1.0, true).unwrap();
        assert_eq!(svc.tree_alive(slot).unwrap(), 0);
        assert_eq!(svc.state(slot).unwrap().verified_group, None);
        let reached = svc.signal_tree(slot, 1.0, 1.0, true, false).unwrap();
        assert_eq!(reached, Reached::default());
        assert!(svc.tree_survivors(slot).unwrap().is_empty());
    }

    #[test]
    fn shd_3_lc_7_shutdown_start_stops_before_what_js_must_do() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        // An abort comes first: nothing is signalled, JS aborts.
        let start = svc
            .shutdown_start(slot, true, true, false, 10.0, 1.0, 1.0, 1.0, true)
            .unwrap();
        assert_eq!(start, ShutdownStart::Step(Step::Abort));
        assert_eq!(
            svc.state(slot).unwrap().cancel_origin.as_deref(),
            Some(DAEMON_SHUTDOWN)
        );
        // Stdin to close: JS closes it before any signal.
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let start = svc
            .shutdown_start(slot, true, false, true, 10.0, 1.0, 1.0, 1.0, true)
            .unwrap();
        assert_eq!(start, ShutdownStart::Step(Step::CloseStdin));
        // No child: the stdin step is passed, the run finishes at once.
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let start = svc
            .shutdown_start(
                slot,
                false,
                false,
                false,
                10.0,
                1.0,
                f64::NAN,
                f64::NAN,
                false,
            )
            .unwrap();
        assert_eq!(start, ShutdownStart::Step(Step::FinishNow));
        // A child the core cannot capture (pid 1 is not ours): SIGTERM is the facade's
        // child.kill(), then the grace.
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let start = svc
            .shutdown_start(slot, true, false, false, 10.0, 1.0, 1.0, 1.0, true)
            .unwrap();
        assert_eq!(start, ShutdownStart::ChildKill);
        assert_eq!(
            svc.next_step(slot, PlanKind::Shutdown, false).unwrap(),
            Step::WaitExit(10.0)
        );
        // An exited child needs no fallback.
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let start = svc
            .shutdown_start(slot, true, false, false, 10.0, 1.0, 1.0, 1.0, false)
            .unwrap();
        assert_eq!(start, ShutdownStart::Step(Step::WaitExit(10.0)));
    }

    #[test]
    fn shd_2_snapshot_takes_registered_non_terminal_runs_in_order() {
        let mut svc = service(Some(10), None);
        let a = svc.create(CreateMeta::default(), 0.0).slot;
        let b = svc.create(CreateMeta::default(), 0.0).slot;
        let c = svc.create(CreateMeta::default(), 0.0).slot;
        let d = svc.create(CreateMeta::default(), 0.0).slot;
        svc.finish(b, Some("succeeded".into()), None, None, "{}", 1.0)
            .unwrap();
        svc.drop_run(c, 1.0).unwrap();
        assert_eq!(svc.shutdown_snapshot(), vec![a, d]);
        svc.shutdown_begin(a, true, false, 10.0, 5.0).unwrap();
        assert!(svc.state(a).unwrap().cancel_requested);
        assert_eq!(svc.state(a).unwrap().updated_at, 5.0);
        assert!(!svc.state(b).unwrap().cancel_requested);
    }

    #[test]
    fn hf_13_only_a_succeeded_run_is_revised_to_canceled_and_the_first_origin_stays() {
        let mut svc = service(Some(10), None);
        let queued = svc.create(CreateMeta::default(), 0.0).slot;
        assert!(!svc
            .cancel_pending_delivery(queued, "user_stop", None, 1.0)
            .unwrap());
        assert_eq!(svc.state(queued).unwrap().status.as_deref(), Some("queued"));
        let done = svc.create(CreateMeta::default(), 0.0).slot;
        svc.finish(done, Some("succeeded".into()), Some(0.0), None, "{}", 2.0)
            .unwrap();
        assert!(svc
            .cancel_pending_delivery(done, "user_stop", None, 3.0)
            .unwrap());
        let state = svc.state(done).unwrap();
        assert_eq!(state.status.as_deref(), Some("canceled"));
        assert_eq!(
            state.terminal_trigger, None,
            "the trigger is the host's (LC-5)"
        );
        assert_eq!((state.terminal_at, state.updated_at), (Some(3.0), 3.0));
        assert!(state.cancel_requested);
        assert_eq!(state.cancel_origin.as_deref(), Some("user_stop"));
        assert_eq!(state.exit_code, Some(0.0), "the process verdict stays");
        assert!(
            !svc.cancel_pending_delivery(done, "again", None, 4.0)
                .unwrap(),
            "a canceled run is final"
        );
    }

    /// True while `pid` exists and is not a zombie (the process table's own reading).
    #[cfg(target_os = "linux")]
    fn running(pid: u32) -> bool {
        use crate::tree::{ProcessTable, System};
        i32::try_from(pid).is_ok_and(|pid| System.probe(pid).is_some_and(|info| info.alive))
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lc_7_a_service_dropped_mid_teardown_kills_the_tree_it_began_to_stop() {
        use std::time::{Duration, Instant};
        let mut svc = service(Some(10), None);
        let stopping = svc.create(CreateMeta::default(), 0.0).slot;
        let untouched = svc.create(CreateMeta::default(), 0.0).slot;
        let childless = svc.create(CreateMeta::default(), 0.0).slot;
        // Both ignore SIGTERM, and so does the grandchild (an ignored signal is inherited).
        let sleep = || {
            Spawned(
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap(),
            )
        };
        let mut a = Spawned(
            std::process::Command::new("sh")
                .args(["-c", "trap '' TERM; sleep 30 & wait"])
                .spawn()
                .unwrap(),
        );
        let mut b = sleep();
        let grandchild = {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let list = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", a.id()));
                if let Some(pid) = list
                    .ok()
                    .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
                {
                    break pid;
                }
                assert!(Instant::now() < deadline, "sh never started its sleep");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert!(svc
            .attach(stopping, f64::from(a.id()), f64::NAN, true)
            .unwrap());
        assert!(svc
            .attach(untouched, f64::from(b.id()), f64::NAN, true)
            .unwrap());
        let graces = CancelGraces::from_env(f64::NAN, f64::NAN, f64::NAN);
        svc.cancel_begin(stopping, true, false, graces, "user_stop", 1.0)
            .unwrap();
        // A cancel begun without a child never signals one attached later.
        svc.cancel_begin(childless, false, true, graces, "user_stop", 1.0)
            .unwrap();
        let mut c = sleep();
        assert!(svc
            .attach(childless, f64::from(c.id()), f64::NAN, true)
            .unwrap());
        svc.signal_tree(stopping, f64::from(a.id()), f64::NAN, true, false)
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(running(a.id()) && running(grandchild), "SIGTERM is ignored");
        drop(svc);
        // The SIGKILL step the JS timer would have taken: the child and its grandchild.
        let status = a.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while running(grandchild) {
            assert!(Instant::now() < deadline, "the grandchild survived");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A run nobody asked to stop is left alone, and so is the child-less plan's.
        assert!(b.try_wait().unwrap().is_none());
        assert!(c.try_wait().unwrap().is_none());
        // (The guards kill and reap b and c.)
    }

    // LC-7's watch, with a real child of this test process (Linux: the tree reads /proc).
    #[cfg(target_os = "linux")]
    #[test]
    fn lc_7_the_watch_counts_runs_with_a_live_tree_and_skips_terminal_ones() {
        let mut svc = service(Some(10), None);
        let idle = svc.create(CreateMeta::default(), 0.0).slot;
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        assert_eq!(svc.capture_trees(), 0, "no run has a child");
        let mut child = Spawned(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        );
        let pid = f64::from(child.id());
        assert!(!svc.attach(idle, f64::NAN, f64::NAN, false).unwrap());
        assert!(svc.attach(slot, pid, f64::NAN, true).unwrap());
        assert_eq!(svc.capture_trees(), 1);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(svc.capture_trees(), 0, "its tree is gone");

        // A terminal run is not watched, whatever its tree holds.
        let child = Spawned(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        );
        assert!(svc
            .attach(idle, f64::from(child.id()), f64::NAN, true)
            .unwrap());
        assert_eq!(svc.capture_trees(), 1);
        let verdict = crate::emit::Verdict {
            status: Some("succeeded".into()),
            exit_code: Some(0.0),
            signal: None,
        };
        assert!(svc.finish_begin(idle, verdict, None, 1.0).unwrap());
        assert_eq!(svc.capture_trees(), 0);
        // (The guard kills and reaps the second child.)
    }
}
