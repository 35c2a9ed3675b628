//! Functions on the runs on disk (LC-1..LC-4): indexing `runsLogDir`, hydrating a run,
//! finding runs by project, `clientRequestId` or plugin workflow id, putting an evicted run back, persisting the
//! state file and reopening a run for a retry. Conversion only (`crates/core/src/durable/`).

use napi::{Env, Result};
use napi_derive::napi;

use crate::codes::{HydrateMiss, RunLookup};
use crate::instances::service;
use crate::map_error;

/// The fields `state.json` itself carries, in order (LC-1): a host durable field by one of
/// these names is never written twice. Read once by the facade.
#[napi]
pub fn state_file_keys() -> Vec<&'static str> {
    chat_run_core::durable::state::STATE_KEYS.to_vec()
}

/// The host fields that describe one attempt (HF-6), which `prepareRestart` forgets: the core
/// drops them from the state file, the facade from the run object. Read once by the facade.
#[napi]
pub fn attempt_fields() -> Vec<&'static str> {
    chat_run_core::durable::state::ATTEMPT_FIELDS.to_vec()
}

/// The plugin whose runs carry a workflow id (HF-8): the facade makes
/// `run.externalPluginAnalytics` only from hints of this plugin, as the core's disk index reads
/// state files. Read once by the facade.
#[napi]
pub fn open_design_plugin_id() -> &'static str {
    chat_run_core::lookup::OPEN_DESIGN_PLUGIN_ID
}

/// At construction (LC-2): indexes the runs under `dir` (the `runsLogDir`) without loading any.
#[napi]
pub fn index_runs(env: &Env, svc: u32, dir: String) -> Result<()> {
    service(env, svc)?.index_runs(std::path::Path::new(&dir));
    Ok(())
}

/// `get(id)` past the registry (LC-2): the slot of the run loaded from disk (registered from
/// now on; `runHydrated` gives what to build its object from), or a [`HydrateMiss`] code. An id
/// that is not a run id never reaches the filesystem.
#[napi]
pub fn run_hydrate(env: &Env, svc: u32, id: String, now: f64) -> Result<i64> {
    Ok(match service(env, svc)?.hydrate(&id, now) {
        Ok(Some(slot)) => i64::from(slot),
        Ok(None) => HydrateMiss::NotFound as i64,
        Err(_) => HydrateMiss::Unreadable as i64,
    })
}

/// The last read of `runsLogDir` that failed for want of a resource (LC-2) since the previous
/// call, as a message for the host (what could not be read, the OS's error), or null.
#[napi]
pub fn take_unreadable(env: &Env, svc: u32) -> Result<Option<String>> {
    Ok(service(env, svc)?
        .take_unreadable()
        .map(|unreadable| unreadable.to_string()))
}

/// A hydrated run, as the JSON `{"state":{…},"nextEventId":n,"cancelRequested":b}` (its state
/// file as the core now holds it).
#[napi]
pub fn run_hydrated(env: &Env, svc: u32, slot: u32) -> Result<String> {
    service(env, svc)?.hydrated_json(slot).map_err(map_error)
}

/// `list({ projectId })` (LC-2): the ids of that project's durable runs that are not
/// registered, oldest first.
#[napi]
pub fn project_durable_runs(env: &Env, svc: u32, project_id: String) -> Result<Vec<String>> {
    Ok(service(env, svc)?.unregistered_project_runs(&project_id))
}

/// `createOrReuse` (LC-3) and `findByPluginWorkflowId` (HF-8): the newest registered run
/// created with this key, or -1.
#[napi]
pub fn run_find_by_key(env: &Env, svc: u32, lookup: RunLookup, key: String) -> Result<i64> {
    Ok(service(env, svc)?
        .find(lookup.into(), &key)
        .map_or(-1, i64::from))
}

/// `createOrReuse` (LC-3) and `findByPluginWorkflowId` (HF-8): the id of the newest durable run
/// created with this key when it is not registered, or null. Throws while part of `runsLogDir`
/// could not be read for want of a resource (the newest run with the key may be there).
#[napi]
pub fn durable_run_by_key(
    env: &Env,
    svc: u32,
    lookup: RunLookup,
    key: String,
) -> Result<Option<String>> {
    service(env, svc)?
        .unregistered_keyed_run(lookup.into(), &key)
        .map_err(|unreadable| map_error(unreadable.into()))
}

