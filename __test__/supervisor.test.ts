// `npm start` under a supervisor (systemd, `docker stop`, a process manager): the supervisor signals
// only the process it started, here npm. Within 10 s nothing of that process tree may be left: not
// npm's `sh`, not scripts/start.mjs, not the example server, not the agent of a live run. The server
// must still go through `runs.shutdownActive()` (the run's log ends with its 'end' record).
//
// Linux only (describe.skipIf(notLinux)): the tree is read from /proc (parent pid, process group,
// start time, state). It runs the addon already in the repo root (`START_BUILD=if-stale`): when that
// is older than the Rust sources the test skips rather than rebuild it under the other test files.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { addonFreshness } from '../scripts/start.mjs'
import { notLinux, ROOT, waitForValue } from './helpers'

interface Proc {
  pid: number
  ppid: number
  pgid: number
  state: string
  start: string
}

/** /proc/<pid>/stat, or null when the process is gone. The command name may hold spaces and ')'. */
function stat(pid: number): Proc | null {
  let text: string
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  // after the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
  // stime cutime cstime priority nice num_threads itrealvalue starttime
  return { pid, state: rest[0], ppid: Number(rest[1]), pgid: Number(rest[2]), start: rest[19] }
}

function allProcs(): Proc[] {
  return fs
    .readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => stat(Number(name)))
    .filter((p): p is Proc => p !== null)
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
  } catch {
    return ''
  }
}

/** `root` and every process below it, each with its start time (so a reused pid is not mistaken). */
function tree(root: number): Proc[] {
  const procs = allProcs()
  const found = procs.filter((p) => p.pid === root)
  for (let i = 0; i < found.length; i++) {
    for (const p of procs) if (p.ppid === found[i].pid && !found.includes(p)) found.push(p)
  }
  return found
}

/** Still running: same start time, not a zombie. */
function alive(p: Proc): boolean {
  const now = stat(p.pid)
  return now !== null && now.start === p.start && now.state !== 'Z'
}

interface Started {
  npm: ChildProcess
  output: () => string
  /** npm exited and every holder of its stdout/stderr pipes (the server inherits them) closed them */
  closed: Promise<void>
  url: string
  logDir: string
}

const started: Started[] = []
const recorded: Proc[] = []

afterEach(() => {
  for (const { npm, logDir } of started.splice(0)) {
    try {
      if (npm.pid) process.kill(-npm.pid, 'SIGKILL') // its process group (npm, sh, start.mjs, server)
    } catch {
      // group already empty
    }
    fs.rmSync(logDir, { recursive: true, force: true })
  }
  for (const p of recorded.splice(0)) {
    if (!alive(p)) continue
    try {
      process.kill(p.pid, 'SIGKILL') // an agent leads a group of its own
    } catch {
      // gone meanwhile
    }
  }
})

/** Starts `npm start` the way a supervisor does: its own process group, no terminal. */
async function npmStart(): Promise<Started> {
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'crs-supervisor-'))
  const npm = spawn('npm', ['start'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PORT: '0', DEMO_RUN: '0', START_BUILD: 'if-stale', RUNS_LOG_DIR: logDir },
  })
  let text = ''
  npm.stdout?.on('data', (chunk) => (text += String(chunk)))
  npm.stderr?.on('data', (chunk) => (text += String(chunk)))
  const closed = new Promise<void>((resolve) => npm.once('close', () => resolve()))
  const entry: Started = { npm, output: () => text, closed, url: '', logDir }
  started.push(entry)
  entry.url = await waitForValue(
    `npm start to listen (output so far: ${JSON.stringify(text)})`,
    () => /example daemon on (http:\/\/127\.0\.0\.1:\d+)\//.exec(text)?.[1],
    15_000,
  )
  return entry
}

describe.skipIf(notLinux)('npm start under a supervisor', () => {
  it.for(['SIGTERM', 'SIGINT'] as const)(
    '%s to the npm process only: within 10 s no process of its tree is left, and shutdownActive() ran',
    { timeout: 40_000 },
    async (signal, ctx) => {
      const freshness = addonFreshness()
      if (!freshness.fresh) {
        ctx.skip(`the addon is older than ${freshness.newestSource ?? 'the Rust sources'}: npm run build first`)
      }
      const { npm, output, closed, url, logDir } = await npmStart()
      const npmPid = npm.pid as number

      // A live run: its agent (examples/agent.cjs) is a grandchild in a process group of its own.
      const reply = await fetch(`${url}/api/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ lines: 1000 }),
      })
      const { runId } = (await reply.json()) as { runId: string }
      const procs = await waitForValue('the agent process', () => {
        const t = tree(npmPid)
        return t.some((p) => cmdline(p.pid).includes('agent.cjs')) ? t : null
      })
      recorded.push(...procs)
      const names = procs.map((p) => cmdline(p.pid))
      expect(names.some((c) => c.includes('examples/server.mjs'))).toBe(true)
      expect(names.some((c) => c.includes('scripts/start.mjs'))).toBe(true)

      const t0 = Date.now()
      process.kill(npmPid, signal)
      const leftover = () => [
        ...procs.filter(alive),
        ...allProcs().filter((p) => p.pgid === npmPid && p.state !== 'Z' && !procs.some((q) => q.pid === p.pid)),
      ]
      let left = leftover()
      while (left.length > 0 && Date.now() - t0 < 10_000) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        left = leftover()
      }
      const described = left.map((p) => `${p.pid} (${cmdline(p.pid)})`)
      expect(described, `still running ${Date.now() - t0} ms after ${signal}:\n${output()}`).toEqual([])

      // The server shut down through runs.shutdownActive(): the run was canceled and its log closed.
      // (All its output is read once the pipes it shared with npm are closed.)
      await closed
      expect(output()).toContain('runs.shutdownActive() for 1 active run(s)')
      const log = fs
        .readFileSync(path.join(logDir, runId, 'events.jsonl'), 'utf8')
        .trim()
        .split('\n')
      expect(JSON.parse(log[log.length - 1])).toMatchObject({ event: 'end', data: { status: 'canceled' } })
    },
  )
})
