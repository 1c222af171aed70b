#!/usr/bin/env bash
# bench/run.sh — hakmem side by side with its peers (what `make bench` runs).
#
#   bash bench/run.sh BUILD [--quick] [--only SECTION[,SECTION...]]
#
# Sections: alloc (throughput and peak RSS against glibc, mimalloc, jemalloc,
# tcmalloc), hook (hook cost), rec (recording overhead against the LTTng libc
# wrapper and heaptrack), debug (HAKMEM_DEBUG levels), replay, analyze.
# Every section whose piece is missing is skipped with a one-line note; a
# run that crashes or fails shows as crash/fail/timeout/corrupt in its cell
# and never stops the table. bench/README.md explains how to read it.
set -u -o pipefail

usage() { echo "usage: bash bench/run.sh BUILD [--quick] [--only alloc,hook,rec,debug,replay,analyze]" >&2; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$1; shift
QUICK=0
ONLY="alloc,hook,rec,debug,replay,analyze"
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --only) [ $# -ge 2 ] || usage; ONLY=$2; shift ;;
    *) usage ;;
  esac
  shift
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

BUILD_ARG=$BUILD
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "bench/run.sh: $BUILD_ARG: no such build directory" >&2; exit 2; }
BIN=$BUILD/bench
HAKMEM_SO=$BUILD/lib/libhakmem.so
HAKMEM_BIN=$BUILD/bin/hakmem
WORKLOADS="mixed mixed_xthread larson prodcons churn"
# Work per run, as a fraction of each workload's default (see README): the
# recorders and the higher debug levels are 5-10x slower, so they get less.
if [ $QUICK = 1 ]; then REPS=2; SCALE=0.25; SIDE_REPS=1; REC_SCALE=0.05; DEBUG_SCALE=0.1; TRACE_SCALE=0.1
else REPS=5; SCALE=1; SIDE_REPS=3; REC_SCALE=0.25; DEBUG_SCALE=0.25; TRACE_SCALE=0.25; fi
TIMEOUT=120

for w in $WORKLOADS rusage; do
  [ -x "$BIN/$w" ] || { echo "bench/run.sh: $BIN/$w: not built (run make BUILD=... benches)" >&2; exit 2; }
done

