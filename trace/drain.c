/* drain.c — spool to trace: merge the per-thread chunks into seq order,
 * write the events, free the chunks; and recovery of a dead recorder.
 *
 * Each chunk holds one thread's records in increasing seq; the merge takes
 * the chunk whose next record is the next seq, and stays in it while its
 * records follow each other (one thread running alone). Only chunks that
 * can still hold unread records (owned by a thread, or sealed with records
 * left) are searched when the run ends, so the search is over about as many
 * chunks as there are threads, not over the chunks that wait to be freed;
 * and it looks first at the threads that ran last, at the heads it already
 * read, since threads that interleave make runs of a few records only.
 * A seq taken but not yet published is a call in flight: while the process runs the drain waits for
 * it; when the process is gone (final) it was a call that never returned,
 * and is skipped after a grace period. The writer renumbers, so a skipped
 * seq leaves no hole in the trace.
 *
 * A chunk is freed only when all its records are in frames already written
 * (below written_seq), so the spool always holds every event that is not
 * yet safely in the trace file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "recorder.h"   /* the spool's module table */
#include "spool.h"

struct hkt_drain {
  hkt_spool *s;
  hkt_writer *w;
  const hkt_ptab_view *pview;   /* the writer's pointer table, for prefetches */
  uint64_t next;            /* next spool seq to write */
  uint32_t *cur;            /* per chunk: records consumed */
  uint32_t *hint;           /* per chunk: the first record whose pointer is not yet prefetched */
  uint64_t *head1;          /* per chunk: seq + 1 of the published record at cur; 0 unknown */
  uint64_t *maxseq;         /* per chunk: highest seq consumed + 1 */
  uint64_t *used;           /* per chunk: the number of the last run taken from its lane */
  uint8_t *had_ext;         /* per chunk: it held extension records (cleared when it is freed) */
  uint32_t *active;         /* chunks not FREE, found by the last scan */
  uint32_t nactive;
  uint32_t *live;           /* of them, those that may hold unread records, by thread and age */
  uint32_t nlive;
  uint32_t *lane;           /* per thread with unread records: its first chunk in live[] */
  uint32_t *lane_end;       /* ... and the end of its chunks there */
  uint32_t *order;          /* the lanes, the last to give a run first */
  uint32_t nlanes;
  uint64_t runs;            /* runs taken so far */
  uint64_t tsc0, tsc_mult;  /* the spool's clock, cached per step (mult 2^32: stamps are ns) */
  uint8_t *stack_done;      /* stack ids already defined in the trace */
  uint64_t gap_start_ns;
  char str[HKT_MAX_STR + 1];
  uint8_t bid[256];
};

HKT_INTERNAL uint32_t hkt_writer_pending(const hkt_writer *w);

hkt_drain *hkt_drain_new(hkt_spool *s, hkt_writer *w, uint64_t from_seq) {
  hkt_drain *d = hkt_mem_alloc(sizeof *d);
  if (!d) return NULL;
  uint32_t n = s->h->nchunks;
  d->s = s;
  d->w = w;
  d->next = from_seq;
  d->pview = _hkt_writer_ptab(w);
  d->cur = hkt_mem_alloc((size_t)n * sizeof *d->cur);
  d->hint = hkt_mem_alloc((size_t)n * sizeof *d->hint);
  d->used = hkt_mem_alloc((size_t)n * sizeof *d->used);
  d->had_ext = hkt_mem_alloc((size_t)n * sizeof *d->had_ext);
  d->maxseq = hkt_mem_alloc((size_t)n * sizeof *d->maxseq);
  d->head1 = hkt_mem_alloc((size_t)n * sizeof *d->head1);
  d->active = hkt_mem_alloc((size_t)n * sizeof *d->active);
  d->live = hkt_mem_alloc((size_t)n * sizeof *d->live);
  d->lane = hkt_mem_alloc((size_t)n * sizeof *d->lane);
  d->lane_end = hkt_mem_alloc((size_t)n * sizeof *d->lane_end);
  d->order = hkt_mem_alloc((size_t)n * sizeof *d->order);
  d->stack_done = hkt_mem_alloc((size_t)s->h->stack_cap / 8 + 1);
  if (!d->cur || !d->hint || !d->used || !d->had_ext || !d->maxseq || !d->head1 || !d->active || !d->live || !d->lane ||
      !d->lane_end || !d->order || !d->stack_done) {
    hkt_drain_free(d);
    return NULL;
  }
  return d;
}

