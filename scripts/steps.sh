# shellcheck shell=bash
# Shared by scripts/build-targets.sh and scripts/test-windows.sh (sourced, not run): named steps
# whose output goes to a log file, with a line per step on the terminal and in SUMMARY.
#
# The sourcing script sets ROOT and LOGS first; STEP_LOG_PREFIX (prepended to each log's name)
# and STEP_WIDTH (the width of the name column) are optional.

# shellcheck disable=SC2034 # read by the sourcing script
SUMMARY=()
# shellcheck disable=SC2034 # read by the sourcing script
FAILED=0
T0=$(date +%s)

# step NAME COMMAND...: runs COMMAND with its output in $LOGS/$STEP_LOG_PREFIX$NAME.log; prints
# and records ok/FAIL and the time it took (a failure also prints the log's last lines and sets
# FAILED=1). Returns COMMAND's status.
step() {
  local name="$1"
  shift
  local log="$LOGS/${STEP_LOG_PREFIX:-}$name.log" width="${STEP_WIDTH:-40}" start end status
  start=$(date +%s)
  printf "==> %-${width}s " "$name"
  "$@" >"$log" 2>&1
  status=$?
  end=$(date +%s)
  if [ "$status" -eq 0 ]; then
    printf 'ok    %4ss\n' "$((end - start))"
    SUMMARY+=("$(printf "%-$((width + 4))s ok    %4ss" "$name" "$((end - start))")")
  else
    printf 'FAIL  %4ss  (see %s)\n' "$((end - start))" "${log#"$ROOT"/}"
    tail -n 25 "$log" | sed 's/^/    | /'
    SUMMARY+=("$(printf "%-$((width + 4))s FAIL  %4ss  %s" "$name" "$((end - start))" "${log#"$ROOT"/}")")
    FAILED=1
  fi
  return "$status"
}

# check_pe_dll OBJDUMP FILE FORMAT: FILE is a PE DLL whose format OBJDUMP names FORMAT
# (`pei-x86-64` for mingw's objdump, `coff-arm64` for llvm-objdump), exports the N-API entry
# point and imports nothing from node itself: napi-build links a stand-in libnode.dll for a
# windows-gnu target, which must not leak into the binary (N-API is looked up in the host process
# when the addon loads).
check_pe_dll() {
  local objdump="$1" file="$2" want="$3" headers imports
  file "$file" || return 1
  headers="$("$objdump" -p "$file")" || return 1
  grep -qE "file format $want\$" <<<"$headers" || {
    echo "not $want: $(grep -m1 'file format' <<<"$headers")"
    return 1
  }
  grep -qw napi_register_module_v1 <<<"$headers" || {
    echo "napi_register_module_v1 is not exported"
    return 1
  }
  imports="$(grep 'DLL Name:' <<<"$headers" | awk '{print $3}' | sort -fu | paste -sd' ' -)"
  echo "$want; exports napi_register_module_v1; imports: $imports"
  if grep -qiE '^(lib)?node(\.exe|\.dll)$' <<<"$(tr ' ' '\n' <<<"$imports")"; then
    echo "it imports from node itself: the stand-in libnode.dll leaked into the binary"
    return 1
  fi
}
