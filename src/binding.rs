//! The napi-rs layer: free functions (cheaper to call than class methods) that convert
//! arguments and forward to [`crate::core`]. Per-environment state (the services of this
//! Node environment) lives in napi instance data, never in a Rust `static`, so worker threads
//! and vitest forks each get their own.
//!
//! Services are addressed by a `u32` id and runs by a `u32` slot; the JS facade keeps both.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::JsString;
use napi_derive::napi;

use crate::core::escalation::{CancelGraces, Fallback, Step};
use crate::core::history::{push_json_string, EventName};
use crate::core::log_writer::{LogFailure, LogLimits, LogShared};
use crate::core::registry::{
    CancelStart, CoreError, CreateMeta, ListFilter, LogLayout, PlanKind, Service, ServiceConfig,
};
use crate::core::signals::{self, Delivery};

/// Step codes shared with `index.js` (negative numbers; a positive number is a wait in ms).
#[napi]
pub const STEP_DONE: i32 = -1;
#[napi]
pub const STEP_ABORT: i32 = -2;
#[napi]
pub const STEP_SIGTERM: i32 = -3;
#[napi]
pub const STEP_SIGKILL: i32 = -4;
#[napi]
pub const STEP_FINISH_NOW: i32 = -5;
#[napi]
pub const STEP_FINISH_TERM: i32 = -6;
#[napi]
pub const STEP_FINISH_KILL: i32 = -7;
#[napi]
pub const STEP_IN_FLIGHT: i32 = -8;
#[napi]
pub const STEP_TERMINAL: i32 = -9;

/// Where `runSignal` delivered: nothing (use `child.kill`), the group, the pid, or nowhere
/// because the child is gone.
#[napi]
pub const DELIVERY_FALLBACK: u32 = 0;
#[napi]
pub const DELIVERY_GROUP: u32 = 1;
#[napi]
pub const DELIVERY_PID: u32 = 2;
#[napi]
pub const DELIVERY_GONE: u32 = 3;

/// The services of one Node environment. Service ids are never reused: a run's finalizer
/// may fire after its service was destroyed, and must not reach a newer service by accident.
#[derive(Default)]
struct Engine {
    services: Vec<Option<Box<Service>>>,
    /// Reused by `JsText::read`.
    scratch: Vec<u8>,
}

fn engine(env: &Env) -> Result<&'static mut Engine> {
    if let Some(engine) = env.get_instance_data::<Engine>()? {
        return Ok(engine);
    }
    env.set_instance_data(Engine::default(), 0u8, |_ctx| {})?;
    env.get_instance_data::<Engine>()?.ok_or_else(|| {
        Error::from_reason("chat-run-service: could not initialise the addon's instance data")
    })
}

fn service(env: &Env, svc: u32) -> Result<&'static mut Service> {
    service_in(&mut engine(env)?.services, svc)
}

fn service_in(services: &mut [Option<Box<Service>>], svc: u32) -> Result<&mut Service> {
    services
        .get_mut(svc as usize)
        .and_then(Option::as_deref_mut)
        .ok_or_else(|| {
            Error::new(
                Status::InvalidArg,
                format!("chat-run-service: service {svc} has been destroyed or never existed"),
            )
        })
}

fn core_err(error: CoreError) -> Error {
    Error::new(Status::InvalidArg, format!("chat-run-service: {error}"))
}

fn step_code(step: Step) -> f64 {
    let code = match step {
        Step::Done => STEP_DONE,
        Step::Abort => STEP_ABORT,
        Step::SigTerm => STEP_SIGTERM,
        Step::SigKill => STEP_SIGKILL,
        Step::FinishNow => STEP_FINISH_NOW,
        Step::FinishFromChild(Fallback::SigTerm) => STEP_FINISH_TERM,
        Step::FinishFromChild(Fallback::SigKill) => STEP_FINISH_KILL,
        // `Service::escalation_step` carries it out and never returns it.
        Step::ReapGroup => STEP_DONE,
        Step::WaitExit(ms) => return ms,
    };
    f64::from(code)
}

