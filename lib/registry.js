'use strict'
// The service's registry of runs (SPEC §6, LC-2): create, get/list (loading runs from
// runsLogDir when they are not in memory), and eviction after ttlMs. The core keeps the registry
// and its indexes, and the disk indexes; `ctx.runs` maps each core slot to its run object
// (identity for get/list/shutdownActive).

const native = require('./core.js')
const { ChatRun, adopt, releaseWhenUnreachable, createdFields, hydratedFields, syncDropped } = require('./run.js')
const { nonEmptyString } = require('./convert.js')
const { lowerJson } = require('./lower.js')
const { createdHostJson, applyHostFields, persist } = require('./state.js')
const { addCreateDefaults, addStrategyMeta, pluginAnalyticsOf, pluginWorkflowIdOf } = require('./host-fields.js')
const { callHook } = require('./hooks.js')
const { forgetWrites } = require('./state-writer.js')

const EMPTY = Object.freeze({})
const { HydrateMiss } = native

/**
 * LC-2: a read of runsLogDir failed for want of a resource (too many open files): the first
 * time for this service, the core's message becomes a process warning (as the first log error
 * does); later ones are counted in the stats (`hydration.unreadable`) only.
 */
function warnUnreadable(ctx) {
  const message = native.takeUnreadable(ctx.svc)
  if (message === null || ctx.warnedUnreadable) return
  ctx.warnedUnreadable = true
  process.emitWarning(`chat-run-service: ${message}`, { code: 'CHAT_RUN_READ_ERROR' })
}

/** LC-3: the error of a lookup that cannot be answered while runsLogDir cannot be read. */
function unreadableError(message) {
  const error = new Error(`chat-run-service: ${message}`)
  error.code = 'ERR_CHAT_RUN_UNREADABLE'
  return error
}

/**
 * CRE-1..CRE-5, LC-1 (the state file is written before this returns), LC-3's two keys, HF-8's
 * plugin attribution.
 */
function create(ctx, meta) {
  const m = meta !== null && typeof meta === 'object' ? meta : EMPTY
  const now = Date.now()
  const projectId = nonEmptyString(m.projectId)
  const conversationId = nonEmptyString(m.conversationId)
  const analytics = pluginAnalyticsOf(m.analyticsHints)
  const logging = ctx.logging
  const [slot, id, media, bundle, summary] = JSON.parse(
    native.runCreate(
      ctx.svc,
      projectId,
      conversationId,
      lowerJson(m.mediaExecution),
      lowerJson(m.toolBundle),
      nonEmptyString(m.clientRequestId),
      pluginWorkflowIdOf(analytics),
      logging ? createdHostJson(m, analytics) : undefined,
      now,
    ),
  )
  const logPath = logging ? ctx.logPrefix + id + ctx.logSuffix : null
  let run = null
  try {
    run = adopt(ctx, slot, id, logPath, m, media, bundle, summary, now, createdFields(projectId, conversationId, now))
    run.externalPluginAnalytics = analytics
    addCreateDefaults(run, now)
    // LC-3, HF-1: opaque, kept only when the key is there (an undefined value as null, as upstream
    // stores it: the state file can hold it).
    if ('workspaceScope' in m) run.workspaceScope = m.workspaceScope ?? null
    if ('designSystemScope' in m) run.designSystemScope = m.designSystemScope ?? null
    addStrategyMeta(run, m)
    return run
  } catch (err) {
    // A meta object whose getter or Proxy trap throws: create() throws that error and leaves
    // nothing behind, neither a registry entry nor a state file (a run nobody received).
    ctx.runs[slot] = undefined
    native.runDrop(ctx.svc, slot, now)
    forgetWrites(ctx, slot)
    if (run === null) {
      native.runRelease(ctx.svc, slot)
    } else {
      // The object exists (a test's observer may hold it): it reads as dropped, and its slot is
      // released with it.
      const s = ChatRun.stateOf(run)
      syncDropped(s, now, now)
      releaseWhenUnreachable(s)
    }
    throw err
  }
}

