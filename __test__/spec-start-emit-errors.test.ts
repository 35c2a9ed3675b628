// SPEC §7 start (STA-1..STA-6) and emit (EMT-1..EMT-6, with IMP-1 and LOG-6 where they meet), and
// §8 error extraction from 'error' events (ERR-1..ERR-4).
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { endData, fakeClient, flush, makeRuns, notLinux, openFdsOn, readLines, sleep, useTempDirs } from './helpers'

const tempDir = useTempDirs('spec-start-emit-errors-')

afterEach(() => {
  vi.useRealTimers()
  vi.restoreAllMocks()
})

describe('§7 start / emit (STA, EMT)', () => {
  it('STA-1: start sets a new analyticsTelemetry: previous own enumerable props, startRequestedAt overwritten in place', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_000)
    const { runs } = makeRuns()
    const run = runs.create()
    runs.start(run, () => Promise.resolve())
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: 1_000 })

    const prev: any = { a: 1, startRequestedAt: 5, z: 2 }
    Object.defineProperty(prev, 'hidden', { value: 1, enumerable: false })
    run.analyticsTelemetry = prev
    vi.setSystemTime(2_000)
    runs.start(run, () => Promise.resolve())
    expect(run.analyticsTelemetry).not.toBe(prev)
    expect(Object.keys(run.analyticsTelemetry)).toEqual(['a', 'startRequestedAt', 'z'])
    expect(run.analyticsTelemetry).toEqual({ a: 1, startRequestedAt: 2_000, z: 2 })
    expect('hidden' in run.analyticsTelemetry).toBe(false)
    expect(prev.startRequestedAt).toBe(5)

    run.analyticsTelemetry = null
    runs.start(run, () => Promise.resolve())
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: 2_000 })
  })

  it('STA-2: starter(run) is called synchronously, exactly once; start never changes status', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const starter = vi.fn((_run: unknown) => Promise.resolve())
    runs.start(run, starter)
    expect(starter).toHaveBeenCalledTimes(1)
    expect(starter.mock.calls[0][0]).toBe(run)
    expect(run.status).toBe('queued')
    run.status = 'running'
    runs.start(run, () => Promise.resolve())
    expect(run.status).toBe('running')
  })

  it('STA-3: a synchronous throw propagates; the telemetry stamp stays and nothing else changes', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(3_000)
    const { runs } = makeRuns()
    const run = runs.create()
    vi.setSystemTime(4_000)
    const boom = new Error('sync boom')
    expect(() =>
      runs.start(run, () => {
        throw boom
      }),
    ).toThrow(boom)
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: 4_000 })
    expect(run.status).toBe('queued')
    expect(run.updatedAt).toBe(3_000)
    expect(run.events).toEqual([])
    expect(run.error).toBeNull()
  })

  it('STA-4: a starter returning a non-thenable makes start() throw a TypeError; .catch is called on what it returns', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    for (const value of [undefined, null, 5, 'x', {}, { then() {} }]) {
      expect(() => runs.start(run, () => value)).toThrow(TypeError)
    }
    const thenable = { catch: vi.fn() }
    expect(runs.start(run, () => thenable)).toBe(run)
    expect(thenable.catch).toHaveBeenCalledTimes(1)
    expect(typeof thenable.catch.mock.calls[0][0]).toBe('function')
    expect(run.status).toBe('queued')
  })

  it('STA-5: a rejection calls fail(run, "AGENT_EXECUTION_FAILED", message); fulfilment is ignored', async () => {
    const { runs, createSseErrorPayload } = makeRuns()
    const ok = runs.create()
    runs.start(ok, () => Promise.resolve('value'))
    const errRun = runs.create()
    runs.start(errRun, () => Promise.reject(new Error('boom')))
    const strRun = runs.create()
    runs.start(strRun, () => Promise.reject('plain reason'))
    const objRun = runs.create()
    runs.start(objRun, () => Promise.reject({ message: 'not an Error' }))
    expect(errRun.status).toBe('queued')
    await flush()

    expect(ok.status).toBe('queued')
    expect(ok.events).toEqual([])

    expect(createSseErrorPayload).toHaveBeenCalledTimes(3)
    expect(createSseErrorPayload.mock.calls[0]).toEqual(['AGENT_EXECUTION_FAILED', 'boom', {}])
    expect(createSseErrorPayload.mock.calls[1]).toEqual(['AGENT_EXECUTION_FAILED', 'plain reason', {}])
    expect(createSseErrorPayload.mock.calls[2]).toEqual(['AGENT_EXECUTION_FAILED', '[object Object]', {}])
    expect(errRun).toMatchObject({
      status: 'failed',
      exitCode: 1,
      signal: null,
      error: 'boom',
      errorCode: 'AGENT_EXECUTION_FAILED',
    })
    expect(errRun.events.map((e: any) => e.event)).toEqual(['error', 'end'])
    expect(errRun.events[1].data).toEqual(endData(1, null, 'failed', errRun.events[1].timestamp))
    expect(strRun).toMatchObject({ status: 'failed', error: 'plain reason' })
    expect(objRun).toMatchObject({ status: 'failed', error: '[object Object]' })
  })

  it('STA-6: start returns run synchronously; repeated starts and starts on terminal runs are not blocked', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const starter = vi.fn(() => Promise.resolve())
    expect(runs.start(run, starter)).toBe(run)
    expect(runs.start(run, starter)).toBe(run)
    runs.finish(run, 'succeeded', 0, null)
    expect(runs.start(run, starter)).toBe(run)
    expect(starter).toHaveBeenCalledTimes(3)
    expect(run.status).toBe('succeeded')
  })

  it("EMT-1: emit returns {id,event,data,timestamp} with the caller's data object; run.events.at(-1) deep-equals it", () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_717_171_717_171)
    const { runs } = makeRuns()
    const run = runs.create()
    const data = { type: 'text_delta', delta: 'hello' }
    const rec = runs.emit(run, 'agent', data)
    expect(Object.keys(rec)).toEqual(['id', 'event', 'data', 'timestamp'])
    expect(rec.data).toBe(data)
    expect(rec).toEqual({ id: 1, event: 'agent', data, timestamp: 1_717_171_717_171 })
    expect(run.events.at(-1)).toEqual(rec)
  })

  it('EMT-1: event is not validated and is stored as given', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const weird = ['', 'Ünïcødé \u2028 evt', 'end', 'x'.repeat(300)]
    for (const ev of weird) expect(runs.emit(run, ev, 1).event).toBe(ev)
    const num = runs.emit(run, 42 as any, 1)
    expect(num.event).toBe(42)
    expect(run.events.map((e: any) => e.event)).toEqual([...weird, 42])
    expect(run.status).toBe('queued')
  })

  it('EMT-2: error fields, id, history (trimmed) and updatedAt are all updated before clients get send()', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_000)
    const { runs } = makeRuns({ maxEvents: 2 })
    const run = runs.create()
    runs.emit(run, 'a', 1)
    runs.emit(run, 'b', 2)
    const seen: any[] = []
    run.clients.add({
      send: (event: unknown, data: unknown, id: unknown) =>
        seen.push({
          event,
          data,
          id,
          nextEventId: run.nextEventId,
          updatedAt: run.updatedAt,
          ids: run.events.map((e: any) => e.id),
          error: run.error,
          errorCode: run.errorCode,
        }),
      end() {},
      cleanup() {},
    })
    vi.setSystemTime(5_000)
    const data = { message: ' m ', code: 'C' }
    const rec = runs.emit(run, 'error', data)
    expect(rec).toEqual({ id: 3, event: 'error', data, timestamp: 5_000 })
    expect(seen).toEqual([
      { event: 'error', data, id: 3, nextEventId: 4, updatedAt: 5_000, ids: [2, 3], error: 'm', errorCode: 'C' },
    ])
    expect(seen[0].data).toBe(data)
    expect(run.updatedAt).toBe(5_000)
    expect(run.nextEventId).toBe(4)
  })

  it('EMT-3: ids start at 1, grow by exactly 1, are never reused; trimming never renumbers', () => {
    const { runs } = makeRuns({ maxEvents: 3 })
    const run = runs.create()
    const ids: number[] = []
    for (let i = 0; i < 10; i++) ids.push(runs.emit(run, 'tick', i).id)
    expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    expect(run.events.map((e: any) => [e.id, e.data])).toEqual([
      [8, 7],
      [9, 8],
      [10, 9],
    ])
    expect(run.nextEventId).toBe(11)
    const other = runs.create()
    expect(runs.emit(other, 'x', null).id).toBe(1)
  })

  it('EMT-4: run.events never holds more than maxEvents records after an emit returns', () => {
    for (const maxEvents of [1, 2, 5]) {
      const { runs } = makeRuns({ maxEvents })
      const run = runs.create()
      for (let i = 1; i <= 12; i++) {
        runs.emit(run, 'tick', i)
        expect(run.events.length).toBe(Math.min(i, maxEvents))
        expect(run.events.at(-1).id).toBe(i)
      }
      runs.finish(run, 'succeeded', 0, null)
      expect(run.events.length).toBe(maxEvents)
      expect(run.events.at(-1).event).toBe('end')
    }
  })

  it('EMT-5: no terminal guard: late emits append, bump updatedAt, apply §8 and fan out', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_000)
    const { runs } = makeRuns()
    const run = runs.create()
    runs.finish(run, 'succeeded', 0, null)
    const late = fakeClient({ name: 'late' })
    run.clients.add(late)
    vi.setSystemTime(2_000)
    const data = { error: { message: 'late failure', code: 'LATE' } }
    const rec = runs.emit(run, 'error', data)
    expect(rec.id).toBe(2)
    expect(run.events.map((e: any) => e.event)).toEqual(['end', 'error'])
    expect(run.updatedAt).toBe(2_000)
    expect(run.error).toBe('late failure')
    expect(run.errorCode).toBe('LATE')
    expect(run.status).toBe('succeeded')
    expect(late.send).toHaveBeenCalledWith('error', data, 2)
    expect(run.nextEventId).toBe(3)

    const dropped = runs.create()
    runs.drop(dropped)
    const c = fakeClient()
    dropped.clients.add(c)
    expect(runs.emit(dropped, 'x', 'y').id).toBe(1)
    expect(c.send).toHaveBeenCalledWith('x', 'y', 1)
    expect(dropped.events).toHaveLength(1)
  })

  // Linux only: counts open descriptors through /proc/self/fd.
  it.skipIf(notLinux)(
    'EMT-5/IMP-1: late events after finish are not written to the log; the last line stays "end"',
    async () => {
      const dir = tempDir()
      const { runs } = makeRuns({ runsLogDir: dir })
      const run = runs.create()
      runs.emit(run, 'agent', { n: 1 })
      runs.emit(run, 'agent', { n: 2 })
      runs.finish(run, 'succeeded', 0, null)
      runs.emit(run, 'late', { n: 3 })
      await runs.shutdownActive()
      runs.emit(run, 'later', { n: 4 })
      await runs.shutdownActive()
      await sleep(30)
      const lines = readLines(run.eventsLogPath).map((l) => JSON.parse(l))
      expect(lines.map((l) => [l.id, l.event])).toEqual([
        [1, 'agent'],
        [2, 'agent'],
        [3, 'end'],
      ])
      expect(lines[2].data).toEqual(endData(0, null, 'succeeded', lines[2].timestamp))
      expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3, 4, 5])
      expect(openFdsOn(run.eventsLogPath)).toBe(0)
    },
  )

  it('EMT-6: a log failure never throws and never stops fan-out', async () => {
    const dir = tempDir()
    const blocker = path.join(dir, 'not-a-dir')
    fs.writeFileSync(blocker, 'x')
    const { runs } = makeRuns({ runsLogDir: blocker })
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const run = runs.create()
    const c = fakeClient()
    run.clients.add(c)
    const data = { n: 1 }
    let rec: any
    expect(() => {
      rec = runs.emit(run, 'agent', data)
    }).not.toThrow()
    expect(rec).toMatchObject({ id: 1, event: 'agent' })
    expect(c.send).toHaveBeenCalledWith('agent', data, 1)
    expect(() => runs.emit(run, 'agent', { n: 2 })).not.toThrow()
    expect(() => runs.finish(run, 'succeeded', 0, null)).not.toThrow()
    expect(c.send).toHaveBeenCalledTimes(3)
    expect(c.end).toHaveBeenCalledTimes(1)
    expect(run.status).toBe('succeeded')
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3])
    await expect(runs.shutdownActive()).resolves.toBeUndefined()
    expect(fs.readFileSync(blocker, 'utf8')).toBe('x')
    warn.mockRestore()
  })

  it("EMT-6/LOG-6: unserializable data (BigInt, cycle) does not throw and still fans out the caller's object", () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const c = fakeClient()
    run.clients.add(c)
    const cyclic: any = { a: 1 }
    cyclic.self = cyclic
    const big = { n: 10n }
    expect(runs.emit(run, 'cyc', cyclic).data).toBe(cyclic)
    expect(runs.emit(run, 'big', big).data).toBe(big)
    expect(c.send.mock.calls[0][1]).toBe(cyclic)
    expect(c.send.mock.calls[1][1]).toBe(big)
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2])
  })
})

