'use strict'
// Stopping runs (SPEC §11): signalChild, cancel and shutdownActive. The core plans (which step
// next, how long to wait: crates/core/src/escalation.rs) and signals (IMP-5); this file carries
// the plan out with what only JS holds: the child and acpSession objects, timers, promises.

const os = require('node:os')
const native = require('../loader.js')
const { ChatRun, own, syncCancelBegun } = require('./run.js')
const { exited, statusBody } = require('./status.js')
const { finish, wait } = require('./lifecycle.js')
const { cancelEnv } = require('./options.js')

const { EscalationStep, Delivery } = native

const EMPTY = Object.freeze({})
const IS_WINDOWS = process.platform === 'win32'
// Signal name -> number on this OS (a null-prototype copy: no inherited keys).
const SIGNAL_NUMBERS = Object.assign(Object.create(null), os.constants.signals)

/** SIG-1..SIG-4: the verified group or the pid through the core, else child.kill(). */
function signalChild(ctx, run, signal) {
  const child = run.child
  if (!child || exited(child)) return false
  const s = own(ctx, run, 'signalChild')
  if (!IS_WINDOWS) {
    const pid = typeof child.pid === 'number' ? child.pid : NaN
    const group = typeof run.processGroupId === 'number' ? run.processGroupId : NaN
    // A name this OS knows crosses as its number (cheaper than a string; same signal).
    const spec = typeof signal === 'number' ? signal : (SIGNAL_NUMBERS[signal] ?? String(signal))
    const delivery = native.runSignal(ctx.svc, s.slot, pid, group, spec)
    if (delivery === Delivery.Gone) return false
    if (delivery !== Delivery.Fallback) return true
  }
  try {
    return child.kill(signal)
  } catch {
    return false
  }
}

// WCE: resolves true when the child exits (or already has), false after `ms`. The timer is
// ref'd (TMR-4) so a pending SIGKILL step keeps Node alive; it is cleared on exit.
function waitForExit(child, ms) {
  if (exited(child)) return Promise.resolve(true)
  return new Promise((resolve) => {
    let timer
    const settle = (value) => {
      clearTimeout(timer)
      if (typeof child.off === 'function') {
        child.off('close', onExit)
        child.off('exit', onExit)
      }
      resolve(value)
    }
    const onExit = () => settle(true)
    if (typeof child.once === 'function') {
      child.once('close', onExit)
      child.once('exit', onExit)
    }
    timer = setTimeout(settle, ms, false)
  })
}

// CAN-6: the verdict from the child's own exit, noting when the exit was first observed.
function finishFromChild(ctx, run, fallback) {
  const child = run.child
  if (exited(child) && !run.childExitObservedAt) run.childExitObservedAt = Date.now()
  finish(ctx, run, 'canceled', child?.exitCode ?? null, child?.signalCode ?? fallback)
}

// Carries out the core's cancel/shutdown plan step by step.
async function drive(ctx, run, s, shutdown, step) {
  for (;;) {
    if (step > 0) {
      const childExited = await waitForExit(run.child, step)
      step = native.runEscalationNext(ctx.svc, s.slot, shutdown, childExited)
      continue
    }
    switch (step) {
      case EscalationStep.Done:
        // cancel() resolves to the status body; shutdownActive() resolves to undefined.
        return shutdown ? undefined : statusBody(run)
      case EscalationStep.Abort:
        try {
          run.acpSession.abort()
        } catch {
          // CAN-4 / SHD-3: abort errors are swallowed.
        }
        break
      case EscalationStep.Sigterm:
        signalChild(ctx, run, 'SIGTERM')
        break
      case EscalationStep.Sigkill:
        signalChild(ctx, run, 'SIGKILL')
        break
      case EscalationStep.FinishNow:
        finish(ctx, run, 'canceled', null, 'SIGTERM')
        break
      case EscalationStep.FinishTerm:
        finishFromChild(ctx, run, 'SIGTERM')
        break
      case EscalationStep.FinishKill:
        finishFromChild(ctx, run, 'SIGKILL')
        break
      default:
        throw new Error(`chat-run-service: unknown escalation step ${step}`)
    }
    step = native.runEscalationNext(ctx.svc, s.slot, shutdown, false)
  }
}

/** CAN-1..CAN-6, IMP-11: one plan per run at a time; a second call shares its promise. */
async function cancel(ctx, run) {
  const s = own(ctx, run, 'cancel')
  if (s.cancelPromise) return s.cancelPromise
  const now = Date.now()
  const [abortGrace, cancelGrace, forceWait] = cancelEnv()
  const step = native.runCancelBegin(
    ctx.svc,
    s.slot,
    Boolean(run.child),
    Boolean(run.acpSession?.abort),
    abortGrace,
    cancelGrace,
    forceWait,
    now,
  )
  if (step === EscalationStep.Terminal) return statusBody(run)
  // (s.cancelPromise is null here, checked above.) The core still holds a cancel plan whose
  // promise has already settled, e.g. after a throw: wait for the run's verdict.
  if (step === EscalationStep.InFlight) return wait(ctx, run)
  syncCancelBegun(s, now)
  const outcome = drive(ctx, run, s, false, step)
  s.cancelPromise = outcome
  try {
    return await outcome
  } finally {
    s.cancelPromise = null
  }
}

/** SHD-1..SHD-5: every registered active run at once; logs flushed before it resolves. */
async function shutdownActive(ctx, shutdownOptions) {
  const o = shutdownOptions !== null && typeof shutdownOptions === 'object' ? shutdownOptions : EMPTY
  const graceMs = typeof o.graceMs === 'number' && o.graceMs >= 0 ? o.graceMs : ctx.opts.shutdownGraceMs
  const runs = Array.from(native.shutdownSnapshot(ctx.svc), (slot) => ctx.runs[slot])
  const tasks = runs.map((run) => {
    try {
      const s = ChatRun.stateOf(run)
      const now = Date.now()
      const step = native.runShutdownBegin(ctx.svc, s.slot, Boolean(run.acpSession?.abort), graceMs, now)
      syncCancelBegun(s, now)
      return drive(ctx, run, s, true, step)
    } catch (err) {
      // SHD-5: one run's failure rejects the result, the others are still processed.
      return Promise.reject(err)
    }
  })
  const results = await Promise.allSettled(tasks)
  if (ctx.logging) await native.flushLogs(ctx.svc)
  const failure = results.find((r) => r.status === 'rejected')
  if (failure) throw failure.reason
}

module.exports = { signalChild, cancel, shutdownActive }
