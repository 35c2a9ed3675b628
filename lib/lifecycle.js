'use strict'
// A run's way to its verdict (SPEC §7, §9): start, finish (the first verdict wins, exactly one
// 'end'), fail, drop, and the waiters resolved by either.

const native = require('../loader.js')
const { own, syncFinished, syncDropped } = require('./run.js')
const { textOrNull, numberOrNull, signalOrNull } = require('./convert.js')
const { isTerminal, statusBody } = require('./status.js')
const { fanOut, endClients } = require('./stream.js')
const { emit } = require('./emit.js')
const { scheduleEviction } = require('./registry.js')
const { describe } = require('./describe.js')

const EMPTY = Object.freeze({})

// RUN-7: every waiter once with the status body, then the Set is cleared.
function resolveWaiters(run) {
  const waiters = run.waiters
  if (!waiters || waiters.size === 0) return
  const body = statusBody(run)
  for (const waiter of waiters) {
    try {
      waiter(body)
    } catch {
      // A waiter is a promise resolver; a foreign one that throws is ignored.
    }
  }
  waiters.clear()
}

/** FIN-1..FIN-5. */
function finish(ctx, run, status, code = null, signal = null) {
  const s = own(ctx, run, 'finish')
  const now = Date.now()
  const endData = { code, signal, status }
  let endJson
  try {
    endJson = JSON.stringify(endData)
  } catch {
    endJson = JSON.stringify({ code: null, signal: null, status: textOrNull(status) })
  }
  const endId = native.runFinish(
    ctx.svc,
    s.slot,
    textOrNull(status),
    numberOrNull(code),
    signalOrNull(signal),
    endJson,
    now,
  )
  if (endId === 0) return
  syncFinished(s, status, code, signal, endId, now)
  fanOut(run, 'end', endData, endId)
  endClients(run)
  resolveWaiters(run)
  scheduleEviction(s)
}

/** FAL-1: an 'error' event, then the 'failed' verdict; nothing for a terminal run. */
function fail(ctx, run, code, message, init = {}) {
  const s = own(ctx, run, 'fail')
  if (isTerminal(s.status)) return
  emit(ctx, run, 'error', ctx.opts.createSseErrorPayload(code, message, init))
  finish(ctx, run, 'failed', 1, null)
}

/** STA-1..STA-6: stamps telemetry, calls the starter; its rejection fails the run (IMP-10). */
function start(ctx, run, starter) {
  const s = own(ctx, run, 'start')
  const previous = run.analyticsTelemetry
  run.analyticsTelemetry = { ...(previous ?? EMPTY), startRequestedAt: Date.now() }
  const result = starter(run)
  if (result === null || result === undefined || typeof result.catch !== 'function') {
    throw new TypeError(`start(run, starter): starter must return a promise, got ${describe(result)}`)
  }
  result.catch((err) => {
    try {
      fail(ctx, run, 'AGENT_EXECUTION_FAILED', err instanceof Error ? err.message : String(err))
    } catch {
      // IMP-10: the run still ends, and no rejection escapes.
      try {
        if (!isTerminal(s.status)) finish(ctx, run, 'failed', 1, null)
      } catch {
        // nothing left to do
      }
    }
  })
  return run
}

/** WAI-1: the status body once the run is terminal. */
function wait(ctx, run) {
  const s = own(ctx, run, 'wait')
  if (isTerminal(s.status)) return Promise.resolve(statusBody(run))
  return new Promise((resolve) => run.waiters.add(resolve))
}

/** DRP-1/DRP-2: out of the registry, canceled, without an 'end' record. */
function drop(ctx, run) {
  if (!run) return
  const s = own(ctx, run, 'drop')
  const now = Date.now()
  if (!native.runDrop(ctx.svc, s.slot, now)) return
  ctx.runs[s.slot] = undefined
  // DRP-1: the clients end before the status changes (the mirror syncs after them).
  endClients(run)
  syncDropped(s, now)
  resolveWaiters(run)
}

module.exports = { finish, fail, start, wait, drop }
