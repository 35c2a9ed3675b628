'use strict'
// The JS facade of chat-run-service. It holds only what must stay JS: the run objects and
// their identity, the `clients`/`waiters` Sets and the calls made on them, the `child` and
// `acpSession` objects the host assigned, timers, and Promises. Run state, ids, the event
// history, the JSONL log, policy normalization, the cancel/shutdown plan and signalling live
// in the Rust core (`src/core`), reached through the thin napi layer in `binding.js`.

const os = require('node:os')
const path = require('node:path')
const native = require('./loader.js')

const {
  STEP_DONE,
  STEP_ABORT,
  STEP_SIGTERM,
  STEP_SIGKILL,
  STEP_FINISH_NOW,
  STEP_FINISH_TERM,
  STEP_FINISH_KILL,
  STEP_IN_FLIGHT,
  STEP_TERMINAL,
  DELIVERY_FALLBACK,
  DELIVERY_GONE,
} = native

/** The three terminal statuses (MOD-1). The service never reads this Set back (MOD-5). */
const TERMINAL_RUN_STATUSES = new Set(['succeeded', 'failed', 'canceled'])

const EMPTY = Object.freeze({})
const IS_WINDOWS = process.platform === 'win32'
// Signal name -> number on this OS (a null-prototype copy: no inherited keys).
const SIGNAL_NUMBERS = Object.assign(Object.create(null), os.constants.signals)
// Bounds of the policy lowering (see lowerJson): deeper or larger inputs count as invalid.
const LOWER_MAX_DEPTH = 8
const LOWER_MAX_ITEMS = 65536
// Distinct event names a service passes to the core as numbers; later new names go as strings.
const MAX_INTERNED_EVENTS = 1024

function isTerminal(status) {
  return status === 'succeeded' || status === 'failed' || status === 'canceled'
}

function exited(child) {
  return !child || child.exitCode !== null || child.signalCode !== null
}

