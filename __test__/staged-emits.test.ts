// SPEC BND-6: emits are staged in JS and reach the core in batches. Nothing that reads or changes
// the core may miss a record or see them out of order: reads right after emit, finish/cancel/
// shutdown right after emit, emits from inside hooks and client sends, several services at once,
// batches larger than one crossing; and a daemon killed between emit and the batch loses at most
// the records of that stretch, never a line in the middle.
import { execFileSync, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import os from 'node:os'
import { describe, expect, it } from 'vitest'
import { getChatRunServiceStats } from '../index.js'
import { fakeReq, fakeRes, fixture, makeRuns, readLines, sentIds, useTempDirs } from './helpers'

const requireNode = createRequire(import.meta.url)
const { MAX_RECORDS, MAX_TEXT, hasStaged } = requireNode('../lib/staging.js') as {
  MAX_RECORDS: number
  MAX_TEXT: number
  hasStaged(): boolean
}
const tempDir = useTempDirs('staged-emits-')
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)
const ids = (records: Array<{ id: number }>) => records.map((record) => record.id)
const logIds = (file: string) => readLines(file).map((line) => JSON.parse(line).id as number)
// More than two full batches and a partial one.
const MANY = 2 * MAX_RECORDS + 100

describe('BND-6: when a batch is handed over', () => {
  it('at MAX_RECORDS records, at MAX_TEXT characters, at the end of the stretch', async () => {
    const { runs } = makeRuns({ maxEvents: 10 })
    const run = runs.create({ projectId: 'p' })
    expect(hasStaged()).toBe(false)
    for (let n = 1; n < MAX_RECORDS; n++) runs.emit(run, 'stdout', { n })
    expect(hasStaged()).toBe(true)
    runs.emit(run, 'stdout', { n: MAX_RECORDS })
    expect(hasStaged()).toBe(false)
    // Large records: the text bound comes first.
    runs.emit(run, 'stdout', { big: 'x'.repeat(MAX_TEXT) })
    expect(hasStaged()).toBe(false)
    runs.emit(run, 'stdout', { n: 0 })
    expect(hasStaged()).toBe(true)
    await Promise.resolve()
    expect(hasStaged()).toBe(false)
    expect(run.events.at(-1).id).toBe(MAX_RECORDS + 2)
  })

  it('a record that would take a batch past MAX_TEXT goes alone, as its own text, after the staged ones', () => {
    const binding = requireNode('../loader.js')
    const crossings: Array<{ count: number; length: number }> = []
    const emitStaged = binding.emitStaged
    binding.emitStaged = (svc: number, count: number, header: Float64Array, text: string) => {
      crossings.push({ count, length: text.length })
      return emitStaged(svc, count, header, text)
    }
    try {
      const { runs } = makeRuns({ maxEvents: 10 })
      const run = runs.create({ projectId: 'p' })
      const other = runs.create({ projectId: 'p' })
      runs.emit(run, 'stdout', 'a')
      runs.emit(other, 'stdout', 'b')
      const big = 'x'.repeat(MAX_TEXT - 5)
      runs.emit(run, 'stdout', big)
      // The two small records went first, in one batch; the large one waits alone.
      expect(crossings).toEqual([{ count: 2, length: 8 }])
      expect(hasStaged()).toBe(true)
      expect(run.events.map((e: any) => [e.id, e.data])).toEqual([
        [1, 'a'],
        [2, big],
      ])
      // Its text is its JSON as it is: no line feed joined to it.
      expect(crossings[1]).toEqual({ count: 1, length: MAX_TEXT - 3 })
      runs.emit(run, 'stdout', 'c')
      expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3])
      expect(other.events.map((e: any) => [e.id, e.data])).toEqual([[1, 'b']])
    } finally {
      binding.emitStaged = emitStaged
    }
  })
})

