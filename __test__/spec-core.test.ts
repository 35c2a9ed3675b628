// SPEC §1-§9 (module surface, options, eviction timers, the run object, create/get/list,
// start/emit, error extraction, finish/fail/wait/drop/isTerminal) and the §17 improvements
// that touch them (IMP-2, IMP-6, IMP-9, IMP-10, IMP-12).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createChatRunService, TERMINAL_RUN_STATUSES } from '../index.js';

// ---------------------------------------------------------------------------------------------
// helpers (kept local to this file)

const METHODS = [
  'create', 'start', 'get', 'list', 'stream', 'cancel', 'shutdownActive', 'wait', 'emit', 'finish',
  'fail', 'drop', 'signalChild', 'statusBody', 'isTerminal',
];

const SB_KEYS = [
  'id', 'projectId', 'conversationId', 'assistantMessageId', 'agentId', 'appliedPluginSnapshotId',
  'pluginId', 'status', 'createdAt', 'updatedAt', 'cancelRequested', 'childPid', 'processGroupId',
  'childExited', 'childExitObservedAt', 'exitCode', 'signal', 'error', 'errorCode', 'eventsLogPath',
  'mediaExecution', 'toolBundle',
];

const RUN_FIELDS = [
  'id', 'projectId', 'conversationId', 'assistantMessageId', 'clientRequestId', 'agentId',
  'appliedPluginSnapshotId', 'pluginId', 'mediaExecution', 'toolBundle', 'status', 'createdAt',
  'updatedAt', 'events', 'nextEventId', 'clients', 'waiters', 'child', 'acpSession', 'childPid',
  'processGroupId', 'childExitObservedAt', 'exitCode', 'signal', 'error', 'errorCode',
  'cancelRequested', 'eventsLogPath', 'eventsLogStream',
];

const META_KEYS = new Set([
  'projectId', 'conversationId', 'assistantMessageId', 'clientRequestId', 'agentId',
  'appliedPluginSnapshotId', 'pluginId', 'mediaExecution', 'toolBundle',
]);

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Client = {
  name: string;
  send: ReturnType<typeof vi.fn>;
  end: ReturnType<typeof vi.fn>;
  cleanup: ReturnType<typeof vi.fn>;
};

function makeClient(name = 'client', log?: string[]): Client {
  return {
    name,
    send: vi.fn((event: unknown, _data: unknown, id: unknown) => {
      log?.push(`${name}.send:${String(event)}:${String(id)}`);
      return true;
    }),
    end: vi.fn(() => {
      log?.push(`${name}.end`);
    }),
    cleanup: vi.fn(),
  };
}

function makeRuns(extra: Record<string, unknown> = {}) {
  const sse: Client[] = [];
  const createSseErrorPayload = vi.fn((code: unknown, message: unknown, init: unknown) => ({
    error: { code, message },
    init,
  }));
  const runs = createChatRunService({
    createSseResponse: () => {
      const c = makeClient(`sse${sse.length}`);
      sse.push(c);
      return c;
    },
    createSseErrorPayload,
    shutdownGraceMs: 10,
    ttlMs: 60_000,
    ...extra,
  } as any) as any;
  return { runs, sse, createSseErrorPayload };
}

const baseOptions = () => ({
  createSseResponse: () => makeClient(),
  createSseErrorPayload: (code: string, message: string) => ({ error: { code, message } }),
});

class FakeChild extends EventEmitter {
  pid: number | undefined;
  exitCode: number | null = null;
  signalCode: string | null = null;
  signals: unknown[] = [];
  constructor(private readonly closeOn: string | null = null, pid?: number) {
    super();
    this.pid = pid;
  }
  kill(signal: unknown): boolean {
    this.signals.push(signal);
    if (signal === this.closeOn) {
      this.signalCode = String(signal);
      queueMicrotask(() => {
        this.emit('exit', null, signal);
        this.emit('close', null, signal);
      });
    }
    return true;
  }
  exitWith(code: number) {
    this.exitCode = code;
    this.emit('exit', code, null);
    this.emit('close', code, null);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const flush = () => sleep(5);

function readLines(file: string): string[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
}

async function until(cond: () => boolean, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (cond()) return true;
    if (Date.now() > deadline) return false;
    await sleep(10);
  }
}

/** Number of this process's descriptors open on `file` (Linux /proc). */
function openFdsOn(file: string): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === file) n++;
    } catch {
      /* fd went away */
    }
  }
  return n;
}

let tmpDirs: string[] = [];
function tmpDir(): string {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'spec-core-')));
  tmpDirs.push(dir);
  return dir;
}

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  for (const dir of tmpDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    } catch {
      /* best effort */
    }
  }
  tmpDirs = [];
});

// ---------------------------------------------------------------------------------------------

describe('§1 Module surface (MOD)', () => {
  it('MOD-1: exports createChatRunService and TERMINAL_RUN_STATUSES, a real Set in the fixed order', () => {
    expect(typeof createChatRunService).toBe('function');
    expect(TERMINAL_RUN_STATUSES).toBeInstanceOf(Set);
    expect([...TERMINAL_RUN_STATUSES]).toEqual(['succeeded', 'failed', 'canceled']);
  });

  it('MOD-2: the service is a plain object with exactly the 15 own enumerable function properties', () => {
    const { runs } = makeRuns();
    expect(Object.getPrototypeOf(runs)).toBe(Object.prototype);
    const keys = Object.keys(runs);
    expect(keys).toHaveLength(15);
    expect(new Set(keys)).toEqual(new Set(METHODS));
    for (const key of METHODS) {
      expect(typeof runs[key]).toBe('function');
      expect(Object.getOwnPropertyDescriptor(runs, key)?.enumerable).toBe(true);
    }
  });

  it('MOD-3: wait/cancel/shutdownActive return native Promises; the other methods are synchronous', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const other = runs.create();
    const w = runs.wait(run);
    expect(w).toBeInstanceOf(Promise);
    expect(Object.getPrototypeOf(w)).toBe(Promise.prototype);
    const c = runs.cancel(run);
    expect(Object.getPrototypeOf(c)).toBe(Promise.prototype);
    const s = runs.shutdownActive();
    expect(Object.getPrototypeOf(s)).toBe(Promise.prototype);
    await Promise.all([w, c, s]);

    const rec = runs.emit(other, 'x', {});
    expect(rec).not.toBeInstanceOf(Promise);
    expect(runs.create()).not.toBeInstanceOf(Promise);
    expect(runs.list()).toBeInstanceOf(Array);
    expect(runs.get(other.id)).toBe(other);
    expect(runs.statusBody(other)).not.toBeInstanceOf(Promise);
    expect(runs.isTerminal('failed')).toBe(true);
    expect(runs.signalChild(other, 'SIGTERM')).toBe(false);
    expect(runs.start(other, () => Promise.resolve())).toBe(other);
    expect(runs.finish(other, 'succeeded', 0, null)).toBeUndefined();
    expect(runs.fail(runs.create(), 'C', 'm')).toBeUndefined();
    expect(runs.drop(runs.create())).toBeUndefined();
  });

  it('MOD-3: cancel and shutdownActive never throw synchronously; failures become rejected promises', async () => {
    const { runs } = makeRuns();
    let p1: any;
    let p2: any;
    let p3: any;
    expect(() => {
      p1 = runs.cancel(null);
    }).not.toThrow();
    expect(() => {
      p2 = runs.cancel({ status: 'running' });
    }).not.toThrow();
    expect(() => {
      p3 = runs.shutdownActive({ graceMs: 'soon' });
    }).not.toThrow();
    expect(p1).toBeInstanceOf(Promise);
    expect(p2).toBeInstanceOf(Promise);
    expect(p3).toBeInstanceOf(Promise);
    await expect(p1).rejects.toBeDefined();
    await p2.catch(() => {});
    await expect(p3).resolves.toBeUndefined();
  });

  it('MOD-4: two service instances have separate registries', async () => {
    const a = makeRuns().runs;
    const b = makeRuns().runs;
    const runA = a.create({ projectId: 'p' });
    runA.status = 'running';
    expect(b.get(runA.id)).toBeNull();
    expect(b.list()).toEqual([]);
    expect(b.list({ projectId: 'p' })).toEqual([]);
    const runB = b.create({ projectId: 'p' });
    expect(runB.id).not.toBe(runA.id);
    expect(a.list()).toEqual([runA]);
    await b.shutdownActive({ graceMs: 1 });
    expect(runA.status).toBe('running');
    expect(runA.cancelRequested).toBe(false);
    expect(a.get(runA.id)).toBe(runA);
  });

  it('MOD-5: mutating the exported Set neither crashes nor changes the terminal checks', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const other = runs.create();
    try {
      TERMINAL_RUN_STATUSES.add('running');
      TERMINAL_RUN_STATUSES.delete('failed');
      expect(runs.isTerminal('running')).toBe(false);
      expect(runs.isTerminal('failed')).toBe(true);
      run.status = 'running';
      expect(runs.list({ status: 'active' })).toEqual([run, other]);
      runs.finish(run, 'failed', 1, null);
      expect(run.status).toBe('failed');
      runs.finish(run, 'succeeded', 0, null);
      expect(run.status).toBe('failed');
      await expect(runs.wait(run)).resolves.toMatchObject({ status: 'failed' });
      TERMINAL_RUN_STATUSES.clear();
      runs.fail(other, 'C', 'm');
      expect(other.status).toBe('failed');
      expect(runs.list({ status: 'active' })).toEqual([]);
    } finally {
      TERMINAL_RUN_STATUSES.clear();
      for (const s of ['succeeded', 'failed', 'canceled']) TERMINAL_RUN_STATUSES.add(s);
    }
  });

  it('§0/SB-3: every method works detached and ignores extra arguments (Array#map)', async () => {
    const { runs } = makeRuns();
    const { create, emit, finish, list, statusBody, get, wait, isTerminal, drop, fail, start } = runs;
    const a = create({ projectId: 'p', conversationId: 'c1' });
    const b = create({ projectId: 'p', conversationId: 'c2' });
    expect(emit(a, 'agent', { n: 1 }).id).toBe(1);
    expect(start(b, () => Promise.resolve())).toBe(b);
    expect(list().map(statusBody)).toEqual([statusBody(a), statusBody(b)]);
    expect(list().map(runs.statusBody).map((body: any) => Object.keys(body))).toEqual([SB_KEYS, SB_KEYS]);
    expect([a.id, 'nope'].map(get)).toEqual([a, null]);
    expect(['succeeded', 'failed', 'canceled', 'running', 7].map(isTerminal)).toEqual([
      true, true, true, false, false,
    ]);
    const waits = [a, b].map(wait);
    finish(a, 'succeeded', 0, null);
    fail(b, 'E', 'broken');
    const [wa, wb] = await Promise.all(waits);
    expect(wa.status).toBe('succeeded');
    expect(wb).toMatchObject({ status: 'failed', errorCode: 'E', error: 'broken' });
    const c = create();
    const d = create();
    expect([c, d].map(drop)).toEqual([undefined, undefined]);
    expect(c.status).toBe('canceled');
    expect(d.status).toBe('canceled');
    expect(list()).toEqual([a, b]);
  });
});

