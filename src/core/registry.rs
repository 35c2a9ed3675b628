//! The run registry and per-run state machine of one service instance.
//!
//! Runs live in a slab addressed by a `u32` slot that the JS run object holds. The registry
//! proper (what `get`, `list` and `shutdownActive` see) is a separate ordered index, so a run
//! that was dropped or evicted keeps working (RUN-8) until its JS object is collected and the
//! facade releases the slot.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::core::backfill;
use crate::core::durable;
use crate::core::escalation::{CancelGraces, Escalation, Step};
use crate::core::history::{self, EventName, History};
use crate::core::log_writer::{LogFailure, LogLimits, LogLine, LogShared, LogTarget, LogWriter};
use crate::core::policy;
use crate::core::replay::BatchWriter;
use crate::core::signals::{self, ChildHandle, Delivery, SignalSpec};

/// The three terminal statuses, in their fixed order (MOD-1, MOD-5).
pub const TERMINAL_STATUSES: [&str; 3] = ["succeeded", "failed", "canceled"];

/// How long a backfill waits for the log writer to drain before reading (a stuck disk must not
/// hang `stream()`; what is not on disk by then is skipped, as IMP-3 allows).
pub const BACKFILL_SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// TRM-1.
pub fn is_terminal(status: Option<&str>) -> bool {
    matches!(status, Some(s) if TERMINAL_STATUSES.contains(&s))
}

/// Errors the core reports to the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    UnknownRun(u32),
    UnknownEventName(u32),
}

impl std::fmt::Display for CoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreError::UnknownRun(slot) => write!(
                f,
                "run handle {slot} is not a live run of this service (expected a run object returned by this service's create())"
            ),
            CoreError::UnknownEventName(id) => write!(
                f,
                "event name number {id} was never registered with this service (expected a number from intern_event)"
            ),
        }
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;

/// How `<runsLogDir>/<id>/events.jsonl` is built: `prefix + id + suffix`, both parts computed
/// once by Node's `path.join` so the result is normalized exactly as CRE-4 asks.
#[derive(Clone, Debug)]
pub struct LogLayout {
    pub prefix: String,
    pub suffix: String,
}

/// Construction options, already validated by the facade (OPT-2).
pub struct ServiceConfig {
    /// `None` = unbounded (`maxEvents: Infinity`).
    pub max_events: Option<usize>,
    pub log: Option<LogLayout>,
    pub log_limits: LogLimits,
}

/// The fields `create()` reads (CRE-3), as the facade lowered them.
#[derive(Default)]
pub struct CreateMeta {
    pub project_id: Option<String>,
    pub conversation_id: Option<String>,
    /// The lowered JSON of `meta.mediaExecution` / `meta.toolBundle` (`None` = undefined).
    pub media_execution: Option<serde_json::Value>,
    pub tool_bundle: Option<serde_json::Value>,
    /// The other id fields (`assistantMessageId`, …) as a JSON object, kept for the durable
    /// snapshot; only passed when logging is on.
    pub other_ids: Option<serde_json::Value>,
}

/// What `create()` hands back to the facade.
pub struct Created {
    pub slot: u32,
    pub id: String,
    pub events_log_path: Option<String>,
    pub media_execution: String,
    pub tool_bundle: String,
    pub tool_summary: String,
}

/// A run's normalized policies: what the snapshot keeps, and the JSON the facade parses.
struct Policies {
    media: serde_json::Value,
    summary: serde_json::Value,
    media_json: String,
    bundle_json: String,
    summary_json: String,
}

impl Policies {
    fn of(media: Option<&serde_json::Value>, bundle: Option<&serde_json::Value>) -> Self {
        let media = policy::normalize_media_execution(media);
        let bundle = policy::normalize_tool_bundle(bundle);
        let summary = policy::tool_bundle_summary(&bundle);
        Self {
            media_json: media.to_string(),
            bundle_json: bundle.to_string(),
            summary_json: summary.to_string(),
            media,
            summary,
        }
    }
}

/// One run's core-owned state.
pub struct RunState {
    pub id: String,
    seq: u64,
    pub project_id: Option<String>,
    pub conversation_id: Option<String>,
    /// `None` when the host wrote a non-string status.
    pub status: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub next_event_id: u64,
    pub history: History,
    /// Id of the latest `'end'` record written by `finish` (IMP-8).
    end_event_id: Option<u64>,
    pub exit_code: Option<f64>,
    pub signal: Option<String>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub cancel_requested: bool,
    pub child_exit_observed_at: Option<f64>,
    log: Option<Arc<LogTarget>>,
    /// IMP-1/IMP-2: once set, nothing of this run is persisted again.
    pub log_closed: bool,
    registered: bool,
    cancel: Option<Escalation>,
    shutdown: Option<Escalation>,
    /// The group id IMP-5 verified for this run's child, kept so IMP-13 can reap it later.
    pub verified_group: Option<i32>,
    /// The child's pidfd (or pid), opened at its first signal while it was alive.
    child_handle: Option<ChildHandle>,
    pub tool_summary: String,
    /// What the snapshot carries that never changes: other ids, policy, redacted bundle.
    snapshot_constant: Option<serde_json::Value>,
    /// True once the run's directory exists and its first snapshot is queued.
    snapshotted: bool,
}

impl RunState {
    fn snapshot_json(&self) -> String {
        durable::snapshot(
            &self.id,
            self.seq,
            self.project_id.as_deref(),
            self.conversation_id.as_deref(),
            self.snapshot_constant
                .as_ref()
                .unwrap_or(&serde_json::Value::Null),
            self.status.as_deref(),
            self.created_at,
            self.updated_at,
            self.exit_code,
            self.signal.as_deref(),
            self.error.as_deref(),
            self.error_code.as_deref(),
            self.cancel_requested,
            self.next_event_id,
        )
    }

    pub fn is_terminal(&self) -> bool {
        is_terminal(self.status.as_deref())
    }
}

/// List filter (LST-2); each field is set only when the host passed a non-empty string.
#[derive(Default)]
pub struct ListFilter<'a> {
    pub project_id: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub status: Option<&'a str>,
}

