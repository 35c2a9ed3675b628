// emit-persist: 200 runs x 2000 `text_delta` events (80 B of JSON data each), runsLogDir set,
// one SSE client per run. Events arrive interleaved across runs (one event per run per round, so
// 200 emits a round). --pattern yielding: the loop yields to the event loop (setImmediate) after
// every round, as a daemon does between the stdout chunks of its agents; --pattern burst: it never
// yields, as when a burst of agent output arrives at once (write streams / the writer queue absorb
// all of it, and the flushing happens after the loop). Metrics: events/s of the emit loop; ms from loop start until every byte
// is on disk (all runs finished, then `await shutdownActive()`, which resolves after the flush
// barrier (native) or after every write stream closed (baseline)). Line counts are verified.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  EVENT,
  deltaData,
  emitPattern,
  gc,
  makeService,
  now,
  noopRes,
  report,
  size,
  yieldToLoop,
  impl,
} from './_common.mjs'

const yielding = emitPattern() === 'yielding'

const RUNS = size(200)
const EVENTS = size(2000)

const dir = fs.mkdtempSync(path.join(os.tmpdir(), `chat-run-bench-persist-${impl}-`))
let sends = 0
const client = {
  send() {
    sends++
  },
  end() {},
  cleanup() {},
}
const svc = makeService({ runsLogDir: dir, createSseResponse: () => client })
const req = { get: () => undefined, query: {} }
const runs = []
for (let r = 0; r < RUNS; r++) {
  const run = svc.create({ projectId: 'bench', conversationId: `conv-${r}` })
  run.status = 'running'
  svc.stream(run, req, noopRes)
  runs.push(run)
}
gc()

const t0 = now()
for (let e = 0; e < EVENTS; e++) {
  for (let r = 0; r < RUNS; r++) {
    svc.emit(runs[r], EVENT, deltaData(e + r))
  }
  if (yielding) await yieldToLoop()
}
const t1 = now()
for (const run of runs) svc.finish(run, 'succeeded', 0, null)
await svc.shutdownActive()
const t2 = now()

// Verify: one file per run, EVENTS + 1 lines, the last one the 'end' record.
let files = 0
let lines = 0
let bytes = 0
let bad = 0
for (const run of runs) {
  const text = fs.readFileSync(run.eventsLogPath, 'utf8')
  files++
  bytes += Buffer.byteLength(text)
  let n = 0
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++
  lines += n
  const last = JSON.parse(text.slice(text.lastIndexOf('\n', text.length - 2) + 1))
  if (n !== EVENTS + 1 || last.event !== 'end' || last.id !== EVENTS + 1) bad++
}
fs.rmSync(dir, { recursive: true, force: true })

const events = RUNS * EVENTS
report('emit-persist', {
  runs: RUNS,
  eventsPerRun: EVENTS,
  eventsPerSec: events / ((t1 - t0) / 1000),
  durableMs: t2 - t0,
  loopMs: t1 - t0,
  finishToDurableMs: t2 - t1,
  sends,
  files,
  lines,
  bytesOnDisk: bytes,
  verified: bad === 0 && files === RUNS && lines === RUNS * (EVENTS + 1) && sends === events + RUNS,
  maxRssMB: process.resourceUsage().maxRSS / 1024,
})
process.exit(0)
