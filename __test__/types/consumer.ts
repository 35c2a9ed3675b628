// A daemon-shaped consumer of the package's hand-written `index.d.ts`.
// It is only type-checked (`tsc -p __test__/types/tsconfig.json`, strict), never executed.
// Every `@ts-expect-error` line must really be an error, or tsc fails with TS2578.

import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import type { ServerResponse } from 'node:http'
import { finished } from 'node:stream/promises'

import {
  createChatRunService,
  getChatRunServiceStats,
  TERMINAL_RUN_STATUSES,
  type AcpSessionLike,
  type ChatRun,
  type ChatRunEndData,
  type ChatRunEvent,
  type ChatRunService,
  type ChatRunServiceOptions,
  type ChatRunStatusBody,
  type ChildLike,
  type CreateOrReuseResult,
  type ExternalPluginAnalytics,
  type ArtifactDeliveryResult,
  type MediaTaskFailure,
  type ListFilter,
  type McpServerConfig,
  type MediaExecutionPolicy,
  type RunCreateMeta,
  type RunStatus,
  type SseClient,
  type SseRequest,
  type SseResponse,
  type ShutdownOptions,
  type TerminalRunStatus,
  type TerminalTrigger,
  type TerminalLifecycle,
  type DurableStateWriteResult,
  type ToolBundle,
  type ToolBundleSummary,
} from '../../index.js'

// ---------------------------------------------------------------------------------------------
// Minimal express-like request/response, declared locally (express types are not installed).
// They mirror express's overloads so the package's loose SseRequest/SseResponse are proven wide enough.
// ---------------------------------------------------------------------------------------------

interface ParsedQs {
  [key: string]: undefined | string | ParsedQs | (string | ParsedQs)[]
}

interface ExpressLikeRequest {
  get(name: 'set-cookie'): string[] | undefined
  get(name: string): string | undefined
  header(name: string): string | undefined
  query: ParsedQs
  params: Record<string, string>
  body: any
}