void hkt_drain_free(hkt_drain *d) {
  if (!d) return;
  hkt_mem_free(d->cur);
  hkt_mem_free(d->hint);
  hkt_mem_free(d->used);
  hkt_mem_free(d->had_ext);
  hkt_mem_free(d->maxseq);
  hkt_mem_free(d->head1);
  hkt_mem_free(d->active);
  hkt_mem_free(d->live);
  hkt_mem_free(d->lane);
  hkt_mem_free(d->lane_end);
  hkt_mem_free(d->order);
  hkt_mem_free(d->stack_done);
  hkt_mem_free(d);
}

uint64_t hkt_drain_next_seq(const hkt_drain *d) { return d->next; }

/* Write the stack's definition before the first event that uses it. */
static int define_stack(hkt_drain *d, uint32_t id) {
  hkt_spool *s = d->s;
  if (!id || id > atomic_load_explicit(&s->h->nstacks, memory_order_acquire) || id > s->h->stack_cap) return 0;
  if (d->stack_done[(id - 1) / 8] & (1u << ((id - 1) % 8))) return 0;
  hkt_stack_ent *e = &s->stacks[id - 1];
  if (e->off + e->n > s->h->sframes_cap) return 0;
  HKT_TRY(hkt_writer_stack(d->w, id, s->sframes + e->off, e->n));
  d->stack_done[(id - 1) / 8] |= (uint8_t)(1u << ((id - 1) % 8));
  return 0;
}

/* ns since start for a raw stamp (the spool header's clock, cached in d). */
static inline uint64_t stamp_ns(const hkt_drain *d, uint64_t stamp) {
  uint64_t ticks = stamp > d->tsc0 ? stamp - d->tsc0 : 0;
  return (uint64_t)(((unsigned __int128)ticks * d->tsc_mult) >> 32);
}

/* The event of the record group at r with extension records (1 + r->nx
 * records: aux3, a stack, a string, a build-id), put: 0, 1 (a frame was
 * written) or an error. */
static __attribute__((noinline)) int put_extended(hkt_drain *d, const hkt_rec *r) {
  const hkt_rec_ext *x = (const hkt_rec_ext *)(r + 1);
  hkt_event ev = { .kind = r->kind, .fn = r->fn, .cls = r->cls == 0xffff ? HKT_NO_CLASS : r->cls,
                   .tid = r->tid == 0xffff ? x->tid : r->tid, .ptr = r->ptr, .size = r->size, .aux = r->aux,
                   .aux2 = r->aux2, .aux3 = x->aux3, .caller = r->caller, .stack_id = x->stack_id,
                   .time_ns = stamp_ns(d, r->stamp) };
  size_t room = 44 + (size_t)(r->nx - 1) * HKT_REC_BYTES;
  size_t sl = x->str_len == 0xffff ? 0 : x->str_len, bl = x->bid_len;
  if (sl > HKT_MAX_STR) sl = HKT_MAX_STR;
  if (sl + bl > room) bl = sl < room ? room - sl : 0, sl = sl < room ? sl : room;
  if (x->str_len != 0xffff) {
    memcpy(d->str, x->data, sl);
    d->str[sl] = 0;
    ev.str = d->str;
  }
  if (bl) {
    memcpy(d->bid, x->data + sl, bl);
    ev.bid = d->bid;
    ev.bid_len = (uint32_t)bl;
  }
  if (ev.stack_id) HKT_TRY(define_stack(d, ev.stack_id));
  return hkt_writer_put_framed(d->w, &ev);
}

/* Put the event of the record group at r, seq `seq`. Most records have no
 * extension: the writer reads them in place. */
static int put_record(hkt_drain *d, const hkt_rec *r, uint64_t seq) {
  int e = hkt_likely(!r->nx) ? _hkt_writer_put_rec(d->w, r, stamp_ns(d, r->stamp)) : put_extended(d, r);
  if (hkt_unlikely(e)) {
    if (HKT_IS_ERR(e)) return e;
    /* a frame was just written: the chunks below it may go */
    atomic_store_explicit(&d->s->h->written_events, hkt_writer_events(d->w), memory_order_relaxed);
    atomic_store_explicit(&d->s->h->written_seq, seq + 1, memory_order_release);
  }
  if (hkt_unlikely((seq & 4095) == 0))   /* progress, for an exit or crash that waits on us */
    atomic_store_explicit(&d->s->h->drained_seq, seq, memory_order_relaxed);
  return 0;
}

