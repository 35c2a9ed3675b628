'use strict'
// Stopping runs (SPEC §11 as LC-5 and LC-7 amend it): cancel and shutdownActive (signalling one
// child or group on the host's request is lib/signal.js).
// The core plans (which step next, how long to wait: crates/core/src/escalation.rs), records
// the cancel origin, and owns the run's process tree (crates/core/src/tree: captured when the
// host attaches the child, signalled by identity, asked whether anything of it is alive). This
// file carries the plan out with what only JS holds: the child and acpSession objects, the
// child's stdin, timers, promises.
//
// The teardown (LC-7): from the first step of a plan with a child until its finish step, the run
// is "tearing down" (`s.teardown`, see lib/run.js). A finish called meanwhile (typically the
// host's child 'close' handler) is parked (lib/lifecycle.js) and becomes the verdict when the
// barrier ends; once one is parked, emits other than 'diagnostic' are dropped (lib/emit.js).
// The barrier ends when the child exited and nothing of its tree is alive, or the last wait
// expired; the teardown then reports survivors ('termination_failed') and finishes the run.

const native = require('./core.js')
const { ChatRun, own, syncCancelBegun, newTeardown } = require('./run.js')
const { exited, isTerminal, resolvedStatusBody } = require('./status.js')
const { finishParked, finish, wait } = require('./lifecycle.js')
const { emit } = require('./emit.js')
const { cancelEnv } = require('./options.js')
const { clearRetryRestart, failureObservedFirst, retryableTermination } = require('./host-fields.js')
const { deliveryPending, stopPendingDelivery } = require('./delivery.js')
const { ignore, ignoreResult } = require('./hooks.js')
const {
  CHILD_END_EVENTS,
  childExitFacts,
  closeStdin,
  exitedOrNot,
  childValues,
  unlisten,
  watchClose,
  unwatchClose,
} = require('./child.js')
const { hostTerminates, hostTeardown } = require('./host-tree.js')
const { handOver } = require('./state-writer.js')

const { EscalationStep } = native

const EMPTY = Object.freeze({})
// How often a wait asks the core whether the tree is gone (the child's own events wake it too).
const TREE_POLL_MS = 50
// LC-5: what a cancel without a string origin records, and shutdownActive's origin.
const UNKNOWN_ORIGIN = 'unknown'
const SHUTDOWN_ORIGIN = 'daemon_shutdown'
// What a run without a child signals.
const NO_CHILD = Object.freeze({ pid: NaN, running: false })

/**
 * LC-7: SIGTERM or SIGKILL to the run's whole process tree. The core signals what it captured
 * (the child, its verified group, every descendant, each by identity); a child it could not
 * capture (no pid, a fake, an unsupported OS) gets child.kill() unless it exited. Records in
 * the teardown whether SIGKILL reached anything (the verdict's signal, CAN-6 as LC-7 amends it).
 */
function signalTree(ctx, run, s, signal) {
  const child = run.child
  const { pid, running } = child ? childValues(child) : NO_CHILD
  const group = typeof run.processGroupId === 'number' ? run.processGroupId : NaN
  const reached = native.runSignalTree(ctx.svc, s.slot, pid, group, running, signal === 'SIGKILL')
  let delivered = reached.child || reached.group || reached.others > 0
  // (Without a pid the core cannot have reached this child: what it reports is the tree it
  // captured for an earlier child, which it keeps.)
  if (running && (Number.isNaN(pid) || (!reached.child && !reached.childGone))) {
    if (killChild(child, signal)) delivered = true
  }
  if (delivered && signal === 'SIGKILL' && s.teardown !== null) s.teardown.killed = true
}

// The fallback for a child the core could not reach: child.kill(); true unless it threw
// (SIG-3: a throwing kill() counts as not delivered; a rejected promise it returns is ignored).
function killChild(child, signal) {
  try {
    // (A host's kill() that returns a rejected promise is as isolated as one that throws.)
    ignoreResult(child.kill(signal), ignore)
    return true
  } catch {
    return false
  }
}

/**
 * The barrier's wait (WCE, as LC-7 extends it): resolves true once the child exited and nothing
 * of the run's process tree is alive, false after `ms`. The child's 'exit'/'close' wake it;
 * while the core holds a live tree it is also polled every TREE_POLL_MS. Every timer is ref'd
 * (TMR-4) and cleared when the wait settles. With `closeOnly` (CAN-9) the child counts as done
 * only once its 'close' was seen, when the teardown watches for it.
 */
