// `npm start`: builds the addon, then runs the example daemon (examples/server.mjs) in a way that a
// supervisor can stop by signalling only the process it started.
//
//   npm start                       build (npm run build), then serve; Ctrl-C stops it
//   START_BUILD=if-stale npm start  skip the build when the addon is newer than every Rust source
//   START_BUILD=never npm start     never build (the addon must exist)
//   (the server's own variables pass through: PORT, RUNS_LOG_DIR, AGENT_LINES, DEMO_RUN)
//
// Why this file: npm runs a script as `sh -c <script>`, and on SIGTERM/SIGINT npm forwards the
// signal to that `sh` only. With the old `npm run build && node examples/server.mjs`, `sh` died of
// it and the server kept running with PPID 1, holding its port and its agents. Here:
//   - SIGINT, SIGTERM and SIGHUP that reach this process are passed on to the server (SIGHUP as
//     SIGTERM), whose handler runs `runs.shutdownActive()` and exits; this process then exits with
//     the server's status;
//   - when this process is re-parented (npm's `sh` died: the signal never reached us), it sends the
//     server SIGTERM itself (examples/supervisor.mjs);
//   - a server that has not exited 8 s after being asked to is killed.
// The server also watches its own parent, so it stops if this process is killed outright.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { exitWithParent } from '../examples/supervisor.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const SERVER = path.join(ROOT, 'examples', 'server.mjs')
const ADDON = /^chat-run-service\..+\.node$/
const STOP_TIMEOUT_MS = 8000

/** Newest mtime (ms) among the files under `dir` that `keep` accepts; skips build output. */
function newestUnder(dir, keep) {
  let newest = { mtimeMs: 0, file: null }
  let entries
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true })
  } catch {
    return newest
  }
  for (const entry of entries) {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name === 'target' || entry.name === 'node_modules' || entry.name.startsWith('.')) continue
      const inner = newestUnder(file, keep)
      if (inner.mtimeMs > newest.mtimeMs) newest = inner
    } else if (keep(entry.name)) {
      const { mtimeMs } = fs.statSync(file)
      if (mtimeMs > newest.mtimeMs) newest = { mtimeMs, file }
    }
  }
  return newest
}

/**
 * Whether the addon in the repo root is newer than every Rust source and Cargo file (then
 * `npm run build` would rebuild nothing). `binary` is the newest `chat-run-service.*.node` there.
 * @returns {{ fresh: boolean, binary: string | null, newestSource: string | null }}
 */
export function addonFreshness(root = ROOT) {
  // only the root's own .node files (what `npm run build` writes), not dist/ or npm/
  const built = fs
    .readdirSync(root)
    .filter((name) => ADDON.test(name))
    .map((name) => ({ file: path.join(root, name), mtimeMs: fs.statSync(path.join(root, name)).mtimeMs }))
    .sort((a, b) => b.mtimeMs - a.mtimeMs)[0]
  const isSource = (name) => name.endsWith('.rs') || name === 'Cargo.toml' || name === 'Cargo.lock'
  let source = { mtimeMs: 0, file: null }
  for (const part of ['src', 'crates']) {
    const inner = newestUnder(path.join(root, part), isSource)
    if (inner.mtimeMs > source.mtimeMs) source = inner
  }
  for (const name of ['Cargo.toml', 'Cargo.lock', 'build.rs']) {
    try {
      const { mtimeMs } = fs.statSync(path.join(root, name))
      if (mtimeMs > source.mtimeMs) source = { mtimeMs, file: path.join(root, name) }
    } catch {
      // not there
    }
  }
  return {
    fresh: built !== undefined && built.mtimeMs > source.mtimeMs,
    binary: built?.file ?? null,
    newestSource: source.file,
  }
}

const say = (message) => console.error(`[npm start] ${message}`)
const exitCodeOf = (code, signal) => code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)

/** Runs `npm run build`; resolves with its exit code. `stop(signal)` ends it early. */
function build() {
  const posix = process.platform !== 'win32'
  // Its own process group on POSIX, so a stop reaches npm, napi and cargo at once.
  const child = spawn('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit', detached: posix, shell: !posix })
  const done = new Promise((resolve) => {
    child.once('error', (err) => {
      say(`could not run npm run build: ${err.message}`)
      resolve(1)
    })
    child.once('exit', (code, signal) => resolve(exitCodeOf(code, signal)))
  })
  const stop = (signal) => {
    try {
      if (posix && child.pid) process.kill(-child.pid, signal)
      else child.kill(signal)
    } catch {
      // already gone
    }
  }
  return { done, stop }
}

async function main() {
  let current = null // { stop(signal) } of the build or the server
  let stopping = null
  const stop = (signal, why) => {
    if (stopping) return
    stopping = signal
    if (why) say(why)
    current?.stop(signal)
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => stop(signal === 'SIGHUP' ? 'SIGTERM' : signal))
  }
  // EXIT_WITH_PARENT=0: started detached on purpose (`nohup npm start &` from a script that ends).
  if (process.env.EXIT_WITH_PARENT !== '0') {
    exitWithParent((reason) => stop('SIGTERM', `${reason}: stopping the example daemon`))
  }

  const mode = process.env.START_BUILD ?? 'always'
  if (!['always', 'if-stale', 'never'].includes(mode)) {
    say(`START_BUILD must be always, if-stale or never (got ${JSON.stringify(mode)})`)
    process.exit(2)
  }
  const freshness = addonFreshness()
  if (mode === 'never' || (mode === 'if-stale' && freshness.fresh)) {
    if (!freshness.binary) {
      say('no chat-run-service.*.node in the repo root: run npm run build (or START_BUILD=always)')
      process.exit(1)
    }
    say(`build skipped (START_BUILD=${mode}): ${path.relative(ROOT, freshness.binary)}`)
  } else {
    const job = build()
    current = job
    const code = await job.done
    current = null
    if (stopping) process.exit(exitCodeOf(null, stopping))
    if (code !== 0) process.exit(code)
  }

  const server = spawn(process.execPath, [SERVER], { cwd: ROOT, stdio: 'inherit', env: process.env })
  current = {
    stop(signal) {
      server.kill(signal)
      setTimeout(() => {
        say(`the server did not exit ${STOP_TIMEOUT_MS} ms after ${signal}: SIGKILL`)
        server.kill('SIGKILL')
      }, STOP_TIMEOUT_MS).unref()
    },
  }
  if (stopping) current.stop(stopping) // a signal that came while the build finished
  server.once('error', (err) => {
    say(`could not start the server: ${err.message}`)
    process.exit(1)
  })
  server.once('exit', (code, signal) => process.exit(exitCodeOf(code, signal)))
}

const invokedDirectly = (() => {
  try {
    return (
      process.argv[1] != null && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url))
    )
  } catch {
    return false
  }
})()
if (invokedDirectly) await main()
