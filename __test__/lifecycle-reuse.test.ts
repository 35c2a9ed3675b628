// SPEC §21 LC-3 (create keeps requestFingerprint and workspaceScope; createOrReuse) and LC-4
// (prepareRestart: a terminal run reopened for a retry, same object and id).
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { FakeChild, makeRuns, readLines, readStateFile, useTempDirs, waitFor } from './helpers'
import { getChatRunServiceStats } from '../index.js'

const tempDir = useTempDirs('lifecycle-reuse-')
let tmp: string
beforeEach(() => {
  tmp = tempDir()
})
afterEach(() => {
  vi.useRealTimers()
})

const stateOf = (id: string) => readStateFile(tmp, id)

describe('LC-3: createOrReuse', () => {
  it("'created', then 'reused' for the same clientRequestId, 'conflict' when both fingerprints are set and differ", () => {
    const { runs } = makeRuns()
    const first = runs.createOrReuse({ projectId: 'p', clientRequestId: 'req', requestFingerprint: 'fp1' })
    expect(first.kind).toBe('created')
    expect(first.run).toMatchObject({ clientRequestId: 'req', requestFingerprint: 'fp1', status: 'queued' })
    expect(runs.list()).toEqual([first.run])
    expect(runs.createOrReuse({ clientRequestId: 'req', requestFingerprint: 'fp1' })).toEqual({
      kind: 'reused',
      run: first.run,
    })
    // A missing or empty fingerprint on either side is no conflict.
    expect(runs.createOrReuse({ clientRequestId: 'req' })).toEqual({ kind: 'reused', run: first.run })
    expect(runs.createOrReuse({ clientRequestId: 'req', requestFingerprint: '' }).kind).toBe('reused')
    expect(runs.createOrReuse({ clientRequestId: 'req', requestFingerprint: 'fp2' })).toEqual({
      kind: 'conflict',
      run: first.run,
    })
    // A terminal run is reused too (the host decides about a retry: LC-4).
    runs.finish(first.run, 'failed', 1, null)
    expect(runs.createOrReuse({ clientRequestId: 'req' })).toEqual({ kind: 'reused', run: first.run })
    // No (or an empty) clientRequestId always creates; other keys create as create() does.
    for (const meta of [{}, { clientRequestId: '' }, { clientRequestId: 5 }, null, undefined]) {
      expect(runs.createOrReuse(meta).kind).toBe('created')
    }
    const fresh = runs.createOrReuse({ clientRequestId: 'other', requestFingerprint: 'x', workspaceScope: { w: 1 } })
    expect(fresh.kind).toBe('created')
    expect(fresh.run.workspaceScope).toEqual({ w: 1 })
    expect(runs.list()).toHaveLength(7)
    // A dropped run is never reused.
    runs.drop(fresh.run)
    expect(runs.createOrReuse({ clientRequestId: 'other' }).kind).toBe('created')
  })

  it('works across a restart: an interrupted durable request is reused (failed/DAEMON_RESTARTED), not started twice', () => {
    const before = makeRuns({ runsLogDir: tmp }).runs
    const original = before.create({ projectId: 'p', clientRequestId: 'req-1', requestFingerprint: 'same' })
    original.status = 'running'
    before.emit(original, 'start', {})
    const done = before.create({ projectId: 'p', clientRequestId: 'req-2', requestFingerprint: 'a' })
    before.finish(done, 'succeeded', 0, null)

    const { runs } = makeRuns({ runsLogDir: tmp })
    const reused = runs.createOrReuse({ projectId: 'p', clientRequestId: 'req-1', requestFingerprint: 'same' })
    expect(reused.kind).toBe('reused')
    expect(reused.run).toMatchObject({
      id: original.id,
      status: 'failed',
      errorCode: 'DAEMON_RESTARTED',
      error: 'Run interrupted because the daemon restarted.',
      requestFingerprint: 'same',
      terminalTrigger: 'daemon_restart',
    })
    expect(reused.run.events.slice(-2).map((e: any) => e.event)).toEqual(['error', 'end'])
    expect(runs.createOrReuse({ clientRequestId: 'req-1', requestFingerprint: 'same' }).run).toBe(reused.run)
    const conflict = runs.createOrReuse({ clientRequestId: 'req-2', requestFingerprint: 'b' })
    expect(conflict).toMatchObject({ kind: 'conflict', run: { id: done.id, status: 'succeeded' } })
    expect(runs.createOrReuse({ clientRequestId: 'req-3' }).kind).toBe('created')
    expect(fs.readdirSync(tmp)).toHaveLength(3)
  })

  it('two runs with the key created in the same millisecond: after a restart the one with the larger id is reused, whatever was loaded first', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      vi.setSystemTime(50_000)
      const before = makeRuns({ runsLogDir: tmp }).runs
      const ids = [0, 1].map(
        () => before.create({ projectId: 'p', clientRequestId: 'req', requestFingerprint: 'f' }).id,
      )
      const [low, high] = [...ids].sort()
      for (const order of [
        [low, high],
        [high, low],
      ]) {
        const { runs } = makeRuns({ runsLogDir: tmp })
        for (const id of order) expect(runs.get(id)).not.toBeNull()
        expect(runs.createOrReuse({ clientRequestId: 'req', requestFingerprint: 'f' })).toMatchObject({
          kind: 'reused',
          run: { id: high },
        })
        expect(runs.list({ projectId: 'p' }).map((r: any) => r.id)).toEqual([low, high])
      }
    } finally {
      vi.useRealTimers()
    }
  })

  it('a fingerprint with a lone surrogate is the same request before and after a restart (the file holds U+FFFD)', () => {
    const before = makeRuns({ runsLogDir: tmp }).runs
    const meta = { projectId: 'p', clientRequestId: 'req-s', requestFingerprint: 'fp\ud800' }
    const first = before.createOrReuse(meta)
    expect(before.createOrReuse(meta)).toEqual({ kind: 'reused', run: first.run })
    const { runs } = makeRuns({ runsLogDir: tmp })
    const again = runs.createOrReuse(meta)
    expect(again.kind).toBe('reused')
    expect(again.run.id).toBe(first.run.id)
    expect(runs.createOrReuse({ ...meta, requestFingerprint: 'fp\ufffd' }).kind).toBe('reused')
    expect(runs.createOrReuse({ ...meta, requestFingerprint: 'other' }).kind).toBe('conflict')
  })

  it('when the newest run with the key no longer loads (its directory removed, its state file damaged), the next newest is found', () => {
    const hints = { externalPluginId: 'open-design', pluginWorkflowId: 'wf-k' }
    const before = makeRuns({ runsLogDir: tmp }).runs
    const ids = [1, 2, 3].map(() => {
      const run = before.create({ projectId: 'p', clientRequestId: 'k', analyticsHints: hints })
      before.finish(run, 'succeeded', 0, null)
      return run.id as string
    })
    const [oldest, damaged, removed] = ids
    // A service that has read runsLogDir, then the host's changes.
    const { runs } = makeRuns({ runsLogDir: tmp })
    expect(runs.list({ projectId: 'nothing' })).toEqual([])
    fs.rmSync(path.join(tmp, removed), { recursive: true })
    fs.writeFileSync(path.join(tmp, damaged, 'state.json'), '{ not json')
    expect(runs.findByPluginWorkflowId('wf-k')?.id).toBe(oldest)
    const again = runs.createOrReuse({ projectId: 'p', clientRequestId: 'k' })
    expect(again.kind).toBe('reused')
    expect(again.run.id).toBe(oldest)
    // A service started after the change agrees.
    const fresh = makeRuns({ runsLogDir: tmp }).runs
    expect(fresh.createOrReuse({ clientRequestId: 'k' }).run.id).toBe(oldest)
  })

  it('the newest run with the key wins even when only an older one is registered again (both evicted, the older loaded back)', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp, ttlMs: 1 })
    const older = runs.create({ projectId: 'p', clientRequestId: 'r1' })
    runs.finish(older, 'succeeded', 0, null)
    await new Promise((resolve) => setTimeout(resolve, 5))
    const newer = runs.create({ projectId: 'p', clientRequestId: 'r1' })
    runs.finish(newer, 'succeeded', 0, null)
    await waitFor(() => runs.list().length === 0)
    const olderId = older.id
    const newerId = newer.id
    expect(runs.get(olderId)).not.toBeNull()
    const found = runs.createOrReuse({ projectId: 'p', clientRequestId: 'r1' })
    expect(found.kind).toBe('reused')
    expect(found.run.id).toBe(newerId)
  })
})