fn parse_lowered(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

type LogErrorCallback = ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true>;

/// Creates a service. `maxEvents` is a validated integer ≥ 1 or `Infinity`; the log layout is
/// `logPrefix + runId + logSuffix` (both from Node's `path.join`), or absent when logging is off.
/// `onLogError` receives one message for the first disk error of this service.
#[napi]
pub fn create_service(
    env: &Env,
    max_events: f64,
    log_prefix: Option<String>,
    log_suffix: Option<String>,
    #[napi(ts_arg_type = "((message: string) => unknown) | undefined | null")] on_log_error: Option<
        LogErrorCallback,
    >,
) -> Result<u32> {
    let max_events = if max_events.is_finite() && max_events >= 1.0 {
        Some(max_events as usize)
    } else {
        None
    };
    let log = match (log_prefix, log_suffix) {
        (Some(prefix), Some(suffix)) => Some(LogLayout { prefix, suffix }),
        _ => None,
    };
    let sink = on_log_error.map(|tsfn| {
        Box::new(move |failure: LogFailure| {
            let message = format!(
                "chat-run-service: could not {} the run event log {}: {} (events still reach clients and memory; further log errors of this service are only counted)",
                failure.operation,
                failure.path.display(),
                failure.message
            );
            tsfn.call(message, ThreadsafeFunctionCallMode::NonBlocking);
        }) as Box<dyn Fn(LogFailure) + Send + Sync>
    });
    let service = Service::new(
        ServiceConfig {
            max_events,
            log,
            log_limits: LogLimits::default(),
        },
        LogShared::new(sink),
    );
    let engine = engine(env)?;
    let id = u32::try_from(engine.services.len()).map_err(|_| {
        Error::from_reason(
            "chat-run-service: too many services created in this environment (limit 2^32)",
        )
    })?;
    engine.services.push(Some(Box::new(service)));
    Ok(id)
}

/// Frees a service whose JS object was collected (its writer drains and stops).
#[napi]
pub fn destroy_service(env: &Env, svc: u32) -> Result<()> {
    if let Some(entry) = engine(env)?.services.get_mut(svc as usize) {
        *entry = None;
    }
    Ok(())
}

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
    let created = service(env, svc)?.create(
        CreateMeta {
            project_id,
            conversation_id,
            media_execution: parse_lowered(media_execution),
            tool_bundle: parse_lowered(tool_bundle),
            other_ids: parse_lowered(other_ids),
        },
        now,
    );
    let mut out = String::with_capacity(
        64 + created.media_execution.len()
            + created.tool_bundle.len()
            + created.tool_summary.len() * 2,
    );
    out.push('[');
    out.push_str(&created.slot.to_string());
    out.push(',');
    push_json_string(&mut out, &created.id);
    out.push(',');
    out.push_str(&created.media_execution);
    out.push(',');
    out.push_str(&created.tool_bundle);
    out.push(',');
    push_json_string(&mut out, &created.tool_summary);
    out.push(']');
    Ok(out)
}

/// The redacted summary of an arbitrary (lowered) bundle, for runs whose bundle the host replaced.
#[napi]
pub fn summarize_tool_bundle(lowered: String) -> String {
    let value = serde_json::from_str(&lowered).unwrap_or(serde_json::Value::Null);
    crate::core::policy::tool_bundle_summary(&value).to_string()
}

#[napi(object)]
pub struct RestoredRun {
    pub slot: u32,
    /// The run's `run.json` snapshot (after an interrupted run was marked failed).
    pub snapshot: String,
}

/// Reads back the runs an earlier service left in `dir` (the `runsLogDir`).
#[napi]
pub fn restore_runs(env: &Env, svc: u32, dir: String, now: f64) -> Result<Vec<RestoredRun>> {
    Ok(service(env, svc)?
        .restore(std::path::Path::new(&dir), now)
        .into_iter()
        .map(|(slot, snapshot)| RestoredRun { slot, snapshot })
        .collect())
}

/// `get(id)`: the slot, or -1.
#[napi]
pub fn run_get(env: &Env, svc: u32, id: String) -> Result<i64> {
    Ok(service(env, svc)?.get(&id).map_or(-1, i64::from))
}

/// `list(filter)`: slots in creation order (a typed array: one copy, no per-element calls).
#[napi]
pub fn run_list(
    env: &Env,
    svc: u32,
    project_id: Option<String>,
    conversation_id: Option<String>,
    status: Option<String>,
) -> Result<Uint32Array> {
    let filter = ListFilter {
        project_id: project_id.as_deref(),
        conversation_id: conversation_id.as_deref(),
        status: status.as_deref(),
    };
    Ok(Uint32Array::new(service(env, svc)?.list(&filter)))
}

