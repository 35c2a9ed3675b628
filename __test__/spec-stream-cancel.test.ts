// SPEC §10-§16 (stream, signalChild/cancel/shutdownActive, mediaExecution, toolBundle,
// summary, statusBody, JSONL log) and the §17 improvements that touch them.
// Fake children only: no real process is spawned and no real process group is signalled.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createChatRunService } from '../index.js';

// ---------------------------------------------------------------------------------------------
// local helpers

type Call =
  | { type: 'send'; event: string; data: unknown; id: number }
  | { type: 'end' }
  | { type: 'cleanup' };

interface RecClient {
  calls: Call[];
  send: (event: string, data: unknown, id: number) => unknown;
  end: () => void;
  cleanup: () => void;
}

function recClient(hooks: Partial<{ onSend: (c: RecClient, e: string, d: unknown, id: number) => void; throwing: boolean }> = {}): RecClient {
  const c: RecClient = {
    calls: [],
    send(event, data, id) {
      c.calls.push({ type: 'send', event, data, id });
      hooks.onSend?.(c, event, data, id);
      if (hooks.throwing) throw new Error('send boom');
      return true;
    },
    end() {
      c.calls.push({ type: 'end' });
      if (hooks.throwing) throw new Error('end boom');
    },
    cleanup() {
      c.calls.push({ type: 'cleanup' });
      if (hooks.throwing) throw new Error('cleanup boom');
    },
  };
  return c;
}

const sentIds = (c: RecClient) => c.calls.filter((x) => x.type === 'send').map((x: any) => x.id);
const ends = (c: RecClient) => c.calls.filter((x) => x.type === 'end').length;
const cleanups = (c: RecClient) => c.calls.filter((x) => x.type === 'cleanup').length;

function makeSvc(extra: Record<string, unknown> = {}, clientFactory: () => RecClient = () => recClient()) {
  const made: RecClient[] = [];
  const sseCalls: unknown[] = [];
  const svc = createChatRunService({
    createSseResponse: (res: unknown) => {
      sseCalls.push(res);
      const c = clientFactory();
      made.push(c);
      return c;
    },
    createSseErrorPayload: (code: string, message: string) => ({ error: { code, message } }),
    shutdownGraceMs: 10,
    ttlMs: 60_000,
    ...extra,
  } as any) as any;
  return { svc, made, sseCalls };
}

function fakeReq(header: unknown, after?: unknown, hasAfter = arguments.length >= 2) {
  const get = vi.fn((_name: string) => header);
  return { get, query: hasAfter ? { after } : {} } as any;
}

function fakeRes() {
  const handlers: Record<string, Array<() => void>> = {};
  const on = vi.fn((ev: string, fn: () => void) => {
    (handlers[ev] ??= []).push(fn);
  });
  return { on, handlers, close: () => (handlers.close ?? []).forEach((fn) => fn()) } as any;
}

/** A finished run whose buffer holds ids 1..4 (three 'agent' events and 'end'). */
function finishedRun4(svc: any) {
  const run = svc.create({ projectId: 'p' });
  svc.emit(run, 'agent', { n: 1 });
  svc.emit(run, 'agent', { n: 2 });
  svc.emit(run, 'agent', { n: 3 });
  svc.finish(run, 'succeeded', 0, null);
  return run;
}

class FakeChild extends EventEmitter {
  exitCode: number | null = null;
  signalCode: string | null = null;
  signals: unknown[] = [];
  times: number[] = [];
  pid: number | undefined = undefined;
  constructor(
    private readonly opts: {
      closeOn?: string | null;
      exitCodeOnDeath?: number | null;
      signalCodeOnDeath?: string | null;
      emitEvents?: Array<'exit' | 'close'>;
      ret?: unknown;
      throws?: boolean;
      log?: string[];
    } = {},
  ) {
    super();
  }
  kill(signal: unknown): unknown {
    this.signals.push(signal);
    this.times.push(Date.now());
    this.opts.log?.push(`kill:${String(signal)}`);
    if (this.opts.throws) throw new Error('kill failed');
    if (this.opts.closeOn && signal === this.opts.closeOn) {
      this.die(
        this.opts.exitCodeOnDeath ?? null,
        this.opts.signalCodeOnDeath === undefined ? (signal as string) : this.opts.signalCodeOnDeath,
      );
    }
    return this.opts.ret === undefined ? true : this.opts.ret;
  }
  die(code: number | null, signal: string | null) {
    this.exitCode = code;
    this.signalCode = signal;
    const events = this.opts.emitEvents ?? ['exit', 'close'];
    queueMicrotask(() => {
      for (const e of events) this.emit(e, code, signal);
    });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(pred: () => boolean, ms = 2000) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) return false;
    await sleep(10);
  }
  return true;
}

function readLines(file: string): string[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  return text.split('\n').filter((l) => l.length > 0);
}

const STATUS_KEYS = [
  'id',
  'projectId',
  'conversationId',
  'assistantMessageId',
  'agentId',
  'appliedPluginSnapshotId',
  'pluginId',
  'status',
  'createdAt',
  'updatedAt',
  'cancelRequested',
  'childPid',
  'processGroupId',
  'childExited',
  'childExitObservedAt',
  'exitCode',
  'signal',
  'error',
  'errorCode',
  'eventsLogPath',
  'mediaExecution',
  'toolBundle',
];

// A process group id that cannot exist (above any pid_max); only used with pid-less children.
const IMPOSSIBLE_PGID = 2147480000;

const ENV_KEYS = [
  'OD_CHAT_RUN_CANCEL_GRACE_MS',
  'OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS',
  'PI_ABORT_GRACE_MS',
  'OD_CHAT_RUN_SHUTDOWN_GRACE_MS',
];
let savedEnv: Record<string, string | undefined> = {};
function saveEnv() {
  savedEnv = {};
  for (const k of ENV_KEYS) savedEnv[k] = process.env[k];
}
function restoreEnv() {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
}
function shortGraces() {
  process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = '30';
  process.env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS = '20';
  process.env.PI_ABORT_GRACE_MS = '30';
  delete process.env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS;
}

function runningWithChild(svc: any, child: any, meta: object = {}) {
  const run = svc.create(meta);
  run.status = 'running';
  run.child = child;
  return run;
}

// ---------------------------------------------------------------------------------------------
// §10 stream

