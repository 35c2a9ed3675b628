// The example daemon (examples/server.mjs) over HTTP, in-process, with its real agent processes:
// what its header comment promises about requests it refuses, a shutdown under a stream of new
// runs, and transcripts that end with 'end' when a cancel meets lines still in the pipe.
//
// Every agent is a child of this process in its own group; each test ends with the server's
// close() (shutdownActive), after which no group of a run it started may have a live member.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startServer } from '../examples/server.mjs'
import { groupAlive, notLinux } from './helpers'

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

describe('the example daemon', () => {
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
