'use strict'
// The host's writer of state files (SPEC LC-11, the `writeDurableState` option). The core builds
// each state.json as it always does, but queues the text instead of writing the file; the facade
// hands the queue to the host's function, in order, at points where the service is consistent,
// and gives each outcome back to the core, which records it as it records a write of its own (the
// run's persistence, HF-20; the stats; the log error report). The points:
// - when a method of the service returns (index.js wraps them for such a service);
// - right after a write the facade needs the outcome of (persist, a verdict: lib/state.js,
//   lib/lifecycle.js);
// - for the writes of internal paths (a teardown's timers), on the microtask after the binding
//   call that queued them (lib/core.js's setAfterCall), and at the process's 'exit'.
// A write caused from inside the host's function is handed over at once, unless it is for a run
// whose write the function is making: that one waits, in order, so an older state never lands
// after a newer one.

const native = require('./core.js')
const { reportHookError, ignoreResult } = require('./hooks.js')

// native service id -> WeakRef of the context of a service with a host writer (for the sweep)
const writers = new Map()
let sweepQueued = false
// Hand-overs under way: their own binding calls queue no sweep (each would queue the next).
let handing = 0

/** LC-11: the service of `ctx` has its state files written by `ctx.opts.writeDurableState`. */
function useHostWriter(ctx) {
  native.serviceUseHostStateWriter(ctx.svc)
  // queue: writes taken from the core, not handed over yet; writing: the slots being written now
  ctx.hostWrites = { queue: [], writing: [] }
  writers.set(ctx.svc, ctx.selfRef)
  native.setAfterCall(queueSweep)
}

// After a binding call: the writes it queued on an internal path are handed over once the
// current job is done (queueMicrotask: before any I/O or timer of the process).
function queueSweep() {
  if (sweepQueued || handing !== 0) return
  sweepQueued = true
  queueMicrotask(handOverAll)
}

/** Hands every queued write of every service with a host writer over (also at the 'exit'). */
function handOverAll() {
  sweepQueued = false
  for (const [svc, ref] of writers) {
    const ctx = ref.deref()
    if (ctx === undefined) {
      writers.delete(svc)
      continue
    }
    handOver(ctx)
  }
  if (writers.size === 0) native.setAfterCall(null)
}

/** Hands the queued writes of `ctx`'s service to the host's function (nothing without one). */
function handOver(ctx) {
  const writes = ctx.hostWrites
  if (writes === null) return
  handing += 1
  try {
    for (;;) {
      const taken = native.serviceTakeHostStateWrites(ctx.svc)
      if (taken !== null) writes.queue.push(...taken)
      const next = writes.queue.findIndex((write) => !writes.writing.includes(write.slot))
      if (next < 0) return
      const [write] = writes.queue.splice(next, 1)
      writes.writing.push(write.slot)
      let errorType
      try {
        errorType = writeOne(ctx, write)
      } finally {
        writes.writing.splice(writes.writing.lastIndexOf(write.slot), 1)
      }
      native.runHostStateWriteOutcome(ctx.svc, write.slot, write.id, errorType)
    }
  } catch (err) {
    // (Only a broken binding can throw here; the call that wrote must still return.)
    reportHookError(ctx, 'writeDurableState', err, 'could not be handed its writes')
  } finally {
    handing -= 1
  }
}

/**
 * True when a write of the run at `slot` waits for the one the host's function is making of it
 * (a write caused from inside it): its outcome is not known yet.
 */
function writeWaiting(ctx, slot) {
  const writes = ctx.hostWrites
  return writes !== null && writes.writing.includes(slot) && writes.queue.some((write) => write.slot === slot)
}

/** A dropped run's writes still queued are never handed over (its file is gone, DRP). */
function forgetWrites(ctx, slot) {
  const writes = ctx.hostWrites
  if (writes !== null) writes.queue = writes.queue.filter((write) => write.slot !== slot)
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

module.exports = { useHostWriter, handOver, handOverAll, writeWaiting, forgetWrites }
