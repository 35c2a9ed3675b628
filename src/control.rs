//! Functions that stop a run: the cancel and shutdown plans step by step, and signalling the
//! run's child and process tree. Conversion only; the plans and the tree live in the core
//! (`escalation`, `control`, `signals`, `tree`).

use chat_run_core::control::ShutdownStart;
use chat_run_core::escalation::CancelGraces;
use chat_run_core::signals;
use chat_run_core::PlanKind;
use napi::bindgen_prelude::Either;
use napi::{Env, Result};
use napi_derive::napi;

use crate::codes::{cancel_start_code, step_code, Delivery, EscalationStep, TreeSignal};
use crate::instances::service;
use crate::map_error;

/// `shutdownActive()`: the registered non-terminal runs, in creation order.
#[napi]
pub fn shutdown_snapshot(env: &Env, svc: u32) -> Result<Vec<u32>> {
    Ok(service(env, svc)?.shutdown_snapshot())
}

/// `shutdownActive()` started the teardown of every run of its snapshot: the process-table scan
/// the snapshot pinned for that loop is released.
#[napi]
pub fn shutdown_started(env: &Env, svc: u32) -> Result<()> {
    service(env, svc)?.end_shutdown_start();
    Ok(())
}

/// `cancel()`: CAN-1/CAN-2 and the first step: a wait in ms, or an `EscalationStep` code
/// (`Terminal` / `InFlight` included). The three env values are JS `Number()` results (NaN
/// when unset). `origin` is recorded first (LC-5: the first origin wins) and the state
/// persisted, before any signal.
#[napi]
#[allow(clippy::too_many_arguments)]
pub fn run_cancel_begin(
    env: &Env,
    svc: u32,
    slot: u32,
    has_child: bool,
    has_abort: bool,
    pi_abort_grace: f64,
    cancel_grace: f64,
    force_wait: f64,
    origin: String,
    now: f64,
) -> Result<f64> {
    let graces = CancelGraces::from_env(pi_abort_grace, cancel_grace, force_wait);
    service(env, svc)?
        .cancel_begin(slot, has_child, has_abort, graces, &origin, now)
        .map(cancel_start_code)
        .map_err(map_error)
}

/// `shutdownActive()` for one run of the snapshot, in one crossing: records the
/// `daemon_shutdown` origin (LC-5) and begins the run's plan; then, when the run has no `acpSession.abort` and no open stdin (`stdinOpen` false), the stdin step
/// (nothing to close) and the SIGTERM step (`runSignalTree` with the host's `pid`, `group` and
/// `alive`). Returns the step to carry out next (a wait in ms or an `EscalationStep` code), or
/// `EscalationStep.Sigterm` when the SIGTERM step was taken but the child could not be reached
/// natively: the facade then calls `child.kill('SIGTERM')` and asks `runEscalationNext`.
#[napi]
#[allow(clippy::too_many_arguments)]
pub fn run_shutdown_start(
    env: &Env,
    svc: u32,
    slot: u32,
    has_child: bool,
    has_abort: bool,
    stdin_open: bool,
    grace_ms: f64,
    now: f64,
    pid: f64,
    group: f64,
    alive: bool,
) -> Result<f64> {
    let start = service(env, svc)?
        .shutdown_start(
            slot, has_child, has_abort, stdin_open, grace_ms, now, pid, group, alive,
        )
        .map_err(map_error)?;
    Ok(match start {
        ShutdownStart::Step(step) => step_code(step),
        ShutdownStart::ChildKill => f64::from(EscalationStep::Sigterm as i32),
    })
}

/// The next step of the cancel (`shutdown = false`) or shutdown plan (a wait in ms or an
/// `EscalationStep` code); `exited` answers the previous wait (the tree exited).
#[napi]
pub fn run_escalation_next(
    env: &Env,
    svc: u32,
    slot: u32,
    shutdown: bool,
    exited: bool,
) -> Result<f64> {
    let kind = if shutdown {
        PlanKind::Shutdown
    } else {
        PlanKind::Cancel
    };
    service(env, svc)?
        .next_step(slot, kind, exited)
        .map(step_code)
        .map_err(map_error)
}

/// SHD-5: the cancel (`shutdown = false`) or shutdown plan of the run threw in the facade and is
/// over; the next `cancel` or `shutdownActive` starts a new one.
#[napi]
pub fn run_plan_abandon(env: &Env, svc: u32, slot: u32, shutdown: bool) -> Result<()> {
    let kind = if shutdown {
        PlanKind::Shutdown
    } else {
        PlanKind::Cancel
    };
    service(env, svc)?
        .abandon_plan(slot, kind)
        .map_err(map_error)
}