describe('LC-3: createOrReuse when runsLogDir cannot be listed', () => {
  it('throws ERR_CHAT_RUN_UNREADABLE naming the path and the error, rather than starting the request a second time; works once it can be read', () => {
    const root = tempDir()
    const runsLogDir = path.join(root, 'runs')
    // Not a directory (as one without read permission would be for a non-root daemon).
    fs.writeFileSync(runsLogDir, 'x')
    const warnings: string[] = []
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation((message: any) => {
      warnings.push(String(message))
    })
    const { runs } = makeRuns({ runsLogDir })
    let error: any
    try {
      runs.createOrReuse({ projectId: 'p', clientRequestId: 'R' })
    } catch (err) {
      error = err
    }
    expect(error?.code).toBe('ERR_CHAT_RUN_UNREADABLE')
    expect(error.message).toContain(`could not read ${runsLogDir}: `)
    expect(runs.list({ projectId: 'p' })).toEqual([])
    expect(getChatRunServiceStats(runs).hydration.unreadable).toBeGreaterThan(0)
    expect(warnings.some((w) => w.includes(`could not read ${runsLogDir}`))).toBe(true)
    warn.mockRestore()
    fs.rmSync(runsLogDir)
    fs.mkdirSync(runsLogDir)
    const first = runs.createOrReuse({ projectId: 'p', clientRequestId: 'R' })
    expect(first.kind).toBe('created')
    expect(runs.createOrReuse({ projectId: 'p', clientRequestId: 'R' })).toEqual({ kind: 'reused', run: first.run })
  })
})