function waitForTree(ctx, s, child, ms, closeOnly) {
  const treeGone = () => native.runTreeAlive(ctx.svc, s.slot) === 0
  const t = s.teardown
  // A child object whose exitCode/signalCode getter throws counts as running: the wait then
  // runs its whole time, as for a child that never exits. Its 'exit' or 'close' counts as exited
  // even when it left both codes null (a host's stand-in child: WCE), for this wait and the
  // teardown's later ones.
  const seen = t ?? { exitSeen: false }
  const childDone =
    closeOnly && t !== null && t.closed !== null ? () => t.closed : () => seen.exitSeen || exitedOrNot(child)
  if (childDone() && treeGone()) return Promise.resolve(true)
  return new Promise((resolve) => {
    let timer
    let poll = null
    const settle = (value) => {
      clearTimeout(timer)
      if (poll !== null) clearInterval(poll)
      resolve(value)
      unlisten(child, CHILD_END_EVENTS, onExit)
    }
    const check = () => {
      if (childDone() && treeGone()) settle(true)
    }
    // A child event with nothing of the tree left ends the wait at once; with a tree left, the
    // poll below notices when it is gone.
    const onExit = () => {
      seen.exitSeen = true
      if (!childDone()) return
      if (treeGone()) settle(true)
      else if (poll === null) poll = setInterval(check, TREE_POLL_MS)
    }
    try {
      if (child && typeof child.once === 'function') {
        child.once('close', onExit)
        child.once('exit', onExit)
      }
    } catch {
      // The host's child object: without its events, the poll below answers.
    }
    // No check now: a live child was just signalled or is still running, so the tree is not
    // gone yet; its exit event or the poll answers (each answer is cheap once it is gone).
    poll = setInterval(check, TREE_POLL_MS)
    timer = setTimeout(settle, ms, false)
  })
}

/**
 * The end of the barrier: reports what survived (SIGKILL path only), then the verdict. A finish
 * the host called during the teardown was parked and is applied first (the first verdict wins);
 * otherwise CAN-6: the verdict from the child's own exit. The signal is the real last one: SIGKILL
 * when SIGKILL reached anything, else the child's signalCode, else the fallback.
 */
function endTeardown(ctx, run, s, fallback) {
  const t = s.teardown
  unwatchClose(t)
  s.teardown = null
  // The host's objects: a getter that throws leaves the child's exit facts unknown (the
  // fallback), and the verdicts below are still applied.
  let child = null
  try {
    child = run.child
    if (fallback === 'SIGKILL') reportSurvivors(ctx, run, s, child)
    // A tree that exited inside the abort grace never reached the stdin step: stdin closes now.
    closeStdin(run)
  } catch {
    // See above.
  }
  const { exited: childExited, exitCode, signal: childSignal } = childExitFacts(run, child)
  // A SIGKILL the core sent after the step's own (to a process a wait found since, or to a
  // survivor) counts as the step's.
  if (t !== null && !t.killed && fallback === 'SIGKILL' && native.runTreeKilled(ctx.svc, s.slot)) t.killed = true
  // (Whichever plan ends the barrier: with a cancel and a shutdown in one teardown, the one still
  // in its SIGTERM wait may see the tree gone after the other's SIGKILL.) Without a SIGKILL that
  // reached anything and without a signal of the child's own, the last signal sent was SIGTERM,
  // unless the child is still there after the SIGKILL step (CAN-7: a child that never dies).
  const gone = (t !== null && t.exitSeen) || childExited
  const sent = fallback === 'SIGKILL' && !gone ? 'SIGKILL' : 'SIGTERM'
  const signal = t !== null && t.killed ? 'SIGKILL' : (childSignal ?? sent)
  finishParked(ctx, run, t, signal)
  // (A parked verdict the teardown applied is the run's: no second claim of HF-20.)
  if (!isTerminal(s.status)) finish(ctx, run, 'canceled', exitCode, signal)
}