# A system library by soname, wherever this distribution keeps it.
syslib() {
  local p
  p=$(/sbin/ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n && /x86-64|64bit/ { print $NF; exit }')
  [ -n "$p" ] || for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
    [ -e "$d/$1" ] && { p=$d/$1; break; }
  done
  echo "$p"
}
MIMALLOC=$(syslib libmimalloc.so.2)
JEMALLOC=$(syslib libjemalloc.so.2)
TCMALLOC=$(syslib libtcmalloc_minimal.so.4)
LTTNG_WRAPPER=$(syslib liblttng-ust-libc-wrapper.so.1)

TMP=$(mktemp -d /tmp/hakmem-bench.XXXXXX)
RES=$TMP/results         # section workload column rep status ops_per_s maxrss_kb calls
NOTES=$TMP/notes         # one line per failed run, printed at the end
: >"$RES"; : >"$NOTES"
SESSIOND_PID=
cleanup() {
  if [ -n "$SESSIOND_PID" ]; then kill "$SESSIOND_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- running one case ------------------------------------------------------

# run_case SECTION WORKLOAD COLUMN REP [VAR=VALUE...] -- CMD [ARGS...]
# Runs CMD with the given environment (LD_PRELOAD among it), under a
# timeout, and appends one result line. A preload that the loader refused
# counts as a failure: otherwise the run would silently measure glibc.
run_case() {
  local sec=$1 wl=$2 col=$3 rep=$4; shift 4
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local out=$TMP/run.out err=$TMP/run.err rc status=ok
  # (in a subshell whose stderr is dropped: bash's own "Segmentation
  # fault" line for a crashed run would break the table)
  (timeout -k 5 $TIMEOUT env "${envs[@]}" "$@" >"$out" 2>"$err") 2>/dev/null
  rc=$?
  local line
  line=$(grep -m1 '^bench=' "$out")
  if [ $rc = 124 ] || [ $rc = 137 ]; then status=timeout
  elif [ $rc -gt 128 ]; then status=crash
  elif grep -q 'cannot be preloaded' "$err"; then status=fail
  elif [ $rc = 3 ]; then status=corrupt
  elif [ $rc != 0 ] || [ -z "$line" ]; then status=fail
  fi
  if [ $status = ok ]; then
    local ops rss calls
    ops=$(echo "$line" | sed -n 's/.* ops_per_s=\([0-9.]*\).*/\1/p')
    rss=$(echo "$line" | sed -n 's/.* maxrss_kb=\([0-9]*\).*/\1/p')
    calls=$(echo "$line" | sed -n 's/.* calls=\([0-9]*\).*/\1/p')
    echo "$sec $wl $col $rep ok $ops $rss $calls" >>"$RES"
  else
    local why
    why=$(grep -v -e '^heaptrack' -e '^starting application' -e '^/usr/lib/heaptrack' "$err" | head -n1 | cut -c1-160)
    [ $rc -gt 128 ] && [ $rc != 137 ] && why="signal $((rc - 128))${why:+: $why}"
    echo "$sec $wl $col $rep $status - - -" >>"$RES"
    echo "$sec/$wl/$col rep $rep: $status (exit $rc)${why:+: $why}" >>"$NOTES"
  fi
}

# A column that cannot run at all (library not installed, piece not built).
mark_na() { echo "$1 $2 $3 0 n/a - - -" >>"$RES"; }

# rotate N WORDS...: the words, starting at the (N mod count)-th, so that no
# allocator always runs first (or right after the same neighbour).
rotate() {
  local n=$1; shift
  local a=("$@") k=${#a[@]} i
  for ((i = 0; i < k; i++)); do printf '%s ' "${a[$(((i + n) % k))]}"; done
}

# ---- reading results -------------------------------------------------------

# cell SECTION WORKLOAD COLUMN FIELD: the median of FIELD (6 ops/s, 7 RSS KiB,
# 8 calls) over the repetitions, or the first failure seen, or "-".
cell() {
  local rows
  rows=$(awk -v s="$1" -v w="$2" -v c="$3" '$1 == s && $2 == w && $3 == c' "$RES")
  [ -n "$rows" ] || { echo "-"; return; }
  local bad
  bad=$(echo "$rows" | awk '$5 != "ok" { print $5; exit }')
  [ -n "$bad" ] && { echo "$bad"; return; }
  echo "$rows" | awk -v f="$4" '{ print $f }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

isnum() { [[ $1 =~ ^[0-9.e+-]+$ ]]; }
# ratio A B [FMT]: A/B when both are numbers, else "-".
ratio() {
  if isnum "$1" && isnum "$2"; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'
  else echo "-"; fi
}
mops() { if isnum "$1"; then awk -v a="$1" 'BEGIN { printf "%.2f", a / 1e6 }'; else echo "$1"; fi; }
mib() { if isnum "$1"; then awk -v a="$1" 'BEGIN { printf "%.1f", a / 1024 }'; else echo "$1"; fi; }

# ---- header ----------------------------------------------------------------

echo "hakmem bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, build $BUILD"
echo "  $REPS repetitions (median shown), allocators alternated within each repetition$([ $QUICK = 1 ] && echo ', --quick: reduced work')"
echo "  NOTE: this machine is shared and noisy. Absolute ops/s mean little; only the"
echo "  ratios, measured side by side in this one run, are worth comparing."
echo "  Throughput is the workload's own count of malloc+free calls over its own"
echo "  timed section; peak RSS is its getrusage ru_maxrss at exit."
echo

# ---- section: allocators ---------------------------------------------------

ALLOCS="glibc hakmem mimalloc jemalloc tcmalloc"
alloc_lib() {
  case $1 in
    glibc) echo "" ;;
    hakmem) echo "$HAKMEM_SO" ;;
    mimalloc) echo "$MIMALLOC" ;;
    jemalloc) echo "$JEMALLOC" ;;
    tcmalloc) echo "$TCMALLOC" ;;
  esac
}

