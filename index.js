'use strict'
// The JS facade of chat-run-service. It holds only what must stay JS: the run objects and
// their identity, the `clients`/`waiters` Sets and the calls made on them, the `child` and
// `acpSession` objects the host assigned, timers, and Promises. Run state, ids, the event
// history, the JSONL log, policy normalization, the cancel/shutdown plan and signalling live
// in the Rust core (crates/core), reached through the thin napi layer in `binding.js` (via
// `loader.js`).
//
// This file assembles a service from the modules in lib/, one concern each:
//   options.js    options, defaults, the timer clamp, env reads, the log layout
//   run.js        the run object and its read mirror of the core (the mirror contract)
//   registry.js   create, get, list (loading runs from runsLogDir: LC-2), eviction
//   durable.js    persistState, createOrReuse, prepareRestart, the resume reservation (LC-1, LC-3, LC-4, LC-10)
//   state.js      the host's values of a run's state.json, as one JSON text for the core
//   state-writer.js the host's writeDurableState: the core's state-file writes handed to it (LC-11)
//   hooks.js      the host's hooks (LC-6), each call isolated
//   emit.js       emit and the error fields of an 'error' event
//   lifecycle.js  start, finish, fail, wait, drop
//   stream.js     stream (replay, then live) and the fan-out to clients
//   control.js    cancel, shutdownActive (the escalation executor)
//   signal.js     signalChild, signalChildProcess, signalProcessGroup, reapProcessGroup
//   media-tasks.js noteMediaTaskFailure, noteMediaTaskRecovery (HF-12)
//   delivery.js   acknowledgeArtifactDelivery, a Stop before the receipt (HF-13)
//   status.js     the terminal and exited rules, statusBody, the stats snapshot
//   lower.js      host values lowered to JSON for the core's normalizers
//   convert.js    what the core stores for a host value
//   describe.js   values named in error messages
//   exit.js       the process's 'exit': teardowns under way killed, emits and lines written
//   release.js    a collected service's native state freed (also when its module copy is dropped)
// Each of those functions takes the service's context (see serviceContext) as its first
// argument instead of closing over it.

const native = require('./lib/core.js')
const { describe } = require('./lib/describe.js')
const { readOptions, timerDelay, logLayout, reportLogError } = require('./lib/options.js')
const { create, get, list, EVICTED_SWEEP_MIN } = require('./lib/registry.js')
const {
  persistState,
  createOrReuse,
  findByPluginWorkflowId,
  prepareRestart,
  reserveRestartAttempt,
  clearRestartAttempt,
  beginAnalyticsDelivery,
  finalizeAnalyticsDelivery,
  beginTelemetryDelivery,
  recordTelemetryDeliveryAttempt,
  finalizeTelemetryDelivery,
  setAnalyticsRecovery,
  markAnalyticsCompleted,
  markLangfuseCompleted,
  setDeliverableValidation,
} = require('./lib/durable.js')
const { extraDurableFields } = require('./lib/state.js')
const { emit } = require('./lib/emit.js')
const { start, wait, finish, fail, drop } = require('./lib/lifecycle.js')
const { stream } = require('./lib/stream.js')
const { signalChild, signalChildProcess, signalProcessGroup, reapProcessGroup } = require('./lib/signal.js')
const { cancel, shutdownActive } = require('./lib/control.js')
const { noteMediaTaskFailure, noteMediaTaskRecovery } = require('./lib/media-tasks.js')
const { acknowledgeArtifactDelivery } = require('./lib/delivery.js')
const { TERMINAL_RUN_STATUSES, isTerminal, statusBody, serviceStats } = require('./lib/status.js')
const { watchProcessExit } = require('./lib/exit.js')
const { releaseWhenCollected } = require('./lib/release.js')
const { useHostWriter, handOver } = require('./lib/state-writer.js')

// service object -> its context, for getChatRunServiceStats (MOD-2 keeps the service object
// itself to exactly its 31 methods).
const serviceContexts = new WeakMap()

/**
 * A service's context: what every lib/ function needs of its service.
 * - `svc`: the native service id; `runs`: core slot -> run object (identity for get/list)
 * - `opts`: the validated options; `logging`, `logPrefix`, `logSuffix`: the event log layout
 * - `ttlDelay`: the eviction delay (null = never); `eventNames`: event name -> interned number
 * - `durableFields`: the options' durableFields the state file does not carry by itself (LC-6)
 * - `evicted`: run id -> WeakRef of a run TTL eviction took out (get() brings back the same
 *   object while the host holds it); `hookErrorReported`: a hook threw once already (LC-6);
 *   `warnedUnreadable`: a read of runsLogDir failed for now and was warned of (LC-2);
 *   `inStatusBodyHook`: the onStatusBody hook is running (HF-14: not called again from within)
 * - `stage`: the emits waiting for their batch (lib/staging.js, BND-6), made on first emit
 * - `treeWatch`: the timer of the process-tree watch (lib/attach.js, LC-7) while one runs
 * - `draining`, `drainAgain`: a flush barrier holds the event loop open until the finished
 *   runs' lines are written (lib/lifecycle.js, IMP-4)
 * - `selfRef`: a WeakRef of this context, which the eviction timers (lib/registry.js) and the
 *   tree watch (lib/attach.js) hold;
 *   `evictTokens`: the last token an eviction timer was given
 * - `hostWrites`: the state-file writes queued for the host's writeDurableState (lib/state-writer.js,
 *   LC-11), or null without one
 */
