'use strict'
// The run object, and its read mirror of the state the Rust core owns.
//
// The core is the one owner of a run's state. Reading `run.status` must not cross into Rust (the
// host reads it all the time), so every run keeps a mirror: a plain per-run object holding the
// last value of each core-owned field. The mirror is written in exactly the places below, each
// right after the native call whose effect it copies; nothing outside this file assigns a
// mirrored field. A host write keeps the host's raw value in the mirror (`run.status = 5` reads
// back 5) while the core stores its conversion (null): CORE_FIELDS names the conversion, and
// mirrorDrift() applies it to compare the two.
//
// field               | written in the core by                             | copied into the mirror by
// --------------------|----------------------------------------------------|-------------------------------
// projectId           | runCreate, runHydrate; host: runSetText             | newMirror; setter
// conversationId      | runCreate, runHydrate; host: runSetText             | newMirror; setter
// status              | runCreate, runHydrate, runFinishBegin, runDrop,     | newMirror, syncVerdict,
//                     |   runCancelPendingDelivery, runReopenForTeardown;   |   syncDropped,
//                     |   host: runSetText                                  |   syncDeliveryStopped,
//                     |                                                     |   syncReopened; setter
// updatedAt           | runCreate, runHydrate, emitStaged, runFinishBegin,  | newMirror, syncEmitted,
//                     |   runFinishEnd, runDrop, runCancelBegin,            |   syncVerdict, syncEnded,
//                     |   runShutdownStart, runReopenForTeardown,          |   syncDropped, syncReopened,
//                     |   runCancelPendingDelivery; host: runSetNumber      |   syncCancelBegun; setter
// nextEventId         | runCreate, runHydrate, emitStaged, runFinishEnd     | newMirror, syncEmitted,
//                     |   ('end') (never the host: read-only)               |   syncEnded
// exitCode, signal    | runHydrate, runFinishBegin; host: runSetNumber/Text | newMirror, syncVerdict; setter
// error, errorCode    | runHydrate, runSetError (emit of 'error', §8),      | newMirror, syncErrorFields,
//                     |   runReopenForTeardown (cleared); host: runSetText  |   syncReopened; setter
// cancelRequested     | runHydrate, runCancelBegin, runShutdownStart,       | newMirror, syncCancelBegun;
//                     |   runCancelPendingDelivery; host: runSetNumber (0/1)|   setter
// childExitObservedAt | host only: runSetNumber (cancel's CAN-6 writes it   | newMirror (null), syncRestarted;
//                     |   through the setter too); runPrepareRestart        |   setter
// cancelOrigin        | runCancelBegin, runShutdownStart,                   | newMirror, syncCancelBegun,
//                     |   runCancelPendingDelivery (LC-5: the first origin  |   syncRestarted; setter
//                     |   wins), runHydrate, runPrepareRestart (cleared);   |
//                     |   host: runSetText                                  |
// terminalTrigger     | runHydrate ('daemon_restart' for an interrupted     | newMirror, syncRestarted;
//                     |   run), runPrepareRestart (cleared);                |   setter
//                     |   host: runSetText (LC-5: the host's field)         |
// terminalAt          | runFinishBegin (a terminal verdict), runDrop,       | newMirror, syncVerdict,
//                     |   runCancelPendingDelivery, runHydrate,             |   syncDropped,
//                     |   runPrepareRestart, runReopenForTeardown (cleared) |   syncDeliveryStopped,
//                     |   (never the host: read-only, LC-5)                 |   syncReopened, syncRestarted
//
// Besides, runPrepareRestart (LC-4) resets status, updatedAt, exitCode, signal, error, errorCode,
// cancelRequested, cancelOrigin, terminalTrigger: syncRestarted copies that; runReopenForTeardown
// (LC-9) sets status, updatedAt and clears error, errorCode, terminalAt: syncReopened copies that. A hydrated
// run's mirror is built by newMirror from hydratedFields (the state file as the core now holds
// it, runHydrated).
//
// Each sync runs right after its native call, with two exceptions. emit() crosses no boundary
// (BND-6): it numbers the record from the mirror's nextEventId, syncEmitted advances the mirror
// at once, and the core reaches the same values when the batch arrives (lib/staging.js), which
// is before any other native call, so no reader of the core sees it behind. And the SPEC orders
// one: drop() calls
// the clients' end() between runDrop and syncDropped, so they still read the status from before
// the drop (DRP-1); and finish() is two native calls (runFinishBegin, then the hooks, then
// runFinishEnd), each with its own sync.
//
// The setters are the accessor table CORE_FIELDS: one place for "the host wrote a field". The
// mirror object also carries what only JS holds for the run: its service context and slot, the
// parsed `run.events` (a cache of runEvents, dropped whenever the history grows), the last replay
// batch, the create-time tool bundle and summary, the pending cancel() promise, the pending TTL
// eviction timer, whether a finish() is between its verdict and its 'end' (its hooks run), and
// the journal handle run.eventsLogStream handed out (LOG-9: closed by syncEnded and syncDropped,
// reopened by syncRestarted; a hydrated run's log is closed from the start).

