#!/usr/bin/env bash
# run.sh BUILD — run every test binary of BUILD from the repo root.
#
# Each $BUILD/tests/test_* runs under a timeout with HAKMEM_BUILD=$BUILD (and
# HAKMEM_TEST_SAN passed through); its output goes to
# $BUILD/test-logs/<name>.log. One line per binary, then the tail of each
# failing log, then exactly one summary line "N passed, N failed, N skipped".
# cmocka's own counts are added up; a binary that dies (signal, timeout) is
# counted from its per-test lines, the test it died in as failed; one that
# exits non-zero without reporting a failure counts as one failed test.
#
#   HAKMEM_TEST_TIMEOUT   seconds per binary (default 300)
#   HAKMEM_TEST_FILTER    only binaries whose name contains this string
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 2
export HAKMEM_BUILD=$BUILD
[ -n "${HAKMEM_TEST_SAN:-}" ] && export HAKMEM_TEST_SAN
timeout_s=${HAKMEM_TEST_TIMEOUT:-300}
logs=$BUILD/test-logs
mkdir -p "$logs"

passed=0 failed=0 skipped=0
failed_logs=()

# count LOG PATTERN: sum of the numbers cmocka prints on lines matching PATTERN.
count() {
  sed -n -E "s/^\[ *$2 *\] ([0-9]+) test\(s\).*/\1/p" "$1" | awk '{s+=$1} END {print s+0}'
}

# per_test LOG: "passed failed skipped" from the per-test lines, for a
# binary that died before cmocka printed its summary; the test that was
# running when it died counts as failed.
per_test() {
  awk '
    /^\[ RUN      \] /              { if (cur != "") f++; cur = substr($0, 14); next }
    /^\[       OK \] /              { if (substr($0, 14) == cur) { p++; cur = "" } next }
    /^\[  SKIPPED \] [^0-9]/        { if (substr($0, 14) == cur) { s++; cur = "" } next }
    /^\[  FAILED  \] [^0-9]/        { if (substr($0, 14) == cur) { f++; cur = "" } next }
    END { if (cur != "") f++; print p + 0, f + 0, s + 0 }' "$1"
}

# run_one NAME CMD...: run one test binary (or script) and account for it.
run_one() {
  local name=$1; shift
  local log=$logs/$name.log
  local start=$SECONDS rc
  # In a subshell with stderr closed off, so that bash's own "Segmentation
  # fault" line goes nowhere; the verdict below says it instead.
  (timeout -k 10 "$timeout_s" "$@" >"$log" 2>&1; exit $?) 2>/dev/null
  rc=$?
  local p f s
  p=$(count "$log" PASSED)
  f=$(count "$log" FAILED)
  s=$(count "$log" SKIPPED)
  local note="" died=0
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note=" (timed out after ${timeout_s}s)"; died=1
  elif [ "$rc" -gt 128 ]; then
    note=" (killed by signal $((rc - 128)))"; died=1
  fi
  if [ "$died" -eq 1 ]; then
    read -r p f s < <(per_test "$log")
    [ "$f" -eq 0 ] && f=1
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    note=" (exit status $rc)"; f=$((f + 1))
  fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  local verdict=PASS
  [ "$f" -gt 0 ] && { verdict=FAIL; failed_logs+=("$log"); }
  printf '%-4s %-24s %3d passed, %d failed, %d skipped  %3ds%s\n' \
         "$verdict" "$name" "$p" "$f" "$s" $((SECONDS - start)) "$note"
}

shopt -s nullglob
ran=0
for t in "$BUILD"/tests/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name=$(basename "$t")
  [ -n "${HAKMEM_TEST_FILTER:-}" ] && [[ $name != *"$HAKMEM_TEST_FILTER"* ]] && continue
  run_one "$name" "$t"
  ran=$((ran + 1))
done

# The fuzzers count as one test; they drive real binaries, so not under a sanitizer.
if [ -f tests/fuzz/run.sh ] && [ -z "${HAKMEM_TEST_SAN:-}" ] &&
   { [ -z "${HAKMEM_TEST_FILTER:-}" ] || [[ fuzz == *"$HAKMEM_TEST_FILTER"* ]]; }; then
  log=$logs/fuzz.log start=$SECONDS
  (timeout -k 10 "$timeout_s" bash tests/fuzz/run.sh "$BUILD" 20 >"$log" 2>&1; exit $?) 2>/dev/null
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); printf 'PASS %-24s %3ds\n' fuzz $((SECONDS - start))
  else
    failed=$((failed + 1)); failed_logs+=("$log")
    why="exit status $rc"; [ "$rc" -eq 124 ] && why="timed out after ${timeout_s}s"
    printf 'FAIL %-24s %3ds (%s)\n' fuzz $((SECONDS - start)) "$why"
  fi
  ran=$((ran + 1))
fi

if [ "$ran" -eq 0 ]; then
  echo "run.sh: no test binaries in $BUILD/tests (run: make BUILD=$BUILD tests)" >&2
  failed=$((failed + 1))
fi

for log in "${failed_logs[@]}"; do
  echo "---- tail of $log"
  tail -n 25 "$log"
done

summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
