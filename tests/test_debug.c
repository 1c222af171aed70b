/* test_debug.c — HAKMEM_DEBUG: every check finds its bug class, with the
 * right kind, pointer and sequence number, and nothing else is reported.
 *
 * Each scenario runs in a forked child (debug_case.h) with its own debug
 * level and HAKMEM_ON_ERROR=continue, so that the report, the event and
 * what happens next can all be checked; one case keeps the default (abort).
 * The example programs and real programs run under LD_PRELOAD (skipped
 * under sanitizers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include "hakmem.h"
#include "debug_case.h"

#define ENV(level, ...) ((const char *const[]){"HAKMEM_DEBUG=" #level, "HAKMEM_ON_ERROR=continue", __VA_ARGS__ NULL})

/* Assert c holds exactly one detection, of kind det at ptr, reported on
 * stderr with its seq. */
static void expect_one(const case_out *c, unsigned det, uint64_t ptr) {
  assert_non_null(c);
  if (atomic_load(&c->ndet) != 1 || c->det[0].fn != det || c->det[0].ptr != ptr)
    fail_msg("want one %s at 0x%llx, got %u detections (first %s at 0x%llx); stderr:\n%s", hkt_detect_name(det),
             (unsigned long long)ptr, atomic_load(&c->ndet), hkt_detect_name(c->det[0].fn),
             (unsigned long long)c->det[0].ptr, c->err);
  if (!case_line_ok(c, &c->det[0])) fail_msg("no report line for seq %llu; stderr:\n%s", (unsigned long long)c->det[0].seq, c->err);
  assert_true(case_exited_ok(c));
}

/* ---- level 1 ------------------------------------------------------------ */

static void sc_double_free_cache(void) {
  char *p = hak_malloc(40);
  C->mark[0] = (uintptr_t)p;
  hak_free(p);
  hak_free(p);
  /* continue mode: the block was not freed twice, so two allocations never
   * return the same pointer */
  char *a = hak_malloc(40), *b = hak_malloc(40);
  C->mark[1] = a == b;
}
static void test_double_free_in_cache(void **state) {
  case_out *c = run_case(ENV(1), 1, sc_double_free_cache);
  expect_one(c, HKT_DET_DOUBLE_FREE, c->mark[0]);
  assert_non_null(strstr(c->err, "this thread's cache"));
  assert_int_equal(c->mark[1], 0);
}

/* Level 1 without a recorder takes the allocator's debug fast paths
 * (heap.c), not the slow paths a recorded case goes through: the same
 * bugs must be found there. */
static void test_double_free_in_cache_unrecorded(void **state) {
  case_out *c = run_case(ENV(1), 0, sc_double_free_cache);
  char want[64];
  snprintf(want, sizeof want, "double_free at %p", (void *)c->mark[0]);
  if (!strstr(c->err, want)) fail_msg("no double_free report for %s; stderr:\n%s", want, c->err);
  assert_int_equal(c->mark[1], 0);
  assert_true(case_exited_ok(c));
}

/* An allocator bug: a block the program holds goes back into its thread's
 * cache. The next malloc that hands it out again is reported. */
static void sc_handout_in_use(void) {
  char *p = hak_malloc(40);
  C->mark[0] = (uintptr_t)p;
  hak_tcache *tc = &_hak_tls->cache[_hak_size_class(40)];
  tc->slot[tc->count++] = p;   /* the bug, done by hand */
  C->mark[1] = (uintptr_t)hak_malloc(40);
}
static void test_handout_in_use(void **state) {
  for (int record = 0; record <= 1; record++) {
    case_out *c = run_case(ENV(1), record, sc_handout_in_use);
    assert_int_equal(c->mark[1], c->mark[0]);
    char want[64];
    snprintf(want, sizeof want, "freelist at %p", (void *)c->mark[0]);
    if (!strstr(c->err, want)) fail_msg("recorded=%d: no report \"%s\"; stderr:\n%s", record, want, c->err);
    if (record) expect_one(c, HKT_DET_FREELIST, c->mark[0]);
    assert_true(case_exited_ok(c));
  }
}

