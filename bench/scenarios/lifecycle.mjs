// lifecycle: 100000 runs, each: create, wait() registered, 10 text_delta emits, finish,
// `await` the wait() promise (resolved by finish with a status body). No log dir, no client.
// A round is 20 runs (200 emits, as a round of emit-persist). --pattern burst: the loop never
// yields to the event loop (the `await` of a resolved wait() only drains microtasks);
// --pattern yielding: it awaits setImmediate after every round. Metric: runs/s over the whole loop.
import { EVENT, deltaData, emitPattern, gc, makeService, now, report, size, yieldToLoop } from './_common.mjs'

const yielding = emitPattern() === 'yielding'
const RUNS = size(100000)
const EMITS = 10
const RUNS_PER_ROUND = 20

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
  if (yielding && (i + 1) % RUNS_PER_ROUND === 0) await yieldToLoop()
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