/// Registers an event name for `runEmitNamed` (the facade caches the number).
#[napi]
pub fn intern_event(env: &Env, svc: u32, name: String) -> Result<u32> {
    Ok(service(env, svc)?.intern_event(&name))
}

/// A JS string argument read straight into a reusable buffer (see [`JsText::read`]).
pub struct JsText {
    env: sys::napi_env,
    value: sys::napi_value,
}

impl TypeName for JsText {
    fn type_name() -> &'static str {
        "String"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ValidateNapiValue for JsText {}

impl FromNapiValue for JsText {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        Ok(Self { env, value })
    }
}

impl JsText {
    /// The string's UTF-8 text, copied by one `napi_get_value_string_utf8` into `scratch` (a
    /// second call sizes it first only when the text did not fit).
    fn read<'a>(&self, scratch: &'a mut Vec<u8>) -> Result<&'a str> {
        if scratch.len() < SCRATCH_BYTES || scratch.len() > SCRATCH_MAX_KEPT {
            // First use, or grown past what is worth keeping by a very large text.
            scratch.resize(SCRATCH_BYTES, 0);
            scratch.shrink_to(SCRATCH_BYTES);
        }
        let mut written = 0usize;
        // SAFETY: `env`/`value` came from napi for this call's argument and are used within
        // the call; the buffer pointer and length describe `scratch`, which napi writes at most
        // `len` bytes into (the text, then a NUL).
        let status = unsafe {
            sys::napi_get_value_string_utf8(
                self.env,
                self.value,
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                &mut written,
            )
        };
        if status != sys::Status::napi_ok {
            return Err(Error::new(
                Status::StringExpected,
                "chat-run-service: expected the event data as a JSON string".to_owned(),
            ));
        }
        // napi writes whole characters only, into at most `len - 1` bytes: a text that did not
        // fit stops less than one 4-byte character short of that. Only then size it and
        // read it again.
        if written + 4 >= scratch.len() {
            let mut needed = 0usize;
            // SAFETY: as above; a null buffer asks only for the length.
            let status = unsafe {
                sys::napi_get_value_string_utf8(
                    self.env,
                    self.value,
                    std::ptr::null_mut(),
                    0,
                    &mut needed,
                )
            };
            if status != sys::Status::napi_ok {
                return Err(Error::from_reason(
                    "chat-run-service: could not size a string",
                ));
            }
            scratch.resize(needed + 1, 0);
            // SAFETY: as above, with `scratch` now large enough for the whole text and a NUL.
            let status = unsafe {
                sys::napi_get_value_string_utf8(
                    self.env,
                    self.value,
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                    &mut written,
                )
            };
            if status != sys::Status::napi_ok {
                return Err(Error::from_reason(
                    "chat-run-service: could not read a string",
                ));
            }
        }
        std::str::from_utf8(&scratch[..written]).map_err(|e| {
            Error::new(
                Status::InvalidArg,
                format!("chat-run-service: event data is not UTF-8 ({e})"),
            )
        })
    }
}

const SCRATCH_BYTES: usize = 16 * 1024;
/// A buffer grown by a larger text is kept up to this size, so a run of large events is read
/// with one call each; beyond it, it goes back to `SCRATCH_BYTES` on the next read.
const SCRATCH_MAX_KEPT: usize = 1024 * 1024;

/// The hot `emit`: an event name registered with `internEvent`, and `JSON.stringify(data)`
/// (`undefined` = the key is omitted). The text is copied once, into a buffer reused across
/// calls (see [`JsText::read`]).
#[napi]
pub fn run_emit_named(
    env: &Env,
    svc: u32,
    slot: u32,
    event: u32,
    #[napi(ts_arg_type = "string | undefined")] data: Option<JsText>,
    now: f64,
) -> Result<f64> {
    let Engine { services, scratch } = engine(env)?;
    let service = service_in(services, svc)?;
    let text = data.map(|data| data.read(scratch)).transpose()?;
    service
        .emit_named(slot, event, text, now)
        .map(|id| id as f64)
        .map_err(core_err)
}

/// The general `emit`: the event as a JSON fragment (absent = omitted), and `persist = false`
/// when `data` could not be serialized (the record keeps `data: null`, no log line).
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
        .map_err(core_err)
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
        .map_err(core_err)
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
        .map_err(core_err)
}