/// What `stream()` must send (STR-3, STR-4, IMP-8).
pub struct Replay {
    pub terminal: bool,
    /// JSON array of the records to send, in order.
    pub records_json: String,
}

/// What a replay sends, before it is encoded.
struct Picked {
    terminal: bool,
    /// Lines read back from the log (IMP-3), older than everything in `held`.
    logged: Vec<String>,
    held: Held,
}

/// The records of the in-memory history a replay sends.
enum Held {
    Nothing,
    /// Every record with id ≥ this.
    From(u64),
    /// This one record.
    Only(u64),
}

impl Picked {
    /// About the serialized size of the held records (their share of the history's bytes).
    fn held_bytes(&self, history: &History) -> usize {
        let count = match self.held {
            Held::Nothing => 0,
            Held::From(from) => history
                .oldest_id()
                .zip(history.newest_id())
                .map_or(0, |(oldest, newest)| {
                    (newest + 1).saturating_sub(from.max(oldest)) as usize
                }),
            Held::Only(_) => 1,
        };
        history.retained_bytes() / history.len().max(1) * count
    }

    fn visit(&self, history: &History, f: impl FnMut(history::Part<'_>)) {
        match self.held {
            Held::Nothing => {}
            Held::From(from) => history.visit(from, usize::MAX, f),
            Held::Only(id) => history.visit(id, 1, f),
        }
    }
}

/// Which plan `escalation_next` advances.
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

/// Snapshot of a service's health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Registered runs by status (a non-string status counts as `""`), in first-seen order.
    pub runs_by_status: Vec<(String, u64)>,
    pub runs_registered: u64,
    pub runs_active: u64,
    pub runs_live: u64,
    pub retained_events: u64,
    pub retained_bytes: u64,
    pub log_lines_written: u64,
    pub log_lines_failed: u64,
    pub log_lines_dropped: u64,
    pub log_lines_unserializable: u64,
    pub log_lines_after_close: u64,
    pub open_log_files: u64,
    pub writer_queue_lines: u64,
    pub writer_queue_bytes: u64,
}

/// Registered runs grouped by one id field, each group in creation order.
#[derive(Default)]
struct GroupIndex(HashMap<String, BTreeMap<u64, u32>>);

impl GroupIndex {
    fn add(&mut self, key: Option<&str>, seq: u64, slot: u32) {
        if let Some(key) = key {
            self.0.entry(key.to_owned()).or_default().insert(seq, slot);
        }
    }

    fn remove(&mut self, key: Option<&str>, seq: u64) {
        let Some(key) = key else {
            return;
        };
        if let Some(group) = self.0.get_mut(key) {
            group.remove(&seq);
            if group.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn members(&self, key: &str) -> impl Iterator<Item = u32> + '_ {
        self.0
            .get(key)
            .into_iter()
            .flat_map(|g| g.values().copied())
    }
}

/// One `createChatRunService` instance.
pub struct Service {
    cfg: ServiceConfig,
    slab: Vec<Option<RunState>>,
    free: Vec<u32>,
    /// Registry in creation order: seq → slot.
    order: BTreeMap<u64, u32>,
    by_id: HashMap<String, u32>,
    /// Registered runs by conversation and by project, each in creation order: `list` with
    /// either filter touches only the matching runs.
    by_conversation: GroupIndex,
    by_project: GroupIndex,
    next_seq: u64,
    next_log_key: u64,
    log_shared: Arc<LogShared>,
    writer: Option<LogWriter>,
    /// Event names the facade registered with [`Service::intern_event`], so the hot `emit`
    /// path crosses the boundary with a number instead of a string.
    event_names: Vec<Arc<str>>,
    /// The policies of a run created without policy inputs.
    default_policies: Policies,
    unserializable: u64,
    after_close: u64,
}

impl Service {
    pub fn new(cfg: ServiceConfig, log_shared: LogShared) -> Self {
        Self {
            cfg,
            slab: Vec::new(),
            free: Vec::new(),
            order: BTreeMap::new(),
            by_id: HashMap::new(),
            by_conversation: GroupIndex::default(),
            by_project: GroupIndex::default(),
            next_seq: 0,
            next_log_key: 0,
            log_shared: Arc::new(log_shared),
            writer: None,
            event_names: Vec::new(),
            default_policies: Policies::of(None, None),
            unserializable: 0,
            after_close: 0,
        }
    }

    fn run(&self, slot: u32) -> CoreResult<&RunState> {
        self.slab
            .get(slot as usize)
            .and_then(Option::as_ref)
            .ok_or(CoreError::UnknownRun(slot))
    }

    fn run_mut(&mut self, slot: u32) -> CoreResult<&mut RunState> {
        self.slab
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .ok_or(CoreError::UnknownRun(slot))
    }

    /// Read access for the binding and tests.
    pub fn state(&self, slot: u32) -> CoreResult<&RunState> {
        self.run(slot)
    }

    /// Write access for host-written fields (RUN-3 setters).
    pub fn state_mut(&mut self, slot: u32) -> CoreResult<&mut RunState> {
        self.run_mut(slot)
    }

    /// CRE-1..CRE-5.
    pub fn create(&mut self, meta: CreateMeta, now: f64) -> Created {
        let mut id_buf = uuid::Uuid::encode_buffer();
        let id: String = uuid::Uuid::new_v4()
            .hyphenated()
            .encode_lower(&mut id_buf)
            .to_owned();
        let computed;
        let policies = if meta.media_execution.is_none() && meta.tool_bundle.is_none() {
            // The common case: no policy inputs, so the (constant) defaults.
            &self.default_policies
        } else {
            computed = Policies::of(meta.media_execution.as_ref(), meta.tool_bundle.as_ref());
            &computed
        };
        let media_execution = policies.media_json.clone();
        let tool_bundle = policies.bundle_json.clone();
        let tool_summary = policies.summary_json.clone();
        let snapshot_constant = self.cfg.log.as_ref().map(|_| {
            serde_json::json!({
                "ids": meta.other_ids.clone().unwrap_or(serde_json::Value::Null),
                "mediaExecution": policies.media,
                "toolBundle": policies.summary,
            })
        });
        let events_log_path = self
            .cfg
            .log
            .as_ref()
            .map(|l| format!("{}{}{}", l.prefix, id, l.suffix));
        let log = events_log_path.as_ref().map(|path| {
            self.next_log_key += 1;
            Arc::new(LogTarget::new(self.next_log_key, PathBuf::from(path)))
        });
        self.next_seq += 1;
        let seq = self.next_seq;
        let state = RunState {
            id: id.clone(),
            seq,
            project_id: meta.project_id,
            conversation_id: meta.conversation_id,
            status: Some("queued".to_owned()),
            created_at: now,
            updated_at: now,
            next_event_id: 1,
            history: History::new(self.cfg.max_events),
            end_event_id: None,
            exit_code: None,
            signal: None,
            error: None,
            error_code: None,
            cancel_requested: false,
            child_exit_observed_at: None,
            log,
            log_closed: false,
            registered: true,
            cancel: None,
            shutdown: None,
            verified_group: None,
            child_handle: None,
            tool_summary: tool_summary.clone(),
            snapshot_constant,
            snapshotted: false,
        };
        let slot = self.insert(state);
        Created {
            slot,
            id,
            events_log_path,
            media_execution,
            tool_bundle,
            tool_summary,
        }
    }

