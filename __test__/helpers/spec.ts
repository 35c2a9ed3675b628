// Shapes the SPEC fixes, checked by several files.

/**
 * §1 MOD-2: the service's 22 methods, in order (LC-3, LC-4 and LC-6 add createOrReuse,
 * prepareRestart and persistState; HF-7 the last four).
 */
export const METHODS = [
  'create',
  'start',
  'get',
  'list',
  'stream',
  'cancel',
  'shutdownActive',
  'wait',
  'emit',
  'finish',
  'fail',
  'drop',
  'signalChild',
  'statusBody',
  'isTerminal',
  'createOrReuse',
  'prepareRestart',
  'persistState',
  'setAnalyticsRecovery',
  'markAnalyticsCompleted',
  'markLangfuseCompleted',
  'setDeliverableValidation',
  'findByPluginWorkflowId',
  'signalChildProcess',
  'signalProcessGroup',
  'reapProcessGroup',
  'noteMediaTaskFailure',
  'noteMediaTaskRecovery',
  'acknowledgeArtifactDelivery',
  'reserveRestartAttempt',
  'clearRestartAttempt',
  'beginAnalyticsDelivery',
  'finalizeAnalyticsDelivery',
  'beginTelemetryDelivery',
  'recordTelemetryDeliveryAttempt',
  'finalizeTelemetryDelivery',
]

/**
 * §15 SB-1 with LC-5 and HF-2: the 37 status-body keys every body has, in order (HF-2's
 * conditional keys follow them when the run has such values).
 */
export const STATUS_BODY_KEYS = [
  'id',
  'projectId',
  'conversationId',
  'assistantMessageId',
  'agentId',
  'skillId',
  'designSystemId',
  'designSystemRequestedId',
  'designSystemSelectionSource',
  'designSystemDigest',
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
  'clientRequestId',
  'terminalAt',
  'cancelOrigin',
  'terminalTrigger',
  'failureCategory',
  'failureDetail',
  'failureAction',
  'resumable',
  'endedWithUnfinishedWork',
  'eventsLogPath',
  'workspace',
  'mediaExecution',
  'toolBundle',
]

/** §6 CRE-3: the seven id fields, each a non-empty string from meta or null. */
export const ID_FIELDS = [
  'projectId',
  'conversationId',
  'assistantMessageId',
  'clientRequestId',
  'agentId',
  'appliedPluginSnapshotId',
  'pluginId',
]

/** §5 RUN-1: every field create() sets. */
export const RUN_FIELDS = [
  'id',
  'projectId',
  'conversationId',
  'assistantMessageId',
  'clientRequestId',
  'requestFingerprint',
  'agentId',
  'appliedPluginSnapshotId',
  'pluginId',
  'mediaExecution',
  'toolBundle',
  'status',
  'createdAt',
  'updatedAt',
  'events',
  'nextEventId',
  'clients',
  'waiters',
  'child',
  'acpSession',
  'childPid',
  'processGroupId',
  'childExitObservedAt',
  'exitCode',
  'signal',
  'error',
  'errorCode',
  'cancelRequested',
  'terminalAt',
  'terminalTrigger',
  'eventsLogPath',
  'statePath',
  'eventsLogStream',
  'skillId',
  'projectMetadata',
  'browserUse',
  'sessionMode',
  'context',
]

/** §6 CRE-1, LC-3 and HF-1: the only meta keys create() reads. */
export const META_KEYS = new Set([
  ...ID_FIELDS,
  'mediaExecution',
  'toolBundle',
  'requestFingerprint',
  'workspaceScope',
  'skillId',
  'projectMetadata',
  'browserUse',
  'sessionMode',
  'context',
  'designSystemScope',
  'analyticsHints',
  'odNextTaskInputSnapshot',
  'strategyRolloutDecision',
  'runtimeCapabilitySnapshot',
])

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** A process group id that cannot exist (above any pid_max); only used with pid-less children. */
export const IMPOSSIBLE_PGID = 2147480000

/** §13: a toolBundle input that exercises trimming, dropping, duplicates and secrets. */
export const exampleToolBundle = () => ({
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
})

/** FIN-3 with LC-5 and HF-3: the keys of an 'end' record's data, in order (no artifact values). */
export const END_DATA_KEYS = [
  'code',
  'signal',
  'status',
  'terminalAt',
  'resumable',
  'endedWithUnfinishedWork',
  'failureCategory',
  'failureDetail',
]

/**
 * FIN-3 with LC-5 and HF-3: the data of the 'end' record `finish(run, status, code, signal)`
 * writes at `terminalAt` (null for a non-terminal status), for a run without resumable /
 * endedWithUnfinishedWork, failure fields or artifact values. `terminalAt` may be an asymmetric
 * matcher (`expect.any(Number)`).
 */
export function endData(code: unknown, signal: unknown, status: unknown, terminalAt: unknown) {
  return {
    code,
    signal,
    status,
    terminalAt,
    resumable: false,
    endedWithUnfinishedWork: false,
    failureCategory: null,
    failureDetail: null,
  }
}

/** §13: what `exampleToolBundle()` normalizes to (the `mcpServers` of the run's toolBundle). */
export const EXAMPLE_TOOL_BUNDLE_SERVERS = [
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
]
