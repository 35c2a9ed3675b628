'use strict'
// Sending events to SSE clients: stream() (replay, then live), the replay batches the core
// sends, and the fan-out of live events and of the end to a run's clients.

const native = require('./core.js')
const { own } = require('./run.js')
const { isTerminal } = require('./status.js')
const { describe } = require('./describe.js')
const { callHook, ignore, ignoreResult } = require('./hooks.js')

/**
 * IMP-6: calls `target[method](...args)` and returns what it returned (undefined when it threw);
 * one broken client never breaks the run or the others (a throw is swallowed, and so is the
 * rejection of a promise it returns).
 */
function safeCall(target, method, ...args) {
  try {
    const result = target[method](...args)
    ignoreResult(result, ignore)
    return result
  } catch {
    // IMP-6: one broken client never breaks the run or the other clients.
    return undefined
  }
}

/**
 * EMT-2 step 7: a live event to every client of the run. IMP-7: a client that stream()
 * registered while this record was being handed out (from the onEventEmitted hook or another
 * client's send) already had it in its replay, and is skipped (`s.attachedAt`, below).
 */
function fanOut(run, s, event, data, id) {
  const clients = run.clients
  if (!clients || clients.size === 0) return
  for (const client of clients) {
    // (Read per client: a send may register one, and Set iteration visits it.)
    const attachedAt = s.attachedAt
    if (attachedAt !== null && attachedAt.get(client) >= id) continue
    // STR-10: a client that says it cannot take the record (its send returned false) is
    // detached; one whose send threw stays (IMP-6).
    if (safeCall(client, 'send', event, data, id) === false) detach(run, s, client)
  }
}

/**
 * STR-9, STR-10: takes a client out of the run's live set and ends its stream (its client reconnects
 * with its cursor and replays what it missed).
 */
function detach(run, s, client) {
  // (A client already detached, from inside its own send, is not ended twice.)
  if (!run.clients.delete(client)) return
  s.subscribers?.delete(client)
  safeCall(client, 'end')
}

/**
 * STR-9: after stream() registered a subscriber, the oldest subscribers still registered are
 * detached until the run has at most the cap (OD_CHAT_RUN_MAX_STREAM_CLIENTS, read on every call;
 * the rule is the core's, crates/core/src/config.rs). Only clients stream() registered count:
 * those the host adds to `run.clients` itself are never detached.
 */
function capSubscribers(run, s, sse) {
  const subscribers = (s.subscribers ??= new Set())
  subscribers.add(sse)
  const clients = run.clients
  for (const subscriber of subscribers) if (!clients.has(subscriber)) subscribers.delete(subscriber)
  const cap = native.streamClientCap(Number(process.env.OD_CHAT_RUN_MAX_STREAM_CLIENTS))
  for (const oldest of subscribers) {
    if (subscribers.size <= cap) break
    detach(run, s, oldest)
  }
}

// In a run's queue of deferred deliveries (`s.queued`): the clients' end() of a finish or drop.
const END_CLIENTS = Symbol('end clients')

/**
 * Hands one record out (EMT-2 steps 6-7, LC-6): the onEventEmitted hook first, with `record`
 * (`{ id, event, data, timestamp }`), then the fan-out. Every client sees a run's records in id
 * order, once each (EMT-2, IMP-7), so a record emitted while another record of the run is being
 * handed out (from that hook, or from a client's send) is queued and fanned out after it, by the
 * outermost hand-out; so are the
 * clients' end() of a finish or drop made there (endClientsInOrder). While a hand-out is under
 * way, a client stream() registers remembers the last id its replay sent, so that no fan-out of a
 * record up to that id sends it again (`s.attachedAt`).
 */
function handOut(ctx, run, s, record, beforeFanOut = null) {
  // IMP-7: a client being replayed to gets the records emitted meanwhile after its replay.
  if (s.captures !== null) for (const capture of s.captures) capture.push(record)
  s.handingOut++
  try {
    const nested = s.handingOut > 1
    // A nested record takes its place in the queue before its hook runs, so what the hook emits
    // (or a finish's 'end' and end()) is queued behind it.
    if (nested) (s.queued ??= []).push([record.event, record.data, record.id])
    const onEventEmitted = ctx.opts.onEventEmitted
    if (onEventEmitted !== null) callHook(ctx, 'onEventEmitted', onEventEmitted, run, record)
    // (The state file's write, LC-1: host code it runs is queued behind the record too.)
    if (beforeFanOut !== null) beforeFanOut(ctx, run, s)
    if (!nested) {
      fanOut(run, s, record.event, record.data, record.id)
      drainQueued(run, s)
    }
  } finally {
    if (--s.handingOut === 0) s.attachedAt = null
  }
}

