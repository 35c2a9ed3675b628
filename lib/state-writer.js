'use strict'
// The host's writer of state files (SPEC LC-11, the `writeDurableState` option). The core builds
// each state.json as it always does, but queues the text instead of writing the file; after every
// binding call (lib/core.js's setAfterCall) the queued writes are handed to the host's function,
// in order, and each outcome goes back to the core, which records it as it records a write of its
// own (the run's persistence, HF-20; the stats; the log error report). A write asked for from
// inside the host's function is handed over by the same loop, after the one being written.

const native = require('./core.js')
const { reportHookError, ignoreResult } = require('./hooks.js')

// native service id -> WeakRef of the context of a service with a host writer
const writers = new Map()
// A hand-over is running: binding calls made meanwhile (from the host's function) leave their
// writes to its loop.
let handing = false

/** LC-11: the service of `ctx` has its state files written by `ctx.opts.writeDurableState`. */
function useHostWriter(ctx) {
  native.serviceUseHostStateWriter(ctx.svc)
  writers.set(ctx.svc, ctx.selfRef)
  native.setAfterCall(handOverAll)
}

function handOverAll() {
  if (handing) return
  handing = true
  try {
    for (const [svc, ref] of writers) {
      const ctx = ref.deref()
      if (ctx === undefined) {
        writers.delete(svc)
        continue
      }
      try {
        handOver(ctx)
      } catch (err) {
        // (Only a broken binding can throw here; the call that wrote must still return.)
        reportHookError(ctx, 'writeDurableState', err, 'could not be handed its writes')
      }
    }
  } finally {
    handing = false
    if (writers.size === 0) native.setAfterCall(null)
  }
}

function handOver(ctx) {
  let writes
  while ((writes = native.serviceTakeHostStateWrites(ctx.svc)) !== null) {
    for (const write of writes) {
      native.runHostStateWriteOutcome(ctx.svc, write.slot, write.id, writeOne(ctx, write))
    }
  }
}

/**
 * One write by the host's function: null when it went through, else the failure's class. It went
 * through unless the function throws, returns `{ ok: false }` (with `errorType`, else
 * 'unknown'), or returns a promise (a write that has not happened yet: the function must write
 * before it returns, as the verdict's state must be on disk before its 'end' record is out).
 */
function writeOne(ctx, write) {
  let result
  try {
    result = ctx.opts.writeDurableState(write.path, JSON.parse(write.json))
  } catch (err) {
    reportHookError(ctx, 'writeDurableState', err)
    return 'unknown'
  }
  if (result === null || (typeof result !== 'object' && typeof result !== 'function')) return null
  try {
    if (typeof result.then === 'function') {
      ignoreResult(result, (err) => reportHookError(ctx, 'writeDurableState', err))
      const expected = new TypeError('expected { ok: true } or { ok: false, errorType } once the file is written')
      reportHookError(ctx, 'writeDurableState', expected, 'returned a promise')
      return 'unknown'
    }
    if (result.ok !== false) return null
    return typeof result.errorType === 'string' ? result.errorType : 'unknown'
  } catch (err) {
    reportHookError(ctx, 'writeDurableState', err)
    return 'unknown'
  }
}

/** A hand-over is running: a write asked for now is handed over after it, its outcome unknown yet. */
function handingOver() {
  return handing
}

module.exports = { useHostWriter, handingOver }
