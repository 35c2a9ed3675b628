// SPEC §21 LC-1: each run's state.json (upstream's format, written synchronously at the lifecycle
// points and nowhere else), files written by an upstream daemon, the host's durableFields (LC-6) and
// workspaceScope (LC-3), and disk failures.
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { getChatRunServiceStats } from '../index.js'
import { isWindows, makeRuns, useTempDirs } from './helpers'

const tempDir = useTempDirs('lifecycle-state-')
let tmp: string
beforeEach(() => {
  tmp = tempDir()
})
afterEach(() => {
  vi.useRealTimers()
})

const service = (extra: Record<string, unknown> = {}) => makeRuns({ runsLogDir: tmp, ...extra }).runs
const statePath = (id: string) => path.join(tmp, id, 'state.json')
const stateText = (id: string) => fs.readFileSync(statePath(id), 'utf8')
const stateOf = (id: string) => JSON.parse(stateText(id))
const written = (runs: unknown) => getChatRunServiceStats(runs as never).stateFile.written

/** The fields of state.json, in order: upstream's names (LC-1). */
const STATE_KEYS = [
  'schemaVersion',
  'id',
  'projectId',
  'conversationId',
  'assistantMessageId',
  'clientRequestId',
  'requestFingerprint',
  'agentId',
  'status',
  'createdAt',
  'updatedAt',
  'terminalAt',
  'exitCode',
  'signal',
  'error',
  'errorCode',
  'failureCategory',
  'failureDetail',
  'failureAction',
  'cancelOrigin',
  'terminalTrigger',
  'terminalRecoveryReason',
  'resumable',
  'endedWithUnfinishedWork',
]