function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  const type = typeof value
  if (type === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`
  if (type === 'number' || type === 'boolean' || type === 'bigint') return `${type} ${String(value)}`
  if (type === 'object') return `an object (${value.constructor?.name ?? 'no prototype'})`
  return type
}

function nonEmptyString(value) {
  return typeof value === 'string' && value.length > 0 ? value : null
}

function textOrNull(value) {
  return typeof value === 'string' ? value : null
}

function numberOrNull(value) {
  return typeof value === 'number' ? value : null
}

// `run.signal` as the core stores it: absent stays null, anything else its string form.
function signalOrNull(value) {
  return value == null ? null : String(value)
}

// --- policy lowering -------------------------------------------------------------------------
// The normalizers of SPEC §12-§14 run in Rust on a JSON image of the host's value that keeps
// every distinction they need: plain objects (own enumerable string keys, JS order), arrays
// (holes -> null), strings, booleans, null; every other scalar becomes 0 ("not a string, not
// an object, not false"). Unreadable input (a throwing getter) counts as invalid.

function lowerValue(value, depth) {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'object': {
      if (value === null) return null
      if (depth >= LOWER_MAX_DEPTH) return 0
      if (Array.isArray(value)) {
        if (value.length > LOWER_MAX_ITEMS) return 0
        const out = new Array(value.length)
        for (let i = 0; i < value.length; i++) {
          const item = value[i]
          out[i] = item === undefined ? null : lowerValue(item, depth + 1)
        }
        return out
      }
      const keys = Object.keys(value)
      if (keys.length > LOWER_MAX_ITEMS) return 0
      const out = Object.create(null)
      for (const key of keys) {
        const item = value[key]
        if (item !== undefined) out[key] = lowerValue(item, depth + 1)
      }
      return out
    }
    default:
      return 0
  }
}

// The id fields the core does not index, for the durable run snapshot.
function otherIdsJson(meta) {
  return JSON.stringify({
    assistantMessageId: nonEmptyString(meta.assistantMessageId),
    clientRequestId: nonEmptyString(meta.clientRequestId),
    agentId: nonEmptyString(meta.agentId),
    appliedPluginSnapshotId: nonEmptyString(meta.appliedPluginSnapshotId),
    pluginId: nonEmptyString(meta.pluginId),
  })
}

function lowerJson(value) {
  if (value === undefined) return undefined
  try {
    return JSON.stringify(lowerValue(value, 0))
  } catch {
    return undefined
  }
}

// --- the run object ---------------------------------------------------------------------------

/**
 * A run: a plain, extensible object. Host-owned fields are own data properties; fields whose
 * state the Rust core owns are accessors on this prototype (reads come from a per-run mirror
 * that every core call keeps current, writes go through to the core).
 */
class ChatRun {
  #s
  constructor(state, id, eventsLogPath, meta, media, bundle, now) {
    this.#s = state
    this.id = id
    this.assistantMessageId = nonEmptyString(meta.assistantMessageId)
    this.clientRequestId = nonEmptyString(meta.clientRequestId)
    this.agentId = nonEmptyString(meta.agentId)
    this.appliedPluginSnapshotId = nonEmptyString(meta.appliedPluginSnapshotId)
    this.pluginId = nonEmptyString(meta.pluginId)
    this.mediaExecution = media
    this.toolBundle = bundle
    this.createdAt = now
    this.clients = new Set()
    this.waiters = new Set()
    this.child = null
    this.acpSession = null
    this.childPid = null
    this.processGroupId = null
    this.eventsLogPath = eventsLogPath
    this.eventsLogStream = null
  }

  static stateOf(run) {
    return run !== null && typeof run === 'object' && #s in run ? run.#s : undefined
  }

  get events() {
    const s = this.#s
    if (s.events === null) s.events = JSON.parse(native.runEvents(s.ctx.id, s.slot))
    return s.events
  }
  set events(_value) {
    throw new TypeError('run.events is a read-only view of the native event history; use emit() to add events')
  }
  get nextEventId() {
    return this.#s.nextEventId
  }
  set nextEventId(_value) {
    throw new TypeError('run.nextEventId is owned by the service (ids are assigned by emit())')
  }
}

// Core-owned fields the host may write: reads come from the per-run mirror, writes update it
// and go through to the core, converted to what the core stores (a non-string or non-number
// value is kept verbatim in the mirror and reaches the core as "none").
const CORE_FIELDS = [
  ['projectId', native.runSetText, textOrNull],
  ['conversationId', native.runSetText, textOrNull],
  ['status', native.runSetText, textOrNull],
  ['updatedAt', native.runSetNumber, numberOrNull],
  ['exitCode', native.runSetNumber, numberOrNull],
  ['signal', native.runSetText, signalOrNull],
  ['error', native.runSetText, textOrNull],
  ['errorCode', native.runSetText, textOrNull],
  ['cancelRequested', native.runSetNumber, (value) => (value ? 1 : 0)],
  ['childExitObservedAt', native.runSetNumber, numberOrNull],
]
for (const [field, write, convert] of CORE_FIELDS) {
  Object.defineProperty(ChatRun.prototype, field, {
    configurable: true,
    enumerable: false,
    get() {
      return ChatRun.stateOf(this)[field]
    },
    set(value) {
      const s = ChatRun.stateOf(this)
      s[field] = value
      write(s.ctx.id, s.slot, field, convert(value))
    },
  })
}

// Reclaims a run's native slot (and its history) once nothing can reach its state any more:
// not the host, not the registry, not a pending eviction timer or cancel. (The target is the
// per-run state object, not the run, so a timer that outlives the run never sees a reused slot.)
const runReleaser = new FinalizationRegistry(({ svc, slot }) => native.runRelease(svc, slot))
// Frees a service's native registry once nothing references it any more.
const serviceReleaser = new FinalizationRegistry((svc) => native.destroyService(svc))
// service object -> its native context, for getChatRunServiceStats (MOD-2 keeps the service
// object itself to exactly its 15 methods).
const serviceContexts = new WeakMap()

// --- options ------------------------------------------------------------------------------------

function optionNumber(options, key, fallback, { integer, allowInfinity, min }) {
  const value = options[key]
  if (value === undefined) return fallback
  const wants = integer
    ? `an integer >= ${min}${allowInfinity ? ' or Infinity' : ''}`
    : `a number >= ${min}${allowInfinity ? ' or Infinity' : ''}`
  if (typeof value !== 'number') {
    throw new TypeError(`createChatRunService: options.${key} must be ${wants}, got ${describe(value)}`)
  }
  const ok =
    value === Infinity ? allowInfinity : Number.isFinite(value) && value >= min && (!integer || Number.isInteger(value))
  if (!ok) throw new RangeError(`createChatRunService: options.${key} must be ${wants}, got ${String(value)}`)
  return value
}

function readOptions(options) {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(
      `createChatRunService(options): expected an options object with createSseResponse and createSseErrorPayload, got ${describe(options)}`,
    )
  }
  for (const key of ['createSseResponse', 'createSseErrorPayload']) {
    if (typeof options[key] !== 'function') {
      throw new TypeError(`createChatRunService: options.${key} must be a function, got ${describe(options[key])}`)
    }
  }
  const runsLogDir = options.runsLogDir
  if (runsLogDir !== undefined && runsLogDir !== null && typeof runsLogDir !== 'string') {
    throw new TypeError(
      `createChatRunService: options.runsLogDir must be a directory path string, or null/'' to disable the event log, got ${describe(runsLogDir)}`,
    )
  }
  return {
    createSseResponse: options.createSseResponse,
    createSseErrorPayload: options.createSseErrorPayload,
    maxEvents: optionNumber(options, 'maxEvents', 2000, { integer: true, allowInfinity: true, min: 1 }),
    ttlMs: optionNumber(options, 'ttlMs', 1_800_000, { allowInfinity: true, min: 0 }),
    shutdownGraceMs: optionNumber(options, 'shutdownGraceMs', 3000, { allowInfinity: true, min: 0 }),
    runsLogDir: runsLogDir || null,
  }
}

function logLayout(runsLogDir) {
  if (runsLogDir === null) return [undefined, undefined]
  // Node's path.join decides the normalization once; every run path is prefix + id + suffix.
  const marker = '\u0000'
  const template = path.join(runsLogDir, marker, 'events.jsonl')
  const at = template.lastIndexOf(marker)
  return [template.slice(0, at), template.slice(at + marker.length)]
}

// Env vars are read on every use (ENV-1): parsed here with Number(), ruled on in Rust.
function cancelEnv() {
  const env = process.env
  const cancelRaw = env.OD_CHAT_RUN_CANCEL_GRACE_MS
  return [
    Number(env.PI_ABORT_GRACE_MS),
    Number(typeof cancelRaw === 'string' && cancelRaw !== '' ? cancelRaw : env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS),
    Number(env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS),
  ]
}

function reportLogError(message) {
  process.emitWarning(message, { code: 'CHAT_RUN_LOG_ERROR' })
}

// WCE: resolves true when the child exits (or already has), false after `ms`. The timer is
// ref'd (TMR-4) so a pending SIGKILL step keeps Node alive; it is cleared on exit.
function waitForExit(child, ms) {
  if (exited(child)) return Promise.resolve(true)
  return new Promise((resolve) => {
    let timer
    const settle = (value) => {
      clearTimeout(timer)
      if (typeof child.off === 'function') {
        child.off('close', onExit)
        child.off('exit', onExit)
      }
      resolve(value)
    }
    const onExit = () => settle(true)
    if (typeof child.once === 'function') {
      child.once('close', onExit)
      child.once('exit', onExit)
    }
    timer = setTimeout(settle, ms, false)
  })
}

// Decodes the core's compact replay text (see src/core/replay.rs):
// [datas, firstId | ids, [[name] | [], ...], nameIndex | nameIndexes, missing].
function decodeReplay(text) {
  const [datas, ids, wrapped, nameIndex, missing] = JSON.parse(text)
  for (let i = 0; i < missing.length; i++) datas[missing[i]] = undefined
  const names = wrapped.map((name) => (name.length === 0 ? undefined : name[0]))
  return { ids, names, nameIndex, datas, next: 0 }
}

// Sends the records of `batch` from index `start` whose id is above `after`.
function sendBatch(sse, batch, start, after) {
  const { ids, names, nameIndex, datas } = batch
  const contiguous = typeof ids === 'number'
  const shared = typeof nameIndex === 'number'
  const name = shared ? names[nameIndex] : undefined
  for (let i = start; i < datas.length; i++) {
    const id = contiguous ? ids + i : ids[i]
    if (id <= after) continue
    try {
      sse.send(shared ? name : names[nameIndex[i]], datas[i], id)
    } catch {
      // IMP-6: one broken client never breaks the run or the other clients.
    }
  }
}

function safeCall(target, method, ...args) {
  try {
    target[method](...args)
  } catch {
    // IMP-6: one broken client never breaks the run or the other clients.
  }
}

// --- the service ----------------------------------------------------------------------------

/**
 * Creates a chat-run registry. See index.d.ts and README.md for the full contract.
 */
function createChatRunService(options) {
  const opts = readOptions(options)
  const [logPrefix, logSuffix] = logLayout(opts.runsLogDir)
  const ttlDelay = opts.ttlMs === Infinity ? null : Math.max(1, Math.min(opts.ttlMs, 2147483647))
  const ctx = {
    id: native.createService(opts.maxEvents, logPrefix, logSuffix, reportLogError),
    // slot -> registered run (identity table for get/list/shutdownActive)
    runs: [],
  }
  const svc = ctx.id
  const logging = opts.runsLogDir !== null
  // event name -> number registered with the core (see record()).
  const eventNames = new Map()

  function own(run, method) {
    const s = ChatRun.stateOf(run)
    if (s === undefined || s.ctx !== ctx) {
      throw new TypeError(`${method}(run): expected a run object returned by this service's create(), got ${describe(run)}`)
    }
    return s
  }

  function create(meta) {
    const m = meta !== null && typeof meta === 'object' ? meta : EMPTY
    const now = Date.now()
    const projectId = nonEmptyString(m.projectId)
    const conversationId = nonEmptyString(m.conversationId)
    const [slot, id, media, bundle, summary] = JSON.parse(
      native.runCreate(
        svc,
        projectId,
        conversationId,
        lowerJson(m.mediaExecution),
        lowerJson(m.toolBundle),
        logging ? otherIdsJson(m) : undefined,
        now,
      ),
    )
    const logPath = logging ? logPrefix + id + logSuffix : null
    return adopt(slot, id, logPath, m, media, bundle, summary, now, {
      projectId,
      conversationId,
      status: 'queued',
      updatedAt: now,
      nextEventId: 1,
      exitCode: null,
      signal: null,
      error: null,
      errorCode: null,
      cancelRequested: false,
    })
  }

  // The run object for a core slot, registered for get()/list() and for release on collection.
  // `core` is the mirror of the core-owned fields.
  function adopt(slot, id, logPath, ids, media, bundle, summary, createdAt, core) {
    const state = {
      ctx,
      slot,
      projectId: core.projectId,
      conversationId: core.conversationId,
      status: core.status,
      updatedAt: core.updatedAt,
      nextEventId: core.nextEventId,
      events: null,
      replayed: null,
      exitCode: core.exitCode,
      signal: core.signal,
      error: core.error,
      errorCode: core.errorCode,
      cancelRequested: core.cancelRequested,
      childExitObservedAt: null,
      bundle,
      summary,
      cancelPromise: null,
    }
    const run = new ChatRun(state, id, logPath, ids, media, bundle, createdAt)
    ctx.runs[slot] = run
    runReleaser.register(state, { svc, slot })
    return run
  }

  // Runs an earlier service left in runsLogDir (see src/core/durable.rs): registered again,
  // terminal, their history readable from the log (IMP-3), evicted after ttlMs like any other.
  function restore() {
    for (const { slot, snapshot } of native.restoreRuns(svc, opts.runsLogDir, Date.now())) {
      const snap = JSON.parse(snapshot)
      const meta = snap.meta !== null && typeof snap.meta === 'object' ? snap.meta : EMPTY
      const bundle = meta.toolBundle ?? { mcpServers: [] }
      const media = meta.mediaExecution ?? { mode: 'enabled' }
      const logPath = logPrefix + snap.id + logSuffix
      const ids = meta.ids ?? EMPTY
      const run = adopt(slot, snap.id, logPath, ids, media, bundle, JSON.stringify(bundle), snap.createdAt, {
        projectId: snap.projectId ?? null,
        conversationId: snap.conversationId ?? null,
        status: snap.status ?? null,
        updatedAt: snap.updatedAt,
        nextEventId: snap.nextEventId,
        exitCode: snap.exitCode ?? null,
        signal: snap.signal ?? null,
        error: snap.error ?? null,
        errorCode: snap.errorCode ?? null,
        cancelRequested: snap.cancelRequested === true,
      })
      scheduleEviction(ChatRun.stateOf(run))
    }
  }

  function get(id) {
    if (typeof id !== 'string') return null
    const slot = native.runGet(svc, id)
    return slot < 0 ? null : (ctx.runs[slot] ?? null)
  }

  function list(filter) {
    const f = filter !== null && typeof filter === 'object' ? filter : EMPTY
    const slots = native.runList(svc, nonEmptyString(f.projectId), nonEmptyString(f.conversationId), nonEmptyString(f.status))
    const runs = new Array(slots.length)
    for (let i = 0; i < slots.length; i++) runs[i] = ctx.runs[slots[i]]
    return runs
  }

  function applyErrorFields(s, data) {
    // §8, read from the caller's own object (so toJSON or unserializable data change nothing).
    try {
      const payload = data && typeof data === 'object' ? data : EMPTY
      const nested = payload.error && typeof payload.error === 'object' ? payload.error : EMPTY
      const pick = (value) => (typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined)
      const message = pick(nested.message) ?? pick(payload.message)
      const code = pick(nested.code) ?? pick(payload.code)
      if (message === undefined && code === undefined) return
      native.runSetError(svc, s.slot, message ?? null, code ?? null)
      if (message !== undefined) s.error = message
      if (code !== undefined) s.errorCode = code
    } catch {
      // A throwing getter on the payload leaves error/errorCode as they were.
    }
  }

  function record(s, event, data, now) {
    let dataJson
    let persist = true
    try {
      dataJson = JSON.stringify(data)
    } catch {
      // BigInt, cycles, throwing toJSON: kept in memory as data null, never written (LOG-6).
      dataJson = 'null'
      persist = false
    }
    if (typeof event === 'string' && persist) {
      // Known names cross as a number (cheaper than a string). Only well-formed names are
      // interned, and the map is bounded: a host that invents a name per event gets the
      // general path below.
      let name = eventNames.get(event)
      if (name === undefined && eventNames.size < MAX_INTERNED_EVENTS && event.isWellFormed()) {
        name = native.internEvent(svc, event)
        eventNames.set(event, name)
      }
      if (name !== undefined) return native.runEmitNamed(svc, s.slot, name, dataJson, now)
    }
    let eventJson
    try {
      eventJson = JSON.stringify(event)
    } catch {
      eventJson = JSON.stringify(String(event))
      persist = false
    }
    return native.runEmitEncoded(svc, s.slot, eventJson, dataJson, persist, now)
  }

  function fanOut(run, event, data, id) {
    const clients = run.clients
    if (!clients) return
    for (const client of clients) safeCall(client, 'send', event, data, id)
  }

  function emit(run, event, data) {
    const s = own(run, 'emit')
    if (event === 'error') applyErrorFields(s, data)
    const now = Date.now()
    const id = record(s, event, data, now)
    s.nextEventId = id + 1
    s.updatedAt = now
    s.events = null
    fanOut(run, event, data, id)
    return { id, event, data, timestamp: now }
  }

  function endClients(run) {
    const clients = run.clients
    if (!clients) return
    for (const client of clients) safeCall(client, 'end')
    clients.clear()
  }

  function resolveWaiters(run) {
    const waiters = run.waiters
    if (!waiters || waiters.size === 0) return
    const body = statusBody(run)
    for (const waiter of waiters) {
      try {
        waiter(body)
      } catch {
        // A waiter is a promise resolver; a foreign one that throws is ignored.
      }
    }
    waiters.clear()
  }

  function evict(s) {
    if (native.runEvict(svc, s.slot)) ctx.runs[s.slot] = undefined
  }

  function finish(run, status, code = null, signal = null) {
    const s = own(run, 'finish')
    const now = Date.now()
    const endData = { code, signal, status }
    let endJson
    try {
      endJson = JSON.stringify(endData)
    } catch {
      endJson = JSON.stringify({ code: null, signal: null, status: textOrNull(status) })
    }
    const endId = native.runFinish(
      svc,
      s.slot,
      textOrNull(status),
      numberOrNull(code),
      signalOrNull(signal),
      endJson,
      now,
    )
    if (endId === 0) return
    s.status = status
    s.exitCode = code
    s.signal = signal
    s.updatedAt = now
    s.nextEventId = endId + 1
    s.events = null
    fanOut(run, 'end', endData, endId)
    endClients(run)
    resolveWaiters(run)
    scheduleEviction(s)
  }

  function scheduleEviction(s) {
    if (ttlDelay !== null) setTimeout(evict, ttlDelay, s).unref()
  }

  function fail(run, code, message, init = {}) {
    const s = own(run, 'fail')
    if (isTerminal(s.status)) return
    emit(run, 'error', opts.createSseErrorPayload(code, message, init))
    finish(run, 'failed', 1, null)
  }

  function start(run, starter) {
    const s = own(run, 'start')
    const previous = run.analyticsTelemetry
    run.analyticsTelemetry = { ...(previous ?? EMPTY), startRequestedAt: Date.now() }
    const result = starter(run)
    if (result === null || result === undefined || typeof result.catch !== 'function') {
      throw new TypeError(`start(run, starter): starter must return a promise, got ${describe(result)}`)
    }
    result.catch((err) => {
      try {
        fail(run, 'AGENT_EXECUTION_FAILED', err instanceof Error ? err.message : String(err))
      } catch {
        // IMP-10: the run still ends, and no rejection escapes.
        try {
          if (!isTerminal(s.status)) finish(run, 'failed', 1, null)
        } catch {
          // nothing left to do
        }
      }
    })
    return run
  }

  function wait(run) {
    const s = own(run, 'wait')
    if (isTerminal(s.status)) return Promise.resolve(statusBody(run))
    return new Promise((resolve) => run.waiters.add(resolve))
  }

  function drop(run) {
    if (!run) return
    const s = own(run, 'drop')
    const now = Date.now()
    if (!native.runDrop(svc, s.slot, now)) return
    ctx.runs[s.slot] = undefined
    endClients(run)
    s.status = 'canceled'
    s.updatedAt = now
    resolveWaiters(run)
  }

  function readCursor(req) {
    let raw
    try {
      raw = req.get('Last-Event-ID')
    } catch {
      raw = undefined
    }
    if (!raw) raw = req?.query?.after
    if (!raw) raw = 0
    try {
      return Number(raw)
    } catch {
      return NaN
    }
  }

  function stream(run, req, res) {
    const s = own(run, 'stream')
    const sse = opts.createSseResponse(res)
    const cursor = readCursor(req)
    // IMP-7: send a snapshot, then whatever was emitted from inside those sends, exactly once.
    let seen = s.nextEventId - 1
    let batch = replayed(s, cursor)
    if (batch !== null) {
      sendBatch(sse, batch, cursor - batch.ids + 1, -Infinity)
    } else {
      batch = decodeReplay(native.runReplay(svc, s.slot, cursor))
      // Contiguous ids (always, unless records came back from the log): keep the batch for
      // the next client of this run, until the next emit or until V8 collects it.
      if (typeof batch.ids === 'number') {
        batch.next = s.nextEventId
        s.replayed = new WeakRef(batch)
      }
      sendBatch(sse, batch, 0, -Infinity)
    }
    while (s.nextEventId - 1 > seen) {
      const from = seen
      seen = s.nextEventId - 1
      sendBatch(sse, decodeReplay(native.runReplay(svc, s.slot, from)), 0, from)
    }
    // Read now, not before the sends: one of them may have finished or dropped the run.
    if (isTerminal(s.status)) {
      safeCall(sse, 'end')
      return
    }
    run.clients.add(sse)
    res.on('close', () => {
      run.clients.delete(sse)
      safeCall(sse, 'cleanup')
    })
  }

  // The cached batch of an earlier replay of this run, when it still holds exactly the records
  // the core would pick for `cursor` (nothing emitted since, at least one record after it).
  function replayed(s, cursor) {
    const batch = s.replayed?.deref()
    if (batch === undefined || batch.next !== s.nextEventId || !Number.isInteger(cursor)) return null
    return cursor >= batch.ids - 1 && cursor < batch.ids + batch.datas.length - 1 ? batch : null
  }

  function signalChild(run, signal) {
    const child = run.child
    if (!child || exited(child)) return false
    const s = own(run, 'signalChild')
    if (!IS_WINDOWS) {
      const pid = typeof child.pid === 'number' ? child.pid : NaN
      const group = typeof run.processGroupId === 'number' ? run.processGroupId : NaN
      // A name this OS knows crosses as its number (cheaper than a string; same signal).
      const spec = typeof signal === 'number' ? signal : (SIGNAL_NUMBERS[signal] ?? String(signal))
      const delivery = native.runSignal(svc, s.slot, pid, group, spec)
      if (delivery === DELIVERY_GONE) return false
      if (delivery !== DELIVERY_FALLBACK) return true
    }
    try {
      return child.kill(signal)
    } catch {
      return false
    }
  }

  function finishFromChild(run, fallback) {
    const child = run.child
    if (exited(child) && !run.childExitObservedAt) run.childExitObservedAt = Date.now()
    finish(run, 'canceled', child?.exitCode ?? null, child?.signalCode ?? fallback)
  }

  // Carries out the core's cancel/shutdown plan step by step.
  async function drive(run, s, shutdown, step) {
    for (;;) {
      if (step > 0) {
        const childExited = await waitForExit(run.child, step)
        step = native.runEscalationNext(svc, s.slot, shutdown, childExited)
        continue
      }
      switch (step) {
        case STEP_DONE:
          // cancel() resolves to the status body; shutdownActive() resolves to undefined.
          return shutdown ? undefined : statusBody(run)
        case STEP_ABORT:
          try {
            run.acpSession.abort()
          } catch {
            // CAN-4 / SHD-3: abort errors are swallowed.
          }
          break
        case STEP_SIGTERM:
          signalChild(run, 'SIGTERM')
          break
        case STEP_SIGKILL:
          signalChild(run, 'SIGKILL')
          break
        case STEP_FINISH_NOW:
          finish(run, 'canceled', null, 'SIGTERM')
          break
        case STEP_FINISH_TERM:
          finishFromChild(run, 'SIGTERM')
          break
        case STEP_FINISH_KILL:
          finishFromChild(run, 'SIGKILL')
          break
        default:
          throw new Error(`chat-run-service: unknown escalation step ${step}`)
      }
      step = native.runEscalationNext(svc, s.slot, shutdown, false)
    }
  }

  async function cancel(run) {
    const s = own(run, 'cancel')
    if (s.cancelPromise) return s.cancelPromise
    const now = Date.now()
    const [abortGrace, cancelGrace, forceWait] = cancelEnv()
    const step = native.runCancelBegin(
      svc,
      s.slot,
      Boolean(run.child),
      Boolean(run.acpSession?.abort),
      abortGrace,
      cancelGrace,
      forceWait,
      now,
    )
    if (step === STEP_TERMINAL) return statusBody(run)
    // (s.cancelPromise is null here, checked above.) The core still holds a cancel plan whose
    // promise has already settled, e.g. after a throw: wait for the run's verdict.
    if (step === STEP_IN_FLIGHT) return wait(run)
    s.cancelRequested = true
    s.updatedAt = now
    const outcome = drive(run, s, false, step)
    s.cancelPromise = outcome
    try {
      return await outcome
    } finally {
      s.cancelPromise = null
    }
  }

  async function shutdownActive(shutdownOptions) {
    const o = shutdownOptions !== null && typeof shutdownOptions === 'object' ? shutdownOptions : EMPTY
    const graceMs = typeof o.graceMs === 'number' && o.graceMs >= 0 ? o.graceMs : opts.shutdownGraceMs
    const runs = Array.from(native.shutdownSnapshot(svc), (slot) => ctx.runs[slot])
    const tasks = runs.map((run) => {
      try {
        const s = ChatRun.stateOf(run)
        const now = Date.now()
        const step = native.runShutdownBegin(svc, s.slot, Boolean(run.acpSession?.abort), graceMs, now)
        s.cancelRequested = true
        s.updatedAt = now
        return drive(run, s, true, step)
      } catch (err) {
        // SHD-5: one run's failure rejects the result, the others are still processed.
        return Promise.reject(err)
      }
    })
    const results = await Promise.allSettled(tasks)
    if (logging) await native.flushLogs(svc)
    const failure = results.find((r) => r.status === 'rejected')
    if (failure) throw failure.reason
  }

  function summaryOf(run) {
    const s = ChatRun.stateOf(run)
    const bundle = run.toolBundle
    if (s !== undefined && bundle === s.bundle) return JSON.parse(s.summary)
    // The bundle was replaced (or this is not one of our runs): summarize what is there now.
    return JSON.parse(native.summarizeToolBundle(lowerJson(bundle) ?? 'null'))
  }

  function statusBody(run) {
    const child = run.child
    return {
      id: run.id,
      projectId: run.projectId,
      conversationId: run.conversationId,
      assistantMessageId: run.assistantMessageId,
      agentId: run.agentId,
      appliedPluginSnapshotId: run.appliedPluginSnapshotId ?? null,
      pluginId: run.pluginId ?? null,
      status: run.status,
      createdAt: run.createdAt,
      updatedAt: run.updatedAt,
      cancelRequested: !!run.cancelRequested,
      childPid: child && typeof child.pid === 'number' ? child.pid : (run.childPid ?? null),
      processGroupId: run.processGroupId ?? null,
      childExited: exited(child),
      childExitObservedAt: run.childExitObservedAt ?? null,
      exitCode: run.exitCode,
      signal: run.signal,
      error: run.error ?? null,
      errorCode: run.errorCode ?? null,
      eventsLogPath: run.eventsLogPath ?? null,
      mediaExecution: run.mediaExecution ?? { mode: 'enabled' },
      toolBundle: summaryOf(run),
    }
  }

  const service = {
    create,
    start,
    get,
    list,
    stream,
    cancel,
    shutdownActive,
    wait,
    emit,
    finish,
    fail,
    drop,
    signalChild,
    statusBody,
    isTerminal,
  }
  if (logging) restore()
  serviceReleaser.register(ctx, svc)
  serviceContexts.set(service, { ctx, logging })
  return service
}

