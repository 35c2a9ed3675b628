// SPEC §22 (HF-1..HF-16): the fields the daemon keeps on a run and reads back through the service:
// what create() takes from meta, the status body's and the 'end' data's keys, the state file's
// fields, what a hydrated run gets back, and what prepareRestart forgets.
import fs from 'node:fs'
import path from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import { makeRuns, readStateFile, sleep, STATUS_BODY_KEYS, useTempDirs } from './helpers'

const tempDir = useTempDirs('host-fields-')
let tmp: string
beforeEach(() => {
  tmp = tempDir()
})

const logged = (extra: Record<string, unknown> = {}) => makeRuns({ runsLogDir: tmp, ...extra }).runs
const stateOf = (id: string) => readStateFile(tmp, id)
const OD_OWNED = { storage: { kind: 'od-owned', baseDir: null }, provenance: null }

describe('§22 the daemon fields of a run', () => {
  it('HF-1: create() keeps skillId, projectMetadata, browserUse, sessionMode and context when they have their shape, else null', () => {
    const { runs } = makeRuns()
    const context = { workspaceItems: [{ id: 'f', kind: 'file' }] }
    const metadata = { baseDir: '/srv/site' }
    const browser = { requested: true, available: false }
    const valid = runs.create({
      skillId: 'skill-1',
      projectMetadata: metadata,
      browserUse: browser,
      sessionMode: 'plan',
      context,
    })
    expect(valid).toMatchObject({ skillId: 'skill-1', sessionMode: 'plan' })
    expect(valid.projectMetadata).toBe(metadata)
    expect(valid.browserUse).toBe(browser)
    expect(valid.context).toBe(context)
    for (const mode of ['chat', 'design']) expect(runs.create({ sessionMode: mode }).sessionMode).toBe(mode)
    const invalid = runs.create({
      skillId: '',
      projectMetadata: ['x'],
      browserUse: 'yes',
      sessionMode: 'review',
      context: [],
    })
    expect(invalid).toMatchObject({
      skillId: null,
      projectMetadata: null,
      browserUse: null,
      sessionMode: null,
      context: null,
    })
    // None of them is a status body key of its own but skillId and browserUse (HF-2).
    const body = runs.statusBody(valid)
    expect(body).toMatchObject({ skillId: 'skill-1', browserUse: browser })
    expect('sessionMode' in body || 'context' in body || 'projectMetadata' in body).toBe(false)
  })

  it("HF-15: create() puts the daemon's own defaults on every new run (its watchdog clock, retry and session state); a hydrated run gets only what its file holds", () => {
    const runs = logged()
    const folder = { importedFrom: 'folder', baseDir: '/srv/site' }
    const run = runs.create({ projectId: 'p', projectMetadata: folder })
    expect(run).toMatchObject({
      workspace: runs.statusBody(run).workspace,
      lastAgentActivityAt: run.createdAt,
      runtimeFailureObservedBeforeCancellation: false,
      retryOriginFailure: null,
      retryOriginErrorCode: null,
      retryStrategy: null,
      retryMaxAttempts: null,
      nativeSessionContinueAttemptCount: 0,
      nativeSessionContinuePending: null,
      stdinOpen: false,
      stdinBackpressure: false,
      lastTodoSnapshot: null,
      truncatedMidTurn: false,
      endedWithUnfinishedWork: false,
    })
    expect(run.workspace).toMatchObject({ storage: { kind: 'folder-backed', baseDir: '/srv/site' } })
    expect(runs.create().workspace).toEqual(OD_OWNED)
    // The daemon counts and compares them as numbers, without checking they exist.
    run.nativeSessionContinueAttemptCount += 1
    expect(run.nativeSessionContinueAttemptCount).toBe(1)
    expect(Date.now() - run.lastAgentActivityAt).toBeGreaterThanOrEqual(0)
    // HF-11 still reads the signals: a truncated turn makes the verdict's flag true.
    run.truncatedMidTurn = true
    runs.finish(run, 'succeeded', 0, null)
    expect(run.endedWithUnfinishedWork).toBe(true)
    const hydrated = logged().get(run.id)
    expect(hydrated).not.toBeNull()
    expect('lastAgentActivityAt' in hydrated!).toBe(false)
    expect('nativeSessionContinueAttemptCount' in hydrated!).toBe(false)
    expect(hydrated!.endedWithUnfinishedWork).toBe(true)
  })

  it('HF-2: workspace is computed from run.projectMetadata at each call: OD-owned, a folder, an orchestrator scratch checkout', () => {
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'pending' })
    expect(runs.statusBody(run).workspace).toEqual(OD_OWNED)
    run.projectMetadata = { importedFrom: 'folder', baseDir: ' /Users/a/site ' }
    expect(runs.statusBody(run).workspace).toEqual({
      storage: { kind: 'folder-backed', baseDir: '/Users/a/site' },
      provenance: { kind: 'user-local', writeback: 'in-place' },
    })
    run.projectMetadata = {
      baseDir: '/tmp/scratch',
      orchestratorWorkspace: {
        kind: 'scratch',
        sourceLabel: 'checkout:main',
        sourceRef: 'main@abc',
        writeback: 'external',
      },
    }
    expect(runs.statusBody(run).workspace).toEqual({
      storage: { kind: 'folder-backed', baseDir: '/tmp/scratch' },
      provenance: {
        kind: 'orchestrator-scratch',
        writeback: 'external',
        sourceLabel: 'checkout:main',
        sourceRef: 'main@abc',
      },
    })
    // A scratch description that is not exactly one (an unknown key, another kind or writeback,
    // an empty source) does not count; the base directory alone still does.
    for (const orchestratorWorkspace of [
      { kind: 'scratch', extra: 1 },
      { kind: 'clone' },
      { kind: 'scratch', writeback: 'in-place' },
      { kind: 'scratch', sourceRef: ' ' },
      ['scratch'],
    ]) {
      run.projectMetadata = { baseDir: '/srv', orchestratorWorkspace }
      expect(runs.statusBody(run).workspace.provenance).toEqual({ kind: 'user-local', writeback: 'in-place' })
    }
    run.projectMetadata = { baseDir: '   ' }
    expect(runs.statusBody(run).workspace).toEqual(OD_OWNED)
    run.projectMetadata = 'not an object'
    expect(runs.statusBody(run).workspace).toEqual(OD_OWNED)
  })

  it('HF-2: the conditional keys appear, after the fixed ones, only when the run holds a value of their shape', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const shaped: Record<string, unknown> = {
      termination: { outcome: 'verified' },
      artifactCount: 2,
      artifactPaths: ['a.png'],
      removedPaths: ['old.txt'],
      promptCache: { hit: true },
      nativeSessionRecovery: { state: 'captured_not_resumed' },
      browserUse: { available: true },
      clientType: 'desktop',
      externalPluginAnalytics: { externalPluginId: 'x' },
      manualResumeAttemptCount: 0,
      rechargeWaitDurationMs: 0,
      artifactOriginStatus: 'new',
      artifactVersionId: 'v1',
      deliverableValid: false,
      deliverableValidation: 'entry_missing',
      deliverableEntryFile: 'index.html',
      deliverableArtifactKind: 'html',
      artifactDelivery: { status: 'succeeded', files: [] },
    }
    Object.assign(run, shaped)
    const body = runs.statusBody(run)
    expect(Object.keys(body)).toEqual([...STATUS_BODY_KEYS, ...Object.keys(shaped)])
    expect(body).toMatchObject(shaped)
    expect(body.artifactPaths).toBe(shaped.artifactPaths)
    // The wrong shape leaves the key out: no NaN count, no path string, no empty truthy check.
    Object.assign(run, {
      termination: null,
      artifactCount: Number.NaN,
      artifactPaths: 'a.png',
      removedPaths: {},
      promptCache: 0,
      nativeSessionRecovery: '',
      browserUse: null,
      clientType: 5,
      externalPluginAnalytics: false,
      manualResumeAttemptCount: '1',
      rechargeWaitDurationMs: null,
      artifactOriginStatus: {},
      artifactVersionId: 1,
      deliverableValid: 'yes',
      deliverableValidation: null,
      deliverableEntryFile: 0,
      deliverableArtifactKind: [],
      artifactDelivery: null,
    })
    expect(Object.keys(runs.statusBody(run))).toEqual(STATUS_BODY_KEYS)
    // The design-system keys read the host's values as they are.
    run.designSystemId = 'ds'
    run.designSystemDigest = 'sha'
    expect(runs.statusBody(run)).toMatchObject({
      designSystemId: 'ds',
      designSystemDigest: 'sha',
      designSystemRequestedId: null,
    })
  })

  it('HF-3: the end record and what wait() resolves with carry artifactCount and artifactPaths when the run has them, and the failure fields', async () => {
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'p' })
    run.artifactCount = 2
    run.artifactPaths = ['existing.png', 'renders/new.png']
    run.failureCategory = 'agent'
    const waited = runs.wait(run)
    runs.finish(run, 'succeeded', 0, null)
    const end = run.events.at(-1)
    expect(end.event).toBe('end')
    expect(end.data).toEqual({
      code: 0,
      signal: null,
      status: 'succeeded',
      terminalAt: run.terminalAt,
      resumable: false,
      endedWithUnfinishedWork: false,
      artifactCount: 2,
      artifactPaths: ['existing.png', 'renders/new.png'],
      failureCategory: 'agent',
      failureDetail: null,
    })
    await expect(waited).resolves.toMatchObject({
      status: 'succeeded',
      artifactCount: 2,
      artifactPaths: ['existing.png', 'renders/new.png'],
    })
    const plain = runs.create()
    plain.artifactCount = Infinity
    runs.finish(plain, 'failed', 1, null)
    expect('artifactCount' in plain.events.at(-1).data).toBe(false)
  })

  it('HF-4: the state file carries artifactCount (0 when unset), appliedPluginSnapshotId, the scopes, and the daemon fields that have their shape', () => {
    const runs = logged()
    const designSystemScope = { kind: 'workspace-resource', designSystemId: 'user:brand' }
    const run = runs.create({ skillId: 'sk', designSystemScope, appliedPluginSnapshotId: 'snap-1' })
    expect(run.designSystemScope).toBe(designSystemScope)
    expect(stateOf(run.id)).toMatchObject({
      artifactCount: 0,
      skillId: 'sk',
      designSystemScope,
      appliedPluginSnapshotId: 'snap-1',
    })
    const shaped = {
      artifactCount: 3,
      artifactPaths: ['a.png'],
      userPrompt: 'draw',
      model: 'm',
      analyticsRecovery: { insertId: 'i' },
      manualResumeAttemptCount: 1,
      deliverableValid: true,
      langfuseCompletedAt: 5,
    }
    Object.assign(run, shaped, {
      resolvedModelId: 42, // not a string: not written
      promptCache: null, // not truthy: not written
    })
    runs.persistState(run)
    const state = stateOf(run.id)
    expect(state).toMatchObject(shaped)
    expect('resolvedModelId' in state || 'promptCache' in state).toBe(false)
    // Written once each, after LC-1's own fields.
    const keys = Object.keys(state)
    expect(new Set(keys).size).toBe(keys.length)
    expect(keys.indexOf('artifactCount')).toBeGreaterThan(keys.indexOf('endedWithUnfinishedWork'))
  })

  it('HF-5: a hydrated run gets back the daemon fields its state file holds; appliedPluginSnapshotId as it was, the status body reporting only a non-empty string', () => {
    const first = logged()
    const run = first.create({ projectId: 'p', skillId: 'sk', appliedPluginSnapshotId: 'snap' })
    Object.assign(run, { artifactCount: 2, model: 'm', clientType: 'cli' })
    first.finish(run, 'succeeded', 0, null)
    const hydrated = logged().get(run.id)
    expect(hydrated).toMatchObject({ skillId: 'sk', appliedPluginSnapshotId: 'snap', artifactCount: 2, model: 'm' })
    expect(logged().statusBody(logged().get(run.id))).toMatchObject({
      artifactCount: 2,
      clientType: 'cli',
      skillId: 'sk',
    })

    for (const value of [null, '', { invalid: true }]) {
      const file = path.join(tmp, run.id, 'state.json')
      fs.writeFileSync(file, JSON.stringify({ ...stateOf(run.id), appliedPluginSnapshotId: value }))
      const cold = logged()
      const again = cold.get(run.id)
      expect(Object.hasOwn(again, 'appliedPluginSnapshotId')).toBe(true)
      expect(again.appliedPluginSnapshotId).toEqual(value)
      cold.persistState(again)
      expect(Object.hasOwn(stateOf(run.id), 'appliedPluginSnapshotId')).toBe(true)
      expect(stateOf(run.id).appliedPluginSnapshotId).toEqual(value)
      expect(cold.statusBody(again).appliedPluginSnapshotId).toBeNull()
    }
  })

  it('HF-6: prepareRestart forgets what the previous attempt observed, on the run, in the status body and in the file', () => {
    const runs = logged()
    const run = runs.create({ projectId: 'p' })
    Object.assign(run, {
      artifactCount: 2,
      artifactPaths: ['index.html'],
      removedPaths: ['sketch.py'],
      deliverableValid: true,
      deliverableEntryFile: 'index.html',
      endedWithUnfinishedWork: true,
      model: 'kept',
    })
    runs.finish(run, 'failed', 1, null)
    expect(runs.statusBody(run).removedPaths).toEqual(['sketch.py'])
    expect(stateOf(run.id)).toMatchObject({ artifactPaths: ['index.html'], deliverableValid: true })
    expect(runs.prepareRestart(run)).toBe(run)
    for (const name of ['artifactCount', 'artifactPaths', 'removedPaths', 'deliverableValid', 'deliverableEntryFile']) {
      expect(run[name]).toBeUndefined()
      expect(name in runs.statusBody(run)).toBe(false)
    }
    expect(run.endedWithUnfinishedWork).toBe(false)
    const state = stateOf(run.id)
    expect(state).toMatchObject({ status: 'queued', artifactCount: 0, endedWithUnfinishedWork: false, model: 'kept' })
    for (const name of ['artifactPaths', 'removedPaths', 'deliverableValid', 'deliverableEntryFile']) {
      expect(name in state).toBe(false)
    }
    // The second attempt reports only its own observations.
    run.removedPaths = ['second.txt']
    expect(runs.statusBody(run).removedPaths).toEqual(['second.txt'])
    // A run that is not terminal is left as it is.
    const active = runs.create()
    active.removedPaths = ['stale.txt']
    expect(runs.prepareRestart(active)).toBeNull()
    expect(active.removedPaths).toEqual(['stale.txt'])
  })

  it('HF-10: prepareRestart resets the retry state of the previous attempt; resumable is false in the file too', () => {
    const runs = logged()
    const run = runs.create({ projectId: 'p' })
    Object.assign(run, {
      resumable: true,
      runtimeFailureObservedBeforeCancellation: true,
      retryAttemptCount: 2,
      retryFinalResult: 'exhausted',
      retrySuppressedReason: 'budget',
      retryOriginFailure: { code: 'AGENT_EXECUTION_FAILED' },
      retryOriginErrorCode: 'AGENT_EXECUTION_FAILED',
      retryStrategy: 'kept',
    })
    runs.finish(run, 'failed', 1, null)
    expect(stateOf(run.id).resumable).toBe(true)
    expect(runs.prepareRestart(run)).toBe(run)
    expect(run).toMatchObject({
      resumable: false,
      runtimeFailureObservedBeforeCancellation: false,
      retryAttemptCount: 0,
      retryFinalResult: undefined,
      retrySuppressedReason: undefined,
      retryOriginFailure: null,
      retryOriginErrorCode: null,
      retryStrategy: 'kept',
    })
    expect(runs.statusBody(run).resumable).toBe(false)
    expect(stateOf(run.id).resumable).toBe(false)
    // A run that never had them gets them too, as upstream's reopened runs do.
    const plain = runs.create()
    runs.finish(plain, 'succeeded', 0, null)
    runs.prepareRestart(plain)
    expect(plain).toMatchObject({ retryAttemptCount: 0, retryOriginFailure: null, resumable: false })
  })

  it("HF-11: a verdict marks unfinished work from a cut-off turn or an open task of the last todo snapshot; the host's true stays", async () => {
    const runs = logged()
    const verdict = (fields: Record<string, unknown>) => {
      const run = runs.create()
      Object.assign(run, fields)
      runs.finish(run, 'succeeded', 0, null)
      const end = run.events.at(-1)
      return {
        flag: run.endedWithUnfinishedWork,
        end: end.data.endedWithUnfinishedWork,
        file: stateOf(run.id).endedWithUnfinishedWork,
      }
    }
    const open = {
      lastTodoSnapshot: [
        { content: 'a', status: 'completed' },
        { content: 'b', status: 'in_progress' },
      ],
    }
    expect(verdict(open)).toEqual({ flag: true, end: true, file: true })
    expect(verdict({ truncatedMidTurn: true })).toEqual({ flag: true, end: true, file: true })
    expect(verdict({ endedWithUnfinishedWork: true, lastTodoSnapshot: [] })).toEqual({
      flag: true,
      end: true,
      file: true,
    })
    for (const finished of [
      { lastTodoSnapshot: [{ status: 'completed' }] },
      { lastTodoSnapshot: [] },
      { lastTodoSnapshot: 'not a list' },
      { lastTodoSnapshot: [null, 'text', 7] },
      {},
    ]) {
      expect(verdict(finished)).toMatchObject({ end: false, file: false })
    }
    // A snapshot whose getter throws leaves the flag as the host left it.
    const hostile = runs.create()
    Object.defineProperty(hostile, 'lastTodoSnapshot', {
      get() {
        throw new Error('getter')
      },
    })
    runs.finish(hostile, 'failed', 1, null)
    expect(hostile.status).toBe('failed')
    expect(runs.statusBody(hostile).endedWithUnfinishedWork).toBe(false)
  })

  it('HF-12: a media failure recovered by a later task of the same output keeps the verdict finished, across a restart', async () => {
    const runs = logged()
    const run = runs.create({ projectId: 'p' })
    const failure = { taskId: 't1', output: 'cover.png', surface: 'image', failedAt: 1000, error: { message: 'quota' } }
    expect(runs.noteMediaTaskFailure(run.id, failure)).toBe(true)
    expect(stateOf(run.id).mediaTaskFailures).toEqual([failure])
    const retry = { taskId: 't2', output: 'cover.png', surface: 'image', startedAt: 1000, completedAt: 1500 }
    expect(runs.noteMediaTaskRecovery(run.id, retry)).toBe(true)
    expect(runs.noteMediaTaskRecovery(run.id, { ...retry, taskId: 't3' })).toBe(false) // already recovered
    const recovered = { ...failure, recoveredByTaskId: 't2', recoveredAt: 1500 }
    expect(run.mediaTaskFailures).toEqual([recovered])
    expect(stateOf(run.id).mediaTaskFailures).toEqual([recovered])
    runs.finish(run, 'succeeded', 0, null)
    expect(run.endedWithUnfinishedWork).toBeFalsy()
    await runs.shutdownActive()
    const restored = logged().get(run.id)
    expect(restored).toMatchObject({ endedWithUnfinishedWork: false, mediaTaskFailures: [recovered] })
  })

  it('HF-12: a success of another output, surface, run or an earlier start recovers nothing, and the verdict has unfinished work', () => {
    const runs = logged()
    const run = runs.create()
    const other = runs.create()
    runs.noteMediaTaskFailure(run.id, { taskId: 'f', output: 'clip.mp4', surface: 'video', failedAt: 50 })
    const good = { taskId: 's', output: 'clip.mp4', surface: 'video', startedAt: 60, completedAt: 70 }
    for (const wrong of [
      { ...good, output: 'other.mp4' },
      { ...good, surface: 'image' },
      { ...good, startedAt: 49 },
      { ...good, startedAt: undefined },
      { ...good, taskId: '' },
      'not an object',
    ]) {
      expect(runs.noteMediaTaskRecovery(run.id, wrong)).toBe(false)
    }
    expect(runs.noteMediaTaskRecovery(other.id, good)).toBe(false)
    // A failure without an output can never be recovered, even by a matching success for the other one.
    runs.noteMediaTaskFailure(run.id, { taskId: 'legacy', surface: 'video', failedAt: 10 })
    expect(runs.noteMediaTaskRecovery(run.id, good)).toBe(true)
    expect(run.mediaTaskFailures.map((f: any) => [f.taskId, f.recoveredByTaskId])).toEqual([
      ['f', 's'],
      ['legacy', undefined],
    ])
    runs.finish(run, 'succeeded', 0, null)
    expect(run.endedWithUnfinishedWork).toBe(true)
    expect(run.events.at(-1).data.endedWithUnfinishedWork).toBe(true)
    // Odd input: an unknown run, a failure without a taskId, a non-string id.
    expect(runs.noteMediaTaskFailure('no-such-run', { taskId: 'x' })).toBe(false)
    expect(runs.noteMediaTaskFailure(other.id, { output: 'x' })).toBe(false)
    expect(runs.noteMediaTaskFailure(42 as any, { taskId: 'x' })).toBe(false)
    expect(other.mediaTaskFailures).toBeUndefined()
  })

  it('HF-13: a failed delivery receipt revises a succeeded run to failed, once; it is reported, persisted and survives a restart', async () => {
    const runs = logged()
    const run = runs.create({ projectId: 'p' })
    run.artifactDeliveryRequired = true
    runs.finish(run, 'succeeded', 0, null)
    const files = [{ name: 'index.html', saved: true, readBack: false }]
    const result = runs.acknowledgeArtifactDelivery(run, { status: 'failed', files, error: 'read-back failed' })
    expect(result).toEqual({ applied: true, run })
    expect(run).toMatchObject({
      status: 'failed',
      errorCode: 'ARTIFACT_DELIVERY_FAILED',
      error: 'read-back failed',
      exitCode: 0,
    })
    expect(runs.statusBody(run).artifactDelivery).toEqual({ status: 'failed', files, error: 'read-back failed' })
    expect(stateOf(run.id)).toMatchObject({
      status: 'failed',
      errorCode: 'ARTIFACT_DELIVERY_FAILED',
      artifactDeliveryRequired: true,
      artifactDelivery: { status: 'failed', files },
    })
    // The first receipt wins.
    expect(runs.acknowledgeArtifactDelivery(run, { status: 'succeeded', files: [] })).toEqual({
      applied: false,
      reason: 'artifact-delivery-already-failed',
      run,
    })
    expect(run.status).toBe('failed')
    // Still a terminal run: a cancel changes nothing.
    expect(await runs.cancel(run)).toMatchObject({ status: 'failed', cancelOrigin: null })
    await runs.shutdownActive()
    expect(logged().get(run.id)).toMatchObject({
      status: 'failed',
      artifactDelivery: { status: 'failed' },
      artifactDeliveryRequired: true,
    })
  })

  it('HF-13: a success receipt keeps the verdict; receipts are refused before the verdict, after a cancel, without the flag and when invalid', () => {
    const runs = logged()
    const pending = runs.create()
    pending.artifactDeliveryRequired = true
    expect(runs.acknowledgeArtifactDelivery(pending, { status: 'succeeded' })).toMatchObject({
      applied: false,
      reason: 'run-not-terminal',
    })
    runs.finish(pending, 'succeeded', 0, null)
    for (const bad of [null, 'ok', { status: 'done' }, {}]) {
      expect(runs.acknowledgeArtifactDelivery(pending, bad as any)).toMatchObject({
        applied: false,
        reason: 'invalid-receipt',
      })
    }
    expect(runs.statusBody(pending)).not.toHaveProperty('artifactDelivery')
    expect(runs.acknowledgeArtifactDelivery(pending, { status: 'succeeded', files: 'nope' as any })).toMatchObject({
      applied: true,
    })
    expect(pending.artifactDelivery).toEqual({ status: 'succeeded', files: [] })
    expect(runs.acknowledgeArtifactDelivery(pending, { status: 'failed', error: 'late' })).toMatchObject({
      applied: false,
      reason: 'artifact-delivery-already-succeeded',
    })
    expect(pending.status).toBe('succeeded')

    const ordinary = runs.create()
    runs.finish(ordinary, 'succeeded', 0, null)
    expect(runs.acknowledgeArtifactDelivery(ordinary, { status: 'failed' })).toMatchObject({
      applied: false,
      reason: 'artifact-delivery-not-required',
    })
    const agentFailed = runs.create()
    agentFailed.artifactDeliveryRequired = true
    runs.finish(agentFailed, 'failed', 1, null)
    expect(runs.acknowledgeArtifactDelivery(agentFailed, { status: 'failed' })).toMatchObject({
      applied: false,
      reason: 'run-failed',
    })
    const foreign = makeRuns().runs.create()
    expect(() => runs.acknowledgeArtifactDelivery(foreign, { status: 'succeeded' })).toThrow(
      /^acknowledgeArtifactDelivery\(run\): expected a run object/,
    )
  })

  it('HF-13: a Stop while the receipt is pending ends the succeeded run as canceled with its origin; a late receipt is refused', async () => {
    const runs = logged()
    const run = runs.create()
    run.artifactDeliveryRequired = true
    runs.finish(run, 'succeeded', 0, null)
    const ends = run.events.filter((e: any) => e.event === 'end').length
    const body = await runs.cancel(run, 'user_stop')
    expect(body).toMatchObject({
      status: 'canceled',
      exitCode: 0,
      cancelRequested: true,
      cancelOrigin: 'user_stop',
      terminalTrigger: null,
    })
    expect(typeof body.terminalAt).toBe('number')
    expect(run.events.filter((e: any) => e.event === 'end').length).toBe(ends) // no second 'end'
    expect(stateOf(run.id)).toMatchObject({ status: 'canceled', cancelOrigin: 'user_stop', terminalTrigger: null })
    expect(runs.acknowledgeArtifactDelivery(run, { status: 'failed', error: 'too late' })).toMatchObject({
      applied: false,
      reason: 'run-canceled',
      run: { status: 'canceled' },
    })
    expect(runs.statusBody(run)).not.toHaveProperty('artifactDelivery')
    // prepareRestart forgets a receipt (HF-6): the next attempt needs its own.
    const again = runs.create()
    again.artifactDeliveryRequired = true
    runs.finish(again, 'succeeded', 0, null)
    runs.acknowledgeArtifactDelivery(again, { status: 'succeeded', files: [] })
    runs.prepareRestart(again)
    expect(again.artifactDelivery).toBeUndefined()
    expect(stateOf(again.id)).not.toHaveProperty('artifactDelivery')
  })

  it('HF-14: onStatusBody adds its keys to every status body of the service, last, isolated, never for a body it asks for itself', async () => {
    const seen: string[] = []
    const { runs } = makeRuns({
      onStatusBody: (run: any, body: any) => {
        seen.push(run.id)
        body.executionDiagnostics = { events: run.events.length, nested: runs.statusBody(run).status }
      },
    })
    const run = runs.create()
    runs.emit(run, 'agent', { n: 1 })
    const body = runs.statusBody(run)
    expect(Object.keys(body).at(-1)).toBe('executionDiagnostics')
    expect(body.executionDiagnostics).toEqual({ events: 1, nested: 'queued' })
    expect(seen).toEqual([run.id])
    const waited = runs.wait(run)
    runs.finish(run, 'succeeded', 0, null)
    expect((await waited).executionDiagnostics).toEqual({ events: 2, nested: 'succeeded' })
    expect((await runs.cancel(run)).executionDiagnostics).toMatchObject({ nested: 'succeeded' })
    // Not for a status body of something that is not a run of this service.
    const other = makeRuns().runs.create()
    expect(runs.statusBody(other)).not.toHaveProperty('executionDiagnostics')
    expect(runs.statusBody({ id: 'x' } as any)).not.toHaveProperty('executionDiagnostics')

    // A throwing hook: the body as built, one warning for the service.
    const warnings: string[] = []
    const onWarning = (w: Error & { code?: string }) => {
      if (w.code === 'CHAT_RUN_HOOK_ERROR') warnings.push(w.message)
    }
    process.on('warning', onWarning)
    try {
      const throwing = makeRuns({
        onStatusBody: () => {
          throw new Error('analytics down')
        },
      }).runs
      const r = throwing.create()
      expect(throwing.statusBody(r).status).toBe('queued')
      expect(throwing.statusBody(r).status).toBe('queued')
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/onStatusBody hook threw \(analytics down\)/)
    } finally {
      process.off('warning', onWarning)
    }
    expect(() => makeRuns({ onStatusBody: 'yes' })).toThrow(
      /options\.onStatusBody must be a function, got the string "yes"/,
    )
  })

  it('HF-7: the checkpoint methods set their fields and persist them at once; odd input changes nothing, a foreign run throws', () => {
    const runs = logged()
    const run = runs.create({ projectId: 'p' })
    runs.markAnalyticsCompleted(run) // no analyticsRecovery yet: nothing
    expect('analyticsRecovery' in run).toBe(false)
    runs.setAnalyticsRecovery(run, {
      context: { deviceId: 'd' },
      properties: { page: 'chat' },
      insertId: 'i-1',
      extra: 1,
    })
    expect(run.analyticsRecovery).toEqual({ context: { deviceId: 'd' }, properties: { page: 'chat' }, insertId: 'i-1' })
    expect(stateOf(run.id).analyticsRecovery).toEqual(run.analyticsRecovery)
    runs.markAnalyticsCompleted(run)
    runs.markLangfuseCompleted(run)
    expect(stateOf(run.id)).toMatchObject({
      analyticsRecovery: { insertId: 'i-1', completedAt: expect.any(Number) },
      langfuseCompletedAt: expect.any(Number),
    })
    runs.setDeliverableValidation(run, { valid: 'yes', entryFile: 'index.html', artifactKind: 7 })
    expect(run).toMatchObject({
      deliverableValid: false,
      deliverableValidation: 'entry_missing',
      deliverableEntryFile: 'index.html',
      deliverableArtifactKind: undefined,
    })
    expect(stateOf(run.id)).toMatchObject({ deliverableValid: false, deliverableEntryFile: 'index.html' })
    expect(runs.statusBody(run)).toMatchObject({ deliverableValid: false, deliverableValidation: 'entry_missing' })
    // A later validation without an entry file clears the file's old one too (a restart shows none).
    runs.setDeliverableValidation(run, { valid: true, validation: 'ok', entryFile: 'index.html', artifactKind: 'html' })
    runs.setDeliverableValidation(run, { valid: false })
    expect(stateOf(run.id)).toMatchObject({ deliverableEntryFile: null, deliverableArtifactKind: null })
    const restarted = logged()
    const body = restarted.statusBody(restarted.get(run.id))
    expect(body).toMatchObject({ deliverableValid: false, deliverableValidation: 'entry_missing' })
    expect(body).not.toHaveProperty('deliverableEntryFile')
    expect(body).not.toHaveProperty('deliverableArtifactKind')
    // A restarted service finds them.
    expect(logged().get(run.id)).toMatchObject({ analyticsRecovery: { insertId: 'i-1' }, deliverableValid: false })

    const before = JSON.stringify(stateOf(run.id))
    for (const call of [
      () => runs.setAnalyticsRecovery(run, 'not an object'),
      () => runs.setDeliverableValidation(run, null),
      () => runs.setAnalyticsRecovery(null, {}),
      () => runs.markLangfuseCompleted(undefined),
    ]) {
      expect(call()).toBeUndefined()
    }
    expect(JSON.stringify(stateOf(run.id))).toBe(before)
    const foreign = makeRuns().runs.create()
    for (const name of [
      'setAnalyticsRecovery',
      'markAnalyticsCompleted',
      'markLangfuseCompleted',
      'setDeliverableValidation',
    ]) {
      expect(() => runs[name](foreign, {})).toThrow(new RegExp(`^${name}\\(run\\): expected a run object`))
    }
  })

  const HINTS = {
    entrySurface: 'external_mcp',
    hostProduct: 'codex_cli',
    externalPluginId: 'open-design',
    externalPluginVersion: '0.4.0',
    distributionMechanism: 'git_marketplace',
    publisherClass: 'open_design_first_party',
    attributionQuality: 'session_correlated',
    pluginWorkflowId: 'wf-1',
    logicalRequestDigest: 'a'.repeat(64),
    logicalRequestDigestVersion: 1,
    generationSloWindowMs: 2_700_000,
  }

  it('HF-8: create() makes externalPluginAnalytics from open-design hints only, in the fixed key order; reported and in the first state file', () => {
    const runs = logged()
    const run = runs.create({ projectId: 'p', analyticsHints: { ...HINTS, extra: 'ignored', briefState: 'draft' } })
    expect(Object.keys(run.externalPluginAnalytics)).toEqual([
      'entrySurface',
      'hostProduct',
      'externalPluginId',
      'externalPluginVersion',
      'distributionMechanism',
      'publisherClass',
      'attributionQuality',
      'pluginWorkflowId',
      'logicalRequestDigest',
      'logicalRequestDigestVersion',
      'briefState',
      'generationSloWindowMs',
    ])
    expect(run.externalPluginAnalytics).toEqual({ ...HINTS, briefState: 'draft' })
    expect(runs.statusBody(run).externalPluginAnalytics).toEqual({ ...HINTS, briefState: 'draft' })
    expect(stateOf(run.id).externalPluginAnalytics).toEqual({ ...HINTS, briefState: 'draft' })
    for (const hints of [{ ...HINTS, externalPluginId: 'other' }, [HINTS], null, 'open-design', undefined]) {
      const other = runs.create({ analyticsHints: hints })
      expect(other.externalPluginAnalytics).toBeNull()
      expect(runs.statusBody(other)).not.toHaveProperty('externalPluginAnalytics')
      expect(stateOf(other.id)).not.toHaveProperty('externalPluginAnalytics')
    }
    const throwing = {
      get externalPluginId(): string {
        throw new Error('getter')
      },
    }
    expect(runs.create({ analyticsHints: throwing }).externalPluginAnalytics).toBeNull()
  })

  it('HF-8: findByPluginWorkflowId finds the newest run created with the workflow id, not a dropped one, and keeps the first attribution on reuse', () => {
    const { runs } = makeRuns()
    const older = runs.create({ analyticsHints: HINTS })
    const newer = runs.create({ analyticsHints: HINTS })
    const other = runs.create({ analyticsHints: { ...HINTS, pluginWorkflowId: 'wf-2' } })
    expect(runs.findByPluginWorkflowId('wf-1')).toBe(newer)
    expect(runs.findByPluginWorkflowId('wf-2')).toBe(other)
    for (const id of ['', 'nope', null, undefined, 7, { pluginWorkflowId: 'wf-1' }]) {
      expect(runs.findByPluginWorkflowId(id)).toBeNull()
    }
    // The key is the value the run was created with: a later host write does not move it.
    other.externalPluginAnalytics = { ...HINTS, pluginWorkflowId: 'wf-3' }
    expect(runs.findByPluginWorkflowId('wf-3')).toBeNull()
    expect(runs.findByPluginWorkflowId('wf-2')).toBe(other)
    runs.drop(newer)
    expect(runs.findByPluginWorkflowId('wf-1')).toBe(older)
    // A workflow id that is not a non-empty string is no key.
    const unnamed = runs.create({ analyticsHints: { ...HINTS, pluginWorkflowId: '' } })
    expect(unnamed.externalPluginAnalytics).toMatchObject({ pluginWorkflowId: '' })
    expect(runs.findByPluginWorkflowId('')).toBeNull()

    const request = { clientRequestId: 'req-1', requestFingerprint: 'same', analyticsHints: HINTS }
    const created = runs.createOrReuse(request)
    const retried = runs.createOrReuse({
      ...request,
      analyticsHints: { ...HINTS, externalPluginVersion: '9.9.9', pluginWorkflowId: 'wf-9' },
    })
    expect(retried).toEqual({ kind: 'reused', run: created.run })
    expect(retried.run.externalPluginAnalytics).toMatchObject({
      externalPluginVersion: '0.4.0',
      pluginWorkflowId: 'wf-1',
    })
    expect(runs.findByPluginWorkflowId('wf-9')).toBeNull()
  })

  it('HF-8: after a restart the workflow id finds the run on disk, ours or an upstream-shaped state file written by hand', async () => {
    const first = logged()
    const run = first.create({ projectId: 'p1', analyticsHints: HINTS })
    first.finish(run, 'succeeded', 0, null)
    // Its journal is written before the directory goes away with the test.
    await first.shutdownActive()
    const handId = '018f6f2e-4444-4444-8444-444444444444'
    fs.mkdirSync(path.join(tmp, handId))
    const hand = {
      schemaVersion: 1,
      id: handId,
      projectId: 'p2',
      conversationId: null,
      status: 'succeeded',
      createdAt: 1,
      updatedAt: 2,
      externalPluginAnalytics: { externalPluginId: 'open-design', pluginWorkflowId: 'wf-hand', briefState: 'final' },
    }
    fs.writeFileSync(path.join(tmp, handId, 'state.json'), `${JSON.stringify(hand)}\n`)
    const foreignId = '018f6f2e-5555-4555-8555-555555555555'
    fs.mkdirSync(path.join(tmp, foreignId))
    fs.writeFileSync(
      path.join(tmp, foreignId, 'state.json'),
      `${JSON.stringify({ ...hand, id: foreignId, externalPluginAnalytics: { externalPluginId: 'x', pluginWorkflowId: 'wf-x' } })}\n`,
    )

    const restarted = logged()
    const found = restarted.findByPluginWorkflowId('wf-1')
    expect(found).not.toBe(run)
    expect(found).toMatchObject({
      id: run.id,
      projectId: 'p1',
      status: 'succeeded',
      externalPluginAnalytics: {
        externalPluginId: 'open-design',
        pluginWorkflowId: 'wf-1',
        logicalRequestDigest: 'a'.repeat(64),
      },
    })
    expect(restarted.get(run.id)).toBe(found)
    expect(restarted.findByPluginWorkflowId('wf-1')).toBe(found)
    expect(restarted.findByPluginWorkflowId('wf-hand')).toMatchObject({ id: handId, projectId: 'p2' })
    expect(restarted.findByPluginWorkflowId('wf-x')).toBeNull()
    // Without logging nothing is on disk to find.
    expect(makeRuns().runs.findByPluginWorkflowId('wf-1')).toBeNull()
  })

  it('HF-9: cancel, shutdownActive and prepareRestart clear a pending retry timer; a terminal run keeps its own', async () => {
    const { runs } = makeRuns()
    const fired: string[] = []
    const pending = (name: string) => setTimeout(() => fired.push(name), 30)

    const canceled = runs.create()
    expect(canceled.retryRestartTimer).toBeNull()
    canceled.retryRestartTimer = pending('cancel')
    await runs.cancel(canceled)
    expect(canceled.retryRestartTimer).toBeNull()

    const stopped = runs.create()
    stopped.retryRestartTimer = pending('shutdown')
    const finished = runs.create()
    runs.finish(finished, 'failed', 1, null)
    const kept = pending('terminal')
    finished.retryRestartTimer = kept
    await runs.shutdownActive({ graceMs: 10 })
    expect(stopped.retryRestartTimer).toBeNull()
    expect(await runs.cancel(finished)).toMatchObject({ status: 'failed' })
    expect(finished.retryRestartTimer).toBe(kept)

    const reopened = runs.create()
    runs.finish(reopened, 'failed', 1, null)
    reopened.retryRestartTimer = pending('prepareRestart')
    expect(runs.prepareRestart(reopened)).toBe(reopened)
    expect(reopened.retryRestartTimer).toBeNull()

    // Something that is not a timer is set back to null and nothing throws.
    const odd = runs.create()
    odd.retryRestartTimer = { not: 'a timer' }
    await runs.cancel(odd)
    expect(odd.retryRestartTimer).toBeNull()

    await sleep(80)
    expect(fired).toEqual(['terminal'])
  })
})

