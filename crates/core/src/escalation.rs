//! The cancel and shutdown plans (SPEC CAN-3..CAN-6, SHD-3..SHD-4 as LC-7 amends them) as a
//! small step machine. [`crate::control`] keeps one per run and steps it for the facade.
//!
//! The core decides *what* happens and *how long* to wait; the JS facade carries out each step
//! with values only JS holds (the ACP session, the child object and its `exit`/`close` events,
//! its stdin) and reports back whether the run's process tree exited during a wait (LC-7's
//! barrier: the child exited and nothing of its tree is alive).
//!
//! Every plan with a child ends in a finish step, and only there: the run is finished after
//! its tree is gone or the last wait expired, never before (LC-7 replaces SHD-3's finish
//! before the child exits).

use crate::timing;

/// One thing the facade must do next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Call `acpSession.abort()`, swallowing errors.
    Abort,
    /// LC-7: close the child's stdin (when `run.stdinOpen`), then `run.stdinOpen = false`.
    CloseStdin,
    /// SIGTERM to the run's whole process tree (LC-7).
    SigTerm,
    /// SIGKILL to the run's whole process tree (LC-7).
    SigKill,
    /// Wait up to this many ms for the tree to exit, then report whether it did.
    WaitExit(f64),
    /// `finish(run, 'canceled', null, 'SIGTERM')` right now (a run without a child).
    FinishNow,
    /// CAN-6: finish from the child's state with the given fallback signal; after SIGKILL,
    /// first report whatever of the tree survived (LC-7's `termination_failed`).
    FinishFromChild(Fallback),
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
    /// Wait; if the tree exited, take `on_exit` (when set) and end the plan, otherwise
    /// continue with the next op.
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
    /// Set while a wait is outstanding: what to do if the tree exited.
    waiting_on_exit: Option<Option<Step>>,
}

impl Escalation {
    /// CAN-3/CAN-4/CAN-5 for a non-terminal run, as LC-7 amends them: stdin is closed just
    /// before the first SIGTERM (after the abort grace on the ACP path), every signal goes to
    /// the whole tree, and every wait is for the whole tree.
    pub fn cancel(has_child: bool, has_abort: bool, graces: CancelGraces) -> Self {
        if !has_child {
            return Self::new(vec![Op::Do(Step::CloseStdin), Op::Do(Step::FinishNow)]);
        }
        let term = Some(Step::FinishFromChild(Fallback::SigTerm));
        let mut ops = Vec::with_capacity(8);
        let grace = if has_abort {
            let g = graces.abort_grace_ms;
            ops.extend([
                Op::Do(Step::Abort),
                Op::Wait {
                    ms: g,
                    on_exit: term,
                },
            ]);
            g
        } else {
            graces.cancel_grace_ms
        };
        ops.extend([
            Op::Do(Step::CloseStdin),
            Op::Do(Step::SigTerm),
            Op::Wait {
                ms: grace,
                on_exit: term,
            },
        ]);
        Self::escalate(ops, graces.force_wait_ms)
    }

    /// SHD-3/SHD-4 for one run of a shutdown snapshot, as LC-7 amends them: abort, stdin,
    /// SIGTERM to the tree, `graceMs`, SIGKILL, the fixed 500 ms, and the finish only then (or
    /// as soon as the tree is gone).
    pub fn shutdown(has_child: bool, has_abort: bool, grace_ms: f64) -> Self {
        let mut ops = Vec::with_capacity(8);
        if has_abort {
            ops.push(Op::Do(Step::Abort));
        }
        ops.push(Op::Do(Step::CloseStdin));
        if !has_child {
            ops.push(Op::Do(Step::FinishNow));
            return Self::new(ops);
        }
        ops.extend([
            Op::Do(Step::SigTerm),
            Op::Wait {
                ms: timing::timer_delay(grace_ms),
                on_exit: Some(Step::FinishFromChild(Fallback::SigTerm)),
            },
        ]);
        Self::escalate(ops, timing::FORCE_WAIT_MS)
    }

    /// The common tail: SIGKILL, the force wait, the finish.
    fn escalate(mut ops: Vec<Op>, force_wait_ms: f64) -> Self {
        let kill = Step::FinishFromChild(Fallback::SigKill);
        ops.extend([
            Op::Do(Step::SigKill),
            Op::Wait {
                ms: force_wait_ms,
                on_exit: Some(kill),
            },
            Op::Do(kill),
        ]);
        Self::new(ops)
    }