/* The record at position `at` of chunk i if it is published (spool.h:
 * seq1 stored last, above the chunk's claim_seq). */
static inline const hkt_rec *published(hkt_drain *d, uint32_t i, uint32_t at) {
  if (at >= HKT_CHUNK_RECS) return NULL;
  uint64_t claim = atomic_load_explicit(&d->s->dir[i].claim_seq, memory_order_acquire);
  const hkt_rec *r = hkt_spool_chunk(d->s, i) + at;
  uint64_t seq1 = __atomic_load_n(&r->seq1, __ATOMIC_ACQUIRE);
  if (claim == UINT64_MAX || seq1 <= claim) return NULL;
  return at + 1u + r->nx <= HKT_CHUNK_RECS ? r : NULL;
}

/* Chunk order within a thread: a thread seals its chunk before it claims
 * the next, so its chunks' claim seqs order them, and their records. */
static inline int chunk_before(const hkt_drain *d, uint32_t a, uint32_t b) {
  const hkt_chunk_hdr *x = &d->s->dir[a], *y = &d->s->dir[b];
  if (x->os_tid != y->os_tid) return x->os_tid < y->os_tid;
  return atomic_load_explicit(&x->claim_seq, memory_order_relaxed) <
         atomic_load_explicit(&y->claim_seq, memory_order_relaxed);
}

/* Find the chunks in use; of them, the ones that may hold unread records:
 * owned (its thread may add more) or sealed with a record left. They are
 * grouped by thread into lanes, oldest chunk first: only a lane's first
 * chunk with records left can hold the next seq, so choosing where the
 * next run starts looks at one chunk per thread, not at every chunk that
 * waits to be read (hundreds when the writer is behind). A thread id the
 * OS reused is fine: the dead thread's records all come first.
 *
 * The lanes are then ordered by their last run, latest first: the threads
 * that run now come before the lanes of threads that wait or are gone, so
 * the search for the next run stops early. */
#define RECENT_LANES 8   /* lanes whose cached heads are looked at before any spool line */

static void scan_active(hkt_drain *d) {
  d->nactive = d->nlive = 0;
  for (uint32_t i = 0; i < d->s->h->nchunks; i++) {
    uint32_t st = atomic_load_explicit(&d->s->dir[i].state, memory_order_acquire);
    if (st == HKT_CHUNK_FREE) continue;
    d->active[d->nactive++] = i;
    if (st != HKT_CHUNK_SEALED || d->head1[i] || published(d, i, d->cur[i])) d->live[d->nlive++] = i;
  }
  for (uint32_t gap = d->nlive / 2; gap; gap = gap == 2 ? 1 : gap * 5 / 11)   /* shell sort */
    for (uint32_t k = gap; k < d->nlive; k++) {
      uint32_t v = d->live[k], j = k;
      for (; j >= gap && chunk_before(d, v, d->live[j - gap]); j -= gap) d->live[j] = d->live[j - gap];
      d->live[j] = v;
    }
  d->nlanes = 0;
  for (uint32_t k = 0; k < d->nlive; k++) {
    if (k && d->s->dir[d->live[k]].os_tid == d->s->dir[d->live[k - 1]].os_tid) {
      uint32_t first = d->live[d->lane[d->nlanes - 1]];   /* the lane's latest run, on its first chunk */
      if (d->used[d->live[k]] > d->used[first]) d->used[first] = d->used[d->live[k]];
      continue;
    }
    d->lane[d->nlanes++] = k;
  }
  /* order: the RECENT_LANES lanes with the latest runs, latest first (a
   * few compares a lane), then the others as they are */
  uint32_t ntop = 0;
  for (uint32_t l = 0; l < d->nlanes; l++) {
    d->lane_end[l] = l + 1 < d->nlanes ? d->lane[l + 1] : d->nlive;
    uint64_t u = d->used[d->live[d->lane[l]]];
    if (!u || (ntop == RECENT_LANES && u <= d->used[d->live[d->lane[d->order[ntop - 1]]]])) continue;
    uint32_t j = ntop < RECENT_LANES ? ntop++ : ntop - 1;
    for (; j && d->used[d->live[d->lane[d->order[j - 1]]]] < u; j--) d->order[j] = d->order[j - 1];
    d->order[j] = l;
  }
  for (uint32_t l = 0, c = ntop; l < d->nlanes; l++) {
    int top = 0;
    for (uint32_t j = 0; j < ntop && !top; j++) top = d->order[j] == l;
    if (!top) d->order[c++] = l;
  }
}

