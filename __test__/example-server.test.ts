// The example daemon (examples/server.mjs) over HTTP, in-process, with its real agent processes:
// what its header comment promises about requests it refuses, a shutdown under a stream of new
// runs, and transcripts that end with 'end' when a cancel meets lines still in the pipe.
//
// Every agent is a child of this process in its own group; each test ends with the server's
// close() (shutdownActive), after which no group of a run it started may have a live member.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startServer } from '../examples/server.mjs'
import { groupAlive, notLinux, ROOT, waitFor } from './helpers'

type Server = Awaited<ReturnType<typeof startServer>>

let server: Server | null = null
let runsLogDir: string | null = null

async function start(opts: Parameters<typeof startServer>[0] = {}): Promise<Server> {
  runsLogDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-run-example-'))
  server = await startServer({ port: 0, runsLogDir, ...opts })
  return server
}

afterEach(async () => {
  if (server !== null) {
    const runs = server.runs.list({})
    await server.close()
    if (!notLinux) {
      for (const run of runs)
        if (typeof run.processGroupId === 'number') expect(groupAlive(run.processGroupId)).toBe(false)
    }
  }
  server = null
  if (runsLogDir !== null) fs.rmSync(runsLogDir, { recursive: true, force: true })
  runsLogDir = null
})

function post(url: string, body: string, contentType = 'application/json') {
  return fetch(`${url}/api/runs`, { method: 'POST', headers: { 'content-type': contentType }, body })
}