    fn new(ops: Vec<Op>) -> Self {
        Self {
            ops,
            pc: 0,
            waiting_on_exit: None,
        }
    }

    /// True for a plan that signals the run's process tree (it was begun with a child): the
    /// teardown a service that goes away completes with SIGKILL
    /// ([`crate::Service::kill_unfinished_teardowns`]).
    pub fn signals_tree(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op, Op::Do(Step::SigTerm | Step::SigKill)))
    }

    /// The next step. `exited` answers the previous `WaitExit` and is ignored otherwise.
    pub fn next(&mut self, exited: bool) -> Step {
        if let Some(on_exit) = self.waiting_on_exit.take() {
            if exited {
                self.pc = self.ops.len();
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
    fn can_3_queued_run_closes_stdin_and_finishes_at_once_without_abort() {
        let steps = steps_of(Escalation::cancel(false, true, graces()), None);
        assert_eq!(steps, vec![Step::CloseStdin, Step::FinishNow, Step::Done]);
    }

    #[test]
    fn can_5_lc_7_stdin_then_sigterm_then_grace_then_sigkill_then_force_wait() {
        let steps = steps_of(Escalation::cancel(true, false, graces()), None);
        assert_eq!(
            steps,
            vec![
                Step::CloseStdin,
                Step::SigTerm,
                Step::WaitExit(40.0),
                Step::SigKill,
                Step::WaitExit(20.0),
                Step::FinishFromChild(Fallback::SigKill),
                Step::Done
            ]
        );
        let exited = steps_of(Escalation::cancel(true, false, graces()), Some(0));
        assert_eq!(
            exited,
            vec![
                Step::CloseStdin,
                Step::SigTerm,
                Step::WaitExit(40.0),
                Step::FinishFromChild(Fallback::SigTerm),
                Step::Done
            ]
        );
        let killed = steps_of(Escalation::cancel(true, false, graces()), Some(1));
        assert_eq!(
            &killed[5..],
            &[Step::FinishFromChild(Fallback::SigKill), Step::Done]
        );
    }

    #[test]
    fn can_4_lc_7_acp_abort_waits_and_stdin_closes_only_after_the_abort_grace() {
        let steps = steps_of(Escalation::cancel(true, true, graces()), None);
        assert_eq!(
            steps,
            vec![
                Step::Abort,
                Step::WaitExit(3000.0),
                Step::CloseStdin,
                Step::SigTerm,
                Step::WaitExit(3000.0),
                Step::SigKill,
                Step::WaitExit(20.0),
                Step::FinishFromChild(Fallback::SigKill),
                Step::Done
            ]
        );
        let after_abort = steps_of(Escalation::cancel(true, true, graces()), Some(0));
        assert_eq!(
            after_abort,
            vec![
                Step::Abort,
                Step::WaitExit(3000.0),
                Step::FinishFromChild(Fallback::SigTerm),
                Step::Done
            ]
        );
        let after_term = steps_of(Escalation::cancel(true, true, graces()), Some(1));
        assert_eq!(after_term[5], Step::FinishFromChild(Fallback::SigTerm));
    }

    #[test]
    fn shd_3_shd_4_lc_7_finish_only_after_the_barrier_with_the_fixed_force_wait() {
        let steps = steps_of(Escalation::shutdown(true, true, 10.0), None);
        assert_eq!(
            steps,
            vec![
                Step::Abort,
                Step::CloseStdin,
                Step::SigTerm,
                Step::WaitExit(10.0),
                Step::SigKill,
                Step::WaitExit(500.0),
                Step::FinishFromChild(Fallback::SigKill),
                Step::Done
            ]
        );
        let exited = steps_of(Escalation::shutdown(true, false, 0.0), Some(0));
        assert_eq!(
            exited,
            vec![
                Step::CloseStdin,
                Step::SigTerm,
                Step::WaitExit(1.0),
                Step::FinishFromChild(Fallback::SigTerm),
                Step::Done
            ]
        );
        let queued = steps_of(Escalation::shutdown(false, true, 10.0), None);
        assert_eq!(
            queued,
            vec![Step::Abort, Step::CloseStdin, Step::FinishNow, Step::Done]
        );
    }
}
