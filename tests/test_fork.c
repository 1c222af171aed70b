/* test_fork.c — the allocator across fork().
 *
 * fork() copies one thread; any allocator lock another thread held at that
 * moment stays held in the child unless hakmem's atfork handlers take and
 * release them. Both ways of reaching the heap are tested: the hak_* API in
 * this process, and plain malloc in a helper program run with
 * LD_PRELOAD=libhakmem.so (skipped under sanitizers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"
#include "testutil.h"

static uint64_t next(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

static size_t some_size(uint64_t *s) {
  uint64_t r = next(s) % 100;
  if (r < 70) return next(s) % 1024 + 1;
  if (r < 97) return next(s) % 60000 + 1025;
  return next(s) % (1u << 20) + 65536;
}

/* Allocate, fill, check and free through hak_*: 0 if every block held its
 * bytes. Runs in the parent's threads and in the children. */
static int hak_churn(uint64_t seed, int rounds) {
  enum { LIVE = 48 };
  unsigned char *live[LIVE] = {0};
  size_t size[LIVE] = {0};
  int bad = 0;
  for (int i = 0; i < rounds; i++) {
    int k = (int)(next(&seed) % LIVE);
    if (live[k]) {
      for (size_t j = 0; j < size[k]; j += 61)
        if (live[k][j] != (unsigned char)(k * 7 + j)) bad = 1;
      hak_free(live[k]);
    }
    size[k] = some_size(&seed);
    switch (next(&seed) % 4) {
      case 0: live[k] = hak_calloc(1, size[k]); break;
      case 1: live[k] = hak_memalign(64, size[k]); break;
      default: live[k] = hak_malloc(size[k]); break;
    }
    if (!live[k]) return 1;
    for (size_t j = 0; j < size[k]; j += 61) live[k][j] = (unsigned char)(k * 7 + j);
  }
  for (int k = 0; k < LIVE; k++) hak_free(live[k]);
  return bad;
}

static atomic_int g_stop;
static atomic_int g_thread_bad;

static void *busy(void *arg) {
  uint64_t seed = (uintptr_t)arg * 7919 + 3;
  while (!atomic_load(&g_stop))
    if (hak_churn(next(&seed), 300)) atomic_store(&g_thread_bad, 1);
  hak_thread_flush();
  return NULL;
}

static void *child_thread(void *arg) {
  int bad = hak_churn((uintptr_t)arg, 500);
  hak_thread_flush();
  return (void *)(intptr_t)bad;
}

/* What a child does: allocate and free every kind, then (not under TSan,
 * which does not support threads in a child of a threaded process) do the
 * same in a thread of its own. Returns the exit status. */
static int child_work(int i) {
  static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE};
  for (size_t k = 0; k < sizeof sigs / sizeof *sigs; k++) signal(sigs[k], SIG_DFL);
  alarm(20);  /* a deadlocked child dies of SIGALRM instead of hanging */
  if (hak_churn((uint64_t)i * 131 + 1, 1500)) return 1;
  /* A thread of its own, but not under TSan or ASan: their runtimes keep
   * their allocator's locks across fork (GCC 12's), so a child of a
   * parent whose other thread was in that allocator at the fork hangs in
   * pthread_create (seen: a SIGALRM'd child waiting in ASan's
   * SizeClassAllocator64 mutex under pthread_getattr_np; 3 of 40 runs). */
  const char *san = getenv("HAKMEM_TEST_SAN");
  if (!(san && (strcmp(san, "thread") == 0 || strcmp(san, "address") == 0))) {
    pthread_t t;
    void *res = (void *)1;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(i + 1000)) != 0) return 2;
    if (pthread_join(t, &res) != 0 || res) return 3;
  }
  hak_thread_flush();
  return 0;
}

static const char *describe_status(int st) {
  static char buf[64];
  if (WIFSIGNALED(st)) snprintf(buf, sizeof buf, "killed by signal %d", WTERMSIG(st));
  else snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(st));
  return buf;
}

