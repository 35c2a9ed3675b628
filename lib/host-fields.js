'use strict'
// The fields the daemon keeps on a run and reads back through the service (SPEC §22, HF-1..HF-6):
// what create() takes from `meta`, what the status body and the 'end' data report, what the state
// file carries and a hydrated run gets back, what prepareRestart forgets. The service never
// interprets them: each has one shape check, and a value that fails it is left out (or null).
// The engine's own fields (status, ids, the verdict, the terminal facts) are elsewhere.

const native = require('./core.js')

const plainObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value)
const isObject = (value) => value !== null && typeof value === 'object'
const isString = (value) => typeof value === 'string'
const isNumber = (value) => typeof value === 'number'
// LC-10: a resume attempt's number.
const isAttemptNumber = (value) => Number.isSafeInteger(value) && value >= 0
const isBoolean = (value) => typeof value === 'boolean'
const isTruthy = (value) => Boolean(value)
const isFinite = (value) => Number.isFinite(value)

const SESSION_MODES = new Set(['chat', 'design', 'plan'])

// HF-1: how create() keeps each of its meta fields (the run's constructor applies them).
const plainObjectOrNull = (value) => (plainObject(value) ? value : null)
const objectOrNull = (value) => (isObject(value) ? value : null)
const sessionModeOrNull = (value) => (SESSION_MODES.has(value) ? value : null)

// A trimmed non-empty string, else null.
function trimmed(value) {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : null
}

// HF-8: the plugin that attributes its runs (the core's constant, crates/core/src/lookup.rs, which
// its disk index reads state files by), and the keys a run keeps of its analyticsHints, in this
// order (the key names and the plugin id are upstream's: its files read them).
const OPEN_DESIGN_PLUGIN_ID = native.openDesignPluginId()
const PLUGIN_ANALYTICS_KEYS = [
  'entrySurface',
  'hostProduct',
  'externalPluginId',
  'externalPluginVersion',
  'distributionMechanism',
  'publisherClass',
  'attributionQuality',
  'pluginWorkflowId',
  'logicalRequestDigest',
  'logicalRequestDigestVersion',
  'briefState',
  'generationSloWindowMs',
]

/**
 * HF-8: `run.externalPluginAnalytics` of a run created with `meta.analyticsHints`: a new object
 * of PLUGIN_ANALYTICS_KEYS (each as given, undefined included) when the hints are a plain object
 * of the open-design plugin, else null. A getter that throws gives null.
 */
function pluginAnalyticsOf(hints) {
  if (!plainObject(hints)) return null
  try {
    if (hints.externalPluginId !== OPEN_DESIGN_PLUGIN_ID) return null
    const analytics = {}
    for (const key of PLUGIN_ANALYTICS_KEYS) analytics[key] = hints[key]
    return analytics
  } catch {
    return null
  }
}

/**
 * HF-8: the workflow id a run is found by (a non-empty string), else null. The core reads a state
 * file's by the same rule (crates/core/src/lookup.rs, plugin_workflow_id); this copy saves create()
 * a crossing with the whole analytics object.
 */
function pluginWorkflowIdOf(analytics) {
  const id = analytics?.pluginWorkflowId
  return typeof id === 'string' && id !== '' ? id : null
}

// See readingSafely.
const READ_SAFELY = {
  get(target, name) {
    try {
      return Reflect.get(target, name, target)
    } catch {
      return undefined
    }
  },
  has(target, name) {
    try {
      return Reflect.has(target, name)
    } catch {
      return false
    }
  },
}

/**
 * The host's run as the service reads it where one unreadable field must not cost the others
 * (the state file's values, a status body's fallback): a field whose getter or Proxy trap throws
 * reads as undefined (and as absent for `in`).
 */
function readingSafely(run) {
  return new Proxy(run, READ_SAFELY)
}

/**
 * CAN-9: the host's `run.runtimeFailureObservedBeforeCancellation`. Read between a teardown's
 * start and its drive, where a throw would leave it started and nobody to end it: a getter that
 * throws reads as false.
 */
function failureObservedFirst(run) {
  try {
    return run.runtimeFailureObservedBeforeCancellation === true
  } catch {
    return false
  }
}

/**
 * A pending same-run retry the host scheduled (`run.retryRestartTimer`, a timer handle) is
 * cleared and the field set to null: a run canceled, shut down or reopened must not be started
 * again by a retry timer of its earlier attempt.
 */
