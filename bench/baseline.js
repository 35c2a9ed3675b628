'use strict'
// JS baseline for the side-by-side benchmark (bench/ only, not shipped).
//
// This module mirrors the data path of the upstream open-design daemon module (runs.js /
// apps/daemon/src/runs.ts) that chat-run-service replaces, as bench/README.md describes it, with
// the behaviour of docs/SPEC.md. It was written for the benchmark; it is not a copy of the
// upstream file.
// What it reproduces, because that is what the benchmark compares:
//   - runs live in a `Map` keyed by id; `get` is `Map.get`, `list` filters `Map.values()`;
//   - `run.events` is a plain JS array of `{ id, event, data, timestamp }` records: `push`, then a
//     front `splice` once it holds more than `maxEvents`;
//   - with `runsLogDir`, each run gets `fs.createWriteStream(path, { flags: 'a' })`, opened lazily on
//     its first emit after `fs.mkdirSync(dir, { recursive: true })`; every emit does one
//     `stream.write(JSON.stringify(record) + '\n')`; `finish` ends the stream;
//   - fan-out is `client.send(event, data, id)` over the `run.clients` Set, synchronously;
//   - replay in `stream()` walks `run.events` and sends every record with `id > cursor`;
//   - cancel/shutdown follow SPEC §11: SIGTERM through `process.kill(-pgid)` (only when the run's
//     `processGroupId` is an integer >= 2, the run's own group), else `child.kill()`; wait for
//     `exit`/`close` with a grace timer; SIGKILL; a force wait.
// One addition upstream does not have: `shutdownActive()` also awaits the `close` of every write
// stream the service has ended or still holds. Upstream never awaits them; the benchmark needs it
// to measure "time until every byte is on disk", and awaiting the streams is how JS would do it.
// Policy normalization (SPEC §12-§14) is reduced to what the benchmark uses (absent inputs).

const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')

const TERMINAL_RUN_STATUSES = new Set(['succeeded', 'failed', 'canceled'])

function isTerminal(status) {
  return TERMINAL_RUN_STATUSES.has(status)
}

function exited(child) {
  return !child || child.exitCode !== null || child.signalCode !== null
}

function idField(value) {
  return typeof value === 'string' && value.length > 0 ? value : null
}

function normalizeMediaExecution(value) {
  if (value === undefined || value === null) return { mode: 'enabled' }
  if (typeof value !== 'object' || Array.isArray(value)) return { mode: 'enabled' }
  const mode = typeof value.mode === 'string' ? value.mode : 'enabled'
  if (mode !== 'enabled' && mode !== 'question' && mode !== 'disabled') return { mode: 'enabled' }
  return { mode }
}

function normalizeToolBundle(value) {
  if (!value || typeof value !== 'object' || Array.isArray(value) || !Array.isArray(value.mcpServers)) {
    return { mcpServers: [] }
  }
  return { mcpServers: [] }
}

function summarizeToolBundle(bundle) {
  const servers = bundle && Array.isArray(bundle.mcpServers) ? bundle.mcpServers : []
  return {
    mcpServers: servers.map((server) => {
      const out = { id: server.id }
      if (server.label) out.label = server.label
      if (server.templateId) out.templateId = server.templateId
      out.transport = server.transport
      out.enabled = server.enabled
      if (server.authMode) out.authMode = server.authMode
      return out
    }),
  }
}

function envNumber(raw, fallback) {
  const value = Number(raw)
  return Number.isFinite(value) && value > 0 ? value : fallback
}

