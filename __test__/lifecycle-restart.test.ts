// SPEC §21 LC-1 and LC-2 across a restart: a daemon SIGKILLed mid-run, a service created right after
// create() or cancel(), the lazy hydration of get/list, the previous version's run.json, and what
// runsLogDir may hold besides runs.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { getChatRunServiceStats } from '../index.js'
import {
  fakeReq,
  fakeRes,
  fixture,
  isWindows,
  makeRuns,
  readLines,
  readStateFile,
  ROOT,
  sentIds,
  useTempDirs,
  waitFor,
} from './helpers'

const tempDir = useTempDirs('lifecycle-restart-')
let tmp: string
beforeEach(() => {
  tmp = tempDir()
})
afterEach(() => {
  vi.useRealTimers()
})

const service = (extra: Record<string, unknown> = {}) => makeRuns({ runsLogDir: tmp, ...extra })
const stateOf = readStateFile
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)
const RESTART_MESSAGE = 'Run interrupted because the daemon restarted.'

describe('LC-2: a daemon killed mid-run', () => {
  // POSIX only: it checks the state file's mode 0600, which Windows does not keep.
  it.skipIf(isWindows)(
    'a new service finds the SIGKILLed run failed/DAEMON_RESTARTED with its two records, in the journal and run.events; the file is rewritten',
    async () => {
      const child = spawn(process.execPath, [fixture('lifecycle-worker.cjs'), tmp], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try {
        let out = ''
        child.stdout.setEncoding('utf8')
        const ids = await new Promise<{ done: string; active: string }>((resolve, reject) => {
          child.stdout.on('data', (chunk: string) => {
            out += chunk
            if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]))
          })
          child.once('exit', () => reject(new Error(`worker exited early: ${out}`)))
        })
        expect(ids, out).toHaveProperty('active')
        expect(stateOf(tmp, ids.active).status).toBe('running')
        child.kill('SIGKILL')
        await exited
        // A kill in the middle of a state write leaves its temp file, named after the dead
        // daemon's pid (LC-1: no leftover may remain once the run is hydrated).
        const leftover = `state.json.${child.pid}.0f0e0d0c-0b0a-4908-8706-050403020100.tmp`
        fs.writeFileSync(path.join(tmp, ids.active, leftover), '{"status":"running"}\n')

        const onTerminal = vi.fn()
        const { runs, sse } = service({ maxEvents: 10, onTerminal })
        // The daemon's own suite: a fresh service on a used data dir lists nothing.
        expect(runs.list()).toEqual([])
        expect(getChatRunServiceStats(runs).hydration).toEqual({ indexed: 2, hydrated: 0, skipped: 0, unreadable: 0 })

        const active = runs.get(ids.active)
        expect(active).toMatchObject({
          id: ids.active,
          status: 'failed',
          errorCode: 'DAEMON_RESTARTED',
          error: RESTART_MESSAGE,
          exitCode: 1,
          signal: null,
          terminalTrigger: 'daemon_restart',
          terminalRecoveryReason: 'daemon_restart',
          conversationId: 'c-active',
          clientRequestId: 'req-active',
        })
        expect(active.terminalAt).toEqual(expect.any(Number))
        expect(onTerminal).toHaveBeenCalledExactlyOnceWith(active, 'failed', active.terminalAt)
        // run.events: the journal's last maxEvents records, then the two added ones.
        expect(active.events.map((e: any) => e.id)).toEqual(range(114, 123))
        expect(active.events.slice(-2)).toEqual([
          {
            id: 122,
            event: 'error',
            data: { error: { code: 'DAEMON_RESTARTED', message: RESTART_MESSAGE, retryable: true } },
            timestamp: active.terminalAt,
          },
          {
            id: 123,
            event: 'end',
            data: {
              code: 1,
              signal: null,
              status: 'failed',
              terminalAt: active.terminalAt,
              resumable: false,
              endedWithUnfinishedWork: false,
            },
            timestamp: active.terminalAt,
          },
        ])
        const journal = readLines(active.eventsLogPath).map((line) => JSON.parse(line))
        expect(journal.map((r) => r.id)).toEqual(range(1, 123))
        expect(journal.slice(-2)).toEqual(active.events.slice(-2))
        expect(stateOf(tmp, ids.active)).toMatchObject({
          schemaVersion: 1,
          id: ids.active,
          status: 'failed',
          errorCode: 'DAEMON_RESTARTED',
          error: RESTART_MESSAGE,
          terminalTrigger: 'daemon_restart',
          terminalRecoveryReason: 'daemon_restart',
          terminalAt: active.terminalAt,
        })
        expect(fs.statSync(path.join(tmp, ids.active, 'state.json')).mode & 0o777).toBe(0o600)
        // Replay beyond the history reads the journal (IMP-3); the stream ends (terminal).
        runs.stream(active, fakeReq(undefined, '0'), fakeRes())
        expect(sentIds(sse[0])).toEqual(range(1, 123))

        const done = runs.get(ids.done)
        expect(done).toMatchObject({ status: 'succeeded', exitCode: 0, agentId: 'agent-x', terminalTrigger: null })
        expect(runs.list()).toEqual([done, active])
        expect(runs.list({ projectId: 'p' })).toEqual([done, active])
        expect(runs.list({ status: 'active' })).toEqual([])
        expect(getChatRunServiceStats(runs).hydration).toEqual({ indexed: 2, hydrated: 2, skipped: 0, unreadable: 0 })

        // A third service marks nothing twice.
        const again = service().runs
        expect(again.get(ids.active)).toMatchObject({ status: 'failed', terminalAt: active.terminalAt })
        expect(readLines(active.eventsLogPath)).toHaveLength(123)
        expect(fs.readdirSync(tmp).sort()).toEqual([ids.done, ids.active].sort())
        expect(fs.readdirSync(path.join(tmp, ids.active)).sort()).toEqual(['events.jsonl', 'state.json'])
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
        await exited
      }
    },
  )
})

