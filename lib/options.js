'use strict'
// Construction options (SPEC §2), the environment variables cancel() reads (§3), the timer clamp
// (§4) and the event log layout: everything a service reads from outside at construction or
// per use, validated or parsed here, in one place.

const path = require('node:path')
const native = require('./core.js')
const { describe } = require('./describe.js')

// --- the rules the core owns ----------------------------------------------------------------
// The option defaults (OPT table) live in the Rust core (crates/core/src/config.rs) and so does
// the timer clamp (TMR-1/TMR-2: crates/core/src/timing.rs); both are read from it, not re-coded.

/** Option defaults (SPEC §2), applied when a key is `undefined`. */
const DEFAULTS = Object.freeze(JSON.parse(native.serviceDefaults()))

/**
 * TMR-1/TMR-2: the delay to arm a Node timer with for `ms` (NaN or < 1 is 1 ms, above
 * 2147483647 is clamped), or null for Infinity: no timer at all.
 */
const timerDelay = native.timerDelay

// --- options -----------------------------------------------------------------------------------

function optionNumber(options, key, { integer, allowInfinity, min }) {
  const value = options[key]
  if (value === undefined) return DEFAULTS[key]
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

/** OPT-1/OPT-2: the validated options, with defaults applied (`runsLogDir` null = no log). */
function readOptions(options) {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(
      `createChatRunService(options): expected an options object with createSseResponse and createSseErrorPayload, got ${describe(options)}`,
    )
  }
  const o = readEach(options)
  for (const key of ['createSseResponse', 'createSseErrorPayload']) {
    if (typeof o[key] !== 'function') {
      throw new TypeError(`createChatRunService: options.${key} must be a function, got ${describe(o[key])}`)
    }
  }
  const runsLogDir = o.runsLogDir
  if (runsLogDir !== undefined && runsLogDir !== null && typeof runsLogDir !== 'string') {
    throw new TypeError(
      `createChatRunService: options.runsLogDir must be a directory path string, or null/'' to disable the event log, got ${describe(runsLogDir)}`,
    )
  }
  // No file system takes a path with a NUL in it (Node's fs refuses one): every write would fail.
  if (typeof runsLogDir === 'string' && runsLogDir.includes('\u0000')) {
    throw new TypeError(
      `createChatRunService: options.runsLogDir must be a directory path, got a string with a NUL character at index ${runsLogDir.indexOf('\u0000')}`,
    )
  }
  return {
    createSseResponse: o.createSseResponse,
    createSseErrorPayload: o.createSseErrorPayload,
    maxEvents: optionNumber(o, 'maxEvents', { integer: true, allowInfinity: true, min: 1 }),
    ttlMs: optionNumber(o, 'ttlMs', { allowInfinity: true, min: 0 }),
    shutdownGraceMs: optionNumber(o, 'shutdownGraceMs', { allowInfinity: true, min: 0 }),
    runsLogDir: runsLogDir || null,
    onEventEmitted: optionHook(o, 'onEventEmitted'),
    beforeFinish: optionHook(o, 'beforeFinish'),
    onTerminal: optionHook(o, 'onTerminal'),
    onStatusBody: optionHook(o, 'onStatusBody'),
    // LC-9: the host's terminator of a process tree it identified (a function, or none).
    terminateProcessTree: optionHook(o, 'terminateProcessTree'),
    durableFields: optionDurableFields(o),
    // LC-11: the host's writer of state files (a function, or none: the core writes them).
    writeDurableState: optionHook(o, 'writeDurableState'),
  }
}

// Every option a service reads, each read exactly once (readEach).
const OPTION_KEYS = [
  'createSseResponse',
  'createSseErrorPayload',
  'maxEvents',
  'ttlMs',
  'shutdownGraceMs',
  'runsLogDir',
  'onEventEmitted',
  'beforeFinish',
  'onTerminal',
  'onStatusBody',
  'terminateProcessTree',
  'durableFields',
  'writeDurableState',
]

