// SPEC HF-17..HF-21, STR-9, STR-10: what a verdict carries and records (the 'end' data's context,
// unfinished work against the run's own evidence, the terminal lifecycle record and its delivery
// checkpoints), what a restart resets of it, and how many live subscribers a run keeps.
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  ends,
  FakeChild,
  fakeClient,
  fakeReq,
  fakeRes,
  makeRuns,
  readStateFile,
  runningWithChild,
  useTempDirs,
} from './helpers'
import { rendersQuestionForm } from '../lib/completeness.js'

// lib/run.js through Node's own require: the module instance index.js uses.
const { ChatRun } = createRequire(import.meta.url)('../lib/run.js') as {
  ChatRun: { stateOf(run: unknown): { subscribers: Set<unknown> | null } | undefined }
}

const tempDir = useTempDirs('host-verdict-')
let tmp: string
beforeEach(() => {
  tmp = tempDir()
})
afterEach(() => {
  vi.useRealTimers()
  delete process.env.OD_CHAT_RUN_MAX_STREAM_CLIENTS
})

const logged = (extra: Record<string, unknown> = {}) => makeRuns({ runsLogDir: tmp, ...extra }).runs
const stateOf = (id: string) => readStateFile(tmp, id)
const lastEnd = (run: any) => run.events.at(-1)

const FORM = [
  'Before we start:',
  '<question-form id="brief">',
  '{"questions":[{"id":"name"}]}',
  '</question-form>',
].join('\n')
const OPEN_PLAN = [
  { content: 'ask', status: 'in_progress' },
  { content: 'build', status: 'pending' },
]

describe('HF-17: the verdict context', () => {
  it("the 'end' data carries the failure action, retryability, strategy task and syntax evidence the run holds", () => {
    const runs = logged()
    const run = runs.create({ projectId: 'p' })
    const repair = { attempt: 1, maxAttempts: 3 }
    const validation = { status: 'repairable' }
    Object.assign(run, { deliverableSyntaxRepair: repair, deliverableSyntaxValidation: validation })
    runs.persistState(run)
    expect(stateOf(run.id)).toMatchObject({ deliverableSyntaxRepair: repair, deliverableSyntaxValidation: validation })
    expect(runs.statusBody(run)).toMatchObject({
      deliverableSyntaxRepair: repair,
      deliverableSyntaxValidation: validation,
    })
    Object.assign(run, { failureAction: 'none', retryable: false })
    runs.finish(run, 'failed', 1, null)
    expect(lastEnd(run)).toMatchObject({
      event: 'end',
      data: { status: 'failed', failureAction: 'none', retryable: false, deliverableSyntaxRepair: repair },
    })
    // Kept across attempts: a syntax repair spans several.
    runs.prepareRestart(run)
    expect(run.deliverableSyntaxRepair).toBe(repair)
    expect(stateOf(run.id).deliverableSyntaxValidation).toEqual(validation)
  })

  it("beforeFinish's strategy task reaches the 'end' data; unset fields stay out of it", async () => {
    const runs = makeRuns({
      beforeFinish: (run: any) => {
        run.strategyTask = { outcome: 'canceled', terminal: true }
      },
    }).runs
    const run = runs.create({})
    run.status = 'running'
    await runs.shutdownActive({ graceMs: 10 })
    expect(lastEnd(run).data).toMatchObject({
      status: 'canceled',
      strategyTask: { outcome: 'canceled', terminal: true },
    })
    const plain = makeRuns().runs
    const other = plain.create({})
    plain.finish(other, 'succeeded', 0, null)
    for (const key of ['failureAction', 'retryable', 'strategyTask', 'deliverableSyntaxRepair']) {
      expect(lastEnd(other).data).not.toHaveProperty(key)
    }
  })
})

