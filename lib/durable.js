'use strict'
// The lifecycle methods LC-1, LC-3 and LC-4 add to a service: persistState, createOrReuse and
// prepareRestart; and HF-7's checkpoints, which set a daemon field and persist it.

const native = require('./core.js')
const { own, syncRestarted } = require('./run.js')
const { nonEmptyString } = require('./convert.js')
const { describe } = require('./describe.js')
const { isTerminal } = require('./status.js')
const { create, hydrate, unreadableError, displaceHydratedCopy, reinstate } = require('./registry.js')
const { emit } = require('./emit.js')
const { hostJson, persist, persistResult, writtenThrough } = require('./state.js')
const { clearFailure, forgetAttempt, clearRetryRestart, isAttemptNumber } = require('./host-fields.js')
const terminalLifecycle = require('./terminal-lifecycle.js')
const telemetryDelivery = require('./telemetry-delivery.js')

const { RunLookup } = native

const EMPTY = Object.freeze({})

/**
 * LC-1: writes the run's state file now and says how it went (`{ ok: false, errorType:
 * 'storage_unavailable' }` without logging or for a falsy `run`).
 */
function persistState(ctx, run) {
  if (!run) return { ok: false, errorType: 'storage_unavailable' }
  return persistResult(ctx, run, own(ctx, run, 'persistState'))
}

/**
 * HF-7: `run.analyticsRecovery = { context, properties, insertId }` from `recovery`, persisted. A
 * falsy run, or a `recovery` that is not an object, changes nothing.
 */
function setAnalyticsRecovery(ctx, run, recovery) {
  if (!run) return
  const s = own(ctx, run, 'setAnalyticsRecovery')
  if (recovery === null || typeof recovery !== 'object') return
  const { context, properties, insertId } = recovery
  run.analyticsRecovery = { context, properties, insertId }
  persist(ctx, run, s)
}

/** HF-7: stamps `run.analyticsRecovery.completedAt` (now) and persists; nothing without one. */
function markAnalyticsCompleted(ctx, run) {
  if (!run) return
  const s = own(ctx, run, 'markAnalyticsCompleted')
  const recovery = run.analyticsRecovery
  if (recovery === null || typeof recovery !== 'object') return
  recovery.completedAt = Date.now()
  persist(ctx, run, s)
}

/** HF-7: `run.langfuseCompletedAt = now`, persisted. */
function markLangfuseCompleted(ctx, run) {
  if (!run) return
  const s = own(ctx, run, 'markLangfuseCompleted')
  run.langfuseCompletedAt = Date.now()
  persist(ctx, run, s)
}

/**
 * HF-20: the terminal analytics event of a run with a lifecycle record is being sent: one more
 * delivery attempt, in flight; persisted. Nothing for a run without a record (no verdict yet).
 */
function beginAnalyticsDelivery(ctx, run) {
  if (!run) return
  const s = own(ctx, run, 'beginAnalyticsDelivery')
  const record = run.terminalLifecycle
  if (!terminalLifecycle.isRecord(record)) return
  run.terminalLifecycle = terminalLifecycle.deliveryBegun(record)
  persist(ctx, run, s)
}

/**
 * HF-20: the sender's verdict on the terminal analytics event (`result`: `{ status,
 * acknowledgement, errorType }`), persisted. Nothing for a `result` that is not an object or a
 * run without a record.
 */
function finalizeAnalyticsDelivery(ctx, run, result) {
  if (!run) return
  const s = own(ctx, run, 'finalizeAnalyticsDelivery')
  if (result === null || typeof result !== 'object') return
  const record = run.terminalLifecycle
  if (!terminalLifecycle.isRecord(record)) return
  run.terminalLifecycle = terminalLifecycle.deliveryFinalized(record, result)
  persist(ctx, run, s)
}

/** HF-21: the run's trace delivery starts (or starts again): in flight; persisted. */
function beginTelemetryDelivery(ctx, run) {
  if (!run) return
  const s = own(ctx, run, 'beginTelemetryDelivery')
  run.telemetryDelivery = telemetryDelivery.begun(run.telemetryDelivery, s.id, Date.now())
  persist(ctx, run, s)
}

/** HF-21: one more attempt of the run's trace delivery; persisted. */
function recordTelemetryDeliveryAttempt(ctx, run) {
  if (!run) return
  const s = own(ctx, run, 'recordTelemetryDeliveryAttempt')
  run.telemetryDelivery = telemetryDelivery.attempted(run.telemetryDelivery, s.id, Date.now())
  persist(ctx, run, s)
}

/**
 * HF-21: the sender's result for the run's trace; a delivery it settles (accepted, or nothing to
 * send) also sets `langfuseCompletedAt`, as `markLangfuseCompleted` does; persisted. A `result`
 * that is not an object changes nothing.
 */
function finalizeTelemetryDelivery(ctx, run, result) {
  if (!run) return
  const s = own(ctx, run, 'finalizeTelemetryDelivery')
  if (result === null || typeof result !== 'object') return
  const record = telemetryDelivery.finalized(run.telemetryDelivery, s.id, result, Date.now())
  run.telemetryDelivery = record
  if (typeof record.finalizedAt === 'number') run.langfuseCompletedAt = record.finalizedAt
  persist(ctx, run, s)
}

