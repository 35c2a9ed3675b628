'use strict'
// LC-9: a process tree the host terminates. Where the host identifies the agent's tree itself
// (on Windows the daemon records the root process and its creation time,
// `run.processTreeRoot`, sometimes still capturing it, `run.processTreeIdentityCapture`) and
// gives the service its terminator (`options.terminateProcessTree`), a cancel or shutdown of
// such a run hands the tree to that function instead of signalling it. The verdict follows its
// answer: 'canceled' once the tree is verified gone and the child exited; otherwise a failure
// (RUN_TERMINATION_UNVERIFIED) that stays retryable: the next cancel or shutdownActive reopens
// the run and asks the terminator again, in this process or, with the identity the state file
// keeps, after a restart.
//
// Without the option, or for a run with none of those fields, the engine's own teardown (LC-7,
// lib/control.js) applies. The rules on the fields (the identity's shape, what is retryable, what
// the state file keeps) are in lib/host-fields.js.

const native = require('./core.js')
const { newTeardown, syncCancelBegun, syncReopened } = require('./run.js')
const { isTerminal, resolvedStatusBody } = require('./status.js')
const { finishParked, finish } = require('./lifecycle.js')
const { emit } = require('./emit.js')
const { cancelEnv } = require('./options.js')
const { displaceHydratedCopy, reinstate } = require('./registry.js')
const { childExitFacts, closeStdin, exitedOrNot, unwatchClose, waitForChild, watchClose } = require('./child.js')
const {
  clearFailure,
  clearRetryRestart,
  failureObservedFirst,
  retryableTermination,
  treeIdentityOf,
  TERMINATION_UNVERIFIED,
} = require('./host-fields.js')
const { ignore, ignoreResult } = require('./hooks.js')
const { handOver } = require('./state-writer.js')

const { EscalationStep } = native

// How much longer than the teardown's own waits the host's identification and terminator may take
// before their answer counts as none (a Windows process-table query can take seconds).
const HOST_SLACK_MS = 10_000

// The failure's message (the code is the contract; the text is ours).
const UNVERIFIED_MESSAGE = "The run's process tree could not be verified as stopped; cancel it again to retry."

/**
 * Whether a cancel or shutdown of `run` is the host terminator's (LC-9): there is a terminator,
 * no teardown of the engine's own is under way, and the run is either not terminal and names a
 * tree (or one being identified, or requires verification), or a retryable termination failure.
 */
function hostTerminates(ctx, run, s) {
  if (ctx.opts.terminateProcessTree === null || s.teardown !== null || s.cancelPromise !== null) return false
  if (isTerminal(s.status)) return retryableTermination(run)
  try {
    return (
      Boolean(run.processTreeIdentityCapture) ||
      run.requiresTreeVerification === true ||
      treeIdentityOf(run.processTreeRoot) !== null
    )
  } catch {
    return false
  }
}

/**
 * LC-9: the run's teardown by the host's terminator; a cancel or shutdown already carrying it out
 * is joined. Resolves to the status body when it is over. `plan`: `{ origin, graceMs
 * (null: the cancel grace of §3), shutdown }`; `fallback()` starts the engine's own teardown, for
 * a run whose identification found no tree and that does not require one.
 */
function hostTeardown(ctx, run, s, plan, fallback) {
  if (s.hostTeardown !== null) return s.hostTeardown
  // Joined from before its first step: the terminator may be called synchronously, and a cancel
  // or shutdownActive() it makes must join this teardown (one terminator call, no signal of the
  // engine's), not start another.
  let settle
  const teardown = new Promise((resolve, reject) => {
    settle = { resolve, reject }
  })
  s.hostTeardown = teardown
  const done = () => {
    if (s.hostTeardown === teardown) s.hostTeardown = null
  }
  teardown.then(done, done)
  tearDown(ctx, run, s, plan, fallback).then(settle.resolve, settle.reject)
  return teardown
}