#[napi]
pub fn run_drop(env: &Env, svc: u32, slot: u32, now: f64) -> Result<bool> {
    service(env, svc)?.drop_run(slot, now).map_err(core_err)
}

#[napi]
pub fn run_evict(env: &Env, svc: u32, slot: u32) -> Result<bool> {
    service(env, svc)?.evict(slot).map_err(core_err)
}

/// The JS run object was collected.
#[napi]
pub fn run_release(env: &Env, svc: u32, slot: u32) -> Result<()> {
    if let Some(service) = engine(env)?
        .services
        .get_mut(svc as usize)
        .and_then(Option::as_mut)
    {
        service.release(slot);
    }
    Ok(())
}

/// `run.events` as a JSON array text.
#[napi]
pub fn run_events<'env>(env: &'env Env, svc: u32, slot: u32) -> Result<JsString<'env>> {
    let text = service(env, svc)?.events_json(slot).map_err(core_err)?;
    js_text(env, &text)
}

/// A large text for JS. ASCII (the usual case: `JSON.stringify` output of ASCII content) goes
/// in as Latin-1, which V8 copies as is, instead of UTF-8, which it decodes byte by byte.
fn js_text<'env>(env: &'env Env, text: &str) -> Result<JsString<'env>> {
    if text.is_ascii() {
        env.create_string_latin1(text.as_bytes())
    } else {
        env.create_string(text)
    }
}

/// `stream()`: what to send for `cursor` (JS `Number(raw)`), in the compact form of
/// `core::replay`.
#[napi]
pub fn run_replay<'env>(
    env: &'env Env,
    svc: u32,
    slot: u32,
    cursor: f64,
) -> Result<JsString<'env>> {
    let text = service(env, svc)?
        .replay_batch(slot, cursor)
        .map_err(core_err)?;
    js_text(env, &text)
}

/// Host writes of core-owned text fields (`status`, `projectId`, `conversationId`, `signal`,
/// `error`, `errorCode`); `None` for a non-string value.
#[napi]
pub fn run_set_text(
    env: &Env,
    svc: u32,
    slot: u32,
    field: String,
    value: Option<String>,
) -> Result<()> {
    let service = service(env, svc)?;
    let run = match field.as_str() {
        "status" => return service.set_status(slot, value).map_err(core_err),
        "projectId" => return service.set_project_id(slot, value).map_err(core_err),
        "conversationId" => return service.set_conversation_id(slot, value).map_err(core_err),
        _ => service.state_mut(slot).map_err(core_err)?,
    };
    match field.as_str() {
        "signal" => run.signal = value,
        "error" => run.error = value,
        "errorCode" => run.error_code = value,
        other => {
            return Err(Error::new(
                Status::InvalidArg,
                format!("chat-run-service: `{other}` is not a core text field"),
            ))
        }
    }
    Ok(())
}

/// Host writes of core-owned numeric fields (`updatedAt`, `exitCode`, `childExitObservedAt`,
/// `cancelRequested` as 0/1); `None` for a non-number value.
#[napi]
pub fn run_set_number(
    env: &Env,
    svc: u32,
    slot: u32,
    field: String,
    value: Option<f64>,
) -> Result<()> {
    let run = service(env, svc)?.state_mut(slot).map_err(core_err)?;
    match field.as_str() {
        "updatedAt" => run.updated_at = value.unwrap_or(f64::NAN),
        "exitCode" => run.exit_code = value,
        "childExitObservedAt" => run.child_exit_observed_at = value,
        "cancelRequested" => run.cancel_requested = value.is_some_and(|v| v != 0.0),
        other => {
            return Err(Error::new(
                Status::InvalidArg,
                format!("chat-run-service: `{other}` is not a core numeric field"),
            ))
        }
    }
    Ok(())
}

/// `cancel()`: CAN-1/CAN-2 and the first step (or `STEP_TERMINAL` / `STEP_IN_FLIGHT`).
/// The three env values are JS `Number()` results (NaN when unset).
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
    let start = service(env, svc)?
        .cancel_begin(slot, has_child, has_abort, graces, now)
        .map_err(core_err)?;
    Ok(match start {
        CancelStart::Terminal => f64::from(STEP_TERMINAL),
        CancelStart::InFlight => f64::from(STEP_IN_FLIGHT),
        CancelStart::Step(step) => step_code(step),
    })
}

