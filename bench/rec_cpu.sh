#!/bin/bash
# rec_cpu.sh — where a recording's CPU goes: the recorded program's threads
# against the recorder's writer thread, in ns of CPU per recorded event
# (perf's per-thread samples at 5 kHz, so each sample is 200 us of CPU).
#
# usage: bash bench/rec_cpu.sh LIB build/bench/W [ARGS...]
#   LIB: the libhakmem.so to preload (two builds side by side: run this
#   for each, alternating, and compare medians). Needs perf.
set -eu
[ $# -ge 2 ] || { echo "usage: bash bench/rec_cpu.sh LIB build/bench/W [ARGS...]" >&2; exit 2; }
lib=$1; shift
hakmem=$(dirname "$0")/../build/bin/hakmem
tmp=$(mktemp -d /tmp/rec_cpu.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
HAKMEM_TRACE=$tmp/t.hkt.zst perf record -q -F 5000 -o "$tmp/p.data" -- env LD_PRELOAD="$lib" "$@" >/dev/null 2>"$tmp/err" ||
  { echo "rec_cpu: the run failed: $(head -n1 "$tmp/err")" >&2; exit 1; }
events=$("$hakmem" stats "$tmp/t.hkt.zst" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["events"])')
perf report -i "$tmp/p.data" --sort comm -F sample,comm 2>/dev/null | grep -vE '^#|^$' |
  awk -v ev="$events" '{ if ($2 == "hakmem-writer") w += $1; else p += $1 }
    END { printf "events %d  program %.1f ns/event  writer %.1f ns/event  (samples %d / %d)\n",
          ev, p * 200000 / ev, w * 200000 / ev, p, w }'
