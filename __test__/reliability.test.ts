import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { getChatRunServiceStats } from '../index.js'
import {
  fakeReq,
  fakeRes,
  fixture,
  isWindows,
  makeRuns,
  readLines,
  runNodeSync,
  sentIds,
  sentRecords,
  useTempDirs,
  ends,
} from './helpers'

// Never lose an event, never leak: replay beyond the history, bounded resources, crash durability
// and the health snapshot. Scenarios that need a process of their own (SIGKILL, ulimit, a million
// emits) run __test__/fixtures/reliability-worker.cjs. (Restart survival, LC-1/LC-2, is
// __test__/lifecycle-restart.test.ts.)

const WORKER = fixture('reliability-worker.cjs')
const tempDir = useTempDirs('reliability-')
let tmp: string
beforeEach(() => {
  tmp = tempDir()
})

/** A service logging to this test's temp dir; `clients` are the SSE clients of its stream() calls. */
function service(extra: Record<string, unknown> = {}) {
  const { runs, sse: clients } = makeRuns({ runsLogDir: tmp, ...extra })
  return { runs, clients }
}

const req = (cursor: string) => fakeReq(undefined, cursor)
const res = () => fakeRes()
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Runs a worker scenario; `ulimit` caps its open files, `fileBlocks` its file size (512-byte blocks). */
function worker(args: string[], { ulimit, fileBlocks }: { ulimit?: number; fileBlocks?: number } = {}) {
  const limits = [ulimit ? `ulimit -n ${ulimit}` : '', fileBlocks ? `ulimit -f ${fileBlocks}` : ''].filter(Boolean)
  const command =
    limits.length > 0
      ? ['sh', ['-c', `${limits.join(' && ')} && exec "$0" "$@"`, process.execPath, WORKER, ...args]]
      : [process.execPath, [WORKER, ...args]]
  const result = spawnSync(command[0] as string, command[1] as string[], { encoding: 'utf8', timeout: 120_000 })
  const last = result.stdout.trim().split('\n').at(-1) ?? ''
  if (!last.startsWith('{')) throw new Error(`worker ${args[0]} printed ${result.stdout}\n${result.stderr}`)
  return JSON.parse(last)
}

describe('replay beyond the history (IMP-3)', () => {
  it('a finished run of 5000 events with maxEvents 10 replays every missed event once, in order, from any cursor', async () => {
    const { runs, clients } = service({ maxEvents: 10 })
    const run = runs.create({})
    for (let n = 1; n <= 5000; n++) runs.emit(run, 'stdout', { n })
    runs.finish(run, 'succeeded', 0, null)
    expect(run.events).toHaveLength(10)
    for (const cursor of ['0', '100', '4990', '5000']) runs.stream(run, req(cursor), res())
    expect(sentIds(clients[0])).toEqual(range(1, 5001))
    expect(sentIds(clients[1])).toEqual(range(101, 5001))
    expect(sentIds(clients[2])).toEqual(range(4991, 5001))
    expect(sentIds(clients[3])).toEqual([5001])
    expect(sentRecords(clients[1])[0]).toEqual({ id: 101, event: 'stdout', data: { n: 101 } })
    expect(clients.every((c) => ends(c) === 1)).toBe(true)
  })

  it('a live run reattaching right after a burst (log not yet flushed) gets the full transcript, then live events', () => {
    const { runs, clients } = service({ maxEvents: 5 })
    const run = runs.create({})
    for (let n = 1; n <= 3000; n++) runs.emit(run, 'stdout', { n })
    runs.stream(run, req('0'), res())
    runs.emit(run, 'stdout', { n: 3001 })
    expect(sentIds(clients[0])).toEqual(range(1, 3001))
  })
})

describe('bounded resources', () => {
  // POSIX only: `sh -c 'ulimit -n 512'` (not on Windows).
  it.skipIf(isWindows)(
    '3000 concurrent runs emitting with persistence under ulimit -n 512 lose no event and never hit EMFILE',
    () => {
      const r = worker(['many-runs', tmp, '3000', '5'], { ulimit: 512 })
      expect(r.error).toBeUndefined()
      expect(r.complete).toBe(3000)
      expect(r.maxFds).toBeLessThan(512)
      expect(r.midOpenFiles).toBeLessThanOrEqual(64)
      expect(r.stats.log.notPersisted).toEqual({ diskError: 0, queueFull: 0, unserializable: 0, afterClose: 0 })
      expect(r.stats.log.linesWritten).toBe(3000 * 6)
      expect(r.stats.log.openFiles).toBe(0)
    },
  )

  it('a burst of 1,000,000 emits keeps the writer queue under its cap, never blocks emit for long and drops nothing silently', () => {
    const r = worker(['burst', tmp, '1000000'])
    expect(r.error).toBeUndefined()
    expect(r.maxQueueBytes).toBeLessThanOrEqual(64 * 1024 * 1024)
    // emit itself only ever waits on the writer at the queue cap, for 10 ms at most, and here
    // the cap was never reached (queueFull 0), so emit never waited on the disk at all. What
    // remains are GC and scheduler pauses of a busy machine: rare, and bounded loosely here.
    expect(r.stats.log.notPersisted.queueFull).toBe(0)
    expect(r.over1ms).toBeLessThan(1000) // < 0.1% of the emits
    expect(r.maxEmitMs).toBeLessThan(500)
    // Every line is either on disk or counted as refused at the cap: nothing silently lost.
    expect(r.lines + r.stats.log.notPersisted.queueFull).toBe(1_000_000 + 100)
    expect(r.stats.log.linesWritten).toBe(r.lines)
    console.log(
      `burst: ${r.total} emits in ${r.loopMs.toFixed(0)} ms, max emit ${r.maxEmitMs.toFixed(2)} ms, ` +
        `${r.over1ms} over 1 ms, ${r.over10ms} over 10 ms, ` +
        `max queue ${(r.maxQueueBytes / 2 ** 20).toFixed(1)} MiB, refused ${r.stats.log.notPersisted.queueFull}, rss ${r.rssMb.toFixed(0)} MiB`,
    )
  })
})

