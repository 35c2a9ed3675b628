'use strict'
// What a run's status is and how it is reported: the terminal rule, the exited rule (SPEC §0),
// the status body (§15) and the service's health snapshot.

const native = require('./core.js')
const { describe } = require('./describe.js')
const { ChatRun } = require('./run.js')
const { lowerJson } = require('./lower.js')
const { nonEmptyString } = require('./convert.js')
const { addReported, readingSafely, workspaceOf } = require('./host-fields.js')
const { callHook, reasonOf } = require('./hooks.js')

// The terminal rule (MOD-1) lives in the Rust core (crates/core/src/run.rs, TERMINAL_STATUSES /
// is_terminal): the exported Set is built from it once; isTerminal below is the hot path's copy
// (a native call per check would cost more than the check), kept equal to it by a test.

/** The three terminal statuses (MOD-1). The service never reads this Set back (MOD-5). */
const TERMINAL_RUN_STATUSES = new Set(native.terminalStatuses())

function isTerminal(status) {
  return status === 'succeeded' || status === 'failed' || status === 'canceled'
}

/** exited(child), SPEC §0: no child, or an exit code or signal is known (strict comparisons). */
function exited(child) {
  return !child || child.exitCode !== null || child.signalCode !== null
}

// The tool bundle summary (§14): computed by the core at create; recomputed when the host
// replaced the bundle (or this is not one of our runs: `s` undefined).
function summaryOf(run, s) {
  const bundle = run.toolBundle
  if (s !== undefined && bundle === s.bundle) return JSON.parse(s.summary)
  return JSON.parse(native.summarizeToolBundle(lowerJson(bundle) ?? 'null'))
}

/** §15 with LC-5's and HF-2's keys. Reads every field through the run object, so host writes show. */
function statusBody(run) {
  if (run === null || (typeof run !== 'object' && typeof run !== 'function')) {
    const hint = typeof run === 'string' ? ' (get(id) finds the run with an id)' : ''
    throw new TypeError(`statusBody(run): expected a run object${hint}, got ${describe(run)}`)
  }
  const s = ChatRun.stateOf(run)
  const child = run.child
  const body = {
    id: run.id,
    projectId: run.projectId,
    conversationId: run.conversationId,
    assistantMessageId: run.assistantMessageId,
    agentId: run.agentId,
    skillId: run.skillId ?? null,
    designSystemId: run.designSystemId ?? null,
    designSystemRequestedId: run.designSystemRequestedId ?? null,
    designSystemSelectionSource: run.designSystemSelectionSource ?? null,
    designSystemDigest: run.designSystemDigest ?? null,
    appliedPluginSnapshotId: nonEmptyString(run.appliedPluginSnapshotId),
    pluginId: run.pluginId ?? null,
    status: run.status,
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
    cancelRequested: !!run.cancelRequested,
    childPid: child && typeof child.pid === 'number' ? child.pid : (run.childPid ?? null),
    processGroupId: run.processGroupId ?? null,
    childExited: exited(child),
    childExitObservedAt: run.childExitObservedAt ?? null,
    exitCode: run.exitCode,
    signal: run.signal,
    error: run.error ?? null,
    errorCode: run.errorCode ?? null,
    // LC-5: the terminal facts and the host's failure fields.
    clientRequestId: run.clientRequestId ?? null,
    terminalAt: run.terminalAt ?? null,
    cancelOrigin: run.cancelOrigin ?? null,
    terminalTrigger: run.terminalTrigger ?? null,
    failureCategory: run.failureCategory ?? null,
    failureDetail: run.failureDetail ?? null,
    failureAction: run.failureAction ?? null,
    resumable: run.resumable ?? false,
    endedWithUnfinishedWork: !!run.endedWithUnfinishedWork,
    eventsLogPath: run.eventsLogPath ?? null,
    workspace: workspaceOf(run.projectMetadata),
    mediaExecution: run.mediaExecution ?? { mode: 'enabled' },
    toolBundle: summaryOf(run, s),
  }
  addReported(body, run)
  if (s !== undefined) addHostKeys(s.ctx, run, body)
  return body
}

// HF-14: the host's own keys (its policy: run analytics, diagnostics), isolated like every hook;
// a status body the hook itself asks for is not passed to it again.
function addHostKeys(ctx, run, body) {
  const onStatusBody = ctx.opts.onStatusBody
  if (onStatusBody && !ctx.inStatusBodyHook) {
    ctx.inStatusBodyHook = true
    try {
      callHook(ctx, 'onStatusBody', onStatusBody, run, body)
    } finally {
      ctx.inStatusBodyHook = false
    }
  }
}

/**
 * The status body a waiter or a cancel is resolved with (WAI-1: a wait never rejects, and a
 * finish or drop resolves its waiters whatever the host put on the run; a cancel never rejects
 * for a terminal run). When statusBody(run) throws (a host getter or Proxy on a field it reads),
 * the body is built again with each unreadable field as absent, and with the verdict the service
 * holds itself; failing that too, every key of a status body with its empty value and those
 * fields. Either way a whole status body. The first such failure of a service is reported with
 * process.emitWarning (code CHAT_RUN_STATUS_BODY_ERROR).
 */
function resolvedStatusBody(run) {
  try {
    return statusBody(run)
  } catch (err) {
    const s = ChatRun.stateOf(run)
    const ctx = s.ctx
    if (!ctx.statusBodyErrorReported) {
      ctx.statusBodyErrorReported = true
      process.emitWarning(
        `chat-run-service: statusBody(run) threw while resolving a wait or a cancel of a run (${reasonOf(err)}); it got a status body without the fields that could not be read instead, and further such errors of this service are not reported`,
        { code: 'CHAT_RUN_STATUS_BODY_ERROR' },
      )
    }
    let body
    try {
      body = statusBody(readingSafely(run))
    } catch {
      body = emptyStatusBody()
    }
    // What the service holds itself, whatever the run object reads; then the host's keys, as
    // for every status body of its runs (HF-14).
    Object.assign(body, ownFields(run, s))
    addHostKeys(ctx, run, body)
    return body
  }
}

// The service's own fields of a run (its mirror), and the id and creation time as the run reads them.
function ownFields(run, s) {
  const safe = readingSafely(run)
  return {
    id: safe.id ?? null,
    projectId: s.projectId ?? null,
    conversationId: s.conversationId ?? null,
    status: s.status,
    createdAt: safe.createdAt ?? null,
    updatedAt: s.updatedAt,
    cancelRequested: !!s.cancelRequested,
    childExitObservedAt: s.childExitObservedAt ?? null,
    exitCode: s.exitCode ?? null,
    signal: s.signal ?? null,
    error: s.error ?? null,
    errorCode: s.errorCode ?? null,
    terminalAt: s.terminalAt ?? null,
    cancelOrigin: s.cancelOrigin ?? null,
    terminalTrigger: s.terminalTrigger ?? null,
  }
}

// Every key of a status body (§15, LC-5, HF-2), each with the value of a run that sets nothing.
const EMPTY_RUN = Object.freeze({})
function emptyStatusBody() {
  return statusBody(EMPTY_RUN)
}

/**
 * A health snapshot of one service: runs by status, retained history, the log writer's queue,
 * open files and every line that was not persisted, by reason.
 */
function serviceStats(ctx) {
  return JSON.parse(native.serviceStats(ctx.svc))
}

module.exports = { TERMINAL_RUN_STATUSES, isTerminal, exited, statusBody, resolvedStatusBody, serviceStats }
