/* test_preload.c — real programs on hakmem by LD_PRELOAD.
 *
 * Each program runs twice, on the system allocator and with
 * LD_PRELOAD=$HAKMEM_BUILD/lib/libhakmem.so, and must give the same output:
 * python3, sort, gcc, git, perl. Then what only hakmem does: a program
 * linked with -lhakmem, HAKMEM_STATS=1, the invalid-free report and its
 * HAKMEM_ON_ERROR=continue policy, malformed HAKMEM_* values, and the same
 * addresses on every run with a fixed HAKMEM_ARENA_BASE.
 *
 * All of it is skipped under a sanitizer ($HAKMEM_TEST_SAN): the library is
 * then instrumented and cannot be preloaded into uninstrumented programs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char *g_dir;                 /* scratch directory of this run */
static char g_preload[PATH_MAX + 64];  /* "LD_PRELOAD=/abs/libhakmem.so" */

static int setup(void **state) {
  if (under_sanitizer()) return 0;
  const char *lib = test_libhakmem();
  if (!*lib) {
    fprintf(stderr, "test_preload: %s/lib/libhakmem.so is missing\n", test_build_dir());
    return -1;
  }
  snprintf(g_preload, sizeof g_preload, "LD_PRELOAD=%s", lib);
  g_dir = make_scratch_dir();
  return g_dir ? 0 : -1;
}

static int teardown(void **state) {
  remove_scratch_dir(g_dir);
  g_dir = NULL;
  return 0;
}

/* env plus LD_PRELOAD, in a static array (env has at most 14 entries). */
static const char *const *with_preload(const char *const env[]) {
  static const char *e[16];
  int n = 0;
  for (int i = 0; env && env[i] && n < 14; i++) e[n++] = env[i];
  e[n++] = g_preload;
  e[n] = NULL;
  return e;
}

static void run_hakmem(const char *cwd, char *const argv[], const char *const env[], prog_result *r) {
  assert_int_equal(run_prog(cwd, argv, with_preload(env), 180, r), 0);
}

/* The first line where two outputs differ, for the failure message. */
static const char *first_difference(const char *a, const char *b) {
  static char msg[400];
  int line = 1;
  const char *la = a, *lb = b;
  while (*a && *a == *b) {
    if (*a == '\n') line++, la = a + 1, lb = b + 1;
    a++, b++;
  }
  snprintf(msg, sizeof msg, "line %d: \"%.120s\" vs \"%.120s\"", line, la, lb);
  for (char *p = msg; *p; p++)
    if (*p == '\n') *p = ' ';
  return msg;
}

/* Run argv without and with hakmem: both succeed with the same stdout. */
static void assert_same_output(const char *cwd, char *const argv[], const char *const env[]) {
  prog_result plain, hak;
  assert_int_equal(run_prog(cwd, argv, env, 180, &plain), 0);
  if (!prog_exited_ok(&plain)) fail_msg("%s without hakmem: %s", argv[0], prog_describe(&plain));
  run_hakmem(cwd, argv, env, &hak);
  if (!prog_exited_ok(&hak)) fail_msg("%s under hakmem: %s", argv[0], prog_describe(&hak));
  if (plain.out_len != hak.out_len || memcmp(plain.out, hak.out, plain.out_len) != 0)
    fail_msg("%s: output differs under hakmem (%zu vs %zu bytes), %s", argv[0], plain.out_len,
             hak.out_len, first_difference(plain.out, hak.out));
  assert_true(plain.out_len > 0);
  prog_result_free(&plain);
  prog_result_free(&hak);
}

