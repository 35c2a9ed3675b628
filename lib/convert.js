'use strict'
// What the core stores for a host value. The binding takes text and numbers only, so each
// core-owned field has one conversion, applied wherever a host value crosses (create, finish,
// the run's setters) and by the mirror drift check (lib/run.js) to compare like with like.

// Ids and filters: only a non-empty string counts; anything else is "none".
function nonEmptyString(value) {
  return typeof value === 'string' && value.length > 0 ? value : null
}

// Text fields (status, error, ...): a non-string is "none".
function textOrNull(value) {
  return typeof value === 'string' ? value : null
}

// Numeric fields (updatedAt, exitCode, ...): a non-number is "none".
function numberOrNull(value) {
  return typeof value === 'number' ? value : null
}

// `run.signal`: absent stays null, anything else its string form (null when even that throws:
// a finish never fails on the host's signal value).
function signalOrNull(value) {
  if (value == null) return null
  try {
    return String(value)
  } catch {
    return null
  }
}

module.exports = { nonEmptyString, textOrNull, numberOrNull, signalOrNull }
