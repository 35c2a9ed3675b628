// SPEC §1 module surface (MOD-1..MOD-5, §0 detached methods / SB-3), §2 options (OPT-1, OPT-2 and
// the OPT table, IMP-12 option validation) and §4 eviction timers (TMR-1..TMR-3).
// The §3 environment variables are read by cancel: see spec-signal-cancel.test.ts ("ENV rules").
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createChatRunService, TERMINAL_RUN_STATUSES } from '../index.js'
import { baseOptions, FakeChild, makeRuns, METHODS, ROOT, runNodeSync, STATUS_BODY_KEYS, useTempDirs } from './helpers'

const tempDir = useTempDirs('spec-module-options-')

afterEach(() => {
  vi.useRealTimers()
  vi.restoreAllMocks()
})

describe('§1 Module surface (MOD)', () => {
  it('MOD-1: exports createChatRunService and TERMINAL_RUN_STATUSES, a real Set in the fixed order', () => {
    expect(typeof createChatRunService).toBe('function')
    expect(TERMINAL_RUN_STATUSES).toBeInstanceOf(Set)
    expect([...TERMINAL_RUN_STATUSES]).toEqual(['succeeded', 'failed', 'canceled'])
  })

  // LC-3, LC-4 and LC-6 add createOrReuse, prepareRestart and persistState to the 15 of Part I; HF-7 its four
  // checkpoints; HF-8 findByPluginWorkflowId; SIG-5/SIG-6 the three signalling helpers;
  // HF-12 the two media-task notes; HF-13 the delivery receipt.
  it('MOD-2: the service is a plain object with exactly the 36 own enumerable function properties, in order', () => {
    const { runs } = makeRuns()
    expect(Object.getPrototypeOf(runs)).toBe(Object.prototype)
    const keys = Object.keys(runs)
    expect(keys).toHaveLength(36)
    expect(keys).toEqual(METHODS)
    for (const key of METHODS) {
      expect(typeof runs[key]).toBe('function')
      expect(Object.getOwnPropertyDescriptor(runs, key)?.enumerable).toBe(true)
    }
  })

  it('MOD-3: wait/cancel/shutdownActive return native Promises; the other methods are synchronous', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const other = runs.create()
    const w = runs.wait(run)
    expect(w).toBeInstanceOf(Promise)
    expect(Object.getPrototypeOf(w)).toBe(Promise.prototype)
    const c = runs.cancel(run)
    expect(Object.getPrototypeOf(c)).toBe(Promise.prototype)
    const s = runs.shutdownActive()
    expect(Object.getPrototypeOf(s)).toBe(Promise.prototype)
    await Promise.all([w, c, s])

    const rec = runs.emit(other, 'x', {})
    expect(rec).not.toBeInstanceOf(Promise)
    expect(runs.create()).not.toBeInstanceOf(Promise)
    expect(runs.list()).toBeInstanceOf(Array)
    expect(runs.get(other.id)).toBe(other)
    expect(runs.statusBody(other)).not.toBeInstanceOf(Promise)
    expect(runs.isTerminal('failed')).toBe(true)
    expect(runs.signalChild(other, 'SIGTERM')).toBe(false)
    expect(runs.start(other, () => Promise.resolve())).toBe(other)
    expect(runs.finish(other, 'succeeded', 0, null)).toBeUndefined()
    expect(runs.fail(runs.create(), 'C', 'm')).toBeUndefined()
    expect(runs.drop(runs.create())).toBeUndefined()
    // LC-1: how the write went (no runsLogDir here: nothing is written).
    expect(runs.persistState(other)).toEqual({ ok: false, errorType: 'storage_unavailable' })
    expect(runs.prepareRestart(other)).toBe(other)
    expect(runs.createOrReuse({ clientRequestId: 'r' })).toMatchObject({ kind: 'created' })
  })

  it('MOD-3: cancel and shutdownActive never throw synchronously; failures become rejected promises', async () => {
    const { runs } = makeRuns()
    let p1: any
    let p2: any
    let p3: any
    expect(() => {
      p1 = runs.cancel(null)
    }).not.toThrow()
    expect(() => {
      p2 = runs.cancel({ status: 'running' })
    }).not.toThrow()
    expect(() => {
      p3 = runs.shutdownActive({ graceMs: 'soon' })
    }).not.toThrow()
    expect(p1).toBeInstanceOf(Promise)
    expect(p2).toBeInstanceOf(Promise)
    expect(p3).toBeInstanceOf(Promise)
    await expect(p1).rejects.toBeDefined()
    await p2.catch(() => {})
    await expect(p3).resolves.toBeUndefined()
  })

  it('MOD-4: two service instances have separate registries', async () => {
    const a = makeRuns().runs
    const b = makeRuns().runs
    const runA = a.create({ projectId: 'p' })
    runA.status = 'running'
    expect(b.get(runA.id)).toBeNull()
    expect(b.list()).toEqual([])
    expect(b.list({ projectId: 'p' })).toEqual([])
    const runB = b.create({ projectId: 'p' })
    expect(runB.id).not.toBe(runA.id)
    expect(a.list()).toEqual([runA])
    await b.shutdownActive({ graceMs: 1 })
    expect(runA.status).toBe('running')
    expect(runA.cancelRequested).toBe(false)
    expect(a.get(runA.id)).toBe(runA)
  })

  it('MOD-5: mutating the exported Set neither crashes nor changes the terminal checks', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const other = runs.create()
    try {
      const mutable = TERMINAL_RUN_STATUSES as Set<string>
      mutable.add('running')
      mutable.delete('failed')
      expect(runs.isTerminal('running')).toBe(false)
      expect(runs.isTerminal('failed')).toBe(true)
      run.status = 'running'
      expect(runs.list({ status: 'active' })).toEqual([run, other])
      runs.finish(run, 'failed', 1, null)
      expect(run.status).toBe('failed')
      runs.finish(run, 'succeeded', 0, null)
      expect(run.status).toBe('failed')
      await expect(runs.wait(run)).resolves.toMatchObject({ status: 'failed' })
      TERMINAL_RUN_STATUSES.clear()
      runs.fail(other, 'C', 'm')
      expect(other.status).toBe('failed')
      expect(runs.list({ status: 'active' })).toEqual([])
    } finally {
      TERMINAL_RUN_STATUSES.clear()
      for (const s of ['succeeded', 'failed', 'canceled'] as const) TERMINAL_RUN_STATUSES.add(s)
    }
  })

  it('§0/SB-3: every method works detached and ignores extra arguments (Array#map)', async () => {
    const { runs } = makeRuns()
    const { create, emit, finish, list, statusBody, get, wait, isTerminal, drop, fail, start } = runs
    const a = create({ projectId: 'p', conversationId: 'c1' })
    const b = create({ projectId: 'p', conversationId: 'c2' })
    expect(emit(a, 'agent', { n: 1 }).id).toBe(1)
    expect(start(b, () => Promise.resolve())).toBe(b)
    expect(list().map(statusBody)).toEqual([statusBody(a), statusBody(b)])
    expect(
      list()
        .map(runs.statusBody)
        .map((body: any) => Object.keys(body)),
    ).toEqual([STATUS_BODY_KEYS, STATUS_BODY_KEYS])
    expect([a.id, 'nope'].map(get)).toEqual([a, null])
    expect(['succeeded', 'failed', 'canceled', 'running', 7].map(isTerminal)).toEqual([true, true, true, false, false])
    const waits = [a, b].map(wait)
    finish(a, 'succeeded', 0, null)
    fail(b, 'E', 'broken')
    const [wa, wb]: any[] = await Promise.all(waits)
    expect(wa.status).toBe('succeeded')
    expect(wb).toMatchObject({ status: 'failed', errorCode: 'E', error: 'broken' })
    const c = create()
    const d = create()
    expect([c, d].map(drop)).toEqual([undefined, undefined])
    expect(c.status).toBe('canceled')
    expect(d.status).toBe('canceled')
    expect(list()).toEqual([a, b])
    const { createOrReuse, prepareRestart, persistState } = runs
    expect([a, b].map(persistState)).toEqual([
      { ok: false, errorType: 'storage_unavailable' },
      { ok: false, errorType: 'storage_unavailable' },
    ])
    expect([a, b].map(prepareRestart)).toEqual([a, b])
    const [made]: any[] = [{ clientRequestId: 'x' }].map(createOrReuse)
    expect(made.kind).toBe('created')
    expect([{ clientRequestId: 'x' }].map(createOrReuse)[0]).toEqual({ kind: 'reused', run: made.run })
  })
})