describe('HF-18: evidence that outranks an open plan', () => {
  const verdict = (fields: Record<string, unknown>, status = 'succeeded') => {
    const { runs } = makeRuns()
    const run = runs.create({})
    Object.assign(run, { lastTodoSnapshot: OPEN_PLAN }, fields)
    runs.finish(run, status, status === 'succeeded' ? 0 : 1, null)
    return run.endedWithUnfinishedWork
  }

  it('a completed strategy task, a done conclusion or a rendered question form clears an open plan', () => {
    expect(verdict({})).toBe(true)
    expect(verdict({ strategyTask: { terminal: true, outcome: 'completed' } })).toBe(false)
    expect(verdict({ strategyTask: { terminal: true, outcome: 'blocked' } }, 'failed')).toBe(true)
    expect(verdict({ strategyTask: { terminal: false, outcome: 'completed' } })).toBe(true)
    expect(verdict({ authenticatedDoneConclusion: true })).toBe(false)
    expect(verdict({ authenticatedDoneConclusion: 'yes' })).toBe(true)
    expect(verdict({ askUserScanText: FORM })).toBe(false)
    expect(verdict({ askUserScanText: FORM.toUpperCase().replace('"QUESTIONS"', '"questions"') })).toBe(false)
    expect(verdict({ askUserScanText: '```json\n' + FORM + '\n```' })).toBe(false)
  })

  it('a tag mentioned (or left open) before the form does not hide it; unclosed tags are read in linear time', () => {
    const form = '<question-form id="a">\n{"questions":[{"id":"x"}]}\n</question-form>'
    expect(rendersQuestionForm(`I will use a <question-form> block:\n${form}`)).toBe(true)
    expect(
      rendersQuestionForm('<question-form> (draft)\n<ask-question>{"questions":[{"id":"x"}]}</ask-question>'),
    ).toBe(true)
    expect(rendersQuestionForm('<question-form>{"questions":[{"id":1}]}</ask-question>')).toBe(false)
    // 300 kB of unclosed tags: a quadratic scan takes seconds here, a linear one milliseconds. The
    // bound is loose on purpose (a slow machine); the point is the shape, not a timing target.
    const started = performance.now()
    expect(verdict({ askUserScanText: 'Use <question-form '.repeat(16_000) })).toBe(true)
    expect(performance.now() - started).toBeLessThan(1500)
  })

  it('a form only mentioned, or without questions, is no question; failed and canceled verdicts are not rescued', () => {
    expect(verdict({ askUserScanText: 'How to write a <question-form> tag.' })).toBe(true)
    expect(verdict({ askUserScanText: '<question-form>{"questions":[]}</question-form>' })).toBe(true)
    expect(verdict({ askUserScanText: '<question-form>not json</question-form>' })).toBe(true)
    expect(verdict({ askUserScanText: '<question-form>{"questions":[{"id":1}]}' })).toBe(true)
    expect(verdict({ askUserScanText: FORM }, 'canceled')).toBe(true)
    expect(verdict({ authenticatedDoneConclusion: true }, 'failed')).toBe(true)
    // A cut-off turn stays unfinished whatever the evidence.
    expect(verdict({ truncatedMidTurn: true, authenticatedDoneConclusion: true, askUserScanText: FORM })).toBe(true)
    expect(verdict({ truncatedMidTurn: true, strategyTask: { terminal: true, outcome: 'completed' } })).toBe(true)
  })
})