function clearRetryRestart(run) {
  // The host's field: a getter or setter that throws must not stop the cancel or shutdown that
  // clears it.
  try {
    const timer = run.retryRestartTimer
    if (!timer) return
    try {
      clearTimeout(timer)
    } catch {
      // Not a timer: nothing was pending.
    }
    run.retryRestartTimer = null
  } catch {
    // See above.
  }
}

// An orchestrator's scratch checkout, as the project metadata describes it; null unless it is
// exactly that (an object of the known keys, kind 'scratch', writeback 'external' when given,
// each source field a non-empty string when given).
const SCRATCH_KEYS = new Set(['kind', 'sourceLabel', 'sourceRef', 'baseRevision', 'writeback'])
const SCRATCH_SOURCES = ['sourceLabel', 'sourceRef', 'baseRevision']

function scratchWorkspace(value) {
  if (!plainObject(value)) return null
  if (Object.keys(value).some((key) => !SCRATCH_KEYS.has(key))) return null
  if (trimmed(value.kind) !== 'scratch') return null
  if (value.writeback != null && trimmed(value.writeback) !== 'external') return null
  const provenance = { kind: 'orchestrator-scratch', writeback: 'external' }
  for (const key of SCRATCH_SOURCES) {
    if (value[key] == null) continue
    const text = trimmed(value[key])
    if (text === null) return null
    provenance[key] = text
  }
  return provenance
}

/** HF-2: where the run's project lives, from `run.projectMetadata` as it is now. */
function workspaceOf(metadata) {
  const record = plainObject(metadata) ? metadata : null
  const baseDir = trimmed(record?.baseDir)
  const scratch = scratchWorkspace(record?.orchestratorWorkspace)
  if (scratch !== null) return { storage: { kind: 'folder-backed', baseDir }, provenance: scratch }
  if (baseDir !== null) {
    return { storage: { kind: 'folder-backed', baseDir }, provenance: { kind: 'user-local', writeback: 'in-place' } }
  }
  return { storage: { kind: 'od-owned', baseDir: null }, provenance: null }
}

// HF-2: the status body's keys that appear only when the run's value has their shape, in this
// order. Written out (not a loop over names): a named read is inline-cached, a computed one is not,
// and statusBody runs for every waiter and every status request.
function addReported(body, run) {
  const termination = run.termination
  if (termination) body.termination = termination
  const artifactCount = run.artifactCount
  if (isFinite(artifactCount)) body.artifactCount = artifactCount
  const artifactPaths = run.artifactPaths
  if (Array.isArray(artifactPaths)) body.artifactPaths = artifactPaths
  const removedPaths = run.removedPaths
  if (Array.isArray(removedPaths)) body.removedPaths = removedPaths
  const promptCache = run.promptCache
  if (promptCache) body.promptCache = promptCache
  const nativeSessionRecovery = run.nativeSessionRecovery
  if (nativeSessionRecovery) body.nativeSessionRecovery = nativeSessionRecovery
  const browserUse = run.browserUse
  if (browserUse) body.browserUse = browserUse
  const clientType = run.clientType
  if (isString(clientType)) body.clientType = clientType
  const externalPluginAnalytics = run.externalPluginAnalytics
  if (externalPluginAnalytics) body.externalPluginAnalytics = externalPluginAnalytics
  const manualResumeAttemptCount = run.manualResumeAttemptCount
  if (isNumber(manualResumeAttemptCount)) body.manualResumeAttemptCount = manualResumeAttemptCount
  const rechargeWaitDurationMs = run.rechargeWaitDurationMs
  if (isNumber(rechargeWaitDurationMs)) body.rechargeWaitDurationMs = rechargeWaitDurationMs
  const artifactOriginStatus = run.artifactOriginStatus
  if (isString(artifactOriginStatus)) body.artifactOriginStatus = artifactOriginStatus
  const artifactVersionId = run.artifactVersionId
  if (isString(artifactVersionId)) body.artifactVersionId = artifactVersionId
  const deliverableValid = run.deliverableValid
  if (isBoolean(deliverableValid)) body.deliverableValid = deliverableValid
  const deliverableValidation = run.deliverableValidation
  if (isString(deliverableValidation)) body.deliverableValidation = deliverableValidation
  const deliverableEntryFile = run.deliverableEntryFile
  if (isString(deliverableEntryFile)) body.deliverableEntryFile = deliverableEntryFile
  const deliverableArtifactKind = run.deliverableArtifactKind
  if (isString(deliverableArtifactKind)) body.deliverableArtifactKind = deliverableArtifactKind
  const artifactDelivery = run.artifactDelivery
  if (artifactDelivery) body.artifactDelivery = artifactDelivery
  const strategyTask = run.strategyTask
  if (strategyTask) body.strategyTask = strategyTask
  const syntaxRepair = run.deliverableSyntaxRepair
  if (syntaxRepair) body.deliverableSyntaxRepair = syntaxRepair
  const syntaxValidation = run.deliverableSyntaxValidation
  if (syntaxValidation) body.deliverableSyntaxValidation = syntaxValidation
  const terminalLifecycle = run.terminalLifecycle
  if (terminalLifecycle) body.terminalLifecycle = terminalLifecycle
  return body
}

