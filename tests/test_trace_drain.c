/* test_trace_drain.c — the spool drain's merge (trace/drain.c). Records go
 * into a spool by hand, as recorded threads fill it, and must come out of
 * the trace in exact seq order: many threads interleaved in runs of every
 * length, chunks handed over within a thread and reused by others once
 * written, extension records (whose strings, left in a reused chunk, must
 * not read as published records), a thread id the OS reused, drain steps
 * at any point, a seq taken but not yet published (the drain waits for it)
 * and one never published (skipped once the process is gone). The trace
 * must hold each event at its place, so a merge that takes a wrong lane
 * fails; and each drain step must take every published seq up to the first
 * in flight, so one that stops early fails too. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem/trace.h"
#include "../trace/spool.h"
#include "testutil.h"

#define MAX_THREADS 16

typedef struct expect { uint64_t ptr; uint32_t tid; uint16_t kind; } expect;

typedef struct sim {
  hkt_spool s;
  hkt_writer *w;
  hkt_drain *d;
  uint64_t seq;                 /* the next seq to take */
  uint64_t published;           /* seqs below this are all published (none in flight) */
  struct { uint32_t chunk, at, os_tid; int open; } th[MAX_THREADS];
  expect *exp;                  /* by seq; kind 0: never published */
  size_t cap;
  char tmp[64], trace[128], spool[128];
} sim;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static void sim_open(sim *m, uint64_t spool_bytes, uint32_t frame_events) {
  memset(m, 0, sizeof *m);
  snprintf(m->tmp, sizeof m->tmp, "/tmp/hkt-drain-XXXXXX");
  assert_non_null(mkdtemp(m->tmp));
  snprintf(m->trace, sizeof m->trace, "%s/t.hkt.zst", m->tmp);
  snprintf(m->spool, sizeof m->spool, "%s/t.spool", m->tmp);
  assert_int_equal(hkt_spool_create(&m->s, m->spool, spool_bytes, 0), 0);
  hkt_header h = { .pid = 1, .cmdline = "drain-test" };
  assert_int_equal(hkt_writer_open(&m->w, m->trace, &h), 0);
  assert_int_equal(hkt_writer_set_frame_events(m->w, frame_events), 0);
  m->d = hkt_drain_new(&m->s, m->w, 0);
  assert_non_null(m->d);
  for (uint32_t t = 0; t < MAX_THREADS; t++) m->th[t].os_tid = 1000 + t;
}

static void sim_close(sim *m) {
  hkt_drain_free(m->d);
  hkt_spool_unmap(&m->s);
  unlink(m->spool);
  unlink(m->trace);
  rmdir(m->tmp);
  free(m->exp);
}

/* A drain step while the process runs: it must take every published seq
 * up to the first one in flight. */
static void step(sim *m) {
  int64_t n = hkt_drain_step(m->d, 0, 0);
  assert_true(n >= 0);
  assert_int_equal(hkt_drain_next_seq(m->d), m->published);
}

static void seal(sim *m, uint32_t t) {
  if (m->th[t].open) atomic_store(&m->s.dir[m->th[t].chunk].state, HKT_CHUNK_SEALED);
  m->th[t].open = 0;
}

/* Room for n records in thread t's chunk, as the recorder's refill: seal
 * it, claim a free one (the drain frees them once written). */
static void room(sim *m, uint32_t t, unsigned n) {
  if (m->th[t].open && m->th[t].at + n <= HKT_CHUNK_RECS) return;
  seal(m, t);
  for (int tries = 0; tries < 8; tries++) {
    for (uint32_t i = 0; i < m->s.h->nchunks; i++) {
      hkt_chunk_hdr *c = &m->s.dir[i];
      if (atomic_load(&c->state) != HKT_CHUNK_FREE) continue;
      atomic_store(&c->state, HKT_CHUNK_OWNED);
      c->os_tid = m->th[t].os_tid;
      atomic_store(&c->claim_seq, m->seq);
      m->th[t].chunk = i;
      m->th[t].at = 0;
      m->th[t].open = 1;
      return;
    }
    step(m);
  }
  fail_msg("no chunk came free");
}

/* Thread t's next event: a malloc whose pointer names its seq, or every
 * 29th a MARK whose label takes two extension records. Published unless
 * `hold`; returns the record (publish it with publish()). */
