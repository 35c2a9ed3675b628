//! Functions on one run of a service: `(svc, slot, …)`.

use chat_run_core::emit::Verdict;
use chat_run_core::lookup::LookupKeys;
use chat_run_core::CreateMeta;
use napi::bindgen_prelude::Either;
use napi::{Env, JsString, Result};
use napi_derive::napi;

use crate::codes::{NumberField, TextField};
use crate::instances::{instances, service};
use crate::map_error;
use crate::text::{js_text, js_texts, CHUNK_BYTES};

/// `create(meta)`: the id strings are passed only when they are non-empty strings; the two
/// policies as their JSON lowering (absent = undefined); `clientRequestId` (LC-3's key) and the
/// plugin workflow id of `externalPluginAnalytics` (HF-8's key), each a non-empty string; `host`
/// only when logging is on: the JSON of the run's host-owned `state.json` values (the other id
/// fields, `requestFingerprint`, `workspaceScope`), written with the state file before this
/// returns (LC-1).
///
/// Returns one JSON text, `[slot, id, mediaExecution, toolBundle, toolSummaryJson]`: a single
/// string and a single `JSON.parse` in JS build the slot, the id and both policy objects (a
/// returned object would cost a property set and a string per field).
#[napi]
#[allow(clippy::too_many_arguments)]
pub fn run_create(
    env: &Env,
    svc: u32,
    project_id: Option<String>,
    conversation_id: Option<String>,
    media_execution: Option<String>,
    tool_bundle: Option<String>,
    client_request_id: Option<String>,
    plugin_workflow_id: Option<String>,
    host: Option<String>,
    now: f64,
) -> Result<String> {
    let keys = LookupKeys {
        client_request_id,
        plugin_workflow_id,
    };
    let meta = CreateMeta::from_lowered(
        project_id,
        conversation_id,
        media_execution.as_deref(),
        tool_bundle.as_deref(),
        keys,
        host.as_deref(),
    );
    service(env, svc)?
        .create(meta, now)
        .reply_json()
        .map_err(map_error)
}

/// §8: the message/code the facade extracted from an `'error'` event.
#[napi]
pub fn run_set_error(
    env: &Env,
    svc: u32,
    slot: u32,
    message: Option<String>,
    code: Option<String>,
) -> Result<()> {
    service(env, svc)?
        .set_error(slot, message, code)
        .map_err(map_error)
}

/// `finish`, first half (LC-5, LC-6): the verdict, with `terminalAt = now` when `status` is
/// terminal, then the state file persisted
/// with `host` (the run's host-owned values as JSON; absent without logging). False when the
/// run was already terminal (nothing changed). The facade runs its hooks, then `runFinishEnd`.
#[napi]
#[allow(clippy::too_many_arguments)]
pub fn run_finish_begin(
    env: &Env,
    svc: u32,
    slot: u32,
    status: Option<String>,
    exit_code: Option<f64>,
    signal: Option<String>,
    host: Option<String>,
    now: f64,
) -> Result<bool> {
    let verdict = Verdict {
        status,
        exit_code,
        signal,
    };
    service(env, svc)?
        .finish_begin(slot, verdict, host.as_deref(), now)
        .map_err(map_error)
}

/// `finish`, second half: the `'end'` record (`JSON.stringify` of its data), then the log is
/// closed. Returns the record's id.
#[napi]
pub fn run_finish_end(env: &Env, svc: u32, slot: u32, end_data: String, now: f64) -> Result<f64> {
    service(env, svc)?
        .finish_end(slot, &end_data, now)
        .map(|id| id as f64)
        .map_err(map_error)
}

/// `drop`: false when the run was already terminal (nothing changed).
#[napi]
pub fn run_drop(env: &Env, svc: u32, slot: u32, now: f64) -> Result<bool> {
    service(env, svc)?.drop_run(slot, now).map_err(map_error)
}

/// The TTL eviction: true when the run was still terminal and left the registry.
#[napi]
pub fn run_evict(env: &Env, svc: u32, slot: u32) -> Result<bool> {
    service(env, svc)?.evict(slot).map_err(map_error)
}

