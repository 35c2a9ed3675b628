// Setup file (vitest.config.mjs `test.setupFiles`): after every test of every file, each run a
// service adopted in this file and still alive must have a read mirror that agrees with the core
// (lib/run.js `mirrorDrift`). A drift fails the test that was running, naming the run, the test
// that created it and the fields.
//
// lib/run.js is loaded with Node's own require, so this is the very module instance index.js
// uses (however vitest loads the test file's imports).
import { createRequire } from 'node:module'
import { afterEach, expect } from 'vitest'

interface MirrorCheck {
  observeRuns(fn: ((run: object) => void) | null): void
  mirrorDrift(run: object): string[]
}

const requireNode = createRequire(import.meta.url)
const { observeRuns, mirrorDrift } = requireNode('../../lib/run.js') as MirrorCheck

interface Seen {
  ref: WeakRef<object>
  createdIn: string
}

// Weak: the check never keeps a run (or its native slot) alive.
let seen: Seen[] = []

observeRuns((run) => {
  seen.push({ ref: new WeakRef(run), createdIn: expect.getState().currentTestName ?? '(outside a test)' })
})

afterEach(() => {
  const problems: string[] = []
  const alive: Seen[] = []
  for (const entry of seen) {
    const run = entry.ref.deref()
    if (run === undefined) continue
    let fields: string[]
    try {
      fields = mirrorDrift(run)
    } catch (err) {
      fields = [`(check threw: ${err instanceof Error ? err.message : String(err)})`]
    }
    // A drifted run fails this test only, not every later one.
    if (fields.length === 0) alive.push(entry)
    else
      problems.push(
        `run ${String((run as { id?: unknown }).id)} (created in "${entry.createdIn}"): ${fields.join(', ')}`,
      )
  }
  seen = alive
  expect(problems, `the facade's read mirror disagrees with the core:\n${problems.join('\n')}`).toEqual([])
})
