// SPEC LC-11 (the host's writeDurableState) and LC-1's persistState result: every state-file write
// handed to the host, in order, its answer recorded as a write of the core's own would be.
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { baseOptions, FakeChild, makeRuns, readStateFile, runningWithChild, useTempDirs } from './helpers'
import { createChatRunService, getChatRunServiceStats } from '../index.js'

const tempDir = useTempDirs('host-writer-')
let tmp: string
let warn: ReturnType<typeof vi.spyOn>
beforeEach(() => {
  tmp = tempDir()
  warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
})
afterEach(() => {
  warn.mockRestore()
})

type Answer = { ok: boolean; errorType?: unknown } | undefined
interface Write {
  file: string
  status: unknown
  persistence: unknown
}

/** A service whose state writes go to `answer(write number, state)`; every write is recorded. */
function withWriter(answer: (n: number, state: any, filePath: string) => Answer = () => ({ ok: true })) {
  const writes: Write[] = []
  const runs = makeRuns({
    runsLogDir: tmp,
    writeDurableState: (filePath: string, state: any) => {
      writes.push({
        file: filePath,
        status: state.status,
        persistence: state.terminalLifecycle?.terminalPersistence?.status,
      })
      return answer(writes.length, state, filePath)
    },
  }).runs
  return { runs, writes }
}

/** A writer that writes the file where the core would (its directory first). */
function writeFile(filePath: string, state: unknown) {
  fs.mkdirSync(path.dirname(filePath), { recursive: true })
  fs.writeFileSync(filePath, `${JSON.stringify(state)}\n`)
  return { ok: true }
}

const warnings = (): string[] => warn.mock.calls.map((call: unknown[]) => String(call[0]))

