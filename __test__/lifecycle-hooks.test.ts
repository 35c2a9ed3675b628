// SPEC §21 LC-5 (terminal facts: terminalAt, terminalTrigger, the end data and status body keys)
// and LC-6 (the hooks onEventEmitted, beforeFinish, onTerminal, run.onFinalize; each call isolated).
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { END_DATA_KEYS, fakeClient, makeRuns, sleep, useTempDirs } from './helpers'

const tempDir = useTempDirs('lifecycle-hooks-')
let tmp: string
let warnings: Array<{ code?: string; message: string }>
const onWarning = (w: Error & { code?: string }) => warnings.push({ code: w.code, message: w.message })
beforeEach(() => {
  tmp = tempDir()
  warnings = []
  process.on('warning', onWarning)
})
afterEach(() => {
  process.off('warning', onWarning)
  vi.useRealTimers()
})

describe('LC-6: hooks', () => {
  it('at a terminal transition: beforeFinish, state set, state persisted, onTerminal, onFinalize, end emitted, clients ended, waiters resolved, eviction scheduled', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'] })
    vi.setSystemTime(5_000)
    const order: string[] = []
    const state = () => JSON.parse(fs.readFileSync(path.join(tmp, run.id, 'state.json'), 'utf8'))
    const { runs } = makeRuns({
      runsLogDir: tmp,
      ttlMs: 100,
      onEventEmitted: (r: any, record: any) => order.push(`onEventEmitted:${record.event}:${record.id}`),
      beforeFinish: (r: any, status: string, code: number, signal: null, terminalAt: number) => {
        order.push(`beforeFinish:${status}:${code}:${signal}:${terminalAt}:${r.status}`)
        r.endedWithUnfinishedWork = true
      },
      onTerminal: (r: any, status: string, terminalAt: number) =>
        order.push(`onTerminal:${status}:${terminalAt}:${r.status}:${state().status}:${r.events.at(-1).event}`),
    })
    const run = runs.create({ projectId: 'p' })
    run.status = 'running'
    runs.emit(run, 'agent', { n: 1 })
    run.onFinalize = () => order.push(`onFinalize:${run.status}:${run.events.at(-1).event}`)
    run.clients.add({
      send: (event: string, data: any) => order.push(`send:${event}:${data.endedWithUnfinishedWork}`),
      end: () => order.push('client.end'),
      cleanup: () => {},
    })
    const waited = runs.wait(run).then((body: any) => order.push(`waiter:${body.status}`))
    run.waiters.add((body: any) => order.push(`waiter.sync:${body.terminalAt}`))
    runs.finish(run, 'succeeded', 0, null)
    expect(run.onFinalize).toBeNull()
    await waited
    expect(order).toEqual([
      'onEventEmitted:agent:1',
      'beforeFinish:succeeded:0:null:5000:running',
      'onTerminal:succeeded:5000:succeeded:succeeded:agent',
      'onFinalize:succeeded:agent',
      'onEventEmitted:end:2',
      'send:end:true',
      'client.end',
      'waiter.sync:5000',
      'waiter:succeeded',
    ])
    expect(state()).toMatchObject({ status: 'succeeded', endedWithUnfinishedWork: true, terminalAt: 5000 })
    // Eviction last, after ttlMs.
    expect(runs.list()).toEqual([run])
    vi.advanceTimersByTime(100)
    expect(runs.list()).toEqual([])
    // The first verdict wins: nothing runs twice.
    runs.finish(run, 'failed', 1, null)
    expect(order).toHaveLength(9)
  })

  it('onEventEmitted sees every record once, numbered, before fan-out, even when maxEvents trims it at once', () => {
    const seen: any[] = []
    const { runs } = makeRuns({
      maxEvents: 1,
      onEventEmitted: (r: any, record: any) => seen.push([r, record, r.clients.size]),
    })
    const run = runs.create()
    const client = fakeClient()
    run.clients.add(client)
    const first = runs.emit(run, 'a', { n: 1 })
    runs.emit(run, 'b', { n: 2 })
    runs.fail(run, 'E', 'm')
    expect(seen.map(([, record]) => [record.id, record.event])).toEqual([
      [1, 'a'],
      [2, 'b'],
      [3, 'error'],
      [4, 'end'],
    ])
    expect(seen[0][0]).toBe(run)
    // The record emit() returns, with the caller's own data.
    expect(seen[0][1]).toBe(first)
    expect(run.events).toHaveLength(1)
    expect(client.send).toHaveBeenCalledTimes(4)
  })

  it('a throwing hook is swallowed and reported once per service (CHAT_RUN_HOOK_ERROR); the run goes on', async () => {
    const boom = () => {
      throw new Error('hook failed')
    }
    const { runs } = makeRuns({ onEventEmitted: boom, beforeFinish: boom, onTerminal: boom })
    const run = runs.create()
    run.onFinalize = boom
    const waited = runs.wait(run)
    expect(runs.emit(run, 'agent', 1).id).toBe(1)
    expect(() => runs.finish(run, 'succeeded', 0, null)).not.toThrow()
    await expect(waited).resolves.toMatchObject({ status: 'succeeded' })
    expect(run.events.map((e: any) => e.event)).toEqual(['agent', 'end'])
    const other = runs.create()
    other.onFinalize = boom
    runs.drop(other)
    await sleep(10)
    const reported = warnings.filter((w) => w.code === 'CHAT_RUN_HOOK_ERROR')
    expect(reported).toHaveLength(1)
    expect(reported[0].message).toContain('onEventEmitted')
    expect(reported[0].message).toContain('hook failed')
    // Each service reports its own first one.
    const second = makeRuns({ beforeFinish: boom }).runs
    second.finish(second.create(), 'failed', 1, null)
    await sleep(10)
    expect(warnings.filter((w) => w.code === 'CHAT_RUN_HOOK_ERROR')).toHaveLength(2)
  })

  it('a hook whose error object throws when read, or whose promise rejects, is isolated too (no unhandled rejection)', async () => {
    let messageReads = 0
    class UnreadableError extends Error {
      get message(): string {
        messageReads++
        throw new Error('message getter threw')
      }
    }
    const hostile = new Proxy(
      {},
      {
        getPrototypeOf() {
          throw new Error('trap threw')
        },
      },
    )
    const rejections: unknown[] = []
    const onRejection = (reason: unknown) => rejections.push(reason)
    process.on('unhandledRejection', onRejection)
    try {
      const { runs } = makeRuns({
        onEventEmitted: () => {
          throw hostile
        },
        beforeFinish: () => {
          throw new UnreadableError()
        },
        onTerminal: async () => {
          throw new Error('async onTerminal rejected')
        },
        onStatusBody: () => Promise.reject(new Error('onStatusBody rejected')),
      })
      const run = runs.create()
      run.onFinalize = async () => {
        throw new Error('async onFinalize rejected')
      }
      const client = fakeClient()
      run.clients.add(client)
      const waited = runs.wait(run)
      expect(runs.emit(run, 'agent', 1).id).toBe(1)
      expect(() => runs.finish(run, 'succeeded', 0, null)).not.toThrow()
      await expect(waited).resolves.toMatchObject({ status: 'succeeded' })
      expect(run.events.map((e: any) => e.event)).toEqual(['agent', 'end'])
      expect(client.calls.map((c) => c.type)).toEqual(['send', 'send', 'end'])
      await sleep(20)
      expect(rejections).toEqual([])
      const reported = warnings.filter((w) => w.code === 'CHAT_RUN_HOOK_ERROR')
      expect(reported).toHaveLength(1)
      expect(reported[0].message).toContain('onEventEmitted')
      // A service whose first failure is a rejection reports that one.
      const second = makeRuns({ onTerminal: () => Promise.reject(new Error('late rejection')) }).runs
      second.finish(second.create(), 'failed', 1, null)
      await sleep(20)
      expect(rejections).toEqual([])
      const both = warnings.filter((w) => w.code === 'CHAT_RUN_HOOK_ERROR')
      expect(both).toHaveLength(2)
      expect(both[1].message).toContain('late rejection')
      // A service whose first failure is an error whose message cannot be read.
      const third = makeRuns({
        beforeFinish: () => {
          throw new UnreadableError()
        },
      }).runs
      const reads = messageReads
      expect(() => third.finish(third.create(), 'failed', 1, null)).not.toThrow()
      await sleep(20)
      expect(messageReads).toBe(reads + 1)
      const all = warnings.filter((w) => w.code === 'CHAT_RUN_HOOK_ERROR')
      expect(all).toHaveLength(3)
      expect(all[2].message).toContain('beforeFinish hook threw (an object (UnreadableError))')
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  })

  it("LC-4/LC-6: inside a finish (its hooks, its 'end' record's hook and clients) or a drop (its clients' end()), prepareRestart gives null, fail and finish do nothing, and cancel resolves to the final body", async () => {
    const calls: Record<string, unknown> = {}
    let runsRef: any
    const { runs } = makeRuns({
      beforeFinish: (run: any) => {
        runsRef.fail(run, 'HOOK_FAIL', 'from beforeFinish')
        calls.cancel = runsRef.cancel(run, 'user_stop')
      },
      onEventEmitted: (run: any, record: any) => {
        if (record.event === 'end') calls.restartInEnd = runsRef.prepareRestart(run)
      },
    })
    runsRef = runs
    const run = runs.create()
    run.clients.add({
      send: (event: string) => {
        if (event === 'end') calls.restartInSend = runs.prepareRestart(run)
      },
      end: () => {
        calls.restartInEnd2 = runs.prepareRestart(run)
      },
      cleanup: () => {},
    })
    const waited = runs.wait(run)
    runs.finish(run, 'succeeded', 0, null)
    expect(calls).toMatchObject({ restartInEnd: null, restartInSend: null, restartInEnd2: null })
    expect(run.events.map((e: any) => e.event)).toEqual(['end'])
    expect(run).toMatchObject({ status: 'succeeded', error: null, errorCode: null, cancelOrigin: null })
    await expect(calls.cancel).resolves.toMatchObject({ status: 'succeeded', cancelOrigin: null })
    await expect(waited).resolves.toMatchObject({ status: 'succeeded' })

    // A drop whose client, on end(), fails or cancels the run.
    const dropped = runs.create()
    let canceled: Promise<any> | null = null
    dropped.clients.add({
      send: () => {},
      end: () => {
        runs.fail(dropped, 'LATE', 'from end()')
        canceled = runs.cancel(dropped, 'user_stop')
      },
      cleanup: () => {},
    })
    runs.drop(dropped)
    expect(dropped.events).toEqual([])
    expect(dropped).toMatchObject({ status: 'canceled', terminalTrigger: null, error: null })
    await expect(canceled).resolves.toMatchObject({ status: 'canceled', terminalTrigger: null, cancelOrigin: null })
  })

  it('LC-6: a cancel from onTerminal or run.onFinalize resolves to the body the waiters get, with what the later hooks set', async () => {
    for (const where of ['onTerminal', 'onFinalize'] as const) {
      let canceled: Promise<any> | null = null
      let runsRef: any
      const { runs } = makeRuns(
        where === 'onTerminal' ? { onTerminal: (run: any) => (canceled = runsRef.cancel(run, 'user_stop')) } : {},
      )
      runsRef = runs
      const run = runs.create()
      run.onFinalize = () => {
        if (where === 'onFinalize') canceled = runs.cancel(run, 'user_stop')
        run.failureCategory = 'set-in-onFinalize'
      }
      const waited = runs.wait(run)
      runs.finish(run, 'failed', 1, null)
      expect(canceled, where).not.toBeNull()
      const body = await canceled
      expect(body, where).toEqual(await waited)
      expect(body, where).toMatchObject({ status: 'failed', failureCategory: 'set-in-onFinalize', cancelOrigin: null })
    }
  })

  it('run.onFinalize runs exactly once per run: on finish, fail, a rejected start, drop; never for a non-terminal finish', async () => {
    const { runs } = makeRuns()
    const calls: string[] = []
    const make = (name: string) => {
      const run = runs.create()
      run.onFinalize = vi.fn(() => calls.push(name))
      return run
    }
    const finished = make('finish')
    runs.finish(finished, 'paused', null, null)
    expect(calls).toEqual([])
    runs.finish(finished, 'succeeded', 0, null)
    runs.finish(finished, 'failed', 1, null)
    runs.fail(make('fail'), 'E', 'm')
    const started = make('start')
    runs.start(started, () => Promise.reject(new Error('no')))
    const dropped = make('drop')
    runs.drop(dropped)
    runs.drop(dropped)
    await sleep(5)
    expect(calls).toEqual(['finish', 'fail', 'drop', 'start'])
    // A finish from inside onFinalize is a no-op (the run already has its verdict).
    const nested = runs.create()
    nested.onFinalize = () => runs.finish(nested, 'failed', 9, null)
    runs.finish(nested, 'succeeded', 0, null)
    expect(nested).toMatchObject({ status: 'succeeded', exitCode: 0 })
    expect(nested.events.filter((e: any) => e.event === 'end')).toHaveLength(1)
  })

  it('beforeFinish runs once, before the single terminal transition; it may set what the verdict carries', () => {
    const beforeFinish = vi.fn((run: any, status: string) => {
      run.resumable = status === 'failed'
      // A finish from inside the hook does not take over the verdict.
      runs.finish(run, 'canceled', null, 'SIGTERM')
    })
    const { runs } = makeRuns({ beforeFinish })
    const run = runs.create()
    runs.finish(run, 'paused', null, null)
    expect(beforeFinish).not.toHaveBeenCalled()
    runs.finish(run, 'failed', 1, null)
    runs.finish(run, 'succeeded', 0, null)
    expect(beforeFinish).toHaveBeenCalledOnce()
    expect(beforeFinish.mock.calls[0].slice(1)).toEqual(['failed', 1, null, run.terminalAt])
    expect(run.status).toBe('failed')
    expect(run.events.at(-1).data).toMatchObject({ status: 'failed', resumable: true })
  })

  it("a terminal status beforeFinish writes itself is taken over by the transition: the finish's verdict, its 'end', the waiters resolved, the state file", async () => {
    let runs: any
    ;({ runs } = makeRuns({
      runsLogDir: tmp,
      beforeFinish: (r: any) => {
        r.status = 'failed'
      },
    }))
    const run = runs.create()
    run.status = 'running'
    const done = runs.wait(run)
    runs.finish(run, 'succeeded', 0, null)
    expect(run.status).toBe('succeeded')
    expect(run.events.at(-1)).toMatchObject({ event: 'end', data: { status: 'succeeded', code: 0 } })
    await expect(done).resolves.toMatchObject({ status: 'succeeded', exitCode: 0 })
    expect(JSON.parse(fs.readFileSync(path.join(tmp, run.id, 'state.json'), 'utf8')).status).toBe('succeeded')
  })

  it.each(['beforeFinish', 'onTerminal'])(
    "records %s emits later than the verdict's time: the 'end' record comes after them in time, and the run, the core and state.json agree on updatedAt",
    (hook) => {
      vi.useFakeTimers({ toFake: ['Date'] })
      vi.setSystemTime(5_000)
      let runs: any
      ;({ runs } = makeRuns({
        runsLogDir: tmp,
        [hook]: (r: any) => {
          vi.setSystemTime(5_007) // the hook takes its time, then emits
          runs.emit(r, 'diagnostic', { note: 'final usage' })
        },
      }))
      const run = runs.create({})
      runs.finish(run, 'succeeded', 0, null)
      expect(run.events.map((e: any) => [e.event, e.timestamp])).toEqual([
        ['diagnostic', 5_007],
        ['end', 5_007],
      ])
      expect(run.terminalAt).toBe(5_000)
      expect(run.updatedAt).toBe(5_007)
      expect(runs.statusBody(run).updatedAt).toBe(5_007)
      const state = JSON.parse(fs.readFileSync(path.join(tmp, run.id, 'state.json'), 'utf8'))
      expect(state).toMatchObject({ status: 'succeeded', updatedAt: 5_007, terminalAt: 5_000 })
    },
  )

  it("a record a client's end() emits during a drop keeps its updatedAt: the run and the core agree", () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(5_000)
    let runs: any
    let run: any
    ;({ runs } = makeRuns({ runsLogDir: tmp }, () =>
      fakeClient({
        onEnd: () => {
          vi.setSystemTime(5_004)
          runs.emit(run, 'diagnostic', { note: 'client gone' })
        },
      }),
    ))
    run = runs.create({})
    runs.stream(run, { get: () => undefined, query: {} }, { on() {} })
    runs.drop(run)
    expect(run.status).toBe('canceled')
    expect(run.terminalAt).toBe(5_000)
    expect(run.updatedAt).toBe(5_004)
    expect(runs.statusBody(run).updatedAt).toBe(5_004)
  })

  it('onTerminal also hears of every terminal run hydrated from disk', () => {
    const first = makeRuns({ runsLogDir: tmp }).runs
    const a = first.create({ projectId: 'p' })
    first.finish(a, 'succeeded', 0, null)
    // LC-2: the files keep createdAt in ms; runs of one ms are ordered by id. Let the clock move.
    while (Date.now() === a.createdAt) {
      // spin (at most about 1 ms)
    }
    const b = first.create({ projectId: 'p' })
    const onTerminal = vi.fn()
    const { runs } = makeRuns({ runsLogDir: tmp, onTerminal })
    const hydrated = runs.list({ projectId: 'p' })
    expect(onTerminal.mock.calls).toEqual([
      [hydrated[0], 'succeeded', a.terminalAt],
      [hydrated[1], 'failed', hydrated[1].terminalAt],
    ])
    expect(hydrated[1]).toMatchObject({ id: b.id, terminalTrigger: 'daemon_restart' })
    // Hydrating again in a new service tells it again (the host's outbox dedupes).
    makeRuns({ runsLogDir: tmp, onTerminal }).runs.get(a.id)
    expect(onTerminal).toHaveBeenCalledTimes(3)
  })
})

