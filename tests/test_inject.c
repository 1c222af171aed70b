/* test_inject.c — HAKMEM_INJECT: each injected allocator bug fires where
 * it was asked to, is detected in debug mode with the right kind, fires at
 * the same sequence number on every run, and is reproduced by replay.
 *
 * The workload (in a forked child, debug_case.h) is a producer that
 * allocates 64-byte blocks (class 3) and frees half of them itself, and a
 * consumer thread per round that frees the other half: refills, flushes,
 * remote frees and remote drains in a fixed order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include "hakmem.h"
#include "debug_case.h"

enum { ROUNDS = 40, BATCH = 300 };
static void *batch[BATCH];

static void *consume(void *arg) {
  (void)arg;
  for (int i = 1; i < BATCH; i += 2) hak_free(batch[i]);
  hak_thread_flush();
  return NULL;
}

static void sc_workload(void) {
  char cfg[1024];
  _hak_config_describe(cfg, sizeof cfg);
  const char *inj = getenv("HAKMEM_INJECT");
  char want[96];
  snprintf(want, sizeof want, "HAKMEM_INJECT=%s\n", inj ? inj : "none");
  C->mark[1] = strstr(cfg, want) != NULL;     /* the trace header will carry it */
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < BATCH; i++) {
      batch[i] = hak_malloc(48 + (size_t)(i % 16));
      memset(batch[i], r, 48);
    }
    for (int i = 0; i < BATCH; i += 2) hak_free(batch[i]);
    pthread_t t;
    pthread_create(&t, NULL, consume, NULL);
    pthread_join(t, NULL);
  }
  C->mark[0] = 1;                             /* finished */
}

static case_out *run_inject(const char *spec, int level, int cont) {
  static char inj[64], lv[32];
  snprintf(inj, sizeof inj, "HAKMEM_INJECT=%s", spec);
  snprintf(lv, sizeof lv, "HAKMEM_DEBUG=%d", level);
  const char *const env[] = {inj, lv, cont ? "HAKMEM_ON_ERROR=continue" : "HAKMEM_ON_ERROR=abort", NULL};
  return run_case(env, 1, sc_workload);
}

/* At debug level 1 the injection is caught: the first detection is the
 * release invariant / accounting check, reported with its seq, and the
 * run aborts. Run twice: the same detection at the same seq. */
static void expect_caught(const char *spec, const char *fired) {
  uint64_t seq[2], ptr[2];
  for (int run = 0; run < 2; run++) {
    case_out *c = run_inject(spec, 1, 0);
    assert_non_null(c);
    if (!strstr(c->err, fired)) fail_msg("%s: no '%s' line; stderr:\n%s", spec, fired, c->err);
    if (!case_aborted(c) || atomic_load(&c->ndet) < 1 || c->det[0].fn != HKT_DET_SS_INVARIANT)
      fail_msg("%s: want ss_invariant and abort, got %u detections (first %s), status 0x%x; stderr:\n%s", spec,
               atomic_load(&c->ndet), hkt_detect_name(c->det[0].fn), c->status, c->err);
    assert_true(case_line_ok(c, &c->det[0]));
    assert_int_equal(c->mark[1], 1);
    seq[run] = c->det[0].seq;
    ptr[run] = c->det[0].ptr;
  }
  assert_int_equal(seq[0], seq[1]);
  assert_int_equal(ptr[0] & 0xfffff, ptr[1] & 0xfffff);   /* same place in its SuperSlab (the arena base is random) */
}

static void test_clean_without_injection(void **state) {
  case_out *c = run_inject("none", 1, 0);
  assert_true(case_exited_ok(c));
  assert_int_equal(c->mark[0], 1);
  assert_int_equal(atomic_load(&c->ndet), 0);
  assert_null(strstr(c->err, "hakmem:"));
}

static void test_early_release(void **state) {
  expect_caught("early_release:3@5", "HAKMEM_INJECT=early_release fired in thread 0");
}

static void test_early_release_flush(void **state) {
  expect_caught("early_release_flush:3@5", "HAKMEM_INJECT=early_release_flush fired in thread 0");
}

/* Without debug checks the early release is the seed's bug: the cache
 * hands out blocks of a released SuperSlab and the program goes on until a
 * free of one of them cannot be explained (or memory is shared). */
static void test_early_release_level0_breaks_the_program(void **state) {
  case_out *c = run_inject("early_release:3@5", 0, 0);
  assert_non_null(strstr(c->err, "early_release fired"));
  assert_false(case_exited_ok(c));
  assert_int_equal(c->mark[0], 0);
  const case_ev *d = case_find(c, HKT_DET_STALE_FREE);
  if (d) {
    assert_true(case_line_ok(c, d));
    assert_non_null(strstr(c->err, "UNREGISTERED at seq"));
  }
}

static void test_early_decrement(void **state) {
  expect_caught("early_decrement:3@5", "HAKMEM_INJECT=early_decrement fired in thread 0");
}

static void test_lost_drain(void **state) {
  expect_caught("lost_drain:3@2", "HAKMEM_INJECT=lost_drain fired in thread 0");
}

static void test_skip_pin(void **state) {
  expect_caught("skip_pin:3@2", "HAKMEM_INJECT=skip_pin fired in thread 0");
}

/* The class filter: an injection into class 5 never fires in a workload of
 * class 3 only... */
static void test_other_class_does_not_fire(void **state) {
  case_out *c = run_inject("early_release:5", 1, 0);
  assert_true(case_exited_ok(c));
  assert_null(strstr(c->err, "fired"));
}

