/// <reference types="node" />
/**
 * Type declarations for `chat-run-service`, a native (Rust, napi-rs) drop-in replacement for the
 * open-design daemon's `runs.js` chat-run registry. Hand-maintained; the behaviour is SPEC.md.
 *
 * @packageDocumentation
 */

// ---------------------------------------------------------------------------------------------
// Statuses
// ---------------------------------------------------------------------------------------------

/** One of the three statuses that end a run. `finish` ignores every call after a run reaches one. */
export type TerminalRunStatus = 'succeeded' | 'failed' | 'canceled'

/**
 * A run's status: `'queued'` at creation, `'running'` once the host says so, then terminal.
 * Any other string is stored verbatim and counts as non-terminal.
 */
export type RunStatus = 'queued' | 'running' | TerminalRunStatus | (string & {})

/**
 * The type of {@link TERMINAL_RUN_STATUSES}: a real `Set<TerminalRunStatus>` whose `has` accepts any
 * value, so `TERMINAL_RUN_STATUSES.has(run.status)` compiles for a plain `string` status.
 */
export interface TerminalRunStatusSet extends Set<TerminalRunStatus> {
  /** True when `value` is one of the three terminal statuses (strict equality, no coercion). */
  has(value: unknown): boolean
}

/**
 * The terminal statuses, as a real `Set` iterating `'succeeded'`, `'failed'`, `'canceled'`.
 * Mutating it does not change what any service treats as terminal (the service uses fixed values).
 */
export declare const TERMINAL_RUN_STATUSES: TerminalRunStatusSet

// ---------------------------------------------------------------------------------------------
// Host-supplied objects: SSE client / request / response, child process, ACP session
// ---------------------------------------------------------------------------------------------

/**
 * An SSE writer returned by `createSseResponse`. The service calls only these three methods;
 * each call is isolated, so one client throwing never stops the others.
 */
export interface SseClient {
  /**
   * Writes one SSE record (`id:`/`event:`/`data:`). Returning `false` for a live record detaches
   * the client (it leaves `run.clients` and gets `end()`, SPEC STR-10); any other value is ignored.
   */
  send(event: string, data: unknown, id: number): unknown
  /** Ends the HTTP response; called by `finish`/`drop`, or after replaying a terminal run. */
  end(): unknown
  /**
   * Releases the writer's resources; called when the response emits `'close'` (live clients
   * only). Optional: a client without it is simply not called.
   */
  cleanup?(): unknown
}

/**
 * The request passed to `stream`. Only `get('Last-Event-ID')` and `query.after` are read;
 * an express `Request` is assignable.
 */
export interface SseRequest {
  /** Returns a request header; a falsy result falls back to `query.after`. */
  get(name: string): string | null | undefined
  /** Parsed query string; `after` is the fallback replay cursor (converted with JS `Number()`). */
  query: Record<string, unknown>
}

/**
 * The response passed to `stream` and handed unchanged to `createSseResponse`. Only `on('close')` is
 * used by the service; an express `Response` or a Node `http.ServerResponse` is assignable.
 */
export interface SseResponse {
  /** Registers the handler that removes a live client from `run.clients` and calls its `cleanup()`. */
  on(event: 'close', listener: () => void): unknown
}

/**
 * The child process a host stores in `run.child`: a Node `ChildProcess` or a fake. A child whose
 * `exitCode` or `signalCode` is not `null` counts as exited and is never signalled.
 */
export interface ChildLike {
  /**
   * OS process id; when a number, it is reported as the status body's `childPid`, and the child and
   * its descendants are captured as the run's process tree (SPEC LC-7) when the host sets `run.child`.
   */
  readonly pid?: number | undefined
  /** Exit code once the child has exited, else `null`. */
  readonly exitCode: number | null
  /** Signal that terminated the child, else `null`. */
  readonly signalCode: NodeJS.Signals | (string & {}) | null
  /**
   * Sends `signal` to the child; `signalChild` returns this result (or `false` if it throws). Used
   * without a pid, on Windows by `signalChild`, and by cancel/shutdown for a child the process tree
   * did not capture.
   */
  kill(signal?: NodeJS.Signals | number): boolean
  /** Optional: `'close'`/`'exit'` end a cancel/shutdown wait early, once nothing of the run's tree is alive. */
  once?(event: 'close' | 'exit', listener: () => void): unknown
  /** Optional: when present, used to remove the listeners added with `once` after each wait. */
  off?(event: 'close' | 'exit', listener: () => void): unknown
  /**
   * Optional: the child's stdin. While `run.stdinOpen` is truthy, cancel/shutdown call `end()` on it
   * (unless `destroyed` or `writableEnded`; errors swallowed through `on('error')`) before the first
   * SIGTERM, which waits up to 100 ms for `'finish'`/`'close'`/`'error'` (through `once`) unless
   * `writableFinished` (SPEC LC-7). A Node `ChildProcess`'s `stdin` fits.
   */
  readonly stdin?: {
    end(): unknown
    readonly destroyed?: boolean
    readonly writableEnded?: boolean
    readonly writableFinished?: boolean
    on?(event: 'error', listener: (err: Error) => void): unknown
    once?(event: 'finish' | 'close' | 'error', listener: () => void): unknown
    off?(event: 'finish' | 'close' | 'error', listener: () => void): unknown
  } | null
}

/**
 * The ACP/RPC session a host stores in `run.acpSession`: any object. When `abort` is truthy, `cancel`
 * and `shutdownActive` call it with no arguments before signalling the child, swallowing errors.
 */
export type AcpSessionLike = object & {
  /** Asks the agent to stop its current turn; its return value (even a promise) is ignored. */
  abort?(): unknown
}

// ---------------------------------------------------------------------------------------------
// Run metadata, media policy, tool bundle
// ---------------------------------------------------------------------------------------------

/** Normalized media execution policy stored on `run.mediaExecution`; `{ mode: 'enabled' }` by default. */
export type MediaExecutionPolicy = {
  /** Whether media tools run (`'enabled'`), ask first (`'question'`) or are off (`'disabled'`). */
  mode: 'enabled' | 'question' | 'disabled'
  /** Surfaces media generation may use, de-duplicated in first-seen order; absent means unrestricted. */
  allowedSurfaces?: Array<'image' | 'video' | 'audio'>
  /** Model ids media generation may use, trimmed and de-duplicated; absent means unrestricted. */
  allowedModels?: string[]
}

/**
 * What `create` accepts as `meta.mediaExecution`. Any invalid part (unknown mode or surface, blank
 * model) makes the whole stored policy `{ mode: 'enabled' }` (fail-open, as upstream).
 */
export type MediaExecutionPolicyInput = {
  /** Policy mode, case-sensitive and not trimmed; defaults to `'enabled'` when not a string. */
  mode?: 'enabled' | 'question' | 'disabled' | undefined
  /** Allowed surfaces; `null` is invalid, `[]` is kept as "none". */
  allowedSurfaces?: ReadonlyArray<'image' | 'video' | 'audio'> | undefined
  /** Allowed model ids; each must have a non-empty trim. `[]` is kept as "none". */
  allowedModels?: readonly string[] | undefined
}

/** A sanitized stdio MCP server (SPEC §13), key order `id, transport, enabled, label?, templateId?, command, args?, env?`. */
export type McpStdioServerConfig = {
  /** Trimmed id: 1–64 chars, ASCII letter/digit first, then letters, digits, `_` or `-`; unique per bundle. */
  id: string
  /** Discriminant: the server is spawned as a local process. */
  transport: 'stdio'
  /** `false` only when the input was the boolean `false`. */
  enabled: boolean
  /** Trimmed display label; omitted when blank. */
  label?: string
  /** Trimmed template id; omitted when blank. */
  templateId?: string
  /** Trimmed executable to spawn. */
  command: string
  /** String arguments, verbatim and in order; omitted when none. */
  args?: string[]
  /** Environment entries, verbatim (secrets kept); omitted when none. */
  env?: Record<string, string>
}

/** A sanitized remote MCP server (SPEC §13), key order `id, transport, enabled, label?, templateId?, url, authMode, headers?`. */
export type McpHttpServerConfig = {
  /** Trimmed id: 1–64 chars, ASCII letter/digit first, then letters, digits, `_` or `-`; unique per bundle. */
  id: string
  /** Discriminant: the server is reached over streamable HTTP or SSE. */
  transport: 'http' | 'sse'
  /** `false` only when the input was the boolean `false`. */
  enabled: boolean
  /** Trimmed display label; omitted when blank. */
  label?: string
  /** Trimmed template id; omitted when blank. */
  templateId?: string
  /** WHATWG-serialized `http:`/`https:` URL; query, fragment and userinfo are kept. */
  url: string
  /** `'none'` for loopback hosts, `'oauth'` otherwise, unless the input said exactly one of them. */
  authMode: 'none' | 'oauth'
  /** Header entries, verbatim (secrets kept); omitted when none. */
  headers?: Record<string, string>
}

