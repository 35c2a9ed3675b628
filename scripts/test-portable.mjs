#!/usr/bin/env node
// The vitest suite on any platform: `node scripts/test-portable.mjs [vitest args]` is `vitest run`.
// Tests that need Linux (/proc, process groups, pid namespaces, Debian's chromium) or a POSIX shell
// skip themselves where they cannot run (`it.skipIf(notLinux)` / `describe.skipIf(...)`, see
// __test__/helpers/platform.ts), so nothing is excluded here. Kept for callers of the old name.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs')
const result = spawnSync(process.execPath, [vitest, 'run', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' })
process.exit(result.status ?? 1)