describe('HF-19: the next attempt starts its analytics marks over', () => {
  it("prepareRestart keeps the logical start and the other keys, drops the attempt's marks, stamps attemptStartedAt", () => {
    vi.useFakeTimers()
    vi.setSystemTime(new Date('2026-08-20T00:00:00.000Z'))
    const { runs } = makeRuns()
    const run = runs.create({})
    const t0 = Date.now()
    run.analyticsTelemetry = {
      startRequestedAt: t0,
      processSpawnedAt: t0 + 100,
      firstModelEventAt: t0 + 400,
      firstModelEventType: 'text_delta',
      attemptIndex: 0,
    }
    runs.finish(run, 'failed', 1, null)
    vi.advanceTimersByTime(600_000)
    runs.prepareRestart(run)
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: t0, attemptIndex: 0, attemptStartedAt: t0 + 600_000 })
    // An object whose reading throws is kept, and the restart completes.
    const hostile = runs.create({})
    runs.finish(hostile, 'failed', 1, null)
    const telemetry = {
      startRequestedAt: 1,
      get firstOutputAt() {
        throw new Error('getter')
      },
    }
    hostile.analyticsTelemetry = telemetry
    expect(runs.prepareRestart(hostile)).toBe(hostile)
    expect(hostile.status).toBe('queued')
    expect(hostile.analyticsTelemetry).toBe(telemetry)
    // A run without the object gets none.
    const bare = runs.create({})
    runs.finish(bare, 'failed', 1, null)
    runs.prepareRestart(bare)
    expect(bare).not.toHaveProperty('analyticsTelemetry')
  })
})