/// The run left the registry: the bytes its object keeps on the native heap are reported to V8
/// as external memory until the object is collected ([`run_release`]). Returns the external
/// memory V8 counts now (napi's answer; what the tests read, since `process.memoryUsage()` and
/// `v8.getHeapStatistics()` take such changes in only later).
#[napi]
pub fn run_unreachable(env: &Env, svc: u32, slot: u32) -> Result<f64> {
    let bytes = match instances(env)?.services.get_mut(svc) {
        Ok(service) => service.note_unreachable(slot),
        Err(_) => 0,
    };
    adjust_external(env, i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// The JS run object was collected (a destroyed service is ignored): its slot is freed and
/// what [`run_unreachable`] reported for it is taken back. Returns V8's external memory count.
#[napi]
pub fn run_release(env: &Env, svc: u32, slot: u32) -> Result<f64> {
    let reported = match instances(env)?.services.get_mut(svc) {
        Ok(service) => service.release(slot),
        Err(_) => 0,
    };
    adjust_external(env, -i64::try_from(reported).unwrap_or(i64::MAX))
}

/// Reports `bytes` more (or, negative, fewer) of external memory to V8; returns its count.
pub(crate) fn adjust_external(env: &Env, bytes: i64) -> Result<f64> {
    // (An i64 of bytes as a JS number: exact below 2^53.)
    #[allow(clippy::cast_precision_loss)]
    Ok(env.adjust_external_memory(bytes)? as f64)
}

/// `run.events` as a JSON array text, or, for a history of more than `CHUNK_BYTES` of JSON (one
/// JS string could not always hold it), as an array of JSON array texts to concatenate.
#[napi(ts_return_type = "string | string[]")]
pub fn run_events<'env>(
    env: &'env Env,
    svc: u32,
    slot: u32,
) -> Result<Either<JsString<'env>, Vec<JsString<'env>>>> {
    let texts = service(env, svc)?
        .events_json_chunks(slot, CHUNK_BYTES)
        .map_err(map_error)?;
    one_or_many(env, texts, "run.events")
}

/// `stream()`: what to send for `cursor` (JS `Number(raw)`), in the compact replay form
/// `[datas, ids, names, nameIndex, missing]` (see the core's `replay` module); for a replay of
/// more than `CHUNK_BYTES`, an array of such texts to send one after the other.
#[napi(ts_return_type = "string | string[]")]
pub fn run_replay<'env>(
    env: &'env Env,
    svc: u32,
    slot: u32,
    cursor: f64,
) -> Result<Either<JsString<'env>, Vec<JsString<'env>>>> {
    let texts = service(env, svc)?
        .replay_batches(slot, cursor, CHUNK_BYTES)
        .map_err(map_error)?;
    one_or_many(env, texts, "stream() replay")
}

/// One text as a string (the usual case), several as an array of strings.
fn one_or_many<'env>(
    env: &'env Env,
    mut texts: Vec<String>,
    what: &str,
) -> Result<Either<JsString<'env>, Vec<JsString<'env>>>> {
    if texts.len() == 1 {
        let text = texts.pop().unwrap_or_default();
        return js_text(env, &text, what).map(Either::A);
    }
    js_texts(env, &texts, what).map(Either::B)
}

/// A host write of a core-owned text field; `null` for a non-string value.
#[napi]
pub fn run_set_text(
    env: &Env,
    svc: u32,
    slot: u32,
    field: TextField,
    value: Option<String>,
) -> Result<()> {
    service(env, svc)?
        .set_text(slot, field.into(), value)
        .map_err(map_error)
}

/// A host write of a core-owned numeric field; `null` for a non-number value
/// (`CancelRequested` as 0 / 1).
#[napi]
pub fn run_set_number(
    env: &Env,
    svc: u32,
    slot: u32,
    field: NumberField,
    value: Option<f64>,
) -> Result<()> {
    service(env, svc)?
        .set_number(slot, field.into(), value)
        .map_err(map_error)
}

/// Test support: the core's view of one run's host-visible fields, as JSON, so the test suites
/// can check after every test that the facade's read mirror agrees with the core (a drift fails
/// a test). Not used on any production path.
#[napi]
pub fn run_core_fields(env: &Env, svc: u32, slot: u32) -> Result<String> {
    service(env, svc)?
        .state(slot)
        .and_then(|run| run.mirror_fields().to_json())
        .map_err(map_error)
}