// LC-7: anything of the tree still alive after SIGKILL and the force wait (or a child object
// that never reported its exit) becomes one 'diagnostic' record before 'end' (the core SIGKILLs
// each survivor once more). Nothing is reported for a run that is already terminal (dropped, or
// finished by another plan's teardown).
function reportSurvivors(ctx, run, s, child) {
  const remaining = native.runTreeSurvivors(ctx.svc, s.slot)
  const { pid } = child ? childValues(child) : NO_CHILD
  // Only a child known to run is reported: one whose 'exit' or 'close' the teardown saw is gone,
  // whatever its codes read (WCE), and one whose codes cannot be read is not claimed alive.
  let running = false
  try {
    running = !exited(child) && !(s.teardown?.exitSeen ?? false)
  } catch {
    // Unreadable: see above.
  }
  if ((remaining.length === 0 && !running) || isTerminal(s.status)) return
  emit(ctx, run, 'diagnostic', {
    type: 'termination_failed',
    reason: running ? 'child_alive_after_sigkill' : 'process_tree_alive_after_sigkill',
    child_pid: Number.isNaN(pid) ? (run.childPid ?? null) : pid,
    process_group_id: run.processGroupId ?? null,
    remaining_pids: remaining,
  })
}

// Carries out the core's cancel/shutdown plan step by step.
async function drive(ctx, run, s, shutdown, step) {
  try {
    for (;;) {
      if (step > 0) {
        // CAN-9: a runtime failure the host saw before this cancel is classified by its close
        // handler, so a cancel waits for the child's 'close', not its 'exit'.
        const closeOnly = !shutdown && failureObservedFirst(run)
        if (closeOnly) watchClose(s.teardown, run.child)
        const treeExited = await waitForTree(ctx, s, run.child, step, closeOnly)
        step = native.runEscalationNext(ctx.svc, s.slot, shutdown, treeExited)
        continue
      }
      switch (step) {
        case EscalationStep.Done:
          // cancel() resolves to the status body; shutdownActive() resolves to undefined.
          return shutdown ? undefined : resolvedStatusBody(run)
        case EscalationStep.Abort:
          try {
            // CAN-4 / SHD-3: abort errors are swallowed, a rejected promise's too.
            ignoreResult(run.acpSession.abort(), ignore)
          } catch {
            // See above.
          }
          break
        case EscalationStep.CloseStdin: {
          const closing = closeStdin(run)
          if (closing !== null) await closing
          break
        }
        case EscalationStep.Sigterm:
          signalTree(ctx, run, s, 'SIGTERM')
          break
        case EscalationStep.Sigkill:
          signalTree(ctx, run, s, 'SIGKILL')
          break
        case EscalationStep.FinishNow:
          // CAN-3: a run without a child (nothing was torn down).
          finish(ctx, run, 'canceled', null, 'SIGTERM')
          break
        case EscalationStep.FinishTerm:
          endTeardown(ctx, run, s, 'SIGTERM')
          break
        case EscalationStep.FinishKill:
          endTeardown(ctx, run, s, 'SIGKILL')
          break
        default:
          throw new Error(`chat-run-service: unknown escalation step ${step}`)
      }
      step = native.runEscalationNext(ctx.svc, s.slot, shutdown, false)
    }
  } catch (err) {
    // SHD-5: the plan is over; a later cancel() or shutdownActive() starts a new one rather
    // than waiting for this one. (A run that was dropped meanwhile has no plan left to drop.)
    try {
      native.runPlanAbandon(ctx.svc, s.slot, shutdown)
    } catch {
      // See above.
    }
    throw err
  } finally {
    unwatchClose(s.teardown)
    // A plan that threw still releases what it parked (the host's verdict is not lost).
    const t = s.teardown
    if (t !== null && t.owner === shutdown) {
      s.teardown = null
      finishParked(ctx, run, t)
    }
  }
}

/**
 * LC-7: a plan with a child tears the run down; a second plan joins the first one's teardown.
 * `closed` is whether the child's 'close' was seen since a cancel began (null: not watched).
 */
function beginTeardown(s, hasChild, shutdown) {
  if (hasChild && s.teardown === null) {
    s.teardown = newTeardown(shutdown)
  }
}

/**
 * `cancel(run, origin)`'s second argument: the origin string (LC-5), or `{ origin, graceMs }`
 * (a grace that replaces the cancel's and the abort's when it is a finite number > 0).
 */
