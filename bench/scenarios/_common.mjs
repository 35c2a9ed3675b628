// Shared helpers of the benchmark scenarios. Each scenario runs as
//   node --expose-gc bench/scenarios/<name>.mjs <native|baseline> [--pattern burst|yielding] [--quick]
// in its own process and prints exactly one JSON line of metrics on stdout. The emit scenarios
// (emit-persist, emit-memory, emit-nolog, lifecycle) require --pattern: `burst` emits in a tight
// loop that never yields to the event loop (a burst of agent output arriving at once), `yielding`
// awaits `setImmediate` after every round of the loop (as a daemon does between stdout chunks).
import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'

const require = createRequire(import.meta.url)

export const impl = process.argv[2]
if (impl !== 'native' && impl !== 'baseline') {
  process.stderr.write(
    `usage: node --expose-gc ${process.argv[1]} <native|baseline> [--pattern burst|yielding] [--quick]\n`,
  )
  process.exit(2)
}
if (typeof globalThis.gc !== 'function') {
  process.stderr.write('run with node --expose-gc\n')
  process.exit(2)
}

/** `--quick` divides every size by 10 (correctness runs). */
export const quick = process.argv.includes('--quick')
export const size = (n) => (quick ? Math.max(1, Math.round(n / 10)) : n)

export const PATTERNS = ['burst', 'yielding']
const patternArg = (() => {
  const i = process.argv.indexOf('--pattern')
  if (i !== -1) return process.argv[i + 1]
  const eq = process.argv.find((a) => a.startsWith('--pattern='))
  return eq === undefined ? undefined : eq.slice('--pattern='.length)
})()

/** The emit pattern of an emit scenario (exits with usage 2 when --pattern is missing or unknown). */
export function emitPattern() {
  if (!PATTERNS.includes(patternArg)) {
    process.stderr.write(`${process.argv[1]}: --pattern ${PATTERNS.join('|')} is required\n`)
    process.exit(2)
  }
  return patternArg
}

export const { createChatRunService } = require(impl === 'native' ? '../../index.js' : '../baseline.js')

export const now = () => performance.now()
export const gc = globalThis.gc
export const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve))

export const noopClient = { send() {}, end() {}, cleanup() {} }
export const noopRes = { on() {} }

/** Options both implementations get; `extra` overrides. */
export function makeService(extra = {}) {
  return createChatRunService({
    createSseResponse: () => noopClient,
    createSseErrorPayload: (code, message, init) => ({ error: { code, message, ...init } }),
    ...extra,
  })
}

// 256 deterministic ASCII deltas of 48 chars: `{"type":"text_delta","delta":"<48>"}` is 80 bytes of JSON.
const WORDS = [
  'the',
  'agent',
  'reads',
  'file',
  'and',
  'writes',
  'a',
  'patch',
  'to',
  'src',
  'index',
  'then',
  'runs',
  'tests',
  'ok',
  'next',
]
export const DELTAS = Array.from({ length: 256 }, (_, i) => {
  let s = ''
  let x = (i * 2654435761) >>> 0
  while (s.length < 48) {
    s += WORDS[x & 15] + ' '
    x = (x * 1103515245 + 12345) >>> 0
  }
  return s.slice(0, 48)
})
export const EVENT = 'agent'
export const deltaData = (i) => ({ type: 'text_delta', delta: DELTAS[i & 255] })

export function report(scenario, metrics) {
  const pattern = PATTERNS.includes(patternArg) ? patternArg : undefined
  process.stdout.write(JSON.stringify({ scenario, impl, pattern, quick, ...metrics }) + '\n')
}