// Strings of V8's maximum length: a process of its own, where the memory is there.
describe.skipIf(os.totalmem() < 8 * 2 ** 30)('EMT-1 bound: a record too large to read back', () => {
  it(
    'keeps data null and no log line, as unserializable data; ids, order and the other records intact',
    { timeout: 60_000 },
    () => {
      const dir = tempDir()
      const script = `
      const fs = require('node:fs')
      const { constants } = require('node:buffer')
      const { createChatRunService } = require(${JSON.stringify(requireNode.resolve('../index.js'))})
      const runs = createChatRunService({
        createSseResponse: () => ({}),
        createSseErrorPayload: () => ({}),
        runsLogDir: ${JSON.stringify(dir)},
      })
      const run = runs.create({ projectId: 'p' })
      const sent = []
      run.clients.add({ send: (e, d, id) => sent.push([id, Array.isArray(d) ? 'array' : d.length]), end() {}, cleanup() {} })
      runs.emit(run, 'stdout', 'a')
      // Its JSON fits one string, but not with the record around it.
      const big = 'x'.repeat(constants.MAX_STRING_LENGTH - 2)
      const returned = runs.emit(run, 'stdout', big)
      // Two halves: JSON.stringify itself cannot make it.
      const half = 'y'.repeat(Math.floor(constants.MAX_STRING_LENGTH / 2) + 10)
      runs.emit(run, 'stdout', [half, half])
      runs.emit(run, 'stdout', 'b')
      const events = run.events.map((e) => [e.id, e.data])
      runs.finish(run, 'succeeded', 0, null)
      runs.shutdownActive().then(() => {
        const logged = fs.readFileSync(run.eventsLogPath, 'utf8').trim().split('\\n').map((l) => JSON.parse(l).id)
        console.log(JSON.stringify({ returned: [returned.id, returned.data.length], events, sent, logged }))
      })
    `
      const out = execFileSync(process.execPath, ['--max-old-space-size=6144', '-e', script], { encoding: 'utf8' })
      const { returned, events, sent, logged } = JSON.parse(out)
      const MAX = requireNode('node:buffer').constants.MAX_STRING_LENGTH
      // The caller and live clients get the caller's own data; the history keeps null.
      expect(returned).toEqual([2, MAX - 2])
      expect(events).toEqual([
        [1, 'a'],
        [2, null],
        [3, null],
        [4, 'b'],
      ])
      expect(sent.slice(0, 4)).toEqual([
        [1, 1],
        [2, MAX - 2],
        [3, 'array'],
        [4, 1],
      ])
      // Never written: the log holds the others, in order.
      expect(logged).toEqual([1, 4, 5])
    },
  )
})

// Records of hundreds of MB: a process of its own, where the memory is there.
describe.skipIf(os.totalmem() < 8 * 2 ** 30)('EMT-1 bound: histories larger than one JS string', () => {
  it('run.events and a replay still read every record, in order, in several texts', { timeout: 120_000 }, () => {
    const script = `
      const { createChatRunService } = require(${JSON.stringify(requireNode.resolve('../index.js'))})
      const sent = []
      const runs = createChatRunService({
        createSseResponse: () => ({ send: (e, d, id) => sent.push([id, e, d.length]), end() {}, cleanup() {} }),
        createSseErrorPayload: () => ({}),
      })
      const run = runs.create({ projectId: 'p' })
      // Two records of 270 MB: more together than V8's longest string (2^29 - 24 characters).
      const big = 'x'.repeat(270e6)
      for (let i = 0; i < 2; i++) runs.emit(run, 'stdout', big + i)
      runs.emit(run, 'stdout', 'tail')
      const events = run.events.map((e) => [e.id, e.event, e.data.length, e.data.at(-1)])
      runs.stream(run, { get: () => '1', query: {} }, { on() {} })
      console.log(JSON.stringify({ events, sent }))
    `
    const out = execFileSync(process.execPath, ['--max-old-space-size=7000', '-e', script], { encoding: 'utf8' })
    const { events, sent } = JSON.parse(out)
    expect(events).toEqual([
      [1, 'stdout', 270e6 + 1, '0'],
      [2, 'stdout', 270e6 + 1, '1'],
      [3, 'stdout', 4, 'l'],
    ])
    expect(sent).toEqual([
      [2, 'stdout', 270e6 + 1],
      [3, 'stdout', 4],
    ])
  })
})

