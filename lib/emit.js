'use strict'
// emit() (SPEC §7, §8): the error fields of an 'error' event, the record the core numbers and
// stores (and logs), the state file for the lifecycle events (LC-1), the onEventEmitted hook
// (LC-6), then the live fan-out. The hot path: no native call; the record is staged and reaches
// the core with its batch (lib/staging.js, BND-6).

const { constants } = require('node:buffer')
const native = require('./core.js')
const { own, syncEmitted, syncErrorFields } = require('./run.js')
const { handOut } = require('./stream.js')
const { persist } = require('./state.js')
const { stage } = require('./staging.js')

const EMPTY = Object.freeze({})
// Distinct event names a service passes to the core as numbers; later new names go as strings,
// and so do names longer than MAX_INTERNED_LENGTH.
const MAX_INTERNED_EVENTS = 1024
const MAX_INTERNED_LENGTH = 1024

// §8, read from the caller's own object (so toJSON or unserializable data change nothing).
function applyErrorFields(ctx, s, data) {
  try {
    const payload = data && typeof data === 'object' ? data : EMPTY
    const nested = payload.error && typeof payload.error === 'object' ? payload.error : EMPTY
    const pick = (value) => (typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined)
    const message = pick(nested.message) ?? pick(payload.message)
    const code = pick(nested.code) ?? pick(payload.code)
    if (message === undefined && code === undefined) return
    native.runSetError(ctx.svc, s.slot, message ?? null, code ?? null)
    syncErrorFields(s, message, code)
  } catch {
    // A throwing getter on the payload leaves error/errorCode as they were.
  }
}

// EMT-2 steps 2-6, first half: the record's JSON. This is where the host's code can run inside
// emit (a toJSON, a getter, a Proxy), and that code may emit to the same run: so the JSON is made
// before the record takes its id, and a nested emit simply takes the ids before this one.
// Returns [name, eventJson, dataJson, persist] for stage(): `name` an interned event number or
// null (then `eventJson`, undefined for an absent event).
function serialize(ctx, event, data) {
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
    const eventNames = ctx.eventNames
    let name = eventNames.get(event)
    if (
      name === undefined &&
      eventNames.size < MAX_INTERNED_EVENTS &&
      event.length <= MAX_INTERNED_LENGTH &&
      event.isWellFormed()
    ) {
      name = native.internEvent(ctx.svc, event)
      eventNames.set(event, name)
    }
    if (name !== undefined) return [name, undefined, dataJson, true]
  }
  let eventJson
  try {
    eventJson = JSON.stringify(event)
  } catch {
    persist = false
    try {
      eventJson = JSON.stringify(String(event))
    } catch {
      // Not even a string form (a throwing toString, a revoked Proxy): stored without a name.
      eventJson = undefined
    }
  }
  return [null, eventJson, dataJson, persist]
}

// A record must be readable back (run.events, a replay, the log line as JSON): its JSON, the
// event's and the data's with the record's other keys around them, is one V8 string, at most
// MAX_STRING_LENGTH characters (2^29 - 24 on 64-bit V8). 256 characters is more than those keys
// and their values take.
const MAX_RECORD_JSON = constants.MAX_STRING_LENGTH - 256

/** EMT-1: a record too large to ever be read back is refused before it takes an id. */
function checkSize(event, name, eventJson, dataJson) {
  const dataLength = dataJson === undefined ? 0 : dataJson.length
  // (An interned name is a string: its JSON is at most six characters per character, plus quotes.)
  const eventLength = name === null ? (eventJson === undefined ? 0 : eventJson.length) : 6 * event.length + 2
  if (eventLength + dataLength <= MAX_RECORD_JSON) return
  const eventJsonLength = name === null ? eventLength : JSON.stringify(event).length
  const error = new RangeError(
    `chat-run-service: emit(run, event, data): the record's JSON would be longer than V8's longest string ` +
      `(event ${eventJsonLength} and data ${dataLength} characters of JSON, expected together at most ` +
      `${MAX_RECORD_JSON}); nothing was recorded`,
  )
  error.code = 'ERR_CHAT_RUN_RECORD_TOO_LARGE'
  throw error
}

/** EMT-1..EMT-6 (EMT-4, the ring bound, is the core's); LC-1's state file; LC-6's hook. */
function emit(ctx, run, event, data) {
  const s = own(ctx, run, 'emit')
  // LC-7: from a parked finish until its 'end', only diagnostics go through.
  if (s.teardown !== null && s.teardown.parked.length > 0 && event !== 'diagnostic') return null
  if (event === 'error') applyErrorFields(ctx, s, data)
  const [name, eventJson, dataJson, persistable] = serialize(ctx, event, data)
  checkSize(event, name, eventJson, dataJson)
  // The host's code above (a getter, a toJSON) may have had a finish parked meanwhile.
  if (s.teardown !== null && s.teardown.parked.length > 0 && event !== 'diagnostic') return null
  // EMT-2 steps 2-6, second half: numbered from the mirror (the core gives the same id when the
  // batch arrives: BND-6) after the host's code above ran, and staged with its JSON.
  const now = Date.now()
  const id = s.nextEventId
  stage(ctx, s.slot, id, name, eventJson, dataJson, persistable, now)
  syncEmitted(s, id, now)
  const emitted = { id, event, data, timestamp: now }
  // LC-6: the record itself, numbered, before fan-out (the ring's trim cannot hide it). LC-1:
  // only these three events write the state file (never an ordinary emit), inside the hand-out
  // and before the fan-out: what the host's code run by that write emits (a durable field's
  // getter, a toJSON) or a finish it makes reaches the clients after this record.
  const writesState = ctx.logging && (event === 'start' || event === 'error' || event === 'end')
  handOut(ctx, run, s, emitted, writesState ? persist : null)
  return emitted
}

module.exports = { emit }