interface ExpressLikeResponse extends EventEmitter {
  status(code: number): this
  json(body: unknown): this
  setHeader(name: string, value: string): this
  write(chunk: string): boolean
  end(): this
  on(event: 'close', listener: () => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

// The daemon's own SSE factory takes its own Response type and returns a richer writer.
function createSseResponse(
  res: ExpressLikeResponse,
  options: { keepAliveMs?: number } = {},
): SseClient & { writeKeepAlive(): boolean } {
  void options
  return {
    send(event: string, data: unknown, id: number | null = null) {
      return res.write(`${id === null ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    },
    writeKeepAlive: () => res.write(': keepalive\n\n'),
    cleanup() {},
    end() {
      res.end()
    },
  }
}

// The daemon's error payload factory narrows `code` to its own union and `init` to its own shape.
type ApiErrorCode = 'AGENT_EXECUTION_FAILED' | 'AGENT_UNAVAILABLE' | 'BAD_REQUEST'
type ApiError = { code: ApiErrorCode; message: string; retryable?: boolean; details?: unknown }
function createSseErrorPayload(
  code: ApiErrorCode,
  message: string,
  init: Omit<ApiError, 'code' | 'message'> = {},
): { message: string; error: ApiError } {
  return { message, error: { code, message, ...init } }
}

// ---------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------

const options: ChatRunServiceOptions = {
  createSseResponse,
  createSseErrorPayload,
  maxEvents: 2_000,
  ttlMs: 30 * 60 * 1000,
  shutdownGraceMs: 3_000,
  runsLogDir: '/var/lib/od/runs',
}
const runs: ChatRunService = createChatRunService(options)

// Inline options with unannotated callbacks get contextual types.
const inlineRuns = createChatRunService({
  createSseResponse: (res) => {
    res.on('close', () => {})
    return { send: () => true, end: () => {}, cleanup: () => {} }
  },
  createSseErrorPayload: (code, message, init) => ({ error: { code, message, ...init } }),
  maxEvents: Infinity,
  ttlMs: Infinity,
  runsLogDir: null,
})
// Only the two callbacks are required; the seed suite's cast of runsLogDir still compiles.
createChatRunService({
  createSseResponse: () => ({ send: () => true, end: () => {}, cleanup: () => {} }),
  createSseErrorPayload: (code: string, message: string) => ({ error: { code, message } }),
  shutdownGraceMs: 10,
  ttlMs: 60_000,
  runsLogDir: '/tmp/x' as unknown as null,
})

// @ts-expect-error createSseResponse is required
createChatRunService({ createSseErrorPayload })
// @ts-expect-error createSseErrorPayload is required
createChatRunService({ createSseResponse })
// @ts-expect-error options are required
createChatRunService()
// @ts-expect-error maxEvents must be a number
createChatRunService({ createSseResponse, createSseErrorPayload, maxEvents: 'x' })
// @ts-expect-error ttlMs must be a number
createChatRunService({ createSseResponse, createSseErrorPayload, ttlMs: '30m' })
// @ts-expect-error runsLogDir must be a string or null
createChatRunService({ createSseResponse, createSseErrorPayload, runsLogDir: 5 })
// @ts-expect-error createSseResponse must be a function
createChatRunService({ createSseResponse: true, createSseErrorPayload })
// @ts-expect-error typo in an option name is caught by excess-property checking
createChatRunService({ createSseResponse, createSseErrorPayload, maxEvent: 10 })

// LC-6: hooks and durable fields, with contextual types.
createChatRunService({
  createSseResponse,
  createSseErrorPayload,
  runsLogDir: '/var/lib/od/runs',
  durableFields: ['userPrompt', 'model'],
  onEventEmitted: (hookRun, record) => {
    const id: number = record.id
    const project: string | null = hookRun.projectId
    void id
    void project
  },
  beforeFinish: (hookRun, status, code, signal, terminalAt) => {
    hookRun.endedWithUnfinishedWork = status === 'succeeded' && code === 0 && signal === null && terminalAt > 0
  },
  onTerminal: (hookRun, status, terminalAt) => {
    const at: number | null = terminalAt
    void hookRun.terminalTrigger
    void status
    void at
  },
})
// @ts-expect-error durableFields are field names
createChatRunService({ createSseResponse, createSseErrorPayload, durableFields: [1] })
// @ts-expect-error a hook is a function
createChatRunService({ createSseResponse, createSseErrorPayload, onTerminal: 'log' })

// ---------------------------------------------------------------------------------------------
// The exported Set and status types
// ---------------------------------------------------------------------------------------------

const terminalAsSet: Set<TerminalRunStatus> = TERMINAL_RUN_STATUSES
for (const status of TERMINAL_RUN_STATUSES) {
  const t: TerminalRunStatus = status
  void t
}
const someStatus: string = String(Date.now())
const isDone: boolean = TERMINAL_RUN_STATUSES.has(someStatus) // daemon code passes plain strings
// @ts-expect-error the Set's element type is the three terminal statuses
TERMINAL_RUN_STATUSES.add('queued')
const anyStatus: RunStatus = 'waiting-for-approval' // hosts may store any string
const knownStatus: RunStatus = 'running'
void terminalAsSet
void isDone
void anyStatus
void knownStatus

// ---------------------------------------------------------------------------------------------
// create / get / list / statusBody
// ---------------------------------------------------------------------------------------------

const meta: RunCreateMeta = {
  projectId: 'project-1',
  conversationId: 'conv-1',
  assistantMessageId: 'msg-1',
  clientRequestId: 'req-1',
  agentId: 'claude',
  appliedPluginSnapshotId: null,
  pluginId: undefined,
  mediaExecution: { mode: 'question', allowedSurfaces: ['image', 'audio'], allowedModels: ['gpt-image-1'] },
  toolBundle: {
    mcpServers: [
      {
        id: 'run-tools',
        transport: 'stdio',
        command: 'node',
        args: ['server.js', '--token=secret'],
        env: { API_TOKEN: 'secret' },
      },
      { id: 'remote', transport: 'http', url: 'https://api.example.com/mcp', headers: { Authorization: 'Bearer t' } },
      { id: 'defaults-to-stdio', command: 'npx' },
    ],
  },
}
const run: ChatRun = runs.create(meta)
const bareRun = runs.create()
runs.create(null)
runs.create({ projectId: 'p', conversationId: 'c' })
// A previous run's sanitized bundle and policy can seed a retry run.
runs.create({ toolBundle: run.toolBundle, mediaExecution: run.mediaExecution })

// @ts-expect-error ids are strings
runs.create({ projectId: 1 })
// @ts-expect-error unknown media mode
runs.create({ mediaExecution: { mode: 'sometimes' } })
// @ts-expect-error unknown media surface
runs.create({ mediaExecution: { mode: 'enabled', allowedSurfaces: ['gif'] } })
// @ts-expect-error an http server needs a url
runs.create({ toolBundle: { mcpServers: [{ id: 'x', transport: 'http' }] } })
// @ts-expect-error meta keys are checked for typos
runs.create({ projectID: 'p' })

const maybeRun: ChatRun | null = runs.get(run.id)
const fetchedStatus: RunStatus | undefined = runs.get('nope')?.status
void maybeRun
void fetchedStatus

const filter: ListFilter = { projectId: 'project-1', conversationId: 'c', status: 'active' }
const bodies: ChatRunStatusBody[] = runs.list({ conversationId: 'c', status: 'active' }).map(runs.statusBody)
const all: ChatRun[] = runs.list()
runs.list(null)
runs.list(filter)
runs.list({ status: 'succeeded' })
void bodies
void all

const body = runs.statusBody(run)
const bodyStatus: RunStatus = body.status
const childExited: boolean = body.childExited
const logPath: string | null = body.eventsLogPath
const policy: MediaExecutionPolicy = body.mediaExecution
const summary: ToolBundleSummary = body.toolBundle
for (const server of summary.mcpServers) {
  if (server.transport === 'stdio') {
    // @ts-expect-error stdio summaries never carry authMode
    void server.authMode
  } else {
    const mode: 'none' | 'oauth' = server.authMode
    void mode
  }
}
// LC-5: the status body carries the request id and the terminal facts.
const bodyRequest: string | null = body.clientRequestId
const bodyTrigger: TerminalTrigger | null = body.terminalTrigger
const bodyTerminalAt: number | null = body.terminalAt
const bodyOrigin: string | null = body.cancelOrigin
const bodyUnfinished: boolean = body.endedWithUnfinishedWork
void bodyRequest
void bodyTrigger
void bodyTerminalAt
void bodyOrigin
void bodyUnfinished
// @ts-expect-error the status body never exposes the full tool bundle's secrets
void body.toolBundle.mcpServers[0]?.command
void bodyStatus
void childExited
void logPath
void policy

// The status body has exactly the keys of SPEC §15, LC-5 and HF-2, the optional ones included
// (missing or extra keys fail here).
const statusBodyKeys: { [K in keyof ChatRunStatusBody]-?: true } = {
  id: true,
  projectId: true,
  conversationId: true,
  assistantMessageId: true,
  agentId: true,
  skillId: true,
  designSystemId: true,
  designSystemRequestedId: true,
  designSystemSelectionSource: true,
  designSystemDigest: true,
  appliedPluginSnapshotId: true,
  pluginId: true,
  status: true,
  createdAt: true,
  updatedAt: true,
  cancelRequested: true,
  childPid: true,
  processGroupId: true,
  childExited: true,
  childExitObservedAt: true,
  exitCode: true,
  signal: true,
  error: true,
  errorCode: true,
  clientRequestId: true,
  terminalAt: true,
  cancelOrigin: true,
  terminalTrigger: true,
  failureCategory: true,
  failureDetail: true,
  failureAction: true,
  resumable: true,
  endedWithUnfinishedWork: true,
  eventsLogPath: true,
  workspace: true,
  mediaExecution: true,
  toolBundle: true,
  termination: true,
  artifactCount: true,
  artifactPaths: true,
  removedPaths: true,
  promptCache: true,
  nativeSessionRecovery: true,
  browserUse: true,
  clientType: true,
  externalPluginAnalytics: true,
  manualResumeAttemptCount: true,
  rechargeWaitDurationMs: true,
  artifactOriginStatus: true,
  artifactVersionId: true,
  deliverableValid: true,
  deliverableValidation: true,
  deliverableEntryFile: true,
  deliverableArtifactKind: true,
  artifactDelivery: true,
  strategyTask: true,
  deliverableSyntaxRepair: true,
  deliverableSyntaxValidation: true,
  terminalLifecycle: true,
}
void statusBodyKeys
// HF-2: the workspace's storage is OD-owned or folder-backed.
const storageKind: 'od-owned' | 'folder-backed' = body.workspace.storage.kind
void storageKind

// The status body is a plain JSON-ish object that can go where a record is expected.
const asRecord: Record<string, unknown> = body
void asRecord

// ---------------------------------------------------------------------------------------------
// Run fields: the host reads and writes them, and adds its own
// ---------------------------------------------------------------------------------------------

run.status = 'running'
run.status = 'queued' // retry
const child: ChildProcess = spawn('node', ['agent.js'], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] })
run.child = child
run.childPid = child.pid ?? null
run.processGroupId = child.pid ?? null
run.analyticsTelemetry = { ...run.analyticsTelemetry, foo: 1 }
run.analyticsTelemetry = { startRequestedAt: run.analyticsTelemetry?.startRequestedAt ?? run.createdAt }
const startedAt: number | undefined = run.analyticsTelemetry?.startRequestedAt
run.acpSession = { abort: () => {} }
run.acpSession = new (class AcpSession {
  async abort(): Promise<void> {}
  async prompt(text: string): Promise<string> {
    return text
  }
})()
const rpcSession = { sessionId: 'no-abort', prompt: async () => 'ok' }
run.acpSession = rpcSession // any object is accepted (abort is optional)
// @ts-expect-error abort, when present, must be callable with no arguments
run.acpSession = { abort: (reason: string) => reason }
run.exitCode = null
run.signal = null
run.error = null
run.errorCode = 'AGENT_STALLED'
run.updatedAt = Date.now()
run.projectId = 'back-filled'
run.mediaExecution = { mode: 'disabled' }
run.stdinOpen = true // LC-7: cancel/shutdown end child.stdin before SIGTERM, then set it false
const stdinStillOpen: boolean | undefined = run.stdinOpen
// @ts-expect-error stdinOpen is a boolean
run.stdinOpen = 'yes'
run.userPrompt = 'hello' // a daemon field of SPEC §22, typed
const prompt: string | undefined = run.userPrompt
void prompt
run.routeNote = 'hello' // host-added fields are allowed...
// @ts-expect-error ...and read back as unknown, so the host must narrow them
const note: string = run.routeNote
void note
// LOG-9: the journal handle can be waited on.
const journal = run.eventsLogStream
if (journal !== null) void finished(journal)
void startedAt
void stdinStillOpen

const client: SseClient = {
  send: (event, data, id) => void [event, data, id],
  end: () => {},
  cleanup: () => {},
}
run.clients.add(client)
run.clients.delete(client)
run.waiters.add((b) => void b.status)

const lastEvent: string | undefined = run.events.at(-1)?.event
const events: ChatRunEvent[] = run.events
const endCount: number = run.events.filter((e: { event: string }) => e.event === 'end').length
const nextId: number = run.nextEventId
const toolBundle: ToolBundle = run.toolBundle
const firstServer: McpServerConfig | undefined = toolBundle.mcpServers[0]
if (firstServer?.transport === 'stdio') {
  const command: string = firstServer.command
  const env: Record<string, string> | undefined = firstServer.env
  // @ts-expect-error stdio servers have no url
  void firstServer.url
  void command
  void env
} else if (firstServer) {
  const url: string = firstServer.url
  const authMode: 'none' | 'oauth' = firstServer.authMode
  void url
  void authMode
}
void lastEvent
void events
void endCount
void nextId

// @ts-expect-error the id never changes
run.id = 'x'
// @ts-expect-error run.events is a read-only view of the history
run.events = []
// @ts-expect-error the Sets are kept, only their contents change
run.clients = new Set()
// @ts-expect-error status must be a string
run.status = 3
// @ts-expect-error a child must at least have exitCode, signalCode and kill
run.child = { pid: 1 }
// @ts-expect-error processGroupId is a number or null
run.processGroupId = child.pid
// @ts-expect-error acpSession must be an object
run.acpSession = 'session'

// The run fits the daemon's own structural helper types.
type DaemonRunForUsage = {
  id: string
  projectId?: string | null
  status?: string
  events: Array<{ event: string; data: unknown }>
}
function scanUsage(r: DaemonRunForUsage): number {
  return r.events.length
}
scanUsage(run)

// ---------------------------------------------------------------------------------------------
// Children: a real ChildProcess, the seed suite's fake, and a host that keeps the child's own type
// ---------------------------------------------------------------------------------------------

const childLike: ChildLike = child
class FakeChildProcess extends EventEmitter {
  pid = 4242
  exitCode: number | null = null
  signalCode: NodeJS.Signals | null = null
  signals: Array<NodeJS.Signals | number | undefined> = []
  kill(signal?: NodeJS.Signals | number): boolean {
    this.signals.push(signal)
    return true
  }
}
run.child = new FakeChildProcess()
run.child = { exitCode: 0, signalCode: null, kill: () => false } // a minimal fake without once/off
// A fake with a stdin: only end() is required (LC-7 closes it before SIGTERM).
run.child = { exitCode: null, signalCode: null, kill: () => true, stdin: { end: () => {} } }
run.child = { exitCode: null, signalCode: null, kill: () => true, stdin: null }
// @ts-expect-error a stdin must have end()
run.child = { exitCode: null, signalCode: null, kill: () => true, stdin: { write: () => true } }
run.child = null
void childLike

// ---------------------------------------------------------------------------------------------
// emit / start / finish / fail / drop / signalChild / isTerminal
// ---------------------------------------------------------------------------------------------

const record = runs.emit(run, 'agent', { type: 'text_delta', delta: 'hello' })
if (record !== null) {
  const delta: string = record.data.delta // emit returns the caller's own data
  const recordId: number = record.id
  void delta
  void recordId
}
const noData: ChatRunEvent<undefined> | null = runs.emit(run, 'heartbeat')
runs.emit(run, 'error', { message: 'stalled', error: { code: 'AGENT_EXECUTION_FAILED', message: 'stalled' } })
// @ts-expect-error emit returns null while a finish is parked during a teardown (LC-7)
const alwaysRecord: ChatRunEvent = runs.emit(run, 'agent', {})
void noData
void alwaysRecord

const { emit, statusBody, isTerminal } = runs // methods are closures and work detached
emit(run, 'stdout', { text: 'hi' })
void statusBody(run)

// @ts-expect-error emit needs a run
runs.emit()
// @ts-expect-error emit needs a run, not an event name
runs.emit('stdout', { text: 'x' })
// @ts-expect-error the event name is a string
runs.emit(run, 42, {})

const started: ChatRun = runs.start(run, async () => {})
runs.start(run, async (r) => {
  r.status = 'running'
  r.child = spawn('node', ['agent.js'])
})
type HostRun = ChatRun & { retryAttemptCount: number }
const hostRun = runs.create() as HostRun
const sameHostRun: HostRun = runs.start(hostRun, async (r) => void r.retryAttemptCount)
// @ts-expect-error the starter must return a promise (start calls .catch on it)
runs.start(run, () => undefined)
void started
void sameHostRun

runs.finish(run, 'succeeded', 0, null)
runs.finish(run, 'canceled', null, 'SIGTERM')
runs.finish(run, 'failed')
runs.fail(run, 'AGENT_EXECUTION_FAILED', 'boom')
runs.fail(run, 'AGENT_UNAVAILABLE', 'no binary', { retryable: false })
runs.drop(run)
runs.drop(null)
// @ts-expect-error finish needs a status
runs.finish(run)
// @ts-expect-error the exit code is a number or null
runs.finish(run, 'failed', '1')
// @ts-expect-error fail needs a message
runs.fail(run, 'CODE')

const sent: boolean = runs.signalChild(run, 'SIGTERM')
runs.signalChild(run, 9)
// @ts-expect-error not a signal name
runs.signalChild(run, 'SIGFOO')
void sent

const status: RunStatus = run.status
if (isTerminal(status)) {
  const terminal: TerminalRunStatus = status
  void terminal
}
if (runs.isTerminal(run.status)) {
  const terminal: TerminalRunStatus = run.status
  void terminal
}
runs.isTerminal(undefined)

const endEvent = run.events.at(-1)
if (endEvent?.event === 'end') {
  const endData = endEvent.data as ChatRunEndData
  const endStatus: RunStatus = endData.status
  void endStatus
}

// ---------------------------------------------------------------------------------------------
// stream: express-like route handler, a Node ServerResponse, and the seed suite's fakes
// ---------------------------------------------------------------------------------------------

function streamRoute(req: ExpressLikeRequest, res: ExpressLikeResponse): void {
  const found = runs.get(req.params.id ?? '')
  if (!found) {
    res.status(404).json({ error: { code: 'RUN_NOT_FOUND' } })
    return
  }
  runs.stream(found, req, res)
}
void streamRoute

declare const nodeRes: ServerResponse
const minimalReq: SseRequest = { get: () => null, query: { after: '3' } }
const minimalRes: SseResponse = { on: () => {} }
runs.stream(run, minimalReq, nodeRes)
runs.stream(run, minimalReq, minimalRes)
runs.stream(run, { get: () => null, query: { after: String(1) } } as never, { on: () => {} } as never)
inlineRuns.stream(bareRun, minimalReq, minimalRes)
// @ts-expect-error the request needs get() and query
runs.stream(run, {}, minimalRes)
// @ts-expect-error the response needs on('close')
runs.stream(run, minimalReq, {})

// ---------------------------------------------------------------------------------------------
// The asynchronous methods
// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const waited: ChatRunStatusBody = await runs.wait(run)
  const canceled: ChatRunStatusBody = await runs.cancel(run)
  await runs.cancel(run, 'user_stop')
  // @ts-expect-error the cancel origin is a string
  await runs.cancel(run, 5)
  const shutdownOptions: ShutdownOptions = { graceMs: 100 }
  const nothing: void = await runs.shutdownActive({ graceMs: 100 })
  await runs.shutdownActive()
  await runs.shutdownActive(null)
  await runs.shutdownActive(shutdownOptions)
  // @ts-expect-error graceMs is a number
  await runs.shutdownActive({ graceMs: '5' })
  // @ts-expect-error wait resolves to a status body, not a run
  const notARun: ChatRun = await runs.wait(run)
  const childPid: number | null = canceled.childPid
  const signal: string | null = waited.signal
  void nothing
  void notARun
  void childPid
  void signal
}
void main

// AcpSessionLike on its own
const session: AcpSessionLike = { abort: () => Promise.resolve() }
void session

// ---------------------------------------------------------------------------------------------
// Durable runs (LC-1..LC-6)
// ---------------------------------------------------------------------------------------------

const reuse: CreateOrReuseResult = runs.createOrReuse({ clientRequestId: 'req-1', requestFingerprint: 'fp' })
if (reuse.kind === 'conflict') {
  const existing: ChatRun = reuse.run
  void existing
}
// @ts-expect-error kind is one of three
const impossible: CreateOrReuseResult['kind'] = 'maybe'
void impossible
runs.createOrReuse({ workspaceScope: { workspaceId: 'w' } })
// HF-8: plugin attribution and the lookup by workflow id; HF-9 and CAN-9: the host's retry fields.
const attributed = runs.create({ analyticsHints: { externalPluginId: 'open-design', pluginWorkflowId: 'wf-1' } })
const analytics: ExternalPluginAnalytics | null = attributed.externalPluginAnalytics
if (analytics !== null) {
  const pluginId: 'open-design' = analytics.externalPluginId
  void pluginId
}
const byWorkflow: ChatRun | null = runs.findByPluginWorkflowId('wf-1')
void byWorkflow
attributed.retryRestartTimer = setTimeout(() => {}, 10)
attributed.retryRestartTimer = null
attributed.runtimeFailureObservedBeforeCancellation = true
// SIG-5 / SIG-6: the signalling helpers of a retry's teardown.
const sentToChild: boolean = runs.signalChildProcess(run.child, run.processGroupId, 'SIGTERM')
const sentToGroup: boolean = runs.signalProcessGroup(run.processGroupId, 'SIGKILL')
const reaping: boolean = runs.reapProcessGroup(run.processGroupId)
void [sentToChild, sentToGroup, reaping]
// HF-12: media-task evidence.
const noted: boolean = runs.noteMediaTaskFailure(run.id, {
  taskId: 't1',
  output: 'a.png',
  surface: 'image',
  failedAt: 1,
})
const recoveredMedia: boolean = runs.noteMediaTaskRecovery(run.id, { taskId: 't2', output: 'a.png', startedAt: 2 })
const mediaFailures: MediaTaskFailure[] | undefined = run.mediaTaskFailures
void [noted, recoveredMedia, mediaFailures]
// HF-13: the artifact delivery receipt.
run.artifactDeliveryRequired = true
const receipt: ArtifactDeliveryResult = runs.acknowledgeArtifactDelivery(run, {
  status: 'failed',
  files: [],
  error: 'x',
})
if (!receipt.applied) {
  const why: ArtifactDeliveryResult['reason'] = receipt.reason
  void why
}
// HF-14: the host's own status-body keys.
createChatRunService({
  createSseResponse: () => ({ send() {}, end() {}, cleanup() {} }),
  createSseErrorPayload: (code: string, message: string) => ({ error: { code, message } }),
  onStatusBody: (hooked: ChatRun, hookedBody: ChatRunStatusBody) => {
    ;(hookedBody as ChatRunStatusBody & { executionDiagnostics?: unknown }).executionDiagnostics = hooked.events.length
  },
})
// The README's form: the hook's body takes the host's keys without a cast.
createChatRunService({
  createSseResponse: () => ({ send() {}, end() {} }),
  createSseErrorPayload: (code: string, message: string) => ({ error: { code, message } }),
  onStatusBody: (hooked, hookedBody) => {
    hookedBody.executionDiagnostics = hooked.events.length
    const status: string = hookedBody.status
    void status
  },
})
// @ts-expect-error a receipt's status is 'succeeded' or 'failed'
runs.acknowledgeArtifactDelivery(run, { status: 'maybe' })
// @ts-expect-error findByPluginWorkflowId returns a run or null, never a list
const notAList: ChatRun[] = runs.findByPluginWorkflowId('wf-1')
void notAList
const fingerprint: string | null = run.requestFingerprint
const restarted: ChatRun | null = runs.prepareRestart(run)
const reserved: boolean = runs.reserveRestartAttempt(run, (run.manualResumeAttemptCount ?? 0) + 1)
const pendingAttempt: number | undefined = run.pendingManualResumeAttemptCount
void [reserved, pendingAttempt]
runs.clearRestartAttempt(run, 1)
runs.beginTelemetryDelivery(run)
runs.recordTelemetryDeliveryAttempt(run)
runs.finalizeTelemetryDelivery(run, {
  langfuse_expected: true,
  langfuse_delivery_status: 'failed',
  langfuse_attempt_count: 2,
})
const deliveryKey: string | undefined = run.telemetryDelivery?.idempotencyKey
void deliveryKey
runs.beginAnalyticsDelivery(run)
runs.finalizeAnalyticsDelivery(run, { status: 'queued', acknowledgement: 'local_buffer', errorType: null })
const lifecycleRecord: TerminalLifecycle | undefined = runs.statusBody(run).terminalLifecycle
const attempts: number | undefined = lifecycleRecord?.posthogDelivery.attemptCount
void attempts
// @ts-expect-error an attempt is a number
runs.reserveRestartAttempt(run, '1')
const persisted: DurableStateWriteResult = runs.persistState(run)
if (!persisted.ok) console.warn(`state not written: ${persisted.errorType}`)
runs.persistState(null)
createChatRunService({
  createSseResponse: () => ({ send: () => true, end: () => {}, cleanup: () => {} }),
  createSseErrorPayload: (code: string, message: string) => ({ error: { code, message } }),
  runsLogDir: '/tmp/runs',
  writeDurableState: (filePath: string, state: Record<string, unknown>) =>
    state.status === 'failed' && filePath.endsWith('state.json')
      ? { ok: false, errorType: 'storage_full' }
      : { ok: true },
})
const trigger: TerminalTrigger | null = run.terminalTrigger
const terminalAt: number | null = run.terminalAt
run.onFinalize = () => {}
run.failureCategory = 'process_exit'
run.resumable = true
// @ts-expect-error terminalAt is the service's
run.terminalAt = 5
// The trigger and the cancel origin are the host's to name (a watchdog's reason, a cleanup).
run.terminalTrigger = 'inactivity_watchdog'
run.terminalTrigger = null
run.cancelOrigin = 'project_cleanup'
const endFacts: ChatRunEndData = {
  code: 0,
  signal: null,
  status: 'succeeded',
  terminalAt: 1,
  resumable: false,
  endedWithUnfinishedWork: false,
  artifactCount: 2,
  failureCategory: null,
  failureDetail: null,
}
// HF-1: the daemon fields create() takes.
const planned = runs.create({ skillId: 's', sessionMode: 'plan', projectMetadata: { baseDir: '/srv' }, context: {} })
// @ts-expect-error artifactPaths is an array of paths
planned.artifactPaths = 'a.png'
const stats = getChatRunServiceStats(runs)
const hydrated: number = stats.hydration.hydrated + stats.hydration.indexed + stats.hydration.skipped
const stateWrites: number = stats.stateFile.written + stats.stateFile.failed
void fingerprint
void restarted
void trigger
void terminalAt
void endFacts
void hydrated
void stateWrites
