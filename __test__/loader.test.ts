// loader.js: when no native binary fits, importing the package throws ONE error that names the
// platform, arch and libc it saw, the package it looked for, the supported list and what to do.
// Forced two ways: (1) a child Node whose process.platform/arch (and /usr/bin/ldd, which is how
// binding.js tells musl from glibc) are faked before it requires the real index.js, so the real
// binding.js fails the real way; (2) loader.js run with its only inputs, `process` and `require`,
// replaced, to cover the branches a real machine cannot reach here.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, runNodeSync } from './helpers'

const loaderPath = path.join(ROOT, 'loader.js')

interface SeenError {
  threw: boolean
  message: string
  code?: string
  platform?: string
  arch?: string
  libc?: string | null
  packageName?: string
  supported?: string[]
}

/** Requires the real index.js in a child Node that reports the platform/arch/ldd it is given. */
function importOn(fake: { platform?: string; arch?: string; ldd?: string }): SeenError {
  const script = `
    const fake = ${JSON.stringify(fake)};
    if (fake.platform) Object.defineProperty(process, 'platform', { value: fake.platform });
    if (fake.arch) Object.defineProperty(process, 'arch', { value: fake.arch });
    if (fake.ldd !== undefined) {
      const fs = require('fs');
      const read = fs.readFileSync;
      fs.readFileSync = (file, ...rest) => (file === '/usr/bin/ldd' ? fake.ldd : read(file, ...rest));
    }
    let out;
    try {
      require(${JSON.stringify(path.join(ROOT, 'index.js'))});
      out = { threw: false, message: '' };
    } catch (e) {
      out = { threw: true, message: e.message, code: e.code, platform: e.platform, arch: e.arch,
              libc: e.libc, packageName: e.packageName, supported: e.supported };
    }
    process.stdout.write(JSON.stringify(out));
  `
  const env = { ...process.env }
  delete env.NAPI_RS_NATIVE_LIBRARY_PATH
  const result = runNodeSync(['-e', script], { cwd: ROOT, env, timeout: 30_000 })
  expect(result.status, result.stderr).toBe(0)
  return JSON.parse(result.stdout) as SeenError
}

// A checkout's package.json names no platform packages (they are added at publish time): the
// error then says that reinstalling brings no binary, instead of suggesting it.
const PUBLISHED = Object.keys(
  JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).optionalDependencies ?? {},
).some((name) => name.startsWith('chat-run-service-'))
const WHAT_TO_DO = [PUBLISHED ? /npm install --include=optional/ : /names no platform packages/, /npm run build/]

/**
 * An arch for which `chat-run-service.<suffix(arch)>.node` is NOT beside binding.js, so faking that
 * platform really finds nothing (a CI test job drops its own target's binary there).
 */
function archWithoutLocalBinary(suffix: (arch: string) => string): string {
  const arch = ['arm64', 'x64'].find((a) => !fs.existsSync(path.join(ROOT, `chat-run-service.${suffix(a)}.node`)))
  if (!arch)
    throw new Error(`both chat-run-service.${suffix('*')}.node binaries are present: cannot fake a missing one`)
  return arch
}

function expectOneActionableError(seen: SeenError, platform: string, arch: string, libc: string, pkg: string) {
  expect(seen.threw).toBe(true)
  expect(seen.code).toBe('ERR_CHAT_RUN_SERVICE_NO_BINARY')
  expect(seen.message).toContain(`platform ${platform}, arch ${arch}, libc ${libc}`)
  expect(seen.message).toContain(`It looked for the package ${pkg}`)
  expect(seen.message).toMatch(/Supported: darwin-x64, darwin-arm64, win32-x64-msvc, .*linux-arm64-musl/)
  for (const hint of WHAT_TO_DO) expect(seen.message).toMatch(hint)
  expect(seen.packageName).toBe(pkg)
}