const native = require('./core.js')
const { journalHandle, closeJournal, reopenJournal } = require('./journal.js')
const { describe } = require('./describe.js')
const { nonEmptyString, textOrNull, numberOrNull, signalOrNull } = require('./convert.js')
const { defineProcessFields } = require('./attach.js')
const { plainObjectOrNull, objectOrNull, sessionModeOrNull } = require('./host-fields.js')

// --- the mirror: one initialisation, one sync per core call ------------------------------------

/** A run's mirror (and JS-only state) for a core slot; `core` holds the core-owned fields. */
function newMirror(ctx, slot, id, bundle, summary, core) {
  return {
    ctx,
    slot,
    // The id the core registered the run under. run.id is a plain field the host may assign: that
    // changes what the run object and its status body read, never which run the service means.
    id,
    projectId: core.projectId,
    conversationId: core.conversationId,
    status: core.status,
    updatedAt: core.updatedAt,
    nextEventId: core.nextEventId,
    exitCode: core.exitCode,
    signal: core.signal,
    error: core.error,
    errorCode: core.errorCode,
    cancelRequested: core.cancelRequested,
    childExitObservedAt: null,
    terminalAt: core.terminalAt,
    terminalTrigger: core.terminalTrigger,
    cancelOrigin: core.cancelOrigin,
    // LC-7: the host's child and group (accessors: lib/attach.js) and the teardown in progress
    // (lib/control.js: { parked, killed, owner } while a cancel or shutdown tears the run down).
    child: null,
    processGroupId: null,
    teardown: null,
    events: null,
    replayed: null,
    bundle,
    summary,
    cancelPromise: null,
    // IMP-7 (lib/stream.js): records being handed out (nested emits), and the clients stream()
    // registered meanwhile, with the last id their replay sent.
    handingOut: 0,
    attachedAt: null,
    // EMT-2: the deliveries a nested hand-out queued for the outermost one (lib/stream.js).
    queued: null,
    // IMP-7: while stream() replays to a client, the records handed out meanwhile (from inside
    // its sends), one array per replaying client (lib/stream.js).
    captures: null,
    // STR-9: the clients stream() registered, oldest first (lib/stream.js).
    subscribers: null,
    // The run's shutdownActive() teardown while it runs: a second shutdownActive() joins it.
    shutdownPromise: null,
    // LC-9: the teardown the host's terminator carries out, while it runs (lib/host-tree.js):
    // cancel() and shutdownActive() join it.
    hostTeardown: null,
    // How many times the run became terminal (a verdict, a drop, a Stop before a receipt): a
    // teardown is over once this moved, even if the host reset the status since (FIN-5, LC-4).
    endings: 0,
    // drop() took it out of the service for good (DRP-1): prepareRestart() refuses it.
    dropped: false,
    evictTimer: null,
    evictToken: 0,
    // Registered with the releaser (it left the registry once: releaseWhenUnreachable).
    releaseArmed: false,
    finishing: false,
    // From a terminal verdict until its 'end' record (the finish's hooks run in between): a client
    // stream() attaches then is live, so it gets that record (lib/stream.js).
    endPending: false,
    // How many host writes of core-owned fields the run has seen (the setters count them): a
    // finish whose hooks wrote one writes the state file again at its 'end' (lib/lifecycle.js).
    hostWrites: 0,
    // LOG-9: the journal handle run.eventsLogStream hands out (lib/journal.js): null before the
    // first read, false once the log closed.
    journal: null,
  }
}