describe('LC-1: the state file is on disk when the call returns', () => {
  it('a new service created right after create() finds the run: 1,000 tries, zero misses', () => {
    let misses = 0
    for (let i = 0; i < 1000; i++) {
      const dir = path.join(tmp, String(i))
      const run = makeRuns({ runsLogDir: dir }).runs.create({ projectId: 'p' })
      const found = makeRuns({ runsLogDir: dir }).runs.get(run.id)
      if (found?.id !== run.id || found.status !== 'failed' || found.errorCode !== 'DAEMON_RESTARTED') misses++
    }
    expect(misses).toBe(0)
  })

  it('a new service created right after await cancel() (no child) finds the run canceled: 1,000 tries, zero misses', async () => {
    let misses = 0
    for (let i = 0; i < 1000; i++) {
      const dir = path.join(tmp, String(i))
      const { runs } = makeRuns({ runsLogDir: dir })
      const run = runs.create({ projectId: 'p' })
      await runs.cancel(run, 'user_stop')
      const found = makeRuns({ runsLogDir: dir }).runs.get(run.id)
      if (found?.status !== 'canceled' || found.signal !== 'SIGTERM' || found.cancelOrigin !== 'user_stop') misses++
    }
    expect(misses).toBe(0)
  })
})

describe('LC-2: lazy hydration', () => {
  it('construction loads no run; get() and list({ projectId }) hydrate, in creation order, as the same objects afterwards', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_000)
    const first = service().runs
    const a = first.create({ projectId: 'p', conversationId: 'c' })
    first.finish(a, 'succeeded', 0, null)
    vi.setSystemTime(2_000)
    const b = first.create({ projectId: 'q' })
    first.fail(b, 'E', 'broken')
    vi.setSystemTime(3_000)
    const c = first.create({ projectId: 'p' })
    first.finish(c, 'canceled', null, 'SIGTERM')

    vi.setSystemTime(4_000)
    const { runs } = service()
    expect(runs.list()).toEqual([])
    expect(runs.list({ conversationId: 'c' })).toEqual([])
    const mine = runs.create({ projectId: 'p' })
    const project = runs.list({ projectId: 'p' })
    expect(project.map((r: any) => r.id)).toEqual([a.id, c.id, mine.id])
    expect(project[2]).toBe(mine)
    expect(runs.list({ projectId: 'p' })).toEqual(project)
    expect(runs.get(a.id)).toBe(project[0])
    expect(runs.list({ conversationId: 'c' })).toEqual([project[0]])
    expect(runs.list()).toEqual(project)
    const hydratedB = runs.get(b.id)
    expect(hydratedB).toMatchObject({ status: 'failed', error: 'broken', errorCode: 'E', exitCode: 1 })
    expect(runs.list()).toEqual([project[0], hydratedB, project[1], mine])
    // A hydrated run is terminal, has no child and a closed log.
    expect(hydratedB.child).toBeNull()
    runs.emit(hydratedB, 'late', 1)
    expect(getChatRunServiceStats(runs).log.notPersisted.afterClose).toBe(1)
  })

  it('get() after TTL eviction brings the run back from disk: the same object while the host holds it', async () => {
    vi.useFakeTimers()
    const { runs } = service({ ttlMs: 1000 })
    const run = runs.create({ projectId: 'p' })
    runs.emit(run, 'agent', { n: 1 })
    runs.finish(run, 'succeeded', 0, null)
    vi.advanceTimersByTime(1000)
    expect(runs.list()).toEqual([])
    expect(runs.get(run.id)).toBe(run)
    expect(runs.list()).toEqual([run])
    // ... and evicted again after ttlMs.
    vi.advanceTimersByTime(1000)
    expect(runs.list()).toEqual([])
    expect(runs.list({ projectId: 'p' })).toEqual([run])
    // Another service over the same directory gets its own object, from the files.
    vi.useRealTimers()
    expect(await waitFor(() => readLines(run.eventsLogPath).length === 2)).toBe(true)
    const other = service().runs.get(run.id)
    expect(other).not.toBe(run)
    expect(other).toMatchObject({ id: run.id, status: 'succeeded', projectId: 'p' })
    expect(other.events.map((e: any) => e.event)).toEqual(['agent', 'end'])
  })

  it('an id without the shape of a run id is answered null without reaching the filesystem', () => {
    const logs = path.join(tmp, 'logs')
    fs.mkdirSync(logs)
    // Valid-looking state files at the very paths the hostile ids would name.
    const plant = (relative: string, id: string) => {
      const dir = path.join(logs, relative)
      fs.mkdirSync(dir, { recursive: true })
      fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ schemaVersion: 1, id, status: 'succeeded' }))
    }
    const outside = '11111111-1111-4111-8111-111111111111'
    plant(path.join('..', 'outside', outside), `../outside/${outside}`)
    plant('not-a-uuid', 'not-a-uuid')
    plant('x..y', 'x..y')
    const { runs } = makeRuns({ runsLogDir: logs })
    for (const id of [
      `../outside/${outside}`,
      'not-a-uuid',
      'x..y',
      '../../etc',
      '/',
      '\\',
      '..',
      'a\u0000b',
      `${outside}/`,
      `${outside}\\x`,
      `${outside}\u0000`,
      outside.toUpperCase().replace('-4', '/4'),
    ]) {
      expect(runs.get(id), JSON.stringify(id)).toBeNull()
    }
    // The run-shaped id is looked up (and found missing: no file under logs/).
    expect(runs.get(outside)).toBeNull()
    expect(getChatRunServiceStats(runs).hydration).toEqual({ indexed: 0, hydrated: 0, skipped: 2, unreadable: 0 })
  })

  it('garbage in runsLogDir never throws, never hides a valid run, and is counted as skipped', () => {
    const valid = service().runs.create({ projectId: 'p' })
    const uuid = (n: number) =>
      `${String(n).repeat(8)}-${String(n).repeat(4)}-4${String(n).repeat(3)}-8${String(n).repeat(3)}-${String(n).repeat(12)}`
    const write = (name: string, file: string, text: string) => {
      fs.mkdirSync(path.join(tmp, name), { recursive: true })
      fs.writeFileSync(path.join(tmp, name, file), text)
    }
    fs.writeFileSync(path.join(tmp, 'README.txt'), 'a foreign file')
    fs.mkdirSync(path.join(tmp, uuid(1))) // an empty directory
    write(uuid(2), 'events.jsonl', '{"id":1,"event":"a","data":1,"timestamp":1}\n') // a journal, no state
    write(uuid(3), 'state.json', '{"schemaVersion":1,"id":"') // half-written
    write(uuid(4), 'state.json', 'not json at all')
    write(uuid(5), 'state.json', JSON.stringify({ schemaVersion: 1, id: uuid(6), status: 'failed' })) // foreign
    write(uuid(7), 'state.json', JSON.stringify({ schemaVersion: 2, id: uuid(7), status: 'failed' }))
    write(uuid(8), 'state.json', JSON.stringify([1, 2]))
    write(uuid(9), 'run.json', JSON.stringify({ version: 7, id: uuid(9) }))
    write('not-a-run', 'state.json', JSON.stringify({ schemaVersion: 1, id: 'not-a-run' }))
    fs.mkdirSync(path.join(tmp, uuid(3), 'state.json.123.abc.tmp'))

    let runs: any
    expect(() => {
      runs = service().runs
    }).not.toThrow()
    expect(getChatRunServiceStats(runs).hydration).toEqual({ indexed: 1, hydrated: 0, skipped: 10, unreadable: 0 })
    for (let n = 1; n <= 9; n++) expect(runs.get(uuid(n))).toBeNull()
    expect(runs.list({ projectId: 'p' }).map((r: any) => r.id)).toEqual([valid.id])
    expect(runs.get(valid.id)).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED' })
    // Each invalid entry counts once, however often it is asked for.
    expect(getChatRunServiceStats(runs).hydration).toEqual({ indexed: 1, hydrated: 1, skipped: 10, unreadable: 0 })
  })

  it('entries the host removes count as skipped no more: garbage cleaned up, run directories deleted while the scan reads them', () => {
    const old = service().runs
    const ids = range(1, 600).map(() => old.create({ projectId: 'p' }).id)
    for (const n of range(1, 5)) fs.writeFileSync(path.join(tmp, `junk-${n}.txt`), 'a foreign file')
    const runs = service().runs
    // The host's retention removes every other run while the construction scan may be reading it
    // (a directory seen half-deleted, without its state file, is no invalid entry either).
    const removed = ids.filter((_, i) => i % 2 === 0)
    for (const id of removed) fs.rmSync(path.join(tmp, id), { recursive: true })
    for (const n of range(1, 3)) fs.rmSync(path.join(tmp, `junk-${n}.txt`))
    const { hydration } = getChatRunServiceStats(runs)
    expect(hydration.skipped).toBe(2)
    expect(hydration.unreadable).toBe(0)
    const kept = ids.filter((_, i) => i % 2 === 1)
    // (Runs created in the same millisecond come back in id order: compared as sets.)
    expect(
      runs
        .list({ projectId: 'p' })
        .map((r: any) => r.id)
        .sort(),
    ).toEqual(kept.sort())
    for (const id of removed.slice(0, 20)) expect(runs.get(id)).toBeNull()
  })

  // A plain open of a FIFO waits for its other end: before the core refused anything but
  // regular files, this construction never returned. POSIX only (mkfifo).
  it.skipIf(isWindows)(
    'a FIFO or a directory in place of a state file or a journal never blocks: skipped, or the run hydrates without its journal',
    async () => {
      const uuid = (n: number) =>
        `${n}${n}${n}${n}${n}${n}${n}${n}-${n}${n}${n}${n}-4${n}${n}${n}-8${n}${n}${n}-${String(n).repeat(12)}`
      const mkfifo = (file: string) => expect(spawnSync('mkfifo', [file]).status).toBe(0)
      for (const n of [1, 2, 3]) fs.mkdirSync(path.join(tmp, uuid(n)))
      mkfifo(path.join(tmp, uuid(1), 'state.json'))
      fs.mkdirSync(path.join(tmp, uuid(2), 'state.json'))
      // A run the previous process left running, whose journal is now a FIFO.
      const state = { schemaVersion: 1, id: uuid(3), projectId: 'p', status: 'running', createdAt: 1, updatedAt: 1 }
      fs.writeFileSync(path.join(tmp, uuid(3), 'state.json'), JSON.stringify(state))
      mkfifo(path.join(tmp, uuid(3), 'events.jsonl'))
      const warnings: string[] = []
      // Only this test's directory: a service of an earlier test whose directory was already
      // removed may still report its own log error while this one runs.
      const onWarning = (w: Error & { code?: string }) => {
        if (w.message.includes(tmp)) warnings.push(`${w.code}: ${w.message}`)
      }
      process.on('warning', onWarning)
      try {
        const { runs } = service()
        expect(getChatRunServiceStats(runs).hydration).toEqual({ indexed: 1, hydrated: 0, skipped: 2, unreadable: 0 })
        expect(runs.get(uuid(1))).toBeNull()
        expect(runs.get(uuid(2))).toBeNull()
        const run = runs.get(uuid(3))
        expect(run).toMatchObject({ status: 'failed', errorCode: 'DAEMON_RESTARTED' })
        expect(run.events.map((e: any) => [e.id, e.event])).toEqual([
          [1, 'error'],
          [2, 'end'],
        ])
        expect(runs.list({ projectId: 'p' })).toEqual([run])
        // The two records could not be appended to a FIFO: reported, and the flush barrier of
        // shutdownActive still resolves.
        await runs.shutdownActive()
        await waitFor(() => warnings.length > 0)
        expect(warnings).toEqual([expect.stringContaining(`CHAT_RUN_LOG_ERROR: `)])
        expect(warnings[0]).toContain(path.join(uuid(3), 'events.jsonl'))
        expect(fs.statSync(path.join(tmp, uuid(3), 'events.jsonl')).isFIFO()).toBe(true)
      } finally {
        process.off('warning', onWarning)
      }
    },
  )

  it('a partial last journal line is terminated before the two records are appended', async () => {
    const first = service().runs
    const run = first.create({})
    first.emit(run, 'start', {})
    first.emit(run, 'agent', { n: 1 })
    expect(await waitFor(() => readLines(run.eventsLogPath).length === 2)).toBe(true)
    // The daemon died while writing line 3.
    fs.appendFileSync(run.eventsLogPath, '{"id":3,"event":"ag')
    const hydrated = service().runs.get(run.id)
    expect(hydrated.events.map((e: any) => [e.id, e.event])).toEqual([
      [1, 'start'],
      [2, 'agent'],
      [3, 'error'],
      [4, 'end'],
    ])
    const text = fs.readFileSync(run.eventsLogPath, 'utf8')
    expect(text.split('\n')[2]).toBe('{"id":3,"event":"ag')
    expect(
      readLines(run.eventsLogPath)
        .slice(3)
        .map((l) => JSON.parse(l)),
    ).toEqual(hydrated.events.slice(2))
    first.drop(run)
  })
})

