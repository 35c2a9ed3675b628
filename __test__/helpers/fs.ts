// Files: temporary directories that are removed after each test, paths of the repository, and the
// lines of a run's JSONL log.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach } from 'vitest'
import * as binding from '../../loader.js'

/** The repository root (where index.js, loader.js and package.json are). */
export const ROOT = path.resolve(__dirname, '..', '..')

/** `__test__/fixtures/<name>`: scripts the tests run in a process of their own. */
export function fixture(name: string): string {
  return path.join(ROOT, '__test__', 'fixtures', name)
}

/** Removes a directory tree, retrying briefly while a log writer still holds a file in it. */
export function removeDir(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 })
  } catch {
    /* best effort: a leftover under the OS temp dir is harmless */
  }
}

/**
 * Call at the top of a file or suite. Returns a function that makes a fresh directory under the OS
 * temp dir (its real path, so it compares equal to what /proc and the service report); every
 * directory it made is removed after each test.
 *
 * Before the removal, every service of this process hands its staged emits over and its log
 * writers write what is queued (the barrier the package's 'exit' listener uses): a record a test
 * emitted last (prepareRestart's, a finish's) must not recreate its run's directory after the
 * removal. Hooks run as a stack (vitest's default `sequence.hooks`): an `afterEach` registered
 * after this call runs before the removal.
 */
export function useTempDirs(prefix = 'chat-run-test-'): () => string {
  const made: string[] = []
  afterEach(async () => {
    if (made.length === 0) return
    // Staged emits reach the core in a microtask; one macrotask turn lets them.
    await new Promise((resolve) => setImmediate(resolve))
    binding.flushAllLogsBlocking()
    for (const dir of made.splice(0)) removeDir(dir)
  })
  return () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)))
    made.push(dir)
    return dir
  }
}

/** A run's state file under `runsLogDir`, parsed (SPEC LC-1). */
export function readStateFile(runsLogDir: string, id: string): any {
  return JSON.parse(fs.readFileSync(path.join(runsLogDir, id, 'state.json'), 'utf8'))
}

/** The non-empty lines of a file, or [] when it does not exist (yet). */
export function readLines(file: string): string[] {
  if (!fs.existsSync(file)) return []
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
}
