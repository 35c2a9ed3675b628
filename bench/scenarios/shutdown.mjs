// shutdown: 100 running runs, each with a real `sleep 60` child spawned detached (its own process
// group, processGroupId = its pid). Metric: ms until `shutdownActive({ graceMs: 200 })` resolves.
// Then every group is checked: a group counts as dead when no member is left in /proc, or only
// zombies (state Z) are; leftovers are SIGKILLed.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import { makeService, now, report, size } from './_common.mjs'

const RUNS = size(100)

/** pgid -> pids of live (non-zombie) members, from one scan of /proc. */
function liveGroups() {
  const groups = new Map()
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8')
    } catch {
      continue
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const state = fields[0]
    const pgrp = Number(fields[2])
    if (state === 'Z' || state === 'X') continue
    if (!groups.has(pgrp)) groups.set(pgrp, [])
    groups.get(pgrp).push(Number(name))
  }
  return groups
}

const svc = makeService({ shutdownGraceMs: 3000 })
const children = []
const runs = []
try {
  for (let i = 0; i < RUNS; i++) {
    const child = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' })
    children.push(child)
    await once(child, 'spawn')
    const run = svc.create({ projectId: 'bench', conversationId: `conv-${i}` })
    run.status = 'running'
    run.child = child
    run.childPid = child.pid
    run.processGroupId = child.pid
    runs.push(run)
  }
  const t0 = now()
  await svc.shutdownActive({ graceMs: 200 })
  const ms = now() - t0

  const groups = liveGroups()
  let alive = 0
  for (const child of children) if (groups.has(child.pid)) alive++
  const canceled = runs.filter((run) => run.status === 'canceled' && run.signal === 'SIGTERM').length
  const exitedBySigterm = children.filter((child) => child.signalCode === 'SIGTERM').length
  report('shutdown', {
    runs: RUNS,
    shutdownMs: ms,
    groupsAlive: alive,
    allDead: alive === 0,
    exitedBySigterm,
    verified: alive === 0 && canceled === RUNS,
  })
} finally {
  const groups = liveGroups()
  for (const child of children) {
    if (child.pid && groups.has(child.pid)) {
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
}
process.exit(0)