/** A request with the headers given as they are (fetch would not send another Host). */
function rawRequest(url: string, method: string, reqPath: string, headers: Record<string, string>) {
  return new Promise<number>((resolve, reject) => {
    const req = http.request(`${url}${reqPath}`, { method, headers }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
    req.end()
  })
}

describe('the example daemon', () => {
  it('answers only requests addressed to its own host, refuses a POST from another origin, and has no test endpoint unless asked', async () => {
    const { url, port } = await start({ agentLines: 1, lineIntervalMs: 1 })
    expect(await rawRequest(url, 'GET', '/api/runs', { host: `127.0.0.1:${port}` })).toBe(200)
    expect(await rawRequest(url, 'GET', '/api/runs', { host: `localhost:${port}` })).toBe(200)
    // DNS rebinding: another site's name pointed at 127.0.0.1.
    expect(await rawRequest(url, 'GET', '/api/runs', { host: `evil.example:${port}` })).toBe(421)
    // A cross-site form or fetch (no preflight for a POST without a body).
    expect(await rawRequest(url, 'POST', '/api/runs', { origin: 'https://evil.example' })).toBe(403)
    expect(server!.runs.list({})).toEqual([])
    // The daemon's own page may post.
    expect(await rawRequest(url, 'POST', '/api/runs', { origin: url })).toBe(202)
    const [run] = server!.runs.list({})
    expect(await rawRequest(url, 'POST', `/api/runs/${run.id}/drop-connections`, {})).toBe(404)
  })

  it.skipIf(notLinux)('a second daemon on the same RUNS_LOG_DIR refuses to start while the first runs', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-run-example-lock-'))
    const env = { ...process.env, RUNS_LOG_DIR: path.join(dir, 'runs'), PORT: '0', DEMO_RUN: '0' }
    const script = path.join(ROOT, 'examples', 'server.mjs')
    const first = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => first.once('exit', (code) => resolve(code)))
    try {
      let out = ''
      first.stdout!.on('data', (chunk) => (out += chunk))
      expect(await waitFor(() => out.includes('example daemon on'), 20_000)).toBe(true)
      expect(fs.readFileSync(`${env.RUNS_LOG_DIR}.lock`, 'utf8').trim()).toBe(String(first.pid))
      const second = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] })
      let err = ''
      second.stderr!.on('data', (chunk) => (err += chunk))
      const code = await new Promise<number | null>((resolve) => second.once('exit', (c) => resolve(c)))
      expect(code).toBe(1)
      expect(err).toContain(`another example daemon (pid ${first.pid})`)
      // Another path to the same directory (a symlink) takes the same lock.
      const link = path.join(dir, 'runs-link')
      fs.symlinkSync(env.RUNS_LOG_DIR, link)
      const third = spawn(process.execPath, [script], {
        env: { ...env, RUNS_LOG_DIR: link },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let thirdErr = ''
      third.stderr!.on('data', (chunk) => (thirdErr += chunk))
      expect(await new Promise<number | null>((resolve) => third.once('exit', (c) => resolve(c)))).toBe(1)
      expect(thirdErr).toContain(`another example daemon (pid ${first.pid})`)
    } finally {
      first.kill('SIGTERM')
      await exited
      fs.rmSync(dir, { recursive: true, force: true })
    }
    // The first one removed its lock on the way out.
    expect(fs.existsSync(`${env.RUNS_LOG_DIR}.lock`)).toBe(false)
  })

  it.skipIf(notLinux)(
    'a SIGTERM as soon as the demo agent exists still runs shutdownActive(): exit 0, nothing of the agent left',
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-run-example-early-'))
      const env = { ...process.env, RUNS_LOG_DIR: path.join(dir, 'runs'), PORT: '0', EXIT_WITH_PARENT: '0' }
      const daemon = spawn(process.execPath, [path.join(ROOT, 'examples', 'server.mjs')], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      daemon.stdout!.on('data', (chunk) => (out += chunk))
      const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)))
      // The demo agent: a child of the daemon running examples/agent.cjs, in its own group.
      const agentOf = (): number | null => {
        for (const name of fs.readdirSync('/proc')) {
          if (!/^\d+$/.test(name)) continue
          try {
            const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8')
            const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
            if (ppid !== daemon.pid) continue
            if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('agent.cjs')) return Number(name)
          } catch {
            // gone meanwhile
          }
        }
        return null
      }
      let agent: number | null = null
      try {
        expect(await waitFor(() => (agent = agentOf()) !== null, 20_000)).toBe(true)
        daemon.kill('SIGTERM')
        expect(await exited).toBe(0)
        expect(out).toContain('shutdownActive done')
        expect(await waitFor(() => !groupAlive(agent!), 5_000)).toBe(true)
      } finally {
        if (daemon.exitCode === null && daemon.signalCode === null) {
          daemon.kill('SIGKILL')
          await exited
        }
        if (agent !== null && groupAlive(agent)) process.kill(-agent, 'SIGKILL')
        fs.rmSync(dir, { recursive: true, force: true })
      }
    },
    30_000,
  )

  it('refuses a lines value that is not an integer or a digit string, and a body that is not JSON', async () => {
    const { url } = await start({ agentLines: 1, lineIntervalMs: 1 })
    for (const lines of ['true', '[2]', '"0x2"', '" 3 "', '1.5', '0', '10001', '{}']) {
      const reply = await post(url, `{"lines":${lines}}`)
      expect(reply.status, `lines ${lines}`).toBe(400)
    }
    for (const lines of ['2', '"2"']) {
      const reply = await post(url, `{"lines":${lines}}`)
      expect(reply.status, `lines ${lines}`).toBe(202)
    }
    for (const body of ['[1,2]', '[]']) expect((await post(url, body)).status, body).toBe(400)
    expect((await post(url, '{"lines":2}', 'application/x-www-form-urlencoded')).status).toBe(415)
    expect((await post(url, 'lines=2', 'text/plain')).status).toBe(415)
    expect((await fetch(`${url}/api/runs?status=active&status=failed`)).status).toBe(400)
  })

  it('a shutdown refuses new runs at once and cancels every run it accepted', async () => {
    const srv = await start({ agentLines: 50, lineIntervalMs: 20 })
    const accepted: string[] = []
    for (let i = 0; i < 3; i++) accepted.push((await (await post(srv.url, '{}')).json()).runId)
    const closing = srv.close()
    // Requests that reach the server after the shutdown began (a kept-alive connection, or one
    // racing it) must not start anything; new connections may be refused outright.
    const late = await Promise.all(
      Array.from({ length: 5 }, () =>
        post(srv.url, '{}').then(
          (reply) => reply.status,
          () => 'refused',
        ),
      ),
    )
    await closing
    expect(late.every((status) => status === 503 || status === 'refused')).toBe(true)
    const runs = srv.runs.list({})
    expect(runs.map((run: { id: string }) => run.id).sort()).toEqual([...accepted].sort())
    for (const run of runs) expect(srv.runs.statusBody(run).status).toBe('canceled')
  })

  it("a cancel that meets agent lines still in the pipe leaves 'end' as each run's last record", async () => {
    const srv = await start({ agentLines: 2000, lineIntervalMs: 1 })
    const ids: string[] = []
    for (let i = 0; i < 20; i++) ids.push((await (await post(srv.url, '{}')).json()).runId)
    await new Promise((resolve) => setTimeout(resolve, 100))
    await Promise.all(ids.map((id) => fetch(`${srv.url}/api/runs/${id}/cancel`, { method: 'POST' })))
    // Lines the pipes still held arrive after the verdicts.
    await new Promise((resolve) => setTimeout(resolve, 200))
    for (const id of ids) {
      const run = srv.runs.get(id)
      if (run === null) throw new Error(`run ${id} is gone`)
      const events = run.events.map((e: { event: string }) => e.event)
      expect(events.at(-1), id).toBe('end')
      expect(events.filter((event: string) => event === 'end')).toHaveLength(1)
    }
  })
})
