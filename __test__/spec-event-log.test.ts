// SPEC §16 the per-run JSONL event log: path (LOG-1), disabled logging (LOG-2), creation (LOG-3),
// the line format (LOG-4), order (LOG-5), unserializable data and disk errors (LOG-6), nothing after
// finish or drop (LOG-7/IMP-1/IMP-2) and no leaked descriptors (LOG-8). LC-1 amends LOG-3 (the
// run's directory and its state.json exist from create() on) and FIN-3's 'end' data (LC-5).
import fs from 'node:fs'
import path from 'node:path'
import { Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { getChatRunServiceStats } from '../index.js'
import {
  fakeClient,
  isWindows,
  makeRuns,
  notLinux,
  openFdsUnder,
  readLines,
  ROOT,
  runNodeSync,
  sentIds,
  sleep,
  useTempDirs,
} from './helpers'

describe('§16 per-run JSONL event log', () => {
  const tempDir = useTempDirs('spec-log-')
  let tmp: string
  beforeEach(() => {
    tmp = tempDir()
  })

  it('LOG-1: path is <runsLogDir>/<runId>/events.jsonl and its directory is the dirname', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    expect(run.eventsLogPath).toBe(path.join(tmp, run.id, 'events.jsonl'))
    expect(runs.statusBody(run).eventsLogPath).toBe(run.eventsLogPath)
    runs.emit(run, 'a', 1)
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    expect(fs.readdirSync(tmp)).toEqual([run.id])
    // events.jsonl plus the durable state file next to it (LC-1).
    expect(fs.readdirSync(path.join(tmp, run.id)).sort()).toEqual(['events.jsonl', 'state.json'])
  })

  it('LOG-2: runsLogDir null/undefined/empty touches nothing (not even relative to the cwd)', async () => {
    const cwd = process.cwd()
    process.chdir(tmp)
    try {
      for (const runsLogDir of [null, undefined, '']) {
        const { runs } = makeRuns({ runsLogDir })
        const run = runs.create({ projectId: 'p' })
        expect(run.eventsLogPath).toBeNull()
        runs.emit(run, 'agent', { type: 'text_delta', delta: 'x' })
        runs.finish(run, 'succeeded', 0, null)
        runs.emit(run, 'late', 1)
        await runs.shutdownActive()
      }
      await sleep(50)
      expect(fs.readdirSync(tmp)).toEqual([])
    } finally {
      process.chdir(cwd)
    }
  })

  // LC-1 replaces "create() touches nothing" (which holds with logging off: LOG-2): create() makes
  // the run's directory and its state.json; the journal appears with the first emit.
  it('LOG-3/LC-1: create() makes the directory with only state.json; the journal comes with the first emit; a dropped run leaves nothing', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    const other = runs.create()
    await sleep(30)
    expect(fs.readdirSync(path.join(tmp, run.id))).toEqual(['state.json'])
    runs.drop(other)
    runs.emit(run, 'a', 1)
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    expect(fs.existsSync(path.join(tmp, other.id))).toBe(false)
    expect(fs.readdirSync(tmp)).toEqual([run.id])
    expect(fs.readdirSync(path.join(tmp, run.id)).sort()).toEqual(['events.jsonl', 'state.json'])
  })

  // POSIX only: Windows has no umask and no such mode bits.
  it.skipIf(isWindows)(
    'LOG-3: the first emit creates the directory recursively with mode 0777 & ~umask and the file with 0666 & ~umask',
    async () => {
      const deep = path.join(tmp, 'a', 'b', 'c')
      const { runs } = makeRuns({ runsLogDir: deep })
      const run = runs.create()
      runs.emit(run, 'a', 1)
      runs.finish(run, 'succeeded', 0, null)
      await runs.shutdownActive()
      const umask = process.umask()
      expect(fs.statSync(path.dirname(run.eventsLogPath)).mode & 0o777).toBe(0o777 & ~umask)
      expect(fs.statSync(run.eventsLogPath).mode & 0o777).toBe(0o666 & ~umask)
      expect(readLines(run.eventsLogPath)).toHaveLength(2)
    },
  )

  it('LOG-3: an existing file is appended to and never truncated', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    fs.mkdirSync(path.dirname(run.eventsLogPath), { recursive: true })
    fs.writeFileSync(run.eventsLogPath, 'PRE-EXISTING\n')
    runs.emit(run, 'a', 1)
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    const lines = readLines(run.eventsLogPath)
    expect(lines).toHaveLength(3)
    expect(lines[0]).toBe('PRE-EXISTING')
    expect(JSON.parse(lines[1])).toMatchObject({ id: 1, event: 'a', data: 1 })
    expect(JSON.parse(lines[2])).toMatchObject({ id: 2, event: 'end' })
  })

  it('LOG-3/IMP-1: a run whose only event is end still gets a file', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    runs.finish(run, 'canceled', null, 'SIGTERM')
    await runs.shutdownActive()
    const lines = readLines(run.eventsLogPath)
    expect(lines).toHaveLength(1)
    const timestamp = run.events[0].timestamp
    expect(JSON.parse(lines[0])).toEqual({
      id: 1,
      event: 'end',
      data: {
        code: null,
        signal: 'SIGTERM',
        status: 'canceled',
        terminalAt: timestamp,
        resumable: false,
        endedWithUnfinishedWork: false,
        failureCategory: null,
        failureDetail: null,
      },
      timestamp,
    })
  })

  // A host's cleanup right after finish (the daemon's tests remove their data directory in
  // afterEach): nothing may appear in the run's directory after finish returned, or a recursive
  // removal fails with ENOTEMPTY; and the lines of the removed run are not errors.
  it('IMP-4: a process whose event loop empties right after finish (no shutdownActive, no exit call) still writes every line', () => {
    const script = `
      const { createChatRunService } = require(${JSON.stringify(ROOT)})
      const runs = createChatRunService({ createSseResponse() {}, createSseErrorPayload() { return {} }, runsLogDir: process.argv[1] })
      const run = runs.create({})
      runs.emit(run, 'stdout', { i: 0 })
      setTimeout(() => {
        runs.emit(run, 'tool', { pad: 'p'.repeat(40 * 1024 * 1024) })
        runs.emit(run, 'stdout', { i: 2 })
        runs.finish(run, 'succeeded', 0, null)
        process.stdout.write(run.id)
      }, 20)
    `
    const result = runNodeSync(['-e', script, tmp], { timeout: 60_000 })
    expect(result.status).toBe(0)
    const lines = readLines(path.join(tmp, result.stdout, 'events.jsonl'))
    expect(lines.map((line) => JSON.parse(line).id)).toEqual([1, 2, 3, 4])
    expect(JSON.parse(lines[3]).event).toBe('end')
  })

  it('LOG-3: the journal exists when finish returns; removing the directory then loses no line and reports nothing', async () => {
    const warnings: string[] = []
    const onWarning = (warning: Error & { code?: string }) => {
      if (warning.code === 'CHAT_RUN_LOG_ERROR') warnings.push(warning.message)
    }
    process.on('warning', onWarning)
    try {
      const { runs } = makeRuns({ runsLogDir: tmp })
      for (let i = 0; i < 50; i++) {
        const run = runs.create({ projectId: 'p' })
        runs.emit(run, 'agent', { n: i })
        runs.finish(run, 'succeeded', 0, null)
        const dir = path.dirname(run.eventsLogPath)
        expect(fs.readdirSync(dir).sort()).toEqual(['events.jsonl', 'state.json'])
        fs.rmSync(dir, { recursive: true })
      }
      await runs.shutdownActive()
      await sleep(10)
      expect(fs.readdirSync(tmp)).toEqual([])
      const { log } = getChatRunServiceStats(runs)
      expect(log.linesWritten).toBe(100)
      expect(log.notPersisted.diskError).toBe(0)
      expect(warnings).toEqual([])
      // The journals opened for these runs are closed with them (LOG-8), deleted files included.
      if (!notLinux) expect(openFdsUnder(tmp)).toBe(0)
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('LOG-4: the exact line text is JSON.stringify(record) + "\\n", keys id,event,data,timestamp', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    const r1 = runs.emit(run, 'agent', { type: 'text_delta', delta: 'hello' })
    const r2 = runs.emit(run, 'agent', { type: 'text_delta', delta: 'héllo ✓ 🚀 "q" \\ \n' })
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    const raw = fs.readFileSync(run.eventsLogPath, 'utf8')
    const lines = raw.split('\n')
    expect(lines[0]).toBe(
      `{"id":1,"event":"agent","data":{"type":"text_delta","delta":"hello"},"timestamp":${r1.timestamp}}`,
    )
    expect(lines[1]).toBe(JSON.stringify({ id: 2, event: 'agent', data: r2.data, timestamp: r2.timestamp }))
    expect(Object.keys(JSON.parse(lines[0]))).toEqual(['id', 'event', 'data', 'timestamp'])
    expect(JSON.parse(lines[0])).toEqual({
      id: 1,
      event: 'agent',
      data: { type: 'text_delta', delta: 'hello' },
      timestamp: r1.timestamp,
    })
    const endRec = run.events.at(-1)
    expect(lines[2]).toBe(
      `{"id":3,"event":"end","data":{"code":0,"signal":null,"status":"succeeded","terminalAt":${endRec.timestamp},` +
        `"resumable":false,"endedWithUnfinishedWork":false,"failureCategory":null,"failureDetail":null},` +
        `"timestamp":${endRec.timestamp}}`,
    )
    expect(raw.endsWith('\n')).toBe(true)
    expect(lines).toHaveLength(4) // 3 lines + trailing ''
  })

  it('LOG-4: data undefined omits the key; toJSON is honoured; functions are dropped', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    const r1 = runs.emit(run, 'x', undefined)
    const r2 = runs.emit(run, 'y', { toJSON: () => ({ a: 1 }) })
    const r3 = runs.emit(run, 'z', { f() {}, b: 2 })
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    const lines = readLines(run.eventsLogPath)
    expect(lines[0]).toBe(`{"id":1,"event":"x","timestamp":${r1.timestamp}}`)
    expect(lines[1]).toBe(`{"id":2,"event":"y","data":{"a":1},"timestamp":${r2.timestamp}}`)
    expect(lines[2]).toBe(`{"id":3,"event":"z","data":{"b":2},"timestamp":${r3.timestamp}}`)
  })

  it('LOG-4: the line is the serialization at emit time; later mutation changes nothing recorded', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    const data = { v: 1 }
    runs.emit(run, 'x', data)
    data.v = 2
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    expect(JSON.parse(readLines(run.eventsLogPath)[0]).data).toEqual({ v: 1 })
  })

  it('LOG-5: two emits plus finish give 3 lines in emit order, the last is end with data.status', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    runs.emit(run, 'agent', { n: 1 })
    runs.emit(run, 'stdout', { n: 2 })
    runs.finish(run, 'failed', 1, null)
    await runs.shutdownActive()
    const parsed = readLines(run.eventsLogPath).map((l) => JSON.parse(l))
    expect(parsed.map((p) => [p.id, p.event])).toEqual([
      [1, 'agent'],
      [2, 'stdout'],
      [3, 'end'],
    ])
    expect(parsed[2].data).toEqual({
      code: 1,
      signal: null,
      status: 'failed',
      terminalAt: parsed[2].timestamp,
      resumable: false,
      endedWithUnfinishedWork: false,
      failureCategory: null,
      failureDetail: null,
    })
  })

  it('LOG-5: many emits across runs are written whole, one line per record, in order', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp, maxEvents: 10 })
    const a = runs.create()
    const b = runs.create()
    for (let n = 1; n <= 300; n++) {
      runs.emit(a, 'agent', { n, pad: 'a'.repeat(n % 50) })
      runs.emit(b, 'agent', { n })
    }
    runs.finish(a, 'succeeded', 0, null)
    runs.finish(b, 'succeeded', 0, null)
    await runs.shutdownActive()
    for (const r of [a, b]) {
      const ids = readLines(r.eventsLogPath).map((l) => JSON.parse(l).id)
      expect(ids).toEqual(Array.from({ length: 301 }, (_, i) => i + 1))
    }
  })

  it('LOG-6: unserializable data (BigInt, cycle) skips only that line; run state and fan-out unaffected', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    const client = fakeClient()
    run.clients.add(client)
    const big = { n: 10n }
    const cyc: any = { a: 1 }
    cyc.self = cyc
    runs.emit(run, 'ok', { n: 1 })
    let r2: any
    expect(() => (r2 = runs.emit(run, 'big', big))).not.toThrow()
    expect(r2.id).toBe(2)
    expect(r2.data).toBe(big)
    let r3: any
    expect(() => (r3 = runs.emit(run, 'cyc', cyc))).not.toThrow()
    expect(r3.data).toBe(cyc)
    runs.emit(run, 'ok', { n: 4 })
    expect((client.calls[1] as any).data).toBe(big)
    expect((client.calls[2] as any).data).toBe(cyc)
    expect(sentIds(client)).toEqual([1, 2, 3, 4])
    expect(run.nextEventId).toBe(5)
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    const parsed = readLines(run.eventsLogPath).map((l) => JSON.parse(l))
    expect(parsed.map((p) => p.id)).toEqual([1, 4, 5])
    expect(parsed[1]).toMatchObject({ event: 'ok', data: { n: 4 } })
  })

  it('LOG-6: a failing mkdir writes nothing for that emit, never throws, and the next emit tries again', async () => {
    const blocker = path.join(tmp, 'blocker')
    fs.writeFileSync(blocker, 'not a directory')
    const { runs } = makeRuns({ runsLogDir: blocker })
    const run = runs.create()
    const client = fakeClient()
    run.clients.add(client)
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    try {
      expect(() => runs.emit(run, 'a', { n: 1 })).not.toThrow()
      expect(sentIds(client)).toEqual([1])
      await sleep(200)
      fs.rmSync(blocker)
      runs.emit(run, 'a', { n: 2 })
      runs.finish(run, 'succeeded', 0, null)
      await runs.shutdownActive()
    } finally {
      warn.mockRestore()
    }
    expect(run.status).toBe('succeeded')
    expect(readLines(run.eventsLogPath).map((l) => JSON.parse(l).id)).toEqual([2, 3])
  })

  it('LOG-7/IMP-1: an emit after finish is not written, the last line stays end, memory and clients still get it', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    runs.emit(run, 'agent', { n: 1 })
    runs.finish(run, 'succeeded', 0, null)
    const late = fakeClient()
    run.clients.add(late)
    runs.emit(run, 'agent', { late: true })
    await sleep(30)
    runs.emit(run, 'agent', { late: 2 })
    await runs.shutdownActive()
    const lines = readLines(run.eventsLogPath)
    expect(lines).toHaveLength(2)
    expect(JSON.parse(lines[1])).toMatchObject({ id: 2, event: 'end' })
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3, 4])
    expect(sentIds(late)).toEqual([3, 4])
  })

  // LC-1/LC-2 amend this: drop removes the run's state file (a dropped run is never found again);
  // its journal stays. get() brings an evicted run back from disk (here: the very object).
  it('LOG-7/IMP-2: journals are never deleted on eviction or drop; drop closes the log (later emits not written)', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp, ttlMs: 1 })
    const evicted = runs.create()
    runs.emit(evicted, 'a', 1)
    runs.finish(evicted, 'succeeded', 0, null)
    const dropped = runs.create()
    runs.emit(dropped, 'a', 1)
    runs.drop(dropped)
    runs.emit(dropped, 'a', 2)
    await sleep(50)
    expect(runs.list()).toEqual([])
    expect(runs.get(evicted.id)).toBe(evicted)
    expect(runs.get(dropped.id)).toBeNull()
    await runs.shutdownActive()
    expect(readLines(evicted.eventsLogPath)).toHaveLength(2)
    expect(fs.existsSync(path.join(tmp, evicted.id, 'state.json'))).toBe(true)
    expect(readLines(dropped.eventsLogPath).map((l) => JSON.parse(l).id)).toEqual([1])
    expect(fs.readdirSync(path.join(tmp, dropped.id))).toEqual(['events.jsonl'])
  })

  // Linux only: counts open descriptors through /proc/self/fd.
  it.skipIf(notLinux)('LOG-8/IMP-1: late events do not leave descriptors open on the log files', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    for (let i = 0; i < 20; i++) {
      const run = runs.create()
      runs.emit(run, 'a', 1)
      runs.finish(run, 'succeeded', 0, null)
      runs.emit(run, 'late', 2)
    }
    await runs.shutdownActive()
    await sleep(30)
    expect(openFdsUnder(tmp)).toBe(0)
  })

  it('LOG-1/OPT: a relative runsLogDir stays relative in eventsLogPath and is resolved against the cwd when opened', async () => {
    const cwd = process.cwd()
    process.chdir(tmp)
    try {
      const { runs } = makeRuns({ runsLogDir: 'rel-logs' })
      const run = runs.create()
      expect(run.eventsLogPath).toBe(path.join('rel-logs', run.id, 'events.jsonl'))
      expect(path.isAbsolute(run.eventsLogPath)).toBe(false)
      runs.emit(run, 'a', 1)
      runs.finish(run, 'succeeded', 0, null)
      await runs.shutdownActive()
      expect(readLines(path.join(tmp, 'rel-logs', run.id, 'events.jsonl'))).toHaveLength(2)
      expect(runs.statusBody(run).eventsLogPath).toBe(path.join('rel-logs', run.id, 'events.jsonl'))
    } finally {
      process.chdir(cwd)
    }
  })

  it('LOG-9: eventsLogStream is a journal handle while the journal is open; it finishes once the lines are on disk', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create({ projectId: 'p' })
    expect(run.eventsLogStream).toBeNull() // before the first emit
    const deltas = 500
    for (let i = 0; i < deltas; i++) runs.emit(run, 'agent', { type: 'text_delta', delta: `chunk ${i}` })
    const log = run.eventsLogStream
    expect(log).toBeInstanceOf(Writable)
    expect(run.eventsLogStream).toBe(log)
    expect(log.path).toBe(run.eventsLogPath)
    // A write through it is refused, by its callback, without an uncaught 'error'.
    const refused = await new Promise<Error | null | undefined>((resolve) => log.write('x\n', resolve))
    expect(refused?.message).toMatch(/written by the service/)
    const again = runs.create()
    runs.emit(again, 'a', 1)
    const open = again.eventsLogStream
    const flushed = finished(open)
    runs.finish(again, 'succeeded', 0, null)
    expect(again.eventsLogStream).toBeNull() // closed with the log
    await flushed
    expect(readLines(again.eventsLogPath).map((l) => JSON.parse(l).event)).toEqual(['a', 'end'])
    // The failed write above destroyed the first handle; a run's handle is per open journal.
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    expect(readLines(run.eventsLogPath)).toHaveLength(deltas + 1)
    // Logging off: always null. A host value replaces the field.
    const { runs: memory } = makeRuns()
    const inMemory = memory.create()
    memory.emit(inMemory, 'a', 1)
    expect(inMemory.eventsLogStream).toBeNull()
    inMemory.eventsLogStream = 'mine'
    expect(inMemory.eventsLogStream).toBe('mine')
    expect(Object.keys(inMemory)).toContain('eventsLogStream')
  })

  it('LOG-9: prepareRestart reopens the journal (a new handle), a hydrated run has none', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create()
    runs.emit(run, 'a', 1)
    const first = run.eventsLogStream
    const firstDone = finished(first)
    runs.finish(run, 'failed', 1, null)
    await firstDone
    expect(runs.prepareRestart(run)).toBe(run)
    const second = run.eventsLogStream // run_resume_attempted was emitted
    expect(second).toBeInstanceOf(Writable)
    expect(second).not.toBe(first)
    const secondDone = finished(second)
    runs.finish(run, 'succeeded', 0, null)
    await secondDone
    expect(readLines(run.eventsLogPath).map((l) => JSON.parse(l).event)).toEqual([
      'a',
      'end',
      'run_resume_attempted',
      'end',
    ])
    const { runs: restarted } = makeRuns({ runsLogDir: tmp })
    expect(restarted.get(run.id).eventsLogStream).toBeNull()
  })
})