async function tearDown(ctx, run, s, plan, fallback) {
  const now = Date.now()
  if (isTerminal(s.status)) {
    // The retry of a teardown that could not be verified: the run is running again (back in the
    // registry if it was evicted; a copy hydrated under its id meanwhile leaves it).
    displaceHydratedCopy(ctx, run, s)
    if (!native.runReopenForTeardown(ctx.svc, s.slot, now)) return resolvedStatusBody(run)
    syncReopened(s, now)
    reinstate(ctx, run, s)
    clearFailure(run)
  }
  // The cancel's facts (LC-5: the first origin wins), with no plan of the engine's: one begun
  // and dropped at once.
  const step = native.runCancelBegin(ctx.svc, s.slot, false, false, NaN, NaN, NaN, plan.origin, now)
  if (step === EscalationStep.Terminal) return resolvedStatusBody(run)
  // (InFlight: a plan of the engine's that threw is still held; it is not this one to drop.)
  if (step !== EscalationStep.InFlight) native.runPlanAbandon(ctx.svc, s.slot, false)
  syncCancelBegun(s, now, plan.origin)
  clearRetryRestart(run)
  const child = run.child
  // As in LC-7: from here until the verdict, a finish is parked (lib/lifecycle.js).
  const mine = child ? newTeardown(plan.shutdown) : null
  if (mine !== null) s.teardown = mine
  // CAN-9: a cancel after a runtime failure counts the child as done only once its 'close' was
  // seen (the watch carries over to LC-7's teardown if that takes over).
  if (mine !== null && !plan.shutdown && failureObservedFirst(run)) watchClose(mine, child)
  const sawClose = mine !== null && mine.closed !== null ? () => mine.closed : null
  // LC-5: the origin is durable before the terminator, with a host writer too (LC-11).
  handOver(ctx)
  try {
    const closing = closeStdin(run)
    if (closing !== null) await closing
    const [abortGrace, cancelGrace, forceWait] = native.cancelGraces(...cancelEnv())
    let graceMs = plan.graceMs ?? cancelGrace
    // (Awaited only when there is one: without, the terminator is called synchronously.) An
    // identification that never settles counts as none after HOST_SLACK_MS.
    const identifying = identification(run)
    if (identifying !== null) await within(identifying, HOST_SLACK_MS)
    // (Terminal here: finished meanwhile, without a child to park it; or dropped.)
    if (isTerminal(s.status)) return resolvedStatusBody(run)
    if (abort(run)) {
      graceMs = plan.graceMs ?? abortGrace
      await waitForChild(child, graceMs, sawClose)
    }
    const root = treeIdentityOf(run.processTreeRoot)
    if (root === null) {
      if (run.requiresTreeVerification === true) return unverified(ctx, run, s, plan, NOTHING_VERIFIED)
      // Identified nothing, required nothing: the engine's own teardown (LC-7) takes over, with
      // what was parked so far; without a child, nothing is left to tear down (CAN-3).
      // (Whichever call started it, a cancel joined to it resolves to the status body.)
      if (child) {
        await fallback()
        return resolvedStatusBody(run)
      }
      finish(ctx, run, 'canceled', null, 'SIGTERM')
      return resolvedStatusBody(run)
    }
    let answer
    try {
      // A terminator that never answers has verified nothing once its own grace, its force wait
      // and HOST_SLACK_MS are over: the run does not stay 'running' forever, nor does shutdown.
      const call = Promise.resolve(ctx.opts.terminateProcessTree(root, { graceMs, forceWaitMs: forceWait }))
      answer = await within(call, graceMs + forceWait + HOST_SLACK_MS)
    } catch {
      // A terminator that failed has verified nothing.
    }
    const result = readAnswer(answer)
    const childExited = await waitForChild(child, forceWait, sawClose)
    if (isTerminal(s.status)) return resolvedStatusBody(run)
    const verified = childExited && result.stopped
    return verified ? canceled(ctx, run, s, plan, result) : unverified(ctx, run, s, plan, result)
  } finally {
    unwatchClose(mine)
    // Whatever ended the teardown early (a throw, a drop) still applies what it parked: the
    // host's verdict is not lost. (The engine's own teardown, after a fallback, released it.)
    if (mine !== null && s.teardown === mine) {
      s.teardown = null
      finishParked(ctx, run, mine)
    }
  }
}

// The host's identification of the tree, if one is under way (a promise that never rejects: its
// failure is a tree not identified), else null.
function identification(run) {
  let capture
  try {
    capture = run.processTreeIdentityCapture
  } catch {
    return null
  }
  if (!capture || typeof capture.then !== 'function') return null
  return Promise.resolve(capture).then(ignore, ignore)
}