/** A sanitized run-scoped MCP server, discriminated on `transport` (`'stdio'` vs `'http'`/`'sse'`). */
export type McpServerConfig = McpStdioServerConfig | McpHttpServerConfig

/** The full sanitized tool bundle stored on `run.toolBundle`, secrets included (the host spawns from it). */
export type ToolBundle = {
  /** Valid servers in input order; the first occurrence of each id wins. */
  mcpServers: McpServerConfig[]
}

/** A stdio MCP server as `create` accepts it; `url`, `headers` and `authMode` are ignored for it. */
export type McpStdioServerConfigInput = {
  /** Server id; trimmed, then it must match `[A-Za-z0-9][A-Za-z0-9_-]{0,63}` or the entry is dropped. */
  id: string
  /** `'stdio'`, or absent/`null`, which also means stdio. */
  transport?: 'stdio' | null | undefined
  /** Anything but the boolean `false` means enabled. */
  enabled?: boolean | null | undefined
  /** Display label; blank values are dropped. */
  label?: string | null | undefined
  /** Template id; blank values are dropped. */
  templateId?: string | null | undefined
  /** Executable to spawn; a blank command drops the entry. */
  command: string
  /** Arguments, kept verbatim; non-string elements are dropped. */
  args?: readonly string[] | undefined
  /** Environment; blank keys and values are dropped. */
  env?: Readonly<Record<string, string>> | undefined
}

/** A remote MCP server as `create` accepts it; `command`, `args` and `env` are ignored for it. */
export type McpHttpServerConfigInput = {
  /** Server id; trimmed, then it must match `[A-Za-z0-9][A-Za-z0-9_-]{0,63}` or the entry is dropped. */
  id: string
  /** Transport, case-sensitive. */
  transport: 'http' | 'sse'
  /** Anything but the boolean `false` means enabled. */
  enabled?: boolean | null | undefined
  /** Display label; blank values are dropped. */
  label?: string | null | undefined
  /** Template id; blank values are dropped. */
  templateId?: string | null | undefined
  /** Absolute `http:`/`https:` URL; anything else drops the entry. */
  url: string
  /** Explicit auth mode; otherwise inferred from the host (loopback means `'none'`). */
  authMode?: 'none' | 'oauth' | null | undefined
  /** Request headers; blank keys and values are dropped. */
  headers?: Readonly<Record<string, string>> | undefined
}

/** An MCP server as `create` accepts it. Invalid entries are dropped silently at runtime, never thrown. */
export type McpServerConfigInput = McpStdioServerConfigInput | McpHttpServerConfigInput

/** What `create` accepts as `meta.toolBundle`; anything that is not a plain object gives `{ mcpServers: [] }`. */
export type ToolBundleInput = {
  /** Servers to sanitize; a non-array gives no servers. */
  mcpServers?: readonly McpServerConfigInput[] | null | undefined
}

/** The redacted view of one MCP server in a status body: no command, args, env, URL or headers. */
export type McpServerSummary =
  | {
      /** Server id. */
      id: string
      /** Display label, when set. */
      label?: string
      /** Template id, when set. */
      templateId?: string
      /** Stdio servers never carry `authMode`. */
      transport: 'stdio'
      /** Whether the server is enabled. */
      enabled: boolean
    }
  | {
      /** Server id. */
      id: string
      /** Display label, when set. */
      label?: string
      /** Template id, when set. */
      templateId?: string
      /** Remote transport. */
      transport: 'http' | 'sse'
      /** Whether the server is enabled. */
      enabled: boolean
      /** Remote servers always carry their auth mode. */
      authMode: 'none' | 'oauth'
    }

/** The redacted tool bundle in a status body (SPEC §14): six keys per server, never a secret. */
export type ToolBundleSummary = {
  /** One summary per server of `run.toolBundle.mcpServers`, in order. */
  mcpServers: McpServerSummary[]
}

/**
 * Metadata read by `create` (and `createOrReuse`). Each id field is kept verbatim when it is a
 * non-empty string (not trimmed), otherwise stored as `null`; the daemon fields (SPEC HF-1) are
 * kept when they have their shape, otherwise `null`. No other key is read.
 */
export type RunCreateMeta = {
  /** The daemon's OD Next task input descriptor: kept on the run and persisted when an object (SPEC HF-16). */
  odNextTaskInputSnapshot?: Record<string, unknown> | null | undefined
  /** The daemon's strategy rollout decision: kept on the run and persisted when an object (SPEC HF-16). */
  strategyRolloutDecision?: Record<string, unknown> | null | undefined
  /** The daemon's runtime capability snapshot: kept on the run and persisted when an object (SPEC HF-16). */
  runtimeCapabilitySnapshot?: Record<string, unknown> | null | undefined
  /**
   * The external plugin's attribution hints: when `externalPluginId` is `'open-design'`, the run's
   * `externalPluginAnalytics` is made from them (SPEC HF-8); otherwise they are ignored.
   */
  analyticsHints?: Partial<ExternalPluginAnalytics> | Record<string, unknown> | null | undefined
  /** Project the run belongs to; used by `list` filters. */
  projectId?: string | null | undefined
  /** Conversation the run belongs to; used by `list` filters. */
  conversationId?: string | null | undefined
  /** Assistant message the run writes into. */
  assistantMessageId?: string | null | undefined
  /** Client-chosen request id: the key `createOrReuse` finds an earlier run by (SPEC LC-3). */
  clientRequestId?: string | null | undefined
  /** What the request asked for, as the host fingerprints it; `createOrReuse` reports a `'conflict'` when two differ. */
  requestFingerprint?: string | null | undefined
  /** Opaque to the service: kept on the run and in its state file only when the key is present (`undefined` as `null`). */
  workspaceScope?: unknown
  /** Agent that executes the run. */
  agentId?: string | null | undefined
  /** Frozen plugin snapshot the run is pinned to. */
  appliedPluginSnapshotId?: string | null | undefined
  /** Plugin the run belongs to. */
  pluginId?: string | null | undefined
  /** Media policy to normalize (SPEC §12); missing or `null` means `{ mode: 'enabled' }`. */
  mediaExecution?: MediaExecutionPolicyInput | null | undefined
  /** Run-scoped MCP servers to sanitize (SPEC §13); missing means `{ mcpServers: [] }`. */
  toolBundle?: ToolBundleInput | null | undefined
  /** Skill the run uses; kept when a non-empty string (SPEC HF-1), reported and persisted. */
  skillId?: string | null | undefined
  /** The project's metadata (a plain object); the status body's `workspace` is derived from it (HF-2). */
  projectMetadata?: ProjectMetadata | null | undefined
  /** Browser availability as the host probed it; kept when an object, reported when truthy (HF-1, HF-2). */
  browserUse?: unknown
  /** `'chat'`, `'design'` or `'plan'`; anything else is stored as `null` (HF-1). */
  sessionMode?: SessionMode | (string & {}) | null | undefined
  /** The run's context (a plain object), kept by reference; not reported (HF-1). */
  context?: Record<string, unknown> | null | undefined
  /** Opaque to the service: kept on the run and in its state file only when the key is present, `undefined` as `null` (HF-4). */
  designSystemScope?: unknown
}

/** The session modes `create` keeps (SPEC HF-1). */
export type SessionMode = 'chat' | 'design' | 'plan'

/** The part of a project's metadata the status body's `workspace` is derived from (SPEC HF-2). */
export type ProjectMetadata = {
  /** The folder the project lives in, for a folder-backed project. */
  baseDir?: string | null
  /** An orchestrator's scratch checkout of the project. */
  orchestratorWorkspace?: {
    kind: 'scratch'
    sourceLabel?: string
    sourceRef?: string
    baseRevision?: string
    writeback?: 'external'
  } | null
  [extra: string]: unknown
}

/** Where a run's project lives (`statusBody(run).workspace`, SPEC HF-2). */
export type RunWorkspace =
  | { storage: { kind: 'od-owned'; baseDir: null }; provenance: null }
  | {
      storage: { kind: 'folder-backed'; baseDir: string | null }
      provenance:
        | { kind: 'user-local'; writeback: 'in-place' }
        | {
            kind: 'orchestrator-scratch'
            writeback: 'external'
            sourceLabel?: string
            sourceRef?: string
            baseRevision?: string
          }
    }

// ---------------------------------------------------------------------------------------------
// Events, runs, status bodies
// ---------------------------------------------------------------------------------------------

/**
 * One buffered/logged event record, key order `id, event, data, timestamp`. Records read back from
 * `run.events` carry a JSON round-trip of `data`; `emit`'s return value carries the caller's object.
 */
