//! The numbers JS and the core exchange, as `#[napi]` enums so that `binding.d.ts` names them,
//! and their conversions from and to the core's types.

use chat_run_core::escalation::{Fallback, Step};
use chat_run_core::lookup::Lookup;
use chat_run_core::signals;
use chat_run_core::CancelStart;
use napi_derive::napi;

/// What the facade must do next in a cancel or shutdown plan. `runCancelBegin`,
/// `runShutdownStart` and `runEscalationNext` return a number: a positive one is a wait in ms
/// for the run's process tree to exit (LC-7: the child's `exit`/`close` and `runTreeAlive`
/// reaching 0; then call `runEscalationNext` with whether it did), a negative one is one of
/// these codes.
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum EscalationStep {
    /// The plan is over: resolve with the status body.
    Done = -1,
    /// Call `acpSession.abort()`, swallowing errors.
    Abort = -2,
    /// SIGTERM to the run's process tree (`runSignalTree`, then `child.kill` if it says so).
    Sigterm = -3,
    /// SIGKILL to the run's process tree, likewise.
    Sigkill = -4,
    /// `finish(run, 'canceled', null, 'SIGTERM')` now (a run without a child).
    FinishNow = -5,
    /// The tree exited: finish from the child's state, `SIGTERM` when it has no signal (CAN-6).
    FinishTerm = -6,
    /// The last wait is over: report survivors (`runTreeSurvivors`, LC-7's
    /// `termination_failed`), then finish from the child's state with `SIGKILL` (CAN-6).
    FinishKill = -7,
    /// `runCancelBegin` only: a cancel is already running; share its outcome (IMP-11).
    InFlight = -8,
    /// `runCancelBegin` only: the run is already terminal; nothing changed (CAN-1).
    Terminal = -9,
    /// LC-7: when `run.stdinOpen`, end the child's open stdin (errors swallowed), then
    /// `run.stdinOpen = false`.
    CloseStdin = -10,
}

impl EscalationStep {
    fn code(self) -> f64 {
        f64::from(self as i32)
    }
}

/// A plan step as the number JS receives.
pub(crate) fn step_code(step: Step) -> f64 {
    match step {
        Step::WaitExit(ms) => ms,
        Step::Done => EscalationStep::Done.code(),
        Step::Abort => EscalationStep::Abort.code(),
        Step::CloseStdin => EscalationStep::CloseStdin.code(),
        Step::SigTerm => EscalationStep::Sigterm.code(),
        Step::SigKill => EscalationStep::Sigkill.code(),
        Step::FinishNow => EscalationStep::FinishNow.code(),
        Step::FinishFromChild(Fallback::SigTerm) => EscalationStep::FinishTerm.code(),
        Step::FinishFromChild(Fallback::SigKill) => EscalationStep::FinishKill.code(),
    }
}

/// The outcome of `cancel_begin` as the number JS receives.
pub(crate) fn cancel_start_code(start: CancelStart) -> f64 {
    match start {
        CancelStart::Terminal => EscalationStep::Terminal.code(),
        CancelStart::InFlight => EscalationStep::InFlight.code(),
        CancelStart::Step(step) => step_code(step),
    }
}

/// Where `runSignal` delivered the signal.
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing was sent: call `child.kill(signal)`.
    Fallback = 0,
    /// The run's verified process group was signalled.
    Group = 1,
    /// The child's own pid was signalled.
    Pid = 2,
    /// The child has exited: nothing was sent, and nothing may be.
    Gone = 3,
}

impl From<signals::Delivery> for Delivery {
    fn from(delivery: signals::Delivery) -> Self {
        match delivery {
            signals::Delivery::Fallback => Delivery::Fallback,
            signals::Delivery::Group => Delivery::Group,
            signals::Delivery::Pid => Delivery::Pid,
            signals::Delivery::Gone => Delivery::Gone,
        }
    }
}

/// What one signal step of a cancel or shutdown reached (`runSignalTree`, LC-7).
#[napi(object)]
pub struct TreeSignal {
    /// The child itself was signalled natively (by pidfd/identity, or through its group).
    pub child: bool,
    /// The child was captured and has exited: nothing may be sent to its pid.
    pub child_gone: bool,
    /// The verified process group was signalled.
    pub group: bool,
    /// How many other processes of the tree were signalled one by one.
    pub others: u32,
}

impl From<chat_run_core::tree::Reached> for TreeSignal {
    fn from(reached: chat_run_core::tree::Reached) -> Self {
        Self {
            child: reached.child,
            child_gone: reached.child_gone,
            group: reached.group,
            others: reached.others,
        }
    }
}

/// A core-owned text field the host assigned (`runSetText`).
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum TextField {
    /// `run.projectId` (moves the run between the `list` indexes).
    ProjectId,
    /// `run.conversationId` (moves the run between the `list` indexes).
    ConversationId,
    /// `run.status` (rewrites the run's `run.json` once it has one).
    Status,
    /// `run.signal`.
    Signal,
    /// `run.error`.
    Error,
    /// `run.errorCode`.
    ErrorCode,
    /// `run.terminalTrigger` (LC-5: the host's reason for the terminal transition).
    TerminalTrigger,
    /// `run.cancelOrigin` (LC-5; `cancel(run, origin)` records it too, first origin wins).
    CancelOrigin,
}

impl From<TextField> for chat_run_core::TextField {
    fn from(field: TextField) -> Self {
        match field {
            TextField::ProjectId => Self::ProjectId,
            TextField::ConversationId => Self::ConversationId,
            TextField::Status => Self::Status,
            TextField::Signal => Self::Signal,
            TextField::Error => Self::Error,
            TextField::ErrorCode => Self::ErrorCode,
            TextField::TerminalTrigger => Self::TerminalTrigger,
            TextField::CancelOrigin => Self::CancelOrigin,
        }
    }
}

/// A core-owned numeric field the host assigned (`runSetNumber`; `CancelRequested` as 0 / 1).
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum NumberField {
    /// `run.updatedAt` (a non-number is kept as NaN).
    UpdatedAt,
    /// `run.exitCode`.
    ExitCode,
    /// `run.childExitObservedAt`.
    ChildExitObservedAt,
    /// `run.cancelRequested`, as 0 / 1.
    CancelRequested,
}

impl From<NumberField> for chat_run_core::NumberField {
    fn from(field: NumberField) -> Self {
        match field {
            NumberField::UpdatedAt => Self::UpdatedAt,
            NumberField::ExitCode => Self::ExitCode,
            NumberField::ChildExitObservedAt => Self::ChildExitObservedAt,
            NumberField::CancelRequested => Self::CancelRequested,
        }
    }
}

/// The key `runFindByKey` and `durableRunByKey` find a run by (LC-3, HF-8).
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum RunLookup {
    /// The `clientRequestId` the run was created with (`createOrReuse`).
    ClientRequestId = 0,
    /// The plugin workflow id of its `externalPluginAnalytics` (`findByPluginWorkflowId`).
    PluginWorkflowId = 1,
}

impl From<RunLookup> for Lookup {
    fn from(lookup: RunLookup) -> Self {
        match lookup {
            RunLookup::ClientRequestId => Lookup::ClientRequestId,
            RunLookup::PluginWorkflowId => Lookup::PluginWorkflowId,
        }
    }
}

/// What `runHydrate` returns instead of a slot (LC-2).
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum HydrateMiss {
    /// No run with this id (or not a run id, or no `runsLogDir`, or an invalid state file).
    NotFound = -1,
    /// Its files could not be read for want of a resource (too many open files): nothing was
    /// judged, a later call reads again. `takeUnreadable` says what failed.
    Unreadable = -2,
}