describe('§2 Options (OPT) and IMP-12 option validation', () => {
  it('OPT-1: a missing or non-object options argument throws a TypeError', () => {
    for (const bad of [undefined, null, 'options', 42, true]) {
      expect(() => (createChatRunService as any)(bad)).toThrow(TypeError)
    }
    expect(() => (createChatRunService as any)()).toThrow(TypeError)
  })

  it('OPT-1: unknown keys are ignored and a default applies when a key is undefined', () => {
    const runs = createChatRunService({
      ...baseOptions(),
      maxEvents: undefined,
      ttlMs: undefined,
      shutdownGraceMs: undefined,
      runsLogDir: undefined,
      someUnknownKey: 'whatever',
      maxevents: -5,
    } as any) as any
    const run = runs.create()
    expect(run.eventsLogPath).toBeNull()
    for (let i = 0; i < 2001; i++) runs.emit(run, 'tick', i)
    expect(run.events).toHaveLength(2000)
    expect(run.events[0].id).toBe(2)
    expect(run.events.at(-1).id).toBe(2001)
  })

  it('OPT-2/IMP-12: createSseResponse and createSseErrorPayload must be functions (TypeError naming the option)', () => {
    expect(() => createChatRunService({ createSseErrorPayload: () => ({}) } as any)).toThrow(TypeError)
    expect(() => createChatRunService({ createSseErrorPayload: () => ({}) } as any)).toThrow(/createSseResponse/)
    expect(() => createChatRunService({ createSseResponse: 'nope', createSseErrorPayload: () => ({}) } as any)).toThrow(
      /createSseResponse/,
    )
    expect(() => createChatRunService({ createSseResponse: () => ({}) } as any)).toThrow(TypeError)
    expect(() => createChatRunService({ createSseResponse: () => ({}) } as any)).toThrow(/createSseErrorPayload/)
    expect(() => createChatRunService({ createSseResponse: () => ({}), createSseErrorPayload: {} } as any)).toThrow(
      /createSseErrorPayload/,
    )
  })

  it('OPT-2: an option that cannot be read (a throwing getter, a revoked Proxy, a durableFields element) is a TypeError naming it, with the cause kept', () => {
    const boom = new Error('getter boom')
    const throwing = {
      ...baseOptions(),
      get maxEvents() {
        throw boom
      },
    }
    let error: any
    try {
      createChatRunService(throwing as any)
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(TypeError)
    expect(error.message).toMatch(/createChatRunService: options\.maxEvents could not be read/)
    expect(error.cause).toBe(boom)
    const revocable = Proxy.revocable({}, {})
    revocable.revoke()
    expect(() => createChatRunService(revocable.proxy as any)).toThrow(
      /options\.createSseResponse could not be read \(the options object is a revoked Proxy\)/,
    )
    const fields = new Proxy(['a'], {
      get: (target, key) => {
        if (key === '0') throw new Error('element')
        return Reflect.get(target, key)
      },
    })
    expect(() => createChatRunService({ ...baseOptions(), durableFields: fields } as any)).toThrow(
      /options\.durableFields\[0\] could not be read/,
    )
    const lengthless = new Proxy(['a'], {
      get: (target, key) => {
        if (key === 'length') throw new Error('length')
        return Reflect.get(target, key)
      },
    })
    expect(() => createChatRunService({ ...baseOptions(), durableFields: lengthless } as any)).toThrow(
      new TypeError(
        'createChatRunService: options.durableFields.length could not be read; expected an array of run field names (strings)',
      ),
    )
  })

  it('OPT-2: a runsLogDir with a NUL character (no file system path has one) throws a TypeError at construction', () => {
    expect(() => createChatRunService({ ...baseOptions(), runsLogDir: '/tmp/runs\u0000x' } as any)).toThrow(
      new TypeError(
        'createChatRunService: options.runsLogDir must be a directory path, got a string with a NUL character at index 9',
      ),
    )
  })

  const cases: Array<[string, unknown, 'TypeError' | 'RangeError']> = [
    ['maxEvents', null, 'TypeError'],
    ['maxEvents', '10', 'TypeError'],
    ['maxEvents', true, 'TypeError'],
    ['maxEvents', {}, 'TypeError'],
    ['maxEvents', 0, 'RangeError'],
    ['maxEvents', -1, 'RangeError'],
    ['maxEvents', 1.5, 'RangeError'],
    ['maxEvents', NaN, 'RangeError'],
    ['maxEvents', -Infinity, 'RangeError'],
    ['ttlMs', null, 'TypeError'],
    ['ttlMs', '1000', 'TypeError'],
    ['ttlMs', -1, 'RangeError'],
    ['ttlMs', NaN, 'RangeError'],
    ['ttlMs', -Infinity, 'RangeError'],
    ['shutdownGraceMs', null, 'TypeError'],
    ['shutdownGraceMs', '3000', 'TypeError'],
    ['shutdownGraceMs', -1, 'RangeError'],
    ['shutdownGraceMs', NaN, 'RangeError'],
    ['runsLogDir', 5, 'TypeError'],
    ['runsLogDir', {}, 'TypeError'],
    ['runsLogDir', true, 'TypeError'],
    ['runsLogDir', ['/tmp'], 'TypeError'],
    // LC-6: the hooks are functions; durableFields an array of strings.
    ['onEventEmitted', 'log', 'TypeError'],
    ['beforeFinish', {}, 'TypeError'],
    ['onTerminal', 5, 'TypeError'],
    ['durableFields', 'userPrompt', 'TypeError'],
    ['durableFields', null, 'TypeError'],
    ['durableFields', ['ok', 7], 'TypeError'],
  ]
  for (const [key, value, kind] of cases) {
    it(`OPT-2/IMP-12: ${key} = ${typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? '[array]' : String(value)} throws a ${kind} naming the option`, () => {
      let error: unknown
      try {
        createChatRunService({ ...baseOptions(), [key]: value } as any)
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(kind === 'TypeError' ? TypeError : RangeError)
      expect((error as Error).message).toContain(key)
    })
  }

  it('OPT table: valid values are accepted (maxEvents 1/Infinity, ttlMs 0/Infinity/3e9, shutdownGraceMs 0, runsLogDir null/"")', () => {
    const ok: Array<Record<string, unknown>> = [
      { maxEvents: 1 },
      { maxEvents: 5 },
      { maxEvents: Infinity },
      { ttlMs: 0 },
      { ttlMs: 0.5 },
      { ttlMs: Infinity },
      { ttlMs: 3e9 },
      { shutdownGraceMs: 0 },
      { shutdownGraceMs: 2.5 },
      { runsLogDir: null },
      { runsLogDir: '' },
      { runsLogDir: 'relative/logs' },
      { onEventEmitted: () => {}, beforeFinish: null, onTerminal: undefined },
      { durableFields: [] },
      { durableFields: ['userPrompt', 'model', 'userPrompt'] },
    ]
    for (const extra of ok) {
      expect(() => createChatRunService({ ...baseOptions(), ...extra } as any)).not.toThrow()
    }
  })

  it('OPT table: maxEvents Infinity keeps every event', () => {
    const { runs } = makeRuns({ maxEvents: Infinity })
    const run = runs.create()
    for (let i = 0; i < 2500; i++) runs.emit(run, 'tick', i)
    expect(run.events).toHaveLength(2500)
    expect(run.events[0].id).toBe(1)
  })

  it("OPT table: runsLogDir '' or null disables logging (eventsLogPath null, no files)", () => {
    const dir = tempDir()
    const cwd = process.cwd()
    for (const runsLogDir of ['', null]) {
      const { runs } = makeRuns({ runsLogDir })
      const run = runs.create()
      expect(run.eventsLogPath).toBeNull()
      runs.emit(run, 'agent', { x: 1 })
      runs.finish(run, 'succeeded', 0, null)
      expect(fs.existsSync(path.join(cwd, run.id))).toBe(false)
    }
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it('OPT table: shutdownGraceMs is the default graceMs of shutdownActive', async () => {
    const { runs } = makeRuns({ shutdownGraceMs: 30 })
    const run = runs.create()
    run.status = 'running'
    const child = new FakeChild({ closeOn: 'SIGKILL' })
    run.child = child
    const t0 = Date.now()
    await runs.shutdownActive()
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
    expect(Date.now() - t0).toBeLessThan(1500)
  })
})

describe('§4 Timers for eviction (TMR)', () => {
  it('TMR-1: ttlMs 0 evicts after 1 ms (never synchronously)', () => {
    vi.useFakeTimers()
    const { runs } = makeRuns({ ttlMs: 0 })
    const run = runs.create()
    runs.finish(run, 'succeeded', 0, null)
    expect(runs.get(run.id)).toBe(run)
    vi.advanceTimersByTime(1)
    expect(runs.get(run.id)).toBeNull()
  })

  it('TMR-2: a ttlMs above 2147483647 is clamped to 2147483647 (not turned into 1 ms)', () => {
    vi.useFakeTimers()
    const { runs } = makeRuns({ ttlMs: 3e9 })
    const run = runs.create()
    runs.finish(run, 'succeeded', 0, null)
    vi.advanceTimersByTime(10_000)
    expect(runs.get(run.id)).toBe(run)
    vi.advanceTimersByTime(2147483646 - 10_000)
    expect(runs.get(run.id)).toBe(run)
    vi.advanceTimersByTime(1)
    expect(runs.get(run.id)).toBeNull()
  })

  it('TMR-2/IMP-12: ttlMs Infinity creates no eviction timer and never evicts', () => {
    vi.useFakeTimers()
    const { runs } = makeRuns({ ttlMs: Infinity })
    const run = runs.create()
    const before = vi.getTimerCount()
    runs.finish(run, 'failed', 1, null)
    expect(vi.getTimerCount()).toBe(before)
    vi.advanceTimersByTime(5 * 2147483647)
    expect(runs.get(run.id)).toBe(run)
    expect(runs.list()).toEqual([run])
  })

  it('TMR-3: the eviction timer (and nothing native) keeps the Node process alive', () => {
    const indexPath = path.join(ROOT, 'index.js')
    const dir = tempDir()
    const script = `
      const { createChatRunService } = require(process.argv[1]);
      const svc = createChatRunService({
        createSseResponse: () => ({ send() {}, end() {}, cleanup() {} }),
        createSseErrorPayload: () => ({}),
        ttlMs: 600000,
        runsLogDir: process.argv[2] || null,
      });
      const run = svc.create({ projectId: 'p' });
      svc.emit(run, 'agent', { n: 1 });
      svc.finish(run, 'succeeded', 0, null);
      globalThis.keep = [svc, run];
    `
    for (const args of [[indexPath], [indexPath, dir]]) {
      const t0 = Date.now()
      const result = runNodeSync(['-e', script, ...args], { timeout: 15_000 })
      expect(result.error).toBeUndefined()
      expect(result.signal).toBeNull()
      expect(result.status).toBe(0)
      expect(Date.now() - t0).toBeLessThan(10_000)
    }
  })
})
