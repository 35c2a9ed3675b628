// Bad input: nothing a host can pass makes the service throw where the SPEC says it must not,
// corrupt the JSONL log, or lose the order of ids. Each block runs with logging disabled and
// with a temporary log directory where that matters (LOG-2 vs §16).
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createChatRunService, getChatRunServiceStats } from '../index.js'
import {
  baseOptions,
  fakeClient,
  fakeReq,
  makeRuns,
  isWindows,
  notLinux,
  sleep,
  useTempDirs,
  waitFor,
  type FakeClient,
} from './helpers'

// Every service a test creates, so afterEach can flush its log writer (shutdownActive is the
// barrier) before deleting the temp dir it writes into.
const created: any[] = []

/** A service logging to `runsLogDir` (or not, for null); `newClient` as in makeRuns. */
function createRuns(runsLogDir: string | null, newClient?: () => FakeClient) {
  const { runs } = makeRuns({ runsLogDir }, newClient)
  created.push(runs)
  return runs
}

/** Reads a run's JSONL log after the service's flush barrier (IMP-4: shutdownActive). */
async function logLines(runs: any, run: any): Promise<string[]> {
  await runs.shutdownActive()
  const text = fs.readFileSync(run.eventsLogPath, 'utf8')
  expect(text.endsWith('\n')).toBe(true)
  return text.slice(0, -1).split('\n')
}

const tempDir = useTempDirs('chat-run-bad-input-')
let tmpDir: string
beforeEach(() => {
  tmpDir = tempDir()
})
// Registered after useTempDirs, so it runs before the directory is removed (hooks run as a stack).
afterEach(async () => {
  await Promise.allSettled(created.splice(0).map((runs) => runs.shutdownActive({ graceMs: 1 })))
})

const MODES = [
  { mode: 'logging disabled', logged: false },
  { mode: 'logging to a temp dir', logged: true },
] as const

// --- emit: data JSON cannot represent ----------------------------------------------------------------

function cyclic() {
  const value: any = { name: 'cycle' }
  value.self = value
  return value
}

/** `throws`: JSON.stringify throws (the line is skipped, LOG-6). Otherwise it yields no data (LOG-4). */
const UNREPRESENTABLE: { kind: string; make: () => unknown; throws: boolean }[] = [
  { kind: 'a BigInt', make: () => 10n, throws: true },
  { kind: 'an object holding a BigInt', make: () => ({ n: 10n }), throws: true },
  { kind: 'a cyclic object', make: cyclic, throws: true },
  {
    kind: 'an object whose toJSON throws',
    make: () => ({
      toJSON() {
        throw new Error('nope')
      },
    }),
    throws: true,
  },
  { kind: 'a function', make: () => function data() {}, throws: false },
  { kind: 'a Symbol', make: () => Symbol('data'), throws: false },
]