    /// GET-1.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// LST-2, in creation order.
    pub fn list(&self, filter: &ListFilter<'_>) -> Vec<u32> {
        let candidates: Box<dyn Iterator<Item = u32> + '_> =
            match (filter.conversation_id, filter.project_id) {
                (Some(c), _) => Box::new(self.by_conversation.members(c)),
                (None, Some(p)) => Box::new(self.by_project.members(p)),
                (None, None) => Box::new(self.order.values().copied()),
            };
        candidates
            .filter(|&slot| {
                let Ok(run) = self.run(slot) else {
                    return false;
                };
                if let Some(p) = filter.project_id {
                    if run.project_id.as_deref() != Some(p) {
                        return false;
                    }
                }
                if let Some(c) = filter.conversation_id {
                    if run.conversation_id.as_deref() != Some(c) {
                        return false;
                    }
                }
                match filter.status {
                    Some("active") => !run.is_terminal(),
                    Some(s) => run.status.as_deref() == Some(s),
                    None => true,
                }
            })
            .collect()
    }

    /// The writer thread, started on first use (and tried again on the next use if the
    /// system refused the thread).
    fn writer(&mut self) -> std::io::Result<&LogWriter> {
        if self.writer.is_none() {
            self.writer = Some(LogWriter::spawn(
                Arc::clone(&self.log_shared),
                self.cfg.log_limits,
            )?);
        }
        self.writer
            .as_ref()
            .ok_or_else(|| std::io::Error::other("log writer missing"))
    }

    /// EMT-2 steps 2-6: numbers and stores the record, bumps `updatedAt`, queues the log line.
    /// `data_json` is `JSON.stringify(data)` (`None` for `undefined`); `persist` is false when
    /// serialization threw (the record is kept with `data: null`, the line is not written).
    pub fn emit(
        &mut self,
        slot: u32,
        event: EventName<'_>,
        data_json: Option<&str>,
        persist: bool,
        now: f64,
    ) -> CoreResult<u64> {
        let run = self.run_mut(slot)?;
        let id = run.next_event_id;
        run.next_event_id += 1;
        let target = run.log.clone();
        let closed = run.log_closed;
        let first = !run.snapshotted;
        let logs = target.is_some() && persist && !closed;
        let pushed = run.history.push_shared(id, event, data_json, now, logs);
        run.updated_at = now;
        if target.is_none() {
            // Logging disabled: nothing to persist, nothing to count.
        } else if !persist {
            self.unserializable += 1;
        } else if closed {
            // IMP-1: a late event after finish/drop goes to memory and clients only.
            self.after_close += 1;
        } else if let (Some(target), Some(pushed)) = (target, pushed) {
            let queued = match self.writer() {
                Ok(writer) => {
                    // The writer thread formats the line from the parts the history keeps.
                    let line = LogLine::Parts {
                        id,
                        event: pushed.event,
                        data: pushed.data,
                        timestamp: now,
                    };
                    writer.append_line(&target, line, pushed.line_len as usize)
                }
                Err(error) => {
                    self.log_shared.fail(1, || LogFailure {
                        path: target.path.clone(),
                        operation: "start a writer thread for",
                        message: error.to_string(),
                    });
                    false
                }
            };
            // The first snapshot goes with the first line that is on its way (it creates
            // the run's directory); a refused line leaves it to the next one.
            if first && queued {
                self.write_snapshot(slot, true);
            }
        }
        Ok(id)
    }

    /// Registers an event name and returns its number for [`Service::emit_named`]. The facade
    /// keeps the name → number map (and bounds it); the core only stores the texts.
    pub fn intern_event(&mut self, name: &str) -> u32 {
        self.event_names.push(Arc::from(name));
        (self.event_names.len() - 1) as u32
    }

    /// `emit` with an event name registered by [`Service::intern_event`].
    pub fn emit_named(
        &mut self,
        slot: u32,
        event: u32,
        data_json: Option<&str>,
        now: f64,
    ) -> CoreResult<u64> {
        let Some(name) = self.event_names.get(event as usize).cloned() else {
            return Err(CoreError::UnknownEventName(event));
        };
        self.emit(slot, EventName::Text(&name), data_json, true, now)
    }

    /// §8: records what the facade extracted from an `'error'` event.
    pub fn set_error(
        &mut self,
        slot: u32,
        message: Option<String>,
        code: Option<String>,
    ) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        if message.is_some() {
            run.error = message;
        }
        if code.is_some() {
            run.error_code = code;
        }
        Ok(())
    }

    /// FIN-1..FIN-3 (core part): the first terminal verdict wins. Returns the id of the
    /// `'end'` record, or `None` when the run was already terminal.
    pub fn finish(
        &mut self,
        slot: u32,
        status: Option<String>,
        exit_code: Option<f64>,
        signal: Option<String>,
        end_data_json: &str,
        now: f64,
    ) -> CoreResult<Option<u64>> {
        let run = self.run_mut(slot)?;
        if run.is_terminal() {
            return Ok(None);
        }
        run.status = status;
        run.exit_code = exit_code;
        run.signal = signal;
        run.updated_at = now;
        let id = self.emit(slot, EventName::Text("end"), Some(end_data_json), true, now)?;
        let run = self.run_mut(slot)?;
        run.end_event_id = Some(id);
        // No snapshot: the 'end' line just queued is the durable verdict (see durable.rs).
        self.close_log(slot)?;
        Ok(Some(id))
    }