describe('§10 stream(run, req, res)', () => {
  it('STR-1: calls createSseResponse(res) exactly once, uses only req.get/req.query/res.on, returns undefined', () => {
    const { svc, sseCalls } = makeSvc();
    const reqKeys: PropertyKey[] = [];
    const resKeys: PropertyKey[] = [];
    const baseReq = { get: () => undefined, query: {} } as any;
    const baseRes = { on: () => {} } as any;
    const req = new Proxy(baseReq, { get: (t, k) => (reqKeys.push(k), t[k]) });
    const res = new Proxy(baseRes, { get: (t, k) => (resKeys.push(k), t[k]) });

    const live = svc.create();
    expect(svc.stream(live, req, res)).toBeUndefined();
    const done = finishedRun4(svc);
    expect(svc.stream(done, req, res)).toBeUndefined();

    expect(sseCalls).toHaveLength(2);
    expect(sseCalls[0]).toBe(res);
    expect(sseCalls[1]).toBe(res);
    expect(new Set(reqKeys.filter((k) => typeof k === 'string'))).toEqual(new Set(['get', 'query']));
    expect(new Set(resKeys.filter((k) => typeof k === 'string'))).toEqual(new Set(['on']));
  });

  it("STR-2: reads the cursor via req.get('Last-Event-ID'), then req.query.after", () => {
    const { svc, made } = makeSvc();
    const run = finishedRun4(svc);
    const req = fakeReq(undefined, '2');
    svc.stream(run, req, fakeRes());
    expect(req.get).toHaveBeenCalledWith('Last-Event-ID');
    expect(sentIds(made[0])).toEqual([3, 4]);

    const req2 = fakeReq(null, '3');
    svc.stream(run, req2, fakeRes());
    expect(sentIds(made[1])).toEqual([4]);
  });

  describe('STR-2/STR-3/STR-4 cursor table (finished run, buffer ids 1..4)', () => {
    const rows: Array<[string, any, boolean, any, number[]]> = [
      // [name, header, hasAfter, after, expected ids]
      ['absent / absent -> 0', undefined, false, undefined, [1, 2, 3, 4]],
      ["'0' / '3' -> 0 (header '0' wins)", '0', true, '3', [1, 2, 3, 4]],
      ["'' / ' ' -> 0", '', true, ' ', [1, 2, 3, 4]],
      ["'abc' / - -> NaN", 'abc', false, undefined, [1, 2, 3, 4]],
      ["absent / ['2'] -> 2", undefined, true, ['2'], [3, 4]],
      ["absent / ['1','2'] -> NaN", undefined, true, ['1', '2'], [1, 2, 3, 4]],
      ["absent / 'Infinity' -> Infinity", undefined, true, 'Infinity', [1, 2, 3, 4]],
      ["absent / '-1' -> -1", undefined, true, '-1', [1, 2, 3, 4]],
      ["'3.5' / - -> 3.5", '3.5', false, undefined, [4]],
      ["'4' / - -> 4 again (STR-4)", '4', false, undefined, [4]],
      ["'9' / - -> 4 again (STR-4)", '9', false, undefined, [4]],
      ["null header / '2' -> 2", null, true, '2', [3, 4]],
    ];
    for (const [name, header, hasAfter, after, expected] of rows) {
      it(`STR-2 row: ${name} sends ${expected.join(',')} then end()`, () => {
        const { svc, made } = makeSvc();
        const run = finishedRun4(svc);
        const res = fakeRes();
        svc.stream(run, fakeReq(header, after, hasAfter), res);
        const c = made[0];
        expect(sentIds(c)).toEqual(expected);
        expect(ends(c)).toBe(1);
        expect(c.calls.at(-1)).toEqual({ type: 'end' });
        expect(cleanups(c)).toBe(0);
        expect(res.on).not.toHaveBeenCalled();
      });
    }
  });

  it('STR-3: replay sends buffered records with id > cursor, in order, with their event and data', () => {
    const { svc, made } = makeSvc();
    const run = svc.create();
    svc.emit(run, 'agent', { type: 'text_delta', delta: 'a' });
    svc.emit(run, 'stdout', { text: 'b' });
    svc.emit(run, 'agent', { type: 'text_delta', delta: 'c' });
    svc.stream(run, fakeReq(undefined, '1.5'), fakeRes());
    expect(made[0].calls).toEqual([
      { type: 'send', event: 'stdout', data: { text: 'b' }, id: 2 },
      { type: 'send', event: 'agent', data: { type: 'text_delta', delta: 'c' }, id: 3 },
    ]);
    // negative / zero cursors send all
    svc.stream(run, fakeReq('-7'), fakeRes());
    expect(sentIds(made[1])).toEqual([1, 2, 3]);
    svc.stream(run, fakeReq(undefined, '0', true), fakeRes());
    expect(sentIds(made[2])).toEqual([1, 2, 3]);
    // -Infinity sends every record
    svc.stream(run, fakeReq('-Infinity'), fakeRes());
    expect(sentIds(made[3])).toEqual([1, 2, 3]);
  });

  it('STR-4: a terminal run re-sends its last record once when nothing else was replayed; not registered, no res.on, no cleanup', () => {
    const { svc, made } = makeSvc();
    const run = finishedRun4(svc);
    const res = fakeRes();
    svc.stream(run, fakeReq('4'), res);
    expect(made[0].calls).toEqual([
      { type: 'send', event: 'end', data: { code: 0, signal: null, status: 'succeeded' }, id: 4 },
      { type: 'end' },
    ]);
    expect(run.clients.size).toBe(0);
    expect(res.on).not.toHaveBeenCalled();
  });

  it('STR-4: a terminal run with an empty buffer sends nothing and calls end() once', () => {
    const { svc, made } = makeSvc();
    const run = svc.create();
    svc.drop(run); // canceled, no 'end' event, buffer empty
    const res = fakeRes();
    svc.stream(run, fakeReq('5'), res);
    expect(made[0].calls).toEqual([{ type: 'end' }]);
    expect(res.on).not.toHaveBeenCalled();
  });

  it('STR-4: a dropped run (no end record) re-sends its last buffered record', () => {
    const { svc, made } = makeSvc();
    const run = svc.create();
    svc.emit(run, 'agent', { n: 1 });
    svc.emit(run, 'agent', { n: 2 });
    svc.drop(run);
    svc.stream(run, fakeReq('2'), fakeRes());
    expect(made[0].calls).toEqual([{ type: 'send', event: 'agent', data: { n: 2 }, id: 2 }, { type: 'end' }]);
  });

  it('STR-5: a live run registers the client and a close handler; finish ends it, close later cleans up', () => {
    const { svc, made } = makeSvc();
    const run = svc.create();
    svc.emit(run, 'agent', { n: 1 });
    const res = fakeRes();
    svc.stream(run, fakeReq(undefined), res);
    const c = made[0];
    expect(run.clients.has(c)).toBe(true);
    expect(res.on).toHaveBeenCalledTimes(1);
    expect(res.on.mock.calls[0][0]).toBe('close');
    expect(sentIds(c)).toEqual([1]);

    svc.emit(run, 'agent', { n: 2 });
    expect(c.calls.at(-1)).toEqual({ type: 'send', event: 'agent', data: { n: 2 }, id: 2 });

    svc.finish(run, 'succeeded', 0, null);
    expect(ends(c)).toBe(1);
    expect(run.clients.size).toBe(0);
    expect(cleanups(c)).toBe(0);

    res.close();
    expect(cleanups(c)).toBe(1);
    expect(run.clients.size).toBe(0);
  });

  it('STR-5: close before finish removes the client and calls cleanup(); later emits skip it', () => {
    const { svc, made } = makeSvc();
    const run = svc.create();
    const res = fakeRes();
    svc.stream(run, fakeReq(undefined), res);
    const c = made[0];
    res.close();
    expect(run.clients.has(c)).toBe(false);
    expect(cleanups(c)).toBe(1);
    svc.emit(run, 'agent', { n: 1 });
    svc.finish(run, 'succeeded', 0, null);
    expect(c.calls).toEqual([{ type: 'cleanup' }]);
  });

  it('STR-6: replay and registration happen in one turn: the next emit is delivered exactly once, without a gap', () => {
    const { svc, made } = makeSvc();
    const run = svc.create();
    svc.emit(run, 'a', 1);
    svc.emit(run, 'a', 2);
    svc.stream(run, fakeReq('1'), fakeRes());
    svc.emit(run, 'a', 3);
    expect(sentIds(made[0])).toEqual([2, 3]);
  });

  it('IMP-7: a record emitted from inside a send during replay is delivered after the snapshot exactly once', () => {
    let svcRef: any;
    let runRef: any;
    let fired = false;
    const { svc, made } = makeSvc({}, () =>
      recClient({
        onSend: (_c, _e, _d, id) => {
          if (id === 1 && !fired) {
            fired = true;
            svcRef.emit(runRef, 'agent', { n: 4 });
          }
        },
      }),
    );
    svcRef = svc;
    const run = (runRef = svc.create());
    svc.emit(run, 'agent', { n: 1 });
    svc.emit(run, 'agent', { n: 2 });
    svc.emit(run, 'agent', { n: 3 });
    svc.stream(run, fakeReq(undefined), fakeRes());
    expect(made[0].calls).toEqual([
      { type: 'send', event: 'agent', data: { n: 1 }, id: 1 },
      { type: 'send', event: 'agent', data: { n: 2 }, id: 2 },
      { type: 'send', event: 'agent', data: { n: 3 }, id: 3 },
      { type: 'send', event: 'agent', data: { n: 4 }, id: 4 },
    ]);
    svc.emit(run, 'agent', { n: 5 });
    expect(sentIds(made[0])).toEqual([1, 2, 3, 4, 5]);
  });

  it('IMP-7: with a full ring trimmed during replay, no record is skipped or duplicated', () => {
    let svcRef: any;
    let runRef: any;
    let fired = false;
    const { svc, made } = makeSvc({ maxEvents: 3 }, () =>
      recClient({
        onSend: (_c, _e, _d, id) => {
          if (id === 1 && !fired) {
            fired = true;
            svcRef.emit(runRef, 'agent', { n: 4 });
            svcRef.emit(runRef, 'agent', { n: 5 });
          }
        },
      }),
    );
    svcRef = svc;
    const run = (runRef = svc.create());
    for (let n = 1; n <= 3; n++) svc.emit(run, 'agent', { n });
    svc.stream(run, fakeReq(undefined), fakeRes());
    expect(sentIds(made[0])).toEqual([1, 2, 3, 4, 5]);
  });

  it('STR-8/IMP-8: after a late event, a client at the last id gets the end record, not the late one', () => {
    const { svc, made } = makeSvc();
    const run = finishedRun4(svc);
    svc.emit(run, 'agent', { late: true }); // id 5, after end
    svc.stream(run, fakeReq('5'), fakeRes());
    expect(made[0].calls).toEqual([
      { type: 'send', event: 'end', data: { code: 0, signal: null, status: 'succeeded' }, id: 4 },
      { type: 'end' },
    ]);
  });

  it('IMP-6: a throwing client in stream replay gets every send, end() still runs and stream() does not throw', () => {
    const { svc, made } = makeSvc({}, () => recClient({ throwing: true }));
    const run = finishedRun4(svc);
    expect(() => svc.stream(run, fakeReq(undefined), fakeRes())).not.toThrow();
    expect(made[0].calls.map((c) => (c.type === 'send' ? c.id : c.type))).toEqual([1, 2, 3, 4, 'end']);

    const live = svc.create();
    svc.emit(live, 'a', 1);
    svc.emit(live, 'a', 2);
    const res = fakeRes();
    expect(() => svc.stream(live, fakeReq(undefined), res)).not.toThrow();
    expect(sentIds(made[1])).toEqual([1, 2]);
    expect(live.clients.has(made[1])).toBe(true);
    expect(res.on).toHaveBeenCalledTimes(1);
    // a throwing registered client does not break emit for others
    const other = recClient();
    live.clients.add(other);
    expect(() => svc.emit(live, 'a', 3)).not.toThrow();
    expect(sentIds(other)).toEqual([3]);
    expect(() => res.close()).not.toThrow();
    expect(live.clients.has(made[1])).toBe(false);
  });

  describe('STR-7/IMP-3: old cursors are backfilled from the log', () => {
    let tmp: string;
    beforeEach(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spec-str7-'));
    });
    afterEach(() => fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 }));

    async function trimmedFinishedRun() {
      const { svc, made } = makeSvc({ maxEvents: 3, runsLogDir: tmp });
      const run = svc.create();
      for (let n = 1; n <= 6; n++) svc.emit(run, 'agent', { n });
      svc.finish(run, 'succeeded', 0, null); // end = id 7; buffer 5,6,7
      await svc.shutdownActive(); // flush barrier
      expect(run.events.map((e: any) => e.id)).toEqual([5, 6, 7]);
      return { svc, made, run };
    }

    it('IMP-3: cursor 1 with buffer 5..7 sends 2,3,4 from the log then 5,6,7, exactly once', async () => {
      const { svc, made, run } = await trimmedFinishedRun();
      svc.stream(run, fakeReq('1'), fakeRes());
      expect(made[0].calls).toEqual([
        { type: 'send', event: 'agent', data: { n: 2 }, id: 2 },
        { type: 'send', event: 'agent', data: { n: 3 }, id: 3 },
        { type: 'send', event: 'agent', data: { n: 4 }, id: 4 },
        { type: 'send', event: 'agent', data: { n: 5 }, id: 5 },
        { type: 'send', event: 'agent', data: { n: 6 }, id: 6 },
        { type: 'send', event: 'end', data: { code: 0, signal: null, status: 'succeeded' }, id: 7 },
        { type: 'end' },
      ]);
    });

    it('IMP-3: NaN, negative and absent cursors count as 0 and backfill everything', async () => {
      const { svc, made, run } = await trimmedFinishedRun();
      svc.stream(run, fakeReq('abc'), fakeRes());
      svc.stream(run, fakeReq(undefined, '-5'), fakeRes());
      svc.stream(run, fakeReq(undefined), fakeRes());
      for (const c of made) expect(sentIds(c)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    });

    it('IMP-3: a cursor at oldest-1 needs no backfill', async () => {
      const { svc, made, run } = await trimmedFinishedRun();
      svc.stream(run, fakeReq('4'), fakeRes());
      expect(sentIds(made[0])).toEqual([5, 6, 7]);
    });

    it('IMP-3: unreadable lines are skipped', async () => {
      const { svc, made, run } = await trimmedFinishedRun();
      const lines = readLines(run.eventsLogPath);
      expect(lines).toHaveLength(7);
      lines[1] = '{not json';
      fs.writeFileSync(run.eventsLogPath, lines.join('\n') + '\n');
      svc.stream(run, fakeReq('0'), fakeRes());
      expect(sentIds(made[0])).toEqual([1, 3, 4, 5, 6, 7]);
    });

    it('IMP-3: a live run reattaching at an old cursor gets the full transcript, then live events', async () => {
      const { svc, made } = makeSvc({ maxEvents: 2, runsLogDir: tmp });
      const run = svc.create();
      for (let n = 1; n <= 5; n++) svc.emit(run, 'agent', { n });
      expect(await waitFor(() => readLines(run.eventsLogPath).length >= 5)).toBe(true);
      svc.stream(run, fakeReq(undefined, '0'), fakeRes());
      svc.emit(run, 'agent', { n: 6 });
      expect(sentIds(made[0])).toEqual([1, 2, 3, 4, 5, 6]);
    });

    it('IMP-3: without a log directory nothing is recovered (STR-3 only)', () => {
      const { svc, made } = makeSvc({ maxEvents: 3 });
      const run = svc.create();
      for (let n = 1; n <= 6; n++) svc.emit(run, 'agent', { n });
      svc.finish(run, 'succeeded', 0, null);
      svc.stream(run, fakeReq('1'), fakeRes());
      expect(sentIds(made[0])).toEqual([5, 6, 7]);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// §11 signalChild

describe('§11 signalChild', () => {
  it('SIG-1: no child, or an exited child, gives false and sends nothing', () => {
    const { svc } = makeSvc();
    const run = svc.create();
    expect(svc.signalChild(run, 'SIGTERM')).toBe(false);

    const withCode = new FakeChild();
    withCode.exitCode = 0;
    run.child = withCode;
    expect(svc.signalChild(run, 'SIGTERM')).toBe(false);
    expect(withCode.signals).toEqual([]);

    const withSignal = new FakeChild();
    withSignal.signalCode = 'SIGKILL';
    run.child = withSignal;
    expect(svc.signalChild(run, 'SIGTERM')).toBe(false);
    expect(withSignal.signals).toEqual([]);

    // §0: no exitCode/signalCode property counts as exited
    const bare = { kill: vi.fn(() => true) };
    run.child = bare;
    expect(svc.signalChild(run, 'SIGTERM')).toBe(false);
    expect(bare.kill).not.toHaveBeenCalled();
  });

  it('SIG-2: processGroupId set but the child has no pid: no group signal, falls back to child.kill', () => {
    const { svc } = makeSvc();
    const run = svc.create();
    const child = new FakeChild({ ret: true });
    run.child = child;
    run.processGroupId = IMPOSSIBLE_PGID;
    expect(svc.signalChild(run, 'SIGTERM')).toBe(true);
    expect(child.signals).toEqual(['SIGTERM']);
  });

  it('SIG-3: no pid, no group: returns whatever child.kill returns', () => {
    const { svc } = makeSvc();
    const run = svc.create();
    const f = new FakeChild({ ret: false });
    run.child = f;
    expect(svc.signalChild(run, 'SIGTERM')).toBe(false);
    expect(f.signals).toEqual(['SIGTERM']);
    const t = new FakeChild({ ret: true });
    run.child = t;
    expect(svc.signalChild(run, 'SIGINT')).toBe(true);
    expect(t.signals).toEqual(['SIGINT']);
  });

  it('SIG-3: child.kill throwing gives false', () => {
    const { svc } = makeSvc();
    const run = svc.create();
    const child = new FakeChild({ throws: true });
    run.child = child;
    expect(svc.signalChild(run, 'SIGTERM')).toBe(false);
    expect(child.signals).toEqual(['SIGTERM']);
  });

  it('SIG-4: the signal is passed verbatim and no run field is written', () => {
    const { svc } = makeSvc();
    const run = svc.create();
    const child = new FakeChild();
    run.child = child;
    run.updatedAt = 123;
    const before = svc.statusBody(run);
    const eventsBefore = run.events.length;
    svc.signalChild(run, 'SIGHUP');
    svc.signalChild(run, 9);
    svc.signalChild(run, 'SIGUSR2');
    expect(child.signals).toEqual(['SIGHUP', 9, 'SIGUSR2']);
    expect(svc.statusBody(run)).toEqual(before);
    expect(run.updatedAt).toBe(123);
    expect(run.events.length).toBe(eventsBefore);
    expect(run.cancelRequested).toBe(false);
    expect(run.childExitObservedAt).toBeNull();
  });

  it('SIG-1: signalChild works detached from the service', () => {
    const { svc } = makeSvc();
    const { signalChild } = svc;
    const run = svc.create();
    const child = new FakeChild();
    run.child = child;
    expect(signalChild(run, 'SIGTERM')).toBe(true);
    expect(child.signals).toEqual(['SIGTERM']);
  });
});

// ---------------------------------------------------------------------------------------------
// §11 cancel (with short env graces)

describe('§11 cancel', () => {
  beforeEach(() => {
    saveEnv();
    shortGraces();
  });
  afterEach(() => restoreEnv());

  it('CAN-1: cancel on a terminal run resolves to its status body and changes nothing', async () => {
    const { svc } = makeSvc();
    const run = svc.create();
    svc.finish(run, 'succeeded', 0, null);
    run.updatedAt = 42;
    const child = new FakeChild();
    run.child = child;
    const p = svc.cancel(run);
    expect(p).toBeInstanceOf(Promise);
    const body = await p;
    expect(body).toEqual(svc.statusBody(run));
    expect(body.status).toBe('succeeded');
    expect(run.cancelRequested).toBe(false);
    expect(run.updatedAt).toBe(42);
    expect(child.signals).toEqual([]);
    expect(run.events.map((e: any) => e.event)).toEqual(['end']);
  });

  it('CAN-2: cancelRequested, updatedAt and the first SIGTERM happen before cancel() returns', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGTERM' });
    const run = runningWithChild(svc, child);
    run.updatedAt = 1;
    const t0 = Date.now();
    const p = svc.cancel(run);
    expect(run.cancelRequested).toBe(true);
    expect(run.updatedAt).toBeGreaterThanOrEqual(t0);
    expect(child.signals).toEqual(['SIGTERM']);
    expect(run.status).toBe('running');
    await p;
  });

  it('CAN-3: a queued run is canceled synchronously, abort is not called', async () => {
    const { svc } = makeSvc();
    const run = svc.create();
    const abort = vi.fn();
    run.acpSession = { abort };
    const waiter = svc.wait(run);
    const p = svc.cancel(run);
    expect(run.status).toBe('canceled');
    expect(run.signal).toBe('SIGTERM');
    expect(run.exitCode).toBeNull();
    expect(run.cancelRequested).toBe(true);
    expect(run.events.at(-1)).toMatchObject({ event: 'end', data: { code: null, signal: 'SIGTERM', status: 'canceled' } });
    expect(abort).not.toHaveBeenCalled();
    const body = await p;
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', exitCode: null, cancelRequested: true, childExited: true });
    await expect(waiter).resolves.toMatchObject({ status: 'canceled' });
    expect(abort).not.toHaveBeenCalled();
  });

  it('CAN-4: ACP run: abort() is called synchronously; a child that exits within the grace gets no signal', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild();
    const run = runningWithChild(svc, child);
    const abort = vi.fn(() => setTimeout(() => child.die(0, null), 5));
    run.acpSession = { abort };
    const p = svc.cancel(run);
    expect(abort).toHaveBeenCalledTimes(1);
    expect(abort.mock.calls[0]).toEqual([]);
    expect(child.signals).toEqual([]);
    const body = await p;
    expect(child.signals).toEqual([]);
    expect(body).toMatchObject({ status: 'canceled', exitCode: 0, signal: 'SIGTERM', childExited: true });
    expect(typeof body.childExitObservedAt).toBe('number');
  });

  it('CAN-4: ACP run whose child ignores abort: SIGTERM after the abort grace, exits on it', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGTERM' });
    const run = runningWithChild(svc, child);
    run.acpSession = {
      abort: () => {
        throw new Error('abort failed'); // swallowed
      },
    };
    const t0 = Date.now();
    const p = svc.cancel(run);
    expect(child.signals).toEqual([]);
    const body = await p;
    expect(child.signals).toEqual(['SIGTERM']);
    expect(child.times[0] - t0).toBeGreaterThanOrEqual(25);
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', childExited: true });
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('CAN-4: ACP run whose child never dies: SIGTERM after G, SIGKILL after 2G, settles after the force wait', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild();
    const run = runningWithChild(svc, child);
    run.acpSession = { abort: vi.fn() };
    const t0 = Date.now();
    const body = await svc.cancel(run);
    const elapsed = Date.now() - t0;
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
    expect(child.times[0] - t0).toBeGreaterThanOrEqual(25);
    expect(child.times[1] - t0).toBeGreaterThanOrEqual(55);
    expect(elapsed).toBeGreaterThanOrEqual(70);
    expect(elapsed).toBeLessThan(1500);
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGKILL', childExited: false, childExitObservedAt: null, exitCode: null });
  });

  it('CAN-5: non-ACP run: SIGTERM synchronously, SIGKILL after the cancel grace, well under 3000 ms', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGKILL' });
    const run = runningWithChild(svc, child);
    const t0 = Date.now();
    const p = svc.cancel(run);
    expect(child.signals).toEqual(['SIGTERM']);
    const body = await p;
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
    expect(child.times[1] - t0).toBeGreaterThanOrEqual(25);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGKILL', exitCode: null, childExited: true });
    expect(typeof body.childExitObservedAt).toBe('number');
  });

  it("CAN-6: exit code and signal come from the child; the fallback applies when signalCode is null", async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGTERM', exitCodeOnDeath: 143, signalCodeOnDeath: null });
    const run = runningWithChild(svc, child);
    const t0 = Date.now();
    const body = await svc.cancel(run);
    expect(body).toMatchObject({ status: 'canceled', exitCode: 143, signal: 'SIGTERM', childExited: true });
    expect(run.childExitObservedAt).toBeGreaterThanOrEqual(t0);
    expect(run.events.at(-1)).toMatchObject({ event: 'end', data: { code: 143, signal: 'SIGTERM', status: 'canceled' } });
  });

  it('CAN-6: an already truthy childExitObservedAt is kept', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGTERM' });
    const run = runningWithChild(svc, child);
    run.childExitObservedAt = 123;
    const body = await svc.cancel(run);
    expect(run.childExitObservedAt).toBe(123);
    expect(body.childExitObservedAt).toBe(123);
  });

  it("CAN-6: if the host finishes the run from its own 'close' handler, the host's verdict is returned", async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGTERM' });
    const run = runningWithChild(svc, child);
    child.on('close', () => svc.finish(run, 'failed', 9, 'SIGTERM'));
    const body = await svc.cancel(run);
    expect(body).toMatchObject({ status: 'failed', exitCode: 9, signal: 'SIGTERM' });
    expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1);
  });

  it('CAN-7: a child that exits on SIGTERM gives signal SIGTERM, childExited true, childExitObservedAt set', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGTERM' });
    const run = runningWithChild(svc, child);
    const body = await svc.cancel(run);
    expect(child.signals).toEqual(['SIGTERM']);
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', childExited: true, cancelRequested: true });
    expect(typeof body.childExitObservedAt).toBe('number');
  });

  it('CAN-7: a child that never dies gives signal SIGKILL, childExited false, childExitObservedAt null', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild();
    const run = runningWithChild(svc, child);
    const body = await svc.cancel(run);
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGKILL', childExited: false, childExitObservedAt: null });
  });

  it('CAN-7: a child that already exited with code 0 gets no signal and reports exitCode 0, signal SIGTERM', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild();
    child.exitCode = 0;
    const run = runningWithChild(svc, child);
    const t0 = Date.now();
    const body = await svc.cancel(run);
    expect(child.signals).toEqual([]);
    expect(body).toMatchObject({ status: 'canceled', exitCode: 0, signal: 'SIGTERM', childExited: true });
    expect(typeof body.childExitObservedAt).toBe('number');
    expect(Date.now() - t0).toBeLessThan(25);
  });

  it('CAN-8: cancel re-reads run.child at each step (SIGKILL goes to the replacement child)', async () => {
    const { svc } = makeSvc();
    const first = new FakeChild();
    const second = new FakeChild({ closeOn: 'SIGKILL' });
    const run = runningWithChild(svc, first);
    const p = svc.cancel(run);
    expect(first.signals).toEqual(['SIGTERM']);
    run.child = second;
    const body = await p;
    expect(first.signals).toEqual(['SIGTERM']);
    expect(second.signals).toEqual(['SIGKILL']);
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGKILL', childExited: true });
  });

  it('IMP-11: two concurrent cancel() calls send one SIGTERM and resolve to the same body', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGKILL' });
    const run = runningWithChild(svc, child);
    const abort = vi.fn();
    run.acpSession = { abort };
    const p1 = svc.cancel(run);
    const p2 = svc.cancel(run);
    expect(abort).toHaveBeenCalledTimes(1);
    const [b1, b2] = await Promise.all([p1, p2]);
    expect(abort).toHaveBeenCalledTimes(1);
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
    expect(b2).toEqual(b1);
    expect(b1).toMatchObject({ status: 'canceled', signal: 'SIGKILL' });
    expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1);
  });

  it('IMP-11: non-ACP concurrent cancels: exactly one SIGTERM', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGTERM' });
    const run = runningWithChild(svc, child);
    const [b1, b2] = await Promise.all([svc.cancel(run), svc.cancel(run)]);
    expect(child.signals).toEqual(['SIGTERM']);
    expect(b2).toEqual(b1);
  });

  it('MOD-3 (cancel): cancel never throws synchronously and returns a native Promise', async () => {
    const { svc } = makeSvc();
    const { cancel } = svc;
    const run = svc.create();
    const p = cancel(run);
    expect(p).toBeInstanceOf(Promise);
    await expect(p).resolves.toMatchObject({ status: 'canceled' });
  });

  describe('WCE wait-for-exit', () => {
    it("WCE: subscribes to 'exit' and 'close' and removes both listeners afterwards", async () => {
      const { svc } = makeSvc();
      const child = new FakeChild(); // ignores SIGTERM, exits a little later on its own
      const run = runningWithChild(svc, child);
      const p = svc.cancel(run);
      expect(child.listenerCount('exit')).toBe(1);
      expect(child.listenerCount('close')).toBe(1);
      setTimeout(() => child.die(0, null), 5);
      const body = await p;
      expect(child.signals).toEqual(['SIGTERM']);
      expect(body).toMatchObject({ exitCode: 0, signal: 'SIGTERM', childExited: true });
      expect(child.listenerCount('exit')).toBe(0);
      expect(child.listenerCount('close')).toBe(0);
    });

    it("WCE: an 'exit' event alone or a 'close' event alone ends the wait", async () => {
      for (const ev of ['exit', 'close'] as const) {
        const { svc } = makeSvc();
        const child = new FakeChild({ closeOn: 'SIGTERM', emitEvents: [ev] });
        const run = runningWithChild(svc, child);
        const t0 = Date.now();
        const body = await svc.cancel(run);
        expect(child.signals).toEqual(['SIGTERM']);
        expect(body.signal).toBe('SIGTERM');
        expect(Date.now() - t0).toBeLessThan(25);
        expect(child.listenerCount('exit') + child.listenerCount('close')).toBe(0);
      }
    });

    it('WCE: the timer path removes the listeners too (child never dies)', async () => {
      const { svc } = makeSvc();
      const child = new FakeChild();
      const run = runningWithChild(svc, child);
      await svc.cancel(run);
      expect(child.listenerCount('exit')).toBe(0);
      expect(child.listenerCount('close')).toBe(0);
    });

    it('WCE: a child without once() is only observed by the timer', async () => {
      const { svc } = makeSvc();
      const signals: unknown[] = [];
      const child: any = {
        pid: undefined,
        exitCode: null,
        signalCode: null,
        kill(sig: unknown) {
          signals.push(sig);
          // exits shortly after SIGTERM, but emits nothing and has no once()
          if (sig === 'SIGTERM') setTimeout(() => (child.signalCode = 'SIGTERM'), 5);
          return true;
        },
      };
      const run = runningWithChild(svc, child);
      const t0 = Date.now();
      const body = await svc.cancel(run);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
      expect(signals).toEqual(['SIGTERM']); // exited by the SIGKILL step: no second signal
      expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', childExited: true });
    });
  });

  describe('ENV rules', () => {
    it("ENV: OD_CHAT_RUN_CANCEL_GRACE_MS='abc' gives 3000 and does not fall back to OD_CHAT_RUN_SHUTDOWN_GRACE_MS", async () => {
      process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = 'abc';
      process.env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS = '20';
      const { svc } = makeSvc();
      const child = new FakeChild();
      const run = runningWithChild(svc, child);
      const p = svc.cancel(run);
      await sleep(300);
      expect(child.signals).toEqual(['SIGTERM']); // no SIGKILL after 20 ms nor after 300 ms
      child.die(null, 'SIGTERM');
      const body = await p;
      expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM' });
      expect(child.signals).toEqual(['SIGTERM']);
    });

    it("ENV: an empty OD_CHAT_RUN_CANCEL_GRACE_MS falls back to OD_CHAT_RUN_SHUTDOWN_GRACE_MS", async () => {
      process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = '';
      process.env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS = '30';
      const { svc } = makeSvc();
      const child = new FakeChild({ closeOn: 'SIGKILL' });
      const run = runningWithChild(svc, child);
      const t0 = Date.now();
      const body = await svc.cancel(run);
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
      expect(child.times[1] - t0).toBeGreaterThanOrEqual(25);
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(body.signal).toBe('SIGKILL');
    });

    it("ENV: unset OD_CHAT_RUN_CANCEL_GRACE_MS also falls back to OD_CHAT_RUN_SHUTDOWN_GRACE_MS", async () => {
      delete process.env.OD_CHAT_RUN_CANCEL_GRACE_MS;
      process.env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS = '30';
      const { svc } = makeSvc();
      const child = new FakeChild({ closeOn: 'SIGKILL' });
      const run = runningWithChild(svc, child);
      const t0 = Date.now();
      await svc.cancel(run);
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
      expect(child.times[1] - t0).toBeGreaterThanOrEqual(25);
      expect(Date.now() - t0).toBeLessThan(1000);
    });

    it("ENV: an invalid OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS gives 500 ms after SIGKILL", async () => {
      process.env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS = 'abc';
      const { svc } = makeSvc();
      const child = new FakeChild();
      const run = runningWithChild(svc, child);
      const t0 = Date.now();
      const body = await svc.cancel(run);
      const elapsed = Date.now() - t0;
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
      expect(elapsed - (child.times[1] - t0)).toBeGreaterThanOrEqual(480);
      expect(elapsed).toBeLessThan(2000);
      expect(body.signal).toBe('SIGKILL');
    });

    it("ENV: PI_ABORT_GRACE_MS='0' gives 3000 (no SIGTERM within 300 ms on the ACP path)", async () => {
      process.env.PI_ABORT_GRACE_MS = '0';
      const { svc } = makeSvc();
      const child = new FakeChild();
      const run = runningWithChild(svc, child);
      run.acpSession = { abort: vi.fn() };
      const p = svc.cancel(run);
      await sleep(300);
      expect(child.signals).toEqual([]);
      child.die(0, null);
      const body = await p;
      expect(body).toMatchObject({ status: 'canceled', exitCode: 0, signal: 'SIGTERM' });
    });

    it('ENV: variables are read on every cancel, not cached', async () => {
      const { svc } = makeSvc();
      process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = 'abc';
      const slow = new FakeChild();
      const run1 = runningWithChild(svc, slow);
      const p1 = svc.cancel(run1);
      process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = '30';
      const fast = new FakeChild({ closeOn: 'SIGKILL' });
      const run2 = runningWithChild(svc, fast);
      await svc.cancel(run2);
      expect(fast.signals).toEqual(['SIGTERM', 'SIGKILL']);
      expect(slow.signals).toEqual(['SIGTERM']);
      slow.die(null, 'SIGTERM');
      await p1;
    });
  });
});

