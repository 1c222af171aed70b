/* reencode — read a trace and write its events again with this build's
 * writer: the writer's cost on real event streams, and a check that two
 * builds write the same bytes.
 *
 *   build/bench/reencode IN OUT [FRAME_EVENTS [ZSTD_LEVEL]]   (0: the default)
 *   cmp OUT_of_build_a OUT_of_build_b          # byte-identical writers
 *   valgrind --tool=callgrind build/bench/reencode IN OUT   # instructions:
 *       hkt_writer_put (inclusive) / events, minus write_frame for zstd
 *
 * Prints the events written and the CPU ns per event spent in the writer
 * (reading excluded). As the recorder's drain, it names each event's
 * pointer AHEAD events before putting it (hkt_writer_prefetch); build with
 * -DAHEAD=0 to measure the writer without the hints. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "hakmem/trace.h"

#ifndef AHEAD
#define AHEAD 8   /* events between a pointer's prefetch hint and its put (0: no hints) */
#endif

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s IN OUT [FRAME_EVENTS [ZSTD_LEVEL]]\n", argv[0]);
    return 2;
  }
  hkt_reader *r;
  hkt_writer *w;
  int e = hkt_reader_open(&r, argv[1]);
  if (HKT_IS_ERR(e)) { fprintf(stderr, "reencode: %s\n", hkt_reader_errmsg(NULL)); return 1; }
  e = hkt_writer_open(&w, argv[2], hkt_reader_header(r));
  if (HKT_IS_ERR(e)) { fprintf(stderr, "reencode: %s: %s\n", argv[2], hkt_strerror(e)); return 1; }
  if (argc > 3) hkt_writer_set_frame_events(w, (uint32_t)atol(argv[3]));
  if (argc > 4 && atoi(argv[4])) hkt_writer_set_level(w, atoi(argv[4]));
  const hkt_event *evs;
  int n;
  unsigned long long events = 0;
  double in_writer = 0;
  while ((n = hkt_reader_batch(r, &evs)) > 0) {
    double t0 = cpu_s();
    for (int i = 0; i < n; i++) {
      if (AHEAD && i + AHEAD < n) hkt_writer_prefetch(w, evs[i + AHEAD].ptr);
      if (evs[i].kind == HKT_EV_END) continue;   /* close writes the end */
      if (HKT_IS_ERR(e = hkt_writer_put(w, &evs[i]))) break;
      events++;
    }
    in_writer += cpu_s() - t0;
    if (HKT_IS_ERR(e)) break;
  }
  double t0 = cpu_s();
  int c = hkt_writer_close(w, hkt_reader_complete(r));
  in_writer += cpu_s() - t0;
  if (HKT_IS_ERR(n) || HKT_IS_ERR(e) || HKT_IS_ERR(c)) {
    fprintf(stderr, "reencode: %s\n", HKT_IS_ERR(n) ? hkt_reader_errmsg(r) : hkt_strerror(HKT_IS_ERR(e) ? e : c));
    hkt_reader_close(r);
    return 1;
  }
  hkt_reader_close(r);
  printf("%llu events, %.1f ns/event in the writer (CPU)\n", events, events ? in_writer * 1e9 / (double)events : 0.0);
  return 0;
}
