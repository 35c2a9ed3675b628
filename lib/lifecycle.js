'use strict'
// A run's way to its verdict (SPEC §7, §9, LC-5, LC-6): start, finish (the first verdict wins,
// exactly one 'end'; the host's hooks between the verdict and its 'end'), fail, drop, and the
// waiters resolved by either.

const native = require('./core.js')
const { TextField, NumberField } = native
const { own, releaseWhenUnreachable, syncVerdict, syncEnded, syncDropped } = require('./run.js')
const { textOrNull, numberOrNull, signalOrNull } = require('./convert.js')
const { isTerminal, resolvedStatusBody } = require('./status.js')
const { handOut, endClientsInOrder } = require('./stream.js')
const { emit } = require('./emit.js')
const { scheduleEviction } = require('./registry.js')
const { hostJson, persist, lastWriteOutcome } = require('./state.js')
const { addEndFacts, strategyRefutes } = require('./host-fields.js')
const { settleUnfinishedWork } = require('./completeness.js')
const terminalLifecycle = require('./terminal-lifecycle.js')
const { callHook, finalize, ignore, ignoreResult } = require('./hooks.js')
const { describe } = require('./describe.js')
const { forgetWrites } = require('./state-writer.js')

const EMPTY = Object.freeze({})

// RUN-7: every waiter once with the status body, then the Set is cleared.

/**
 * IMP-4: a run's log is written even when the event loop empties right after its finish (or
 * drop): the writer thread does not hold the loop open by itself, so one flush barrier per
 * service is kept pending, which does, until everything queued when it began is written; the
 * finishes meanwhile ask for one more. (As the upstream module's write streams kept the process
 * alive until their data was written.)
 */
function holdUntilWritten(ctx) {
  if (!ctx.logging) return
  if (ctx.draining) {
    ctx.drainAgain = true
    return
  }
  ctx.draining = true
  ctx.drainAgain = false
  const done = () => {
    ctx.draining = false
    if (ctx.drainAgain) holdUntilWritten(ctx)
  }
  try {
    native.flushLogs(ctx.svc).then(done, done)
  } catch {
    // Only a service already destroyed refuses: nothing is left to hold the loop for.
    ctx.draining = false
  }
}

function resolveWaiters(run) {
  const waiters = run.waiters
  if (!waiters || waiters.size === 0) return
  const body = resolvedStatusBody(run)
  for (const waiter of waiters) {
    try {
      // A waiter is a promise resolver; a foreign one that throws, or returns a promise that
      // rejects, is ignored.
      ignoreResult(waiter(body), ignore)
    } catch {
      // See above.
    }
  }
  waiters.clear()
}

// The 'end' data (FIN-3, LC-5, HF-3): the verdict, then the terminal facts.
function endDataOf(run, status, code, signal, terminalAt) {
  const data = {
    code,
    signal,
    status,
    terminalAt,
    resumable: run.resumable ?? false,
    endedWithUnfinishedWork: !!run.endedWithUnfinishedWork,
  }
  return addEndFacts(data, run)
}

/**
 * FIN-1..FIN-5 with LC-5 and LC-6 (the public finish(run, status, code, signal), and every
 * verdict the service reaches itself). In order: beforeFinish, the verdict (core), the state
 * file (core, same call), onTerminal, run.onFinalize, the 'end' record, clients ended, waiters
 * resolved, eviction scheduled. A finish from inside a hook is a no-op (the run already has its
 * verdict).
 */
