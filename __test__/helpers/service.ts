// The service under test, built the one way every file builds it: createChatRunService with a fake
// SSE client per stream() call and a spy error-payload factory.
import { vi } from 'vitest'
import { createChatRunService } from '../../index.js'
import { fakeClient, type FakeClient } from './fakes'

/** The two factories createChatRunService requires, as plain functions. */
export const baseOptions = () => ({
  createSseResponse: () => fakeClient(),
  createSseErrorPayload: (code: string, message: string) => ({ error: { code, message } }),
})

export interface Harness<C> {
  /**
   * The service. Typed loosely on purpose: the tests hand it what the declarations forbid (bad
   * options, non-object meta, fake children) to check what it does then.
   */
  runs: any
  /** Every client createSseResponse returned, in order: one per stream() call. */
  sse: C[]
  /** The `res` each createSseResponse call received. */
  responses: unknown[]
  /** The createSseErrorPayload spy; it returns `{ error: { code, message }, init }`. */
  createSseErrorPayload: ReturnType<typeof errorPayloadSpy>
}

function errorPayloadSpy() {
  return vi.fn((code: unknown, message: unknown, init: unknown) => ({ error: { code, message }, init }))
}

/**
 * A service with short defaults for tests (shutdownGraceMs 10, ttlMs 60 s); `options` overrides
 * them and adds the rest (runsLogDir, maxEvents, ...). `newClient(index)` makes the client for the
 * index-th stream() call (default: a FakeClient named `sse<index>`).
 */
export function makeRuns<C extends object = FakeClient>(
  options: Record<string, unknown> = {},
  newClient: (index: number) => C = (index) => fakeClient({ name: `sse${index}` }) as unknown as C,
): Harness<C> {
  const sse: C[] = []
  const responses: unknown[] = []
  const createSseErrorPayload = errorPayloadSpy()
  const runs = createChatRunService({
    createSseResponse: (res: unknown) => {
      responses.push(res)
      const client = newClient(sse.length)
      sse.push(client)
      return client
    },
    createSseErrorPayload,
    shutdownGraceMs: 10,
    ttlMs: 60_000,
    ...options,
  } as any) as any
  return { runs, sse, responses, createSseErrorPayload }
}

/** A finished run whose buffer holds ids 1..4 (three 'agent' events and 'end'). */
export function finishedRun4(runs: any) {
  const run = runs.create({ projectId: 'p' })
  runs.emit(run, 'agent', { n: 1 })
  runs.emit(run, 'agent', { n: 2 })
  runs.emit(run, 'agent', { n: 3 })
  runs.finish(run, 'succeeded', 0, null)
  return run
}

/** A new run marked running, with `child` as its child process. */
export function runningWithChild(runs: any, child: unknown, meta: object = {}) {
  const run = runs.create(meta)
  run.status = 'running'
  run.child = child
  return run
}