describe('BND-6: reads right after emit see every staged record', () => {
  it('run.events, stream() and the stats, in the same stretch as the emits', () => {
    const { runs, sse } = makeRuns({ maxEvents: MANY + 10 })
    const run = runs.create({ projectId: 'p' })
    const returned: number[] = []
    for (let n = 1; n <= MANY; n++) returned.push(runs.emit(run, 'stdout', { n }).id)
    expect(returned).toEqual(range(1, MANY))
    expect(ids(run.events)).toEqual(range(1, MANY))
    expect(run.events.at(-1).data).toEqual({ n: MANY })
    expect(getChatRunServiceStats(runs).events.retained).toBe(MANY)
    runs.stream(run, fakeReq(String(MANY - 5)), fakeRes())
    expect(sentIds(sse[0])).toEqual(range(MANY - 4, MANY))
    // One more emit after the read: the cached run.events must not hide it.
    runs.emit(run, 'stdout', { n: MANY + 1 })
    expect(run.events.length).toBe(MANY + 1)
    expect(sentIds(sse[0]).at(-1)).toBe(MANY + 1)
  })

  it("finish right after emits numbers 'end' after them, and the log keeps id order", async () => {
    const dir = tempDir()
    const { runs } = makeRuns({ runsLogDir: dir, maxEvents: 10 })
    const run = runs.create({ projectId: 'p' })
    for (let n = 1; n <= MANY; n++) runs.emit(run, 'stdout', { n })
    runs.finish(run, 'succeeded', 0, null)
    expect(run.events.at(-1)).toMatchObject({ id: MANY + 1, event: 'end' })
    expect(runs.statusBody(run)).toMatchObject({ status: 'succeeded' })
    await runs.shutdownActive()
    expect(logIds(run.eventsLogPath)).toEqual(range(1, MANY + 1))
  })

  it("an 'error' emit sets error/errorCode at once, and odd event names and data keep their records", () => {
    const { runs } = makeRuns({ maxEvents: 20 })
    const run = runs.create({ projectId: 'p' })
    runs.emit(run, 'stdout', { n: 1 })
    runs.emit(run, 'error', { error: { message: 'boom', code: 'E_BOOM' } })
    expect(runs.statusBody(run)).toMatchObject({ error: 'boom', errorCode: 'E_BOOM' })
    runs.emit(run, 7, { n: 2 })
    runs.emit(run, undefined, undefined)
    runs.emit(run, 'stdout', { big: 1n })
    runs.emit(run, { kind: 'object' }, [1, 2])
    runs.emit(run, 'line\nbreak', 'text with\na line feed')
    expect(run.events.map((record: any) => [record.id, record.event, record.data])).toEqual([
      [1, 'stdout', { n: 1 }],
      [2, 'error', { error: { message: 'boom', code: 'E_BOOM' } }],
      [3, 7, { n: 2 }],
      [4, undefined, undefined],
      [5, 'stdout', null],
      [6, { kind: 'object' }, [1, 2]],
      [7, 'line\nbreak', 'text with\na line feed'],
    ])
    expect(getChatRunServiceStats(runs).events.retained).toBe(7)
  })
})

