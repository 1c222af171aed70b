#!/usr/bin/env bash
# demo.sh BUILD — the hakmem story on one example, end to end (`make demo`).
#
# examples/injected.c is a correct multi-threaded program. With the seed
# project's bug injected into the allocator (a SuperSlab released while a
# thread's cache still holds its blocks) it crashes far from the cause.
# The demo runs it clean, runs it broken, records the broken run with debug
# checks on, then shows what each tool that exists makes of the trace:
# stats, the events around the crash, three replays (same detection at the
# same seq), a minimized trace, and the analysis report (text here, HTML in
# a file). A tool that is not built yet gets a one-line note. Exit 0 when
# every piece that exists worked.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 2
HAKMEM=$BUILD/bin/hakmem
LIB=$(realpath "$BUILD/lib/libhakmem.so" 2>/dev/null)
PROG=$BUILD/examples/injected
INJECT=early_release_flush:3@4/1   # class 3 (64 B), thread 1's 5th cache flush
MINIMIZE_TIME=${HAKMEM_DEMO_MINIMIZE_TIME:-60}   # minimize's own search bound (--max-time)
OUT=${HAKMEM_DEMO_DIR:-$BUILD/demo}
TRACE=$OUT/injected.hkt.zst
failed=0

bold() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
note() { printf '   (%s)\n' "$*"; }
show() { printf '$ %s\n' "$*"; }
# built CMD: does `hakmem CMD` exist in this build?
built() { ! "$HAKMEM" "$1" --help 2>&1 | grep -q "not built in"; }
fail() { echo "demo: $*" >&2; failed=1; }

for f in "$HAKMEM" "$LIB" "$PROG"; do
  [ -e "$f" ] || { echo "demo: $f is missing (run: make BUILD=$BUILD all)" >&2; exit 2; }
done
mkdir -p "$OUT"
rm -f "$OUT"/injected*.hkt.zst "$OUT"/min.hkt.zst

bold "1. A correct multi-threaded program on hakmem"
show "LD_PRELOAD=libhakmem.so $PROG"
LD_PRELOAD=$LIB "$PROG" || fail "the clean run failed"

bold "2. The same program on an allocator with the seed's bug injected: it crashes"
show "HAKMEM_INJECT=$INJECT LD_PRELOAD=libhakmem.so $PROG"
HAKMEM_INJECT=$INJECT LD_PRELOAD=$LIB "$PROG" 2>&1 | tail -n 4
rc=${PIPESTATUS[0]}
echo "   -> exit status $rc$([ "$rc" -gt 128 ] && echo " (signal $((rc - 128)))")"
[ "$rc" -ne 0 ] || fail "the injected run did not crash"
note "the program's own check found a block with two owners; nothing says why"

bold "3. Record it with debug checks on"
show "HAKMEM_DEBUG=1 HAKMEM_INJECT=$INJECT hakmem record -o $TRACE -- $PROG"
note "debug level 1 checks the release invariant: the crash now happens at the cause"
if built record; then
  HAKMEM_DEBUG=1 HAKMEM_INJECT=$INJECT "$HAKMEM" record -o "$TRACE" -- "$PROG" 2>&1 | tail -n 4
else
  note "hakmem record is not built in this version: recording with HAKMEM_TRACE + LD_PRELOAD"
  HAKMEM_DEBUG=1 HAKMEM_INJECT=$INJECT HAKMEM_TRACE=$TRACE LD_PRELOAD=$LIB "$PROG" 2>&1 | tail -n 4
fi
echo "   -> exit status ${PIPESTATUS[0]}"
[ -s "$TRACE" ] || { fail "no trace written"; exit 1; }
det_seq=$("$HAKMEM" dump "$TRACE" --kind detection 2>/dev/null | awk 'NR == 1 {print $1}')
[ -n "$det_seq" ] || fail "the trace has no detection"
echo "   first detection at seq ${det_seq:-?}"

bold "4. hakmem stats"
show "hakmem stats $TRACE"
"$HAKMEM" stats "$TRACE" || fail "stats failed"

bold "5. The events around the detection (hakmem dump)"
if [ -n "$det_seq" ]; then
  from=$((det_seq > 8 ? det_seq - 8 : 0))
  show "hakmem dump $TRACE --from $from --to $((det_seq + 2))"
  "$HAKMEM" dump "$TRACE" --from "$from" --to $((det_seq + 2)) || fail "dump failed"
  ss=$("$HAKMEM" dump "$TRACE" --from "$det_seq" --to "$det_seq" --json | sed -n 's/.*"ptr":"\([^"]*\)".*/\1/p')
  if [ -n "$ss" ]; then
    show "hakmem dump $TRACE --ptr $ss --kind ss_register,ss_unregister,detection"
    "$HAKMEM" dump "$TRACE" --ptr "$ss" --kind ss_register,ss_unregister,detection | head -n 12
  fi
fi

bold "6. Replay it three times: the same detection at the same seq"
if built replay; then
  for i in 1 2 3; do
    show "hakmem replay $TRACE   # run $i"
    "$HAKMEM" replay "$TRACE" >"$OUT/replay-$i.txt" 2>&1
    rc=$?
    grep -E '^(result|detections|  seq)' "$OUT/replay-$i.txt" | head -n 4
    # 0 identical, 3 identical with the detection reproduced
    { [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; } || fail "replay $i: exit status $rc (see $OUT/replay-$i.txt)"
    grep -q "seq $det_seq .*ss_invariant" "$OUT/replay-$i.txt" || fail "replay $i did not show ss_invariant at seq $det_seq"
  done
else
  note "hakmem replay is not built in this version"
fi

bold "7. Minimize it: the smallest trace with the same detection"
if built minimize; then
  show "hakmem minimize $TRACE -o $OUT/min.hkt.zst --emit-c $OUT/min.c --max-time $MINIMIZE_TIME"
  "$HAKMEM" minimize "$TRACE" -o "$OUT/min.hkt.zst" --emit-c "$OUT/min.c" --max-time "$MINIMIZE_TIME" 2>&1 | tail -n 6
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    fail "minimize: exit status $rc"
  elif [ -s "$OUT/min.hkt.zst" ]; then
    "$HAKMEM" stats "$OUT/min.hkt.zst" | grep -E '^(events|threads)'
    n=$("$HAKMEM" stats "$OUT/min.hkt.zst" | awk '$1 == "events" {print $2}')
    [ "${n:-100}" -lt 100 ] || fail "minimize: ${n:-?} events left (fewer than 100 expected)"
    if [ -s "$OUT/min.c" ]; then
      echo "   the calls as a C program: $OUT/min.c; it runs as its header says:"
      grep -E '^ \* Run:' "$OUT/min.c"
    fi
  fi
else
  note "hakmem minimize is not built in this version"
fi

bold "8. The report: what went wrong, where, and who held the blocks"
if built analyze; then
  show "hakmem analyze $TRACE"
  "$HAKMEM" analyze "$TRACE" | head -n 60 || fail "analyze (text) failed"
  show "hakmem analyze $TRACE --format html -o $OUT/injected.html"
  if "$HAKMEM" analyze "$TRACE" --format html -o "$OUT/injected.html"; then
    echo "   HTML report: $OUT/injected.html"
  else
    fail "analyze (html) failed"
  fi
else
  note "hakmem analyze is not built in this version"
fi

echo
if [ "$failed" -eq 0 ]; then echo "demo: done (files in $OUT)"; else echo "demo: some steps failed (see above)"; fi
exit "$failed"
