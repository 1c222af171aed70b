#!/usr/bin/env bash
# run.sh BUILD SECONDS — build the trace reader's libFuzzer target with
# clang (-fsanitize=fuzzer,address) from the trace sources into
# BUILD/fuzz/, run it for SECONDS on the seed corpus tests/fuzz/corpus/ (new
# inputs go to a scratch directory, the seeds stay as they are), and print
# one line. Exit 0 if nothing crashed; 1 with the crashing input kept.
set -u
BUILD=${1:-build}
SECS=${2:-30}
cd "$(dirname "$0")/../.." || exit 2
out=$BUILD/fuzz
mkdir -p "$out"
if ! command -v clang >/dev/null; then echo "fuzz_reader: clang not found (skipped)"; exit 0; fi
src="tests/fuzz/fuzz_reader.c trace/reader.c trace/names.c trace/mem.c trace/zstd_api.c"
if ! clang -g -O1 -std=gnu11 -D_GNU_SOURCE -DHKT_FUZZ -fsanitize=fuzzer,address,undefined \
     -fno-sanitize-recover=undefined -Iinclude -Itrace $src -lzstd -o "$out/fuzz_reader" 2>"$out/build.log"; then
  echo "fuzz_reader: build failed (see $out/build.log)"; exit 1
fi
scratch=$(mktemp -d /tmp/hkt-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
"$out/fuzz_reader" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$out/" "$scratch" tests/fuzz/corpus >"$out/fuzz.log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz.log" | tail -1)
if [ $rc -eq 0 ]; then
  echo "fuzz_reader: ${runs:-?} inputs in ${SECS}s, no crash"
  exit 0
fi
crash=$(ls -t "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* 2>/dev/null | head -1)
echo "fuzz_reader: FAILED after ${runs:-?} inputs (exit $rc): ${crash:-see $out/fuzz.log}"
exit 1
