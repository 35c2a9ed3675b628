'use strict'
// The process's end (SPEC IMP-4, BND-6, LC-7). Node runs 'exit' listeners on process.exit(), on
// an uncaught exception or rejection and when the event loop empties; after them the process
// ends, and the log writer threads and every JS timer with it. So at 'exit':
// - the runs still tearing down take their SIGKILL step (their plan's timers will never fire),
// - the staged emits are handed to the core, the state-file writes queued for a host's
//   writeDurableState to the host (LC-11), and the writers get a bounded time
//   (crates/core/src/timing.rs, EXIT_DRAIN) to write every queued line.
// A SIGKILL, an abort or a signal without a handler runs no listener: BND-6 states what those
// can lose. (A worker thread that is terminated runs none either: its services are freed with
// its environment, which takes the same SIGKILL steps natively.)

const fs = require('node:fs')
const binding = require('../loader.js')
const { flushStaged } = require('./staging.js')
const { handOverAll } = require('./state-writer.js')

// One 'exit' listener per process, shared by every copy of this module that a test runner's
// module isolation or a vm context loads (each has its own binding instance and staged emits):
// each copy adds its handler as a WeakRef, so a copy nothing uses any more is not kept alive.
// The registry is checked by shape, not with instanceof: a copy in another realm made it.
const HANDLERS = Symbol.for('chat-run-service.exitHandlers')
let watching = false

/** Registers this module copy's handler at the process's 'exit' (its first service). */
function watchProcessExit() {
  if (watching) return
  let handlers = process[HANDLERS]
  if (handlers === undefined) {
    const registry = new Set()
    Object.defineProperty(process, HANDLERS, { value: registry })
    process.on('exit', () => {
      for (const ref of registry) {
        try {
          ref.deref()?.()
        } catch {
          // One copy's failure does not keep the others from their turn.
        }
      }
    })
    handlers = registry
  }
  if (typeof handlers?.add !== 'function') return
  for (const ref of handlers) if (ref.deref() === undefined) handlers.delete(ref)
  handlers.add(new WeakRef(atExit))
  watching = true
}

function atExit() {
  try {
    binding.killUnfinishedTeardowns()
  } catch {
    // The addon's environment is already gone.
  }
  try {
    flushStaged()
  } catch {
    // A refused batch is a bug the emit path already threw; the writers still get the rest.
  }
  // LC-11: state-file writes an internal path queued in the job that exits reach the host.
  handOverAll()
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