static char *scratch_path(const char *name) {
  static char bufs[4][PATH_MAX + 256];
  static int next;
  char *b = bufs[next++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
  return b;
}

static char *abs_source(const char *rel) {
  static char bufs[2][PATH_MAX];
  static int next;
  char *b = bufs[next++ % 2];
  if (!realpath(rel, b)) fail_msg("cannot find %s (run from the repo root)", rel);
  return b;
}

/* ---- the same output with and without hakmem ------------------------------- */

static void test_python(void **state) {
  if (under_sanitizer()) skip();
  char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  char *argv[] = {py, abs_source("tests/preload_progs/dict_list.py"), NULL};
  const char *env[] = {"PYTHONHASHSEED=0", "PYTHONDONTWRITEBYTECODE=1", NULL};
  assert_same_output(NULL, argv, env);
}

static void test_perl(void **state) {
  if (under_sanitizer()) skip();
  char *argv[] = {"perl", abs_source("tests/preload_progs/hashes.pl"), NULL};
  const char *env[] = {"PERL_HASH_SEED=0", "PERL_PERTURB_KEYS=0", NULL};
  assert_same_output(NULL, argv, env);
}

/* sort of a ~5 MB generated file, in several threads, with a small buffer
 * so that it spills to temporary files and merges. */
static void test_sort(void **state) {
  if (under_sanitizer()) skip();
  char *in = scratch_path("unsorted.txt");
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    fprintf(f, "%08" PRIx64 " %d %.*s\n", x >> 32, (int)(x % 100000), (int)(x % 9) + 1, "qwertyuiop");
  }
  assert_int_equal(fclose(f), 0);
  const char *env[] = {"LC_ALL=C", NULL};
  char *argv1[] = {"sort", "-S", "1M", "--parallel=2", "-T", g_dir, in, NULL};
  assert_same_output(NULL, argv1, env);
  char *argv2[] = {"sort", "-k2,2n", "-k1,1r", "-S", "2M", "-T", g_dir, in, NULL};
  assert_same_output(NULL, argv2, env);
}

static const char *k_c_source =
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "struct node { struct node *next; int v; };\n"
    "static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }\n"
    "int main(void) {\n"
    "  int a[1000]; unsigned x = 1;\n"
    "  for (int i = 0; i < 1000; i++) { x = x * 1103515245u + 12345u; a[i] = (int)(x >> 16) % 1000; }\n"
    "  qsort(a, 1000, sizeof *a, cmp);\n"
    "  struct node *head = NULL;\n"
    "  for (int i = 0; i < 1000; i++) { struct node *n = malloc(sizeof *n); n->v = a[i]; n->next = head; head = n; }\n"
    "  long sum = 0; while (head) { struct node *n = head; head = n->next; sum += n->v; free(n); }\n"
    "  printf(\"min %d max %d sum %ld\\n\", a[0], a[999], sum);\n"
    "  return 0;\n"
    "}\n";

/* gcc (cc1, as, collect2, ld all run on hakmem) makes the same object, and
 * the program it links runs. */
static void test_gcc(void **state) {
  if (under_sanitizer()) skip();
  assert_int_equal(write_whole_file(scratch_path("prog.c"), k_c_source), 0);
  char *plain_o = strdup(scratch_path("plain.o")), *hak_o = strdup(scratch_path("hak.o"));
  char *argv_plain[] = {"gcc", "-O2", "-g", "-c", "prog.c", "-o", plain_o, NULL};
  char *argv_hak[] = {"gcc", "-O2", "-g", "-c", "prog.c", "-o", hak_o, NULL};
  prog_result r;
  assert_int_equal(run_prog(g_dir, argv_plain, NULL, 180, &r), 0);
  if (!prog_exited_ok(&r)) fail_msg("gcc without hakmem: %s", prog_describe(&r));
  prog_result_free(&r);
  run_hakmem(g_dir, argv_hak, NULL, &r);
  if (!prog_exited_ok(&r)) fail_msg("gcc under hakmem: %s", prog_describe(&r));
  prog_result_free(&r);
  size_t la = 0, lb = 0;
  char *a = read_whole_file(plain_o, &la), *b = read_whole_file(hak_o, &lb);
  assert_true(la > 0);
  if (la != lb || memcmp(a, b, la) != 0) {
    /* Not byte-identical: the disassembly must still be. */
    char *da[] = {"objdump", "-d", "--no-show-raw-insn", plain_o, NULL};
    char *db[] = {"objdump", "-d", "--no-show-raw-insn", hak_o, NULL};
    prog_result ra, rb;
    assert_int_equal(run_prog(NULL, da, NULL, 60, &ra), 0);
    assert_int_equal(run_prog(NULL, db, NULL, 60, &rb), 0);
    const char *ta = strstr(ra.out, "Disassembly"), *tb = strstr(rb.out, "Disassembly");
    assert_non_null(ta);
    assert_non_null(tb);
    if (strcmp(ta, tb) != 0) fail_msg("gcc under hakmem made different code: %s", first_difference(ta, tb));
    prog_result_free(&ra);
    prog_result_free(&rb);
  }
  free(a);
  free(b);
  /* Link with and without hakmem; both programs print the same. */
  char *exe_plain = strdup(scratch_path("prog-plain")), *exe_hak = strdup(scratch_path("prog-hak"));
  char *link_plain[] = {"gcc", "-O1", "prog.c", "-o", exe_plain, NULL};
  char *link_hak[] = {"gcc", "-O1", "prog.c", "-o", exe_hak, NULL};
  assert_int_equal(run_prog(g_dir, link_plain, NULL, 180, &r), 0);
  assert_true(prog_exited_ok(&r));
  prog_result_free(&r);
  run_hakmem(g_dir, link_hak, NULL, &r);
  if (!prog_exited_ok(&r)) fail_msg("gcc (link) under hakmem: %s", prog_describe(&r));
  prog_result_free(&r);
  prog_result rp, rh;
  char *run_plain[] = {exe_plain, NULL}, *run_hak[] = {exe_hak, NULL};
  assert_int_equal(run_prog(NULL, run_plain, NULL, 30, &rp), 0);
  assert_int_equal(run_prog(NULL, run_hak, NULL, 30, &rh), 0);
  assert_true(prog_exited_ok(&rp) && prog_exited_ok(&rh));
  assert_non_null(strstr(rp.out, "min 0 max 999 sum "));
  assert_string_equal(rp.out, rh.out);
  prog_result_free(&rp);
  prog_result_free(&rh);
  free(exe_plain);
  free(exe_hak);
  free(plain_o);
  free(hak_o);
}