/* A remote-free queue that loops (an allocator bug: a block pushed twice)
 * is reported when drained, not relinked forever (level 0: always). */
static void sc_remote_cycle(void) {
  char *p = hak_malloc(64), *q = hak_malloc(64);
  hak_ss *ss = _hak_ss_of(p);
  C->mark[0] = (uintptr_t)ss;
  /* remote: p -> q, freelist: q -> p. Draining moves each block to the
   * freelist's head and follows its old link: p, q, p, q, ... for ever. */
  *(void **)p = q;
  *(void **)q = p;
  ss->freelist = q;
  atomic_store(&ss->remote, (void *)p);
  _hak_ss_drain_remote(_hak_tls, ss);
  C->mark[1] = 1;                        /* came back */
}
static void test_remote_queue_cycle(void **state) {
  case_out *c = run_case(ENV(0), 1, sc_remote_cycle);
  assert_int_equal(c->mark[1], 1);
  const case_ev *d = case_find(c, HKT_DET_SS_INVARIANT);
  assert_non_null(d);
  assert_int_equal(d->ptr, c->mark[0]);
  assert_true(case_line_ok(c, d));
}

static void sc_double_free_freelist(void) {
  char *p = hak_malloc(100);
  C->mark[0] = (uintptr_t)p;
  hak_free(p);
  hak_thread_flush();          /* now on its SuperSlab's freelist */
  hak_free(p);
}
static void test_double_free_on_freelist(void **state) {
  case_out *c = run_case(ENV(1), 1, sc_double_free_freelist);
  expect_one(c, HKT_DET_DOUBLE_FREE, c->mark[0]);
}

static void *free_twice(void *p) {
  hak_free(p);                 /* a remote free: the block goes to its owner's queue */
  hak_free(p);
  return NULL;
}
static void sc_double_free_remote(void) {
  char *p = hak_malloc(64);
  C->mark[0] = (uintptr_t)p;
  pthread_t t;
  pthread_create(&t, NULL, free_twice, p);
  pthread_join(t, NULL);
}
static void test_double_free_in_remote_queue(void **state) {
  case_out *c = run_case(ENV(1), 1, sc_double_free_remote);
  expect_one(c, HKT_DET_DOUBLE_FREE, c->mark[0]);
  assert_int_equal(c->det[0].tid, 1);   /* the freeing thread */
}

static void sc_double_free_abort(void) {
  char *p = hak_malloc(24);
  C->mark[0] = (uintptr_t)p;
  hak_free(p);
  hak_free(p);
  C->mark[1] = 1;              /* not reached */
}
static void test_double_free_aborts_by_default(void **state) {
  const char *const env[] = {"HAKMEM_DEBUG=1", NULL};
  case_out *c = run_case(env, 1, sc_double_free_abort);
  assert_true(case_aborted(c));
  assert_int_equal(c->mark[1], 0);
  const case_ev *d = case_find(c, HKT_DET_DOUBLE_FREE);
  assert_non_null(d);
  assert_int_equal(d->ptr, c->mark[0]);
  assert_true(case_line_ok(c, d));
}

static char foreign[256] __attribute__((aligned(64)));
static void sc_invalid_free(void) {
  hak_malloc(8);               /* the allocator is up */
  C->mark[0] = (uintptr_t)(foreign + 64);
  hak_free(foreign + 64);
}
static void test_invalid_free(void **state) {
  case_out *c = run_case(ENV(1), 1, sc_invalid_free);
  expect_one(c, HKT_DET_INVALID_FREE, c->mark[0]);
  assert_non_null(strstr(c->err, "in no SuperSlab hakmem ever had"));
}