function finish(ctx, run, status, code = null, signal = null) {
  const s = own(ctx, run, 'finish')
  // FIN-1 first: a terminal run (dropped during a teardown, say) ignores a finish, parked or not;
  // HF-20 counts it on the run's terminal lifecycle record.
  if (s.finishing || isTerminal(s.status)) {
    noteTerminalClaim(ctx, run, s, status)
    return
  }
  // LC-7: during a cancel/shutdown teardown the verdict is parked; the teardown applies it when
  // its barrier ends (lib/control.js), and meanwhile emits other than 'diagnostic' are dropped.
  if (s.teardown !== null) {
    s.teardown.parked.push([status, code, signal])
    return
  }
  // A non-terminal finish (FIN-2) gives no verdict: nothing is held off meanwhile.
  if (!isTerminal(status)) {
    applyFinish(ctx, run, s, status, code, signal)
    return
  }
  // LC-4, LC-6: from here to the waiters, a finish, fail or prepareRestart of this run is a
  // no-op and a cancel waits for this verdict (the hooks, the 'end' record's hook and fan-out,
  // the clients' end(), the status bodies of the waiters all run inside).
  s.finishing = true
  try {
    applyFinish(ctx, run, s, status, code, signal)
  } finally {
    s.finishing = false
    // (Set by syncVerdict, cleared by syncEnded; a finish that threw in between ends it here.)
    s.endPending = false
  }
}

function applyFinish(ctx, run, s, status, code, signal) {
  // HF-16: the strategy task's verdict gates a clean exit.
  if (status === 'succeeded' && strategyRefutes(run)) status = 'failed'
  const now = Date.now()
  const terminal = isTerminal(status)
  const { beforeFinish, onTerminal } = ctx.opts
  // Records the hooks emit from here on (beforeFinish's before the verdict, the others after
  // it) carry their own, later times.
  const idBeforeHooks = s.nextEventId
  if (terminal && beforeFinish !== null) {
    const statusBefore = s.status
    callHook(ctx, 'beforeFinish', beforeFinish, run, status, code, signal, now)
    // The hook runs before the transition, which sets the status: a terminal status the hook
    // wrote itself would make the run look finished without a verdict (no 'end', waiters left
    // pending), so the transition takes it over with its own verdict.
    if (s.status !== statusBefore && isTerminal(s.status) && !s.dropped) {
      native.runSetText(ctx.svc, s.slot, native.TextField.Status, textOrNull(statusBefore))
      s.status = statusBefore
    }
  }
  // HF-11, HF-18: what the run's work signals say, before the verdict's state file and 'end' carry it.
  settleUnfinishedWork(run, status)
  // HF-20: the verdict's lifecycle record, in the state file the verdict writes.
  if (terminal) writeRecord(run, terminalLifecycle.recordAtVerdict(run, ctx.logging ? 'acknowledged' : 'unknown'))
  const hostAtVerdict = ctx.logging ? hostJson(ctx, run) : undefined
  const applied = native.runFinishBegin(
    ctx.svc,
    s.slot,
    textOrNull(status),
    numberOrNull(code),
    signalOrNull(signal),
    hostAtVerdict,
    now,
  )
  if (!applied) return
  syncVerdict(s, status, code, signal, now)
  const verdictWriteFailed = terminal && ctx.logging && notePersistence(ctx, run, s, true)
  const hostWritesAtVerdict = s.hostWrites
  if (terminal) {
    callHook(ctx, 'onTerminal', onTerminal, run, status, now)
    finalize(ctx, run)
  }
  const terminalAt = terminal ? now : null
  let endData
  let endJson
  try {
    endData = endDataOf(run, status, code, signal, terminalAt)
    endJson = JSON.stringify(endData)
  } catch {
    // Unserializable verdict values (or a throwing getter): what the core can store.
    endData = {
      code: numberOrNull(code),
      signal: signalOrNull(signal),
      status: textOrNull(status),
      terminalAt,
      resumable: false,
      endedWithUnfinishedWork: false,
      failureCategory: null,
      failureDetail: null,
    }
    endJson = JSON.stringify(endData)
  }
  // When the hooks emitted records, the 'end' follows them in time too, and the state file,
  // written with the verdict, is written again with that updatedAt (LC-1); so it is when the
  // hooks (onTerminal, run.onFinalize) changed what it holds of the host's fields (an
  // artifactCount set by the finalizer: upstream writes the file at the 'end' record), or wrote
  // a core-owned field (a terminalTrigger, a cancelOrigin: the setters count those writes).
  const hooksEmitted = s.nextEventId !== idBeforeHooks
  const endAt = hooksEmitted ? Date.now() : now
  const endId = native.runFinishEnd(ctx.svc, s.slot, endJson, endAt)
  syncEnded(s, endId, endAt)
  // The state file's second write runs inside the 'end' record's hand-out, before its fan-out:
  // what the host's code it runs (a durable field's getter) emits reaches the clients after it.
  // It is made when the verdict's write failed too (HF-20: the record it writes says
  // 'acknowledged', and stays so if this write goes through), and always for a host writer
  // (LC-11: the host sees each of the verdict's writes, as upstream makes them).
  const persistAtEnd =
    ctx.logging && terminal
      ? () => {
          if (verdictWriteFailed) acknowledgeRecord(run)
          const hostAtEnd = hostJson(ctx, run)
          if (
            hooksEmitted ||
            verdictWriteFailed ||
            ctx.opts.writeDurableState !== null ||
            hostAtEnd !== hostAtVerdict ||
            s.hostWrites !== hostWritesAtVerdict
          ) {
            native.runPersistState(ctx.svc, s.slot, hostAtEnd)
            notePersistence(ctx, run, s, verdictWriteFailed)
          }
        }
      : null
  handOut(ctx, run, s, { id: endId, event: 'end', data: endData, timestamp: endAt }, persistAtEnd)
  endClientsInOrder(run, s)
  resolveWaiters(run)
  scheduleEviction(s)
  holdUntilWritten(ctx)
}

