//! One run's core-owned state ([`RunState`]), built by one constructor for `create` and for
//! hydration, and the rules about a single run: which statuses are terminal (TRM-1), which
//! fields the host may write ([`TextField`], [`NumberField`]) and what the host sees of them
//! ([`MirrorFields`]).

use std::sync::Arc;

use serde::Serialize;

use crate::durable::HostFields;
use crate::error::CoreResult;
use crate::escalation::Escalation;
use crate::history::History;
use crate::log_writer::LogTarget;
use crate::signals::ChildHandle;

/// The three terminal statuses, in their fixed order (MOD-1, MOD-5). The single home of
/// this rule: the JS facade reads the list from here.
pub const TERMINAL_STATUSES: [&str; 3] = ["succeeded", "failed", "canceled"];

/// The status of a run `create()` just made.
pub const QUEUED: &str = "queued";
/// The status a run reopened for a teardown retry has (LC-9).
pub const RUNNING: &str = "running";
/// LC-9: the error code of a run whose process tree the host's terminator could not verify as
/// stopped; such a run can be reopened for a retry of its teardown.
pub const TERMINATION_UNVERIFIED: &str = "RUN_TERMINATION_UNVERIFIED";

/// TRM-1: `status` is one of [`TERMINAL_STATUSES`] (a non-string status is not).
pub fn is_terminal(status: Option<&str>) -> bool {
    matches!(status, Some(status) if TERMINAL_STATUSES.contains(&status))
}

/// Core-owned text fields the host may assign on a run object (RUN-3). A non-string value
/// reaches the core as `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextField {
    ProjectId,
    ConversationId,
    Status,
    Signal,
    Error,
    ErrorCode,
    /// LC-5: the host's reason for the terminal transition (a watchdog, a cancel origin).
    TerminalTrigger,
    /// LC-5: who asked for the cancel (also recorded by `cancel`, first origin wins).
    CancelOrigin,
}

/// Core-owned numeric fields the host may assign on a run object (RUN-3). A non-number value
/// reaches the core as `None`; `CancelRequested` is a boolean passed as 0 / 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberField {
    UpdatedAt,
    ExitCode,
    ChildExitObservedAt,
    CancelRequested,
}

/// One run's core-owned state. Fields are read through [`crate::Service::state`]; they are
/// written only by the service (host writes go through [`crate::Service::set_text`] and
/// [`crate::Service::set_number`], which keep the indexes in step).
pub struct RunState {
    pub id: String,
    /// Where the run sorts in the registry (creation order; see [`OrderKey`]).
    pub(crate) order: OrderKey,
    pub project_id: Option<String>,
    pub conversation_id: Option<String>,
    /// `None` when the host wrote a non-string status.
    pub status: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub next_event_id: u64,
    pub history: History,
    /// Id of the latest `'end'` record written by `finish` (IMP-8).
    pub(crate) end_event_id: Option<u64>,
    pub exit_code: Option<f64>,
    pub signal: Option<String>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub cancel_requested: bool,
    pub child_exit_observed_at: Option<f64>,
    pub(crate) log: Option<Arc<LogTarget>>,
    /// IMP-1/IMP-2: once set, nothing of this run is persisted again.
    pub log_closed: bool,
    /// LC-9: reopened to retry a teardown that could not be verified, until its new verdict: the
    /// state file keeps the failure (and the tree's identity) until then, so a daemon that dies
    /// meanwhile can still retry it after a restart.
    pub retrying_teardown: bool,
    /// A journal line of this run was queued (its journal must exist once the log is closed).
    pub(crate) log_lines_queued: bool,
    /// In the registry (what `get`, `list` and `shutdownActive` see).
    pub(crate) registered: bool,
    pub(crate) cancel: Option<Escalation>,
    pub(crate) shutdown: Option<Escalation>,
    /// The group id IMP-5 verified for this run's child (by `signalChild` or the LC-7 attach).
    pub verified_group: Option<i32>,
    /// The child's pidfd (or pid), opened at its first signal while it was alive.
    pub(crate) child_handle: Option<ChildHandle>,
    /// LC-7: the run's captured process tree (the child, its group, its descendants).
    pub(crate) tree: crate::tree::Tree,
    /// LC-3, HF-8: the keys the run was created (or hydrated) with, that `createOrReuse` and
    /// `findByPluginWorkflowId` find it by.
    pub(crate) keys: crate::lookup::LookupKeys,
    /// LC-1: the host-owned values of `state.json` as the facade last passed them (and, for a
    /// hydrated run, every other field its file held).
    pub(crate) host: HostFields,
    /// Left the registry through `drop` (never found by id again; its state file is gone).
    pub(crate) dropped: bool,
    /// LC-5: who asked for the cancel (`cancel(run, origin)`; the first origin wins).
    pub cancel_origin: Option<String>,
    /// LC-5: what made the run terminal (e.g. `daemon_restart` for an interrupted run).
    pub terminal_trigger: Option<String>,
    /// LC-5: when the run became terminal (ms), set by every terminal transition.
    pub terminal_at: Option<f64>,
    /// The bytes reported to the JS engine as held by the run's object since it left the
    /// registry (see [`crate::service::Service::note_unreachable`]), taken back at its release.
    pub(crate) reported_external: u64,
    /// HF-20: how the run's last state-file write went.
    pub state_persistence: crate::durable::state::StatePersistence,
}

