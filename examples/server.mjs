// An example daemon around chat-run-service, wired the way the open-design daemon wires `runs.js`:
//
//   POST /api/runs                       {conversationId?, projectId?, lines?} → 202 {runId}; spawns
//                                        examples/agent.cjs in its own process group
//   GET  /api/runs/:id/events            SSE; honours Last-Event-ID and ?after=
//   GET  /api/runs/:id                   status body (404 when unknown); a run of an earlier process
//                                        over the same RUNS_LOG_DIR is loaded from disk (SPEC LC-2)
//   POST /api/runs/:id/cancel            cancel(run, 'user_stop') → final status body
//   GET  /api/runs?conversationId=&projectId=&status=   status bodies
//   POST /api/runs/:id/drop-connections  TEST-ONLY (startServer({ testEndpoints: true }), never
//                                        under npm start): destroys the sockets of the run's live
//                                        SSE responses, to simulate a network cut (clients
//                                        reconnect with Last-Event-ID). Do not copy this into a
//                                        daemon.
//   GET  /                               examples/public/ (a page that starts, streams and cancels)
//
// SIGINT/SIGTERM: no new run is accepted (POST /api/runs gets 503, new connections are refused),
// `await runs.shutdownActive()` (every active run is canceled, its process group signalled, every
// JSONL log flushed and closed), then the server closes and the process exits.
//
// Only 127.0.0.1/localhost Host headers are served (a DNS-rebinding page cannot read runs), and a
// POST that carries an Origin header must come from the daemon's own page.
//
// One daemon per RUNS_LOG_DIR: a second one on the same directory would mark the first one's live
// runs interrupted (SPEC LC-2 has no lock), so `node examples/server.mjs` takes `<dir>.lock` (its
// pid; `<dir>` the directory's real path, so a symlink to it takes the same lock) and refuses to
// start while the process named there runs.
//
// Restart: run it twice with the same RUNS_LOG_DIR and kill the first one (kill -9) mid-run. The
// second one loads no earlier run by itself, but GET /api/runs/<id> finds one; a run that was
// active when its process died shows status 'failed', errorCode 'DAEMON_RESTARTED'. At boot it
// prints one earlier run, which that lookup loads: GET /api/runs lists that one (and the ones
// loaded since), not every run on disk.
//
// Usage: npm start, or node examples/server.mjs (PORT=0 picks a free port; logs go to a fresh temp
//        dir; one demo run starts at boot and is echoed to the terminal, DEMO_RUN=0 skips it;
//        it stops when the process that started it exits, EXIT_WITH_PARENT=0 keeps it running,
//        e.g. under `nohup ... &` from a script that ends)
//        PORT=8080 RUNS_LOG_DIR=./runs AGENT_LINES=40 node examples/server.mjs
//
// Tests start it in-process: `const { url, close, runs } = await startServer({ ... })`.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import express from 'express'
import { createChatRunService, getChatRunServiceStats } from '../index.js'
import { startAgent } from './agent-process.mjs'
import { exitWithParent } from './supervisor.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const PUBLIC_DIR = path.join(here, 'public')
const MAX_LINES = 10_000

/**
 * The daemon's SSE writer, in the shape `createChatRunService` expects (`send`/`end`/`cleanup`).
 * It first tells the browser to reconnect after 200 ms (`retry:`), so an `EventSource` whose
 * connection drops comes back quickly with `Last-Event-ID` and the service replays what it missed.
 */
export function createSseResponse(res, { retryMs = 200, keepaliveMs = 15_000 } = {}) {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  })
  res.flushHeaders()
  res.write(`retry: ${retryMs}\n\n`)
  const writable = () => !res.writableEnded && !res.destroyed
  // A comment line now and then keeps proxies from closing an idle stream.
  let keepalive = setInterval(() => {
    if (writable()) res.write(': keepalive\n\n')
  }, keepaliveMs)
  keepalive.unref()
  const cleanup = () => {
    if (keepalive) clearInterval(keepalive)
    keepalive = null
  }
  return {
    // false only when the connection is gone: the service then detaches this client (SPEC STR-10).
    // A full socket buffer (res.write() returning false) is not that: Node keeps the bytes.
    send(event, data, id) {
      if (!writable()) return false
      res.write(`id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data) ?? 'null'}\n\n`)
      return true
    },
    end() {
      cleanup() // a replay-only client (finished run) never gets cleanup(): stop the timer here too
      if (writable()) res.end()
    },
    cleanup,
  }
}