describe('a journal that cannot grow: a full disk, a file size limit (LOG-6)', () => {
  // POSIX only: `ulimit -f`. Node ignores SIGXFSZ, so the write that crosses the limit is cut
  // short (the bytes up to it land) and every later write fails with EFBIG, as on a full disk.
  it.skipIf(isWindows)(
    'a write cut short is taken back: whole lines only, counted exactly, and later appends stay readable',
    async () => {
      const total = 2000
      const r = worker(['file-size-limit', tmp, String(total)], { fileBlocks: 64 })
      expect(r.error).toBeUndefined()
      const text = fs.readFileSync(r.path, 'utf8')
      // What landed is whole batches, up to the limit (where the cut falls depends on how the
      // writer thread grouped the lines).
      expect(text.length).toBeGreaterThan(0)
      expect(text.length).toBeLessThanOrEqual(64 * 512)
      expect(text.endsWith('\n')).toBe(true)
      const ids = text
        .slice(0, -1)
        .split('\n')
        .map((line) => JSON.parse(line).id)
      // In id order, each once. A batch that did not fit was taken back whole; a smaller one
      // after it may still fit, so the ids can skip what was lost (counted below).
      expect(ids[0]).toBe(1)
      expect(ids.every((id, i) => i === 0 || id > ids[i - 1])).toBe(true)
      expect(ids.length).toBeLessThan(total)
      // Every line is either on disk or counted as lost to the disk (2000 emits and the 'end').
      expect(r.stats.log.linesWritten).toBe(ids.length)
      expect(r.stats.log.notPersisted.diskError).toBe(total + 1 - ids.length)

      // Room again (a new process without the limit): the run comes back and what it appends
      // starts on a line of its own.
      const { runs } = service()
      const run = runs.get(r.id)
      expect(run.status).toBe('succeeded')
      expect(runs.prepareRestart(run)).toBe(run)
      runs.emit(run, 'stdout', { after: 'the limit' })
      runs.finish(run, 'succeeded', 0, null)
      await runs.shutdownActive()
      const records = fs
        .readFileSync(r.path, 'utf8')
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line))
      expect(records.slice(0, ids.length).map((record) => record.id)).toEqual(ids)
      expect(records.at(-2)).toMatchObject({ event: 'stdout', data: { after: 'the limit' } })
      expect(records.at(-1)).toMatchObject({ event: 'end', data: { status: 'succeeded' } })
    },
  )
})

describe('crash durability', () => {
  // POSIX only: on Windows a process killed this way exits with a code, not the signal SIGKILL.
  it.skipIf(isWindows)(
    'a process killed with SIGKILL right after its emits leaves whole lines, in id order, with at most the last one torn',
    () => {
      const total = 100_000
      const result = runNodeSync([WORKER, 'crash', tmp, String(total)], { timeout: 60_000 })
      expect(result.signal).toBe('SIGKILL')
      const { path: logPath } = JSON.parse(result.stdout.trim().split('\n')[0])
      const text = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : ''
      const lines = text.split('\n')
      const tail = lines.pop() // '' when the file ends with a newline, else a torn last line
      const ids = lines.map((l) => JSON.parse(l).id)
      expect(ids).toEqual(range(1, ids.length))
      if (tail) {
        // Cut inside its line (not JSON), or exactly before its line feed: then it is the next
        // record whole, which hydration reads as one and ends with a line feed (LOG-6).
        let parsed: { id?: unknown } | null = null
        try {
          parsed = JSON.parse(tail)
        } catch {
          // torn inside the line
        }
        if (parsed !== null) expect(parsed.id).toBe(ids.length + 1)
      }
      // The writer appends while the emits go on, not only after them. How much it gets to disk
      // before the kill is a measurement, not a target of this test (README "Guarantees": 96.6-100%
      // here when idle; 42% was seen once while the machine was writing back a fresh build).
      expect(ids.length).toBeGreaterThan(0)
      console.log(
        `crash durability: ${ids.length} of ${total} lines on disk (${((100 * ids.length) / total).toFixed(1)}%)`,
      )
    },
  )
})