/* Free chunk i if it is sealed, read to its end, and all of it is written.
 * An extension record's first word is not a seq (aux3, string bytes), and
 * may read as one above the next claim's claim_seq: the drain would take
 * it for a published head, and keep its seq. So before the chunk goes
 * back, the extension records it held get seq1 0. */
static void maybe_reclaim(hkt_drain *d, uint32_t i) {
  hkt_chunk_hdr *c = &d->s->dir[i];
  if (atomic_load_explicit(&c->state, memory_order_acquire) != HKT_CHUNK_SEALED) return;
  if (published(d, i, d->cur[i])) return;
  if (d->maxseq[i] > atomic_load_explicit(&d->s->h->written_seq, memory_order_acquire)) return;
  if (d->had_ext[i]) {
    hkt_rec *base = hkt_spool_chunk(d->s, i);
    for (uint32_t at = 0; at < d->cur[i] && at < HKT_CHUNK_RECS; at += 1u + base[at].nx)
      for (uint32_t x = 1; x <= base[at].nx && at + x < HKT_CHUNK_RECS; x++) base[at + x].seq1 = 0;
    d->had_ext[i] = 0;
  }
  atomic_store_explicit(&c->claim_seq, UINT64_MAX, memory_order_relaxed);
  d->cur[i] = 0;
  d->hint[i] = 0;
  d->head1[i] = 0;
  d->maxseq[i] = 0;
  d->used[i] = 0;
  atomic_store_explicit(&c->state, HKT_CHUNK_FREE, memory_order_release);
}

/* Seq of chunk i's head, the first record not yet written (records below
 * d->next are skipped); UINT64_MAX if none is published yet. A published
 * record does not change until its chunk is freed, so the head's seq is
 * kept (head1): choosing the next run then reads no line a recorded thread
 * writes, but the heads not yet published. */
static uint64_t head_seq(hkt_drain *d, uint32_t i) {
  if (d->head1[i] > d->next) return d->head1[i] - 1;
  const hkt_rec *r;
  while ((r = published(d, i, d->cur[i]))) {
    if (r->seq1 - 1 >= d->next) { d->head1[i] = r->seq1; return r->seq1 - 1; }
    if (r->nx) d->had_ext[i] = 1;
    d->cur[i] += 1u + r->nx;
  }
  d->head1[i] = 0;
  return UINT64_MAX;
}

/* Seq of lane l's head: its first chunk's, or, that chunk sealed and read
 * to its end, the next one's. */
static uint64_t lane_head(hkt_drain *d, uint32_t l) {
  uint32_t k = d->lane[l], i = d->live[k];
  uint64_t hs;
  while ((hs = head_seq(d, i)) == UINT64_MAX && k + 1 < d->lane_end[l] &&
         atomic_load_explicit(&d->s->dir[i].state, memory_order_acquire) == HKT_CHUNK_SEALED) {
    d->lane[l] = ++k;
    d->used[d->live[k]] = d->used[i];
    i = d->live[k];
  }
  return hs;
}

/* The chunk that holds the next seq (its lane's position in order[] in
 * *pos), or failing that the one with the lowest head seq (in *best_seq);
 * UINT32_MAX if no lane has a head. First the cached heads of the lanes that ran last,
 * reading no spool line; then every lane's head, the lane of the last run
 * last: it ended there because its next record was not the next seq, most
 * often because it was not there yet, and reading a record the thread is
 * writing costs both sides a miss. */
static uint32_t next_chunk(hkt_drain *d, uint32_t *pos, uint64_t *best_seq) {
  uint32_t n = d->nlanes, best = UINT32_MAX;
  uint64_t want = d->next + 1;
  for (uint32_t j = 0; j < n && j < RECENT_LANES; j++) {
    uint32_t i = d->live[d->lane[d->order[j]]];
    if (d->head1[i] == want) { *pos = j; *best_seq = want - 1; return i; }
  }
  *best_seq = UINT64_MAX;
  for (uint32_t jj = 1; jj <= n; jj++) {
    uint32_t j = jj < n ? jj : 0, l = d->order[j];
    uint64_t hs = lane_head(d, l);
    if (hs < *best_seq) {
      *best_seq = hs;
      *pos = j;
      best = d->live[d->lane[l]];
      if (hs == d->next) break;   /* no chunk can do better */
    }
  }
  return best;
}