/** The `data` of the `'error'` event `runs.fail()` emits (the daemon's error envelope). */
export function createSseErrorPayload(code, message, init = {}) {
  return { message, error: { code, message, ...init } }
}

/** A host-side client that echoes a run's events to the terminal. */
function consoleClient(run) {
  const tag = run.id.slice(0, 8)
  return {
    send: (event, data, id) => console.log(`  [run ${tag}] #${id} ${event} ${JSON.stringify(data)}`),
    end: () => console.log(`  [run ${tag}] finished; log: ${run.eventsLogPath ?? '(logging disabled)'}`),
    cleanup: () => {},
  }
}

// A response whose connection is already gone ('close' fired before the route ran).
function connectionGone(res) {
  return res.closed === true || res.destroyed === true || !res.socket || res.socket.destroyed === true
}

/**
 * Serves only requests addressed to this daemon on the loopback interface (Host 127.0.0.1 or
 * localhost with its port: a page on another origin that rebinds its DNS name to 127.0.0.1 sends
 * its own name), and refuses a POST whose Origin is another site's (a form or fetch from any page
 * the user visits could otherwise start and cancel agents). Requests without Origin (curl, other
 * programs) are served.
 */
function localOnly(portOf) {
  return (req, res, next) => {
    const port = portOf()
    const allowed = new Set([`127.0.0.1:${port}`, `localhost:${port}`])
    if (!allowed.has(String(req.headers.host ?? '').toLowerCase())) {
      return res.status(421).json({ error: { code: 'MISDIRECTED', message: 'this daemon serves 127.0.0.1 only' } })
    }
    const origin = req.headers.origin
    if (req.method !== 'GET' && req.method !== 'HEAD' && origin !== undefined) {
      if (
        !allowed.has(
          String(origin)
            .replace(/^http:\/\//, '')
            .toLowerCase(),
        )
      ) {
        return res
          .status(403)
          .json({ error: { code: 'FORBIDDEN_ORIGIN', message: `requests from ${origin} are not accepted` } })
      }
    }
    next()
  }
}

/**
 * One daemon per RUNS_LOG_DIR: writes this process's pid to `<dir>.lock`, unless the process a
 * lock already names is running (then it throws, naming it). A lock left by a process that is
 * gone is taken over. Returns the function that removes it.
 */
function lockRunsLogDir(runsLogDir) {
  // The directory as the file system names it, so that two paths to one directory (a symlink, a
  // trailing slash) take one lock; created first when missing.
  fs.mkdirSync(runsLogDir, { recursive: true })
  if (!fs.statSync(runsLogDir).isDirectory()) throw new Error(`RUNS_LOG_DIR ${runsLogDir} is not a directory`)
  const lockPath = `${fs.realpathSync(runsLogDir)}.lock`
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockPath, `${process.pid}\n`, { flag: 'wx' })
      let removed = false
      return () => {
        if (removed) return
        removed = true
        try {
          if (fs.readFileSync(lockPath, 'utf8').trim() === String(process.pid)) fs.unlinkSync(lockPath)
        } catch {
          // already gone
        }
      }
    } catch (err) {
      if (err.code !== 'EEXIST') throw err
    }
    const holder = Number.parseInt(fs.readFileSync(lockPath, 'utf8'), 10)
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processRuns(holder)) {
      throw new Error(
        `another example daemon (pid ${holder}) uses RUNS_LOG_DIR ${runsLogDir} (${lockPath}); stop it, or give this one its own directory`,
      )
    }
    fs.rmSync(lockPath, { force: true }) // its process is gone: a stale lock
  }
  throw new Error(`could not take ${lockPath}`)
}