    /// Queues the run's `run.json`: always when `first` (its directory is being created by
    /// the first line), otherwise only once a first snapshot exists and the log is still open.
    pub fn write_snapshot(&mut self, slot: u32, first: bool) {
        let Ok(run) = self.run_mut(slot) else {
            return;
        };
        if run.log.is_none() || run.log_closed || (!first && !run.snapshotted) {
            return;
        }
        run.snapshotted = true;
        let json = run.snapshot_json();
        let target = run.log.clone();
        if let (Some(target), Ok(writer)) = (target, self.writer()) {
            writer.snapshot(&target, json);
        }
    }

    /// Reads back the runs an earlier service left under `dir` (see [`durable`]). Runs that
    /// were active come back `failed` with [`durable::INTERRUPTED_CODE`]; their log gets a
    /// closing `'end'` line. Returns each restored run's slot and its (updated) snapshot.
    pub fn restore(&mut self, dir: &std::path::Path, now: f64) -> Vec<(u32, String)> {
        let mut restored = Vec::new();
        for found in durable::scan(dir) {
            let mut snap = found.snapshot;
            let text = |snap: &serde_json::Map<String, serde_json::Value>, key: &str| {
                snap.get(key)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            let Some(id) = text(&snap, "id") else {
                continue;
            };
            if self.by_id.contains_key(&id) {
                continue;
            }
            let log = durable::read_log_state(&found.log_path);
            let mut next_event_id = snap
                .get("nextEventId")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1)
                .max(log.last_id + 1);
            let mut status = text(&snap, "status");
            // The log's 'end' line carries finish's verdict (finish writes no snapshot).
            if let Some((end, at)) = log.end.filter(|_| !is_terminal(status.as_deref())) {
                let end_status = end.get("status").and_then(serde_json::Value::as_str);
                if is_terminal(end_status) {
                    status = end_status.map(str::to_owned);
                    snap.insert("status".into(), end_status.into());
                    snap.insert(
                        "exitCode".into(),
                        end.get("code").cloned().unwrap_or_default(),
                    );
                    snap.insert(
                        "signal".into(),
                        end.get("signal").cloned().unwrap_or_default(),
                    );
                    snap.insert("updatedAt".into(), at.into());
                    if let Some(error) = &log.error {
                        snap.insert("error".into(), error.as_str().into());
                    }
                    if let Some(code) = &log.error_code {
                        snap.insert("errorCode".into(), code.as_str().into());
                    }
                }
            }
            if !is_terminal(status.as_deref()) {
                let end = history::record_line(
                    next_event_id,
                    EventName::Text("end"),
                    Some(r#"{"code":null,"signal":null,"status":"failed"}"#),
                    now,
                );
                if durable::append_line(&found.log_path, &end).is_ok() {
                    next_event_id += 1;
                }
                status = Some("failed".to_owned());
                snap.insert("status".into(), "failed".into());
                snap.insert("errorCode".into(), durable::INTERRUPTED_CODE.into());
                snap.insert("error".into(), durable::INTERRUPTED_MESSAGE.into());
                snap.insert("exitCode".into(), serde_json::Value::Null);
                snap.insert("signal".into(), serde_json::Value::Null);
                snap.insert("updatedAt".into(), now.into());
                snap.insert("nextEventId".into(), next_event_id.into());
                let json = serde_json::Value::Object(snap.clone()).to_string();
                let _ = durable::write_atomic(
                    &durable::snapshot_path(&found.log_path),
                    json.as_bytes(),
                );
            }
            snap.insert("nextEventId".into(), next_event_id.into());
            let num = |key: &str| snap.get(key).and_then(serde_json::Value::as_f64);
            let summary = snap
                .get("meta")
                .and_then(|m| m.get("toolBundle"))
                .cloned()
                .unwrap_or_else(|| serde_json::json!({ "mcpServers": [] }));
            self.next_log_key += 1;
            self.next_seq += 1;
            let state = RunState {
                id: id.clone(),
                seq: self.next_seq,
                project_id: text(&snap, "projectId"),
                conversation_id: text(&snap, "conversationId"),
                status,
                created_at: num("createdAt").unwrap_or(now),
                updated_at: num("updatedAt").unwrap_or(now),
                next_event_id,
                history: History::new(self.cfg.max_events),
                end_event_id: None,
                exit_code: num("exitCode"),
                signal: text(&snap, "signal"),
                error: text(&snap, "error"),
                error_code: text(&snap, "errorCode"),
                cancel_requested: snap
                    .get("cancelRequested")
                    .and_then(serde_json::Value::as_bool)
                    == Some(true),
                child_exit_observed_at: None,
                log: Some(Arc::new(LogTarget::new(
                    self.next_log_key,
                    found.log_path.clone(),
                ))),
                log_closed: true,
                registered: true,
                cancel: None,
                shutdown: None,
                verified_group: None,
                child_handle: None,
                tool_summary: summary.to_string(),
                snapshot_constant: snap.get("meta").cloned(),
                snapshotted: true,
            };
            let slot = self.insert(state);
            restored.push((slot, serde_json::Value::Object(snap).to_string()));
        }
        restored
    }

    fn insert(&mut self, state: RunState) -> u32 {
        let (seq, id) = (state.seq, state.id.clone());
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(state);
                slot
            }
            None => {
                self.slab.push(Some(state));
                (self.slab.len() - 1) as u32
            }
        };
        self.order.insert(seq, slot);
        self.by_id.insert(id, slot);
        if let Some(run) = self.slab[slot as usize].as_ref() {
            self.by_conversation
                .add(run.conversation_id.as_deref(), seq, slot);
            self.by_project.add(run.project_id.as_deref(), seq, slot);
        }
        slot
    }

    /// A host write of `run.status` (`None` for a non-string value); queues the status
    /// snapshot when the run has one.
    pub fn set_status(&mut self, slot: u32, status: Option<String>) -> CoreResult<()> {
        self.run_mut(slot)?.status = status;
        self.write_snapshot(slot, false);
        Ok(())
    }

    /// Host write of `run.projectId` (keeps the index in step).
    pub fn set_project_id(&mut self, slot: u32, value: Option<String>) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        let old = std::mem::replace(&mut run.project_id, value);
        if run.registered {
            let (seq, new) = (run.seq, run.project_id.clone());
            self.by_project.remove(old.as_deref(), seq);
            self.by_project.add(new.as_deref(), seq, slot);
        }
        Ok(())
    }

    /// Host write of `run.conversationId` (keeps the index in step).
    pub fn set_conversation_id(&mut self, slot: u32, value: Option<String>) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        let old = std::mem::replace(&mut run.conversation_id, value);
        if run.registered {
            let (seq, new) = (run.seq, run.conversation_id.clone());
            self.by_conversation.remove(old.as_deref(), seq);
            self.by_conversation.add(new.as_deref(), seq, slot);
        }
        Ok(())
    }

    /// IMP-1/IMP-2: close the run's log for good.
    fn close_log(&mut self, slot: u32) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        if run.log_closed {
            return Ok(());
        }
        run.log_closed = true;
        let key = run.log.as_ref().map(|t| t.key);
        if let (Some(key), Some(writer)) = (key, self.writer.as_ref()) {
            writer.close(key);
        }
        Ok(())
    }

    /// DRP-1/DRP-2 (core part). Returns false for a terminal run (no-op).
    pub fn drop_run(&mut self, slot: u32, now: f64) -> CoreResult<bool> {
        let run = self.run(slot)?;
        if run.is_terminal() {
            return Ok(false);
        }
        self.unregister(slot)?;
        let run = self.run_mut(slot)?;
        run.status = Some("canceled".to_owned());
        run.updated_at = now;
        self.write_snapshot(slot, false);
        self.close_log(slot)?;
        Ok(true)
    }

    fn unregister(&mut self, slot: u32) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        if !run.registered {
            return Ok(());
        }
        run.registered = false;
        let (seq, id) = (run.seq, run.id.clone());
        let (conversation, project) = (run.conversation_id.clone(), run.project_id.clone());
        self.by_conversation.remove(conversation.as_deref(), seq);
        self.by_project.remove(project.as_deref(), seq);
        self.order.remove(&seq);
        if self.by_id.get(&id) == Some(&slot) {
            self.by_id.remove(&id);
        }
        Ok(())
    }

    /// FIN-5: remove the run from the registry only if it is still terminal.
    pub fn evict(&mut self, slot: u32) -> CoreResult<bool> {
        let run = self.run(slot)?;
        if !run.registered || !run.is_terminal() {
            return Ok(false);
        }
        self.unregister(slot)?;
        Ok(true)
    }

    /// The JS run object was garbage-collected: free the slot (and its history).
    pub fn release(&mut self, slot: u32) {
        if self.unregister(slot).is_err() {
            return;
        }
        let _ = self.close_log(slot);
        if let Some(entry) = self.slab.get_mut(slot as usize) {
            *entry = None;
            self.free.push(slot);
        }
    }

    /// `run.events` as one JSON array text (RUN-5).
    pub fn events_json(&self, slot: u32) -> CoreResult<String> {
        Ok(self.run(slot)?.history.to_json_array())
    }

    /// STR-3/STR-4 with IMP-8, and IMP-3 when the run has a log. `cursor` is JS `Number(raw)`.
    /// Each record as its whole line (what `events.jsonl` holds).
    pub fn replay(&self, slot: u32, cursor: f64) -> CoreResult<Replay> {
        let (run, picked) = self.pick(slot, cursor)?;
        let mut records_json = String::from("[");
        for line in &picked.logged {
            records_json.push_str(line);
            records_json.push(',');
        }
        picked.visit(&run.history, |part| {
            let event = run.history.event_fragment(&part);
            history::write_line(&mut records_json, part.id, event, part.data, part.timestamp);
            records_json.push(',');
        });
        if records_json.len() > 1 {
            records_json.pop();
        }
        records_json.push(']');
        Ok(Replay {
            terminal: picked.terminal,
            records_json,
        })
    }

    /// The same records as [`Service::replay`], in the compact form `stream()` parses
    /// (see [`replay`](crate::core::replay)).
    pub fn replay_batch(&self, slot: u32, cursor: f64) -> CoreResult<String> {
        let (run, picked) = self.pick(slot, cursor)?;
        let logged: usize = picked.logged.iter().map(String::len).sum();
        let mut batch = BatchWriter::new(logged + picked.held_bytes(&run.history));
        for line in &picked.logged {
            batch.push_line(line);
        }
        picked.visit(&run.history, |part| {
            batch.push(part.id, run.history.event_fragment(&part), part.data);
        });
        Ok(batch.finish())
    }

    /// The records a replay sends: those after `cursor` (all of them for a non-finite or
    /// negative cursor), read back from the log first when the cursor is older than the
    /// history (IMP-3); for a terminal run with nothing after the cursor, its final record.
    fn pick(&self, slot: u32, cursor: f64) -> CoreResult<(&RunState, Picked)> {
        let run = self.run(slot)?;
        let logged = self.backfill(run, cursor);
        let from = if cursor.is_finite() && cursor >= 0.0 {
            // The smallest integer id greater than the cursor (`as` saturates huge cursors).
            (cursor.floor() as u64).saturating_add(1)
        } else {
            0
        };
        let terminal = run.is_terminal();
        let newest = run.history.newest_id();
        let held = if newest.is_some_and(|newest| newest >= from) {
            Held::From(from)
        } else if logged.is_empty() && terminal {
            // STR-4 / IMP-8: the end record if still held, else the newest one.
            match run.end_event_id.filter(|&id| run.history.holds(id)) {
                Some(id) => Held::Only(id),
                None => newest.map_or(Held::Nothing, Held::Only),
            }
        } else {
            Held::Nothing
        };
        Ok((
            run,
            Picked {
                terminal,
                logged,
                held,
            },
        ))
    }

    /// IMP-3: the log records with `cursor < id < oldest`, when the cursor is older than the
    /// history. Waits (bounded) for the writer to drain first, so records that just left memory
    /// are on disk before they are read.
    fn backfill(&self, run: &RunState, cursor: f64) -> Vec<String> {
        let Some(target) = run.log.as_ref() else {
            return Vec::new();
        };
        let cursor = backfill::normalize_cursor(cursor);
        let oldest = run.history.oldest_id().unwrap_or(run.next_event_id);
        if cursor >= oldest.saturating_sub(1) as f64 {
            return Vec::new();
        }
        if let Some(writer) = &self.writer {
            writer.sync(BACKFILL_SYNC_TIMEOUT);
        }
        backfill::read_range(&target.path, cursor, oldest)
    }

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

    /// Advances a plan; `exited` answers the previous wait.
    pub fn escalation_next(&mut self, slot: u32, kind: PlanKind, exited: bool) -> CoreResult<Step> {
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

    /// [`Service::escalation_next`] for the facade: IMP-13's `ReapGroup` needs nothing from JS,
    /// so it is carried out here and the step after it is returned instead (never `ReapGroup`).
    pub fn escalation_step(&mut self, slot: u32, kind: PlanKind, exited: bool) -> CoreResult<Step> {
        let mut step = self.escalation_next(slot, kind, exited)?;
        while step == Step::ReapGroup {
            self.reap_group(slot)?;
            step = self.escalation_next(slot, kind, false)?;
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

    /// IMP-4: calls `done` once every line queued so far (all runs) is written and every
    /// closed run's file is closed.
    pub fn flush(&self, done: Box<dyn FnOnce() + Send>) {
        match &self.writer {
            Some(writer) => writer.barrier(done),
            None => done(),
        }
    }

    pub fn stats(&self) -> Stats {
        let (queue_lines, queue_bytes) = self.log_shared.queue_depth();
        let mut stats = Stats {
            runs_registered: self.order.len() as u64,
            log_lines_written: self.log_shared.lines_written(),
            log_lines_failed: self.log_shared.lines_failed(),
            log_lines_dropped: self.log_shared.lines_dropped(),
            log_lines_unserializable: self.unserializable,
            log_lines_after_close: self.after_close,
            open_log_files: self.log_shared.open_files(),
            writer_queue_lines: queue_lines as u64,
            writer_queue_bytes: queue_bytes as u64,
            ..Stats::default()
        };
        for run in self.slab.iter().flatten() {
            stats.runs_live += 1;
            if run.registered {
                if !run.is_terminal() {
                    stats.runs_active += 1;
                }
                let status = run.status.as_deref().unwrap_or("");
                match stats.runs_by_status.iter_mut().find(|(s, _)| s == status) {
                    Some((_, n)) => *n += 1,
                    None => stats.runs_by_status.push((status.to_owned(), 1)),
                }
            }
            stats.retained_events += run.history.len() as u64;
            stats.retained_bytes += run.history.retained_bytes() as u64;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::escalation::Fallback;

    fn service(max_events: Option<usize>, log: Option<LogLayout>) -> Service {
        Service::new(
            ServiceConfig {
                max_events,
                log,
                log_limits: LogLimits::default(),
            },
            LogShared::new(None),
        )
    }

    fn meta(project: &str, conversation: &str) -> CreateMeta {
        CreateMeta {
            project_id: Some(project.into()),
            conversation_id: Some(conversation.into()),
            ..CreateMeta::default()
        }
    }

    fn emit(svc: &mut Service, slot: u32, data: &str) -> u64 {
        svc.emit(slot, EventName::Text("stdout"), Some(data), true, 10.0)
            .unwrap()
    }

    fn replay_ids(svc: &Service, slot: u32, cursor: f64) -> Vec<u64> {
        let replay = svc.replay(slot, cursor).unwrap();
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&replay.records_json).unwrap();
        parsed.iter().filter_map(|r| r["id"].as_u64()).collect()
    }

    #[test]
    fn cre_creates_queued_runs_with_uuid_and_normalized_policies() {
        let mut svc = service(Some(10), None);
        let created = svc.create(CreateMeta::default(), 5.0);
        assert_eq!(created.id.len(), 36);
        assert_eq!(created.id, created.id.to_lowercase());
        assert_eq!(created.media_execution, r#"{"mode":"enabled"}"#);
        assert_eq!(created.tool_bundle, r#"{"mcpServers":[]}"#);
        assert_eq!(created.events_log_path, None);
        let run = svc.state(created.slot).unwrap();
        assert_eq!(run.status.as_deref(), Some("queued"));
        assert_eq!(run.next_event_id, 1);
        assert_eq!((run.created_at, run.updated_at), (5.0, 5.0));
        assert_eq!(svc.get(&created.id), Some(created.slot));
        assert_eq!(svc.get("nope"), None);
    }

    #[test]
    fn cre_4_log_path_is_prefix_id_suffix() {
        let layout = LogLayout {
            prefix: "/tmp/logs/".into(),
            suffix: "/events.jsonl".into(),
        };
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(CreateMeta::default(), 0.0);
        assert_eq!(
            created.events_log_path,
            Some(format!("/tmp/logs/{}/events.jsonl", created.id))
        );
    }

    #[test]
    fn lst_2_filters_by_project_conversation_and_status() {
        let mut svc = service(Some(10), None);
        let a = svc.create(meta("p1", "c1"), 0.0).slot;
        let b = svc.create(meta("p1", "c2"), 0.0).slot;
        let c = svc.create(meta("p2", "c1"), 0.0).slot;
        svc.finish(c, Some("succeeded".into()), Some(0.0), None, "{}", 1.0)
            .unwrap();
        let all = svc.list(&ListFilter::default());
        assert_eq!(all, vec![a, b, c]);
        let p1 = svc.list(&ListFilter {
            project_id: Some("p1"),
            ..ListFilter::default()
        });
        assert_eq!(p1, vec![a, b]);
        let conv = svc.list(&ListFilter {
            conversation_id: Some("c1"),
            status: Some("active"),
            ..ListFilter::default()
        });
        assert_eq!(conv, vec![a]);
        let done = svc.list(&ListFilter {
            status: Some("succeeded"),
            ..ListFilter::default()
        });
        assert_eq!(done, vec![c]);
        // LST-3: host writes move runs between the indexes.
        svc.set_conversation_id(b, Some("c1".into())).unwrap();
        let moved = svc.list(&ListFilter {
            conversation_id: Some("c1"),
            ..ListFilter::default()
        });
        assert_eq!(moved, vec![a, b, c]);
        svc.set_project_id(a, None).unwrap();
        let p1_now = svc.list(&ListFilter {
            project_id: Some("p1"),
            ..ListFilter::default()
        });
        assert_eq!(p1_now, vec![b]);
        svc.drop_run(b, 2.0).unwrap();
        let after_drop = svc.list(&ListFilter {
            conversation_id: Some("c1"),
            ..ListFilter::default()
        });
        assert_eq!(after_drop, vec![a, c]);
        svc.state_mut(a).unwrap().status = Some("running".into());
        let active = svc.list(&ListFilter {
            status: Some("active"),
            ..ListFilter::default()
        });
        assert_eq!(active, vec![a]);
    }

    #[test]
    fn emt_3_ids_grow_by_one_and_trimming_never_renumbers() {
        let mut svc = service(Some(2), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let ids: Vec<u64> = (0..5)
            .map(|i| emit(&mut svc, slot, &i.to_string()))
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        let run = svc.state(slot).unwrap();
        assert_eq!(run.next_event_id, 6);
        assert_eq!(run.history.len(), 2);
        assert_eq!(run.history.oldest_id(), Some(4));
        assert_eq!(run.updated_at, 10.0);
    }

    #[test]
    fn interned_event_names_emit_the_same_records_as_strings() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let agent = svc.intern_event("agent");
        assert_eq!(svc.emit_named(slot, agent, Some("1"), 5.0).unwrap(), 1);
        svc.emit(slot, EventName::Text("agent"), Some("1"), true, 5.0)
            .unwrap();
        let events: Vec<serde_json::Value> =
            serde_json::from_str(&svc.events_json(slot).unwrap()).unwrap();
        assert_eq!(events[0]["event"], "agent");
        assert_eq!(events[0]["data"], events[1]["data"]);
        assert_eq!(
            svc.emit_named(slot, 99, None, 5.0),
            Err(CoreError::UnknownEventName(99))
        );
    }

    #[test]
    fn fin_1_first_terminal_verdict_wins_with_one_end_event() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        let end = svc
            .finish(slot, Some("succeeded".into()), Some(0.0), None, "{}", 1.0)
            .unwrap();
        assert_eq!(end, Some(1));
        let second = svc
            .finish(
                slot,
                Some("failed".into()),
                Some(1.0),
                Some("SIGTERM".into()),
                "{}",
                2.0,
            )
            .unwrap();
        assert_eq!(second, None);
        let run = svc.state(slot).unwrap();
        assert_eq!(run.status.as_deref(), Some("succeeded"));
        assert_eq!(run.exit_code, Some(0.0));
        assert_eq!(run.signal, None);
        assert_eq!(run.history.len(), 1);
    }

    #[test]
    fn fin_2_non_terminal_finish_can_run_again() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        assert!(svc
            .finish(slot, Some("paused".into()), None, None, "{}", 1.0)
            .unwrap()
            .is_some());
        assert!(svc
            .finish(slot, Some("failed".into()), None, None, "{}", 1.0)
            .unwrap()
            .is_some());
        assert_eq!(svc.state(slot).unwrap().history.len(), 2);
    }

    #[test]
    fn str_3_and_4_replay_after_cursor_and_final_event_guarantee() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        for i in 0..3 {
            emit(&mut svc, slot, &i.to_string());
        }
        assert_eq!(replay_ids(&svc, slot, 0.0), vec![1, 2, 3]);
        assert_eq!(replay_ids(&svc, slot, f64::NAN), vec![1, 2, 3]);
        assert_eq!(replay_ids(&svc, slot, f64::INFINITY), vec![1, 2, 3]);
        assert_eq!(replay_ids(&svc, slot, -1.0), vec![1, 2, 3]);
        assert_eq!(replay_ids(&svc, slot, 1.5), vec![2, 3]);
        // Not terminal: nothing after the end, nothing re-sent.
        assert_eq!(replay_ids(&svc, slot, 3.0), Vec::<u64>::new());
        svc.finish(slot, Some("succeeded".into()), None, None, "{}", 1.0)
            .unwrap();
        let replay = svc.replay(slot, 9.0).unwrap();
        assert!(replay.terminal);
        assert_eq!(replay_ids(&svc, slot, 9.0), vec![4]);
    }

    #[test]
    fn imp_8_final_event_is_the_end_record_even_after_a_late_event() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        emit(&mut svc, slot, "1");
        svc.finish(slot, Some("succeeded".into()), None, None, "{}", 1.0)
            .unwrap();
        emit(&mut svc, slot, "late");
        assert_eq!(replay_ids(&svc, slot, 3.0), vec![2]);
    }

    #[test]
    fn imp_3_old_cursors_are_backfilled_from_the_log_in_order_once() {
        let dir =
            std::env::temp_dir().join(format!("chat-run-registry-imp3-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = LogLayout {
            prefix: format!("{}/", dir.display()),
            suffix: "/events.jsonl".into(),
        };
        let mut svc = service(Some(3), Some(layout));
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        for i in 0..1000 {
            emit(&mut svc, slot, &i.to_string());
        }
        // No flush: the backfill itself waits for the writer.
        assert_eq!(
            replay_ids(&svc, slot, 990.0),
            (991..=1000).collect::<Vec<_>>()
        );
        assert_eq!(
            replay_ids(&svc, slot, f64::NAN),
            (1..=1000).collect::<Vec<_>>()
        );
        assert_eq!(replay_ids(&svc, slot, -7.0), (1..=1000).collect::<Vec<_>>());
        assert_eq!(replay_ids(&svc, slot, 997.0), vec![998, 999, 1000]);
        svc.finish(slot, Some("succeeded".into()), None, None, "{}", 1.0)
            .unwrap();
        assert_eq!(
            replay_ids(&svc, slot, 500.0),
            (501..=1001).collect::<Vec<_>>()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn restart_restores_runs_and_marks_interrupted_ones_failed_with_a_closing_end_line() {
        let dir =
            std::env::temp_dir().join(format!("chat-run-registry-restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = LogLayout {
            prefix: format!("{}/", dir.display()),
            suffix: "/events.jsonl".into(),
        };
        let mut old = service(Some(10), Some(layout.clone()));
        let done = old.create(meta("p", "c1"), 1.0);
        emit(&mut old, done.slot, "1");
        // As the facade does: the end data carries the verdict, which restore reads back.
        old.finish(
            done.slot,
            Some("succeeded".into()),
            Some(0.0),
            None,
            r#"{"code":0,"signal":null,"status":"succeeded"}"#,
            2.0,
        )
        .unwrap();
        let active = old.create(meta("p", "c2"), 3.0);
        emit(&mut old, active.slot, "1");
        emit(&mut old, active.slot, "2");
        old.state_mut(active.slot).unwrap().status = Some("running".into());
        old.write_snapshot(active.slot, false);
        let never = old.create(meta("p", "c3"), 4.0);
        let (tx, rx) = std::sync::mpsc::channel();
        old.flush(Box::new(move || {
            let _ = tx.send(());
        }));
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        drop(old); // the old daemon dies

        let mut new = service(Some(10), Some(layout));
        let restored = new.restore(&dir, 50.0);
        assert_eq!(
            restored.len(),
            2,
            "a run that never emitted has no directory to restore"
        );
        assert_eq!(new.get(&never.id), None);
        let done_slot = new.get(&done.id).unwrap();
        let active_slot = new.get(&active.id).unwrap();
        let d = new.state(done_slot).unwrap();
        assert_eq!(d.status.as_deref(), Some("succeeded"));
        assert_eq!(d.exit_code, Some(0.0));
        let a = new.state(active_slot).unwrap();
        assert_eq!(a.status.as_deref(), Some("failed"));
        assert_eq!(a.error_code.as_deref(), Some(durable::INTERRUPTED_CODE));
        assert_eq!(a.next_event_id, 4);
        assert_eq!(replay_ids(&new, active_slot, 0.0), vec![1, 2, 3]);
        let filtered = new.list(&ListFilter {
            conversation_id: Some("c2"),
            ..ListFilter::default()
        });
        assert_eq!(filtered, vec![active_slot]);
        // Restoring twice does not duplicate.
        assert!(new.restore(&dir, 60.0).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn drp_drop_unregisters_cancels_and_is_a_no_op_on_terminal_runs() {
        let mut svc = service(Some(10), None);
        let created = svc.create(CreateMeta::default(), 0.0);
        assert!(svc.drop_run(created.slot, 3.0).unwrap());
        assert_eq!(svc.get(&created.id), None);
        let run = svc.state(created.slot).unwrap();
        assert_eq!(run.status.as_deref(), Some("canceled"));
        assert!(run.log_closed);
        assert!(run.history.is_empty());
        assert!(!svc.drop_run(created.slot, 4.0).unwrap());
        // RUN-8: still usable after leaving the registry.
        assert_eq!(emit(&mut svc, created.slot, "1"), 1);
    }

    #[test]
    fn fin_5_eviction_only_removes_runs_that_are_still_terminal() {
        let mut svc = service(Some(10), None);
        let created = svc.create(CreateMeta::default(), 0.0);
        assert!(!svc.evict(created.slot).unwrap());
        svc.finish(created.slot, Some("failed".into()), None, None, "{}", 1.0)
            .unwrap();
        svc.state_mut(created.slot).unwrap().status = Some("queued".into());
        assert!(!svc.evict(created.slot).unwrap());
        svc.state_mut(created.slot).unwrap().status = Some("failed".into());
        assert!(svc.evict(created.slot).unwrap());
        assert_eq!(svc.get(&created.id), None);
    }

    #[test]
    fn released_slots_are_reused_and_stale_handles_are_errors() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        svc.release(slot);
        assert_eq!(svc.state(slot).err(), Some(CoreError::UnknownRun(slot)));
        assert!(svc.emit(99, EventName::Text("x"), None, true, 0.0).is_err());
        let again = svc.create(CreateMeta::default(), 0.0).slot;
        assert_eq!(again, slot);
    }

    #[test]
    fn escalation_step_carries_out_the_reap_and_never_returns_it() {
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
            let step = svc.escalation_step(slot, PlanKind::Cancel, exited).unwrap();
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
            svc.escalation_next(slot, PlanKind::Cancel, false).unwrap(),
            Step::WaitExit(3000.0)
        );
        assert_eq!(
            svc.escalation_next(slot, PlanKind::Cancel, true).unwrap(),
            Step::FinishFromChild(Fallback::SigTerm)
        );
        assert_eq!(
            svc.escalation_next(slot, PlanKind::Cancel, false).unwrap(),
            Step::ReapGroup
        );
        assert!(
            !svc.reap_group(slot).unwrap(),
            "no verified group, nothing to reap"
        );
        assert_eq!(
            svc.escalation_next(slot, PlanKind::Cancel, false).unwrap(),
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

    #[test]
    fn imp_1_log_is_closed_by_finish_and_late_events_are_not_persisted() {
        let dir =
            std::env::temp_dir().join(format!("chat-run-registry-imp1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = LogLayout {
            prefix: format!("{}/", dir.display()),
            suffix: "/events.jsonl".into(),
        };
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(CreateMeta::default(), 0.0);
        emit(&mut svc, created.slot, "{\"a\":1}");
        svc.finish(
            created.slot,
            Some("succeeded".into()),
            Some(0.0),
            None,
            "{\"status\":\"succeeded\"}",
            2.0,
        )
        .unwrap();
        emit(&mut svc, created.slot, "\"late\"");
        let (tx, rx) = std::sync::mpsc::channel();
        svc.flush(Box::new(move || {
            let _ = tx.send(());
        }));
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        let path = created.events_log_path.unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("\"event\":\"end\""));
        let stats = svc.stats();
        assert_eq!(stats.open_log_files, 0);
        assert_eq!(stats.log_lines_written, 2);
        assert_eq!(stats.log_lines_after_close, 1);
        assert_eq!(stats.retained_events, 3);
        assert_eq!(stats.runs_by_status, vec![("succeeded".to_owned(), 1)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