describe('LC-4: prepareRestart', () => {
  it('null unless the run is terminal; otherwise the same run goes back to queued with the verdict and the child cleared', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(10_000)
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create({ projectId: 'p', clientRequestId: 'brief-1', requestFingerprint: 'same' })
    expect(runs.prepareRestart(run)).toBeNull()
    run.status = 'running'
    const child = new FakeChild()
    child.exitCode = 1
    run.child = child
    run.childPid = 42
    run.acpSession = { abort() {} }
    run.stdinOpen = true
    run.failureCategory = 'billing'
    run.failureDetail = { balance: 0 }
    run.failureAction = 'recharge'
    runs.emit(run, 'error', { error: { code: 'AMR_INSUFFICIENT_BALANCE', message: 'insufficient balance' } })
    run.childExitObservedAt = 10_000
    runs.finish(run, 'failed', 1, null)
    const events = run.events.length
    vi.setSystemTime(22_345)

    expect(runs.prepareRestart(run)).toBe(run)
    expect(runs.get(run.id)).toBe(run)
    expect(run).toMatchObject({
      id: run.id,
      status: 'queued',
      updatedAt: 22_345,
      exitCode: null,
      signal: null,
      error: null,
      errorCode: null,
      failureCategory: null,
      failureDetail: null,
      failureAction: null,
      cancelOrigin: null,
      terminalTrigger: null,
      terminalAt: null,
      child: null,
      acpSession: null,
      childPid: null,
      processGroupId: null,
      childExitObservedAt: null,
      cancelRequested: false,
      stdinOpen: false,
      manualResumeAttemptCount: 1,
      rechargeWaitDurationMs: 12_345,
    })
    expect(runs.statusBody(run)).toMatchObject({ status: 'queued', clientRequestId: 'brief-1', error: null })
    expect(run.events).toHaveLength(events + 1)
    expect(run.events.at(-1)).toEqual({
      id: events + 1,
      event: 'run_resume_attempted',
      data: { runId: run.id, attempt: 1, reason: 'recharge', rechargeWaitDurationMs: 12_345 },
      timestamp: 22_345,
    })
    expect(stateOf(run.id)).toMatchObject({
      status: 'queued',
      updatedAt: 22_345,
      error: null,
      failureAction: null,
      terminalAt: null,
    })
    expect(runs.list({ status: 'active' })).toEqual([run])
    // A second attempt adds up.
    runs.finish(run, 'failed', 1, null)
    vi.setSystemTime(30_000)
    runs.prepareRestart(run)
    expect(run).toMatchObject({ manualResumeAttemptCount: 2, rechargeWaitDurationMs: 12_345 + 7_655 })
  })

  it('a later finish is a new verdict with its own end; the log is appended to again; the pending eviction is void', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'] })
    vi.setSystemTime(1_000)
    const { runs } = makeRuns({ runsLogDir: tmp, ttlMs: 1_000 })
    const run = runs.create({ projectId: 'p' })
    runs.emit(run, 'agent', { n: 1 })
    runs.finish(run, 'failed', 1, null)
    vi.advanceTimersByTime(900)
    runs.prepareRestart(run)
    runs.emit(run, 'agent', { n: 2 })
    vi.advanceTimersByTime(200)
    // The first finish's eviction did not fire on the reopened run.
    expect(runs.list()).toEqual([run])
    const wait = runs.wait(run)
    runs.finish(run, 'succeeded', 0, null)
    await expect(wait).resolves.toMatchObject({
      status: 'succeeded',
      terminalTrigger: null,
      terminalAt: expect.any(Number),
    })
    expect(run.events.filter((e: any) => e.event === 'end').map((e: any) => e.data.status)).toEqual([
      'failed',
      'succeeded',
    ])
    vi.advanceTimersByTime(999)
    expect(runs.list()).toEqual([run])
    vi.advanceTimersByTime(1)
    expect(runs.list()).toEqual([])
    vi.useRealTimers()
    expect(await waitFor(() => readLines(run.eventsLogPath).length === 5)).toBe(true)
    expect(readLines(run.eventsLogPath).map((l) => JSON.parse(l).event)).toEqual([
      'agent',
      'end',
      'run_resume_attempted',
      'agent',
      'end',
    ])
  })

  it('a reopened run whose journal the host removed starts a new one (its lines are not lost)', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create({ projectId: 'p' })
    runs.emit(run, 'agent', 1)
    runs.finish(run, 'failed', 1, null)
    await runs.shutdownActive()
    fs.rmSync(run.eventsLogPath)
    expect(runs.prepareRestart(run)).toBe(run)
    runs.emit(run, 'agent', 2)
    runs.finish(run, 'succeeded', 0, null)
    await runs.shutdownActive()
    const events = readLines(run.eventsLogPath).map((line) => JSON.parse(line).event)
    expect(events).toEqual(['run_resume_attempted', 'agent', 'end'])
  })

  it('works on an evicted run the host kept, and on a run hydrated after a restart; never on a dropped run', async () => {
    const { runs } = makeRuns({ runsLogDir: tmp, ttlMs: 10 })
    const evicted = runs.create({ projectId: 'p' })
    runs.finish(evicted, 'failed', 1, null)
    expect(await waitFor(() => runs.list().length === 0)).toBe(true)
    expect(runs.prepareRestart(evicted)).toBe(evicted)
    expect(runs.list()).toEqual([evicted])
    expect(runs.get(evicted.id)).toBe(evicted)

    const dropped = runs.create()
    runs.drop(dropped)
    expect(runs.prepareRestart(dropped)).toBeNull()
    expect(dropped.status).toBe('canceled')

    // The daemon restarts while the run is queued again: hydrated as interrupted, then retried.
    expect(await waitFor(() => readLines(evicted.eventsLogPath).length === 2)).toBe(true)
    const later = makeRuns({ runsLogDir: tmp }).runs
    const hydrated = later.get(evicted.id)
    expect(hydrated).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED' })
    expect(later.prepareRestart(hydrated)).toBe(hydrated)
    expect(hydrated).toMatchObject({ status: 'queued', errorCode: null, terminalTrigger: null })
    expect(later.list()).toEqual([hydrated])
    later.finish(hydrated, 'succeeded', 0, null)
    expect(hydrated.events.map((e: any) => e.event)).toEqual([
      'end',
      'run_resume_attempted',
      'error',
      'end',
      'run_resume_attempted',
      'end',
    ])
    expect(hydrated.events.map((e: any) => e.id)).toEqual([1, 2, 3, 4, 5, 6])
    expect(() => runs.prepareRestart({})).toThrow(TypeError)
    runs.drop(evicted)
  })

  it("the restart's recovery reason goes with the attempt it ended: a later verdict is not read as the daemon's restart", () => {
    const before = makeRuns({ runsLogDir: tmp }).runs
    const run = before.create({ projectId: 'p', clientRequestId: 'req' })
    run.status = 'running'
    const later = makeRuns({ runsLogDir: tmp }).runs
    const hydrated = later.get(run.id)
    expect(hydrated).toMatchObject({ errorCode: 'DAEMON_RESTARTED', terminalRecoveryReason: 'daemon_restart' })
    expect(stateOf(run.id).terminalRecoveryReason).toBe('daemon_restart')
    expect(later.prepareRestart(hydrated)).toBe(hydrated)
    expect(hydrated.terminalRecoveryReason).toBeNull()
    expect(stateOf(run.id).terminalRecoveryReason).toBeNull()
    later.emit(hydrated, 'error', { error: { code: 'AMR_INSUFFICIENT_BALANCE', message: 'top up' } })
    later.finish(hydrated, 'failed', 1, null)
    expect(stateOf(run.id)).toMatchObject({ errorCode: 'AMR_INSUFFICIENT_BALANCE', terminalRecoveryReason: null })
    const third = makeRuns({ runsLogDir: tmp }).runs.get(run.id)
    expect(third).toMatchObject({
      status: 'failed',
      errorCode: 'AMR_INSUFFICIENT_BALANCE',
      terminalRecoveryReason: null,
    })
  })

  it('the wait added up is never negative, when the clock went back since the verdict', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      vi.setSystemTime(100_000)
      const { runs } = makeRuns({ runsLogDir: tmp })
      const run = runs.create({ projectId: 'p' })
      runs.finish(run, 'failed', 1, null)
      vi.setSystemTime(40_000)
      expect(runs.prepareRestart(run)).toBe(run)
      expect(run).toMatchObject({ manualResumeAttemptCount: 1, rechargeWaitDurationMs: 0 })
      expect(run.events.at(-1).data).toEqual({
        runId: run.id,
        attempt: 1,
        reason: 'recharge',
        rechargeWaitDurationMs: 0,
      })
      expect(stateOf(run.id).rechargeWaitDurationMs).toBe(0)
      runs.finish(run, 'failed', 1, null)
      vi.setSystemTime(45_000)
      runs.prepareRestart(run)
      expect(run).toMatchObject({ manualResumeAttemptCount: 2, rechargeWaitDurationMs: 5_000 })
    } finally {
      vi.useRealTimers()
    }
  })
})

