//! The [`Service`]: one `createChatRunService` instance and its runs.
//!
//! Runs live in a slab addressed by a `u32` slot that the JS run object holds. The registry
//! proper (what `get`, `list` and `shutdownActive` see) is a separate ordered index, with
//! indexes by id, project and conversation beside it, so a run that was dropped or evicted
//! keeps working (RUN-8) until its JS object is collected and the facade releases the slot.
//!
//! This file owns the slab and the indexes: create / get / list, host writes of core fields,
//! drop / evict / re-register / release. The other jobs are `impl Service` blocks in their own
//! files: [`crate::emit`], [`crate::replay`], [`crate::control`], [`crate::durable`] (the state
//! file, the disk indexes, hydration), [`crate::stats`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::config::ServiceConfig;
use crate::durable::{DiskIndex, HostFields};
use crate::error::{CoreError, CoreResult};
use crate::log_writer::{LogShared, LogTarget, LogWriter};
use crate::lookup::{Lookup, LookupKeys};
use crate::policy;
use crate::run::{NewRun, NumberField, OrderKey, RunState, TextField};

/// The fields `create()` reads (CRE-3), as the facade lowered them.
#[derive(Default)]
pub struct CreateMeta {
    pub project_id: Option<String>,
    pub conversation_id: Option<String>,
    /// The lowered JSON of `meta.mediaExecution` / `meta.toolBundle` (`None` = undefined).
    pub media_execution: Option<serde_json::Value>,
    pub tool_bundle: Option<serde_json::Value>,
    /// LC-3, HF-8: `meta.clientRequestId` and the plugin workflow id of
    /// `meta.analyticsHints` (each a non-empty string), the keys `createOrReuse` and
    /// `findByPluginWorkflowId` find the run by.
    pub keys: LookupKeys,
    /// LC-1: the host's values of the state file (ids, `requestFingerprint`,
    /// `workspaceScope`, …); only passed when logging is on.
    pub host: Option<HostFields>,
}

impl CreateMeta {
    /// From the JSON texts the facade passes: the two policies as their lowering, the host's
    /// state-file values as one object (see [`HostFields`]). A text that does not parse counts
    /// as absent.
    pub fn from_lowered(
        project_id: Option<String>,
        conversation_id: Option<String>,
        media_execution: Option<&str>,
        tool_bundle: Option<&str>,
        keys: LookupKeys,
        host: Option<&str>,
    ) -> Self {
        Self {
            project_id,
            conversation_id,
            media_execution: media_execution.and_then(|t| serde_json::from_str(t).ok()),
            tool_bundle: tool_bundle.and_then(|t| serde_json::from_str(t).ok()),
            keys,
            host: host.and_then(HostFields::parse),
        }
    }
}

/// What `create()` hands back to the facade.
pub struct Created {
    pub slot: u32,
    pub id: String,
    pub events_log_path: Option<String>,
    /// The normalized policies and the redacted bundle summary, as JSON.
    pub media_execution: Box<RawValue>,
    pub tool_bundle: Box<RawValue>,
    pub tool_summary: Box<RawValue>,
}

impl Created {
    /// The reply `runCreate` returns: the JSON array
    /// `[slot, id, mediaExecution, toolBundle, toolSummaryJson]` (the summary as a JSON string
    /// the facade parses only when asked). One string and one `JSON.parse` in JS build the
    /// slot, the id and both policy objects.
    pub fn reply_json(&self) -> CoreResult<String> {
        let reply = (
            self.slot,
            &self.id,
            &self.media_execution,
            &self.tool_bundle,
            self.tool_summary.get(),
        );
        Ok(serde_json::to_string(&reply)?)
    }
}

/// A run's normalized policies, as the JSON the facade parses.
struct Policies {
    media_json: Box<RawValue>,
    bundle_json: Box<RawValue>,
    summary_json: Box<RawValue>,
}

impl Policies {
    fn of(media: Option<&serde_json::Value>, bundle: Option<&serde_json::Value>) -> Self {
        let media = policy::normalize_media_execution(media);
        let bundle = policy::normalize_tool_bundle(bundle);
        let summary = policy::tool_bundle_summary(&bundle);
        Self {
            media_json: raw_json(&media),
            bundle_json: raw_json(&bundle),
            summary_json: raw_json(&summary),
        }
    }
}