# print_alloc_table SECTION COLUMNS: Mops/s, vs glibc, vs mimalloc, RSS, RSS vs mimalloc.
print_alloc_table() {
  local sec=$1 cols=$2 w a
  printf '%-14s %-12s %9s %9s %11s %9s %13s\n' workload allocator "Mops/s" "x glibc" "x mimalloc" "RSS MiB" "RSS x mimal."
  for w in $WORKLOADS; do
    local g m mr first=$w
    g=$(cell "$sec" "$w" glibc 6); m=$(cell "$sec" "$w" mimalloc 6); mr=$(cell "$sec" "$w" mimalloc 7)
    for a in $cols; do
      local o r
      o=$(cell "$sec" "$w" "$a" 6); r=$(cell "$sec" "$w" "$a" 7)
      printf '%-14s %-12s %9s %9s %11s %9s %13s\n' "$first" "$a" "$(mops "$o")" "$(ratio "$o" "$g")" \
        "$(ratio "$o" "$m")" "$(mib "$r")" "$(ratio "$r" "$mr")"
      first=
    done
  done
}

section_alloc() {
  echo "== allocators: throughput and peak RSS =="
  local a w rep
  for a in $ALLOCS; do
    local lib
    lib=$(alloc_lib "$a")
    if [ "$a" != glibc ] && [ ! -f "$lib" ]; then
      echo "  ($a: ${lib:-library} not found — column shows n/a)"
      for w in $WORKLOADS; do mark_na alloc "$w" "$a"; done
    fi
  done
  for w in $WORKLOADS; do
    for ((rep = 1; rep <= REPS; rep++)); do
      for a in $(rotate $rep $ALLOCS); do
        local lib
        lib=$(alloc_lib "$a")
        [ "$a" != glibc ] && [ ! -f "$lib" ] && continue
        run_case alloc "$w" "$a" $rep ${lib:+LD_PRELOAD=$lib} -- "$BIN/$w" -x $SCALE
      done
    done
  done
  print_alloc_table alloc "$ALLOCS"
  echo "goal: hakmem >= 1.00x mimalloc throughput and <= 1.00x mimalloc RSS on every workload"
}

# ---- section: hook cost ----------------------------------------------------

# The hakmem column above is already "hooks compiled in, no recorder
# attached". To isolate the branch, the allocator needs a build with the
# hook sites compiled out; compared here if one exists.
section_hook() {
  echo "== hook cost: no recorder attached vs hook sites compiled out =="
  local nohook=${HAKMEM_NOHOOK_SO:-$BUILD/lib/libhakmem-nohook.so}
  if [ ! -f "$HAKMEM_SO" ] || [ ! -f "$nohook" ]; then
    echo "  skipped: no hook-less build to compare with ($nohook)."
    echo "  The hakmem column above is hooks in place, no recorder: what users run."
    return
  fi
  local w rep c
  for w in $WORKLOADS; do
    for ((rep = 1; rep <= SIDE_REPS; rep++)); do
      for c in $(rotate $rep hooks nohooks); do
        if [ $c = hooks ]; then run_case hook "$w" $c $rep LD_PRELOAD="$HAKMEM_SO" -- "$BIN/$w" -x $SCALE
        else run_case hook "$w" $c $rep LD_PRELOAD="$nohook" -- "$BIN/$w" -x $SCALE; fi
      done
    done
  done
  printf '%-14s %12s %12s %14s\n' workload "hooks Mops" "none Mops" "hooks x none"
  for w in $WORKLOADS; do
    local h n
    h=$(cell hook "$w" hooks 6); n=$(cell hook "$w" nohooks 6)
    printf '%-14s %12s %12s %14s\n' "$w" "$(mops "$h")" "$(mops "$n")" "$(ratio "$h" "$n")"
  done
  echo "goal: hooks with no recorder cost one predictable branch: ~1.00x"
}

# ---- section: recording overhead -------------------------------------------

