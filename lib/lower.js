'use strict'
// Lowering host values to JSON for the core. The normalizers of SPEC §12-§14 run in Rust on a
// JSON image of the host's value that keeps every distinction they need: plain objects (own
// enumerable string keys, JS order), arrays (holes -> null), strings, booleans, null; every
// other scalar becomes 0 ("not a string, not an object, not false"). Unreadable input (a
// throwing getter) counts as invalid.

// Bounds of the lowering: deeper or larger inputs count as invalid.
const LOWER_MAX_DEPTH = 8
const LOWER_MAX_ITEMS = 65536

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

/** The JSON text of a policy value's lowering; undefined for undefined or unreadable input. */
function lowerJson(value) {
  if (value === undefined) return undefined
  try {
    return JSON.stringify(lowerValue(value, 0))
  } catch {
    return undefined
  }
}

module.exports = { lowerJson }
