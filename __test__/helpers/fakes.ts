// Fakes of what the host hands the service: the SSE client createSseResponse returns, the express
// req/res that stream() reads, and a child process that records the signals it gets.
import { EventEmitter } from 'node:events'
import { vi, type Mock } from 'vitest'

// --- SSE client --------------------------------------------------------------------------------

/** One call the service made on a fake client, in order. */
export type ClientCall =
  { type: 'send'; event: string; data: unknown; id: number } | { type: 'end' } | { type: 'cleanup' }

/** An SSE client whose three methods are spies that also append to `calls`. */
export interface FakeClient {
  name: string
  calls: ClientCall[]
  send: Mock<(event: string, data: unknown, id: number) => boolean>
  end: Mock<() => void>
  cleanup: Mock<() => void>
}

export interface FakeClientOptions {
  /** Shown in `log` lines. */
  name?: string
  /** A shared log: `<name>.send:<event>:<id>` and `<name>.end`, to check the order across clients. */
  log?: string[]
  /** Called inside each send, after it is recorded (to emit from within a replay, say). */
  onSend?: (client: FakeClient, event: string, data: unknown, id: number) => void
  /** Called inside end(), after it is recorded (to emit from a drop's or finish's end of clients). */
  onEnd?: (client: FakeClient) => void
  /** Every method throws after recording its call. */
  throwing?: boolean
}

export function fakeClient(options: FakeClientOptions = {}): FakeClient {
  const { name = 'client', log, onSend, onEnd, throwing = false } = options
  const client: FakeClient = {
    name,
    calls: [],
    send: vi.fn((event: string, data: unknown, id: number) => {
      client.calls.push({ type: 'send', event, data, id })
      log?.push(`${name}.send:${String(event)}:${String(id)}`)
      onSend?.(client, event, data, id)
      if (throwing) throw new Error('send boom')
      return true
    }),
    end: vi.fn(() => {
      client.calls.push({ type: 'end' })
      log?.push(`${name}.end`)
      onEnd?.(client)
      if (throwing) throw new Error('end boom')
    }),
    cleanup: vi.fn(() => {
      client.calls.push({ type: 'cleanup' })
      if (throwing) throw new Error('cleanup boom')
    }),
  }
  return client
}

/** The ids a client was sent, in order. */
export const sentIds = (client: FakeClient): number[] =>
  client.calls.flatMap((call) => (call.type === 'send' ? [call.id] : []))

/** The records a client was sent, as `{ id, event, data }`, in order. */
export const sentRecords = (client: FakeClient): Array<{ id: number; event: string; data: unknown }> =>
  client.calls.flatMap((call) => (call.type === 'send' ? [{ id: call.id, event: call.event, data: call.data }] : []))

/** How many times end() was called. */
export const ends = (client: FakeClient): number => client.calls.filter((call) => call.type === 'end').length

/** How many times cleanup() was called. */
export const cleanups = (client: FakeClient): number => client.calls.filter((call) => call.type === 'cleanup').length

// --- express req / res -------------------------------------------------------------------------

/**
 * A request whose `get()` (any header name) returns `header`. With a second argument it also has
 * `query.after`; a third one says explicitly whether `query` holds an `after` key.
 */
export function fakeReq(header?: unknown, ...cursor: [] | [after: unknown] | [after: unknown, hasAfter: boolean]) {
  const hasAfter = cursor.length === 2 ? cursor[1] : cursor.length === 1
  const get = vi.fn((_name: string) => header)
  return { get, query: hasAfter ? { after: cursor[0] } : {} } as any
}

/** A response that records its `on()` handlers; `close()` runs the 'close' ones. */
export function fakeRes() {
  const handlers: Record<string, Array<() => void>> = {}
  const on = vi.fn((event: string, handler: () => void) => {
    ;(handlers[event] ??= []).push(handler)
  })
  return { on, handlers, close: () => (handlers.close ?? []).forEach((handler) => handler()) } as any
}

// --- child process -----------------------------------------------------------------------------

export interface FakeChildOptions {
  /** The reported pid (default undefined: no pid, so no group or pid delivery is possible). */
  pid?: number
  /** The signal that kills it; any other signal is recorded and ignored. */
  closeOn?: string | null
  /** exitCode once killed (default null). */
  exitCodeOnDeath?: number | null
  /** signalCode once killed (default: the signal that killed it). */
  signalCodeOnDeath?: string | null
  /** Which events a death emits (default both, 'exit' then 'close'). */
  emitEvents?: Array<'exit' | 'close'>
  /** What kill() returns (default true). */
  ret?: unknown
  /** kill() throws after recording the signal. */
  throws?: boolean
  /** A shared log: `kill:<signal>`. */
  log?: string[]
}

/** A child process that records every signal (`signals`) and when it came (`times`). */
export class FakeChild extends EventEmitter {
  pid: number | undefined
  exitCode: number | null = null
  signalCode: string | null = null
  signals: unknown[] = []
  times: number[] = []

  constructor(private readonly opts: FakeChildOptions = {}) {
    super()
    this.pid = opts.pid
  }

  kill(signal: unknown): unknown {
    this.signals.push(signal)
    this.times.push(Date.now())
    this.opts.log?.push(`kill:${String(signal)}`)
    if (this.opts.throws) throw new Error('kill failed')
    if (this.opts.closeOn && signal === this.opts.closeOn) {
      this.die(
        this.opts.exitCodeOnDeath ?? null,
        this.opts.signalCodeOnDeath === undefined ? (signal as string) : this.opts.signalCodeOnDeath,
      )
    }
    return this.opts.ret === undefined ? true : this.opts.ret
  }

  /** Dies now; its events follow in a microtask, as a real child's do. */
  die(code: number | null, signal: string | null): void {
    this.exitCode = code
    this.signalCode = signal
    const events = this.opts.emitEvents ?? ['exit', 'close']
    queueMicrotask(() => {
      for (const event of events) this.emit(event, code, signal)
    })
  }

  /** Exits with `code` and emits 'exit' and 'close' synchronously. */
  exitWith(code: number): void {
    this.exitCode = code
    this.emit('exit', code, null)
    this.emit('close', code, null)
  }
}
