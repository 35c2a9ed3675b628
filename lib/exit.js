'use strict'
// The process's end (SPEC IMP-4, BND-6). Node runs 'exit' listeners on process.exit(), on an
// uncaught exception or rejection and when the event loop empties; after them the process
// ends and the log writer threads with it. So at 'exit' the staged emits are handed to the
// core and the writers are given a bounded time (crates/core/src/timing.rs, EXIT_DRAIN) to
// write every queued line. A SIGKILL, an abort or a signal without a handler runs no listener:
// BND-6 states what those can lose.

const fs = require('node:fs')
const binding = require('../loader.js')
const { flushStaged } = require('./staging.js')

// One 'exit' listener per process, shared by every copy of this module that a test runner's
// module isolation or a vm context loads: each copy adds its flush as a WeakRef, so a copy
// nothing uses any more is neither kept alive nor flushed.
const FLUSHERS = Symbol.for('chat-run-service.exitFlushers')
let watching = false

/** Registers this module copy's flush at the process's 'exit' (first service with a log). */
function watchProcessExit() {
  if (watching) return
  watching = true
  let flushers = process[FLUSHERS]
  if (!(flushers instanceof Set)) {
    flushers = new Set()
    Object.defineProperty(process, FLUSHERS, { value: flushers })
    const registry = flushers
    process.on('exit', () => {
      for (const ref of registry) ref.deref()?.()
    })
  }
  for (const ref of flushers) if (ref.deref() === undefined) flushers.delete(ref)
  flushers.add(new WeakRef(flushAtExit))
}

function flushAtExit() {
  try {
    flushStaged()
  } catch {
    // A refused batch is a bug the emit path already threw; the writers still get the rest.
  }
  let written = true
  try {
    written = binding.flushAllLogsBlocking()
  } catch {
    // The addon's environment is already gone: nothing is left to wait for.
  }
  if (!written) {
    try {
      // A warning would be emitted on a later tick, which an exiting process never reaches.
      fs.writeSync(2, 'chat-run-service: the process exited before every event log line was written\n')
    } catch {
      // stderr is closed.
    }
  }
}

module.exports = { watchProcessExit }
