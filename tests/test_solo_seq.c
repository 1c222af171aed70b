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

#define CAP (1u << 23)

static hkt_solo q;
static _Atomic uint64_t next_seq;
static __thread uint8_t mode;
static uint64_t *seen_a, *seen_b;
static size_t na, nb;
static _Atomic size_t published_na;
static _Atomic int stop_a;
static size_t trigger;
static uint8_t mode_a;

static void *solo_loop(void *arg) {
  (void)arg;
  hkt_solo_join(&q, &mode);
  mode_a = mode;
  while (!atomic_load_explicit(&stop_a, memory_order_relaxed) && na < CAP) {
    seen_a[na++] = hkt_solo_seq(&q, &mode, &next_seq);
    atomic_store_explicit(&published_na, na, memory_order_relaxed);
  }
  if (mode_a == HKT_SEQ_SOLO) mode_a = mode;   /* SHARED once it saw the joiner */
  return NULL;
}

/* Every seq below next_seq taken exactly once. */
static void check_unique(const uint64_t *a, size_t n1, const uint64_t *b, size_t n2) {
  uint64_t total = atomic_load(&next_seq);
  assert_int_equal(total, n1 + n2);
  uint8_t *hit = calloc(total ? total : 1, 1);
  assert_non_null(hit);
  for (size_t i = 0; i < n1; i++) { assert_true(a[i] < total); assert_int_equal(hit[a[i]]++, 0); }
  for (size_t i = 0; i < n2; i++) { assert_true(b[i] < total); assert_int_equal(hit[b[i]]++, 0); }
  free(hit);
}

static void test_handover_race(void **state) {
  (void)state;
  seen_a = malloc(CAP * sizeof *seen_a);
  seen_b = malloc(4096 * sizeof *seen_b);
  srandom(12345);
  int raced = 0;
  for (int round = 0; round < 300; round++) {
    hkt_solo_init(&q, 1);
    if (!q.ok) { free(seen_a); free(seen_b); skip(); }   /* no membarrier here: nothing goes solo */
    atomic_store(&next_seq, 0);
    atomic_store(&stop_a, 0);
    atomic_store(&published_na, 0);
    na = nb = 0;
    trigger = 1 + (size_t)random() % 20000;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, solo_loop, NULL), 0);
    while (atomic_load(&published_na) < trigger) {}   /* the solo thread is well on */
    mode = HKT_SEQ_NONE;
    hkt_solo_join(&q, &mode);
    assert_int_equal(mode, HKT_SEQ_SHARED);
    for (nb = 0; nb < 4096; nb++) seen_b[nb] = hkt_solo_seq(&q, &mode, &next_seq);
    size_t at = atomic_load(&published_na);
    while (atomic_load(&published_na) < at + 1000 && at + 1000 < CAP) {}   /* ... and goes on */
    atomic_store(&stop_a, 1);
    pthread_join(th, NULL);
    raced += mode_a == HKT_SEQ_SHARED;   /* it took seqs before and after the join */
    check_unique(seen_a, na, seen_b, nb);
  }
  /* most solo threads ran on through the join (one that reached CAP first,
   * on a busy machine, did not race it) */
  assert_true(raced >= 150);
  free(seen_a);
  free(seen_b);
}

/* A signal handler on the solo thread takes seqs inside its loop. */
static uint64_t handler_seqs[8192];
static _Atomic size_t nh;
static void take_in_handler(int sig) {
  (void)sig;
  size_t i = atomic_fetch_add(&nh, 1);
  if (i < 8192) handler_seqs[i] = hkt_solo_seq(&q, &mode, &next_seq);
}

static void test_signal_nests(void **state) {
  (void)state;
  hkt_solo_init(&q, 1);
  if (!q.ok) skip();
  seen_a = malloc(CAP * sizeof *seen_a);
  atomic_store(&next_seq, 0);
  atomic_store(&stop_a, 0);
  atomic_store(&published_na, 0);
  atomic_store(&nh, 0);
  na = 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = take_in_handler;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, solo_loop, NULL), 0);
  while (atomic_load(&published_na) < 1000) {}
  /* one at a time, each landing in the loop, until the loop's room runs out */
  while (atomic_load(&nh) < 4000 && atomic_load(&published_na) < CAP - 200000) {
    size_t before = atomic_load(&nh);
    pthread_kill(th, SIGUSR1);
    while (atomic_load(&nh) == before) {}
  }
  atomic_store(&stop_a, 1);
  pthread_join(th, NULL);
  signal(SIGUSR1, SIG_DFL);
  assert_int_equal(mode_a, HKT_SEQ_SOLO);   /* no other thread took one */
  size_t n = atomic_load(&nh);
  print_message("%zu handler seqs among %zu\n", n, na);
  assert_true(n >= 100);
  check_unique(seen_a, na, handler_seqs, n > 8192 ? 8192 : n);
  free(seen_a);
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
    cmocka_unit_test(test_refused_or_later),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
