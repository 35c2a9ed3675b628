'use strict'
// Staged emits (SPEC BND-6). A crossing into Rust costs more than the work an emit asks of the
// core, so emit() does not cross: it numbers the record from the run's mirror, keeps its parts
// here (a few numbers in a reused Float64Array, the JSON texts in an array) and hands every
// staged record of a service to the core in one call, emitStaged, when the first of these
// comes:
//
// - the end of the current synchronous stretch (a microtask queued by the first staged record),
// - a full batch (MAX_RECORDS records or MAX_TEXT characters of JSON),
// - any other call into the core: lib/core.js calls flushStaged() before each one, so nothing
//   the core answers (run.events, stream, statusBody, stats, finish, cancel, shutdown, the
//   state file, a hydration) can miss a record, and the records always precede what follows.
//
// The header layout and the text format are the core's (crates/core/src/batch.rs).

const binding = require('../loader.js')

const FIELDS = 5 // slot, id, event name, flags, timestamp
const NAME_IN_TEXT = -1
const NAME_ABSENT = -2
const DATA_IN_TEXT = 1
const PERSIST = 2
// One crossing per this many records at most, and the JSON a batch holds, in UTF-16 units.
// Small batches keep the joined text and the parts array in V8's young generation and short-
// lived (128 records against 1024: 31 against 43 B of RSS per retained event in the
// emit-memory benchmark, measured with the history blocks of that time), while the crossing
// (~250 ns) is still paid only once per 128 emits.
const MAX_RECORDS = 128
const MAX_TEXT = 64 * 1024

// The services (their contexts) with staged records, in the order they staged the first one.
const dirty = []
let flushQueued = false

function newStage() {
  return { count: 0, header: new Float64Array(MAX_RECORDS * FIELDS), parts: [], textLength: 0 }
}

/**
 * Stages one record of `ctx`'s service for run `slot` with `id`. `name`: an interned event name
 * number, or null with `eventJson` (a string, or undefined for an absent event). `dataJson`:
 * `JSON.stringify(data)` (undefined for an absent key). `persist` is false when the data could
 * not be serialized (LOG-6).
 */
function stage(ctx, slot, id, name, eventJson, dataJson, persist, now) {
  const eventLength = name === null && eventJson !== undefined ? eventJson.length + 1 : 0
  const dataLength = dataJson !== undefined ? dataJson.length + 1 : 0
  let stage = ctx.stage
  if (stage === null) stage = ctx.stage = newStage()
  // A record that would take the batch past MAX_TEXT starts a batch of its own: a large text is
  // never joined with others (so a text up to V8's limit still crosses, as it is).
  if (stage.count !== 0 && stage.textLength + eventLength + dataLength > MAX_TEXT) flushStaged()
  if (stage.count === 0) {
    dirty.push(ctx)
    if (!flushQueued) {
      flushQueued = true
      queueMicrotask(flushQueuedStages)
    }
  }
  const parts = stage.parts
  let nameField = name
  if (name === null) {
    if (eventJson === undefined) {
      nameField = NAME_ABSENT
    } else {
      nameField = NAME_IN_TEXT
      parts.push(eventJson)
    }
  }
  let flags = persist ? PERSIST : 0
  if (dataJson !== undefined) {
    flags |= DATA_IN_TEXT
    parts.push(dataJson)
  }
  stage.textLength += eventLength + dataLength
  const at = stage.count * FIELDS
  const header = stage.header
  header[at] = slot
  header[at + 1] = id
  header[at + 2] = nameField
  header[at + 3] = flags
  header[at + 4] = now
  stage.count++
  if (stage.count === MAX_RECORDS || stage.textLength >= MAX_TEXT) flushStaged()
}

/** True while some record waits for its batch. */
function hasStaged() {
  return dirty.length !== 0
}

// Hands one service's staged records to the core. The stage is emptied first, so a failure
// (which would be a bug: every record names a live run and the id the core gives next) is
// thrown once and never replayed, and the stage stays usable.
function flushStage(ctx) {
  const stage = ctx.stage
  const count = stage.count
  if (count === 0) return
  const parts = stage.parts
  stage.count = 0
  stage.parts = []
  stage.textLength = 0
  let text = ''
  if (parts.length === 1) {
    // One part crosses as it is (the last line feed is optional), however large.
    text = parts[0]
  } else if (parts.length !== 0) {
    // Every part is followed by a line feed: a trailing empty part gives join() the last one,
    // so the text is built flat in one pass (no concatenation for V8 to flatten at the
    // crossing). A record alone (a large one, see stage()) goes without it: its two parts and
    // one line feed fit, as serialize() bounds them (lib/emit.js, MAX_RECORD_JSON).
    if (count !== 1) parts.push('')
    text = parts.join('\n')
  }
  binding.emitStaged(ctx.svc, count, stage.header, text)
}

/** Hands every staged record of every service to the core, in the order they were staged. */
function flushStaged() {
  let failure = null
  while (dirty.length !== 0) {
    const services = dirty.splice(0, dirty.length)
    for (const ctx of services) {
      try {
        flushStage(ctx)
      } catch (error) {
        failure ??= error
      }
    }
  }
  if (failure !== null) throw failure
}

function flushQueuedStages() {
  flushQueued = false
  flushStaged()
}

module.exports = { stage, hasStaged, flushStaged, MAX_RECORDS, MAX_TEXT }
