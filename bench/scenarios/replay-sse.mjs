// replay-sse: 500 finished runs x 2000 events; each is streamed with Last-Event-ID 1000 to a
// client whose send() builds the real SSE frame (`id:` / `event:` / `data: JSON.stringify(data)`).
// Metrics: ns per frame of the first pass over all runs and of a second (warm) pass.
import { EVENT, deltaData, gc, makeService, now, noopRes, report, size } from './_common.mjs'

const RUNS = size(500)
const EVENTS = size(2000)
const CURSOR = size(1000)

let frames = 0
let bytes = 0
let ends = 0
const client = {
  send(event, data, id) {
    const frame = 'id: ' + id + '\nevent: ' + event + '\ndata: ' + JSON.stringify(data) + '\n\n'
    bytes += frame.length
    frames++
  },
  end() {
    ends++
  },
  cleanup() {},
}
const svc = makeService({ maxEvents: 2000, createSseResponse: () => client })
const runs = []
for (let r = 0; r < RUNS; r++) {
  const run = svc.create({ projectId: 'bench', conversationId: `conv-${r % 100}` })
  for (let e = 0; e < EVENTS; e++) svc.emit(run, EVENT, deltaData(e + r))
  svc.finish(run, 'succeeded', 0, null)
  runs.push(run)
}
const req = { get: (name) => (name === 'Last-Event-ID' ? String(CURSOR) : undefined), query: {} }

function pass() {
  frames = 0
  bytes = 0
  ends = 0
  const t0 = now()
  for (let r = 0; r < RUNS; r++) svc.stream(runs[r], req, noopRes)
  const ms = now() - t0
  return { ms, frames, bytes, ends }
}

gc()
const first = pass()
const warm = pass()
// Records after the cursor: ids CURSOR+1 .. EVENTS+1 (the 'end' record), all still buffered.
const expected = RUNS * (EVENTS + 1 - CURSOR)
report('replay-sse', {
  runs: RUNS,
  eventsPerRun: EVENTS,
  cursor: CURSOR,
  nsPerFrameFirst: (first.ms * 1e6) / first.frames,
  nsPerFrameWarm: (warm.ms * 1e6) / warm.frames,
  firstPassMs: first.ms,
  warmPassMs: warm.ms,
  framesPerPass: first.frames,
  bytesPerPass: first.bytes,
  verified:
    first.frames === expected &&
    warm.frames === expected &&
    first.bytes === warm.bytes &&
    first.ends === RUNS &&
    warm.ends === RUNS,
})
process.exit(0)