/* ...nor one for another thread (the workload allocates in thread 0)... */
static void test_thread_filter(void **state) {
  case_out *c = run_inject("early_release:3@5/1", 1, 0);
  assert_true(case_exited_ok(c));
  assert_null(strstr(c->err, "fired"));
  c = run_inject("early_release:3@5/0", 1, 0);
  assert_non_null(strstr(c->err, "early_release fired in thread 0"));
  assert_int_equal(c->mark[1], 1);          /* described exactly as given */
  assert_true(case_aborted(c));
}

/* ...and a count past the workload's events does not fire either. */
static void test_count_past_the_end(void **state) {
  case_out *c = run_inject("early_release:3@100000", 1, 0);
  assert_true(case_exited_ok(c));
  assert_null(strstr(c->err, "fired"));
}

static void test_bad_spec_is_reported_and_ignored(void **state) {
  const char *bad[] = {"early_relase", "early_release:99", "lost_drain@x", "skip_pin:3@", "early_release:3@1/x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    case_out *c = run_inject(bad[i], 1, 0);
    char want[80];
    snprintf(want, sizeof want, "hakmem: HAKMEM_INJECT=%s: ", bad[i]);
    if (!strstr(c->err, want) || !case_exited_ok(c)) fail_msg("%s: stderr:\n%s", bad[i], c->err);
    assert_null(strstr(c->err, "fired"));
  }
}

/* Record the injected example with the real recorder (it aborts at the
 * detection, inside a free, while other threads are inside calls) and
 * replay it five times: every replay shows the same detection at the same
 * seq, identical to the recording. Returns 0 when it did, else writes why
 * into `why`. */
static int record_and_replay(char *why, size_t whylen);

/* One recording, replayed exactly: frees racing the early release are
 * ordered against it (docs/replay.md, "Frees and the registry"). */
static void test_replay_reproduces(void **state) {
  if (under_sanitizer() || !*test_libhakmem()) skip();
  char why[4096];
  if (record_and_replay(why, sizeof why) != 0) fail_msg("%s", why);
}

static int record_and_replay(char *why, size_t whylen) {
  char hakmem[PATH_MAX + 32], exe[PATH_MAX + 32], trace[PATH_MAX + 32], pre[PATH_MAX + 64];
  snprintf(hakmem, sizeof hakmem, "%s/bin/hakmem", test_build_dir());
  snprintf(exe, sizeof exe, "%s/examples/injected", test_build_dir());
  char *dir = make_scratch_dir();
  assert_non_null(dir);
  snprintf(trace, sizeof trace, "%s/inj.hkt.zst", dir);
  snprintf(pre, sizeof pre, "LD_PRELOAD=%s", test_libhakmem());
  char tr[PATH_MAX + 64];
  snprintf(tr, sizeof tr, "HAKMEM_TRACE=%s", trace);
  const char *const env[] = {pre, tr, "HAKMEM_INJECT=early_release_flush:3@4/1", "HAKMEM_DEBUG=1", NULL};
  char *argv[] = {exe, NULL};
  prog_result r;
  assert_int_equal(run_prog(NULL, argv, env, 120, &r), 0);
  assert_int_equal(prog_signal(&r), SIGABRT);
  /* the seq the program printed */
  const char *at = strstr(r.err, "hakmem: ss_invariant at ");   /* "KIND at PTR (seq N, ..." */
  assert_non_null(at);
  unsigned long long seq = 0;
  const char *s = strstr(at, "(seq ");
  assert_non_null(s);
  seq = strtoull(s + 5, NULL, 10);
  prog_result_free(&r);

  char seqarg[32];
  snprintf(seqarg, sizeof seqarg, "%llu", seq);
  char *dump[] = {hakmem, "dump", trace, "--from", seqarg, "--to", seqarg, NULL};
  assert_int_equal(run_prog(NULL, dump, NULL, 60, &r), 0);
  if (!strstr(r.out, "ss_invariant")) fail_msg("trace has no detection at seq %llu: %s", seq, r.out);
  prog_result_free(&r);

  char *replay[] = {hakmem, "replay", trace, "--repeat", "5", "--json", NULL};
  assert_int_equal(run_prog(NULL, replay, NULL, 300, &r), 0);
  if (strstr(r.err, "not built in")) {   /* replay is built in this tree: say so loudly */
    snprintf(why, whylen, "hakmem replay is not built");
    prog_result_free(&r);
    remove_scratch_dir(dir);
    return -1;
  }
  char want[64];
  snprintf(want, sizeof want, "\"seq\":%llu", seq);
  int ok = strstr(r.out, want) && strstr(r.out, "ss_invariant") && strstr(r.out, "\"runs_identical\":5") &&
           strstr(r.out, "\"runs_same_as_each_other\":true");
  if (!ok) snprintf(why, whylen, "replay did not reproduce ss_invariant at seq %llu: %s; %.2000s", seq,
                    prog_describe(&r), r.out);
  prog_result_free(&r);
  remove_scratch_dir(dir);
  return ok ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_clean_without_injection),
    cmocka_unit_test(test_early_release),
    cmocka_unit_test(test_early_release_flush),
    cmocka_unit_test(test_early_release_level0_breaks_the_program),
    cmocka_unit_test(test_early_decrement),
    cmocka_unit_test(test_lost_drain),
    cmocka_unit_test(test_skip_pin),
    cmocka_unit_test(test_other_class_does_not_fire),
    cmocka_unit_test(test_thread_filter),
    cmocka_unit_test(test_count_past_the_end),
    cmocka_unit_test(test_bad_spec_is_reported_and_ignored),
    cmocka_unit_test(test_replay_reproduces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
