// Real processes: what /proc says about pids, groups and open descriptors (Linux only), spawning
// shell scripts and always reaping them, and running Node scripts synchronously.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncOptionsWithStringEncoding } from 'node:child_process'
import fs from 'node:fs'
import { afterAll, afterEach } from 'vitest'
import { waitFor } from './wait'

// --- /proc (Linux) -----------------------------------------------------------------------------

/** Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]. */
export function statFields(pid: number | 'self'): string[] | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

/** True when the pid exists and is neither a zombie nor dead. */
export function pidAlive(pid: number): boolean {
  const fields = statFields(pid)
  return fields !== null && fields[0] !== 'Z' && fields[0] !== 'X'
}

/** Live (non-zombie) members of a process group. */
export function groupMembers(pgid: number): number[] {
  const members: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const fields = statFields(Number(entry))
    if (fields && Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') {
      members.push(Number(entry))
    }
  }
  return members
}

/** Does the group still have a live member? Zombies count as dead (init may reap them slowly). */
export function groupAlive(pgid: number): boolean {
  return groupMembers(pgid).length > 0
}

/** kill(-pgid, 0) succeeds: the group exists (zombies included). */
export function groupSignalable(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw err
  }
}

/** This process's own process group. */
export function ownGroup(): number {
  const fields = statFields('self')
  if (fields === null) throw new Error('/proc/self/stat is unreadable (not Linux?)')
  return Number(fields[2])
}

/** Number of this process's descriptors whose target satisfies `matches`. */
function openFds(matches: (target: string) => boolean): number {
  let n = 0
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (matches(fs.readlinkSync(`/proc/self/fd/${fd}`))) n++
    } catch {
      /* the descriptor was closed meanwhile */
    }
  }
  return n
}

/** Number of this process's descriptors open on `file`. */
export const openFdsOn = (file: string): number => openFds((target) => target === file)

/** Number of this process's descriptors open on anything under `dir`. */
export const openFdsUnder = (dir: string): number => openFds((target) => target.startsWith(dir))

/** Sends a signal, ignoring ESRCH (already gone). */
export function killQuietly(target: number, signal: NodeJS.Signals): void {
  try {
    process.kill(target, signal)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

// --- spawning and reaping ------------------------------------------------------------------------

/** A started `sh -c` child: its pid, a promise of its exit, and what it printed so far. */
export type Tracked = ChildProcess & { pid: number; exited: Promise<void>; out: () => string }

export interface ProcessRegistry {
  /** Every pid started (leaders and the grandchildren they printed), for a final leak check. */
  everStarted: Set<number>
  /** Starts `sh -c script`; `detached` makes it the leader of a new process group. */
  start(script: string, options: { detached: boolean }): Tracked
  /**
   * Reads `n` pids the script printed with `echo $!`, one per line. `loose` ones (in a group this
   * registry does not own) are killed by pid after the test.
   */
  grandchildren(child: Tracked, n: number, options?: { loose?: boolean }): Promise<number[]>
}

/**
 * Call at the top of a file. Only what this registry started is ever signalled: after each test the
 * groups it created (only while a member lives, never 0, 1 or this process's group) and loose pids
 * get SIGKILL, and every child's exit is awaited; after all tests any started pid still alive gets
 * SIGKILL as a last line of defence.
 */
export function useProcessRegistry(): ProcessRegistry {
  const everStarted = new Set<number>()
  let children: Tracked[] = []
  let groups = new Set<number>()
  let loosePids = new Set<number>()

  afterEach(async () => {
    if (children.length === 0) return // nothing started (or skipped: off Linux there is no /proc)
    const own = ownGroup()
    for (const pgid of groups) {
      if (pgid >= 2 && pgid !== own && pgid !== process.pid && groupMembers(pgid).length > 0) {
        killQuietly(-pgid, 'SIGKILL')
      }
    }
    for (const pid of loosePids) {
      if (pid >= 2 && pid !== process.pid && pidAlive(pid)) killQuietly(pid, 'SIGKILL')
    }
    await Promise.all(children.map((child) => child.exited))
    children = []
    groups = new Set()
    loosePids = new Set()
  })

  afterAll(() => {
    for (const pid of everStarted) {
      if (pid >= 2 && pid !== process.pid && pidAlive(pid)) killQuietly(pid, 'SIGKILL')
    }
  })

  function start(script: string, { detached }: { detached: boolean }): Tracked {
    const child = spawn('sh', ['-c', script], { detached, stdio: ['ignore', 'pipe', 'inherit'] }) as Tracked
    if (typeof child.pid !== 'number') throw new Error('spawn failed')
    let out = ''
    child.stdout!.setEncoding('utf8')
    child.stdout!.on('data', (chunk: string) => {
      out += chunk
    })
    child.out = () => out
    child.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve()
      else child.once('exit', () => resolve())
    })
    everStarted.add(child.pid)
    children.push(child)
    if (detached) groups.add(child.pid)
    else loosePids.add(child.pid)
    return child
  }

  async function grandchildren(child: Tracked, n: number, { loose = false } = {}): Promise<number[]> {
    const printed = () =>
      child
        .out()
        .split('\n')
        .filter((line) => /^\d+$/.test(line))
    if (!(await waitFor(() => printed().length >= n, 5000))) {
      throw new Error(`script printed ${JSON.stringify(child.out())}, expected ${n} pids`)
    }
    const pids = printed().slice(0, n).map(Number)
    for (const pid of pids) {
      everStarted.add(pid)
      if (loose) loosePids.add(pid)
    }
    return pids
  }

  return { everStarted, start, grandchildren }
}

// --- Node scripts --------------------------------------------------------------------------------

/** Runs this Node binary with `args` and waits for it; stdout and stderr come back as strings. */
export function runNodeSync(args: string[], options: Omit<SpawnSyncOptionsWithStringEncoding, 'encoding'> = {}) {
  return spawnSync(process.execPath, args, { encoding: 'utf8', ...options })
}
