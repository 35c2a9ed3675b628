// The environment variables the service reads on every cancel/shutdown (SPEC §3), set per test and
// restored afterwards.

export const CANCEL_ENV_KEYS = [
  'OD_CHAT_RUN_CANCEL_GRACE_MS',
  'OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS',
  'PI_ABORT_GRACE_MS',
  'OD_CHAT_RUN_SHUTDOWN_GRACE_MS',
] as const

export type CancelEnv = Partial<Record<(typeof CANCEL_ENV_KEYS)[number], string | undefined>>

/** Short graces (30/20/30 ms, no shutdown fallback) so cancel tests take milliseconds. */
export const SHORT_CANCEL_GRACES: CancelEnv = {
  OD_CHAT_RUN_CANCEL_GRACE_MS: '30',
  OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS: '20',
  PI_ABORT_GRACE_MS: '30',
  OD_CHAT_RUN_SHUTDOWN_GRACE_MS: undefined,
}

/**
 * Saves every CANCEL_ENV_KEYS variable, applies `values` (undefined deletes one) and returns the
 * function that restores what was saved.
 */
export function withEnv(values: CancelEnv): () => void {
  const saved = Object.fromEntries(CANCEL_ENV_KEYS.map((key) => [key, process.env[key]]))
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
  }
  return () => {
    for (const key of CANCEL_ENV_KEYS) {
      if (saved[key] === undefined) delete process.env[key]
      else process.env[key] = saved[key]
    }
  }
}
