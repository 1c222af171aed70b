/* test_solo_seq.c — the recorder's seq without a lock for a solo thread
 * (trace/solo_seq.h): a second thread's first seq must take the solo
 * thread off its plain xadd before either takes another, so no seq is
 * ever taken twice; a signal handler's seq inside the solo thread's must
 * not be taken twice either; with membarrier refused nobody goes solo.
 * Each hand-over is raced hundreds of times: a hand-over without the
 * membarrier and the wait for busy fails here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/solo_seq.h"

static hkt_solo q;
static _Atomic uint64_t next_seq;
static __thread uint8_t mode;
static _Atomic size_t taken_a;   /* seqs the solo thread took */
static _Atomic int stop_a;
static int order_broken;          /* the solo thread's own seqs not increasing */
static uint8_t mode_a;

/* Takes seqs until told to stop: counted, not kept (so it can run as long
 * as a busy machine needs), each above the one before. */
static void *solo_loop(void *arg) {
  (void)arg;
  hkt_solo_join(&q, &mode);
  mode_a = mode;
  uint64_t last = 0;
  size_t n = 0;
  while (!atomic_load_explicit(&stop_a, memory_order_relaxed)) {
    uint64_t s = hkt_solo_seq(&q, &mode, &next_seq);
    if (n && s <= last) order_broken = 1;
    last = s;
    atomic_store_explicit(&taken_a, ++n, memory_order_relaxed);
  }
  if (mode_a == HKT_SEQ_SOLO) mode_a = mode;   /* SHARED once it saw the joiner */
  return NULL;
}

static void start_round(pthread_t *th) {
  atomic_store(&next_seq, 0);
  atomic_store(&stop_a, 0);
  atomic_store(&taken_a, 0);
  order_broken = 0;
  assert_int_equal(pthread_create(th, NULL, solo_loop, NULL), 0);
}

/* Every seq taken once: a seq taken twice is an increment lost, so the
 * counter ends below the number of seqs taken; others' seqs are distinct. */
static void check_unique(const uint64_t *others, size_t n) {
  uint64_t total = atomic_load(&next_seq);
  assert_false(order_broken);
  assert_int_equal(total, atomic_load(&taken_a) + n);
  uint8_t *hit = calloc(total ? total : 1, 1);
  assert_non_null(hit);
  for (size_t i = 0; i < n; i++) { assert_true(others[i] < total); assert_int_equal(hit[others[i]]++, 0); }
  free(hit);
}

static void test_handover_race(void **state) {
  (void)state;
  static uint64_t seen_b[4096];
  srandom(12345);
  for (int round = 0; round < 300; round++) {
    hkt_solo_init(&q, 1);
    if (!q.ok) skip();   /* no membarrier here: nothing goes solo */
    pthread_t th;
    start_round(&th);
    size_t trigger = 1 + (size_t)random() % 20000;
    while (atomic_load(&taken_a) < trigger) {}   /* the solo thread is well on */
    mode = HKT_SEQ_NONE;
    hkt_solo_join(&q, &mode);
    assert_int_equal(mode, HKT_SEQ_SHARED);
    for (size_t i = 0; i < 4096; i++) seen_b[i] = hkt_solo_seq(&q, &mode, &next_seq);
    size_t at = atomic_load(&taken_a);
    while (atomic_load(&taken_a) < at + 1000) {}   /* ... and goes on */
    atomic_store(&stop_a, 1);
    pthread_join(th, NULL);
    assert_int_equal(mode_a, HKT_SEQ_SHARED);   /* it went solo, then shared */
    check_unique(seen_b, 4096);
  }
}

/* A signal handler on the solo thread takes seqs inside its loop. */
static uint64_t handler_seqs[4000];
static _Atomic size_t nh;
static void take_in_handler(int sig) {
  (void)sig;
  size_t i = atomic_load(&nh);
  if (i < 4000) handler_seqs[i] = hkt_solo_seq(&q, &mode, &next_seq);
  atomic_store(&nh, i + 1);
}

static void test_signal_nests(void **state) {
  (void)state;
  hkt_solo_init(&q, 1);
  if (!q.ok) skip();
  atomic_store(&nh, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = take_in_handler;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_t th;
  start_round(&th);
  while (atomic_load(&taken_a) < 1000) {}
  for (int i = 0; i < 4000; i++) {   /* one at a time, each landing in the loop */
    size_t before = atomic_load(&nh);
    pthread_kill(th, SIGUSR1);
    while (atomic_load(&nh) == before) {}
  }
  atomic_store(&stop_a, 1);
  pthread_join(th, NULL);
  signal(SIGUSR1, SIG_DFL);
  assert_int_equal(mode_a, HKT_SEQ_SOLO);   /* no other thread took one */
  assert_int_equal(atomic_load(&nh), 4000);
  check_unique(handler_seqs, 4000);
}

/* The recorder's writer borrows the counter now and then, while the solo
 * thread runs: their seqs must not collide, and the solo thread must stay
 * solo (its later seqs plain again). */
static void test_borrow_and_give_back(void **state) {
  (void)state;
  static uint64_t seen_b[200 * 50];
  hkt_solo_init(&q, 1);
  if (!q.ok) skip();
  pthread_t th;
  start_round(&th);
  size_t nb = 0;
  for (int round = 0; round < 200; round++) {
    size_t at = atomic_load(&taken_a);
    while (atomic_load(&taken_a) < at + 200) {}   /* the solo thread goes on in between */
    hkt_solo_borrow(&q);
    uint8_t borrowed = HKT_SEQ_SHARED;
    for (int i = 0; i < 50; i++) seen_b[nb++] = hkt_solo_seq(&q, &borrowed, &next_seq);
    hkt_solo_give_back(&q);
  }
  size_t at = atomic_load(&taken_a);
  while (atomic_load(&taken_a) < at + 1000) {}
  atomic_store(&stop_a, 1);
  pthread_join(th, NULL);
  assert_int_equal(mode_a, HKT_SEQ_SOLO);   /* solo again after every borrow */
  assert_int_equal(atomic_load(&q.req), 0);
  check_unique(seen_b, nb);
}

static void test_refused_or_later(void **state) {
  (void)state;
  hkt_solo_init(&q, 0);   /* HAKMEM_TRACE_SOLO_SEQ=0, or no membarrier */
  mode = HKT_SEQ_NONE;
  hkt_solo_join(&q, &mode);
  assert_int_equal(mode, HKT_SEQ_SHARED);
  hkt_solo_init(&q, 1);
  if (!q.ok) skip();
  atomic_store(&next_seq, 0);
  mode = HKT_SEQ_NONE;
  hkt_solo_join(&q, &mode);
  assert_int_equal(mode, HKT_SEQ_SOLO);
  assert_int_equal(hkt_solo_seq(&q, &mode, &next_seq), 0);
  assert_int_equal(hkt_solo_seq(&q, &mode, &next_seq), 1);
  uint8_t other = HKT_SEQ_NONE, third = HKT_SEQ_NONE;
  hkt_solo_join(&q, &other);   /* the first thread is not running: the hand-over does not wait */
  hkt_solo_join(&q, &third);
  assert_int_equal(other, HKT_SEQ_SHARED);
  assert_int_equal(third, HKT_SEQ_SHARED);
  assert_int_equal(hkt_solo_seq(&q, &mode, &next_seq), 2);
  assert_int_equal(mode, HKT_SEQ_SHARED);   /* it saw the request */
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_handover_race),
    cmocka_unit_test(test_signal_nests),
    cmocka_unit_test(test_borrow_and_give_back),
    cmocka_unit_test(test_refused_or_later),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
