/* reencode — read a trace and write its events again with this build's
 * writer: the writer's cost on real event streams, and a check that two
 * builds write the same bytes.
 *
 *   build/bench/reencode IN OUT [FRAME_EVENTS [ZSTD_LEVEL]]   (0: the default)
 *   build/bench/reencode --drain[=STEP|=live] IN OUT [FRAME_EVENTS [ZSTD_LEVEL]]
 *   cmp OUT_of_build_a OUT_of_build_b          # byte-identical writers
 *   valgrind --tool=callgrind build/bench/reencode IN OUT   # instructions:
 *       hkt_writer_put (inclusive) / events, minus write_frame for zstd
 *
 * Prints the events written and the CPU ns per event spent in the writer
 * (reading excluded). As the recorder's drain, it names each event's
 * pointer AHEAD events before putting it (hkt_writer_prefetch); build with
 * -DAHEAD=0 to measure the writer without the hints.
 *
 * --drain: the recorder's writer thread instead (trace/drain.c): the events
 * go into a spool by hand, one lane of chunks per thread as the recorded
 * threads would fill it, and the drain merges them back into seq order,
 * STEP events (4096) filled between its steps, so it meets lanes whose head
 * is not there yet as often as a writer that keeps up. It prints the CPU ns
 * per event of the drain steps (merge, writer and zstd); the trace it
 * writes is the plain mode's, byte for byte, when the merge is right.
 * --drain=live: a second thread fills the spool while the drain runs, as
 * recorded threads on another core do (the drain reads lines another core
 * wrote); it keeps a few chunks free, so that the drain never writes a
 * frame early and the bytes stay the plain mode's. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "hakmem/trace.h"
#include "spool.h"

#ifndef AHEAD
#define AHEAD 8   /* events between a pointer's prefetch hint and its put (0: no hints) */
#endif

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- --drain ---- */

typedef struct lane { uint32_t chunk, at; int open, exited; } lane;

typedef struct spooler {
  hkt_spool s;
  hkt_drain *d;
  lane *lanes;
  uint32_t nlanes;
  uint64_t seq;            /* the next seq to give */
  uint64_t step;           /* events between drain steps; 0: live (a filler thread) */
  hkt_reader *r;
  const char *in;
  int err;                 /* the filler's */
  _Atomic int filled;      /* the filler is done: seq and err are final */
  double in_drain;         /* CPU s in hkt_drain_step */
} spooler;

static double thread_cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int64_t drain_step(spooler *p) {
  double t0 = thread_cpu_s();
  int64_t n = hkt_drain_step(p->d, 0, 0);
  p->in_drain += thread_cpu_s() - t0;
  return n;
}

static lane *lane_of(spooler *p, uint32_t tid) {
  if (tid >= p->nlanes) {
    uint32_t n = tid + 64;
    lane *l = realloc(p->lanes, n * sizeof *l);
    if (!l) return NULL;
    memset(l + p->nlanes, 0, (n - p->nlanes) * sizeof *l);
    p->lanes = l;
    p->nlanes = n;
  }
  return &p->lanes[tid];
}

static void seal(spooler *p, lane *l) {
  if (l->open) atomic_store_explicit(&p->s.dir[l->chunk].state, HKT_CHUNK_SEALED, memory_order_release);
  l->open = 0;
}

/* Room for n records in the thread's chunk: as the recorder's refill,
 * draining when the spool is full. */
static int room(spooler *p, lane *l, uint32_t tid, unsigned n) {
  if (l->open && l->at + n <= HKT_CHUNK_RECS) return 0;
  seal(p, l);
  for (int tries = 0; p->step ? tries < 4 : 1; tries++) {
    uint32_t nfree = 0, pick = 0;
    for (uint32_t i = 0; i < p->s.h->nchunks; i++)
      if (atomic_load(&p->s.dir[i].state) == HKT_CHUNK_FREE && !nfree++) pick = i;
    if (nfree > (p->step ? 0 : 8)) {
      hkt_chunk_hdr *c = &p->s.dir[pick];
      c->os_tid = tid + 1;
      atomic_store(&c->claim_seq, p->seq);
      atomic_store(&c->state, HKT_CHUNK_OWNED);
      l->chunk = pick;
      l->at = 0;
      l->open = 1;
      return 0;
    }
    if (!p->step) {   /* live: the drain frees chunks */
      struct timespec ts = { 0, 50000 };
      nanosleep(&ts, NULL);
      continue;
    }
    int64_t m = drain_step(p);
    if (m < 0) return (int)m;
  }
  return HKT_ERR_NOMEM;
}

static int spool_event(spooler *p, const hkt_event *ev) {
  size_t sl, bl;
  unsigned nx = hkt_rec_exts(ev, &sl, &bl);
  lane *l = lane_of(p, ev->tid);
  if (!l) return HKT_ERR_NOMEM;
  HKT_TRY(room(p, l, ev->tid, 1 + nx));
  hkt_rec *r = hkt_spool_chunk(&p->s, l->chunk) + l->at;
  r->stamp = ev->time_ns;
  hkt_rec_fill(r, ev, nx, sl, bl);
  __atomic_store_n(&r->seq1, ++p->seq, __ATOMIC_RELEASE);
  l->at += 1 + nx;
  if (ev->kind == HKT_EV_THREAD_EXIT) l->exited = 1;   /* sealed at the next step: a few events follow */
  return 0;
}