# The LTTng libc wrapper needs a session daemon. As root, lttng-sessiond and
# the lttng client always use the machine-wide /var/run/lttng, which other
# work on this machine may be using; so the private daemon, its client and
# the traced workload run as an unprivileged user (nobody) with their own
# LTTNG_HOME under $TMP. As any other user they run as that user.
LT_HOME=
lt() {
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- env HOME="$LT_HOME" LTTNG_HOME="$LT_HOME" "$@"
  else env HOME="$LT_HOME" LTTNG_HOME="$LT_HOME" "$@"; fi
}
# Starts the private daemon; on failure says why in LT_WHY and returns 1.
LT_WHY=
lttng_start_daemon() {
  if ! command -v lttng-sessiond >/dev/null || ! command -v lttng >/dev/null; then LT_WHY="lttng-tools not installed"; return 1; fi
  [ -f "$LTTNG_WRAPPER" ] || { LT_WHY="liblttng-ust-libc-wrapper.so not found"; return 1; }
  if [ "$(id -u)" = 0 ] && ! command -v runuser >/dev/null; then LT_WHY="runuser missing"; return 1; fi
  LT_HOME=$TMP/lttng-home
  mkdir -p "$LT_HOME"
  chmod 755 "$TMP"
  [ "$(id -u)" = 0 ] && chown nobody "$LT_HOME"
  if ! lt lttng-sessiond --daemonize --no-kernel >/dev/null 2>"$TMP/sessiond.err"; then
    LT_WHY="lttng-sessiond: $(head -n1 "$TMP/sessiond.err")"; return 1
  fi
  local i
  for ((i = 0; i < 50; i++)); do
    [ -s "$LT_HOME/.lttng/lttng-sessiond.pid" ] && break
    sleep 0.1
  done
  SESSIOND_PID=$(cat "$LT_HOME/.lttng/lttng-sessiond.pid" 2>/dev/null)
  [ -n "$SESSIOND_PID" ] || { LT_WHY="lttng-sessiond did not start"; return 1; }
}

# lttng_run WORKLOAD REP OUTDIR: one session around one workload run.
lttng_run() {
  local w=$1 rep=$2 dir=$3 s=hakmem-bench-$$-$2
  rm -rf "$dir"
  if ! { lt lttng create "$s" --output="$dir" &&
         lt lttng enable-channel --userspace --blocking-timeout=inf ch &&
         lt lttng enable-event --userspace --channel ch 'lttng_ust_libc:*' &&
         lt lttng add-context --userspace --channel ch -t vtid &&
         lt lttng start; } >"$TMP/lttng.log" 2>&1; then
    echo "rec $w lttng $rep fail - - -" >>"$RES"
    echo "rec/$w/lttng rep $rep: session set-up failed: $(grep -i error "$TMP/lttng.log" | head -n1)" >>"$NOTES"
    lt lttng destroy "$s" >/dev/null 2>&1
    return
  fi
  if [ "$(id -u)" = 0 ]; then
    run_case rec "$w" lttng $rep -- runuser -u nobody -- env HOME="$LT_HOME" LTTNG_HOME="$LT_HOME" \
      LTTNG_UST_ALLOW_BLOCKING=1 LD_PRELOAD="$LTTNG_WRAPPER" "$BIN/$w" -x $REC_SCALE
  else
    run_case rec "$w" lttng $rep HOME="$LT_HOME" LTTNG_HOME="$LT_HOME" LTTNG_UST_ALLOW_BLOCKING=1 \
      LD_PRELOAD="$LTTNG_WRAPPER" -- "$BIN/$w" -x $REC_SCALE
  fi
  lt lttng stop "$s" >/dev/null 2>&1
  lt lttng destroy "$s" >/dev/null 2>&1
}

