// lifecycle: 100000 runs, each: create, wait() registered, 10 text_delta emits, finish,
// `await` the wait() promise (resolved by finish with a status body). No log dir, no client.
// Metric: runs/s over the whole loop.
import { EVENT, deltaData, gc, makeService, now, report, size } from './_common.mjs'

const RUNS = size(100000)
const EMITS = 10

const svc = makeService({})
gc()
let succeeded = 0
const t0 = now()
for (let i = 0; i < RUNS; i++) {
  const run = svc.create({ projectId: 'bench', conversationId: `conv-${i % 100}` })
  const done = svc.wait(run)
  for (let e = 0; e < EMITS; e++) svc.emit(run, EVENT, deltaData(i + e))
  svc.finish(run, 'succeeded', 0, null)
  const body = await done
  if (body.status === 'succeeded' && body.id === run.id) succeeded++
}
const ms = now() - t0

report('lifecycle', {
  runs: RUNS,
  emitsPerRun: EMITS,
  runsPerSec: RUNS / (ms / 1000),
  loopMs: ms,
  verified: succeeded === RUNS && svc.list({}).length === RUNS,
})
process.exit(0)