// OPT-2: the options as plain values. One whose reading throws (its getter, a Proxy trap, a
// revoked Proxy) is a TypeError that names it, with the host's error as its cause.
function readEach(options) {
  const values = {}
  for (const key of OPTION_KEYS) {
    try {
      values[key] = options[key]
    } catch (cause) {
      throw new TypeError(
        `createChatRunService: options.${key} could not be read (${describe(options) === 'a revoked Proxy' ? 'the options object is a revoked Proxy' : 'reading it threw'}); expected an options object whose fields can be read`,
        { cause },
      )
    }
  }
  return values
}

/** LC-6: a hook option is a function, or undefined/null for none. */
function optionHook(options, key) {
  const value = options[key]
  if (value === undefined || value === null) return null
  if (typeof value !== 'function') {
    throw new TypeError(`createChatRunService: options.${key} must be a function, got ${describe(value)}`)
  }
  return value
}

/** LC-6: `durableFields` is an array of strings (default none); a copy is kept. */
function optionDurableFields(options) {
  const value = options.durableFields
  if (value === undefined) return []
  if (!Array.isArray(value)) {
    throw new TypeError(
      `createChatRunService: options.durableFields must be an array of run field names (strings), got ${describe(value)}`,
    )
  }
  // (An index loop, not every(): a hole is an element that is not a string too.) Copied as it
  // is checked, so an element is read once (a Proxy or a getter cannot answer twice).
  let length
  try {
    length = value.length
  } catch (cause) {
    throw new TypeError(
      'createChatRunService: options.durableFields.length could not be read; expected an array of run field names (strings)',
      { cause },
    )
  }
  const names = []
  for (let i = 0; i < length; i++) {
    let name
    try {
      name = value[i]
    } catch (cause) {
      throw new TypeError(
        `createChatRunService: options.durableFields[${i}] could not be read; expected an array of run field names (strings)`,
        { cause },
      )
    }
    if (typeof name !== 'string') {
      throw new TypeError(
        `createChatRunService: options.durableFields must be an array of run field names (strings), got ${describe(name)} at index ${i}`,
      )
    }
    names.push(name)
  }
  return Array.from(new Set(names))
}

// --- the event log -----------------------------------------------------------------------------

/** CRE-4: `[prefix, suffix]` of every run's log path (`prefix + id + suffix`), or two undefined. */
function logLayout(runsLogDir) {
  if (runsLogDir === null) return [undefined, undefined]
  // Node's path.join decides the normalization once; every run path is prefix + id + suffix.
  const marker = '\u0000'
  const template = path.join(runsLogDir, marker, 'events.jsonl')
  const at = template.lastIndexOf(marker)
  return [template.slice(0, at), template.slice(at + marker.length)]
}

/** Receives the core's message about a service's first log error. */
function reportLogError(message) {
  process.emitWarning(message, { code: 'CHAT_RUN_LOG_ERROR' })
}

// --- environment -------------------------------------------------------------------------------

/**
 * ENV-1: the three cancel() variables, read on every use and parsed with Number(). The core
 * rules on the values (defaults for 0/NaN, the clamp: crates/core/src/timing.rs); the one rule
 * kept here is which variable is read: OD_CHAT_RUN_CANCEL_GRACE_MS when it is a non-empty
 * string, else OD_CHAT_RUN_SHUTDOWN_GRACE_MS (SPEC §3).
 */
function cancelEnv() {
  const env = process.env
  const cancelRaw = env.OD_CHAT_RUN_CANCEL_GRACE_MS
  return [
    Number(env.PI_ABORT_GRACE_MS),
    Number(typeof cancelRaw === 'string' && cancelRaw !== '' ? cancelRaw : env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS),
    Number(env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS),
  ]
}

module.exports = { DEFAULTS, timerDelay, readOptions, logLayout, reportLogError, cancelEnv }