/// A value's JSON text. (Writing a `Value` into a string cannot fail; `null` is only there
/// so no panic path exists.)
fn raw_json(value: &serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// List filter (LST-2); each field is set only when the host passed a non-empty string.
#[derive(Default)]
pub struct ListFilter<'a> {
    pub project_id: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub status: Option<&'a str>,
}

/// The registry's key for a run id: the 36 bytes of a hyphenated UUID inline (every id `create`
/// makes or a hydration accepts), any other id as a boxed string. Inline, a lookup and a growth
/// of the table touch no memory outside it: with `String` keys each key is read again (a cache
/// miss each) when the table grows, and the `create` that grew it past 114,688 runs took 15 ms
/// (30 ms with SipHash); inline, 7 ms, most of it the new table's pages.
#[derive(Clone, PartialEq, Eq, Hash)]
enum IdKey {
    Uuid([u8; 36]),
    Other(Box<str>),
}

impl IdKey {
    fn of(id: &str) -> Self {
        match <[u8; 36]>::try_from(id.as_bytes()) {
            Ok(bytes) => Self::Uuid(bytes),
            Err(_) => Self::Other(id.into()),
        }
    }
}

/// Registered runs grouped by one id field, each group in creation order.
#[derive(Default)]
struct GroupIndex(HashMap<String, BTreeMap<OrderKey, u32>>);

impl GroupIndex {
    fn add(&mut self, key: Option<&str>, seq: OrderKey, slot: u32) {
        let Some(key) = key else {
            return;
        };
        // The key is copied only for a new group (most creates join an existing one).
        if let Some(group) = self.0.get_mut(key) {
            group.insert(seq, slot);
        } else {
            self.0.insert(key.to_owned(), BTreeMap::from([(seq, slot)]));
        }
    }

    fn remove(&mut self, key: Option<&str>, seq: OrderKey) {
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

    fn newest(&self, key: &str) -> Option<u32> {
        self.0
            .get(key)
            .and_then(|g| g.values().next_back().copied())
    }
}

/// One `createChatRunService` instance.
pub struct Service {
    pub(crate) cfg: ServiceConfig,
    /// The runs by slot. Boxed: a `RunState` is over a kilobyte, and inline the slab would
    /// copy every run each time it grows (tens of milliseconds at 100k runs, in one `create`)
    /// and keep that much for every free slot.
    pub(crate) slab: Vec<Option<Box<RunState>>>,
    free: Vec<u32>,
    /// Registry in creation order (see [`OrderKey`]) → slot.
    pub(crate) order: BTreeMap<OrderKey, u32>,
    /// Of the runs this service created, each whose `createdAt` is later than every earlier
    /// one's, in creation order: `(createdAt, OrderKey::major)`. A hydrated run goes just
    /// before the first of them created after it (the first run created after it is always
    /// one of these). Kept when those runs leave the registry, so that runs hydrated before
    /// and after a drop or an eviction still sort by `createdAt` (LC-2); at most one entry per
    /// millisecond in which this service created a run.
    pub(crate) created_marks: Vec<(f64, u64)>,
    by_id: HashMap<IdKey, u32, foldhash::fast::RandomState>,
    /// Registered runs by conversation and by project, each in creation order: `list` with
    /// either filter touches only the matching runs.
    by_conversation: GroupIndex,
    by_project: GroupIndex,
    /// Registered runs by each of their lookup keys (LC-3, HF-8), in [`Lookup::slot`] order.
    by_key: [GroupIndex; 2],
    /// What is known of the runs on disk (LC-2).
    pub(crate) disk: DiskIndex,
    next_seq: u64,
    next_log_key: u64,
    pub(crate) log_shared: Arc<LogShared>,
    pub(crate) writer: Option<LogWriter>,
    /// While a batch of staged emits is applied: its log lines, queued together at its end.
    pub(crate) pending_lines: Option<crate::log_writer::LogBatch>,
    /// Event names the facade registered with [`Service::intern_event`], so the hot `emit`
    /// path crosses the boundary with a number instead of a string.
    pub(crate) event_names: Vec<Arc<str>>,
    /// The policies of a run created without policy inputs (computed once).
    default_policies: Policies,
    /// Lines not persisted because their data could not be serialized.
    pub(crate) unserializable: u64,
    /// Lines not persisted because the run's log was already closed (IMP-1).
    pub(crate) after_close: u64,
    /// The process table the teardowns of this service read (LC-7), scans shared briefly.
    pub(crate) processes: crate::tree::SharedTable,
    /// With a host writer of state files (LC-1): the writes it has not been handed yet.
    pub(crate) host_state_writes: Option<Vec<crate::durable::state::HostStateWrite>>,
}

/// A service that goes away (its JS object collected, or its environment torn down: a worker
/// thread ended, the process exiting) first finishes the teardowns it had begun
/// ([`Service::kill_unfinished_teardowns`]); its log writer then drains on its own thread.
impl Drop for Service {
    fn drop(&mut self) {
        self.kill_unfinished_teardowns();
    }
}

impl Service {
    pub fn new(cfg: ServiceConfig, mut log_shared: LogShared) -> Self {
        log_shared.max_early_open = cfg.log_limits.max_open_files;
        Self {
            cfg,
            slab: Vec::new(),
            free: Vec::new(),
            order: BTreeMap::new(),
            created_marks: Vec::new(),
            by_id: HashMap::default(),
            by_conversation: GroupIndex::default(),
            by_project: GroupIndex::default(),
            by_key: Default::default(),
            disk: DiskIndex::default(),
            next_seq: 0,
            next_log_key: 0,
            log_shared: Arc::new(log_shared),
            writer: None,
            pending_lines: None,
            event_names: Vec::new(),
            default_policies: Policies::of(None, None),
            unserializable: 0,
            after_close: 0,
            processes: crate::tree::SharedTable::default(),
            host_state_writes: None,
        }
    }

