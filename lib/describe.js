'use strict'
// How a value is named in an error message: the messages say what a method expected and what it
// got ("got the string \"abc\"", "got an object (Map)"), never the value itself in full.

function describe(value) {
  if (value === null) return 'null'
  let isArray
  try {
    isArray = Array.isArray(value)
  } catch {
    // Array.isArray throws only for a revoked Proxy.
    return 'a revoked Proxy'
  }
  if (isArray) return 'an array'
  const type = typeof value
  if (type === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`
  if (type === 'number' || type === 'boolean' || type === 'bigint') return `${type} ${String(value)}`
  if (type === 'object') return `an object (${constructorName(value)})`
  return type
}

// The name of an object's constructor; a Proxy or getter that throws (or lies) does not turn the
// caller's TypeError into its own exception.
function constructorName(value) {
  try {
    const name = value.constructor?.name
    return typeof name === 'string' ? name : 'no prototype'
  } catch {
    return 'unreadable'
  }
}

module.exports = { describe }
