// Shapes the SPEC fixes, checked by several files.

/** §1 MOD-2: the service's 15 methods. */
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
]

/** §15 SB-1: the 22 status-body keys, in order. */
export const STATUS_BODY_KEYS = [
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
]

/** §5 RUN-1: every field create() sets. */
export const RUN_FIELDS = [
  'id',
  'projectId',
  'conversationId',
  'assistantMessageId',
  'clientRequestId',
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
  'eventsLogPath',
  'eventsLogStream',
]

/** §6 CRE-1: the only meta keys create() reads. */
export const META_KEYS = new Set([
  'projectId',
  'conversationId',
  'assistantMessageId',
  'clientRequestId',
  'agentId',
  'appliedPluginSnapshotId',
  'pluginId',
  'mediaExecution',
  'toolBundle',
])

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** A process group id that cannot exist (above any pid_max); only used with pid-less children. */
export const IMPOSSIBLE_PGID = 2147480000
