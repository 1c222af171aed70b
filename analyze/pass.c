/* pass.c — the read loop: events from the reader into the model, a few at
 * a time so that the block slots they touch are prefetched together (the
 * block table is far bigger than the cache; one miss per event would
 * dominate), and a progress line on a terminal. */
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analyze.h"

#define BATCH 16

_Static_assert(sizeof(hka_block) == 64, "a block record is one cache line");

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The block address an event will look up, 0 if none. */
static inline uint64_t block_of(const hkt_event *ev) {
  switch (ev->kind) {
  case HKT_EV_MALLOC: case HKT_EV_CALLOC: case HKT_EV_ALIGNED: case HKT_EV_FREE:
  case HKT_EV_REMOTE_PUSH:
    return ev->ptr;
  case HKT_EV_REALLOC:
    return ev->aux ? ev->aux : ev->ptr;
  default:
    return 0;
  }
}

int hka_pass(hka_state *s, hkt_reader *r, int progress, int *err) {
  hkt_event ev[BATCH];
  uint64_t file_size = 0;
  struct stat st;
  if (progress && stat(s->path, &st) == 0) file_size = (uint64_t)st.st_size;
  double t0 = progress ? now_s() : 0, last = t0;
  int rc = 1;
  *err = 0;
  while (rc == 1) {
    int n = 0;
    /* an event with a string (module load, marker) ends the batch: its
     * string only lives until the next read */
    while (n < BATCH && (rc = hkt_reader_next(r, &ev[n])) == 1) {
      uint64_t p = block_of(&ev[n]);
      if (p) hka_blocks_prefetch(&s->blocks, p);
      if (ev[n++].str) break;
    }
    for (int i = 0; i < n; i++) {
      *err = hka_event(s, &ev[i]);
      if (HKT_IS_ERR(*err)) return rc;
    }
    if (progress && (s->events & ~(uint64_t)0xfffff) != ((s->events - (uint64_t)n) & ~(uint64_t)0xfffff)) {
      double t = now_s();
      if (t - last > 0.25) {
        last = t;
        fprintf(stderr, "\rhakmem analyze: %llu events, %3.0f%% ", (unsigned long long)s->events,
                file_size ? 100.0 * (double)hkt_reader_offset(r) / (double)file_size : 0.0);
      }
    }
  }
  if (progress && last > t0) fprintf(stderr, "\r\033[K");
  return rc;
}