// HF-20: sets the run's lifecycle record (a frozen run, or a throwing setter, keeps what it had).
function writeRecord(run, record) {
  try {
    run.terminalLifecycle = record
  } catch {
    // The host's object refuses the field: the record is not kept.
  }
}

// HF-20: the record as the run holds it, when it is one (a throwing getter: none).
function recordOf(run) {
  try {
    const record = run.terminalLifecycle
    return terminalLifecycle.isRecord(record) ? record : null
  } catch {
    return null
  }
}

/**
 * HF-20: after a write of the terminal state, the record says whether that state reached the
 * disk. Each such write is made with a record that says 'acknowledged'; when it fails and no
 * earlier write of the terminal state went through (`noneBefore`: the verdict's own write, or
 * the write at its 'end' after a failed one), the record says 'failed', with the failure's
 * class. True when it says so.
 */
function notePersistence(ctx, run, s, noneBefore) {
  const record = recordOf(run)
  if (record === null || !noneBefore) return false
  // (LC-11: from inside the host's writer making a write of this run, this one's outcome is not
  // known yet, undefined; the record keeps what it says.)
  const persisted = lastWriteOutcome(ctx, s)
  if (persisted === undefined || persisted === null || persisted === 'acknowledged') return false
  writeRecord(run, terminalLifecycle.withPersistence(record, 'failed', persisted))
  return true
}

// HF-20: before the write at the 'end' that follows a failed one, the record says
// 'acknowledged', as the file that write makes holds.
function acknowledgeRecord(run) {
  const record = recordOf(run)
  if (record !== null) writeRecord(run, terminalLifecycle.withPersistence(record, 'acknowledged', null))
}

/**
 * HF-20: a terminal finish of a run that has its verdict is a claim the record counts: a duplicate
 * (the same status) or a late one (another status); persisted (a claim made while the verdict's
 * own hooks run is in the state file written at its 'end').
 */
function noteTerminalClaim(ctx, run, s, status) {
  if (!isTerminal(status) || !isTerminal(s.status) || s.dropped) return
  const record = recordOf(run)
  if (record === null) return
  writeRecord(run, terminalLifecycle.claimRecorded(record, status === s.status ? 'duplicate' : 'late'))
  // (Until the 'end' record, the write at the 'end' takes it; after it, a client's send or end()
  // making the claim, it is written now.)
  if (!(s.finishing && s.endPending)) persist(ctx, run, s)
}