static hkt_rec *emit(sim *m, uint32_t t, int hold) {
  uint64_t seq = m->seq;
  int mark = seq % 29 == 5;
  char label[HKT_MAX_STR + 1];   /* as big as strnlen may look */
  if (mark) snprintf(label, sizeof label, "mark %llu of thread %u, long enough for two extension records after the first",
                     (unsigned long long)seq, t);
  hkt_event ev = {.kind = mark ? HKT_EV_MARK : HKT_EV_MALLOC, .tid = t, .cls = mark ? HKT_NO_CLASS : 3,
                  .ptr = mark ? 0 : 0x100000 + seq * 32, .size = mark ? 0 : seq % 1000 + 1,
                  .caller = 0x400000 + t * 16, .str = mark ? label : NULL};
  size_t sl, bl;
  unsigned nx = hkt_rec_exts(&ev, &sl, &bl);
  room(m, t, 1 + nx);
  hkt_rec *r = hkt_spool_chunk(&m->s, m->th[t].chunk) + m->th[t].at;
  /* every field, as the recorder: the rest of the lines keeps what an
   * earlier use of the chunk left there */
  r->stamp = seq * 10;
  hkt_rec_fill(r, &ev, nx, sl, bl);
  if (seq >= m->cap) {
    m->cap = m->cap ? m->cap * 2 : 4096;
    m->exp = realloc(m->exp, m->cap * sizeof *m->exp);
    assert_non_null(m->exp);
  }
  m->exp[seq] = (expect){ .ptr = r->ptr, .tid = t, .kind = hold ? 0 : r->kind };
  m->th[t].at += 1 + nx;
  m->seq++;
  if (!hold) {
    __atomic_store_n(&r->seq1, seq + 1, __ATOMIC_RELEASE);
    if (m->published == seq) m->published = seq + 1;
  }
  return r;
}

/* Publish a held record: the seqs after it that are published count now. */
static void publish(sim *m, hkt_rec *r, uint64_t seq) {
  m->exp[seq].kind = r->kind;
  __atomic_store_n(&r->seq1, seq + 1, __ATOMIC_RELEASE);
  while (m->published < m->seq && m->exp[m->published].kind) m->published++;
}

/* Finish the trace and read it back: every published event, in seq order. */
static void check_trace(sim *m) {
  assert_int_equal(hkt_drain_finish(m->d, HKT_END_EXIT, 0), 0);
  hkt_reader *r = NULL;
  assert_int_equal(hkt_reader_open(&r, m->trace), 0);
  hkt_event ev;
  uint64_t n = 0, seq = 0;
  for (;;) {
    assert_int_equal(hkt_reader_next(r, &ev), 1);
    if (ev.kind == HKT_EV_END) break;
    while (seq < m->seq && !m->exp[seq].kind) seq++;   /* never published: skipped */
    assert_true(seq < m->seq);
    if (ev.kind != m->exp[seq].kind || ev.tid != m->exp[seq].tid || ev.ptr != m->exp[seq].ptr || ev.seq != n)
      fail_msg("event %llu: kind %u tid %u ptr %#llx, expected spool seq %llu: kind %u tid %u ptr %#llx",
               (unsigned long long)n, ev.kind, ev.tid, (unsigned long long)ev.ptr, (unsigned long long)seq,
               m->exp[seq].kind, m->exp[seq].tid, (unsigned long long)m->exp[seq].ptr);
    if (ev.kind == HKT_EV_MARK) {
      char want[32];
      snprintf(want, sizeof want, "mark %llu of thread %u,", (unsigned long long)seq, ev.tid);
      assert_non_null(ev.str);
      assert_memory_equal(ev.str, want, strlen(want));
    } else {
      assert_int_equal(ev.size, seq % 1000 + 1);
      assert_int_equal(ev.time_ns, seq * 10);
    }
    n++;
    seq++;
  }
  while (seq < m->seq && !m->exp[seq].kind) seq++;
  assert_int_equal(seq, m->seq);   /* nothing left out */
  assert_int_equal(hkt_reader_next(r, &ev), 0);
  assert_int_equal(hkt_reader_complete(r), 1);
  hkt_reader_close(r);
}

/* Many threads in runs of 1 to 40 events, drain steps anywhere; a small
 * spool and small frames, so chunks are handed over within a thread and
 * freed and reused all the time; threads end and new ones start, some on
 * an OS thread id just freed. */