describe('HF-16: strategy runs and the delivery records', () => {
  const descriptor = () => ({ taskExecutionId: 't1', snapshotDir: '/data/task-input', manifestSha256: 'a'.repeat(64) })

  it('create() keeps the three strategy descriptors when they are objects, in the state file it writes; a restart brings them back', () => {
    const runs = logged()
    const snapshot = descriptor()
    const rollout = { arm: 'od-next', reason: 'cohort' }
    const run = runs.create({
      projectId: 'p',
      odNextTaskInputSnapshot: snapshot,
      strategyRolloutDecision: rollout,
      runtimeCapabilitySnapshot: 'not an object',
    })
    expect(run.odNextTaskInputSnapshot).toBe(snapshot)
    expect(run.strategyRolloutDecision).toBe(rollout)
    expect(run).not.toHaveProperty('runtimeCapabilitySnapshot')
    const plain = runs.create({ odNextTaskInputSnapshot: null })
    expect(plain).not.toHaveProperty('odNextTaskInputSnapshot')
    // Written by create() itself, before any other write.
    expect(stateOf(run.id)).toMatchObject({ odNextTaskInputSnapshot: snapshot, strategyRolloutDecision: rollout })
    expect(stateOf(run.id)).not.toHaveProperty('runtimeCapabilitySnapshot')
    expect(stateOf(plain.id)).not.toHaveProperty('odNextTaskInputSnapshot')
    runs.finish(run, 'succeeded', 0, null)
    const hydrated = logged().get(run.id)
    expect(hydrated).toMatchObject({ odNextTaskInputSnapshot: snapshot, strategyRolloutDecision: rollout })
  })

  it("the daemon's delivery and lifecycle records are persisted when they have their shape and come back on a hydrated run", () => {
    const runs = logged()
    const run = runs.create({ projectId: 'p' })
    const records = {
      telemetryDelivery: { version: 1, idempotencyKey: 'k', status: 'failed', attemptCount: 2 },
      terminalLifecycle: { version: 1, runAttempt: 0, duplicateTerminalCount: 0 },
      cumulativeRetryAttemptCount: 3,
      retryAttemptCount: 1,
      runtimeGenerationId: 'gen-7',
      appVersionInfo: { version: '0.23.1' },
    }
    Object.assign(run, records)
    runs.persistState(run)
    expect(stateOf(run.id)).toMatchObject(records)
    // The verdict makes its own record (HF-20: the attempt counts every retry), which the
    // hydrated run gets back with the other records.
    runs.finish(run, 'failed', 1, null)
    const atVerdict = { ...records, terminalLifecycle: { version: 1, runAttempt: 4, duplicateTerminalCount: 0 } }
    expect(stateOf(run.id)).toMatchObject(atVerdict)
    expect(logged().get(run.id)).toMatchObject(atVerdict)
    // A value without its shape is not written.
    const odd = runs.create({})
    Object.assign(odd, { retryAttemptCount: '2', runtimeGenerationId: 7, telemetryDelivery: null })
    runs.persistState(odd)
    for (const name of ['retryAttemptCount', 'runtimeGenerationId', 'telemetryDelivery']) {
      expect(stateOf(odd.id)).not.toHaveProperty(name)
    }
  })

  it('the status body reports run.strategyTask when truthy, as its last key', () => {
    const { runs } = makeRuns()
    const run = runs.create({})
    expect(runs.statusBody(run)).not.toHaveProperty('strategyTask')
    run.artifactCount = 1
    run.strategyTask = { taskExecutionId: 't1', outcome: 'clarification_required', terminal: false }
    const body = runs.statusBody(run)
    expect(body.strategyTask).toBe(run.strategyTask)
    expect(Object.keys(body).at(-1)).toBe('strategyTask')
    expect(Object.keys(body).slice(0, STATUS_BODY_KEYS.length)).toEqual(STATUS_BODY_KEYS)
  })

  it("a clean exit that the terminal strategy task refutes is 'failed', before beforeFinish; a completed or open task, or none, leaves it", () => {
    const seen: string[] = []
    const { runs } = makeRuns({ beforeFinish: (_run: unknown, status: string) => seen.push(status) })
    const verdict = (task: unknown, status = 'succeeded') => {
      const run = runs.create({})
      if (task !== undefined) run.strategyTask = task
      runs.finish(run, status, 0, null)
      return run
    }
    const blocked = verdict({ taskExecutionId: 't1', outcome: 'blocked', terminal: true })
    expect(blocked).toMatchObject({ status: 'failed', exitCode: 0, signal: null })
    expect(blocked.events.at(-1)).toMatchObject({ event: 'end', data: { status: 'failed', code: 0 } })
    expect(seen).toEqual(['failed'])
    expect(verdict({ outcome: 'canceled', terminal: true }).status).toBe('failed')
    expect(verdict({ outcome: 'completed', terminal: true }).status).toBe('succeeded')
    expect(verdict({ outcome: 'clarification_required', terminal: false }).status).toBe('succeeded')
    expect(verdict({ outcome: 'blocked', terminal: 'yes' }).status).toBe('succeeded')
    expect(verdict(undefined).status).toBe('succeeded')
    // Only a clean exit is gated: another verdict stays as given.
    expect(verdict({ outcome: 'blocked', terminal: true }, 'canceled').status).toBe('canceled')
    const throwing = runs.create({})
    Object.defineProperty(throwing, 'strategyTask', {
      get() {
        throw new Error('projection failed')
      },
    })
    runs.finish(throwing, 'succeeded', 0, null)
    expect(throwing.status).toBe('succeeded')
  })
})
