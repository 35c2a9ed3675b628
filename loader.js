'use strict'
// Loads the native addon through the napi-rs generated `binding.js`, which tries, for the running
// platform/arch/libc, `./chat-run-service.<triple>.node` beside it (a local `npm run build`) and then
// the per-platform package `chat-run-service-<triple>` (what `npm install` brings in through the
// main package's optionalDependencies). The normal path is that one `require`.
//
// When nothing fits, binding.js throws a generic "Cannot find native binding". This file turns it
// into one error that names what it saw (platform, arch, libc), the package it looked for, the
// supported list and what to do. Everything below the `require` runs only on that failure path.
// It reads only `process` and `require`, so a test can run it with both replaced.

const PACKAGE_NAME = 'chat-run-service'

// The `<triple>` suffixes of the platform packages this version publishes: package.json
// `napi.targets`, in napi-rs naming (`__test__/loader.test.ts` checks the two agree).
const SUPPORTED = [
  'darwin-x64',
  'darwin-arm64',
  'win32-x64-msvc',
  'win32-arm64-msvc',
  'linux-x64-gnu',
  'linux-arm64-gnu',
  'linux-x64-musl',
  'linux-arm64-musl',
]

// binding.js's musl detection, in its order: /usr/bin/ldd, then the process report, then
// `ldd --version`; it falls back to glibc.
function detectLibc() {
  if (process.platform !== 'linux') return null
  try {
    return require('fs').readFileSync('/usr/bin/ldd', 'utf-8').includes('musl') ? 'musl' : 'glibc'
  } catch {
    // no readable ldd: ask the process report
  }
  let report = null
  try {
    if (process.report && typeof process.report.getReport === 'function') {
      process.report.excludeNetwork = true
      report = process.report.getReport()
    }
  } catch {
    report = null
  }
  if (report) {
    if (report.header && report.header.glibcVersionRuntime) return 'glibc'
    const isMuslObject = (f) => f.includes('libc.musl-') || f.includes('ld-musl-')
    return Array.isArray(report.sharedObjects) && report.sharedObjects.some(isMuslObject) ? 'musl' : 'glibc'
  }
  try {
    return require('child_process').execSync('ldd --version', { encoding: 'utf8' }).includes('musl') ? 'musl' : 'glibc'
  } catch {
    return 'glibc'
  }
}

// napi-rs's `<platform>-<arch>[-abi]` naming, as binding.js uses it.
function platformTriple(platform, arch, libc) {
  if (platform === 'win32') return `win32-${arch}-msvc`
  if (platform === 'linux') {
    const musl = libc === 'musl'
    if (arch === 'arm') return `linux-arm-${musl ? 'musleabihf' : 'gnueabihf'}`
    return `linux-${arch}-${musl ? 'musl' : 'gnu'}`
  }
  if (platform === 'android' && arch === 'arm') return 'android-arm-eabi'
  return `${platform}-${arch}`
}

// The first line of each load attempt binding.js recorded, oldest first (its error's `cause`
// chain holds the newest first).
function loadAttempts(error) {
  const lines = []
  for (let e = error && error.cause; e && lines.length < 12; e = e.cause) {
    lines.unshift(String(e.message || e).split('\n')[0])
  }
  return lines
}

function isInstalled(packageName) {
  try {
    require.resolve(`${packageName}/package.json`)
    return true
  } catch {
    return false
  }
}

// Whether this copy of the package names its platform packages (the published one does: they are
// added at publish time). A tarball packed from a checkout, or a git dependency, names none, so
// reinstalling cannot bring a binary. When package.json cannot be read, assume the published one.
function listsPlatformPackages() {
  try {
    const optional = require('./package.json').optionalDependencies
    return (
      typeof optional === 'object' &&
      optional !== null &&
      Object.keys(optional).some((name) => name.startsWith(`${PACKAGE_NAME}-`))
    )
  } catch {
    return true
  }
}

function noBinaryError(cause) {
  const { platform, arch } = process
  const libc = detectLibc()
  const triple = platformTriple(platform, arch, libc)
  const packageName = `${PACKAGE_NAME}-${triple}`
  const supported = SUPPORTED.includes(triple)
  const installed = supported && isInstalled(packageName)
  const why = !supported
    ? `${triple} is not a supported platform: no prebuilt binary is published for it.`
    : installed
      ? `${packageName} is installed but its binary could not be loaded (see the load attempts below).`
      : `${triple} is supported, but the package ${packageName} is not installed.`
  const attempts = loadAttempts(cause)
  const message = [
    `${PACKAGE_NAME}: no native binary fits this machine (platform ${platform}, arch ${arch}, libc ${libc || 'n/a (not Linux)'}).`,
    `It looked for the package ${packageName} (and for ./${PACKAGE_NAME}.${triple}.node beside binding.js).`,
    why,
    `Supported: ${SUPPORTED.join(', ')} (package ${PACKAGE_NAME}-<one of these>).`,
    'What to do:',
    ...(listsPlatformPackages()
      ? [
          `  - on a supported platform, install with optional dependencies enabled: \`npm install --include=optional\``,
          `    (not --omit=optional / --no-optional, no optional=false in .npmrc); if node_modules or the lockfile`,
          `    came from another OS or arch, delete node_modules and package-lock.json and install again;`,
        ]
      : [
          `  - this copy of ${PACKAGE_NAME} names no platform packages in its optionalDependencies (it was packed`,
          `    from a checkout or installed from git, not from the registry), so reinstalling brings no binary:`,
          `    put the ${PACKAGE_NAME}.${triple}.node built for this machine beside its binding.js;`,
        ]),
    `  - anywhere with a Rust toolchain: build from source with \`npm run build\` in a checkout of ${PACKAGE_NAME},`,
    `    which writes ./${PACKAGE_NAME}.${triple}.node beside binding.js.`,
    ...(attempts.length ? ['Load attempts:', ...attempts.map((line) => `  - ${line}`)] : []),
  ].join('\n')
  const error = new Error(message)
  error.code = 'ERR_CHAT_RUN_SERVICE_NO_BINARY'
  error.platform = platform
  error.arch = arch
  error.libc = libc
  error.packageName = packageName
  error.supported = SUPPORTED.slice()
  error.cause = cause
  return error
}

// Node refuses every native addon in this process (`--no-addons`, or the permission model
// without `--allow-addons`): the binary may be there, it cannot be loaded.
function addonsDisabled(error) {
  for (let e = error, depth = 0; e && depth < 12; e = e.cause, depth++) {
    if (e.code === 'ERR_DLOPEN_DISABLED' || /loading addons is disabled/i.test(String(e.message))) return true
  }
  return false
}

function addonsDisabledError(cause) {
  const error = new Error(
    [
      `${PACKAGE_NAME}: this Node process does not allow native addons, and ${PACKAGE_NAME} is one.`,
      'Node was started with --no-addons, or with the permission model (--permission, --experimental-permission)',
      'without --allow-addons. Start it without --no-addons, or add --allow-addons.',
    ].join('\n'),
  )
  error.code = 'ERR_CHAT_RUN_SERVICE_ADDONS_DISABLED'
  error.cause = cause
  return error
}

try {
  module.exports = require('./binding.js')
} catch (error) {
  // Only binding.js's own "nothing loaded" errors are about a missing binary.
  if (error && /^(Cannot find native binding|Failed to load native binding)/.test(error.message)) {
    throw addonsDisabled(error) ? addonsDisabledError(error) : noBinaryError(error)
  }
  throw error
}