/** FAL-1: an 'error' event, then the 'failed' verdict; nothing for a terminal run. */
function fail(ctx, run, code, message, init = {}) {
  const s = own(ctx, run, 'fail')
  // LC-6: from inside a finish (its hooks, its clients) a fail is a no-op, its 'error' too.
  if (s.finishing || isTerminal(s.status)) return
  emit(ctx, run, 'error', ctx.opts.createSseErrorPayload(code, message, init))
  finish(ctx, run, 'failed', 1, null)
}

/** STA-1..STA-6: stamps telemetry, calls the starter; its rejection fails the run (IMP-10). */
function start(ctx, run, starter) {
  const s = own(ctx, run, 'start')
  if (typeof starter !== 'function') {
    throw new TypeError(`start(run, starter): expected starter to be a function, got ${describe(starter)}`)
  }
  const previous = run.analyticsTelemetry
  run.analyticsTelemetry = { ...(previous ?? EMPTY), startRequestedAt: Date.now() }
  const result = starter(run)
  if (result === null || result === undefined || typeof result.catch !== 'function') {
    throw new TypeError(`start(run, starter): starter must return a promise, got ${describe(result)}`)
  }
  result.catch((err) => {
    try {
      const message = err instanceof Error ? err.message : String(err)
      fail(ctx, run, 'AGENT_EXECUTION_FAILED', message)
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
  if (isTerminal(s.status)) return Promise.resolve(resolvedStatusBody(run))
  return new Promise((resolve) => run.waiters.add(resolve))
}

/**
 * DRP-1/DRP-2: out of the registry, canceled, without an 'end' record; run.onFinalize first
 * (LC-6); its state file is removed (a dropped run is never hydrated).
 */
function drop(ctx, run) {
  if (!run) return
  const s = own(ctx, run, 'drop')
  if (isTerminal(s.status) || s.finishing) return
  // As in a finish: a finish, fail or prepareRestart from its hook or its clients' end() is a
  // no-op, and a cancel waits for the drop.
  s.finishing = true
  try {
    finalize(ctx, run)
    const now = Date.now()
    if (!native.runDrop(ctx.svc, s.slot, now)) return
    forgetWrites(ctx, s.slot)
    // A finish parked by a teardown under way can never apply to a dropped run (DRP-2: no
    // 'end'): it is forgotten, and emits record again (EMT-5) without waiting for that teardown.
    if (s.teardown !== null) s.teardown.parked.length = 0
    holdUntilWritten(ctx)
    ctx.runs[s.slot] = undefined
    releaseWhenUnreachable(s)
    // DRP-1: the clients end before the status changes (the mirror syncs after them). A record
    // one of them emits meanwhile (EMT-5) has already moved updatedAt past the drop's time.
    const idBeforeEnd = s.nextEventId
    const writesBeforeEnd = s.hostWrites
    endClientsInOrder(run, s)
    syncDropped(s, now, s.nextEventId === idBeforeEnd ? now : s.updatedAt)
    // The drop's status and time win over what a client's end() wrote (as upstream, which sets
    // them after the clients), in the core as in the mirror (RUN-3).
    if (s.hostWrites !== writesBeforeEnd) {
      native.runSetText(ctx.svc, s.slot, TextField.Status, s.status)
      native.runSetNumber(ctx.svc, s.slot, NumberField.UpdatedAt, s.updatedAt)
    }
    resolveWaiters(run)
  } finally {
    s.finishing = false
  }
}

/**
 * LC-7, LC-9: the finishes a teardown parked (`t`, its state; null for none), applied in the
 * order they came (the first verdict wins). `lastSignal`, when the teardown ended at its barrier,
 * is the real last signal it sent: a parked 'canceled' without a signal of its own (a child that
 * exited by itself on SIGTERM, its close handler passing `signal` null) carries that one, so the
 * verdict does not depend on whether the child's 'close' or the barrier's end came first.
 */
function finishParked(ctx, run, t, lastSignal = null) {
  if (t === null) return
  for (const [status, code, signal] of t.parked) {
    finish(ctx, run, status, code, status === 'canceled' && signal == null ? lastSignal : signal)
  }
}

module.exports = { finish, finishParked, fail, start, wait, drop }