describe.each(MODES)('emit with data JSON cannot represent ($mode)', ({ logged }) => {
  it.each(UNREPRESENTABLE)(
    "$kind: no throw, id order kept, clients get the caller's object, the log stays valid",
    async ({ make, throws }) => {
      const runs = createRuns(logged ? tmpDir : null)
      const run = runs.create({ projectId: 'p' })
      const client = fakeClient()
      run.clients.add(client)
      const bad = make()

      runs.emit(run, 'agent', { before: true })
      let record: any
      expect(() => {
        record = runs.emit(run, 'agent', bad)
      }).not.toThrow()
      runs.emit(run, 'agent', { after: true })

      expect(record.id).toBe(2)
      expect(record.data).toBe(bad)
      expect(client.send).toHaveBeenCalledTimes(3)
      expect(client.send.mock.calls[1][0]).toBe('agent')
      expect(client.send.mock.calls[1][1]).toBe(bad)
      expect(client.send.mock.calls[1][2]).toBe(2)
      expect(run.nextEventId).toBe(4)
      expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3])
      expect(run.events.map((e: any) => e.event)).toEqual(['agent', 'agent', 'agent'])
      expect(run.events[2].data).toEqual({ after: true })

      expect(() => runs.finish(run, 'succeeded', 0, null)).not.toThrow()
      expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3, 4])

      if (!logged) {
        expect(fs.readdirSync(tmpDir)).toEqual([])
        return
      }
      const lines = await logLines(runs, run)
      const parsed = lines.map((line) => JSON.parse(line))
      if (throws) {
        // LOG-6: only the unserializable line is skipped; the next emit and 'end' are written.
        expect(parsed.map((r) => r.id)).toEqual([1, 3, 4])
      } else {
        // LOG-4: JSON.stringify drops a function/Symbol value, so the line has no data key.
        expect(parsed.map((r) => r.id)).toEqual([1, 2, 3, 4])
        expect(Object.keys(parsed[1])).toEqual(['id', 'event', 'timestamp'])
      }
      expect(parsed.at(-1)).toMatchObject({ event: 'end', data: { status: 'succeeded' } })
      expect(parsed[0].data).toEqual({ before: true })
    },
  )

  it("an unserializable error payload still sets error/errorCode from the caller's object (§8)", () => {
    const runs = createRuns(logged ? tmpDir : null)
    const run = runs.create()
    const payload: any = { error: { message: '  boom  ', code: 'E_CYCLE' } }
    payload.error.self = payload
    expect(() => runs.emit(run, 'error', payload)).not.toThrow()
    expect(run.error).toBe('boom')
    expect(run.errorCode).toBe('E_CYCLE')
  })

  it('a 5 MB string payload round-trips into run.events and the log', async () => {
    const runs = createRuns(logged ? tmpDir : null)
    const run = runs.create()
    const big = 'x'.repeat(5 * 1024 * 1024 - 7) + 'é"\n\u2028'
    runs.emit(run, 'agent', { text: big })
    runs.emit(run, 'agent', { text: 'small' })
    expect(run.events[0].data.text).toBe(big)
    expect(run.events[1].data.text).toBe('small')
    runs.finish(run, 'succeeded', 0, null)
    if (!logged) return
    const lines = await logLines(runs, run)
    expect(lines).toHaveLength(3)
    expect(JSON.parse(lines[0]).data.text).toBe(big)
    expect(JSON.parse(lines[1]).data.text).toBe('small')
  })

  it('data whose UTF-8 size is near the 16 KiB read buffer (multi-byte characters at the edge) round-trips exactly', async () => {
    const runs = createRuns(logged ? tmpDir : null)
    const run = runs.create()
    const sent: string[] = []
    // JSON of {"t":"<pad><tail>"} is 8 bytes + pad + tail; sweep its size across 16384.
    for (const tail of ['', 'é', '☃', '😀', 'é☃😀']) {
      const tailBytes = Buffer.byteLength(tail)
      for (let size = 16376; size <= 16392; size++) {
        const text = 'x'.repeat(size - 8 - tailBytes) + tail
        sent.push(text)
        runs.emit(run, 'agent', { t: text })
      }
    }
    expect(run.events.map((e: any) => e.data.t)).toEqual(sent)
    runs.finish(run, 'succeeded', 0, null)
    if (!logged) return
    const lines = await logLines(runs, run)
    expect(lines.slice(0, -1).map((line) => JSON.parse(line).data.t)).toEqual(sent)
  })

  it('a host that invents a new event name per event (past the 1024 interned names) loses nothing', async () => {
    const runs = createRuns(logged ? tmpDir : null)
    const run = runs.create()
    const names = Array.from({ length: 1100 }, (_, i) => `evt-${i}`)
    names.forEach((name, i) => runs.emit(run, name, i % 3 === 0 ? undefined : { i }))
    const expected = names.map((name, i) => [name, i % 3 === 0 ? undefined : { i }])
    expect(run.events.map((e: any) => [e.event, e.data])).toEqual(expected)
    runs.finish(run, 'succeeded', 0, null)
    if (!logged) return
    const lines = (await logLines(runs, run)).slice(0, -1).map((line) => JSON.parse(line))
    expect(lines.map((r: any) => [r.event, r.data])).toEqual(expected)
  })

  it('odd event names never throw, keep id order and leave a valid JSONL log', async () => {
    const runs = createRuns(logged ? tmpDir : null)
    const run = runs.create()
    const client = fakeClient()
    run.clients.add(client)
    const names: unknown[] = ['', 'end', 'e'.repeat(10 * 1024), 'a\nb', '\u0000', '\uD800', 42, null, undefined, {}]
    for (const name of names) {
      expect(() => runs.emit(run, name, { name: typeof name })).not.toThrow()
    }
    // The host's own 'end' event does not finish the run (only finish() does).
    expect(run.status).toBe('queued')
    expect(client.send.mock.calls.map((c: unknown[]) => c[0])).toEqual(names)
    expect(client.send.mock.calls.map((c: unknown[]) => c[2])).toEqual(names.map((_, i) => i + 1))
    const events = run.events
    expect(events.map((e: any) => e.id)).toEqual(names.map((_, i) => i + 1))
    for (let i = 0; i < 6; i++) expect(events[i].event).toBe(names[i])
    expect(events[6].event).toBe(42)
    expect(events[7].event).toBe(null)
    expect(events[8].event).toBeUndefined()
    expect(events[9].event).toEqual({})

    runs.finish(run, 'succeeded', 0, null)
    expect(client.end).toHaveBeenCalledTimes(1)
    if (!logged) return
    const lines = await logLines(runs, run)
    const parsed = lines.map((line) => JSON.parse(line)) // every line parses
    expect(parsed.map((r) => r.id)).toEqual([...names.map((_, i) => i + 1), names.length + 1])
    for (let i = 0; i < 6; i++) expect(parsed[i].event).toBe(names[i])
    expect(parsed[6].event).toBe(42)
    expect(parsed[7].event).toBe(null)
    expect('event' in parsed[8]).toBe(false) // JSON.stringify omits an undefined event
    expect(parsed[9].event).toEqual({})
    expect(parsed.at(-1)).toMatchObject({ event: 'end', data: { status: 'succeeded' } })
  })
})