# Sizes and event counts of the last repetition's traces, per column.
declare -A REC_NOTE REC_BPE
rec_measure_hakmem() {
  local w=$1 f calls=$3
  f=$(ls "$2"* 2>/dev/null | grep -v '\.spool$' | head -n1)
  [ -n "$f" ] || { REC_NOTE[$w.hakmem-rec]="no trace written"; return; }
  local size json
  size=$(stat -c %s "$f")
  if [ ! -x "$HAKMEM_BIN" ]; then REC_NOTE[$w.hakmem-rec]="$size bytes; no hakmem stats to count events"; return; fi
  json=$("$HAKMEM_BIN" stats "$f" --json 2>"$TMP/stats.err")
  local parsed
  parsed=$(printf '%s' "$json" | python3 -c '
import json, sys
try:
    j = json.load(sys.stdin)
except Exception:
    sys.exit(1)
c = j.get("counts", {})
calls = sum(int(c.get(k, 0)) for k in ("malloc", "calloc", "realloc", "aligned", "free"))
print(int(j.get("events", 0)), calls, str(j.get("complete")).lower(), (j.get("end") or {}).get("kind", "?"))
' 2>/dev/null)
  if [ -z "$parsed" ]; then REC_NOTE[$w.hakmem-rec]="$size bytes; stats failed: $(head -n1 "$TMP/stats.err")"; return; fi
  local ev rcalls complete end
  read -r ev rcalls complete end <<<"$parsed"
  REC_BPE[$w.hakmem-rec]=$(awk -v s="$size" -v e="$ev" 'BEGIN { if (e > 0) printf "%.2f", s / e; else print "-" }')
  local lost=""
  isnum "$calls" && [ "$rcalls" -lt "$calls" ] && lost=", LOST $((calls - rcalls)) calls"
  REC_NOTE[$w.hakmem-rec]="$ev events, $rcalls of the workload's $calls calls recorded$lost, complete=$complete end=$end"
}
rec_measure_lttng() {
  local w=$1 dir=$2
  [ -d "$dir" ] || { REC_NOTE[$w.lttng]="no trace directory"; return; }
  local raw zst counts ev disc
  raw=$(du -sb "$dir" | cut -f1)
  zst=$(tar -C "$dir" -cf - . | zstd -q -c | wc -c)
  counts=$(babeltrace2 "$dir" --component=sink.utils.counter --params='step=+0' 2>/dev/null)
  ev=$(echo "$counts" | awk '/Event messages/ { n = $1 } END { print n + 0 }')
  disc=$(echo "$counts" | awk '/Discarded event messages/ { n = $1 } END { print n + 0 }')
  if [ "$ev" = 0 ]; then   # older babeltrace2 without the counter sink
    ev=$(babeltrace2 "$dir" 2>/dev/null | wc -l)
  fi
  REC_BPE[$w.lttng]=$(awk -v r="$raw" -v z="$zst" -v e="$ev" 'BEGIN { if (e > 0) printf "%.1f raw/%.1f zst", r / e, z / e; else print "-" }')
  REC_NOTE[$w.lttng]="$ev events, $disc discarded"
}
rec_measure_heaptrack() {
  local w=$1 base=$2 calls=$3 f
  f=$(ls "$base".* 2>/dev/null | head -n1)
  [ -n "$f" ] || { REC_NOTE[$w.heaptrack]="no heaptrack file"; return; }
  local size
  size=$(stat -c %s "$f")
  isnum "$calls" || { REC_NOTE[$w.heaptrack]="$size bytes"; return; }
  REC_BPE[$w.heaptrack]=$(awk -v s="$size" -v e="$calls" 'BEGIN { printf "%.2f/call", s / e }')
  REC_NOTE[$w.heaptrack]="$calls calls (no addresses, threads or times per event)"
}

section_rec() {
  echo "== recording overhead (work scaled by $REC_SCALE: LTTng and heaptrack are slow) =="
  local cols="glibc hakmem hakmem-rec lttng heaptrack" w rep c lt_ok=1
  if [ ! -f "$HAKMEM_SO" ]; then
    echo "  hakmem, hakmem-rec: n/a ($HAKMEM_SO not built)"
  fi
  if ! lttng_start_daemon; then
    echo "  lttng: n/a ($LT_WHY)"; lt_ok=0
  fi
  command -v heaptrack >/dev/null || echo "  heaptrack: n/a (not installed)"
  for w in $WORKLOADS; do
    [ -f "$HAKMEM_SO" ] || { mark_na rec "$w" hakmem; mark_na rec "$w" hakmem-rec; }
    [ $lt_ok = 1 ] || mark_na rec "$w" lttng
    command -v heaptrack >/dev/null || mark_na rec "$w" heaptrack
    for ((rep = 1; rep <= SIDE_REPS; rep++)); do
      for c in $(rotate $rep $cols); do
        case $c in
          glibc) run_case rec "$w" glibc $rep -- "$BIN/$w" -x $REC_SCALE ;;
          hakmem) [ -f "$HAKMEM_SO" ] && run_case rec "$w" hakmem $rep LD_PRELOAD="$HAKMEM_SO" -- "$BIN/$w" -x $REC_SCALE ;;
          hakmem-rec)
            [ -f "$HAKMEM_SO" ] || continue
            rm -f "$TMP"/rec-"$w".hkt.zst*
            run_case rec "$w" hakmem-rec $rep LD_PRELOAD="$HAKMEM_SO" HAKMEM_TRACE="$TMP/rec-$w.hkt.zst" -- "$BIN/$w" -x $REC_SCALE ;;
          lttng) [ $lt_ok = 1 ] && lttng_run "$w" $rep "$TMP/lttng-home/trace-$w" ;;
          heaptrack)
            command -v heaptrack >/dev/null || continue
            rm -f "$TMP"/ht-"$w".*
            run_case rec "$w" heaptrack $rep -- heaptrack -o "$TMP/ht-$w" "$BIN/$w" -x $REC_SCALE ;;
        esac
      done
    done
    local calls
    calls=$(cell rec "$w" glibc 8)
    [ -f "$HAKMEM_SO" ] && rec_measure_hakmem "$w" "$TMP/rec-$w.hkt.zst" "$calls"
    [ $lt_ok = 1 ] && rec_measure_lttng "$w" "$TMP/lttng-home/trace-$w"
    command -v heaptrack >/dev/null && rec_measure_heaptrack "$w" "$TMP/ht-$w" "$calls"
    rm -rf "$TMP/lttng-home/trace-$w" "$TMP"/ht-"$w".* "$TMP"/rec-"$w".hkt.zst*
  done
  printf '%-14s %-11s %8s %9s %21s  %s\n' workload recorder "Mops/s" "x glibc" "bytes/event" "events"
  for w in $WORKLOADS; do
    local g first=$w
    g=$(cell rec "$w" glibc 6)
    for c in $cols; do
      local o
      o=$(cell rec "$w" "$c" 6)
      printf '%-14s %-11s %8s %9s %21s  %s\n' "$first" "$c" "$(mops "$o")" "$(ratio "$o" "$g")" \
        "${REC_BPE[$w.$c]:--}" "${REC_NOTE[$w.$c]:-}"
      first=
    done
  done
  echo "goal: hakmem-rec >= 1.00x glibc (plain, no recording), <= 2.0 bytes/event, no call lost"
  echo "      (design brief: LTTng wrapper ~0.14x glibc, 22 B/event raw, 8 zstd; heaptrack ~0.10x, ~2.1 B/call)"
  if [ -n "$SESSIOND_PID" ]; then kill "$SESSIOND_PID" 2>/dev/null; SESSIOND_PID=; fi
}

