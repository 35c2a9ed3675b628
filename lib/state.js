'use strict'
// The host's part of a run's state.json (SPEC LC-1, LC-6). The core writes the file; the values
// only the run object holds (ids the host may rewrite, requestFingerprint, the failure fields,
// resumable, endedWithUnfinishedWork, terminalRecoveryReason, the daemon's fields of SPEC §22
// (lib/host-fields.js), the options' durableFields) cross as ONE JSON text with the native call that writes it, and only at the
// lifecycle points (create, the start/error/end emits, finish, persistState, prepareRestart):
// an ordinary emit never builds it. See docs/ARCHITECTURE.md, "The state file".

const native = require('./core.js')
const { handOver, writeWaiting } = require('./state-writer.js')
const { nonEmptyString } = require('./convert.js')
const {
  addDurable,
  addStrategyMeta,
  readingSafely,
  restoreDurable,
  restoreTreeIdentity,
  TREE_FILE_KEYS,
} = require('./host-fields.js')

/** The file's own fields: a durable field by one of these names is never written twice. */
const STATE_KEYS = new Set(native.stateFileKeys())

/**
 * The options' durableFields the file does not already carry under that name. A name of HF-4's
 * (model, workspaceScope, ...) stays: the host's durable field writes its value whatever its shape.
 */
function extraDurableFields(durableFields) {
  // '__proto__' names an object's prototype, never a field a run holds or a file can restore.
  // LC-9's tree identity is restored by its own rule, never verbatim.
  return durableFields.filter((name) => !STATE_KEYS.has(name) && name !== '__proto__' && !TREE_FILE_KEYS.includes(name))
}

// A value JSON can carry (JSON.stringify does not throw on it), else `fallback`.
function jsonable(value, fallback) {
  try {
    JSON.stringify(value)
    return value
  } catch {
    return fallback
  }
}

/**
 * The run's host-owned state-file values as one JSON text (LC-1). A value JSON cannot carry
 * (BigInt, a cycle, a throwing toJSON) or that cannot be read (a throwing getter) is left out (a
 * failure field: null), each on its own. Undefined only if the text cannot be made at all: the
 * core then keeps the values it had.
 */
function hostJson(ctx, realRun) {
  try {
    // A field whose getter throws is left out (a failure field: null); every other is written.
    const run = readingSafely(realRun)
    // (Each value JSON cannot hold is left out on its own: the others are still written.)
    const host = {
      assistantMessageId: jsonable(run.assistantMessageId, undefined),
      clientRequestId: jsonable(run.clientRequestId, undefined),
      requestFingerprint: jsonable(run.requestFingerprint, undefined),
      agentId: jsonable(run.agentId, undefined),
      failureCategory: jsonable(run.failureCategory ?? null, null),
      failureDetail: jsonable(run.failureDetail ?? null, null),
      failureAction: jsonable(run.failureAction ?? null, null),
      terminalRecoveryReason: jsonable(run.terminalRecoveryReason ?? null, null),
      resumable: Boolean(run.resumable),
      endedWithUnfinishedWork: Boolean(run.endedWithUnfinishedWork),
    }
    addDurable(host, run, addExtra)
    for (const name of ctx.durableFields) addExtra(host, name, run[name])
    return JSON.stringify(host)
  } catch {
    return undefined
  }
}

function addExtra(host, name, value) {
  if (value === undefined) return
  const kept = jsonable(value, undefined)
  if (kept !== undefined) host[name] = kept
}

/**
 * `create(meta)`'s state-file values (the run object does not exist yet): from `meta`, and the
 * run's `externalPluginAnalytics` (HF-8, made from `meta.analyticsHints`).
 */
function createdHostJson(meta, externalPluginAnalytics) {
  const host = {
    assistantMessageId: nonEmptyString(meta.assistantMessageId),
    clientRequestId: nonEmptyString(meta.clientRequestId),
    requestFingerprint: nonEmptyString(meta.requestFingerprint),
    agentId: nonEmptyString(meta.agentId),
  }
  // What the run's constructor will hold for the HF-4 fields create() sets (HF-1).
  const source = {
    skillId: nonEmptyString(meta.skillId),
    appliedPluginSnapshotId: nonEmptyString(meta.appliedPluginSnapshotId),
    externalPluginAnalytics,
  }
  for (const name of ['workspaceScope', 'designSystemScope']) if (name in meta) source[name] = meta[name] ?? null
  addStrategyMeta(source, meta)
  addDurable(host, source, addExtra)
  try {
    return JSON.stringify(host)
  } catch {
    return undefined
  }
}

