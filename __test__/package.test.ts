// Installed as a user would: scripts/pack-install-test.sh packs the main package and the
// linux-x64-gnu platform package (laid out by `napi create-npm-dirs` + `napi artifacts`), installs
// both tarballs into a fresh project with no Rust toolchain on PATH, runs the seed suite there
// against `import ... from 'chat-run-service'`, and compiles a daemon-shaped consumer under
// `tsc --strict` against the shipped index.d.ts. It reuses the .node `npm run build` made.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from './helpers'

const script = path.join(ROOT, 'scripts', 'pack-install-test.sh')
const builtBinary = path.join(ROOT, 'chat-run-service.linux-x64-gnu.node')
const TIMEOUT_MS = 180_000

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/** What `npm pack` + install need here; each missing one is a reason to skip. */
function missingPrerequisites(): string[] {
  const missing: string[] = []
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    missing.push(`runs on linux x64 only (the linux-x64-gnu package), not ${process.platform} ${process.arch}`)
  }
  for (const command of ['bash', 'npm', 'tar']) if (!onPath(command)) missing.push(`${command} is not on PATH`)
  if (!fs.existsSync(path.join(ROOT, 'node_modules', '.bin', 'napi')))
    missing.push('node_modules/.bin/napi missing (npm ci)')
  if (!fs.existsSync(builtBinary)) missing.push(`${path.basename(builtBinary)} missing (npm run build)`)
  return missing
}

describe('installed as a user would (npm pack, fresh project, no Rust on PATH)', () => {
  it(
    'the packed main and linux-x64-gnu packages pass the seed suite and a strict TypeScript consumer',
    (ctx) => {
      const missing = missingPrerequisites()
      if (missing.length > 0) ctx.skip(`npm pack prerequisites missing: ${missing.join('; ')}`)

      const env: NodeJS.ProcessEnv = { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' }
      const result = spawnSync('bash', [script], { cwd: ROOT, encoding: 'utf8', env, timeout: TIMEOUT_MS - 10_000 })
      const output = `${result.stdout ?? ''}${result.stderr ?? ''}`
      if (result.status === 77) ctx.skip(output.match(/^SKIP: .*$/m)?.[0] ?? 'pack-install-test.sh skipped')
      expect(result.error, output).toBeUndefined()
      expect(result.status, output).toBe(0)

      // The main tarball ships the JS, the types and no binary; the binary came from the platform package.
      expect(output).toMatch(/package\/loader\.js/)
      expect(output).toMatch(/package\/chat-run-service\.linux-x64-gnu\.node/)
      expect(output).toMatch(
        /loaded: \S*\/node_modules\/chat-run-service-linux-x64-gnu\/chat-run-service\.linux-x64-gnu\.node/,
      )
      // The seed suite ran and passed there.
      expect(output).toMatch(/Tests\s+\d+ passed \(\d+\)/)
      expect(output).not.toMatch(/Tests\s+.*failed/)
      expect(output).toMatch(/tsc --strict .*\n.*passed/)
    },
    TIMEOUT_MS,
  )
})
