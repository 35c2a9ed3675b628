// SPEC LC-9: a process tree the host terminates (options.terminateProcessTree): which runs it
// applies to, the verified and the unverified verdicts, the retry of an unverified teardown (in
// this process and after a restart, from the state file), joining, the identification under way,
// and the fallback to LC-7. Fake children stand in for the agent, except in the last test, which
// tears a real process down through a terminator of the test's own (it signals only that pid,
// which it started).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { FakeChild, makeRuns, notLinux, readLines, runningWithChild, useTempDirs, waitFor } from './helpers'

const tempDir = useTempDirs('chat-run-host-tree-')

const ROOT = { pid: 100, createdAt: 10 }
const VERIFIED = { attempted: true, childTreeQuiescent: true, forced: false, identityVerified: true, remainingPids: [] }
const UNVERIFIED = {
  attempted: true,
  childTreeQuiescent: false,
  forced: true,
  identityVerified: true,
  remainingPids: [200],
}

/** A terminator that kills `child` (as a real one would end the tree) and answers `answer`. */
function killing(child: FakeChild, answer: object) {
  return vi.fn(async () => {
    child.die(null, 'SIGTERM')
    return answer
  })
}

/** A running run with a fake child and the host's tree identity. */
function identified(runs: any, child: FakeChild, meta: object = {}) {
  const run = runningWithChild(runs, child, meta)
  run.processTreeRoot = { ...ROOT }
  return run
}

const events = (run: any) => run.events.map((record: any) => record.event)

describe('LC-9 which runs the host terminates', () => {
  it('creates every run with the three tree fields, and prepareRestart resets them', () => {
    const { runs } = makeRuns()
    const run = runs.create({})
    expect([run.processTreeRoot, run.processTreeIdentityCapture, run.requiresTreeVerification]).toEqual([
      null,
      null,
      false,
    ])
    run.processTreeRoot = { ...ROOT }
    run.processTreeIdentityCapture = Promise.resolve()
    run.requiresTreeVerification = true
    runs.finish(run, 'failed', 1, null)
    expect(runs.prepareRestart(run)).toBe(run)
    expect([run.processTreeRoot, run.processTreeIdentityCapture, run.requiresTreeVerification]).toEqual([
      null,
      null,
      false,
    ])
  })

  it('rejects a terminator that is not a function, naming the option', () => {
    expect(() => makeRuns({ terminateProcessTree: 'taskkill' })).toThrow(
      /options\.terminateProcessTree must be a function/,
    )
    expect(() => makeRuns({ terminateProcessTree: null })).not.toThrow()
  })

  it('leaves a run with a tree identity to LC-7 when there is no terminator', async () => {
    const { runs } = makeRuns()
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = identified(runs, child)
    const body = await runs.cancel(run)
    expect(child.signals).toEqual(['SIGTERM'])
    expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM' })
    expect(run.termination).toBeUndefined()
  })

  it('leaves a run without any tree field to LC-7 when there is a terminator', async () => {
    const terminateProcessTree = vi.fn()
    const { runs } = makeRuns({ terminateProcessTree })
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    await runs.cancel(run)
    expect(child.signals).toEqual(['SIGTERM'])
    expect(terminateProcessTree).not.toHaveBeenCalled()
  })
})