/**
 * HF-7: the deliverable check's verdict on the run, persisted: `deliverableValid` (`valid ===
 * true`), `deliverableValidation` (a string, else 'entry_missing'), `deliverableEntryFile` and
 * `deliverableArtifactKind` (strings, else undefined). A `result` that is not an object changes
 * nothing.
 */
function setDeliverableValidation(ctx, run, result) {
  if (!run) return
  const s = own(ctx, run, 'setDeliverableValidation')
  if (result === null || typeof result !== 'object') return
  const text = (value) => (typeof value === 'string' ? value : undefined)
  run.deliverableValid = result.valid === true
  run.deliverableValidation = text(result.validation) ?? 'entry_missing'
  run.deliverableEntryFile = text(result.entryFile)
  run.deliverableArtifactKind = text(result.artifactKind)
  persist(ctx, run, s)
}

// The newest run created with this key (RunLookup). With logging the disk index holds every run
// that has a state file, this service's included: its newest, when not registered (evicted, or
// an earlier process's), is newer than every registered one, and is loaded; else the newest
// registered one.
//
// When part of runsLogDir cannot be read for now (too many open files), this throws rather than
// answer "none": the run asked for may be there, and createOrReuse would start it twice (LC-3).
//
// A run the index names may not load (its directory removed since, its state file damaged): the
// load takes it out of the running (LC-2), and the next newest with the key is tried.
function findByKey(ctx, lookup, key) {
  if (ctx.logging) {
    let tried = null
    for (;;) {
      let id
      try {
        id = native.durableRunByKey(ctx.svc, lookup, key)
      } catch (error) {
        const message = native.takeUnreadable(ctx.svc)
        throw message === null ? error : unreadableError(message)
      }
      // (The same id twice: its load failed without taking it out; nothing older is tried.)
      if (id === null || id === tried) break
      const run = hydrate(ctx, id, true)
      if (run !== null) return run
      tried = id
    }
  }
  const slot = native.runFindByKey(ctx.svc, lookup, key)
  return slot >= 0 ? (ctx.runs[slot] ?? null) : null
}

/**
 * HF-8: the newest run created with this plugin workflow id (its externalPluginAnalytics of the
 * open-design plugin), registered or on disk (hydrated); null for anything else, a dropped run
 * included. The match uses the value the run was created (or hydrated) with.
 */
function findByPluginWorkflowId(ctx, pluginWorkflowId) {
  if (typeof pluginWorkflowId !== 'string' || pluginWorkflowId === '') return null
  return findByKey(ctx, RunLookup.PluginWorkflowId, pluginWorkflowId)
}

/**
 * LC-3: `{ kind, run }`: 'reused' with the run created for the same non-empty clientRequestId
 * (in memory, or on disk: hydrated, so an interrupted request is reused, not started twice);
 * 'conflict' with that run when both requestFingerprints are non-empty and differ; else
 * 'created' with a new run.
 */
function createOrReuse(ctx, meta) {
  const m = meta !== null && typeof meta === 'object' ? meta : EMPTY
  const clientRequestId = nonEmptyString(m.clientRequestId)
  if (clientRequestId !== null) {
    const existing = findByKey(ctx, RunLookup.ClientRequestId, clientRequestId)
    if (existing !== null) {
      const theirs = nonEmptyString(existing.requestFingerprint)
      const ours = nonEmptyString(m.requestFingerprint)
      // Compared as the state file holds them (a lone surrogate reads back as U+FFFD, LC-1), so
      // the same request is reused before and after a restart alike.
      const differ = theirs !== null && ours !== null && theirs.toWellFormed() !== ours.toWellFormed()
      return { kind: differ ? 'conflict' : 'reused', run: existing }
    }
  }
  return { kind: 'created', run: create(ctx, m) }
}

const finiteOr0 = (value) => (Number.isFinite(value) ? value : 0)

// LC-10: the run field that holds a reserved resume attempt.
const PENDING = 'pendingManualResumeAttemptCount'
// What LC-10's two methods write (for checkWritable's error).
const RESERVATION_WRITE = `it sets or deletes ${PENDING}`

// LC-10: an attempt number is a non-negative safe integer; anything else is the caller's mistake.
function checkAttempt(method, executionAttempt) {
  if (!isAttemptNumber(executionAttempt)) {
    throw new TypeError(
      `${method}(run, executionAttempt): expected executionAttempt to be a non-negative integer (the resume attempt's number), got ${describe(executionAttempt)}`,
    )
  }
}

/**
 * LC-10: reserves resume attempt `executionAttempt` before the host commits its claim on the
 * run: `run.pendingManualResumeAttemptCount = executionAttempt`, written to the state file now,
 * so a daemon that dies before prepareRestart can tell which attempt its claim was for. True
 * when reserved (written, or nothing to write without logging); false for a dropped run or a
 * write that failed (the run keeps its earlier value).
 */