    pub(crate) fn run(&self, slot: u32) -> CoreResult<&RunState> {
        self.slab
            .get(slot as usize)
            .and_then(Option::as_deref)
            .ok_or(CoreError::UnknownRun(slot))
    }

    pub(crate) fn run_mut(&mut self, slot: u32) -> CoreResult<&mut RunState> {
        self.slab
            .get_mut(slot as usize)
            .and_then(Option::as_deref_mut)
            .ok_or(CoreError::UnknownRun(slot))
    }

    /// Every live run (registered or not), in slot order.
    pub(crate) fn live_runs(&self) -> impl Iterator<Item = &RunState> {
        self.slab.iter().flatten().map(|run| &**run)
    }

    /// A run's state, for reading.
    pub fn state(&self, slot: u32) -> CoreResult<&RunState> {
        self.run(slot)
    }

    /// A target for a new log file of this service.
    pub(crate) fn log_target(&mut self, path: PathBuf) -> Arc<LogTarget> {
        self.next_log_key += 1;
        Arc::new(LogTarget::new(self.next_log_key, path))
    }

    /// The next creation sequence number.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// How many runs this service created.
    pub(crate) fn created_count(&self) -> u64 {
        self.next_seq
    }

    /// CRE-1..CRE-5, and LC-1: with logging on, the run's directory and its `state.json` exist
    /// when this returns.
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
        let events_log_path = self.cfg.log.as_ref().map(|layout| layout.path_of(&id));
        let log = events_log_path
            .as_ref()
            .map(|path| self.log_target(PathBuf::from(path)));
        let order = OrderKey::created(self.next_seq());
        let mut run = RunState::new(NewRun {
            id: id.clone(),
            order,
            max_events: self.cfg.max_events,
            log,
            now,
        });
        run.project_id = meta.project_id;
        run.conversation_id = meta.conversation_id;
        run.keys = meta.keys;
        let durable = run.log.is_some();
        if let Some(host) = meta.host {
            run.host = host;
        }
        let disk_entry = durable.then(|| (run.project_id.clone(), run.keys.clone()));
        let slot = self.insert(run);
        if let Some((project_id, keys)) = disk_entry {
            self.write_state(slot);
            self.disk.add(&id, project_id, keys, now);
            if let Some(layout) = &self.cfg.log {
                let by_id = &self.by_id;
                self.disk.sweep_one(
                    |id| crate::durable::state::run_dir(Path::new(&layout.path_of(id))),
                    |id| by_id.contains_key(&IdKey::of(id)),
                );
            }
        }
        Created {
            slot,
            id,
            events_log_path,
            media_execution,
            tool_bundle,
            tool_summary,
        }
    }