/// What a new run starts from.
pub(crate) struct NewRun {
    pub id: String,
    pub order: OrderKey,
    pub max_events: Option<usize>,
    pub log: Option<Arc<LogTarget>>,
    pub now: f64,
}

/// A run's place in the registry. Runs created by this service sort by creation sequence
/// (`major = 2 * seq + 1`); a run hydrated from disk is slotted in by its `createdAt`, before
/// the first run of this service created after it (an even `major`, then its `createdAt`, then
/// its id: runs created in the same millisecond sort by id whatever order they were loaded in,
/// as the disk index orders them, LC-2), so `list()` stays in creation order across restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    pub(crate) major: u64,
    pub(crate) created: u64,
    /// A hydrated run's id as the number its hex digits spell, high and low halves (for ids as
    /// `create` makes them, lower-case, the same order as the strings'; two `u64` keep the key
    /// 8-byte aligned); 0 for a run this service created.
    pub(crate) id: [u64; 2],
    /// The hydration sequence: only two ids that spell the same number differ here.
    pub(crate) tie: u64,
}

impl OrderKey {
    /// The key of the `seq`-th run created by this service.
    pub(crate) fn created(seq: u64) -> Self {
        Self {
            major: 2 * seq + 1,
            created: 0,
            id: [0; 2],
            tie: 0,
        }
    }

    /// True for a run created by this service (not hydrated).
    pub(crate) fn is_created(&self) -> bool {
        self.major % 2 == 1
    }
}

/// The number a run id's hex digits spell (its dashes skipped), as [`OrderKey::id`] holds it;
/// 0 for a string that is not made of hex digits and dashes (never a run id, LC-2).
pub(crate) fn id_number(id: &str) -> [u64; 2] {
    let mut number: u128 = 0;
    for c in id.chars().filter(|&c| c != '-') {
        let Some(digit) = c.to_digit(16) else {
            return [0; 2];
        };
        number = number.wrapping_shl(4) | u128::from(digit);
    }
    // (The halves of a u128: the casts keep exactly 64 bits each.)
    [(number >> 64) as u64, number as u64]
}

impl RunState {
    /// The one constructor: a registered `queued` run with no events, created at `now`
    /// (CRE-3). Hydration starts from it too and overlays what the state file recorded.
    pub(crate) fn new(new: NewRun) -> Self {
        Self {
            id: new.id,
            order: new.order,
            project_id: None,
            conversation_id: None,
            status: Some(QUEUED.to_owned()),
            created_at: new.now,
            updated_at: new.now,
            next_event_id: 1,
            history: History::new(new.max_events),
            end_event_id: None,
            exit_code: None,
            signal: None,
            error: None,
            error_code: None,
            cancel_requested: false,
            child_exit_observed_at: None,
            log: new.log,
            log_closed: false,
            retrying_teardown: false,
            log_lines_queued: false,
            registered: true,
            cancel: None,
            shutdown: None,
            verified_group: None,
            child_handle: None,
            tree: crate::tree::Tree::default(),
            keys: crate::lookup::LookupKeys::default(),
            host: HostFields::default(),
            dropped: false,
            cancel_origin: None,
            terminal_trigger: None,
            terminal_at: None,
            reported_external: 0,
            state_persistence: crate::durable::state::StatePersistence::NotWritten,
        }
    }