/* order[j] first: it gives the run now. */
static inline void to_front(hkt_drain *d, uint32_t j) {
  uint32_t l = d->order[j];
  for (; j; j--) d->order[j] = d->order[j - 1];
  d->order[0] = l;
}

#define AHEAD 8   /* records between the prefetch of a pointer's table line and its put */

/* Put the records of chunk i that continue the sequence from d->next. */
static int64_t run(hkt_drain *d, uint32_t i, uint64_t end) {
  uint64_t claim = atomic_load_explicit(&d->s->dir[i].claim_seq, memory_order_acquire);
  const hkt_rec *base = hkt_spool_chunk(d->s, i);
  const hkt_ptab_view *pview = d->pview;
  uint32_t at = d->cur[i];
  uint32_t hint = d->hint[i] > at ? d->hint[i] : at;   /* the next record head whose pointer is not yet hinted */
  uint64_t next = d->next, from = next;   /* in a register: the writer's calls could change *d for all the compiler knows */
  while (at < HKT_CHUNK_RECS) {
    const hkt_rec *r = base + at;
    /* Two stages ahead: the records 2 * AHEAD on (they come from another
     * core's cache), and for the heads up to AHEAD on, by then here, the
     * writer's table line of their pointer (a miss the writer would wait
     * on). Only published heads give hints: an unpublished record, or an
     * extension record, may be half written. Hints carry over from run to
     * run of the chunk: runs are short when threads interleave. */
    __builtin_prefetch(r + 2 * AHEAD);
    while (hint <= at + AHEAD && hint < HKT_CHUNK_RECS) {
      const hkt_rec *h = base + hint;
      if (__atomic_load_n(&h->seq1, __ATOMIC_ACQUIRE) <= claim) break;   /* next time */
      hkt_ptab_prefetch(pview, h->ptr);
      hint += 1u + h->nx;
    }
    uint64_t seq1 = __atomic_load_n(&r->seq1, __ATOMIC_ACQUIRE);
    unsigned nx = r->nx;   /* a head with no extension (most) fits: at < HKT_CHUNK_RECS */
    if (seq1 <= claim || seq1 - 1 != next || next >= end || hkt_unlikely(nx && at + 1u + nx > HKT_CHUNK_RECS)) {
      /* published (and whole) but not next: the chunk's new head */
      d->head1[i] = seq1 > claim && at + 1u + nx <= HKT_CHUNK_RECS ? seq1 : 0;
      break;
    }
    if (hkt_unlikely(nx)) d->had_ext[i] = 1;
    int e = put_record(d, r, next);
    if (HKT_IS_ERR(e)) { d->cur[i] = at; d->hint[i] = hint; d->next = next; return e; }
    at += 1u + nx;
    next++;
  }
  if (at >= HKT_CHUNK_RECS) d->head1[i] = 0;
  d->cur[i] = at;
  d->hint[i] = hint;
  d->next = next;
  if (next != from) d->maxseq[i] = next;
  d->used[i] = ++d->runs;
  return (int64_t)(next - from);
}

