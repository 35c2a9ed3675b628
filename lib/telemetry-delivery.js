'use strict'
// The run's telemetry delivery record (SPEC HF-21), `run.telemetryDelivery`: the daemon sends each
// run's trace once, under a key derived from the run id, and keeps in the state file whether that
// delivery is in flight (a crash then leaves a window to replay), failed (to retry at the next
// start) or settled. The names, values and the key's derivation are the daemon's: its startup
// reconciliation reads them back.

const { createHash } = require('node:crypto')

const VERSION = 1

const isObject = (value) => value !== null && typeof value === 'object'

/** The delivery's idempotency key: the same for every attempt, every process, every restart. */
function idempotencyKeyOf(runId) {
  const digest = createHash('sha256').update(`open-design/run-telemetry/v1\n${runId}`, 'utf8').digest('hex')
  return `od-run-telemetry-v1-${digest}`
}

const attemptsOf = (record) =>
  isObject(record) && Number.isSafeInteger(record.attemptCount) && record.attemptCount >= 0 ? record.attemptCount : 0

const keyOf = (record, runId) =>
  isObject(record) && typeof record.idempotencyKey === 'string' && record.idempotencyKey !== ''
    ? record.idempotencyKey
    : idempotencyKeyOf(runId)

const settled = (record) => isObject(record) && typeof record.finalizedAt === 'number'

/** A delivery starts (or starts again): in flight, inside its crash window. A settled one stays. */
function begun(previous, runId, now) {
  if (settled(previous)) return previous
  return {
    version: VERSION,
    idempotencyKey: keyOf(previous, runId),
    status: 'in_flight',
    attemptCount: attemptsOf(previous),
    crashWindow: true,
    startedAt: now,
  }
}

/** One more attempt of a delivery in flight (begun first when it was not). A settled one stays. */
function attempted(previous, runId, now) {
  const record = begun(previous, runId, now)
  return settled(record) ? record : { ...record, attemptCount: attemptsOf(record) + 1 }
}

/**
 * The sender's result (`{ langfuse_expected, langfuse_delivery_status, langfuse_drop_reason,
 * langfuse_attempt_count }`): 'not_expected' when nothing was to be sent, 'accepted', else
 * 'failed' (with a drop reason, 'network_error' when it gave none). The first two settle the
 * delivery (`finalizedAt`); a failed one stays open for a retry. A settled one stays.
 */
function finalized(previous, runId, result, now) {
  if (settled(previous)) return previous
  const status =
    result.langfuse_expected === false
      ? 'not_expected'
      : result.langfuse_delivery_status === 'accepted'
        ? 'accepted'
        : 'failed'
  const reported = result.langfuse_attempt_count
  const resultAttempts =
    Number.isSafeInteger(reported) && reported >= 0 ? reported : result.langfuse_expected === false ? 0 : 1
  const reason = result.langfuse_drop_reason
  const dropReason =
    typeof reason === 'string' && reason !== '' ? reason : status === 'failed' ? 'network_error' : undefined
  const record = {
    version: VERSION,
    idempotencyKey: keyOf(previous, runId),
    status,
    attemptCount: Math.max(attemptsOf(previous), resultAttempts),
    crashWindow: false,
    startedAt: isObject(previous) && typeof previous.startedAt === 'number' ? previous.startedAt : now,
  }
  if (dropReason !== undefined) record.dropReason = dropReason
  if (status !== 'failed') record.finalizedAt = now
  return record
}

module.exports = { begun, attempted, finalized, idempotencyKeyOf }