static void test_interleaved_lanes(void **state) {
  (void)state;
  sim m;
  sim_open(&m, 1u << 20, 700);   /* 16 chunks of 1024 records */
  uint32_t nth = 12, next_os_tid = 2000;
  uint64_t until_step = 500;
  while (m.seq < 120000) {
    uint32_t t = (uint32_t)(rnd() % nth);
    unsigned len = rnd() % 4 ? 1 + (unsigned)(rnd() % 3) : 1 + (unsigned)(rnd() % 40);
    for (unsigned k = 0; k < len; k++) emit(&m, t, 0);
    if (rnd() % 400 == 0) {   /* thread t ends; another takes its place */
      seal(&m, t);
      m.th[t].os_tid = rnd() % 2 ? m.th[t].os_tid : next_os_tid++;
    }
    if (m.seq >= until_step) {
      step(&m);
      until_step = m.seq + 1 + rnd() % 3000;
    }
  }
  step(&m);
  assert_int_equal(hkt_drain_next_seq(m.d), m.seq);
  check_trace(&m);
  sim_close(&m);
}

/* Seqs in flight: the drain stops before a seq taken but not published,
 * however many published seqs of other threads follow, and goes on once
 * it is; a seq never published (its thread died in the call) is skipped
 * when the process is gone. */
static void test_seq_in_flight(void **state) {
  (void)state;
  sim m;
  sim_open(&m, 4u << 20, 4096);
  for (int round = 0; round < 40; round++) {
    uint32_t holder = (uint32_t)(rnd() % 6);
    for (int k = 0; k < 50; k++) emit(&m, (uint32_t)(rnd() % 6), 0);
    uint64_t held_seq = m.seq;
    hkt_rec *held = emit(&m, holder, 1);
    for (int k = 0; k < 200; k++) {
      uint32_t t = (uint32_t)(rnd() % 5);
      emit(&m, t >= holder ? t + 1 : t, 0);   /* the holder is inside its call */
      if (k % 60 == 0) step(&m);
    }
    assert_int_equal(hkt_drain_next_seq(m.d), held_seq);
    publish(&m, held, held_seq);
    step(&m);
    assert_int_equal(hkt_drain_next_seq(m.d), m.seq);
  }
  /* the holder's thread dies in its call: the seq stays unpublished */
  emit(&m, 2, 1);
  seal(&m, 2);
  m.th[2].os_tid += 100;
  for (int k = 0; k < 100; k++) emit(&m, (uint32_t)(rnd() % 6), 0);
  step(&m);
  int64_t n = hkt_drain_step(m.d, 1, 0);   /* the process is gone */
  assert_true(n > 0);
  assert_int_equal(hkt_drain_next_seq(m.d), m.seq);
  check_trace(&m);
  sim_close(&m);
}

/* The last seq before the end, in flight when the end is taken (a crash
 * in another thread): nothing published follows it, and the final step
 * still waits for it (the thread publishes it and its call returns), not
 * only for seqs that published ones follow. */
typedef struct late_pub { hkt_rec *r; uint64_t seq; } late_pub;

static void *publish_late(void *arg) {
  late_pub *p = arg;
  struct timespec ts = { 0, 30000000 };
  nanosleep(&ts, NULL);
  __atomic_store_n(&p->r->seq1, p->seq + 1, __ATOMIC_RELEASE);
  return NULL;
}

static void test_last_seq_in_flight_at_end(void **state) {
  (void)state;
  sim m;
  sim_open(&m, 4u << 20, 4096);
  for (int k = 0; k < 300; k++) emit(&m, (uint32_t)(rnd() % 4), 0);
  late_pub p = { .seq = m.seq };
  p.r = emit(&m, 1, 1);
  atomic_store(&m.s.h->end_seq, m.seq);   /* the end, taken after it */
  step(&m);
  assert_int_equal(hkt_drain_next_seq(m.d), p.seq);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, publish_late, &p), 0);
  assert_true(hkt_drain_step(m.d, 1, 500) >= 0);   /* as the writer when finishing */
  pthread_join(th, NULL);
  assert_int_equal(hkt_drain_next_seq(m.d), m.seq);
  m.exp[p.seq].kind = p.r->kind;
  check_trace(&m);
  sim_close(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_interleaved_lanes),
    cmocka_unit_test(test_seq_in_flight),
    cmocka_unit_test(test_last_seq_in_flight_at_end),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