describe('BND-6: emits from inside the emit path keep one order', () => {
  it('an onEventEmitted hook that emits: run.events, the log and the returned ids agree', async () => {
    const dir = tempDir()
    const order: number[] = []
    let runs: any
    ;({ runs } = makeRuns({
      runsLogDir: dir,
      maxEvents: 5000,
      onEventEmitted: (run: any, record: any) => {
        order.push(record.id)
        if (record.event === 'stdout') runs.emit(run, 'derived', { of: record.id })
      },
    }))
    const run = runs.create({ projectId: 'p' })
    for (let n = 1; n <= MAX_RECORDS; n++) runs.emit(run, 'stdout', { n })
    const events = run.events
    expect(ids(events)).toEqual(range(1, 2 * MAX_RECORDS))
    for (const record of events) {
      if (record.event === 'derived') expect(record.data.of).toBe(record.id - 1)
    }
    expect(order.toSorted((a, b) => a - b)).toEqual(range(1, 2 * MAX_RECORDS))
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    expect(logIds(run.eventsLogPath)).toEqual(range(1, 2 * MAX_RECORDS + 1))
  })

  it('a client whose send() emits: every client sees ids in order, and the core holds them all', () => {
    const { runs, sse } = makeRuns({ maxEvents: 5000 }, (index) => {
      const calls: any[] = []
      return {
        calls,
        send(event: string, data: any, id: number) {
          calls.push({ type: 'send', event, data, id })
          if (index === 0 && event === 'stdout') runs.emit(run, 'echo', { of: id })
        },
        end() {},
        cleanup() {},
      }
    })
    const run = runs.create({ projectId: 'p' })
    runs.stream(run, fakeReq(undefined), fakeRes())
    runs.stream(run, fakeReq(undefined), fakeRes())
    for (let n = 1; n <= 600; n++) runs.emit(run, 'stdout', { n })
    expect(ids(run.events)).toEqual(range(1, 1200))
    for (const client of sse) {
      const seen = sentIds(client as any)
      expect(seen.toSorted((a, b) => a - b)).toEqual(range(1, 1200))
    }
    expect(sentIds(sse[0] as any)).toEqual(range(1, 1200))
  })

  it('data whose toJSON or getter emits to the same run: the nested emit takes the earlier id, no id twice, nothing lost', async () => {
    const dir = tempDir()
    const { runs, sse } = makeRuns({ runsLogDir: dir })
    const run = runs.create({ projectId: 'p' })
    runs.stream(run, fakeReq(undefined), fakeRes())
    runs.emit(run, 'stdout', { n: 1 })
    let nested = 0
    const viaToJSON = {
      toJSON() {
        if (nested++ < 2) runs.emit(run, 'nested', { depth: nested })
        return { outer: 'toJSON' }
      },
    }
    const outer = runs.emit(run, 'stdout', viaToJSON)
    const viaGetter = {
      get text() {
        runs.emit(run, 'nested', { from: 'getter' })
        return 'got'
      },
    }
    const second = runs.emit(run, 'stdout', viaGetter)
    runs.emit(run, 'stdout', { n: 'last' })
    // Each nested emit ran inside the outer one's JSON.stringify, before the outer took its id.
    expect([outer.id, second.id]).toEqual([3, 5])
    const events = run.events.map((e: any) => [e.id, e.event, e.data])
    expect(events).toEqual([
      [1, 'stdout', { n: 1 }],
      [2, 'nested', { depth: 1 }],
      [3, 'stdout', { outer: 'toJSON' }],
      [4, 'nested', { from: 'getter' }],
      [5, 'stdout', { text: 'got' }],
      [6, 'stdout', { n: 'last' }],
    ])
    expect(run.nextEventId).toBe(7)
    expect(sentIds(sse[0])).toEqual(range(1, 6))
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    expect(logIds(run.eventsLogPath)).toEqual(range(1, 7))
  })

  // The state file written at 'start', 'error' and 'end' (LC-1) reads the host's durable fields:
  // a getter there is host code inside emit, after the record took its id.
  it('host code run by the state file write (a durableFields getter): clients still get every id once, in order', async () => {
    const seen: string[] = []
    const { runs, sse } = makeRuns({
      runsLogDir: tempDir(),
      durableFields: ['probe'],
      onEventEmitted: (_run: unknown, record: any) => seen.push(`hook:${record.id}`),
    })
    const withProbe = (act: (run: any) => void) => {
      const run = runs.create({ projectId: 'p' })
      const ended: string[] = []
      const client = {
        ids: [] as string[],
        send(event: string, _data: unknown, id: number) {
          this.ids.push(`${id}:${event}`)
        },
        end: () => ended.push('end()'),
        cleanup() {},
      }
      run.clients.add(client)
      let fired = false
      Object.defineProperty(run, 'probe', {
        enumerable: true,
        get() {
          if (!fired && run.nextEventId === 2) {
            fired = true
            act(run)
          }
          return 1
        },
      })
      runs.emit(run, 'start', {})
      return { run, client, ended }
    }
    // An emit from the getter: its record follows the 'start' for every client and the hook.
    const a = withProbe((run) => runs.emit(run, 'nested', {}))
    expect(a.client.ids).toEqual(['1:start', '2:nested'])
    expect(seen).toEqual(['hook:1', 'hook:2'])
    // A finish from the getter: the 'start' still reaches the client, then 'end', then end().
    const b = withProbe((run) => runs.finish(run, 'succeeded', 0, null))
    expect(b.client.ids).toEqual(['1:start', '2:end'])
    expect(b.ended).toEqual(['end()'])
    // A stream() from the getter: its replay has the 'start', which the fan-out does not send again.
    const c = withProbe((run) => runs.stream(run, fakeReq('0'), fakeRes()))
    expect(sentIds(sse.at(-1)!)).toEqual([1])
    expect(c.client.ids).toEqual(['1:start'])
    // The same at a finish's 'end': the state file's second write comes after the 'end' took its id.
    const run = runs.create({ projectId: 'p' })
    const client = {
      ids: [] as number[],
      send: (_e: string, _d: unknown, id: number) => client.ids.push(id),
      end() {},
      cleanup() {},
    }
    run.clients.add(client)
    runs.emit(run, 'stdout', 'x')
    let reads = 0
    Object.defineProperty(run, 'probe', {
      enumerable: true,
      get() {
        runs.emit(run, 'nested', { read: ++reads })
        return reads
      },
    })
    runs.finish(run, 'succeeded', 0, null)
    // 2 came from the verdict's write, 4 from the 'end' record's: after the 'end' for everyone.
    expect(run.events.map((e: any) => `${e.id}:${e.event}`)).toEqual(['1:stdout', '2:nested', '3:end', '4:nested'])
    expect(client.ids).toEqual([1, 2, 3, 4])
    await runs.shutdownActive()
    // A record after the 'end' is not logged (IMP-1).
    expect(logIds(run.eventsLogPath)).toEqual([1, 2, 3])
  })

  it('two services emitting in turn keep their own ids and records', () => {
    const a = makeRuns({ maxEvents: 5000 }).runs
    const b = makeRuns({ maxEvents: 5000 }).runs
    const runA = a.create({ projectId: 'a' })
    const runB = b.create({ projectId: 'b' })
    for (let n = 1; n <= MAX_RECORDS + 7; n++) {
      a.emit(runA, 'stdout', { a: n })
      b.emit(runB, 'stdout', { b: n })
      if (n % 3 === 0) b.emit(runB, 'extra', { b: n })
    }
    expect(ids(runA.events)).toEqual(range(1, MAX_RECORDS + 7))
    expect(runA.events.every((record: any) => 'a' in record.data)).toBe(true)
    const extras = Math.floor((MAX_RECORDS + 7) / 3)
    expect(ids(runB.events)).toEqual(range(1, MAX_RECORDS + 7 + extras))
    expect(runB.events.every((record: any) => 'b' in record.data)).toBe(true)
  })

  it('cancel and drop right after emits see them', async () => {
    const { runs } = makeRuns({ maxEvents: 100 })
    const run = runs.create({ projectId: 'p' })
    run.status = 'running'
    for (let n = 1; n <= 30; n++) runs.emit(run, 'stdout', { n })
    await runs.cancel(run, 'user')
    expect(run.status).toBe('canceled')
    expect(ids(run.events)).toEqual(range(1, 31))
    const other = runs.create({ projectId: 'p' })
    for (let n = 1; n <= 30; n++) runs.emit(other, 'stdout', { n })
    runs.drop(other)
    expect(ids(other.events)).toEqual(range(1, 30))
  })
})