/// `shutdownActive()`: the registered non-terminal runs, in creation order.
#[napi]
pub fn shutdown_snapshot(env: &Env, svc: u32) -> Result<Vec<u32>> {
    Ok(service(env, svc)?.shutdown_snapshot())
}

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
        .map_err(core_err)
}

/// Advances the cancel (`shutdown = false`) or shutdown plan.
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
        .escalation_step(slot, kind, exited)
        .map(step_code)
        .map_err(core_err)
}

/// `signalChild` (native part): `pid`/`group` are NaN when absent; `signal` is a name or a number.
#[napi]
pub fn run_signal(
    env: &Env,
    svc: u32,
    slot: u32,
    pid: f64,
    group: f64,
    signal: Either<String, f64>,
) -> Result<u32> {
    let spec = match &signal {
        Either::A(name) => signals::parse_signal_name(name),
        Either::B(number) => signals::parse_signal_number(*number),
    };
    let delivery = service(env, svc)?
        .signal(slot, pid, group, spec)
        .map_err(core_err)?;
    Ok(match delivery {
        Delivery::Fallback => DELIVERY_FALLBACK,
        Delivery::Group => DELIVERY_GROUP,
        Delivery::Pid => DELIVERY_PID,
        Delivery::Gone => DELIVERY_GONE,
    })
}

/// Resolves once every log line queued so far is written and closed files are closed (IMP-4).
#[napi]
pub fn flush_logs(env: &Env, svc: u32) -> Result<PromiseRaw<'_, ()>> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    service(env, svc)?.flush(Box::new(move || {
        let _ = tx.send(());
    }));
    env.spawn_future(async move {
        // A closed channel means the writer is gone, which also means nothing is pending.
        let _ = rx.await;
        Ok(())
    })
}

#[napi(object)]
pub struct ServiceStats {
    /// `[status, count]` pairs of the registered runs.
    pub runs_by_status: Vec<(String, f64)>,
    pub runs_registered: f64,
    pub runs_active: f64,
    pub runs_live: f64,
    pub retained_events: f64,
    pub retained_bytes: f64,
    pub log_lines_written: f64,
    pub log_lines_failed: f64,
    pub log_lines_dropped: f64,
    pub log_lines_unserializable: f64,
    pub log_lines_after_close: f64,
    pub open_log_files: f64,
    pub writer_queue_lines: f64,
    pub writer_queue_bytes: f64,
}

#[napi]
pub fn service_stats(env: &Env, svc: u32) -> Result<ServiceStats> {
    let s = service(env, svc)?.stats();
    Ok(ServiceStats {
        runs_by_status: s
            .runs_by_status
            .into_iter()
            .map(|(status, n)| (status, n as f64))
            .collect(),
        runs_registered: s.runs_registered as f64,
        runs_active: s.runs_active as f64,
        runs_live: s.runs_live as f64,
        retained_events: s.retained_events as f64,
        retained_bytes: s.retained_bytes as f64,
        log_lines_written: s.log_lines_written as f64,
        log_lines_failed: s.log_lines_failed as f64,
        log_lines_dropped: s.log_lines_dropped as f64,
        log_lines_unserializable: s.log_lines_unserializable as f64,
        log_lines_after_close: s.log_lines_after_close as f64,
        open_log_files: s.open_log_files as f64,
        writer_queue_lines: s.writer_queue_lines as f64,
        writer_queue_bytes: s.writer_queue_bytes as f64,
    })
}

/// Test support: the core's view of one run's host-visible fields, as JSON, so the test suites
/// can check after every test that the facade's read mirror agrees with the core (a drift fails
/// a test). Not used on any production path.
#[napi]
pub fn run_core_fields(env: &Env, svc: u32, slot: u32) -> Result<String> {
    let run = service(env, svc)?.state(slot).map_err(core_err)?;
    Ok(serde_json::json!({
        "projectId": run.project_id,
        "conversationId": run.conversation_id,
        "status": run.status,
        "updatedAt": run.updated_at,
        "nextEventId": run.next_event_id,
        "exitCode": run.exit_code,
        "signal": run.signal,
        "error": run.error,
        "errorCode": run.error_code,
        "cancelRequested": run.cancel_requested,
        "childExitObservedAt": run.child_exit_observed_at,
    })
    .to_string())
}
