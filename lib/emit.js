'use strict'
// emit() (SPEC §7, §8): the error fields of an 'error' event, the record the core numbers and
// stores (and logs), the state file for the lifecycle events (LC-1), the onEventEmitted hook
// (LC-6), then the live fan-out. The hot path: no native call; the record is staged and reaches
// the core with its batch (lib/staging.js, BND-6).

const { Buffer, constants } = require('node:buffer')
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
// EMT-1's bound. A record must be readable back (run.events, a replay, its log line as JSON): the
// core hands its JSON, the event's and the data's with the record's other keys around them, back
// to V8 as UTF-8, which V8 takes up to MAX_STRING_LENGTH bytes (2^29 - 24 on 64-bit V8); 256 bytes
// is more than those other keys take.
const MAX_RECORD_JSON = constants.MAX_STRING_LENGTH - 256

/**
 * Whether a record with these two JSON texts is within EMT-1's bound, in UTF-8 bytes (counted only
 * near it: a UTF-16 unit is at most three bytes, and at least one).
 */
function fitsRecord(eventJson, dataJson) {
  const units = (eventJson === undefined ? 0 : eventJson.length) + (dataJson === undefined ? 0 : dataJson.length)
  if (3 * units <= MAX_RECORD_JSON) return true
  if (units > MAX_RECORD_JSON) return false
  return utf8Length(eventJson) + utf8Length(dataJson) <= MAX_RECORD_JSON
}

const utf8Length = (text) => (text === undefined ? 0 : Buffer.byteLength(text, 'utf8'))

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
    if (name !== undefined) {
      // (The name's JSON, at most six units per character and two quotes, is made only near the
      // bound.)
      const nameUnits = 6 * event.length + 2
      if (dataJson === undefined || 3 * (dataJson.length + nameUnits) <= MAX_RECORD_JSON) {
        return [name, undefined, dataJson, true]
      }
      if (fitsRecord(JSON.stringify(event), dataJson)) return [name, undefined, dataJson, true]
      // Beyond EMT-1's bound: as unserializable data, below.
      dataJson = 'null'
      persist = false
    }
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
  // EMT-1's bound: data beyond it goes as unserializable data does (data null, never written),
  // and a name that alone is beyond it, as one without a string form.
  if (!fitsRecord(eventJson, dataJson)) {
    persist = false
    if (dataJson !== undefined) dataJson = 'null'
    if (!fitsRecord(eventJson, dataJson)) eventJson = undefined
  }
  return [null, eventJson, dataJson, persist]
}

/** LC-7: a finish is parked (a teardown under way): only a 'diagnostic' records. */
function heldBack(s, event) {
  return s.teardown !== null && s.teardown.parked.length > 0 && event !== 'diagnostic'
}

/** EMT-1..EMT-6 (EMT-4, the ring bound, is the core's); LC-1's state file; LC-6's hook. */
function emit(ctx, run, event, data) {
  const s = own(ctx, run, 'emit')
  // LC-7: from a parked finish until its 'end', only diagnostics go through.
  if (heldBack(s, event)) return null
  if (event === 'error') applyErrorFields(ctx, s, data)
  const [name, eventJson, dataJson, persistable] = serialize(ctx, event, data)
  // The host's code above (a getter, a toJSON) may have had a finish parked meanwhile.
  if (heldBack(s, event)) return null
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