export type ChatRunEvent<T = unknown> = {
  /** Per-run id: starts at 1, grows by 1 per emit, never reused or renumbered. */
  id: number
  /** Event name, stored as given (`'end'` and `'error'` have special meaning). */
  event: string
  /**
   * The emitted payload. A record emitted with `data` `undefined` has no `data` key at all (as
   * after `JSON.stringify`), so reading it gives `undefined`.
   */
  data: T
  /** `Date.now()` at emit time. */
  timestamp: number
}

/**
 * `data` of the `'end'` event that `finish` emits, key order `code, signal, status, terminalAt,
 * resumable, endedWithUnfinishedWork`, then `artifactCount` and `artifactPaths` when the run has
 * them, `failureCategory`, `failureDetail`, and `termination` when set (SPEC LC-5, HF-3).
 */
export type ChatRunEndData = {
  /** Exit code passed to `finish` (`null` by default). */
  code: number | null
  /** Signal passed to `finish` (`null` by default). */
  signal: NodeJS.Signals | (string & {}) | null
  /** The run's new status. */
  status: RunStatus
  /** When the run became terminal (ms); `null` for a non-terminal status. */
  terminalAt: number | null
  /** `run.resumable ?? false` at that moment (a host field). */
  resumable: unknown
  /** `!!run.endedWithUnfinishedWork` at that moment (a host field). */
  endedWithUnfinishedWork: boolean
  /** `run.artifactCount` when it is a finite number (HF-3). */
  artifactCount?: number
  /** `run.artifactPaths` when it is an array (HF-3). */
  artifactPaths?: unknown[]
  /**
   * `run.failureCategory ?? null` (HF-3). Absent from the `'end'` record hydration appends to an
   * interrupted run's journal, whose data is upstream's (LC-2).
   */
  failureCategory?: unknown
  /** `run.failureDetail ?? null` (HF-3); absent as `failureCategory` is. */
  failureDetail?: unknown
  /** `run.termination` when truthy (HF-3). */
  termination?: unknown
  /** `run.failureAction` when neither null nor undefined (HF-17). */
  failureAction?: unknown
  /** `run.retryable` when a boolean (HF-17). */
  retryable?: boolean
  /** `run.strategyTask` when truthy (HF-17). */
  strategyTask?: unknown
  /** `run.deliverableSyntaxRepair` when truthy (HF-17). */
  deliverableSyntaxRepair?: unknown
  /** `run.deliverableSyntaxValidation` when truthy (HF-17). */
  deliverableSyntaxValidation?: unknown
}

/**
 * Why a run became terminal (`run.terminalTrigger`, SPEC LC-5): the host's own reason (a watchdog:
 * `'first_output_deadline'`, `'inactivity_watchdog'`, `'acp_stage_timeout'`, ...), which the
 * service persists and shows as it is; the service itself writes only `'daemon_restart'` (a run
 * its daemon left active, hydrated as failed) and `null` (`prepareRestart`).
 */
export type TerminalTrigger =
  'first_output_deadline' | 'inactivity_watchdog' | 'acp_stage_timeout' | 'daemon_restart' | (string & {})

/**
 * A chat run: a plain, mutable, extensible object shared by the service and the host (SPEC §5).
 * Host writes take effect at once; the host may add its own fields, which the service keeps and ignores.
 */
