'use strict'
// The service's registry of runs (SPEC §6): create, the runs an earlier service left in
// runsLogDir, get/list, and eviction after ttlMs. The core keeps the registry and its indexes;
// `ctx.runs` maps each core slot to its run object (identity for get/list/shutdownActive).

const native = require('../loader.js')
const { ChatRun, adopt, createdFields, restoredFields } = require('./run.js')
const { nonEmptyString } = require('./convert.js')
const { lowerJson, otherIdsJson } = require('./lower.js')

const EMPTY = Object.freeze({})

/** CRE-1..CRE-5. */
function create(ctx, meta) {
  const m = meta !== null && typeof meta === 'object' ? meta : EMPTY
  const now = Date.now()
  const projectId = nonEmptyString(m.projectId)
  const conversationId = nonEmptyString(m.conversationId)
  const logging = ctx.logging
  const [slot, id, media, bundle, summary] = JSON.parse(
    native.runCreate(
      ctx.svc,
      projectId,
      conversationId,
      lowerJson(m.mediaExecution),
      lowerJson(m.toolBundle),
      logging ? otherIdsJson(m) : undefined,
      now,
    ),
  )
  const logPath = logging ? ctx.logPrefix + id + ctx.logSuffix : null
  return adopt(ctx, slot, id, logPath, m, media, bundle, summary, now, createdFields(projectId, conversationId, now))
}

// Runs an earlier service left in runsLogDir (see crates/core/src/durable.rs): registered again,
// terminal, their history readable from the log (IMP-3), evicted after ttlMs like any other.
function restore(ctx) {
  const now = Date.now()
  for (const { slot, snapshot } of native.restoreRuns(ctx.svc, ctx.opts.runsLogDir, now)) {
    // Every field is present and typed: the core fills the defaults (crates/core/src/durable.rs).
    const snap = JSON.parse(snapshot)
    const { ids, mediaExecution, toolBundle } = snap.meta
    const logPath = ctx.logPrefix + snap.id + ctx.logSuffix
    const summary = JSON.stringify(toolBundle)
    const run = adopt(
      ctx,
      slot,
      snap.id,
      logPath,
      ids,
      mediaExecution,
      toolBundle,
      summary,
      snap.createdAt,
      restoredFields(snap),
    )
    scheduleEviction(ChatRun.stateOf(run))
  }
}

/** GET-1. */
function get(ctx, id) {
  if (typeof id !== 'string') return null
  const slot = native.runGet(ctx.svc, id)
  return slot < 0 ? null : (ctx.runs[slot] ?? null)
}

/** LST-1..LST-3. */
function list(ctx, filter) {
  const f = filter !== null && typeof filter === 'object' ? filter : EMPTY
  const slots = native.runList(
    ctx.svc,
    nonEmptyString(f.projectId),
    nonEmptyString(f.conversationId),
    nonEmptyString(f.status),
  )
  const runs = ctx.runs
  const out = new Array(slots.length)
  for (let i = 0; i < slots.length; i++) out[i] = runs[slots[i]]
  return out
}

/**
 * FIN-5: evict the run of mirror `s` after ttlMs (an unref'd timer, TMR-3), unless runs are kept
 * forever. The timer holds the mirror, not the run, so its slot cannot be reused meanwhile.
 */
function scheduleEviction(s) {
  const delay = s.ctx.ttlDelay
  if (delay !== null) setTimeout(evict, delay, s).unref()
}

function evict(s) {
  const ctx = s.ctx
  if (native.runEvict(ctx.svc, s.slot)) ctx.runs[s.slot] = undefined
}

module.exports = { create, restore, get, list, scheduleEviction }