static void sc_interior_free(void) {
  char *p = hak_malloc(64);
  C->mark[0] = (uintptr_t)(p + 8);
  hak_free(p + 8);
  hak_free(p);                 /* the real free is fine */
}
static void test_interior_free(void **state) {
  case_out *c = run_case(ENV(1), 1, sc_interior_free);
  expect_one(c, HKT_DET_INTERIOR_FREE, c->mark[0]);
}

/* Fill three SuperSlabs of 1 KiB blocks, free everything: with no empty
 * cache the full ones are released. A pointer into the first is stale. */
static void sc_stale_free(void) {
  enum { N = 2500 };
  static void *p[N];
  for (int i = 0; i < N; i++) p[i] = hak_malloc(1000);
  for (int i = 0; i < N; i++) hak_free(p[i]);
  hak_thread_flush();
  C->mark[0] = (uintptr_t)p[0];
  hak_free(p[0]);
}
static void test_stale_free(void **state) {
  case_out *c = run_case(ENV(1, "HAKMEM_SS_CACHE=0",), 1, sc_stale_free);
  expect_one(c, HKT_DET_STALE_FREE, c->mark[0]);
  /* The report names the SuperSlab and when it was unregistered. */
  const case_ev *un = NULL;
  for (uint32_t i = 0; i < atomic_load(&c->nss); i++)
    if (c->ss[i].kind == HKT_EV_SS_UNREGISTER && c->mark[0] - c->ss[i].ptr < (1u << 20)) un = &c->ss[i];
  assert_non_null(un);
  assert_int_equal(c->det[0].aux, un->ptr);   /* the event carries its base */
  char want[96];
  snprintf(want, sizeof want, "UNREGISTERED at seq %llu by thread 0", (unsigned long long)un->seq);
  if (!strstr(c->err, want)) fail_msg("want '%s' in: %s", want, c->err);
}

static void sc_realloc_freed(void) {
  char *p = hak_malloc(48);
  hak_free(p);
  C->mark[0] = (uintptr_t)p;
  C->mark[1] = hak_realloc(p, 100) == NULL;
}
static void test_realloc_of_freed_block(void **state) {
  case_out *c = run_case(ENV(1), 1, sc_realloc_freed);
  expect_one(c, HKT_DET_DOUBLE_FREE, c->mark[0]);
  assert_int_equal(c->mark[1], 1);
}

/* ---- level 2 ------------------------------------------------------------ */

static void sc_canary(void) {
  char *p = hak_malloc(13);
  C->mark[0] = (uintptr_t)p;
  memset(p, 'a', 13);
  p[13] = '\0';                /* one byte too far */
  hak_free(p);
}
static void test_canary(void **state) {
  case_out *c = run_case(ENV(2), 1, sc_canary);
  expect_one(c, HKT_DET_CANARY, c->mark[0]);
  assert_int_equal(c->det[0].aux2, 13);
}

static void sc_canary_clean_realloc(void) {
  char *p = hak_malloc(13);
  memset(p, 'a', 13);
  p = hak_realloc(p, 30);      /* in place within the class: the canary moves */
  memset(p, 'b', 30);
  p = hak_realloc(p, 500);     /* moved */
  memset(p, 'c', 500);
  hak_free(p);
  char *q = hak_calloc(7, 9);
  hak_free(q);
}
static void test_canary_follows_realloc(void **state) {
  case_out *c = run_case(ENV(2), 1, sc_canary_clean_realloc);
  assert_int_equal(atomic_load(&c->ndet), 0);
  assert_true(case_exited_ok(c));
}

static void sc_poison(void) {
  char *p = hak_malloc(64);
  hak_free(p);
  p[20] = 'x';                 /* write after free */
  char *q = hak_malloc(64);    /* the cache hands the same block back */
  C->mark[0] = (uintptr_t)p;
  C->mark[1] = (uintptr_t)q;
}
static void test_poison(void **state) {
  case_out *c = run_case(ENV(2), 1, sc_poison);
  assert_int_equal(c->mark[0], c->mark[1]);
  expect_one(c, HKT_DET_POISON, c->mark[0]);
  assert_int_equal(c->det[0].aux2, 20);
}