function cancelRequest(request) {
  if (typeof request === 'string') return { origin: request, graceMs: null }
  if (request === null || typeof request !== 'object') return { origin: UNKNOWN_ORIGIN, graceMs: null }
  let origin = UNKNOWN_ORIGIN
  let graceMs = null
  try {
    if (typeof request.origin === 'string') origin = request.origin
    const grace = request.graceMs
    if (typeof grace === 'number' && Number.isFinite(grace) && grace > 0) graceMs = grace
  } catch {
    // The host's object: what could not be read stays at its default.
  }
  return { origin, graceMs }
}

/**
 * CAN-1..CAN-6, IMP-11, LC-5, LC-7, LC-9: one teardown per run at a time; a second call shares
 * its promise.
 */
async function cancel(ctx, run, request) {
  const s = own(ctx, run, 'cancel')
  if (s.hostTeardown !== null) return s.hostTeardown
  if (s.cancelPromise) return s.cancelPromise
  // A cancel from inside the run's finish or drop (a hook, a client's end()): the verdict is
  // being given; the cancel records nothing and resolves to the final body, the one the waiters
  // get once the finish is over (the hooks after this one may still change the run).
  if (s.finishing) return new Promise((resolve) => run.waiters.add(resolve))
  const { origin, graceMs } = cancelRequest(request)
  // HF-13: a Stop while the host still owes the artifact's delivery receipt ends the run.
  if (deliveryPending(run, s) && stopPendingDelivery(ctx, run, s, origin, Date.now())) return resolvedStatusBody(run)
  if (hostTerminates(ctx, run, s)) {
    const plan = { origin, graceMs, shutdown: false }
    return hostTeardown(ctx, run, s, plan, () => startCancel(ctx, run, s, origin, graceMs))
  }
  return startCancel(ctx, run, s, origin, graceMs)
}

// The engine's own cancel plan (LC-7), carried out by drive().
async function startCancel(ctx, run, s, origin, graceMs) {
  const now = Date.now()
  const [abortGrace, cancelGrace, forceWait] = cancelEnv()
  const hasChild = Boolean(run.child)
  const step = native.runCancelBegin(
    ctx.svc,
    s.slot,
    hasChild,
    Boolean(run.acpSession?.abort),
    graceMs ?? abortGrace,
    graceMs ?? cancelGrace,
    forceWait,
    origin,
    now,
  )
  if (step === EscalationStep.Terminal) return resolvedStatusBody(run)
  // (s.cancelPromise is null here, checked above.) The core still holds a cancel plan whose
  // promise has already settled, e.g. after a throw: wait for the run's verdict.
  if (step === EscalationStep.InFlight) return wait(ctx, run)
  syncCancelBegun(s, now, origin)
  clearRetryRestart(run)
  beginTeardown(s, hasChild, false)
  if (hasChild && failureObservedFirst(run)) watchClose(s.teardown, run.child)
  // LC-5: the origin is durable before any signal, with a host writer too (LC-11).
  handOver(ctx)
  const outcome = drive(ctx, run, s, false, step)
  s.cancelPromise = outcome
  try {
    return await outcome
  } finally {
    s.cancelPromise = null
  }
}

/** SHD-1..SHD-5, LC-5, LC-7: every registered active run at once; logs flushed before it resolves. */
async function shutdownActive(ctx, shutdownOptions) {
  const o = shutdownOptions !== null && typeof shutdownOptions === 'object' ? shutdownOptions : EMPTY
  const graceMs = typeof o.graceMs === 'number' && o.graceMs >= 0 ? o.graceMs : ctx.opts.shutdownGraceMs
  // (A slot the facade holds no run for has nothing it could tear down: left out, SHD-5.)
  const runs = Array.from(native.shutdownSnapshot(ctx.svc), (slot) => ctx.runs[slot]).filter(Boolean)
  // LC-9: a registered run whose tree could not be verified as stopped is retried too.
  if (ctx.opts.terminateProcessTree !== null) {
    for (const run of ctx.runs) if (run !== undefined && retryableTermination(run)) runs.push(run)
  }
  let tasks
  try {
    tasks = startShutdown(ctx, runs, graceMs)
  } finally {
    // The snapshot pinned one process-table scan for the loop above; later steps scan afresh.
    native.shutdownStarted(ctx.svc)
  }
  const results = await Promise.allSettled(tasks)
  if (ctx.logging) await native.flushLogs(ctx.svc)
  const failure = results.find((r) => r.status === 'rejected')
  if (failure) throw failure.reason
}