export interface ChatRun {
  /** Random lowercase UUID v4 and registry key; never changes. */
  readonly id: string
  /** Project id from `create` meta, or `null`; the host may back-fill it. */
  projectId: string | null
  /** Conversation id from `create` meta, or `null`; the host may back-fill it. */
  conversationId: string | null
  /** Assistant message id from `create` meta, or `null`. */
  assistantMessageId: string | null
  /** Client request id from `create` meta, or `null`. */
  clientRequestId: string | null
  /** Request fingerprint from `create` meta, or `null` (SPEC LC-3). */
  requestFingerprint: string | null
  /** Agent id from `create` meta, or `null`. */
  agentId: string | null
  /** Applied plugin snapshot id from `create` meta, or `null`. */
  appliedPluginSnapshotId: string | null
  /** Plugin id from `create` meta, or `null`. */
  pluginId: string | null
  /** Normalized media policy (SPEC §12). */
  mediaExecution: MediaExecutionPolicy
  /** Full sanitized tool bundle, secrets included; reach it in responses only through `statusBody`. */
  readonly toolBundle: ToolBundle
  /** `'queued'` at creation; the host sets `'running'`; `finish`/`drop` set the terminal verdict. */
  status: RunStatus
  /** Creation time (ms since epoch). */
  readonly createdAt: number
  /** Last change (ms); bumped by emit, finish, cancel, shutdownActive and drop; the host may write it. */
  updatedAt: number
  /** The last `maxEvents` records, oldest first, as a fresh array; mutating it never changes history. */
  readonly events: ChatRunEvent[]
  /** Id the next `emit` will use (starts at 1). */
  readonly nextEventId: number
  /** Live SSE clients; a real `Set` the host may add its own clients to. `finish`/`drop` end and clear it. */
  readonly clients: Set<SseClient>
  /** Pending `wait()` resolvers; `finish`/`drop` call each once with a status body, then clear it. */
  readonly waiters: Set<(body: ChatRunStatusBody) => void>
  /**
   * The agent's child process, set by the host; `null` means queued (cancel finishes at once). Setting
   * it captures the child's process tree (SPEC LC-7); an accessor, so `{ ...run }` does not show it.
   */
  child: ChildLike | null
  /** The agent's ACP/RPC session, set by the host; its `abort()` is tried before signals. */
  acpSession: AcpSessionLike | null
  /** Child pid recorded by the host; reported when `child.pid` is not a number. */
  childPid: number | null
  /**
   * Process group to signal instead of the child; honoured only if ≥ 2, not the daemon's, and the child's
   * own. Setting it verifies the group while the child lives (IMP-5); an accessor, like `child`.
   */
  processGroupId: number | null
  /** When a cancel or shutdown first observed the child's exit (ms), else `null`. */
  childExitObservedAt: number | null
  /** Exit code recorded by `finish`. */
  exitCode: number | null
  /** Signal recorded by `finish`. */
  signal: NodeJS.Signals | (string & {}) | null
  /** Last error message extracted from an `'error'` event, else `null`. */
  error: string | null
  /** Last error code extracted from an `'error'` event (or written by the host), else `null`. */
  errorCode: string | null
  /** `true` once `cancel` or `shutdownActive` has been called on the run. */
  cancelRequested: boolean
  /**
   * Who asked for the cancel (`cancel(run, origin)`, `'daemon_shutdown'`): the first origin wins, a
   * host-written one included; persisted with the run (SPEC LC-5).
   */
  cancelOrigin: string | null
  /** When the run became terminal (ms), set by every terminal transition; read-only (SPEC LC-5). */
  readonly terminalAt: number | null
  /**
   * Why the run became terminal, as the host names it (a watchdog sets it before its verdict);
   * `null` unless the host sets it, `'daemon_restart'` for a run hydrated as interrupted, cleared by
   * `prepareRestart`; persisted with the run (SPEC LC-5).
   */
  terminalTrigger: TerminalTrigger | null
  /** Host field (SPEC LC-5): shown in the status body and the `'end'` data, persisted. */
  failureCategory?: unknown
  /** Host field (SPEC LC-5): shown in the status body, persisted. */
  failureDetail?: unknown
  /** Host field (SPEC LC-5): shown in the status body, persisted. */
  failureAction?: unknown
  /** Host field: whether the host can resume the run; in the status body and `'end'` data. */
  resumable?: unknown
  /** Host field: the run ended with work left; in the status body and `'end'` data. */
  endedWithUnfinishedWork?: unknown
  /** `'daemon_restart'` on a run hydration marked interrupted (SPEC LC-2), else a host value or absent; `prepareRestart` sets it to `null` (LC-4). */
  terminalRecoveryReason?: string | null
  /** From `create` meta when the key was there, `undefined` as `null` (SPEC LC-3); persisted in the state file. */
  workspaceScope?: unknown
  /** Called once when the run reaches a terminal state or is dropped, then set to `null` (SPEC LC-6). */
  onFinalize?: (() => unknown) | null
  /** Bumped by each `prepareRestart`, or set to the attempt reserved for it (SPEC LC-4, LC-10). */
  manualResumeAttemptCount?: number
  /**
   * The resume attempt `reserveRestartAttempt` reserved and no `prepareRestart` used yet; persisted,
   * removed by `clearRestartAttempt` and `prepareRestart` (SPEC LC-10).
   */
  pendingManualResumeAttemptCount?: number
  /** Time spent terminal before each `prepareRestart`, summed (ms, SPEC LC-4). */
  rechargeWaitDurationMs?: number
  /** From `create` meta (HF-1); reported and persisted. */
  skillId?: string | null
  /** From `create` meta (HF-1); the status body's `workspace` is derived from it at each call. */
  projectMetadata?: ProjectMetadata | null
  /** From `create` meta (HF-1); reported when truthy. */
  browserUse?: unknown
  /** From `create` meta (HF-1). */
  sessionMode?: SessionMode | null
  /** From `create` meta (HF-1). */
  context?: Record<string, unknown> | null
  /** From `create` meta when the key was there, `undefined` as `null` (HF-4); persisted in the state file. */
  designSystemScope?: unknown
  /** Host field: artifacts the attempt produced; reported, in the `'end'` data and persisted (HF-2..HF-4); `prepareRestart` clears it. */
  artifactCount?: number
  /** Host field: project-relative paths of those artifacts (HF-2..HF-4); `prepareRestart` clears it. */
  artifactPaths?: string[]
  /** Host field: paths the attempt removed (HF-2); `prepareRestart` clears it. */
  removedPaths?: string[]
  /**
   * How the run's teardown went: set by a teardown of `options.terminateProcessTree` (SPEC LC-9), or
   * by the host; reported when truthy, in the `'end'` data and persisted (HF-2..HF-4).
   */
  termination?: RunTermination | Record<string, unknown>
  /**
   * Host field: the root of the run's process tree as the host identified it (`{ pid, createdAt }`);
   * with `options.terminateProcessTree`, cancel and shutdown hand the tree to it (SPEC LC-9). `null`
   * at creation; `prepareRestart` resets it.
   */
  processTreeRoot: ProcessTreeIdentity | null
  /** Host field: the host's identification of the tree, still under way; a teardown waits for it (SPEC LC-9). */
  processTreeIdentityCapture: PromiseLike<unknown> | null
  /**
   * Host field: the tree must be verified as stopped; without a `processTreeRoot`, a teardown fails
   * with `RUN_TERMINATION_UNVERIFIED` (SPEC LC-9).
   */
  requiresTreeVerification: boolean
  /** Host field: the prompt; persisted when a string and restored on hydration (HF-4, HF-5). */
  userPrompt?: string
  /** Set by `setAnalyticsRecovery` (SPEC HF-7); persisted. */
  analyticsRecovery?: { context?: unknown; properties?: unknown; insertId?: unknown; completedAt?: number }
  /** Set by `markLangfuseCompleted` (SPEC HF-7); persisted. */
  langfuseCompletedAt?: number
  /** Set by `setDeliverableValidation` (SPEC HF-7); reported and persisted; `prepareRestart` clears it. */
  deliverableValid?: boolean
  /** Set by `setDeliverableValidation` (SPEC HF-7). */
  deliverableValidation?: string
  /** Set by `setDeliverableValidation` (SPEC HF-7). */
  deliverableEntryFile?: string
  /** Set by `setDeliverableValidation` (SPEC HF-7). */
  deliverableArtifactKind?: string
  /** `<runsLogDir>/<id>/events.jsonl` when logging is enabled, else `null`. */
  readonly eventsLogPath: string | null
  /**
   * `<runsLogDir>/<id>/state.json` (SPEC LC-1) when logging is enabled, else `null`. Informational:
   * the service writes the state file at its own path.
   */
  statePath: string | null
  /**
   * While the run's journal is open: a `stream.Writable` handle on it (`path` is `eventsLogPath`) that
   * finishes once the log closed and its lines are on disk, so `stream.finished()` can wait for the
   * journal; `null` otherwise (SPEC LOG-9). The service writes the journal: writes through it fail.
   */
  eventsLogStream: (NodeJS.WritableStream & { readonly path: string | null }) | null
  /** Absent until `start`, which replaces it with a copy of the old keys plus `startRequestedAt: now`. */
  analyticsTelemetry?: Record<string, unknown> & { startRequestedAt?: number }
  /**
   * Host field: the child's stdin is open. Cancel and shutdown end `child.stdin` before the first SIGTERM
   * and set it to `false`; `prepareRestart` sets it to `false` (SPEC LC-7, LC-4).
   */
  stdinOpen?: boolean
  /**
   * The open-design plugin's attribution, made by `create` from `meta.analyticsHints`, else `null`;
   * reported, persisted, and the key `findByPluginWorkflowId` finds the run by (SPEC HF-8).
   */
  externalPluginAnalytics: ExternalPluginAnalytics | null
  /**
   * Host field: the timer handle of a pending same-run retry; `cancel`, `shutdownActive` and
   * `prepareRestart` clear the timer and set it to `null` (SPEC HF-9).
   */
  retryRestartTimer: ReturnType<typeof setTimeout> | null
  /**
   * Host field: a runtime failure was seen before a cancel; the cancel then waits for the child's
   * `'close'` (the host's close handler gives the verdict), not its `'exit'` (SPEC CAN-9).
   */
  runtimeFailureObservedBeforeCancellation?: boolean
  /**
   * The daemon's own bookkeeping, set by `create` as upstream's later module does (absent on a
   * hydrated run unless its state file holds it; SPEC HF-15): the workspace summary at create,
   * the inactivity watchdog's clock (`createdAt` at first), the retry and native-session state.
   */
  workspace?: RunWorkspace
  lastAgentActivityAt?: number
  retryOriginFailure?: unknown
  retryOriginErrorCode?: string | null
  retryStrategy?: string | null
  retryMaxAttempts?: number | null
  nativeSessionContinueAttemptCount?: number
  nativeSessionContinuePending?: unknown
  stdinBackpressure?: boolean
  /** The last TodoWrite `todos` array; an open task makes the verdict's `endedWithUnfinishedWork` true (SPEC HF-11). */
  lastTodoSnapshot?: unknown
  /** The last turn was cut off (max tokens): the verdict's `endedWithUnfinishedWork` is true (SPEC HF-11). */
  truncatedMidTurn?: boolean
  /** The media failures `noteMediaTaskFailure` recorded, each marked once recovered; persisted (SPEC HF-12). */
  mediaTaskFailures?: MediaTaskFailure[]
  /** Host field: the run's artifact must still be delivered; its `'succeeded'` waits for a receipt (SPEC HF-13). */
  artifactDeliveryRequired?: boolean
  /** The applied delivery receipt (SPEC HF-13); reported and persisted, forgotten by `prepareRestart`. */
  artifactDelivery?: ArtifactDelivery
  /** From `create` meta when an object (SPEC HF-16); persisted. */
  odNextTaskInputSnapshot?: Record<string, unknown>
  /** From `create` meta when an object (SPEC HF-16); persisted. */
  strategyRolloutDecision?: Record<string, unknown>
  /** From `create` meta when an object (SPEC HF-16); persisted. */
  runtimeCapabilitySnapshot?: Record<string, unknown>
  /**
   * Host field: the run's strategy task as the daemon projects it; reported when truthy. A terminal task
   * (`terminal: true`) whose `outcome` is not `'completed'` turns a `'succeeded'` verdict into `'failed'`
   * (SPEC HF-16).
   */
  strategyTask?: unknown
  /** The telemetry delivery record the three telemetry checkpoints keep; persisted and restored (SPEC HF-16, HF-21). */
  telemetryDelivery?: TelemetryDelivery
  /**
   * The terminal lifecycle record: made at the verdict, updated by later terminal claims and by
   * `beginAnalyticsDelivery`/`finalizeAnalyticsDelivery`; reported, persisted and restored;
   * `prepareRestart` forgets it (SPEC HF-20).
   */
  terminalLifecycle?: TerminalLifecycle
  /**
   * Retries across attempts: `prepareRestart` adds the attempt's `retryAttemptCount`; persisted and
   * restored when a number (SPEC HF-16, HF-20).
   */
  cumulativeRetryAttemptCount?: number
  /** Host field: the attempt's retries (`prepareRestart` sets `0`, HF-10); persisted and restored when a number (SPEC HF-16). */
  retryAttemptCount?: number
  /**
   * Host field: the daemon runtime generation that ran the attempt; persisted and restored when a string
   * (SPEC HF-16); `prepareRestart` sets `null` (HF-20).
   */
  runtimeGenerationId?: string | null
  /** Host field: the agent's authenticated done marker; outranks an open plan of a `'succeeded'` verdict (SPEC HF-18). */
  authenticatedDoneConclusion?: boolean
  /** Host field: the turn's visible text; a rendered question form outranks an open plan of a `'succeeded'` verdict (SPEC HF-18). */
  askUserScanText?: string
  /** Host field: whether the failure may be retried; in the `'end'` data when a boolean (SPEC HF-17). */
  retryable?: boolean
  /** Host field: the deliverable's syntax repair loop; reported, persisted and in the `'end'` data when truthy (SPEC HF-17). */
  deliverableSyntaxRepair?: unknown
  /** Host field: the deliverable's syntax check; reported, persisted and in the `'end'` data when truthy (SPEC HF-17). */
  deliverableSyntaxValidation?: unknown
  /** Host field: the daemon's version facts; persisted and restored (SPEC HF-16). */
  appVersionInfo?: unknown
  /** Other host-added fields are kept and ignored by the service (the daemon's own: SPEC §22). */
  [extra: string]: unknown
}