// --- create: non-string ids ------------------------------------------------------------------------------

describe('create with odd meta', () => {
  it('non-string and empty ids become null, a whitespace id is kept verbatim (CRE-3)', () => {
    const runs = createRuns(null)
    const run = runs.create({
      projectId: 42,
      conversationId: { id: 'c' },
      assistantMessageId: null,
      clientRequestId: ['x'],
      agentId: '  ',
      appliedPluginSnapshotId: '',
      pluginId: true,
    })
    expect(run.projectId).toBeNull()
    expect(run.conversationId).toBeNull()
    expect(run.assistantMessageId).toBeNull()
    expect(run.clientRequestId).toBeNull()
    expect(run.agentId).toBe('  ')
    expect(run.appliedPluginSnapshotId).toBeNull()
    expect(run.pluginId).toBeNull()
    expect(runs.statusBody(run)).toMatchObject({ projectId: null, conversationId: null, agentId: '  ' })
    expect(runs.list({ projectId: 42 as any })).toEqual([run]) // a non-string filter does not filter
  })

  it.each(MODES)(
    'a meta whose getter or trap throws: create throws that error and leaves no run, no index entry, no file ($mode)',
    async ({ logged }) => {
      const runs = createRuns(logged ? tmpDir : null)
      const late = new Proxy(
        { projectId: 'p', clientRequestId: 'req-1' },
        {
          get(target, key) {
            if (key === 'assistantMessageId') throw new Error('getter threw')
            return Reflect.get(target, key)
          },
        },
      )
      expect(() => runs.create(late)).toThrow('getter threw')
      const hasTrap = new Proxy(
        { projectId: 'p', clientRequestId: 'req-1' },
        {
          has() {
            throw new Error('has trap threw')
          },
        },
      )
      expect(() => runs.create(hasTrap)).toThrow('has trap threw')
      expect(runs.list()).toEqual([])
      expect(runs.list({ projectId: 'p' })).toEqual([])
      const { runs: counts } = getChatRunServiceStats(runs)
      expect(counts).toMatchObject({ registered: 0, active: 0 })
      await expect(runs.shutdownActive()).resolves.toBeUndefined()
      if (logged) expect(fs.readdirSync(tmpDir)).toEqual([])
      // The key was not taken by a run nobody received.
      expect(runs.createOrReuse({ projectId: 'p', clientRequestId: 'req-1' }).kind).toBe('created')
    },
  )

  it.each([undefined, null, 42, 'meta', Symbol('m'), () => {}, [1, 2]])(
    'create(%s) treats the meta as {} (CRE-1)',
    (meta) => {
      const runs = createRuns(null)
      const run = runs.create(meta as any)
      expect(run.status).toBe('queued')
      expect(run.projectId).toBeNull()
      expect(runs.get(run.id)).toBe(run)
    },
  )
})

// --- unusable runsLogDir -----------------------------------------------------------------------------------