/** runCreate's fields (CRE-3): the ids as passed, queued, no events yet. */
function createdFields(projectId, conversationId, now) {
  return {
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
    terminalAt: null,
    terminalTrigger: null,
    cancelOrigin: null,
  }
}

/**
 * runHydrated's fields (LC-2): the run's state file as the core now holds it (text fields string
 * or null, numbers or null, `updatedAt` always a number: crates/core/src/durable/), its next id and
 * its cancelRequested.
 */
function hydratedFields(state, nextEventId, cancelRequested) {
  return {
    projectId: state.projectId,
    conversationId: state.conversationId,
    status: state.status,
    updatedAt: state.updatedAt,
    nextEventId,
    exitCode: state.exitCode,
    signal: state.signal,
    error: state.error,
    errorCode: state.errorCode,
    cancelRequested,
    terminalAt: state.terminalAt,
    terminalTrigger: state.terminalTrigger,
    cancelOrigin: state.cancelOrigin ?? null,
  }
}

/** After emit() staged record `id` stamped `now` (the core stores both with the batch, BND-6). */
function syncEmitted(s, id, now) {
  s.nextEventId = id + 1
  s.updatedAt = now
  s.events = null
}

/** After runSetError: the core took each of the two that is not undefined (§8). */
function syncErrorFields(s, message, code) {
  if (message !== undefined) s.error = message
  if (code !== undefined) s.errorCode = code
}

/**
 * After runFinishBegin returned true: the verdict, as the host passed it; for a terminal status
 * also terminalAt (LC-5), and the 'end' record is pending until syncEnded.
 */
function syncVerdict(s, status, code, signal, now) {
  s.status = status
  s.exitCode = code
  s.signal = signal
  s.updatedAt = now
  if (status === 'succeeded' || status === 'failed' || status === 'canceled') {
    s.terminalAt = now
    s.endPending = true
    s.endings++
  }
}

/** After runFinishEnd returned the 'end' record's id; `at` is the record's time. */
function syncEnded(s, endId, at) {
  s.endPending = false
  s.updatedAt = at
  s.nextEventId = endId + 1
  s.events = null
  closeJournal(s)
}

/** After runDrop returned true at `now`; `updatedAt` is now's, or a later emit's (drop()). */
function syncDropped(s, now, updatedAt) {
  s.status = 'canceled'
  s.updatedAt = updatedAt
  s.terminalAt = now
  s.dropped = true
  s.endings++
  closeJournal(s)
}

// What both reopens of a terminal run copy (the core's Service::reopen): the status, updatedAt,
// the error and terminalAt cleared, the journal open again.
function syncReopen(s, status, now) {
  s.status = status
  s.updatedAt = now
  s.error = null
  s.errorCode = null
  s.terminalAt = null
  reopenJournal(s)
}

/** After runPrepareRestart returned the previous updatedAt (LC-4): queued again, verdict cleared. */
function syncRestarted(s, now) {
  syncReopen(s, 'queued', now)
  s.exitCode = null
  s.signal = null
  s.cancelRequested = false
  s.childExitObservedAt = null
  s.cancelOrigin = null
  s.terminalTrigger = null
}

/**
 * After runReopenForTeardown returned true (LC-9): running again for a retry of the teardown
 * (the exit code and signal stay until the new verdict).
 */
function syncReopened(s, now) {
  syncReopen(s, 'running', now)
}

// run.events from the core: one JSON array text, or, for a history too large for one JS
// string, several to concatenate.
function parseEvents(texts) {
  if (typeof texts === 'string') return JSON.parse(texts)
  const events = []
  for (const text of texts) for (const record of JSON.parse(text)) events.push(record)
  return events
}

/**
 * LC-7, LC-9: the state of a teardown under way (`s.teardown`): the finishes parked meanwhile,
 * whether SIGKILL reached anything, which plan owns it (true: a shutdown), CAN-9's watch of the
 * child's 'close' (lib/child.js), and whether the child emitted 'exit' or 'close' (lib/control.js).
 */