// ---------------------------------------------------------------------------------------------
// §11 shutdownActive

describe('§11 shutdownActive', () => {
  it('SHD-1: null or undefined opts use shutdownGraceMs', async () => {
    for (const opts of [null, undefined]) {
      const { svc } = makeSvc({ shutdownGraceMs: 40 });
      const child = new FakeChild({ closeOn: 'SIGKILL' });
      runningWithChild(svc, child);
      const t0 = Date.now();
      const p = svc.shutdownActive(opts);
      expect(p).toBeInstanceOf(Promise);
      await expect(p).resolves.toBeUndefined();
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
      expect(child.times[1] - t0).toBeGreaterThanOrEqual(35);
    }
  });

  it('SHD-1: an invalid graceMs (NaN, negative, non-number) uses shutdownGraceMs', async () => {
    for (const graceMs of [NaN, -1, '5', null]) {
      const { svc } = makeSvc({ shutdownGraceMs: 40 });
      const child = new FakeChild({ closeOn: 'SIGKILL' });
      runningWithChild(svc, child);
      const t0 = Date.now();
      await svc.shutdownActive({ graceMs });
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
      expect(child.times[1] - t0).toBeGreaterThanOrEqual(35);
      expect(Date.now() - t0).toBeLessThan(1500);
    }
  });

  it('SHD-1: a valid graceMs is used', async () => {
    const { svc } = makeSvc({ shutdownGraceMs: 5000 });
    const child = new FakeChild({ closeOn: 'SIGKILL' });
    runningWithChild(svc, child);
    const t0 = Date.now();
    await svc.shutdownActive({ graceMs: 60 });
    expect(child.times[1] - t0).toBeGreaterThanOrEqual(55);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('SHD-2: only registered non-terminal runs at call time, in creation order; later, finished and dropped runs untouched', async () => {
    const { svc } = makeSvc();
    const order: string[] = [];
    const mk = (name: string) => {
      const run = svc.create({ projectId: name });
      run.status = 'running';
      run.child = new FakeChild({ closeOn: 'SIGTERM' });
      run.acpSession = { abort: () => order.push(name) };
      return run;
    };
    const a = mk('a');
    const done = mk('done');
    svc.finish(done, 'succeeded', 0, null);
    done.updatedAt = 7;
    const b = mk('b');
    const dropped = mk('dropped');
    svc.drop(dropped);
    const queued = svc.create({ projectId: 'queued' }); // non-terminal, no child
    const c = mk('c');

    const p = svc.shutdownActive({ graceMs: 10 });
    const later = mk('later');
    await p;

    expect(order).toEqual(['a', 'b', 'c']);
    for (const r of [a, b, c, queued]) {
      expect(r.status).toBe('canceled');
      expect(r.cancelRequested).toBe(true);
    }
    expect(done.status).toBe('succeeded');
    expect(done.updatedAt).toBe(7);
    expect(done.cancelRequested).toBe(false);
    expect(done.child.signals).toEqual([]);
    expect(dropped.child.signals).toEqual([]);
    expect(dropped.cancelRequested).toBe(false);
    expect(later.status).toBe('running');
    expect(later.cancelRequested).toBe(false);
    expect(later.child.signals).toEqual([]);
  });

  it('SHD-3: abort, SIGTERM and finish(canceled, null, SIGTERM) happen synchronously and in order before the call returns', async () => {
    const log: string[] = [];
    const { svc, made } = makeSvc();
    const child = new FakeChild({ log });
    const run = runningWithChild(svc, child);
    run.acpSession = { abort: () => log.push('abort') };
    svc.stream(run, fakeReq(undefined), fakeRes());
    const client = made[0];
    const origEnd = client.end;
    client.end = () => {
      log.push('client.end');
      origEnd();
    };
    run.updatedAt = 1;
    const t0 = Date.now();
    const p = svc.shutdownActive({ graceMs: 10 });
    expect(log).toEqual(['abort', 'kill:SIGTERM', 'client.end']);
    expect(run.cancelRequested).toBe(true);
    expect(run.updatedAt).toBeGreaterThanOrEqual(t0);
    expect(run.status).toBe('canceled');
    expect(run.exitCode).toBeNull();
    expect(run.signal).toBe('SIGTERM');
    expect(run.events.at(-1)).toMatchObject({ event: 'end', data: { code: null, signal: 'SIGTERM', status: 'canceled' } });
    child.die(0, null); // the child exits later: the verdict stays
    await p;
    expect(run.status).toBe('canceled');
    expect(run.exitCode).toBeNull();
    expect(run.signal).toBe('SIGTERM');
    expect(run.childExitObservedAt).toBeNull();
  });

  it('SHD-3: a throwing abort is swallowed and the run is still signalled and finished', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild({ closeOn: 'SIGTERM' });
    const run = runningWithChild(svc, child);
    run.acpSession = {
      abort: () => {
        throw new Error('abort boom');
      },
    };
    await expect(svc.shutdownActive({ graceMs: 10 })).resolves.toBeUndefined();
    expect(child.signals).toEqual(['SIGTERM']);
    expect(run.status).toBe('canceled');
  });

  it('SHD-4: a child that ignores SIGTERM gets SIGKILL after graceMs, then a fixed 500 ms wait', async () => {
    process.env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS = '20'; // must not affect shutdown
    try {
      const { svc } = makeSvc();
      const child = new FakeChild();
      const run = runningWithChild(svc, child);
      const t0 = Date.now();
      await svc.shutdownActive({ graceMs: 10 });
      const elapsed = Date.now() - t0;
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL']);
      expect(elapsed - (child.times[1] - t0)).toBeGreaterThanOrEqual(480);
      expect(elapsed).toBeLessThan(2000);
      expect(run.signal).toBe('SIGTERM');
    } finally {
      delete process.env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS;
    }
  });

  it('SHD-4: runs are waited on concurrently', async () => {
    const { svc } = makeSvc();
    const kids = [new FakeChild({ closeOn: 'SIGKILL' }), new FakeChild({ closeOn: 'SIGKILL' }), new FakeChild({ closeOn: 'SIGKILL' })];
    for (const k of kids) runningWithChild(svc, k);
    const t0 = Date.now();
    await svc.shutdownActive({ graceMs: 100 });
    expect(Date.now() - t0).toBeLessThan(250);
    for (const k of kids) expect(k.signals).toEqual(['SIGTERM', 'SIGKILL']);
  });

  it("SHD-5: one run whose abort throws doesn't stop the others; resolves to undefined", async () => {
    const { svc } = makeSvc();
    const a = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
    const b = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
    b.acpSession = {
      abort: () => {
        throw new Error('boom');
      },
    };
    const c = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
    await expect(svc.shutdownActive({ graceMs: 10 })).resolves.toBeUndefined();
    for (const r of [a, b, c]) {
      expect(r.status).toBe('canceled');
      expect(r.child.signals).toEqual(['SIGTERM']);
    }
  });

  it("SHD-5: a run whose steps throw rejects the promise with that error, every other run is still processed", async () => {
    const { svc } = makeSvc();
    const a = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
    const b = svc.create();
    b.status = 'running';
    const boom = new Error('child getter boom');
    Object.defineProperty(b, 'child', {
      configurable: true,
      enumerable: true,
      get() {
        throw boom;
      },
    });
    const c = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
    let sync: unknown = null;
    let p: Promise<unknown> | undefined;
    try {
      p = svc.shutdownActive({ graceMs: 10 });
    } catch (e) {
      sync = e;
    }
    expect(sync).toBeNull();
    await expect(p).rejects.toBe(boom);
    for (const r of [a, c]) {
      expect(r.status).toBe('canceled');
      expect(r.child.signals).toEqual(['SIGTERM']);
    }
  });

  it('SHD-5: a run whose acpSession read throws rejects the promise, every other run (before and after it) is still processed', async () => {
    const { svc } = makeSvc();
    const a = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
    const b = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
    const boom = new Error('acpSession getter boom');
    Object.defineProperty(b, 'acpSession', {
      configurable: true,
      enumerable: true,
      get() {
        throw boom;
      },
    });
    const c = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
    let p: Promise<unknown> | undefined;
    expect(() => (p = svc.shutdownActive({ graceMs: 10 }))).not.toThrow();
    await expect(p).rejects.toBe(boom);
    for (const r of [a, c]) {
      expect(r.status).toBe('canceled');
      expect(r.cancelRequested).toBe(true);
      expect(r.child.signals).toEqual(['SIGTERM']);
    }
  });

  it('SHD-5: a second call finds nothing active and resolves at once', async () => {
    const { svc } = makeSvc();
    const child = new FakeChild();
    runningWithChild(svc, child);
    await svc.shutdownActive({ graceMs: 10 });
    const before = child.signals.length;
    const t0 = Date.now();
    await expect(svc.shutdownActive({ graceMs: 10 })).resolves.toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(50);
    expect(child.signals.length).toBe(before);
  });

  describe('SHD-6 / IMP-4 log flush barrier', () => {
    let tmp: string;
    beforeEach(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spec-shd6-'));
    });
    afterEach(() => fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 }));

    it("SHD-6: after await shutdownActive() every interrupted run's JSONL ends with its end line (read synchronously)", async () => {
      const { svc } = makeSvc({ runsLogDir: tmp });
      const runs: any[] = [];
      for (let i = 0; i < 5; i++) {
        const run = runningWithChild(svc, new FakeChild({ closeOn: 'SIGTERM' }));
        for (let n = 0; n < 50; n++) svc.emit(run, 'agent', { i, n, text: 'x'.repeat(200) });
        runs.push(run);
      }
      await svc.shutdownActive({ graceMs: 10 });
      for (const run of runs) {
        const lines = readLines(run.eventsLogPath);
        expect(lines).toHaveLength(51);
        const last = JSON.parse(lines[50]);
        expect(last).toMatchObject({ id: 51, event: 'end', data: { code: null, signal: 'SIGTERM', status: 'canceled' } });
      }
    });

    it('IMP-4: after finish plus await shutdownActive() the file of a run finished earlier is complete', async () => {
      const { svc } = makeSvc({ runsLogDir: tmp });
      const run = svc.create();
      for (let n = 1; n <= 100; n++) svc.emit(run, 'agent', { n });
      svc.finish(run, 'succeeded', 0, null);
      await svc.shutdownActive();
      const lines = readLines(run.eventsLogPath);
      expect(lines).toHaveLength(101);
      expect(lines.map((l) => JSON.parse(l).id)).toEqual(Array.from({ length: 101 }, (_, i) => i + 1));
      expect(JSON.parse(lines[100])).toMatchObject({ event: 'end', data: { code: 0, signal: null, status: 'succeeded' } });
    });

    it('IMP-4: without a barrier the complete log reaches disk within a bounded delay after finish', async () => {
      const { svc } = makeSvc({ runsLogDir: tmp });
      const run = svc.create();
      svc.emit(run, 'agent', { n: 1 });
      svc.finish(run, 'succeeded', 0, null);
      expect(await waitFor(() => readLines(run.eventsLogPath).length === 2)).toBe(true);
      expect(JSON.parse(readLines(run.eventsLogPath)[1]).event).toBe('end');
    });
  });
});