/** Runs the crash worker and returns what it printed before it killed itself. */
async function crashWorker(dir: string, mode: string, count: number) {
  const child = spawn(process.execPath, [fixture('staged-worker.cjs'), dir, mode, String(count)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => {
    out += chunk
  })
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
    child.once('exit', (exitCode, sig) => resolve([exitCode, sig])),
  )
  // It killed itself: SIGKILL, or on Windows TerminateProcess, which Node reports as exit code 1.
  if (process.platform === 'win32') expect([code, signal], out).toEqual([1, null])
  else expect(signal, out).toBe('SIGKILL')
  return JSON.parse(out.split('\n')[0]) as { id: string; lines?: number }
}

describe('BND-6: a daemon killed between emit and the batch', () => {
  it('killed in the same stretch: the log holds exactly the batches handed over, whole and in order; a restart finds no gap', async () => {
    const dir = tempDir()
    const count = 2 * MAX_RECORDS + 500
    const { id } = await crashWorker(dir, 'same-stretch', count)
    const { runs } = makeRuns({ runsLogDir: dir, maxEvents: 10 })
    const run = runs.get(id)
    // 'start' (id 1) reached the core with the state file write; then every full batch did.
    const handed = 1 + Math.floor(count / MAX_RECORDS) * MAX_RECORDS
    const journal = readLines(run.eventsLogPath)
    // The journal: ids 1..handed, each line whole, then the two records the restart added.
    expect(journal.slice(0, handed).map((line) => JSON.parse(line).id)).toEqual(range(1, handed))
    expect(run).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED' })
    expect(ids(run.events).slice(-2)).toEqual([handed + 1, handed + 2])
    expect(logIds(run.eventsLogPath)).toEqual(range(1, handed + 2))
  })

  it('killed after the stretch returned to the event loop: every record is on disk', async () => {
    const dir = tempDir()
    const count = 300
    const { id, lines } = await crashWorker(dir, 'next-tick', count)
    expect(lines).toBe(count + 1)
    const { runs } = makeRuns({ runsLogDir: dir, maxEvents: 10 })
    const run = runs.get(id)
    expect(run).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED' })
    expect(logIds(run.eventsLogPath)).toEqual(range(1, count + 3))
  })
})
