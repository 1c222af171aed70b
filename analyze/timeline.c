/* timeline.c — live bytes and live SuperSlabs over the trace, in at most
 * HKA_TL_MAX buckets of equal seq width. When the trace outgrows them,
 * neighbours merge in pairs and the width doubles, so memory is fixed and
 * one pass suffices whatever the length. */
#include <string.h>

#include "analyze.h"

static void snapshot(hka_state *s, hka_bucket *b) {
  b->live_bytes = s->live_bytes;
  b->live_blocks = s->live_blocks;
  for (int c = 0; c < HKA_CLASSES; c++) b->ss_live[c] = (uint32_t)s->cls[c].ss_live;
  b->ss_total = (uint32_t)s->ss_live;
}

static void merge_pairs(hka_timeline *tl) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < tl->n; i += 2, n++) {
    hka_bucket a = tl->b[i];
    if (i + 1 < tl->n) {
      const hka_bucket *z = &tl->b[i + 1];
      a.time1 = z->time1;
      a.live_bytes = z->live_bytes;
      a.live_blocks = z->live_blocks;
      memcpy(a.ss_live, z->ss_live, sizeof a.ss_live);
      a.ss_total = z->ss_total;
      if (z->max_live_bytes > a.max_live_bytes) a.max_live_bytes = z->max_live_bytes;
      if (z->ss_max > a.ss_max) a.ss_max = z->ss_max;
      a.detections += z->detections;
    }
    tl->b[n] = a;
  }
  tl->n = n;
  tl->width *= 2;
}

/* The open bucket ends at the time of the last event so far (times are
 * kept as a running maximum in s->last_time). */
static void end_time(hka_state *s) {
  hka_bucket *b = &s->tl.b[s->tl.n - 1];
  if (s->last_time > b->time1) b->time1 = s->last_time;
}

/* An event past the open bucket (hka_tl_begin in analyze.h takes the rest). */
void hka_tl_begin_slow(hka_state *s, uint64_t seq, uint64_t time_ns) {
  hka_timeline *tl = &s->tl;
  if (tl->n) end_time(s);
  uint64_t rel = seq >= s->first_seq ? seq - s->first_seq : 0;
  uint64_t idx = rel / tl->width;
  if (tl->n && idx == tl->n - 1) { tl->bound = s->first_seq + tl->n * tl->width; return; }
  while (idx >= HKA_TL_MAX) {
    if (tl->n) snapshot(s, &tl->b[tl->n - 1]);
    merge_pairs(tl);
    idx = rel / tl->width;
  }
  if (tl->n && idx < tl->n) {                      /* landed in a merged bucket */
    tl->bound = s->first_seq + tl->n * tl->width;
    return;
  }
  if (tl->n) snapshot(s, &tl->b[tl->n - 1]);
  /* open idx; buckets skipped over (a gap in seq) carry the state on */
  while (tl->n <= idx) {
    hka_bucket *b = &tl->b[tl->n];
    memset(b, 0, sizeof *b);
    snapshot(s, b);
    b->seq0 = s->first_seq + tl->n * tl->width;
    b->time0 = b->time1 = time_ns;
    b->max_live_bytes = s->live_bytes;
    b->ss_max = (uint32_t)s->ss_live;
    tl->n++;
  }
  tl->bound = s->first_seq + tl->n * tl->width;
}

void hka_tl_close(hka_state *s) {
  if (!s->tl.n) return;
  end_time(s);
  snapshot(s, &s->tl.b[s->tl.n - 1]);
}
