// The read mirror of lib/run.js and its drift check: mirrorDrift() names every field on which a
// run's mirror disagrees with the core, and stays empty through everything the service and the
// host do. (The setup file helpers/mirror-check.ts runs the same check after every test.)
import { createRequire } from 'node:module'
import { describe, expect, it, vi } from 'vitest'
import { createChatRunService } from '../index.js'
import { FakeChild, useTempDirs } from './helpers'

interface RunState {
  ctx: { svc: number }
  slot: number
}
interface RunModule {
  ChatRun: { stateOf(run: unknown): RunState | undefined }
  mirrorDrift(run: object): string[]
}
interface Native {
  runSetText(svc: number, slot: number, field: number, value: string | null): void
  runSetNumber(svc: number, slot: number, field: number, value: number | null): void
  runCoreFields(svc: number, slot: number): string
  TextField: Record<string, number>
  NumberField: Record<string, number>
}

const requireNode = createRequire(import.meta.url)
const { ChatRun, mirrorDrift } = requireNode('../lib/run.js') as RunModule
const native = requireNode('../loader.js') as Native
// The binding's field code for a run field name (TextField / NumberField enums).
const code = (field: string): number => {
  const name = field[0].toUpperCase() + field.slice(1)
  const value = native.TextField[name] ?? native.NumberField[name]
  if (typeof value !== 'number') throw new Error(`no field code for ${field}`)
  return value
}

const client = () => ({ send() {}, end() {}, cleanup() {} })
const tmpDir = useTempDirs('chat-run-mirror-')

function makeService(extra: Record<string, unknown> = {}) {
  return createChatRunService({
    createSseResponse: client,
    createSseErrorPayload: (code: string, message: string) => ({ error: { code, message } }),
    ...extra,
  })
}

function handle(run: object): RunState {
  const s = ChatRun.stateOf(run)
  if (s === undefined) throw new Error('not a run')
  return s
}

function coreFields(run: object): Record<string, unknown> {
  const s = handle(run)
  return JSON.parse(native.runCoreFields(s.ctx.svc, s.slot))
}

describe('mirrorDrift: a write behind the mirror shows', () => {
  it.each([
    ['status', 'text', 'running', 'queued'],
    ['projectId', 'text', 'other', 'p'],
    ['error', 'text', 'boom', null],
    ['signal', 'text', 'SIGTERM', null],
    ['updatedAt', 'number', 1, null],
    ['exitCode', 'number', 3, null],
    ['cancelRequested', 'number', 1, 0],
    ['childExitObservedAt', 'number', 5, null],
    ['terminalTrigger', 'text', 'inactivity_watchdog', null],
    ['cancelOrigin', 'text', 'user_stop', null],
  ] as const)('%s', (field, kind, behind, back) => {
    const svc = makeService()
    const run = svc.create({ projectId: 'p' })
    const s = handle(run)
    expect(mirrorDrift(run)).toEqual([])
    const write = (value: string | number | null) =>
      kind === 'text'
        ? native.runSetText(s.ctx.svc, s.slot, code(field), value as string | null)
        : native.runSetNumber(s.ctx.svc, s.slot, code(field), value as number | null)
    write(behind)
    expect(mirrorDrift(run)).toEqual([field])
    // Put the core back (updatedAt: to the mirror's own value) so the after-each check passes.
    write(field === 'updatedAt' ? (run.updatedAt as number) : back)
    expect(mirrorDrift(run)).toEqual([])
  })

  it('names every drifted field, in the core view order', () => {
    const svc = makeService()
    const run = svc.create()
    const s = handle(run)
    native.runSetText(s.ctx.svc, s.slot, code('errorCode'), 'X')
    native.runSetText(s.ctx.svc, s.slot, code('status'), 'running')
    expect(mirrorDrift(run)).toEqual(['status', 'errorCode'])
    native.runSetText(s.ctx.svc, s.slot, code('errorCode'), null)
    native.runSetText(s.ctx.svc, s.slot, code('status'), 'queued')
    expect(mirrorDrift(run)).toEqual([])
  })

  it('rejects what is not a run', () => {
    expect(() => mirrorDrift({})).toThrow(/mirrorDrift\(run\): expected a run object/)
  })
})