/** HF-16: the create() meta keys kept on the run (and in its state file) when they are objects. */
const STRATEGY_META = ['odNextTaskInputSnapshot', 'strategyRolloutDecision', 'runtimeCapabilitySnapshot']

/** HF-16: sets on `target` each of STRATEGY_META that `meta` holds as an object. */
function addStrategyMeta(target, meta) {
  for (const name of STRATEGY_META) {
    const value = meta[name]
    if (isObject(value)) target[name] = value
  }
}

/**
 * HF-16: a clean exit that the run's terminal strategy task refutes (its verdict is in, and is
 * not 'completed') is a failure. A getter that throws refutes nothing.
 */
function strategyRefutes(run) {
  try {
    const task = run.strategyTask
    return isObject(task) && task.terminal === true && task.outcome !== 'completed'
  } catch {
    return false
  }
}

/** HF-3, HF-17: the 'end' data's keys after LC-5's. */
function addEndFacts(data, run) {
  if (isFinite(run.artifactCount)) data.artifactCount = run.artifactCount
  if (Array.isArray(run.artifactPaths)) data.artifactPaths = run.artifactPaths
  data.failureCategory = run.failureCategory ?? null
  data.failureDetail = run.failureDetail ?? null
  if (run.termination) data.termination = run.termination
  // HF-17: the verdict's context, when the host (or beforeFinish) set it.
  const failureAction = run.failureAction
  if (failureAction !== null && failureAction !== undefined) data.failureAction = failureAction
  if (isBoolean(run.retryable)) data.retryable = run.retryable
  if (run.strategyTask) data.strategyTask = run.strategyTask
  if (run.deliverableSyntaxRepair) data.deliverableSyntaxRepair = run.deliverableSyntaxRepair
  if (run.deliverableSyntaxValidation) data.deliverableSyntaxValidation = run.deliverableSyntaxValidation
  return data
}

// HF-4: the state file's optional fields, written when the run's value has this shape. The
// opaque ones (kept as they are, whatever they hold) follow.
const DURABLE = [
  ['termination', isTruthy],
  ['artifactPaths', Array.isArray],
  ['userPrompt', isString],
  ['model', isString],
  ['resolvedModelId', isString],
  ['preflightAgentCliVersion', isString],
  ['reasoning', isString],
  ['skillId', isString],
  ['designSystemId', isString],
  ['designSystemDigest', isString],
  ['designSystemSelectionSource', isString],
  ['clientType', isString],
  ['analyticsTelemetry', isTruthy],
  ['promptTelemetry', isTruthy],
  ['promptCache', isTruthy],
  ['analyticsRecovery', isTruthy],
  ['externalPluginAnalytics', isTruthy],
  ['manualResumeAttemptCount', isNumber],
  ['pendingManualResumeAttemptCount', isAttemptNumber],
  ['rechargeWaitDurationMs', isNumber],
  ['artifactOriginStatus', isString],
  ['artifactVersionId', isString],
  ['deliverableValid', isBoolean],
  ['deliverableValidation', isString],
  ['deliverableEntryFile', isString],
  ['deliverableArtifactKind', isString],
  ['langfuseCompletedAt', isNumber],
  ['mediaTaskFailures', Array.isArray],
  ['artifactDeliveryRequired', isBoolean],
  ['artifactDelivery', isTruthy],
  // HF-16: the strategy descriptors and the delivery and lifecycle records the daemon keeps on a
  // run and reads back from its state file at startup.
  ['odNextTaskInputSnapshot', isTruthy],
  ['strategyRolloutDecision', isTruthy],
  ['runtimeCapabilitySnapshot', isTruthy],
  ['telemetryDelivery', isTruthy],
  ['terminalLifecycle', isTruthy],
  ['cumulativeRetryAttemptCount', isNumber],
  ['retryAttemptCount', isNumber],
  ['runtimeGenerationId', isString],
  ['appVersionInfo', isTruthy],
  // HF-17: the deliverable's syntax check and its repair loop (kept across attempts).
  ['deliverableSyntaxRepair', isTruthy],
  ['deliverableSyntaxValidation', isTruthy],
]
const DELIVERABLE_DETAILS = ['deliverableEntryFile', 'deliverableArtifactKind']
// Kept verbatim when the run has the key (LC-3's workspaceScope is one of them).
const OPAQUE = ['workspaceScope', 'designSystemScope', 'appliedPluginSnapshotId']

