'use strict'
// The facade's one way into the native binding: every lib/ module and index.js require this
// file, never loader.js. Each binding function is wrapped so that the emits staged in JS
// (lib/staging.js, SPEC BND-6) reach the core before the call does: whatever the core is asked
// next (a read, a transition, a flush barrier) sees every record emitted before it, in order.
// The numeric enums (TextField, ...) are passed through as they are. A service whose host writes
// its state files has them handed over after each call (setAfterCall).

const binding = require('../loader.js')
const { hasStaged, flushStaged } = require('./staging.js')

// Called after every binding call while set (lib/state-writer.js, LC-11: while a service with the
// host's writeDurableState exists, it queues the hand-over of writes made on internal paths).
// Never throws.
let afterCall = null

const core = {}
for (const [name, value] of Object.entries(binding)) {
  if (typeof value !== 'function') {
    core[name] = value
    continue
  }
  core[name] = function () {
    if (hasStaged()) flushStaged()
    if (afterCall !== null) return callThenAfter(value, arguments)
    return value.apply(undefined, arguments)
  }
}

// (Apart from the wrapper above, so that the hot path's function holds no try/finally.)
function callThenAfter(fn, args) {
  try {
    return fn.apply(undefined, args)
  } finally {
    afterCall()
  }
}

/** Sets (a function) or clears (null) what runs after every binding call. */
function setAfterCall(fn) {
  afterCall = fn
}

core.setAfterCall = setAfterCall

module.exports = core