describe('no binary fits: importing the package throws one actionable error', () => {
  it('an unsupported arch (linux riscv64, glibc) names riscv64, glibc and chat-run-service-linux-riscv64-gnu', () => {
    const seen = importOn({ platform: 'linux', arch: 'riscv64', ldd: 'GNU C Library' })
    expectOneActionableError(seen, 'linux', 'riscv64', 'glibc', 'chat-run-service-linux-riscv64-gnu')
    expect(seen.message).toContain('linux-riscv64-gnu is not a supported platform')
    expect(seen.libc).toBe('glibc')
  })

  it('an unsupported platform (freebsd x64) names it, with no libc', () => {
    const seen = importOn({ platform: 'freebsd', arch: 'x64' })
    expectOneActionableError(seen, 'freebsd', 'x64', 'n/a (not Linux)', 'chat-run-service-freebsd-x64')
    expect(seen.message).toContain('freebsd-x64 is not a supported platform')
  })

  it('musl, as binding.js detects it from /usr/bin/ldd, looks for chat-run-service-linux-<arch>-musl', () => {
    const arch = archWithoutLocalBinary((a) => `linux-${a}-musl`)
    const seen = importOn({ platform: 'linux', arch, ldd: '#!/bin/sh\n# musl libc\n' })
    expectOneActionableError(seen, 'linux', arch, 'musl', `chat-run-service-linux-${arch}-musl`)
    expect(seen.message).toContain(
      `linux-${arch}-musl is supported, but the package chat-run-service-linux-${arch}-musl is not installed`,
    )
    // binding.js really looked for the musl package: its attempt is listed.
    expect(seen.message).toMatch(
      new RegExp(`Load attempts:[\\s\\S]*Cannot find module 'chat-run-service-linux-${arch}-musl'`),
    )
  })

  it('a supported platform whose package is missing (macOS) says so', () => {
    const arch = archWithoutLocalBinary((a) => `darwin-${a}`)
    const seen = importOn({ platform: 'darwin', arch })
    expectOneActionableError(seen, 'darwin', arch, 'n/a (not Linux)', `chat-run-service-darwin-${arch}`)
    expect(seen.message).toContain(
      `darwin-${arch} is supported, but the package chat-run-service-darwin-${arch} is not installed`,
    )
  })

  it('Windows looks for the -msvc package', () => {
    const arch = archWithoutLocalBinary((a) => `win32-${a}-msvc`)
    const seen = importOn({ platform: 'win32', arch })
    expectOneActionableError(seen, 'win32', arch, 'n/a (not Linux)', `chat-run-service-win32-${arch}-msvc`)
  })

  it('the error is one Error, not a chain to dig through: binding.js’s error is only its cause', () => {
    const seen = importOn({ platform: 'linux', arch: 'ppc64', ldd: 'GNU' })
    expect(seen.message.startsWith('chat-run-service: no native binary fits this machine')).toBe(true)
    expect(seen.message).not.toMatch(/npm has a bug/)
  })
})

// ---------------------------------------------------------------------------------------------
// loader.js with `process` and `require` replaced
// ---------------------------------------------------------------------------------------------

interface FakeRequire {
  (id: string): unknown
  resolve: (id: string) => string
  calls: string[]
}

function bindingJsError(attempts: string[]): Error {
  // What the generated binding.js throws: the attempts hang off `cause`, newest first.
  const error = new Error('Cannot find native binding. npm has a bug related to optional dependencies.') as Error & {
    cause?: unknown
  }
  let chain: (Error & { cause?: unknown }) | undefined
  for (const message of attempts) {
    const e = new Error(message) as Error & { cause?: unknown }
    e.cause = chain
    chain = e
  }
  error.cause = chain
  return error
}

function runLoader(opts: {
  platform: string
  arch: string
  ldd?: string
  binding: () => unknown
  installed?: string[]
  report?: { header: Record<string, unknown>; sharedObjects: string[] }
  packageJson?: Record<string, unknown>
}): { exports?: unknown; error?: Error & Record<string, unknown>; require: FakeRequire } {
  const fakeRequire = ((id: string) => {
    fakeRequire.calls.push(id)
    if (id === './binding.js') return opts.binding()
    if (id === './package.json' && opts.packageJson) return opts.packageJson
    if (id === 'fs') {
      return {
        readFileSync: (file: string) => {
          if (file === '/usr/bin/ldd' && opts.ldd !== undefined) return opts.ldd
          throw Object.assign(new Error(`ENOENT: ${file}`), { code: 'ENOENT' })
        },
      }
    }
    if (id === 'child_process') return { execSync: () => 'ldd (GNU libc) 2.36' }
    throw new Error(`unexpected require(${id})`)
  }) as FakeRequire
  fakeRequire.calls = []
  fakeRequire.resolve = (id: string) => {
    const name = id.replace(/\/package\.json$/, '')
    if (opts.installed?.includes(name)) return `/app/node_modules/${id}`
    throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' })
  }
  const report = opts.report
  const fakeProcess = {
    platform: opts.platform,
    arch: opts.arch,
    env: {},
    report: report ? { excludeNetwork: false, getReport: () => report } : undefined,
  }
  const module = { exports: {} as unknown }
  const source = fs.readFileSync(loaderPath, 'utf8')
  const body = new Function('module', 'exports', 'require', 'process', '__filename', '__dirname', source)
  try {
    body(module, module.exports, fakeRequire, fakeProcess, loaderPath, ROOT)
    return { exports: module.exports, require: fakeRequire }
  } catch (error) {
    return { error: error as Error & Record<string, unknown>, require: fakeRequire }
  }
}

