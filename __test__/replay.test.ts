// stream() replay: the compact batch the core hands to JS (crates/core/src/replay.rs) and the batch the
// facade keeps (weakly) for the next client of the same run. Every check compares what a
// client receives from a run that was replayed before (cache warm) with what it receives from
// an identical run that never was (straight from the core).
import { afterEach, describe, expect, it, vi } from 'vitest'
import { fakeClient, fakeReq, fakeRes, makeRuns, useTempDirs, type FakeClient } from './helpers'

/** One record as a client got it: [event, data, id]. */
type Frame = [unknown, unknown, unknown]

const framesOf = (client: FakeClient): Frame[] =>
  client.calls.flatMap((call) => (call.type === 'send' ? [[call.event, call.data, call.id] as Frame] : []))

function service(extra: Record<string, unknown> = {}) {
  const { runs: svc, sse } = makeRuns(extra)
  /** Streams `run` from `cursor` to a fresh client and returns what it got. */
  function replay(run: unknown, cursor: unknown) {
    svc.stream(run, fakeReq(cursor), fakeRes())
    const client = sse.at(-1)!
    return { frames: framesOf(client), ended: client.end.mock.calls.length }
  }
  return { svc, replay }
}

/** Emits a mixed history: several event names, absent data, null, nested values. */
function fill(svc: ReturnType<typeof service>['svc'], run: unknown, n: number) {
  for (let i = 0; i < n; i++) {
    const r = run as never
    if (i % 7 === 3) svc.emit(r, 'stdout', undefined)
    else if (i % 11 === 5) svc.emit(r, 'agent', null)
    else if (i % 13 === 6) svc.emit(r, 'tool', { nested: { list: [i, 'x', true, null] }, text: 'é ☃ \u2028' })
    else svc.emit(r, 'agent', { type: 'text_delta', delta: `chunk ${i}` })
  }
}

const CURSORS = ['-1', '0', '1', '1.5', '63', '64', '65', '100', '149', '150', '151', '500', 'abc', undefined]

const tempDir = useTempDirs('replay-log-')
afterEach(() => {
  vi.useRealTimers()
})

