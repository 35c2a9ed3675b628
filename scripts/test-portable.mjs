#!/usr/bin/env node
// The vitest suite minus the tests that need Linux, for macOS and Windows (CI's test jobs there,
// or a maintainer on those machines). Run after the binary is in place (`npm run build`, or CI's
// downloaded artifact):  node scripts/test-portable.mjs [extra vitest args]
//
// Linux-only: whole files that drive real process groups through /proc or Debian's chromium, and
// single tests that count open descriptors through /proc/self/fd or expect /proc to refuse mkdir.
// Listed by file and by test-name prefix; a test added with such a dependency belongs here, or
// better in its file as `it.skipIf(process.platform !== 'linux')`.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const LINUX_ONLY_FILES = ['__test__/processes.test.ts', '__test__/browser.test.ts'];
export const LINUX_ONLY_TESTS = [
  'EMT-5/IMP-1: late events after finish are not written to the log', // /proc/self/fd
  'FIN-3/LOG-7: finish writes the end line and closes the log handle', // /proc/self/fd
  'IMP-2: drop closes the log and later emits are never persisted', // /proc/self/fd
  'IMP-6: throwing send/end in finish', // /proc/self/fd
  'LOG-8/IMP-1: late events do not leave descriptors open on the log files', // /proc/self/fd
  'a path under /proc', // Windows would create C:\proc
];
// POSIX but not Windows: excluded on win32 only.
export const POSIX_ONLY_TESTS = [
  'under ulimit -n 512', // sh -c 'ulimit -n'
];

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
// vitest matches -t against the full name (suites and test); keep every name none of these is in.
const excludedTests = [...LINUX_ONLY_TESTS, ...(process.platform === 'win32' ? POSIX_ONLY_TESTS : [])];
const namePattern = `^(?!.*(?:${excludedTests.map(escape).join('|')})).*$`;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = [
    path.join(root, 'node_modules', 'vitest', 'vitest.mjs'),
    'run',
    ...LINUX_ONLY_FILES.flatMap((file) => ['--exclude', file]),
    '--testNamePattern',
    namePattern,
    ...process.argv.slice(2),
  ];
  console.log(`[test-portable] excluding files: ${LINUX_ONLY_FILES.join(', ')}`);
  console.log(`[test-portable] excluding tests: ${excludedTests.join(' | ')}`);
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