describe('mirrorDrift: nothing the service or the host does makes the mirror drift', () => {
  it('create, emit, an error emit, host writes of every core-owned field, finish', () => {
    const svc = makeService()
    const run = svc.create({ projectId: 'p', conversationId: 'c' })
    const steps: Array<[string, () => void]> = [
      ['emit', () => svc.emit(run, 'agent', { n: 1 })],
      ['emit (unserializable data)', () => svc.emit(run, 'agent', { big: 1n })],
      ['emit (a name that is not a string)', () => svc.emit(run, 42 as unknown as string, null)],
      ['error emit', () => svc.emit(run, 'error', { error: { message: ' m ', code: 'C' } })],
      ['error emit (message only)', () => svc.emit(run, 'error', { message: 'only' })],
      ['status = running', () => (run.status = 'running')],
      ['status = 5', () => ((run as { status: unknown }).status = 5)],
      ['status = running again', () => (run.status = 'running')],
      ['projectId = {}', () => ((run as { projectId: unknown }).projectId = {})],
      ['conversationId = lone surrogate', () => (run.conversationId = 'x\ud800y')],
      ['updatedAt = "x"', () => ((run as { updatedAt: unknown }).updatedAt = 'x')],
      ['updatedAt = Infinity', () => (run.updatedAt = Infinity)],
      ['updatedAt = -0', () => (run.updatedAt = -0)],
      ['exitCode = NaN', () => (run.exitCode = NaN)],
      ['exitCode = 7', () => (run.exitCode = 7)],
      ['signal = 9', () => ((run as { signal: unknown }).signal = 9)],
      ['signal = undefined', () => ((run as { signal: unknown }).signal = undefined)],
      ['signal = Symbol', () => ((run as { signal: unknown }).signal = Symbol('s'))],
      ['error = 1', () => ((run as { error: unknown }).error = 1)],
      ['errorCode = E', () => (run.errorCode = 'E')],
      ['cancelRequested = "yes"', () => ((run as { cancelRequested: unknown }).cancelRequested = 'yes')],
      ['cancelRequested = 0', () => ((run as { cancelRequested: unknown }).cancelRequested = 0)],
      ['childExitObservedAt = 12', () => ((run as { childExitObservedAt: unknown }).childExitObservedAt = 12)],
      ['terminalTrigger = inactivity_watchdog', () => (run.terminalTrigger = 'inactivity_watchdog')],
      ['terminalTrigger = 3', () => ((run as { terminalTrigger: unknown }).terminalTrigger = 3)],
      ['cancelOrigin = project_cleanup', () => (run.cancelOrigin = 'project_cleanup')],
      [
        'signal = a throwing toString (the core stores null, FIN-2; the write does not throw)',
        () => {
          expect(
            () =>
              ((run as { signal: unknown }).signal = {
                toString() {
                  throw new Error('no')
                },
              }),
          ).not.toThrow()
          expect(coreFields(run).signal).toBeNull()
        },
      ],
      ['status = running before finish', () => (run.status = 'running')],
      ['finish', () => svc.finish(run, 'succeeded', 0, null)],
      ['a second finish (no-op)', () => svc.finish(run, 'failed', 1, 'SIGKILL')],
      ['emit after finish', () => svc.emit(run, 'late', {})],
      ['status reset for a retry', () => (run.status = 'queued')],
      ['finish with raw values', () => svc.finish(run, 'failed', 'one' as unknown as number, 15 as unknown as string)],
    ]
    for (const [name, step] of steps) {
      step()
      expect(mirrorDrift(run), name).toEqual([])
    }
    expect(coreFields(run)).toMatchObject({
      status: 'failed',
      exitCode: null,
      signal: '15',
      nextEventId: run.nextEventId,
    })
  })

  it('fail, drop, wait', async () => {
    const svc = makeService()
    const failed = svc.create()
    svc.fail(failed, 'CODE', 'message')
    expect(mirrorDrift(failed)).toEqual([])
    const dropped = svc.create()
    const waited = svc.wait(dropped)
    svc.drop(dropped)
    expect(mirrorDrift(dropped)).toEqual([])
    await waited
    expect(coreFields(dropped)).toMatchObject({ status: 'canceled' })
  })

  it('cancel without a child, with a child, with an ACP session; shutdownActive', async () => {
    const svc = makeService({ shutdownGraceMs: 50 })
    const bare = svc.create()
    await svc.cancel(bare)
    expect(mirrorDrift(bare)).toEqual([])

    const withChild = svc.create()
    withChild.child = new FakeChild({ closeOn: 'SIGTERM' }) as never
    const canceled = svc.cancel(withChild)
    expect(mirrorDrift(withChild)).toEqual([])
    await canceled
    expect(mirrorDrift(withChild)).toEqual([])
    expect(coreFields(withChild)).toMatchObject({ status: 'canceled', cancelRequested: true })

    const acp = svc.create()
    acp.child = new FakeChild({ closeOn: 'SIGTERM' }) as never
    acp.acpSession = { abort() {} }
    const a = svc.create()
    a.child = new FakeChild({ closeOn: 'SIGTERM' }) as never
    const shut = svc.shutdownActive()
    expect(mirrorDrift(acp)).toEqual([])
    expect(mirrorDrift(a)).toEqual([])
    await shut
    for (const run of [acp, a]) expect(mirrorDrift(run)).toEqual([])
  })

  it('hydrated runs (LC-2): the mirror starts from what the core hydrated', () => {
    const dir = tmpDir()
    const first = makeService({ runsLogDir: dir })
    const done = first.create({ projectId: 'p' })
    first.emit(done, 'agent', { a: 1 })
    first.emit(done, 'error', { error: { message: 'm', code: 'c' } })
    first.finish(done, 'failed', 2, 'SIGTERM')
    // Runs on disk list by createdAt, then by id: a later millisecond keeps creation order.
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(done.createdAt + 1)
    const active = first.create({ projectId: 'p', conversationId: 'c' })
    vi.useRealTimers()
    first.emit(active, 'start', {})
    // Values the core stores differently from the host's: the state file holds the core's.
    ;(active as { updatedAt: unknown }).updatedAt = 'later'
    active.status = 'running'
    first.persistState(active)

    const second = makeService({ runsLogDir: dir })
    expect(second.list()).toEqual([])
    const hydrated = second.list({ projectId: 'p' })
    expect(hydrated.map((r) => r.id)).toEqual([done.id, active.id])
    for (const run of hydrated) expect(mirrorDrift(run)).toEqual([])
    expect(hydrated.map((r) => [r.status, r.terminalTrigger])).toEqual([
      ['failed', null],
      ['failed', 'daemon_restart'],
    ])
  })

  it('prepareRestart (LC-4): the mirror follows the reset and the next verdict', () => {
    const svc = makeService()
    const run = svc.create()
    svc.fail(run, 'E', 'm')
    expect(svc.prepareRestart(run)).toBe(run)
    expect(mirrorDrift(run)).toEqual([])
    svc.finish(run, 'succeeded', 0, null)
    expect(mirrorDrift(run)).toEqual([])
  })
})

describe('the after-each check (helpers/mirror-check.ts)', () => {
  const kept: object[] = []
  // `fails`: this test passes only because the setup file's after-each check fails it.
  it.fails('fails a test that leaves a run whose mirror disagrees with the core', () => {
    const svc = makeService()
    const run = svc.create()
    const s = handle(run)
    native.runSetText(s.ctx.svc, s.slot, code('status'), 'running')
    expect(run.status).toBe('queued')
    kept.push(run)
  })

  it('reports a drifted run once: the tests after it are not failed by it', () => {
    expect(kept).toHaveLength(1)
    expect(mirrorDrift(kept[0])).toEqual(['status'])
  })
})
