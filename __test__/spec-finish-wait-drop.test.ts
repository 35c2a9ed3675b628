// SPEC §9 finish (FIN-1..FIN-5), fail (FAL-1), wait (WAI-1), drop (DRP-1, DRP-2) and isTerminal
// (TRM-1), and the §17 improvements that touch them: IMP-2 (drop closes the log), IMP-6 (throwing
// clients), IMP-9 (fail on a terminal run) and IMP-10 (no unhandled rejection from start).
import fs from 'node:fs'
import { createRequire } from 'node:module'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createChatRunService } from '../index.js'
import {
  baseOptions,
  END_DATA_KEYS,
  endData,
  FakeChild,
  fakeClient,
  flush,
  makeRuns,
  notLinux,
  openFdsOn,
  readLines,
  sleep,
  STATUS_BODY_KEYS,
  useTempDirs,
  waitFor,
} from './helpers'

const requireNode = createRequire(import.meta.url)
const { mirrorDrift } = requireNode('../lib/run.js') as { mirrorDrift(run: object): string[] }

const tempDir = useTempDirs('spec-finish-wait-drop-')
// (FIN-3's test has a local `endData`.)
const endDataOf = endData

afterEach(() => {
  vi.useRealTimers()
  vi.restoreAllMocks()
})

describe('§9 finish / fail / wait / drop / isTerminal', () => {
  it('FIN-1: the first terminal verdict wins and there is exactly one end event', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const c = fakeClient()
    run.clients.add(c)
    const w = runs.wait(run)
    expect(runs.finish(run, 'succeeded', 0, null)).toBeUndefined()
    const updatedAt = run.updatedAt
    const late = fakeClient()
    run.clients.add(late)
    expect(runs.finish(run, 'failed', 1, 'SIGTERM')).toBeUndefined()
    expect(runs.finish(run, 'canceled', null, 'SIGKILL')).toBeUndefined()
    expect(run).toMatchObject({ status: 'succeeded', exitCode: 0, signal: null })
    expect(run.updatedAt).toBe(updatedAt)
    expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1)
    expect(c.end).toHaveBeenCalledTimes(1)
    expect(late.send).not.toHaveBeenCalled()
    expect(late.end).not.toHaveBeenCalled()
    expect(run.clients.has(late)).toBe(true)
    await expect(w).resolves.toMatchObject({ status: 'succeeded', exitCode: 0, signal: null })
  })

  it('FIN-2: code/signal default to null; status is stored verbatim; a non-terminal status lets finish run again', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    runs.finish(run, 'succeeded')
    expect(run.exitCode).toBeNull()
    expect(run.signal).toBeNull()
    expect(run.events[0].data).toEqual(endData(null, null, 'succeeded', run.events[0].timestamp))

    const odd = runs.create()
    runs.finish(odd, 'paused', 3, 'SIGSTOP')
    expect(odd.status).toBe('paused')
    expect(odd.exitCode).toBe(3)
    expect(odd.signal).toBe('SIGSTOP')
    expect(runs.list({ status: 'active' })).toContain(odd)
    runs.finish(odd, 'failed', 1, null)
    expect(odd.status).toBe('failed')
    expect(odd.events.map((e: any) => [e.event, e.data.status])).toEqual([
      ['end', 'paused'],
      ['end', 'failed'],
    ])
    runs.finish(odd, 'succeeded', 0, null)
    expect(odd.events).toHaveLength(2)
  })

  it('FIN-2: inside a non-terminal finish nothing is held off: a cancel from its end hook cancels, a shutdown from it settles', async () => {
    let runsRef: any
    let canceled: Promise<any> | null = null
    let shutdown: Promise<any> | null = null
    const { runs } = makeRuns({
      onEventEmitted: (run: any, record: any) => {
        if (record.event !== 'end') return
        if (canceled === null) canceled = runsRef.cancel(run, 'user_stop')
        else if (shutdown === null) shutdown = runsRef.shutdownActive()
      },
    })
    runsRef = runs
    const run = runs.create()
    runs.finish(run, 'running', null, null)
    await expect(canceled).resolves.toMatchObject({ status: 'canceled', cancelOrigin: 'user_stop' })
    const other = runs.create()
    runs.finish(other, 'running', null, null)
    await expect(shutdown).resolves.toBeUndefined()
    expect(other.status).toBe('canceled')
  })

  it('FIN-3: status/exitCode/signal/updatedAt, then end event, then client end() + clear, then waiters + clear', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_000)
    const { runs } = makeRuns()
    const run = runs.create()
    run.status = 'running'
    runs.emit(run, 'agent', { a: 1 })
    const order: string[] = []
    const endData: any[] = []
    const mk = (name: string) => ({
      send: (event: string, data: any, id: number) => {
        endData.push(data)
        order.push(
          `${name}.send:${event}:${id}:${run.status}:${run.exitCode}:${run.signal}:${run.updatedAt}:${run.events.at(-1).event}`,
        )
      },
      end: () => order.push(`${name}.end:${run.clients.size}`),
      cleanup: () => order.push(`${name}.cleanup`),
    })
    run.clients.add(mk('c1'))
    run.clients.add(mk('c2'))
    const waiter = vi.fn((body: any) => order.push(`waiter:${body.status}:${run.clients.size}:${run.waiters.size}`))
    run.waiters.add(waiter)
    const p = runs.wait(run)
    vi.setSystemTime(7_777)
    runs.finish(run, 'failed', 2, 'SIGHUP')
    expect(order).toEqual([
      'c1.send:end:2:failed:2:SIGHUP:7777:end',
      'c2.send:end:2:failed:2:SIGHUP:7777:end',
      'c1.end:2',
      'c2.end:2',
      'waiter:failed:0:2',
    ])
    // LC-5: the verdict, then the terminal facts.
    expect(Object.keys(endData[0])).toEqual(END_DATA_KEYS)
    expect(endData[0]).toEqual(endDataOf(2, 'SIGHUP', 'failed', 7_777))
    expect(run.events.at(-1)).toEqual({
      id: 2,
      event: 'end',
      data: endDataOf(2, 'SIGHUP', 'failed', 7_777),
      timestamp: 7_777,
    })
    expect(Object.keys(run.events.at(-1).data)).toEqual(END_DATA_KEYS)
    expect(run.clients.size).toBe(0)
    expect(run.waiters.size).toBe(0)
    expect(run.updatedAt).toBe(7_777)
    const body = waiter.mock.calls[0][0]
    // HF-20: a verdict's body ends with its terminal lifecycle record.
    expect(Object.keys(body)).toEqual([...STATUS_BODY_KEYS, 'terminalLifecycle'])
    expect(body).toMatchObject({ status: 'failed', exitCode: 2, signal: 'SIGHUP', updatedAt: 7_777 })
    await expect(p).resolves.toEqual(body)
  })

  // Linux only: counts open descriptors through /proc/self/fd.
  it.skipIf(notLinux)('FIN-3/LOG-7: finish writes the end line and closes the log handle', async () => {
    const dir = tempDir()
    const { runs } = makeRuns({ runsLogDir: dir })
    const run = runs.create()
    const file = run.eventsLogPath
    runs.emit(run, 'agent', { n: 1 })
    runs.emit(run, 'agent', { n: 2 })
    runs.finish(run, 'succeeded', 0, null)
    expect(await waitFor(() => readLines(file).length === 3 && openFdsOn(file) === 0)).toBe(true)
    const lines = readLines(file).map((l) => JSON.parse(l))
    const timestamp = run.events.at(-1).timestamp
    expect(lines.at(-1)).toEqual({
      id: 3,
      event: 'end',
      data: endData(0, null, 'succeeded', timestamp),
      timestamp,
    })
    expect(Object.keys(lines.at(-1))).toEqual(['id', 'event', 'data', 'timestamp'])

    // a run whose only event is 'end' still gets a file
    const only = runs.create()
    runs.finish(only, 'canceled', null, 'SIGTERM')
    await runs.shutdownActive()
    expect(readLines(only.eventsLogPath).map((l) => JSON.parse(l).event)).toEqual(['end'])
    expect(openFdsOn(only.eventsLogPath)).toBe(0)
  })

  it('FIN-4: finish neither signals the child nor calls acpSession.abort', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    run.status = 'running'
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const abort = vi.fn()
    run.child = child
    run.acpSession = { abort }
    runs.finish(run, 'canceled', null, 'SIGTERM')
    expect(child.signals).toEqual([])
    expect(abort).not.toHaveBeenCalled()
    expect(run.child).toBe(child)
    expect(runs.statusBody(run).childExited).toBe(false)
  })

  it('FIN-5: after ttlMs the run leaves the registry only if still terminal; the run object is untouched', () => {
    vi.useFakeTimers()
    const { runs } = makeRuns({ ttlMs: 1_000 })
    const done = runs.create()
    const retried = runs.create()
    runs.emit(done, 'agent', { a: 1 })
    runs.finish(done, 'succeeded', 0, null)
    runs.finish(retried, 'failed', 1, null)
    retried.status = 'queued'
    const events = JSON.stringify(done.events)
    const body = runs.statusBody(done)
    vi.advanceTimersByTime(999)
    expect(runs.get(done.id)).toBe(done)
    vi.advanceTimersByTime(1)
    expect(runs.get(done.id)).toBeNull()
    expect(runs.list()).toEqual([retried])
    expect(runs.get(retried.id)).toBe(retried)
    expect(done.status).toBe('succeeded')
    expect(JSON.stringify(done.events)).toBe(events)
    expect(runs.statusBody(done)).toEqual(body)
    vi.advanceTimersByTime(60_000)
    expect(runs.get(retried.id)).toBe(retried)
  })

  it('FIN-5, LC-4: a rescheduled eviction replaces the pending one; only the last schedule evicts', () => {
    vi.useFakeTimers()
    const { runs } = makeRuns({ ttlMs: 1_000 })
    const run = runs.create()
    const other = runs.create()
    runs.finish(run, 'failed', 1, null)
    vi.advanceTimersByTime(500)
    // The retry voids the eviction due at 1000; its second verdict schedules one due at 1500.
    expect(runs.prepareRestart(run)).toBe(run)
    runs.finish(run, 'succeeded', 0, null)
    vi.advanceTimersByTime(200)
    runs.finish(other, 'succeeded', 0, null)
    vi.advanceTimersByTime(799)
    expect(runs.get(run.id)).toBe(run)
    vi.advanceTimersByTime(1)
    expect(runs.get(run.id)).toBeNull()
    expect(runs.get(other.id)).toBe(other)
    vi.advanceTimersByTime(199)
    expect(runs.get(other.id)).toBe(other)
    vi.advanceTimersByTime(1)
    expect(runs.get(other.id)).toBeNull()
    expect(runs.list()).toEqual([])
  })

  it('FIN-5: eviction leaves the log file in place', async () => {
    const dir = tempDir()
    const { runs } = makeRuns({ runsLogDir: dir, ttlMs: 20 })
    const run = runs.create()
    runs.emit(run, 'agent', { a: 1 })
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    // (With logging, get() would bring the evicted run back from disk: LC-2.)
    expect(await waitFor(() => runs.list().length === 0)).toBe(true)
    await sleep(20)
    expect(readLines(run.eventsLogPath).map((l) => JSON.parse(l).event)).toEqual(['agent', 'end'])
  })

  it('FAL-1: fail emits an error event with the payload factory result, then finish(failed, 1, null)', () => {
    const { runs, createSseErrorPayload } = makeRuns()
    const run = runs.create()
    const c = fakeClient()
    run.clients.add(c)
    const init = { retryable: true }
    expect(runs.fail(run, 'CODE', 'the message', init)).toBeUndefined()
    expect(createSseErrorPayload).toHaveBeenCalledTimes(1)
    expect(createSseErrorPayload.mock.calls[0][0]).toBe('CODE')
    expect(createSseErrorPayload.mock.calls[0][1]).toBe('the message')
    expect(createSseErrorPayload.mock.calls[0][2]).toBe(init)
    const payload = createSseErrorPayload.mock.results[0].value
    expect(c.send.mock.calls[0][0]).toBe('error')
    expect(c.send.mock.calls[0][1]).toBe(payload)
    expect(c.send.mock.calls[0][2]).toBe(1)
    expect(c.send.mock.calls[1]).toEqual(['end', endData(1, null, 'failed', run.events[1].timestamp), 2])
    expect(run).toMatchObject({ status: 'failed', exitCode: 1, signal: null, error: 'the message', errorCode: 'CODE' })
    expect(run.events.map((e: any) => e.event)).toEqual(['error', 'end'])
    expect(run.events[0].data).toEqual(JSON.parse(JSON.stringify(payload)))

    const other = runs.create()
    runs.fail(other, 'C2', 'm2')
    expect(createSseErrorPayload.mock.calls[1]).toEqual(['C2', 'm2', {}])
  })

  it('FAL-1: a non-object payload becomes the error data as is (no error fields)', () => {
    const runs = createChatRunService({ ...baseOptions(), createSseErrorPayload: () => 'just text' } as any) as any
    const run = runs.create()
    runs.fail(run, 'C', 'm')
    expect(run.events[0]).toMatchObject({ event: 'error', data: 'just text' })
    expect(run.error).toBeNull()
    expect(run.errorCode).toBeNull()
    expect(run.status).toBe('failed')
  })

  it('WAI-1: on a terminal run wait resolves at once with a status body computed now', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    runs.finish(run, 'succeeded', 0, null)
    const p = runs.wait(run)
    expect(run.waiters.size).toBe(0)
    const at = run.updatedAt
    run.updatedAt = at + 1000
    let value: any
    p.then((v: any) => (value = v))
    await Promise.resolve()
    await Promise.resolve()
    expect(value).toBeDefined()
    expect(Object.keys(value)).toEqual([...STATUS_BODY_KEYS, 'terminalLifecycle'])
    expect(value).toMatchObject({ id: run.id, status: 'succeeded', updatedAt: at })
  })

  it('WAI-1: on a live run wait adds a waiter that finish or drop resolves; it never rejects', async () => {
    const { runs } = makeRuns()
    const a = runs.create()
    const b = runs.create()
    const pa = runs.wait(a)
    const pa2 = runs.wait(a)
    const pb = runs.wait(b)
    expect(a.waiters.size).toBe(2)
    let settled = false
    pa.then(
      () => (settled = true),
      () => (settled = true),
    )
    await flush()
    expect(settled).toBe(false)
    runs.finish(a, 'failed', 1, null)
    runs.drop(b)
    await expect(pa).resolves.toMatchObject({ status: 'failed', exitCode: 1 })
    await expect(pa2).resolves.toMatchObject({ status: 'failed' })
    const body = await pb
    expect(Object.keys(body)).toEqual(STATUS_BODY_KEYS)
    expect(body).toMatchObject({ status: 'canceled' })
  })

  it('WAI-1, IMP-6: a status body that throws (a host getter) still resolves every wait and cancel with the verdict; finish, drop and eviction complete', async () => {
    const warnings: string[] = []
    const onWarning = (warning: any) => warnings.push(warning.code)
    process.on('warning', onWarning)
    try {
      const { runs } = makeRuns({ ttlMs: 20 })
      const hostile = (run: any) =>
        Object.defineProperty(run, 'clientType', {
          get() {
            throw new Error('getter boom')
          },
        })
      const finished = hostile(runs.create({ projectId: 'p' }))
      const dropped = hostile(runs.create({ projectId: 'p' }))
      const waits = [runs.wait(finished), runs.wait(dropped)]
      expect(runs.finish(finished, 'succeeded', 0, null)).toBeUndefined()
      expect(runs.drop(dropped)).toBeUndefined()
      const [a, b] = await Promise.all(waits)
      expect(a).toMatchObject({ id: finished.id, status: 'succeeded', exitCode: 0, terminalTrigger: null })
      expect(b).toMatchObject({ id: dropped.id, status: 'canceled', terminalAt: expect.any(Number) })
      // A whole status body (the declared type), without the field that could not be read; the
      // verdict's lifecycle record (HF-20) reads fine and is there.
      expect(Object.keys(a)).toEqual([...STATUS_BODY_KEYS, 'terminalLifecycle'])
      expect(a).toMatchObject({ projectId: 'p', toolBundle: expect.any(Object), workspace: expect.any(Object) })
      // Even when reading the fields one by one throws too (a nested getter): every key.
      const deep = runs.create({ projectId: 'q' })
      deep.projectMetadata = {
        get orchestratorWorkspace() {
          throw new Error('nested boom')
        },
      }
      const waited = runs.wait(deep)
      runs.finish(deep, 'failed', 1, null)
      const c = await waited
      expect(Object.keys(c)).toEqual(STATUS_BODY_KEYS)
      expect(c).toMatchObject({ id: deep.id, projectId: 'q', status: 'failed', exitCode: 1 })
      expect(finished.waiters.size).toBe(0)
      // A wait and a cancel on the terminal run resolve the same way; eviction still happens.
      await expect(runs.wait(finished)).resolves.toMatchObject({ status: 'succeeded' })
      await expect(runs.cancel(finished)).resolves.toMatchObject({ status: 'succeeded' })
      expect(await waitFor(() => runs.get(finished.id) === null, 2000)).toBe(true)
      expect(() => runs.statusBody(finished)).toThrow('getter boom') // the host's own call
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings.filter((code) => code === 'CHAT_RUN_STATUS_BODY_ERROR')).toHaveLength(1)
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('WAI-1: a terminal status written by the host leaves earlier waiters pending', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    let settled = false
    const early = runs.wait(run)
    early.then(() => (settled = true))
    run.status = 'succeeded'
    await flush()
    expect(settled).toBe(false)
    expect(run.waiters.size).toBe(1)
    await expect(runs.wait(run)).resolves.toMatchObject({ status: 'succeeded' })
    // finish is a no-op now (terminal), so the early waiter is still pending
    runs.finish(run, 'failed', 1, null)
    await flush()
    expect(settled).toBe(false)
  })

  it('WAI-1, HF-14: the status body a wait falls back to still goes through onStatusBody', async () => {
    const seen: unknown[] = []
    const { runs } = makeRuns({
      onStatusBody: (run: any, body: any) => {
        seen.push(run.id)
        body.executionDiagnostics = { ok: true }
      },
    })
    const run = runs.create({})
    run.status = 'running'
    Object.defineProperty(run, 'toolBundle', {
      configurable: true,
      get() {
        throw new Error('host getter')
      },
    })
    const waited = runs.wait(run)
    runs.finish(run, 'succeeded', 0, null)
    await expect(waited).resolves.toMatchObject({ status: 'succeeded', executionDiagnostics: { ok: true } })
    await expect(runs.cancel(run)).resolves.toMatchObject({ executionDiagnostics: { ok: true } })
    expect(seen).toEqual([run.id, run.id])
  })

  it("DRP-1, RUN-3: the drop's status and time win over a client's end() that writes them, in the core too", async () => {
    const { runs } = makeRuns()
    for (const write of [(run: any) => (run.status = 'running'), (run: any) => (run.updatedAt = 5)]) {
      const run = runs.create({})
      run.status = 'running'
      run.clients.add({ send() {}, end: () => write(run), cleanup() {} })
      runs.drop(run)
      expect(run.status).toBe('canceled')
      expect(mirrorDrift(run)).toEqual([])
      // The core agrees: a cancel of the dropped run changes nothing (CAN-1).
      await expect(runs.cancel(run, 'user_stop')).resolves.toMatchObject({ status: 'canceled' })
      expect([run.cancelRequested, run.cancelOrigin]).toEqual([false, null])
    }
  })

  it('DRP-1: a falsy or terminal run is a no-op', () => {
    const { runs } = makeRuns()
    for (const falsy of [undefined, null, 0, '', false]) {
      expect(() => runs.drop(falsy)).not.toThrow()
      expect(runs.drop(falsy)).toBeUndefined()
    }
    expect((runs.drop as any)()).toBeUndefined()
    const run = runs.create()
    runs.finish(run, 'succeeded', 0, null)
    const c = fakeClient()
    run.clients.add(c)
    const updatedAt = run.updatedAt
    expect(runs.drop(run)).toBeUndefined()
    expect(runs.get(run.id)).toBe(run)
    expect(run.status).toBe('succeeded')
    expect(run.updatedAt).toBe(updatedAt)
    expect(c.end).not.toHaveBeenCalled()
    expect(run.clients.size).toBe(1)
  })

  it('DRP-1: drop removes the run, ends and clears clients, sets canceled/updatedAt, then resolves waiters', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_000)
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'p' })
    run.status = 'running'
    const order: string[] = []
    const mk = (name: string) => ({
      send: () => order.push(`${name}.send`),
      end: () => order.push(`${name}.end:${run.status}:${runs.get(run.id) === null}`),
      cleanup: () => order.push(`${name}.cleanup`),
    })
    run.clients.add(mk('c1'))
    run.clients.add(mk('c2'))
    const waiter = vi.fn((body: any) => order.push(`waiter:${body.status}:${body.updatedAt}:${run.clients.size}`))
    run.waiters.add(waiter)
    const p = runs.wait(run)
    vi.setSystemTime(2_000)
    expect(runs.drop(run)).toBeUndefined()
    expect(order).toEqual(['c1.end:running:true', 'c2.end:running:true', 'waiter:canceled:2000:0'])
    expect(runs.get(run.id)).toBeNull()
    expect(runs.list()).toEqual([])
    expect(run.clients.size).toBe(0)
    expect(run.waiters.size).toBe(0)
    expect(run.status).toBe('canceled')
    expect(run.updatedAt).toBe(2_000)
    expect(Object.keys(waiter.mock.calls[0][0])).toEqual(STATUS_BODY_KEYS)
    await expect(p).resolves.toMatchObject({ status: 'canceled', updatedAt: 2_000 })
  })

  it('DRP-2: drop emits no event, keeps exitCode/signal/cancelRequested, no signal, no abort, no eviction', () => {
    vi.useFakeTimers()
    const { runs } = makeRuns({ ttlMs: 10 })
    const run = runs.create()
    run.status = 'running'
    runs.emit(run, 'agent', { a: 1 })
    run.exitCode = 5
    run.signal = 'SIGINT'
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const abort = vi.fn()
    run.child = child
    run.acpSession = { abort }
    const timers = vi.getTimerCount()
    runs.drop(run)
    expect(run.events.map((e: any) => e.event)).toEqual(['agent'])
    expect(run.nextEventId).toBe(2)
    expect(run.exitCode).toBe(5)
    expect(run.signal).toBe('SIGINT')
    expect(run.cancelRequested).toBe(false)
    expect(child.signals).toEqual([])
    expect(abort).not.toHaveBeenCalled()
    expect(vi.getTimerCount()).toBe(timers)
    // even when the host revives the status, nothing evicts or re-registers it
    vi.advanceTimersByTime(1_000)
    expect(runs.get(run.id)).toBeNull()
  })

  it('TRM-1: isTerminal is true only for the three terminal strings', () => {
    const { runs } = makeRuns()
    for (const s of ['succeeded', 'failed', 'canceled']) expect(runs.isTerminal(s)).toBe(true)
    for (const s of ['queued', 'running', 'cancelled', 'SUCCEEDED', ' failed', 'failed ', '', 'active', 'weird']) {
      expect(runs.isTerminal(s)).toBe(false)
    }
    for (const v of [undefined, null, 0, 1, true, {}, ['failed'], new String('failed'), Symbol('failed')]) {
      expect(runs.isTerminal(v)).toBe(false)
    }
    expect((runs.isTerminal as any)()).toBe(false)
  })
})

