#!/usr/bin/env bash
# peak_maps.sh PRELOAD CMD [ARGS...] — run CMD with PRELOAD (a malloc
# library, or "" for glibc), sample /proc/PID/smaps every 10 ms, and print
# the resident kB of each mapping at the sample with the highest total: where
# a workload's peak RSS goes (the heap's own pages against the libraries').
set -u
pre=$1; shift
out=$(mktemp /tmp/peak_maps.XXXXXX)
trap 'rm -f "$out"' EXIT
LD_PRELOAD=$pre "$@" >/dev/null &
pid=$! best=0
while kill -0 $pid 2>/dev/null; do
  r=$(awk '/^Rss:/ { s += $2 } END { print s + 0 }' /proc/$pid/smaps 2>/dev/null)
  if [ -n "$r" ] && [ "$r" -gt "$best" ]; then best=$r; cp /proc/$pid/smaps "$out" 2>/dev/null; fi
  sleep 0.01
done
echo "peak $best kB"
awk '/^[0-9a-f]+-[0-9a-f]+ / { name = $6; if (name == "") name = "[anon " $1 "]" }
     /^Rss:/ { if ($2 > 0) print $2, name }' "$out" | sort -rn | head -12