# ---- section: debug levels -------------------------------------------------

section_debug() {
  echo "== debug levels: HAKMEM_DEBUG=0..3, throughput vs level 0 (work scaled by $DEBUG_SCALE) =="
  if [ ! -f "$HAKMEM_SO" ]; then echo "  skipped: $HAKMEM_SO not built"; return; fi
  if ! grep -aq HAKMEM_DEBUG "$HAKMEM_SO"; then
    echo "  skipped: this libhakmem.so does not read HAKMEM_DEBUG yet"; return
  fi
  local w rep l
  for w in $WORKLOADS; do
    for ((rep = 1; rep <= SIDE_REPS; rep++)); do
      for l in $(rotate $rep 0 1 2 3); do
        run_case debug "$w" "L$l" $rep LD_PRELOAD="$HAKMEM_SO" HAKMEM_DEBUG=$l -- "$BIN/$w" -x $DEBUG_SCALE
      done
    done
  done
  printf '%-14s %10s %10s %10s %10s %10s %10s\n' workload "L0 Mops" "L1 x L0" "L2 x L0" "L3 x L0" "L1 RSS" "L3 RSS"
  for w in $WORKLOADS; do
    local l0 r0
    l0=$(cell debug "$w" L0 6); r0=$(cell debug "$w" L0 7)
    printf '%-14s %10s %10s %10s %10s %10s %10s\n' "$w" "$(mops "$l0")" \
      "$(ratio "$(cell debug "$w" L1 6)" "$l0")" "$(ratio "$(cell debug "$w" L2 6)" "$l0")" \
      "$(ratio "$(cell debug "$w" L3 6)" "$l0")" "$(ratio "$(cell debug "$w" L1 7)" "$r0")" \
      "$(ratio "$(cell debug "$w" L3 7)" "$r0")"
  done
  echo "goal: level 1 within 1.3x of level 0 (ratio >= 0.77x); RSS columns are x level 0"
}

