// Type-level tests of the hand-written index.d.ts: tsc --strict must accept a daemon-shaped consumer,
// and must reject a file that misuses the API (so this check is able to fail).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, useTempDirs } from './helpers'

// tsc's own entry point run by this Node (not the node_modules/.bin shim, which on Windows is a .cmd
// that spawnSync cannot start without a shell).
const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const TSC_TIMEOUT_MS = 120_000

function runTsc(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [tsc, ...args], { cwd: ROOT, encoding: 'utf8', timeout: TSC_TIMEOUT_MS })
  if (result.error) throw result.error
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` }
}

describe('hand-written TypeScript declarations', () => {
  const tempDir = useTempDirs('chat-run-service-types-')

  it(
    'index.d.ts compiles a daemon-shaped consumer under tsc --strict',
    () => {
      const { status, output } = runTsc(['-p', path.join('__test__', 'types', 'tsconfig.json')])
      expect(status, `tsc reported:\n${output}`).toBe(0)
    },
    TSC_TIMEOUT_MS,
  )

  it(
    'tsc rejects a consumer that misuses the package types',
    () => {
      const dir = tempDir()
      const indexSpecifier = path.relative(dir, path.join(ROOT, 'index.js')).split(path.sep).join('/')
      fs.writeFileSync(
        path.join(dir, 'bad.ts'),
        [
          `import { createChatRunService } from '${indexSpecifier}';`,
          `const runs = createChatRunService({ createSseResponse: () => ({ send() {}, end() {}, cleanup() {} }), createSseErrorPayload: () => ({}) });`,
          `const run = runs.create({ projectId: 'p' });`,
          `export const bad: number = run.status; // deliberate error: a status is not a number`,
          '',
        ].join('\n'),
      )
      fs.writeFileSync(
        path.join(dir, 'tsconfig.json'),
        JSON.stringify({
          extends: path.join(ROOT, '__test__', 'types', 'tsconfig.json'),
          compilerOptions: { typeRoots: [path.join(ROOT, 'node_modules', '@types')] },
          files: ['bad.ts'],
        }),
      )
      const { status, output } = runTsc(['-p', path.join(dir, 'tsconfig.json')])
      expect(status, `tsc unexpectedly accepted bad.ts:\n${output}`).not.toBe(0)
      // It must fail on the deliberate error, not on a broken setup (e.g. an unresolved import).
      expect(output).toMatch(/bad\.ts\(4,\d+\): error TS2322/)
      expect(output).not.toMatch(/error TS(2307|2792|5083|6053)/)
    },
    TSC_TIMEOUT_MS,
  )
})