/**
 * LC-2: the run object of a run the core just hydrated into `slot`, built from its state file
 * (runHydrated). It is terminal: eviction is scheduled, and onTerminal hears of it (LC-6).
 */
function adoptHydrated(ctx, slot) {
  const { state, nextEventId, cancelRequested } = JSON.parse(native.runHydrated(ctx.svc, slot))
  // A run of the previous version carries its policy and redacted bundle; others the defaults.
  // A file is input: the policy is normalized again (§12), and the bundle summarized again
  // (SUM-4), so whatever a foreign or crafted file holds, only what create() could have stored
  // reaches the run and its status body.
  const media = JSON.parse(native.normalizeStoredMediaExecution(lowerJson(state.mediaExecution) ?? 'null'))
  const summary = native.summarizeStoredToolBundle(lowerJson(state.toolBundle) ?? 'null')
  const bundle = JSON.parse(summary)
  const logPath = ctx.logPrefix + state.id + ctx.logSuffix
  const run = adopt(
    ctx,
    slot,
    state.id,
    logPath,
    state,
    media,
    bundle,
    summary,
    state.createdAt,
    hydratedFields(state, nextEventId, cancelRequested),
  )
  // As upstream's hydration: the project's metadata is the host's to look up again, never a
  // file's (so the status body's workspace is that of no metadata until the host assigns it).
  run.projectMetadata = null
  const rewrite = applyHostFields(ctx, run, state)
  const s = ChatRun.stateOf(run)
  if (rewrite) persist(ctx, run, s)
  // A hydrated run's log is closed (it reopens with prepareRestart): no journal handle.
  s.journal = false
  scheduleEviction(s)
  callHook(ctx, 'onTerminal', ctx.opts.onTerminal, run, s.status, s.terminalAt)
  return run
}

/**
 * LC-2: the run with `id` that is not registered: a run TTL eviction took out while the host
 * still holds it comes back as that same object (RUN-2); otherwise the core loads it from disk.
 * Null when there is none (or `id` is not a run id: the core never makes a path of it), and when
 * its files cannot be read for now (warned once; the next call reads again), unless `strict`:
 * then that throws, for a caller that must not take "not found" for an answer (createOrReuse).
 */
function hydrate(ctx, id, strict = false) {
  const kept = ctx.evicted.get(id)?.deref()
  if (kept !== undefined) {
    ctx.evicted.delete(id)
    const s = ChatRun.stateOf(kept)
    if (native.runReregister(ctx.svc, s.slot)) {
      ctx.runs[s.slot] = kept
      scheduleEviction(s)
      return kept
    }
  }
  const slot = native.runHydrate(ctx.svc, id, Date.now())
  if (slot === HydrateMiss.Unreadable) {
    if (strict) throw unreadableError(native.takeUnreadable(ctx.svc) ?? `could not read the files of run ${id}`)
    warnUnreadable(ctx)
    return null
  }
  if (slot < 0) return null
  return ctx.runs[slot] ?? adoptHydrated(ctx, slot)
}

/** GET-1, LC-2. */
function get(ctx, id) {
  if (typeof id !== 'string') return null
  const slot = native.runGet(ctx.svc, id)
  if (slot >= 0) return ctx.runs[slot] ?? null
  return ctx.logging ? hydrate(ctx, id) : null
}

/** LST-1..LST-3, LC-2 (a project's durable runs are loaded first). */
function list(ctx, filter) {
  const f = filter !== null && typeof filter === 'object' ? filter : EMPTY
  const projectId = nonEmptyString(f.projectId)
  if (ctx.logging && projectId !== null) {
    for (const id of native.projectDurableRuns(ctx.svc, projectId)) hydrate(ctx, id)
    // (A scan that could not read all of runsLogDir leaves runs out: said once, read again next time.)
    warnUnreadable(ctx)
  }
  const slots = native.runList(ctx.svc, projectId, nonEmptyString(f.conversationId), nonEmptyString(f.status))
  const runs = ctx.runs
  const out = new Array(slots.length)
  for (let i = 0; i < slots.length; i++) out[i] = runs[slots[i]]
  return out
}