describe('LC-2, LC-3: a process out of file descriptors', () => {
  // POSIX only: the limit comes from the shell's ulimit.
  it.skipIf(isWindows)(
    'nothing read for want of a descriptor is judged: no run is skipped or lost, createOrReuse throws instead of starting a request twice, and every lookup works again once descriptors are free',
    () => {
      const child = spawnSync(
        'bash',
        ['-c', 'ulimit -n 64 && exec "$0" "$1" "$2"', process.execPath, fixture('fd-exhaustion.cjs'), tmp],
        { encoding: 'utf8', timeout: 60_000 },
      )
      expect(child.status, child.stderr).toBe(0)
      const { ids, exhausted, released } = JSON.parse(child.stdout)
      const unreadable = { threw: 'ERR_CHAT_RUN_UNREADABLE' }
      // A service constructed while no descriptor was free: its scan read nothing.
      expect(exhausted.during).toMatchObject({
        get: null,
        list: { length: 0 },
        reuse: unreadable,
        // (It cannot tell whether a run has this key either.)
        fresh: unreadable,
        hydration: { indexed: 0, hydrated: 0, skipped: 0 },
      })
      expect(exhausted.during.hydration.unreadable).toBeGreaterThan(0)
      // One constructed before: its index is whole, the runs' files cannot be read.
      expect(exhausted.before).toMatchObject({
        get: null,
        reuse: unreadable,
        fresh: { kind: 'created' },
        hydration: { indexed: 10, hydrated: 0, skipped: 0 },
      })
      // Descriptors free again: the same services find every run.
      for (const runs of [released.during, released.before]) {
        expect(runs.get).toEqual({ id: ids[1], status: 'succeeded' })
        expect(runs.reuse).toEqual({ kind: 'reused', id: ids[2] })
        expect(runs.hydration.skipped).toBe(0)
      }
      expect(released.during.list).toEqual({ length: 10 })
      expect(released.before.fresh).toEqual({ kind: 'reused', id: exhausted.before.fresh.id })
      expect(child.stderr).toContain('CHAT_RUN_READ_ERROR')
      expect(child.stderr).toContain('Too many open files')
    },
  )
})