/* git init/add/commit/repack/log in a fresh repository; with fixed
 * identities and dates the commit hashes depend only on content. */
static void git_session(const char *repo, int preload, char **log_out) {
  char home[PATH_MAX + 64];
  snprintf(home, sizeof home, "HOME=%s", g_dir);
  const char *env[] = {home,
                       "GIT_CONFIG_NOSYSTEM=1",
                       "GIT_CONFIG_GLOBAL=/dev/null",
                       "GIT_AUTHOR_NAME=Hak Mem",
                       "GIT_AUTHOR_EMAIL=hak@example.org",
                       "GIT_AUTHOR_DATE=2024-01-02T03:04:05 +0000",
                       "GIT_COMMITTER_NAME=Hak Mem",
                       "GIT_COMMITTER_EMAIL=hak@example.org",
                       "GIT_COMMITTER_DATE=2024-01-02T03:04:05 +0000",
                       "LC_ALL=C",
                       NULL};
  const char *const *e = preload ? with_preload(env) : env;
  char *cmds[][8] = {
      {"git", "-c", "init.defaultBranch=main", "init", "-q", NULL},
      {"git", "add", ".", NULL},
      {"git", "commit", "-q", "-m", "first", NULL},
      {"git", "rm", "-q", "b.txt", NULL},
      {"git", "commit", "-q", "-a", "-m", "second", NULL},
      {"git", "repack", "-a", "-d", "-q", NULL},
      {"git", "fsck", "--no-progress", NULL},
      {"git", "log", "--format=%H %T %s", NULL},
  };
  size_t ncmd = sizeof cmds / sizeof *cmds;
  for (size_t i = 0; i < ncmd; i++) {
    if (i == 1) {  /* content: many small files and one larger one */
      for (int k = 0; k < 40; k++) {
        char name[PATH_MAX + 64], text[64];
        snprintf(name, sizeof name, "%s/f%02d.txt", repo, k);
        snprintf(text, sizeof text, "file %d\n%*s\n", k, k * 3, "x");
        assert_int_equal(write_whole_file(name, text), 0);
      }
      char name[PATH_MAX + 64];
      snprintf(name, sizeof name, "%s/b.txt", repo);
      assert_int_equal(write_whole_file(name, k_c_source), 0);
    }
    prog_result r;
    assert_int_equal(run_prog(repo, cmds[i], e, 120, &r), 0);
    if (!prog_exited_ok(&r))
      fail_msg("git %s %s hakmem: %s", cmds[i][1], preload ? "under" : "without", prog_describe(&r));
    if (i + 1 == ncmd) *log_out = strdup(r.out);
    prog_result_free(&r);
  }
}

static void test_git(void **state) {
  if (under_sanitizer()) skip();
  char *plain_repo = strdup(scratch_path("repo-plain")), *hak_repo = strdup(scratch_path("repo-hak"));
  assert_int_equal(mkdir(plain_repo, 0755), 0);
  assert_int_equal(mkdir(hak_repo, 0755), 0);
  char *plain_log = NULL, *hak_log = NULL;
  git_session(plain_repo, 0, &plain_log);
  git_session(hak_repo, 1, &hak_log);
  assert_non_null(strstr(plain_log, " second\n"));
  assert_string_equal(plain_log, hak_log);
  free(plain_log);
  free(hak_log);
  free(plain_repo);
  free(hak_repo);
}

/* ---- hakmem's own behaviour -------------------------------------------------- */