describe('an unusable runsLogDir', () => {
  let warnings: Error[]
  const onWarning = (w: Error) => {
    if ((w as NodeJS.ErrnoException).code === 'CHAT_RUN_LOG_ERROR') warnings.push(w)
  }
  beforeEach(() => {
    warnings = []
    process.on('warning', onWarning)
  })
  afterEach(() => {
    process.off('warning', onWarning)
  })

  async function exercise(runsLogDir: string) {
    const runs = createRuns(runsLogDir)
    const runA = runs.create({ projectId: 'p' })
    const runB = runs.create({ projectId: 'p' })
    const client = fakeClient()
    runA.clients.add(client)
    const wait = runs.wait(runA)

    expect(() => {
      runs.emit(runA, 'agent', { n: 1 })
      runs.emit(runA, 'agent', { n: 2 })
      runs.emit(runB, 'agent', { n: 1 })
    }).not.toThrow()
    expect(client.send.mock.calls.map((c: unknown[]) => c[2])).toEqual([1, 2])
    expect(runA.events.map((e: any) => e.data)).toEqual([{ n: 1 }, { n: 2 }])

    expect(() => runs.finish(runA, 'succeeded', 0, null)).not.toThrow()
    expect(client.end).toHaveBeenCalledTimes(1)
    await expect(wait).resolves.toMatchObject({ status: 'succeeded' })
    runs.emit(runA, 'late', {}) // after finish: memory only (IMP-1), still no throw
    await expect(runs.shutdownActive()).resolves.toBeUndefined()
    expect(runB.status).toBe('canceled')

    await waitFor(() => warnings.length > 0, 1000)
    await sleep(200) // room for a (wrong) second warning
    expect(warnings).toHaveLength(1)
    expect(warnings[0].name).toBe('Warning')
  }

  it('a regular file: events reach clients and memory, one CHAT_RUN_LOG_ERROR warning', async () => {
    const file = path.join(tmpDir, 'not-a-dir')
    fs.writeFileSync(file, 'x')
    await exercise(file)
    expect(fs.readFileSync(file, 'utf8')).toBe('x')
  })

  // Linux only: elsewhere there is no /proc, and Windows would create C:\proc.
  it.skipIf(notLinux)('a path under /proc (nobody can mkdir there): same, one warning per service', async () => {
    await exercise('/proc/chat-run-service-no-such-dir/logs')
    // A second service reports its own first failure once more.
    warnings = []
    await exercise('/proc/chat-run-service-no-such-dir/logs')
  })

  // POSIX only: Windows ignores the mode bits of mkdirSync, so the directory stays writable.
  it.skipIf(process.getuid?.() === 0 || isWindows)(
    'a read-only directory (skipped as root: permission bits do not stop root)',
    async () => {
      const dir = path.join(tmpDir, 'ro')
      fs.mkdirSync(dir, 0o500)
      try {
        await exercise(dir)
      } finally {
        fs.chmodSync(dir, 0o700)
      }
    },
  )
})

// --- stream: odd cursors ---------------------------------------------------------------------------------

describe.each(MODES)('stream with odd cursors ($mode)', ({ logged }) => {
  let lastClient: FakeClient | null = null
  beforeEach(() => {
    lastClient = null
  })

  // createRuns' factory builds a fresh client per stream(); capture it.
  function createRunsCapturing(runsLogDir: string | null) {
    return createRuns(runsLogDir, () => (lastClient = fakeClient()))
  }

  function streamIds(req: unknown): { ids: number[]; client: FakeClient; res: { on: ReturnType<typeof vi.fn> } } {
    const runs = createRunsCapturing(logged ? tmpDir : null)
    const run = runs.create()
    runs.emit(run, 'agent', { n: 1 })
    runs.emit(run, 'agent', { n: 2 })
    runs.emit(run, 'agent', { n: 3 })
    runs.finish(run, 'succeeded', 0, null)
    const res = { on: vi.fn() }
    let result: unknown = 'not called'
    expect(() => {
      result = runs.stream(run, req, res)
    }).not.toThrow()
    expect(result).toBeUndefined()
    const client = lastClient!
    return { ids: client.send.mock.calls.map((c: unknown[]) => c[2] as number), client, res }
  }

  const header = (value: unknown) => fakeReq(value)
  const after = (value: unknown) => fakeReq(undefined, value)

  it.each([
    ["header 'abc' (NaN: everything)", header('abc'), [1, 2, 3, 4]],
    ["header '-5' (negative: everything)", header('-5'), [1, 2, 3, 4]],
    ["header '1e309' (Infinity: everything)", header('1e309'), [1, 2, 3, 4]],
    ["header ' 7 ' (7: nothing newer, so the final end again)", header(' 7 '), [4]],
    ["header ' 2 ' (2)", header(' 2 '), [3, 4]],
    ["after ['1','2'] (NaN: everything)", after(['1', '2']), [1, 2, 3, 4]],
    ["after ['2'] (2)", after(['2']), [3, 4]],
    ['after {} (NaN: everything)', after({}), [1, 2, 3, 4]],
    ['after Symbol (Number() throws: treated as NaN)', after(Symbol('cursor')), [1, 2, 3, 4]],
    [
      "a req whose get throws, after '2' (header unreadable: falls back to after)",
      {
        get: () => {
          throw new Error('boom')
        },
        query: { after: '2' },
      },
      [3, 4],
    ],
    [
      'a req whose get throws, no query (cursor 0)',
      {
        get: () => {
          throw new Error('boom')
        },
      },
      [1, 2, 3, 4],
    ],
    ['a req without get or query', {}, [1, 2, 3, 4]],
    ['a null req', null, [1, 2, 3, 4]],
  ] as [string, unknown, number[]][])('%s', (_name, req, expected) => {
    const { ids, client, res } = streamIds(req)
    expect(ids).toEqual(expected)
    expect(client.end).toHaveBeenCalledTimes(1)
    expect(res.on).not.toHaveBeenCalled()
  })

  it("a live run with cursor ' 7 ' registers the client and replays nothing", () => {
    const runs = createRunsCapturing(logged ? tmpDir : null)
    const run = runs.create()
    runs.emit(run, 'agent', { n: 1 })
    const res = { on: vi.fn() }
    runs.stream(run, header(' 7 '), res)
    expect(lastClient!.send).not.toHaveBeenCalled()
    expect(run.clients.has(lastClient)).toBe(true)
    expect(res.on).toHaveBeenCalledWith('close', expect.any(Function))
  })

  it('a live run and a res without on(): the replay is sent, the client ended and not registered, a TypeError names res (INP-5)', () => {
    const runs = createRunsCapturing(logged ? tmpDir : null)
    const run = runs.create()
    runs.emit(run, 'agent', { n: 1 })
    for (const res of [{}, { on: 'close' }]) {
      expect(() => runs.stream(run, header('0'), res)).toThrow(
        /^stream\(run, req, res\): expected res to have on\('close', listener\) \(an http\.ServerResponse\), got /,
      )
      expect(lastClient!.send).toHaveBeenCalledWith('agent', { n: 1 }, 1)
      expect(lastClient!.end).toHaveBeenCalledTimes(1)
      expect(run.clients.has(lastClient)).toBe(false)
    }
    expect(run.clients.size).toBe(0)
    // The run goes on: a later finish has no client of those to end.
    runs.finish(run, 'succeeded', 0, null)
    expect(lastClient!.end).toHaveBeenCalledTimes(1)
  })
})