/**
 * The fresh plain object `statusBody(run)` returns: these 37 keys, in this order (SPEC §15, LC-5,
 * HF-2), then the optional keys below that the run holds a value of the right shape for. It never
 * contains `events`, `child`, the full tool bundle or other host-added fields.
 */
export type ChatRunStatusBody = {
  /** `run.id`. */
  id: string
  /** `run.projectId`, verbatim. */
  projectId: string | null
  /** `run.conversationId`, verbatim. */
  conversationId: string | null
  /** `run.assistantMessageId`, verbatim. */
  assistantMessageId: string | null
  /** `run.agentId`, verbatim. */
  agentId: string | null
  /** `run.skillId ?? null` (HF-2). */
  skillId: string | null
  /** `run.designSystemId ?? null` (HF-2). */
  designSystemId: unknown
  /** `run.designSystemRequestedId ?? null` (HF-2). */
  designSystemRequestedId: unknown
  /** `run.designSystemSelectionSource ?? null` (HF-2). */
  designSystemSelectionSource: unknown
  /** `run.designSystemDigest ?? null` (HF-2). */
  designSystemDigest: unknown
  /** `run.appliedPluginSnapshotId` when a non-empty string, else `null` (HF-2). */
  appliedPluginSnapshotId: string | null
  /** `run.pluginId ?? null`. */
  pluginId: string | null
  /** `run.status`. */
  status: RunStatus
  /** `run.createdAt`. */
  createdAt: number
  /** `run.updatedAt`. */
  updatedAt: number
  /** `!!run.cancelRequested`. */
  cancelRequested: boolean
  /** `run.child.pid` when it is a number, else `run.childPid ?? null`. */
  childPid: number | null
  /** `run.processGroupId ?? null`. */
  processGroupId: number | null
  /** `true` when there is no child or it has an exit code or signal. */
  childExited: boolean
  /** `run.childExitObservedAt ?? null`. */
  childExitObservedAt: number | null
  /** `run.exitCode`. */
  exitCode: number | null
  /** `run.signal`. */
  signal: NodeJS.Signals | (string & {}) | null
  /** `run.error ?? null`. */
  error: string | null
  /** `run.errorCode ?? null`. */
  errorCode: string | null
  /** `run.clientRequestId ?? null`. */
  clientRequestId: string | null
  /** `run.terminalAt ?? null`. */
  terminalAt: number | null
  /** `run.cancelOrigin ?? null`. */
  cancelOrigin: string | null
  /** `run.terminalTrigger ?? null`. */
  terminalTrigger: TerminalTrigger | null
  /** `run.failureCategory ?? null`. */
  failureCategory: unknown
  /** `run.failureDetail ?? null`. */
  failureDetail: unknown
  /** `run.failureAction ?? null`. */
  failureAction: unknown
  /** `run.resumable ?? false`. */
  resumable: unknown
  /** `!!run.endedWithUnfinishedWork`. */
  endedWithUnfinishedWork: boolean
  /** `run.eventsLogPath ?? null`. */
  eventsLogPath: string | null
  /** Where the project lives, from `run.projectMetadata` at this call (HF-2). */
  workspace: RunWorkspace
  /** `run.mediaExecution`, or `{ mode: 'enabled' }` when the host cleared it. */
  mediaExecution: MediaExecutionPolicy
  /** Redacted summary of `run.toolBundle`. */
  toolBundle: ToolBundleSummary
  // HF-2's optional keys, in this order, each present only when the run's value has the shape named.
  /** `run.termination` when truthy. */
  termination?: unknown
  /** `run.artifactCount` when a finite number. */
  artifactCount?: number
  /** `run.artifactPaths` when an array. */
  artifactPaths?: unknown[]
  /** `run.removedPaths` when an array. */
  removedPaths?: unknown[]
  /** `run.promptCache` when truthy. */
  promptCache?: unknown
  /** `run.nativeSessionRecovery` when truthy. */
  nativeSessionRecovery?: unknown
  /** `run.browserUse` when truthy. */
  browserUse?: unknown
  /** `run.clientType` when a string. */
  clientType?: string
  /** `run.externalPluginAnalytics` when truthy. */
  externalPluginAnalytics?: unknown
  /** `run.manualResumeAttemptCount` when a number. */
  manualResumeAttemptCount?: number
  /** `run.rechargeWaitDurationMs` when a number. */
  rechargeWaitDurationMs?: number
  /** `run.artifactOriginStatus` when a string. */
  artifactOriginStatus?: string
  /** `run.artifactVersionId` when a string. */
  artifactVersionId?: string
  /** `run.deliverableValid` when a boolean. */
  deliverableValid?: boolean
  /** `run.deliverableValidation` when a string. */
  deliverableValidation?: string
  /** `run.deliverableEntryFile` when a string. */
  deliverableEntryFile?: string
  /** `run.deliverableArtifactKind` when a string. */
  deliverableArtifactKind?: string
  /** `run.artifactDelivery` when truthy (HF-13). */
  artifactDelivery?: ArtifactDelivery
  /** `run.strategyTask` when truthy (HF-16). */
  strategyTask?: unknown
  /** `run.deliverableSyntaxRepair` when truthy (HF-17). */
  deliverableSyntaxRepair?: unknown
  /** `run.deliverableSyntaxValidation` when truthy (HF-17). */
  deliverableSyntaxValidation?: unknown
  /** `run.terminalLifecycle` when truthy (HF-20). */
  terminalLifecycle?: TerminalLifecycle
}

/** The terminal lifecycle record of a run (SPEC HF-20); its names and values are the daemon's. */
export type TerminalLifecycle = {
  version: 1
  /** Every attempt before this verdict: cumulative retries, this attempt's retries, manual resumes. */
  runAttempt: number
  /** The run's runtime generation when a UUID v4 (lowercased), else null. */
  runtimeGenerationId: string | null
  terminationOrigin: 'user_cancel' | 'project_cleanup' | 'watchdog_cleanup' | 'unknown'
  /** `'canonical'`, then `'duplicate'` / `'late'` after later terminal claims (a hydrated record may hold others). */
  terminalIntegrity: string
  /** Whether the verdict's state file reached the disk (`'unknown'` without `runsLogDir`). */
  terminalPersistence: { status: 'acknowledged' | 'failed' | 'unknown'; errorType: string | null }
  /** The terminal analytics event's delivery (`beginAnalyticsDelivery`, `finalizeAnalyticsDelivery`). */
  posthogDelivery: {
    status: string | null
    acknowledgement: string | null
    attemptCount: number
    errorType: string | null
  }
  unfinishedState: string
  duplicateTerminalCount: number
  lateTerminalCount: number
}

/** What `finalizeAnalyticsDelivery` reads (SPEC HF-20): the sender's verdict, each value kept as given. */
export type AnalyticsDeliveryResult = {
  status?: string | null
  acknowledgement?: string | null
  errorType?: string | null
}

/**
 * How a state-file write went (SPEC LC-1, LC-11): what `persistState` returns, and what the host's
 * `writeDurableState` answers. `errorType` is the failure's class.
 */
export type DurableStateWriteResult =
  | { ok: true }
  | {
      ok: false
      errorType:
        | 'permission_denied'
        | 'read_only_storage'
        | 'storage_full'
        | 'storage_unavailable'
        | 'serialization_failed'
        | 'unknown'
        | (string & {})
    }

// ---------------------------------------------------------------------------------------------
// Options and method arguments
// ---------------------------------------------------------------------------------------------

/**
 * Options of {@link createChatRunService}, read once at construction. A default applies only when a
 * key is `undefined`; an invalid value throws a `TypeError` (wrong type) or `RangeError` (out of range).
 */