describe('LC-1: the previous version of this package (run.json)', () => {
  it('a runsLogDir it left hydrates: verdicts from its logs, the interrupted run failed with a state file written, run.json left as it was', () => {
    const fixtureRuns = path.join(ROOT, 'crates', 'core', 'tests', 'fixtures', 'snapshot-v1', 'runs')
    fs.cpSync(fixtureRuns, tmp, { recursive: true })
    const { runs } = service()
    expect(runs.list()).toEqual([])
    const project = runs.list({ projectId: 'proj-1' })
    expect(project.map((r: any) => [r.id, r.status, r.errorCode])).toEqual([
      ['51d0e635-c245-4563-803d-e9252490a464', 'succeeded', 'E_BOOM'],
      ['f83c364a-81da-4303-a5cc-be3c46422dcd', 'failed', 'DAEMON_RESTARTED'],
    ])
    expect(project[0]).toMatchObject({
      assistantMessageId: 'am-1',
      clientRequestId: 'cr-1',
      agentId: 'ag-1',
      pluginId: 'pl-1',
      error: 'boom',
      mediaExecution: { mode: 'question' },
    })
    expect(runs.statusBody(project[0]).toolBundle).toEqual({
      mcpServers: [{ id: 's1', label: 'Search', transport: 'http', enabled: true, authMode: 'oauth' }],
    })
    expect(project[1].cancelRequested).toBe(true)
    expect(project[1].events.map((e: any) => e.event)).toEqual(['stdout', 'stdout', 'error', 'end'])
    const interrupted = path.join(tmp, project[1].id)
    expect(fs.readdirSync(interrupted).sort()).toEqual(['events.jsonl', 'run.json', 'state.json'])
    expect(fs.readFileSync(path.join(interrupted, 'run.json'), 'utf8')).toBe(
      fs.readFileSync(path.join(fixtureRuns, project[1].id, 'run.json'), 'utf8'),
    )
    expect(runs.get('2cc18791-ff17-4bc7-a6cf-1248bd434fd3')).toMatchObject({ status: 'failed', signal: 'SIGKILL' })
    expect(runs.get('ad5e83e0-c75c-4f97-9f26-2453429425ac')).toMatchObject({ status: 'canceled' })
  })

  it("a file's tool bundle is summarized again: whatever a crafted run.json or state.json holds, only the summary's keys reach the run and its status body", () => {
    const secrets = {
      mcpServers: [
        {
          id: 's1',
          transport: 'stdio',
          enabled: true,
          command: 'node',
          args: ['--token=SECRET-1'],
          env: { KEY: 'SECRET-2' },
        },
        {
          id: 's2',
          transport: 'http',
          url: 'https://user:SECRET-3@example.test/',
          headers: { auth: 'SECRET-4' },
          label: ['SECRET-6'],
          authMode: { env: { KEY: 'SECRET-7' } },
        },
        { id: { token: 'SECRET-8' }, transport: 'stdio' },
      ],
      extra: 'SECRET-5',
    }
    const legacy = '6f1d2c3b-4a59-4e68-8f70-1a2b3c4d5e6f'
    fs.mkdirSync(path.join(tmp, legacy))
    fs.writeFileSync(
      path.join(tmp, legacy, 'run.json'),
      JSON.stringify({
        version: 1,
        id: legacy,
        seq: 1,
        projectId: 'p',
        conversationId: null,
        status: 'succeeded',
        createdAt: 1,
        updatedAt: 2,
        exitCode: 0,
        signal: null,
        error: null,
        errorCode: null,
        cancelRequested: false,
        nextEventId: 1,
        meta: {
          ids: {},
          mediaExecution: { mode: 'enabled', providers: { openai: { apiKey: 'SECRET-9' } } },
          toolBundle: secrets,
        },
      }),
    )
    const { runs } = service()
    const created = runs.create({ projectId: 'p' })
    runs.finish(created, 'succeeded', 0, null)
    const statePath = path.join(tmp, created.id, 'state.json')
    fs.writeFileSync(
      statePath,
      JSON.stringify({
        ...JSON.parse(fs.readFileSync(statePath, 'utf8')),
        toolBundle: secrets,
        mediaExecution: { mode: 'question', providers: { x: { apiKey: 'SECRET-9' } } },
      }),
    )
    const later = service().runs
    for (const id of [legacy, created.id]) {
      const run = later.get(id)
      const text = JSON.stringify([run.toolBundle, later.statusBody(run)])
      for (const secret of [
        'SECRET-1',
        'SECRET-2',
        'SECRET-3',
        'SECRET-4',
        'SECRET-5',
        'SECRET-6',
        'SECRET-7',
        'SECRET-8',
        'SECRET-9',
        '"command"',
        '"url"',
      ])
        expect(text).not.toContain(secret)
      expect(later.statusBody(run).toolBundle).toEqual({
        mcpServers: [
          { id: 's1', transport: 'stdio', enabled: true },
          { id: 's2', transport: 'http', enabled: true },
        ],
      })
    }
  })
})
