'use strict'
// The facade's one way into the native binding: every lib/ module and index.js require this
// file, never loader.js. Each binding function is wrapped so that the emits staged in JS
// (lib/staging.js, SPEC BND-6) reach the core before the call does: whatever the core is asked
// next (a read, a transition, a flush barrier) sees every record emitted before it, in order.
// The numeric enums (TextField, ...) are passed through as they are.

const binding = require('../loader.js')
const { hasStaged, flushStaged } = require('./staging.js')

const core = {}
for (const [name, value] of Object.entries(binding)) {
  if (typeof value !== 'function') {
    core[name] = value
    continue
  }
  core[name] = function () {
    if (hasStaged()) flushStaged()
    return value.apply(undefined, arguments)
  }
}

module.exports = core
