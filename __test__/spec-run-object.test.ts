// SPEC §5 the run object: fields and initial values (RUN-1), identity (RUN-2), host writes
// (RUN-3), host-owned properties (RUN-4), the events array (RUN-5), clients (RUN-6), waiters (RUN-7)
// and evicted or dropped runs (RUN-8).
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  FakeChild,
  fakeClient,
  fakeReq,
  fakeRes,
  ID_FIELDS,
  makeRuns,
  RUN_FIELDS,
  sleep,
  STATUS_BODY_KEYS,
  useTempDirs,
  UUID_V4,
} from './helpers'

afterEach(() => {
  vi.useRealTimers()
  vi.restoreAllMocks()
})

describe('§5 The run object (RUN)', () => {
  it('RUN-1: create() sets every field with its initial value; the object is extensible', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_717_171_717_171)
    const { runs } = makeRuns()
    const run = runs.create()
    for (const field of RUN_FIELDS) expect(field in run, field).toBe(true)
    expect(run.id).toMatch(UUID_V4)
    for (const f of ID_FIELDS) {
      expect(run[f], f).toBeNull()
    }
    expect(run.mediaExecution).toEqual({ mode: 'enabled' })
    expect(run.toolBundle).toEqual({ mcpServers: [] })
    expect(run.status).toBe('queued')
    expect(run.createdAt).toBe(1_717_171_717_171)
    expect(run.updatedAt).toBe(run.createdAt)
    expect(Array.isArray(run.events)).toBe(true)
    expect(run.events).toEqual([])
    expect(run.nextEventId).toBe(1)
    expect(run.clients).toBeInstanceOf(Set)
    expect(run.clients.size).toBe(0)
    expect(run.waiters).toBeInstanceOf(Set)
    expect(run.waiters.size).toBe(0)
    for (const f of [
      'child',
      'acpSession',
      'childPid',
      'processGroupId',
      'childExitObservedAt',
      'exitCode',
      'signal',
      'error',
      'errorCode',
      'eventsLogPath',
      'statePath',
      'eventsLogStream',
    ]) {
      expect(run[f], f).toBeNull()
    }
    expect(run.cancelRequested).toBe(false)
    expect(run.analyticsTelemetry).toBeUndefined()
    expect(Object.isExtensible(run)).toBe(true)
    expect(Object.isFrozen(run)).toBe(false)
    expect(Object.isSealed(run)).toBe(false)
  })

  it('RUN-1: an object that only inherits from a run (a deep-cloning diff printer makes one) reads undefined and refuses writes', () => {
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'p' })
    const clone = Object.create(Object.getPrototypeOf(run)) as Record<string, unknown>
    for (const field of [
      'status',
      'projectId',
      'updatedAt',
      'events',
      'nextEventId',
      'terminalAt',
      'terminalTrigger',
      'cancelOrigin',
      'child',
      'processGroupId',
    ]) {
      expect(clone[field], field).toBeUndefined()
    }
    expect(() => {
      clone.status = 'running'
    }).toThrow(/^run\.status: this object is not a run created by createChatRunService/)
    expect(() => {
      clone.child = null
    }).toThrow(/^run\.child: this object is not a run created by createChatRunService/)
    expect(run.status).toBe('queued')
    // A failed deep equality on a run reports the difference, not a TypeError from a getter.
    let failure: unknown = null
    try {
      expect(run).toEqual({ status: 'running' })
    } catch (err) {
      failure = err
    }
    expect(failure).toBeInstanceOf(Error)
    expect((failure as Error).name).toBe('AssertionError')
  })

  it('RUN-1: host-added properties survive Object.keys and spread', () => {
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'p' })
    const ctx = { surface: 'chat' }
    run.stdinOpen = true
    run.clientType = 'desktop'
    run.analyticsContext = ctx
    run.retryCount = 2
    run.userPrompt = 'hello'
    const keys = Object.keys(run)
    for (const k of ['stdinOpen', 'clientType', 'analyticsContext', 'retryCount', 'userPrompt']) {
      expect(keys).toContain(k)
    }
    const copy = { ...run }
    expect(copy.stdinOpen).toBe(true)
    expect(copy.clientType).toBe('desktop')
    expect(copy.analyticsContext).toBe(ctx)
    expect(copy.retryCount).toBe(2)
    expect(copy.userPrompt).toBe('hello')
    expect('status' in run).toBe(true)
    expect('nextEventId' in run).toBe(true)
  })

  it('RUN-1/RUN-3: host writes of status/projectId/conversationId take effect in list, statusBody and isTerminal checks', async () => {
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'p', conversationId: 'c' })
    run.projectId = 'x'
    run.conversationId = 'y'
    expect(run.projectId).toBe('x')
    expect(runs.list({ projectId: 'x' })).toEqual([run])
    expect(runs.list({ projectId: 'p' })).toEqual([])
    expect(runs.list({ conversationId: 'y' })).toEqual([run])
    expect(runs.list({ conversationId: 'c' })).toEqual([])
    expect(runs.statusBody(run)).toMatchObject({ projectId: 'x', conversationId: 'y' })

    run.status = 'running'
    expect(run.status).toBe('running')
    expect(runs.list({ status: 'running' })).toEqual([run])
    expect(runs.list({ status: 'active' })).toEqual([run])
    expect(runs.statusBody(run).status).toBe('running')

    run.status = 'succeeded'
    expect(runs.list({ status: 'active' })).toEqual([])
    expect(runs.list({ status: 'succeeded' })).toEqual([run])
    await expect(runs.wait(run)).resolves.toMatchObject({ status: 'succeeded' })
    runs.finish(run, 'failed', 1, null)
    expect(run.status).toBe('succeeded')
    expect(run.events).toEqual([])
    runs.fail(run, 'E', 'm')
    expect(run.events).toEqual([])
    expect(run.error).toBeNull()
    runs.drop(run)
    expect(runs.get(run.id)).toBe(run)
    expect(run.status).toBe('succeeded')
    await expect(runs.cancel(run)).resolves.toMatchObject({ status: 'succeeded', cancelRequested: false })
    expect(run.cancelRequested).toBe(false)

    run.status = 'queued'
    runs.finish(run, 'failed', 2, null)
    expect(run.status).toBe('failed')
    expect(run.events.map((e: any) => e.event)).toEqual(['end'])
  })

  it('RUN-3: host writes of updatedAt/exitCode/signal/error/errorCode are seen by statusBody', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    run.updatedAt = 12345
    run.exitCode = 3
    run.signal = 'SIGHUP'
    run.error = 'host message'
    run.errorCode = 'E'
    expect(run.updatedAt).toBe(12345)
    expect(run.exitCode).toBe(3)
    expect(run.signal).toBe('SIGHUP')
    expect(run.error).toBe('host message')
    expect(run.errorCode).toBe('E')
    expect(runs.statusBody(run)).toMatchObject({
      updatedAt: 12345,
      exitCode: 3,
      signal: 'SIGHUP',
      error: 'host message',
      errorCode: 'E',
    })
    // a retry resets them
    run.exitCode = null
    run.signal = null
    run.error = null
    run.errorCode = null
    expect(runs.statusBody(run)).toMatchObject({ exitCode: null, signal: null, error: null, errorCode: null })
  })

  it('RUN-3: host writes of child/childPid/processGroupId/acpSession are read at each service step', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    run.status = 'running'
    run.childPid = 42
    run.processGroupId = 77
    expect(runs.statusBody(run)).toMatchObject({ childPid: 42, processGroupId: 77, childExited: true })
    run.processGroupId = null

    const first = new FakeChild({ pid: 4242 })
    run.child = first
    expect(run.child).toBe(first)
    expect(runs.statusBody(run)).toMatchObject({ childPid: 4242, childExited: false })
    const second = new FakeChild()
    run.child = second
    expect(runs.statusBody(run)).toMatchObject({ childPid: 42, childExited: false })
    expect(runs.signalChild(run, 'SIGUSR2')).toBe(true)
    expect(first.signals).toEqual([])
    expect(second.signals).toEqual(['SIGUSR2'])

    const abort = vi.fn(() => second.exitWith(0))
    run.acpSession = { abort }
    const body = await runs.cancel(run)
    expect(abort).toHaveBeenCalledTimes(1)
    expect(body).toMatchObject({ status: 'canceled', exitCode: 0, childExited: true })
  })

  it('RUN-2: get(), list() and callbacks receive the very object create() returned', async () => {
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'p' })
    expect(runs.get(run.id)).toBe(run)
    expect(runs.list()[0]).toBe(run)
    expect(runs.list({ projectId: 'p', status: 'active' })[0]).toBe(run)
    let seen: unknown
    runs.start(run, (r: unknown) => {
      seen = r
      return Promise.resolve()
    })
    expect(seen).toBe(run)
    runs.emit(run, 'x', 1)
    runs.finish(run, 'succeeded', 0, null)
    expect(runs.get(run.id)).toBe(run)
  })

  const tempDir = useTempDirs()

  it('RUN-2: a host that assigns or deletes run.id changes what the object reads, never which run the service means', async () => {
    const runsLogDir = tempDir()
    const { runs } = makeRuns({ runsLogDir, ttlMs: 20 })
    const live = runs.create({ projectId: 'p' })
    live.status = 'running'
    const old = runs.create({ projectId: 'p' })
    const oldId = old.id
    runs.finish(old, 'failed', 1, null)
    // Relabelled as the live run: reopening it must not take the live run out of the registry.
    old.id = live.id
    expect(runs.prepareRestart(old)).toBe(old)
    expect(runs.get(live.id)).toBe(live)
    expect(runs.get(oldId)).toBe(old)
    expect(new Set(runs.list())).toEqual(new Set([live, old]))
    expect(old.events.at(-1)).toMatchObject({ event: 'run_resume_attempted', data: { runId: oldId } })
    // Without an id at all: the same, and no conversion error from the core.
    runs.finish(old, 'failed', 1, null)
    delete old.id
    expect(runs.prepareRestart(old)).toBe(old)
    expect(runs.get(oldId)).toBe(old)
    await runs.shutdownActive({ graceMs: 10 })
    expect(live.status).toBe('canceled')
    expect(old.status).toBe('canceled')
    // After a TTL eviction, get() brings back the object the host holds, under the id it was made with.
    old.id = 'relabelled'
    await sleep(80)
    expect(runs.list()).toEqual([])
    expect(runs.get(oldId)).toBe(old)
  })

  it('RUN-4: the service never deletes or rewrites host properties or host-only fields', async () => {
    const { runs } = makeRuns()
    const meta = {
      projectId: 'p',
      conversationId: 'c',
      assistantMessageId: 'am',
      clientRequestId: 'cr',
      agentId: 'ag',
      appliedPluginSnapshotId: 'snap',
      pluginId: 'pl',
    }
    const run = runs.create(meta)
    const ctx = { a: 1 }
    Object.assign(run, { stdinOpen: true, clientType: 'cli', analyticsContext: ctx, retryCount: 1, userPrompt: 'u' })
    const { id, createdAt, mediaExecution, toolBundle, clients, waiters, eventsLogPath } = run
    const w = runs.wait(run)
    runs.start(run, () => Promise.resolve())
    runs.emit(run, 'agent', { a: 1 })
    runs.emit(run, 'error', { message: 'boom', code: 'X' })
    runs.statusBody(run)
    runs.list({ status: 'active' })
    runs.fail(run, 'C', 'failed hard')
    runs.finish(run, 'succeeded', 0, null)
    runs.drop(run)
    await w
    expect(run).toMatchObject({ ...meta, stdinOpen: true, clientType: 'cli', retryCount: 1, userPrompt: 'u' })
    expect(run.analyticsContext).toBe(ctx)
    expect(run.id).toBe(id)
    expect(run.createdAt).toBe(createdAt)
    expect(run.mediaExecution).toBe(mediaExecution)
    expect(run.toolBundle).toBe(toolBundle)
    expect(run.clients).toBe(clients)
    expect(run.waiters).toBe(waiters)
    expect(run.eventsLogPath).toBe(eventsLogPath)
    expect(run.child).toBeNull()
    expect(run.acpSession).toBeNull()
    expect(run.childPid).toBeNull()
    expect(run.processGroupId).toBeNull()
    expect(run.childExitObservedAt).toBeNull()
    expect(run.cancelRequested).toBe(false)
    const keys = Object.keys(run)
    for (const k of ['stdinOpen', 'clientType', 'analyticsContext', 'retryCount', 'userPrompt', 'analyticsTelemetry']) {
      expect(keys).toContain(k)
    }
  })

  it('RUN-4/STA-1: the host can spread-merge its own analyticsTelemetry keys, which start() keeps', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1000)
    const { runs } = makeRuns()
    const run = runs.create()
    runs.start(run, () => Promise.resolve())
    run.analyticsTelemetry = { ...run.analyticsTelemetry, spawnedAt: 5, model: 'm' }
    vi.setSystemTime(2000)
    runs.start(run, () => Promise.resolve())
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: 2000, spawnedAt: 5, model: 'm' })
    expect(Object.keys(run.analyticsTelemetry)).toEqual(['startRequestedAt', 'spawnedAt', 'model'])
    expect({ ...run }.analyticsTelemetry).toBe(run.analyticsTelemetry)
  })

  it('RUN-5: run.events is a real Array of {id,event,data,timestamp} records, oldest first, JSON round-trip of data', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(5000)
    const { runs } = makeRuns({ maxEvents: 3 })
    const run = runs.create()
    const data = { type: 'text_delta', delta: 'hi', skip: undefined, when: new Date(0), list: [1, undefined] }
    runs.emit(run, 'agent', data)
    vi.setSystemTime(6000)
    runs.emit(run, 'stdout', 'plain')
    runs.emit(run, 'n', null)
    runs.emit(run, 'last', [1, 2])
    const events = run.events
    expect(Array.isArray(events)).toBe(true)
    expect(events.map((e: any) => e.id)).toEqual([2, 3, 4])
    for (const e of events) expect(Object.keys(e)).toEqual(['id', 'event', 'data', 'timestamp'])
    expect(events[0]).toEqual({ id: 2, event: 'stdout', data: 'plain', timestamp: 6000 })
    expect(events[1]).toEqual({ id: 3, event: 'n', data: null, timestamp: 6000 })
    expect(events[2]).toEqual({ id: 4, event: 'last', data: [1, 2], timestamp: 6000 })

    const { runs: r2 } = makeRuns()
    const run2 = r2.create()
    r2.emit(run2, 'agent', data)
    expect(run2.events[0].data).toEqual(JSON.parse(JSON.stringify(data)))
    expect(run2.events[0].timestamp).toBe(6000)
  })

  it('RUN-5: mutating the returned array, its records or the emitted data does not change the history', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const data = { text: 'a', nested: { n: 1 } }
    runs.emit(run, 'agent', data)
    runs.emit(run, 'agent', { text: 'b' })
    const arr = run.events
    arr[0].event = 'hacked'
    arr[0].data.text = 'hacked'
    arr.push({ id: 99, event: 'fake', data: null, timestamp: 0 })
    arr.shift()
    data.text = 'mutated'
    data.nested.n = 2
    runs.emit(run, 'agent', { text: 'c' })
    const again = run.events
    expect(again.map((e: any) => [e.id, e.event, e.data.text])).toEqual([
      [1, 'agent', 'a'],
      [2, 'agent', 'b'],
      [3, 'agent', 'c'],
    ])
    expect(again[0].data.nested).toEqual({ n: 1 })
  })

  it('RUN-6: a host client added to run.clients gets send(event, data, id) on emit and end() on finish, in Set order', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const log: string[] = []
    const a = fakeClient({ name: 'a', log })
    const b = fakeClient({ name: 'b', log })
    const gone = fakeClient({ name: 'gone', log })
    run.clients.add(a)
    run.clients.add(gone)
    run.clients.add(b)
    run.clients.delete(gone)
    const data = { x: 1 }
    runs.emit(run, 'agent', data)
    expect(a.send).toHaveBeenCalledWith('agent', data, 1)
    expect(a.send.mock.calls[0][1]).toBe(data)
    expect(b.send.mock.calls[0][1]).toBe(data)
    runs.finish(run, 'succeeded', 0, null)
    expect(log).toEqual(['a.send:agent:1', 'b.send:agent:1', 'a.send:end:2', 'b.send:end:2', 'a.end', 'b.end'])
    expect(a.end).toHaveBeenCalledTimes(1)
    expect(gone.send).not.toHaveBeenCalled()
    expect(gone.end).not.toHaveBeenCalled()
    expect(a.cleanup).not.toHaveBeenCalled()
    expect(run.clients.size).toBe(0)
  })

  it('INP-2: run.clients and run.waiters keep their Sets: assigning either throws, and finish still ends and resolves', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const clients = run.clients
    const waiters = run.waiters
    const client = fakeClient()
    clients.add(client)
    const waited = runs.wait(run)
    for (const value of [[], {}, 5, null, new Set()]) {
      expect(() => {
        run.clients = value
      }).toThrow(TypeError)
      expect(() => {
        run.waiters = value
      }).toThrow(TypeError)
    }
    expect(() => Object.assign(run, { clients: new Set() })).toThrow(TypeError)
    expect(run.clients).toBe(clients)
    expect(run.waiters).toBe(waiters)
    expect(Object.keys(run)).toEqual(expect.arrayContaining(['clients', 'waiters']))
    expect({ ...run }.clients).toBe(clients)
    runs.emit(run, 'agent', 1)
    runs.finish(run, 'succeeded', 0, null)
    expect(client.calls.map((c) => c.type)).toEqual(['send', 'send', 'end'])
    await expect(waited).resolves.toMatchObject({ status: 'succeeded' })
  })

  it('IMP-6: host clients and waiters that return rejected promises never make an unhandled rejection', async () => {
    const rejections: unknown[] = []
    const onRejection = (reason: unknown) => rejections.push(reason)
    process.on('unhandledRejection', onRejection)
    try {
      const calls: string[] = []
      const asyncClient = () => ({
        send: async (event: string) => {
          calls.push(`send:${event}`)
          throw new Error('async send rejected')
        },
        end: async () => {
          calls.push('end')
          throw new Error('async end rejected')
        },
        cleanup: () => {},
      })
      const { runs } = makeRuns({}, asyncClient)
      const run = runs.create()
      run.clients.add(asyncClient())
      run.waiters.add(async () => {
        calls.push('waiter')
        throw new Error('async waiter rejected')
      })
      runs.emit(run, 'agent', 1)
      runs.finish(run, 'succeeded', 0, null)
      // A replay to an async client too.
      runs.stream(run, fakeReq('0'), fakeRes())
      await sleep(20)
      expect(calls).toEqual(['send:agent', 'send:end', 'end', 'waiter', 'send:agent', 'send:end', 'end'])
      expect(rejections).toEqual([])
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  })

  it('RUN-7: waiters is a real Set of functions; finish calls each once with a status body and clears it', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    expect(run.waiters).toBeInstanceOf(Set)
    const p = runs.wait(run)
    expect(run.waiters.size).toBe(1)
    expect(typeof [...run.waiters][0]).toBe('function')
    const spy = vi.fn()
    run.waiters.add(spy)
    runs.finish(run, 'succeeded', 0, null)
    expect(spy).toHaveBeenCalledTimes(1)
    expect(Object.keys(spy.mock.calls[0][0])).toEqual([...STATUS_BODY_KEYS, 'terminalLifecycle'])
    expect(spy.mock.calls[0][0]).toMatchObject({ id: run.id, status: 'succeeded', exitCode: 0 })
    expect(run.waiters.size).toBe(0)
    await expect(p).resolves.toEqual(spy.mock.calls[0][0])
  })

  it('RUN-8: methods keep working on an evicted run; get/list no longer see it', async () => {
    vi.useFakeTimers()
    const { runs, sse } = makeRuns({ ttlMs: 100 })
    const run = runs.create({ projectId: 'p' })
    runs.emit(run, 'agent', { a: 1 })
    runs.finish(run, 'succeeded', 0, null)
    vi.advanceTimersByTime(100)
    expect(runs.get(run.id)).toBeNull()
    expect(runs.list()).toEqual([])
    expect(runs.list({ projectId: 'p' })).toEqual([])

    expect(runs.emit(run, 'late', { b: 2 })).toMatchObject({ id: 3, event: 'late' })
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3])
    expect(runs.statusBody(run)).toMatchObject({ id: run.id, status: 'succeeded' })
    await expect(runs.wait(run)).resolves.toMatchObject({ status: 'succeeded' })
    await expect(runs.cancel(run)).resolves.toMatchObject({ status: 'succeeded' })
    runs.fail(run, 'E', 'm')
    expect(run.status).toBe('succeeded')
    expect(runs.signalChild(run, 'SIGTERM')).toBe(false)
    runs.stream(run, { get: () => undefined, query: {} }, { on: vi.fn() })
    expect(sse[0].send.mock.calls.map((c: any[]) => c[2])).toEqual([1, 2, 3])
    expect(sse[0].end).toHaveBeenCalledTimes(1)

    // a retry after eviction: the host resets the status, finish runs again
    run.status = 'running'
    runs.finish(run, 'failed', 1, null)
    expect(run.status).toBe('failed')
    expect(run.events.at(-1)).toMatchObject({ id: 4, event: 'end', data: { status: 'failed' } })
    expect(runs.get(run.id)).toBeNull()
  })

  it('RUN-8: methods keep working on a dropped run; get/list/shutdownActive no longer see it', async () => {
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'p' })
    run.status = 'running'
    runs.drop(run)
    expect(runs.get(run.id)).toBeNull()
    expect(runs.list()).toEqual([])
    expect(runs.emit(run, 'late', 1)).toMatchObject({ id: 1, event: 'late', data: 1 })
    expect(runs.statusBody(run)).toMatchObject({ status: 'canceled' })
    await expect(runs.wait(run)).resolves.toMatchObject({ status: 'canceled' })
    await expect(runs.cancel(run)).resolves.toMatchObject({ status: 'canceled' })
    run.status = 'running'
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    run.child = child
    await runs.shutdownActive({ graceMs: 5 })
    expect(run.status).toBe('running')
    expect(run.cancelRequested).toBe(false)
    expect(child.signals).toEqual([])
    expect(runs.signalChild(run, 'SIGTERM')).toBe(true)
    expect(child.signals).toEqual(['SIGTERM'])
  })
})