# ---- sections: replay and analysis -----------------------------------------

cmd_built() { [ -x "$HAKMEM_BIN" ] && ! "$HAKMEM_BIN" help "$1" 2>&1 | grep -q 'not built'; }

# record_trace WORKLOAD SCALE FILE [ARGS...]: a trace of the workload, or a note why
# not. (The preload is set by env, after timeout: timeout itself must not
# record into the same file.)
record_trace() {   # WORKLOAD SCALE FILE [EXTRA ARGS...]
  local w=$1 x=$2 f=$3
  shift 3
  rm -f "$f"
  timeout -k 5 $TIMEOUT env LD_PRELOAD="$HAKMEM_SO" HAKMEM_TRACE="$f" "$BIN/$w" -x "$x" "$@" >/dev/null 2>"$TMP/record.err"
  [ -s "$f" ] || { echo "recording $w wrote no trace: $(head -n1 "$TMP/record.err")"; return 1; }
}
trace_events() {
  "$HAKMEM_BIN" stats "$1" --json 2>/dev/null |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)["events"]))' 2>/dev/null || echo "-"
}
json_field() {
  python3 -c "import json, sys
v = json.load(sys.stdin).get('$1')
print('-' if v is None else v if isinstance(v, str) else json.dumps(v))" 2>/dev/null || echo "-"
}
ru_field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$2"; }