describe('LC-11: the host writes the state files', () => {
  it('each write reaches the host, synchronously, with the path and the state; the core writes no file', () => {
    const { runs, writes } = withWriter()
    const run = runs.create({ projectId: 'p' })
    const file = path.join(tmp, run.id, 'state.json')
    expect(writes).toEqual([{ file, status: 'queued', persistence: undefined }])
    expect(fs.existsSync(file)).toBe(false)
    runs.start(run, async () => {})
    runs.finish(run, 'failed', 1, null)
    // The verdict's write and the one at its 'end', as upstream makes them.
    expect(writes.slice(-2)).toEqual([
      { file, status: 'failed', persistence: 'acknowledged' },
      { file, status: 'failed', persistence: 'acknowledged' },
    ])
    expect(fs.existsSync(file)).toBe(false)
    expect(run.terminalLifecycle.terminalPersistence).toEqual({ status: 'acknowledged', errorType: null })
    expect(runs.persistState(run)).toEqual({ ok: true })
  })

  it('a failed verdict write marks the record failed with the class the host named, and is counted and reported', async () => {
    const { runs } = withWriter((_n, state) =>
      state.status === 'failed' ? { ok: false, errorType: 'storage_full' } : { ok: true },
    )
    const run = runs.create({})
    runs.finish(run, 'failed', 1, null)
    expect(runs.statusBody(run).terminalLifecycle).toMatchObject({
      terminalPersistence: { status: 'failed', errorType: 'storage_full' },
      unfinishedState: 'terminated_persistence_missing',
    })
    expect(runs.persistState(run)).toEqual({ ok: false, errorType: 'storage_full' })
    expect(getChatRunServiceStats(runs).stateFile.failed).toBe(3)
    // (The log error report reaches the process on a later turn.)
    await new Promise((resolve) => setImmediate(resolve))
    expect(warnings().filter((w) => w.includes('writeDurableState reported storage_full'))).toHaveLength(1)
  })

  it.each([
    [
      'the verdict write succeeds and the one at the end fails: acknowledged',
      { ok: true },
      { ok: false, errorType: 'storage_full' },
    ],
    [
      'the verdict write fails and the one at the end succeeds: acknowledged',
      { ok: false, errorType: 'storage_full' },
      { ok: true },
    ],
  ])('%s', (_name, atVerdict, atEnd) => {
    const { runs, writes } = withWriter((n) => [{ ok: true }, atVerdict, atEnd][n - 1] ?? { ok: true })
    const run = runs.create({})
    runs.finish(run, 'failed', 1, null)
    expect(writes).toHaveLength(3)
    expect(run.terminalLifecycle.terminalPersistence).toEqual({ status: 'acknowledged', errorType: null })
  })

  it("both verdict writes failing leave the record failed with the 'end' write's class", () => {
    const answers: Answer[] = [
      { ok: true },
      { ok: false, errorType: 'storage_full' },
      { ok: false, errorType: 'permission_denied' },
    ]
    const { runs } = withWriter((n) => answers[n - 1])
    const run = runs.create({})
    runs.finish(run, 'succeeded', 0, null)
    expect(run.terminalLifecycle.terminalPersistence).toEqual({ status: 'failed', errorType: 'permission_denied' })
  })

  it("an unknown class is 'unknown'; a throw and a promise are failed writes, reported once, and the service goes on", async () => {
    const rejections: unknown[] = []
    const onRejection = (reason: unknown) => rejections.push(reason)
    process.on('unhandledRejection', onRejection)
    try {
      for (const [answer, expected] of [
        [() => ({ ok: false, errorType: 'disk on fire' }), 'unknown'],
        [() => ({ ok: false }), 'unknown'],
        [
          () => {
            throw new Error('EIO')
          },
          'unknown',
        ],
        [() => Promise.reject(new Error('late')), 'unknown'],
        [() => undefined, null],
      ] as const) {
        const { runs } = withWriter((n) => (n === 1 ? { ok: true } : (answer as () => Answer)()))
        const run = runs.create({})
        const result = runs.persistState(run)
        expect(result).toEqual(expected === null ? { ok: true } : { ok: false, errorType: expected })
        runs.emit(run, 'agent', { type: 'text_delta', delta: 'still here' })
        runs.finish(run, 'succeeded', 0, null)
        expect(run.status).toBe('succeeded')
        expect(run.events.at(-1).event).toBe('end')
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
      expect(rejections).toEqual([])
      expect(warnings().some((w) => w.includes('the writeDurableState hook threw (EIO)'))).toBe(true)
      expect(warnings().some((w) => w.includes('the writeDurableState hook returned a promise'))).toBe(true)
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  })

  it('a write the writer itself causes is handed over after the one it is making, never inside it', () => {
    let depth = 0
    let maxDepth = 0
    const order: string[] = []
    const nested: unknown[] = []
    let again: any = null
    const runs = makeRuns({
      runsLogDir: tmp,
      writeDurableState: (_file: string, state: any) => {
        depth += 1
        maxDepth = Math.max(maxDepth, depth)
        order.push(`${state.status}:${state.requestFingerprint ?? '-'}`)
        if (again !== null) {
          const run = again
          again = null
          run.requestFingerprint = 'again'
          // Its write follows this one: no outcome yet.
          nested.push(runs.persistState(run))
        }
        depth -= 1
        return { ok: true }
      },
    }).runs
    const run = runs.create({})
    again = run
    expect(runs.persistState(run)).toEqual({ ok: true })
    expect(order).toEqual(['queued:-', 'queued:-', 'queued:again'])
    expect(nested).toEqual([{ ok: false, errorType: 'unknown' }])
    expect(maxDepth).toBe(1)
    expect(runs.persistState(run)).toEqual({ ok: true })
  })

  it('the writer is called where the service is consistent: the run registered at create, the verdict applied', async () => {
    const seen: unknown[] = []
    let shutdown: Promise<unknown> | null = null
    const runs: any = makeRuns({
      runsLogDir: tmp,
      writeDurableState: (file: string, state: any) => {
        const run = runs.get(state.id)
        seen.push([state.status, run?.status, runs.list().includes(run)])
        if (state.status === 'queued' && shutdown === null) shutdown = runs.shutdownActive({ graceMs: 0 })
        return writeFile(file, state)
      },
    }).runs
    const run = runs.create({})
    await shutdown
    // The run is registered at every write, its object at create's, its verdict applied at the verdict's.
    expect(seen[0]).toEqual(['queued', 'queued', true])
    expect(seen.every((entry: any) => entry[2] === true)).toBe(true)
    expect(seen.at(-1)).toEqual(['canceled', 'canceled', true])
    expect(run.status).toBe('canceled')
  })

  it("a teardown's writes on its own timers reach the writer before its promise settles", async () => {
    const statuses: unknown[] = []
    const { runs } = withWriter((_n, state) => {
      statuses.push(state.cancelOrigin === null ? state.status : `${state.status}/${state.cancelOrigin}`)
      return { ok: true }
    })
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    child.on('close', (code: unknown, signal: unknown) => runs.finish(run, 'canceled', code, signal))
    await runs.cancel(run, 'user_stop')
    expect(run.status).toBe('canceled')
    expect(statuses.at(-1)).toBe('canceled/user_stop')
    expect(run.terminalLifecycle.terminalPersistence.status).toBe('acknowledged')
  })

  it("LC-5: a cancel's origin reaches the writer before the first signal", async () => {
    const log: string[] = []
    const { runs } = withWriter((_n, state) => {
      log.push(`write:${state.status}/${state.cancelOrigin}`)
      return { ok: true }
    })
    const child = new FakeChild({ closeOn: 'SIGTERM', log })
    const run = runningWithChild(runs, child)
    child.on('close', (code: unknown, signal: unknown) => runs.finish(run, 'canceled', code, signal))
    log.length = 0
    await runs.cancel(run, 'user_stop')
    expect(log[0]).toBe('write:running/user_stop')
    expect(log.indexOf('kill:SIGTERM')).toBeGreaterThan(0)
  })

  it("LC-5, LC-9: a cancel's origin reaches the writer before the host's tree terminator", async () => {
    const log: string[] = []
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const { runs } = makeRuns({
      runsLogDir: tmp,
      writeDurableState: (_p: string, state: any) => {
        log.push(`write:${state.status}/${state.cancelOrigin}`)
        return { ok: true }
      },
      terminateProcessTree: () => {
        log.push('terminate')
        child.die(null, 'SIGTERM')
        return { attempted: true, childTreeQuiescent: true, forced: false, identityVerified: true, remainingPids: [] }
      },
    })
    const run = runningWithChild(runs, child)
    run.processTreeRoot = { pid: 100, createdAt: 10 }
    log.length = 0
    await runs.cancel(run, 'user_stop')
    expect(log.indexOf('write:running/user_stop')).toBeGreaterThanOrEqual(0)
    expect(log.indexOf('write:running/user_stop')).toBeLessThan(log.indexOf('terminate'))
  })

  it("a write and a drop from inside the writer: the dropped run's file stays gone", () => {
    let target: any = null
    const runs: any = makeRuns({
      runsLogDir: tmp,
      writeDurableState: (file: string, state: unknown) => {
        const result = writeFile(file, state)
        if (target !== null) {
          const run = target
          target = null
          runs.persistState(run)
          runs.drop(run)
        }
        return result
      },
    }).runs
    const run = runs.create({})
    target = run
    runs.persistState(run)
    expect(fs.existsSync(path.join(tmp, run.id, 'state.json'))).toBe(false)
    expect(makeRuns({ runsLogDir: tmp }).runs.get(run.id)).toBeNull()
  })

  it("another service's writes made from inside a writer are handed over (or written) before its call returns", () => {
    const plain = makeRuns({ runsLogDir: path.join(tmp, 'plain') }).runs
    const plainRun = plain.create({})
    const aWrites: unknown[] = []
    const a: any = makeRuns({
      runsLogDir: path.join(tmp, 'a'),
      writeDurableState: (file: string, state: any) => {
        aWrites.push(state.requestFingerprint ?? state.status)
        return writeFile(file, state)
      },
    }).runs
    const aRun = a.create({})
    const inner: unknown[] = []
    let once = true
    const b = makeRuns({
      runsLogDir: path.join(tmp, 'b'),
      writeDurableState: () => {
        if (once) {
          once = false
          aRun.requestFingerprint = 'fp-1'
          inner.push(a.persistState(aRun), plain.persistState(plainRun))
        }
        return { ok: true }
      },
    }).runs
    b.create({})
    expect(inner).toEqual([{ ok: true }, { ok: true }])
    expect(aWrites).toEqual(['queued', 'fp-1'])
  })

  it('a finish from inside the writer gets the outcome of its own writes in its record', () => {
    let target: any = null
    const runs: any = makeRuns({
      runsLogDir: tmp,
      writeDurableState: (_file: string, state: any) => {
        if (state.status === 'failed') return { ok: false, errorType: 'storage_full' }
        if (target !== null) {
          const run = target
          target = null
          runs.finish(run, 'failed', 1, null)
        }
        return { ok: true }
      },
    }).runs
    const a = runs.create({})
    const b = runs.create({})
    target = b
    expect(runs.persistState(a)).toEqual({ ok: true })
    expect(b.terminalLifecycle.terminalPersistence).toEqual({ status: 'failed', errorType: 'storage_full' })
  })

  it("hydration's rewrite reaches the writer once the run is hydrated, not in the middle of it", () => {
    const first = makeRuns({ runsLogDir: tmp }).runs
    const old = first.create({})
    first.finish(old, 'failed', 1, null)
    // A retryable termination failure no identity can retry: hydration rewrites the file (LC-9).
    const file = path.join(tmp, old.id, 'state.json')
    const state = JSON.parse(fs.readFileSync(file, 'utf8'))
    fs.writeFileSync(
      file,
      JSON.stringify({ ...state, errorCode: 'RUN_TERMINATION_UNVERIFIED', termination: { retryable: true } }),
    )
    const seen: string[] = []
    let restarted = false
    const runs: any = makeRuns({
      runsLogDir: tmp,
      onTerminal: (run: any, status: string) => seen.push(`onTerminal ${status} ${run.status}`),
      writeDurableState: (_file: string, written: any) => {
        seen.push(`write ${written.status}`)
        const run = runs.get(written.id)
        if (!restarted) {
          restarted = true
          runs.prepareRestart(run)
        }
        return { ok: true }
      },
    }).runs
    runs.get(old.id)
    expect(seen).toEqual(['onTerminal failed failed', 'write failed', 'write queued'])
  })

  it('a writer that writes the file makes runs a later service finds, interrupted ones included', () => {
    const { runs } = withWriter((_n, state, filePath) => writeFile(filePath, state))
    const done = runs.create({ projectId: 'p' })
    runs.emit(done, 'agent', { type: 'text_delta', delta: 'hi' })
    runs.finish(done, 'succeeded', 0, null)
    const running = runs.create({ projectId: 'p' })
    runs.start(running, async () => {})
    expect(readStateFile(tmp, done.id)).toMatchObject({ status: 'succeeded' })

    // A restarted daemon with the same writer: the interrupted run's new state goes through it.
    const later = withWriter((_n, state, filePath) => writeFile(filePath, state))
    expect(later.runs.get(done.id)).toMatchObject({ status: 'succeeded' })
    const interrupted = later.runs.get(running.id)
    expect(interrupted).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED' })
    expect(later.writes).toEqual([
      { file: path.join(tmp, running.id, 'state.json'), status: 'failed', persistence: undefined },
    ])
    expect(readStateFile(tmp, running.id)).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED' })
  })

  it("LC-10: a reservation the host's writer could not write is not made", () => {
    let fail = false
    const { runs, writes } = withWriter(() => (fail ? { ok: false, errorType: 'storage_full' } : { ok: true }))
    const run = runs.create({})
    runs.finish(run, 'failed', 1, null)
    expect(runs.reserveRestartAttempt(run, 1)).toBe(true)
    expect(run.pendingManualResumeAttemptCount).toBe(1)
    fail = true
    const before = writes.length
    expect(runs.reserveRestartAttempt(run, 2)).toBe(false)
    expect(writes).toHaveLength(before + 1)
    expect(run.pendingManualResumeAttemptCount).toBe(1)
  })

  it('without runsLogDir the writer is never called; a value that is not a function is a TypeError', () => {
    const writer = vi.fn(() => ({ ok: true }))
    const { runs } = makeRuns({ writeDurableState: writer })
    const run = runs.create({})
    runs.finish(run, 'succeeded', 0, null)
    expect(runs.persistState(run)).toEqual({ ok: false, errorType: 'storage_unavailable' })
    expect(writer).not.toHaveBeenCalled()
    for (const bad of [true, 'fs.writeFileSync', {}]) {
      expect(() =>
        createChatRunService({ ...baseOptions(), runsLogDir: tmp, writeDurableState: bad as never }),
      ).toThrow(/options\.writeDurableState must be a function, got/)
    }
    expect(() => createChatRunService({ ...baseOptions(), runsLogDir: tmp, writeDurableState: null })).not.toThrow()
  })
})

describe("LC-1: persistState's result", () => {
  it('says whether the file holds the state, and why not', () => {
    const runs = makeRuns({ runsLogDir: tmp }).runs
    const run = runs.create({})
    expect(runs.persistState(run)).toEqual({ ok: true })
    // The run's directory replaced by a file: the write cannot be made.
    fs.rmSync(path.join(tmp, run.id), { recursive: true })
    fs.writeFileSync(path.join(tmp, run.id), 'not a directory')
    const failed = runs.persistState(run)
    expect(failed.ok).toBe(false)
    expect(failed).toEqual({ ok: false, errorType: expect.stringMatching(/^[a-z_]+$/) })
    expect(failed).not.toEqual({ ok: false, errorType: 'storage_unavailable' })
    fs.rmSync(path.join(tmp, run.id))
    expect(runs.persistState(run)).toEqual({ ok: true })
    runs.drop(run)
    expect(runs.persistState(run)).toEqual({ ok: false, errorType: 'storage_unavailable' })
    expect(runs.persistState(null)).toEqual({ ok: false, errorType: 'storage_unavailable' })
    const unlogged = makeRuns().runs
    expect(unlogged.persistState(unlogged.create({}))).toEqual({ ok: false, errorType: 'storage_unavailable' })
  })
})
