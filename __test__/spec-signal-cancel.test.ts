// SPEC §11 signalChild (SIG-1..SIG-4) and cancel (CAN-1..CAN-8, IMP-11 concurrent cancels, MOD-3,
// the WCE wait-for-exit), with the §3 environment variables cancel reads (ENV).
// Fake children only: no real process is spawned and no real process group is signalled
// (processes.test.ts does that).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { FakeChild, IMPOSSIBLE_PGID, makeRuns, runningWithChild, SHORT_CANCEL_GRACES, sleep, withEnv } from './helpers'

describe('§11 signalChild', () => {
  it('SIG-1: no child, or an exited child, gives false and sends nothing', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    expect(runs.signalChild(run, 'SIGTERM')).toBe(false)

    const withCode = new FakeChild()
    withCode.exitCode = 0
    run.child = withCode
    expect(runs.signalChild(run, 'SIGTERM')).toBe(false)
    expect(withCode.signals).toEqual([])

    const withSignal = new FakeChild()
    withSignal.signalCode = 'SIGKILL'
    run.child = withSignal
    expect(runs.signalChild(run, 'SIGTERM')).toBe(false)
    expect(withSignal.signals).toEqual([])

    // §0: no exitCode/signalCode property counts as exited
    const bare = { kill: vi.fn(() => true) }
    run.child = bare
    expect(runs.signalChild(run, 'SIGTERM')).toBe(false)
    expect(bare.kill).not.toHaveBeenCalled()
  })

  it('SIG-2: processGroupId set but the child has no pid: no group signal, falls back to child.kill', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const child = new FakeChild({ ret: true })
    run.child = child
    run.processGroupId = IMPOSSIBLE_PGID
    expect(runs.signalChild(run, 'SIGTERM')).toBe(true)
    expect(child.signals).toEqual(['SIGTERM'])
  })

  it('SIG-3: no pid, no group: returns whatever child.kill returns', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const f = new FakeChild({ ret: false })
    run.child = f
    expect(runs.signalChild(run, 'SIGTERM')).toBe(false)
    expect(f.signals).toEqual(['SIGTERM'])
    const t = new FakeChild({ ret: true })
    run.child = t
    expect(runs.signalChild(run, 'SIGINT')).toBe(true)
    expect(t.signals).toEqual(['SIGINT'])
  })

  it('SIG-3: child.kill throwing gives false', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const child = new FakeChild({ throws: true })
    run.child = child
    expect(runs.signalChild(run, 'SIGTERM')).toBe(false)
    expect(child.signals).toEqual(['SIGTERM'])
  })

  it('SIG-4: the signal is passed verbatim and no run field is written', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const child = new FakeChild()
    run.child = child
    run.updatedAt = 123
    const before = runs.statusBody(run)
    const eventsBefore = run.events.length
    runs.signalChild(run, 'SIGHUP')
    runs.signalChild(run, 9)
    runs.signalChild(run, 'SIGUSR2')
    expect(child.signals).toEqual(['SIGHUP', 9, 'SIGUSR2'])
    expect(runs.statusBody(run)).toEqual(before)
    expect(run.updatedAt).toBe(123)
    expect(run.events.length).toBe(eventsBefore)
    expect(run.cancelRequested).toBe(false)
    expect(run.childExitObservedAt).toBeNull()
  })

  it('SIG-5: signalChildProcess signals the explicit child (a pid-less fake through kill), never run.child; nothing for an exited one', () => {
    const { runs } = makeRuns()
    const { signalChildProcess } = runs
    const run = runs.create()
    const current = new FakeChild()
    run.child = current
    const earlier = new FakeChild()
    expect(signalChildProcess(earlier, IMPOSSIBLE_PGID, 'SIGTERM')).toBe(true)
    expect(earlier.signals).toEqual(['SIGTERM'])
    expect(current.signals).toEqual([])
    expect(signalChildProcess(new FakeChild({ ret: false }), null, 9)).toBe(false)
    expect(signalChildProcess(new FakeChild({ throws: true }), undefined, 'SIGTERM')).toBe(false)
    const exited = new FakeChild()
    exited.exitCode = 0
    expect(signalChildProcess(exited, IMPOSSIBLE_PGID, 'SIGTERM')).toBe(false)
    expect(exited.signals).toEqual([])
    for (const missing of [null, undefined]) expect(signalChildProcess(missing, 5, 'SIGTERM')).toBe(false)
  })

  it('SIG-6: signalProcessGroup and reapProcessGroup send nothing for a group no run holds, whatever the id', () => {
    const { runs } = makeRuns()
    const { signalProcessGroup, reapProcessGroup } = runs
    const run = runs.create()
    run.child = new FakeChild()
    run.processGroupId = IMPOSSIBLE_PGID
    for (const id of [IMPOSSIBLE_PGID, 2.5, Number.NaN, '7', null, undefined, {}]) {
      expect(signalProcessGroup(id, 'SIGTERM')).toBe(false)
      expect(signalProcessGroup(id, 0)).toBe(false)
      expect(reapProcessGroup(id)).toBe(false)
    }
    expect(run.child.signals).toEqual([])
  })

  it('SIG-1: signalChild works detached from the service', () => {
    const { runs } = makeRuns()
    const { signalChild } = runs
    const run = runs.create()
    const child = new FakeChild()
    run.child = child
    expect(signalChild(run, 'SIGTERM')).toBe(true)
    expect(child.signals).toEqual(['SIGTERM'])
  })
})

