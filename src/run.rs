//! Functions on one run of a service: `(svc, slot, …)`.

use chat_run_core::escalation::CancelGraces;
use chat_run_core::history::EventName;
use chat_run_core::signals;
use chat_run_core::{CreateMeta, PlanKind};
use napi::bindgen_prelude::Either;
use napi::{Env, JsString, Result};
use napi_derive::napi;

use crate::codes::{cancel_start_code, step_code, Delivery, NumberField, TextField};
use crate::instances::{instances, service};
use crate::map_error;
use crate::text::{js_text, JsText};

/// `create(meta)`: the id strings are passed only when they are non-empty strings; the two
/// policies as their JSON lowering (absent = undefined); `otherIds` (JSON of the remaining id
/// fields) only when logging is on, for the durable snapshot.
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
    other_ids: Option<String>,
    now: f64,
) -> Result<String> {
    let meta = CreateMeta::from_lowered(
        project_id,
        conversation_id,
        media_execution.as_deref(),
        tool_bundle.as_deref(),
        other_ids.as_deref(),
    );
    service(env, svc)?
        .create(meta, now)
        .reply_json()
        .map_err(map_error)
}

/// The hot `emit`: an event name registered with `internEvent`, and `JSON.stringify(data)`
/// (`undefined` = the key is omitted). The text is copied once, into a buffer reused across
/// calls. Returns the record's id.
#[napi]
pub fn run_emit_named(
    env: &Env,
    svc: u32,
    slot: u32,
    event: u32,
    #[napi(ts_arg_type = "string | undefined")] data: Option<JsText>,
    now: f64,
) -> Result<f64> {
    let instances = instances(env)?;
    let service = instances.services.get_mut(svc).map_err(map_error)?;
    let scratch = &mut instances.scratch;
    let text = data
        .map(|data| data.read(scratch))
        .transpose()
        .map_err(map_error)?;
    service
        .emit_named(slot, event, text, now)
        .map(|id| id as f64)
        .map_err(map_error)
}

/// The general `emit`: the event as a JSON fragment (absent = omitted), and `persist = false`
/// when `data` could not be serialized (the record keeps `data: null`, no log line). Returns
/// the record's id.
#[napi]
pub fn run_emit_encoded(
    env: &Env,
    svc: u32,
    slot: u32,
    event_json: Option<String>,
    data: Option<String>,
    persist: bool,
    now: f64,
) -> Result<f64> {
    service(env, svc)?
        .emit(
            slot,
            EventName::Json(event_json.as_deref()),
            data.as_deref(),
            persist,
            now,
        )
        .map(|id| id as f64)
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

/// `finish`: returns the `'end'` record id, or 0 when the run was already terminal.
#[napi]
#[allow(clippy::too_many_arguments)]
pub fn run_finish(
    env: &Env,
    svc: u32,
    slot: u32,
    status: Option<String>,
    exit_code: Option<f64>,
    signal: Option<String>,
    end_data: String,
    now: f64,
) -> Result<f64> {
    service(env, svc)?
        .finish(slot, status, exit_code, signal, &end_data, now)
        .map(|id| id.map_or(0.0, |id| id as f64))
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

/// The JS run object was collected (a destroyed service is ignored).
#[napi]
pub fn run_release(env: &Env, svc: u32, slot: u32) -> Result<()> {
    if let Ok(service) = instances(env)?.services.get_mut(svc) {
        service.release(slot);
    }
    Ok(())
}

/// `run.events` as a JSON array text.
#[napi]
pub fn run_events<'env>(env: &'env Env, svc: u32, slot: u32) -> Result<JsString<'env>> {
    let text = service(env, svc)?.events_json(slot).map_err(map_error)?;
    js_text(env, &text)
}

/// `stream()`: what to send for `cursor` (JS `Number(raw)`), in the compact replay form
/// `[datas, ids, names, nameIndex, missing]` (see the core's `replay` module).
#[napi]
pub fn run_replay<'env>(
    env: &'env Env,
    svc: u32,
    slot: u32,
    cursor: f64,
) -> Result<JsString<'env>> {
    let text = service(env, svc)?
        .replay_batch(slot, cursor)
        .map_err(map_error)?;
    js_text(env, &text)
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

/// `cancel()`: CAN-1/CAN-2 and the first step: a wait in ms, or an `EscalationStep` code
/// (`Terminal` / `InFlight` included). The three env values are JS `Number()` results (NaN
/// when unset).
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
    now: f64,
) -> Result<f64> {
    let graces = CancelGraces::from_env(pi_abort_grace, cancel_grace, force_wait);
    service(env, svc)?
        .cancel_begin(slot, has_child, has_abort, graces, now)
        .map(cancel_start_code)
        .map_err(map_error)
}

/// `shutdownActive()` for one run of the snapshot: the first step of its plan (a wait in ms or
/// an `EscalationStep` code).
#[napi]
pub fn run_shutdown_begin(
    env: &Env,
    svc: u32,
    slot: u32,
    has_abort: bool,
    grace_ms: f64,
    now: f64,
) -> Result<f64> {
    service(env, svc)?
        .shutdown_begin(slot, has_abort, grace_ms, now)
        .map(step_code)
        .map_err(map_error)
}

/// The next step of the cancel (`shutdown = false`) or shutdown plan (a wait in ms or an
/// `EscalationStep` code); `exited` answers the previous wait.
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
    let spec = match &signal {
        Either::A(name) => signals::parse_signal_name(name),
        Either::B(number) => signals::parse_signal_number(*number),
    };
    service(env, svc)?
        .signal(slot, pid, group, spec)
        .map(Delivery::from)
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
