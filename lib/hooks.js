'use strict'
// The host's hooks (SPEC LC-6, HF-14): onEventEmitted, beforeFinish, onTerminal, onStatusBody
// (options) and run.onFinalize (a function on the run). Each call is isolated: an exception is
// swallowed, a returned promise that rejects is handled (the service never waits for it), and
// the first failure of a service is reported with process.emitWarning (code
// CHAT_RUN_HOOK_ERROR).

const { describe } = require('./describe.js')

// What a failure is called in the warning. The host's error object is not trusted: a `message`
// getter that throws, or a Proxy, must not turn the report into a second exception.
function reasonOf(err) {
  try {
    if (err instanceof Error) return String(err.message)
  } catch {
    // Falls through to the generic description.
  }
  try {
    return describe(err)
  } catch {
    return 'an unreadable value'
  }
}

/** Reports the first hook failure of a service (what it did: `failure`); later ones are only swallowed. */
function reportHookError(ctx, name, err, failure = 'threw') {
  if (ctx.hookErrorReported) return
  ctx.hookErrorReported = true
  process.emitWarning(
    `chat-run-service: the ${name} hook ${failure} (${reasonOf(err)}); the service went on, and further hook errors of this service are swallowed silently`,
    { code: 'CHAT_RUN_HOOK_ERROR' },
  )
}

/** A callback that does nothing: for errors that are swallowed on purpose. */
function ignore() {}

/**
 * A host function's return value is ignored, but a promise among them must not become an
 * unhandled rejection (which ends a Node process by default): its rejection goes to `onError`.
 */
function ignoreResult(value, onError) {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return
  try {
    const then = value.then
    if (typeof then === 'function') then.call(value, undefined, onError)
  } catch (err) {
    onError(err)
  }
}

/** Calls hook `name` (a function or null) with `args`, isolated. */
function callHook(ctx, name, hook, ...args) {
  if (hook === null) return
  try {
    ignoreResult(hook(...args), (err) => reportHookError(ctx, name, err))
  } catch (err) {
    reportHookError(ctx, name, err)
  }
}

/** LC-6: run.onFinalize, at most once per run (it is taken off the run before the call). */
function finalize(ctx, run) {
  let fn
  try {
    fn = run.onFinalize
    if (typeof fn !== 'function') return
    run.onFinalize = null
  } catch (err) {
    reportHookError(ctx, 'onFinalize', err)
    return
  }
  callHook(ctx, 'onFinalize', fn)
}

module.exports = { callHook, finalize, ignore, ignoreResult, reasonOf, reportHookError }