// --- createChatRunService: bad options ------------------------------------------------------------------

// --- the lifecycle methods (LC-1..LC-4) -------------------------------------------------------------------

describe('no run at all', () => {
  it('statusBody and signalChild of null or undefined throw a TypeError naming the method', () => {
    const runs = createRuns(null)
    for (const value of [null, undefined]) {
      expect(() => runs.statusBody(value)).toThrow(/^statusBody\(run\): expected a run object, got (null|undefined)$/)
      expect(() => runs.signalChild(value, 'SIGTERM')).toThrow(/^signalChild\(run, signal\): expected a run object/)
    }
  })

  it('statusBody of a value that is no object (a run id, by mistake) is a TypeError that says so', () => {
    const runs = createRuns(null)
    const run = runs.create()
    expect(() => runs.statusBody(run.id)).toThrow(
      new TypeError(
        `statusBody(run): expected a run object (get(id) finds the run with an id), got the string "${run.id}"`,
      ),
    )
    for (const value of [1, true, Symbol('s'), 1n]) {
      expect(() => runs.statusBody(value)).toThrow(/^statusBody\(run\): expected a run object, got /)
    }
  })

  it('stream without a response is a TypeError naming res, before the SSE factory runs', () => {
    const factory = vi.fn(() => ({ send() {}, end() {} }))
    const runs = createChatRunService({ createSseResponse: factory, createSseErrorPayload: () => ({}) } as any)
    const run = runs.create()
    for (const res of [undefined, null]) {
      expect(() => runs.stream(run, { get: () => undefined, query: {} } as any, res as any)).toThrow(
        new TypeError(`stream(run, req, res): expected res, the HTTP response to stream to, got ${String(res)}`),
      )
    }
    expect(factory).not.toHaveBeenCalled()
  })
})