int64_t hkt_drain_step(hkt_drain *d, int final, unsigned gap_wait_ms) {
  hkt_spool_hdr *h = d->s->h;
  int64_t moved = 0;
  d->tsc0 = h->tsc0;
  d->tsc_mult = h->clock_tsc ? atomic_load_explicit(&h->tsc_mult, memory_order_relaxed) : 1ull << 32;
  scan_active(d);
  for (;;) {
    uint64_t end = atomic_load_explicit(&h->end_seq, memory_order_acquire);
    if (d->next >= end) break;
    uint32_t pos = 0;
    uint64_t best_seq;
    uint32_t best = next_chunk(d, &pos, &best_seq);
    int none = best == UINT32_MAX || best_seq >= end;   /* nothing below the end is there */
    if (none || best_seq != d->next) {
      /* a seq in flight: wait while the process lives; once it is gone,
       * skip it after the grace period. Also when it is the last before
       * the end and nothing follows it yet: a thread that took it just
       * before a crash took the end publishes it, and its call returns
       * (test_crash_halts_others, about 1 run in 40, lost that one). */
      if (!final) break;
      uint64_t t = hkt_mono_ns();
      if (!d->gap_start_ns) d->gap_start_ns = t;
      if (t - d->gap_start_ns < (uint64_t)gap_wait_ms * 1000000u) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
        scan_active(d);
        continue;
      }
      if (none) break;
      d->next = best_seq;
    }
    d->gap_start_ns = 0;
    to_front(d, pos);
    int64_t n = run(d, best, end);
    if (n < 0) return n;
    moved += n;
  }
  for (uint32_t k = 0; k < d->nactive; k++) maybe_reclaim(d, d->active[k]);
  /* Chunks wait for the frame holding their events to be written (the
   * recorder keeps frames below a quarter of the spool). Should every chunk
   * wait so, write the frame now rather than let recorded threads block. */
  scan_active(d);
  if (d->nactive == d->s->h->nchunks && hkt_writer_pending(d->w)) {
    int e = hkt_writer_flush(d->w);
    if (HKT_IS_ERR(e)) return e;
    atomic_store_explicit(&h->written_events, hkt_writer_events(d->w), memory_order_relaxed);
    atomic_store_explicit(&h->written_seq, d->next, memory_order_release);
    for (uint32_t k = 0; k < d->nactive; k++) maybe_reclaim(d, d->active[k]);
  }
  return moved;
}

int hkt_drain_finish(hkt_drain *d, uint32_t end_kind, uint32_t end_status) {
  hkt_spool_hdr *h = d->s->h;
  hkt_event ev = { .kind = HKT_EV_END, .cls = HKT_NO_CLASS };
  if (atomic_load(&h->end_seq) != UINT64_MAX) {
    end_kind = atomic_load(&h->end_kind);
    end_status = atomic_load(&h->end_status);
    ev.tid = atomic_load(&h->end_tid);
  }
  ev.fn = (uint16_t)end_kind;
  ev.aux = end_status;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t mono = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  ev.time_ns = mono > h->start_mono_ns ? mono - h->start_mono_ns : 0;
  int e = hkt_writer_put(d->w, &ev);
  int c = hkt_writer_close(d->w, 1);
  d->w = NULL;
  return HKT_IS_ERR(e) ? e : c;
}

/* Copy the first `len` bytes of src into a new file dst. */
static int copy_prefix(const char *src, const char *dst, uint64_t len) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return HKT_ERR_IO;
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) { close(in); return HKT_ERR_IO; }
  uint8_t buf[1 << 14];   /* not a __thread array: TLS of libhakmem.so is cleared and resident in every thread */
  int e = 0;
  while (len && !e) {
    ssize_t n = read(in, buf, len < sizeof buf ? len : sizeof buf);
    if (n <= 0) { e = n < 0 ? HKT_ERR_IO : 0; break; }
    for (ssize_t o = 0; o < n;) {
      ssize_t k = write(out, buf + o, (size_t)(n - o));
      if (k < 0) { if (errno == EINTR) continue; e = HKT_ERR_IO; break; }
      o += k;
    }
    len -= (uint64_t)n;
  }
  close(in);
  if (close(out) && !e) e = HKT_ERR_IO;
  return e;
}

/* Of the trace at path: the bytes of its whole frames up to the one that
 * ends with event number `events` (0 if no frame ends there, or the file
 * does not read), and in *all the bytes of all its whole frames. A writer
 * killed after writing a frame and before saying so in the spool
 * (written_events) leaves a frame more than that in the file; its events
 * are still in the spool, so the file is cut back to what the spool says. */
static uint64_t frames_upto(const char *path, uint64_t events, uint64_t *all) {
  hkt_reader *r = NULL;
  uint64_t keep = 0;
  *all = 0;
  if (!HKT_IS_ERR(hkt_reader_open(&r, path))) {
    hkt_event ev;
    while (hkt_reader_next(r, &ev) > 0)
      if (!keep && hkt_reader_data_events(r) == events) keep = hkt_reader_data_end(r);
    if (!keep && hkt_reader_data_events(r) == events) keep = hkt_reader_data_end(r);
    *all = hkt_reader_data_end(r);
  }
  hkt_reader_close(r);
  return keep;
}