describe('HF-20: the terminal lifecycle record', () => {
  it('a verdict makes the record, in the state file it writes and in the status body', () => {
    const runs = logged()
    const run = runs.create({ agentId: 'amr' })
    Object.assign(run, { retryAttemptCount: 1, manualResumeAttemptCount: 1, terminalTrigger: 'inactivity_watchdog' })
    run.runtimeGenerationId = '0F2D4D9E-F034-4ED5-8330-314BD1D525CC '
    runs.finish(run, 'failed', 130, 'SIGTERM')
    const expected = {
      version: 1,
      runAttempt: 2,
      runtimeGenerationId: '0f2d4d9e-f034-4ed5-8330-314bd1d525cc',
      terminationOrigin: 'watchdog_cleanup',
      terminalIntegrity: 'canonical',
      terminalPersistence: { status: 'acknowledged', errorType: null },
      posthogDelivery: { status: 'unknown', acknowledgement: 'unknown', attemptCount: 0, errorType: null },
      unfinishedState: 'unknown',
      duplicateTerminalCount: 0,
      lateTerminalCount: 0,
    }
    expect(stateOf(run.id).terminalLifecycle).toEqual(expected)
    expect(runs.statusBody(run).terminalLifecycle).toEqual(expected)
    expect(Object.keys(runs.statusBody(run)).at(-1)).toBe('terminalLifecycle')
  })

  it('the origin follows the cancel origin; without runsLogDir the persistence is unknown', async () => {
    const { runs } = makeRuns()
    const run = runs.create({})
    await runs.cancel(run, 'user_stop')
    expect(run.terminalLifecycle).toMatchObject({
      terminationOrigin: 'user_cancel',
      runtimeGenerationId: null,
      terminalPersistence: { status: 'unknown', errorType: null },
    })
  })

  it('a state file that cannot be written marks the record failed with the class of the failure', () => {
    const file = path.join(tmp, 'not-a-dir')
    fs.writeFileSync(file, 'x')
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    try {
      const runs = makeRuns({ runsLogDir: file }).runs
      const run = runs.create({})
      runs.finish(run, 'failed', 1, null)
      expect(run.terminalLifecycle.terminalPersistence.status).toBe('failed')
      expect(typeof run.terminalLifecycle.terminalPersistence.errorType).toBe('string')
      expect(run.terminalLifecycle.unfinishedState).toBe('terminated_persistence_missing')
    } finally {
      warn.mockRestore()
    }
  })

  it("a verdict write that fails and an 'end' write that succeeds leave an acknowledged record, on disk too", () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    try {
      let dir = ''
      const seen: unknown[] = []
      const runs = logged({
        onTerminal: (run: any) => {
          seen.push(structuredClone(run.terminalLifecycle.terminalPersistence))
          // The disk comes back before the 'end' is written.
          fs.rmSync(dir)
          fs.mkdirSync(dir)
        },
      })
      const run = runs.create({})
      dir = path.join(tmp, run.id)
      fs.rmSync(dir, { recursive: true })
      fs.writeFileSync(dir, 'not a directory')
      runs.finish(run, 'failed', 1, null)
      expect(seen).toEqual([{ status: 'failed', errorType: expect.any(String) }])
      expect(run.terminalLifecycle.terminalPersistence).toEqual({ status: 'acknowledged', errorType: null })
      expect(stateOf(run.id).terminalLifecycle.terminalPersistence).toEqual({ status: 'acknowledged', errorType: null })
    } finally {
      warn.mockRestore()
    }
  })

  it("a cancel's own closing verdict is no claim when the child's close handler gave the verdict", async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    child.on('close', (code: any, signal: any) => runs.finish(run, 'canceled', code, signal))
    await runs.cancel(run, 'user_stop')
    expect(run.terminalLifecycle).toMatchObject({
      terminalIntegrity: 'canonical',
      duplicateTerminalCount: 0,
      terminationOrigin: 'user_cancel',
    })
  })

  it("a claim from a client's end() after the 'end' record reaches the state file", () => {
    let run: any
    const harness = makeRuns({ runsLogDir: tmp }, (i) =>
      fakeClient({ name: `c${i}`, onEnd: () => harness.runs.finish(run, 'succeeded', 0, null) }),
    )
    const runs = harness.runs
    run = runs.create({})
    runs.stream(run, fakeReq(), fakeRes())
    runs.finish(run, 'failed', 1, null)
    expect(run.terminalLifecycle.lateTerminalCount).toBe(1)
    expect(stateOf(run.id).terminalLifecycle.lateTerminalCount).toBe(1)
  })

  it('later terminal claims are counted, persisted, and leave the verdict alone', () => {
    const runs = logged()
    const run = runs.create({})
    runs.finish(run, 'failed', 1, null)
    runs.finish(run, 'failed', 1, null)
    expect(runs.statusBody(run)).toMatchObject({
      status: 'failed',
      exitCode: 1,
      terminalLifecycle: { terminalIntegrity: 'duplicate', duplicateTerminalCount: 1, lateTerminalCount: 0 },
    })
    runs.finish(run, 'succeeded', 0, null)
    runs.finish(run, 'failed', 1, null)
    expect(run.status).toBe('failed')
    expect(stateOf(run.id).terminalLifecycle).toMatchObject({
      terminalIntegrity: 'late',
      duplicateTerminalCount: 2,
      lateTerminalCount: 1,
    })
    // A non-terminal claim and a dropped run's finish count nothing.
    runs.finish(run, 'running', 0, null)
    expect(run.terminalLifecycle.duplicateTerminalCount).toBe(2)
    expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1)
  })

  it('beginAnalyticsDelivery and finalizeAnalyticsDelivery record the delivery and persist it', () => {
    const runs = logged()
    const run = runs.create({})
    runs.beginAnalyticsDelivery(run) // no verdict yet: nothing
    expect(run.terminalLifecycle).toBeUndefined()
    runs.finish(run, 'failed', 1, null)
    runs.beginAnalyticsDelivery(run)
    expect(stateOf(run.id).terminalLifecycle).toMatchObject({
      posthogDelivery: { status: 'in_flight', acknowledgement: 'none', attemptCount: 1, errorType: null },
      unfinishedState: 'recovery_pending',
    })
    runs.finalizeAnalyticsDelivery(run, { status: 'failed', acknowledgement: 'none', errorType: 'enqueue_failed' })
    expect(stateOf(run.id).terminalLifecycle).toMatchObject({
      posthogDelivery: { status: 'failed', acknowledgement: 'none', attemptCount: 1, errorType: 'enqueue_failed' },
      unfinishedState: 'terminal_persisted_posthog_failed',
    })
    runs.finalizeAnalyticsDelivery(run, 'queued' as any) // not an object: nothing
    expect(run.terminalLifecycle.posthogDelivery.status).toBe('failed')
    expect(() => runs.beginAnalyticsDelivery(null)).not.toThrow()
    expect(() => runs.finalizeAnalyticsDelivery({ id: run.id } as any, {})).toThrow(TypeError)
  })

  it('prepareRestart forgets the record and the generation, and counts the attempt’s retries', () => {
    const runs = logged()
    const run = runs.create({})
    run.runtimeGenerationId = '0f2d4d9e-f034-4ed5-8330-314bd1d525cc'
    run.retryAttemptCount = 1
    runs.finish(run, 'failed', 1, null)
    expect(runs.statusBody(run).terminalLifecycle.runAttempt).toBe(1)
    const again = logged().get(run.id)
    expect(again.terminalLifecycle).toMatchObject({ runAttempt: 1 })
    runs.prepareRestart(run)
    expect(run.runtimeGenerationId).toBeNull()
    expect(runs.statusBody(run)).not.toHaveProperty('terminalLifecycle')
    const state = stateOf(run.id)
    expect(state).toMatchObject({ status: 'queued', cumulativeRetryAttemptCount: 1, manualResumeAttemptCount: 1 })
    expect(state).not.toHaveProperty('terminalLifecycle')
    expect(state).not.toHaveProperty('runtimeGenerationId')
    runs.finish(run, 'succeeded', 0, null)
    expect(run.terminalLifecycle).toMatchObject({
      runAttempt: 2,
      terminalIntegrity: 'canonical',
      runtimeGenerationId: null,
    })
  })
})