describe('LC-5: terminal facts', () => {
  it("every terminal transition sets terminalAt (read-only for the host); terminalTrigger stays the host's, null unless it sets one", async () => {
    const { runs } = makeRuns()
    const created = runs.create()
    expect(created).toMatchObject({ terminalAt: null, terminalTrigger: null })
    expect(() => {
      created.terminalAt = 5
    }).toThrow(TypeError)
    const finished = runs.create()
    runs.finish(finished, 'succeeded', 0, null)
    const failed = runs.create()
    runs.fail(failed, 'E', 'm')
    const started = runs.create()
    runs.start(started, () => Promise.reject(new Error('spawn failed')))
    const dropped = runs.create()
    runs.drop(dropped)
    const paused = runs.create()
    runs.finish(paused, 'paused', null, null)
    // A daemon's watchdog names why it ended the run before it gives the verdict.
    const watched = runs.create()
    watched.terminalTrigger = 'first_output_deadline'
    runs.fail(watched, 'AGENT_EXECUTION_FAILED', 'no first output')
    await sleep(5)
    for (const [run, trigger] of [
      [finished, null],
      [failed, null],
      [started, null],
      [dropped, null],
      [watched, 'first_output_deadline'],
    ] as const) {
      expect(run.terminalTrigger).toBe(trigger)
      expect(run.terminalAt).toEqual(expect.any(Number))
      expect(runs.statusBody(run)).toMatchObject({ terminalTrigger: trigger, terminalAt: run.terminalAt })
    }
    expect(finished.terminalAt).toBe(finished.events.at(-1).timestamp)
    // A non-terminal finish (FIN-2) is no terminal transition.
    expect(paused).toMatchObject({ terminalAt: null, terminalTrigger: null })
    expect(paused.events[0].data).toMatchObject({ status: 'paused', terminalAt: null })
    // The host may also clear or replace it after the verdict (a status body reads it as it is).
    watched.terminalTrigger = null
    expect(runs.statusBody(watched).terminalTrigger).toBeNull()
  })

  it('a host terminalTrigger or cancelOrigin is persisted with the verdict and hydrated by a later service', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const idle = runs.create()
    idle.terminalTrigger = 'inactivity_watchdog'
    runs.finish(idle, 'succeeded', 0, null)
    const stopped = runs.create()
    stopped.cancelOrigin = 'project_cleanup'
    await runs.cancel(stopped, 'user_stop')
    const state = (id: string) => JSON.parse(fs.readFileSync(path.join(tmp, id, 'state.json'), 'utf8'))
    expect(state(idle.id)).toMatchObject({
      status: 'succeeded',
      terminalTrigger: 'inactivity_watchdog',
      cancelOrigin: null,
    })
    // The host's origin came first, so cancel's does not replace it (LC-5: the first origin wins).
    expect(state(stopped.id)).toMatchObject({
      status: 'canceled',
      terminalTrigger: null,
      cancelOrigin: 'project_cleanup',
    })
    const later = makeRuns({ runsLogDir: tmp }).runs
    expect(later.get(idle.id)).toMatchObject({ terminalTrigger: 'inactivity_watchdog', cancelOrigin: null })
    expect(later.get(stopped.id)).toMatchObject({ terminalTrigger: null, cancelOrigin: 'project_cleanup' })
  })

  it('a cancelOrigin the host wrote before cancel() or shutdownActive() is in the state file before the first signal', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const state = (id: string) => JSON.parse(fs.readFileSync(path.join(tmp, id, 'state.json'), 'utf8'))
    const seen: Array<[string, unknown]> = []
    const child = (run: any) =>
      Object.assign(new EventEmitter(), {
        pid: undefined,
        exitCode: null as number | null,
        signalCode: null as string | null,
        kill(this: any, signal: string) {
          seen.push([signal, state(run.id).cancelOrigin])
          this.signalCode = signal
          queueMicrotask(() => this.emit('exit', null, signal))
          return true
        },
      })
    const stopped = runs.create()
    stopped.status = 'running'
    stopped.child = child(stopped)
    stopped.cancelOrigin = 'project_cleanup'
    await runs.cancel(stopped, 'user_stop')
    const shut = runs.create()
    shut.status = 'running'
    shut.child = child(shut)
    shut.cancelOrigin = 'user_stop'
    await runs.shutdownActive({ graceMs: 50 })
    expect(seen).toEqual([
      ['SIGTERM', 'project_cleanup'],
      ['SIGTERM', 'user_stop'],
    ])
  })

  it('shutdownActive() from inside a finish (beforeFinish) records nothing and signals nothing for that run; it resolves once the finish is over', async () => {
    let shutdown: Promise<void> | null = null
    const { runs } = makeRuns({
      shutdownGraceMs: 20,
      beforeFinish: () => {
        shutdown = runs.shutdownActive()
      },
    })
    const run = runs.create()
    run.status = 'running'
    const signals: string[] = []
    run.child = Object.assign(new EventEmitter(), {
      pid: undefined,
      exitCode: null,
      signalCode: null,
      kill: (signal: string) => (signals.push(signal), true),
    })
    runs.finish(run, 'succeeded', 0, null)
    expect(shutdown).not.toBeNull()
    await shutdown
    expect(runs.statusBody(run)).toMatchObject({ status: 'succeeded', cancelRequested: false, cancelOrigin: null })
    await sleep(60)
    expect(signals).toEqual([])
  })

  it('a terminalTrigger or cancelOrigin written by onTerminal or run.onFinalize reaches the state file at the end record', () => {
    const runs = makeRuns({
      runsLogDir: tmp,
      onTerminal: (run: any) => {
        run.terminalTrigger = 'inactivity_watchdog'
      },
    }).runs
    const run = runs.create()
    run.onFinalize = () => {
      run.cancelOrigin = 'user_stop'
    }
    runs.finish(run, 'failed', 1, null)
    const file = JSON.parse(fs.readFileSync(path.join(tmp, run.id, 'state.json'), 'utf8'))
    expect(file).toMatchObject({ terminalTrigger: 'inactivity_watchdog', cancelOrigin: 'user_stop' })
    const again = makeRuns({ runsLogDir: tmp }).runs.get(run.id)
    expect(again).toMatchObject({ terminalTrigger: 'inactivity_watchdog', cancelOrigin: 'user_stop' })
  })

  it('a cancelOrigin the host wrote as a non-string is no origin: cancel, shutdown and the Stop of a pending delivery record theirs on the run and in the file', async () => {
    const runs = makeRuns({ runsLogDir: tmp }).runs
    const state = (id: string) => JSON.parse(fs.readFileSync(path.join(tmp, id, 'state.json'), 'utf8'))
    for (const written of [undefined, 42, {}, Number.NaN]) {
      const run = runs.create()
      run.cancelOrigin = written as never
      const body = await runs.cancel(run, 'user_stop')
      expect([
        run.cancelOrigin,
        body.cancelOrigin,
        runs.statusBody(run).cancelOrigin,
        state(run.id).cancelOrigin,
      ]).toEqual(Array(4).fill('user_stop'))
    }
    const shut = runs.create()
    shut.cancelOrigin = 7 as never
    const delivering = runs.create()
    delivering.artifactDeliveryRequired = true
    runs.finish(delivering, 'succeeded', 0, null)
    delivering.cancelOrigin = 0 as never
    await runs.shutdownActive({ graceMs: 1 })
    expect([shut.cancelOrigin, state(shut.id).cancelOrigin]).toEqual(['daemon_shutdown', 'daemon_shutdown'])
    await runs.cancel(delivering, 'user_stop')
    expect(delivering).toMatchObject({ status: 'canceled', cancelOrigin: 'user_stop' })
    expect(state(delivering.id).cancelOrigin).toBe('user_stop')
  })

  it('the end data is code, signal, status, terminalAt, resumable, endedWithUnfinishedWork, failureCategory, failureDetail (host values read at the transition)', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    run.resumable = true
    run.endedWithUnfinishedWork = 1
    run.failureCategory = 'process_exit'
    const client = fakeClient()
    run.clients.add(client)
    runs.finish(run, 'failed', 3, 'SIGHUP')
    const data = run.events.at(-1).data
    expect(Object.keys(data)).toEqual(END_DATA_KEYS)
    expect(data).toEqual({
      code: 3,
      signal: 'SIGHUP',
      status: 'failed',
      terminalAt: run.terminalAt,
      resumable: true,
      endedWithUnfinishedWork: true,
      failureCategory: 'process_exit',
      failureDetail: null,
    })
    expect(client.send).toHaveBeenCalledWith('end', data, 1)
  })

  it('cancel() and shutdownActive() are terminal transitions: terminalAt and their origins, the trigger left to the host', async () => {
    const { runs } = makeRuns()
    const canceled = runs.create()
    await runs.cancel(canceled, 'user_stop')
    const shut = runs.create()
    const watched = runs.create()
    watched.terminalTrigger = 'inactivity_watchdog'
    await runs.shutdownActive({ graceMs: 1 })
    expect(canceled).toMatchObject({ status: 'canceled', cancelOrigin: 'user_stop', terminalTrigger: null })
    expect(shut).toMatchObject({ status: 'canceled', cancelOrigin: 'daemon_shutdown', terminalTrigger: null })
    expect(watched).toMatchObject({
      status: 'canceled',
      cancelOrigin: 'daemon_shutdown',
      terminalTrigger: 'inactivity_watchdog',
    })
    expect(canceled.terminalAt).toEqual(expect.any(Number))
    expect(shut.terminalAt).toEqual(expect.any(Number))
  })
})