/** Every state-file field of this section: a host durable field by one of these names is not added twice. */
const HOST_FILE_KEYS = new Set(['artifactCount', ...DURABLE.map(([name]) => name), ...OPAQUE])
// LC-9's two (restored by restoreTreeIdentity, not verbatim); a durable field by either name is
// not added twice either.
const TREE_FILE_KEYS = ['processTreeRoot', 'requiresTreeVerification']

/**
 * HF-4: adds this section's fields to the host part of a state file. `source` is the run, or
 * create()'s `meta` (the run does not exist yet); `keep(host, name, value)` adds a value JSON
 * can carry.
 */
function addDurable(host, source, keep) {
  host.artifactCount = isFinite(source.artifactCount) ? source.artifactCount : 0
  for (const [name, shaped] of DURABLE) {
    const value = source[name]
    if (shaped(value)) keep(host, name, value)
  }
  // HF-7: a deliverable validation that names no entry file or kind (any more) clears what the
  // file held from an earlier one (a field the run does not hold otherwise keeps the file's).
  if (isBoolean(source.deliverableValid)) {
    for (const name of DELIVERABLE_DETAILS) if (!isString(source[name])) keep(host, name, null)
  }
  for (const name of OPAQUE) if (name in source) keep(host, name, source[name])
  if (source.termination) addTreeIdentity(host, source)
}

// LC-9: the error code of a teardown whose tree the host's terminator could not verify as
// stopped (the core's constant, crates/core/src/run.rs).
const TERMINATION_UNVERIFIED = native.terminationUnverifiedCode()

/**
 * LC-9: a process identity as the host's terminator takes it, `{ pid, createdAt }` (a new object:
 * a positive integer pid and a finite `createdAt` >= 0), else null. A getter that throws gives null.
 */
function treeIdentityOf(value) {
  try {
    if (!isObject(value)) return null
    const { pid, createdAt } = value
    if (!Number.isInteger(pid) || pid <= 0 || !Number.isFinite(createdAt) || createdAt < 0) return null
    return { pid, createdAt }
  } catch {
    return null
  }
}

/**
 * LC-9: a run (or a state file) that failed because its tree could not be verified as stopped,
 * and that a later cancel or shutdownActive may retry: errorCode RUN_TERMINATION_UNVERIFIED,
 * `termination.retryable === true`, and (unless `anyStatus`: the state file written with the
 * verdict, before the status changes) status 'failed'.
 */
function retryableTermination(source, anyStatus = false) {
  try {
    return (
      (anyStatus || source.status === 'failed') &&
      source.errorCode === TERMINATION_UNVERIFIED &&
      source.termination?.retryable === true
    )
  } catch {
    return false
  }
}

// LC-9: the tree identity a retry of `source`'s teardown needs (`retryable`: it is a retryable
// termination failure), when its tree requires verification; else null.
function retryIdentity(source, retryable) {
  return retryable && source.requiresTreeVerification === true ? treeIdentityOf(source.processTreeRoot) : null
}

/**
 * LC-9: what the state file says of the tree, for a run whose teardown the host's terminator
 * carried out (it has `termination`): the identity a retry needs, only while the run is a
 * retryable failure whose tree requires verification; null and false otherwise.
 */
function addTreeIdentity(host, source) {
  const root = retryIdentity(source, retryableTermination(source, true))
  host.processTreeRoot = root
  host.requiresTreeVerification = root !== null
}

/**
 * LC-9: a hydrated run gets back the tree identity its state file holds for a retry; a retryable
 * failure without one can never be retried (nothing identifies its tree), so its `termination`
 * becomes not retryable. True when that changed the run (the caller writes its state file).
 */
function restoreTreeIdentity(run, state) {
  const retryable = retryableTermination(state)
  const root = retryIdentity(state, retryable)
  run.processTreeRoot = root
  run.requiresTreeVerification = root !== null
  if (!retryable || root !== null) return false
  run.termination = { ...state.termination, retryable: false }
  return true
}