section_replay() {
  echo "== replay throughput (hakmem replay --json; the same trace against hakmem, glibc, mimalloc; median of $SIDE_REPS alternated runs) =="
  if [ ! -f "$HAKMEM_SO" ] || ! cmd_built replay; then
    echo "  skipped: needs $HAKMEM_SO and 'hakmem replay' (not built yet)"; return
  fi
  printf '%-22s %-13s %10s %14s %10s %10s  %s\n' trace against events "M events/s" "wall s" "RSS MiB" "result"
  local spec
  # name:workload:extra args (mixed_xthread frees across threads; larson
  # hands blocks between its 4 threads and switches thread often)
  # name:workload:scale multiplier:extra args. mixed/4x: the one-thread
  # rate over a 4x longer trace, where the replay's start (threads, rings
  # and the heap faulted in, the first frame decoded: some ms) weighs less.
  for spec in "mixed:mixed:1:" "mixed/4x:mixed:4:" "mixed_xthread:mixed_xthread:1:" \
              "mixed_xthread/4t:mixed_xthread:1:-t 4" "larson/4t:larson:1:"; do
    local name=${spec%%:*} rest=${spec#*:}
    local w=${rest%%:*} mult extra
    rest=${rest#*:}
    mult=${rest%%:*} extra=${rest#*:}
    local f=$TMP/replay.hkt.zst why
    # shellcheck disable=SC2086
    if ! why=$(record_trace "$w" "$(awk -v s=$TRACE_SCALE -v m=$mult 'BEGIN { print s * m }')" "$f" $extra); then
      printf '%-22s  %s\n' "$name" "$why"; continue
    fi
    local against strict=hakmem-strict
    [ "$w" = mixed ] && strict=   # one thread never runs ahead
    # hakmem-strict: every event at its turn (HAKMEM_REPLAY_STRICT=1, no
    # call runs ahead: docs/replay.md, "Running ahead"). SIDE_REPS runs of
    # each, alternated; the row is the run with the median rate, and its
    # result says whether every run was as it (identical, clean).
    local -A runs=()
    local rep
    for ((rep = 1; rep <= SIDE_REPS; rep++)); do
      for against in hakmem $strict system ${MIMALLOC:+mimalloc}; do
        local arg=$against json rc ev eps res st=0
        [ "$against" = mimalloc ] && arg=$MIMALLOC
        [ "$against" = hakmem-strict ] && { arg=hakmem; st=1; }
        json=$(HAKMEM_REPLAY_STRICT=$st "$BIN/rusage" -o "$TMP/ru" -- "$HAKMEM_BIN" replay "$f" --against "$arg" --json 2>"$TMP/replay.err")
        rc=$?
        ev=$(echo "$json" | json_field events); eps=$(echo "$json" | json_field events_per_s)
        if [ "$arg" = hakmem ]; then
          res="identical=$(echo "$json" | json_field identical)"
          [ $st = 0 ] && res="$res ran_ahead=$(echo "$json" | python3 -c 'import json, sys
j = json.load(sys.stdin); print("%.0f%%" % (100 * j["ran_ahead"] / max(j["events"], 1)))' 2>/dev/null || echo -)"
        else res="outcome=$(echo "$json" | json_field outcome)"; fi
        [ $rc = 0 ] || res="exit $rc: $(head -n1 "$TMP/replay.err")"
        runs[$against]+="${eps:--}|$ev|$(ru_field wall_s "$TMP/ru")|$(mib "$(ru_field maxrss_kb "$TMP/ru")")|$res"$'\n'
      done
    done
    for against in hakmem $strict system ${MIMALLOC:+mimalloc}; do
      local row all
      row=$(printf '%s' "${runs[$against]}" | sort -t'|' -k1,1g | awk -v n="$SIDE_REPS" 'NR == int((n + 1) / 2)')
      all=$(printf '%s' "${runs[$against]}" | cut -d'|' -f5 | sed 's/ ran_ahead=.*//' | sort -u | wc -l)
      IFS='|' read -r eps ev wall rss res <<<"$row"
      [ "$all" -gt 1 ] && res="$res (NOT the same in all $SIDE_REPS runs)"
      printf '%-22s %-13s %10s %14s %10s %10s  %s\n' "$name" "$against" "$ev" "$(mops "$eps")" "$wall" "$rss" "$res"
    done
    rm -f "$f"
  done
  echo "goal (against hakmem): >= 20 M events/s on one thread (mixed, mixed/4x); >= 3 M events/s in strict order across 2 and 4 threads"
  echo "      (hakmem: calls that touched only their thread's cache run ahead, every shared decision in order; hakmem-strict: every event at its turn)"
}

section_analyze() {
  echo "== analysis throughput and memory (hakmem analyze --format json) =="
  if [ ! -f "$HAKMEM_SO" ] || ! cmd_built analyze; then
    echo "  skipped: needs $HAKMEM_SO and 'hakmem analyze' (not built yet)"; return
  fi
  printf '%-22s %10s %14s %10s %10s  %s\n' trace events "M events/s" "wall s" "RSS MiB" "result"
  local x base=$TRACE_SCALE
  for x in 1 10; do
    local s f=$TMP/analyze-$x.hkt.zst why
    s=$(awk -v b=$base -v x=$x 'BEGIN { print b * x }')
    if ! why=$(record_trace mixed_xthread "$s" "$f"); then printf '%-22s  %s\n' "${x}x" "$why"; continue; fi
    local ev rc wall eps
    ev=$(trace_events "$f")
    "$BIN/rusage" -o "$TMP/ru" -- "$HAKMEM_BIN" analyze "$f" --format json -o "$TMP/report.json" >/dev/null 2>"$TMP/analyze.err"
    rc=$?
    wall=$(ru_field wall_s "$TMP/ru")
    eps=$(awk -v e="$ev" -v w="$wall" 'BEGIN { if (e ~ /^[0-9]+$/ && w > 0) print e / w; else print "-" }')
    local res=ok
    [ $rc = 0 ] || res="exit $rc: $(head -n1 "$TMP/analyze.err")"
    printf '%-22s %10s %14s %10s %10s  %s\n' "mixed_xthread ${x}x" "$ev" "$(mops "$eps")" "$wall" \
      "$(mib "$(ru_field maxrss_kb "$TMP/ru")")" "$res"
    rm -f "$f" "$TMP/report.json"
  done
  echo "goal: >= 20 M events/s; RSS bounded by live blocks, so the 10x trace needs about the same memory"
}

# ---- main ------------------------------------------------------------------

T0=$(date +%s)
for sec in alloc hook rec debug replay analyze; do
  want $sec || continue
  t=$(date +%s)
  section_$sec
  echo "($sec: $(($(date +%s) - t)) s)"
  echo
done

if [ -s "$NOTES" ]; then
  echo "== failed runs =="
  sed 's/^/  /' "$NOTES"
  echo
fi
echo "total $(($(date +%s) - T0)) s"