describe('loader.js with its inputs replaced', () => {
  it('the normal path is one require of binding.js, whose exports it passes through untouched', () => {
    const binding = { createService() {} }
    const { exports, error, require } = runLoader({ platform: 'linux', arch: 'x64', binding: () => binding })
    expect(error).toBeUndefined()
    expect(exports).toBe(binding)
    expect(require.calls).toEqual(['./binding.js'])
  })

  it('an installed package whose binary does not load (e.g. a too old glibc) is reported as such, with the attempts', () => {
    const { error } = runLoader({
      platform: 'linux',
      arch: 'arm64',
      ldd: 'GNU C Library (Debian GLIBC 2.12)',
      installed: ['chat-run-service-linux-arm64-gnu'],
      binding: () => {
        throw bindingJsError([
          "Cannot find module './chat-run-service.linux-arm64-gnu.node'",
          "/lib/aarch64-linux-gnu/libc.so.6: version `GLIBC_2.17' not found (required by chat-run-service.linux-arm64-gnu.node)",
        ])
      },
    })
    expect(error?.code).toBe('ERR_CHAT_RUN_SERVICE_NO_BINARY')
    expect(error?.message).toContain('platform linux, arch arm64, libc glibc')
    expect(error?.message).toContain('chat-run-service-linux-arm64-gnu is installed but its binary could not be loaded')
    expect(error?.message).toMatch(
      /Load attempts:\n {2}- Cannot find module '.\/chat-run-service\.linux-arm64-gnu\.node'\n {2}- .*GLIBC_2\.17' not found/,
    )
    expect((error as { cause?: unknown }).cause).toBeInstanceOf(Error)
  })

  it('a copy that names no platform packages (packed from a checkout) says reinstalling cannot help; a published one says how to reinstall', () => {
    const missing = () => {
      throw bindingJsError(["Cannot find module 'chat-run-service-linux-x64-gnu'"])
    }
    const base = { platform: 'linux', arch: 'x64', ldd: 'GNU C Library', binding: missing }
    const packed = runLoader({ ...base, packageJson: { name: 'chat-run-service' } })
    expect(packed.error?.message).toContain('names no platform packages in its optionalDependencies')
    expect(packed.error?.message).toContain('put the chat-run-service.linux-x64-gnu.node built for this machine beside')
    expect(packed.error?.message).not.toContain('--include=optional')
    const published = runLoader({
      ...base,
      packageJson: { optionalDependencies: { 'chat-run-service-linux-x64-gnu': '0.1.0' } },
    })
    expect(published.error?.message).toContain('npm install --include=optional')
    expect(published.error?.message).not.toContain('names no platform packages')
    // Both keep the way that always works.
    for (const { error } of [packed, published]) expect(error?.message).toContain('npm run build')
  })

  it('without a readable /usr/bin/ldd, libc comes from the process report, then `ldd --version`, as in binding.js', () => {
    const missing = () => {
      throw bindingJsError(["Cannot find module 'chat-run-service-linux-x64-musl'"])
    }
    const musl = runLoader({
      platform: 'linux',
      arch: 'x64',
      report: { header: {}, sharedObjects: ['/lib/ld-musl-x86_64.so.1'] },
      binding: missing,
    })
    expect(musl.error?.libc).toBe('musl')
    expect(musl.error?.packageName).toBe('chat-run-service-linux-x64-musl')
    const glibc = runLoader({
      platform: 'linux',
      arch: 'x64',
      report: { header: { glibcVersionRuntime: '2.36' }, sharedObjects: [] },
      binding: missing,
    })
    expect(glibc.error?.libc).toBe('glibc')
    // No report at all: `ldd --version` (GNU in the fake) decides.
    const noReport = runLoader({ platform: 'linux', arch: 'x64', binding: missing })
    expect(noReport.error?.libc).toBe('glibc')
    expect(noReport.require.calls).toContain('child_process')
  })

  it('errors that are not about a missing binary pass through unchanged', () => {
    const conflict = Object.assign(new Error('`__napiBindingTarget` is reserved'), {
      code: 'ERR_NAPI_BINDING_TARGET_CONFLICT',
    })
    const { error } = runLoader({
      platform: 'linux',
      arch: 'x64',
      binding: () => {
        throw conflict
      },
    })
    expect(error).toBe(conflict)
  })

  it('a Node process that refuses addons (--no-addons) gets its own error naming the flag, not a missing package', () => {
    const script = `try { require('./index.js') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`
    const result = runNodeSync(['--no-addons', '-e', script], { cwd: ROOT, timeout: 30_000 })
    const { code, message } = JSON.parse(result.stdout)
    expect(code).toBe('ERR_CHAT_RUN_SERVICE_ADDONS_DISABLED')
    expect(message).toContain('--no-addons')
    expect(message).toContain('--allow-addons')
    expect(message).not.toContain('is not installed')
  })

  it('the supported list is exactly package.json napi.targets', () => {
    const { error } = runLoader({
      platform: 'sunos',
      arch: 'x64',
      binding: () => {
        throw bindingJsError([])
      },
    })
    const napiSuffix: Record<string, string> = {
      'x86_64-apple-darwin': 'darwin-x64',
      'aarch64-apple-darwin': 'darwin-arm64',
      'x86_64-pc-windows-msvc': 'win32-x64-msvc',
      'aarch64-pc-windows-msvc': 'win32-arm64-msvc',
      'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
      'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
      'x86_64-unknown-linux-musl': 'linux-x64-musl',
      'aarch64-unknown-linux-musl': 'linux-arm64-musl',
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
    const expected = (pkg.napi.targets as string[]).map((t) => napiSuffix[t] ?? `unmapped:${t}`)
    expect([...((error?.supported ?? []) as string[])].sort()).toEqual([...expected].sort())
    expect(error?.message).toContain('sunos-x64 is not a supported platform')
  })
})

// Loading starts no thread: a daemon at its user's thread limit (RLIMIT_NPROC, a container's pids
// limit) still loads the package; the log writer thread the first logged run needs is the only
// one, and failing to start it is reported and counted (OBS-2), never fatal. Needs root (to run
// the child as another user: root is exempt from RLIMIT_NPROC) and util-linux's setpriv/prlimit.
const canLimitThreads =
  process.platform === 'linux' &&
  process.getuid?.() === 0 &&
  ['setpriv', 'prlimit'].every((tool) => spawnSync(tool, ['--version']).status === 0)

describe('loading under a thread limit', () => {
  it.skipIf(!canLimitThreads)(
    'with only the threads Node itself needs, the package loads and a logged run works (its writer failure reported)',
    () => {
      // A copy of the package that user 65534 can read, outside the suite's private temp dir.
      const copy = fs.mkdtempSync('/tmp/chat-run-nproc-')
      try {
        for (const name of ['package.json', 'index.js', 'loader.js', 'binding.js', 'lib']) {
          fs.cpSync(path.join(ROOT, name), path.join(copy, name), { recursive: true })
        }
        for (const name of fs.readdirSync(ROOT).filter((n) => n.endsWith('.node'))) {
          fs.copyFileSync(path.join(ROOT, name), path.join(copy, name))
        }
        const script = path.join(copy, 'probe.js')
        fs.writeFileSync(
          script,
          `console.log('start')
          const { createChatRunService } = require(${JSON.stringify(path.join(copy, 'index.js'))})
          console.log('loaded')
          const runs = createChatRunService({
            createSseResponse: () => ({ send() {}, end() {} }),
            createSseErrorPayload: (code, message) => ({ code, message }),
            runsLogDir: ${JSON.stringify(path.join(copy, 'runs'))},
          })
          const run = runs.create({ projectId: 'p' })
          runs.emit(run, 'agent', { n: 1 })
          runs.finish(run, 'succeeded', 0, null)
          runs.shutdownActive().then(() => console.log('done', run.status))
          `,
        )
        fs.mkdirSync(path.join(copy, 'runs'))
        fs.chmodSync(copy, 0o755)
        fs.chmodSync(path.join(copy, 'runs'), 0o777)
        // The fewest threads (processes of user 65534, this Node's included) with which a bare Node
        // starts and exits here: what the package may not add to at load.
        let floor = 0
        // (Below its floor a Node may hang rather than fail: each try is cut short.)
        for (let threads = 4; threads <= 64 && floor === 0; threads++) {
          if (spawnLimited(threads, ['-e', '0'], 2_000).status === 0) floor = threads
        }
        expect(floor).toBeGreaterThan(0)
        // Node's own start may need a thread more on one try than on another: a run counts only
        // when Node itself started ('start' printed); from then on everything is the package's.
        let out = ''
        for (let attempt = 0; attempt < 5 && !out.includes('start'); attempt++) {
          const r = spawnLimited(floor, [script], 10_000)
          out = `${r.stdout}${r.stderr}`
          if (out.includes('start')) expect({ status: r.status, signal: r.signal, out }).toMatchObject({ status: 0 })
        }
        expect(out).toContain('loaded')
        expect(out).toContain('done succeeded')
        // The one thread the package wants, the log writer's, was refused too: said, not fatal.
        expect(out).toMatch(/CHAT_RUN_LOG_ERROR.*could not start a writer thread/)
      } finally {
        fs.rmSync(copy, { recursive: true, force: true })
      }
    },
    120_000,
  )
})

/** Node as user 65534 with at most `threads` processes/threads for that user. */
function spawnLimited(threads: number, args: string[], timeout = 30_000) {
  return spawnSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', 'prlimit', `--nproc=${threads}`, process.execPath, ...args],
    { encoding: 'utf8', timeout },
  )
}