describe('LC-9 a verified teardown', () => {
  it('calls the terminator instead of signalling, then cancels with a run_termination diagnostic', async () => {
    let terminateProcessTree: ReturnType<typeof killing> | undefined
    const { runs } = makeRuns({ terminateProcessTree: (...args: unknown[]) => terminateProcessTree!(...(args as [])) })
    const child = new FakeChild()
    terminateProcessTree = killing(child, VERIFIED)
    const run = identified(runs, child)
    const root = run.processTreeRoot
    const body = await runs.cancel(run, 'user_stop')
    expect(terminateProcessTree).toHaveBeenCalledTimes(1)
    const [passed, options] = terminateProcessTree.mock.calls[0] as unknown as [object, object]
    expect(passed).toEqual(ROOT)
    expect(passed).not.toBe(root)
    expect(options).toEqual({ graceMs: 3000, forceWaitMs: 500 })
    expect(child.signals).toEqual([])
    expect(body).toMatchObject({
      status: 'canceled',
      signal: 'SIGTERM',
      cancelOrigin: 'user_stop',
      terminalTrigger: null,
      termination: { attempts: 1, outcome: 'verified', phase: 'graceful', retryable: false, treeQuiescent: true },
    })
    expect(run.childExitObservedAt).toEqual(expect.any(Number))
    expect(events(run)).toEqual(['diagnostic', 'end'])
    expect(run.events[0].data).toEqual({
      type: 'run_termination',
      phase: 'graceful',
      outcome: 'verified',
      attempts: 1,
      childExited: true,
      treeQuiescent: true,
    })
    expect(run.events[1].data.termination).toEqual(body.termination)
  })

  it("passes cancel's own grace, and the shutdown grace, to the terminator", async () => {
    const answers: object[] = []
    const terminateProcessTree = vi.fn(async (_root: unknown, options: object) => {
      answers.push(options)
      return VERIFIED
    })
    const { runs } = makeRuns({ terminateProcessTree })
    const first = identified(runs, new FakeChild())
    first.child.exitCode = 0
    await runs.cancel(first, { origin: 'project_deleted', graceMs: 1234 })
    expect(first.cancelOrigin).toBe('project_deleted')
    const second = identified(runs, new FakeChild())
    second.child.exitCode = 0
    await runs.shutdownActive({ graceMs: 77 })
    expect(answers).toEqual([
      { graceMs: 1234, forceWaitMs: 500 },
      { graceMs: 77, forceWaitMs: 500 },
    ])
    expect(second).toMatchObject({
      status: 'canceled',
      cancelOrigin: 'daemon_shutdown',
      terminalTrigger: null,
    })
  })

  it('calls the terminator synchronously when nothing is to be waited for, and once for joined calls', async () => {
    let answer!: (value: object) => void
    const terminateProcessTree = vi.fn(() => new Promise((resolve) => (answer = resolve)))
    const { runs } = makeRuns({ terminateProcessTree })
    const child = new FakeChild()
    const run = identified(runs, child)
    const first = runs.cancel(run)
    expect(terminateProcessTree).toHaveBeenCalledTimes(1)
    const second = runs.cancel(run)
    const shutdown = runs.shutdownActive()
    expect(terminateProcessTree).toHaveBeenCalledTimes(1)
    child.exitCode = 0
    answer(VERIFIED)
    const [a, b] = await Promise.all([first, second, shutdown])
    expect(a).toEqual(b)
    expect(run.status).toBe('canceled')
  })

  it('joins a cancel the terminator itself makes, synchronously: one call, no signal of the engine', async () => {
    for (const withChild of [false, true]) {
      const box: { run?: any; child?: FakeChild; nested?: Promise<unknown> } = {}
      const terminateProcessTree = vi.fn(() => {
        if (terminateProcessTree.mock.calls.length === 1) box.nested = runs.cancel(box.run, 'second')
        box.child?.die(0, null)
        return VERIFIED
      })
      const { runs } = makeRuns({ terminateProcessTree })
      const child = withChild ? new FakeChild() : null
      const killed = vi.spyOn(FakeChild.prototype, 'kill')
      box.child = child ?? undefined
      box.run = child ? identified(runs, child) : runs.create({})
      if (!child) {
        box.run.status = 'running'
        box.run.processTreeRoot = { ...ROOT }
      }
      const body = await runs.cancel(box.run, 'first')
      await expect(box.nested).resolves.toEqual(body)
      expect(terminateProcessTree).toHaveBeenCalledTimes(1)
      expect(killed).not.toHaveBeenCalled()
      killed.mockRestore()
      expect(body).toMatchObject({ status: 'canceled', cancelOrigin: 'first' })
    }
  })

  it('clamps the abort grace it waits before the terminator (TMR-2), and waits forever for Infinity', async () => {
    for (const graceMs of [2 ** 31, Infinity]) {
      const terminateProcessTree = vi.fn(() => VERIFIED)
      const { runs } = makeRuns({ terminateProcessTree })
      const child = new FakeChild()
      const run = identified(runs, child)
      run.acpSession = { abort() {} }
      const done = runs.cancel(run, { origin: 'user_stop', graceMs })
      await new Promise((resolve) => setTimeout(resolve, 100))
      // Still in the abort grace: Node's timers would have turned the delay into 1 ms.
      expect(terminateProcessTree).not.toHaveBeenCalled()
      child.die(0, null)
      await expect(done).resolves.toMatchObject({ status: 'canceled' })
    }
  })

  it("parks the host's finish during the teardown and applies it first", async () => {
    let answer!: (value: object) => void
    const { runs } = makeRuns({ terminateProcessTree: () => new Promise((resolve) => (answer = resolve)) })
    const child = new FakeChild()
    const run = identified(runs, child)
    child.on('close', (code: number) => runs.finish(run, 'failed', code, null))
    const cancel = runs.cancel(run)
    child.exitWith(3)
    expect(run.status).toBe('running')
    answer(VERIFIED)
    await expect(cancel).resolves.toMatchObject({ status: 'failed', exitCode: 3, cancelOrigin: 'unknown' })
    expect(run.termination).toMatchObject({ outcome: 'verified' })
  })
})

