// emit-memory: 1000 runs x 2000 events retained (maxEvents 2000, no runsLogDir). Each event's
// data is the JSON.parse of an 80-byte agent line with its own 48-char delta (as a daemon gets
// it from an agent's stdout), interleaved across runs (one event per run per round, so 1000 emits a
// round). --pattern burst: the loop never yields; --pattern yielding: it awaits setImmediate after
// every round (the emitLoopMs then includes those turns of the event loop). After gc(): retained bytes per event as
// process RSS growth (counts native memory) and as V8 heapUsed + external growth; then the ms of
// one forced full gc() over the retained state.
import v8 from 'node:v8'
import { DELTAS, EVENT, deltaData, emitPattern, gc, makeService, now, report, size, yieldToLoop } from './_common.mjs'

const yielding = emitPattern() === 'yielding'

const RUNS = size(1000)
const EVENTS = size(2000)

function memory() {
  const m = process.memoryUsage()
  // V8's young generation: scratch space for short-lived objects whose size V8 grows under
  // allocation pressure and keeps; reported to explain RSS, not subtracted from it.
  const young = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')
  return {
    rss: m.rss,
    heapExt: m.heapUsed + m.external,
    heapUsed: m.heapUsed,
    external: m.external,
    youngGen: young ? young.space_size : 0,
  }
}

const svc = makeService({ maxEvents: 2000 })
const runs = []
// Warm the emit path on a throwaway service so JIT code and lazily built structures of either
// implementation are not counted as retained event memory.
{
  const warm = makeService({ maxEvents: 2000 })
  const run = warm.create({})
  for (let i = 0; i < 5000; i++) warm.emit(run, EVENT, deltaData(i))
  warm.finish(run, 'succeeded', 0, null)
}
gc()
gc()
const before = memory()

for (let r = 0; r < RUNS; r++) runs.push(svc.create({ projectId: 'bench', conversationId: `conv-${r % 100}` }))
const t0 = now()
for (let e = 0; e < EVENTS; e++) {
  const head = DELTAS[e & 255].slice(0, 40) + e.toString(36).padStart(4, '0')
  for (let r = 0; r < RUNS; r++) {
    const line = '{"type":"text_delta","delta":"' + head + r.toString(36).padStart(4, '0') + '"}'
    svc.emit(runs[r], EVENT, JSON.parse(line))
  }
  if (yielding) await yieldToLoop()
}
const t1 = now()

let g = now()
gc()
const gcFirstMs = now() - g
const after = memory()
g = now()
gc()
const gcMs = now() - g

const events = RUNS * EVENTS
let retained = 0
for (const run of runs) retained += run.nextEventId - 1
report('emit-memory', {
  runs: RUNS,
  eventsPerRun: EVENTS,
  rssBytesPerEvent: (after.rss - before.rss) / events,
  heapExtBytesPerEvent: (after.heapExt - before.heapExt) / events,
  heapUsedBytesPerEvent: (after.heapUsed - before.heapUsed) / events,
  externalBytesPerEvent: (after.external - before.external) / events,
  gcMs,
  gcFirstMs,
  emitLoopMs: t1 - t0,
  rssAfterMB: after.rss / 1048576,
  youngGenBeforeMB: before.youngGen / 1048576,
  youngGenAfterMB: after.youngGen / 1048576,
  heapUsedAfterMB: after.heapUsed / 1048576,
  verified: retained === events && runs[0].events.length === Math.min(EVENTS, 2000),
})
process.exit(0)