// ---------------------------------------------------------------------------------------------
// §12 mediaExecution

describe('§12 mediaExecution normalization (through create)', () => {
  const media = (value: unknown) => {
    const { svc } = makeSvc();
    const run = svc.create({ mediaExecution: value });
    expect(svc.statusBody(run).mediaExecution).toEqual(run.mediaExecution);
    return run.mediaExecution;
  };

  it('MED-1: undefined or null gives { mode: enabled }', () => {
    expect(media(undefined)).toEqual({ mode: 'enabled' });
    expect(media(null)).toEqual({ mode: 'enabled' });
    const { svc } = makeSvc();
    const run = svc.create();
    expect(run.mediaExecution).toEqual({ mode: 'enabled' });
  });

  it('MED-2: non-plain-object inputs are invalid; class instances, Maps and Dates pass the plain-object test', () => {
    for (const v of [['disabled'], 'disabled', 5, true, () => 'disabled']) expect(media(v)).toEqual({ mode: 'enabled' });
    class M {
      mode = 'disabled';
    }
    expect(media(new M())).toEqual({ mode: 'disabled' });
    expect(media(Object.assign(new Map(), { mode: 'question' }))).toEqual({ mode: 'question' });
    expect(media(Object.assign(new Date(0), { mode: 'disabled' }))).toEqual({ mode: 'disabled' });
  });

  it('MED-3: mode is taken verbatim if a string, enabled otherwise; only the three exact values are valid', () => {
    expect(media({ mode: 'question' })).toEqual({ mode: 'question' });
    expect(media({ mode: 'disabled' })).toEqual({ mode: 'disabled' });
    expect(media({ mode: 5, allowedSurfaces: ['image'] })).toEqual({ mode: 'enabled', allowedSurfaces: ['image'] });
    expect(media({ allowedSurfaces: ['video'] })).toEqual({ mode: 'enabled', allowedSurfaces: ['video'] });
    expect(media({ mode: 'Disabled', allowedSurfaces: ['image'] })).toEqual({ mode: 'enabled' });
    expect(media({ mode: ' disabled', allowedSurfaces: ['image'] })).toEqual({ mode: 'enabled' });
  });

  it('MED-4: allowedSurfaces must be an array of image/video/audio; duplicates dropped; [] kept; null and holes invalid', () => {
    expect(media({ mode: 'disabled', allowedSurfaces: ['video', 'image', 'video', 'audio', 'image'] })).toEqual({
      mode: 'disabled',
      allowedSurfaces: ['video', 'image', 'audio'],
    });
    expect(media({ mode: 'disabled', allowedSurfaces: [] })).toEqual({ mode: 'disabled', allowedSurfaces: [] });
    expect(media({ mode: 'disabled', allowedSurfaces: undefined })).toEqual({ mode: 'disabled' });
    // eslint-disable-next-line no-sparse-arrays
    for (const bad of [null, 'image', ['image', , 'video'], [undefined], ['Image'], ['gif'], [' image']]) {
      expect(media({ mode: 'disabled', allowedSurfaces: bad })).toEqual({ mode: 'enabled' });
    }
  });

  it('MED-5: allowedModels must be non-blank strings; stored trimmed, deduplicated after trimming; [] kept', () => {
    expect(media({ mode: 'question', allowedModels: [' gpt-image ', 'gpt-image', 'veo\t', 'x'] })).toEqual({
      mode: 'question',
      allowedModels: ['gpt-image', 'veo', 'x'],
    });
    expect(media({ mode: 'question', allowedModels: [] })).toEqual({ mode: 'question', allowedModels: [] });
    // U+0085 is not JS whitespace: kept verbatim
    expect(media({ mode: 'question', allowedModels: ['\u0085'] })).toEqual({ mode: 'question', allowedModels: ['\u0085'] });
    for (const bad of [null, 'm', [''], ['  '], ['\u00a0\ufeff'], [5], ['ok', null]]) {
      expect(media({ mode: 'question', allowedModels: bad })).toEqual({ mode: 'enabled' });
    }
  });

  it('MED-6: output is a fresh object { mode, allowedSurfaces?, allowedModels? } in that key order', () => {
    const input = { allowedModels: ['m'], extra: 1, allowedSurfaces: ['audio'], mode: 'disabled' };
    const out = media(input);
    expect(out).not.toBe(input);
    expect(Object.keys(out)).toEqual(['mode', 'allowedSurfaces', 'allowedModels']);
    expect(out).toEqual({ mode: 'disabled', allowedSurfaces: ['audio'], allowedModels: ['m'] });
    expect(Object.keys(media({ allowedModels: ['m'], mode: 'question' }))).toEqual(['mode', 'allowedModels']);
  });

  it("MED-7: any invalid part makes the whole result { mode: 'enabled' } (fail-open)", () => {
    expect(media({ mode: 'disabled', allowedSurfaces: ['gif'] })).toEqual({ mode: 'enabled' });
    expect(media({ mode: 'disabled', allowedSurfaces: ['image'], allowedModels: [''] })).toEqual({ mode: 'enabled' });
    expect(media({ mode: 'nope', allowedSurfaces: ['image'], allowedModels: ['m'] })).toEqual({ mode: 'enabled' });
  });

  it('SB-1 (mediaExecution): null/undefined run.mediaExecution reads as { mode: enabled } in the status body', () => {
    const { svc } = makeSvc();
    const run = svc.create();
    run.mediaExecution = null;
    expect(svc.statusBody(run).mediaExecution).toEqual({ mode: 'enabled' });
    run.mediaExecution = { mode: 'disabled' };
    expect(svc.statusBody(run).mediaExecution).toEqual({ mode: 'disabled' });
  });
});