describe('HF-21: the telemetry delivery record', () => {
  it('begin, two attempts and a failed result leave a retryable record in the state file', () => {
    const runs = logged()
    const run = runs.create({})
    runs.finish(run, 'failed', 1, null)
    runs.beginTelemetryDelivery(run)
    const key = `od-run-telemetry-v1-${createHash('sha256').update(`open-design/run-telemetry/v1\n${run.id}`).digest('hex')}`
    expect(stateOf(run.id).telemetryDelivery).toMatchObject({
      version: 1,
      idempotencyKey: key,
      status: 'in_flight',
      attemptCount: 0,
      crashWindow: true,
    })
    runs.recordTelemetryDeliveryAttempt(run)
    runs.recordTelemetryDeliveryAttempt(run)
    runs.finalizeTelemetryDelivery(run, {
      langfuse_expected: true,
      langfuse_delivery_status: 'failed',
      langfuse_attempt_count: 1,
    })
    const state = stateOf(run.id)
    expect(state.telemetryDelivery).toEqual({
      version: 1,
      idempotencyKey: key,
      status: 'failed',
      attemptCount: 2,
      crashWindow: false,
      startedAt: expect.any(Number),
      dropReason: 'network_error',
    })
    expect(state).not.toHaveProperty('langfuseCompletedAt')
  })

  it('an accepted or unexpected delivery is settled, sets langfuseCompletedAt and is never changed again', () => {
    const runs = logged()
    const run = runs.create({})
    run.telemetryDelivery = { idempotencyKey: 'kept-key', attemptCount: 3, startedAt: 5 }
    runs.finalizeTelemetryDelivery(run, { langfuse_expected: true, langfuse_delivery_status: 'accepted' })
    const settled = run.telemetryDelivery
    expect(settled).toMatchObject({ idempotencyKey: 'kept-key', status: 'accepted', attemptCount: 3, startedAt: 5 })
    expect(settled).not.toHaveProperty('dropReason')
    expect(run.langfuseCompletedAt).toBe(settled.finalizedAt)
    runs.beginTelemetryDelivery(run)
    runs.recordTelemetryDeliveryAttempt(run)
    runs.finalizeTelemetryDelivery(run, { langfuse_delivery_status: 'failed' })
    expect(run.telemetryDelivery).toBe(settled)
    expect(logged().get(run.id).telemetryDelivery).toEqual(settled)
    const other = runs.create({})
    runs.finalizeTelemetryDelivery(other, { langfuse_expected: false })
    expect(other.telemetryDelivery).toMatchObject({ status: 'not_expected', attemptCount: 0 })
    runs.finalizeTelemetryDelivery(runs.create({}), null as any)
    expect(() => runs.beginTelemetryDelivery(undefined)).not.toThrow()
    expect(() => runs.recordTelemetryDeliveryAttempt({ id: other.id } as any)).toThrow(TypeError)
  })
})