/// Puts a run that TTL eviction took out of the registry back in (another registered run with
/// its id leaves). False for a dropped run.
#[napi]
pub fn run_reregister(env: &Env, svc: u32, slot: u32) -> Result<bool> {
    service(env, svc)?.reregister(slot).map_err(map_error)
}

/// `persistState(run)` and the `start`/`error`/`end` emits (LC-1): writes the state file now,
/// taking `host` (the run's host-owned values as JSON) first. Nothing without logging. True
/// when the file was written.
#[napi]
pub fn run_persist_state(env: &Env, svc: u32, slot: u32, host: Option<String>) -> Result<bool> {
    service(env, svc)?
        .persist_state_with(slot, host.as_deref())
        .map_err(map_error)
}

/// LC-1 with the host's `writeDurableState`: from now on the service's state-file writes are
/// queued for the facade ([`service_take_host_state_writes`]) instead of written. Called once,
/// at construction.
#[napi]
pub fn service_use_host_state_writer(env: &Env, svc: u32) -> Result<()> {
    service(env, svc)?.use_host_state_writer();
    Ok(())
}

/// A state-file write for the host: the file `path` of the run `id` (at `slot`) is to hold
/// the JSON text `json`.
#[napi(object)]
pub struct HostStateWrite {
    pub slot: u32,
    pub id: String,
    pub path: String,
    pub json: String,
}

/// The state-file writes queued for the host since the last call, oldest first; `null` when
/// there is none (the common case: one check per native call of such a service).
#[napi]
pub fn service_take_host_state_writes(env: &Env, svc: u32) -> Result<Option<Vec<HostStateWrite>>> {
    let writes = service(env, svc)?.take_host_state_writes();
    if writes.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        writes
            .into_iter()
            .map(|write| HostStateWrite {
                slot: write.slot,
                id: write.id,
                path: write.path.to_string_lossy().into_owned(),
                json: write.json,
            })
            .collect(),
    ))
}

/// How the host's write of a queued state file went: `error_type` null when it was written,
/// else the failure's class as the host named it (an unknown name counts as `"unknown"`).
#[napi]
pub fn run_host_state_write_outcome(
    env: &Env,
    svc: u32,
    slot: u32,
    id: String,
    error_type: Option<String>,
) -> Result<()> {
    use chat_run_core::durable::state::PersistenceFailure;
    let outcome = match error_type {
        None => Ok(()),
        Some(name) => Err(PersistenceFailure::from_name(&name)),
    };
    service(env, svc)?.host_state_write_outcome(slot, &id, outcome);
    Ok(())
}

/// HF-20: how the run's last state-file write went: `null` when none was attempted, else
/// `"acknowledged"` or the failure's class (`"storage_full"`, `"permission_denied"`, ...).
#[napi]
pub fn run_state_persistence(env: &Env, svc: u32, slot: u32) -> Result<Option<String>> {
    use chat_run_core::durable::state::StatePersistence;
    let run = service(env, svc)?.state(slot).map_err(map_error)?;
    Ok(match run.state_persistence {
        StatePersistence::NotWritten => None,
        StatePersistence::Acknowledged => Some("acknowledged".to_owned()),
        StatePersistence::Failed(failure) => Some(failure.to_string()),
    })
}

/// `prepareRestart(run)` (LC-4, core part): the previous `updatedAt`, or null when the run is
/// not terminal (nothing changed).
#[napi]
pub fn run_prepare_restart(
    env: &Env,
    svc: u32,
    slot: u32,
    host: Option<String>,
    now: f64,
) -> Result<Option<f64>> {
    service(env, svc)?
        .prepare_restart(slot, host.as_deref(), now)
        .map_err(map_error)
}

/// A teardown retry (LC-9, core part): a run that failed with `RUN_TERMINATION_UNVERIFIED` goes
/// back to `running`. False when the run is not such a failure (nothing changed).
#[napi]
pub fn run_reopen_for_teardown(env: &Env, svc: u32, slot: u32, now: f64) -> Result<bool> {
    service(env, svc)?
        .reopen_for_teardown(slot, now)
        .map_err(map_error)
}