/**
 * A health snapshot of one service for the daemon's diagnostics: runs by status, retained
 * history, the log writer's queue, open files and every line that was not persisted, by reason.
 */
function getChatRunServiceStats(service) {
  const entry = serviceContexts.get(service)
  if (entry === undefined) {
    throw new TypeError(
      `getChatRunServiceStats(service): expected an object returned by createChatRunService(), got ${describe(service)}`,
    )
  }
  const s = native.serviceStats(entry.ctx.id)
  return {
    runs: {
      registered: s.runsRegistered,
      active: s.runsActive,
      byStatus: Object.fromEntries(s.runsByStatus),
      live: s.runsLive,
    },
    events: { retained: s.retainedEvents, retainedBytes: s.retainedBytes },
    log: {
      enabled: entry.logging,
      linesWritten: s.logLinesWritten,
      openFiles: s.openLogFiles,
      queue: { lines: s.writerQueueLines, bytes: s.writerQueueBytes },
      notPersisted: {
        diskError: s.logLinesFailed,
        queueFull: s.logLinesDropped,
        unserializable: s.logLinesUnserializable,
        afterClose: s.logLinesAfterClose,
      },
    },
  }
}

module.exports.createChatRunService = createChatRunService
module.exports.TERMINAL_RUN_STATUSES = TERMINAL_RUN_STATUSES
module.exports.getChatRunServiceStats = getChatRunServiceStats