describe('STR-9, STR-10: live subscribers', () => {
  it('a run keeps its newest 8 subscribers; the oldest gets end()', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create({})
    const host = { send: vi.fn(() => true), end: vi.fn(), cleanup: vi.fn() }
    run.clients.add(host)
    for (let i = 0; i < 9; i++) runs.stream(run, fakeReq(), fakeRes())
    expect(ends(sse[0])).toBe(1)
    for (const client of sse.slice(1)) expect(ends(client)).toBe(0)
    expect(run.clients.has(sse[0])).toBe(false)
    // The host's own client is neither counted nor ended.
    expect(run.clients.size).toBe(9)
    expect(host.end).not.toHaveBeenCalled()
  })

  it('OD_CHAT_RUN_MAX_STREAM_CLIENTS sets the cap; a closed subscriber frees its place; a bad value gives 8', () => {
    process.env.OD_CHAT_RUN_MAX_STREAM_CLIENTS = '2'
    const { runs, sse } = makeRuns()
    const run = runs.create({})
    const first = fakeRes()
    runs.stream(run, fakeReq(), first)
    first.close()
    runs.stream(run, fakeReq(), fakeRes())
    runs.stream(run, fakeReq(), fakeRes())
    expect(sse.map(ends)).toEqual([0, 0, 0])
    runs.stream(run, fakeReq(), fakeRes())
    expect(sse.map(ends)).toEqual([0, 1, 0, 0])
    process.env.OD_CHAT_RUN_MAX_STREAM_CLIENTS = 'abc'
    const other = runs.create({})
    for (let i = 0; i < 8; i++) runs.stream(other, fakeReq(), fakeRes())
    expect(other.clients.size).toBe(8)
    expect(sse.slice(4).map(ends)).toEqual([0, 0, 0, 0, 0, 0, 0, 0])
  })

  it('a client whose end() subscribes again during a drop is not kept; a client is ended once', () => {
    let run: any
    let again = true
    const harness = makeRuns({}, (i) =>
      fakeClient({
        name: `c${i}`,
        onEnd: () => {
          if (again) harness.runs.stream(run, fakeReq(), fakeRes())
          again = false
        },
      }),
    )
    run = harness.runs.create({})
    harness.runs.stream(run, fakeReq(), fakeRes())
    harness.runs.drop(run)
    expect(run.clients.size).toBe(0)
    expect(ChatRun.stateOf(run)?.subscribers).toBeNull()
    // Pushed out from inside its own send (a stream() there, cap 1), then refusing the record.
    process.env.OD_CHAT_RUN_MAX_STREAM_CLIENTS = '1'
    const second = makeRuns()
    let other: any = null
    other = second.runs.create({})
    second.runs.stream(other, fakeReq(), fakeRes())
    second.sse[0].send.mockImplementationOnce(() => {
      second.runs.stream(other, fakeReq(), fakeRes())
      return false
    })
    second.runs.emit(other, 'agent', {})
    expect(second.sse.map(ends)).toEqual([1, 0])
  })

  it('a subscriber whose send returns false leaves at the next emit and gets end(); a throwing one stays', () => {
    const { runs, sse } = makeRuns()
    const run = runs.create({})
    for (let i = 0; i < 3; i++) runs.stream(run, fakeReq(), fakeRes())
    sse[0].send.mockImplementation(() => false)
    sse[1].send.mockImplementation(() => {
      throw new Error('boom')
    })
    runs.emit(run, 'agent', { n: 1 })
    expect(run.clients.has(sse[0])).toBe(false)
    expect(ends(sse[0])).toBe(1)
    expect(run.clients.has(sse[1])).toBe(true)
    expect(sse[2].send).toHaveBeenCalledWith('agent', { n: 1 }, 1)
    runs.emit(run, 'agent', { n: 2 })
    expect(sse[0].send).toHaveBeenCalledTimes(1)
  })
})