// ---------------------------------------------------------------------------------------------
// §13 toolBundle, §14 summary

describe('§13 toolBundle normalization (through create)', () => {
  const bundle = (raw: unknown) => {
    const { svc } = makeSvc();
    return svc.create({ toolBundle: raw }).toolBundle;
  };
  const servers = (list: unknown[]) => bundle({ mcpServers: list }).mcpServers;
  const one = (entry: unknown) => {
    const s = servers([entry]);
    return s.length === 1 ? s[0] : undefined;
  };

  const EXAMPLE_INPUT = () => ({
    mcpServers: [
      {
        id: ' run-tools ',
        command: ' node ',
        args: ['server.js', 7, '--token=secret'],
        env: { API_TOKEN: 'secret', E: ' ', N: 5 },
        url: 'http://x',
      },
      {
        id: 'remote',
        transport: 'http',
        url: ' HTTPS://Api.Example.com:443/mcp?key=abc ',
        headers: { Authorization: 'Bearer t', X: '' },
      },
      { id: 'run-tools', command: 'other' },
      { id: 'bad id', command: 'x' },
    ],
  });
  const EXAMPLE_OUTPUT = [
    {
      id: 'run-tools',
      transport: 'stdio',
      enabled: true,
      command: 'node',
      args: ['server.js', '--token=secret'],
      env: { API_TOKEN: 'secret' },
    },
    {
      id: 'remote',
      transport: 'http',
      enabled: true,
      url: 'https://api.example.com/mcp?key=abc',
      authMode: 'oauth',
      headers: { Authorization: 'Bearer t' },
    },
  ];

  it('TB (§13 example): the full example normalizes exactly, with key order', () => {
    const tb = bundle(EXAMPLE_INPUT());
    expect(tb).toEqual({ mcpServers: EXAMPLE_OUTPUT });
    expect(JSON.stringify(tb)).toBe(JSON.stringify({ mcpServers: EXAMPLE_OUTPUT }));
  });

  it('TB-1: non-plain raw or non-array mcpServers gives { mcpServers: [] }; no other keys', () => {
    for (const raw of [undefined, null, 'x', 5, [], [{ id: 'a', command: 'b' }]]) expect(bundle(raw)).toEqual({ mcpServers: [] });
    for (const ms of [undefined, null, {}, 'x', { 0: { id: 'a', command: 'b' } }]) expect(bundle({ mcpServers: ms })).toEqual({ mcpServers: [] });
    const tb = bundle({ mcpServers: [{ id: 'a', command: 'b' }], other: 1 });
    expect(Object.keys(tb)).toEqual(['mcpServers']);
  });

  it('TB-2/SV-1: invalid entries are dropped, order kept', () => {
    const s = servers([null, 'x', ['id'], 5, { id: 'b', command: 'cb' }, { id: 'a', command: 'ca' }, { id: 'c' }]);
    expect(s.map((x: any) => x.id)).toEqual(['b', 'a']);
  });

  it('TB-3: duplicates by trimmed id, first one wins, case-sensitive; invalid entries reserve no id', () => {
    const s = servers([
      { id: 'dup', transport: 'stdio' }, // invalid: no command
      { id: ' dup', command: 'first' },
      { id: 'dup ', command: 'second' },
      { id: 'DUP', command: 'third' },
    ]);
    expect(s.map((x: any) => [x.id, x.command])).toEqual([
      ['dup', 'first'],
      ['DUP', 'third'],
    ]);
  });

  it('SV-2: id rules (string, trimmed, 1-64 chars, ASCII alnum first, then alnum/_/-)', () => {
    expect(one({ id: 'a'.repeat(64), command: 'c' })?.id).toBe('a'.repeat(64));
    expect(one({ id: '9a_b-C', command: 'c' })?.id).toBe('9a_b-C');
    expect(one({ id: '\t x \n', command: 'c' })?.id).toBe('x');
    for (const bad of ['a'.repeat(65), '', '  ', '_a', '-a', 'a.b', 'a b', 'é', 'a\u212a', 5, null, undefined]) {
      expect(one({ id: bad, command: 'c' })).toBeUndefined();
    }
  });

  it('SV-3: transport is verbatim stdio/sse/http; non-string gives stdio', () => {
    expect(one({ id: 'a', command: 'c' })?.transport).toBe('stdio');
    expect(one({ id: 'a', transport: null, command: 'c' })?.transport).toBe('stdio');
    expect(one({ id: 'a', transport: 5, command: 'c' })?.transport).toBe('stdio');
    expect(one({ id: 'a', transport: 'sse', url: 'https://h/' })?.transport).toBe('sse');
    for (const bad of ['HTTP', ' http', 'ws', '']) expect(one({ id: 'a', transport: bad, url: 'https://h/', command: 'c' })).toBeUndefined();
  });

  it('SV-4: enabled is false only for boolean false', () => {
    expect(one({ id: 'a', command: 'c', enabled: false })?.enabled).toBe(false);
    for (const v of [undefined, 'false', 0, null, true]) expect(one({ id: 'a', command: 'c', enabled: v })?.enabled).toBe(true);
  });

  it('SV-5: label and templateId are kept trimmed when non-blank strings, otherwise omitted', () => {
    const s = one({ id: 'a', command: 'c', label: '  My Tools ', templateId: '\u00a0tpl\u2028' });
    expect(s.label).toBe('My Tools');
    expect(s.templateId).toBe('tpl');
    const t = one({ id: 'a', command: 'c', label: '   ', templateId: 5 });
    expect('label' in t).toBe(false);
    expect('templateId' in t).toBe(false);
  });

  it('SV-6: stdio needs a non-blank command (trimmed); args keep string elements verbatim; url/headers/authMode ignored', () => {
    expect(one({ id: 'a', command: '   ' })).toBeUndefined();
    expect(one({ id: 'a', command: 5 })).toBeUndefined();
    const s = one({
      id: 'a',
      command: '  npx ',
      args: [' -y ', '', 'x', 'x', 1, null, { a: 1 }],
      url: 'https://h/',
      headers: { A: 'b' },
      authMode: 'none',
    });
    expect(s).toEqual({ id: 'a', transport: 'stdio', enabled: true, command: 'npx', args: [' -y ', '', 'x', 'x'] });
    expect('args' in one({ id: 'a', command: 'c', args: [1, 2] })).toBe(false);
    expect('args' in one({ id: 'a', command: 'c', args: 'x' })).toBe(false);
  });

  it('SV-7: http/sse url is parsed as WHATWG URL; query, fragment and userinfo kept; bad schemes invalid', () => {
    expect(one({ id: 'a', transport: 'http', url: ' http://u:p@Example.COM:80/a/./b/../c?q=1#frag ' })?.url).toBe(
      'http://u:p@example.com/a/c?q=1#frag',
    );
    expect(one({ id: 'a', transport: 'sse', url: 'https://h.example' })?.url).toBe('https://h.example/');
    for (const bad of ['file:///etc/passwd', 'javascript:alert(1)', 'localhost:3000', 'ftp://h/', '/relative', '', '  ', 5]) {
      expect(one({ id: 'a', transport: 'http', url: bad })).toBeUndefined();
    }
    expect(one({ id: 'a', transport: 'http' })).toBeUndefined();
    const s = one({ id: 'a', transport: 'http', url: 'https://h/', command: 'node', args: ['x'], env: { A: 'b' } });
    expect(s).toEqual({ id: 'a', transport: 'http', enabled: true, url: 'https://h/', authMode: 'oauth' });
  });

  it("SV-7/SV-8: authMode is kept when exactly 'none'/'oauth', else inferred from the host", () => {
    const auth = (url: string, authMode?: unknown) => one({ id: 'a', transport: 'http', url, authMode })?.authMode;
    expect(auth('http://localhost:3000/')).toBe('none');
    expect(auth('http://LOCALHOST/')).toBe('none');
    expect(auth('http://localhost./')).toBe('none');
    expect(auth('http://127.0.0.1:8080/')).toBe('none');
    expect(auth('http://127.1/')).toBe('none');
    expect(auth('http://127.255.0.3/')).toBe('none');
    expect(auth('http://[::1]:9000/')).toBe('none');
    expect(auth('http://[::ffff:127.0.0.1]/')).toBe('oauth');
    expect(auth('http://foo.localhost/')).toBe('oauth');
    expect(auth('http://128.0.0.1/')).toBe('oauth');
    expect(auth('https://example.com/')).toBe('oauth');
    expect(auth('http://localhost/', 'oauth')).toBe('oauth');
    expect(auth('https://example.com/', 'none')).toBe('none');
    expect(auth('https://example.com/', 'NONE')).toBe('oauth');
    expect(auth('http://localhost/', 'bearer')).toBe('none');
  });

  it('SV-9: string maps keep verbatim own string entries, skip __proto__/constructor/blank keys/non-string/blank values', () => {
    const env = JSON.parse('{"__proto__":"p","constructor":"c","b":"1","2":"two","a":" v ","  ":"blank key","n":5,"e":"  "," K ":"k"}');
    const s = one({ id: 'a', command: 'c', env });
    expect(s.env).toEqual({ 2: 'two', b: '1', a: ' v ', ' K ': 'k' });
    expect(Object.keys(s.env)).toEqual(['2', 'b', 'a', ' K ']);
    expect('env' in one({ id: 'a', command: 'c', env: { x: 5, y: ' ' } })).toBe(false);
    expect('env' in one({ id: 'a', command: 'c', env: [['A', 'b']] })).toBe(false);
    expect('env' in one({ id: 'a', command: 'c', env: 'A=b' })).toBe(false);
    const h = one({ id: 'a', transport: 'http', url: 'https://h/', headers: { Authorization: 'Bearer t', X: '' } });
    expect(h.headers).toEqual({ Authorization: 'Bearer t' });
  });

  it('SV-10: key order of sanitized servers', () => {
    const stdio = one({ env: { A: 'b' }, args: ['x'], command: 'c', templateId: 't', label: 'l', enabled: false, transport: 'stdio', id: 'a' });
    expect(Object.keys(stdio)).toEqual(['id', 'transport', 'enabled', 'label', 'templateId', 'command', 'args', 'env']);
    const http = one({ headers: { A: 'b' }, authMode: 'none', url: 'https://h/', templateId: 't', label: 'l', transport: 'http', id: 'a' });
    expect(Object.keys(http)).toEqual(['id', 'transport', 'enabled', 'label', 'templateId', 'url', 'authMode', 'headers']);
  });

  it('SV-11: JS trim removes U+FEFF and keeps U+0085', () => {
    expect(one({ id: '\ufeffabc\ufeff', command: 'c' })?.id).toBe('abc');
    expect(one({ id: '\u0085abc', command: 'c' })).toBeUndefined();
    expect(one({ id: 'a', command: '\u0085node\ufeff' })?.command).toBe('\u0085node');
    expect(one({ id: 'a', command: 'c', label: '\u0085' })?.label).toBe('\u0085');
    expect(one({ id: 'a', command: '\ufeff\u3000' })).toBeUndefined();
  });

  it('SUM-3: the summary of the §13 example', () => {
    const { svc } = makeSvc();
    const run = svc.create({ toolBundle: EXAMPLE_INPUT() });
    const summary = svc.statusBody(run).toolBundle;
    expect(summary).toEqual({
      mcpServers: [
        { id: 'run-tools', transport: 'stdio', enabled: true },
        { id: 'remote', transport: 'http', enabled: true, authMode: 'oauth' },
      ],
    });
    expect(JSON.stringify(summary)).toBe(
      JSON.stringify({
        mcpServers: [
          { id: 'run-tools', transport: 'stdio', enabled: true },
          { id: 'remote', transport: 'http', enabled: true, authMode: 'oauth' },
        ],
      }),
    );
  });

  it('SUM-4: no secret of the §13 example leaks into the status body, waiters, end data or the log', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spec-sum4-'));
    try {
      const { svc } = makeSvc({ runsLogDir: tmp });
      const run = svc.create({ toolBundle: EXAMPLE_INPUT() });
      const json = JSON.stringify(svc.statusBody(run));
      for (const s of ['secret', 'server.js', 'key=abc', 'Bearer', 'api.example.com']) expect(json).not.toContain(s);
      const waited = svc.wait(run);
      svc.emit(run, 'agent', { ok: true });
      svc.finish(run, 'succeeded', 0, null);
      const body = await waited;
      await svc.shutdownActive();
      const texts = [JSON.stringify(body), JSON.stringify(run.events), fs.readFileSync(run.eventsLogPath, 'utf8')];
      for (const t of texts) for (const s of ['secret', 'server.js', 'key=abc', 'Bearer', 'api.example.com']) expect(t).not.toContain(s);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    }
  });

  it('SUM-5: run.toolBundle keeps the full sanitized config, secrets included', () => {
    const { svc } = makeSvc();
    const run = svc.create({ toolBundle: EXAMPLE_INPUT() });
    expect(run.toolBundle.mcpServers[0].env).toEqual({ API_TOKEN: 'secret' });
    expect(run.toolBundle.mcpServers[1].headers).toEqual({ Authorization: 'Bearer t' });
    expect(run.toolBundle.mcpServers[1].url).toBe('https://api.example.com/mcp?key=abc');
  });

  it('SUM-2: each summary entry is a new object with id, label?, templateId?, transport, enabled, authMode? in that order', () => {
    const { svc } = makeSvc();
    const run = svc.create({
      toolBundle: {
        mcpServers: [
          { id: 'a', transport: 'sse', url: 'http://127.0.0.1:9/', label: 'L', templateId: 'T', enabled: false },
          { id: 'b', command: 'c', label: '  ' },
        ],
      },
    });
    const sum = svc.statusBody(run).toolBundle;
    expect(Object.keys(sum)).toEqual(['mcpServers']);
    expect(Object.keys(sum.mcpServers[0])).toEqual(['id', 'label', 'templateId', 'transport', 'enabled', 'authMode']);
    expect(sum.mcpServers[0]).toEqual({ id: 'a', label: 'L', templateId: 'T', transport: 'sse', enabled: false, authMode: 'none' });
    expect(sum.mcpServers[1]).toEqual({ id: 'b', transport: 'stdio', enabled: true });
    expect(sum.mcpServers[0]).not.toBe(run.toolBundle.mcpServers[0]);
    expect(svc.statusBody(run).toolBundle).not.toBe(sum);
  });

  it('SUM-1: the summary reads run.toolBundle.mcpServers at call time; a non-array gives []', () => {
    const { svc } = makeSvc();
    const run = svc.create({ toolBundle: { mcpServers: [{ id: 'a', command: 'c' }] } });
    run.toolBundle = { mcpServers: [{ id: 'z', transport: 'http', enabled: true, url: 'https://h/', authMode: 'oauth', label: 'Z' }] };
    expect(svc.statusBody(run).toolBundle).toEqual({
      mcpServers: [{ id: 'z', label: 'Z', transport: 'http', enabled: true, authMode: 'oauth' }],
    });
    run.toolBundle = { mcpServers: 'nope' };
    expect(svc.statusBody(run).toolBundle).toEqual({ mcpServers: [] });
    run.toolBundle = null;
    expect(svc.statusBody(run).toolBundle).toEqual({ mcpServers: [] });
  });
});