describe('LC-9 a cancel after a runtime failure (CAN-9)', () => {
  it("counts the child as exited only once its 'close' was seen", async () => {
    const { runs } = makeRuns({ terminateProcessTree: async () => VERIFIED })
    const child = new FakeChild()
    const run = identified(runs, child)
    run.runtimeFailureObservedBeforeCancellation = true
    child.exitCode = 1
    let body: any = null
    runs.cancel(run).then((value: unknown) => (body = value))
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(body).toBeNull()
    child.emit('close', 1, null)
    expect(await waitFor(() => body !== null, 1000)).toBe(true)
    expect(body).toMatchObject({ status: 'canceled', exitCode: 1, termination: { outcome: 'verified' } })
    expect(child.listenerCount('close')).toBe(0)
  })
})

describe('LC-9 identification', () => {
  it('waits for the identification under way before calling the terminator', async () => {
    let identifiedNow!: () => void
    const terminateProcessTree = vi.fn(async () => VERIFIED)
    const { runs } = makeRuns({ terminateProcessTree })
    const child = new FakeChild()
    const run = runningWithChild(runs, child)
    run.requiresTreeVerification = true
    run.processTreeIdentityCapture = new Promise<void>((resolve) => (identifiedNow = resolve))
    const cancel = runs.cancel(run)
    child.exitWith(0)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(terminateProcessTree).not.toHaveBeenCalled()
    expect(run.status).toBe('running')
    run.processTreeRoot = { ...ROOT }
    identifiedNow()
    await expect(cancel).resolves.toMatchObject({ status: 'canceled' })
    expect(terminateProcessTree).toHaveBeenCalledWith(ROOT, expect.any(Object))
  })

  it('fails without calling the terminator when verification is required and nothing was identified', async () => {
    const terminateProcessTree = vi.fn()
    const { runs, createSseErrorPayload } = makeRuns({ terminateProcessTree })
    const child = new FakeChild()
    const run = runningWithChild(runs, child)
    run.requiresTreeVerification = true
    run.processTreeIdentityCapture = Promise.reject(new Error('process table unreadable'))
    const body = await runs.cancel(run)
    expect(terminateProcessTree).not.toHaveBeenCalled()
    expect(child.signals).toEqual([])
    expect(body).toMatchObject({ status: 'failed', errorCode: 'RUN_TERMINATION_UNVERIFIED' })
    expect(createSseErrorPayload).toHaveBeenCalledWith('RUN_TERMINATION_UNVERIFIED', expect.any(String), {
      retryable: true,
    })
  })

  it('hands over to LC-7 when the identification found nothing and nothing is required', async () => {
    const terminateProcessTree = vi.fn()
    const { runs } = makeRuns({ terminateProcessTree })
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    run.processTreeIdentityCapture = Promise.resolve()
    await expect(runs.cancel(run)).resolves.toMatchObject({ status: 'canceled', signal: 'SIGTERM' })
    expect(child.signals).toEqual(['SIGTERM'])
    expect(terminateProcessTree).not.toHaveBeenCalled()
  })

  it('resolves a cancel joined to a shutdown that handed over to LC-7 with the status body', async () => {
    let identifiedNow!: () => void
    const { runs } = makeRuns({ terminateProcessTree: vi.fn() })
    const child = new FakeChild({ closeOn: 'SIGTERM' })
    const run = runningWithChild(runs, child)
    run.processTreeIdentityCapture = new Promise<void>((resolve) => (identifiedNow = resolve))
    const shutdown = runs.shutdownActive()
    const cancel = runs.cancel(run, 'user_stop')
    identifiedNow()
    await expect(shutdown).resolves.toBeUndefined()
    await expect(cancel).resolves.toMatchObject({ status: 'canceled', cancelOrigin: 'daemon_shutdown' })
    expect(child.signals).toEqual(['SIGTERM'])
  })
})