describe('§2 Options (OPT) and IMP-12 option validation', () => {
  it('OPT-1: a missing or non-object options argument throws a TypeError', () => {
    for (const bad of [undefined, null, 'options', 42, true]) {
      expect(() => (createChatRunService as any)(bad)).toThrow(TypeError);
    }
    expect(() => (createChatRunService as any)()).toThrow(TypeError);
  });

  it('OPT-1: unknown keys are ignored and a default applies when a key is undefined', () => {
    const runs = createChatRunService({
      ...baseOptions(),
      maxEvents: undefined,
      ttlMs: undefined,
      shutdownGraceMs: undefined,
      runsLogDir: undefined,
      someUnknownKey: 'whatever',
      maxevents: -5,
    } as any) as any;
    const run = runs.create();
    expect(run.eventsLogPath).toBeNull();
    for (let i = 0; i < 2001; i++) runs.emit(run, 'tick', i);
    expect(run.events).toHaveLength(2000);
    expect(run.events[0].id).toBe(2);
    expect(run.events.at(-1).id).toBe(2001);
  });

  it('OPT-2/IMP-12: createSseResponse and createSseErrorPayload must be functions (TypeError naming the option)', () => {
    expect(() =>
      createChatRunService({ createSseErrorPayload: () => ({}) } as any),
    ).toThrow(TypeError);
    expect(() =>
      createChatRunService({ createSseErrorPayload: () => ({}) } as any),
    ).toThrow(/createSseResponse/);
    expect(() =>
      createChatRunService({ createSseResponse: 'nope', createSseErrorPayload: () => ({}) } as any),
    ).toThrow(/createSseResponse/);
    expect(() => createChatRunService({ createSseResponse: () => ({}) } as any)).toThrow(TypeError);
    expect(() => createChatRunService({ createSseResponse: () => ({}) } as any)).toThrow(
      /createSseErrorPayload/,
    );
    expect(() =>
      createChatRunService({ createSseResponse: () => ({}), createSseErrorPayload: {} } as any),
    ).toThrow(/createSseErrorPayload/);
  });

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
  ];
  for (const [key, value, kind] of cases) {
    it(`OPT-2/IMP-12: ${key} = ${typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? '[array]' : String(value)} throws a ${kind} naming the option`, () => {
      let error: unknown;
      try {
        createChatRunService({ ...baseOptions(), [key]: value } as any);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(kind === 'TypeError' ? TypeError : RangeError);
      expect((error as Error).message).toContain(key);
    });
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
    ];
    for (const extra of ok) {
      expect(() => createChatRunService({ ...baseOptions(), ...extra } as any)).not.toThrow();
    }
  });

  it('OPT table: maxEvents Infinity keeps every event', () => {
    const { runs } = makeRuns({ maxEvents: Infinity });
    const run = runs.create();
    for (let i = 0; i < 2500; i++) runs.emit(run, 'tick', i);
    expect(run.events).toHaveLength(2500);
    expect(run.events[0].id).toBe(1);
  });

  it("OPT table: runsLogDir '' or null disables logging (eventsLogPath null, no files)", () => {
    const dir = tmpDir();
    const cwd = process.cwd();
    for (const runsLogDir of ['', null]) {
      const { runs } = makeRuns({ runsLogDir });
      const run = runs.create();
      expect(run.eventsLogPath).toBeNull();
      runs.emit(run, 'agent', { x: 1 });
      runs.finish(run, 'succeeded', 0, null);
      expect(fs.existsSync(path.join(cwd, run.id))).toBe(false);
    }
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('OPT table: shutdownGraceMs is the default graceMs of shutdownActive', async () => {
    const { runs } = makeRuns({ shutdownGraceMs: 30 });
    const run = runs.create();
    run.status = 'running';
    const child = new FakeChild('SIGKILL');
    run.child = child;
    const t0 = Date.now();
    await runs.shutdownActive();
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
    expect(Date.now() - t0).toBeLessThan(1500);
  });
});