describe('§8 Error extraction (ERR)', () => {
  it('ERR-1: only truthy objects (arrays included) are payloads; nested error uses the same test', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    for (const data of ['boom', 42, null, undefined, true, 0, '']) {
      runs.emit(run, 'error', data)
    }
    expect(run.error).toBeNull()
    expect(run.errorCode).toBeNull()
    expect(run.events).toHaveLength(7)

    runs.emit(run, 'error', Object.assign(['x'], { message: ' from array ' }))
    expect(run.error).toBe('from array')
    runs.emit(run, 'error', { error: Object.assign([], { code: 'NESTED_ARRAY' }), code: 'OUTER' })
    expect(run.errorCode).toBe('NESTED_ARRAY')
    runs.emit(run, 'error', { error: 'a string, not an object', message: 'outer msg', code: 'OC' })
    expect(run.error).toBe('outer msg')
    expect(run.errorCode).toBe('OC')
  })

  it('ERR-2: message and code are JS-trimmed, nested first, each falling back independently', () => {
    const { runs } = makeRuns()
    const a = runs.create()
    runs.emit(a, 'error', { error: { message: 'a' }, code: 'X' })
    expect([a.error, a.errorCode]).toEqual(['a', 'X'])

    const b = runs.create()
    runs.emit(b, 'error', { error: { message: '   ', code: 7 }, message: ' outer ', code: ' OC ' })
    expect([b.error, b.errorCode]).toEqual(['outer', 'OC'])

    const c = runs.create()
    runs.emit(c, 'error', { error: { message: ' inner ', code: 'IC' }, message: 'outer', code: 'OC' })
    expect([c.error, c.errorCode]).toEqual(['inner', 'IC'])

    const d = runs.create()
    runs.emit(d, 'error', { message: '\uFEFF\u00A0 msg \u2028\n', code: '\u0085C' })
    expect(d.error).toBe('msg')
    expect(d.errorCode).toBe('\u0085C')

    const e = runs.create()
    runs.emit(e, 'error', { message: 5, code: ['X'], error: { message: null } })
    expect([e.error, e.errorCode]).toEqual([null, null])
  })

  it('ERR-3: fields are set only when found, never cleared, overwritten later, terminal runs included', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    runs.emit(run, 'error', { message: 'first', code: 'C1' })
    runs.emit(run, 'error', {})
    runs.emit(run, 'error', 'text')
    expect([run.error, run.errorCode]).toEqual(['first', 'C1'])
    runs.emit(run, 'error', { message: 'second' })
    expect([run.error, run.errorCode]).toEqual(['second', 'C1'])
    runs.emit(run, 'error', { code: 'C2' })
    expect([run.error, run.errorCode]).toEqual(['second', 'C2'])
    runs.emit(run, 'Error', { message: 'case matters', code: 'NO' })
    runs.emit(run, 'agent', { message: 'not an error event', code: 'NO' })
    expect([run.error, run.errorCode]).toEqual(['second', 'C2'])
    runs.finish(run, 'succeeded', 0, null)
    runs.emit(run, 'error', { message: 'after end', code: 'C3' })
    expect([run.error, run.errorCode]).toEqual(['after end', 'C3'])
    expect(runs.statusBody(run)).toMatchObject({ error: 'after end', errorCode: 'C3' })
  })

  it('ERR-4: extraction happens before the record is stored and sent, for host emits and for fail()', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const seen: any[] = []
    run.clients.add({
      send: (event: string) => seen.push([event, run.error, run.errorCode, run.events.length]),
      end() {},
      cleanup() {},
    })
    runs.emit(run, 'error', { error: { message: 'host', code: 'H' } })
    runs.fail(run, 'F_CODE', 'from fail')
    expect(seen).toEqual([
      ['error', 'host', 'H', 1],
      ['error', 'from fail', 'F_CODE', 2],
      ['end', 'from fail', 'F_CODE', 3],
    ])
  })
})