/* A program linked with -lhakmem (no preload) uses hakmem's malloc. */
static void test_linked_program(void **state) {
  if (under_sanitizer()) skip();
  char libdir[PATH_MAX + 16], rpath[PATH_MAX + 32];
  snprintf(libdir, sizeof libdir, "-L%s/lib", test_build_dir());
  snprintf(rpath, sizeof rpath, "-Wl,-rpath,%s/lib", test_build_dir());
  const char *extra[] = {libdir, rpath, "-lhakmem", "-ldl", NULL};
  assert_int_equal(build_helper(g_dir, "linked", extra), 0);
  char *argv[] = {scratch_path("linked"), NULL};
  prog_result r;
  assert_int_equal(run_prog(NULL, argv, NULL, 60, &r), 0);
  if (!prog_exited_ok(&r)) fail_msg("linked program: %s; stdout: %s", prog_describe(&r), r.out);
  assert_non_null(strstr(r.out, "linked: ok"));
  prog_result_free(&r);
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* HAKMEM_STATS=1 prints a report at exit, also for programs that close
 * their stderr on the way out (coreutils do, in an atexit handler). */
static void test_stats_report(void **state) {
  if (under_sanitizer()) skip();
  char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  char *progs[][4] = {{py, "-c", "print('hello')", NULL}, {"/bin/echo", "hello", NULL}};
  for (size_t i = 0; i < sizeof progs / sizeof *progs; i++) {
    char **argv = progs[i];
    prog_result quiet, loud;
    run_hakmem(NULL, argv, NULL, &quiet);
    if (!prog_exited_ok(&quiet)) fail_msg("%s under hakmem: %s", argv[0], prog_describe(&quiet));
    assert_string_equal(quiet.out, "hello\n");
    if (quiet.err_len) fail_msg("hakmem printed without being asked: %s", quiet.err);
    const char *env[] = {"HAKMEM_STATS=1", NULL};
    run_hakmem(NULL, argv, env, &loud);
    if (!prog_exited_ok(&loud)) fail_msg("%s with HAKMEM_STATS=1: %s", argv[0], prog_describe(&loud));
    assert_non_null(strstr(loud.out, "hello\n"));
    /* The report may go to stderr or stdout; it is several lines naming hakmem. */
    const char *report = loud.err_len ? loud.err : loud.out + strlen("hello\n");
    if (!strstr(report, "hakmem") || count_lines(report) < 3)
      fail_msg("%s with HAKMEM_STATS=1 printed no stats report; stderr: \"%.300s\"", argv[0], loud.err);
    prog_result_free(&quiet);
    prog_result_free(&loud);
  }
}

/* The pointer in "hakmem: free(): invalid pointer 0x..." (0 if absent). */
static uintptr_t reported_pointer(const char *err) {
  const char *m = strstr(err, "hakmem: free(): invalid pointer 0x");
  return m ? (uintptr_t)strtoull(m + strlen("hakmem: free(): invalid pointer "), NULL, 16) : 0;
}

static uintptr_t printed_pointer(const char *out) {
  const char *m = strstr(out, "ptr 0x");
  return m ? (uintptr_t)strtoull(m + 4, NULL, 16) : 0;
}

static const char *const k_bad_modes[] = {"stack", "interior", "interior-large", "foreign"};

static void test_invalid_free_aborts(void **state) {
  if (under_sanitizer()) skip();
  assert_int_equal(build_helper(g_dir, "badfree", NULL), 0);
  for (size_t i = 0; i < sizeof k_bad_modes / sizeof *k_bad_modes; i++) {
    char *argv[] = {scratch_path("badfree"), (char *)k_bad_modes[i], NULL};
    prog_result r;
    run_hakmem(NULL, argv, NULL, &r);
    if (prog_signal(&r) != SIGABRT)
      fail_msg("free(%s pointer): %s, want SIGABRT", k_bad_modes[i], prog_describe(&r));
    uintptr_t want = printed_pointer(r.out), got = reported_pointer(r.err);
    if (!want || got != want)
      fail_msg("free(%s pointer %#lx): stderr \"%.300s\" lacks \"hakmem: free(): invalid pointer %#lx\"",
               k_bad_modes[i], (unsigned long)want, r.err, (unsigned long)want);
    assert_null(strstr(r.out, "after"));
    prog_result_free(&r);
  }
}

static void test_invalid_free_continue(void **state) {
  if (under_sanitizer()) skip();
  assert_int_equal(build_helper(g_dir, "badfree", NULL), 0);
  const char *env[] = {"HAKMEM_ON_ERROR=continue", NULL};
  for (size_t i = 0; i < sizeof k_bad_modes / sizeof *k_bad_modes; i++) {
    char *argv[] = {scratch_path("badfree"), (char *)k_bad_modes[i], NULL};
    prog_result r;
    run_hakmem(NULL, argv, env, &r);
    if (!prog_exited_ok(&r))
      fail_msg("free(%s pointer) with HAKMEM_ON_ERROR=continue: %s", k_bad_modes[i], prog_describe(&r));
    assert_non_null(strstr(r.out, "after\n"));
    if (reported_pointer(r.err) != printed_pointer(r.out))
      fail_msg("free(%s pointer) with continue: stderr \"%.300s\" lacks the report", k_bad_modes[i], r.err);
    prog_result_free(&r);
  }
}

/* A malformed HAKMEM_* value: one stderr line naming the variable, then
 * the program runs as if it were unset. */
static void test_malformed_env(void **state) {
  if (under_sanitizer()) skip();
  static const char *const cases[][2] = {
      {"HAKMEM_ARENA_BASE=zzz", "HAKMEM_ARENA_BASE"},
      {"HAKMEM_ARENA_BASE=0x12zz", "HAKMEM_ARENA_BASE"},
      {"HAKMEM_ON_ERROR=bogus", "HAKMEM_ON_ERROR"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *argv[] = {"/bin/echo", "hi", NULL};
    const char *env[] = {cases[i][0], NULL};
    prog_result r;
    run_hakmem(NULL, argv, env, &r);
    if (!prog_exited_ok(&r)) fail_msg("echo with %s: %s", cases[i][0], prog_describe(&r));
    assert_string_equal(r.out, "hi\n");
    if (count_lines(r.err) != 1 || !strstr(r.err, cases[i][1]))
      fail_msg("%s: want one stderr line naming %s, got \"%s\"", cases[i][0], cases[i][1], r.err);
    prog_result_free(&r);
  }
}

/* With HAKMEM_ARENA_BASE fixed the same calls give the same addresses, all
 * in the arena; without it the base is randomized. */
static void test_fixed_base_determinism(void **state) {
  if (under_sanitizer()) skip();
  assert_int_equal(build_helper(g_dir, "addrs", NULL), 0);
  char *argv[] = {scratch_path("addrs"), NULL};
  const char *env[] = {"HAKMEM_ARENA_BASE=0x200000000000", NULL};
  prog_result a, b, c, d;
  run_hakmem(NULL, argv, env, &a);
  run_hakmem(NULL, argv, env, &b);
  if (!prog_exited_ok(&a)) fail_msg("addrs: %s", prog_describe(&a));
  assert_true(prog_exited_ok(&b));
  if (strcmp(a.out, b.out) != 0)
    fail_msg("two runs with HAKMEM_ARENA_BASE=0x200000000000 differ: %s", first_difference(a.out, b.out));
  /* Every address lies at or above the base (and not absurdly far). */
  const uint64_t base = 0x200000000000ull;
  int lines = 0;
  for (const char *s = a.out; (s = strstr(s, " 0x")) != NULL; s += 3, lines++) {
    uint64_t p = strtoull(s + 1, NULL, 16);
    if (p < base || p >= base + ((uint64_t)1 << 42))
      fail_msg("address %#" PRIx64 " outside the arena at %#" PRIx64, p, base);
  }
  assert_int_equal(lines, 90);
  run_hakmem(NULL, argv, NULL, &c);
  run_hakmem(NULL, argv, NULL, &d);
  assert_true(prog_exited_ok(&c) && prog_exited_ok(&d));
  if (strcmp(c.out, d.out) == 0) fail_msg("two runs without HAKMEM_ARENA_BASE used the same addresses");
  prog_result_free(&a);
  prog_result_free(&b);
  prog_result_free(&c);
  prog_result_free(&d);
}

int main(void) {
  /* A glob on test names, e.g. CMOCKA_TEST_FILTER='test_calloc*'. */
  const char *only = getenv("CMOCKA_TEST_FILTER");
  if (only && *only) cmocka_set_test_filter(only);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_python),
      cmocka_unit_test(test_perl),
      cmocka_unit_test(test_sort),
      cmocka_unit_test(test_gcc),
      cmocka_unit_test(test_git),
      cmocka_unit_test(test_linked_program),
      cmocka_unit_test(test_stats_report),
      cmocka_unit_test(test_invalid_free_aborts),
      cmocka_unit_test(test_invalid_free_continue),
      cmocka_unit_test(test_malformed_env),
      cmocka_unit_test(test_fixed_base_determinism),
  };
  return cmocka_run_group_tests_name("preload", tests, setup, teardown);
}