/**
 * FIN-5: evict the run of mirror `s` after ttlMs (an unref'd timer, TMR-3), unless runs are kept
 * forever. A pending eviction is replaced (and voided by prepareRestart, LC-4).
 *
 * The timer holds the service weakly (its one WeakRef, `ctx.selfRef`) and names the run by its
 * slot and a token. While the service is in use the run cannot go (the registry holds it), so the
 * eviction happens as scheduled. Once the host let go of the service and of all its runs, nothing
 * can observe an eviction any more: a strong reference here would keep the whole service (its
 * native registry, history and writer thread) alive for up to ttlMs (30 minutes by default); with
 * a weak one it is collected and freed at once, and the timer finds nothing. The token tells the
 * timer that the run in the slot is still the one it was set for, with this very schedule.
 * (One WeakRef per service rather than per run: making a WeakRef is one of the dearest steps of a
 * run's whole lifecycle, the target kept alive to the end of the current job.)
 */
function scheduleEviction(s) {
  const ctx = s.ctx
  const delay = ctx.ttlDelay
  if (s.evictTimer !== null) clearTimeout(s.evictTimer)
  if (delay === null) {
    s.evictTimer = null
    return
  }
  const token = ++ctx.evictTokens
  s.evictToken = token
  s.evictTimer = setTimeout(evictIfCurrent, delay, ctx.selfRef, s.slot, token).unref()
}

function evictIfCurrent(ctxRef, slot, token) {
  const ctx = ctxRef.deref()
  if (ctx === undefined) return
  const s = ChatRun.stateOf(ctx.runs[slot])
  if (s !== undefined && s.evictTimer !== null && s.evictToken === token) evict(s)
}

/** LC-4: the run's pending eviction is void. */
function cancelEviction(s) {
  if (s.evictTimer !== null) clearTimeout(s.evictTimer)
  s.evictTimer = null
}

/**
 * LC-4, LC-9: before a terminal run is reopened (the core registers it again under its id): a
 * run hydrated under that id meanwhile leaves the registry, as the core unregisters it.
 */
function displaceHydratedCopy(ctx, run, s) {
  const other = native.runGet(ctx.svc, s.id)
  if (other < 0 || other === s.slot) return
  const replaced = ChatRun.stateOf(ctx.runs[other])
  ctx.runs[other] = undefined
  if (replaced !== undefined) releaseWhenUnreachable(replaced)
}

/** LC-4, LC-9: after the core reopened a run: no eviction pending, back in the registry. */
function reinstate(ctx, run, s) {
  cancelEviction(s)
  ctx.evicted.delete(s.id)
  ctx.runs[s.slot] = run
}

// How many evicted runs ctx.evicted holds before dead entries are swept.
const EVICTED_SWEEP_MIN = 1024

function evict(s) {
  s.evictTimer = null
  const ctx = s.ctx
  if (!native.runEvict(ctx.svc, s.slot)) return
  const run = ctx.runs[s.slot]
  ctx.runs[s.slot] = undefined
  releaseWhenUnreachable(s)
  // With logging, get(id) brings an evicted run back: the same object while the host holds it.
  if (ctx.logging && run !== undefined) {
    ctx.evicted.set(s.id, new WeakRef(run))
    if (ctx.evicted.size > ctx.evictedSweepAt) {
      for (const [id, ref] of ctx.evicted) if (ref.deref() === undefined) ctx.evicted.delete(id)
      ctx.evictedSweepAt = Math.max(EVICTED_SWEEP_MIN, 2 * ctx.evicted.size)
    }
  }
}

module.exports = {
  create,
  get,
  list,
  hydrate,
  unreadableError,
  scheduleEviction,
  cancelEviction,
  displaceHydratedCopy,
  reinstate,
  EVICTED_SWEEP_MIN,
}