static void sc_freelist(void) {
  char *q = hak_malloc(64), *p = hak_malloc(64);
  hak_free(q);
  hak_free(p);                 /* p is freed last: it heads the freelist after the flush */
  hak_thread_flush();
  *(void **)p = (void *)0x1234;   /* write after free over the link */
  C->mark[0] = (uintptr_t)p;
  for (int i = 0; i < 40; i++) hak_malloc(64);   /* the refill follows the list */
}
static void test_freelist_link(void **state) {
  case_out *c = run_case(ENV(2), 1, sc_freelist);
  const case_ev *d = case_find(c, HKT_DET_FREELIST);
  assert_non_null(d);
  assert_int_equal(d->ptr, c->mark[0]);
  assert_int_equal(d->aux2, 0x1234);
  assert_true(case_line_ok(c, d));
  assert_true(case_exited_ok(c));      /* the bad link was cut, not followed */
}

/* ---- level 3 ------------------------------------------------------------ */

static void sc_quarantine(void) {
  char *p = hak_malloc(64);
  hak_free(p);
  char *q = hak_malloc(64);
  C->mark[0] = q != p;          /* not handed back right away */
  p[30] = 'x';                  /* write after free, while quarantined */
  for (int i = 0; i < 200; i++) hak_free(hak_malloc(64));   /* push it out (4 KiB budget) */
  C->mark[1] = (uintptr_t)p;
  hak_free(q);
}
static void test_quarantine(void **state) {
  case_out *c = run_case(ENV(3, "HAKMEM_QUARANTINE=4096",), 1, sc_quarantine);
  assert_int_equal(c->mark[0], 1);
  expect_one(c, HKT_DET_POISON, c->mark[1]);
  assert_int_equal(c->det[0].aux2, 30);
}

static void sc_double_free_quarantined(void) {
  char *p = hak_malloc(200);
  C->mark[0] = (uintptr_t)p;
  hak_free(p);
  hak_free(p);
}
static void test_double_free_in_quarantine(void **state) {
  case_out *c = run_case(ENV(3), 1, sc_double_free_quarantined);
  expect_one(c, HKT_DET_DOUBLE_FREE, c->mark[0]);
  assert_non_null(strstr(c->err, "quarantine"));
}

/* ---- no false positives --------------------------------------------------- */