/**
 * `child` seen through a Proxy: `override(key)` may throw, or return a replacement for that key;
 * anything else reads from the child (its methods bound to it).
 */
function hostileChild(child: FakeChild, override: (key: PropertyKey) => unknown) {
  return new Proxy(child, {
    get(target, key) {
      const replaced = override(key)
      if (replaced !== undefined) return replaced
      const value = Reflect.get(target, key, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** A function that throws `message`. */
const throwing = (message: string) => () => {
  throw new Error(message)
}

describe('§11 cancel', () => {
  let restoreEnv: () => void
  beforeEach(() => {
    restoreEnv = withEnv(SHORT_CANCEL_GRACES)
  })
  afterEach(() => restoreEnv())

  it('CAN-1: cancel on a terminal run resolves to its status body and changes nothing', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    runs.finish(run, 'succeeded', 0, null)
    run.updatedAt = 42
    const child = new FakeChild()
    run.child = child
    const p = runs.cancel(run)
    expect(p).toBeInstanceOf(Promise)
    const body = await p
    expect(body).toEqual(runs.statusBody(run))
    expect(body.status).toBe('succeeded')
    expect(run.cancelRequested).toBe(false)
    expect(run.updatedAt).toBe(42)
    expect(child.signals).toEqual([])
    expect(run.events.map((e: any) => e.event)).toEqual(['end'])
  })

  it('CAN-2: cancelRequested, updatedAt and the first SIGTERM happen before cancel() returns', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    run.updatedAt = 1
    const t0 = Date.now()
    const p = runs.cancel(run)
    expect(run.cancelRequested).toBe(true)
    expect(run.updatedAt).toBeGreaterThanOrEqual(t0)
    expect(child.signals).toEqual(['SIGTERM'])
    expect(run.status).toBe('running')
    await p
  })

  it('CAN-3: a queued run is canceled synchronously, abort is not called', async () => {
    const { runs } = makeRuns()
    const run = runs.create()
    const abort = vi.fn()
    run.acpSession = { abort }
    const waiter = runs.wait(run)
    const p = runs.cancel(run)
    expect(run.status).toBe('canceled')
    expect(run.signal).toBe('SIGTERM')
    expect(run.exitCode).toBeNull()
    expect(run.cancelRequested).toBe(true)
    expect(run.events.at(-1)).toMatchObject({
      event: 'end',
      data: { code: null, signal: 'SIGTERM', status: 'canceled' },
    })
    expect(abort).not.toHaveBeenCalled()
    const body = await p
    expect(body).toMatchObject({
      status: 'canceled',
      signal: 'SIGTERM',
      exitCode: null,
      cancelRequested: true,
      childExited: true,
    })
    await expect(waiter).resolves.toMatchObject({ status: 'canceled' })
    expect(abort).not.toHaveBeenCalled()
  })

  it('CAN-4: ACP run: abort() is called synchronously; a child that exits within the grace gets no signal', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild()
    const run = runningWithChild(runs, child)
    const abort = vi.fn(() => setTimeout(() => child.die(0, null), 5))
    run.acpSession = { abort }
    const p = runs.cancel(run)
    expect(abort).toHaveBeenCalledTimes(1)
    expect(abort.mock.calls[0]).toEqual([])
    expect(child.signals).toEqual([])
    const body = await p
    expect(child.signals).toEqual([])
    expect(body).toMatchObject({ status: 'canceled', exitCode: 0, signal: 'SIGTERM', childExited: true })
    expect(typeof body.childExitObservedAt).toBe('number')
  })

  it('CAN-4: ACP run whose child ignores abort: SIGTERM after the abort grace, exits on it', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    run.acpSession = {
      abort: () => {
        throw new Error('abort failed') // swallowed
      },
    }
    const t0 = Date.now()
    const p = runs.cancel(run)
    expect(child.signals).toEqual([])
    const body = await p
    expect(child.signals).toEqual(['SIGTERM'])
    expect(child.times[0] - t0).toBeGreaterThanOrEqual(25)
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', childExited: true })
    expect(Date.now() - t0).toBeLessThan(1500)
  })

  it('CAN-4: ACP run whose child never dies: SIGTERM after G, SIGKILL after 2G, settles after the force wait', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild()
    const run = runningWithChild(runs, child)
    run.acpSession = { abort: vi.fn() }
    const t0 = Date.now()
    const body = await runs.cancel(run)
    const elapsed = Date.now() - t0
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
    expect(child.times[0] - t0).toBeGreaterThanOrEqual(25)
    expect(child.times[1] - t0).toBeGreaterThanOrEqual(55)
    expect(elapsed).toBeGreaterThanOrEqual(70)
    expect(elapsed).toBeLessThan(1500)
    expect(body).toMatchObject({
      status: 'canceled',
      signal: 'SIGKILL',
      childExited: false,
      childExitObservedAt: null,
      exitCode: null,
    })
  })

  it('CAN-5: non-ACP run: SIGTERM synchronously, SIGKILL after the cancel grace, well under 3000 ms', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGKILL' })
    const run = runningWithChild(runs, child)
    const t0 = Date.now()
    const p = runs.cancel(run)
    expect(child.signals).toEqual(['SIGTERM'])
    const body = await p
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
    expect(child.times[1] - t0).toBeGreaterThanOrEqual(25)
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGKILL', exitCode: null, childExited: true })
    expect(typeof body.childExitObservedAt).toBe('number')
  })

  it('CAN-6: exit code and signal come from the child; the fallback applies when signalCode is null', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM', exitCodeOnDeath: 143, signalCodeOnDeath: null })
    const run = runningWithChild(runs, child)
    const t0 = Date.now()
    const body = await runs.cancel(run)
    expect(body).toMatchObject({ status: 'canceled', exitCode: 143, signal: 'SIGTERM', childExited: true })
    expect(run.childExitObservedAt).toBeGreaterThanOrEqual(t0)
    expect(run.events.at(-1)).toMatchObject({
      event: 'end',
      data: { code: 143, signal: 'SIGTERM', status: 'canceled' },
    })
  })

  it('CAN-6: an already truthy childExitObservedAt is kept', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    run.childExitObservedAt = 123
    const body = await runs.cancel(run)
    expect(run.childExitObservedAt).toBe(123)
    expect(body.childExitObservedAt).toBe(123)
  })

  it("CAN-6: if the host finishes the run from its own 'close' handler, the host's verdict is returned", async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    child.on('close', () => runs.finish(run, 'failed', 9, 'SIGTERM'))
    const body = await runs.cancel(run)
    expect(body).toMatchObject({ status: 'failed', exitCode: 9, signal: 'SIGTERM' })
    expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1)
  })

  it('CAN-7: a child that exits on SIGTERM gives signal SIGTERM, childExited true, childExitObservedAt set', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    const body = await runs.cancel(run)
    expect(child.signals).toEqual(['SIGTERM'])
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', childExited: true, cancelRequested: true })
    expect(typeof body.childExitObservedAt).toBe('number')
  })

  it('CAN-7: a child that never dies gives signal SIGKILL, childExited false, childExitObservedAt null', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild()
    const run = runningWithChild(runs, child)
    const body = await runs.cancel(run)
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGKILL', childExited: false, childExitObservedAt: null })
  })

  it('CAN-7: a child that already exited with code 0 gets no signal and reports exitCode 0, signal SIGTERM', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild()
    child.exitCode = 0
    const run = runningWithChild(runs, child)
    const t0 = Date.now()
    const body = await runs.cancel(run)
    expect(child.signals).toEqual([])
    expect(body).toMatchObject({ status: 'canceled', exitCode: 0, signal: 'SIGTERM', childExited: true })
    expect(typeof body.childExitObservedAt).toBe('number')
    expect(Date.now() - t0).toBeLessThan(25)
  })

  it('CAN-8: cancel re-reads run.child at each step (SIGKILL goes to the replacement child)', async () => {
    const { runs } = makeRuns()
    const first = new FakeChild()
    const second = new FakeChild({ closeOn: 'SIGKILL' })
    const run = runningWithChild(runs, first)
    const p = runs.cancel(run)
    expect(first.signals).toEqual(['SIGTERM'])
    run.child = second
    const body = await p
    expect(first.signals).toEqual(['SIGTERM'])
    expect(second.signals).toEqual(['SIGKILL'])
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGKILL', childExited: true })
  })

  it('CAN-6/LC-7: a teardown that ends at its SIGKILL step without sending SIGKILL gives SIGTERM (a child that exited without a close it waits for), SIGKILL only for a child that never dies', async () => {
    const { runs } = makeRuns()
    // CAN-9 waits for a 'close' that never comes: the child exited on SIGTERM (code 0, no signal
    // code), so the SIGKILL step finds nothing to kill.
    const exited = new FakeChild({
      closeOn: 'SIGTERM',
      emitEvents: ['exit'],
      exitCodeOnDeath: 0,
      signalCodeOnDeath: null,
    })
    const run = runningWithChild(runs, exited)
    run.runtimeFailureObservedBeforeCancellation = true
    expect(await runs.cancel(run, 'user_stop')).toMatchObject({ status: 'canceled', exitCode: 0, signal: 'SIGTERM' })
    expect(exited.signals).toEqual(['SIGTERM'])
    // Already exited before the cancel (no signal sent at all).
    const before = new FakeChild()
    before.exitCode = 0
    const quiet = runningWithChild(runs, before)
    quiet.runtimeFailureObservedBeforeCancellation = true
    expect(await runs.cancel(quiet)).toMatchObject({ status: 'canceled', signal: 'SIGTERM', childExited: true })
    expect(before.signals).toEqual([])
    // A child that never dies, whose kill() throws: nothing was delivered, but it is still there.
    const stuck = new FakeChild({ throws: true })
    expect(await runs.cancel(runningWithChild(runs, stuck))).toMatchObject({ signal: 'SIGKILL', childExited: false })
  })

  it("CAN-9: with runtimeFailureObservedBeforeCancellation the wait ends at the child's close, so the host's close handler gives the verdict", async () => {
    const { runs } = makeRuns()
    // The child exits on SIGTERM at once; its 'close' (stdio drained) comes 15 ms later, inside
    // the 30 ms grace of this block's environment.
    const cancelOne = async (flagged: boolean) => {
      const child = new FakeChild({ closeOn: 'SIGTERM', emitEvents: ['exit'] })
      child.once('exit', () => setTimeout(() => child.emit('close', null, 'SIGTERM'), 15))
      const run = runningWithChild(runs, child)
      // The host's own close handler (registered first, as the daemon's is) classifies the failure.
      child.on('close', () => runs.fail(run, 'AGENT_RUNTIME_ERROR', 'the agent crashed'))
      if (flagged) run.runtimeFailureObservedBeforeCancellation = true
      const body = await runs.cancel(run, 'user_stop')
      return { run, body }
    }
    // A close that never comes: the waits run out, and the teardown's listener is gone after.
    const silent = new FakeChild()
    const stuck = runningWithChild(runs, silent)
    stuck.runtimeFailureObservedBeforeCancellation = true
    expect(await runs.cancel(stuck)).toMatchObject({ status: 'canceled', signal: 'SIGKILL' })
    expect(silent.listenerCount('close')).toBe(0)
    expect(silent.listenerCount('exit')).toBe(0)

    const flagged = await cancelOne(true)
    expect(flagged.body).toMatchObject({
      status: 'failed',
      errorCode: 'AGENT_RUNTIME_ERROR',
      cancelOrigin: 'user_stop',
      terminalTrigger: null,
    })
    expect(flagged.run.events.map((e: { event: string }) => e.event)).toEqual(['error', 'end'])

    // Without the flag the exit ends the wait, and the late close handler finds the run terminal.
    const plain = await cancelOne(false)
    expect(plain.body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', errorCode: null })
    await sleep(40)
    expect(plain.run.status).toBe('canceled')
    expect(plain.run.events.map((e: { event: string }) => e.event)).toEqual(['end'])
  })

  it('IMP-11: two concurrent cancel() calls send one SIGTERM and resolve to the same body', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGKILL' })
    const run = runningWithChild(runs, child)
    const abort = vi.fn()
    run.acpSession = { abort }
    const p1 = runs.cancel(run)
    const p2 = runs.cancel(run)
    expect(abort).toHaveBeenCalledTimes(1)
    const [b1, b2] = await Promise.all([p1, p2])
    expect(abort).toHaveBeenCalledTimes(1)
    expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
    expect(b2).toEqual(b1)
    expect(b1).toMatchObject({ status: 'canceled', signal: 'SIGKILL' })
    expect(run.events.filter((e: any) => e.event === 'end')).toHaveLength(1)
  })

  it('IMP-11: non-ACP concurrent cancels: exactly one SIGTERM', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    const [b1, b2] = await Promise.all([runs.cancel(run), runs.cancel(run)])
    expect(child.signals).toEqual(['SIGTERM'])
    expect(b2).toEqual(b1)
  })

  it("a host child object whose stdin, off() or abort() misbehaves does not stop the teardown; abort's rejected promise is handled", async () => {
    const rejections: unknown[] = []
    const onRejection = (reason: unknown) => rejections.push(reason)
    process.on('unhandledRejection', onRejection)
    try {
      const { runs } = makeRuns()
      // A stdin getter that throws, and an off() that throws (called from a timer).
      const child = new FakeChild({ closeOn: 'SIGKILL' })
      const hostile = hostileChild(child, (key) => {
        if (key === 'stdin') throw new Error('stdin getter threw')
        if (key === 'off') return throwing('off threw')
      })
      const run = runningWithChild(runs, hostile)
      run.stdinOpen = true
      await expect(runs.cancel(run, 'user_stop')).resolves.toMatchObject({ status: 'canceled', signal: 'SIGKILL' })
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
      expect(run.stdinOpen).toBe(false)
      // An ACP abort() that returns a rejected promise.
      const acp = runningWithChild(runs, new FakeChild({ closeOn: 'SIGTERM' }))
      acp.acpSession = { abort: () => Promise.reject(new Error('abort rejected')) }
      await expect(runs.cancel(acp, 'user_stop')).resolves.toMatchObject({ status: 'canceled' })
      await sleep(20)
      expect(rejections).toEqual([])
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  })

  it("CAN-9 with a child whose once() throws, or a run whose retryRestartTimer getter throws: the cancel still tears down and the host's verdict lands", async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const hostile = hostileChild(child, (key) => (key === 'once' ? throwing('once threw') : undefined))
    const run = runningWithChild(runs, hostile)
    run.runtimeFailureObservedBeforeCancellation = true
    Object.defineProperty(run, 'retryRestartTimer', {
      configurable: true,
      get() {
        throw new Error('timer getter threw')
      },
    })
    await expect(runs.cancel(run, 'user_stop')).resolves.toMatchObject({ status: 'canceled', signal: 'SIGTERM' })
    expect(child.signals).toEqual(['SIGTERM'])
    expect(run.status).toBe('canceled')
  })

  it('SHD-5: a cancel whose steps threw is over: it rejects, and the next cancel starts a new plan instead of waiting', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM', pid: undefined })
    const run = runningWithChild(runs, child)
    // A run field the SIGTERM step reads, defined by the host as a throwing accessor.
    let broken = true
    Object.defineProperty(run, 'processGroupId', {
      configurable: true,
      get() {
        if (broken) throw new Error('group getter threw')
        return null
      },
    })
    await expect(runs.cancel(run, 'user_stop')).rejects.toThrow('group getter threw')
    expect(run.status).toBe('running')
    expect(child.signals).toEqual([])
    broken = false
    const second = runs.cancel(run, 'project_deleted')
    const settled = await Promise.race([second, sleep(1000).then(() => 'pending')])
    expect(settled).toMatchObject({ status: 'canceled', signal: 'SIGTERM', cancelOrigin: 'user_stop' })
    expect(child.signals).toEqual(['SIGTERM'])
  })

  it('LC-7: a child object whose pid or exit-code getters throw is still torn down (child.kill()) and the run ends canceled', async () => {
    for (const broken of ['pid', 'exitCode']) {
      const { runs } = makeRuns()
      const child = new FakeChild({ closeOn: 'SIGTERM', pid: undefined })
      const hostile = hostileChild(child, (key) => {
        if (key === broken) throw new Error(`${broken} getter threw`)
      })
      const run = runningWithChild(runs, hostile)
      const done = runs.wait(run)
      const body = await Promise.race([runs.cancel(run, 'user_stop'), sleep(3000).then(() => 'pending')])
      expect(body, broken).toMatchObject({ status: 'canceled', signal: 'SIGTERM', cancelOrigin: 'user_stop' })
      expect(child.signals, broken).toEqual(['SIGTERM'])
      await expect(done).resolves.toMatchObject({ status: 'canceled' })
      await expect(runs.shutdownActive({ graceMs: 10 })).resolves.toBeUndefined()
    }
  })

  it('LC-7: a child whose exitCode getter throws and that dies at SIGKILL is not reported as a survivor (its exit was seen)', async () => {
    for (const how of ['cancel', 'shutdownActive'] as const) {
      const { runs } = makeRuns()
      const child = new FakeChild({ closeOn: 'SIGKILL', pid: undefined })
      const run = runningWithChild(
        runs,
        hostileChild(child, (key) => {
          if (key === 'exitCode') throw new Error('exitCode getter threw')
        }),
      )
      if (how === 'cancel') await runs.cancel(run, 'user_stop')
      else await runs.shutdownActive({ graceMs: 20 })
      expect(child.signals, how).toEqual(['SIGTERM', 'SIGKILL'])
      expect(run.status, how).toBe('canceled')
      expect(
        run.events.filter((e: any) => e.event === 'diagnostic'),
        how,
      ).toEqual([])
    }
  })

  it('MOD-3 (cancel): cancel never throws synchronously and returns a native Promise', async () => {
    const { runs } = makeRuns()
    const { cancel } = runs
    const run = runs.create()
    const p = cancel(run)
    expect(p).toBeInstanceOf(Promise)
    await expect(p).resolves.toMatchObject({ status: 'canceled' })
  })

  describe('WCE wait-for-exit', () => {
    it("WCE: subscribes to 'exit' and 'close' and removes both listeners afterwards", async () => {
      const { runs } = makeRuns()
      const child = new FakeChild() // ignores SIGTERM, exits a little later on its own
      const run = runningWithChild(runs, child)
      const p = runs.cancel(run)
      expect(child.listenerCount('exit')).toBe(1)
      expect(child.listenerCount('close')).toBe(1)
      setTimeout(() => child.die(0, null), 5)
      const body = await p
      expect(child.signals).toEqual(['SIGTERM'])
      expect(body).toMatchObject({ exitCode: 0, signal: 'SIGTERM', childExited: true })
      expect(child.listenerCount('exit')).toBe(0)
      expect(child.listenerCount('close')).toBe(0)
    })

    it("WCE: an 'exit' event alone or a 'close' event alone ends the wait", async () => {
      for (const ev of ['exit', 'close'] as const) {
        const { runs } = makeRuns()
        const child = new FakeChild({ closeOn: 'SIGTERM', emitEvents: [ev] })
        const run = runningWithChild(runs, child)
        const t0 = Date.now()
        const body = await runs.cancel(run)
        expect(child.signals).toEqual(['SIGTERM'])
        expect(body.signal).toBe('SIGTERM')
        expect(Date.now() - t0).toBeLessThan(25)
        expect(child.listenerCount('exit') + child.listenerCount('close')).toBe(0)
      }
    })

    it('WCE: the timer path removes the listeners too (child never dies)', async () => {
      const { runs } = makeRuns()
      const child = new FakeChild()
      const run = runningWithChild(runs, child)
      await runs.cancel(run)
      expect(child.listenerCount('exit')).toBe(0)
      expect(child.listenerCount('close')).toBe(0)
    })

    it('WCE: a child without once() is only observed by the timer', async () => {
      const { runs } = makeRuns()
      const signals: unknown[] = []
      const child: any = {
        pid: undefined,
        exitCode: null,
        signalCode: null,
        kill(sig: unknown) {
          signals.push(sig)
          // exits shortly after SIGTERM, but emits nothing and has no once()
          if (sig === 'SIGTERM') setTimeout(() => (child.signalCode = 'SIGTERM'), 5)
          return true
        },
      }
      const run = runningWithChild(runs, child)
      const t0 = Date.now()
      const body = await runs.cancel(run)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(25)
      expect(signals).toEqual(['SIGTERM']) // exited by the SIGKILL step: no second signal
      expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', childExited: true })
    })
  })

  describe('ENV rules', () => {
    it("ENV: OD_CHAT_RUN_CANCEL_GRACE_MS='abc' gives 3000 and does not fall back to OD_CHAT_RUN_SHUTDOWN_GRACE_MS", async () => {
      process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = 'abc'
      process.env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS = '20'
      const { runs } = makeRuns()
      const child = new FakeChild()
      const run = runningWithChild(runs, child)
      const p = runs.cancel(run)
      await sleep(300)
      expect(child.signals).toEqual(['SIGTERM']) // no SIGKILL after 20 ms nor after 300 ms
      child.die(null, 'SIGTERM')
      const body = await p
      expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM' })
      expect(child.signals).toEqual(['SIGTERM'])
    })

    it('ENV: an empty OD_CHAT_RUN_CANCEL_GRACE_MS falls back to OD_CHAT_RUN_SHUTDOWN_GRACE_MS', async () => {
      process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = ''
      process.env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS = '30'
      const { runs } = makeRuns()
      const child = new FakeChild({ closeOn: 'SIGKILL' })
      const run = runningWithChild(runs, child)
      const t0 = Date.now()
      const body = await runs.cancel(run)
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
      expect(child.times[1] - t0).toBeGreaterThanOrEqual(25)
      expect(Date.now() - t0).toBeLessThan(1000)
      expect(body.signal).toBe('SIGKILL')
    })

    it('ENV: unset OD_CHAT_RUN_CANCEL_GRACE_MS also falls back to OD_CHAT_RUN_SHUTDOWN_GRACE_MS', async () => {
      delete process.env.OD_CHAT_RUN_CANCEL_GRACE_MS
      process.env.OD_CHAT_RUN_SHUTDOWN_GRACE_MS = '30'
      const { runs } = makeRuns()
      const child = new FakeChild({ closeOn: 'SIGKILL' })
      const run = runningWithChild(runs, child)
      const t0 = Date.now()
      await runs.cancel(run)
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
      expect(child.times[1] - t0).toBeGreaterThanOrEqual(25)
      expect(Date.now() - t0).toBeLessThan(1000)
    })

    it('ENV: an invalid OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS gives 500 ms after SIGKILL', async () => {
      process.env.OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS = 'abc'
      const { runs } = makeRuns()
      const child = new FakeChild()
      const run = runningWithChild(runs, child)
      const t0 = Date.now()
      const body = await runs.cancel(run)
      const elapsed = Date.now() - t0
      expect(child.signals).toEqual(['SIGTERM', 'SIGKILL'])
      expect(elapsed - (child.times[1] - t0)).toBeGreaterThanOrEqual(480)
      expect(elapsed).toBeLessThan(2000)
      expect(body.signal).toBe('SIGKILL')
    })

    it("ENV: PI_ABORT_GRACE_MS='0' gives 3000 (no SIGTERM within 300 ms on the ACP path)", async () => {
      process.env.PI_ABORT_GRACE_MS = '0'
      const { runs } = makeRuns()
      const child = new FakeChild()
      const run = runningWithChild(runs, child)
      run.acpSession = { abort: vi.fn() }
      const p = runs.cancel(run)
      await sleep(300)
      expect(child.signals).toEqual([])
      child.die(0, null)
      const body = await p
      expect(body).toMatchObject({ status: 'canceled', exitCode: 0, signal: 'SIGTERM' })
    })

    it('ENV: variables are read on every cancel, not cached', async () => {
      const { runs } = makeRuns()
      process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = 'abc'
      const slow = new FakeChild()
      const run1 = runningWithChild(runs, slow)
      const p1 = runs.cancel(run1)
      process.env.OD_CHAT_RUN_CANCEL_GRACE_MS = '30'
      const fast = new FakeChild({ closeOn: 'SIGKILL' })
      const run2 = runningWithChild(runs, fast)
      await runs.cancel(run2)
      expect(fast.signals).toEqual(['SIGTERM', 'SIGKILL'])
      expect(slow.signals).toEqual(['SIGTERM'])
      slow.die(null, 'SIGTERM')
      await p1
    })
  })
})