// The deliveries queued while the outermost hand-out ran, in order; those queued meanwhile (by
// the sends below) follow. Each batch is taken off the run first, so nothing is sent twice.
function drainQueued(run, s) {
  while (s.queued !== null) {
    const queue = s.queued
    s.queued = null
    for (const item of queue) {
      if (item === END_CLIENTS) endClients(run, s)
      else fanOut(run, s, item[0], item[1], item[2])
    }
  }
}

/**
 * FIN/DRP: the clients' end(), after every record handed out before it: at once, or, inside a
 * hand-out of the run (a finish from the onEventEmitted hook or a client's send), once the
 * records queued there reached the clients.
 */
function endClientsInOrder(run, s) {
  if (s.handingOut > 0) (s.queued ??= []).push(END_CLIENTS)
  else endClients(run, s)
}

/** FIN/DRP: ends and forgets every client of the run. */
function endClients(run, s) {
  const clients = run.clients
  // (An empty Set is left alone: clear() allocates a new table even then.)
  if (clients && clients.size !== 0) {
    for (const client of clients) safeCall(client, 'end')
    clients.clear()
  }
  // (After the end()s: a client whose end() subscribed again, during a drop, goes too.)
  s.subscribers = null
}

// Decodes the core's compact replay text (see crates/core/src/replay.rs):
// [datas, firstId | ids, [[name] | [], ...], nameIndex | nameIndexes, missing].
function decodeReplay(text) {
  const [datas, ids, wrapped, nameIndex, missing] = JSON.parse(text)
  for (let i = 0; i < missing.length; i++) datas[missing[i]] = undefined
  const names = wrapped.map((name) => (name.length === 0 ? undefined : name[0]))
  return { ids, names, nameIndex, datas, next: 0 }
}

// Sends the records of `batch` from index `start` whose id is above `after`.
function sendBatch(sse, batch, start, after) {
  const { ids, names, nameIndex, datas } = batch
  const contiguous = typeof ids === 'number'
  const shared = typeof nameIndex === 'number'
  const name = shared ? names[nameIndex] : undefined
  for (let i = start; i < datas.length; i++) {
    const id = contiguous ? ids + i : ids[i]
    if (id <= after) continue
    try {
      ignoreResult(sse.send(shared ? name : names[nameIndex[i]], datas[i], id), ignore)
    } catch {
      // IMP-6: one broken client never breaks the run or the other clients.
    }
  }
}

// STR-2: Last-Event-ID, else ?after=, else 0, through Number() (NaN when that throws).
function readCursor(req) {
  let raw
  try {
    raw = req.get('Last-Event-ID')
  } catch {
    raw = undefined
  }
  if (!raw) {
    try {
      raw = req?.query?.after
    } catch {
      raw = undefined
    }
  }
  if (!raw) raw = 0
  try {
    return Number(raw)
  } catch {
    return NaN
  }
}

// The cached batch of an earlier replay of this run, when it still holds exactly the records
// the core would pick for `cursor` (nothing emitted since, at least one record after it).
function replayed(s, cursor) {
  const batch = s.replayed?.deref()
  if (batch === undefined || batch.next !== s.nextEventId || !Number.isInteger(cursor)) return null
  return cursor >= batch.ids - 1 && cursor < batch.ids + batch.datas.length - 1 ? batch : null
}

// An http.ServerResponse whose connection is gone (`closed`, or `destroyed` on Node versions
// without it); a getter that throws counts as open.
function responseClosed(res) {
  try {
    return res.closed === true || res.destroyed === true
  } catch {
    return false
  }
}

/**
 * STR-3, STR-4, IMP-3, IMP-7: sends the records after `cursor` (the core's snapshot), then those
 * emitted from inside those sends, in id order, once each. Returns the last id the client has.
 */