// A promise settled later with another promise's outcome (settleWith).
function deferred() {
  let settleWith
  const promise = new Promise((resolve) => {
    settleWith = resolve
  })
  return { promise, settleWith }
}

// SHD-3 as LC-7 amends it: every run's teardown starts, synchronously and in order. One
// crossing per run: the core also takes the stdin step when there is nothing to close and the
// SIGTERM step when no abort() comes first (runShutdownStart); the rest is drive()'s.
function startShutdown(ctx, runs, graceMs) {
  return runs.map((run) => {
    const s = ChatRun.stateOf(run)
    // LC-9: a teardown by the host's terminator is joined, or started.
    if (s?.hostTeardown) return s.hostTeardown
    if (s !== undefined && s.shutdownPromise === null && hostTerminates(ctx, run, s)) {
      const plan = { origin: SHUTDOWN_ORIGIN, graceMs, shutdown: true }
      return hostTeardown(ctx, run, s, plan, () => startRunShutdown(ctx, run, graceMs))
    }
    return startRunShutdown(ctx, run, graceMs)
  })
}

// The engine's own shutdown plan of one run (LC-7): started here, carried out by drive().
function startRunShutdown(ctx, run, graceMs) {
  let s
  let joined = null
  try {
    s = ChatRun.stateOf(run)
    // SHD-5 as LC-7 amends it: a run an earlier shutdownActive() is still tearing down is
    // joined, not started again (a second plan would restart the grace, or replace the first
    // plan mid-way and skip it).
    if (s.shutdownPromise !== null) return s.shutdownPromise
    // Ended before its turn in this loop (a hook of an earlier run finished it): nothing to
    // tear down, and no plan is begun on it (a retry the host started since is a new run).
    if (isTerminal(s.status)) return Promise.resolve()
    // Inside its own finish (shutdownActive() from one of its hooks): the verdict is being
    // given, so, as for a cancel from there (LC-6), nothing is recorded or signalled; the run is
    // done once that finish is over.
    if (s.finishing) return new Promise((resolve) => run.waiters.add(() => resolve()))
    // Joined from here on: the host code this teardown runs synchronously (child.kill(),
    // acpSession.abort(), a hook) may call shutdownActive() again, which must join it too.
    joined = deferred()
    s.shutdownPromise = joined.promise
    const now = Date.now()
    const child = run.child
    const hasChild = Boolean(child)
    const hasAbort = Boolean(run.acpSession?.abort)
    const host = hasChild ? childValues(child) : NO_CHILD
    let step = native.runShutdownStart(
      ctx.svc,
      s.slot,
      hasChild,
      hasAbort,
      Boolean(run.stdinOpen),
      graceMs,
      now,
      host.pid,
      typeof run.processGroupId === 'number' ? run.processGroupId : NaN,
      host.running,
    )
    syncCancelBegun(s, now, SHUTDOWN_ORIGIN)
    clearRetryRestart(run)
    beginTeardown(s, hasChild, true)
    if (step === EscalationStep.Sigterm) {
      // The SIGTERM step was taken, but the child itself was not reached natively.
      killChild(child, 'SIGTERM')
      step = native.runEscalationNext(ctx.svc, s.slot, true, false)
    }
    // A run whose verdict another teardown holds (this plan found no child: the host cleared
    // run.child during a cancel, whose barrier is still on) is done when that verdict lands.
    // A run that ended meanwhile is done even if the host has already reset it for a retry
    // (FIN-5, LC-4): a later shutdownActive() tears that retry down afresh.
    const endings = s.endings
    const teardown = drive(ctx, run, s, true, step).then((value) =>
      isTerminal(s.status) || s.endings !== endings ? value : wait(ctx, run).then(() => value),
    )
    const done = () => {
      if (s.shutdownPromise === joined.promise) s.shutdownPromise = null
    }
    teardown.then(done, done)
    joined.settleWith(teardown)
    return joined.promise
  } catch (err) {
    // SHD-5: one run's failure rejects the result, the others are still processed.
    if (joined !== null) {
      if (s.shutdownPromise === joined.promise) s.shutdownPromise = null
      joined.settleWith(Promise.reject(err))
      return joined.promise
    }
    return Promise.reject(err)
  }
}

module.exports = { cancel, shutdownActive }