    pub fn is_terminal(&self) -> bool {
        is_terminal(self.status.as_deref())
    }

    /// At the terminal transition: closes the descriptors held on the child (its pidfds, for
    /// signalling and for the tree). A finished run stays registered until its TTL eviction
    /// (30 minutes by default), and a descriptor each would add up to the process's limit in
    /// a busy daemon. Identity is not lost: the tree still knows the child by pid and start
    /// time, and a later `signalChild` on a child Node has not reaped opens a fresh pidfd (its
    /// pid cannot have been reused before that).
    pub(crate) fn release_process_handles(&mut self) {
        self.child_handle = None;
        self.tree.release_handle();
    }

    /// The run's host-visible core fields (see [`MirrorFields`]).
    pub fn mirror_fields(&self) -> MirrorFields<'_> {
        MirrorFields {
            project_id: self.project_id.as_deref(),
            conversation_id: self.conversation_id.as_deref(),
            status: self.status.as_deref(),
            updated_at: self.updated_at,
            next_event_id: self.next_event_id,
            exit_code: self.exit_code,
            signal: self.signal.as_deref(),
            error: self.error.as_deref(),
            error_code: self.error_code.as_deref(),
            cancel_requested: self.cancel_requested,
            child_exit_observed_at: self.child_exit_observed_at,
            terminal_at: self.terminal_at,
            terminal_trigger: self.terminal_trigger.as_deref(),
            cancel_origin: self.cancel_origin.as_deref(),
        }
    }
}

/// The core's view of a run's host-visible fields, as the JS facade mirrors them on the run
/// object. Serialized for the test-support call `runCoreFields`, which lets the JS suites
/// check after every test that the mirror has not drifted from the core.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorFields<'a> {
    pub project_id: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub updated_at: f64,
    pub next_event_id: u64,
    pub exit_code: Option<f64>,
    pub signal: Option<&'a str>,
    pub error: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub cancel_requested: bool,
    pub child_exit_observed_at: Option<f64>,
    /// LC-5: read-only for the host.
    pub terminal_at: Option<f64>,
    pub terminal_trigger: Option<&'a str>,
    /// LC-5: read-only for the host (`cancel(run, origin)` records it).
    pub cancel_origin: Option<&'a str>,
}

impl MirrorFields<'_> {
    pub fn to_json(&self) -> CoreResult<String> {
        Ok(serde_json::to_string(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trm_1_only_the_three_terminal_statuses_are_terminal() {
        for status in TERMINAL_STATUSES {
            assert!(is_terminal(Some(status)));
        }
        for status in [
            None,
            Some(""),
            Some("queued"),
            Some("running"),
            Some("Failed"),
        ] {
            assert!(!is_terminal(status));
        }
    }

    #[test]
    fn mirror_fields_keep_their_js_names_and_order() {
        let run = RunState::new(NewRun {
            id: "r".into(),
            order: OrderKey::created(1),
            max_events: Some(1),
            log: None,
            now: 5.0,
        });
        assert_eq!(
            run.mirror_fields().to_json().unwrap(),
            concat!(
                r#"{"projectId":null,"conversationId":null,"status":"queued","updatedAt":5.0,"#,
                r#""nextEventId":1,"exitCode":null,"signal":null,"error":null,"errorCode":null,"#,
                r#""cancelRequested":false,"childExitObservedAt":null,"terminalAt":null,"#,
                r#""terminalTrigger":null,"cancelOrigin":null}"#
            )
        );
    }

    #[test]
    fn lc_2_an_id_number_orders_run_ids_as_their_strings_do() {
        let mut ids: Vec<String> = (0..500)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .chain([
                "00000000-0000-0000-0000-000000000000".to_owned(),
                "ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
                "00000000-0000-0001-0000-000000000000".to_owned(),
                "00000000-0000-0000-ffff-ffffffffffff".to_owned(),
            ])
            .collect();
        ids.sort();
        let numbers: Vec<[u64; 2]> = ids.iter().map(|id| id_number(id)).collect();
        assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(id_number("not-an-id"), [0; 2]);
    }
}
