'use strict'
// The host's child object as a teardown uses it (LC-7, LC-9): closing its stdin first, and
// listening to its events without ever letting a throwing getter or emitter of the host's stop
// the teardown.

const native = require('./core.js')
const { exited } = require('./status.js')
const { ignore, ignoreResult } = require('./hooks.js')

// The longest the first SIGTERM waits for the child's stdin to flush and close (LC-7).
const STDIN_CLOSE_MS = 100
const STREAM_END_EVENTS = ['finish', 'close', 'error']

/**
 * LC-7: when the host says stdin is open, the child's stdin is ended (errors swallowed) and
 * `stdinOpen` becomes false. Ending a pipe completes asynchronously (pending writes flush, then
 * the write side shuts down), so this returns a promise of that, bounded by STDIN_CLOSE_MS, and
 * the plan's next step (the first SIGTERM) waits for it: the child sees EOF before the signal.
 * Returns null when there was nothing to wait for.
 */
function closeStdin(run) {
  if (!run.stdinOpen) return null
  let closing = null
  try {
    // The host's objects: a getter that throws is one more reason to go on to the signals.
    const stdin = run.child?.stdin
    if (stdin && !stdin.destroyed && !stdin.writableEnded && typeof stdin.end === 'function') {
      // Errors of the end (EPIPE once the child is gone) are swallowed, now and later.
      if (typeof stdin.on === 'function') stdin.on('error', ignore)
      ignoreResult(stdin.end(), ignore)
      if (typeof stdin.once === 'function' && !stdin.writableFinished) closing = streamClosed(stdin)
    }
  } catch {
    // Best effort: the signals follow.
  }
  try {
    run.stdinOpen = false
  } catch {
    // A frozen run keeps its flag; the teardown goes on.
  }
  return closing
}

// Removes `listener` from the host's emitter for each of `events`; an `off` that is missing or
// throws leaves it there (it only settles what has already settled). Called from timers and
// event handlers, where a throw would be an uncaught exception.
function unlisten(emitter, events, listener) {
  try {
    if (typeof emitter?.off !== 'function') return
    for (const event of events) emitter.off(event, listener)
  } catch {
    // See above.
  }
}

const CHILD_END_EVENTS = ['close', 'exit']

/**
 * The child's pid (NaN without a numeric one) and whether it is still running, as a teardown
 * signals it. A getter of the host's child object that throws reads as unknown: no pid (so the
 * child gets child.kill()), and running (until the teardown sees its 'exit' or 'close'), never
 * as a reason to stop the teardown.
 */
function childValues(child) {
  let pid = NaN
  try {
    if (typeof child.pid === 'number') pid = child.pid
  } catch {
    // Unknown: see above.
  }
  return { pid, running: !exitedOrNot(child) }
}

function exitedOrNot(child) {
  try {
    return exited(child)
  } catch {
    return false
  }
}

// Resolves once `stream` finished, closed or failed, or after STDIN_CLOSE_MS (a ref'd timer, TMR-4).
function streamClosed(stream) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      resolve()
      unlisten(stream, STREAM_END_EVENTS, done)
    }
    const timer = setTimeout(done, STDIN_CLOSE_MS)
    try {
      for (const event of STREAM_END_EVENTS) stream.once(event, done)
    } catch {
      // The host's stream: the timer ends the wait.
    }
  })
}

/**
 * Resolves true once the child exited, false after `ms` (a ref'd timer, TMR-4, clamped as TMR-2
 * says; none for Infinity); true at once for no child. With `sawClose` (CAN-9) only the child's
 * 'close' counts: `sawClose()` says whether it was seen before the wait began. The listeners and
 * the timer go when the wait settles.
 */
function waitForChild(child, ms, sawClose = null) {
  if (!child) return Promise.resolve(true)
  const done = sawClose === null ? () => exitedOrNot(child) : sawClose
  if (done()) return Promise.resolve(true)
  const events = sawClose === null ? CHILD_END_EVENTS : ['close']
  return new Promise((resolve) => {
    const settle = (value) => {
      clearTimeout(timer)
      resolve(value)
      unlisten(child, events, onEnd)
    }
    const onEnd = () => settle(true)
    const delay = native.timerDelay(ms)
    const timer = delay === null ? undefined : setTimeout(settle, delay, false)
    try {
      for (const event of events) child.once(event, onEnd)
    } catch {
      // The host's child object: without its events, the timer ends the wait.
    }
  })
}

const NO_EXIT_FACTS = Object.freeze({ exited: false, exitCode: null, signal: null })

/**
 * CAN-6: the child's exit facts a teardown's verdict takes, `{ exited, exitCode, signal }` (false
 * and null when unknown: no child yet exited, or a getter of the host's that throws), and `run.childExitObservedAt`
 * stamped when the child is seen exited for the first time.
 */
function childExitFacts(run, child) {
  try {
    const gone = exited(child)
    if (gone && !run.childExitObservedAt) run.childExitObservedAt = Date.now()
    return { exited: gone, exitCode: child?.exitCode ?? null, signal: child?.signalCode ?? null }
  } catch {
    return NO_EXIT_FACTS
  }
}

// CAN-9: the teardown notes the child's 'close' from the start of a cancel (or the first wait)
// that must see it; unwatchClose removes the listener when the plan ends.
function watchClose(t, child) {
  if (t === null || t.closed !== null) return
  try {
    if (typeof child?.once !== 'function') return
    const onClose = () => {
      t.closed = true
    }
    child.once('close', onClose)
    t.closed = false
    t.watched = child
    t.onClose = onClose
  } catch {
    // The host's child object: without its 'close', the wait falls back to the child's exit.
  }
}

function unwatchClose(t) {
  if (t === null || t.onClose === null) return
  try {
    t.watched.off?.('close', t.onClose)
  } catch {
    // The host's child object: its listener stays, and only ever sets the flag.
  }
  t.watched = null
  t.onClose = null
}

module.exports = {
  CHILD_END_EVENTS,
  childExitFacts,
  closeStdin,
  exitedOrNot,
  childValues,
  unlisten,
  waitForChild,
  watchClose,
  unwatchClose,
}
