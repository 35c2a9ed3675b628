'use strict'
// The run's terminal lifecycle record (SPEC HF-20), `run.terminalLifecycle`: how the run ended, as
// the daemon's analytics report it. Made at the verdict (the attempt, the runtime generation, the
// origin of the termination, whether the verdict's state file reached the disk), then updated by
// the terminal claims that come after the verdict and by the delivery of the terminal analytics
// event. The field names and values are the daemon's: its startup reconciliation reads them back
// from state files.

const VERSION = 1

const isObject = (value) => value !== null && typeof value === 'object'

/** A count the daemon keeps on the run: a finite number >= 0, rounded down; anything else is 0. */
function countOf(value) {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : 0
}

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i

/** The runtime generation: a UUID v4 (trimmed, lowercased), else null. */
function generationOf(value) {
  if (typeof value !== 'string') return null
  const id = value.trim()
  return UUID_V4.test(id) ? id.toLowerCase() : null
}

const WATCHDOG_TRIGGERS = new Set(['first_output_deadline', 'inactivity_watchdog', 'acp_stage_timeout'])

/** Who ended the run, as far as the cancel origin and the terminal trigger (LC-5) tell. */
function terminationOriginOf(cancelOrigin, terminalTrigger) {
  if (cancelOrigin === 'user_stop') return 'user_cancel'
  if (cancelOrigin === 'project_cleanup') return 'project_cleanup'
  return WATCHDOG_TRIGGERS.has(terminalTrigger) ? 'watchdog_cleanup' : 'unknown'
}

/** What is still owed for a run that ended: derived from the record's other facts. */
function unfinishedStateOf(record) {
  if (record.terminalIntegrity === 'permanently_missing') return 'permanently_missing'
  const persisted = record.terminalPersistence.status
  if (persisted === 'failed') return 'terminated_persistence_missing'
  if (persisted !== 'acknowledged') return 'unknown'
  const delivery = record.posthogDelivery.status
  if (delivery === 'failed') return 'terminal_persisted_posthog_failed'
  return delivery === 'in_flight' ? 'recovery_pending' : 'unknown'
}

/** A record with `changes` applied and its unfinished state derived again. */
function withChanges(record, changes) {
  const next = { ...record, ...changes }
  next.unfinishedState = unfinishedStateOf(next)
  return next
}

// A field of the run; a getter that throws reads as absent.
function fieldOf(run, name) {
  try {
    return run[name]
  } catch {
    return undefined
  }
}

/**
 * The record a verdict makes: `persistence` is 'acknowledged' (the verdict's state file is written)
 * or 'unknown' (the service keeps no files). Built at every verdict, so in one literal: with either
 * persistence and no delivery yet, the unfinished state is 'unknown' (unfinishedStateOf).
 */
function recordAtVerdict(run, persistence) {
  return {
    version: VERSION,
    runAttempt:
      countOf(fieldOf(run, 'cumulativeRetryAttemptCount')) +
      countOf(fieldOf(run, 'retryAttemptCount')) +
      countOf(fieldOf(run, 'manualResumeAttemptCount')),
    runtimeGenerationId: generationOf(fieldOf(run, 'runtimeGenerationId')),
    terminationOrigin: terminationOriginOf(fieldOf(run, 'cancelOrigin'), fieldOf(run, 'terminalTrigger')),
    terminalIntegrity: 'canonical',
    terminalPersistence: { status: persistence, errorType: null },
    posthogDelivery: { status: 'unknown', acknowledgement: 'unknown', attemptCount: 0, errorType: null },
    unfinishedState: 'unknown',
    duplicateTerminalCount: 0,
    lateTerminalCount: 0,
  }
}

/**
 * Whether the terminal state reached the disk: 'failed' with the core's class of the failure, or
 * 'acknowledged' (errorType null) once a later write succeeded.
 */
function withPersistence(record, status, errorType) {
  return withChanges(record, { terminalPersistence: { status, errorType } })
}

/**
 * A terminal claim after the verdict: 'duplicate' (the same status) or 'late' (another one). The
 * integrity names the worst claim seen: canonical, then duplicate, then late.
 */
function claimRecorded(record, kind) {
  const integrity = record.terminalIntegrity
  const terminalIntegrity =
    integrity === 'canonical' ? kind : integrity === 'duplicate' && kind === 'late' ? 'late' : integrity
  return {
    ...record,
    terminalIntegrity,
    duplicateTerminalCount: countOf(record.duplicateTerminalCount) + (kind === 'duplicate' ? 1 : 0),
    lateTerminalCount: countOf(record.lateTerminalCount) + (kind === 'late' ? 1 : 0),
  }
}

/** The terminal analytics event is being sent (one more attempt). */
function deliveryBegun(record) {
  const attempts = countOf(record.posthogDelivery?.attemptCount)
  return withChanges(record, {
    posthogDelivery: { status: 'in_flight', acknowledgement: 'none', attemptCount: attempts + 1, errorType: null },
  })
}

/**
 * The sender's verdict on the terminal analytics event: `result` as it gave it
 * (`{ status, acknowledgement, errorType }`, each kept as given, `undefined` read as null).
 */
function deliveryFinalized(record, result) {
  return withChanges(record, {
    posthogDelivery: {
      status: result.status ?? null,
      acknowledgement: result.acknowledgement ?? null,
      attemptCount: Math.max(1, countOf(record.posthogDelivery?.attemptCount)),
      errorType: result.errorType ?? null,
    },
  })
}

/** A record this module can update: one it made, or one in its shape (a hydrated run's). */
function isRecord(value) {
  return (
    isObject(value) &&
    isObject(value.terminalPersistence) &&
    isObject(value.posthogDelivery) &&
    typeof value.terminalIntegrity === 'string'
  )
}

module.exports = {
  recordAtVerdict,
  withPersistence,
  claimRecorded,
  deliveryBegun,
  deliveryFinalized,
  isRecord,
}