/**
 * `promise`'s value, or undefined once `ms` passed (a ref'd timer, TMR-4, cleared when it settles;
 * none for Infinity). A rejection is passed on.
 */
function within(promise, ms) {
  const delay = native.timerDelay(ms)
  if (delay === null) return promise
  let timer
  const expiry = new Promise((resolve) => {
    timer = setTimeout(resolve, delay, undefined)
  })
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer))
}

// What the service takes from the terminator's answer: whether it says the tree stopped (the
// identity held and nothing of the tree is left) and whether it forced it. Anything that is not
// such an object, or whose getters throw, verified nothing.
function readAnswer(answer) {
  try {
    if (answer === null || typeof answer !== 'object') return NOTHING_VERIFIED
    return {
      stopped: answer.identityVerified === true && answer.childTreeQuiescent === true,
      forced: answer.forced === true,
    }
  } catch {
    return NOTHING_VERIFIED
  }
}

const NOTHING_VERIFIED = Object.freeze({ stopped: false, forced: false })

// CAN-4: the ACP session's abort(), errors swallowed; true when there was one.
function abort(run) {
  try {
    if (!run.acpSession?.abort) return false
    ignoreResult(run.acpSession.abort(), ignore)
  } catch {
    // See above.
  }
  return true
}

// The teardown's outcome on the run, as the daemon reads it (upstream's field names).
function recordTermination(run, outcome, result, childExited) {
  let attempts = 1
  try {
    const previous = run.termination?.attempts
    if (Number.isFinite(previous)) attempts = previous + 1
  } catch {
    // A getter that throws: a first attempt.
  }
  const termination = {
    attempts,
    outcome,
    phase: result.forced ? 'forced' : 'graceful',
    retryable: outcome === 'unverified',
    childExited,
    treeQuiescent: outcome === 'verified',
  }
  run.termination = termination
  return termination
}

function terminationRecord(termination) {
  const { phase, outcome, attempts, childExited, treeQuiescent } = termination
  return { type: 'run_termination', phase, outcome, attempts, childExited, treeQuiescent }
}

// The tree is verified gone: the verdicts the host gave meanwhile first (the first wins), then
// 'canceled' from the child's own exit (CAN-6), its signal SIGKILL when the terminator forced it.
function canceled(ctx, run, s, plan, result) {
  const t = s.teardown
  s.teardown = null
  const child = run.child
  const termination = recordTermination(run, 'verified', result, true)
  emit(ctx, run, 'diagnostic', terminationRecord(termination))
  const { exitCode, signal: childSignal } = childExitFacts(run, child)
  const signal = childSignal ?? (result.forced ? 'SIGKILL' : 'SIGTERM')
  finishParked(ctx, run, t, signal)
  // (A parked verdict the teardown applied is the run's: no second claim of HF-20.)
  if (!isTerminal(s.status)) finish(ctx, run, 'canceled', exitCode, signal)
  return resolvedStatusBody(run)
}

// The tree is not verified gone: the run fails, retryably. A verdict the host gave meanwhile is
// set aside: the run is not over while its tree may still be running.
function unverified(ctx, run, s, plan, result) {
  s.teardown = null
  const child = run.child
  const termination = recordTermination(run, 'unverified', result, exitedOrNot(child))
  run.errorCode = TERMINATION_UNVERIFIED
  run.error = UNVERIFIED_MESSAGE
  run.failureCategory = 'process_exit'
  run.failureDetail = 'termination_unverified'
  run.failureAction = null
  emit(ctx, run, 'diagnostic', terminationRecord(termination))
  let payload = null
  try {
    payload = ctx.opts.createSseErrorPayload(TERMINATION_UNVERIFIED, UNVERIFIED_MESSAGE, { retryable: true })
  } catch {
    // The host's payload builder: the run's fields carry the failure without the record.
  }
  if (payload !== null) emit(ctx, run, 'error', payload)
  let exitCode = null
  try {
    exitCode = child?.exitCode ?? null
  } catch {
    // The host's getters: the exit code stays unknown.
  }
  finish(ctx, run, 'failed', exitCode, result.forced ? 'SIGKILL' : 'SIGTERM')
  return resolvedStatusBody(run)
}

module.exports = { hostTerminates, hostTeardown }
