// Starting examples/agent.cjs as a run's child, the way a daemon wires an agent process to
// chat-run-service. Shared by examples/server.mjs and examples/demo.mjs.
import { spawn } from 'node:child_process'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'

const AGENT_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'agent.cjs')

/**
 * Spawns the agent for `run` (it prints `lines` lines, one every `intervalMs`), emits each of its
 * stdout/stderr lines as a `stdout`/`stderr` event and finishes the run when the agent closes.
 * Returns the promise `runs.start(run, starter)` expects: it rejects if the spawn fails, which
 * start() turns into fail(AGENT_EXECUTION_FAILED).
 */
export function startAgent(runs, run, { lines, intervalMs }) {
  return new Promise((resolve, reject) => {
    // detached: the agent leads its own process group, so cancel/shutdown can signal the
    // agent and every grandchild it started at once (and Ctrl-C in this terminal does not).
    const child = spawn(process.execPath, [AGENT_SCRIPT, String(lines), String(intervalMs)], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    run.child = child
    run.childPid = child.pid ?? null
    run.processGroupId = child.pid ?? null
    run.status = 'running'
    // emit() has no terminal guard (as upstream's): a line the pipe still held when a cancel gave
    // its verdict would follow the 'end' record, so the host checks, as a daemon must.
    const emitLine = (event, line) => {
      if (!runs.isTerminal(run.status)) runs.emit(run, event, { line })
    }
    readline.createInterface({ input: child.stdout }).on('line', (line) => emitLine('stdout', line))
    readline.createInterface({ input: child.stderr }).on('line', (line) => emitLine('stderr', line))
    child.once('error', reject)
    child.once('close', (code, signal) => {
      runs.finish(run, code === 0 ? 'succeeded' : run.cancelRequested ? 'canceled' : 'failed', code, signal)
      resolve()
    })
  })
}