// ---------------------------------------------------------------------------------------------
// §15 statusBody

describe('§15 statusBody', () => {
  it('SB-1: exactly the 22 keys in order, fresh object each call, childExited true with no child', () => {
    const { svc } = makeSvc();
    const run = svc.create({
      projectId: 'p',
      conversationId: 'c',
      assistantMessageId: 'm',
      clientRequestId: 'r',
      agentId: 'ag',
      appliedPluginSnapshotId: 'snap',
      pluginId: 'plug',
    });
    const body = svc.statusBody(run);
    expect(Object.keys(body)).toEqual(STATUS_KEYS);
    expect(svc.statusBody(run)).not.toBe(body);
    expect(body).toEqual({
      id: run.id,
      projectId: 'p',
      conversationId: 'c',
      assistantMessageId: 'm',
      agentId: 'ag',
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
      eventsLogPath: null,
      mediaExecution: { mode: 'enabled' },
      toolBundle: { mcpServers: [] },
    });
  });

  it('SB-1: childPid comes from child.pid when it is a number, else run.childPid ?? null', () => {
    const { svc } = makeSvc();
    const run = svc.create();
    run.childPid = 77;
    expect(svc.statusBody(run).childPid).toBe(77);
    const child = new FakeChild();
    child.pid = 4242;
    run.child = child;
    expect(svc.statusBody(run).childPid).toBe(4242);
    expect(svc.statusBody(run).childExited).toBe(false);
    (child as any).pid = '4242';
    expect(svc.statusBody(run).childPid).toBe(77);
    run.childPid = undefined;
    expect(svc.statusBody(run).childPid).toBeNull();
    child.exitCode = 1;
    expect(svc.statusBody(run).childExited).toBe(true);
  });

  it('SB-1: fields 1-5 verbatim, the others ?? null, cancelRequested coerced to boolean', () => {
    const { svc } = makeSvc();
    const run = svc.create();
    run.agentId = undefined;
    run.appliedPluginSnapshotId = undefined;
    run.pluginId = undefined;
    run.processGroupId = undefined;
    run.childExitObservedAt = undefined;
    run.errorCode = undefined;
    run.cancelRequested = 'yes';
    run.processGroupId = IMPOSSIBLE_PGID;
    const body = svc.statusBody(run);
    expect('agentId' in body).toBe(true);
    expect(body.agentId).toBeUndefined();
    expect(body.appliedPluginSnapshotId).toBeNull();
    expect(body.pluginId).toBeNull();
    expect(body.childExitObservedAt).toBeNull();
    expect(body.errorCode).toBeNull();
    expect(body.cancelRequested).toBe(true);
    expect(body.processGroupId).toBe(IMPOSSIBLE_PGID);
    expect(Object.keys(body)).toEqual(STATUS_KEYS);
  });

  it('SB-2: no clientRequestId, events, child, acpSession, clients, waiters, analyticsTelemetry, full toolBundle or host props', () => {
    const { svc } = makeSvc();
    const run = svc.create({ clientRequestId: 'req-1', toolBundle: { mcpServers: [{ id: 'a', command: 'secret-cmd' }] } });
    run.stdinOpen = true;
    run.clientType = 'cli';
    run.userPrompt = 'hello';
    run.analyticsTelemetry = { x: 1 };
    run.acpSession = { abort() {} };
    const body = svc.statusBody(run);
    for (const k of ['clientRequestId', 'events', 'child', 'acpSession', 'clients', 'waiters', 'analyticsTelemetry', 'stdinOpen', 'clientType', 'userPrompt']) {
      expect(k in body).toBe(false);
    }
    expect(JSON.stringify(body)).not.toContain('secret-cmd');
    expect(JSON.stringify(body)).not.toContain('req-1');
    expect(Object.keys(body)).toEqual(STATUS_KEYS);
  });

  it('SB-3: statusBody works detached: list().map(statusBody) equals one-by-one calls', () => {
    const { svc } = makeSvc();
    const a = svc.create({ projectId: 'a', mediaExecution: { mode: 'disabled' } });
    const b = svc.create({ projectId: 'b' });
    svc.finish(b, 'failed', 2, null);
    const { statusBody } = svc;
    const mapped = svc.list().map(statusBody);
    expect(mapped).toEqual([svc.statusBody(a), svc.statusBody(b)]);
    expect(mapped[1]).toMatchObject({ status: 'failed', exitCode: 2, projectId: 'b' });
  });
});