function processRuns(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

// Whether the request carries a body (a length above 0, or a chunked one).
function hasBody(req) {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
}

function optionalString(value) {
  return typeof value === 'string' && value !== '' ? value : undefined
}

/**
 * Starts the example daemon on 127.0.0.1.
 * @param {object} [opts]
 * @param {number} [opts.port=0]            0 picks a free port
 * @param {string|null} [opts.runsLogDir]   JSONL log directory; null disables logging
 * @param {number} [opts.agentLines=20]     default number of agent lines when the request has none
 * @param {number} [opts.lineIntervalMs=150] delay between agent lines
 * @param {number} [opts.shutdownGraceMs]   passed to createChatRunService
 * @param {boolean} [opts.testEndpoints=false] serve POST /api/runs/:id/drop-connections (tests only)
 * @returns {Promise<{ url: string, port: number, runsLogDir: string|null, runs: import('../index').ChatRunService,
 *   attachments: Array<{ runId: string, lastEventId: string|null, after: unknown, at: number }>, close(): Promise<void> }>}
 */
export async function startServer({
  port = 0,
  runsLogDir = null,
  agentLines = 20,
  lineIntervalMs = 150,
  shutdownGraceMs,
  consoleEvents = false,
  testEndpoints = false,
} = {}) {
  const runs = createChatRunService({
    createSseResponse,
    createSseErrorPayload,
    runsLogDir,
    shutdownGraceMs,
  })
  // TEST-ONLY bookkeeping for /drop-connections: runId → live SSE responses.
  const liveResponses = new Map()
  // Every SSE attach with the cursor the client sent (tests assert that reconnects carry one).
  const attachments = []

  let accepting = true

  const app = express()
  app.disable('x-powered-by')
  app.use(localOnly(() => realPort))
  app.use(express.json({ limit: '64kb' }))
  app.use(express.static(PUBLIC_DIR))

  app.post('/api/runs', (req, res) => {
    // From the first moment of a shutdown on, a run started now would never be canceled.
    if (!accepting) {
      res.set('connection', 'close')
      return res.status(503).json({ error: { code: 'SHUTTING_DOWN', message: 'the daemon is shutting down' } })
    }
    if (hasBody(req) && !req.is('application/json')) {
      return res.status(415).json({
        error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'expected a JSON body (content-type: application/json)' },
      })
    }
    if (hasBody(req) && (req.body === null || typeof req.body !== 'object' || Array.isArray(req.body))) {
      return res.status(400).json({ error: { code: 'BAD_REQUEST', message: 'expected a JSON object body' } })
    }
    const body = req.body && typeof req.body === 'object' ? req.body : {}
    let lines = agentLines
    if (body.lines !== undefined && body.lines !== null && body.lines !== '') {
      // A JSON integer, or a string of decimal digits ("5"); nothing else is coerced.
      const n =
        typeof body.lines === 'number' || (typeof body.lines === 'string' && /^[0-9]+$/.test(body.lines))
          ? Number(body.lines)
          : NaN
      if (!Number.isInteger(n) || n < 1 || n > MAX_LINES) {
        return res
          .status(400)
          .json({ error: { code: 'BAD_REQUEST', message: `lines must be an integer in 1..${MAX_LINES}` } })
      }
      lines = n
    }
    const run = runs.create({
      conversationId: optionalString(body.conversationId),
      projectId: optionalString(body.projectId),
    })
    // The host's own client objects live in run.clients next to the SSE ones (here: a console echo).
    if (consoleEvents) run.clients.add(consoleClient(run))
    runs.start(run, () => startAgent(runs, run, { lines, intervalMs: lineIntervalMs }))
    res.status(202).json({ runId: run.id })
  })

  const findRun = (req, res) => {
    const run = runs.get(req.params.id)
    if (!run) res.status(404).json({ error: { code: 'RUN_NOT_FOUND', message: `no run ${req.params.id}` } })
    return run
  }

  app.get('/api/runs', (req, res) => {
    const { conversationId, projectId, status } = req.query
    for (const [name, value] of Object.entries({ conversationId, projectId, status })) {
      if (value !== undefined && typeof value !== 'string') {
        return res
          .status(400)
          .json({ error: { code: 'BAD_REQUEST', message: `${name} must be given once, as a string` } })
      }
    }
    const filter = {
      conversationId: optionalString(conversationId),
      projectId: optionalString(projectId),
      status: optionalString(status),
    }
    res.json(runs.list(filter).map(runs.statusBody))
  })

  app.get('/api/runs/:id', (req, res) => {
    const run = findRun(req, res)
    if (run) res.json(runs.statusBody(run))
  })

  app.get('/api/runs/:id/events', (req, res) => {
    const run = findRun(req, res)
    if (!run) return
    attachments.push({
      runId: run.id,
      lastEventId: req.get('Last-Event-ID') ?? null,
      after: req.query.after ?? null,
      at: Date.now(),
    })
    if (attachments.length > 1000) attachments.shift()
    // (A client may have hung up while the request was on its way here, through the static
    // middleware's file lookup: its 'close' has fired already and would never remove it.)
    if (testEndpoints && !connectionGone(res)) {
      let set = liveResponses.get(run.id)
      if (!set) liveResponses.set(run.id, (set = new Set()))
      set.add(res)
      res.on('close', () => {
        set.delete(res)
        if (set.size === 0 && liveResponses.get(run.id) === set) liveResponses.delete(run.id)
      })
    }
    runs.stream(run, req, res)
  })

  app.post('/api/runs/:id/cancel', async (req, res, next) => {
    const run = findRun(req, res)
    if (!run) return
    try {
      res.json(await runs.cancel(run, 'user_stop'))
    } catch (err) {
      next(err)
    }
  })

  // TEST-ONLY: simulate a network cut for every live SSE response of this run.
  if (testEndpoints) {
    app.post('/api/runs/:id/drop-connections', (req, res) => {
      const set = liveResponses.get(req.params.id)
      let dropped = 0
      for (const sseRes of set ?? []) {
        sseRes.socket?.destroy()
        dropped += 1
      }
      res.json({ dropped })
    })
  }

  app.use((req, res) => res.status(404).json({ error: { code: 'NOT_FOUND', message: `${req.method} ${req.path}` } }))
  // express.json() parse errors and anything thrown above.
  app.use((err, req, res, _next) => {
    const status = Number.isInteger(err?.status) && err.status >= 400 && err.status < 600 ? err.status : 500
    res
      .status(status)
      .json({ error: { code: status === 500 ? 'INTERNAL' : 'BAD_REQUEST', message: String(err?.message ?? err) } })
  })

  let realPort = null
  const server = await new Promise((resolve, reject) => {
    const s = app.listen(port, '127.0.0.1', (err) => (err ? reject(err) : resolve(s)))
    s.once('error', reject)
  })
  realPort = server.address().port
  const url = `http://127.0.0.1:${realPort}`

  let closing = null
  const close = () =>
    (closing ??= (async () => {
      // No new run (POST /api/runs answers 503 from now on) and no new connection; idle
      // keep-alive sockets go now, the rest once their runs are over.
      accepting = false
      const closed = new Promise((resolve) => server.close(() => resolve()))
      server.closeIdleConnections()
      // Cancels every active run (ends their SSE clients), signals their groups, flushes the logs.
      await runs.shutdownActive()
      server.closeAllConnections() // replay-only streams and anything still open
      await closed
    })())

  return { url, port: realPort, runsLogDir, runs, attachments, close }
}

