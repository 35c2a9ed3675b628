//! Functions on a whole service, and the ones that need no service.

use chat_run_core::escalation::CancelGraces;
use chat_run_core::log_writer::{LogFailure, LogLimits, LogShared};
use chat_run_core::timing;
use chat_run_core::{ListFilter, LogLayout, Service, ServiceConfig, ServiceDefaults};
use napi::bindgen_prelude::{Object, Uint32Array, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsDeferred, Result, Status};
use napi_derive::napi;

use crate::instances::{instances, service};
use crate::map_error;

type LogErrorCallback = ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true>;

/// Creates a service and returns its id. `maxEvents` is a validated integer ≥ 1 or
/// `Infinity`; the log layout is `logPrefix + runId + logSuffix` (both from Node's
/// `path.join`), or absent when logging is off. `onLogError` receives one message for the
/// first disk error of this service.
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
    let log = match (log_prefix, log_suffix) {
        (Some(prefix), Some(suffix)) => Some(LogLayout { prefix, suffix }),
        _ => None,
    };
    let sink = on_log_error.map(|callback| {
        Box::new(move |failure: LogFailure| {
            let message = format!("chat-run-service: {failure}");
            callback.call(message, ThreadsafeFunctionCallMode::NonBlocking);
        }) as Box<dyn Fn(LogFailure) + Send + Sync>
    });
    let service = Service::new(
        ServiceConfig {
            max_events: ServiceConfig::max_events_from_js(max_events),
            log,
            log_limits: LogLimits::default(),
        },
        LogShared::new(sink),
    );
    instances(env)?.services.insert(service).map_err(map_error)
}

/// Frees a service whose JS object was collected (its writer drains and stops).
#[napi]
pub fn destroy_service(env: &Env, svc: u32) -> Result<()> {
    let services = &mut instances(env)?.services;
    // What its unreleased run objects were reported to hold goes with it.
    let reported = services
        .get_mut(svc)
        .map_or(0, |service| service.reported_external());
    services.remove(svc);
    if reported > 0 {
        crate::run::adjust_external(env, -i64::try_from(reported).unwrap_or(i64::MAX))?;
    }
    Ok(())
}

/// The option defaults and the largest timer delay, as the JSON text
/// `{"maxEvents":…,"ttlMs":…,"shutdownGraceMs":…,"maxTimerDelayMs":…}` (read once by the facade).
#[napi]
pub fn service_defaults() -> Result<String> {
    ServiceDefaults::VALUES.to_json().map_err(map_error)
}

/// The delay to arm a Node timer with for `ms` (TMR-1, TMR-2: NaN or < 1 → 1, above
/// 2147483647 → 2147483647), or `null` for `Infinity`: no timer at all.
#[napi]
pub fn timer_delay(ms: f64) -> Option<f64> {
    timing::timer_delay_or_none(ms)
}

/// STR-9: the per-run subscriber cap for `OD_CHAT_RUN_MAX_STREAM_CLIENTS` as JS `Number()` read
/// it: a finite value of at least 1, rounded down, else 8.
#[napi]
pub fn stream_client_cap(parsed: f64) -> u32 {
    chat_run_core::config::stream_client_cap(parsed)
}

/// ENV: the cancel grace for `OD_CHAT_RUN_CANCEL_GRACE_MS` (or its fallback) as JS `Number()`
/// read it: finite and > 0, else 3000, clamped as a timer (`reapProcessGroup`'s SIGKILL delay).
#[napi]
pub fn cancel_grace_ms(parsed: f64) -> f64 {
    timing::cancel_grace(parsed)
}

/// ENV: the three cancel values for `PI_ABORT_GRACE_MS`, the cancel grace variable and
/// `OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS`, as JS `Number()` read them, each with its default and
/// clamp: `[abortGraceMs, cancelGraceMs, forceWaitMs]` (what a cancel plan is built with, for a
/// teardown the host's terminator carries out, LC-9).
#[napi]
pub fn cancel_graces(pi_abort: f64, cancel: f64, force_wait: f64) -> Vec<f64> {
    let graces = CancelGraces::from_env(pi_abort, cancel, force_wait);
    vec![
        graces.abort_grace_ms,
        graces.cancel_grace_ms,
        graces.force_wait_ms,
    ]
}