describe('LC-10: reserved resume attempts', () => {
  it('a reservation is on disk before the call returns, survives a restart, and prepareRestart starts that attempt', () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create({ projectId: 'p', conversationId: 'c', assistantMessageId: 'm' })
    runs.finish(run, 'failed', 1, null)
    expect(runs.reserveRestartAttempt(run, 1)).toBe(true)
    expect(run.pendingManualResumeAttemptCount).toBe(1)
    expect(stateOf(run.id)).toMatchObject({ status: 'failed', pendingManualResumeAttemptCount: 1 })
    expect(stateOf(run.id)).not.toHaveProperty('manualResumeAttemptCount')
    // A daemon that died after its claim finds which attempt the claim was for.
    const after = makeRuns({ runsLogDir: tmp }).runs
    const hydrated = after.get(run.id)
    expect(hydrated).toMatchObject({ status: 'failed', pendingManualResumeAttemptCount: 1 })
    // Its resume goes on from there: the reserved attempt starts, the reservation is used up.
    expect(after.prepareRestart(hydrated)).toBe(hydrated)
    expect(hydrated.manualResumeAttemptCount).toBe(1)
    expect(hydrated).not.toHaveProperty('pendingManualResumeAttemptCount')
    expect(hydrated.events.at(-1)).toMatchObject({ event: 'run_resume_attempted', data: { attempt: 1 } })
    expect(stateOf(run.id)).toMatchObject({ status: 'queued', manualResumeAttemptCount: 1 })
    expect(stateOf(run.id)).not.toHaveProperty('pendingManualResumeAttemptCount')
    // The status body does not report the private marker.
    after.finish(hydrated, 'failed', 1, null)
    after.reserveRestartAttempt(hydrated, 2)
    expect(after.statusBody(hydrated)).not.toHaveProperty('pendingManualResumeAttemptCount')
  })

  it('clearRestartAttempt takes back only the attempt the run holds; the file loses the key and keeps every other field', () => {
    const { runs } = makeRuns({ runsLogDir: tmp, durableFields: ['note'] })
    const run = runs.create({ projectId: 'p' })
    run.note = 'kept'
    runs.finish(run, 'failed', 1, null)
    expect(runs.reserveRestartAttempt(run, 4)).toBe(true)
    runs.clearRestartAttempt(run, 3)
    expect(run.pendingManualResumeAttemptCount).toBe(4)
    expect(stateOf(run.id).pendingManualResumeAttemptCount).toBe(4)
    // A later write by any path keeps the reservation while the run holds it.
    runs.persistState(run)
    expect(stateOf(run.id).pendingManualResumeAttemptCount).toBe(4)
    expect(runs.clearRestartAttempt(run, 4)).toBeUndefined()
    expect(run).not.toHaveProperty('pendingManualResumeAttemptCount')
    expect(stateOf(run.id)).not.toHaveProperty('pendingManualResumeAttemptCount')
    expect(stateOf(run.id)).toMatchObject({ note: 'kept', status: 'failed' })
    // Without a reservation, the next attempt is the count's next.
    expect(runs.prepareRestart(run)).toBe(run)
    expect(run.manualResumeAttemptCount).toBe(1)
  })

  it('a stale reservation (not after the attempts already made) is not started: the next attempt is', () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create({})
    runs.finish(run, 'failed', 1, null)
    runs.prepareRestart(run)
    runs.finish(run, 'failed', 1, null)
    runs.prepareRestart(run)
    runs.finish(run, 'failed', 1, null)
    expect(run.manualResumeAttemptCount).toBe(2)
    expect(runs.reserveRestartAttempt(run, 1)).toBe(true)
    runs.prepareRestart(run)
    expect(run.manualResumeAttemptCount).toBe(3)
    expect(run).not.toHaveProperty('pendingManualResumeAttemptCount')
    expect(stateOf(run.id)).not.toHaveProperty('pendingManualResumeAttemptCount')
  })

  it('false for a dropped run and for a write that failed, which leaves the run as it was; true without runsLogDir', () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create({})
    runs.finish(run, 'failed', 1, null)
    expect(runs.reserveRestartAttempt(run, 1)).toBe(true)
    // The run's directory replaced by a file: no state file can be written there.
    fs.rmSync(path.join(tmp, run.id), { recursive: true })
    fs.writeFileSync(path.join(tmp, run.id), 'x')
    expect(runs.reserveRestartAttempt(run, 2)).toBe(false)
    expect(run.pendingManualResumeAttemptCount).toBe(1)
    const fresh = runs.create({})
    runs.finish(fresh, 'failed', 1, null)
    fs.rmSync(path.join(tmp, fresh.id), { recursive: true })
    fs.writeFileSync(path.join(tmp, fresh.id), 'x')
    expect(runs.reserveRestartAttempt(fresh, 1)).toBe(false)
    expect(fresh).not.toHaveProperty('pendingManualResumeAttemptCount')
    // A host value JSON cannot carry as a whole (its toJSON throws on the second call): the text
    // cannot be made, so nothing was written and nothing is reserved.
    const flaky = runs.create({})
    runs.finish(flaky, 'failed', 1, null)
    let calls = 0
    flaky.analyticsTelemetry = {
      toJSON() {
        calls += 1
        if (calls % 2 === 0) throw new Error('flaky')
        return { ok: true }
      },
    }
    expect(runs.reserveRestartAttempt(flaky, 1)).toBe(false)
    expect(flaky).not.toHaveProperty('pendingManualResumeAttemptCount')
    expect(stateOf(flaky.id)).not.toHaveProperty('pendingManualResumeAttemptCount')
    const dropped = runs.create({})
    runs.drop(dropped)
    expect(runs.reserveRestartAttempt(dropped, 1)).toBe(false)
    expect(dropped).not.toHaveProperty('pendingManualResumeAttemptCount')

    const memory = makeRuns().runs
    const inMemory = memory.create({})
    expect(memory.reserveRestartAttempt(inMemory, 1)).toBe(true)
    expect(inMemory.pendingManualResumeAttemptCount).toBe(1)
  })

  it('bad input: an attempt that is not a non-negative integer, a foreign run or a frozen one is a TypeError that says so', () => {
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create({})
    for (const bad of [-1, 1.5, NaN, Infinity, '1', null, undefined, 2 ** 53]) {
      expect(() => runs.reserveRestartAttempt(run, bad as any)).toThrow(
        /^reserveRestartAttempt\(run, executionAttempt\): expected executionAttempt to be a non-negative integer/,
      )
      expect(() => runs.clearRestartAttempt(run, bad as any)).toThrow(
        /^clearRestartAttempt\(run, executionAttempt\): expected executionAttempt to be a non-negative integer/,
      )
    }
    expect(run).not.toHaveProperty('pendingManualResumeAttemptCount')
    const other = makeRuns().runs.create({})
    expect(() => runs.reserveRestartAttempt(other, 1)).toThrow(
      /^reserveRestartAttempt\(run\): expected a run object returned by this service's create\(\)/,
    )
    expect(() => runs.clearRestartAttempt({ id: run.id } as any, 1)).toThrow(TypeError)
    const sealed = runs.create({})
    expect(runs.reserveRestartAttempt(sealed, 1)).toBe(true)
    Object.seal(sealed)
    expect(() => runs.reserveRestartAttempt(sealed, 2)).toThrow(
      /^reserveRestartAttempt\(run, executionAttempt\): expected a run object the service can write/,
    )
    expect(() => runs.clearRestartAttempt(sealed, 1)).toThrow(
      /^clearRestartAttempt\(run, executionAttempt\): expected a run object the service can write/,
    )
    expect(sealed.pendingManualResumeAttemptCount).toBe(1)
    expect(stateOf(sealed.id).pendingManualResumeAttemptCount).toBe(1)
    Object.freeze(run)
    expect(() => runs.reserveRestartAttempt(run, 1)).toThrow(/expected a run object the service can write/)
  })
})