// A restart (SPEC LC-2): the runs an earlier process left in runsLogDir are indexed, not loaded;
// get(id) loads one. Prints how many there are and the state of one of them.
function reportEarlierRuns(runs, runsLogDir) {
  const { indexed } = getChatRunServiceStats(runs).hydration
  if (indexed === 0) return
  const earlier = fs.readdirSync(runsLogDir).find((name) => fs.existsSync(path.join(runsLogDir, name, 'state.json')))
  const run = earlier === undefined ? null : runs.get(earlier)
  if (run === null) return
  const why = run.errorCode ? ` ${run.errorCode}: ${run.error}` : ''
  console.log(`  restart: ${indexed} run(s) of earlier processes; GET /api/runs/<id> loads one, e.g.`)
  console.log(`           ${run.id} ${run.status}${why}`)
}

async function main() {
  // A stop signal from the first moment on: before the server is up it is kept, and the daemon
  // stops as soon as it is (a supervisor may stop it right after starting it).
  let srv = null
  let stopping = false
  let pending = null
  const stop = async (signal) => {
    if (srv === null) {
      pending ??= signal
      return
    }
    if (stopping) return
    stopping = true
    const active = srv.runs.list({ status: 'active' })
    console.log(`\n${signal}: runs.shutdownActive() for ${active.length} active run(s)…`)
    try {
      await srv.close()
      for (const run of active) {
        const body = srv.runs.statusBody(run)
        console.log(`  ${run.id} → ${body.status} (${body.signal}), process group ${body.processGroupId}`)
      }
      console.log(`shutdownActive done; logs flushed under ${runsLogDir}`)
      process.exit(0)
    } catch (err) {
      console.error('shutdown failed:', err)
      process.exit(1)
    }
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))

  const runsLogDir = process.env.RUNS_LOG_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'chat-run-server-'))
  const port = Number(process.env.PORT || 0)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`PORT must be a port number from 0 to 65535 (0: any free port), got ${process.env.PORT}`)
    process.exit(1)
  }
  const agentLines = Number(process.env.AGENT_LINES) || 20
  let unlock = () => {}
  if (process.env.RUNS_LOG_DIR) {
    try {
      unlock = lockRunsLogDir(runsLogDir)
    } catch (err) {
      console.error(String(err.message ?? err))
      process.exit(1)
    }
    process.on('exit', () => unlock())
  }
  try {
    srv = await startServer({ port, runsLogDir, agentLines, consoleEvents: true })
  } catch (err) {
    console.error(`could not start the example daemon on 127.0.0.1:${port}: ${err.message ?? err}`)
    process.exit(1)
  }
  if (pending !== null) return stop(pending)
  const { url } = srv
  console.log(`chat-run-service example daemon on ${url}/`)
  console.log(`  page:   ${url}/  (start a run, watch it stream, cancel it)`)
  console.log(
    `  try:    RUN=$(curl -sN -X POST -H 'content-type: application/json' -d '{"lines":10}' ${url}/api/runs | sed -E 's/.*"runId":"([^"]+)".*/\\1/') && curl -N ${url}/api/runs/$RUN/events`,
  )
  console.log(
    `  status: curl ${url}/api/runs/$RUN   list: curl '${url}/api/runs?status=active'   cancel: curl -X POST ${url}/api/runs/$RUN/cancel`,
  )
  console.log(`  logs:   ${runsLogDir}/<runId>/events.jsonl (+ state.json)`)
  reportEarlierRuns(srv.runs, runsLogDir)
  console.log('  Ctrl-C cancels active runs (runs.shutdownActive()) and exits.')
  if (process.env.DEMO_RUN !== '0') {
    // The embedded default: one run of the example agent, echoed here as it streams. (A stop
    // that comes meanwhile refuses or cancels it.)
    try {
      const reply = await fetch(`${url}/api/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ conversationId: 'demo', lines: 8 }),
      })
      const { runId } = await reply.json()
      if (runId !== undefined) {
        console.log(
          `\ndemo run ${runId} (DEMO_RUN=0 skips it); reattach with: curl -N -H 'Last-Event-ID: 3' ${url}/api/runs/${runId}/events\n`,
        )
      }
    } catch (err) {
      if (!stopping) console.error(`the demo run did not start: ${err.message ?? err}`)
    }
  }

  // E.g. a wrapper killed outright: see supervisor.mjs. EXIT_WITH_PARENT=0 for a detached start.
  if (process.env.EXIT_WITH_PARENT !== '0') exitWithParent(() => stop('parent process exited'))
}

const invokedDirectly = (() => {
  try {
    return (
      process.argv[1] != null && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))
    )
  } catch {
    return false
  }
})()
if (invokedDirectly) await main()
