/* pass.c — the read loop: events from the reader into the model, a batch
 * at a time (the reader's decoded array, no copies; hka_events in
 * collect.c applies them), and a progress line on a terminal. The trace is
 * decoded on a thread of its own (trace/ahead.h), a few batches in front. */
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analyze.h"
#include "ahead.h"

_Static_assert(sizeof(hka_block) == 64, "a block record is one cache line");

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int hka_pass(hka_state *s, hkt_reader *r, int progress, int *err) {
  uint64_t file_size = 0;
  struct stat st;
  if (progress && stat(s->path, &st) == 0) file_size = (uint64_t)st.st_size;
  double t0 = progress ? now_s() : 0, last = t0;
  const hkt_event *ev;
  int rc;
  *err = 0;
  hkt_ahead *ah;   /* decoding on a thread of its own: half the work */
  if (HKT_IS_ERR(rc = hkt_ahead_open(&ah, r))) return rc;
  /* A batch is a run of decoded events (an event with a string ends one,
   * so its string lives while it is applied). */
  while ((rc = hkt_ahead_batch(ah, &ev)) > 0) {
    int n = rc;
    *err = hka_events(s, ev, n);
    if (HKT_IS_ERR(*err)) { hkt_ahead_close(ah); return 0; }
    if (progress && (s->events & ~0xfffffull) != ((s->events - (uint64_t)n) & ~0xfffffull)) {
      double t = now_s();
      if (t - last > 0.25) {
        last = t;
        fprintf(stderr, "\rhakmem analyze: %llu events, %3.0f%% ", (unsigned long long)s->events,
                file_size ? 100.0 * (double)hkt_ahead_offset(ah) / (double)file_size : 0.0);
      }
    }
  }
  hkt_ahead_close(ah);
  if (progress && last > t0) fprintf(stderr, "\r\033[K");
  return rc;
}