describe('LC-1: the state file', () => {
  // POSIX only: it checks mode 0600, which Windows does not keep.
  it.skipIf(isWindows)(
    'carries every upstream field name, in order: one JSON object and a newline, mode 0600, nothing else left behind',
    () => {
      vi.useFakeTimers({ toFake: ['Date'] })
      vi.setSystemTime(1_717_171_717_171)
      const runs = service()
      const run = runs.create({
        projectId: 'p',
        conversationId: 'c',
        assistantMessageId: 'm',
        clientRequestId: 'r',
        requestFingerprint: 'fp',
        agentId: 'claude',
        pluginId: 'not-in-the-file',
      })
      const text = stateText(run.id)
      expect(text.endsWith('}\n')).toBe(true)
      expect(text.indexOf('\n')).toBe(text.length - 1)
      const state = JSON.parse(text)
      // LC-1's fields, then HF-4's two that every file has.
      expect(Object.keys(state)).toEqual([...STATE_KEYS, 'artifactCount', 'appliedPluginSnapshotId'])
      expect(state).toEqual({
        schemaVersion: 1,
        id: run.id,
        projectId: 'p',
        conversationId: 'c',
        assistantMessageId: 'm',
        clientRequestId: 'r',
        requestFingerprint: 'fp',
        agentId: 'claude',
        status: 'queued',
        createdAt: 1_717_171_717_171,
        updatedAt: 1_717_171_717_171,
        terminalAt: null,
        exitCode: null,
        signal: null,
        error: null,
        errorCode: null,
        failureCategory: null,
        failureDetail: null,
        failureAction: null,
        cancelOrigin: null,
        terminalTrigger: null,
        terminalRecoveryReason: null,
        resumable: false,
        endedWithUnfinishedWork: false,
        artifactCount: 0,
        appliedPluginSnapshotId: null,
      })
      // Integral numbers as JSON.stringify writes them (no ".0").
      expect(text).toContain('"createdAt":1717171717171,')
      expect(fs.statSync(statePath(run.id)).mode & 0o777).toBe(0o600)
      expect(fs.readdirSync(tmp)).toEqual([run.id])
      expect(fs.readdirSync(path.join(tmp, run.id))).toEqual(['state.json'])
      expect(run.requestFingerprint).toBe('fp')
    },
  )

  it('is written before the call returns at create, the start/error/end emits, finish, persistState and prepareRestart, and never on an ordinary emit; no replaced copy is ever left', async () => {
    const runs = service()
    const run = runs.create({ projectId: 'p' })
    expect(written(runs)).toBe(1)
    run.status = 'running'
    for (let n = 0; n < 100; n++) runs.emit(run, 'agent', { n })
    expect(written(runs)).toBe(1)
    expect(stateOf(run.id).status).toBe('queued')
    runs.emit(run, 'start', { status: 'running' })
    expect(written(runs)).toBe(2)
    expect(stateOf(run.id)).toMatchObject({ status: 'running', updatedAt: run.updatedAt })
    runs.emit(run, 'error', { error: { message: 'slow', code: 'SLOW' } })
    expect(written(runs)).toBe(3)
    expect(stateOf(run.id)).toMatchObject({ error: 'slow', errorCode: 'SLOW' })
    run.failureCategory = 'process_exit'
    run.endedWithUnfinishedWork = true
    run.terminalTrigger = 'acp_stage_timeout'
    runs.finish(run, 'failed', 1, null)
    expect(written(runs)).toBe(4)
    // A rewrite leaves no copy behind, at once (the journal is the log writer's, maybe not there yet).
    expect(fs.readdirSync(path.join(tmp, run.id)).filter((name) => name !== 'events.jsonl')).toEqual(['state.json'])
    expect(stateOf(run.id)).toMatchObject({
      status: 'failed',
      exitCode: 1,
      terminalAt: run.terminalAt,
      terminalTrigger: 'acp_stage_timeout',
      failureCategory: 'process_exit',
      endedWithUnfinishedWork: true,
    })
    run.failureDetail = { stage: 'spawn' }
    runs.persistState(run)
    expect(written(runs)).toBe(5)
    expect(stateOf(run.id).failureDetail).toEqual({ stage: 'spawn' })
    runs.prepareRestart(run)
    expect(written(runs)).toBe(6)
    expect(stateOf(run.id)).toMatchObject({
      status: 'queued',
      failureCategory: null,
      failureDetail: null,
      terminalTrigger: null,
    })
    expect(run.terminalTrigger).toBeNull()
    // A direct 'end' emit (not finish) writes it too.
    runs.emit(run, 'end', {})
    expect(written(runs)).toBe(7)
    expect(getChatRunServiceStats(runs).stateFile.failed).toBe(0)
    // Once shutdownActive() resolved (the writer is done), the journal and the state file only.
    await runs.shutdownActive()
    expect(fs.readdirSync(path.join(tmp, run.id)).sort()).toEqual(['events.jsonl', 'state.json'])
    // (A direct 'end' emit is not a verdict: the run was still active, and shutdown canceled it.)
    expect(stateOf(run.id).status).toBe('canceled')
  })

  it('run.statePath names the file; what the terminal hooks set (onTerminal, run.onFinalize) reaches it, and a finish whose hooks change nothing writes it once', () => {
    const runs = service({
      onTerminal: (run: any) => {
        if (run.projectId === 'hooked') run.failureDetail = { stage: 'terminal' }
      },
    })
    const plain = runs.create({ projectId: 'p' })
    expect(plain.statePath).toBe(statePath(plain.id))
    expect(makeRuns({ runsLogDir: null }).runs.create().statePath).toBeNull()
    const before = written(runs)
    runs.finish(plain, 'succeeded', 0, null)
    expect(written(runs) - before).toBe(1)

    const hooked = runs.create({ projectId: 'hooked' })
    hooked.onFinalize = () => {
      hooked.artifactCount = 2
      hooked.artifactPaths = ['artifacts/index.html', 'artifacts/preview.png']
    }
    const start = written(runs)
    runs.finish(hooked, 'failed', 1, null)
    expect(written(runs) - start).toBe(2)
    expect(stateOf(hooked.id)).toMatchObject({
      status: 'failed',
      artifactCount: 2,
      artifactPaths: ['artifacts/index.html', 'artifacts/preview.png'],
      failureDetail: { stage: 'terminal' },
    })
    // And a service started later reads them back.
    const again = service().get(hooked.id)
    expect(again).toMatchObject({ artifactCount: 2, failureDetail: { stage: 'terminal' } })
  })

  it('an upstream-shaped state.json hydrates: a terminal one as it is, a non-terminal one as interrupted, unknown fields kept on rewrite', () => {
    const done = '0b7c7a0e-1a46-4c36-9a85-1f1f6a1b2c3d'
    const active = '5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b'
    const upstream = (id: string, status: string, extra: object) => ({
      schemaVersion: 1,
      id,
      projectId: 'p',
      conversationId: 'c',
      assistantMessageId: 'm',
      agentId: 'amr',
      status,
      createdAt: 1000,
      updatedAt: 2000,
      exitCode: status === 'succeeded' ? 0 : null,
      signal: null,
      error: null,
      errorCode: null,
      artifactCount: 2,
      endedWithUnfinishedWork: false,
      userPrompt: 'draw a cat',
      analyticsRecovery: { insertId: 'x', context: {}, properties: {} },
      ...extra,
    })
    for (const [id, state] of [
      [done, upstream(done, 'succeeded', { terminalRecoveryReason: 'analytics_incomplete' })],
      [active, upstream(active, 'running', { langfuseCompletedAt: 5 })],
    ] as const) {
      fs.mkdirSync(path.join(tmp, id))
      fs.writeFileSync(statePath(id), `${JSON.stringify(state)}\n`)
    }
    fs.writeFileSync(
      path.join(tmp, active, 'events.jsonl'),
      '{"id":1,"event":"start","data":{},"timestamp":1001}\n{"id":2,"event":"agent","data":{"t":"x"},"timestamp":1002}\n',
    )
    const runs = service()
    const finished = runs.get(done)
    expect(finished).toMatchObject({
      id: done,
      status: 'succeeded',
      exitCode: 0,
      assistantMessageId: 'm',
      agentId: 'amr',
      createdAt: 1000,
      updatedAt: 2000,
      terminalRecoveryReason: 'analytics_incomplete',
      events: [],
    })
    expect(runs.statusBody(finished)).toMatchObject({ status: 'succeeded', terminalAt: null, resumable: false })
    // Read only: a terminal file is not rewritten.
    expect(stateOf(done)).toEqual(upstream(done, 'succeeded', { terminalRecoveryReason: 'analytics_incomplete' }))

    const interrupted = runs.get(active)
    expect(interrupted).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED', nextEventId: 5 })
    expect(interrupted.events.map((e: any) => e.event)).toEqual(['start', 'agent', 'error', 'end'])
    const rewritten = stateOf(active)
    expect(rewritten).toMatchObject({
      status: 'failed',
      errorCode: 'DAEMON_RESTARTED',
      terminalRecoveryReason: 'daemon_restart',
      // Unknown to this package, kept as they were.
      artifactCount: 2,
      userPrompt: 'draw a cat',
      analyticsRecovery: { insertId: 'x', context: {}, properties: {} },
      langfuseCompletedAt: 5,
    })
    expect(Object.keys(rewritten).slice(0, STATE_KEYS.length)).toEqual(STATE_KEYS)
  })

  it("a hydrated run carries the fields of its file this version does not know, as upstream's spread of the file does, without touching what the run already has", () => {
    const id = '6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d'
    const known = {
      schemaVersion: 1,
      id,
      projectId: 'p',
      status: 'succeeded',
      createdAt: 1000,
      updatedAt: 2000,
      exitCode: 0,
      retryStrategy: 'same_session',
      nativeSessionContinueAttemptCount: 2,
      events: 'not the history',
      emit: 'not a method',
      status_note: { kept: true },
    }
    // Names that would reach the prototype or a method if assigned blindly.
    const text = JSON.stringify(known).replace(
      /}$/,
      ',"__proto__":{"polluted":true},"constructor":5,"hasOwnProperty":1}',
    )
    fs.mkdirSync(path.join(tmp, id))
    fs.writeFileSync(statePath(id), `${text}\n`)
    const run = service().get(id)
    expect(run).toMatchObject({
      status: 'succeeded',
      retryStrategy: 'same_session',
      nativeSessionContinueAttemptCount: 2,
      status_note: { kept: true },
    })
    expect(run.events).toEqual([])
    expect(run.emit).toBe('not a method')
    expect(Object.getPrototypeOf(run)).not.toHaveProperty('polluted')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(typeof run.constructor).toBe('function')
    expect(typeof run.hasOwnProperty).toBe('function')
    expect(run.schemaVersion).toBeUndefined()
  })

  it('HF-4: a file without artifactCount or appliedPluginSnapshotId gets both when hydration rewrites it; LC-2: its run has no projectMetadata, and its policy and bundle are normalized again', () => {
    const id = '7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e'
    fs.mkdirSync(path.join(tmp, id))
    const minimal = {
      schemaVersion: 1,
      id,
      projectId: 'p',
      status: 'running',
      createdAt: 1,
      updatedAt: 2,
      projectMetadata: { baseDir: '/from/the/file' },
      mediaExecution: { mode: 'question', providers: { x: { apiKey: 'SECRET' } } },
      pluginId: 'plugin-1',
      sessionMode: 'not-a-mode',
    }
    fs.writeFileSync(statePath(id), `${JSON.stringify(minimal)}\n`)
    const runs = service()
    const run = runs.get(id)
    expect(run).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED', pluginId: 'plugin-1' })
    expect(run.projectMetadata).toBeNull()
    expect(run.sessionMode).toBeNull()
    expect(run.mediaExecution).toEqual({ mode: 'question' })
    expect(JSON.stringify(runs.statusBody(run))).not.toContain('SECRET')
    const rewritten = stateOf(id)
    expect(rewritten).toMatchObject({ status: 'failed', artifactCount: 0, appliedPluginSnapshotId: null })
    expect(Object.hasOwn(rewritten, 'appliedPluginSnapshotId')).toBe(true)
  })

  it("HF-4: a durableFields entry named like one of HF-4's fields is written as the host's value, whatever its shape (artifactCount included)", () => {
    const runs = service({ durableFields: ['artifactCount', 'userPrompt'] })
    const run = runs.create({ projectId: 'p' })
    Object.assign(run, { artifactCount: 'three', userPrompt: 42 })
    runs.persistState(run)
    expect(stateOf(run.id)).toMatchObject({ artifactCount: 'three', userPrompt: 42 })
  })

  it('a value JSON cannot hold in an id field or terminalRecoveryReason is left out on its own: every other host field is still written', () => {
    const runs = service({ durableFields: ['note'] })
    for (const field of ['terminalRecoveryReason', 'agentId', 'assistantMessageId', 'requestFingerprint']) {
      const run = runs.create({ projectId: 'p' })
      Object.assign(run, { failureCategory: 'agent_error', note: 'kept', model: 'gpt-x' })
      run[field] = 10n
      runs.persistState(run)
      const state = stateOf(run.id)
      expect(state, field).toMatchObject({ failureCategory: 'agent_error', note: 'kept', model: 'gpt-x' })
      expect(state[field] ?? null, field).toBeNull()
    }
  })

  it('a field whose getter throws is left out of the file on its own: every other host field is still written', () => {
    const runs = service({ durableFields: ['note', 'lazy'] })
    const run = runs.create({ projectId: 'p' })
    Object.assign(run, { model: 'gpt-a', failureCategory: 'agent', artifactCount: 1, note: 'v1' })
    runs.persistState(run)
    Object.assign(run, { model: 'gpt-b', failureCategory: 'quota', artifactCount: 7, note: 'v2' })
    Object.defineProperty(run, 'lazy', {
      get() {
        throw new Error('not ready')
      },
      configurable: true,
      enumerable: true,
    })
    Object.defineProperty(run, 'failureDetail', {
      get() {
        throw new Error('not ready either')
      },
      configurable: true,
      enumerable: true,
    })
    runs.persistState(run)
    const state = stateOf(run.id)
    expect(state).toMatchObject({ model: 'gpt-b', failureCategory: 'quota', artifactCount: 7, note: 'v2' })
    expect(state.failureDetail).toBeNull()
    expect('lazy' in state).toBe(false)
    const again = service({ durableFields: ['note', 'lazy'] }).get(run.id)
    expect(again).toMatchObject({ model: 'gpt-b', artifactCount: 7, note: 'v2' })
  })

  it('the host durable fields (LC-6) are written at every engine write and restored onto hydrated runs; workspaceScope (LC-3) only when given', async () => {
    const runs = service({ durableFields: ['userPrompt', 'model', 'pluginId', 'status', 'huge', 'note'] })
    const scope = { schemaVersion: 1, workspaceId: 'w' }
    const run = runs.create({ projectId: 'p', workspaceScope: scope, pluginId: 'plug' })
    const plain = runs.create({ projectId: 'p' })
    expect(run.workspaceScope).toBe(scope)
    expect('workspaceScope' in plain).toBe(false)
    expect(stateOf(run.id).workspaceScope).toEqual(scope)
    expect('workspaceScope' in stateOf(plain.id)).toBe(false)
    // Given as undefined (or null): kept as null, which the file can hold.
    const unset = runs.create({ projectId: 'p', workspaceScope: undefined, designSystemScope: null })
    expect(unset).toMatchObject({ workspaceScope: null, designSystemScope: null })
    expect(stateOf(unset.id)).toMatchObject({ workspaceScope: null, designSystemScope: null })
    run.userPrompt = 'draw a cat'
    run.model = { name: 'm1', effort: 3 }
    run.note = 'kept'
    run.huge = 10n // not JSON: left out
    runs.emit(run, 'start', {})
    expect(stateOf(run.id)).toMatchObject({
      userPrompt: 'draw a cat',
      model: { name: 'm1', effort: 3 },
      pluginId: 'plug',
    })
    expect('huge' in stateOf(run.id)).toBe(false)
    // A durable field by a name the file already has is not written twice (the engine's value wins).
    expect(stateText(run.id).match(/"status":/g)).toHaveLength(1)
    run.userPrompt = 'draw two cats'
    runs.finish(run, 'succeeded', 0, null)
    expect(stateOf(run.id).userPrompt).toBe('draw two cats')

    const again = service({ durableFields: ['userPrompt', 'model', 'pluginId'] }).get(run.id)
    expect(again).toMatchObject({
      userPrompt: 'draw two cats',
      model: { name: 'm1', effort: 3 },
      pluginId: 'plug',
      workspaceScope: scope,
      status: 'succeeded',
    })
    // A service that does not list a field still keeps it in the file when it rewrites it, and
    // hands it to the hydrated run like any field of the file it does not know; the daemon's own
    // fields (HF-5: userPrompt, model, ...) come back without being listed.
    const other = service()
    const hydrated = other.get(run.id)
    expect(hydrated.note).toBe('kept')
    expect(hydrated.userPrompt).toBe('draw two cats')
    other.prepareRestart(hydrated)
    expect(stateOf(run.id)).toMatchObject({ note: 'kept', userPrompt: 'draw two cats', status: 'queued' })
    // prepareRestart's 'run_resume_attempted' line is written after this test's temp dir is
    // gone unless the test waits for it (a later test would hear that write fail).
    await other.shutdownActive()
  })

  it('a lone surrogate becomes U+FFFD and a value nested too deep loses only its own field; both ways, nothing else of the run is lost', () => {
    const runs = service({ durableFields: ['note', 'meta', 'deep'] })
    const run = runs.create({ projectId: 'p', clientRequestId: 'req-\ud800', agentId: 'agent-1' })
    run.note = 'cut \ud83d'
    run.failureDetail = 'detail \udc00'
    let deep: unknown = 1
    for (let i = 0; i < 200; i++) deep = [deep]
    run.deep = deep
    run.meta = { kept: true }
    runs.persistState(run)
    expect(stateOf(run.id)).toMatchObject({
      clientRequestId: 'req-\ufffd',
      agentId: 'agent-1',
      note: 'cut \ufffd',
      failureDetail: 'detail \ufffd',
      meta: { kept: true },
    })
    expect('deep' in stateOf(run.id)).toBe(false)
    expect(getChatRunServiceStats(runs).stateFile.failed).toBe(0)
    runs.finish(run, 'failed', 1, null)
    // An upstream daemon's file: JSON.stringify escapes a lone surrogate, and nests at will.
    const upstream = { ...stateOf(run.id), id: '0b0c6f1e-3e5a-4c0e-9a7b-2d6f4f1b1c11', note: 'draw a \ud83d', deep }
    fs.mkdirSync(path.join(tmp, upstream.id))
    fs.writeFileSync(statePath(upstream.id), JSON.stringify(upstream) + '\n')
    expect(stateText(upstream.id)).toContain('\\ud83d')
    const later = service({ durableFields: ['note', 'meta', 'deep'] })
    expect(later.get(run.id)).toMatchObject({ status: 'failed', agentId: 'agent-1', note: 'cut \ufffd' })
    expect(later.get(upstream.id)).toMatchObject({ status: 'failed', note: 'draw a \ufffd', meta: { kept: true } })
    expect(later.list({ projectId: 'p' })).toHaveLength(2)
    expect(later.createOrReuse({ projectId: 'p', clientRequestId: 'req-\ud800' }).kind).toBe('reused')
  })

  it("durableFields naming '__proto__' (a prototype, never a field) is skipped; the other fields are written as usual", () => {
    const runs = service({ durableFields: ['__proto__', 'child', 'note'] })
    const run = runs.create({ projectId: 'p' })
    run.note = 'kept'
    run.failureCategory = 'cat'
    run.resumable = true
    runs.persistState(run)
    expect(stateOf(run.id)).toMatchObject({ note: 'kept', failureCategory: 'cat', resumable: true })
    expect(Object.hasOwn(stateOf(run.id), '__proto__')).toBe(false)
  })

  it('a state file that cannot be written is counted and reported once (CHAT_RUN_LOG_ERROR); the run goes on in memory', async () => {
    const warnings: Array<{ code?: string; message: string }> = []
    // Only this test's directory: an earlier test's service may still report its own log error.
    const onWarning = (w: Error & { code?: string }) => {
      if (w.message.includes(tmp)) warnings.push({ code: w.code, message: w.message })
    }
    process.on('warning', onWarning)
    try {
      const file = path.join(tmp, 'not-a-dir')
      fs.writeFileSync(file, 'x')
      const { runs } = makeRuns({ runsLogDir: file })
      const run = runs.create({})
      runs.emit(run, 'start', {})
      runs.finish(run, 'succeeded', 0, null)
      expect(run.status).toBe('succeeded')
      expect(run.events.map((e: any) => e.event)).toEqual(['start', 'end'])
      // create, the 'start' emit, the verdict, and the 'end' (HF-20: the record says the verdict's
      // write failed, so the file is written once more).
      expect(getChatRunServiceStats(runs).stateFile).toEqual({ written: 0, failed: 4 })
      await vi.waitFor(() => expect(warnings.filter((w) => w.code === 'CHAT_RUN_LOG_ERROR')).toHaveLength(1))
      expect(warnings[0].message).toContain(path.join(file, run.id, 'state.json'))
      expect(fs.readFileSync(file, 'utf8')).toBe('x')
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('without logging no state file exists and nothing touches the filesystem (LOG-2)', () => {
    const cwd = process.cwd()
    process.chdir(tmp)
    try {
      const { runs } = makeRuns()
      const run = runs.create({ clientRequestId: 'r' })
      runs.emit(run, 'start', {})
      runs.persistState(run)
      runs.finish(run, 'failed', 1, null)
      runs.prepareRestart(run)
      expect(runs.get('11111111-1111-4111-8111-111111111111')).toBeNull()
      expect(getChatRunServiceStats(runs).stateFile).toEqual({ written: 0, failed: 0 })
      expect(fs.readdirSync(tmp)).toEqual([])
    } finally {
      process.chdir(cwd)
    }
  })
})