    /// Puts a run in the slab and registers it.
    pub(crate) fn insert(&mut self, run: RunState) -> u32 {
        let run = Box::new(run);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(run);
                slot
            }
            None => {
                self.slab.push(Some(run));
                (self.slab.len() - 1) as u32
            }
        };
        self.register(slot);
        slot
    }

    /// Adds a live run to the registry and its indexes.
    fn register(&mut self, slot: u32) {
        let Ok(run) = self.run_mut(slot) else {
            return;
        };
        run.registered = true;
        let (seq, key) = (run.order, IdKey::of(&run.id));
        let (conversation, project) = (run.conversation_id.clone(), run.project_id.clone());
        let keys = run.keys.clone();
        let created_at = run.created_at;
        if seq.is_created()
            && self
                .created_marks
                .last()
                .is_none_or(|&(at, _)| created_at > at)
        {
            self.created_marks.push((created_at, seq.major));
        }
        self.order.insert(seq, slot);
        self.by_id.insert(key, slot);
        self.by_conversation.add(conversation.as_deref(), seq, slot);
        self.by_project.add(project.as_deref(), seq, slot);
        for lookup in Lookup::ALL {
            self.by_key[lookup.slot()].add(keys.get(lookup), seq, slot);
        }
    }

    /// GET-1: the registered run with this id (see [`Service::hydrate`] for LC-2).
    pub fn get(&self, id: &str) -> Option<u32> {
        self.by_id.get(&IdKey::of(id)).copied()
    }

    /// LC-3, HF-8: the newest registered run created with this key.
    pub fn find(&self, lookup: Lookup, key: &str) -> Option<u32> {
        self.by_key[lookup.slot()].newest(key)
    }

    /// Puts a live run that left the registry by TTL eviction back into it, in its old place
    /// (for `get` after eviction while the host still holds the run, and for `prepareRestart`,
    /// LC-4). Another registered run with the same id leaves the registry. False for a dropped
    /// run, which never comes back.
    pub fn reregister(&mut self, slot: u32) -> CoreResult<bool> {
        let run = self.run(slot)?;
        if run.dropped {
            return Ok(false);
        }
        if run.registered {
            return Ok(true);
        }
        let id = run.id.clone();
        if let Some(other) = self.get(&id) {
            self.unregister(other)?;
        }
        self.register(slot);
        Ok(true)
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
                    Some(wanted) => run.status.as_deref() == Some(wanted),
                    None => true,
                }
            })
            .collect()
    }

    /// A host write of a core-owned text field (RUN-3; `None` for a non-string value). Project
    /// and conversation writes move the run between the `list` indexes (LST-3), a project write
    /// between the disk's project groups too.
    pub fn set_text(
        &mut self,
        slot: u32,
        field: TextField,
        value: Option<String>,
    ) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        match field {
            TextField::Status => run.status = value,
            TextField::ProjectId => {
                let old = std::mem::replace(&mut run.project_id, value);
                let (seq, new) = (run.order, run.project_id.clone());
                if run.log.is_some() && !run.dropped {
                    let id = run.id.clone();
                    self.disk.set_project(&id, new.clone());
                }
                let run = self.run(slot)?;
                if run.registered {
                    self.by_project.remove(old.as_deref(), seq);
                    self.by_project.add(new.as_deref(), seq, slot);
                }
            }
            TextField::ConversationId => {
                let old = std::mem::replace(&mut run.conversation_id, value);
                if run.registered {
                    let (seq, new) = (run.order, run.conversation_id.clone());
                    self.by_conversation.remove(old.as_deref(), seq);
                    self.by_conversation.add(new.as_deref(), seq, slot);
                }
            }
            TextField::Signal => run.signal = value,
            TextField::Error => run.error = value,
            TextField::ErrorCode => run.error_code = value,
            TextField::TerminalTrigger => run.terminal_trigger = value,
            TextField::CancelOrigin => run.cancel_origin = value,
        }
        Ok(())
    }

    /// A host write of a core-owned numeric field (RUN-3; `None` for a non-number value, which
    /// `updatedAt` keeps as NaN; `cancelRequested` is true for any non-zero number).
    pub fn set_number(
        &mut self,
        slot: u32,
        field: NumberField,
        value: Option<f64>,
    ) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        match field {
            NumberField::UpdatedAt => run.updated_at = value.unwrap_or(f64::NAN),
            NumberField::ExitCode => run.exit_code = value,
            NumberField::ChildExitObservedAt => run.child_exit_observed_at = value,
            NumberField::CancelRequested => run.cancel_requested = value.is_some_and(|v| v != 0.0),
        }
        Ok(())
    }

    /// DRP-1/DRP-2 (core part), with LC-5's `terminalAt` (the trigger stays the host's). The
    /// run's state file is removed and the disk indexes forget it: a dropped run is never found
    /// again, by this service or a later one. Returns false for a terminal run (no-op).
    pub fn drop_run(&mut self, slot: u32, now: f64) -> CoreResult<bool> {
        let run = self.run(slot)?;
        if run.is_terminal() {
            return Ok(false);
        }
        self.unregister(slot)?;
        self.close_log(slot)?;
        self.delete_state(slot);
        // (Nor does a host writer get a write of it still queued: LC-11.)
        if let Some(outbox) = self.host_state_writes.as_mut() {
            outbox.retain(|write| write.slot != slot);
        }
        let run = self.run_mut(slot)?;
        run.status = Some("canceled".to_owned());
        run.updated_at = now;
        run.terminal_at = Some(now);
        run.dropped = true;
        run.release_process_handles();
        let id = run.id.clone();
        self.disk.remove(&id);
        Ok(true)
    }

    fn unregister(&mut self, slot: u32) -> CoreResult<()> {
        let run = self.run_mut(slot)?;
        if !run.registered {
            return Ok(());
        }
        run.registered = false;
        let (seq, key) = (run.order, IdKey::of(&run.id));
        let (conversation, project) = (run.conversation_id.clone(), run.project_id.clone());
        let keys = run.keys.clone();
        self.by_conversation.remove(conversation.as_deref(), seq);
        self.by_project.remove(project.as_deref(), seq);
        for lookup in Lookup::ALL {
            self.by_key[lookup.slot()].remove(keys.get(lookup), seq);
        }
        self.order.remove(&seq);
        if self.by_id.get(&key) == Some(&slot) {
            self.by_id.remove(&key);
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

    /// The run's object left the registry and now lives only as long as the host holds it:
    /// returns the bytes it keeps on the native heap (its state and history), to be reported to
    /// the JS engine as external memory so that its collector, which cannot see them, collects
    /// such objects when many pile up (a daemon evicting runs faster than full collections come).
    /// Once per run: 0 when already reported or when there is no such run.
    pub fn note_unreachable(&mut self, slot: u32) -> u64 {
        let Ok(run) = self.run_mut(slot) else {
            return 0;
        };
        if run.reported_external > 0 {
            return 0;
        }
        let bytes = size_of::<RunState>() + run.id.len() + run.history.heap_bytes();
        run.reported_external = u64::try_from(bytes).unwrap_or(u64::MAX).max(1);
        run.reported_external
    }

    /// The bytes reported for runs whose objects were not released yet (given back when the
    /// whole service goes).
    pub fn reported_external(&self) -> u64 {
        self.slab
            .iter()
            .flatten()
            .map(|run| run.reported_external)
            .fold(0, u64::saturating_add)
    }

    /// The JS run object was garbage-collected: free the slot (and its history). Returns the
    /// bytes reported for it ([`Self::note_unreachable`]), to be taken back.
    pub fn release(&mut self, slot: u32) -> u64 {
        if self.unregister(slot).is_err() {
            return 0;
        }
        let _ = self.close_log(slot);
        let mut reported = 0;
        if let Some(entry) = self.slab.get_mut(slot as usize) {
            reported = entry.as_ref().map_or(0, |run| run.reported_external);
            *entry = None;
            self.free.push(slot);
        }
        reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{emit, log_dir, meta, service};

    #[test]
    fn a_run_that_left_the_registry_reports_its_native_bytes_once_and_its_release_takes_them_back()
    {
        let mut svc = service(Some(100), None);
        let run = svc.create(meta("p", "c"), 1.0);
        for n in 0..100 {
            emit(
                &mut svc,
                run.slot,
                &format!("{{\"n\":{n},\"text\":\"{}\"}}", "x".repeat(64)),
            );
        }
        let reported = svc.note_unreachable(run.slot);
        assert!(reported > 1_000, "its state and history: {reported}");
        assert_eq!(svc.note_unreachable(run.slot), 0, "once per run");
        assert_eq!(svc.reported_external(), reported);
        assert_eq!(svc.release(run.slot), reported);
        assert_eq!(svc.reported_external(), 0);
        assert_eq!(svc.note_unreachable(run.slot), 0, "no such run any more");
    }

    #[test]
    fn get_1_finds_a_run_by_its_exact_id_only() {
        let mut svc = service(Some(10), None);
        let created = svc.create(CreateMeta::default(), 5.0);
        assert_eq!(svc.get(&created.id), Some(created.slot));
        // Same length, one letter in another case; a prefix; a longer string: no match.
        let upper = created.id.to_uppercase();
        assert_ne!(upper, created.id);
        assert_eq!(svc.get(&upper), None);
        assert_eq!(svc.get(&created.id[..35]), None);
        assert_eq!(svc.get(&format!("{} ", created.id)), None);
        assert_eq!(svc.get(""), None);
        // Ids of another shape (not made by create) are found exactly too.
        let slot = svc.insert(RunState::new(NewRun {
            id: "r".into(),
            order: OrderKey::created(99),
            max_events: Some(1),
            log: None,
            now: 1.0,
        }));
        assert_eq!(svc.get("r"), Some(slot));
        assert_eq!(svc.get("R"), None);
        svc.unregister(slot).unwrap();
        assert_eq!(svc.get("r"), None);
        assert_eq!(svc.get(&created.id), Some(created.slot));
    }

    #[test]
    fn cre_creates_queued_runs_with_uuid_and_normalized_policies() {
        let mut svc = service(Some(10), None);
        let created = svc.create(CreateMeta::default(), 5.0);
        assert_eq!(created.id.len(), 36);
        assert_eq!(created.id, created.id.to_lowercase());
        assert_eq!(created.media_execution.get(), r#"{"mode":"enabled"}"#);
        assert_eq!(created.tool_bundle.get(), r#"{"mcpServers":[]}"#);
        assert_eq!(created.events_log_path, None);
        let run = svc.state(created.slot).unwrap();
        assert_eq!(run.status.as_deref(), Some("queued"));
        assert_eq!(run.next_event_id, 1);
        assert_eq!((run.created_at, run.updated_at), (5.0, 5.0));
        assert_eq!(svc.get(&created.id), Some(created.slot));
        assert_eq!(svc.get("nope"), None);
    }

    #[test]
    fn cre_reply_is_one_json_array_with_the_summary_as_text() {
        let mut svc = service(Some(10), None);
        let created = svc.create(
            CreateMeta::from_lowered(
                None,
                None,
                Some(r#"{"mode":"question"}"#),
                Some(r#"{"mcpServers":[{"id":"t","label":"say \"hi\"","command":"x"}]}"#),
                LookupKeys::default(),
                Some("not json"),
            ),
            0.0,
        );
        let reply: serde_json::Value =
            serde_json::from_str(&created.reply_json().unwrap()).unwrap();
        assert_eq!(reply[0], created.slot);
        assert_eq!(reply[1], created.id.as_str());
        assert_eq!(reply[2], serde_json::json!({ "mode": "question" }));
        assert_eq!(reply[3]["mcpServers"][0]["command"], "x");
        let summary: serde_json::Value = serde_json::from_str(reply[4].as_str().unwrap()).unwrap();
        assert_eq!(summary["mcpServers"][0]["label"], "say \"hi\"");
        assert!(
            summary["mcpServers"][0].get("command").is_none(),
            "SUM-1: redacted"
        );
    }

    #[test]
    fn cre_4_log_path_is_prefix_id_suffix() {
        // (A real directory: `create` writes the run's state file there, LC-1.)
        let (dir, layout) = log_dir("log-path");
        let prefix = layout.prefix.clone();
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(CreateMeta::default(), 0.0);
        assert_eq!(
            created.events_log_path,
            Some(format!("{prefix}{}/events.jsonl", created.id))
        );
        drop(svc);
        let _ = std::fs::remove_dir_all(&dir);
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
        svc.set_text(b, TextField::ConversationId, Some("c1".into()))
            .unwrap();
        let moved = svc.list(&ListFilter {
            conversation_id: Some("c1"),
            ..ListFilter::default()
        });
        assert_eq!(moved, vec![a, b, c]);
        svc.set_text(a, TextField::ProjectId, None).unwrap();
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
        svc.set_text(a, TextField::Status, Some("running".into()))
            .unwrap();
        let active = svc.list(&ListFilter {
            status: Some("active"),
            ..ListFilter::default()
        });
        assert_eq!(active, vec![a]);
    }

    #[test]
    fn run_3_host_writes_reach_each_field() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        svc.set_text(slot, TextField::Signal, Some("SIGTERM".into()))
            .unwrap();
        svc.set_text(slot, TextField::Error, Some("boom".into()))
            .unwrap();
        svc.set_text(slot, TextField::ErrorCode, Some("E".into()))
            .unwrap();
        svc.set_number(slot, NumberField::ExitCode, Some(3.0))
            .unwrap();
        svc.set_number(slot, NumberField::ChildExitObservedAt, Some(9.0))
            .unwrap();
        svc.set_number(slot, NumberField::CancelRequested, Some(1.0))
            .unwrap();
        svc.set_number(slot, NumberField::UpdatedAt, None).unwrap();
        let run = svc.state(slot).unwrap();
        assert_eq!(run.signal.as_deref(), Some("SIGTERM"));
        assert_eq!(run.error.as_deref(), Some("boom"));
        assert_eq!(run.error_code.as_deref(), Some("E"));
        assert_eq!(run.exit_code, Some(3.0));
        assert_eq!(run.child_exit_observed_at, Some(9.0));
        assert!(run.cancel_requested);
        assert!(run.updated_at.is_nan());
        svc.set_number(slot, NumberField::CancelRequested, Some(0.0))
            .unwrap();
        assert!(!svc.state(slot).unwrap().cancel_requested);
        assert_eq!(
            svc.set_text(99, TextField::Status, None),
            Err(CoreError::UnknownRun(99))
        );
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
        svc.set_text(created.slot, TextField::Status, Some("queued".into()))
            .unwrap();
        assert!(!svc.evict(created.slot).unwrap());
        svc.set_text(created.slot, TextField::Status, Some("failed".into()))
            .unwrap();
        assert!(svc.evict(created.slot).unwrap());
        assert_eq!(svc.get(&created.id), None);
    }

    #[test]
    fn released_slots_are_reused_and_stale_handles_are_errors() {
        let mut svc = service(Some(10), None);
        let slot = svc.create(CreateMeta::default(), 0.0).slot;
        svc.release(slot);
        assert_eq!(svc.state(slot).err(), Some(CoreError::UnknownRun(slot)));
        assert!(svc
            .emit(99, crate::history::EventName::Text("x"), None, true, 0.0)
            .is_err());
        let again = svc.create(CreateMeta::default(), 0.0).slot;
        assert_eq!(again, slot);
    }
}