// ---------------------------------------------------------------------------------------------
// §16 the JSONL log

describe('§16 per-run JSONL event log', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spec-log-'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 }));

  it('LOG-1: path is <runsLogDir>/<runId>/events.jsonl and its directory is the dirname', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    expect(run.eventsLogPath).toBe(path.join(tmp, run.id, 'events.jsonl'));
    expect(svc.statusBody(run).eventsLogPath).toBe(run.eventsLogPath);
    svc.emit(run, 'a', 1);
    svc.finish(run, 'succeeded', 0, null);
    await svc.shutdownActive();
    expect(fs.readdirSync(tmp)).toEqual([run.id]);
    // events.jsonl plus the durable status snapshot next to it (restart survival).
    expect(fs.readdirSync(path.join(tmp, run.id)).sort()).toEqual(['events.jsonl', 'run.json']);
  });

  it('LOG-2: runsLogDir null/undefined/empty touches nothing (not even relative to the cwd)', async () => {
    const cwd = process.cwd();
    process.chdir(tmp);
    try {
      for (const runsLogDir of [null, undefined, '']) {
        const { svc } = makeSvc({ runsLogDir });
        const run = svc.create({ projectId: 'p' });
        expect(run.eventsLogPath).toBeNull();
        svc.emit(run, 'agent', { type: 'text_delta', delta: 'x' });
        svc.finish(run, 'succeeded', 0, null);
        svc.emit(run, 'late', 1);
        await svc.shutdownActive();
      }
      await sleep(50);
      expect(fs.readdirSync(tmp)).toEqual([]);
    } finally {
      process.chdir(cwd);
    }
  });

  it('LOG-3: create() alone creates no directory; a run that never emits has no directory', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    const other = svc.create();
    await sleep(30);
    expect(fs.existsSync(path.join(tmp, run.id))).toBe(false);
    svc.drop(other);
    svc.emit(run, 'a', 1);
    svc.finish(run, 'succeeded', 0, null);
    await svc.shutdownActive();
    expect(fs.existsSync(path.join(tmp, other.id))).toBe(false);
    expect(fs.readdirSync(tmp)).toEqual([run.id]);
  });

  it('LOG-3: the first emit creates the directory recursively with mode 0777 & ~umask and the file with 0666 & ~umask', async () => {
    const deep = path.join(tmp, 'a', 'b', 'c');
    const { svc } = makeSvc({ runsLogDir: deep });
    const run = svc.create();
    svc.emit(run, 'a', 1);
    svc.finish(run, 'succeeded', 0, null);
    await svc.shutdownActive();
    const umask = process.umask();
    expect(fs.statSync(path.dirname(run.eventsLogPath)).mode & 0o777).toBe(0o777 & ~umask);
    expect(fs.statSync(run.eventsLogPath).mode & 0o777).toBe(0o666 & ~umask);
    expect(readLines(run.eventsLogPath)).toHaveLength(2);
  });

  it('LOG-3: an existing file is appended to and never truncated', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    fs.mkdirSync(path.dirname(run.eventsLogPath), { recursive: true });
    fs.writeFileSync(run.eventsLogPath, 'PRE-EXISTING\n');
    svc.emit(run, 'a', 1);
    svc.finish(run, 'succeeded', 0, null);
    await svc.shutdownActive();
    const lines = readLines(run.eventsLogPath);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe('PRE-EXISTING');
    expect(JSON.parse(lines[1])).toMatchObject({ id: 1, event: 'a', data: 1 });
    expect(JSON.parse(lines[2])).toMatchObject({ id: 2, event: 'end' });
  });

  it('LOG-3/IMP-1: a run whose only event is end still gets a file', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    svc.finish(run, 'canceled', null, 'SIGTERM');
    await svc.shutdownActive();
    const lines = readLines(run.eventsLogPath);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toEqual({
      id: 1,
      event: 'end',
      data: { code: null, signal: 'SIGTERM', status: 'canceled' },
      timestamp: run.events[0].timestamp,
    });
  });

  it('LOG-4: the exact line text is JSON.stringify(record) + "\\n", keys id,event,data,timestamp', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    const r1 = svc.emit(run, 'agent', { type: 'text_delta', delta: 'hello' });
    const r2 = svc.emit(run, 'agent', { type: 'text_delta', delta: 'héllo ✓ 🚀 "q" \\ \n' });
    svc.finish(run, 'succeeded', 0, null);
    await svc.shutdownActive();
    const raw = fs.readFileSync(run.eventsLogPath, 'utf8');
    const lines = raw.split('\n');
    expect(lines[0]).toBe(`{"id":1,"event":"agent","data":{"type":"text_delta","delta":"hello"},"timestamp":${r1.timestamp}}`);
    expect(lines[1]).toBe(JSON.stringify({ id: 2, event: 'agent', data: r2.data, timestamp: r2.timestamp }));
    expect(Object.keys(JSON.parse(lines[0]))).toEqual(['id', 'event', 'data', 'timestamp']);
    expect(JSON.parse(lines[0])).toEqual({ id: 1, event: 'agent', data: { type: 'text_delta', delta: 'hello' }, timestamp: r1.timestamp });
    const endRec = run.events.at(-1);
    expect(lines[2]).toBe(`{"id":3,"event":"end","data":{"code":0,"signal":null,"status":"succeeded"},"timestamp":${endRec.timestamp}}`);
    expect(raw.endsWith('\n')).toBe(true);
    expect(lines).toHaveLength(4); // 3 lines + trailing ''
  });

  it('LOG-4: data undefined omits the key; toJSON is honoured; functions are dropped', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    const r1 = svc.emit(run, 'x', undefined);
    const r2 = svc.emit(run, 'y', { toJSON: () => ({ a: 1 }) });
    const r3 = svc.emit(run, 'z', { f() {}, b: 2 });
    svc.finish(run, 'succeeded', 0, null);
    await svc.shutdownActive();
    const lines = readLines(run.eventsLogPath);
    expect(lines[0]).toBe(`{"id":1,"event":"x","timestamp":${r1.timestamp}}`);
    expect(lines[1]).toBe(`{"id":2,"event":"y","data":{"a":1},"timestamp":${r2.timestamp}}`);
    expect(lines[2]).toBe(`{"id":3,"event":"z","data":{"b":2},"timestamp":${r3.timestamp}}`);
  });

  it('LOG-4: the line is the serialization at emit time; later mutation changes nothing recorded', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    const data = { v: 1 };
    svc.emit(run, 'x', data);
    data.v = 2;
    svc.finish(run, 'succeeded', 0, null);
    await svc.shutdownActive();
    expect(JSON.parse(readLines(run.eventsLogPath)[0]).data).toEqual({ v: 1 });
  });

  it('LOG-5: two emits plus finish give 3 lines in emit order, the last is end with data.status', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    svc.emit(run, 'agent', { n: 1 });
    svc.emit(run, 'stdout', { n: 2 });
    svc.finish(run, 'failed', 1, null);
    await svc.shutdownActive();
    const parsed = readLines(run.eventsLogPath).map((l) => JSON.parse(l));
    expect(parsed.map((p) => [p.id, p.event])).toEqual([
      [1, 'agent'],
      [2, 'stdout'],
      [3, 'end'],
    ]);
    expect(parsed[2].data).toEqual({ code: 1, signal: null, status: 'failed' });
  });

  it('LOG-5: many emits across runs are written whole, one line per record, in order', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp, maxEvents: 10 });
    const a = svc.create();
    const b = svc.create();
    for (let n = 1; n <= 300; n++) {
      svc.emit(a, 'agent', { n, pad: 'a'.repeat(n % 50) });
      svc.emit(b, 'agent', { n });
    }
    svc.finish(a, 'succeeded', 0, null);
    svc.finish(b, 'succeeded', 0, null);
    await svc.shutdownActive();
    for (const r of [a, b]) {
      const ids = readLines(r.eventsLogPath).map((l) => JSON.parse(l).id);
      expect(ids).toEqual(Array.from({ length: 301 }, (_, i) => i + 1));
    }
  });

  it('LOG-6: unserializable data (BigInt, cycle) skips only that line; run state and fan-out unaffected', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    const client = recClient();
    run.clients.add(client);
    const big = { n: 10n };
    const cyc: any = { a: 1 };
    cyc.self = cyc;
    svc.emit(run, 'ok', { n: 1 });
    let r2: any;
    expect(() => (r2 = svc.emit(run, 'big', big))).not.toThrow();
    expect(r2.id).toBe(2);
    expect(r2.data).toBe(big);
    let r3: any;
    expect(() => (r3 = svc.emit(run, 'cyc', cyc))).not.toThrow();
    expect(r3.data).toBe(cyc);
    svc.emit(run, 'ok', { n: 4 });
    expect((client.calls[1] as any).data).toBe(big);
    expect((client.calls[2] as any).data).toBe(cyc);
    expect(sentIds(client)).toEqual([1, 2, 3, 4]);
    expect(run.nextEventId).toBe(5);
    svc.finish(run, 'succeeded', 0, null);
    await svc.shutdownActive();
    const parsed = readLines(run.eventsLogPath).map((l) => JSON.parse(l));
    expect(parsed.map((p) => p.id)).toEqual([1, 4, 5]);
    expect(parsed[1]).toMatchObject({ event: 'ok', data: { n: 4 } });
  });

  it('LOG-6: a failing mkdir writes nothing for that emit, never throws, and the next emit tries again', async () => {
    const blocker = path.join(tmp, 'blocker');
    fs.writeFileSync(blocker, 'not a directory');
    const { svc } = makeSvc({ runsLogDir: blocker });
    const run = svc.create();
    const client = recClient();
    run.clients.add(client);
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      expect(() => svc.emit(run, 'a', { n: 1 })).not.toThrow();
      expect(sentIds(client)).toEqual([1]);
      await sleep(200);
      fs.rmSync(blocker);
      svc.emit(run, 'a', { n: 2 });
      svc.finish(run, 'succeeded', 0, null);
      await svc.shutdownActive();
    } finally {
      warn.mockRestore();
    }
    expect(run.status).toBe('succeeded');
    expect(readLines(run.eventsLogPath).map((l) => JSON.parse(l).id)).toEqual([2, 3]);
  });

  it('LOG-7/IMP-1: an emit after finish is not written, the last line stays end, memory and clients still get it', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const run = svc.create();
    svc.emit(run, 'agent', { n: 1 });
    svc.finish(run, 'succeeded', 0, null);
    const late = recClient();
    run.clients.add(late);
    svc.emit(run, 'agent', { late: true });
    await sleep(30);
    svc.emit(run, 'agent', { late: 2 });
    await svc.shutdownActive();
    const lines = readLines(run.eventsLogPath);
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1])).toMatchObject({ id: 2, event: 'end' });
    expect(run.events.map((e: any) => e.id)).toEqual([1, 2, 3, 4]);
    expect(sentIds(late)).toEqual([3, 4]);
  });

  it('LOG-7/IMP-2: files are never deleted on eviction or drop; drop closes the log (later emits not written)', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp, ttlMs: 1 });
    const evicted = svc.create();
    svc.emit(evicted, 'a', 1);
    svc.finish(evicted, 'succeeded', 0, null);
    const dropped = svc.create();
    svc.emit(dropped, 'a', 1);
    svc.drop(dropped);
    svc.emit(dropped, 'a', 2);
    await sleep(50);
    expect(svc.get(evicted.id)).toBeNull();
    await svc.shutdownActive();
    expect(readLines(evicted.eventsLogPath)).toHaveLength(2);
    expect(readLines(dropped.eventsLogPath).map((l) => JSON.parse(l).id)).toEqual([1]);
  });

  it('LOG-8/IMP-1: late events do not leave descriptors open on the log files', async () => {
    const { svc } = makeSvc({ runsLogDir: tmp });
    const fdsIntoTmp = () => {
      let n = 0;
      for (const fd of fs.readdirSync('/proc/self/fd')) {
        try {
          if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(tmp)) n++;
        } catch {
          /* fd closed meanwhile */
        }
      }
      return n;
    };
    for (let i = 0; i < 20; i++) {
      const run = svc.create();
      svc.emit(run, 'a', 1);
      svc.finish(run, 'succeeded', 0, null);
      svc.emit(run, 'late', 2);
    }
    await svc.shutdownActive();
    await sleep(30);
    expect(fdsIntoTmp()).toBe(0);
  });

  it('LOG-1/OPT: a relative runsLogDir stays relative in eventsLogPath and is resolved against the cwd when opened', async () => {
    const cwd = process.cwd();
    process.chdir(tmp);
    try {
      const { svc } = makeSvc({ runsLogDir: 'rel-logs' });
      const run = svc.create();
      expect(run.eventsLogPath).toBe(path.join('rel-logs', run.id, 'events.jsonl'));
      expect(path.isAbsolute(run.eventsLogPath)).toBe(false);
      svc.emit(run, 'a', 1);
      svc.finish(run, 'succeeded', 0, null);
      await svc.shutdownActive();
      expect(readLines(path.join(tmp, 'rel-logs', run.id, 'events.jsonl'))).toHaveLength(2);
      expect(svc.statusBody(run).eventsLogPath).toBe(path.join('rel-logs', run.id, 'events.jsonl'));
    } finally {
      process.chdir(cwd);
    }
  });
});
