#!/usr/bin/env bash
# `npm test` with a temp dir of its own (TMPDIR, which Node's os.tmpdir() and Rust's
# std::env::temp_dir() both read): whatever the suite leaves there, a file or directory of a
# test that outlived it, fails the run with the list. .ci/run and the CI workflow run the suite
# through this script.
set -euo pipefail
cd "$(dirname "$0")/.."
suite_tmp="$(mktemp -d)"
TMPDIR="$suite_tmp" npm test
if [ -n "$(ls -A "$suite_tmp")" ]; then
  echo "the test suite left files in its temp dir $suite_tmp:" >&2
  ls -la "$suite_tmp" >&2
  exit 1
fi
rmdir "$suite_tmp"
