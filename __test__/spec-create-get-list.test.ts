// SPEC §6 create (CRE-1..CRE-5, IMP-12 meta, LC-3's two keys), get (GET-1) and list (LST-1..LST-3).
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  EXAMPLE_TOOL_BUNDLE_SERVERS,
  exampleToolBundle,
  ID_FIELDS,
  isWindows,
  makeRuns,
  META_KEYS,
  useTempDirs,
  UUID_V4,
} from './helpers'

const tempDir = useTempDirs('spec-create-get-list-')

afterEach(() => {
  vi.useRealTimers()
  vi.restoreAllMocks()
})

describe('§6 create / get / list (CRE, GET, LST)', () => {
  it('CRE-1/IMP-12: undefined, null and non-object meta are treated as {}', () => {
    const { runs } = makeRuns()
    const fnMeta = Object.assign(() => {}, { projectId: 'p' })
    for (const meta of [undefined, null, 'projectId', 42, true, fnMeta]) {
      let run: any
      expect(() => {
        run = runs.create(meta)
      }).not.toThrow()
      expect(run.projectId).toBeNull()
      expect(run.conversationId).toBeNull()
      expect(run.status).toBe('queued')
      expect(run.mediaExecution).toEqual({ mode: 'enabled' })
      expect(run.toolBundle).toEqual({ mcpServers: [] })
    }
    expect(runs.create().id).toMatch(UUID_V4)
  })

  it('CRE-1/LC-3/HF-1/HF-8/HF-15: only the twenty-one meta keys are read', () => {
    const { runs } = makeRuns()
    const read = new Set<string>()
    const target = { projectId: 'p', status: 'running', id: 'forged', events: [1], extra: 'x', nextEventId: 9 }
    const meta = new Proxy(target, {
      get(t, key, receiver) {
        if (typeof key === 'string') read.add(key)
        return Reflect.get(t, key, receiver)
      },
    })
    const run = runs.create(meta)
    expect([...read].filter((k) => !META_KEYS.has(k))).toEqual([])
    expect(read.has('projectId')).toBe(true)
    expect(run.projectId).toBe('p')
    expect(run.id).not.toBe('forged')
    expect(run.status).toBe('queued')
    expect(run.events).toEqual([])
    expect(run.nextEventId).toBe(1)
    expect('extra' in run).toBe(false)
  })

  // LC-1 amends CRE-2: with logging on, create writes the run's state file (and nothing else).
  it('CRE-2/LC-1: create registers the run in insertion order, emits nothing, starts no timer; the only file is its state file', () => {
    vi.useFakeTimers()
    const dir = tempDir()
    const { runs } = makeRuns({ runsLogDir: dir })
    const a = runs.create()
    const b = runs.create()
    const c = runs.create()
    expect(vi.getTimerCount()).toBe(0)
    expect(runs.list()).toEqual([a, b, c])
    expect(runs.get(b.id)).toBe(b)
    expect(a.events).toEqual([])
    expect(a.nextEventId).toBe(1)
    expect(fs.readdirSync(dir).sort()).toEqual([a.id, b.id, c.id].sort())
    for (const run of [a, b, c]) expect(fs.readdirSync(path.join(dir, run.id))).toEqual(['state.json'])
    expect(new Set([a.id, b.id, c.id]).size).toBe(3)
    // Without logging nothing is touched (LOG-2).
    const cwd = process.cwd()
    const empty = tempDir()
    process.chdir(empty)
    try {
      makeRuns().runs.create()
      expect(fs.readdirSync(empty)).toEqual([])
    } finally {
      process.chdir(cwd)
    }
  })

  it('CRE-3: the seven id fields are stored verbatim when non-empty strings (not trimmed), else null', () => {
    const { runs } = makeRuns()
    const run = runs.create({
      projectId: '  ',
      conversationId: ' c ',
      assistantMessageId: 'am',
      clientRequestId: 'cr',
      agentId: 'claude',
      appliedPluginSnapshotId: '\t',
      pluginId: 'plug',
    })
    expect(run.projectId).toBe('  ')
    expect(run.conversationId).toBe(' c ')
    expect(run.assistantMessageId).toBe('am')
    expect(run.clientRequestId).toBe('cr')
    expect(run.agentId).toBe('claude')
    expect(run.appliedPluginSnapshotId).toBe('\t')
    expect(run.pluginId).toBe('plug')
    const bad = runs.create({
      projectId: '',
      conversationId: 5,
      assistantMessageId: null,
      clientRequestId: ['x'],
      agentId: new String('x'),
      appliedPluginSnapshotId: {},
      pluginId: true,
    })
    for (const f of ID_FIELDS) {
      expect(bad[f], f).toBeNull()
    }
  })

  // POSIX only: it expects `/` separators in the joined path.
  it.skipIf(isWindows)(
    'CRE-4: eventsLogPath is path.join(runsLogDir, id, "events.jsonl"), relative paths stay relative',
    () => {
      const dir = tempDir()
      const abs = makeRuns({ runsLogDir: dir }).runs.create()
      expect(abs.eventsLogPath).toBe(path.join(dir, abs.id, 'events.jsonl'))
      // A relative runsLogDir is resolved against the cwd when a file is written (LC-1: the state
      // file, at create).
      const cwd = process.cwd()
      const work = tempDir()
      process.chdir(work)
      try {
        const rel = makeRuns({ runsLogDir: 'some/./dir/../logs/' }).runs.create()
        expect(rel.eventsLogPath).toBe(path.join('some/./dir/../logs/', rel.id, 'events.jsonl'))
        expect(rel.eventsLogPath).toBe(`some/logs/${rel.id}/events.jsonl`)
        expect(fs.readdirSync(path.join(work, 'some', 'logs', rel.id))).toEqual(['state.json'])
      } finally {
        process.chdir(cwd)
      }
      expect(makeRuns().runs.create().eventsLogPath).toBeNull()
    },
  )

  it('CRE-5: mediaExecution and toolBundle are normalized (§12/§13), secrets kept in toolBundle', () => {
    const { runs } = makeRuns()
    const media = { mode: 'question', allowedSurfaces: ['video', 'image', 'video'], extra: 1 }
    const run = runs.create({
      mediaExecution: media,
      toolBundle: exampleToolBundle(),
    })
    expect(run.mediaExecution).toEqual({ mode: 'question', allowedSurfaces: ['video', 'image'] })
    expect(Object.keys(run.mediaExecution)).toEqual(['mode', 'allowedSurfaces'])
    expect(run.mediaExecution).not.toBe(media)
    expect(run.toolBundle).toEqual({ mcpServers: EXAMPLE_TOOL_BUNDLE_SERVERS })
    const invalid = runs.create({ mediaExecution: { mode: 'disabled', allowedSurfaces: ['gif'] }, toolBundle: 'x' })
    expect(invalid.mediaExecution).toEqual({ mode: 'enabled' })
    expect(invalid.toolBundle).toEqual({ mcpServers: [] })
  })

  it('GET-1: get(id) returns the registered run for a strictly equal key, otherwise null (never undefined)', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    expect(runs.get(run.id)).toBe(run)
    for (const key of ['nope', '', undefined, null, 42, new String(run.id), run.id.toUpperCase(), ` ${run.id}`]) {
      expect(runs.get(key)).toBeNull()
    }
    expect((runs.get as any)()).toBeNull()
    runs.drop(run)
    expect(runs.get(run.id)).toBeNull()
  })

  it('LST-1/IMP-12: list(undefined), list() and list(null) are list({})', () => {
    const { runs } = makeRuns()
    const a = runs.create()
    const b = runs.create()
    expect(runs.list()).toEqual([a, b])
    expect(runs.list(undefined)).toEqual([a, b])
    expect(() => runs.list(null)).not.toThrow()
    expect(runs.list(null)).toEqual([a, b])
  })

  it('LST-2: a new Array in creation order, filtered by projectId, conversationId and status', () => {
    const { runs } = makeRuns()
    const a = runs.create({ projectId: 'p1', conversationId: 'c1' })
    const b = runs.create({ projectId: 'p1', conversationId: 'c2' })
    const c = runs.create({ projectId: 'p2', conversationId: 'c1' })
    const d = runs.create({})
    b.status = 'running'
    runs.finish(c, 'succeeded', 0, null)
    d.status = 'weird'
    const all = runs.list()
    expect(all).toEqual([a, b, c, d])
    expect(runs.list()).not.toBe(all)
    all.pop()
    expect(runs.list()).toHaveLength(4)
    const ids = (xs: any[]) => xs.map((r) => r.id)
    expect(ids(runs.list({ projectId: 'p1' }))).toEqual(ids([a, b]))
    expect(ids(runs.list({ conversationId: 'c1' }))).toEqual(ids([a, c]))
    expect(ids(runs.list({ projectId: 'p1', conversationId: 'c2' }))).toEqual(ids([b]))
    expect(ids(runs.list({ status: 'active' }))).toEqual(ids([a, b, d]))
    expect(ids(runs.list({ status: 'queued' }))).toEqual(ids([a]))
    expect(ids(runs.list({ status: 'running' }))).toEqual(ids([b]))
    expect(ids(runs.list({ status: 'succeeded' }))).toEqual(ids([c]))
    expect(ids(runs.list({ status: 'weird' }))).toEqual(ids([d]))
    expect(ids(runs.list({ status: 'nothing' }))).toEqual([])
    expect(ids(runs.list({ projectId: 'p1', status: 'active' }))).toEqual(ids([a, b]))
    // empty strings and non-strings do not filter
    for (const f of [
      { status: '' },
      { status: 5 },
      { status: null },
      { projectId: '' },
      { projectId: 7 },
      { conversationId: ['c1'] },
      {},
    ]) {
      expect(ids(runs.list(f))).toEqual(ids([a, b, c, d]))
    }
  })

  it('LST-3: filters read the live fields', () => {
    const { runs } = makeRuns()
    const run = runs.create({ projectId: 'p' })
    run.status = 'running'
    expect(runs.list({ status: 'active' })).toEqual([run])
    run.projectId = 'q'
    expect(runs.list({ projectId: 'p' })).toEqual([])
    expect(runs.list({ projectId: 'q', status: 'active' })).toEqual([run])
    run.status = 'canceled'
    expect(runs.list({ status: 'active' })).toEqual([])
    run.status = 'queued'
    expect(runs.list({ status: 'active' })).toEqual([run])
  })
})
