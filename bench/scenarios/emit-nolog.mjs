// emit-nolog: 2,000,000 `text_delta` emits (80 B of JSON data each) interleaved round-robin over
// 1000 runs (one event per run per round, 2000 rounds, so 2000 emits per run), no runsLogDir, no
// client, maxEvents 2000 (the default of both implementations). --pattern burst: the loop never
// yields; --pattern yielding: it awaits setImmediate after every round (1000 emits).
// Metric: ms of the emit loop. Verified afterwards: every run's nextEventId - 1 and the id of its
// last retained record equal the emits per run, and run.events holds min(maxEvents, emits)
// records with consecutive ids.
import { EVENT, deltaData, emitPattern, gc, makeService, now, report, size, yieldToLoop } from './_common.mjs'

const yielding = emitPattern() === 'yielding'
const RUNS = size(1000)
const TOTAL = size(2_000_000)
const PER_RUN = TOTAL / RUNS
const MAX_EVENTS = 2000

const svc = makeService({ maxEvents: MAX_EVENTS })
const runs = []
for (let r = 0; r < RUNS; r++) {
  const run = svc.create({ projectId: 'bench', conversationId: `conv-${r % 100}` })
  run.status = 'running'
  runs.push(run)
}
gc()

const t0 = now()
for (let e = 0; e < PER_RUN; e++) {
  for (let r = 0; r < RUNS; r++) svc.emit(runs[r], EVENT, deltaData(e + r))
  if (yielding) await yieldToLoop()
}
const loopMs = now() - t0

// Verify (outside the timed loop).
const retained = Math.min(MAX_EVENTS, PER_RUN)
let bad = 0
let emitted = 0
for (let r = 0; r < RUNS; r++) {
  const run = runs[r]
  emitted += run.nextEventId - 1
  const events = run.events
  const last = events.at(-1)
  const first = events[0]
  const ok =
    run.nextEventId - 1 === PER_RUN &&
    events.length === retained &&
    last?.id === PER_RUN &&
    first?.id === PER_RUN - retained + 1 &&
    last.event === EVENT &&
    last.data?.type === 'text_delta' &&
    last.data.delta === deltaData(PER_RUN - 1 + r).delta
  if (!ok) bad++
}

report('emit-nolog', {
  runs: RUNS,
  emits: TOTAL,
  emitsPerRun: PER_RUN,
  loopMs,
  nsPerEmit: (loopMs * 1e6) / TOTAL,
  retainedPerRun: runs[0].events.length,
  lastIdRun0: runs[0].events.at(-1)?.id,
  verified: bad === 0 && emitted === TOTAL && Number.isInteger(PER_RUN),
})
process.exit(0)
