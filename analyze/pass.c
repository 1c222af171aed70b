/* pass.c — the read loop: events from the reader into the model, a few at
 * read ahead of the one applied, so that the block slot each will touch is
 * prefetched RING events early (the block table is far bigger than the
 * cache; a miss per event would dominate), and a progress line on a
 * terminal. */
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analyze.h"

#define RING 32                     /* events read ahead: the prefetch distance */

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
  hkt_event ring[RING];
  uint64_t file_size = 0;
  struct stat st;
  if (progress && stat(s->path, &st) == 0) file_size = (uint64_t)st.st_size;
  double t0 = progress ? now_s() : 0, last = t0;
  unsigned head = 0, n = 0;         /* events read, not yet applied: ring[head..head+n) */
  int rc;
  *err = 0;
  for (;;) {
    /* read ahead, prefetching; an event with a string (module load,
     * marker) is applied before the next read: its string only lives
     * until then */
    int flush = 0;
    while (n < RING) {
      hkt_event *ev = &ring[(head + n) % RING];
      rc = hkt_reader_next(r, ev);
      if (rc != 1) break;
      uint64_t p = block_of(ev);
      if (p) hka_blocks_prefetch(&s->blocks, p);
      n++;
      if (ev->str) { flush = 1; break; }
    }
    if (rc != 1) flush = 1;
    /* apply the oldest, or all of them */
    unsigned todo = flush ? n : 1;
    for (unsigned i = 0; i < todo; i++) {
      *err = hka_event(s, &ring[head]);
      head = (head + 1) % RING;
      n--;
      if (HKT_IS_ERR(*err)) return rc == 1 ? 0 : rc;
    }
    if (rc != 1) break;
    if (progress && !(s->events & 0xfffff)) {
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
