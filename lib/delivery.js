'use strict'
// Artifact delivery (SPEC HF-13). A run whose work is an artifact the host must still deliver
// (saved, read back, previewed) is marked `run.artifactDeliveryRequired = true`; its 'succeeded'
// verdict is then the agent's, and the host's receipt settles it once: a delivered artifact keeps
// it, a failed delivery revises it to 'failed' (ARTIFACT_DELIVERY_FAILED). Until a receipt
// comes, a Stop (cancel) may still end the run as 'canceled' (lib/control.js asks deliveryPending).

const native = require('./core.js')
const { own, syncDeliveryStopped } = require('./run.js')
const { isTerminal } = require('./status.js')
const { hostJson, persist } = require('./state.js')
const { isObject } = require('./host-fields.js')

/** The error code of a run whose artifact delivery failed. */
const DELIVERY_FAILED = 'ARTIFACT_DELIVERY_FAILED'
const DEFAULT_MESSAGE = 'The artifact could not be delivered.'
const RECEIPT_STATUSES = new Set(['succeeded', 'failed'])

/** Whether the run's 'succeeded' verdict still waits for a receipt the host must give. */
function deliveryPending(run, s) {
  return s.status === 'succeeded' && run.artifactDeliveryRequired === true && !isObject(run.artifactDelivery)
}

/** HF-13: cancel() of such a run: 'canceled' with the origin, persisted; the status body. */
function stopPendingDelivery(ctx, run, s, origin, now) {
  if (!native.runCancelPendingDelivery(ctx.svc, s.slot, origin, ctx.logging ? hostJson(ctx, run) : undefined, now)) {
    return false
  }
  syncDeliveryStopped(s, now, origin)
  return true
}

// Why a receipt cannot apply to the run now, or null when it can.
function refusal(run, s, receipt) {
  if (s.status === 'canceled') return 'run-canceled'
  if (!isTerminal(s.status)) return 'run-not-terminal'
  if (run.artifactDeliveryRequired !== true) return 'artifact-delivery-not-required'
  const previous = run.artifactDelivery
  if (isObject(previous) && previous.status === 'succeeded') return 'artifact-delivery-already-succeeded'
  if (isObject(previous) && previous.status === 'failed') return 'artifact-delivery-already-failed'
  if (s.status !== 'succeeded') return 'run-failed'
  if (!isObject(receipt) || !RECEIPT_STATUSES.has(receipt.status)) return 'invalid-receipt'
  return null
}

/**
 * HF-13: the host's receipt for the artifact of a finished run: `{ status: 'succeeded' | 'failed',
 * files?, error? }`. Returns `{ applied, reason?, run }`; applied once per run (the first receipt
 * wins), persisted: `run.artifactDelivery = { status, files }` (and `error` for a failure), and a
 * failed delivery revises the verdict to 'failed' with ARTIFACT_DELIVERY_FAILED.
 */
function acknowledgeArtifactDelivery(ctx, run, receipt) {
  const s = own(ctx, run, 'acknowledgeArtifactDelivery')
  const reason = refusal(run, s, receipt)
  if (reason !== null) return { applied: false, reason, run }
  const files = Array.isArray(receipt.files) ? receipt.files : []
  if (receipt.status === 'succeeded') {
    run.artifactDelivery = { status: 'succeeded', files }
  } else {
    const message = typeof receipt.error === 'string' && receipt.error.trim() !== '' ? receipt.error : DEFAULT_MESSAGE
    run.artifactDelivery = { status: 'failed', files, error: message }
    run.status = 'failed'
    run.error = message
    run.errorCode = DELIVERY_FAILED
  }
  persist(ctx, run, s)
  return { applied: true, run }
}

module.exports = { acknowledgeArtifactDelivery, deliveryPending, stopPendingDelivery }