function reserveRestartAttempt(ctx, run, executionAttempt) {
  const s = own(ctx, run, 'reserveRestartAttempt')
  checkAttempt('reserveRestartAttempt', executionAttempt)
  checkWritable('reserveRestartAttempt(run, executionAttempt)', run, RESERVATION_WRITE)
  if (s.dropped) return false
  const had = Object.hasOwn(run, PENDING)
  const previous = had ? run[PENDING] : undefined
  run[PENDING] = executionAttempt
  if (!ctx.logging) return true
  // (Without the host's text the core would write the file it had, without the reservation.)
  const host = hostJson(ctx, run)
  // (From inside the host's writer, LC-11, the write follows: the reservation stands.)
  if (host !== undefined && writtenThrough(ctx, s, native.runPersistState(ctx.svc, s.slot, host)) !== false) return true
  if (had) run[PENDING] = previous
  else delete run[PENDING]
  return false
}

// A method that writes fields of the run (`what` says which): a frozen, sealed or non-extensible
// run gets an error that says so (not V8's), before anything changes.
function checkWritable(call, run, what) {
  if (!Object.isExtensible(run)) {
    throw new TypeError(
      `${call}: expected a run object the service can write (${what}), got a frozen, sealed or non-extensible run`,
    )
  }
}

/**
 * LC-10: takes back the reservation of `executionAttempt` (a claim that did not commit): when
 * the run holds that reservation, the field goes and the state file is written without it;
 * anything else changes nothing.
 */
function clearRestartAttempt(ctx, run, executionAttempt) {
  const s = own(ctx, run, 'clearRestartAttempt')
  checkAttempt('clearRestartAttempt', executionAttempt)
  checkWritable('clearRestartAttempt(run, executionAttempt)', run, RESERVATION_WRITE)
  if (run[PENDING] !== executionAttempt) return
  delete run[PENDING]
  if (!s.dropped) persist(ctx, run, s)
}

// LC-4 as LC-10 amends it: the attempt a restart starts is the one reserved for it, when that is
// a later one than the last; else the next.
function nextAttempt(run) {
  const count = finiteOr0(run.manualResumeAttemptCount)
  const reserved = run[PENDING]
  return isAttemptNumber(reserved) && reserved > count ? reserved : count + 1
}

/**
 * LC-4: a terminal run goes back to 'queued' for a retry, same object, same id; null for a run
 * that is not terminal (or was dropped, or is still inside its finish's hooks).
 */
function prepareRestart(ctx, run) {
  const s = own(ctx, run, 'prepareRestart')
  // Checked before anything changes: the reset writes the run's fields, some of them new.
  checkWritable('prepareRestart(run)', run, "it resets the attempt's fields")
  // (A teardown under way still owes the attempt its verdict: a host that wrote a terminal
  // status meanwhile gets null, as during a finish.)
  if (s.finishing || s.teardown !== null || s.dropped || !isTerminal(s.status)) return null
  // A cancel or shutdown of the previous attempt is over (its verdict is the one being reset):
  // the next cancel starts its own plan rather than returning that one's promise.
  s.cancelPromise = null
  s.shutdownPromise = null
  const now = Date.now()
  const previous = typeof s.updatedAt === 'number' ? s.updatedAt : now
  clearRetryRestart(run)
  run.child = null
  run.acpSession = null
  run.childPid = null
  run.processGroupId = null
  run.processTreeRoot = null
  run.processTreeIdentityCapture = null
  run.requiresTreeVerification = false
  run.stdinOpen = false
  clearFailure(run)
  forgetAttempt(run, now)
  // The interruption a restart recorded is over with its attempt: the next verdict is this one's.
  if ('terminalRecoveryReason' in run) run.terminalRecoveryReason = null
  const attempt = nextAttempt(run)
  // (The reservation is used: the file written below no longer holds it.)
  delete run[PENDING]
  // A clock stepped back (or a state file from a machine ahead) gives no negative wait.
  const rechargeWaitDurationMs = finiteOr0(run.rechargeWaitDurationMs) + Math.max(0, now - previous)
  run.manualResumeAttemptCount = attempt
  run.rechargeWaitDurationMs = rechargeWaitDurationMs
  // An evicted run comes back into the registry; a run hydrated under its id meanwhile leaves it.
  displaceHydratedCopy(ctx, run, s)
  if (native.runPrepareRestart(ctx.svc, s.slot, ctx.logging ? hostJson(ctx, run) : undefined, now) === null) return null
  reinstate(ctx, run, s)
  syncRestarted(s, now)
  emit(ctx, run, 'run_resume_attempted', { runId: s.id, attempt, reason: 'recharge', rechargeWaitDurationMs })
  return run
}

module.exports = {
  beginAnalyticsDelivery,
  finalizeAnalyticsDelivery,
  beginTelemetryDelivery,
  recordTelemetryDeliveryAttempt,
  finalizeTelemetryDelivery,
  persistState,
  createOrReuse,
  findByPluginWorkflowId,
  prepareRestart,
  reserveRestartAttempt,
  clearRestartAttempt,
  setAnalyticsRecovery,
  markAnalyticsCompleted,
  markLangfuseCompleted,
  setDeliverableValidation,
}