int hkt_recover(const char *spool_path, const char *out, uint32_t end_kind, uint32_t end_status,
                hkt_recover_info *info, char *why, size_t why_len) {
  hkt_recover_info dummy;
  if (!info) info = &dummy;
  memset(info, 0, sizeof *info);
  hkt_spool s;
  int e = hkt_spool_map(&s, spool_path, why, why_len);
  if (HKT_IS_ERR(e)) return e;
  hkt_spool_hdr *h = s.h;
  if (atomic_load(&h->state) == HKT_SPOOL_DONE) {
    snprintf(why, why_len, "the recorder already finished this trace (%s)", h->trace_path);
    hkt_spool_unmap(&s);
    return HKT_ERR_ARG;
  }
  const char *dst = out ? out : h->trace_path;
  snprintf(info->trace_path, sizeof info->trace_path, "%s", dst);
  if (h->clock_tsc && !atomic_load(&h->tsc_mult))
    atomic_store(&h->tsc_mult, hkt_tsc_calibrate(h->tsc0, h->start_mono_ns));

  /* keep the whole frames the recorder wrote and said so; start over if
   * there are none */
  uint64_t written_seq = atomic_load(&h->written_seq), written_events = atomic_load(&h->written_events);
  hkt_writer *w = NULL;
  uint64_t next = 0, from = 0;
  if (written_events) {
    uint64_t all, keep = frames_upto(h->trace_path, written_events, &all);
    int copy = out && strcmp(out, h->trace_path);
    e = 0;
    if (copy) e = copy_prefix(h->trace_path, out, keep ? keep : all);
    else if (keep && keep < all && truncate(h->trace_path, (off_t)keep)) e = HKT_ERR_IO;
    if (HKT_IS_ERR(e)) {
      if (copy) snprintf(why, why_len, "cannot copy %s to %s: %s", h->trace_path, out, strerror(errno));
      else snprintf(why, why_len, "cannot cut %s: %s", h->trace_path, strerror(errno));
      hkt_spool_unmap(&s);
      return e;
    }
  }
  if (written_events && !HKT_IS_ERR(hkt_writer_append(&w, dst, &next)) && next == written_events) {
    from = written_seq;
  } else {
    if (w) { hkt_writer_close(w, 0); w = NULL; }
    hkt_header hdr;
    hkt_modlist mods;
    hkt_spool_header(&s, &hdr);
    hkt_modules_from_spool(&s, &mods);   /* what it holds, if damaged: the modules before that */
    hdr.num_modules = mods.n;
    hdr.modules = mods.mods;
    e = hkt_writer_open(&w, dst, &hdr);
    hkt_modlist_free(&mods);
    if (HKT_IS_ERR(e)) {
      snprintf(why, why_len, "cannot write %s: %s", dst, e == HKT_ERR_IO ? strerror(errno) : hkt_strerror(e));
      hkt_spool_unmap(&s);
      return e;
    }
    next = 0;
    from = 0;
  }
  info->events_before = next;
  hkt_drain *d = hkt_drain_new(&s, w, from);
  if (!d) {
    hkt_writer_close(w, 0);
    hkt_spool_unmap(&s);
    snprintf(why, why_len, "out of memory");
    return HKT_ERR_NOMEM;
  }
  int64_t moved = hkt_drain_step(d, 1, 0);
  if (moved < 0) {
    snprintf(why, why_len, "writing %s: %s", dst, moved == HKT_ERR_IO ? strerror(errno) : hkt_strerror((int)moved));
    hkt_writer_close(w, 0);
    hkt_drain_free(d);
    hkt_spool_unmap(&s);
    return (int)moved;
  }
  info->events_added = (uint64_t)moved;
  if (atomic_load(&h->end_seq) != UINT64_MAX) {
    info->end_kind = atomic_load(&h->end_kind);
    info->end_status = atomic_load(&h->end_status);
  } else {
    info->end_kind = end_kind;
    info->end_status = end_status;
  }
  e = hkt_drain_finish(d, end_kind, end_status);
  hkt_drain_free(d);
  if (HKT_IS_ERR(e)) {
    snprintf(why, why_len, "writing %s: %s", dst, e == HKT_ERR_IO ? strerror(errno) : hkt_strerror(e));
    hkt_spool_unmap(&s);
    return e;
  }
  atomic_store(&h->state, HKT_SPOOL_DONE);
  hkt_spool_unmap(&s);
  char real[1100];   /* FILE.spool may link to the spool in tmpfs */
  ssize_t n = readlink(spool_path, real, sizeof real - 1);
  if (n > 0) { real[n] = 0; unlink(real); }
  unlink(spool_path);
  return 0;
}