describe('§4 Timers for eviction (TMR)', () => {
  it('TMR-1: ttlMs 0 evicts after 1 ms (never synchronously)', () => {
    vi.useFakeTimers();
    const { runs } = makeRuns({ ttlMs: 0 });
    const run = runs.create();
    runs.finish(run, 'succeeded', 0, null);
    expect(runs.get(run.id)).toBe(run);
    vi.advanceTimersByTime(1);
    expect(runs.get(run.id)).toBeNull();
  });

  it('TMR-2: a ttlMs above 2147483647 is clamped to 2147483647 (not turned into 1 ms)', () => {
    vi.useFakeTimers();
    const { runs } = makeRuns({ ttlMs: 3e9 });
    const run = runs.create();
    runs.finish(run, 'succeeded', 0, null);
    vi.advanceTimersByTime(10_000);
    expect(runs.get(run.id)).toBe(run);
    vi.advanceTimersByTime(2147483646 - 10_000);
    expect(runs.get(run.id)).toBe(run);
    vi.advanceTimersByTime(1);
    expect(runs.get(run.id)).toBeNull();
  });

  it('TMR-2/IMP-12: ttlMs Infinity creates no eviction timer and never evicts', () => {
    vi.useFakeTimers();
    const { runs } = makeRuns({ ttlMs: Infinity });
    const run = runs.create();
    const before = vi.getTimerCount();
    runs.finish(run, 'failed', 1, null);
    expect(vi.getTimerCount()).toBe(before);
    vi.advanceTimersByTime(5 * 2147483647);
    expect(runs.get(run.id)).toBe(run);
    expect(runs.list()).toEqual([run]);
  });

  it('TMR-3: the eviction timer (and nothing native) keeps the Node process alive', () => {
    const indexPath = fileURLToPath(new URL('../index.js', import.meta.url));
    const dir = tmpDir();
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
    `;
    for (const args of [[indexPath], [indexPath, dir]]) {
      const t0 = Date.now();
      const result = spawnSync(process.execPath, ['-e', script, ...args], { timeout: 15_000, encoding: 'utf8' });
      expect(result.error).toBeUndefined();
      expect(result.signal).toBeNull();
      expect(result.status).toBe(0);
      expect(Date.now() - t0).toBeLessThan(10_000);
    }
  });
});

describe('§5 The run object (RUN)', () => {
  it('RUN-1: create() sets every field with its initial value; the object is extensible', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_717_171_717_171);
    const { runs } = makeRuns();
    const run = runs.create();
    for (const field of RUN_FIELDS) expect(field in run, field).toBe(true);
    expect(run.id).toMatch(UUID_V4);
    for (const f of ['projectId', 'conversationId', 'assistantMessageId', 'clientRequestId', 'agentId', 'appliedPluginSnapshotId', 'pluginId']) {
      expect(run[f], f).toBeNull();
    }
    expect(run.mediaExecution).toEqual({ mode: 'enabled' });
    expect(run.toolBundle).toEqual({ mcpServers: [] });
    expect(run.status).toBe('queued');
    expect(run.createdAt).toBe(1_717_171_717_171);
    expect(run.updatedAt).toBe(run.createdAt);
    expect(Array.isArray(run.events)).toBe(true);
    expect(run.events).toEqual([]);
    expect(run.nextEventId).toBe(1);
    expect(run.clients).toBeInstanceOf(Set);
    expect(run.clients.size).toBe(0);
    expect(run.waiters).toBeInstanceOf(Set);
    expect(run.waiters.size).toBe(0);
    for (const f of ['child', 'acpSession', 'childPid', 'processGroupId', 'childExitObservedAt', 'exitCode', 'signal', 'error', 'errorCode', 'eventsLogPath', 'eventsLogStream']) {
      expect(run[f], f).toBeNull();
    }
    expect(run.cancelRequested).toBe(false);
    expect(run.analyticsTelemetry).toBeUndefined();
    expect(Object.isExtensible(run)).toBe(true);
    expect(Object.isFrozen(run)).toBe(false);
    expect(Object.isSealed(run)).toBe(false);
  });

  it('RUN-1: host-added properties survive Object.keys and spread', () => {
    const { runs } = makeRuns();
    const run = runs.create({ projectId: 'p' });
    const ctx = { surface: 'chat' };
    run.stdinOpen = true;
    run.clientType = 'desktop';
    run.analyticsContext = ctx;
    run.retryCount = 2;
    run.userPrompt = 'hello';
    const keys = Object.keys(run);
    for (const k of ['stdinOpen', 'clientType', 'analyticsContext', 'retryCount', 'userPrompt']) {
      expect(keys).toContain(k);
    }
    const copy = { ...run };
    expect(copy.stdinOpen).toBe(true);
    expect(copy.clientType).toBe('desktop');
    expect(copy.analyticsContext).toBe(ctx);
    expect(copy.retryCount).toBe(2);
    expect(copy.userPrompt).toBe('hello');
    expect('status' in run).toBe(true);
    expect('nextEventId' in run).toBe(true);
  });

  it('RUN-1/RUN-3: host writes of status/projectId/conversationId take effect in list, statusBody and isTerminal checks', async () => {
    const { runs } = makeRuns();
    const run = runs.create({ projectId: 'p', conversationId: 'c' });
    run.projectId = 'x';
    run.conversationId = 'y';
    expect(run.projectId).toBe('x');
    expect(runs.list({ projectId: 'x' })).toEqual([run]);
    expect(runs.list({ projectId: 'p' })).toEqual([]);
    expect(runs.list({ conversationId: 'y' })).toEqual([run]);
    expect(runs.list({ conversationId: 'c' })).toEqual([]);
    expect(runs.statusBody(run)).toMatchObject({ projectId: 'x', conversationId: 'y' });

    run.status = 'running';
    expect(run.status).toBe('running');
    expect(runs.list({ status: 'running' })).toEqual([run]);
    expect(runs.list({ status: 'active' })).toEqual([run]);
    expect(runs.statusBody(run).status).toBe('running');

    run.status = 'succeeded';
    expect(runs.list({ status: 'active' })).toEqual([]);
    expect(runs.list({ status: 'succeeded' })).toEqual([run]);
    await expect(runs.wait(run)).resolves.toMatchObject({ status: 'succeeded' });
    runs.finish(run, 'failed', 1, null);
    expect(run.status).toBe('succeeded');
    expect(run.events).toEqual([]);
    runs.fail(run, 'E', 'm');
    expect(run.events).toEqual([]);
    expect(run.error).toBeNull();
    runs.drop(run);
    expect(runs.get(run.id)).toBe(run);
    expect(run.status).toBe('succeeded');
    await expect(runs.cancel(run)).resolves.toMatchObject({ status: 'succeeded', cancelRequested: false });
    expect(run.cancelRequested).toBe(false);

    run.status = 'queued';
    runs.finish(run, 'failed', 2, null);
    expect(run.status).toBe('failed');
    expect(run.events.map((e: any) => e.event)).toEqual(['end']);
  });

  it('RUN-3: host writes of updatedAt/exitCode/signal/error/errorCode are seen by statusBody', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    run.updatedAt = 12345;
    run.exitCode = 3;
    run.signal = 'SIGHUP';
    run.error = 'host message';
    run.errorCode = 'E';
    expect(run.updatedAt).toBe(12345);
    expect(run.exitCode).toBe(3);
    expect(run.signal).toBe('SIGHUP');
    expect(run.error).toBe('host message');
    expect(run.errorCode).toBe('E');
    expect(runs.statusBody(run)).toMatchObject({
      updatedAt: 12345,
      exitCode: 3,
      signal: 'SIGHUP',
      error: 'host message',
      errorCode: 'E',
    });
    // a retry resets them
    run.exitCode = null;
    run.signal = null;
    run.error = null;
    run.errorCode = null;
    expect(runs.statusBody(run)).toMatchObject({ exitCode: null, signal: null, error: null, errorCode: null });
  });

  it('RUN-3: host writes of child/childPid/processGroupId/acpSession are read at each service step', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    run.status = 'running';
    run.childPid = 42;
    run.processGroupId = 77;
    expect(runs.statusBody(run)).toMatchObject({ childPid: 42, processGroupId: 77, childExited: true });
    run.processGroupId = null;

    const first = new FakeChild(null, 4242);
    run.child = first;
    expect(run.child).toBe(first);
    expect(runs.statusBody(run)).toMatchObject({ childPid: 4242, childExited: false });
    const second = new FakeChild(null);
    run.child = second;
    expect(runs.statusBody(run)).toMatchObject({ childPid: 42, childExited: false });
    expect(runs.signalChild(run, 'SIGUSR2')).toBe(true);
    expect(first.signals).toEqual([]);
    expect(second.signals).toEqual(['SIGUSR2']);

    const abort = vi.fn(() => second.exitWith(0));
    run.acpSession = { abort };
    const body = await runs.cancel(run);
    expect(abort).toHaveBeenCalledTimes(1);
    expect(body).toMatchObject({ status: 'canceled', exitCode: 0, childExited: true });
  });

  it('RUN-2: get(), list() and callbacks receive the very object create() returned', async () => {
    const { runs } = makeRuns();
    const run = runs.create({ projectId: 'p' });
    expect(runs.get(run.id)).toBe(run);
    expect(runs.list()[0]).toBe(run);
    expect(runs.list({ projectId: 'p', status: 'active' })[0]).toBe(run);
    let seen: unknown;
    runs.start(run, (r: unknown) => {
      seen = r;
      return Promise.resolve();
    });
    expect(seen).toBe(run);
    runs.emit(run, 'x', 1);
    runs.finish(run, 'succeeded', 0, null);
    expect(runs.get(run.id)).toBe(run);
  });

  it('RUN-4: the service never deletes or rewrites host properties or host-only fields', async () => {
    const { runs } = makeRuns();
    const meta = {
      projectId: 'p',
      conversationId: 'c',
      assistantMessageId: 'am',
      clientRequestId: 'cr',
      agentId: 'ag',
      appliedPluginSnapshotId: 'snap',
      pluginId: 'pl',
    };
    const run = runs.create(meta);
    const ctx = { a: 1 };
    Object.assign(run, { stdinOpen: true, clientType: 'cli', analyticsContext: ctx, retryCount: 1, userPrompt: 'u' });
    const { id, createdAt, mediaExecution, toolBundle, clients, waiters, eventsLogPath } = run;
    const w = runs.wait(run);
    runs.start(run, () => Promise.resolve());
    runs.emit(run, 'agent', { a: 1 });
    runs.emit(run, 'error', { message: 'boom', code: 'X' });
    runs.statusBody(run);
    runs.list({ status: 'active' });
    runs.fail(run, 'C', 'failed hard');
    runs.finish(run, 'succeeded', 0, null);
    runs.drop(run);
    await w;
    expect(run).toMatchObject({ ...meta, stdinOpen: true, clientType: 'cli', retryCount: 1, userPrompt: 'u' });
    expect(run.analyticsContext).toBe(ctx);
    expect(run.id).toBe(id);
    expect(run.createdAt).toBe(createdAt);
    expect(run.mediaExecution).toBe(mediaExecution);
    expect(run.toolBundle).toBe(toolBundle);
    expect(run.clients).toBe(clients);
    expect(run.waiters).toBe(waiters);
    expect(run.eventsLogPath).toBe(eventsLogPath);
    expect(run.child).toBeNull();
    expect(run.acpSession).toBeNull();
    expect(run.childPid).toBeNull();
    expect(run.processGroupId).toBeNull();
    expect(run.childExitObservedAt).toBeNull();
    expect(run.cancelRequested).toBe(false);
    const keys = Object.keys(run);
    for (const k of ['stdinOpen', 'clientType', 'analyticsContext', 'retryCount', 'userPrompt', 'analyticsTelemetry']) {
      expect(keys).toContain(k);
    }
  });

  it('RUN-4/STA-1: the host can spread-merge its own analyticsTelemetry keys, which start() keeps', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1000);
    const { runs } = makeRuns();
    const run = runs.create();
    runs.start(run, () => Promise.resolve());
    run.analyticsTelemetry = { ...run.analyticsTelemetry, spawnedAt: 5, model: 'm' };
    vi.setSystemTime(2000);
    runs.start(run, () => Promise.resolve());
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: 2000, spawnedAt: 5, model: 'm' });
    expect(Object.keys(run.analyticsTelemetry)).toEqual(['startRequestedAt', 'spawnedAt', 'model']);
    expect({ ...run }.analyticsTelemetry).toBe(run.analyticsTelemetry);
  });

  it('RUN-5: run.events is a real Array of {id,event,data,timestamp} records, oldest first, JSON round-trip of data', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(5000);
    const { runs } = makeRuns({ maxEvents: 3 });
    const run = runs.create();
    const data = { type: 'text_delta', delta: 'hi', skip: undefined, when: new Date(0), list: [1, undefined] };
    runs.emit(run, 'agent', data);
    vi.setSystemTime(6000);
    runs.emit(run, 'stdout', 'plain');
    runs.emit(run, 'n', null);
    runs.emit(run, 'last', [1, 2]);
    const events = run.events;
    expect(Array.isArray(events)).toBe(true);
    expect(events.map((e: any) => e.id)).toEqual([2, 3, 4]);
    for (const e of events) expect(Object.keys(e)).toEqual(['id', 'event', 'data', 'timestamp']);
    expect(events[0]).toEqual({ id: 2, event: 'stdout', data: 'plain', timestamp: 6000 });
    expect(events[1]).toEqual({ id: 3, event: 'n', data: null, timestamp: 6000 });
    expect(events[2]).toEqual({ id: 4, event: 'last', data: [1, 2], timestamp: 6000 });

    const { runs: r2 } = makeRuns();
    const run2 = r2.create();
    r2.emit(run2, 'agent', data);
    expect(run2.events[0].data).toEqual(JSON.parse(JSON.stringify(data)));
    expect(run2.events[0].timestamp).toBe(6000);
  });

  it('RUN-5: mutating the returned array, its records or the emitted data does not change the history', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const data = { text: 'a', nested: { n: 1 } };
    runs.emit(run, 'agent', data);
    runs.emit(run, 'agent', { text: 'b' });
    const arr = run.events;
    arr[0].event = 'hacked';
    arr[0].data.text = 'hacked';
    arr.push({ id: 99, event: 'fake', data: null, timestamp: 0 });
    arr.shift();
    data.text = 'mutated';
    data.nested.n = 2;
    runs.emit(run, 'agent', { text: 'c' });
    const again = run.events;
    expect(again.map((e: any) => [e.id, e.event, e.data.text])).toEqual([
      [1, 'agent', 'a'],
      [2, 'agent', 'b'],
      [3, 'agent', 'c'],
    ]);
    expect(again[0].data.nested).toEqual({ n: 1 });
  });

  it('RUN-6: a host client added to run.clients gets send(event, data, id) on emit and end() on finish, in Set order', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const log: string[] = [];
    const a = makeClient('a', log);
    const b = makeClient('b', log);
    const gone = makeClient('gone', log);
    run.clients.add(a);
    run.clients.add(gone);
    run.clients.add(b);
    run.clients.delete(gone);
    const data = { x: 1 };
    runs.emit(run, 'agent', data);
    expect(a.send).toHaveBeenCalledWith('agent', data, 1);
    expect(a.send.mock.calls[0][1]).toBe(data);
    expect(b.send.mock.calls[0][1]).toBe(data);
    runs.finish(run, 'succeeded', 0, null);
    expect(log).toEqual(['a.send:agent:1', 'b.send:agent:1', 'a.send:end:2', 'b.send:end:2', 'a.end', 'b.end']);
    expect(a.end).toHaveBeenCalledTimes(1);
    expect(gone.send).not.toHaveBeenCalled();
    expect(gone.end).not.toHaveBeenCalled();
    expect(a.cleanup).not.toHaveBeenCalled();
    expect(run.clients.size).toBe(0);
  });

  it('RUN-7: waiters is a real Set of functions; finish calls each once with a status body and clears it', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    expect(run.waiters).toBeInstanceOf(Set);
    const p = runs.wait(run);
    expect(run.waiters.size).toBe(1);
    expect(typeof [...run.waiters][0]).toBe('function');
    const spy = vi.fn();
    run.waiters.add(spy);
    runs.finish(run, 'succeeded', 0, null);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(Object.keys(spy.mock.calls[0][0])).toEqual(SB_KEYS);
    expect(spy.mock.calls[0][0]).toMatchObject({ id: run.id, status: 'succeeded', exitCode: 0 });
    expect(run.waiters.size).toBe(0);
    await expect(p).resolves.toEqual(spy.mock.calls[0][0]);
  });

  it('RUN-8: methods keep working on an evicted run; get/list no longer see it', async () => {
    vi.useFakeTimers();
    const { runs, sse } = makeRuns({ ttlMs: 100 });
    const run = runs.create({ projectId: 'p' });
    runs.emit(run, 'agent', { a: 1 });
    runs.finish(run, 'succeeded', 0, null);
    vi.advanceTimersByTime(100);
    expect(runs.get(run.id)).toBeNull();
    expect(runs.list()).toEqual([]);
    expect(runs.list({ projectId: 'p' })).toEqual([]);

    expect(runs.emit(run, 'late', { b: 2 })).toMatchObject({ id: 3, event: 'late' });
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3]);
    expect(runs.statusBody(run)).toMatchObject({ id: run.id, status: 'succeeded' });
    await expect(runs.wait(run)).resolves.toMatchObject({ status: 'succeeded' });
    await expect(runs.cancel(run)).resolves.toMatchObject({ status: 'succeeded' });
    runs.fail(run, 'E', 'm');
    expect(run.status).toBe('succeeded');
    expect(runs.signalChild(run, 'SIGTERM')).toBe(false);
    runs.stream(run, { get: () => undefined, query: {} }, { on: vi.fn() });
    expect(sse[0].send.mock.calls.map((c: any[]) => c[2])).toEqual([1, 2, 3]);
    expect(sse[0].end).toHaveBeenCalledTimes(1);

    // a retry after eviction: the host resets the status, finish runs again
    run.status = 'running';
    runs.finish(run, 'failed', 1, null);
    expect(run.status).toBe('failed');
    expect(run.events.at(-1)).toMatchObject({ id: 4, event: 'end', data: { status: 'failed' } });
    expect(runs.get(run.id)).toBeNull();
  });

  it('RUN-8: methods keep working on a dropped run; get/list/shutdownActive no longer see it', async () => {
    const { runs } = makeRuns();
    const run = runs.create({ projectId: 'p' });
    run.status = 'running';
    runs.drop(run);
    expect(runs.get(run.id)).toBeNull();
    expect(runs.list()).toEqual([]);
    expect(runs.emit(run, 'late', 1)).toMatchObject({ id: 1, event: 'late', data: 1 });
    expect(runs.statusBody(run)).toMatchObject({ status: 'canceled' });
    await expect(runs.wait(run)).resolves.toMatchObject({ status: 'canceled' });
    await expect(runs.cancel(run)).resolves.toMatchObject({ status: 'canceled' });
    run.status = 'running';
    const child = new FakeChild('SIGTERM');
    run.child = child;
    await runs.shutdownActive({ graceMs: 5 });
    expect(run.status).toBe('running');
    expect(run.cancelRequested).toBe(false);
    expect(child.signals).toEqual([]);
    expect(runs.signalChild(run, 'SIGTERM')).toBe(true);
    expect(child.signals).toEqual(['SIGTERM']);
  });
});

describe('§6 create / get / list (CRE, GET, LST)', () => {
  it('CRE-1/IMP-12: undefined, null and non-object meta are treated as {}', () => {
    const { runs } = makeRuns();
    const fnMeta = Object.assign(() => {}, { projectId: 'p' });
    for (const meta of [undefined, null, 'projectId', 42, true, fnMeta]) {
      let run: any;
      expect(() => {
        run = runs.create(meta);
      }).not.toThrow();
      expect(run.projectId).toBeNull();
      expect(run.conversationId).toBeNull();
      expect(run.status).toBe('queued');
      expect(run.mediaExecution).toEqual({ mode: 'enabled' });
      expect(run.toolBundle).toEqual({ mcpServers: [] });
    }
    expect(runs.create().id).toMatch(UUID_V4);
  });

  it('CRE-1: only the nine meta keys are read', () => {
    const { runs } = makeRuns();
    const read = new Set<string>();
    const target = { projectId: 'p', status: 'running', id: 'forged', events: [1], extra: 'x', nextEventId: 9 };
    const meta = new Proxy(target, {
      get(t, key, receiver) {
        if (typeof key === 'string') read.add(key);
        return Reflect.get(t, key, receiver);
      },
    });
    const run = runs.create(meta);
    expect([...read].filter((k) => !META_KEYS.has(k))).toEqual([]);
    expect(read.has('projectId')).toBe(true);
    expect(run.projectId).toBe('p');
    expect(run.id).not.toBe('forged');
    expect(run.status).toBe('queued');
    expect(run.events).toEqual([]);
    expect(run.nextEventId).toBe(1);
    expect('extra' in run).toBe(false);
  });

  it('CRE-2: create registers the run in insertion order, emits nothing, touches no file, starts no timer', () => {
    vi.useFakeTimers();
    const dir = tmpDir();
    const { runs } = makeRuns({ runsLogDir: dir });
    const a = runs.create();
    const b = runs.create();
    const c = runs.create();
    expect(vi.getTimerCount()).toBe(0);
    expect(runs.list()).toEqual([a, b, c]);
    expect(runs.get(b.id)).toBe(b);
    expect(a.events).toEqual([]);
    expect(a.nextEventId).toBe(1);
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(new Set([a.id, b.id, c.id]).size).toBe(3);
  });

  it("CRE-3: the seven id fields are stored verbatim when non-empty strings (not trimmed), else null", () => {
    const { runs } = makeRuns();
    const run = runs.create({
      projectId: '  ',
      conversationId: ' c ',
      assistantMessageId: 'am',
      clientRequestId: 'cr',
      agentId: 'claude',
      appliedPluginSnapshotId: '\t',
      pluginId: 'plug',
    });
    expect(run.projectId).toBe('  ');
    expect(run.conversationId).toBe(' c ');
    expect(run.assistantMessageId).toBe('am');
    expect(run.clientRequestId).toBe('cr');
    expect(run.agentId).toBe('claude');
    expect(run.appliedPluginSnapshotId).toBe('\t');
    expect(run.pluginId).toBe('plug');
    const bad = runs.create({
      projectId: '',
      conversationId: 5,
      assistantMessageId: null,
      clientRequestId: ['x'],
      agentId: new String('x'),
      appliedPluginSnapshotId: {},
      pluginId: true,
    });
    for (const f of ['projectId', 'conversationId', 'assistantMessageId', 'clientRequestId', 'agentId', 'appliedPluginSnapshotId', 'pluginId']) {
      expect(bad[f], f).toBeNull();
    }
  });

  it('CRE-4: eventsLogPath is path.join(runsLogDir, id, "events.jsonl"), relative paths stay relative', () => {
    const dir = tmpDir();
    const abs = makeRuns({ runsLogDir: dir }).runs.create();
    expect(abs.eventsLogPath).toBe(path.join(dir, abs.id, 'events.jsonl'));
    const rel = makeRuns({ runsLogDir: 'some/./dir/../logs/' }).runs.create();
    expect(rel.eventsLogPath).toBe(path.join('some/./dir/../logs/', rel.id, 'events.jsonl'));
    expect(rel.eventsLogPath).toBe(`some/logs/${rel.id}/events.jsonl`);
    expect(fs.existsSync('some')).toBe(false);
    expect(makeRuns().runs.create().eventsLogPath).toBeNull();
  });

  it('CRE-5: mediaExecution and toolBundle are normalized (§12/§13), secrets kept in toolBundle', () => {
    const { runs } = makeRuns();
    const media = { mode: 'question', allowedSurfaces: ['video', 'image', 'video'], extra: 1 };
    const run = runs.create({
      mediaExecution: media,
      toolBundle: {
        mcpServers: [
          { id: ' run-tools ', command: ' node ', args: ['server.js', 7, '--token=secret'], env: { API_TOKEN: 'secret', E: ' ', N: 5 }, url: 'http://x' },
          { id: 'remote', transport: 'http', url: ' HTTPS://Api.Example.com:443/mcp?key=abc ', headers: { Authorization: 'Bearer t', X: '' } },
          { id: 'run-tools', command: 'other' },
          { id: 'bad id', command: 'x' },
        ],
      },
    });
    expect(run.mediaExecution).toEqual({ mode: 'question', allowedSurfaces: ['video', 'image'] });
    expect(Object.keys(run.mediaExecution)).toEqual(['mode', 'allowedSurfaces']);
    expect(run.mediaExecution).not.toBe(media);
    expect(run.toolBundle).toEqual({
      mcpServers: [
        { id: 'run-tools', transport: 'stdio', enabled: true, command: 'node', args: ['server.js', '--token=secret'], env: { API_TOKEN: 'secret' } },
        { id: 'remote', transport: 'http', enabled: true, url: 'https://api.example.com/mcp?key=abc', authMode: 'oauth', headers: { Authorization: 'Bearer t' } },
      ],
    });
    const invalid = runs.create({ mediaExecution: { mode: 'disabled', allowedSurfaces: ['gif'] }, toolBundle: 'x' });
    expect(invalid.mediaExecution).toEqual({ mode: 'enabled' });
    expect(invalid.toolBundle).toEqual({ mcpServers: [] });
  });

  it('GET-1: get(id) returns the registered run for a strictly equal key, otherwise null (never undefined)', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    expect(runs.get(run.id)).toBe(run);
    for (const key of ['nope', '', undefined, null, 42, new String(run.id), run.id.toUpperCase(), ` ${run.id}`]) {
      expect(runs.get(key)).toBeNull();
    }
    expect((runs.get as any)()).toBeNull();
    runs.drop(run);
    expect(runs.get(run.id)).toBeNull();
  });

  it('LST-1/IMP-12: list(undefined), list() and list(null) are list({})', () => {
    const { runs } = makeRuns();
    const a = runs.create();
    const b = runs.create();
    expect(runs.list()).toEqual([a, b]);
    expect(runs.list(undefined)).toEqual([a, b]);
    expect(() => runs.list(null)).not.toThrow();
    expect(runs.list(null)).toEqual([a, b]);
  });

  it('LST-2: a new Array in creation order, filtered by projectId, conversationId and status', () => {
    const { runs } = makeRuns();
    const a = runs.create({ projectId: 'p1', conversationId: 'c1' });
    const b = runs.create({ projectId: 'p1', conversationId: 'c2' });
    const c = runs.create({ projectId: 'p2', conversationId: 'c1' });
    const d = runs.create({});
    b.status = 'running';
    runs.finish(c, 'succeeded', 0, null);
    d.status = 'weird';
    const all = runs.list();
    expect(all).toEqual([a, b, c, d]);
    expect(runs.list()).not.toBe(all);
    all.pop();
    expect(runs.list()).toHaveLength(4);
    const ids = (xs: any[]) => xs.map((r) => r.id);
    expect(ids(runs.list({ projectId: 'p1' }))).toEqual(ids([a, b]));
    expect(ids(runs.list({ conversationId: 'c1' }))).toEqual(ids([a, c]));
    expect(ids(runs.list({ projectId: 'p1', conversationId: 'c2' }))).toEqual(ids([b]));
    expect(ids(runs.list({ status: 'active' }))).toEqual(ids([a, b, d]));
    expect(ids(runs.list({ status: 'queued' }))).toEqual(ids([a]));
    expect(ids(runs.list({ status: 'running' }))).toEqual(ids([b]));
    expect(ids(runs.list({ status: 'succeeded' }))).toEqual(ids([c]));
    expect(ids(runs.list({ status: 'weird' }))).toEqual(ids([d]));
    expect(ids(runs.list({ status: 'nothing' }))).toEqual([]);
    expect(ids(runs.list({ projectId: 'p1', status: 'active' }))).toEqual(ids([a, b]));
    // empty strings and non-strings do not filter
    for (const f of [{ status: '' }, { status: 5 }, { status: null }, { projectId: '' }, { projectId: 7 }, { conversationId: ['c1'] }, {}]) {
      expect(ids(runs.list(f))).toEqual(ids([a, b, c, d]));
    }
  });

  it('LST-3: filters read the live fields', () => {
    const { runs } = makeRuns();
    const run = runs.create({ projectId: 'p' });
    run.status = 'running';
    expect(runs.list({ status: 'active' })).toEqual([run]);
    run.projectId = 'q';
    expect(runs.list({ projectId: 'p' })).toEqual([]);
    expect(runs.list({ projectId: 'q', status: 'active' })).toEqual([run]);
    run.status = 'canceled';
    expect(runs.list({ status: 'active' })).toEqual([]);
    run.status = 'queued';
    expect(runs.list({ status: 'active' })).toEqual([run]);
  });
});

describe('§7 start / emit (STA, EMT)', () => {
  it('STA-1: start sets a new analyticsTelemetry: previous own enumerable props, startRequestedAt overwritten in place', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000);
    const { runs } = makeRuns();
    const run = runs.create();
    runs.start(run, () => Promise.resolve());
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: 1_000 });

    const prev: any = { a: 1, startRequestedAt: 5, z: 2 };
    Object.defineProperty(prev, 'hidden', { value: 1, enumerable: false });
    run.analyticsTelemetry = prev;
    vi.setSystemTime(2_000);
    runs.start(run, () => Promise.resolve());
    expect(run.analyticsTelemetry).not.toBe(prev);
    expect(Object.keys(run.analyticsTelemetry)).toEqual(['a', 'startRequestedAt', 'z']);
    expect(run.analyticsTelemetry).toEqual({ a: 1, startRequestedAt: 2_000, z: 2 });
    expect('hidden' in run.analyticsTelemetry).toBe(false);
    expect(prev.startRequestedAt).toBe(5);

    run.analyticsTelemetry = null;
    runs.start(run, () => Promise.resolve());
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: 2_000 });
  });

  it('STA-2: starter(run) is called synchronously, exactly once; start never changes status', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const starter = vi.fn(() => Promise.resolve());
    runs.start(run, starter);
    expect(starter).toHaveBeenCalledTimes(1);
    expect(starter.mock.calls[0][0]).toBe(run);
    expect(run.status).toBe('queued');
    run.status = 'running';
    runs.start(run, () => Promise.resolve());
    expect(run.status).toBe('running');
  });

  it('STA-3: a synchronous throw propagates; the telemetry stamp stays and nothing else changes', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(3_000);
    const { runs } = makeRuns();
    const run = runs.create();
    vi.setSystemTime(4_000);
    const boom = new Error('sync boom');
    expect(() =>
      runs.start(run, () => {
        throw boom;
      }),
    ).toThrow(boom);
    expect(run.analyticsTelemetry).toEqual({ startRequestedAt: 4_000 });
    expect(run.status).toBe('queued');
    expect(run.updatedAt).toBe(3_000);
    expect(run.events).toEqual([]);
    expect(run.error).toBeNull();
  });

  it('STA-4: a starter returning a non-thenable makes start() throw a TypeError; .catch is called on what it returns', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    for (const value of [undefined, null, 5, 'x', {}, { then() {} }]) {
      expect(() => runs.start(run, () => value)).toThrow(TypeError);
    }
    const thenable = { catch: vi.fn() };
    expect(runs.start(run, () => thenable)).toBe(run);
    expect(thenable.catch).toHaveBeenCalledTimes(1);
    expect(typeof thenable.catch.mock.calls[0][0]).toBe('function');
    expect(run.status).toBe('queued');
  });

  it('STA-5: a rejection calls fail(run, "AGENT_EXECUTION_FAILED", message); fulfilment is ignored', async () => {
    const { runs, createSseErrorPayload } = makeRuns();
    const ok = runs.create();
    runs.start(ok, () => Promise.resolve('value'));
    const errRun = runs.create();
    runs.start(errRun, () => Promise.reject(new Error('boom')));
    const strRun = runs.create();
    runs.start(strRun, () => Promise.reject('plain reason'));
    const objRun = runs.create();
    runs.start(objRun, () => Promise.reject({ message: 'not an Error' }));
    expect(errRun.status).toBe('queued');
    await flush();

    expect(ok.status).toBe('queued');
    expect(ok.events).toEqual([]);

    expect(createSseErrorPayload).toHaveBeenCalledTimes(3);
    expect(createSseErrorPayload.mock.calls[0]).toEqual(['AGENT_EXECUTION_FAILED', 'boom', {}]);
    expect(createSseErrorPayload.mock.calls[1]).toEqual(['AGENT_EXECUTION_FAILED', 'plain reason', {}]);
    expect(createSseErrorPayload.mock.calls[2]).toEqual(['AGENT_EXECUTION_FAILED', '[object Object]', {}]);
    expect(errRun).toMatchObject({ status: 'failed', exitCode: 1, signal: null, error: 'boom', errorCode: 'AGENT_EXECUTION_FAILED' });
    expect(errRun.events.map((e: any) => e.event)).toEqual(['error', 'end']);
    expect(errRun.events[1].data).toEqual({ code: 1, signal: null, status: 'failed' });
    expect(strRun).toMatchObject({ status: 'failed', error: 'plain reason' });
    expect(objRun).toMatchObject({ status: 'failed', error: '[object Object]' });
  });

  it('STA-6: start returns run synchronously; repeated starts and starts on terminal runs are not blocked', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const starter = vi.fn(() => Promise.resolve());
    expect(runs.start(run, starter)).toBe(run);
    expect(runs.start(run, starter)).toBe(run);
    runs.finish(run, 'succeeded', 0, null);
    expect(runs.start(run, starter)).toBe(run);
    expect(starter).toHaveBeenCalledTimes(3);
    expect(run.status).toBe('succeeded');
  });

  it('EMT-1: emit returns {id,event,data,timestamp} with the caller\'s data object; run.events.at(-1) deep-equals it', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_717_171_717_171);
    const { runs } = makeRuns();
    const run = runs.create();
    const data = { type: 'text_delta', delta: 'hello' };
    const rec = runs.emit(run, 'agent', data);
    expect(Object.keys(rec)).toEqual(['id', 'event', 'data', 'timestamp']);
    expect(rec.data).toBe(data);
    expect(rec).toEqual({ id: 1, event: 'agent', data, timestamp: 1_717_171_717_171 });
    expect(run.events.at(-1)).toEqual(rec);
  });

  it('EMT-1: event is not validated and is stored as given', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const weird = ['', 'Ünïcødé \u2028 evt', 'end', 'x'.repeat(300)];
    for (const ev of weird) expect(runs.emit(run, ev, 1).event).toBe(ev);
    const num = runs.emit(run, 42 as any, 1);
    expect(num.event).toBe(42);
    expect(run.events.map((e: any) => e.event)).toEqual([...weird, 42]);
    expect(run.status).toBe('queued');
  });

  it('EMT-2: error fields, id, history (trimmed) and updatedAt are all updated before clients get send()', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000);
    const { runs } = makeRuns({ maxEvents: 2 });
    const run = runs.create();
    runs.emit(run, 'a', 1);
    runs.emit(run, 'b', 2);
    const seen: any[] = [];
    run.clients.add({
      send: (event: unknown, data: unknown, id: unknown) =>
        seen.push({
          event,
          data,
          id,
          nextEventId: run.nextEventId,
          updatedAt: run.updatedAt,
          ids: run.events.map((e: any) => e.id),
          error: run.error,
          errorCode: run.errorCode,
        }),
      end() {},
      cleanup() {},
    });
    vi.setSystemTime(5_000);
    const data = { message: ' m ', code: 'C' };
    const rec = runs.emit(run, 'error', data);
    expect(rec).toEqual({ id: 3, event: 'error', data, timestamp: 5_000 });
    expect(seen).toEqual([
      { event: 'error', data, id: 3, nextEventId: 4, updatedAt: 5_000, ids: [2, 3], error: 'm', errorCode: 'C' },
    ]);
    expect(seen[0].data).toBe(data);
    expect(run.updatedAt).toBe(5_000);
    expect(run.nextEventId).toBe(4);
  });

  it('EMT-3: ids start at 1, grow by exactly 1, are never reused; trimming never renumbers', () => {
    const { runs } = makeRuns({ maxEvents: 3 });
    const run = runs.create();
    const ids: number[] = [];
    for (let i = 0; i < 10; i++) ids.push(runs.emit(run, 'tick', i).id);
    expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(run.events.map((e: any) => [e.id, e.data])).toEqual([
      [8, 7],
      [9, 8],
      [10, 9],
    ]);
    expect(run.nextEventId).toBe(11);
    const other = runs.create();
    expect(runs.emit(other, 'x', null).id).toBe(1);
  });

  it('EMT-4: run.events never holds more than maxEvents records after an emit returns', () => {
    for (const maxEvents of [1, 2, 5]) {
      const { runs } = makeRuns({ maxEvents });
      const run = runs.create();
      for (let i = 1; i <= 12; i++) {
        runs.emit(run, 'tick', i);
        expect(run.events.length).toBe(Math.min(i, maxEvents));
        expect(run.events.at(-1).id).toBe(i);
      }
      runs.finish(run, 'succeeded', 0, null);
      expect(run.events.length).toBe(maxEvents);
      expect(run.events.at(-1).event).toBe('end');
    }
  });

  it('EMT-5: no terminal guard: late emits append, bump updatedAt, apply §8 and fan out', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000);
    const { runs } = makeRuns();
    const run = runs.create();
    runs.finish(run, 'succeeded', 0, null);
    const late = makeClient('late');
    run.clients.add(late);
    vi.setSystemTime(2_000);
    const data = { error: { message: 'late failure', code: 'LATE' } };
    const rec = runs.emit(run, 'error', data);
    expect(rec.id).toBe(2);
    expect(run.events.map((e: any) => e.event)).toEqual(['end', 'error']);
    expect(run.updatedAt).toBe(2_000);
    expect(run.error).toBe('late failure');
    expect(run.errorCode).toBe('LATE');
    expect(run.status).toBe('succeeded');
    expect(late.send).toHaveBeenCalledWith('error', data, 2);
    expect(run.nextEventId).toBe(3);

    const dropped = runs.create();
    runs.drop(dropped);
    const c = makeClient();
    dropped.clients.add(c);
    expect(runs.emit(dropped, 'x', 'y').id).toBe(1);
    expect(c.send).toHaveBeenCalledWith('x', 'y', 1);
    expect(dropped.events).toHaveLength(1);
  });

  it('EMT-5/IMP-1: late events after finish are not written to the log; the last line stays "end"', async () => {
    const dir = tmpDir();
    const { runs } = makeRuns({ runsLogDir: dir });
    const run = runs.create();
    runs.emit(run, 'agent', { n: 1 });
    runs.emit(run, 'agent', { n: 2 });
    runs.finish(run, 'succeeded', 0, null);
    runs.emit(run, 'late', { n: 3 });
    await runs.shutdownActive();
    runs.emit(run, 'later', { n: 4 });
    await runs.shutdownActive();
    await sleep(30);
    const lines = readLines(run.eventsLogPath).map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.id, l.event])).toEqual([
      [1, 'agent'],
      [2, 'agent'],
      [3, 'end'],
    ]);
    expect(lines[2].data).toEqual({ code: 0, signal: null, status: 'succeeded' });
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3, 4, 5]);
    expect(openFdsOn(run.eventsLogPath)).toBe(0);
  });

  it('EMT-6: a log failure never throws and never stops fan-out', async () => {
    const dir = tmpDir();
    const blocker = path.join(dir, 'not-a-dir');
    fs.writeFileSync(blocker, 'x');
    const { runs } = makeRuns({ runsLogDir: blocker });
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const run = runs.create();
    const c = makeClient();
    run.clients.add(c);
    const data = { n: 1 };
    let rec: any;
    expect(() => {
      rec = runs.emit(run, 'agent', data);
    }).not.toThrow();
    expect(rec).toMatchObject({ id: 1, event: 'agent' });
    expect(c.send).toHaveBeenCalledWith('agent', data, 1);
    expect(() => runs.emit(run, 'agent', { n: 2 })).not.toThrow();
    expect(() => runs.finish(run, 'succeeded', 0, null)).not.toThrow();
    expect(c.send).toHaveBeenCalledTimes(3);
    expect(c.end).toHaveBeenCalledTimes(1);
    expect(run.status).toBe('succeeded');
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3]);
    await expect(runs.shutdownActive()).resolves.toBeUndefined();
    expect(fs.readFileSync(blocker, 'utf8')).toBe('x');
    warn.mockRestore();
  });

  it('EMT-6/LOG-6: unserializable data (BigInt, cycle) does not throw and still fans out the caller\'s object', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const c = makeClient();
    run.clients.add(c);
    const cyclic: any = { a: 1 };
    cyclic.self = cyclic;
    const big = { n: 10n };
    expect(runs.emit(run, 'cyc', cyclic).data).toBe(cyclic);
    expect(runs.emit(run, 'big', big).data).toBe(big);
    expect(c.send.mock.calls[0][1]).toBe(cyclic);
    expect(c.send.mock.calls[1][1]).toBe(big);
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2]);
  });
});

describe('§8 Error extraction (ERR)', () => {
  it('ERR-1: only truthy objects (arrays included) are payloads; nested error uses the same test', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    for (const data of ['boom', 42, null, undefined, true, 0, '']) {
      runs.emit(run, 'error', data);
    }
    expect(run.error).toBeNull();
    expect(run.errorCode).toBeNull();
    expect(run.events).toHaveLength(7);

    runs.emit(run, 'error', Object.assign(['x'], { message: ' from array ' }));
    expect(run.error).toBe('from array');
    runs.emit(run, 'error', { error: Object.assign([], { code: 'NESTED_ARRAY' }), code: 'OUTER' });
    expect(run.errorCode).toBe('NESTED_ARRAY');
    runs.emit(run, 'error', { error: 'a string, not an object', message: 'outer msg', code: 'OC' });
    expect(run.error).toBe('outer msg');
    expect(run.errorCode).toBe('OC');
  });

  it('ERR-2: message and code are JS-trimmed, nested first, each falling back independently', () => {
    const { runs } = makeRuns();
    const a = runs.create();
    runs.emit(a, 'error', { error: { message: 'a' }, code: 'X' });
    expect([a.error, a.errorCode]).toEqual(['a', 'X']);

    const b = runs.create();
    runs.emit(b, 'error', { error: { message: '   ', code: 7 }, message: ' outer ', code: ' OC ' });
    expect([b.error, b.errorCode]).toEqual(['outer', 'OC']);

    const c = runs.create();
    runs.emit(c, 'error', { error: { message: ' inner ', code: 'IC' }, message: 'outer', code: 'OC' });
    expect([c.error, c.errorCode]).toEqual(['inner', 'IC']);

    const d = runs.create();
    runs.emit(d, 'error', { message: '\uFEFF\u00A0 msg \u2028\n', code: '\u0085C' });
    expect(d.error).toBe('msg');
    expect(d.errorCode).toBe('\u0085C');

    const e = runs.create();
    runs.emit(e, 'error', { message: 5, code: ['X'], error: { message: null } });
    expect([e.error, e.errorCode]).toEqual([null, null]);
  });

  it('ERR-3: fields are set only when found, never cleared, overwritten later, terminal runs included', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    runs.emit(run, 'error', { message: 'first', code: 'C1' });
    runs.emit(run, 'error', {});
    runs.emit(run, 'error', 'text');
    expect([run.error, run.errorCode]).toEqual(['first', 'C1']);
    runs.emit(run, 'error', { message: 'second' });
    expect([run.error, run.errorCode]).toEqual(['second', 'C1']);
    runs.emit(run, 'error', { code: 'C2' });
    expect([run.error, run.errorCode]).toEqual(['second', 'C2']);
    runs.emit(run, 'Error', { message: 'case matters', code: 'NO' });
    runs.emit(run, 'agent', { message: 'not an error event', code: 'NO' });
    expect([run.error, run.errorCode]).toEqual(['second', 'C2']);
    runs.finish(run, 'succeeded', 0, null);
    runs.emit(run, 'error', { message: 'after end', code: 'C3' });
    expect([run.error, run.errorCode]).toEqual(['after end', 'C3']);
    expect(runs.statusBody(run)).toMatchObject({ error: 'after end', errorCode: 'C3' });
  });

  it('ERR-4: extraction happens before the record is stored and sent, for host emits and for fail()', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const seen: any[] = [];
    run.clients.add({
      send: (event: string) => seen.push([event, run.error, run.errorCode, run.events.length]),
      end() {},
      cleanup() {},
    });
    runs.emit(run, 'error', { error: { message: 'host', code: 'H' } });
    runs.fail(run, 'F_CODE', 'from fail');
    expect(seen).toEqual([
      ['error', 'host', 'H', 1],
      ['error', 'from fail', 'F_CODE', 2],
      ['end', 'from fail', 'F_CODE', 3],
    ]);
  });
});

describe('§9 finish / fail / wait / drop / isTerminal', () => {
  it('FIN-1: the first terminal verdict wins and there is exactly one end event', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const c = makeClient();
    run.clients.add(c);
    const w = runs.wait(run);
    expect(runs.finish(run, 'succeeded', 0, null)).toBeUndefined();
    const updatedAt = run.updatedAt;
    const late = makeClient();
    run.clients.add(late);
    expect(runs.finish(run, 'failed', 1, 'SIGTERM')).toBeUndefined();
    expect(runs.finish(run, 'canceled', null, 'SIGKILL')).toBeUndefined();
    expect(run).toMatchObject({ status: 'succeeded', exitCode: 0, signal: null });
    expect(run.updatedAt).toBe(updatedAt);
    expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1);
    expect(c.end).toHaveBeenCalledTimes(1);
    expect(late.send).not.toHaveBeenCalled();
    expect(late.end).not.toHaveBeenCalled();
    expect(run.clients.has(late)).toBe(true);
    await expect(w).resolves.toMatchObject({ status: 'succeeded', exitCode: 0, signal: null });
  });

  it('FIN-2: code/signal default to null; status is stored verbatim; a non-terminal status lets finish run again', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    runs.finish(run, 'succeeded');
    expect(run.exitCode).toBeNull();
    expect(run.signal).toBeNull();
    expect(run.events[0].data).toEqual({ code: null, signal: null, status: 'succeeded' });

    const odd = runs.create();
    runs.finish(odd, 'paused', 3, 'SIGSTOP');
    expect(odd.status).toBe('paused');
    expect(odd.exitCode).toBe(3);
    expect(odd.signal).toBe('SIGSTOP');
    expect(runs.list({ status: 'active' })).toContain(odd);
    runs.finish(odd, 'failed', 1, null);
    expect(odd.status).toBe('failed');
    expect(odd.events.map((e: any) => [e.event, e.data.status])).toEqual([
      ['end', 'paused'],
      ['end', 'failed'],
    ]);
    runs.finish(odd, 'succeeded', 0, null);
    expect(odd.events).toHaveLength(2);
  });

  it('FIN-3: status/exitCode/signal/updatedAt, then end event, then client end() + clear, then waiters + clear', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000);
    const { runs } = makeRuns();
    const run = runs.create();
    run.status = 'running';
    runs.emit(run, 'agent', { a: 1 });
    const order: string[] = [];
    const endData: any[] = [];
    const mk = (name: string) => ({
      send: (event: string, data: any, id: number) => {
        endData.push(data);
        order.push(`${name}.send:${event}:${id}:${run.status}:${run.exitCode}:${run.signal}:${run.updatedAt}:${run.events.at(-1).event}`);
      },
      end: () => order.push(`${name}.end:${run.clients.size}`),
      cleanup: () => order.push(`${name}.cleanup`),
    });
    run.clients.add(mk('c1'));
    run.clients.add(mk('c2'));
    const waiter = vi.fn((body: any) => order.push(`waiter:${body.status}:${run.clients.size}:${run.waiters.size}`));
    run.waiters.add(waiter);
    const p = runs.wait(run);
    vi.setSystemTime(7_777);
    runs.finish(run, 'failed', 2, 'SIGHUP');
    expect(order).toEqual([
      'c1.send:end:2:failed:2:SIGHUP:7777:end',
      'c2.send:end:2:failed:2:SIGHUP:7777:end',
      'c1.end:2',
      'c2.end:2',
      'waiter:failed:0:2',
    ]);
    expect(Object.keys(endData[0])).toEqual(['code', 'signal', 'status']);
    expect(endData[0]).toEqual({ code: 2, signal: 'SIGHUP', status: 'failed' });
    expect(run.events.at(-1)).toEqual({ id: 2, event: 'end', data: { code: 2, signal: 'SIGHUP', status: 'failed' }, timestamp: 7_777 });
    expect(Object.keys(run.events.at(-1).data)).toEqual(['code', 'signal', 'status']);
    expect(run.clients.size).toBe(0);
    expect(run.waiters.size).toBe(0);
    expect(run.updatedAt).toBe(7_777);
    const body = waiter.mock.calls[0][0];
    expect(Object.keys(body)).toEqual(SB_KEYS);
    expect(body).toMatchObject({ status: 'failed', exitCode: 2, signal: 'SIGHUP', updatedAt: 7_777 });
    await expect(p).resolves.toEqual(body);
  });

  it('FIN-3/LOG-7: finish writes the end line and closes the log handle', async () => {
    const dir = tmpDir();
    const { runs } = makeRuns({ runsLogDir: dir });
    const run = runs.create();
    const file = run.eventsLogPath;
    runs.emit(run, 'agent', { n: 1 });
    runs.emit(run, 'agent', { n: 2 });
    runs.finish(run, 'succeeded', 0, null);
    expect(await until(() => readLines(file).length === 3 && openFdsOn(file) === 0)).toBe(true);
    const lines = readLines(file).map((l) => JSON.parse(l));
    expect(lines.at(-1)).toEqual({ id: 3, event: 'end', data: { code: 0, signal: null, status: 'succeeded' }, timestamp: run.events.at(-1).timestamp });
    expect(Object.keys(lines.at(-1))).toEqual(['id', 'event', 'data', 'timestamp']);

    // a run whose only event is 'end' still gets a file
    const only = runs.create();
    runs.finish(only, 'canceled', null, 'SIGTERM');
    await runs.shutdownActive();
    expect(readLines(only.eventsLogPath).map((l) => JSON.parse(l).event)).toEqual(['end']);
    expect(openFdsOn(only.eventsLogPath)).toBe(0);
  });

  it('FIN-4: finish neither signals the child nor calls acpSession.abort', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    run.status = 'running';
    const child = new FakeChild('SIGTERM');
    const abort = vi.fn();
    run.child = child;
    run.acpSession = { abort };
    runs.finish(run, 'canceled', null, 'SIGTERM');
    expect(child.signals).toEqual([]);
    expect(abort).not.toHaveBeenCalled();
    expect(run.child).toBe(child);
    expect(runs.statusBody(run).childExited).toBe(false);
  });

  it('FIN-5: after ttlMs the run leaves the registry only if still terminal; the run object is untouched', () => {
    vi.useFakeTimers();
    const { runs } = makeRuns({ ttlMs: 1_000 });
    const done = runs.create();
    const retried = runs.create();
    runs.emit(done, 'agent', { a: 1 });
    runs.finish(done, 'succeeded', 0, null);
    runs.finish(retried, 'failed', 1, null);
    retried.status = 'queued';
    const events = JSON.stringify(done.events);
    const body = runs.statusBody(done);
    vi.advanceTimersByTime(999);
    expect(runs.get(done.id)).toBe(done);
    vi.advanceTimersByTime(1);
    expect(runs.get(done.id)).toBeNull();
    expect(runs.list()).toEqual([retried]);
    expect(runs.get(retried.id)).toBe(retried);
    expect(done.status).toBe('succeeded');
    expect(JSON.stringify(done.events)).toBe(events);
    expect(runs.statusBody(done)).toEqual(body);
    vi.advanceTimersByTime(60_000);
    expect(runs.get(retried.id)).toBe(retried);
  });

  it('FIN-5: eviction leaves the log file in place', async () => {
    const dir = tmpDir();
    const { runs } = makeRuns({ runsLogDir: dir, ttlMs: 20 });
    const run = runs.create();
    runs.emit(run, 'agent', { a: 1 });
    runs.finish(run, 'succeeded', 0, null);
    await runs.shutdownActive();
    expect(await until(() => runs.get(run.id) === null)).toBe(true);
    await sleep(20);
    expect(readLines(run.eventsLogPath).map((l) => JSON.parse(l).event)).toEqual(['agent', 'end']);
  });

  it('FAL-1: fail emits an error event with the payload factory result, then finish(failed, 1, null)', () => {
    const { runs, createSseErrorPayload } = makeRuns();
    const run = runs.create();
    const c = makeClient();
    run.clients.add(c);
    const init = { retryable: true };
    expect(runs.fail(run, 'CODE', 'the message', init)).toBeUndefined();
    expect(createSseErrorPayload).toHaveBeenCalledTimes(1);
    expect(createSseErrorPayload.mock.calls[0][0]).toBe('CODE');
    expect(createSseErrorPayload.mock.calls[0][1]).toBe('the message');
    expect(createSseErrorPayload.mock.calls[0][2]).toBe(init);
    const payload = createSseErrorPayload.mock.results[0].value;
    expect(c.send.mock.calls[0][0]).toBe('error');
    expect(c.send.mock.calls[0][1]).toBe(payload);
    expect(c.send.mock.calls[0][2]).toBe(1);
    expect(c.send.mock.calls[1]).toEqual(['end', { code: 1, signal: null, status: 'failed' }, 2]);
    expect(run).toMatchObject({ status: 'failed', exitCode: 1, signal: null, error: 'the message', errorCode: 'CODE' });
    expect(run.events.map((e: any) => e.event)).toEqual(['error', 'end']);
    expect(run.events[0].data).toEqual(JSON.parse(JSON.stringify(payload)));

    const other = runs.create();
    runs.fail(other, 'C2', 'm2');
    expect(createSseErrorPayload.mock.calls[1]).toEqual(['C2', 'm2', {}]);
  });

  it('FAL-1: a non-object payload becomes the error data as is (no error fields)', () => {
    const runs = createChatRunService({ ...baseOptions(), createSseErrorPayload: () => 'just text' } as any) as any;
    const run = runs.create();
    runs.fail(run, 'C', 'm');
    expect(run.events[0]).toMatchObject({ event: 'error', data: 'just text' });
    expect(run.error).toBeNull();
    expect(run.errorCode).toBeNull();
    expect(run.status).toBe('failed');
  });

  it('WAI-1: on a terminal run wait resolves at once with a status body computed now', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    runs.finish(run, 'succeeded', 0, null);
    const p = runs.wait(run);
    expect(run.waiters.size).toBe(0);
    const at = run.updatedAt;
    run.updatedAt = at + 1000;
    let value: any;
    p.then((v: any) => (value = v));
    await Promise.resolve();
    await Promise.resolve();
    expect(value).toBeDefined();
    expect(Object.keys(value)).toEqual(SB_KEYS);
    expect(value).toMatchObject({ id: run.id, status: 'succeeded', updatedAt: at });
  });

  it('WAI-1: on a live run wait adds a waiter that finish or drop resolves; it never rejects', async () => {
    const { runs } = makeRuns();
    const a = runs.create();
    const b = runs.create();
    const pa = runs.wait(a);
    const pa2 = runs.wait(a);
    const pb = runs.wait(b);
    expect(a.waiters.size).toBe(2);
    let settled = false;
    pa.then(() => (settled = true), () => (settled = true));
    await flush();
    expect(settled).toBe(false);
    runs.finish(a, 'failed', 1, null);
    runs.drop(b);
    await expect(pa).resolves.toMatchObject({ status: 'failed', exitCode: 1 });
    await expect(pa2).resolves.toMatchObject({ status: 'failed' });
    const body = await pb;
    expect(Object.keys(body)).toEqual(SB_KEYS);
    expect(body).toMatchObject({ status: 'canceled' });
  });

  it('WAI-1: a terminal status written by the host leaves earlier waiters pending', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    let settled = false;
    const early = runs.wait(run);
    early.then(() => (settled = true));
    run.status = 'succeeded';
    await flush();
    expect(settled).toBe(false);
    expect(run.waiters.size).toBe(1);
    await expect(runs.wait(run)).resolves.toMatchObject({ status: 'succeeded' });
    // finish is a no-op now (terminal), so the early waiter is still pending
    runs.finish(run, 'failed', 1, null);
    await flush();
    expect(settled).toBe(false);
  });

  it('DRP-1: a falsy or terminal run is a no-op', () => {
    const { runs } = makeRuns();
    for (const falsy of [undefined, null, 0, '', false]) {
      expect(() => runs.drop(falsy)).not.toThrow();
      expect(runs.drop(falsy)).toBeUndefined();
    }
    expect((runs.drop as any)()).toBeUndefined();
    const run = runs.create();
    runs.finish(run, 'succeeded', 0, null);
    const c = makeClient();
    run.clients.add(c);
    const updatedAt = run.updatedAt;
    expect(runs.drop(run)).toBeUndefined();
    expect(runs.get(run.id)).toBe(run);
    expect(run.status).toBe('succeeded');
    expect(run.updatedAt).toBe(updatedAt);
    expect(c.end).not.toHaveBeenCalled();
    expect(run.clients.size).toBe(1);
  });

  it('DRP-1: drop removes the run, ends and clears clients, sets canceled/updatedAt, then resolves waiters', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000);
    const { runs } = makeRuns();
    const run = runs.create({ projectId: 'p' });
    run.status = 'running';
    const order: string[] = [];
    const mk = (name: string) => ({
      send: () => order.push(`${name}.send`),
      end: () => order.push(`${name}.end:${run.status}:${runs.get(run.id) === null}`),
      cleanup: () => order.push(`${name}.cleanup`),
    });
    run.clients.add(mk('c1'));
    run.clients.add(mk('c2'));
    const waiter = vi.fn((body: any) => order.push(`waiter:${body.status}:${body.updatedAt}:${run.clients.size}`));
    run.waiters.add(waiter);
    const p = runs.wait(run);
    vi.setSystemTime(2_000);
    expect(runs.drop(run)).toBeUndefined();
    expect(order).toEqual(['c1.end:running:true', 'c2.end:running:true', 'waiter:canceled:2000:0']);
    expect(runs.get(run.id)).toBeNull();
    expect(runs.list()).toEqual([]);
    expect(run.clients.size).toBe(0);
    expect(run.waiters.size).toBe(0);
    expect(run.status).toBe('canceled');
    expect(run.updatedAt).toBe(2_000);
    expect(Object.keys(waiter.mock.calls[0][0])).toEqual(SB_KEYS);
    await expect(p).resolves.toMatchObject({ status: 'canceled', updatedAt: 2_000 });
  });

  it('DRP-2: drop emits no event, keeps exitCode/signal/cancelRequested, no signal, no abort, no eviction', () => {
    vi.useFakeTimers();
    const { runs } = makeRuns({ ttlMs: 10 });
    const run = runs.create();
    run.status = 'running';
    runs.emit(run, 'agent', { a: 1 });
    run.exitCode = 5;
    run.signal = 'SIGINT';
    const child = new FakeChild('SIGTERM');
    const abort = vi.fn();
    run.child = child;
    run.acpSession = { abort };
    const timers = vi.getTimerCount();
    runs.drop(run);
    expect(run.events.map((e: any) => e.event)).toEqual(['agent']);
    expect(run.nextEventId).toBe(2);
    expect(run.exitCode).toBe(5);
    expect(run.signal).toBe('SIGINT');
    expect(run.cancelRequested).toBe(false);
    expect(child.signals).toEqual([]);
    expect(abort).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(timers);
    // even when the host revives the status, nothing evicts or re-registers it
    vi.advanceTimersByTime(1_000);
    expect(runs.get(run.id)).toBeNull();
  });

  it('TRM-1: isTerminal is true only for the three terminal strings', () => {
    const { runs } = makeRuns();
    for (const s of ['succeeded', 'failed', 'canceled']) expect(runs.isTerminal(s)).toBe(true);
    for (const s of ['queued', 'running', 'cancelled', 'SUCCEEDED', ' failed', 'failed ', '', 'active', 'weird']) {
      expect(runs.isTerminal(s)).toBe(false);
    }
    for (const v of [undefined, null, 0, 1, true, {}, ['failed'], new String('failed'), Symbol('failed')]) {
      expect(runs.isTerminal(v)).toBe(false);
    }
    expect((runs.isTerminal as any)()).toBe(false);
  });
});

describe('§17 Improvements touching §1-§9 (IMP-2, IMP-6, IMP-9, IMP-10)', () => {
  it('IMP-2: drop closes the log and later emits are never persisted', async () => {
    const dir = tmpDir();
    const { runs } = makeRuns({ runsLogDir: dir });
    const run = runs.create();
    run.status = 'running';
    const file = run.eventsLogPath;
    runs.emit(run, 'agent', { n: 1 });
    runs.emit(run, 'agent', { n: 2 });
    expect(await until(() => readLines(file).length === 2)).toBe(true);
    runs.drop(run);
    expect(await until(() => openFdsOn(file) === 0)).toBe(true);
    runs.emit(run, 'late', { n: 3 });
    await sleep(50);
    expect(openFdsOn(file)).toBe(0);
    await runs.shutdownActive();
    const lines = readLines(file).map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.id, l.event])).toEqual([
      [1, 'agent'],
      [2, 'agent'],
    ]);
    expect(fs.existsSync(file)).toBe(true);
  });

  it('IMP-6: a throwing client in emit does not stop the others; emit returns the record', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const bad = { send: vi.fn(() => { throw new Error('broken pipe'); }), end: vi.fn(), cleanup: vi.fn() };
    const good = makeClient();
    run.clients.add(bad);
    run.clients.add(good);
    const data = { x: 1 };
    let rec: any;
    expect(() => {
      rec = runs.emit(run, 'agent', data);
    }).not.toThrow();
    expect(rec).toMatchObject({ id: 1, event: 'agent' });
    expect(rec.data).toBe(data);
    expect(bad.send).toHaveBeenCalledTimes(1);
    expect(good.send).toHaveBeenCalledWith('agent', data, 1);
    expect(run.events).toHaveLength(1);
    expect(run.clients.size).toBe(2);
  });

  it('IMP-6: throwing send/end in finish: others still called, waiters resolved, clients cleared, log closed, eviction scheduled', async () => {
    const dir = tmpDir();
    const { runs } = makeRuns({ runsLogDir: dir, ttlMs: 30 });
    const run = runs.create();
    run.status = 'running';
    const badSend = { send: vi.fn(() => { throw new Error('send'); }), end: vi.fn(), cleanup: vi.fn() };
    const badEnd = { send: vi.fn(), end: vi.fn(() => { throw new Error('end'); }), cleanup: vi.fn() };
    const good = makeClient();
    run.clients.add(badSend);
    run.clients.add(badEnd);
    run.clients.add(good);
    const w = runs.wait(run);
    runs.emit(run, 'agent', { n: 1 });
    expect(() => runs.finish(run, 'succeeded', 0, null)).not.toThrow();
    expect(badSend.end).toHaveBeenCalledTimes(1);
    expect(badEnd.end).toHaveBeenCalledTimes(1);
    expect(good.send).toHaveBeenCalledWith('end', { code: 0, signal: null, status: 'succeeded' }, 2);
    expect(good.end).toHaveBeenCalledTimes(1);
    expect(run.clients.size).toBe(0);
    expect(run.waiters.size).toBe(0);
    await expect(w).resolves.toMatchObject({ status: 'succeeded' });
    expect(await until(() => openFdsOn(run.eventsLogPath) === 0 && readLines(run.eventsLogPath).length === 2)).toBe(true);
    expect(JSON.parse(readLines(run.eventsLogPath)[1]).event).toBe('end');
    expect(await until(() => runs.get(run.id) === null)).toBe(true);
  });

  it('IMP-6: a throwing end() in drop does not stop the others; waiters resolve', async () => {
    const { runs } = makeRuns();
    const run = runs.create();
    const bad = { send: vi.fn(), end: vi.fn(() => { throw new Error('end'); }), cleanup: vi.fn() };
    const good = makeClient();
    run.clients.add(bad);
    run.clients.add(good);
    const w = runs.wait(run);
    expect(() => runs.drop(run)).not.toThrow();
    expect(bad.end).toHaveBeenCalledTimes(1);
    expect(good.end).toHaveBeenCalledTimes(1);
    expect(run.clients.size).toBe(0);
    expect(run.status).toBe('canceled');
    await expect(w).resolves.toMatchObject({ status: 'canceled' });
  });

  it('IMP-9: fail() on a terminal run is a no-op (no event, no error/errorCode change)', () => {
    const { runs } = makeRuns();
    const run = runs.create();
    runs.emit(run, 'error', { message: 'kept', code: 'KEPT' });
    runs.finish(run, 'succeeded', 0, null);
    const updatedAt = run.updatedAt;
    expect(runs.fail(run, 'LATE', 'late message')).toBeUndefined();
    expect(run.events.map((e: any) => e.event)).toEqual(['error', 'end']);
    expect(run.nextEventId).toBe(3);
    expect([run.error, run.errorCode]).toEqual(['kept', 'KEPT']);
    expect(run.status).toBe('succeeded');
    expect(run.updatedAt).toBe(updatedAt);
    // a direct emit keeps EMT-5
    runs.emit(run, 'error', { message: 'direct', code: 'D' });
    expect([run.error, run.errorCode]).toEqual(['direct', 'D']);
  });

  it('IMP-9: a starter that rejects after the host finished the run appends nothing', async () => {
    const { runs, createSseErrorPayload } = makeRuns();
    const run = runs.create();
    let reject!: (e: unknown) => void;
    runs.start(run, () => new Promise((_, rej) => (reject = rej)));
    runs.finish(run, 'succeeded', 0, null);
    reject(new Error('post-processing failed'));
    await flush();
    expect(run.status).toBe('succeeded');
    expect(run.events.map((e: any) => e.event)).toEqual(['end']);
    expect(run.error).toBeNull();
    expect(run.errorCode).toBeNull();
    expect(createSseErrorPayload).not.toHaveBeenCalled();
  });

  it('IMP-10: no unhandled rejection from start() when fail() throws; the run still finishes failed', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const runs = createChatRunService({
        ...baseOptions(),
        createSseErrorPayload: () => {
          throw new Error('payload factory broke');
        },
      } as any) as any;
      const run = runs.create();
      const c = makeClient();
      run.clients.add(c);
      const w = runs.wait(run);
      expect(runs.start(run, () => Promise.reject(new Error('agent died')))).toBe(run);
      await sleep(30);
      expect(run).toMatchObject({ status: 'failed', exitCode: 1, signal: null });
      expect(run.events.map((e: any) => [e.event, e.data])).toEqual([
        ['end', { code: 1, signal: null, status: 'failed' }],
      ]);
      expect(c.end).toHaveBeenCalledTimes(1);
      await expect(w).resolves.toMatchObject({ status: 'failed', exitCode: 1 });
      await sleep(20);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