static void *clean_worker(void *arg) {
  uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  void **slot = arg ? NULL : NULL;
  enum { K = 512 };
  void *live[K] = {0};
  size_t len[K] = {0};
  for (int i = 0; i < 60000; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    int k = (int)(s % K);
    if (live[k]) {
      for (size_t j = 0; j < len[k]; j++) if (((unsigned char *)live[k])[j] != (unsigned char)(j + k)) abort();
      if (s & 64) { hak_free(live[k]); live[k] = NULL; continue; }
      size_t n = (s >> 20) % 3000 + 1;
      unsigned char *r = hak_realloc(live[k], n);
      if (!r) abort();
      for (size_t j = len[k]; j < n; j++) r[j] = (unsigned char)(j + k);
      live[k] = r, len[k] = n;
      continue;
    }
    size_t n = (s >> 8) % 9 == 0 ? (s >> 24) % 70000 + 1 : (s >> 8) % 1040 + 1;
    unsigned char *p = (s & 128) ? hak_calloc(1, n) : (s & 256) ? hak_memalign(64, n) : hak_malloc(n);
    if (!p) abort();
    for (size_t j = 0; j < n; j++) p[j] = (unsigned char)(j + k);
    live[k] = p, len[k] = n;
  }
  (void)slot;
  for (int k = 0; k < K; k++) hak_free(live[k]);
  return NULL;
}
/* Blocks made by one thread and freed by another, both ways. */
static void *handoff(void *arg) {
  void **v = arg;
  for (int i = 0; i < 4000; i++) hak_free(v[i]);
  for (int i = 0; i < 4000; i++) v[i] = hak_malloc((size_t)(i % 700) + 1);
  return NULL;
}
static void sc_clean(void) {
  pthread_t t[3];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, clean_worker, (void *)(uintptr_t)(i + 1));
  clean_worker(NULL);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  static void *v[4000];
  for (int r = 0; r < 5; r++) {
    for (int i = 0; i < 4000; i++) if (!v[i]) v[i] = hak_malloc((size_t)(i % 300) + 1);
    pthread_t h;
    pthread_create(&h, NULL, handoff, v);
    pthread_join(h, NULL);
  }
  for (int i = 0; i < 4000; i++) hak_free(v[i]);
  hak_thread_flush();
}
static void test_clean_workload_reports_nothing(void **state) {
  for (int level = 1; level <= 3; level++) {
    char lv[32];
    snprintf(lv, sizeof lv, "HAKMEM_DEBUG=%d", level);
    const char *const env[] = {lv, "HAKMEM_SS_CACHE=0", NULL};   /* releases too */
    case_out *c = run_case(env, 1, sc_clean);
    if (atomic_load(&c->ndet) || !case_exited_ok(c))
      fail_msg("level %d: %u detections, status 0x%x; stderr:\n%s", level, atomic_load(&c->ndet), c->status, c->err);
    if (strstr(c->err, "hakmem:")) fail_msg("level %d: stderr:\n%s", level, c->err);
  }
}

/* The stress test's own workloads at HAKMEM_DEBUG=3, less the quarantine:
 * the stress test compares hak_stats live counts before and after, and a
 * quarantined block counts as live until the quarantine lets it go
 * (sc_clean above runs the quarantine). */
static void test_stress_at_level3(void **state) {
  char exe[PATH_MAX + 32];
  snprintf(exe, sizeof exe, "%s/tests/test_stress", test_build_dir());
  if (access(exe, X_OK) != 0) skip();
  char *argv[] = {exe, NULL};
  const char *const env[] = {"HAKMEM_DEBUG=3", "HAKMEM_QUARANTINE=0", "HAKMEM_TEST_SAN=address", NULL};   /* the smaller scale */
  prog_result r;
  assert_int_equal(run_prog(NULL, argv, env, 600, &r), 0);
  if (!prog_exited_ok(&r) || strstr(r.err, "hakmem:") || strstr(r.out, "hakmem:"))
    fail_msg("test_stress at HAKMEM_DEBUG=3: %s\n%.2000s", prog_describe(&r), r.out);
  prog_result_free(&r);
}

/* ---- programs under LD_PRELOAD ---------------------------------------- */

static prog_result run_preloaded(char *const argv[], const char *level, const char *extra) {
  char pre[PATH_MAX + 64], lv[32];
  snprintf(pre, sizeof pre, "LD_PRELOAD=%s", test_libhakmem());
  snprintf(lv, sizeof lv, "HAKMEM_DEBUG=%s", level);
  const char *const env[] = {pre, lv, extra ? extra : "HAKMEM_INJECT=", "HAKMEM_TRACE=", NULL};
  prog_result r;
  if (run_prog(NULL, argv, env, 300, &r) != 0) r.status = -1;
  return r;
}