/**
 * LC-1: writes the run's state file now, with its host values (nothing without logging). True
 * when it was written (or handed to the host's writer, LC-11).
 */
function persist(ctx, run, s) {
  if (!ctx.logging) return false
  // (A host writer, LC-11, gets it when the method returns, or at once where its outcome is read:
  // writtenThrough.)
  return native.runPersistState(ctx.svc, s.slot, hostJson(ctx, run))
}

/**
 * Whether a write the core accepted (`queued`: the native call's answer) reached the file: the
 * core's own writer answers at once; a host writer's answer (LC-11) is the run's persistence
 * once it was handed over after the call, and unknown from inside the host's function (null).
 */
function writtenThrough(ctx, s, queued) {
  if (!queued) return false
  if (ctx.opts.writeDurableState === null) return true
  const outcome = lastWriteOutcome(ctx, s)
  return outcome === undefined ? null : outcome === 'acknowledged'
}

/**
 * How the run's last state-file write went (`runStatePersistence`: null when none was made), once
 * a host writer (LC-11) was handed it; undefined while it waits for the write of the run the host's
 * function is making.
 */
function lastWriteOutcome(ctx, s) {
  handOver(ctx)
  if (writeWaiting(ctx, s.slot)) return undefined
  return native.runStatePersistence(ctx.svc, s.slot)
}

/**
 * `persistState`'s result (upstream's shape): `{ ok: true }` when the file holds the run's state
 * now, else `{ ok: false, errorType }` with the class of the failure (`'storage_unavailable'`:
 * no `runsLogDir`, or a run that is not kept any more; `'unknown'` from inside the host's writer,
 * whose write of it follows the one it is making, LC-11).
 */
function persistResult(ctx, run, s) {
  if (!ctx.logging || s.dropped) return { ok: false, errorType: 'storage_unavailable' }
  const written = writtenThrough(ctx, s, persist(ctx, run, s))
  if (written === true) return { ok: true }
  if (written === null) return { ok: false, errorType: 'unknown' }
  // (A write that did not go through failed now: its class is the run's.)
  const persisted = native.runStatePersistence(ctx.svc, s.slot)
  return {
    ok: false,
    errorType: persisted !== null && persisted !== 'acknowledged' ? persisted : 'storage_unavailable',
  }
}

/**
 * A hydrated run's host fields, from its state file (LC-2, LC-6, HF-5): the failure fields,
 * terminalRecoveryReason, resumable, endedWithUnfinishedWork, the HF-4 fields the file holds
 * (workspaceScope among them), the options' durableFields the file holds, any other field of
 * the file the run does not have (as upstream's spread of the file), and LC-9's tree identity.
 * True when the file must be written again (LC-9: a retryable termination failure that no
 * identity lets anyone retry is not retryable any more).
 */
function applyHostFields(ctx, run, state) {
  run.failureCategory = state.failureCategory ?? null
  run.failureDetail = state.failureDetail ?? null
  run.failureAction = state.failureAction ?? null
  run.terminalRecoveryReason = state.terminalRecoveryReason ?? null
  run.resumable = state.resumable === true
  run.endedWithUnfinishedWork = state.endedWithUnfinishedWork === true
  restoreDurable(run, state)
  for (const name of ctx.durableFields) {
    if (!Object.hasOwn(state, name)) continue
    try {
      run[name] = state[name]
    } catch {
      // A name the run object does not let the host assign (events, nextEventId, ...).
    }
  }
  // Upstream's hydration spreads the whole file onto the run, so a field this version does not
  // know (written by upstream's module or a newer daemon) reaches the run as a plain data field
  // too, unless the name is the file's own, LC-9's, or one the run already has (an accessor, a
  // method, its prototype).
  for (const name of Object.keys(state)) {
    if (STATE_KEYS.has(name) || TREE_FILE_KEYS.includes(name) || name in run) continue
    run[name] = state[name]
  }
  return restoreTreeIdentity(run, state)
}

module.exports = {
  STATE_KEYS,
  extraDurableFields,
  hostJson,
  createdHostJson,
  persist,
  persistResult,
  writtenThrough,
  lastWriteOutcome,
  applyHostFields,
}
