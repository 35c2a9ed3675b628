// SPEC §11 shutdownActive: options (SHD-1), which runs (SHD-2), the synchronous steps (SHD-3), the
// kill and wait (SHD-4), errors (SHD-5) and the log flush barrier (SHD-6/IMP-4). Fake children only.
import { beforeEach, describe, expect, it } from 'vitest'
import { FakeChild, fakeReq, fakeRes, makeRuns, readLines, runningWithChild, useTempDirs, waitFor } from './helpers'

describe('§11 shutdownActive', () => {
  it('SHD-1: null or undefined opts use shutdownGraceMs', async () => {
    for (const opts of [null, undefined]) {
      const { runs } = makeRuns({ shutdownGraceMs: 40 })
      const child = new FakeChild({ closeOn: 'SIGKILL' })
      runningWithChild(runs, child)
      const t0 = Date.now()
      const p = runs.shutdownActive(opts)
      expect(p).toBeInstanceOf(Promise)
      await expect(p).resolves.toBeUndefined()
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
      expect(child.times[1] - t0).toBeGreaterThanOrEqual(35)
    }
  })

  it('SHD-1: an invalid graceMs (NaN, negative, non-number) uses shutdownGraceMs', async () => {
    for (const graceMs of [NaN, -1, '5', null]) {
      const { runs } = makeRuns({ shutdownGraceMs: 40 })
      const child = new FakeChild({ closeOn: 'SIGKILL' })
      runningWithChild(runs, child)
      const t0 = Date.now()
      await runs.shutdownActive({ graceMs })
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
      expect(child.times[1] - t0).toBeGreaterThanOrEqual(35)
      expect(Date.now() - t0).toBeLessThan(1500)
    }
  })

  it('SHD-1: a valid graceMs is used', async () => {
    const { runs } = makeRuns({ shutdownGraceMs: 5000 })
    const child = new FakeChild({ closeOn: 'SIGKILL' })
    runningWithChild(runs, child)
    const t0 = Date.now()
    await runs.shutdownActive({ graceMs: 60 })
    expect(child.times[1] - t0).toBeGreaterThanOrEqual(55)
    expect(Date.now() - t0).toBeLessThan(1500)
  })

  it('SHD-2: only registered non-terminal runs at call time, in creation order; later, finished and dropped runs untouched', async () => {
    const { runs } = makeRuns()
    const order: string[] = []
    const mk = (name: string) => {
      const run = runs.create({ projectId: name })
      run.status = 'running'
      run.child = new FakeChild({ closeOn: 'SIGTERM' })
      run.acpSession = { abort: () => order.push(name) }
      return run
    }
    const a = mk('a')
    const done = mk('done')
    runs.finish(done, 'succeeded', 0, null)
    done.updatedAt = 7
    const b = mk('b')
    const dropped = mk('dropped')
    runs.drop(dropped)
    const queued = runs.create({ projectId: 'queued' }) // non-terminal, no child
    const c = mk('c')

    const p = runs.shutdownActive({ graceMs: 10 })
    const later = mk('later')
    await p

    expect(order).toEqual(['a', 'b', 'c'])
    for (const r of [a, b, c, queued]) {
      expect(r.status).toBe('canceled')
      expect(r.cancelRequested).toBe(true)
    }
    expect(done.status).toBe('succeeded')
    expect(done.updatedAt).toBe(7)
    expect(done.cancelRequested).toBe(false)
    expect(done.child.signals).toEqual([])
    expect(dropped.child.signals).toEqual([])
    expect(dropped.cancelRequested).toBe(false)
    expect(later.status).toBe('running')
    expect(later.cancelRequested).toBe(false)
    expect(later.child.signals).toEqual([])
  })

  it('SHD-3 / LC-7: abort and SIGTERM happen synchronously and in order; the finish waits for the child to exit', async () => {
    const log: string[] = []
    const { runs, sse } = makeRuns()
    const child = new FakeChild({ log })
    const run = runningWithChild(runs, child)
    run.acpSession = { abort: () => log.push('abort') }
    runs.stream(run, fakeReq(undefined), fakeRes())
    const client = sse[0]
    const origEnd = client.end.getMockImplementation()!
    client.end.mockImplementation(() => {
      log.push('client.end')
      origEnd()
    })
    run.updatedAt = 1
    const t0 = Date.now()
    const p = runs.shutdownActive({ graceMs: 100 })
    expect(log).toEqual(['abort', 'kill:SIGTERM'])
    expect(run.cancelRequested).toBe(true)
    expect(run.updatedAt).toBeGreaterThanOrEqual(t0)
    // LC-7 replaces SHD-3's finish before the child exits: the run is still running here.
    expect(run.status).toBe('running')
    child.die(0, null) // the child exits inside the grace: its exit is the verdict
    await p
    expect(log).toEqual(['abort', 'kill:SIGTERM', 'client.end'])
    expect(child.signals).toEqual(['SIGTERM'])
    expect(run.status).toBe('canceled')
    expect(run.exitCode).toBe(0)
    expect(run.signal).toBe('SIGTERM')
    expect(typeof run.childExitObservedAt).toBe('number')
    expect(run.events.at(-1)).toMatchObject({
      event: 'end',
      data: { code: 0, signal: 'SIGTERM', status: 'canceled' },
    })
  })

  it('SHD-3: a throwing abort is swallowed and the run is still signalled and finished', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    run.acpSession = {
      abort: () => {
        throw new Error('abort boom')
      },
    }
    await expect(runs.shutdownActive({ graceMs: 10 })).resolves.toBeUndefined()
    expect(child.signals).toEqual(['SIGTERM'])
    expect(run.status).toBe('canceled')
  })

  it('SHD-4: a child that ignores SIGTERM gets SIGKILL after graceMs, then a fixed 500 ms wait', async () => {
    process.env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS = '20' // must not affect shutdown
    try {
      const { runs } = makeRuns()
      const child = new FakeChild()
      const run = runningWithChild(runs, child)
      const t0 = Date.now()
      await runs.shutdownActive({ graceMs: 10 })
      const elapsed = Date.now() - t0
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
      expect(elapsed - (child.times[1] - t0)).toBeGreaterThanOrEqual(480)
      expect(elapsed).toBeLessThan(2000)
      // LC-7: finished after the force wait, with the signal that was sent last.
      expect(run.signal).toBe('SIGKILL')
    } finally {
      delete process.env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS
    }
  })

  it('SHD-4: runs are waited on concurrently', async () => {
    const { runs } = makeRuns()
    const kids = [
      new FakeChild({ closeOn: 'SIGKILL' }),
      new FakeChild({ closeOn: 'SIGKILL' }),
      new FakeChild({ closeOn: 'SIGKILL' }),
    ]
    for (const k of kids) runningWithChild(runs, k)
    const t0 = Date.now()
    await runs.shutdownActive({ graceMs: 100 })
    expect(Date.now() - t0).toBeLessThan(250)
    for (const k of kids) expect(k.signals).toEqual(['SIGTERM', 'SIGKILL'])
  })

  it("SHD-5: one run whose abort throws doesn't stop the others; resolves to undefined", async () => {
    const { runs } = makeRuns()
    const a = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
    const b = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
    b.acpSession = {
      abort: () => {
        throw new Error('boom')
      },
    }
    const c = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
    await expect(runs.shutdownActive({ graceMs: 10 })).resolves.toBeUndefined()
    for (const r of [a, b, c]) {
      expect(r.status).toBe('canceled')
      expect(r.child.signals).toEqual(['SIGTERM'])
    }
  })

  it('SHD-5: a run whose steps throw rejects the promise with that error, every other run is still processed', async () => {
    const { runs } = makeRuns()
    const a = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
    const b = runs.create()
    b.status = 'running'
    const boom = new Error('child getter boom')
    Object.defineProperty(b, 'child', {
      configurable: true,
      enumerable: true,
      get() {
        throw boom
      },
    })
    const c = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
    let sync: unknown = null
    let p: Promise<unknown> | undefined
    try {
      p = runs.shutdownActive({ graceMs: 10 })
    } catch (e) {
      sync = e
    }
    expect(sync).toBeNull()
    await expect(p).rejects.toBe(boom)
    for (const r of [a, c]) {
      expect(r.status).toBe('canceled')
      expect(r.child.signals).toEqual(['SIGTERM'])
    }
  })

  it('SHD-5: a run whose acpSession read throws rejects the promise, every other run (before and after it) is still processed', async () => {
    const { runs } = makeRuns()
    const a = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
    const b = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
    const boom = new Error('acpSession getter boom')
    Object.defineProperty(b, 'acpSession', {
      configurable: true,
      enumerable: true,
      get() {
        throw boom
      },
    })
    const c = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
    let p: Promise<unknown> | undefined
    expect(() => (p = runs.shutdownActive({ graceMs: 10 }))).not.toThrow()
    await expect(p).rejects.toBe(boom)
    for (const r of [a, c]) {
      expect(r.status).toBe('canceled')
      expect(r.cancelRequested).toBe(true)
      expect(r.child.signals).toEqual(['SIGTERM'])
    }
  })

  it('SHD-5: a second call finds nothing active and resolves at once', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild()
    runningWithChild(runs, child)
    await runs.shutdownActive({ graceMs: 10 })
    const before = child.signals.length
    const t0 = Date.now()
    await expect(runs.shutdownActive({ graceMs: 10 })).resolves.toBeUndefined()
    expect(Date.now() - t0).toBeLessThan(50)
    expect(child.signals.length).toBe(before)
  })

  it('SHD-5: a run the host re-queues right after the shutdown ended it does not hold the shutdown; the next one ends it again', async () => {
    const { runs } = makeRuns()
    const run = runs.create({})
    const first = runs.shutdownActive()
    expect(run.status).toBe('canceled')
    run.status = 'queued' // FIN-5: the host resets the run for a retry, in the same tick
    await expect(first).resolves.toBeUndefined()
    expect(runs.list({ status: 'active' })).toEqual([run])
    await expect(runs.shutdownActive()).resolves.toBeUndefined()
    expect(run.status).toBe('canceled')
  })

  it('SHD-5: a run a hook ended before its turn in the shutdown, then reset by the host, does not hold the shutdown', async () => {
    let runs: any
    let b: any
    ;({ runs } = makeRuns({
      onTerminal: (run: any) => {
        if (run !== b) runs.fail(b, 'AGENT_EXECUTION_FAILED', 'ended by the hook of another run')
      },
    } as any))
    runs.create({})
    b = runs.create({})
    const shutdown = runs.shutdownActive()
    expect(b.status).toBe('failed')
    // No plan was begun on it at its turn: no shutdown origin, nothing to signal.
    expect(b.cancelRequested).toBe(false)
    expect(b.cancelOrigin).toBeNull()
    b.status = 'running' // FIN-5: the host resets it for a retry, with a new child
    const retry = new FakeChild()
    b.child = retry
    await expect(shutdown).resolves.toBeUndefined()
    expect(retry.signals).toEqual([])
    expect(b.status).toBe('running')
    await expect(runs.shutdownActive()).resolves.toBeUndefined()
    expect(b.status).toBe('canceled')
  })

  it("SHD-5: a run reopened by prepareRestart from a waiter's continuation does not hold the shutdown", async () => {
    const { runs } = makeRuns()
    const run = runs.create({})
    const reopened = runs.wait(run).then(() => runs.prepareRestart(run))
    await expect(runs.shutdownActive()).resolves.toBeUndefined()
    expect(await reopened).toBe(run)
    expect(run.status).toBe('queued')
  })

  describe('SHD-6 / IMP-4 log flush barrier', () => {
    const tempDir = useTempDirs('spec-shd6-')
    let tmp: string
    beforeEach(() => {
      tmp = tempDir()
    })

    it("SHD-6: after await shutdownActive() every interrupted run's JSONL ends with its end line (read synchronously)", async () => {
      const { runs } = makeRuns({ runsLogDir: tmp })
      const interrupted: any[] = []
      for (let i = 0; i < 5; i++) {
        const run = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
        for (let n = 0; n < 50; n++) runs.emit(run, 'agent', { i, n, text: 'x'.repeat(200) })
        interrupted.push(run)
      }
      await runs.shutdownActive({ graceMs: 10 })
      for (const run of interrupted) {
        const lines = readLines(run.eventsLogPath)
        expect(lines).toHaveLength(51)
        const last = JSON.parse(lines[50])
        expect(last).toMatchObject({
          id: 51,
          event: 'end',
          data: { code: null, signal: 'SIGTERM', status: 'canceled' },
        })
      }
    })

    it('IMP-4: after finish plus await shutdownActive() the file of a run finished earlier is complete', async () => {
      const { runs } = makeRuns({ runsLogDir: tmp })
      const run = runs.create()
      for (let n = 1; n <= 100; n++) runs.emit(run, 'agent', { n })
      runs.finish(run, 'succeeded', 0, null)
      await runs.shutdownActive()
      const lines = readLines(run.eventsLogPath)
      expect(lines).toHaveLength(101)
      expect(lines.map((l) => JSON.parse(l).id)).toEqual(Array.from({ length: 101 }, (_, i) => i + 1))
      expect(JSON.parse(lines[100])).toMatchObject({
        event: 'end',
        data: { code: 0, signal: null, status: 'succeeded' },
      })
    })

    it('IMP-4: without a barrier the complete log reaches disk within a bounded delay after finish', async () => {
      const { runs } = makeRuns({ runsLogDir: tmp })
      const run = runs.create()
      runs.emit(run, 'agent', { n: 1 })
      runs.finish(run, 'succeeded', 0, null)
      expect(await waitFor(() => readLines(run.eventsLogPath).length === 2)).toBe(true)
      expect(JSON.parse(readLines(run.eventsLogPath)[1]).event).toBe('end')
    })
  })
})