static void test_real_programs_at_level3(void **state) {
  if (under_sanitizer() || !*test_libhakmem()) skip();
  char *sortin = "/tmp/hak-debug-sort.txt";
  FILE *f = fopen(sortin, "w");
  assert_non_null(f);
  for (int i = 0; i < 20000; i++) fprintf(f, "%d line %x\n", (i * 7919) % 20011, i);
  fclose(f);
  char *progs[][7] = {
    {"python3", "-c", "import json,re;d={str(i):[i]*(i%7) for i in range(30000)};print(len(json.dumps(d)))", NULL},
    {"sort", sortin, NULL},
    {"perl", "-e", "my %h; $h{$_} = [1..($_%9)] for 1..50000; print scalar(keys %h), qq(\\n)", NULL},
    {"git", "--version", NULL},
    {"gcc", "-O2", "-fsyntax-only", "-Iinclude", "-Ialloc", "tests/test_debug.c", NULL},
  };
  for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "/usr/bin/%s", progs[i][0]);
    if (access(path, X_OK) != 0) continue;
    prog_result r = run_preloaded(progs[i], "3", NULL);
    if (!prog_exited_ok(&r) || strstr(r.err, "hakmem:"))
      fail_msg("%s at HAKMEM_DEBUG=3: %s", progs[i][0], prog_describe(&r));
    prog_result_free(&r);
  }
  unlink(sortin);
}

/* Each example's bug is found at the level its README gives, and the
 * program aborts with the report as its last words. */
static void test_examples(void **state) {
  if (under_sanitizer() || !*test_libhakmem()) skip();
  struct { const char *name, *level; unsigned kind; } ex[] = {
    {"double_free", "1", HKT_DET_DOUBLE_FREE}, {"interior_free", "0", HKT_DET_INTERIOR_FREE},
    {"overflow", "2", HKT_DET_CANARY}, {"uaf_threads", "3", HKT_DET_POISON},
  };
  for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
    char exe[PATH_MAX + 32];
    snprintf(exe, sizeof exe, "%s/examples/%s", test_build_dir(), ex[i].name);
    if (access(exe, X_OK) != 0) fail_msg("%s not built", exe);
    char *argv[] = {exe, NULL};
    prog_result r = run_preloaded(argv, ex[i].level, NULL);
    if (prog_signal(&r) != SIGABRT || !reports_kind(r.err, ex[i].kind))
      fail_msg("%s at HAKMEM_DEBUG=%s: want %s and SIGABRT, got %s", ex[i].name, ex[i].level,
               hkt_detect_name(ex[i].kind), prog_describe(&r));
    prog_result_free(&r);
    /* and clean without the check that finds it (interior_free: always on) */
    if (strcmp(ex[i].level, "0") != 0) {
      r = run_preloaded(argv, "0", NULL);
      assert_true(prog_exited_ok(&r));
      prog_result_free(&r);
    }
  }
  char exe[PATH_MAX + 32];
  snprintf(exe, sizeof exe, "%s/examples/leaks", test_build_dir());
  char *argv[] = {exe, NULL};
  prog_result r = run_preloaded(argv, "3", NULL);
  assert_true(prog_exited_ok(&r));
  assert_null(strstr(r.err, "hakmem:"));
  prog_result_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_double_free_in_cache),
    cmocka_unit_test(test_double_free_in_cache_unrecorded),
    cmocka_unit_test(test_handout_in_use),
    cmocka_unit_test(test_remote_queue_cycle),
    cmocka_unit_test(test_double_free_on_freelist),
    cmocka_unit_test(test_double_free_in_remote_queue),
    cmocka_unit_test(test_double_free_aborts_by_default),
    cmocka_unit_test(test_invalid_free),
    cmocka_unit_test(test_interior_free),
    cmocka_unit_test(test_stale_free),
    cmocka_unit_test(test_realloc_of_freed_block),
    cmocka_unit_test(test_canary),
    cmocka_unit_test(test_canary_follows_realloc),
    cmocka_unit_test(test_poison),
    cmocka_unit_test(test_freelist_link),
    cmocka_unit_test(test_quarantine),
    cmocka_unit_test(test_double_free_in_quarantine),
    cmocka_unit_test(test_clean_workload_reports_nothing),
    cmocka_unit_test(test_stress_at_level3),
    cmocka_unit_test(test_real_programs_at_level3),
    cmocka_unit_test(test_examples),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