describe('LC-9 an unverified teardown', () => {
  it('fails retryably, with the diagnostic and the error before the end', async () => {
    const { runs } = makeRuns({ terminateProcessTree: async () => UNVERIFIED })
    const child = new FakeChild()
    child.exitCode = 0
    const run = identified(runs, child)
    const body = await runs.cancel(run)
    expect(body).toMatchObject({
      status: 'failed',
      signal: 'SIGKILL',
      errorCode: 'RUN_TERMINATION_UNVERIFIED',
      failureCategory: 'process_exit',
      failureDetail: 'termination_unverified',
      failureAction: null,
      termination: { attempts: 1, outcome: 'unverified', phase: 'forced', retryable: true, childExited: true },
    })
    expect(body.error).toMatch(/verified/)
    expect(events(run)).toEqual(['diagnostic', 'error', 'end'])
    expect(run.events[1].data.error.code).toBe('RUN_TERMINATION_UNVERIFIED')
  })

  it('counts a child that did not exit, and a terminator that throws, as unverified', async () => {
    const { runs } = makeRuns({
      terminateProcessTree: () => {
        throw new Error('access denied')
      },
    })
    const run = identified(runs, new FakeChild())
    await expect(runs.cancel(run)).resolves.toMatchObject({ status: 'failed', termination: { childExited: false } })
    const { runs: other } = makeRuns({ terminateProcessTree: async () => VERIFIED })
    const alive = identified(other, new FakeChild())
    await expect(other.cancel(alive)).resolves.toMatchObject({
      status: 'failed',
      errorCode: 'RUN_TERMINATION_UNVERIFIED',
    })
  })

  it('takes an answer that is not a termination object, or whose getters throw, as unverified', async () => {
    const hostile = {
      get identityVerified(): boolean {
        throw new Error('boom')
      },
    }
    for (const answer of [undefined, 'verified', true, hostile, { identityVerified: 1, childTreeQuiescent: true }]) {
      const { runs } = makeRuns({ terminateProcessTree: () => answer })
      const child = new FakeChild()
      child.exitCode = 0
      const run = identified(runs, child)
      await expect(runs.cancel(run)).resolves.toMatchObject({
        status: 'failed',
        errorCode: 'RUN_TERMINATION_UNVERIFIED',
        termination: { phase: 'graceful', outcome: 'unverified' },
      })
    }
  })

  it('does not wait forever for a terminator or an identification that never settles', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
    try {
      const terminateProcessTree = vi.fn(() => new Promise(() => {}))
      const { runs } = makeRuns({ terminateProcessTree })
      const child = new FakeChild()
      child.exitCode = 0
      const run = identified(runs, child)
      run.processTreeIdentityCapture = new Promise(() => {})
      let body: any = null
      runs.cancel(run, { graceMs: 100 }).then((value: unknown) => (body = value))
      // The identification is given up after 10 s: the terminator is called then.
      await vi.advanceTimersByTimeAsync(9_999)
      expect(terminateProcessTree).not.toHaveBeenCalled()
      await vi.advanceTimersByTimeAsync(1)
      expect(terminateProcessTree).toHaveBeenCalledTimes(1)
      // Its answer is given up after its grace, the force wait and 10 s.
      await vi.advanceTimersByTimeAsync(100 + 500 + 10_000 - 1)
      expect(body).toBeNull()
      expect(run.status).toBe('running')
      await vi.advanceTimersByTimeAsync(1)
      expect(body).toMatchObject({ status: 'failed', errorCode: 'RUN_TERMINATION_UNVERIFIED' })
    } finally {
      vi.useRealTimers()
    }
  })

  it('is retried by the next cancel and by shutdownActive, until verified', async () => {
    const terminateProcessTree = vi.fn(async () => UNVERIFIED)
    const dir = tempDir()
    const { runs } = makeRuns({ terminateProcessTree, runsLogDir: dir })
    const child = new FakeChild()
    const run = identified(runs, child)
    await runs.cancel(run)
    expect(run.status).toBe('failed')
    await expect(runs.shutdownActive()).resolves.toBeUndefined()
    expect(terminateProcessTree).toHaveBeenCalledTimes(2)
    expect(run.termination).toMatchObject({ attempts: 2, retryable: true })
    child.exitCode = 0
    terminateProcessTree.mockResolvedValueOnce(VERIFIED as never)
    await expect(runs.cancel(run)).resolves.toMatchObject({
      status: 'canceled',
      error: null,
      errorCode: null,
      failureDetail: null,
      termination: { attempts: 3, outcome: 'verified' },
    })
    // A canceled run is not retried again.
    await runs.cancel(run)
    await runs.shutdownActive()
    expect(terminateProcessTree).toHaveBeenCalledTimes(3)
    // Every attempt's records reached the journal, after the earlier 'end's.
    await runs.shutdownActive()
    const journal = readLines(path.join(dir, run.id, 'events.jsonl')).map((line) => JSON.parse(line).event)
    expect(journal).toEqual(['diagnostic', 'error', 'end', 'diagnostic', 'error', 'end', 'diagnostic', 'end'])
    expect(JSON.parse(fs.readFileSync(path.join(dir, run.id, 'state.json'), 'utf8'))).toMatchObject({
      status: 'canceled',
      termination: { attempts: 3, outcome: 'verified' },
      processTreeRoot: null,
      requiresTreeVerification: false,
    })
  })
})

