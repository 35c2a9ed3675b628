// SPEC §10 stream(run, req, res): the cursor (STR-1..STR-4), live clients (STR-5, STR-6), the end
// record after late events (STR-8/IMP-8), replay while emitting (IMP-7), throwing clients (IMP-6)
// and old cursors backfilled from the log (STR-7/IMP-3).
import fs from 'node:fs'
import { beforeEach, describe, expect, it } from 'vitest'
import {
  cleanups,
  endData,
  ends,
  fakeClient,
  fakeReq,
  fakeRes,
  finishedRun4,
  type FakeClientOptions,
  makeRuns,
  readLines,
  sentIds,
  useTempDirs,
  waitFor,
} from './helpers'

describe('§10 stream(run, req, res)', () => {
  it('STR-1: calls createSseResponse(res) exactly once, uses only req.get/req.query/res.on (and res.closed/destroyed), returns undefined', () => {
    const { runs, responses } = makeRuns()
    const reqKeys: PropertyKey[] = []
    const resKeys: PropertyKey[] = []
    const baseReq = { get: () => undefined, query: {} } as any
    const baseRes = { on: () => {} } as any
    const req = new Proxy(baseReq, { get: (t, k) => (reqKeys.push(k), t[k]) })
    const res = new Proxy(baseRes, { get: (t, k) => (resKeys.push(k), t[k]) })

    const live = runs.create()
    expect(runs.stream(live, req, res)).toBeUndefined()
    const done = finishedRun4(runs)
    expect(runs.stream(done, req, res)).toBeUndefined()

    expect(responses).toHaveLength(2)
    expect(responses[0]).toBe(res)
    expect(responses[1]).toBe(res)
    expect(new Set(reqKeys.filter((k) => typeof k === 'string'))).toEqual(new Set(['get', 'query']))
    // (STR-5: a live run's response is asked whether its connection already closed.)
    expect(new Set(resKeys.filter((k) => typeof k === 'string'))).toEqual(new Set(['on', 'closed', 'destroyed']))
  })

  it("STR-2: reads the cursor via req.get('Last-Event-ID'), then req.query.after", () => {
    const { runs, sse } = makeRuns()
    const run = finishedRun4(runs)
    const req = fakeReq(undefined, '2')
    runs.stream(run, req, fakeRes())
    expect(req.get).toHaveBeenCalledWith('Last-Event-ID')
    expect(sentIds(sse[0])).toEqual([3, 4])

    const req2 = fakeReq(null, '3')
    runs.stream(run, req2, fakeRes())
    expect(sentIds(sse[1])).toEqual([4])
  })

  describe('STR-2/STR-3/STR-4 cursor table (finished run, buffer ids 1..4)', () => {
    const rows: Array<[string, any, boolean, any, number[]]> = [
      // [name, header, hasAfter, after, expected ids]
      ['absent / absent -> 0', undefined, false, undefined, [1, 2, 3, 4]],
      ["'0' / '3' -> 0 (header '0' wins)", '0', true, '3', [1, 2, 3, 4]],
      ["'' / ' ' -> 0", '', true, ' ', [1, 2, 3, 4]],
      ["'abc' / - -> NaN", 'abc', false, undefined, [1, 2, 3, 4]],
      ["absent / ['2'] -> 2", undefined, true, ['2'], [3, 4]],
      ["absent / ['1','2'] -> NaN", undefined, true, ['1', '2'], [1, 2, 3, 4]],
      ["absent / 'Infinity' -> Infinity", undefined, true, 'Infinity', [1, 2, 3, 4]],
      ["absent / '-1' -> -1", undefined, true, '-1', [1, 2, 3, 4]],
      ["'3.5' / - -> 3.5", '3.5', false, undefined, [4]],
      ["'4' / - -> 4 again (STR-4)", '4', false, undefined, [4]],
      ["'9' / - -> 4 again (STR-4)", '9', false, undefined, [4]],
      ["null header / '2' -> 2", null, true, '2', [3, 4]],
    ]
    for (const [name, header, hasAfter, after, expected] of rows) {
      it(`STR-2 row: ${name} sends ${expected.join(',')} then end()`, () => {
        const { runs, sse } = makeRuns()
        const run = finishedRun4(runs)
        const res = fakeRes()
        runs.stream(run, fakeReq(header, after, hasAfter), res)
        const c = sse[0]
        expect(sentIds(c)).toEqual(expected)
        expect(ends(c)).toBe(1)
        expect(c.calls.at(-1)).toEqual({ type: 'end' })
        expect(cleanups(c)).toBe(0)
        expect(res.on).not.toHaveBeenCalled()
      })
    }
  })

  it('STR-3: replay sends buffered records with id > cursor, in order, with their event and data', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    runs.emit(run, 'agent', { type: 'text_delta', delta: 'a' })
    runs.emit(run, 'stdout', { text: 'b' })
    runs.emit(run, 'agent', { type: 'text_delta', delta: 'c' })
    runs.stream(run, fakeReq(undefined, '1.5'), fakeRes())
    expect(sse[0].calls).toEqual([
      { type: 'send', event: 'stdout', data: { text: 'b' }, id: 2 },
      { type: 'send', event: 'agent', data: { type: 'text_delta', delta: 'c' }, id: 3 },
    ])
    // negative / zero cursors send all
    runs.stream(run, fakeReq('-7'), fakeRes())
    expect(sentIds(sse[1])).toEqual([1, 2, 3])
    runs.stream(run, fakeReq(undefined, '0', true), fakeRes())
    expect(sentIds(sse[2])).toEqual([1, 2, 3])
    // -Infinity sends every record
    runs.stream(run, fakeReq('-Infinity'), fakeRes())
    expect(sentIds(sse[3])).toEqual([1, 2, 3])
  })

  it('STR-4: a terminal run re-sends its last record once when nothing else was replayed; not registered, no res.on, no cleanup', () => {
    const { runs, sse } = makeRuns()
    const run = finishedRun4(runs)
    const res = fakeRes()
    runs.stream(run, fakeReq('4'), res)
    expect(sse[0].calls).toEqual([
      { type: 'send', event: 'end', data: endData(0, null, 'succeeded', expect.any(Number)), id: 4 },
      { type: 'end' },
    ])
    expect(run.clients.size).toBe(0)
    expect(res.on).not.toHaveBeenCalled()
  })

  it('STR-4: a terminal run with an empty buffer sends nothing and calls end() once', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    runs.drop(run) // canceled, no 'end' event, buffer empty
    const res = fakeRes()
    runs.stream(run, fakeReq('5'), res)
    expect(sse[0].calls).toEqual([{ type: 'end' }])
    expect(res.on).not.toHaveBeenCalled()
  })

  it('STR-4: a dropped run (no end record) re-sends its last buffered record', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    runs.emit(run, 'agent', { n: 1 })
    runs.emit(run, 'agent', { n: 2 })
    runs.drop(run)
    runs.stream(run, fakeReq('2'), fakeRes())
    expect(sse[0].calls).toEqual([{ type: 'send', event: 'agent', data: { n: 2 }, id: 2 }, { type: 'end' }])
  })

  it('STR-5: a live run registers the client and a close handler; finish ends it, close later cleans up', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    runs.emit(run, 'agent', { n: 1 })
    const res = fakeRes()
    runs.stream(run, fakeReq(undefined), res)
    const c = sse[0]
    expect(run.clients.has(c)).toBe(true)
    expect(res.on).toHaveBeenCalledTimes(1)
    expect(res.on.mock.calls[0][0]).toBe('close')
    expect(sentIds(c)).toEqual([1])

    runs.emit(run, 'agent', { n: 2 })
    expect(c.calls.at(-1)).toEqual({ type: 'send', event: 'agent', data: { n: 2 }, id: 2 })

    runs.finish(run, 'succeeded', 0, null)
    expect(ends(c)).toBe(1)
    expect(run.clients.size).toBe(0)
    expect(cleanups(c)).toBe(0)

    res.close()
    expect(cleanups(c)).toBe(1)
    expect(run.clients.size).toBe(0)
  })

  it('STR-5: close before finish removes the client and calls cleanup(); later emits skip it', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    const res = fakeRes()
    runs.stream(run, fakeReq(undefined), res)
    const c = sse[0]
    res.close()
    expect(run.clients.has(c)).toBe(false)
    expect(cleanups(c)).toBe(1)
    runs.emit(run, 'agent', { n: 1 })
    runs.finish(run, 'succeeded', 0, null)
    expect(c.calls).toEqual([{ type: 'cleanup' }])
  })

  it('STR-6: replay and registration happen in one turn: the next emit is delivered exactly once, without a gap', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    runs.emit(run, 'a', 1)
    runs.emit(run, 'a', 2)
    runs.stream(run, fakeReq('1'), fakeRes())
    runs.emit(run, 'a', 3)
    expect(sentIds(sse[0])).toEqual([2, 3])
  })

  it('IMP-7: a record emitted from inside a send during replay is delivered after the snapshot exactly once', () => {
    let runsRef: any
    let runRef: any
    let fired = false
    const { runs, sse } = makeRuns({}, () =>
      fakeClient({
        onSend: (_c, _e, _d, id) => {
          if (id === 1 && !fired) {
            fired = true
            runsRef.emit(runRef, 'agent', { n: 4 })
          }
        },
      }),
    )
    runsRef = runs
    const run = (runRef = runs.create())
    runs.emit(run, 'agent', { n: 1 })
    runs.emit(run, 'agent', { n: 2 })
    runs.emit(run, 'agent', { n: 3 })
    runs.stream(run, fakeReq(undefined), fakeRes())
    expect(sse[0].calls).toEqual([
      { type: 'send', event: 'agent', data: { n: 1 }, id: 1 },
      { type: 'send', event: 'agent', data: { n: 2 }, id: 2 },
      { type: 'send', event: 'agent', data: { n: 3 }, id: 3 },
      { type: 'send', event: 'agent', data: { n: 4 }, id: 4 },
    ])
    runs.emit(run, 'agent', { n: 5 })
    expect(sentIds(sse[0])).toEqual([1, 2, 3, 4, 5])
  })

  it("IMP-7: a client registered while a record is handed out (from onEventEmitted, or from another client's send, with an emit nested after it) gets every record exactly once", () => {
    let runsRef: any
    let attachInHook = false
    const { runs, sse } = makeRuns({
      onEventEmitted: (run: any, record: any) => {
        if (attachInHook && record.event === 'tool') {
          attachInHook = false
          runsRef.stream(run, fakeReq(String(record.id - 1)), fakeRes())
        }
      },
    })
    runsRef = runs
    const run = runs.create()
    runs.emit(run, 'a', 1)
    attachInHook = true
    runs.emit(run, 'tool', 2)
    runs.emit(run, 'b', 3)
    expect(sentIds(sse[0])).toEqual([2, 3])

    // A host client whose send of record 1 attaches a new client, then emits record 2.
    const other = runs.create()
    let nested = false
    other.clients.add({
      send: (_event: string, _data: unknown, id: number) => {
        if (id !== 1 || nested) return
        nested = true
        runs.stream(other, fakeReq('0'), fakeRes())
        runs.emit(other, 'inner', 2)
      },
      end: () => {},
      cleanup: () => {},
    })
    runs.emit(other, 'outer', 1)
    runs.emit(other, 'after', 3)
    runs.finish(other, 'succeeded', 0, null)
    expect(sentIds(sse[1])).toEqual([1, 2, 3, 4])
    expect(ends(sse[1])).toBe(1)
  })

  it('INP-5: a res whose on() throws, or a req whose query getter throws: the client is ended and not registered / the cursor is absent', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    runs.emit(run, 'a', 1)
    const res = {
      on() {
        throw new Error('on threw')
      },
    }
    expect(() => runs.stream(run, fakeReq(undefined), res)).toThrow('on threw')
    expect(run.clients.size).toBe(0)
    expect(ends(sse[0])).toBe(1)
    const req = {
      get: () => undefined,
      get query() {
        throw new Error('query threw')
      },
    }
    runs.stream(run, req, fakeRes())
    expect(sentIds(sse[1])).toEqual([1])
    expect(run.clients.has(sse[1])).toBe(true)
  })

  it('STR-5: a response whose connection already closed (the client hung up before stream ran) gets cleanup() and is not registered', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    runs.emit(run, 'a', 1)
    for (const state of [{ closed: true }, { destroyed: true }]) {
      const res = Object.assign(fakeRes(), state)
      runs.stream(run, fakeReq(undefined), res)
    }
    expect(run.clients.size).toBe(0)
    expect(sse.map((client) => cleanups(client))).toEqual([1, 1])
    runs.emit(run, 'b', 2)
    expect(sse.map((client) => sentIds(client))).toEqual([[1], [1]])
  })

  it('STR-3/STR-4: a replay that re-sent only the last record (a cursor past the end) is not reused for an earlier cursor', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create()
    for (const n of [1, 2, 3]) runs.emit(run, 'agent', n)
    runs.finish(run, 'succeeded', 0, null)
    runs.emit(run, 'diagnostic', { late: true })
    runs.stream(run, fakeReq('3'), fakeRes())
    runs.stream(run, fakeReq('9'), fakeRes())
    runs.stream(run, fakeReq('3'), fakeRes())
    expect(sse.map((client) => sentIds(client))).toEqual([[4, 5], [4], [4, 5]])
  })

  it('IMP-7: with a full ring trimmed during replay, no record is skipped or duplicated', () => {
    let runsRef: any
    let runRef: any
    let fired = false
    const { runs, sse } = makeRuns({ maxEvents: 3 }, () =>
      fakeClient({
        onSend: (_c, _e, _d, id) => {
          if (id === 1 && !fired) {
            fired = true
            runsRef.emit(runRef, 'agent', { n: 4 })
            runsRef.emit(runRef, 'agent', { n: 5 })
          }
        },
      }),
    )
    runsRef = runs
    const run = (runRef = runs.create())
    for (let n = 1; n <= 3; n++) runs.emit(run, 'agent', { n })
    runs.stream(run, fakeReq(undefined), fakeRes())
    expect(sentIds(sse[0])).toEqual([1, 2, 3, 4, 5])
  })

  it('IMP-7: records emitted from inside a replay send that the ring trims before the replay ends (no log) still reach the client', () => {
    let runsRef: any
    let runRef: any
    let fired = false
    const { runs, sse } = makeRuns({ maxEvents: 2 }, () =>
      fakeClient({
        onSend: () => {
          if (fired) return
          fired = true
          for (let n = 0; n < 3; n++) runsRef.emit(runRef, 'agent', { nested: n })
        },
      }),
    )
    runsRef = runs
    const run = (runRef = runs.create())
    runs.emit(run, 'agent', { n: 1 })
    runs.stream(run, fakeReq(undefined), fakeRes())
    runs.emit(run, 'agent', { n: 5 })
    expect(sentIds(sse[0])).toEqual([1, 2, 3, 4, 5])
    expect(sse[0].calls.slice(1, 4).map((call: any) => call.data)).toEqual([
      { nested: 0 },
      { nested: 1 },
      { nested: 2 },
    ])
  })

  it('STR-8/IMP-8: after a late event, a client at the last id gets the end record, not the late one', () => {
    const { runs, sse } = makeRuns()
    const run = finishedRun4(runs)
    runs.emit(run, 'agent', { late: true }) // id 5, after end
    runs.stream(run, fakeReq('5'), fakeRes())
    expect(sse[0].calls).toEqual([
      { type: 'send', event: 'end', data: endData(0, null, 'succeeded', expect.any(Number)), id: 4 },
      { type: 'end' },
    ])
  })

  it('IMP-6: a throwing client in stream replay gets every send, end() still runs and stream() does not throw', () => {
    const { runs, sse } = makeRuns({}, () => fakeClient({ throwing: true }))
    const run = finishedRun4(runs)
    expect(() => runs.stream(run, fakeReq(undefined), fakeRes())).not.toThrow()
    expect(sse[0].calls.map((c) => (c.type === 'send' ? c.id : c.type))).toEqual([1, 2, 3, 4, 'end'])

    const live = runs.create()
    runs.emit(live, 'a', 1)
    runs.emit(live, 'a', 2)
    const res = fakeRes()
    expect(() => runs.stream(live, fakeReq(undefined), res)).not.toThrow()
    expect(sentIds(sse[1])).toEqual([1, 2])
    expect(live.clients.has(sse[1])).toBe(true)
    expect(res.on).toHaveBeenCalledTimes(1)
    // a throwing registered client does not break emit for others
    const other = fakeClient()
    live.clients.add(other)
    expect(() => runs.emit(live, 'a', 3)).not.toThrow()
    expect(sentIds(other)).toEqual([3])
    expect(() => res.close()).not.toThrow()
    expect(live.clients.has(sse[1])).toBe(false)
  })

  describe('STR-7/IMP-3: old cursors are backfilled from the log', () => {
    const tempDir = useTempDirs('spec-str7-')
    let tmp: string
    beforeEach(() => {
      tmp = tempDir()
    })

    async function trimmedFinishedRun() {
      const { runs, sse } = makeRuns({ maxEvents: 3, runsLogDir: tmp })
      const run = runs.create()
      for (let n = 1; n <= 6; n++) runs.emit(run, 'agent', { n })
      runs.finish(run, 'succeeded', 0, null) // end = id 7; buffer 5,6,7
      await runs.shutdownActive() // flush barrier
      expect(run.events.map((e: any) => e.id)).toEqual([5, 6, 7])
      return { runs, sse, run }
    }

    it('IMP-3: cursor 1 with buffer 5..7 sends 2,3,4 from the log then 5,6,7, exactly once', async () => {
      const { runs, sse, run } = await trimmedFinishedRun()
      runs.stream(run, fakeReq('1'), fakeRes())
      expect(sse[0].calls).toEqual([
        { type: 'send', event: 'agent', data: { n: 2 }, id: 2 },
        { type: 'send', event: 'agent', data: { n: 3 }, id: 3 },
        { type: 'send', event: 'agent', data: { n: 4 }, id: 4 },
        { type: 'send', event: 'agent', data: { n: 5 }, id: 5 },
        { type: 'send', event: 'agent', data: { n: 6 }, id: 6 },
        { type: 'send', event: 'end', data: endData(0, null, 'succeeded', expect.any(Number)), id: 7 },
        { type: 'end' },
      ])
    })

    it('IMP-3: NaN, negative and absent cursors count as 0 and backfill everything', async () => {
      const { runs, sse, run } = await trimmedFinishedRun()
      runs.stream(run, fakeReq('abc'), fakeRes())
      runs.stream(run, fakeReq(undefined, '-5'), fakeRes())
      runs.stream(run, fakeReq(undefined), fakeRes())
      for (const c of sse) expect(sentIds(c)).toEqual([1, 2, 3, 4, 5, 6, 7])
    })

    it('IMP-3: a cursor at oldest-1 needs no backfill', async () => {
      const { runs, sse, run } = await trimmedFinishedRun()
      runs.stream(run, fakeReq('4'), fakeRes())
      expect(sentIds(sse[0])).toEqual([5, 6, 7])
    })

    it('IMP-3: unreadable lines are skipped', async () => {
      const { runs, sse, run } = await trimmedFinishedRun()
      const lines = readLines(run.eventsLogPath)
      expect(lines).toHaveLength(7)
      lines[1] = '{not json'
      fs.writeFileSync(run.eventsLogPath, lines.join('\n') + '\n')
      runs.stream(run, fakeReq('0'), fakeRes())
      expect(sentIds(sse[0])).toEqual([1, 3, 4, 5, 6, 7])
    })

    it('IMP-3, LC-2: a foreign line (an id above 2^52) or one line out of place hides none of the records after it', async () => {
      const { runs, sse, run } = await trimmedFinishedRun()
      const lines = readLines(run.eventsLogPath)
      // After id 1, a foreign line; the line of id 3 replaced by a stray id 100; a copy of id 2.
      lines.splice(1, 0, '{"id":4503599627370497,"event":"foreign","data":null,"timestamp":1}')
      lines[3] = '{"id":100,"event":"stray","data":null,"timestamp":1}'
      lines.splice(5, 0, lines[2])
      fs.writeFileSync(run.eventsLogPath, lines.join('\n') + '\n')
      runs.stream(run, fakeReq('0'), fakeRes())
      expect(sentIds(sse[0])).toEqual([1, 2, 4, 5, 6, 7])
      // A new service hydrates the run with its 'end' as the last record, and a client
      // reattaching at it is sent that 'end' (IMP-8).
      const later = makeRuns({ maxEvents: 3, runsLogDir: tmp })
      const again = later.runs.get(run.id)
      expect(again.events.map((e: any) => [e.id, e.event])).toEqual([
        [5, 'agent'],
        [6, 'agent'],
        [7, 'end'],
      ])
      expect(again.nextEventId).toBe(8)
      later.runs.stream(again, fakeReq('7'), fakeRes())
      expect(later.sse[0].calls.map((c: any) => c.type + (c.id ?? ''))).toEqual(['send7', 'end'])
      later.runs.stream(again, fakeReq('0'), fakeRes())
      expect(sentIds(later.sse[1])).toEqual([1, 2, 4, 5, 6, 7])
    })

    it('IMP-3: a live run reattaching at an old cursor gets the full transcript, then live events', async () => {
      const { runs, sse } = makeRuns({ maxEvents: 2, runsLogDir: tmp })
      const run = runs.create()
      for (let n = 1; n <= 5; n++) runs.emit(run, 'agent', { n })
      expect(await waitFor(() => readLines(run.eventsLogPath).length >= 5)).toBe(true)
      runs.stream(run, fakeReq(undefined, '0'), fakeRes())
      runs.emit(run, 'agent', { n: 6 })
      expect(sentIds(sse[0])).toEqual([1, 2, 3, 4, 5, 6])
    })

    it('IMP-3: without a log directory nothing is recovered (STR-3 only)', () => {
      const { runs, sse } = makeRuns({ maxEvents: 3 })
      const run = runs.create()
      for (let n = 1; n <= 6; n++) runs.emit(run, 'agent', { n })
      runs.finish(run, 'succeeded', 0, null)
      runs.stream(run, fakeReq('1'), fakeRes())
      expect(sentIds(sse[0])).toEqual([5, 6, 7])
    })
  })
})