export interface ChatRunServiceOptions {
  /**
   * Turns the `res` given to `stream()` into an SSE client; called exactly once per `stream()` call.
   * Required: a non-function throws `TypeError` at construction.
   */
  createSseResponse(res: SseResponse): SseClient
  /**
   * Builds the `data` of the `'error'` event that `fail()` emits (`init` defaults to `{}`).
   * Required: a non-function throws `TypeError` at construction.
   */
  createSseErrorPayload(code: string, message: string, init: Record<string, unknown>): unknown
  /**
   * Ring-buffer size of `run.events`: an integer ≥ 1, or `Infinity` for unbounded.
   * Other numbers (0, 1.5, NaN) throw `RangeError`; non-numbers throw `TypeError`.
   * @defaultValue `2000`
   */
  maxEvents?: number | undefined
  /**
   * Delay from `finish` to eviction from the registry (ms, ≥ 0, clamped to 2147483647); `Infinity` never evicts.
   * NaN or a negative number throws `RangeError`; non-numbers throw `TypeError`.
   * @defaultValue `1_800_000` (30 minutes)
   */
  ttlMs?: number | undefined
  /**
   * Default `graceMs` of `shutdownActive` (ms, ≥ 0).
   * NaN or a negative number throws `RangeError`; non-numbers throw `TypeError`.
   * @defaultValue `3000`
   */
  shutdownGraceMs?: number | undefined
  /**
   * Directory for per-run `<runsLogDir>/<runId>/events.jsonl` logs and `state.json` files (SPEC LC-1);
   * `null` or `''` disables logging and durability (no filesystem access at all). Relative paths
   * resolve against the cwd; other types throw `TypeError`. Runs found there are loaded lazily (LC-2).
   * @defaultValue `null`
   */
  runsLogDir?: string | null | undefined
  /**
   * Called with every emitted record (the `'end'` of `finish` included), numbered, before fan-out;
   * the ring's trim cannot hide it (SPEC LC-6). Exceptions are swallowed and reported once.
   */
  onEventEmitted?: ((run: ChatRun, record: ChatRunEvent) => unknown) | null | undefined
  /**
   * Called once, synchronously, just before a run's single terminal transition; the host may still set
   * what the verdict carries (`endedWithUnfinishedWork`, `resumable`, the failure fields).
   */
  beforeFinish?:
    | ((
        run: ChatRun,
        status: RunStatus,
        code: number | null,
        signal: NodeJS.Signals | (string & {}) | null,
        terminalAt: number,
      ) => unknown)
    | null
    | undefined
  /**
   * Called once the terminal state is durable, before the `'end'` record is published; also for every
   * terminal run hydrated from disk (the host dedupes).
   */
  onTerminal?: ((run: ChatRun, status: RunStatus, terminalAt: number | null) => unknown) | null | undefined
  /**
   * Called with every status body `statusBody` (and `wait`, `cancel`) builds for a run of this service,
   * last: the host may add its own keys (run analytics, diagnostics). Isolated like the other hooks; a
   * status body asked for from inside it is not passed to it again (SPEC HF-14).
   */
  onStatusBody?: ((run: ChatRun, body: ChatRunStatusBody & Record<string, unknown>) => unknown) | null | undefined
  /**
   * Host run fields written into `state.json` at every write and restored onto hydrated runs (SPEC LC-6).
   * Not an array of strings: `TypeError`.
   * @defaultValue `[]`
   */
  durableFields?: readonly string[] | undefined
  /**
   * The host's writer of state files (SPEC LC-11): with `runsLogDir`, every `state.json` write is handed
   * to it synchronously (the path and the state as an object) instead of written by the core. It went
   * through unless the function throws, returns `{ ok: false, errorType }` or returns a promise. Not a
   * function: `TypeError`.
   */
  writeDurableState?:
    ((filePath: string, state: Record<string, unknown>) => DurableStateWriteResult | void) | null | undefined
  /**
   * The host's terminator of a process tree it identified (SPEC LC-9): cancel and shutdown of a run with
   * a `processTreeRoot` (or one being identified, or requiring verification) call it instead of
   * signalling, and the run is `'canceled'` only when the answer verifies the tree stopped and the
   * child exited; otherwise it fails with `RUN_TERMINATION_UNVERIFIED`, retryable. Not a function:
   * `TypeError`.
   */
  terminateProcessTree?:
    | ((
        root: ProcessTreeIdentity,
        options: { graceMs: number; forceWaitMs: number },
      ) => TreeTermination | PromiseLike<TreeTermination>)
    | null
    | undefined
}

/** A process identity as the host's tree terminator takes it (SPEC LC-9). */
export type ProcessTreeIdentity = {
  /** A positive integer pid. */
  pid: number
  /** The process's creation time, as the host measures it (a finite number >= 0). */
  createdAt: number
}

/** What `terminateProcessTree` answers (SPEC LC-9). */
export type TreeTermination = {
  attempted: boolean
  /** Nothing of the tree is left running. */
  childTreeQuiescent: boolean
  /** The terminator had to force the tree down. */
  forced: boolean
  /** The root still was the process identified (not a recycled pid). */
  identityVerified: boolean
  remainingPids: number[]
}

/** `run.termination` as a teardown of `terminateProcessTree` records it (SPEC LC-9). */
export type RunTermination = {
  /** Teardowns of this tree so far. */
  attempts: number
  outcome: 'verified' | 'unverified'
  phase: 'graceful' | 'forced'
  /** An unverified teardown: a later `cancel` or `shutdownActive` tries again. */
  retryable: boolean
  childExited: boolean
  treeQuiescent: boolean
}

/** `cancel(run, options)`: the origin (SPEC LC-5) and a grace for this cancel (SPEC LC-9). */
export type CancelOptions = {
  /** As `cancel(run, origin)`'s string; default `'unknown'`. */
  origin?: string
  /** Replaces the cancel grace (and the abort grace) for this cancel, when a finite number > 0. */
  graceMs?: number
}

/** What `createOrReuse` returns (SPEC LC-3). */
export type CreateOrReuseResult = {
  /** `'reused'`: a run with that `clientRequestId` exists; `'conflict'`: it does, with another fingerprint; `'created'`: a new run. */
  kind: 'reused' | 'conflict' | 'created'
  /** The existing run, or the new one. */
  run: ChatRun
}

/** Filter of `list()`; every key is optional and `null`/`undefined`/`''` do not filter. */
export type ListFilter = {
  /** Keep runs whose `projectId` equals this non-empty string. */
  projectId?: string | null | undefined
  /** Keep runs whose `conversationId` equals this non-empty string. */
  conversationId?: string | null | undefined
  /** `'active'` keeps non-terminal runs; any other non-empty string keeps runs with exactly that status. */
  status?: 'active' | RunStatus | null | undefined
}

/** Options of `shutdownActive()`. */
export type ShutdownOptions = {
  /** Time each run's process tree gets to exit after SIGTERM before SIGKILL (ms); invalid values use `shutdownGraceMs`. */
  graceMs?: number | undefined
}

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

/**
 * A chat-run registry (SPEC MOD-2): a plain object of 36 closures. Every method works detached
 * (`const { emit } = runs`) and ignores extra arguments, so `list().map(runs.statusBody)` is safe.
 */