/* Put every event of the trace into the spool. */
static int fill(spooler *p) {
  const hkt_event *evs;
  int n, e = 0;
  while ((n = hkt_reader_batch(p->r, &evs)) > 0 && !HKT_IS_ERR(e)) {
    for (int i = 0; i < n && !HKT_IS_ERR(e); i++) {
      if (evs[i].kind == HKT_EV_END) continue;   /* close writes the end */
      if (evs[i].stack_id) { fprintf(stderr, "reencode: %s: --drain takes no stacks\n", p->in); return HKT_ERR_ARG; }
      e = spool_event(p, &evs[i]);
      if (!HKT_IS_ERR(e) && p->seq % 4096 == 0)
        for (uint32_t t = 0; t < p->nlanes; t++)
          if (p->lanes[t].exited) seal(p, &p->lanes[t]);
      if (!HKT_IS_ERR(e) && p->step && p->seq % p->step == 0) {
        int64_t m = drain_step(p);
        if (m < 0) e = (int)m;
      }
    }
  }
  if (HKT_IS_ERR(n)) {
    fprintf(stderr, "reencode: %s\n", hkt_reader_errmsg(p->r));
    return n;
  }
  return e;
}

static void *fill_thread(void *arg) {
  spooler *p = arg;
  p->err = fill(p);
  atomic_store(&p->filled, 1);
  return NULL;
}

static int drain_main(const char *in, const char *out, uint32_t frame, int level, uint64_t step) {
  hkt_reader *r;
  hkt_writer *w;
  int e = hkt_reader_open(&r, in);
  if (HKT_IS_ERR(e)) { fprintf(stderr, "reencode: %s\n", hkt_reader_errmsg(NULL)); return 1; }
  e = hkt_writer_open(&w, out, hkt_reader_header(r));
  if (HKT_IS_ERR(e)) { fprintf(stderr, "reencode: %s: %s\n", out, hkt_strerror(e)); return 1; }
  if (frame) hkt_writer_set_frame_events(w, frame);
  if (level) hkt_writer_set_level(w, level);
  spooler p = { 0 };
  char path[64];
  snprintf(path, sizeof path, "/dev/shm/reencode-%d.spool", (int)getpid());
  e = hkt_spool_create(&p.s, path, 32u << 20, 0);   /* the recorder's default size */
  if (e) { fprintf(stderr, "reencode: %s: %s\n", path, strerror(-e)); return 1; }
  unlink(path);
  if ((frame ? frame : HKT_DEFAULT_FRAME_EVENTS) > p.s.h->nchunks * HKT_CHUNK_RECS / 4) {
    /* the recorder's bound: else chunks wait for a frame the spool cannot hold */
    fprintf(stderr, "reencode: --drain: frames of at most %u events\n", p.s.h->nchunks * HKT_CHUNK_RECS / 4);
    return 1;
  }
  p.d = hkt_drain_new(&p.s, w, 0);
  if (!p.d) { fprintf(stderr, "reencode: out of memory\n"); return 1; }
  p.step = step;
  p.r = r;
  p.in = in;
  if (step) {
    e = fill(&p);
  } else {
    pthread_t filler;
    if (pthread_create(&filler, NULL, fill_thread, &p)) { fprintf(stderr, "reencode: no thread\n"); return 1; }
    for (;;) {
      int done = atomic_load(&p.filled);   /* before the step: then a step after it sees every record */
      int64_t m = drain_step(&p);
      if (m < 0) { e = (int)m; break; }
      if (done) break;
      if (!m) {
        struct timespec ts = { 0, 20000 };
        nanosleep(&ts, NULL);
      }
    }
    pthread_join(filler, NULL);
    if (!HKT_IS_ERR(e)) e = p.err;
  }
  while (!HKT_IS_ERR(e) && hkt_drain_next_seq(p.d) < p.seq) {
    int64_t m = drain_step(&p);
    if (m <= 0) e = m ? (int)m : HKT_ERR_CORRUPT;   /* records left that the merge does not take */
  }
  double t0 = thread_cpu_s();
  int c = HKT_IS_ERR(e) ? 0 : hkt_writer_close(w, hkt_reader_complete(r));
  p.in_drain += thread_cpu_s() - t0;
  if (HKT_IS_ERR(e) || HKT_IS_ERR(c)) {
    fprintf(stderr, "reencode: %s\n", hkt_strerror(HKT_IS_ERR(e) ? e : c));
    return 1;
  }
  hkt_drain_free(p.d);
  hkt_spool_unmap(&p.s);
  free(p.lanes);
  hkt_reader_close(r);
  printf("%llu events, %.1f ns/event in the drain (CPU)\n", (unsigned long long)p.seq,
         p.seq ? p.in_drain * 1e9 / (double)p.seq : 0.0);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strncmp(argv[1], "--drain", 7)) {
    int live = !strcmp(argv[1] + 7, "=live");
    uint64_t step = live ? 0 : argv[1][7] == '=' ? strtoull(argv[1] + 8, NULL, 10) : 4096;
    if (argc < 4 || (!step && !live)) {
      fprintf(stderr, "usage: %s --drain[=STEP|=live] IN OUT [FRAME_EVENTS [ZSTD_LEVEL]]\n", argv[0]);
      return 2;
    }
    return drain_main(argv[2], argv[3], argc > 4 ? (uint32_t)atol(argv[4]) : 0, argc > 5 ? atoi(argv[5]) : 0, step);
  }
  if (argc < 3) {
    fprintf(stderr, "usage: %s [--drain[=STEP|=live]] IN OUT [FRAME_EVENTS [ZSTD_LEVEL]]\n", argv[0]);
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