describe('EMT-2, IMP-7, LC-6: records handed out from inside a hand-out reach every client in id order', () => {
  // Two live clients; `b` is registered after `a`, so a send to `a` runs before `b` got the record.
  function twoClients(runs: any, run: any, onSendA?: FakeClientOptions['onSend']) {
    const a = fakeClient({ name: 'a', onSend: onSendA })
    const b = fakeClient({ name: 'b' })
    run.clients.add(a)
    run.clients.add(b)
    return { a, b }
  }
  const transcript = (client: ReturnType<typeof fakeClient>) =>
    client.calls.map((call) => (call.type === 'send' ? `${call.id}:${call.event}` : call.type))

  it('an emit from onEventEmitted is sent after the record whose hook emitted it', () => {
    let runs: any
    ;({ runs } = makeRuns({
      onEventEmitted: (run: any, record: any) => {
        if (record.event === 'tool_call') runs.emit(run, 'tool_note', {})
      },
    } as any))
    const run = runs.create()
    const { a, b } = twoClients(runs, run)
    runs.emit(run, 'stdout', {})
    runs.emit(run, 'tool_call', {})
    runs.emit(run, 'stdout', {})
    const expected = ['1:stdout', '2:tool_call', '3:tool_note', '4:stdout']
    expect(run.events.map((e: any) => `${e.id}:${e.event}`)).toEqual(expected)
    expect(transcript(a)).toEqual(expected)
    expect(transcript(b)).toEqual(expected)
  })

  it('records emitted from the hook of a record that a hook emitted keep id order (a chain of hooks)', () => {
    let runs: any
    ;({ runs } = makeRuns({
      onEventEmitted: (run: any, record: any) => {
        if (record.event === 'tool_call') runs.emit(run, 'tool_started', {})
        if (record.event === 'tool_started') runs.emit(run, 'progress', {})
      },
    } as any))
    const run = runs.create()
    const { a, b } = twoClients(runs, run)
    runs.emit(run, 'tool_call', {})
    runs.emit(run, 'stdout', {})
    const expected = ['1:tool_call', '2:tool_started', '3:progress', '4:stdout']
    expect(run.events.map((e: any) => `${e.id}:${e.event}`)).toEqual(expected)
    expect(transcript(a)).toEqual(expected)
    expect(transcript(b)).toEqual(expected)
  })

  it('a finish from the hook of a record that a hook emitted hands that record out before the end', () => {
    let runs: any
    ;({ runs } = makeRuns({
      onEventEmitted: (run: any, record: any) => {
        if (record.event === 'agent_exit') runs.emit(run, 'result', { ok: true })
        if (record.event === 'result') runs.finish(run, 'succeeded', 0, null)
      },
    } as any))
    const run = runs.create()
    const { a, b } = twoClients(runs, run)
    runs.emit(run, 'agent_exit', {})
    const expected = ['1:agent_exit', '2:result', '3:end']
    expect(run.events.map((e: any) => `${e.id}:${e.event}`)).toEqual(expected)
    expect(transcript(a)).toEqual([...expected, 'end'])
    expect(transcript(b)).toEqual([...expected, 'end'])
  })

  it("STR-6, STR-4: what the response's on() does to the run (emit, finish, drop) reaches the client; an ended run's client is not registered", () => {
    for (const act of ['emit', 'finish', 'drop'] as const) {
      const { runs, sse } = makeRuns()
      const run = runs.create()
      runs.emit(run, 'agent', { n: 1 })
      const res = fakeRes()
      res.on.mockImplementation((event: string, handler: () => void) => {
        ;(res.handlers[event] ??= []).push(handler)
        if (act === 'emit') runs.emit(run, 'agent', { n: 2 })
        else if (act === 'finish') runs.finish(run, 'succeeded', 0, null)
        else runs.drop(run)
      })
      runs.stream(run, fakeReq(), res)
      runs.emit(run, 'agent', { n: 3 })
      const client = sse[0]
      if (act === 'emit') {
        expect(sentIds(client)).toEqual([1, 2, 3])
        expect(run.clients.has(client)).toBe(true)
      } else {
        expect(sentIds(client)).toEqual(act === 'finish' ? [1, 2] : [1])
        expect(ends(client)).toBe(1)
        expect(run.clients.has(client)).toBe(false)
      }
    }
  })

  it("an emit from a client's send reaches the clients after it in id order", () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const { a, b } = twoClients(runs, run, (_client, event) => {
      if (event === 'ping') runs.emit(run, 'pong', {})
    })
    runs.emit(run, 'ping', {})
    expect(transcript(a)).toEqual(['1:ping', '2:pong'])
    expect(transcript(b)).toEqual(['1:ping', '2:pong'])
  })

  it('a finish, fail or cancel from onEventEmitted or a send still hands the record to every client, then end', async () => {
    for (const how of ['finish', 'fail', 'cancel', 'send-finish'] as const) {
      let runs: any
      ;({ runs } = makeRuns({
        onEventEmitted: (run: any, record: any) => {
          if (record.event !== 'result') return
          if (how === 'finish') runs.finish(run, 'succeeded', 0, null)
          if (how === 'fail') runs.fail(run, 'AGENT_EXECUTION_FAILED', 'boom')
          if (how === 'cancel') void runs.cancel(run, 'user')
        },
      } as any))
      const run = runs.create()
      const { a, b } = twoClients(runs, run, (_client, event) => {
        if (how === 'send-finish' && event === 'result') runs.finish(run, 'succeeded', 0, null)
      })
      runs.emit(run, 'stdout', {})
      runs.emit(run, 'result', {})
      const recorded = run.events.map((e: any) => `${e.id}:${e.event}`)
      expect(recorded.slice(0, 2), how).toEqual(['1:stdout', '2:result'])
      expect(recorded.at(-1), how).toMatch(/:end$/)
      for (const client of [a, b]) expect(transcript(client), `${how} ${client.name}`).toEqual([...recorded, 'end'])
    }
  })

  it("a client attached from onTerminal or run.onFinalize gets the 'end' record, then end()", () => {
    for (const where of ['onTerminal', 'onFinalize'] as const) {
      const attached: ReturnType<typeof fakeClient>[] = []
      let runs: any
      const attach = (run: any) => {
        runs.stream(run, fakeReq('1'), fakeRes())
        attached.push(lastClient!)
      }
      let lastClient: ReturnType<typeof fakeClient> | null = null
      ;({ runs } = makeRuns(
        where === 'onTerminal' ? ({ onTerminal: (run: any) => attach(run) } as any) : {},
        () => (lastClient = fakeClient()),
      ))
      const run = runs.create()
      if (where === 'onFinalize') run.onFinalize = () => attach(run)
      runs.emit(run, 'stdout', {})
      runs.emit(run, 'stdout', {})
      runs.finish(run, 'succeeded', 0, null)
      expect(attached, where).toHaveLength(1)
      expect(transcript(attached[0]), where).toEqual(['2:stdout', '3:end', 'end'])
    }
  })

  it("a client attached from onTerminal with the last id as its cursor gets only the 'end' record, then end() (no STR-4 re-send)", () => {
    let client: ReturnType<typeof fakeClient> | null = null
    let runs: any
    ;({ runs } = makeRuns({ onTerminal: (run: any) => runs.stream(run, fakeReq('2'), fakeRes()) } as any, () => {
      client = fakeClient()
      return client
    }))
    const run = runs.create()
    runs.emit(run, 'stdout', {})
    runs.emit(run, 'stdout', {})
    runs.finish(run, 'succeeded', 0, null)
    expect(client).not.toBeNull()
    expect(transcript(client!)).toEqual(['3:end', 'end'])
  })
})