/// LC-9: the error code of a run whose process tree could not be verified as stopped.
#[napi]
pub fn termination_unverified_code() -> &'static str {
    chat_run_core::TERMINATION_UNVERIFIED
}

/// The terminal statuses (TRM-1), in their fixed order.
#[napi]
pub fn terminal_statuses() -> Vec<&'static str> {
    chat_run_core::TERMINAL_STATUSES.to_vec()
}

/// The redacted summary of an arbitrary (lowered) bundle, for runs whose bundle the host
/// replaced, as JSON.
#[napi]
pub fn summarize_tool_bundle(lowered: String) -> String {
    chat_run_core::policy::tool_bundle_summary_json(&lowered)
}

/// §12: a media policy read back from a file (a hydrated run's), normalized as `create`
/// normalizes its input, as JSON.
#[napi]
pub fn normalize_stored_media_execution(lowered: String) -> String {
    chat_run_core::policy::normalize_media_execution_json(&lowered)
}

/// SUM-4: the summary of a tool bundle read back from a file (a hydrated run's), as JSON.
#[napi]
pub fn summarize_stored_tool_bundle(lowered: String) -> String {
    chat_run_core::policy::stored_tool_bundle_summary_json(&lowered)
}

/// `get(id)`: the registered run's slot, or -1 (`runHydrate` loads one from disk, LC-2).
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

/// Registers an event name for the staged emits of `emitStaged` (the facade caches the number).
#[napi]
pub fn intern_event(env: &Env, svc: u32, name: String) -> Result<u32> {
    Ok(service(env, svc)?.intern_event(&name))
}

/// Resolves once every log line queued so far is written and closed files are closed (IMP-4).
///
/// The promise is settled through a threadsafe function from whichever thread reaches the
/// barrier (no async runtime: the addon starts no thread when it loads, so a process at its
/// thread limit still loads it, and a writer thread that cannot start is reported as such).
#[napi(ts_return_type = "Promise<void>")]
pub fn flush_logs(env: &Env, svc: u32) -> Result<Object<'_>> {
    let service = service(env, svc)?;
    let (deferred, promise) = env.create_deferred::<(), SettleVoid>()?;
    let settle = SettleOnDrop(Some(deferred));
    // Called when the barrier is reached; dropped uncalled when the writer is gone, which also
    // means nothing is pending: either way the drop settles the promise.
    service.flush(Box::new(move || drop(settle)));
    Ok(promise)
}

/// The resolver of [`flush_logs`]'s promise (`undefined`).
type SettleVoid = fn(Env) -> Result<()>;

/// Resolves its deferred when dropped, so that no path leaves the promise pending.
struct SettleOnDrop(Option<JsDeferred<(), SettleVoid>>);

impl Drop for SettleOnDrop {
    fn drop(&mut self) {
        if let Some(deferred) = self.0.take() {
            deferred.resolve(|_| Ok(()));
        }
    }
}

/// IMP-4 at the process's end (the facade's `'exit'` listener): waits, at most
/// [`timing::EXIT_DRAIN`], until every service of this environment has written and closed the
/// lines queued so far. Returns false when the time ran out first.
#[napi]
pub fn flush_all_logs_blocking(env: &Env) -> Result<bool> {
    Ok(instances(env)?
        .services
        .flush_all_blocking(timing::EXIT_DRAIN))
}

/// LC-7 at the process's end (the facade's `'exit'` listener): every run of this environment's
/// services that is still tearing down takes its SIGKILL step now, since the JS timers of its
/// plan end with the process. Returns how many runs were signalled.
#[napi]
pub fn kill_unfinished_teardowns(env: &Env) -> Result<u32> {
    let signalled = instances(env)?.services.kill_unfinished_teardowns();
    Ok(u32::try_from(signalled).unwrap_or(u32::MAX))
}

/// The service's health snapshot as the JSON text `getChatRunServiceStats` returns parsed:
/// `{ runs: { registered, active, byStatus, live }, events: { retained, retainedBytes },
/// log: { enabled, linesWritten, openFiles, queue: { lines, bytes }, notPersisted: { diskError,
/// queueFull, unserializable, afterClose } } }`.
#[napi]
pub fn service_stats(env: &Env, svc: u32) -> Result<String> {
    service(env, svc)?.stats().to_json().map_err(map_error)
}
