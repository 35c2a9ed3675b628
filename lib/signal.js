'use strict'
// Signalling on the host's request (SPEC §11 SIG, as SIG-5 and SIG-6 extend it): signalChild for
// a run's child, signalChildProcess for an explicit child, and signalProcessGroup /
// reapProcessGroup for a whole group a run holds (a retry's teardown of the earlier attempt).
// The core applies IMP-5's guard and decides whose group it is (crates/core/src/signals.rs,
// crates/core/src/control.rs); child.kill() is the fallback for what the core cannot reach.

const os = require('node:os')
const native = require('./core.js')
const { describe } = require('./describe.js')
const { own } = require('./run.js')
const { exited } = require('./status.js')
const { cancelEnv } = require('./options.js')

const { Delivery } = native

const IS_WINDOWS = process.platform === 'win32'
// Signal name -> number on this OS (a null-prototype copy: no inherited keys).
const SIGNAL_NUMBERS = Object.assign(Object.create(null), os.constants.signals)

// A signal as it crosses: a name this OS knows as its number (cheaper than a string; same
// signal), any other value as a number or a string (the core refuses what it does not know).
function signalArg(signal) {
  return typeof signal === 'number' ? signal : (SIGNAL_NUMBERS[signal] ?? String(signal))
}

/**
 * SIG-1..SIG-4: the verified group or the pid through the core, else child.kill(). A child that
 * exited: its group only, while the run holds it (SIG-1 as SIG-6 amends it: the survivors that
 * inherited its output), else nothing.
 */
function signalChild(ctx, run, signal) {
  if (run === null || run === undefined) {
    throw new TypeError(`signalChild(run, signal): expected a run object, got ${describe(run)}`)
  }
  const child = run.child
  if (!child) return false
  if (exited(child)) {
    if (IS_WINDOWS || typeof run.processGroupId !== 'number') return false
    const s = own(ctx, run, 'signalChild')
    return native.signalHeldGroup(ctx.svc, run.processGroupId, signalArg(signal), s.slot)
  }
  const s = own(ctx, run, 'signalChild')
  if (!IS_WINDOWS) {
    const pid = typeof child.pid === 'number' ? child.pid : NaN
    const group = typeof run.processGroupId === 'number' ? run.processGroupId : NaN
    const delivery = native.runSignal(ctx.svc, s.slot, pid, group, signalArg(signal))
    if (delivery === Delivery.Gone) return false
    if (delivery !== Delivery.Fallback) return true
  }
  return sendKill(child, signal)
}

// child.kill(signal)'s own result; false when it throws (SIG-3).
function sendKill(child, signal) {
  try {
    return child.kill(signal)
  } catch {
    return false
  }
}

/**
 * SIG-5: `signal` to an explicit child (an escalation timer's own generation, not whatever
 * run.child is now): its group when IMP-5 verifies that `processGroupId` is the child's own,
 * else child.kill(signal). False for no child or an exited one.
 */
function signalChildProcess(child, processGroupId, signal) {
  if (!child || exited(child)) return false
  if (!IS_WINDOWS) {
    const pid = typeof child.pid === 'number' ? child.pid : NaN
    const group = typeof processGroupId === 'number' ? processGroupId : NaN
    if (native.signalChildGroup(pid, group, signalArg(signal))) return true
  }
  return sendKill(child, signal)
}

/**
 * SIG-6: `signal` to a whole process group, the child of the run that had it may be gone
 * (an earlier attempt's survivors): only a group one of this service's runs holds, and never
 * a group IMP-5's id rules refuse. True when the signal was sent; always false on Windows.
 */
function signalProcessGroup(ctx, processGroupId, signal) {
  if (IS_WINDOWS || typeof processGroupId !== 'number') return false
  return native.signalHeldGroup(ctx.svc, processGroupId, signalArg(signal), undefined)
}

/**
 * SIG-6: SIGTERM to the group now and, after the cancel grace, SIGKILL to what is left of it
 * (an unref'd timer; the group must still be held then). True when the SIGTERM was sent.
 */
function reapProcessGroup(ctx, processGroupId) {
  if (!signalProcessGroup(ctx, processGroupId, 'SIGTERM')) return false
  const grace = native.cancelGraceMs(cancelEnv()[1])
  const timer = setTimeout(() => signalProcessGroup(ctx, processGroupId, 'SIGKILL'), grace)
  timer.unref()
  return true
}

module.exports = { signalChild, signalChildProcess, signalProcessGroup, reapProcessGroup }