describe('stream() replay batch', () => {
  it('a warm run replays exactly what a never-replayed twin replays, for every cursor', () => {
    // One clock for both twins: their 'end' data carries terminalAt (LC-5).
    vi.useFakeTimers({ toFake: ['Date'] })
    const cold = service()
    const warm = service()
    for (const terminal of [false, true]) {
      for (const cursor of CURSORS) {
        const a = cold.svc.create({ projectId: 'p', conversationId: 'c' })
        const b = warm.svc.create({ projectId: 'p', conversationId: 'c' })
        fill(cold.svc, a, 150)
        fill(warm.svc, b, 150)
        if (terminal) {
          cold.svc.finish(a, 'succeeded', 0, null)
          warm.svc.finish(b, 'succeeded', 0, null)
        }
        // Warm the twin with several cursors, then compare.
        warm.replay(b, '0')
        warm.replay(b, '100')
        const expected = cold.replay(a, cursor)
        const got = warm.replay(b, cursor)
        expect(got, `cursor ${String(cursor)}, terminal ${terminal}`).toEqual(expected)
        expect(got.ended).toBe(terminal ? 1 : 0)
      }
    }
  })

  it('a run with one event name (the batch without per-record names) replays the same warm and cold', () => {
    const cold = service()
    const warm = service()
    for (const cursor of CURSORS) {
      const a = cold.svc.create({})
      const b = warm.svc.create({})
      for (let i = 0; i < 150; i++) {
        cold.svc.emit(a as never, 'agent', { type: 'text_delta', delta: `chunk ${i}` })
        warm.svc.emit(b as never, 'agent', { type: 'text_delta', delta: `chunk ${i}` })
      }
      warm.replay(b, '0')
      warm.replay(b, '140')
      const expected = cold.replay(a, cursor)
      expect(expected.frames.every((f) => f[0] === 'agent')).toBe(true)
      expect(warm.replay(b, cursor), `cursor ${String(cursor)}`).toEqual(expected)
    }
  })

  it('IMP-7: records emitted from inside sends of a one-name replay follow the snapshot once each, in order', () => {
    for (const warmFirst of [false, true]) {
      let run: any
      let emitted = 0
      const { runs: svc, sse } = makeRuns({}, () =>
        fakeClient({
          onSend: (_c, _e, _d, id) => {
            // Two records from inside the snapshot, one more from inside the first tail batch.
            if ((id === 3 || id === 4 || id === 6) && emitted < 3 && sse.length === (warmFirst ? 2 : 1)) {
              emitted++
              svc.emit(run, 'agent', { n: 5 + emitted })
            }
          },
        }),
      )
      run = svc.create({})
      for (let i = 1; i <= 5; i++) svc.emit(run, 'agent', { n: i })
      if (warmFirst) svc.stream(run, fakeReq('2'), fakeRes())
      svc.stream(run, fakeReq('2'), fakeRes())
      const frames = framesOf(sse.at(-1)!)
      expect(frames, `warmFirst ${warmFirst}`).toEqual([3, 4, 5, 6, 7, 8].map((id) => ['agent', { n: id }, id]))
    }
  })

  it('keeps absent data apart from null, and every event name, through the batch', () => {
    const { svc, replay } = service()
    const run = svc.create({})
    svc.emit(run, 'a', undefined)
    svc.emit(run, 'b', null)
    svc.emit(run, 'a', { k: [1, { deep: 'v' }] })
    svc.emit(run, 'c', 'text')
    for (const pass of [1, 2]) {
      const { frames } = replay(run, '0')
      expect(frames, `pass ${pass}`).toEqual([
        ['a', undefined, 1],
        ['b', null, 2],
        ['a', { k: [1, { deep: 'v' }] }, 3],
        ['c', 'text', 4],
      ])
      expect(Object.hasOwn(frames[0] as object, 1)).toBe(true)
    }
  })

  it('an emit after a replay is seen by the next client with the same cursor', () => {
    const { svc, replay } = service()
    const run = svc.create({})
    fill(svc, run, 70)
    const first = replay(run, '60').frames.map((f) => f[2])
    expect(first).toEqual([61, 62, 63, 64, 65, 66, 67, 68, 69, 70])
    svc.emit(run, 'agent', { late: true })
    const second = replay(run, '60').frames
    expect(second.map((f) => f[2])).toEqual([...first, 71])
    expect(second.at(-1)).toEqual(['agent', { late: true }, 71])
  })

  it('a client mutating replayed data never changes the stored history', () => {
    const { svc, replay } = service()
    const run = svc.create({})
    svc.emit(run, 'agent', { text: 'original' })
    const first = replay(run, '0').frames
    ;(first[0][1] as { text: string }).text = 'mutated by client'
    // Clients of one run may share data objects (as with upstream's array of records), but the
    // history is stored as JSON text in the core and is untouched.
    expect(run.events[0].data).toEqual({ text: 'original' })
    svc.emit(run, 'agent', { text: 'next' })
    expect(replay(run, '0').frames[0][1]).toEqual({ text: 'original' })
  })

  it('a client whose send drops or finishes the run is ended, not left attached', () => {
    for (const verdict of ['drop', 'finish'] as const) {
      let run: any
      const { runs: svc, sse } = makeRuns({}, () =>
        fakeClient({
          onSend: () => {
            if (verdict === 'drop') svc.drop(run)
            else svc.finish(run, 'succeeded', 0, null)
          },
        }),
      )
      run = svc.create({})
      svc.emit(run, 'agent', { n: 1 })
      svc.stream(run, fakeReq('0'), fakeRes())
      const ended = sse[0].end.mock.calls.length
      expect(ended, verdict).toBe(1)
      expect(run.clients.size, verdict).toBe(0)
    }
  })

  it('records read back from the log (IMP-3) replay the same as from memory', async () => {
    const dir = tempDir()
    const logged = service({ runsLogDir: dir, maxEvents: 20 })
    const memory = service({ maxEvents: 1000 })
    const a = logged.svc.create({})
    const b = memory.svc.create({})
    fill(logged.svc, a, 100)
    fill(memory.svc, b, 100)
    for (const cursor of ['0', '10', '79', '80', '81']) {
      expect(logged.replay(a, cursor).frames, `cursor ${cursor}`).toEqual(memory.replay(b, cursor).frames)
    }
    await logged.svc.shutdownActive({ graceMs: 0 })
  })
})