// HF-15: what upstream's later create() also puts on every new run, which the daemon reads without
// checking that it is there (its inactivity watchdog keys off lastAgentActivityAt, a native
// session retry counts nativeSessionContinueAttemptCount up, the close handler reads the flags).
// Named stores, not a loop over names: create() runs for every run, and a named store is
// inline-cached.
function addCreateDefaults(run, now) {
  run.workspace = workspaceOf(run.projectMetadata)
  run.lastAgentActivityAt = now
  run.runtimeFailureObservedBeforeCancellation = false
  run.retryOriginFailure = null
  run.retryOriginErrorCode = null
  run.retryStrategy = null
  run.retryMaxAttempts = null
  run.nativeSessionContinueAttemptCount = 0
  run.nativeSessionContinuePending = null
  run.stdinOpen = false
  run.stdinBackpressure = false
  run.lastTodoSnapshot = null
  run.truncatedMidTurn = false
  run.endedWithUnfinishedWork = false
}

/** HF-5: a hydrated run gets back each of these fields its state file holds. */
function restoreDurable(run, state) {
  for (const name of HOST_FILE_KEYS) if (Object.hasOwn(state, name)) run[name] = state[name]
}

// HF-6: what one attempt observed; prepareRestart forgets it. The list is the core's
// (crates/core/src/durable/state.rs, ATTEMPT_FIELDS), which drops the same names from the state
// file in the same step.
const ATTEMPT_FIELDS = native.attemptFields()

/** LC-5's failure fields of the host, reset for a new attempt (LC-4) or a teardown retry (LC-9). */
function clearFailure(run) {
  run.failureCategory = null
  run.failureDetail = null
  run.failureAction = null
}

// HF-10: the daemon's retry state of a run, as prepareRestart resets it for the next attempt
// (upstream's names and values).
const RETRY_RESET = [
  ['resumable', false],
  ['runtimeFailureObservedBeforeCancellation', false],
  ['retryAttemptCount', 0],
  ['retryFinalResult', undefined],
  ['retrySuppressedReason', undefined],
  ['retryOriginFailure', null],
  ['retryOriginErrorCode', null],
]

// HF-19: the analytics marks the daemon keeps of the logical run, not of one attempt.
const RUN_MARKS = new Set(['startRequestedAt'])

// A count the daemon keeps on the run: a finite number >= 0, rounded down, else 0.
const countOf = (value) => (isFinite(value) && value >= 0 ? Math.floor(value) : 0)

/**
 * HF-19: a new analyticsTelemetry for the next attempt: the previous one's keys without its time
 * marks (every key ending in `At` but the run's own, and `firstModelEventType`, which describes
 * one), then `attemptStartedAt = now`; null when `previous` is not a plain object.
 */
function restartTelemetry(previous, now) {
  if (!plainObject(previous)) return null
  const next = {}
  for (const [key, value] of Object.entries(previous)) {
    const attemptMark = (key.endsWith('At') && !RUN_MARKS.has(key)) || key === 'firstModelEventType'
    if (!attemptMark) next[key] = value
  }
  next.attemptStartedAt = now
  return next
}

/**
 * HF-6, HF-10, HF-19, HF-20: prepareRestart's part: the attempt's observations go (its terminal
 * lifecycle record and runtime generation with them), its automatic retries join the run's
 * cumulative count, the unfinished-work flag and the daemon's retry state reset, the analytics
 * marks start over.
 */
function forgetAttempt(run, now) {
  // Read first: an object whose reading throws (a getter, a Proxy trap) is left as it is, and
  // nothing else has changed when it would.
  let telemetry = null
  try {
    telemetry = restartTelemetry(run.analyticsTelemetry, now)
  } catch {
    // The host's own object: kept.
  }
  run.cumulativeRetryAttemptCount = countOf(run.cumulativeRetryAttemptCount) + countOf(run.retryAttemptCount)
  for (const name of ATTEMPT_FIELDS) if (name in run) run[name] = undefined
  run.runtimeGenerationId = null
  run.endedWithUnfinishedWork = false
  for (const [name, value] of RETRY_RESET) run[name] = value
  if (telemetry !== null) run.analyticsTelemetry = telemetry
}

module.exports = {
  isAttemptNumber,
  addStrategyMeta,
  strategyRefutes,
  TERMINATION_UNVERIFIED,
  clearFailure,
  TREE_FILE_KEYS,
  treeIdentityOf,
  retryableTermination,
  restoreTreeIdentity,
  isObject,
  plainObject,
  pluginAnalyticsOf,
  pluginWorkflowIdOf,
  clearRetryRestart,
  failureObservedFirst,
  readingSafely,
  plainObjectOrNull,
  objectOrNull,
  sessionModeOrNull,
  workspaceOf,
  addReported,
  addEndFacts,
  addDurable,
  restoreDurable,
  addCreateDefaults,
  forgetAttempt,
}
