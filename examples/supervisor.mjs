// Keeping the example daemon stoppable by whatever started it.
//
// A supervisor (systemd, `docker stop`, a process manager, a terminal) stops a service by signalling
// the process it started. When that process is a wrapper (`npm start` runs `sh -c <script>`), the
// signal may never reach the server: npm forwards SIGTERM/SIGINT to its `sh`, `sh` dies of it, and
// the server below it is re-parented (PPID 1 or a subreaper) and keeps running, holding its port and
// its agents. `exitWithParent` notices that re-parenting and asks for a normal shutdown.
//
// It compares `process.ppid` with the value it had at start, every `intervalMs`; a process started
// by PID 1 directly (a container's entry point, a systemd unit) keeps PPID 1 and is never affected.
// The timer is unref'd: it never keeps the process alive by itself.

/**
 * Calls `onOrphaned(reason)` once, when this process's parent exits (the process is re-parented).
 * Returns a function that stops watching.
 * @param {(reason: string) => void} onOrphaned
 * @param {{ intervalMs?: number }} [opts]
 * @returns {() => void}
 */
export function exitWithParent(onOrphaned, { intervalMs = 250 } = {}) {
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent) return
    clearInterval(timer)
    onOrphaned(`parent process ${parent} exited (now re-parented to ${process.ppid})`)
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
