'use strict'
// Freeing a service's native state once nothing references its context any more (the service
// object, its runs and their pending timers all hold it; SPEC TMR-3).
//
// A test runner's module isolation (vitest's vm pools, a cleared require cache) or a vm context
// loads this module again in the same environment, and drops the earlier copy while services it
// made are still registered. A FinalizationRegistry that is collected with its copy never calls
// back, and each of those services would keep its native registry and log writer thread until
// the process ends. So this copy's registry is held by the process (a set shared by every copy,
// as lib/exit.js shares its 'exit' handlers) while a service of it is registered, and let go
// with the last one.

const native = require('./core.js')

const HOLDERS = Symbol.for('chat-run-service.serviceReleasers')

function holders() {
  let set = process[HOLDERS]
  if (set === undefined) {
    set = new Set()
    Object.defineProperty(process, HOLDERS, { value: set })
  }
  return set
}

let registered = 0
const releaser = new FinalizationRegistry((svc) => {
  try {
    native.destroyService(svc)
  } finally {
    registered -= 1
    if (registered === 0) holders().delete(releaser)
  }
})

/** The service of `ctx` (its native id `ctx.svc`) is destroyed once `ctx` is collected. */
function releaseWhenCollected(ctx) {
  if (registered === 0) holders().add(releaser)
  registered += 1
  releaser.register(ctx, ctx.svc)
}

module.exports = { releaseWhenCollected }
