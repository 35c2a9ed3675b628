'use strict'
// run.eventsLogStream (SPEC LOG-9): a handle on the run's journal for a host that waits for it,
// as upstream's module hands out the run's fs.WriteStream. The core writes the journal; this is a
// Writable that ends, after every line emitted before it was closed is on disk, when the run's
// log closes (finish, drop, prepareRestart). It is made only when read, and only while the
// journal is open (logging on, at least one emit, not yet closed): null otherwise, as upstream's
// field is before the first emit and after finish.

const { Writable } = require('node:stream')
const native = require('./core.js')
const { ignore } = require('./hooks.js')

class JournalHandle extends Writable {
  #ctx
  constructor(ctx, path) {
    super()
    this.#ctx = ctx
    /** The journal's path, as on an fs.WriteStream. */
    this.path = path
    // A write the host should not have made fails its callback; it never becomes an uncaught
    // 'error' event that would end the daemon.
    this.on('error', ignore)
  }

  _write(_chunk, _encoding, callback) {
    callback(new Error('run.eventsLogStream: the journal is written by the service; record events with emit()'))
  }

  _final(callback) {
    // The log writer's barrier: every line queued before it is on disk when it resolves.
    native.flushLogs(this.#ctx.svc).then(() => callback(), callback)
  }
}

/** The run's open journal handle, made on first read; null when the journal is not open. */
function journalHandle(s, run) {
  if (s.journal === false || !s.ctx.logging || s.nextEventId === 1) return null
  if (s.journal === null) s.journal = new JournalHandle(s.ctx, run.eventsLogPath)
  return s.journal
}

/** The run's log closed: a handle handed out ends once its lines are on disk; later reads are null. */
function closeJournal(s) {
  const handle = s.journal
  s.journal = false
  if (handle !== null && handle !== false && !handle.writableEnded) handle.end()
}

/** The run's log reopened (prepareRestart): the next read after an emit makes a new handle. */
function reopenJournal(s) {
  closeJournal(s)
  s.journal = null
}

module.exports = { journalHandle, closeJournal, reopenJournal }
