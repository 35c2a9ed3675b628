#!/usr/bin/env bash
# Installs chat-run-service the way a daemon's user gets it, and proves it works there:
#   1. `npm pack` the main package (package.json "files": JS, types, no .node) and check its contents;
#   2. lay out the linux-x64-gnu platform package the way CI's publish job does
#      (`napi create-npm-dirs` + `napi artifacts`, in a scratch copy: `napi artifacts` deletes
#      root-level *.node) and `npm pack` it;
#   3. install both tarballs into a fresh temporary project, with no Rust toolchain on PATH;
#   4. run the seed suite there (__test__/runs.test.ts with '../src/runs.js' -> 'chat-run-service')
#      under vitest, and check which .node was loaded;
#   5. compile the daemon-shaped consumer (__test__/types/consumer.ts, import -> 'chat-run-service')
#      under `tsc --strict` against the shipped index.d.ts.
#
# It reuses an already built chat-run-service.linux-x64-gnu.node (`npm run build`), or the one
# named by PACK_TEST_BINARY. Runs on Linux x64 glibc only. Exit 0: passed; 77: skipped (a
# prerequisite is missing: the reason is printed on the line starting with SKIP); else failed.
# KEEP_PACK_TEST=1 keeps the scratch directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BINARY=chat-run-service
SUFFIX=linux-x64-gnu
TARGET=x86_64-unknown-linux-gnu
NODE_FILE="${PACK_TEST_BINARY:-$ROOT/$BINARY.$SUFFIX.node}"
T0=$(date +%s)

skip() {
  echo "SKIP: $*"
  exit 77
}
log() { printf '[pack-install %3ss] %s\n' "$(($(date +%s) - T0))" "$*"; }

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || skip "this test installs the linux-x64-gnu package; this machine is $(uname -s)-$(uname -m)"
if [ -r /usr/bin/ldd ] && grep -q musl /usr/bin/ldd; then skip "musl libc: the linux-x64-gnu package does not fit"; fi
command -v npm >/dev/null || skip "npm is not on PATH"
command -v tar >/dev/null || skip "tar is not on PATH"
[ -x "$ROOT/node_modules/.bin/napi" ] || skip "node_modules/.bin/napi missing: run npm ci"
[ -f "$NODE_FILE" ] || skip "$NODE_FILE missing: run npm run build first"

# Versions of the test tools: the ones the repo itself uses.
tool_version() { node -p "require('$ROOT/node_modules/$1/package.json').version"; }
VITEST_VERSION="$(tool_version vitest)"
TS_VERSION="$(tool_version typescript)"
TYPES_NODE_VERSION="$(tool_version @types/node)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/chat-run-service-pack-XXXXXX")"
if [ "${KEEP_PACK_TEST:-0}" = 1 ]; then echo "scratch dir kept: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK/tarballs" "$WORK/pkgroot" "$WORK/app"

# 1. the main package ------------------------------------------------------------------------
log "npm pack (main package)"
(cd "$ROOT" && npm pack --ignore-scripts --silent --pack-destination "$WORK/tarballs") >/dev/null
MAIN_TGZ="$(ls "$WORK"/tarballs/$BINARY-[0-9]*.tgz)"
tar -tzf "$MAIN_TGZ" | sort >"$WORK/main-files.txt"
sed 's/^/    /' "$WORK/main-files.txt"
for f in index.js index.d.ts loader.js binding.js binding.d.ts src/runs.js package.json; do
  grep -qx "package/$f" "$WORK/main-files.txt" || { echo "FAIL: main tarball lacks $f"; exit 1; }
done
if grep -q '\.node$' "$WORK/main-files.txt"; then echo "FAIL: main tarball ships a .node"; exit 1; fi

# 2. the platform package, laid out by the napi CLI in a scratch copy -------------------------
log "napi create-npm-dirs + napi artifacts ($TARGET only, scratch copy)"
node -e "
  const fs = require('fs');
  const pkg = JSON.parse(fs.readFileSync('$ROOT/package.json', 'utf8'));
  if (!pkg.napi.targets.includes('$TARGET')) throw new Error('$TARGET is not in napi.targets');
  pkg.napi.targets = ['$TARGET']; // CI has all eight artifacts; here only this one is built
  fs.writeFileSync('$WORK/pkgroot/package.json', JSON.stringify(pkg, null, 2));
"
mkdir -p "$WORK/pkgroot/artifacts/bindings-$TARGET"
cp "$NODE_FILE" "$WORK/pkgroot/artifacts/bindings-$TARGET/$BINARY.$SUFFIX.node"
"$ROOT/node_modules/.bin/napi" create-npm-dirs --cwd "$WORK/pkgroot" >/dev/null
"$ROOT/node_modules/.bin/napi" artifacts --cwd "$WORK/pkgroot" >/dev/null
(cd "$WORK/pkgroot/npm/$SUFFIX" && npm pack --ignore-scripts --silent --pack-destination "$WORK/tarballs") >/dev/null
PLATFORM_TGZ="$(ls "$WORK"/tarballs/$BINARY-$SUFFIX-*.tgz)"
tar -tzf "$PLATFORM_TGZ" | sort | sed 's/^/    /'
tar -tzf "$PLATFORM_TGZ" | grep -qx "package/$BINARY.$SUFFIX.node" || { echo "FAIL: platform tarball lacks the .node"; exit 1; }