function newTeardown(shutdown) {
  return { parked: [], killed: false, owner: shutdown, closed: null, watched: null, onClose: null, exitSeen: false }
}

/**
 * After runCancelBegin (a plan step) or runShutdownStart; LC-5: the first origin wins. The core
 * decides on what it stores: a host value that is not a string (stored as null) is no origin.
 */
function syncCancelBegun(s, now, origin) {
  s.cancelRequested = true
  s.updatedAt = now
  if (textOrNull(s.cancelOrigin) === null) s.cancelOrigin = origin
}

/** After runCancelPendingDelivery returned true (HF-13): the 'succeeded' verdict became a Stop. */
function syncDeliveryStopped(s, now, origin) {
  syncCancelBegun(s, now, origin)
  s.status = 'canceled'
  s.terminalAt = now
  s.endings++
}

// --- the run object ----------------------------------------------------------------------------

// `<runsLogDir>/<id>/state.json` from `<runsLogDir>/<id>/events.jsonl` (the core's layout:
// crates/core/src/durable/state.rs, STATE_FILE), on either separator.
function statePathOf(eventsLogPath) {
  const cut = Math.max(eventsLogPath.lastIndexOf('/'), eventsLogPath.lastIndexOf('\\'))
  return `${eventsLogPath.slice(0, cut + 1)}state.json`
}

/**
 * A run: a plain, extensible object. Host-owned fields are own data properties; fields whose
 * state the Rust core owns are accessors on this prototype (reads come from the mirror, writes
 * go to the core and the mirror: see CORE_FIELDS).
 */
class ChatRun {
  #s
  constructor(state, id, eventsLogPath, meta, media, bundle, now) {
    this.#s = state
    this.id = id
    this.assistantMessageId = nonEmptyString(meta.assistantMessageId)
    this.clientRequestId = nonEmptyString(meta.clientRequestId)
    this.requestFingerprint = nonEmptyString(meta.requestFingerprint)
    this.agentId = nonEmptyString(meta.agentId)
    this.appliedPluginSnapshotId = nonEmptyString(meta.appliedPluginSnapshotId)
    this.pluginId = nonEmptyString(meta.pluginId)
    // HF-1, set here so that every run has one shape (lib/host-fields.js).
    this.skillId = nonEmptyString(meta.skillId)
    this.projectMetadata = plainObjectOrNull(meta.projectMetadata)
    this.browserUse = objectOrNull(meta.browserUse)
    this.sessionMode = sessionModeOrNull(meta.sessionMode)
    this.context = plainObjectOrNull(meta.context)
    this.mediaExecution = media
    this.toolBundle = bundle
    // HF-8: create() sets it from meta.analyticsHints; a hydrated run gets its file's (HF-5).
    this.externalPluginAnalytics = null
    this.createdAt = now
    // INP-2: the Sets are the run's own for its life; the host changes their contents, never
    // the binding (a write throws in strict code, as the types say).
    Object.defineProperty(this, 'clients', { value: new Set(), enumerable: true })
    Object.defineProperty(this, 'waiters', { value: new Set(), enumerable: true })
    this.acpSession = null
    this.childPid = null
    // The host's pending same-run retry; cancel, shutdown and prepareRestart clear it.
    this.retryRestartTimer = null
    // LC-9: the process tree the host identified, its identification under way, and whether
    // the host requires its teardown verified (lib/host-tree.js).
    this.processTreeRoot = null
    this.processTreeIdentityCapture = null
    this.requiresTreeVerification = false
    this.eventsLogPath = eventsLogPath
    // LC-1: the run's state file, beside its journal (upstream's field of the same name).
    this.statePath = eventsLogPath === null ? null : statePathOf(eventsLogPath)
  }

  static stateOf(run) {
    return run !== null && typeof run === 'object' && #s in run ? run.#s : undefined
  }

  // Every accessor reads `undefined` on an object that is not a run but inherits from this
  // prototype (`Object.create(Object.getPrototypeOf(run))`, as a deep-cloning diff printer
  // makes), instead of throwing from a getter; writes there throw `notARun`.