describe('§17 Improvements touching §1-§9 (IMP-2, IMP-6, IMP-9, IMP-10)', () => {
  // Linux only: counts open descriptors through /proc/self/fd.
  it.skipIf(notLinux)('IMP-2: drop closes the log and later emits are never persisted', async () => {
    const dir = tempDir()
    const { runs } = makeRuns({ runsLogDir: dir })
    const run = runs.create()
    run.status = 'running'
    const file = run.eventsLogPath
    runs.emit(run, 'agent', { n: 1 })
    runs.emit(run, 'agent', { n: 2 })
    expect(await waitFor(() => readLines(file).length === 2)).toBe(true)
    runs.drop(run)
    expect(await waitFor(() => openFdsOn(file) === 0)).toBe(true)
    runs.emit(run, 'late', { n: 3 })
    await sleep(50)
    expect(openFdsOn(file)).toBe(0)
    await runs.shutdownActive()
    const lines = readLines(file).map((l) => JSON.parse(l))
    expect(lines.map((l) => [l.id, l.event])).toEqual([
      [1, 'agent'],
      [2, 'agent'],
    ])
    expect(fs.existsSync(file)).toBe(true)
  })

  it('IMP-6: a throwing client in emit does not stop the others; emit returns the record', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const bad = {
      send: vi.fn(() => {
        throw new Error('broken pipe')
      }),
      end: vi.fn(),
      cleanup: vi.fn(),
    }
    const good = fakeClient()
    run.clients.add(bad)
    run.clients.add(good)
    const data = { x: 1 }
    let rec: any
    expect(() => {
      rec = runs.emit(run, 'agent', data)
    }).not.toThrow()
    expect(rec).toMatchObject({ id: 1, event: 'agent' })
    expect(rec.data).toBe(data)
    expect(bad.send).toHaveBeenCalledTimes(1)
    expect(good.send).toHaveBeenCalledWith('agent', data, 1)
    expect(run.events).toHaveLength(1)
    expect(run.clients.size).toBe(2)
  })

  // Linux only: counts open descriptors through /proc/self/fd.
  it.skipIf(notLinux)(
    'IMP-6: throwing send/end in finish: others still called, waiters resolved, clients cleared, log closed, eviction scheduled',
    async () => {
      const dir = tempDir()
      const { runs } = makeRuns({ runsLogDir: dir, ttlMs: 30 })
      const run = runs.create()
      run.status = 'running'
      const badSend = {
        send: vi.fn(() => {
          throw new Error('send')
        }),
        end: vi.fn(),
        cleanup: vi.fn(),
      }
      const badEnd = {
        send: vi.fn(),
        end: vi.fn(() => {
          throw new Error('end')
        }),
        cleanup: vi.fn(),
      }
      const good = fakeClient()
      run.clients.add(badSend)
      run.clients.add(badEnd)
      run.clients.add(good)
      const w = runs.wait(run)
      runs.emit(run, 'agent', { n: 1 })
      expect(() => runs.finish(run, 'succeeded', 0, null)).not.toThrow()
      expect(badSend.end).toHaveBeenCalledTimes(1)
      expect(badEnd.end).toHaveBeenCalledTimes(1)
      expect(good.send).toHaveBeenCalledWith('end', endData(0, null, 'succeeded', expect.any(Number)), 2)
      expect(good.end).toHaveBeenCalledTimes(1)
      expect(run.clients.size).toBe(0)
      expect(run.waiters.size).toBe(0)
      await expect(w).resolves.toMatchObject({ status: 'succeeded' })
      expect(await waitFor(() => openFdsOn(run.eventsLogPath) === 0 && readLines(run.eventsLogPath).length === 2)).toBe(
        true,
      )
      expect(JSON.parse(readLines(run.eventsLogPath)[1]).event).toBe('end')
      // (Evicted: out of the registry. With logging, get() would bring it back from disk: LC-2.)
      expect(await waitFor(() => runs.list().length === 0)).toBe(true)
    },
  )

  it('IMP-6: a throwing end() in drop does not stop the others; waiters resolve', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const bad = {
      send: vi.fn(),
      end: vi.fn(() => {
        throw new Error('end')
      }),
      cleanup: vi.fn(),
    }
    const good = fakeClient()
    run.clients.add(bad)
    run.clients.add(good)
    const w = runs.wait(run)
    expect(() => runs.drop(run)).not.toThrow()
    expect(bad.end).toHaveBeenCalledTimes(1)
    expect(good.end).toHaveBeenCalledTimes(1)
    expect(run.clients.size).toBe(0)
    expect(run.status).toBe('canceled')
    await expect(w).resolves.toMatchObject({ status: 'canceled' })
  })

  it('IMP-9: fail() on a terminal run is a no-op (no event, no error/errorCode change)', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    runs.emit(run, 'error', { message: 'kept', code: 'KEPT' })
    runs.finish(run, 'succeeded', 0, null)
    const updatedAt = run.updatedAt
    expect(runs.fail(run, 'LATE', 'late message')).toBeUndefined()
    expect(run.events.map((e: any) => e.event)).toEqual(['error', 'end'])
    expect(run.nextEventId).toBe(3)
    expect([run.error, run.errorCode]).toEqual(['kept', 'KEPT'])
    expect(run.status).toBe('succeeded')
    expect(run.updatedAt).toBe(updatedAt)
    // a direct emit keeps EMT-5
    runs.emit(run, 'error', { message: 'direct', code: 'D' })
    expect([run.error, run.errorCode]).toEqual(['direct', 'D'])
  })

  it('IMP-9: a starter that rejects after the host finished the run appends nothing', async () => {
    const { runs, createSseErrorPayload } = makeRuns()
    const run = runs.create()
    let reject!: (e: unknown) => void
    runs.start(run, () => new Promise((_, rej) => (reject = rej)))
    runs.finish(run, 'succeeded', 0, null)
    reject(new Error('post-processing failed'))
    await flush()
    expect(run.status).toBe('succeeded')
    expect(run.events.map((e: any) => e.event)).toEqual(['end'])
    expect(run.error).toBeNull()
    expect(run.errorCode).toBeNull()
    expect(createSseErrorPayload).not.toHaveBeenCalled()
  })

  it('IMP-10: no unhandled rejection from start() when fail() throws; the run still finishes failed', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const runs = createChatRunService({
        ...baseOptions(),
        createSseErrorPayload: () => {
          throw new Error('payload factory broke')
        },
      } as any) as any
      const run = runs.create()
      const c = fakeClient()
      run.clients.add(c)
      const w = runs.wait(run)
      expect(runs.start(run, () => Promise.reject(new Error('agent died')))).toBe(run)
      await sleep(30)
      expect(run).toMatchObject({ status: 'failed', exitCode: 1, signal: null })
      expect(run.events.map((e: any) => [e.event, e.data])).toEqual([
        ['end', endData(1, null, 'failed', expect.any(Number))],
      ])
      expect(c.end).toHaveBeenCalledTimes(1)
      await expect(w).resolves.toMatchObject({ status: 'failed', exitCode: 1 })
      await sleep(20)
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