static void test_fork_hak_api(void **state) {
  int forks = under_sanitizer() ? 8 : 30;
  atomic_store(&g_stop, 0);
  atomic_store(&g_thread_bad, 0);
  hak_thread_flush();
  hak_stats s0, s1;
  hak_stats_get(&s0);
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, busy, (void *)(uintptr_t)(i + 1)), 0);
  int failed = 0, first_status = 0, first_child = -1;
  for (int i = 0; i < forks; i++) {
    struct timespec ts = {0, 3 * 1000 * 1000};
    nanosleep(&ts, NULL);  /* let the threads get into the allocator */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(child_work(i));
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      if (!failed) first_status = st, first_child = i;
      failed++;
    }
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
  if (failed)
    fail_msg("%d of %d children failed; child %d: %s (exit 1: bad contents/NULL, 2-3: its "
             "thread, SIGALRM: deadlock)", failed, forks, first_child, describe_status(first_status));
  assert_int_equal(atomic_load(&g_thread_bad), 0);
  /* The parent's heap is intact: every block it made is accounted for. */
  hak_thread_flush();
  hak_stats_get(&s1);
  for (uint32_t c = 0; c < s1.num_classes && c < HAK_NUM_CLASSES; c++)
    if (s1.cls[c].live_blocks != s0.cls[c].live_blocks)
      fail_msg("parent: class %u has %llu live blocks, %llu before", c,
               (unsigned long long)s1.cls[c].live_blocks, (unsigned long long)s0.cls[c].live_blocks);
  assert_int_equal(s1.large_live_bytes, s0.large_live_bytes);
}

/* fork() from a thread other than the main one, while the main thread and
 * another allocate. */
static void *forking_thread(void *arg) {
  int *failed = arg;
  for (int i = 0; i < 5; i++) {
    pid_t pid = fork();
    if (pid == 0) _exit(child_work(100 + i));
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) (*failed)++;
  }
  return NULL;
}

static void test_fork_from_thread(void **state) {
  atomic_store(&g_stop, 0);
  pthread_t busy_t, fork_t;
  int failed = 0;
  assert_int_equal(pthread_create(&busy_t, NULL, busy, (void *)(uintptr_t)9), 0);
  assert_int_equal(pthread_create(&fork_t, NULL, forking_thread, &failed), 0);
  while (pthread_tryjoin_np(fork_t, NULL) != 0) hak_churn(5, 200);
  atomic_store(&g_stop, 1);
  assert_int_equal(pthread_join(busy_t, NULL), 0);
  assert_int_equal(failed, 0);
}

/* Plain malloc through the preloaded library, in a real program. */
static void test_fork_preload(void **state) {
  if (under_sanitizer()) skip();
  const char *lib = test_libhakmem();
  if (!*lib) fail_msg("%s/lib/libhakmem.so is missing", test_build_dir());
  char *dir = make_scratch_dir();
  assert_non_null(dir);
  char exe[PATH_MAX + 64], preload[PATH_MAX + 64], why[1200] = "";
  snprintf(exe, sizeof exe, "%s/fork_threads", dir);
  snprintf(preload, sizeof preload, "LD_PRELOAD=%s", lib);
  char *argv[] = {exe, "30", NULL};
  const char *env[] = {preload, NULL};
  prog_result r = {0};
  if (build_helper(dir, "fork_threads", NULL) != 0) {
    snprintf(why, sizeof why, "cannot build tests/preload_progs/fork_threads.c");
  } else if (run_prog(NULL, argv, NULL, 60, &r) != 0 || !prog_exited_ok(&r)) {
    /* Without hakmem first: the helper itself must be sound. */
    snprintf(why, sizeof why, "fork_threads without hakmem: %s", prog_describe(&r));
  } else {
    prog_result_free(&r);
    if (run_prog(NULL, argv, env, 120, &r) != 0 || !prog_exited_ok(&r))
      snprintf(why, sizeof why, "fork_threads under hakmem: %s", prog_describe(&r));
    else if (!strstr(r.out, "fork_threads: 30 forks ok"))
      snprintf(why, sizeof why, "fork_threads under hakmem printed \"%.200s\"", r.out);
  }
  prog_result_free(&r);
  remove_scratch_dir(dir);  /* before any failure: fail_msg does not return */
  if (why[0]) fail_msg("%s", why);
}

int main(void) {
  /* A glob on test names, e.g. CMOCKA_TEST_FILTER='test_calloc*'. */
  const char *only = getenv("CMOCKA_TEST_FILTER");
  if (only && *only) cmocka_set_test_filter(only);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_hak_api),
      cmocka_unit_test(test_fork_from_thread),
      cmocka_unit_test(test_fork_preload),
  };
  return cmocka_run_group_tests_name("fork", tests, NULL, NULL);
}
