//! Stopping runs: `cancel()` and `shutdownActive()` as plans the facade steps through
//! ([`crate::escalation`] builds them), signalling the run's child behind the IMP-5 guard,
//! and the IMP-13 reap of its verified process group.
//!
//! The facade asks for the first step (`cancel_begin`, `shutdown_begin`), carries it out with
//! the objects only JS holds, and asks for the next one with [`Service::next_step`], saying
//! whether the child exited during the last wait.

use crate::error::CoreResult;
use crate::escalation::{CancelGraces, Escalation, Step};
use crate::service::Service;
use crate::signals::{self, ChildHandle, Delivery, SignalSpec};

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
    /// CAN-1/CAN-2 and the first step of the plan (IMP-11 for a second call).
    pub fn cancel_begin(
        &mut self,
        slot: u32,
        has_child: bool,
        has_abort: bool,
        graces: CancelGraces,
        now: f64,
    ) -> CoreResult<CancelStart> {
        let run = self.run_mut(slot)?;
        if run.is_terminal() {
            return Ok(CancelStart::Terminal);
        }
        if run.cancel.is_some() {
            return Ok(CancelStart::InFlight);
        }
        run.cancel_requested = true;
        run.updated_at = now;
        let mut plan = Escalation::cancel(has_child, has_abort, graces);
        let step = plan.next(false);
        run.cancel = Some(plan);
        Ok(CancelStart::Step(step))
    }

    /// SHD-2: snapshot of the registered non-terminal runs in creation order.
    pub fn shutdown_snapshot(&self) -> Vec<u32> {
        self.order
            .values()
            .copied()
            .filter(|&slot| self.run(slot).is_ok_and(|r| !r.is_terminal()))
            .collect()
    }

    /// SHD-3 for one run of the snapshot: marks it `cancelRequested` with a fresh `updatedAt`
    /// and returns the first step of its shutdown plan.
    pub fn shutdown_begin(
        &mut self,
        slot: u32,
        has_abort: bool,
        grace_ms: f64,
        now: f64,
    ) -> CoreResult<Step> {
        let run = self.run_mut(slot)?;
        run.cancel_requested = true;
        run.updated_at = now;
        let mut plan = Escalation::shutdown(has_abort, grace_ms);
        let step = plan.next(false);
        run.shutdown = Some(plan);
        Ok(step)
    }

    /// The next step of a plan; `exited` answers the previous wait. IMP-13's
    /// [`Step::ReapGroup`] needs nothing from JS, so it is carried out here and the step after
    /// it is returned instead: this never returns `ReapGroup`.
    pub fn next_step(&mut self, slot: u32, kind: PlanKind, exited: bool) -> CoreResult<Step> {
        let mut step = self.advance_plan(slot, kind, exited)?;
        while step == Step::ReapGroup {
            self.reap_group(slot)?;
            step = self.advance_plan(slot, kind, false)?;
        }
        Ok(step)
    }

    /// Advances a plan by one step, `ReapGroup` included; a finished plan is dropped.
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
        let run = self.run_mut(slot)?;
        let Some(signal) = signal else {
            return Ok(Delivery::Fallback);
        };
        let Some(pid) = signals::as_pid(child_pid) else {
            return Ok(Delivery::Fallback);
        };
        let fresh = run.child_handle.as_ref().map(|h| h.pid) != Some(pid);
        if fresh {
            run.child_handle = Some(ChildHandle::open(pid));
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

    /// IMP-13: SIGKILL what is left of the run's verified process group (never a group that
    /// was not verified while the child lived). True when a signal was delivered.
    pub fn reap_group(&mut self, slot: u32) -> CoreResult<bool> {
        let run = self.run(slot)?;
        Ok(match run.verified_group {
            Some(pgid) => signals::signal_group(pgid, SignalSpec::Number(9)),
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalation::Fallback;
    use crate::service::CreateMeta;
    use crate::test_support::service;

    #[test]
    fn next_step_carries_out_the_reap_and_never_returns_it() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let graces = CancelGraces::from_env(f64::NAN, f64::NAN, f64::NAN);
        assert_eq!(
            svc.cancel_begin(slot, true, false, graces, 1.0).unwrap(),
            CancelStart::Step(Step::SigTerm)
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
                Step::WaitExit(3000.0),
                Step::FinishFromChild(Fallback::SigTerm),
                Step::Done
            ]
        );
    }

    #[test]
    fn can_1_and_imp_11_terminal_and_concurrent_cancels() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let graces = CancelGraces::from_env(f64::NAN, f64::NAN, f64::NAN);
        let first = svc.cancel_begin(slot, true, false, graces, 7.0).unwrap();
        assert_eq!(first, CancelStart::Step(Step::SigTerm));
        assert!(svc.state(slot).unwrap().cancel_requested);
        assert_eq!(svc.state(slot).unwrap().updated_at, 7.0);
        assert_eq!(
            svc.cancel_begin(slot, true, false, graces, 8.0).unwrap(),
            CancelStart::InFlight
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
            Step::ReapGroup
        );
        assert!(
            !svc.reap_group(slot).unwrap(),
            "no verified group, nothing to reap"
        );
        assert_eq!(
            svc.advance_plan(slot, PlanKind::Cancel, false).unwrap(),
            Step::Done
        );
        svc.finish(slot, Some("canceled".into()), None, None, "{}", 9.0)
            .unwrap();
        assert_eq!(
            svc.cancel_begin(slot, true, false, graces, 10.0).unwrap(),
            CancelStart::Terminal
        );
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
        svc.shutdown_begin(a, false, 10.0, 5.0).unwrap();
        assert!(svc.state(a).unwrap().cancel_requested);
        assert_eq!(svc.state(a).unwrap().updated_at, 5.0);
        assert!(!svc.state(b).unwrap().cancel_requested);
    }
}
