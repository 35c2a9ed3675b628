'use strict'
// Media-task evidence of a run (SPEC HF-12): the daemon notes a media task that failed and, later,
// a task of the same run that produced the same output instead. The failures are kept on the run
// (`run.mediaTaskFailures`, persisted and restored as a daemon field, HF-4/HF-5), each marked once
// a later success recovers it; one left unrecovered at the verdict means the run ended with
// unfinished work (HF-11, lib/host-fields.js).

const { get } = require('./registry.js')
const { own } = require('./run.js')
const { persist } = require('./state.js')
const { isObject } = require('./host-fields.js')

const isText = (value) => typeof value === 'string' && value !== ''

/** The run with this id (registered, or loaded from disk), or null. */
function runOf(ctx, runId) {
  return typeof runId === 'string' ? get(ctx, runId) : null
}

// The run's failure list (empty when the field holds anything but an array; the callers replace
// the field with a new array).
function failuresOf(run) {
  const list = run.mediaTaskFailures
  return Array.isArray(list) ? list : []
}

/**
 * HF-12: records `failure` (`{ taskId, output?, surface?, failedAt?, error? }`, a non-empty
 * string taskId) on the run with id `runId`, persisted. True when it was recorded; false for an
 * unknown run or a failure without a taskId. A failure without an `output` is kept but can never
 * be recovered (nothing says what would replace it).
 */
function noteMediaTaskFailure(ctx, runId, failure) {
  const run = runOf(ctx, runId)
  if (run === null || !isObject(failure) || !isText(failure.taskId)) return false
  const s = own(ctx, run, 'noteMediaTaskFailure')
  const { taskId, output, surface, failedAt, error } = failure
  run.mediaTaskFailures = [...failuresOf(run), { taskId, output, surface, failedAt, error }]
  persist(ctx, run, s)
  return true
}

// A success replaces a failure when it made the same output on the same surface and started no
// earlier than the failure.
function replaces(success, failure) {
  return (
    failure.recoveredByTaskId === undefined &&
    isText(failure.output) &&
    success.output === failure.output &&
    success.surface === failure.surface &&
    Number.isFinite(success.startedAt) &&
    Number.isFinite(failure.failedAt) &&
    success.startedAt >= failure.failedAt
  )
}

/**
 * HF-12: `success` (`{ taskId, output, surface, startedAt, completedAt }`) recovers every failure
 * of the same run it replaces: each gets `recoveredByTaskId` and `recoveredAt` (its
 * `completedAt`, else now), persisted. True when at least one was recovered.
 */
function noteMediaTaskRecovery(ctx, runId, success) {
  const run = runOf(ctx, runId)
  if (run === null || !isObject(success) || !isText(success.taskId)) return false
  const s = own(ctx, run, 'noteMediaTaskRecovery')
  const recoveredAt = Number.isFinite(success.completedAt) ? success.completedAt : Date.now()
  let recovered = false
  const failures = failuresOf(run).map((failure) => {
    if (!isObject(failure) || !replaces(success, failure)) return failure
    recovered = true
    return { ...failure, recoveredByTaskId: success.taskId, recoveredAt }
  })
  if (!recovered) return false
  run.mediaTaskFailures = failures
  persist(ctx, run, s)
  return true
}

module.exports = { noteMediaTaskFailure, noteMediaTaskRecovery }