function replay(ctx, s, sse, cursor) {
  return sendingCaptured(s, sse, s.nextEventId - 1, () => {
    let batch = replayed(s, cursor)
    if (batch !== null) {
      sendBatch(sse, batch, cursor - batch.ids + 1, -Infinity)
    } else {
      const text = native.runReplay(ctx.svc, s.slot, cursor)
      // While a finish runs its hooks, its 'end' record is still to come, live: STR-4's re-send
      // of the last record (a cursor at the end of a terminal run) does not apply yet.
      const after = s.endPending && Number.isFinite(cursor) ? cursor : -Infinity
      if (typeof text !== 'string') {
        // A replay of more than 256 MiB (src/text.rs) comes in several batches, sent in order (and
        // not kept for the next client).
        for (const part of text) sendBatch(sse, decodeReplay(part), 0, after)
        return
      }
      batch = decodeReplay(text)
      // Contiguous ids (always, unless records came back from the log) after the cursor (not
      // STR-4's re-sent last record, which is not everything after an earlier cursor): keep the
      // batch for the next client of this run, until the next emit or until V8 collects it.
      if (typeof batch.ids === 'number' && !(cursor >= batch.ids)) {
        batch.next = s.nextEventId
        s.replayed = new WeakRef(batch)
      }
      sendBatch(sse, batch, 0, after)
    }
  })
}

/**
 * IMP-7: runs `body`, capturing every record handed out meanwhile (emitted from inside it), then
 * sends the client those after `seen`, and those emitted from inside these sends, in id order,
 * once each. Returns the last id the client has.
 */
function sendingCaptured(s, sse, seen, body) {
  const capture = []
  ;(s.captures ??= []).push(capture)
  try {
    body()
    // (The array grows while its sends emit; each record is handed out once, in id order.)
    for (let i = 0; i < capture.length; i++) {
      const record = capture[i]
      if (record.id <= seen) continue
      seen = record.id
      safeCall(sse, 'send', record.event, record.data, record.id)
    }
    return seen
  } finally {
    const captures = s.captures
    captures.splice(captures.indexOf(capture), 1)
    if (captures.length === 0) s.captures = null
  }
}

/** §10. */
function stream(ctx, run, req, res) {
  const s = own(ctx, run, 'stream')
  // INP-5: without a response there is nothing to stream to (the host's factory would fail on it
  // with an error of its own).
  if (res === null || res === undefined) {
    throw new TypeError(`stream(run, req, res): expected res, the HTTP response to stream to, got ${describe(res)}`)
  }
  const sse = ctx.opts.createSseResponse(res)
  // INP-5: what the factory returned is the client every record goes to; a value that cannot
  // be one would receive nothing, silently.
  if (sse === null || (typeof sse !== 'object' && typeof sse !== 'function') || typeof sse.send !== 'function') {
    throw new TypeError(
      `stream(run, req, res): expected options.createSseResponse(res) to return an SSE client (an object with a send() function), got ${describe(sse)}`,
    )
  }
  const cursor = readCursor(req)
  // IMP-7: send a snapshot, then whatever was emitted from inside those sends, exactly once:
  // those records are captured as they are handed out, so the ring's trim cannot lose them.
  let seen = replay(ctx, s, sse, cursor)
  // Read now, not before the sends: one of them may have finished or dropped the run. (A run
  // whose finish is running its hooks has its verdict but not yet its 'end' record: the client
  // is live, so the record reaches it and then its end().)
  if (isTerminal(s.status) && !s.endPending) {
    safeCall(sse, 'end')
    return
  }
  // INP-5: a response without on() could never remove its client: ended, not registered.
  if (typeof res?.on !== 'function') {
    safeCall(sse, 'end')
    throw new TypeError(
      `stream(run, req, res): expected res to have on('close', listener) (an http.ServerResponse), got ${describe(res)}`,
    )
  }
  // A response whose connection already closed (the client hung up while the host's route was
  // still on its way here: its 'close' has fired and will not fire again) would keep its client
  // registered until the run ends: it gets cleanup() at once instead, as on close.
  if (responseClosed(res)) {
    safeCall(sse, 'cleanup')
    return
  }
  // The close listener first: a res whose on() throws leaves no client registered (ended, the
  // error rethrown), as INP-5 does for a res without on(). The host's on() runs its code, which
  // may emit, finish or drop the run: what it emits reaches the client like the replay's
  // records (STR-6: no live record falls between the replay and the registration), and a run it
  // ended gets the client's end() instead of a registration (STR-4).
  let closed = false
  try {
    seen = sendingCaptured(s, sse, seen, () =>
      res.on('close', () => {
        closed = true
        run.clients.delete(sse)
        s.subscribers?.delete(sse)
        safeCall(sse, 'cleanup')
      }),
    )
  } catch (err) {
    safeCall(sse, 'end')
    throw err
  }
  if (closed) return
  if (isTerminal(s.status) && !s.endPending) {
    safeCall(sse, 'end')
    return
  }
  if (s.handingOut > 0) (s.attachedAt ??= new Map()).set(sse, seen)
  run.clients.add(sse)
  capSubscribers(run, s, sse)
}

module.exports = { stream, handOut, endClientsInOrder }
