// SPEC §15 statusBody(run): the keys and their sources (SB-1, with the nine keys LC-5 adds after
// errorCode and the six HF-2 adds), what it never shows (SB-2) and detached use (SB-3). HF-2's
// conditional keys: __test__/host-fields.test.ts.
import { describe, expect, it } from 'vitest'
import { FakeChild, IMPOSSIBLE_PGID, makeRuns, STATUS_BODY_KEYS } from './helpers'

describe('§15 statusBody', () => {
  it('SB-1/LC-5/HF-2: exactly the 37 keys in order, fresh object each call, childExited true with no child', () => {
    const { runs } = makeRuns()
    const run = runs.create({
      projectId: 'p',
      conversationId: 'c',
      assistantMessageId: 'm',
      clientRequestId: 'r',
      agentId: 'ag',
      appliedPluginSnapshotId: 'snap',
      pluginId: 'plug',
    })
    const body = runs.statusBody(run)
    expect(Object.keys(body)).toEqual(STATUS_BODY_KEYS)
    expect(runs.statusBody(run)).not.toBe(body)
    expect(body).toEqual({
      id: run.id,
      projectId: 'p',
      conversationId: 'c',
      assistantMessageId: 'm',
      agentId: 'ag',
      skillId: null,
      designSystemId: null,
      designSystemRequestedId: null,
      designSystemSelectionSource: null,
      designSystemDigest: null,
      appliedPluginSnapshotId: 'snap',
      pluginId: 'plug',
      status: 'queued',
      createdAt: run.createdAt,
      updatedAt: run.createdAt,
      cancelRequested: false,
      childPid: null,
      processGroupId: null,
      childExited: true,
      childExitObservedAt: null,
      exitCode: null,
      signal: null,
      error: null,
      errorCode: null,
      clientRequestId: 'r',
      terminalAt: null,
      cancelOrigin: null,
      terminalTrigger: null,
      failureCategory: null,
      failureDetail: null,
      failureAction: null,
      resumable: false,
      endedWithUnfinishedWork: false,
      eventsLogPath: null,
      workspace: { storage: { kind: 'od-owned', baseDir: null }, provenance: null },
      mediaExecution: { mode: 'enabled' },
      toolBundle: { mcpServers: [] },
    })
  })

  it('SB-1/LC-5: the terminal facts and the host failure fields (null/false defaults, host values as they are)', () => {
    const { runs } = makeRuns()
    const run = runs.create({ clientRequestId: 'req' })
    run.terminalTrigger = 'first_output_deadline'
    runs.finish(run, 'failed', 1, null)
    run.failureCategory = 'process_exit'
    run.failureDetail = { code: 9 }
    run.failureAction = 'retry'
    run.resumable = 0
    run.endedWithUnfinishedWork = 'yes'
    expect(runs.statusBody(run)).toMatchObject({
      clientRequestId: 'req',
      terminalAt: run.events.at(-1).timestamp,
      cancelOrigin: null,
      terminalTrigger: 'first_output_deadline',
      failureCategory: 'process_exit',
      failureDetail: { code: 9 },
      failureAction: 'retry',
      resumable: 0,
      endedWithUnfinishedWork: true,
    })
    run.clientRequestId = undefined
    run.resumable = undefined
    expect(runs.statusBody(run)).toMatchObject({ clientRequestId: null, resumable: false })
  })

  it('SB-1: childPid comes from child.pid when it is a number, else run.childPid ?? null', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    run.childPid = 77
    expect(runs.statusBody(run).childPid).toBe(77)
    const child = new FakeChild()
    child.pid = 4242
    run.child = child
    expect(runs.statusBody(run).childPid).toBe(4242)
    expect(runs.statusBody(run).childExited).toBe(false)
    ;(child as any).pid = '4242'
    expect(runs.statusBody(run).childPid).toBe(77)
    run.childPid = undefined
    expect(runs.statusBody(run).childPid).toBeNull()
    child.exitCode = 1
    expect(runs.statusBody(run).childExited).toBe(true)
  })

  it('SB-1: fields 1-5 verbatim, the others ?? null, cancelRequested coerced to boolean', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    run.agentId = undefined
    run.appliedPluginSnapshotId = undefined
    run.pluginId = undefined
    run.processGroupId = undefined
    run.childExitObservedAt = undefined
    run.errorCode = undefined
    run.cancelRequested = 'yes'
    run.processGroupId = IMPOSSIBLE_PGID
    const body = runs.statusBody(run)
    expect('agentId' in body).toBe(true)
    expect(body.agentId).toBeUndefined()
    expect(body.appliedPluginSnapshotId).toBeNull()
    expect(body.pluginId).toBeNull()
    expect(body.childExitObservedAt).toBeNull()
    expect(body.errorCode).toBeNull()
    expect(body.cancelRequested).toBe(true)
    expect(body.processGroupId).toBe(IMPOSSIBLE_PGID)
    expect(Object.keys(body)).toEqual(STATUS_BODY_KEYS)
  })

  // LC-5 ends SB-2's rule for clientRequestId (now a key of its own); HF-2 reports clientType.
  it('SB-2: no events, child, acpSession, clients, waiters, analyticsTelemetry, full toolBundle or host props', () => {
    const { runs } = makeRuns()
    const run = runs.create({
      clientRequestId: 'req-1',
      toolBundle: { mcpServers: [{ id: 'a', command: 'secret-cmd' }] },
    })
    run.stdinOpen = true
    run.hostNote = 'cli'
    run.userPrompt = 'hello'
    run.analyticsTelemetry = { x: 1 }
    run.acpSession = { abort() {} }
    const body = runs.statusBody(run)
    for (const k of [
      'events',
      'child',
      'acpSession',
      'clients',
      'waiters',
      'analyticsTelemetry',
      'stdinOpen',
      'hostNote',
      'userPrompt',
    ]) {
      expect(k in body).toBe(false)
    }
    expect(JSON.stringify(body)).not.toContain('secret-cmd')
    expect(body.clientRequestId).toBe('req-1')
    expect(Object.keys(body)).toEqual(STATUS_BODY_KEYS)
  })

  it('SB-3: statusBody works detached: list().map(statusBody) equals one-by-one calls', () => {
    const { runs } = makeRuns()
    const a = runs.create({ projectId: 'a', mediaExecution: { mode: 'disabled' } })
    const b = runs.create({ projectId: 'b' })
    runs.finish(b, 'failed', 2, null)
    const { statusBody } = runs
    const mapped = runs.list().map(statusBody)
    expect(mapped).toEqual([runs.statusBody(a), runs.statusBody(b)])
    expect(mapped[1]).toMatchObject({ status: 'failed', exitCode: 2, projectId: 'b' })
  })
})
