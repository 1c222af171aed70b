/* test_ahead.c — decode ahead (trace/ahead.h): the same events, strings
 * and build-ids as the reader gives, the reader's error at a cut, and a
 * close while the decoding thread is blocked on a full ring. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem/trace.h"
#include "../trace/ahead.h"

#define NEV 200000   /* hundreds of batches: the ring (16) wraps many times */

static char dir[64], path[128], cut[128];
static hkt_event *evs;
static char labels[64][32];
static const uint8_t bid[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
static hkt_header hdr = {
  .version = HKT_FORMAT_VERSION, .pid = 77, .ppid = 1, .clock = "monotonic", .cmdline = "ahead",
  .config = "", .arena_base = 0x200000000000ull, .num_classes = 3, .class_size = {8, 16, 32},
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* Allocations and frees on 3 threads, a labelled mark now and then and a
 * module load with a build-id (the events that end a batch). */
static void make_events(void) {
  evs = calloc(NEV, sizeof *evs);
  assert_non_null(evs);
  uint64_t live[64] = {0}, next = 0x200000100000ull;
  for (int i = 0; i < NEV; i++) {
    hkt_event *e = &evs[i];
    e->tid = (uint32_t)(rnd() % 3);
    e->time_ns = (uint64_t)i * 10;
    e->cls = HKT_NO_CLASS;
    unsigned k = (unsigned)(rnd() % 64);
    if (i % 997 == 0) {
      e->kind = HKT_EV_MARK;
      snprintf(labels[i % 64], sizeof labels[0], "mark %d", i);
      e->str = labels[i % 64];
    } else if (i % 1499 == 0) {
      e->kind = HKT_EV_MODULE_LOAD;
      e->ptr = 0x7f0000000000ull;
      e->size = 4096;
      e->str = "/lib/libx.so";
      e->bid = bid;
      e->bid_len = sizeof bid;
    } else if (live[k]) {
      e->kind = HKT_EV_FREE;
      e->ptr = live[k];
      e->cls = 1;
      live[k] = 0;
    } else {
      e->kind = HKT_EV_MALLOC;
      e->ptr = live[k] = next;
      next += 16;
      e->size = 16;
      e->cls = 1;
      e->caller = 0x401000 + (rnd() % 4) * 0x10;
    }
  }
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/hakmem-ahead-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  snprintf(path, sizeof path, "%s/t.hkt.zst", dir);
  snprintf(cut, sizeof cut, "%s/cut.hkt.zst", dir);
  make_events();
  hkt_writer *w;
  if (hkt_writer_open(&w, path, &hdr)) return -1;
  hkt_writer_set_frame_events(w, 4096);
  for (int i = 0; i < NEV; i++)
    if (hkt_writer_put(w, &evs[i])) return -1;
  if (hkt_writer_close(w, 1)) return -1;
  /* the same cut inside a frame in the middle */
  FILE *in = fopen(path, "rb"), *out = fopen(cut, "wb");
  if (!in || !out) return -1;
  fseek(in, 0, SEEK_END);
  long len = ftell(in);
  fseek(in, 0, SEEK_SET);
  char *buf = malloc((size_t)len);
  if (!buf || fread(buf, 1, (size_t)len, in) != (size_t)len) return -1;
  fwrite(buf, 1, (size_t)(len / 2), out);
  free(buf);
  fclose(in);
  fclose(out);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  unlink(path);
  unlink(cut);
  rmdir(dir);
  free(evs);
  return 0;
}

static void same_event(const hkt_event *got, const hkt_event *e) {
  assert_int_equal(got->kind, e->kind);
  assert_int_equal(got->tid, e->tid);
  assert_int_equal(got->ptr, e->ptr);
  assert_int_equal(got->size, e->size);
  assert_int_equal(got->caller, e->caller);
  if (e->str) { assert_non_null(got->str); assert_string_equal(got->str, e->str); }
  else assert_null(got->str);
  assert_int_equal(got->bid_len, e->bid ? e->bid_len : 0);
  if (e->bid) assert_memory_equal(got->bid, e->bid, e->bid_len);
}

/* Every event, in order, with its string held until the next batch. */
static void test_same_events(void **state) {
  (void)state;
  hkt_reader *r;
  hkt_ahead *a;
  assert_int_equal(hkt_reader_open(&r, path), 0);
  assert_int_equal(hkt_ahead_open(&a, r), 0);
  const hkt_event *b;
  int n, seen = 0;
  uint64_t off = 0;
  while ((n = hkt_ahead_batch(a, &b)) > 0) {
    for (int i = 0; i < n; i++) {
      assert_int_equal(b[i].seq, (uint64_t)seen);
      same_event(&b[i], &evs[seen++]);
    }
    assert_true(hkt_ahead_offset(a) >= off);
    off = hkt_ahead_offset(a);
  }
  assert_int_equal(n, 0);
  assert_int_equal(seen, NEV);
  assert_int_equal(hkt_ahead_batch(a, &b), 0);   /* the end stays the end */
  hkt_ahead_close(a);
  assert_int_equal(hkt_reader_complete(r), 1);
  hkt_reader_close(r);
}

/* A cut trace: the events before the cut, then the reader's own error. */
static void test_cut_gives_reader_error(void **state) {
  (void)state;
  hkt_reader *r;
  const hkt_event *b;
  int n, plain = 0, rc_plain, ahead = 0, rc_ahead;
  assert_int_equal(hkt_reader_open(&r, cut), 0);
  while ((n = hkt_reader_batch(r, &b)) > 0) plain += n;
  rc_plain = n;
  hkt_reader_close(r);
  assert_true(HKT_IS_ERR(rc_plain));
  assert_true(plain > 0 && plain < NEV);

  hkt_ahead *a;
  assert_int_equal(hkt_reader_open(&r, cut), 0);
  assert_int_equal(hkt_ahead_open(&a, r), 0);
  while ((n = hkt_ahead_batch(a, &b)) > 0) {
    for (int i = 0; i < n; i++) same_event(&b[i], &evs[ahead + i]);
    ahead += n;
  }
  rc_ahead = n;
  hkt_ahead_close(a);
  assert_int_equal(rc_ahead, rc_plain);
  assert_int_equal(ahead, plain);
  assert_non_null(strstr(hkt_reader_errmsg(r), "cut.hkt.zst"));   /* the reader is the caller's again */
  hkt_reader_close(r);
}

/* Closing early: the decoding thread waits on a full ring and must stop. */
static void test_close_early(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    hkt_reader *r;
    hkt_ahead *a;
    const hkt_event *b;
    assert_int_equal(hkt_reader_open(&r, path), 0);
    assert_int_equal(hkt_ahead_open(&a, r), 0);
    for (int k = 0; k < round % 4; k++) assert_true(hkt_ahead_batch(a, &b) > 0);
    if (round & 1) usleep(2000);   /* let it fill the ring and sleep */
    hkt_ahead_close(a);
    hkt_reader_close(r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_same_events),
    cmocka_unit_test(test_cut_gives_reader_error),
    cmocka_unit_test(test_close_early),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