function createChatRunService(options) {
  const {
    createSseResponse,
    createSseErrorPayload,
    maxEvents = 2000,
    ttlMs = 30 * 60 * 1000,
    shutdownGraceMs = 3000,
    runsLogDir = null,
  } = options
  const runs = new Map()
  // Close promises of the write streams this service opened that have not closed yet
  // (for shutdownActive's flush wait).
  const streamClosed = new Set()

  function create(meta) {
    const m = meta && typeof meta === 'object' ? meta : {}
    const id = crypto.randomUUID()
    const now = Date.now()
    const run = {
      id,
      projectId: idField(m.projectId),
      conversationId: idField(m.conversationId),
      assistantMessageId: idField(m.assistantMessageId),
      clientRequestId: idField(m.clientRequestId),
      agentId: idField(m.agentId),
      appliedPluginSnapshotId: idField(m.appliedPluginSnapshotId),
      pluginId: idField(m.pluginId),
      mediaExecution: normalizeMediaExecution(m.mediaExecution),
      toolBundle: normalizeToolBundle(m.toolBundle),
      status: 'queued',
      createdAt: now,
      updatedAt: now,
      events: [],
      nextEventId: 1,
      clients: new Set(),
      waiters: new Set(),
      child: null,
      acpSession: null,
      childPid: null,
      processGroupId: null,
      childExitObservedAt: null,
      exitCode: null,
      signal: null,
      error: null,
      errorCode: null,
      cancelRequested: false,
      eventsLogPath: runsLogDir ? path.join(runsLogDir, id, 'events.jsonl') : null,
      eventsLogStream: null,
      logClosed: false,
    }
    runs.set(id, run)
    return run
  }

  function get(id) {
    return runs.get(id) ?? null
  }

  function list(filter) {
    const f = filter ?? {}
    return Array.from(runs.values()).filter((run) => {
      if (f.projectId && run.projectId !== f.projectId) return false
      if (f.conversationId && run.conversationId !== f.conversationId) return false
      if (f.status === 'active') return !isTerminal(run.status)
      if (f.status && run.status !== f.status) return false
      return true
    })
  }

  function openLog(run) {
    if (!run.eventsLogPath || run.logClosed) return null
    if (run.eventsLogStream) return run.eventsLogStream
    try {
      fs.mkdirSync(path.dirname(run.eventsLogPath), { recursive: true })
      const stream = fs.createWriteStream(run.eventsLogPath, { flags: 'a' })
      stream.on('error', () => {
        if (run.eventsLogStream === stream) run.eventsLogStream = null
      })
      const closed = new Promise((resolve) => {
        stream.once('close', () => {
          streamClosed.delete(closed)
          resolve()
        })
      })
      streamClosed.add(closed)
      run.eventsLogStream = stream
      return stream
    } catch {
      return null
    }
  }

  function closeLog(run) {
    run.logClosed = true
    const stream = run.eventsLogStream
    if (!stream) return
    run.eventsLogStream = null
    stream.end()
  }

  function applyErrorFields(run, data) {
    const payload = data && typeof data === 'object' ? data : {}
    const nested = payload.error && typeof payload.error === 'object' ? payload.error : {}
    const pick = (value) => (typeof value === 'string' && value.trim() ? value.trim() : undefined)
    const message = pick(nested.message) ?? pick(payload.message)
    const code = pick(nested.code) ?? pick(payload.code)
    if (message !== undefined) run.error = message
    if (code !== undefined) run.errorCode = code
  }

  function emit(run, event, data) {
    if (event === 'error') applyErrorFields(run, data)
    const record = { id: run.nextEventId++, event, data, timestamp: Date.now() }
    run.events.push(record)
    if (run.events.length > maxEvents) run.events.splice(0, run.events.length - maxEvents)
    run.updatedAt = record.timestamp
    const stream = openLog(run)
    if (stream) {
      try {
        stream.write(JSON.stringify(record) + '\n')
      } catch {
        // Serialization failures skip the line (LOG-6).
      }
    }
    for (const client of run.clients) client.send(event, data, record.id)
    return record
  }

  function statusBody(run) {
    const child = run.child
    return {
      id: run.id,
      projectId: run.projectId,
      conversationId: run.conversationId,
      assistantMessageId: run.assistantMessageId,
      agentId: run.agentId,
      appliedPluginSnapshotId: run.appliedPluginSnapshotId ?? null,
      pluginId: run.pluginId ?? null,
      status: run.status,
      createdAt: run.createdAt,
      updatedAt: run.updatedAt,
      cancelRequested: !!run.cancelRequested,
      childPid: child && typeof child.pid === 'number' ? child.pid : (run.childPid ?? null),
      processGroupId: run.processGroupId ?? null,
      childExited: exited(child),
      childExitObservedAt: run.childExitObservedAt ?? null,
      exitCode: run.exitCode,
      signal: run.signal,
      error: run.error ?? null,
      errorCode: run.errorCode ?? null,
      eventsLogPath: run.eventsLogPath ?? null,
      mediaExecution: run.mediaExecution ?? { mode: 'enabled' },
      toolBundle: summarizeToolBundle(run.toolBundle),
    }
  }

  function finish(run, status, code = null, signal = null) {
    if (isTerminal(run.status)) return
    run.status = status
    run.exitCode = code
    run.signal = signal
    run.updatedAt = Date.now()
    emit(run, 'end', { code, signal, status })
    for (const client of run.clients) client.end()
    run.clients.clear()
    if (run.waiters.size > 0) {
      const body = statusBody(run)
      for (const waiter of run.waiters) waiter(body)
      run.waiters.clear()
    }
    closeLog(run)
    setTimeout(() => {
      if (isTerminal(run.status) && runs.get(run.id) === run) runs.delete(run.id)
    }, ttlMs).unref()
  }

  function fail(run, code, message, init = {}) {
    if (isTerminal(run.status)) return
    emit(run, 'error', createSseErrorPayload(code, message, init))
    finish(run, 'failed', 1, null)
  }

  function start(run, starter) {
    run.analyticsTelemetry = { ...(run.analyticsTelemetry ?? {}), startRequestedAt: Date.now() }
    starter(run).catch((err) => {
      fail(run, 'AGENT_EXECUTION_FAILED', err instanceof Error ? err.message : String(err))
    })
    return run
  }

  function wait(run) {
    if (isTerminal(run.status)) return Promise.resolve(statusBody(run))
    return new Promise((resolve) => run.waiters.add(resolve))
  }

  function drop(run) {
    if (!run || isTerminal(run.status)) return
    runs.delete(run.id)
    for (const client of run.clients) {
      try {
        client.end()
      } catch {
        // swallowed, as upstream does in drop
      }
    }
    run.clients.clear()
    run.status = 'canceled'
    run.updatedAt = Date.now()
    if (run.waiters.size > 0) {
      const body = statusBody(run)
      for (const waiter of run.waiters) waiter(body)
      run.waiters.clear()
    }
    closeLog(run)
  }

  function stream(run, req, res) {
    const sse = createSseResponse(res)
    const raw = req.get('Last-Event-ID') || req.query?.after || 0
    const cursor = Number(raw)
    const sendAll = !Number.isFinite(cursor)
    let replayed = 0
    for (const record of run.events) {
      if (sendAll || record.id > cursor) {
        sse.send(record.event, record.data, record.id)
        replayed++
      }
    }
    if (isTerminal(run.status)) {
      if (replayed === 0 && run.events.length > 0) {
        const last = run.events[run.events.length - 1]
        sse.send(last.event, last.data, last.id)
      }
      sse.end()
      return
    }
    run.clients.add(sse)
    res.on('close', () => {
      run.clients.delete(sse)
      sse.cleanup()
    })
  }

  function signalChild(run, signal) {
    const child = run.child
    if (!child || exited(child)) return false
    const pgid = run.processGroupId
    if (process.platform !== 'win32' && Number.isInteger(pgid) && pgid >= 2) {
      try {
        process.kill(-pgid, signal)
        return true
      } catch {
        // fall through to the child itself
      }
    }
    try {
      return child.kill(signal)
    } catch {
      return false
    }
  }

  function waitForExit(child, ms) {
    if (exited(child)) return Promise.resolve(true)
    return new Promise((resolve) => {
      const done = (value) => {
        clearTimeout(timer)
        if (typeof child.off === 'function') {
          child.off('close', onExit)
          child.off('exit', onExit)
        }
        resolve(value)
      }
      const onExit = () => done(true)
      if (typeof child.once === 'function') {
        child.once('close', onExit)
        child.once('exit', onExit)
      }
      const timer = setTimeout(done, ms, false)
      timer.unref()
    })
  }

  function finishFromChild(run, fallback) {
    const child = run.child
    if (exited(child) && !run.childExitObservedAt) run.childExitObservedAt = Date.now()
    finish(run, 'canceled', child?.exitCode ?? null, child?.signalCode ?? fallback)
    return statusBody(run)
  }

  async function cancel(run) {
    if (isTerminal(run.status)) return statusBody(run)
    run.cancelRequested = true
    run.updatedAt = Date.now()
    if (!run.child) {
      finish(run, 'canceled', null, 'SIGTERM')
      return statusBody(run)
    }
    const forceWait = envNumber(process.env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS, 500)
    if (run.acpSession?.abort) {
      const abortGrace = Number(process.env.PI_ABORT_GRACE_MS) || 3000
      try {
        run.acpSession.abort()
      } catch {
        // swallowed
      }
      if (await waitForExit(run.child, abortGrace)) return finishFromChild(run, 'SIGTERM')
      signalChild(run, 'SIGTERM')
      if (await waitForExit(run.child, abortGrace)) return finishFromChild(run, 'SIGTERM')
    } else {
      const raw = process.env.OD_CHAT_RUN_CANCEL_GRACE_MS || process.env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS
      signalChild(run, 'SIGTERM')
      if (await waitForExit(run.child, envNumber(raw, 3000))) return finishFromChild(run, 'SIGTERM')
    }
    signalChild(run, 'SIGKILL')
    await waitForExit(run.child, forceWait)
    return finishFromChild(run, 'SIGKILL')
  }

  async function shutdownActive(opts) {
    const o = opts ?? {}
    const graceMs = typeof o.graceMs === 'number' && o.graceMs >= 0 ? o.graceMs : shutdownGraceMs
    const active = Array.from(runs.values()).filter((run) => !isTerminal(run.status))
    for (const run of active) {
      run.cancelRequested = true
      run.updatedAt = Date.now()
      if (run.acpSession?.abort) {
        try {
          run.acpSession.abort()
        } catch {
          // swallowed
        }
      }
      signalChild(run, 'SIGTERM')
      finish(run, 'canceled', null, 'SIGTERM')
    }
    await Promise.all(
      active.map(async (run) => {
        if (run.child && !(await waitForExit(run.child, graceMs))) {
          signalChild(run, 'SIGKILL')
          await waitForExit(run.child, 500)
        }
      }),
    )
    // Flush barrier (benchmark addition, see header): end every stream still open, then wait until
    // every stream this service opened has closed.
    for (const run of runs.values()) if (run.eventsLogStream) closeLog(run)
    await Promise.all(streamClosed)
  }

  return {
    create,
    start,
    get,
    list,
    stream,
    cancel,
    shutdownActive,
    wait,
    emit,
    finish,
    fail,
    drop,
    signalChild,
    statusBody,
    isTerminal,
  }
}

module.exports = { createChatRunService, TERMINAL_RUN_STATUSES }