describe('a Proxy whose every trap throws, passed where a run belongs', () => {
  it("gets the method's own TypeError, not the trap's exception (INP-1)", () => {
    const { runs } = makeRuns()
    const trap = () => {
      throw new Error('trap')
    }
    const hostile = new Proxy({}, { get: trap, has: trap, ownKeys: trap, getPrototypeOf: trap })
    for (const call of [
      () => runs.wait(hostile),
      () => runs.persistState(hostile),
      () => runs.emit(hostile, 'a', {}),
    ]) {
      expect(call).toThrow(/expected a run object returned by this service's create\(\), got an object \(unreadable\)/)
    }
  })
})

describe.each(MODES)('the lifecycle methods with odd input ($mode)', ({ logged }) => {
  it('get() with a non-string or hostile id is null; createOrReuse with odd meta creates; foreign runs throw (INP-1)', () => {
    const runs = createRuns(logged ? tmpDir : null)
    for (const id of [
      undefined,
      null,
      42,
      {},
      '',
      '../../etc',
      '/',
      '\\',
      '..',
      'a\u0000b',
      '00000000-0000-4000-8000-000000000000',
    ]) {
      expect(runs.get(id)).toBeNull()
    }
    for (const meta of [undefined, null, 'x', 7, { clientRequestId: ['r'] }, { clientRequestId: '' }]) {
      expect(runs.createOrReuse(meta).kind).toBe('created')
    }
    const other = createRuns(null).create()
    for (const bad of [{}, other, 'run', 5]) {
      expect(() => runs.prepareRestart(bad)).toThrow(/prepareRestart\(run\): expected a run object/)
      expect(() => runs.persistState(bad)).toThrow(/persistState\(run\): expected a run object/)
    }
    expect(() => runs.prepareRestart(null)).toThrow(TypeError)
    for (const falsy of [null, undefined, 0, ''])
      expect(runs.persistState(falsy)).toEqual({ ok: false, errorType: 'storage_unavailable' })
    // A host value the state file cannot hold is left out, never thrown.
    const run = runs.create({ workspaceScope: { big: 10n } })
    run.failureDetail = { big: 10n }
    // JSON cannot hold it: the 'end' data falls back to what the core can store.
    run.resumable = {
      toJSON() {
        throw new Error('toJSON')
      },
    }
    expect(() => runs.persistState(run)).not.toThrow()
    expect(() => runs.finish(run, 'failed', 1, null)).not.toThrow()
    expect(run.events.at(-1).data).toEqual({
      code: 1,
      signal: null,
      status: 'failed',
      terminalAt: run.terminalAt,
      resumable: false,
      endedWithUnfinishedWork: false,
      failureCategory: null,
      failureDetail: null,
    })
    if (logged) {
      const state = JSON.parse(fs.readFileSync(path.join(tmpDir, run.id, 'state.json'), 'utf8'))
      expect(state).toMatchObject({ status: 'failed', failureDetail: null, resumable: true })
      expect('workspaceScope' in state).toBe(false)
    }
  })
})

describe('createChatRunService with bad options (OPT-1, OPT-2)', () => {
  const base = baseOptions()
  const cases: [string, () => unknown, typeof TypeError | typeof RangeError, string][] = [
    ['no options', () => (createChatRunService as any)(), TypeError, 'options'],
    ['null options', () => (createChatRunService as any)(null), TypeError, 'options'],
    ['a string as options', () => (createChatRunService as any)('opts'), TypeError, 'options'],
    [
      'createSseResponse missing',
      () => createChatRunService({ createSseErrorPayload: base.createSseErrorPayload } as any),
      TypeError,
      'createSseResponse',
    ],
    [
      'createSseResponse not a function',
      () => createChatRunService({ ...base, createSseResponse: {} } as any),
      TypeError,
      'createSseResponse',
    ],
    [
      'createSseErrorPayload not a function',
      () => createChatRunService({ ...base, createSseErrorPayload: 'x' } as any),
      TypeError,
      'createSseErrorPayload',
    ],
    ['maxEvents 0', () => createChatRunService({ ...base, maxEvents: 0 } as any), RangeError, 'maxEvents'],
    ['maxEvents 1.5', () => createChatRunService({ ...base, maxEvents: 1.5 } as any), RangeError, 'maxEvents'],
    ['maxEvents NaN', () => createChatRunService({ ...base, maxEvents: NaN } as any), RangeError, 'maxEvents'],
    ["maxEvents '10'", () => createChatRunService({ ...base, maxEvents: '10' } as any), TypeError, 'maxEvents'],
    ['maxEvents null', () => createChatRunService({ ...base, maxEvents: null } as any), TypeError, 'maxEvents'],
    ['ttlMs -1', () => createChatRunService({ ...base, ttlMs: -1 } as any), RangeError, 'ttlMs'],
    ['ttlMs NaN', () => createChatRunService({ ...base, ttlMs: NaN } as any), RangeError, 'ttlMs'],
    ["ttlMs '5'", () => createChatRunService({ ...base, ttlMs: '5' } as any), TypeError, 'ttlMs'],
    [
      'shutdownGraceMs -1',
      () => createChatRunService({ ...base, shutdownGraceMs: -1 } as any),
      RangeError,
      'shutdownGraceMs',
    ],
    [
      'shutdownGraceMs NaN',
      () => createChatRunService({ ...base, shutdownGraceMs: NaN } as any),
      RangeError,
      'shutdownGraceMs',
    ],
    ['runsLogDir 42', () => createChatRunService({ ...base, runsLogDir: 42 } as any), TypeError, 'runsLogDir'],
    ['runsLogDir {}', () => createChatRunService({ ...base, runsLogDir: {} } as any), TypeError, 'runsLogDir'],
  ]

  it.each(cases)('%s throws a TypeError/RangeError naming the option', (_name, call, ErrorType, option) => {
    let caught: unknown
    try {
      call()
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(ErrorType)
    expect((caught as Error).message).toContain(option)
  })

  it.each([
    ['maxEvents Infinity', { maxEvents: Infinity }],
    ['ttlMs Infinity', { ttlMs: Infinity }],
    ['ttlMs 0', { ttlMs: 0 }],
    ['shutdownGraceMs 0', { shutdownGraceMs: 0 }],
    ["runsLogDir ''", { runsLogDir: '' }],
    ['runsLogDir null', { runsLogDir: null }],
    [
      'every option undefined',
      { maxEvents: undefined, ttlMs: undefined, shutdownGraceMs: undefined, runsLogDir: undefined },
    ],
  ])('%s is accepted', (_name, extra) => {
    expect(() => createChatRunService({ ...base, ...extra } as any)).not.toThrow()
  })
})

// --- host objects that misbehave in ways a host should not, but might -----------------------------------

describe('host objects that misbehave', () => {
  /** Collects unhandled rejections while `body` runs and for two turns of the loop after it. */
  async function unhandledDuring(body: () => Promise<unknown>): Promise<unknown[]> {
    const seen: unknown[] = []
    const onRejection = (reason: unknown) => seen.push(reason)
    process.on('unhandledRejection', onRejection)
    try {
      await body()
      await sleep(10)
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      process.off('unhandledRejection', onRejection)
    }
    return seen
  }

  /** A child that dies on SIGTERM, whose kill() returns `ret`, with an optional stdin. */
  function misbehavingChild(ret: () => unknown, stdin?: object) {
    const child: any = new EventEmitter()
    child.exitCode = null
    child.signalCode = null
    child.kill = (signal: string) => {
      child.signalCode = signal
      queueMicrotask(() => {
        child.emit('exit', null, signal)
        child.emit('close', null, signal)
      })
      return ret()
    }
    if (stdin) child.stdin = stdin
    return child
  }

  it('a kill() or stdin.end() that returns a rejected promise is ignored: the cancel ends the run, nothing goes unhandled', async () => {
    const runs = createRuns(null)
    const rejected = () => Promise.reject(new Error('host rejected'))
    for (const child of [
      misbehavingChild(rejected),
      misbehavingChild(() => true, { end: rejected, on() {}, once() {} }),
    ]) {
      const run = runs.create()
      run.status = 'running'
      run.child = child
      run.stdinOpen = Boolean(child.stdin)
      let body: any
      const unhandled = await unhandledDuring(async () => {
        body = await runs.cancel(run, 'user')
      })
      expect(unhandled).toEqual([])
      expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM' })
    }
  })

  it('shutdownActive() called again from the abort() or kill() it runs joins the teardown under way', async () => {
    for (const via of ['abort', 'kill'] as const) {
      const runs = createRuns(null)
      const run = runs.create()
      run.status = 'running'
      let aborts = 0
      let kills = 0
      const inner: Promise<unknown>[] = []
      const child = misbehavingChild(() => {
        kills++
        if (via === 'kill') inner.push(runs.shutdownActive())
        return true
      })
      run.child = child
      if (via === 'abort') {
        run.acpSession = {
          abort() {
            aborts++
            inner.push(runs.shutdownActive())
          },
        }
      }
      await runs.shutdownActive({ graceMs: 50 })
      await Promise.all(inner)
      expect(inner).toHaveLength(1)
      expect([aborts, kills]).toEqual(via === 'abort' ? [1, 1] : [0, 1])
      expect(run.status).toBe('canceled')
      expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1)
    }
  })

  it('a frozen run is still canceled; prepareRestart refuses a frozen or sealed run before changing anything', async () => {
    const runs = createRuns(null)
    const run = runs.create()
    run.status = 'running'
    run.child = misbehavingChild(() => true, { end() {}, on() {}, once() {} })
    run.stdinOpen = true
    Object.freeze(run)
    await expect(runs.cancel(run, 'user')).resolves.toMatchObject({ status: 'canceled' })

    for (const lock of [Object.freeze, Object.seal, Object.preventExtensions]) {
      const failed = runs.create()
      failed.acpSession = { abort() {} }
      runs.finish(failed, 'failed', 1, null)
      failed.failureDetail = 'details'
      lock(failed)
      expect(() => runs.prepareRestart(failed)).toThrow(
        /^prepareRestart\(run\): expected a run object the service can write .*got a frozen, sealed or non-extensible run$/,
      )
      expect(failed.status).toBe('failed')
      expect(failed.acpSession).not.toBeNull()
      expect(failed.failureDetail).toBe('details')
    }
  })

  it('stream() throws a TypeError naming createSseResponse when it returns no client, and registers nothing', () => {
    for (const returned of [undefined, null, 42, Promise.resolve({ send() {} }), {}]) {
      const { runs } = makeRuns({ createSseResponse: () => returned } as any)
      const run = runs.create()
      runs.emit(run, 'agent', { n: 1 })
      expect(() => runs.stream(run, fakeReq(), { on() {} })).toThrow(
        /^stream\(run, req, res\): expected options\.createSseResponse\(res\) to return an SSE client \(an object with a send\(\) function\), got /,
      )
      expect(run.clients.size).toBe(0)
    }
  })

  it.each(MODES)(
    'an event name with no string form is stored without a name and not logged (INP-4, $mode)',
    async ({ logged }) => {
      const runs = createRuns(logged ? tmpDir : null)
      const run = runs.create()
      const revocable = Proxy.revocable({}, {})
      revocable.revoke()
      let deep: unknown[] = []
      for (let i = 0; i < 10_000; i++) deep = [deep]
      const names = [
        {
          toJSON() {
            throw new Error('toJSON')
          },
          toString() {
            throw new Error('toString')
          },
        },
        revocable.proxy,
        deep,
      ]
      // (The deep array's JSON.stringify overflows the stack on some engines, Node 20-24's, and
      // not on others, Node 26's: then it is an ordinary name, stored as its JSON and logged.)
      let deepIsJson = true
      try {
        JSON.stringify(deep)
      } catch {
        deepIsJson = false
      }
      for (const name of names) expect(() => runs.emit(run, name, { ok: true })).not.toThrow()
      runs.emit(run, 'agent', { after: true })
      expect(run.events.map((e: any) => [e.id, 'event' in e])).toEqual([
        [1, false],
        [2, false],
        [3, deepIsJson],
        [4, true],
      ])
      runs.finish(run, 'succeeded', 0, null)
      if (!logged) return
      const lines = (await logLines(runs, run)).map((line) => JSON.parse(line))
      expect(lines.map((r) => r.id)).toEqual(deepIsJson ? [3, 4, 5] : [4, 5])
    },
  )

  it('finish with a signal whose String() throws gives the verdict with signal null; beforeFinish runs once', () => {
    let calls = 0
    const { runs } = makeRuns({ beforeFinish: () => calls++ } as any)
    const run = runs.create()
    const signal = {
      toString() {
        throw new Error('bad signal')
      },
    }
    expect(() => runs.finish(run, 'failed', 1, signal)).not.toThrow()
    runs.finish(run, 'failed', 1, 'SIGTERM')
    expect(calls).toBe(1)
    expect(runs.statusBody(run)).toMatchObject({ status: 'failed', exitCode: 1 })
    expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1)
  })

  it('start() with a starter that is not a function throws a TypeError naming it and stamps nothing', () => {
    const runs = createRuns(null)
    const run = runs.create()
    for (const starter of [42, undefined, null, 'fn', {}]) {
      expect(() => runs.start(run, starter)).toThrow(/^start\(run, starter\): expected starter to be a function, got /)
    }
    expect(run.analyticsTelemetry ?? null).toBeNull()
  })

  it('a revoked Proxy passed as a run or an option is named in the TypeError of the method or option', () => {
    const runs = createRuns(null)
    const revocable = Proxy.revocable({}, {})
    revocable.revoke()
    expect(() => runs.emit(revocable.proxy, 'x', {})).toThrow(
      /^emit\(run\): expected a run object returned by this service's create\(\), got a revoked Proxy$/,
    )
    expect(() => createChatRunService({ ...baseOptions(), onTerminal: revocable.proxy } as any)).toThrow(
      /options\.onTerminal must be a function, got a revoked Proxy$/,
    )
  })

  it('durableFields with a hole or a non-string is refused, naming the index', () => {
    const holed: string[] = []
    holed[1] = 'a' // a hole at index 0
    for (const [fields, at] of [
      [holed, 0],
      [new Array(2), 0],
      [['a', Symbol('s')], 1],
    ] as const) {
      expect(() => createChatRunService({ ...baseOptions(), durableFields: fields } as any)).toThrow(
        new RegExp(`options\\.durableFields must be an array of run field names \\(strings\\), got .* at index ${at}$`),
      )
    }
  })
})
