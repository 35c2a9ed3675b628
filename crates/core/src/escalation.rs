//! The cancel and shutdown plans (SPEC CAN-3..CAN-6, SHD-3..SHD-4, IMP-13) as a small step
//! machine. [`crate::control`] keeps one per run and steps it for the facade.
//!
//! The core decides *what* happens and *how long* to wait; the JS facade carries out each step
//! with values only JS holds (the ACP session, the child object and its `exit`/`close` events)
//! and reports back whether the child exited during a wait.

use crate::timing;

/// One thing the facade must do next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Call `acpSession.abort()`, swallowing errors.
    Abort,
    /// `signalChild(run, 'SIGTERM')`.
    SigTerm,
    /// `signalChild(run, 'SIGKILL')`.
    SigKill,
    /// Wait up to this many ms for the child's `exit`/`close`, then report whether it exited.
    WaitExit(f64),
    /// `finish(run, 'canceled', null, 'SIGTERM')` right now (queued run, or shutdown).
    FinishNow,
    /// CAN-6: finish from the child's state with the given fallback signal.
    FinishFromChild(Fallback),
    /// IMP-13: SIGKILL whatever is left of the run's verified process group (grandchildren that
    /// outlived the leader), ignoring ESRCH.
    ReapGroup,
    /// The plan is over: resolve with the status body.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    SigTerm,
    SigKill,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Do(Step),
    /// Wait; if the child exited, take `on_exit` (when set) and jump to the plan's tail,
    /// otherwise continue with the next op.
    Wait {
        ms: f64,
        on_exit: Option<Step>,
    },
}

/// Graces a `cancel()` works with, after the env rules of SPEC §3.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CancelGraces {
    pub abort_grace_ms: f64,
    pub cancel_grace_ms: f64,
    pub force_wait_ms: f64,
}

impl CancelGraces {
    /// From the three env values as JS `Number()` parsed them (NaN when unset).
    pub fn from_env(pi_abort: f64, cancel: f64, force: f64) -> Self {
        Self {
            abort_grace_ms: timing::abort_grace(pi_abort),
            cancel_grace_ms: timing::cancel_grace(cancel),
            force_wait_ms: timing::force_wait(force),
        }
    }
}

/// A running plan.
#[derive(Clone, Debug)]
pub struct Escalation {
    ops: Vec<Op>,
    pc: usize,
    /// Where an early exit continues: the reap step (or the end).
    tail: usize,
    /// Set while a wait is outstanding: what to do if the child exited.
    waiting_on_exit: Option<Option<Step>>,
}

impl Escalation {
    /// CAN-3/CAN-4/CAN-5 for a non-terminal run, then IMP-13.
    pub fn cancel(has_child: bool, has_abort: bool, graces: CancelGraces) -> Self {
        let term = Some(Step::FinishFromChild(Fallback::SigTerm));
        let kill = Step::FinishFromChild(Fallback::SigKill);
        let mut ops = if !has_child {
            return Self::new(vec![Op::Do(Step::FinishNow)]);
        } else if has_abort {
            let g = graces.abort_grace_ms;
            vec![
                Op::Do(Step::Abort),
                Op::Wait {
                    ms: g,
                    on_exit: term,
                },
                Op::Do(Step::SigTerm),
                Op::Wait {
                    ms: g,
                    on_exit: term,
                },
            ]
        } else {
            vec![
                Op::Do(Step::SigTerm),
                Op::Wait {
                    ms: graces.cancel_grace_ms,
                    on_exit: term,
                },
            ]
        };
        ops.extend([
            Op::Do(Step::SigKill),
            Op::Wait {
                ms: graces.force_wait_ms,
                on_exit: Some(kill),
            },
            Op::Do(kill),
            Op::Do(Step::ReapGroup),
        ]);
        Self::new(ops)
    }

    /// SHD-3/SHD-4 for one run of a shutdown snapshot, then IMP-13.
    pub fn shutdown(has_abort: bool, grace_ms: f64) -> Self {
        let mut ops = Vec::with_capacity(7);
        if has_abort {
            ops.push(Op::Do(Step::Abort));
        }
        ops.extend([
            Op::Do(Step::SigTerm),
            Op::Do(Step::FinishNow),
            Op::Wait {
                ms: timing::timer_delay(grace_ms),
                on_exit: None,
            },
            Op::Do(Step::SigKill),
            Op::Wait {
                ms: timing::FORCE_WAIT_MS,
                on_exit: None,
            },
            Op::Do(Step::ReapGroup),
        ]);
        Self::new(ops)
    }