  get events() {
    const s = ChatRun.stateOf(this)
    if (s === undefined) return undefined
    if (s.events === null) s.events = parseEvents(native.runEvents(s.ctx.svc, s.slot))
    return s.events
  }
  set events(_value) {
    throw new TypeError('run.events is a read-only view of the native event history; use emit() to add events')
  }
  get nextEventId() {
    return ChatRun.stateOf(this)?.nextEventId
  }
  set nextEventId(_value) {
    throw new TypeError('run.nextEventId is owned by the service (ids are assigned by emit())')
  }
  get terminalAt() {
    return ChatRun.stateOf(this)?.terminalAt
  }
  set terminalAt(_value) {
    throw new TypeError('run.terminalAt is owned by the service (set by the terminal transition)')
  }
  /** LOG-9: a handle on the open journal, made on first read; null when it is not open. */
  get eventsLogStream() {
    const s = ChatRun.stateOf(this)
    return s === undefined ? undefined : journalHandle(s, this)
  }
  /** A host value replaces the handle for good: the field becomes a plain data property. */
  set eventsLogStream(value) {
    if (ChatRun.stateOf(this) === undefined) notARun('eventsLogStream')
    Object.defineProperty(this, 'eventsLogStream', { value, writable: true, enumerable: true, configurable: true })
  }
}

/** Throws for a write of `field` on an object that only inherits from a run's prototype. */
function notARun(field) {
  throw new TypeError(
    `run.${field}: this object is not a run created by createChatRunService (it only inherits from one's prototype)`,
  )
}

// LC-7: run.child and run.processGroupId, whose writes capture the child's process tree.
defineProcessFields(ChatRun.prototype, ChatRun.stateOf, notARun)

// cancelRequested crosses as 0/1; the core stores a boolean.
function setFlag(svc, slot, code, value) {
  native.runSetNumber(svc, slot, code, value ? 1 : 0)
}

const { TextField, NumberField } = native

// Core-owned fields the host may write: [field, native write, the field's code for the core,
// what the core stores for a host value]. A write converts first (a conversion that throws
// changes nothing), then goes to the core, then to the mirror, which keeps the host's raw value.
const CORE_FIELDS = [
  ['projectId', native.runSetText, TextField.ProjectId, textOrNull],
  ['conversationId', native.runSetText, TextField.ConversationId, textOrNull],
  ['status', native.runSetText, TextField.Status, textOrNull],
  ['updatedAt', native.runSetNumber, NumberField.UpdatedAt, numberOrNull],
  ['exitCode', native.runSetNumber, NumberField.ExitCode, numberOrNull],
  ['signal', native.runSetText, TextField.Signal, signalOrNull],
  ['error', native.runSetText, TextField.Error, textOrNull],
  ['errorCode', native.runSetText, TextField.ErrorCode, textOrNull],
  ['cancelRequested', setFlag, NumberField.CancelRequested, Boolean],
  ['childExitObservedAt', native.runSetNumber, NumberField.ChildExitObservedAt, numberOrNull],
  ['terminalTrigger', native.runSetText, TextField.TerminalTrigger, textOrNull],
  ['cancelOrigin', native.runSetText, TextField.CancelOrigin, textOrNull],
]
for (const [field, write, code, convert] of CORE_FIELDS) {
  Object.defineProperty(ChatRun.prototype, field, {
    configurable: true,
    enumerable: false,
    get() {
      return ChatRun.stateOf(this)?.[field]
    },
    set(value) {
      const s = ChatRun.stateOf(this) ?? notARun(field)
      const stored = convert(value)
      write(s.ctx.svc, s.slot, code, stored)
      s[field] = value
      s.hostWrites++
    },
  })
}

// --- registration ------------------------------------------------------------------------------

// Reclaims a run's native slot (and its history) once nothing can reach its state any more:
// not the host, not the registry, not a pending cancel. (The target is the per-run state
// object, not the run.) A run is registered here only when it leaves the service's registry
// (releaseWhenUnreachable): until then `ctx.runs` holds it, so it cannot be collected before
// its service, whose own finalizer frees every slot at once. Registering at adopt() instead
// cost about 0.4 us per create, a twentieth of a whole run's lifecycle.
const runReleaser = new FinalizationRegistry(({ svc, slot }) => native.runRelease(svc, slot))

