// A small tour of chat-run-service with real child processes:
//   1. a run whose agent (a Node child in its own process group) streams lines to a console
//      SSE client and to <runsLogDir>/<runId>/events.jsonl, then exits;
//   2. a client that reattaches with Last-Event-ID and gets only what it missed;
//   3. a run that is canceled mid-way: SIGTERM to its process group, grandchild included.
// Usage: npm run demo            (logs go to a fresh temp directory)
//        RUNS_LOG_DIR=./runs npm run demo
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createChatRunService } from '../index.js'
import { startAgent } from './agent-process.mjs'

const runsLogDir = process.env.RUNS_LOG_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'chat-run-demo-'))

function consoleClient(label) {
  return {
    send: (event, data, id) => console.log(`  [${label}] #${id} ${event} ${JSON.stringify(data)}`),
    end: () => console.log(`  [${label}] stream ended`),
    cleanup: () => {},
  }
}

const runs = createChatRunService({
  createSseResponse: (res) => consoleClient(res.label),
  createSseErrorPayload: (code, message) => ({ error: { code, message } }),
  runsLogDir,
  ttlMs: 60_000,
})

// The agent (examples/agent.cjs): five lines over about a second, with a grandchild `sleep`.
const startRun = (run) => runs.start(run, () => startAgent(runs, run, { lines: 5, intervalMs: 200 }))

// Is any process of the group still running? On Linux, zombies (dead, waiting for their new
// parent to reap them) do not count; elsewhere fall back to kill(-pgid, 0).
function groupAlive(pgid) {
  if (process.platform === 'linux') {
    return fs.readdirSync('/proc').some((pid) => {
      if (!/^\d+$/.test(pid)) return false
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
        const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        return Number(pgrp) === pgid && state !== 'Z'
      } catch {
        return false
      }
    })
  }
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

// Group members die a moment after the signal: poll briefly.
async function groupGone(pgid) {
  for (let i = 0; i < 50 && groupAlive(pgid); i++) await new Promise((r) => setTimeout(r, 20))
  return !groupAlive(pgid)
}

console.log(`chat-run-service demo — JSONL logs under ${runsLogDir}\n`)

console.log('1. a run streamed live to a console client')
const run = runs.create({ projectId: 'demo', conversationId: 'conv-1' })
run.clients.add(consoleClient('live'))
startRun(run)
const body = await runs.wait(run)
console.log(`  -> ${body.status}, exit code ${body.exitCode}; log: ${body.eventsLogPath}\n`)

console.log('2. a client reattaching with Last-Event-ID: 3')
runs.stream(
  run,
  { get: (h) => (h === 'Last-Event-ID' ? '3' : undefined), query: {} },
  { label: 'reattach', on: () => {} },
)

console.log('\n3. a run canceled mid-way (SIGTERM to its process group)')
const doomed = runs.create({ projectId: 'demo', conversationId: 'conv-2' })
doomed.clients.add(consoleClient('doomed'))
startRun(doomed)
await new Promise((resolve) => setTimeout(resolve, 450))
const pgid = doomed.processGroupId
const canceled = await runs.cancel(doomed)
console.log(`  -> ${canceled.status} by ${canceled.signal}; process group ${pgid} gone: ${await groupGone(pgid)}`)

await runs.shutdownActive()
console.log(`\nruns in conversation conv-1: ${runs.list({ conversationId: 'conv-1' }).length}`)
for (const r of [run, doomed]) {
  const lines = fs.readFileSync(r.eventsLogPath, 'utf8').trim().split('\n')
  console.log(`${r.eventsLogPath}: ${lines.length} lines, last: ${lines.at(-1)}`)
}
console.log(`\ntry: tail -n +1 ${path.join(runsLogDir, '*', 'events.jsonl')}`)