# Neither package may run anything at install time.
for tgz in "$MAIN_TGZ" "$PLATFORM_TGZ"; do
  tar -xzOf "$tgz" package/package.json | node -e "
    const pkg = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    const bad = ['preinstall', 'install', 'postinstall', 'prepare'].filter((s) => pkg.scripts && pkg.scripts[s]);
    if (bad.length) { console.error('FAIL: ' + pkg.name + ' has install-time scripts: ' + bad); process.exit(1); }
  "
done

# 3. a fresh project, no Rust toolchain on PATH -------------------------------------------------
NO_RUST_PATH=""
IFS=: read -r -a path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
  [ -n "$d" ] || continue
  case "$d" in *.cargo* | *rustup*) continue ;; esac
  if [ -x "$d/cargo" ] || [ -x "$d/rustc" ]; then continue; fi
  NO_RUST_PATH="${NO_RUST_PATH:+$NO_RUST_PATH:}$d"
done
# A clean environment for the user's project: no Rust, no napi override, nothing of an outer vitest.
in_app() {
  (cd "$WORK/app" && env -u NAPI_RS_NATIVE_LIBRARY_PATH -u NODE_OPTIONS -u VITEST -u VITEST_MODE \
    -u VITEST_POOL_ID -u VITEST_WORKER_ID -u TEST -u NODE_ENV -u CARGO -u RUSTUP_HOME \
    PATH="$NO_RUST_PATH" "$@")
}
if in_app sh -c 'command -v cargo || command -v rustc'; then echo "FAIL: a Rust toolchain is still on PATH"; exit 1; fi

printf '{ "name": "daemon-install-test", "private": true, "version": "0.0.0" }\n' >"$WORK/app/package.json"
log "npm install (two tarballs + vitest@$VITEST_VERSION typescript@$TS_VERSION @types/node@$TYPES_NODE_VERSION), no cargo/rustc on PATH"
if ! in_app npm install --no-audit --no-fund --prefer-offline --ignore-scripts \
  "$MAIN_TGZ" "$PLATFORM_TGZ" "vitest@$VITEST_VERSION" "typescript@$TS_VERSION" "@types/node@$TYPES_NODE_VERSION" \
  >"$WORK/npm-install.log" 2>&1; then
  cat "$WORK/npm-install.log"
  if grep -Eq 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH' "$WORK/npm-install.log"; then
    skip "npm install could not reach the registry for vitest/typescript (offline?)"
  fi
  echo "FAIL: npm install"
  exit 1
fi
[ -d "$WORK/app/node_modules/$BINARY-$SUFFIX" ] || { echo "FAIL: platform package not installed"; exit 1; }
if find "$WORK/app/node_modules/$BINARY" -name '*.node' | grep -q .; then echo "FAIL: a .node inside the main package"; exit 1; fi

# 4. the seed suite, importing the package by name -----------------------------------------------
sed "s#'../src/runs.js'#'$BINARY'#" "$ROOT/__test__/runs.test.ts" >"$WORK/app/runs.test.ts"
grep -q "from '$BINARY';\\?$" "$WORK/app/runs.test.ts" || { echo "FAIL: seed import not rewritten"; exit 1; }
cat >"$WORK/app/vitest.config.mjs" <<'EOF'
import { defineConfig } from 'vitest/config'
export default defineConfig({ test: { include: ['runs.test.ts'], pool: 'forks', testTimeout: 20_000 } })
EOF
log "which binary loads"
in_app node -e "
  require('$BINARY');
  const loaded = Object.keys(require.cache).filter((f) => f.endsWith('.node'));
  console.log('    loaded: ' + loaded.join(', '));
  if (loaded.length !== 1 || !loaded[0].includes('/node_modules/$BINARY-$SUFFIX/')) process.exit(1);
"
log "seed suite (vitest) against the installed package"
in_app node node_modules/vitest/vitest.mjs run 2>&1 | sed 's/^/    /'

# 5. the daemon-shaped TypeScript consumer under tsc --strict ---------------------------------------
sed "s#'../../index.js'#'$BINARY'#" "$ROOT/__test__/types/consumer.ts" >"$WORK/app/consumer.ts"
grep -q "from '$BINARY';\\?$" "$WORK/app/consumer.ts" || { echo "FAIL: consumer import not rewritten"; exit 1; }
cat >"$WORK/app/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "es2022",
    "lib": ["es2022"],
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "types": ["node"],
    "skipLibCheck": false
  },
  "files": ["consumer.ts"]
}
EOF
log "tsc --strict on a daemon-shaped consumer against the shipped index.d.ts"
in_app node node_modules/typescript/bin/tsc -p tsconfig.json
in_app node node_modules/typescript/bin/tsc --showConfig -p tsconfig.json | grep -q '"strict": true'

log "passed"