/// `cancel(run, origin)` of a run whose `'succeeded'` verdict waits for the host's artifact
/// delivery (HF-13): the verdict becomes `'canceled'` (origin, times), the state file
/// is written with `host`. False when the run is not `'succeeded'`.
#[napi]
pub fn run_cancel_pending_delivery(
    env: &Env,
    svc: u32,
    slot: u32,
    origin: String,
    host: Option<String>,
    now: f64,
) -> Result<bool> {
    service(env, svc)?
        .cancel_pending_delivery(slot, &origin, host.as_deref(), now)
        .map_err(map_error)
}

/// `signalChild` (native part): `pid`/`group` are NaN when absent; `signal` is a name or a
/// number.
#[napi]
pub fn run_signal(
    env: &Env,
    svc: u32,
    slot: u32,
    pid: f64,
    group: f64,
    signal: Either<String, f64>,
) -> Result<Delivery> {
    service(env, svc)?
        .signal(slot, pid, group, spec_of(&signal))
        .map(Delivery::from)
        .map_err(map_error)
}

/// A Node signal argument (a name or a number) as the core's signal; `None` when this OS has
/// no such signal.
fn spec_of(signal: &Either<String, f64>) -> Option<signals::SignalSpec> {
    match signal {
        Either::A(name) => signals::parse_signal_name(name),
        Either::B(number) => signals::parse_signal_number(*number),
    }
}

/// `signalChildProcess(child, processGroupId, signal)` (native part, no run): the group when
/// IMP-5 verifies it is the child's own; false when nothing was sent (the facade then calls
/// `child.kill(signal)`). `pid`/`group` are NaN when absent.
#[napi]
pub fn signal_child_group(pid: f64, group: f64, signal: Either<String, f64>) -> bool {
    spec_of(&signal).is_some_and(|spec| signals::signal_child_group(pid, group, spec))
}

/// `signalProcessGroup(processGroupId, signal)`: the group only while one of this service's
/// runs holds it (its verified group, or a group a process of its tree is alive in) and IMP-5's
/// id rules allow it; with `slot` (`signalChild` of a run whose child exited), only while that
/// run holds it. True when the signal was sent.
#[napi]
pub fn signal_held_group(
    env: &Env,
    svc: u32,
    group: f64,
    signal: Either<String, f64>,
    slot: Option<u32>,
) -> Result<bool> {
    let Some(spec) = spec_of(&signal) else {
        return Ok(false);
    };
    Ok(service(env, svc)?.signal_held_group(group, spec, slot))
}

/// LC-7: the host set `run.child` / `run.processGroupId`. `pid` and `group` are NaN when
/// absent; `alive` is false when the child already exited. Captures the child (a live direct
/// child of this process only), verifies the group while the child lives (IMP-5) and captures
/// its process tree. True when the tree has a live process (the facade's watch then runs).
#[napi]
pub fn run_attach(
    env: &Env,
    svc: u32,
    slot: u32,
    pid: f64,
    group: f64,
    alive: bool,
) -> Result<bool> {
    service(env, svc)?
        .attach(slot, pid, group, alive)
        .map_err(map_error)
}

/// LC-7, the watch: captures the process tree of every run that is not terminal. Returns how
/// many runs still hold a live captured process (0: the facade stops its timer).
#[napi]
pub fn capture_trees(env: &Env, svc: u32) -> Result<u32> {
    Ok(service(env, svc)?.capture_trees())
}

/// LC-7: SIGTERM (`kill = false`) or SIGKILL to the run's whole process tree, each process by
/// identity. `pid`, `group` and `alive` are the host's current values (as for `runAttach`).
#[napi]
pub fn run_signal_tree(
    env: &Env,
    svc: u32,
    slot: u32,
    pid: f64,
    group: f64,
    alive: bool,
    kill: bool,
) -> Result<TreeSignal> {
    service(env, svc)?
        .signal_tree(slot, pid, group, alive, kill)
        .map(TreeSignal::from)
        .map_err(map_error)
}

/// LC-7's barrier, while the facade waits: how many processes of the run's tree are alive.
#[napi]
pub fn run_tree_alive(env: &Env, svc: u32, slot: u32) -> Result<u32> {
    service(env, svc)?.tree_alive(slot).map_err(map_error)
}

/// LC-7, after the last wait: the pids of the run's tree still alive (each SIGKILLed once
/// more); non-empty means `termination_failed`.
#[napi]
pub fn run_tree_survivors(env: &Env, svc: u32, slot: u32) -> Result<Vec<i32>> {
    service(env, svc)?.tree_survivors(slot).map_err(map_error)
}

/// LC-7's verdict: whether a SIGKILL reached a process of the run's tree (of its current child),
/// at a SIGKILL step or to a process a wait found after one.
#[napi]
pub fn run_tree_killed(env: &Env, svc: u32, slot: u32) -> Result<bool> {
    service(env, svc)?.tree_killed(slot).map_err(map_error)
}