    fn new(ops: Vec<Op>) -> Self {
        let tail = match ops.last() {
            Some(Op::Do(Step::ReapGroup)) => ops.len() - 1,
            _ => ops.len(),
        };
        Self {
            ops,
            pc: 0,
            tail,
            waiting_on_exit: None,
        }
    }

    /// The next step. `exited` answers the previous `WaitExit` and is ignored otherwise.
    pub fn next(&mut self, exited: bool) -> Step {
        if let Some(on_exit) = self.waiting_on_exit.take() {
            if exited {
                self.pc = self.tail;
                if let Some(step) = on_exit {
                    return step;
                }
            }
        }
        let Some(op) = self.ops.get(self.pc).copied() else {
            return Step::Done;
        };
        self.pc += 1;
        match op {
            Op::Do(step) => step,
            Op::Wait { ms, on_exit } => {
                self.waiting_on_exit = Some(on_exit);
                Step::WaitExit(ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graces() -> CancelGraces {
        CancelGraces::from_env(f64::NAN, 40.0, 20.0)
    }

    fn steps_of(mut plan: Escalation, exit_at_wait: Option<usize>) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut waits = 0;
        let mut exited = false;
        loop {
            let step = plan.next(exited);
            exited = false;
            steps.push(step);
            match step {
                Step::Done => return steps,
                Step::WaitExit(_) => {
                    exited = exit_at_wait == Some(waits);
                    waits += 1;
                }
                _ => {}
            }
            assert!(steps.len() < 20, "plan never ends: {steps:?}");
        }
    }

    #[test]
    fn can_3_queued_run_finishes_at_once_without_abort() {
        let steps = steps_of(Escalation::cancel(false, true, graces()), None);
        assert_eq!(steps, vec![Step::FinishNow, Step::Done]);
    }

    #[test]
    fn can_5_sigterm_then_grace_then_sigkill_then_force_wait() {
        let steps = steps_of(Escalation::cancel(true, false, graces()), None);
        assert_eq!(
            steps,
            vec![
                Step::SigTerm,
                Step::WaitExit(40.0),
                Step::SigKill,
                Step::WaitExit(20.0),
                Step::FinishFromChild(Fallback::SigKill),
                Step::ReapGroup,
                Step::Done
            ]
        );
        let exited = steps_of(Escalation::cancel(true, false, graces()), Some(0));
        assert_eq!(
            exited,
            vec![
                Step::SigTerm,
                Step::WaitExit(40.0),
                Step::FinishFromChild(Fallback::SigTerm),
                Step::ReapGroup,
                Step::Done
            ]
        );
        let killed = steps_of(Escalation::cancel(true, false, graces()), Some(1));
        assert_eq!(
            &killed[4..],
            &[
                Step::FinishFromChild(Fallback::SigKill),
                Step::ReapGroup,
                Step::Done
            ]
        );
    }

    #[test]
    fn can_4_acp_abort_waits_before_each_signal() {
        let steps = steps_of(Escalation::cancel(true, true, graces()), None);
        assert_eq!(
            steps,
            vec![
                Step::Abort,
                Step::WaitExit(3000.0),
                Step::SigTerm,
                Step::WaitExit(3000.0),
                Step::SigKill,
                Step::WaitExit(20.0),
                Step::FinishFromChild(Fallback::SigKill),
                Step::ReapGroup,
                Step::Done
            ]
        );
        let after_abort = steps_of(Escalation::cancel(true, true, graces()), Some(0));
        assert_eq!(after_abort[2], Step::FinishFromChild(Fallback::SigTerm));
        let after_term = steps_of(Escalation::cancel(true, true, graces()), Some(1));
        assert_eq!(after_term[4], Step::FinishFromChild(Fallback::SigTerm));
    }

    #[test]
    fn shd_3_and_4_finish_before_waiting_then_sigkill_with_fixed_force_wait() {
        let steps = steps_of(Escalation::shutdown(true, 10.0), None);
        assert_eq!(
            steps,
            vec![
                Step::Abort,
                Step::SigTerm,
                Step::FinishNow,
                Step::WaitExit(10.0),
                Step::SigKill,
                Step::WaitExit(500.0),
                Step::ReapGroup,
                Step::Done
            ]
        );
        let exited = steps_of(Escalation::shutdown(false, 0.0), Some(0));
        assert_eq!(
            exited,
            vec![
                Step::SigTerm,
                Step::FinishNow,
                Step::WaitExit(1.0),
                Step::ReapGroup,
                Step::Done
            ]
        );
    }
}