function serviceContext(opts) {
  const [logPrefix, logSuffix] = logLayout(opts.runsLogDir)
  const ctx = {
    svc: native.createService(opts.maxEvents, logPrefix, logSuffix, reportLogError),
    runs: [],
    opts,
    logging: opts.runsLogDir !== null,
    logPrefix,
    logSuffix,
    // FIN-5: null when runs are never evicted (`ttlMs: Infinity`)
    ttlDelay: timerDelay(opts.ttlMs),
    eventNames: new Map(),
    durableFields: extraDurableFields(opts.durableFields),
    evicted: new Map(),
    evictedSweepAt: EVICTED_SWEEP_MIN,
    hookErrorReported: false,
    warnedUnreadable: false,
    inStatusBodyHook: false,
    stage: null,
    treeWatch: null,
    draining: false,
    drainAgain: false,
    selfRef: null,
    hostWrites: null,
    evictTokens: 0,
  }
  ctx.selfRef = new WeakRef(ctx)
  return ctx
}

/**
 * Creates a chat-run registry. See index.d.ts and README.md for the full contract.
 */
function createChatRunService(options) {
  const ctx = serviceContext(readOptions(options))
  // MOD-2 and SPEC §0: exactly these 31 methods, in this order; each a closure that works
  // detached, never uses `this` and ignores extra arguments.
  const service = {
    create: (meta) => create(ctx, meta),
    start: (run, starter) => start(ctx, run, starter),
    get: (id) => get(ctx, id),
    list: (filter) => list(ctx, filter),
    stream: (run, req, res) => stream(ctx, run, req, res),
    cancel: (run, origin) => cancel(ctx, run, origin),
    shutdownActive: (shutdownOptions) => shutdownActive(ctx, shutdownOptions),
    wait: (run) => wait(ctx, run),
    emit: (run, event, data) => emit(ctx, run, event, data),
    finish: (run, status, code, signal) => finish(ctx, run, status, code, signal),
    fail: (run, code, message, init) => fail(ctx, run, code, message, init),
    drop: (run) => drop(ctx, run),
    signalChild: (run, signal) => signalChild(ctx, run, signal),
    statusBody: (run) => statusBody(run),
    isTerminal: (status) => isTerminal(status),
    createOrReuse: (meta) => createOrReuse(ctx, meta),
    prepareRestart: (run) => prepareRestart(ctx, run),
    persistState: (run) => persistState(ctx, run),
    setAnalyticsRecovery: (run, recovery) => setAnalyticsRecovery(ctx, run, recovery),
    markAnalyticsCompleted: (run) => markAnalyticsCompleted(ctx, run),
    markLangfuseCompleted: (run) => markLangfuseCompleted(ctx, run),
    setDeliverableValidation: (run, result) => setDeliverableValidation(ctx, run, result),
    findByPluginWorkflowId: (pluginWorkflowId) => findByPluginWorkflowId(ctx, pluginWorkflowId),
    signalChildProcess: (child, processGroupId, signal) => signalChildProcess(child, processGroupId, signal),
    signalProcessGroup: (processGroupId, signal) => signalProcessGroup(ctx, processGroupId, signal),
    reapProcessGroup: (processGroupId) => reapProcessGroup(ctx, processGroupId),
    noteMediaTaskFailure: (runId, failure) => noteMediaTaskFailure(ctx, runId, failure),
    noteMediaTaskRecovery: (runId, success) => noteMediaTaskRecovery(ctx, runId, success),
    acknowledgeArtifactDelivery: (run, receipt) => acknowledgeArtifactDelivery(ctx, run, receipt),
    reserveRestartAttempt: (run, executionAttempt) => reserveRestartAttempt(ctx, run, executionAttempt),
    clearRestartAttempt: (run, executionAttempt) => clearRestartAttempt(ctx, run, executionAttempt),
    beginAnalyticsDelivery: (run) => beginAnalyticsDelivery(ctx, run),
    finalizeAnalyticsDelivery: (run, result) => finalizeAnalyticsDelivery(ctx, run, result),
    beginTelemetryDelivery: (run) => beginTelemetryDelivery(ctx, run),
    recordTelemetryDeliveryAttempt: (run) => recordTelemetryDeliveryAttempt(ctx, run),
    finalizeTelemetryDelivery: (run, result) => finalizeTelemetryDelivery(ctx, run, result),
  }
  // LC-2: the disk indexes only; no run is loaded before get/list/createOrReuse asks for it.
  releaseWhenCollected(ctx)
  if (ctx.logging && ctx.opts.writeDurableState !== null) {
    useHostWriter(ctx)
    handingOverOnReturn(ctx, service)
  }
  if (ctx.logging) native.indexRuns(ctx.svc, ctx.opts.runsLogDir)
  // IMP-4, LC-7: process.exit() or a crash of the host still writes what was emitted before it,
  // and ends the process trees a cancel or shutdown was tearing down.
  watchProcessExit()
  serviceContexts.set(service, ctx)
  return service
}

/**
 * LC-11: each method of a service with a host writer hands the state-file writes it queued to the
 * host before it returns (a promise's later writes: lib/state-writer.js).
 */
function handingOverOnReturn(ctx, service) {
  for (const [name, method] of Object.entries(service)) {
    service[name] = (a, b, c, d) => {
      try {
        return method(a, b, c, d)
      } finally {
        handOver(ctx)
      }
    }
  }
}

/**
 * A health snapshot of one service for the daemon's diagnostics: runs by status, retained
 * history, the log writer's queue, open files and every line that was not persisted, by reason.
 */
function getChatRunServiceStats(service) {
  const ctx = serviceContexts.get(service)
  if (ctx === undefined) {
    throw new TypeError(
      `getChatRunServiceStats(service): expected an object returned by createChatRunService(), got ${describe(service)}`,
    )
  }
  return serviceStats(ctx)
}

module.exports.createChatRunService = createChatRunService
module.exports.TERMINAL_RUN_STATUSES = TERMINAL_RUN_STATUSES
module.exports.getChatRunServiceStats = getChatRunServiceStats
