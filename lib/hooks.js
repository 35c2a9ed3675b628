'use strict'
// The host's hooks (SPEC LC-6, HF-14): onEventEmitted, beforeFinish, onTerminal, onStatusBody
// (options) and run.onFinalize (a function on the run). Each call is isolated: an exception is swallowed, and
// the first one of a service is reported with process.emitWarning (code CHAT_RUN_HOOK_ERROR).

const { describe } = require('./describe.js')

/** Reports the first hook exception of a service; later ones are only swallowed. */
function reportHookError(ctx, name, err) {
  if (ctx.hookErrorReported) return
  ctx.hookErrorReported = true
  const reason = err instanceof Error ? err.message : describe(err)
  process.emitWarning(
    `chat-run-service: the ${name} hook threw (${reason}); the service went on, and further hook errors of this service are swallowed silently`,
    { code: 'CHAT_RUN_HOOK_ERROR' },
  )
}

/** Calls hook `name` (a function or null) with `args`, isolated. */
function callHook(ctx, name, hook, ...args) {
  if (hook === null) return
  try {
    hook(...args)
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
  try {
    fn()
  } catch (err) {
    reportHookError(ctx, 'onFinalize', err)
  }
}

module.exports = { callHook, finalize }
