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