/**
 * Run `s` is leaving its service's registry (evicted, dropped, replaced by a run hydrated under
 * its id): its slot is released once nothing reaches it any more. Once per run: a run that
 * comes back (get() after an eviction, prepareRestart) stays registered with the releaser, and
 * the registry holds it again meanwhile.
 */
function releaseWhenUnreachable(s) {
  if (s.releaseArmed) return
  s.releaseArmed = true
  runReleaser.register(s, { svc: s.ctx.svc, slot: s.slot })
  // What the object keeps alive on the native heap (its history) is reported to V8 until the
  // release, so that a daemon evicting runs faster than full collections come gets them
  // collected: V8 cannot see that memory otherwise (taken back by runRelease).
  native.runUnreachable(s.ctx.svc, s.slot)
}

// Test support: called with every run a service adopts (see observeRuns).
let observer = null

/**
 * The run object for a core slot, registered for get()/list() and for release on collection.
 * `core` holds the core-owned fields (createdFields / hydratedFields).
 */
function adopt(ctx, slot, id, logPath, ids, media, bundle, summary, createdAt, core) {
  const state = newMirror(ctx, slot, id, bundle, summary, core)
  const run = new ChatRun(state, id, logPath, ids, media, bundle, createdAt)
  ctx.runs[slot] = run
  if (observer !== null) observer(run)
  return run
}

/** The mirror of a run this service created; a TypeError naming `method` for anything else. */
function own(ctx, run, method) {
  const s = ChatRun.stateOf(run)
  if (s === undefined || s.ctx !== ctx) {
    throw new TypeError(
      `${method}(run): expected a run object returned by this service's create(), got ${describe(run)}`,
    )
  }
  return s
}

// --- the drift check (test support) ------------------------------------------------------------

/**
 * Test support: `fn(run)` is called with every run any service adopts from now on (created or
 * hydrated); `null` turns it off. Costs one comparison per adopt when off.
 */
function observeRuns(fn) {
  observer = typeof fn === 'function' ? fn : null
}

// What the core stores for a mirror value, per field: the setters' conversions, and the
// read-only fields as they are.
const STORED = new Map(CORE_FIELDS.map(([field, , , convert]) => [field, convert]))
const READ_ONLY = ['nextEventId', 'terminalAt']
for (const field of READ_ONLY) STORED.set(field, (value) => value)

// A value as it reads back from the core's JSON: napi turns lone surrogates into U+FFFD on the
// way in, and JSON has no NaN or Infinity (null) and no -0 (0).
function wireImage(value) {
  return JSON.stringify(typeof value === 'string' ? value.toWellFormed() : value)
}

/**
 * Test support: the core-owned fields on which the run's mirror disagrees with the core (each
 * mirror value converted as its setter converts it), in runCoreFields' order; empty when in sync,
 * and for a run whose native slot (or service) was already released.
 */
function mirrorDrift(run) {
  const s = ChatRun.stateOf(run)
  if (s === undefined) throw new TypeError(`mirrorDrift(run): expected a run object, got ${describe(run)}`)
  let core
  try {
    core = JSON.parse(native.runCoreFields(s.ctx.svc, s.slot))
  } catch (err) {
    if (/is not a live run|has been destroyed/.test(String(err?.message))) return []
    throw err
  }
  const drift = []
  // A field the core reports that the mirror does not know counts as drift too.
  for (const field of Object.keys(core)) {
    const stored = STORED.get(field)
    if (stored === undefined || wireImage(stored(s[field])) !== JSON.stringify(core[field])) drift.push(field)
  }
  return drift
}

module.exports = {
  ChatRun,
  adopt,
  own,
  releaseWhenUnreachable,
  createdFields,
  hydratedFields,
  syncEmitted,
  syncErrorFields,
  syncVerdict,
  syncEnded,
  syncDropped,
  syncRestarted,
  syncReopened,
  newTeardown,
  syncCancelBegun,
  syncDeliveryStopped,
  observeRuns,
  mirrorDrift,
}