describe('the process ends right after its emits (IMP-4, BND-6)', () => {
  /** The ids of each journal under this test's directory. */
  const journalIds = () =>
    fs
      .readdirSync(tmp)
      .map((id) => readLines(path.join(tmp, id, 'events.jsonl')).map((line) => JSON.parse(line).id as number))

  // process.exit(), an uncaught exception, an unhandled rejection, process.exit() in a worker
  // thread: the 'exit' listener hands the staged emits to the core and waits for the writer.
  it.each(['exit', 'throw', 'reject', 'worker'])(
    '%s: every record emitted before it is on disk, in id order',
    (how) => {
      const total = 100_000
      const result = runNodeSync([WORKER, 'end-right-after-emits', tmp, how, String(total)], { timeout: 60_000 })
      expect(result.signal).toBeNull()
      expect(result.status).toBe({ exit: 3, throw: 1, reject: 1, worker: 0 }[how])
      if (how === 'worker') expect(JSON.parse(result.stdout.trim())).toEqual({ workerExitCode: 3 })
      const journals = journalIds()
      expect(journals).toHaveLength(2)
      for (const ids of journals) expect(ids).toEqual(range(1, ids.length))
      // Every emit, and the finished run's 'end' record.
      expect(journals[0].length + journals[1].length).toBe(total + 1)
    },
  )

  // A test runner's module isolation re-requires the package (three fresh copies); vitest's
  // vmThreads or jest compile a copy in another realm (a vm context), next to the fixture's own.
  it.each([
    ['copies', 3],
    ['vm-copy', 2],
  ] as const)('%s of the package share the one exit listener, and every copy writes its records', (how, services) => {
    const total = 20_000
    const result = runNodeSync([WORKER, 'end-right-after-emits', tmp, how, String(total)], { timeout: 60_000 })
    expect(result.stderr).toBe('')
    expect(result.status).toBe(3)
    // The fixture's own service (loaded first) added the listener; the copies add none.
    expect(JSON.parse(result.stdout.trim())).toEqual({ addedExitListeners: 0 })
    const journals = journalIds()
    expect(journals).toHaveLength(services)
    for (const ids of journals) expect(ids).toEqual(range(1, total / 2))
  })
})

describe('visible health: getChatRunServiceStats', () => {
  it('reports runs by status, retained events and bytes, open files and lines not persisted by reason', async () => {
    const warnings: string[] = []
    // Only this test's directory: an earlier test's service may still report its own log error.
    const onWarning = (w: Error & { code?: string }) => {
      if (w.code !== 'CHAT_RUN_LOG_ERROR' || w.message.includes(tmp)) warnings.push(String(w.code))
    }
    process.on('warning', onWarning)
    const { runs } = service({ maxEvents: 3 })
    const a = runs.create({})
    for (let n = 0; n < 5; n++) runs.emit(a, 'x', { n })
    runs.emit(a, 'x', { big: 10n })
    runs.finish(a, 'succeeded', 0, null)
    runs.emit(a, 'late', 1)
    const b = runs.create({})
    b.status = 'running'
    runs.create({})
    let stats = getChatRunServiceStats(runs)
    expect(stats.runs).toMatchObject({ registered: 3, active: 2, byStatus: { succeeded: 1, running: 1, queued: 1 } })
    expect(stats.events.retained).toBe(3)
    expect(stats.events.retainedBytes).toBe(
      a.events.reduce((sum: number, e: unknown) => sum + JSON.stringify(e).length, 0),
    )
    expect(stats.log.notPersisted).toMatchObject({ unserializable: 1, afterClose: 1, diskError: 0, queueFull: 0 })
    await runs.shutdownActive({ graceMs: 10 })
    stats = getChatRunServiceStats(runs)
    // a: 5 lines + end; b and the queued run: the end written by shutdownActive.
    expect(stats.log).toMatchObject({ enabled: true, linesWritten: 8, openFiles: 0, queue: { lines: 0, bytes: 0 } })
    expect(stats.runs.byStatus).toEqual({ succeeded: 1, canceled: 2 })

    // A log directory that cannot be created: counted as disk errors, reported once.
    const file = path.join(tmp, 'not-a-dir')
    fs.writeFileSync(file, 'x')
    const { runs: broken } = makeRuns({ runsLogDir: file })
    const r = broken.create({})
    broken.emit(r, 'x', 1)
    broken.emit(r, 'x', 2)
    await broken.shutdownActive()
    await vi.waitFor(() => expect(warnings.filter((w) => w === 'CHAT_RUN_LOG_ERROR')).toHaveLength(1))
    expect(getChatRunServiceStats(broken).log.notPersisted.diskError).toBeGreaterThanOrEqual(3)
    process.off('warning', onWarning)
    expect(() => getChatRunServiceStats({} as never)).toThrow(
      /getChatRunServiceStats\(service\): expected an object returned by createChatRunService/,
    )
  })
})