export interface ChatRunService {
  /**
   * Creates and registers a `'queued'` run from `meta` (`undefined`/`null`/non-objects mean `{}`).
   * Emits nothing and starts no timer; with logging, its `state.json` is on disk when it returns.
   */
  readonly create: (meta?: RunCreateMeta | null) => ChatRun
  /**
   * Stamps `run.analyticsTelemetry.startRequestedAt`, calls `starter(run)` once and returns `run`.
   * A rejection becomes `fail(run, 'AGENT_EXECUTION_FAILED', message)`; a sync throw propagates, a non-promise result throws `TypeError`.
   */
  readonly start: <R extends ChatRun>(run: R, starter: (run: R) => Promise<unknown>) => R
  /**
   * Returns the registered run with this id; with logging, else the run loaded from `runsLogDir`
   * (after a restart or TTL eviction; SPEC LC-2); else `null` (also after drop). An id that is not
   * a UUID never reaches the filesystem.
   */
  readonly get: (id: string) => ChatRun | null
  /**
   * Returns a new array of registered runs in creation order that match every given filter. With a
   * `projectId` (and logging), that project's runs on disk are loaded first (SPEC LC-2).
   */
  readonly list: (filter?: ListFilter | null) => ChatRun[]
  /**
   * Attaches an SSE client: replays buffered events after the `Last-Event-ID`/`?after=` cursor, then
   * ends at once for a terminal run or registers the client until `res` closes.
   */
  readonly stream: (run: ChatRun, req: SseRequest, res: SseResponse) => void
  /**
   * Cancels a run: records `origin` (default `'unknown'`, e.g. `'user_stop'`) as `run.cancelOrigin` (first
   * wins); a run without a child finishes at once; otherwise `acpSession.abort()`, stdin closed, SIGTERM
   * then SIGKILL to the run's whole process tree. The run finishes once the child exited and nothing of
   * its tree is alive, or after the last wait (survivors: a `termination_failed` diagnostic first); a
   * `finish` meanwhile is parked until then (SPEC LC-7). A run whose tree the host identified
   * (`processTreeRoot`) is torn down by `options.terminateProcessTree` instead, and fails retryably
   * (`RUN_TERMINATION_UNVERIFIED`) when that cannot verify the tree stopped; cancel it again to retry
   * (SPEC LC-9). Resolves to the final status body; never throws synchronously and never rejects for
   * a terminal run.
   */
  readonly cancel: (run: ChatRun, origin?: string | CancelOptions | null) => Promise<ChatRunStatusBody>
  /**
   * Tears every active run down at once, as `cancel` does (origin `'daemon_shutdown'`): abort, stdin
   * closed, SIGTERM to each process tree, SIGKILL after `graceMs`, then 500 ms; each run finishes as
   * `'canceled'` once its tree is gone or that wait is over. Resolves when all are done and every log is
   * flushed and closed.
   */
  readonly shutdownActive: (opts?: ShutdownOptions | null) => Promise<void>
  /** Resolves with a status body when the run finishes or is dropped (at once if already terminal); never rejects. */
  readonly wait: (run: ChatRun) => Promise<ChatRunStatusBody>
  /**
   * Appends an event, logs it, fans it out to `run.clients` and returns the record with the caller's `data`.
   * `'error'` events also update `run.error`/`run.errorCode`. No terminal guard. Returns `null` and records
   * nothing while a `finish` is parked during a cancel/shutdown teardown, except for `'diagnostic'` (SPEC LC-7).
   */
  readonly emit: <T = undefined>(run: ChatRun, event: string, data?: T) => ChatRunEvent<T> | null
  /**
   * Ends a run once (no-op when already terminal): records status/code/signal, emits `'end'`, ends clients,
   * resolves waiters, closes the log, schedules eviction. `code` and `signal` default to `null`. During a
   * cancel/shutdown teardown the call is parked and applied when the teardown ends (SPEC LC-7).
   */
  readonly finish: (
    run: ChatRun,
    status: RunStatus,
    code?: number | null,
    signal?: NodeJS.Signals | (string & {}) | null,
  ) => void
  /**
   * Emits `'error'` with `createSseErrorPayload(code, message, init)` then finishes as `'failed'` (code 1).
   * A no-op on a terminal run; `init` defaults to `{}`. During a teardown the finish is parked, as `finish`'s.
   */
  readonly fail: (run: ChatRun, code: string, message: string, init?: Record<string, unknown>) => void
  /**
   * Unregisters a non-terminal run without an `'end'` event: ends clients, sets `'canceled'`, resolves waiters, closes the log.
   * A no-op for a falsy or terminal run.
   */
  readonly drop: (run: ChatRun | null | undefined) => void
  /**
   * Sends `signal` to the run's verified process group, else to `run.child`; returns whether it was sent.
   * Returns `false` without signalling when there is no child; for an exited child, signals its group
   * only while the run holds it (the survivors that inherited its output, SPEC SIG-6).
   */
  readonly signalChild: (run: ChatRun, signal: NodeJS.Signals | number) => boolean
  /** Returns a fresh status body (37 keys and HF-2's optional ones, secrets redacted) computed from the run's current fields. */
  readonly statusBody: (run: ChatRun) => ChatRunStatusBody
  /** True only for `'succeeded'`, `'failed'` and `'canceled'`; non-strings give `false`. */
  readonly isTerminal: (status: unknown) => status is TerminalRunStatus
  /**
   * Finds the run created for `meta.clientRequestId` (in memory, or on disk across a restart) and
   * reuses it, reports a `'conflict'` when both request fingerprints are set and differ, or creates a
   * new run (SPEC LC-3).
   * @throws Error with `code: 'ERR_CHAT_RUN_UNREADABLE'` when that cannot be told because
   * `runsLogDir` cannot be read for now (out of file descriptors); retry later.
   */
  readonly createOrReuse: (meta?: RunCreateMeta | null) => CreateOrReuseResult
  /**
   * Reopens a terminal run for a retry, same object and id: back to `'queued'`, verdict and child
   * cleared, eviction voided, state persisted, then a `'run_resume_attempted'` event. `null` when the
   * run is not terminal (SPEC LC-4).
   */
  readonly prepareRestart: <R extends ChatRun>(run: R) => R | null
  /**
   * Writes the run's `state.json` now, with the host's durable fields, and says how it went (SPEC LC-1):
   * `{ ok: false, errorType: 'storage_unavailable' }` without logging, for a dropped or a falsy run.
   */
  readonly persistState: (run: ChatRun | null | undefined) => DurableStateWriteResult
  /** Sets `run.analyticsRecovery` to `{ context, properties, insertId }` and persists it (SPEC HF-7). */
  readonly setAnalyticsRecovery: (run: ChatRun | null | undefined, recovery: AnalyticsRecoveryInput) => void
  /** Stamps `run.analyticsRecovery.completedAt` (now) and persists it; nothing without one (SPEC HF-7). */
  readonly markAnalyticsCompleted: (run: ChatRun | null | undefined) => void
  /** Sets `run.langfuseCompletedAt` (now) and persists it (SPEC HF-7). */
  readonly markLangfuseCompleted: (run: ChatRun | null | undefined) => void
  /** Records the deliverable check's verdict on the run and persists it (SPEC HF-7). */
  readonly setDeliverableValidation: (run: ChatRun | null | undefined, result: DeliverableValidationInput) => void
  /**
   * The newest run created with this plugin workflow id (its `externalPluginAnalytics`), in memory or
   * on disk across a restart; `null` when there is none or the id is not a non-empty string (SPEC HF-8).
   * @throws Error with `code: 'ERR_CHAT_RUN_UNREADABLE'` when `runsLogDir` cannot be read for now.
   */
  readonly findByPluginWorkflowId: (pluginWorkflowId: unknown) => ChatRun | null
  /**
   * Sends `signal` to an explicit child (an escalation timer's own, not whatever `run.child` is now):
   * to its process group when `processGroupId` is verified as the child's own, else `child.kill(signal)`.
   * `false` for no child or an exited one (SPEC SIG-5).
   */
  readonly signalChildProcess: (
    child: ChildLike | null | undefined,
    processGroupId: number | null | undefined,
    signal: NodeJS.Signals | number,
  ) => boolean
  /**
   * Sends `signal` to a whole process group, only while one of this service's runs holds it (its
   * verified group, or a group a process of its tree is alive in); never a reserved id or the
   * daemon's own group. `true` when the signal was sent; always `false` on Windows (SPEC SIG-6).
   */
  readonly signalProcessGroup: (processGroupId: unknown, signal: NodeJS.Signals | number) => boolean
  /**
   * SIGTERM to a held process group now, SIGKILL to what is left of it after the cancel grace (an
   * unref'd timer). `true` when the SIGTERM was sent (SPEC SIG-6).
   */
  readonly reapProcessGroup: (processGroupId: unknown) => boolean
  /**
   * Notes a media task of run `runId` that failed (`taskId` a non-empty string), persisted; `false` for
   * an unknown run or no `taskId`. Unrecovered at the verdict, it makes the run end with unfinished
   * work (SPEC HF-12).
   */
  readonly noteMediaTaskFailure: (runId: string, failure: MediaTaskFailure) => boolean
  /**
   * Notes a media task of run `runId` that succeeded: it recovers each noted failure with the same
   * `output` and `surface` that it started no earlier than. `true` when one was recovered (SPEC HF-12).
   */
  readonly noteMediaTaskRecovery: (runId: string, success: MediaTaskSuccess) => boolean
  /**
   * The host's receipt for the artifact of a finished run marked `artifactDeliveryRequired`: applied once
   * (the first receipt wins), persisted; a failed delivery revises the run to `'failed'` with
   * `ARTIFACT_DELIVERY_FAILED`. Otherwise `applied: false` and the reason (SPEC HF-13).
   */
  readonly acknowledgeArtifactDelivery: (run: ChatRun, receipt: ArtifactDeliveryReceipt) => ArtifactDeliveryResult
  /**
   * Reserves resume attempt `executionAttempt` (a non-negative integer) before the host commits its
   * claim on the run: sets `run.pendingManualResumeAttemptCount` and writes the state file now. `true`
   * when reserved (always without `runsLogDir`); `false` for a dropped run or a failed write, which
   * leaves the run as it was. The next `prepareRestart` starts that attempt (SPEC LC-10).
   * @throws TypeError for a run of another service or an `executionAttempt` that is not a
   * non-negative integer.
   */
  readonly reserveRestartAttempt: (run: ChatRun, executionAttempt: number) => boolean
  /**
   * Takes back the reservation of `executionAttempt` when the run holds it (the field goes, the state
   * file is written without it); otherwise changes nothing (SPEC LC-10).
   * @throws TypeError as `reserveRestartAttempt`.
   */
  readonly clearRestartAttempt: (run: ChatRun, executionAttempt: number) => void
  /**
   * The terminal analytics event of the run is being sent: `terminalLifecycle.posthogDelivery` goes
   * in flight with one more attempt; persisted. No-op for a falsy run or one without a lifecycle
   * record (SPEC HF-20).
   * @throws TypeError for a run of another service.
   */
  readonly beginAnalyticsDelivery: (run: ChatRun | null | undefined) => void
  /**
   * The sender's verdict on the terminal analytics event, kept in `terminalLifecycle.posthogDelivery`;
   * persisted. No-op for a falsy run, a run without a lifecycle record, or a `result` that is not an
   * object (SPEC HF-20).
   * @throws TypeError for a run of another service.
   */
  readonly finalizeAnalyticsDelivery: (run: ChatRun | null | undefined, result: AnalyticsDeliveryResult) => void
  /**
   * The run's trace delivery starts (or starts again): `run.telemetryDelivery` in flight, inside its
   * crash window; persisted. A settled delivery is kept (SPEC HF-21).
   * @throws TypeError for a run of another service.
   */
  readonly beginTelemetryDelivery: (run: ChatRun | null | undefined) => void
  /**
   * One more attempt of the run's trace delivery (begun first when it was not); persisted (SPEC HF-21).
   * @throws TypeError for a run of another service.
   */
  readonly recordTelemetryDeliveryAttempt: (run: ChatRun | null | undefined) => void
  /**
   * The sender's result for the run's trace: accepted or nothing to send settles the delivery (and sets
   * `langfuseCompletedAt`), anything else leaves it failed for a retry; persisted (SPEC HF-21).
   * @throws TypeError for a run of another service.
   */
  readonly finalizeTelemetryDelivery: (run: ChatRun | null | undefined, result: TelemetryDeliveryResult) => void
}

