'use strict'
// emit() (SPEC §7, §8): the error fields of an 'error' event, the record the core numbers and
// stores (and logs), then the live fan-out. The hot path: one native call per event.

const native = require('../loader.js')
const { own, syncEmitted, syncErrorFields } = require('./run.js')
const { fanOut } = require('./stream.js')

const EMPTY = Object.freeze({})
// Distinct event names a service passes to the core as numbers; later new names go as strings.
const MAX_INTERNED_EVENTS = 1024

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

// EMT-2 steps 2-6 in the core; returns the record's id.
function record(ctx, s, event, data, now) {
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
    if (name === undefined && eventNames.size < MAX_INTERNED_EVENTS && event.isWellFormed()) {
      name = native.internEvent(ctx.svc, event)
      eventNames.set(event, name)
    }
    if (name !== undefined) return native.runEmitNamed(ctx.svc, s.slot, name, dataJson, now)
  }
  let eventJson
  try {
    eventJson = JSON.stringify(event)
  } catch {
    eventJson = JSON.stringify(String(event))
    persist = false
  }
  return native.runEmitEncoded(ctx.svc, s.slot, eventJson, dataJson, persist, now)
}

/** EMT-1..EMT-6 (EMT-4, the ring bound, is the core's). */
function emit(ctx, run, event, data) {
  const s = own(ctx, run, 'emit')
  if (event === 'error') applyErrorFields(ctx, s, data)
  const now = Date.now()
  const id = record(ctx, s, event, data, now)
  syncEmitted(s, id, now)
  fanOut(run, event, data, id)
  return { id, event, data, timestamp: now }
}

module.exports = { emit }