describe('LC-9 the retry of an evicted run', () => {
  it('puts the run back in the registry for its retry', async () => {
    const terminateProcessTree = vi.fn(async () => UNVERIFIED)
    const { runs } = makeRuns({ terminateProcessTree, ttlMs: 0 })
    const child = new FakeChild()
    child.exitCode = 0
    const run = identified(runs, child)
    await runs.cancel(run)
    expect(await waitFor(() => runs.get(run.id) === null, 1000)).toBe(true)
    // shutdownActive retries only what is registered: the evicted run is not.
    await runs.shutdownActive()
    expect(terminateProcessTree).toHaveBeenCalledTimes(1)
    terminateProcessTree.mockResolvedValueOnce(VERIFIED as never)
    const retry = runs.cancel(run)
    expect(runs.get(run.id)).toBe(run)
    await expect(retry).resolves.toMatchObject({ status: 'canceled', termination: { attempts: 2 } })
  })
})

describe('LC-9 across a restart', () => {
  it('keeps the identity a retry needs in the state file, and the next service retries with it', async () => {
    const dir = tempDir()
    const { runs } = makeRuns({ terminateProcessTree: async () => UNVERIFIED, runsLogDir: dir })
    const run = identified(runs, new FakeChild())
    run.requiresTreeVerification = true
    await runs.cancel(run)
    // The daemon's shutdown retries it once more (unverified again) and flushes the log.
    await runs.shutdownActive()
    const state = JSON.parse(fs.readFileSync(path.join(dir, run.id, 'state.json'), 'utf8'))
    expect(state).toMatchObject({
      status: 'failed',
      errorCode: 'RUN_TERMINATION_UNVERIFIED',
      processTreeRoot: ROOT,
      requiresTreeVerification: true,
      termination: { retryable: true },
    })

    const terminateProcessTree = vi.fn(async () => VERIFIED)
    const { runs: after } = makeRuns({ terminateProcessTree, runsLogDir: dir })
    const hydrated = after.get(run.id)
    expect(hydrated).toMatchObject({ status: 'failed', processTreeRoot: ROOT, requiresTreeVerification: true })
    await expect(after.cancel(hydrated)).resolves.toMatchObject({
      status: 'canceled',
      termination: { attempts: 3, outcome: 'verified' },
    })
    expect(terminateProcessTree).toHaveBeenCalledWith(ROOT, expect.any(Object))
    await after.shutdownActive()
    expect(readLines(path.join(dir, run.id, 'events.jsonl')).map((line) => JSON.parse(line).event)).toEqual([
      'diagnostic',
      'error',
      'end',
      'diagnostic',
      'error',
      'end',
      'diagnostic',
      'end',
    ])
  })

  it('keeps the failure in the state file while a retry runs, so a daemon that dies meanwhile can retry it', async () => {
    const dir = tempDir()
    let answer: unknown = UNVERIFIED
    const { runs } = makeRuns({ terminateProcessTree: () => answer, runsLogDir: dir })
    const run = runs.create({})
    run.status = 'running'
    run.processTreeRoot = { ...ROOT }
    run.requiresTreeVerification = true
    await runs.cancel(run, 'user_stop')
    const file = () => JSON.parse(fs.readFileSync(path.join(dir, run.id, 'state.json'), 'utf8'))
    expect(file()).toMatchObject({ status: 'failed', errorCode: 'RUN_TERMINATION_UNVERIFIED' })
    answer = new Promise(() => {}) // the retry's terminator never answers: the daemon dies meanwhile
    void runs.cancel(run, 'user_stop')
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(run.status).toBe('running')
    expect(file()).toMatchObject({ status: 'failed', errorCode: 'RUN_TERMINATION_UNVERIFIED', processTreeRoot: ROOT })
    const { runs: after } = makeRuns({ terminateProcessTree: () => VERIFIED, runsLogDir: dir })
    expect(after.get(run.id)).toMatchObject({
      status: 'failed',
      errorCode: 'RUN_TERMINATION_UNVERIFIED',
      processTreeRoot: ROOT,
      termination: { retryable: true },
    })
  })

  it('makes a retryable failure without an identity not retryable, on the run and in its file', async () => {
    const dir = tempDir()
    const { runs } = makeRuns({ runsLogDir: dir })
    const run = runs.create({ projectId: 'p' })
    const statePath = path.join(dir, run.id, 'state.json')
    const written = JSON.parse(fs.readFileSync(statePath, 'utf8'))
    fs.writeFileSync(
      statePath,
      JSON.stringify({
        ...written,
        status: 'failed',
        errorCode: 'RUN_TERMINATION_UNVERIFIED',
        termination: { retryable: true, attempts: 1 },
        processTreeRoot: { pid: -4, createdAt: 1 },
        requiresTreeVerification: true,
      }),
    )
    const terminateProcessTree = vi.fn()
    const { runs: after } = makeRuns({ terminateProcessTree, runsLogDir: dir })
    const hydrated = after.get(run.id)
    expect(hydrated).toMatchObject({
      status: 'failed',
      processTreeRoot: null,
      requiresTreeVerification: false,
      termination: { retryable: false, attempts: 1 },
    })
    expect(JSON.parse(fs.readFileSync(statePath, 'utf8'))).toMatchObject({ termination: { retryable: false } })
    await expect(after.cancel(hydrated)).resolves.toMatchObject({ status: 'failed' })
    await after.shutdownActive()
    expect(terminateProcessTree).not.toHaveBeenCalled()
  })
})

describe.skipIf(notLinux)('LC-9 with a real process', () => {
  it("cancels once the host's terminator ended the agent, without the service signalling it", async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    try {
      const terminateProcessTree = vi.fn(async (root: { pid: number }) => {
        // The test's own terminator: it ends only the process it started, by the pid it recorded.
        if (root.pid !== child.pid) return { ...UNVERIFIED, identityVerified: false }
        process.kill(child.pid, 'SIGTERM')
        await exited
        return VERIFIED
      })
      const { runs } = makeRuns({ terminateProcessTree })
      const run = runs.create({})
      run.status = 'running'
      run.child = child
      run.processTreeRoot = { pid: child.pid, createdAt: 0 }
      const body = await runs.cancel(run)
      expect(body).toMatchObject({ status: 'canceled', signal: 'SIGTERM', childExited: true })
      expect(await waitFor(() => child.exitCode !== null || child.signalCode !== null, 1000)).toBe(true)
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    }
  })
})