/** What `finalizeTelemetryDelivery` reads (SPEC HF-21): the trace sender's result, in the daemon's names. */
export type TelemetryDeliveryResult = {
  langfuse_expected?: boolean
  langfuse_delivery_status?: 'not_expected' | 'queued' | 'accepted' | 'failed' | (string & {})
  langfuse_drop_reason?: string
  langfuse_attempt_count?: number
}

/** `run.telemetryDelivery` as the three telemetry checkpoints keep it (SPEC HF-21). */
export type TelemetryDelivery = {
  version: 1
  /** `od-run-telemetry-v1-` + a SHA-256 of the run id: the same for every attempt. */
  idempotencyKey: string
  status: 'in_flight' | 'failed' | 'accepted' | 'not_expected'
  attemptCount: number
  /** In flight: a crash now leaves the delivery to replay at the next start. */
  crashWindow: boolean
  startedAt: number
  dropReason?: string
  /** Set once the delivery is settled (accepted or nothing to send). */
  finalizedAt?: number
}

/** What `acknowledgeArtifactDelivery` reads (SPEC HF-13). */
export type ArtifactDeliveryReceipt = {
  /** Whether the host delivered the artifact. */
  status: 'succeeded' | 'failed'
  /** The host's per-file report (kept as given; `[]` when not an array). */
  files?: unknown[]
  /** Why the delivery failed (the run's `error`). */
  error?: string
}

/** `run.artifactDelivery` once a receipt was applied (SPEC HF-13). */
export type ArtifactDelivery = {
  status: 'succeeded' | 'failed'
  files: unknown[]
  /** For a failed delivery: the run's `error`. */
  error?: string
}

/** What `acknowledgeArtifactDelivery` returns (SPEC HF-13). */
export type ArtifactDeliveryResult = {
  /** Whether the receipt was applied. */
  applied: boolean
  /** Why it was not. */
  reason?:
    | 'run-canceled'
    | 'run-not-terminal'
    | 'artifact-delivery-not-required'
    | 'artifact-delivery-already-succeeded'
    | 'artifact-delivery-already-failed'
    | 'run-failed'
    | 'invalid-receipt'
  /** The run, as it is now. */
  run: ChatRun
}

/** A failed media task, as `noteMediaTaskFailure` records it on `run.mediaTaskFailures` (SPEC HF-12). */
export type MediaTaskFailure = {
  /** The task (a non-empty string). */
  taskId: string
  /** What it was to produce (a file name); without one the failure can never be recovered. */
  output?: string
  /** Its kind of media (`'image'`, `'video'`, …). */
  surface?: string
  /** When it failed (ms). */
  failedAt?: number
  /** What went wrong, as the daemon describes it. */
  error?: unknown
  /** Set by `noteMediaTaskRecovery`: the task that produced the output instead. */
  recoveredByTaskId?: string
  /** Set by `noteMediaTaskRecovery`: when that task completed (ms). */
  recoveredAt?: number
}

/** A media task that succeeded, as `noteMediaTaskRecovery` reads it (SPEC HF-12). */
export type MediaTaskSuccess = {
  /** The task (a non-empty string). */
  taskId: string
  /** What it produced. */
  output?: string
  /** Its kind of media. */
  surface?: string
  /** When it started (ms): it recovers only failures at or before this time. */
  startedAt?: number
  /** When it completed (ms): the failure's `recoveredAt` (now when absent). */
  completedAt?: number
}

/**
 * A run's attribution to the open-design plugin (`run.externalPluginAnalytics`, SPEC HF-8): every
 * key is present, each the hint's value as the host gave it (unchecked, possibly `undefined`).
 */
export type ExternalPluginAnalytics = {
  /** Where the request entered. */
  entrySurface: unknown
  /** The product hosting the plugin. */
  hostProduct: unknown
  /** Always `'open-design'`. */
  externalPluginId: 'open-design'
  /** The plugin's version. */
  externalPluginVersion: unknown
  /** How the plugin was installed. */
  distributionMechanism: unknown
  /** Who published it. */
  publisherClass: unknown
  /** How sure the attribution is. */
  attributionQuality: unknown
  /** The plugin workflow: the key `findByPluginWorkflowId` finds the run by (when a non-empty string). */
  pluginWorkflowId: unknown
  /** A digest of the logical request. */
  logicalRequestDigest: unknown
  /** The digest's version. */
  logicalRequestDigestVersion: unknown
  /** The brief's state. */
  briefState: unknown
  /** The generation SLO window (ms). */
  generationSloWindowMs: unknown
}

/** What `setAnalyticsRecovery` keeps (SPEC HF-7); other keys are ignored. */
export type AnalyticsRecoveryInput = {
  /** The analytics context to replay after a restart. */
  context?: unknown
  /** The event properties to replay. */
  properties?: unknown
  /** The id that makes the replayed event idempotent. */
  insertId?: unknown
}

/** What `setDeliverableValidation` reads (SPEC HF-7). */
export type DeliverableValidationInput = {
  /** Only `true` makes `deliverableValid` true. */
  valid?: unknown
  /** The check's verdict; `'entry_missing'` when not a string. */
  validation?: unknown
  /** The deliverable's entry file, when a string. */
  entryFile?: unknown
  /** The artifact kind, when a string. */
  artifactKind?: unknown
}

/**
 * Creates an independent chat-run registry (no state is shared between instances). The first
 * service adds one `'exit'` listener to `process` (one per process): a process that ends by
 * `process.exit()` or an uncaught error first gives every cancel or shutdown under way its SIGKILL
 * step (LC-7) and writes what was emitted to the logs (waiting up to 2 s, IMP-4).
 * @throws TypeError when `options` is not an object, a required callback is not a function or an option has the wrong type.
 * @throws RangeError when a numeric option is out of range (see {@link ChatRunServiceOptions}).
 */
export declare function createChatRunService(options: ChatRunServiceOptions): ChatRunService

/** A health snapshot of one service, for the daemon's diagnostics (see {@link getChatRunServiceStats}). */
export type ChatRunServiceStats = {
  /**
   * Registered runs (what `get`/`list` see), the non-terminal ones among them, counts by status
   * (a non-string status counts under `""`), and `live`: runs whose native state still exists,
   * including dropped or evicted runs the host still references.
   */
  runs: { registered: number; active: number; byStatus: Record<string, number>; live: number }
  /** Records held in the native histories (`maxEvents` per run) and their serialized size in bytes. */
  events: { retained: number; retainedBytes: number }
  /**
   * The JSONL writer: whether logging is on, lines the writer appended (not the two records hydration itself appends to an interrupted run's journal, LC-2), files open now (at most 64 per
   * service, fewer under a low descriptor limit), lines not written yet (waiting for the writer thread or being written), and every line that was not persisted, by
   * reason: `diskError` (mkdir/open/write failed), `queueFull` (the 64 MiB queue stayed full past
   * 10 ms), `unserializable` (`JSON.stringify` threw), `afterClose` (emitted after `finish`/`drop`,
   * IMP-1).
   */
  log: {
    enabled: boolean
    linesWritten: number
    openFiles: number
    queue: { lines: number; bytes: number }
    notPersisted: { diskError: number; queueFull: number; unserializable: number; afterClose: number }
  }
  /** The runs' `state.json` writes (SPEC LC-1): done, and failed (the first failure is reported once). */
  stateFile: { written: number; failed: number }
  /**
   * The runs on disk (SPEC LC-2): indexed by the construction scan, loaded into memory since,
   * entries of `runsLogDir` that are not valid runs (counted once each), and reads of
   * `runsLogDir` that failed for want of a resource such as file descriptors (each time; read
   * again by the next lookup).
   */
  hydration: { indexed: number; hydrated: number; skipped: number; unreadable: number }
}

/**
 * Returns a health snapshot of `service` (runs by status, retained events and bytes, writer
 * queue depth, open log files, lines not persisted by reason).
 * @throws TypeError when `service` was not returned by {@link createChatRunService}.
 */
export declare function getChatRunServiceStats(service: ChatRunService): ChatRunServiceStats
