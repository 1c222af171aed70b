/* test_replay.c — `hakmem replay` and `hakmem minimize`, end to end.
 *
 * Small C programs are built in a temporary directory and recorded with
 * `$HAKMEM_BUILD/bin/hakmem record`; the traces are then replayed and
 * minimized the way a user would, and the results are read back through
 * the trace reader. Recording preloads libhakmem.so into those programs,
 * so under a sanitizer ($HAKMEM_TEST_SAN) every test here is skipped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem/trace.h"
#include "testutil.h"

static char tmpdir[64];
static char hakmem_bin[4096];

/* ---- programs ---- */

/* 4 threads x `churn` generations: mallocs of mixed sizes, reallocs, and
 * every block freed by another thread. BUG=1: one interior free. */
static const char *prog_mt =
  "#include <pthread.h>\n#include <stdlib.h>\n#include <string.h>\n"
  "#define N 4\n#define SLOTS 256\nstatic void *shared[N][SLOTS];\nstatic pthread_barrier_t bar;\n"
  "static int rounds;\n"
  "static void *work(void *arg) {\n"
  "  long id = (long)arg; unsigned s = id * 7919 + 1;\n"
  "  for (int round = 0; round < rounds; round++) {\n"
  "    for (int i = 0; i < SLOTS; i++) {\n"
  "      s = s * 1103515245 + 12345;\n"
  "      size_t sz = 8 + (s >> 8) % 1500;\n"
  "      void *p = malloc(sz); memset(p, 1, sz < 64 ? sz : 64);\n"
  "      if (i % 5 == 0) p = realloc(p, sz * 2 + 10);\n"
  "      if (getenv(\"BUG\") && id == 2 && round == rounds / 2 && i == 100) free((char *)p + 8);\n"
  "      shared[id][i] = p;\n"
  "    }\n"
  "    pthread_barrier_wait(&bar);\n"
  "    for (int i = 0; i < SLOTS; i++) free(shared[(id + 1) % N][i]);\n"
  "    pthread_barrier_wait(&bar);\n"
  "  }\n"
  "  void *big = malloc(100000); free(big);\n"
  "  return NULL;\n"
  "}\n"
  "int main(int argc, char **argv) {\n"
  "  int churn = argc > 1 ? atoi(argv[1]) : 3; rounds = argc > 2 ? atoi(argv[2]) : 20;\n"
  "  pthread_barrier_init(&bar, NULL, N);\n"
  "  for (int c = 0; c < churn; c++) {\n"
  "    pthread_t t[N];\n"
  "    for (long i = 0; i < N; i++) pthread_create(&t[i], NULL, work, (void *)i);\n"
  "    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);\n"
  "  }\n"
  "  void *x = calloc(10, 12); free(x);\n"
  "  void *a; if (!posix_memalign(&a, 64, 100)) free(a);\n"
  "  return 0;\n"
  "}\n";

/* One thread, a random mix of malloc and free over 4096 slots. */
static const char *prog_st =
  "#include <stdlib.h>\n"
  "int main(int argc, char **argv) {\n"
  "  long n = argc > 1 ? atol(argv[1]) : 100000; static void *slot[4096]; unsigned s = 1;\n"
  "  for (long i = 0; i < n; i++) {\n"
  "    s = s * 1103515245 + 12345; unsigned k = (s >> 8) % 4096;\n"
  "    if (slot[k]) { free(slot[k]); slot[k] = 0; } else slot[k] = malloc(16 + (s >> 4) % 1000);\n"
  "  }\n"
  "  return 0;\n"
  "}\n";

/* argv[1]: interior (free inside a block), double (free twice), clean. */
static const char *prog_bad =
  "#include <stdlib.h>\n#include <string.h>\n"
  "int main(int argc, char **argv) {\n"
  "  void *keep[50]; for (int i = 0; i < 50; i++) keep[i] = malloc(24 + i);\n"
  "  char *p = malloc(64);\n"
  "  if (!strcmp(argv[1], \"interior\")) free(p + 16);\n"
  "  else if (!strcmp(argv[1], \"double\")) { free(p); free(p); }\n"
  "  else free(p);\n"
  "  for (int i = 0; i < 50; i++) free(keep[i]);\n"
  "  return 0;\n"
  "}\n";

/* ---- helpers ---- */

/* A file's whole text ("" if it cannot be read). */
static char *slurp(const char *path) {
  char *t = read_whole_file(path, NULL);
  return t ? t : strdup("");
}

typedef struct result { int status; char *out, *err; } result;

/* argv[0] is run as is (a path); env: "NAME=VALUE" strings to add, NULL-ended. */
static result runv(const char **env, const char **argv) {
  prog_result pr;
  assert_int_equal(run_prog(NULL, (char *const *)argv, env, 900, &pr), 0);
  assert_false(pr.timed_out);
  int st = pr.status;
  return (result){.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), .out = pr.out, .err = pr.err};
}

#define HAKMEM(...) runv(NULL, (const char *[]){hakmem_bin, __VA_ARGS__, NULL})
static void result_free(result *r) { free(r->out); free(r->err); }

static void skip_under_sanitizer(void) {
  if (getenv("HAKMEM_TEST_SAN") && *getenv("HAKMEM_TEST_SAN")) skip();
}

/* Build `src` as tmpdir/name. */
static void build(const char *name, const char *src) {
  char c[256], bin[256];
  snprintf(c, sizeof c, "%s/%s.c", tmpdir, name);
  snprintf(bin, sizeof bin, "%s/%s", tmpdir, name);
  FILE *f = fopen(c, "w");
  assert_non_null(f);
  fputs(src, f);
  fclose(f);
  result r = runv(NULL, (const char *[]){"/usr/bin/cc", "-O1", "-pthread", "-w", "-o", bin, c, NULL});
  if (r.status) fail_msg("cc %s: %s", name, r.err);
  result_free(&r);
}

/* Record tmpdir/name ARGS into tmpdir/trace; returns the trace path (static). */
static const char *record(const char *trace, const char **env, const char *name, const char *a1, const char *a2) {
  static char path[256];
  char bin[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, trace);
  snprintf(bin, sizeof bin, "%s/%s", tmpdir, name);
  result r = runv(env, (const char *[]){hakmem_bin, "record", "-o", path, "--", bin, a1, a2, NULL});
  if (r.status) fail_msg("hakmem record %s: exit %d: %s", name, r.status, r.err);
  result_free(&r);
  return path;
}

/* The value of "key": in a JSON object (a number, true/false/null, or the
 * start of an object); NULL if absent. */
static const char *json_get(const char *json, const char *key) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":", key);
  const char *p = strstr(json, k);
  return p ? p + strlen(k) : NULL;
}

static uint64_t json_u64(const char *json, const char *key) {
  const char *v = json_get(json, key);
  if (!v) fail_msg("no \"%s\" in %s", key, json);
  return strtoull(v, NULL, 10);
}

/* seq of the first event of `kind` in the trace (fn too, if fn >= 0). */
static uint64_t find_seq(const char *path, unsigned kind, int fn, uint64_t *count) {
  hkt_reader *rd;
  hkt_event ev;
  uint64_t seq = UINT64_MAX, n = 0;
  assert_int_equal(hkt_reader_open(&rd, path), 0);
  while (hkt_reader_next(rd, &ev) == 1) {
    n++;
    if (seq == UINT64_MAX && ev.kind == kind && (fn < 0 || ev.fn == fn)) seq = ev.seq;
  }
  hkt_reader_close(rd);
  if (count) *count = n;
  return seq;
}

/* ---- tests ---- */

/* Cross-thread frees, thread churn and reallocs: 20 replays, every one
 * identical to the recording and to the others. */
static void test_determinism_4_threads(void **state) {
  skip_under_sanitizer();
  build("mt", prog_mt);
  const char *t = record("mt.hkt.zst", NULL, "mt", "3", "10");
  result r = HAKMEM("replay", t, "--repeat", "20", "--json");
  if (r.status != 0) fail_msg("replay --repeat 20: exit %d\n%s\n%s", r.status, r.out, r.err);
  assert_non_null(strstr(r.out, "\"identical\":true"));
  assert_int_equal(json_u64(r.out, "runs_identical"), 20);
  assert_non_null(strstr(r.out, "\"runs_same_as_each_other\":true"));
  assert_int_equal(json_u64(r.out, "threads"), 13);          /* 3 x 4 workers + main */
  result_free(&r);

  /* A single replay in place, text: says identical. */
  r = HAKMEM("replay", t);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "result: identical"));
  result_free(&r);
}

/* Frees and a malloc after the thread's exit in the allocator: a key
 * destructor that runs after hakmem's own (its key is made later). */
static const char *prog_late =
  "#include <pthread.h>\n#include <stdlib.h>\n#include <string.h>\n"
  "static pthread_key_t key; static void *shared[16];\n"
  "static void dtor(void *v) {\n"
  "  void **b = v; for (int i = 0; i < 32; i++) free(b[i]); free(b);\n"
  "  free(malloc(40));\n"
  "  for (int i = 0; i < 16; i++) if (shared[i]) { free(shared[i]); shared[i] = NULL; break; }\n"
  "}\n"
  "static void *work(void *arg) {\n"
  "  long id = (long)arg; void **b = malloc(32 * sizeof *b);\n"
  "  for (int i = 0; i < 32; i++) { b[i] = malloc(16 + 24 * i); memset(b[i], 1, 16); }\n"
  "  for (int i = 0; i < 4; i++) shared[id * 4 + i] = malloc(100);\n"
  "  pthread_setspecific(key, b); return NULL;\n"
  "}\n"
  "int main(void) {\n"
  "  free(malloc(1)); pthread_key_create(&key, dtor);\n"
  "  for (int r = 0; r < 4; r++) {\n"
  "    pthread_t t[4];\n"
  "    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, work, (void *)i);\n"
  "    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);\n"
  "  }\n"
  "  for (int i = 0; i < 16; i++) free(shared[i]);\n"
  "  return 0;\n"
  "}\n";

/* Calls after a thread's exit (a late key destructor) replay on a thread
 * made again for them, in the dead heap's state, identically every time. */
static void test_late_frees_replayed(void **state) {
  skip_under_sanitizer();
  build("late", prog_late);
  const char *t = record("late.hkt.zst", NULL, "late", NULL, NULL);
  hkt_reader *rd;
  hkt_event ev;
  static uint8_t exited[1024];
  uint64_t late = 0;
  memset(exited, 0, sizeof exited);
  assert_int_equal(hkt_reader_open(&rd, t), 0);
  while (hkt_reader_next(rd, &ev) == 1) {
    if (ev.tid >= sizeof exited) continue;
    if (ev.kind == HKT_EV_THREAD_EXIT) exited[ev.tid] = 1;
    else if (exited[ev.tid] && (ev.kind == HKT_EV_FREE || ev.kind == HKT_EV_MALLOC)) late++;
  }
  hkt_reader_close(rd);
  assert_true(late >= 16 * 34);   /* each of 16 threads: 33 frees, a malloc and its free */
  result r = HAKMEM("replay", t, "--repeat", "5", "--json");
  if (r.status != 0) fail_msg("replay --repeat 5: exit %d\n%s\n%s", r.status, r.out, r.err);
  assert_non_null(strstr(r.out, "\"identical\":true"));
  assert_int_equal(json_u64(r.out, "runs_identical"), 5);
  assert_non_null(strstr(r.out, "\"runs_same_as_each_other\":true"));
  assert_int_equal(json_u64(r.out, "threads"), 17);
  result_free(&r);
}

/* An event changed in the trace: the replay reports the first divergence
 * at exactly that seq, with what was recorded and what happened. */
static void test_divergence_reported(void **state) {
  skip_under_sanitizer();
  build("mt", prog_mt);
  const char *t = record("mt.hkt.zst", NULL, "mt", "1", "4");
  char bad[256];
  snprintf(bad, sizeof bad, "%s/tampered.hkt.zst", tmpdir);
  hkt_reader *rd;
  hkt_writer *w;
  hkt_event ev;
  assert_int_equal(hkt_reader_open(&rd, t), 0);
  assert_int_equal(hkt_writer_open(&w, bad, hkt_reader_header(rd)), 0);
  uint64_t mallocs = 0, target = UINT64_MAX;
  while (hkt_reader_next(rd, &ev) == 1) {
    if (ev.kind == HKT_EV_MALLOC && ++mallocs == 1500) { ev.aux2 = 12; target = ev.seq; }  /* errno */
    assert_int_equal(hkt_writer_put(w, &ev), 0);
  }
  assert_int_equal(hkt_writer_close(w, 1), 0);
  hkt_reader_close(rd);
  assert_true(target != UINT64_MAX);
  result r = HAKMEM("replay", bad, "--json");
  assert_int_equal(r.status, 1);
  assert_non_null(strstr(r.out, "\"identical\":false"));
  const char *d = json_get(r.out, "first_divergence");
  assert_non_null(d);
  assert_int_equal(strtoull(json_get(d, "seq"), NULL, 10), target);
  assert_non_null(strstr(d, "\"expected\":{"));
  assert_non_null(strstr(d, "\"got\":{"));
  result_free(&r);
}

/* An invalid free recorded with HAKMEM_ON_ERROR=continue is made again by
 * the allocator at its recorded seq, every time. */
/* The trace's interior free is detected again at its seq, in 3 replays
 * identical otherwise; its seq. */
static uint64_t interior_free_3_times(const char *t) {
  uint64_t det = find_seq(t, HKT_EV_DETECTION, HKT_DET_INTERIOR_FREE, NULL);
  assert_true(det != UINT64_MAX);
  for (int i = 0; i < 3; i++) {
    result r = HAKMEM("replay", t, "--json");
    if (r.status != 3) fail_msg("replay %s: exit %d\n%s%s", t, r.status, r.out, r.err);   /* reproduced, identical otherwise */
    assert_non_null(strstr(r.out, "\"identical\":true"));
    const char *d = json_get(r.out, "detections");
    assert_non_null(d);
    assert_int_equal(json_u64(d, "seq"), det);
    assert_non_null(strstr(d, "\"kind\":\"interior_free\""));
    result_free(&r);
  }
  return det;
}

static void test_invalid_free_reproduced(void **state) {
  skip_under_sanitizer();
  build("bad", prog_bad);
  const char *env[] = {"HAKMEM_ON_ERROR=continue", NULL};
  interior_free_3_times(record("interior.hkt.zst", env, "bad", "interior", NULL));
}

/* Every fault-injection class (HAKMEM_INJECT, debug level 1) is detected
 * again at its recorded seq, in every replay, with all detections the same.
 * The recorded program may crash (the fault corrupts its heap): the trace
 * holds every event up to there. */
static void test_injected_faults_reproduced(void **state) {
  skip_under_sanitizer();
  build("mt", prog_mt);
  static const char *kinds[] = {"early_release", "early_decrement", "lost_drain", "skip_pin"};
  for (unsigned k = 0; k < 4; k++) {
    char inj[64], path[256], bin[256];
    snprintf(inj, sizeof inj, "HAKMEM_INJECT=%s@2", kinds[k]);
    snprintf(path, sizeof path, "%s/inj.hkt.zst", tmpdir);
    snprintf(bin, sizeof bin, "%s/mt", tmpdir);
    const char *env[] = {inj, "HAKMEM_DEBUG=1", "HAKMEM_ON_ERROR=continue", NULL};
    /* One recording (cut where the injected bug broke the program), five
     * replays: each identical to the recording and to the others. */
    result r = runv(env, (const char *[]){hakmem_bin, "record", "-o", path, "--", bin, "2", "10", NULL});
    result_free(&r);
    uint64_t ndet = 0, det = find_seq(path, HKT_EV_DETECTION, -1, NULL);
    if (det == UINT64_MAX) fail_msg("%s: no detection recorded", kinds[k]);
    hkt_reader *rd;
    hkt_event ev;
    assert_int_equal(hkt_reader_open(&rd, path), 0);
    while (hkt_reader_next(rd, &ev) == 1) ndet += ev.kind == HKT_EV_DETECTION;
    hkt_reader_close(rd);
    r = HAKMEM("replay", path, "--repeat", "5", "--json");
    if (r.status != 3) fail_msg("%s: replay exit %d\n%s\n%s", kinds[k], r.status, r.out, r.err);
    assert_non_null(strstr(r.out, "\"identical\":true"));
    assert_int_equal(json_u64(r.out, "runs_identical"), 5);
    assert_non_null(strstr(r.out, "\"runs_same_as_each_other\":true"));
    assert_int_equal(json_u64(json_get(r.out, "detections"), "seq"), det);
    result_free(&r);
    print_message("%s: %" PRIu64 " detections, first at seq %" PRIu64 ", reproduced 5/5\n", kinds[k], ndet, det);
  }
}

/* --stop-at: stops just before the event, says so, shows the state. */
static void test_stop_at(void **state) {
  skip_under_sanitizer();
  build("bad", prog_bad);
  const char *env[] = {"HAKMEM_ON_ERROR=continue", NULL};
  const char *t = record("interior.hkt.zst", env, "bad", "interior", NULL);
  uint64_t det = find_seq(t, HKT_EV_DETECTION, HKT_DET_INTERIOR_FREE, NULL);
  char seq[32];
  snprintf(seq, sizeof seq, "%" PRIu64, det);
  result r = HAKMEM("replay", t, "--stop-at", seq);
  assert_int_equal(r.status, 0);                            /* the detection is not reached */
  assert_non_null(strstr(r.out, "stopped before seq"));
  assert_non_null(strstr(r.out, "live blocks: "));
  assert_non_null(strstr(r.out, "SuperSlabs registered: "));
  assert_null(strstr(r.out, "interior_free"));
  result_free(&r);
}

/* Against glibc: a clean trace runs clean; a double free is glibc's abort. */
static void test_against_system(void **state) {
  skip_under_sanitizer();
  build("bad", prog_bad);
  const char *env[] = {"HAKMEM_ON_ERROR=continue", NULL};
  const char *t = record("clean.hkt.zst", env, "bad", "clean", NULL);
  result r = HAKMEM("replay", t, "--against", "system", "--json");
  if (r.status != 0) fail_msg("clean against system: %d %s %s", r.status, r.out, r.err);
  assert_non_null(strstr(r.out, "\"outcome\":\"clean\""));
  result_free(&r);

  t = record("double.hkt.zst", env, "bad", "double", NULL);
  r = HAKMEM("replay", t, "--against", "system");
  assert_int_equal(r.status, 3);
  assert_non_null(strstr(r.out, "outcome: detected: SIGABRT"));
  assert_non_null(strstr(r.out, "double free"));            /* glibc's own words */
  result_free(&r);

  r = HAKMEM("replay", t, "--against", "/nonexistent/lib.so");
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "hakmem replay: /nonexistent/lib.so:"));
  result_free(&r);
}

/* Bad input: one line on stderr, exit 2 or what is whole replayed. */
static void test_bad_input(void **state) {
  skip_under_sanitizer();
  char junk[256];
  snprintf(junk, sizeof junk, "%s/junk.hkt.zst", tmpdir);
  FILE *f = fopen(junk, "w");
  fputs("this is not a trace\n", f);
  fclose(f);
  result r = HAKMEM("replay", junk);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "hakmem replay: "));
  result_free(&r);
  r = HAKMEM("replay", "/nonexistent.hkt.zst");
  assert_int_equal(r.status, 2);
  result_free(&r);
  r = HAKMEM("replay");
  assert_int_equal(r.status, 2);
  result_free(&r);

  /* Cut in the middle of a frame: replays the whole frames, says where. */
  build("st", prog_st);
  const char *t = record("st.hkt.zst", NULL, "st", "200000", NULL);
  char *data;
  struct stat sb;
  assert_int_equal(stat(t, &sb), 0);
  data = slurp(t);
  char cut[256];
  snprintf(cut, sizeof cut, "%s/cut.hkt.zst", tmpdir);
  f = fopen(cut, "w");
  fwrite(data, 1, (size_t)sb.st_size * 2 / 3, f);
  fclose(f);
  free(data);
  r = HAKMEM("replay", cut, "--json");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "\"identical\":true"));
  assert_true(json_u64(r.out, "events") > 1000);
  assert_null(strstr(r.out, "\"trace_error\":null"));
  assert_non_null(strstr(r.err, "replayed what was whole"));
  result_free(&r);
}

/* minimize: a 100 000+ event, 4-thread trace with one bad free shrinks to
 * fewer than 100 events that still make it; --emit-c compiles and does. */
static void test_minimize(void **state) {
  skip_under_sanitizer();
  build("mt", prog_mt);
  const char *env[] = {"HAKMEM_ON_ERROR=continue", "BUG=1", NULL};
  const char *t = record("mtbug.hkt.zst", env, "mt", "3", "12");
  uint64_t total;
  find_seq(t, HKT_EV_DETECTION, -1, &total);
  assert_true(total >= 100000);
  char out[256], outc[256], bin[256];
  snprintf(out, sizeof out, "%s/min.hkt.zst", tmpdir);
  snprintf(outc, sizeof outc, "%s/repro.c", tmpdir);
  snprintf(bin, sizeof bin, "%s/repro", tmpdir);
  result r = HAKMEM("minimize", t, "-o", out, "--emit-c", outc);
  if (r.status) fail_msg("minimize: %d\n%s\n%s", r.status, r.out, r.err);
  print_message("%s", r.out);
  result_free(&r);
  uint64_t n;
  uint64_t det = find_seq(out, HKT_EV_DETECTION, HKT_DET_INTERIOR_FREE, &n);
  assert_true(det != UINT64_MAX);
  assert_true(n < 100);
  r = HAKMEM("replay", out);
  assert_int_equal(r.status, 3);
  result_free(&r);

  r = runv(NULL, (const char *[]){"/usr/bin/cc", "-O0", "-pthread", "-o", bin, outc, NULL});
  if (r.status) fail_msg("cc repro.c: %s", r.err);
  result_free(&r);
  char pre[4200];
  snprintf(pre, sizeof pre, "LD_PRELOAD=%s/lib/libhakmem.so", getenv("HAKMEM_BUILD") ? getenv("HAKMEM_BUILD") : "build");
  char *abs = realpath(pre + 11, NULL);
  assert_non_null(abs);
  snprintf(pre, sizeof pre, "LD_PRELOAD=%s", abs);
  free(abs);
  const char *renv[] = {pre, NULL};
  r = runv(renv, (const char *[]){bin, NULL});
  assert_int_equal(r.status, 128 + 6);                       /* hakmem's abort */
  assert_non_null(strstr(r.err, "interior_free"));
  result_free(&r);
}

/* A minimized trace: under 100 events, and replaying it reproduces the
 * SuperSlab invariant detection (exit 3). */
static void expect_small_repro(const char *out) {
  uint64_t n;
  assert_true(find_seq(out, HKT_EV_DETECTION, HKT_DET_SS_INVARIANT, &n) != UINT64_MAX);
  assert_true(n < 100);
  result r = HAKMEM("replay", out, "--json");
  assert_int_equal(r.status, 3);
  assert_non_null(strstr(r.out, "\"kind\":\"ss_invariant\""));
  result_free(&r);
}

/* minimize on an injected allocator bug (an early live-count decrement,
 * found by the debug accounting check): 100 000+ events to fewer than 100
 * that replay with the same detection. */
static void test_minimize_injected(void **state) {
  skip_under_sanitizer();
  build("mt", prog_mt);
  const char *env[] = {"HAKMEM_INJECT=early_decrement@2", "HAKMEM_DEBUG=1", "HAKMEM_ON_ERROR=continue", NULL};
  const char *t = record("inj.hkt.zst", env, "mt", "2", "20");
  uint64_t total;
  uint64_t first = find_seq(t, HKT_EV_DETECTION, -1, &total);
  assert_true(total >= 100000);
  assert_true(first != UINT64_MAX);
  char out[256];
  snprintf(out, sizeof out, "%s/min-inj.hkt.zst", tmpdir);
  result r = HAKMEM("minimize", t, "-o", out);
  if (r.status) fail_msg("minimize: %d\n%s\n%s", r.status, r.out, r.err);
  print_message("%s", r.out);
  result_free(&r);
  expect_small_repro(out);
}

/* minimize on the demo's trace (examples/demo.sh): examples/injected, a
 * multi-threaded program, aborted by an injected release in a cache flush
 * (thread 1's 5th in class 3). The fault's count does not survive dropped
 * calls; minimize moves it to the first flush left and says so in OUT's
 * header: under 100 events within the default time bound, OUT replays with
 * the detection, and the C program makes it with the configuration its
 * header comment gives. */
static void test_minimize_injected_mt(void **state) {
  skip_under_sanitizer();
  char t[256], prog[4200];
  snprintf(t, sizeof t, "%s/inj-mt.hkt.zst", tmpdir);
  snprintf(prog, sizeof prog, "%s/examples/injected", getenv("HAKMEM_BUILD") ? getenv("HAKMEM_BUILD") : "build");
  const char *env[] = {"HAKMEM_INJECT=early_release_flush:3@4/1", "HAKMEM_DEBUG=1", NULL};
  result r = runv(env, (const char *[]){hakmem_bin, "record", "-o", t, "--", prog, NULL});
  assert_int_not_equal(r.status, 0);   /* the detection aborts it */
  result_free(&r);
  uint64_t total;
  assert_true(find_seq(t, HKT_EV_DETECTION, HKT_DET_SS_INVARIANT, &total) != UINT64_MAX);
  char out[256], outc[256], bin[256];
  snprintf(out, sizeof out, "%s/min-inj-mt.hkt.zst", tmpdir);
  snprintf(outc, sizeof outc, "%s/repro-inj.c", tmpdir);
  snprintf(bin, sizeof bin, "%s/repro-inj", tmpdir);
  r = HAKMEM("minimize", t, "-o", out, "--emit-c", outc);
  if (r.status) fail_msg("minimize: %d\n%s\n%s", r.status, r.out, r.err);
  print_message("%s", r.out);
  assert_null(strstr(r.out, "time limit"));
  assert_non_null(strstr(r.out, "HAKMEM_INJECT=early_release_flush:3@"));
  result_free(&r);
  expect_small_repro(out);

  /* The C program, run as its header comment says. */
  r = runv(NULL, (const char *[]){"/usr/bin/cc", "-O0", "-pthread", "-o", bin, outc, NULL});
  if (r.status) fail_msg("cc repro-inj.c: %s", r.err);
  result_free(&r);
  char *src = read_whole_file(outc, NULL);
  assert_non_null(src);
  const char *run = strstr(src, "LD_PRELOAD=libhakmem.so ");
  assert_non_null(run);
  static char vars[8][256];
  const char *renv[10];
  int nv = 0;
  char pre[4200];
  snprintf(pre, sizeof pre, "%s/lib/libhakmem.so", getenv("HAKMEM_BUILD") ? getenv("HAKMEM_BUILD") : "build");
  char *abs = realpath(pre, NULL);
  assert_non_null(abs);
  snprintf(pre, sizeof pre, "LD_PRELOAD=%s", abs);
  free(abs);
  renv[nv++] = pre;
  for (const char *v = run + strlen("LD_PRELOAD=libhakmem.so "); !strncmp(v, "HAKMEM_", 7) && nv < 9;) {
    size_t len = strcspn(v, " \n");
    snprintf(vars[nv - 1], sizeof vars[0], "%.*s", (int)len, v);
    renv[nv] = vars[nv - 1];
    nv++;
    v += len + (v[len] == ' ');
  }
  renv[nv] = NULL;
  free(src);
  assert_true(nv > 2);
  r = runv(renv, (const char *[]){bin, NULL});
  assert_int_equal(r.status, 128 + 6);                       /* hakmem's abort */
  assert_non_null(strstr(r.err, "ss_invariant"));
  result_free(&r);
}

/* A call whose events span more than the reader's bound (a thread that
 * waited inside malloc while others ran): the reader passes the bound
 * while the thread holding the turn waits for that call. A bound of 2
 * events makes nearly every call with a refill such a call (its thread
 * start, SuperSlab register and refill come before it); each replay must
 * still be identical, where it used to stall. */
static void test_long_span_replayed(void **state) {
  skip_under_sanitizer();
  build("mt", prog_mt);
  const char *t = record("mt.hkt.zst", NULL, "mt", "2", "4");
  const char *env[] = {"HAKMEM_REPLAY_AHEAD=2", NULL};
  result r = runv(env, (const char *[]){hakmem_bin, "replay", t, "--repeat", "3", "--json", "--timeout", "20", NULL});
  if (r.status != 0) fail_msg("replay with a bound of 2: exit %d\n%s\n%s", r.status, r.out, r.err);
  assert_non_null(strstr(r.out, "\"identical\":true"));
  assert_non_null(strstr(r.out, "\"stalled\":false"));
  assert_int_equal(json_u64(r.out, "runs_identical"), 3);
  result_free(&r);
  /* A bound that is not a number is said and ignored. */
  const char *bad[] = {"HAKMEM_REPLAY_AHEAD=lots", NULL};
  r = runv(bad, (const char *[]){hakmem_bin, "replay", t, "--json", NULL});
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.err, "HAKMEM_REPLAY_AHEAD=lots"));
  result_free(&r);
}

/* Replay throughput, for the record (1 thread; 4 threads with cross-thread
 * frees in strict order). Fails only if a replay is not identical. */
static void test_throughput(void **state) {
  skip_under_sanitizer();
  build("st", prog_st);
  build("mt", prog_mt);
  const char *t1 = record("st1.hkt.zst", NULL, "st", "1000000", NULL);
  result r = HAKMEM("replay", t1, "--json");
  assert_int_equal(r.status, 0);
  print_message("replay, 1 thread:  %" PRIu64 " events, %.2f M events/s\n", json_u64(r.out, "events"),
                json_u64(r.out, "events_per_s") / 1e6);
  result_free(&r);
  const char *t4 = record("mt4.hkt.zst", NULL, "mt", "1", "40");
  r = HAKMEM("replay", t4, "--json");
  assert_int_equal(r.status, 0);
  print_message("replay, 4 threads: %" PRIu64 " events, %.2f M events/s\n", json_u64(r.out, "events"),
                json_u64(r.out, "events_per_s") / 1e6);
  result_free(&r);
}

/* ---- running ahead (docs/replay.md) ---- */

/* 4 threads that mostly allocate and free their own blocks (a small
 * working set: cache pops and pushes, which a replay may run before their
 * turn), and each round hand 8 blocks to the next thread, which frees them
 * (remote frees, which wait for their turn). argv[1]: rounds. */
static const char *prog_own =
  "#include <pthread.h>\n#include <stdlib.h>\n#include <string.h>\n"
  "#define N 4\n#define SLOTS 48\nstatic void *handoff[N][8];\nstatic pthread_barrier_t bar;\n"
  "static int rounds;\n"
  "static void *work(void *arg) {\n"
  "  long id = (long)arg; unsigned s = id * 7919 + 1; void *own[SLOTS] = {0};\n"
  "  for (int round = 0; round < rounds; round++) {\n"
  "    for (int i = 0; i < 1500; i++) {\n"
  "      s = s * 1103515245 + 12345; unsigned k = (s >> 8) % SLOTS;\n"
  "      if (own[k]) { free(own[k]); own[k] = 0; } else { own[k] = malloc(16 + (s >> 4) % 240); memset(own[k], 2, 16); }\n"
  "    }\n"
  "    for (int i = 0; i < 8; i++) handoff[id][i] = malloc(24 + 8 * i);\n"
  "    pthread_barrier_wait(&bar);\n"
  "    for (int i = 0; i < 8; i++) free(handoff[(id + 1) % N][i]);\n"
  "    pthread_barrier_wait(&bar);\n"
  "  }\n"
  "  for (int k = 0; k < SLOTS; k++) free(own[k]);\n"
  "  return NULL;\n"
  "}\n"
  "int main(int argc, char **argv) {\n"
  "  rounds = argc > 1 ? atoi(argv[1]) : 10;\n"
  "  void *keep = malloc(100);\n"
  "  pthread_barrier_init(&bar, NULL, N);\n"
  "  pthread_t t[N];\n"
  "  for (long i = 0; i < N; i++) pthread_create(&t[i], NULL, work, (void *)i);\n"
  "  for (int i = 0; i < N; i++) pthread_join(t[i], NULL);\n"
  "  free(keep);\n"
  "  return 0;\n"
  "}\n";

/* `hakmem replay T ARGS...` with HAKMEM_REPLAY_STRICT=1 when strict. */
static result replay_mode(int strict, const char *t, const char *a1, const char *a2) {
  const char *env[] = {"HAKMEM_REPLAY_STRICT=1", NULL};
  return runv(strict ? env : NULL, (const char *[]){hakmem_bin, "replay", t, a1, a2, NULL});
}

/* The "digest" of a JSON report: "0x" and 16 hex digits, as a number. */
static uint64_t json_digest(const char *json) {
  const char *v = json_get(json, "digest");
  if (!v) fail_msg("no \"digest\" in %s", json);
  char *end;
  uint64_t d = strtoull(v + 3, &end, 16);
  if (strncmp(v, "\"0x", 3) || end != v + 19 || *end != '"') fail_msg("digest is not \"0x<16 hex>\": %.40s", v);
  return d;
}

/* Replays `t` 3 times in each mode (run-ahead, then strict): each run
 * identical, all with one digest (returned); ran_ahead 0 when strict and,
 * if need_ahead, > 0 in every run-ahead run. */
static uint64_t same_in_both_modes(const char *t, const char *what, int need_ahead) {
  uint64_t digest = 0;
  for (int strict = 0; strict < 2; strict++) {
    for (int i = 0; i < 3; i++) {
      result r = replay_mode(strict, t, "--json", NULL);
      const char *mode = strict ? "strict" : "ahead";
      if (r.status != 0) fail_msg("%s, %s run %d: exit %d\n%s\n%s", what, mode, i + 1, r.status, r.out, r.err);
      assert_non_null(strstr(r.out, "\"identical\":true"));
      uint64_t d = json_digest(r.out), ahead = json_u64(r.out, "ran_ahead");
      if (!strict && !i) digest = d;
      else if (d != digest)
        fail_msg("%s, %s run %d: digest 0x%016" PRIx64 ", first run 0x%016" PRIx64, what, mode, i + 1, d, digest);
      if (strict && ahead) fail_msg("%s, strict run %d: ran_ahead %" PRIu64 "", what, i + 1, ahead);
      if (!strict && need_ahead && !ahead) fail_msg("%s, run %d: nothing ran ahead\n%s", what, i + 1, r.out);
      if (!i) print_message("%s, %s: %" PRIu64 " events, ran_ahead %" PRIu64 ", digest 0x%016" PRIx64 "\n", what,
                            mode, json_u64(r.out, "events"), ahead, d);
      result_free(&r);
    }
  }
  return digest;
}

/* Run-ahead makes the same events as strict order: prog_mt (cross-thread
 * frees, churn, reallocs) and prog_own (mostly thread-local, so much runs
 * ahead) replay identically in both modes, with one digest per trace; a
 * one-thread trace runs nothing ahead. */
static void test_ahead_same_as_strict(void **state) {
  skip_under_sanitizer();
  build("mt", prog_mt);
  build("own", prog_own);
  build("st", prog_st);
  uint64_t dmt = same_in_both_modes(record("mt.hkt.zst", NULL, "mt", "2", "10"), "prog_mt", 0);
  uint64_t down = same_in_both_modes(record("own.hkt.zst", NULL, "own", "10", NULL), "prog_own", 1);
  assert_true(dmt != down);                                 /* a digest of the events, not a constant */
  result r = HAKMEM("replay", record("st.hkt.zst", NULL, "st", "20000", NULL), "--json");
  assert_int_equal(r.status, 0);
  assert_int_equal(json_u64(r.out, "ran_ahead"), 0);
  result_free(&r);
}

/* 20 replays of the mostly thread-local trace, running ahead (the first
 * run's count says they do): every one identical to the recording and to
 * the others. */
static void test_ahead_repeat(void **state) {
  skip_under_sanitizer();
  build("own", prog_own);
  const char *t = record("own.hkt.zst", NULL, "own", "10", NULL);
  result r = HAKMEM("replay", t, "--repeat", "20", "--json");
  if (r.status != 0) fail_msg("replay --repeat 20: exit %d\n%s\n%s", r.status, r.out, r.err);
  assert_non_null(strstr(r.out, "\"identical\":true"));
  assert_int_equal(json_u64(r.out, "runs_identical"), 20);
  assert_non_null(strstr(r.out, "\"runs_same_as_each_other\":true"));
  assert_true(json_u64(r.out, "ran_ahead") > 0);
  result_free(&r);
}

/* A malloc that can run ahead: the first past the middle of the trace made
 * by a thread other than the first, a tiny block, whose previous event in
 * its thread is a call (a cache pop: no internal event before it). Its seq;
 * *ptr its recorded address. */
static uint64_t ahead_malloc(const char *path, uint64_t *ptr) {
  static uint16_t last_kind[4096];
  uint64_t total, found = UINT64_MAX;
  find_seq(path, HKT_EV_NONE, -1, &total);
  memset(last_kind, 0, sizeof last_kind);
  hkt_reader *rd;
  hkt_event ev;
  uint32_t first_tid = UINT32_MAX;
  assert_int_equal(hkt_reader_open(&rd, path), 0);
  while (found == UINT64_MAX && hkt_reader_next(rd, &ev) == 1) {
    if (first_tid == UINT32_MAX) first_tid = ev.tid;
    if (ev.tid >= 4096) continue;
    if (ev.seq > total / 2 && ev.kind == HKT_EV_MALLOC && ev.tid != first_tid && ev.ptr && ev.cls != HKT_NO_CLASS &&
        last_kind[ev.tid] >= HKT_EV_MALLOC && last_kind[ev.tid] <= HKT_EV_FREE) {
      found = ev.seq;
      *ptr = ev.ptr;
    }
    last_kind[ev.tid] = ev.kind;
  }
  hkt_reader_close(rd);
  if (found == UINT64_MAX) fail_msg("%s: no malloc that could run ahead", path);
  return found;
}

/* Copy `src` to tmpdir/name event by event, same header; the event with
 * seq `damage` gets its ptr moved by 16 bytes. */
static const char *copy_trace(const char *src, const char *name, uint64_t damage) {
  static char dst[256];
  snprintf(dst, sizeof dst, "%s/%s", tmpdir, name);
  hkt_reader *rd;
  hkt_writer *w;
  hkt_event ev;
  assert_int_equal(hkt_reader_open(&rd, src), 0);
  assert_int_equal(hkt_writer_open(&w, dst, hkt_reader_header(rd)), 0);
  while (hkt_reader_next(rd, &ev) == 1) {
    if (ev.seq == damage) ev.ptr += 16;
    assert_int_equal(hkt_writer_put(w, &ev), 0);
  }
  assert_int_equal(hkt_writer_close(w, 1), 0);
  hkt_reader_close(rd);
  return dst;
}

/* A damaged malloc that could run ahead diverges at its own seq in every
 * run, in both modes, with what was recorded and what happened. */
static void test_ahead_divergence_same_seq(void **state) {
  skip_under_sanitizer();
  build("own", prog_own);
  const char *t = record("own.hkt.zst", NULL, "own", "10", NULL);
  uint64_t ptr, target = ahead_malloc(t, &ptr);
  result r = HAKMEM("replay", copy_trace(t, "own-copy.hkt.zst", UINT64_MAX), "--json");
  if (r.status != 0) fail_msg("the undamaged copy: exit %d\n%s\n%s", r.status, r.out, r.err);
  result_free(&r);
  const char *bad = copy_trace(t, "own-moved.hkt.zst", target);
  char expected[64], got[64];
  snprintf(expected, sizeof expected, "\"ptr\":\"0x%" PRIx64 "\"", ptr + 16);
  snprintf(got, sizeof got, "\"ptr\":\"0x%" PRIx64 "\"", ptr);
  for (int i = 0; i < 11; i++) {
    int strict = i == 10;
    r = replay_mode(strict, bad, "--json", NULL);
    if (r.status != 1) fail_msg("%s run %d: exit %d\n%s\n%s", strict ? "strict" : "ahead", i + 1, r.status, r.out, r.err);
    assert_non_null(strstr(r.out, "\"identical\":false"));
    const char *d = json_get(r.out, "first_divergence");
    assert_non_null(d);
    uint64_t seq = strtoull(json_get(d, "seq"), NULL, 10);
    if (seq != target)
      fail_msg("%s run %d: diverged at seq %" PRIu64 ", the moved malloc is seq %" PRIu64 "\n%s",
               strict ? "strict" : "ahead", i + 1, seq, target, r.out);
    const char *e = json_get(d, "expected"), *g = json_get(d, "got");
    assert_non_null(e);
    assert_non_null(g);
    assert_true(strncmp(e, "{\"seq\":", 7) == 0 && strncmp(g, "{", 1) == 0);
    const char *at = strstr(e, expected);                   /* expected: the moved address */
    assert_true(at && at < g);
    assert_non_null(strstr(g, got));                        /* got: the block hakmem gives there */
    result_free(&r);
  }
}

/* --repeat of a trace that diverges: every run at the same seq, with the
 * same events there, so the runs are the same as each other, though threads
 * running ahead made some events past it, more or fewer each run. */
static void test_ahead_divergence_repeat(void **state) {
  skip_under_sanitizer();
  build("own", prog_own);
  const char *t = record("own.hkt.zst", NULL, "own", "10", NULL);
  uint64_t ptr, target = ahead_malloc(t, &ptr);
  const char *bad = copy_trace(t, "own-moved.hkt.zst", target);
  result r = HAKMEM("replay", bad, "--repeat", "8", "--json");
  if (r.status != 1) fail_msg("replay --repeat 8: exit %d\n%s\n%s", r.status, r.out, r.err);
  assert_int_equal(json_u64(r.out, "runs_identical"), 0);
  assert_int_equal(strtoull(json_get(json_get(r.out, "first_divergence"), "seq"), NULL, 10), target);
  if (!strstr(r.out, "\"runs_same_as_each_other\":true")) fail_msg("the runs differ:\n%s", r.out);
  result_free(&r);
}

/* Live blocks after the events before `stop` (the trace's calls). */
static uint64_t live_before(const char *path, uint64_t stop) {
  hkt_reader *rd;
  hkt_event ev;
  int64_t live = 0;
  assert_int_equal(hkt_reader_open(&rd, path), 0);
  while (hkt_reader_next(rd, &ev) == 1 && ev.seq < stop) {
    if (ev.kind == HKT_EV_MALLOC || ev.kind == HKT_EV_CALLOC || ev.kind == HKT_EV_ALIGNED) live += ev.ptr != 0;
    else if (ev.kind == HKT_EV_FREE) live -= ev.ptr != 0;
    else if (ev.kind == HKT_EV_REALLOC) live += (ev.ptr != 0) - (ev.aux != 0 && (ev.ptr != 0 || ev.size == 0));
  }
  hkt_reader_close(rd);
  return (uint64_t)live;
}

/* --stop-at a malloc that could run ahead: the allocator state printed
 * before it is the same, byte for byte, in 3 runs of each mode, and holds
 * exactly the blocks the trace has live there. */
static void test_ahead_stop_at(void **state) {
  skip_under_sanitizer();
  build("own", prog_own);
  const char *t = record("own.hkt.zst", NULL, "own", "10", NULL);
  uint64_t ptr, stop = ahead_malloc(t, &ptr);
  char seq[32], stopped[64], live[64];
  snprintf(seq, sizeof seq, "%" PRIu64, stop);
  snprintf(stopped, sizeof stopped, "result: stopped before seq %" PRIu64 " ", stop);
  snprintf(live, sizeof live, "\nlive blocks: %" PRIu64 " (", live_before(t, stop));
  char *first = NULL;
  for (int i = 0; i < 6; i++) {
    int strict = i >= 3;
    result r = replay_mode(strict, t, "--stop-at", seq);
    if (r.status != 0) fail_msg("--stop-at %s, %s: exit %d\n%s\n%s", seq, strict ? "strict" : "ahead", r.status, r.out, r.err);
    assert_non_null(strstr(r.out, stopped));
    const char *s = strstr(r.out, "allocator state before that event:");
    if (!s) fail_msg("no allocator state:\n%s", r.out);
    if (!strstr(s, live)) fail_msg("%s run %d: not %s\n%s", strict ? "strict" : "ahead", i % 3 + 1, live + 1, s);
    assert_non_null(strstr(s, "\nSuperSlabs registered: "));
    assert_non_null(strstr(s, "\nthread caches:\n"));
    if (!first) first = strdup(s);
    else if (strcmp(s, first))
      fail_msg("%s run %d: another state than the first run's\n--- first:\n%s--- this:\n%s",
               strict ? "strict" : "ahead", i % 3 + 1, first, s);
    result_free(&r);
  }
  free(first);
}

/* A recording cut by abort() in main, its last event a large malloc made
 * at its turn, while the other thread's last events after it are cache
 * pops (made ahead, then that thread parks at its queue's end). */
static const char *prog_cut =
  "#include <pthread.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
  "static volatile int go, stage; void *volatile sink;\n"
  "static void *spin(void *arg) {\n"
  "  static void *keep[64], *more[16];\n"
  "  for (int i = 0; i < 64; i++) sink = keep[i] = malloc(16);\n"
  "  for (int i = 0; i < 16; i++) more[i] = malloc(16);\n"
  "  for (int i = 0; i < 16; i++) free(more[i]);\n"
  "  go = 1;\n"
  "  while (!stage) ;\n"
  "  for (int i = 0; i < 10; i++) sink = more[i] = malloc(16);\n"
  "  for (;;) pause();\n"
  "}\n"
  "int main(void) {\n"
  "  pthread_t t; pthread_create(&t, NULL, spin, NULL);\n"
  "  while (!go) ;\n"
  "  sink = malloc(100000);\n"
  "  stage = 1; usleep(20000); abort();\n"
  "}\n";

/* The state printed at the end of a trace cut by a crash holds every live
 * block of the trace, in both modes: events made ahead by a thread that
 * parked before a lower seq was made at its turn count too. */
static void test_ahead_crash_cut_state(void **state) {
  skip_under_sanitizer();
  build("cut", prog_cut);
  char path[256], bin[256];
  snprintf(path, sizeof path, "%s/cut.hkt.zst", tmpdir);
  snprintf(bin, sizeof bin, "%s/cut", tmpdir);
  result r = runv(NULL, (const char *[]){hakmem_bin, "record", "-o", path, "--", bin, NULL});
  result_free(&r);
  /* The trace's shape: main's large malloc, then the other thread's pops. */
  uint64_t big = find_seq(path, HKT_EV_LARGE_MAP, -1, NULL), last_malloc = 0;
  hkt_reader *rd;
  hkt_event ev;
  assert_int_equal(hkt_reader_open(&rd, path), 0);
  while (hkt_reader_next(rd, &ev) == 1)
    if (ev.kind == HKT_EV_MALLOC) last_malloc = ev.seq;
  hkt_reader_close(rd);
  if (big == UINT64_MAX || last_malloc < big + 10) fail_msg("cut: not the trace expected (large malloc %" PRIu64
                                                            ", last malloc %" PRIu64 ")", big, last_malloc);
  char live[64];
  snprintf(live, sizeof live, "\nlive blocks: %" PRIu64 " (", live_before(path, UINT64_MAX));
  for (int i = 0; i < 6; i++) {
    int strict = i == 5;
    r = replay_mode(strict, path, NULL, NULL);
    if (r.status != 0) fail_msg("%s run %d: exit %d\n%s\n%s", strict ? "strict" : "ahead", i + 1, r.status, r.out, r.err);
    const char *s = strstr(r.out, "allocator state at the last event:");
    if (!s) fail_msg("no allocator state:\n%s", r.out);
    if (!strstr(s, live)) fail_msg("%s run %d: not %s\n%s", strict ? "strict" : "ahead", i + 1, live + 1, s);
    result_free(&r);
  }
}

/* Threads whose first call is a large one: malloc, realloc of a large
 * block made by main (in place or moved), posix_memalign. */
static const char *prog_bigfirst =
  "#include <pthread.h>\n#include <stdlib.h>\n#include <string.h>\n"
  "void *volatile sink;\n"
  "static void *big_first(void *arg) { void *p = malloc(100000); memset(p, 1, 64); sink = p; free(p); return NULL; }\n"
  "static void *resize_first(void *arg) { void *p = realloc(arg, 300000); sink = p; free(p); return NULL; }\n"
  "static void *aligned_first(void *arg) { void *p; if (!posix_memalign(&p, 4096, 200000)) { sink = p; free(p); } return NULL; }\n"
  "int main(void) {\n"
  "  for (int r = 0; r < 4; r++) {\n"
  "    pthread_t t[3]; void *big = malloc(70000); sink = big;\n"
  "    pthread_create(&t[0], NULL, big_first, NULL);\n"
  "    pthread_create(&t[1], NULL, resize_first, big);\n"
  "    pthread_create(&t[2], NULL, aligned_first, NULL);\n"
  "    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);\n"
  "    free(malloc(32));\n"
  "  }\n"
  "  return 0;\n"
  "}\n";

/* A thread's first call a large one (alloc, resize, aligned): the trace
 * replays identically in both orders. */
static void test_large_first_call(void **state) {
  skip_under_sanitizer();
  build("bigfirst", prog_bigfirst);
  const char *t = record("bigfirst.hkt.zst", NULL, "bigfirst", NULL, NULL);
  for (int strict = 0; strict < 2; strict++) {
    result r = replay_mode(strict, t, "--json", "--timeout=3");
    if (r.status != 0) fail_msg("%s: exit %d\n%s\n%s", strict ? "strict" : "ahead", r.status, r.out, r.err);
    assert_non_null(strstr(r.out, "\"identical\":true"));
    assert_int_equal(json_u64(r.out, "threads"), 13);
    result_free(&r);
  }
}

/* ---- a forked child's trace (replay/chain.c) ---- */

/* A thread forks while another allocates and frees; the child frees half
 * of the blocks it inherited and makes its own (argv[1] "interior": one
 * interior free of an inherited block too). */
static const char *prog_fork =
  "#include <pthread.h>\n#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n#include <sys/wait.h>\n"
  "static void *kept[3000];\nstatic volatile int go = 1;\nstatic int bad;\n"
  "static void *churn(void *a) {\n"
  "  void *q[64] = {0};\n"
  "  for (int i = 0; go && i < 3000000; i++) { int k = i & 63; free(q[k]); q[k] = malloc((i * 7) % 900 + 1); }\n"
  "  for (int k = 0; k < 64; k++) free(q[k]);\n  return a;\n}\n"
  "static void *forker(void *a) {\n"
  "  pid_t pid = fork();\n"
  "  if (pid == 0) {\n"
  "    for (int i = 0; i < 3000; i += 2) free(kept[i]);\n"
  "    void *mine[500]; for (int i = 0; i < 500; i++) mine[i] = malloc(i * 3 + 1);\n"
  "    if (bad) free((char *)kept[699] + 16);\n"
  "    for (int i = 0; i < 500; i += 2) free(mine[i]);\n"
  "    _exit(0);\n  }\n"
  "  int st; waitpid(pid, &st, 0);\n  return a;\n}\n"
  "int main(int argc, char **argv) {\n"
  "  bad = argc > 1 && !strcmp(argv[1], \"interior\");\n"
  "  for (int i = 0; i < 3000; i++) kept[i] = malloc(i % 700 + 1);\n"
  "  pthread_t c, f;\n  pthread_create(&c, 0, churn, 0);\n"
  "  for (int i = 0; i < 20000; i++) free(malloc(i % 300 + 1));\n"
  "  pthread_create(&f, 0, forker, 0);\n  pthread_join(f, 0);\n"
  "  go = 0; pthread_join(c, 0);\n"
  "  for (int i = 1; i < 3000; i += 2) free(kept[i]);\n  return 0;\n}\n";

/* The child's trace of a recording into dir/NAME.hkt.zst (the one other file there). */
static const char *child_trace(const char *dir, const char *name) {
  static char path[512];
  char cmd[512];
  snprintf(cmd, sizeof cmd, "ls %s/%s.*.hkt.zst", dir, name);
  FILE *ls = popen(cmd, "r");
  assert_non_null(ls);
  assert_non_null(fgets(path, sizeof path, ls));
  path[strcspn(path, "\n")] = 0;
  pclose(ls);
  return path;
}

/* The child's header names the parent's FORK; the child replays, after
 * the parent's events up to there, identically, every time; so does the
 * parent, its FORK event not made again. */
static void test_fork_child_replayed(void **state) {
  skip_under_sanitizer();
  build("fork", prog_fork);
  char parent[256];
  snprintf(parent, sizeof parent, "%s", record("fork.hkt.zst", NULL, "fork", NULL, NULL));
  const char *child = child_trace(tmpdir, "fork");
  uint64_t fork_seq = find_seq(parent, HKT_EV_FORK, -1, NULL), child_events;
  assert_true(fork_seq != UINT64_MAX);
  find_seq(child, HKT_EV_MALLOC, -1, &child_events);

  hkt_reader *rd;
  assert_int_equal(hkt_reader_open(&rd, child), 0);
  const hkt_header *h = hkt_reader_header(rd);
  assert_int_equal(h->forked, 1);
  assert_int_equal(h->fork_seq, fork_seq);
  assert_non_null(strstr(h->parent_trace, "/fork.hkt.zst"));
  assert_true(h->num_modules > 0);   /* its own: the parent's mappings, at the fork */
  hkt_reader_close(rd);
  result s = HAKMEM("stats", child, "--json");   /* the child left by _exit(0) */
  assert_non_null(strstr(s.out, "\"end\":{\"kind\":\"exit\",\"status\":0,"));
  result_free(&s);

  result r = HAKMEM("replay", child, "--json", "--repeat", "5");
  if (r.status) fail_msg("replay of the child: exit %d\n%s%s", r.status, r.out, r.err);
  assert_int_equal(json_u64(r.out, "runs_identical"), 5);
  assert_int_equal(json_u64(r.out, "parent_events"), fork_seq);
  assert_int_equal(json_u64(r.out, "events"), child_events);
  result_free(&r);
  r = HAKMEM("replay", parent, "--json");
  if (r.status) fail_msg("replay of the parent: exit %d\n%s%s", r.status, r.out, r.err);
  assert_int_equal(json_u64(r.out, "parent_events"), 0);
  result_free(&r);
}

/* A detection in the child is reproduced at the child's own seq; --stop-at
 * takes the child's own seq. */
static void test_fork_child_detection(void **state) {
  skip_under_sanitizer();
  build("fork", prog_fork);
  const char *env[] = {"HAKMEM_ON_ERROR=continue", NULL};
  char dir[256], cmd[1280];
  snprintf(dir, sizeof dir, "%s/det", tmpdir);
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  assert_int_equal(system(cmd), 0);
  record("det/fork.hkt.zst", env, "fork", "interior", NULL);
  const char *child = child_trace(dir, "fork");
  uint64_t det = interior_free_3_times(child);   /* the child's own seq */
  char stop[32], out[300], outc[300];
  snprintf(stop, sizeof stop, "%llu", (unsigned long long)det);
  result r = HAKMEM("replay", child, "--stop-at", stop);
  assert_int_equal(r.status, 0);
  char want[96];
  snprintf(want, sizeof want, "stopped before seq %llu", (unsigned long long)det);
  assert_non_null(strstr(r.out, want));
  result_free(&r);

  /* minimize keeps the child's detection; OUT is a child's trace again */
  snprintf(out, sizeof out, "%s/min.hkt.zst", dir);
  snprintf(outc, sizeof outc, "%s/min.c", dir);
  r = HAKMEM("minimize", child, "-o", out, "--emit-c", outc);
  if (r.status) fail_msg("minimize: exit %d\n%s%s", r.status, r.out, r.err);
  assert_non_null(strstr(r.out, "reproduces it"));
  assert_non_null(strstr(r.out, "C reproducer: not written"));
  result_free(&r);
  uint64_t n;
  find_seq(out, HKT_EV_MALLOC, -1, &n);
  assert_true(n < 20);
  interior_free_3_times(out);

  /* Without its parent's trace, one line that says what is missing. */
  snprintf(cmd, sizeof cmd, "mkdir -p %s/alone && cp %s %s/alone/", tmpdir, child, tmpdir);
  assert_int_equal(system(cmd), 0);
  const char *base = strrchr(child, '/') + 1;
  char alone[1024];
  snprintf(alone, sizeof alone, "%s/alone/%s", tmpdir, base);
  snprintf(cmd, sizeof cmd, "mv %s/fork.hkt.zst %s/fork.moved", dir, dir);
  assert_int_equal(system(cmd), 0);
  r = HAKMEM("replay", alone);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "forked child"));
  assert_non_null(strstr(r.err, "not there"));
  assert_null(strchr(strchr(r.err, '\n') + 1, '\n'));   /* one line */
  result_free(&r);
}

/* Three generations: the grandchild's trace replays after its
 * grandparent's and its parent's events up to each fork, and dies as
 * recorded (a signal of its own). */
static const char *prog_fork3 =
  "#include <signal.h>\n#include <stdlib.h>\n#include <unistd.h>\n#include <sys/wait.h>\n"
  "static void *kept[2000];\n"
  "int main(void) {\n"
  "  for (int i = 0; i < 2000; i++) kept[i] = malloc(i % 500 + 1);\n"
  "  pid_t c = fork();\n"
  "  if (c == 0) {\n"
  "    for (int i = 0; i < 2000; i += 2) free(kept[i]);\n"
  "    void *m = malloc(100); (void)m;\n"
  "    pid_t g = fork();\n"
  "    if (g == 0) { for (int i = 1; i < 2000; i += 4) free(kept[i]); raise(SIGSEGV); }\n"
  "    waitpid(g, 0, 0);\n    _exit(0);\n  }\n"
  "  waitpid(c, 0, 0);\n  return 0;\n}\n";

static void test_fork_grandchild(void **state) {
  skip_under_sanitizer();
  build("fork3", prog_fork3);
  char dir[256], cmd[512], root[300], child[512] = "", grand[512] = "";
  snprintf(dir, sizeof dir, "%s/g3", tmpdir);
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  assert_int_equal(system(cmd), 0);
  snprintf(root, sizeof root, "%s", record("g3/r.hkt.zst", NULL, "fork3", NULL, NULL));
  snprintf(cmd, sizeof cmd, "ls %s/r.*.hkt.zst", dir);
  FILE *ls = popen(cmd, "r");
  assert_non_null(ls);
  char path[512];
  while (fgets(path, sizeof path, ls)) {   /* which is which: the grandchild's parent is no root */
    path[strcspn(path, "\n")] = 0;
    hkt_reader *rd;
    assert_int_equal(hkt_reader_open(&rd, path), 0);
    const hkt_header *h = hkt_reader_header(rd);
    assert_int_equal(h->forked, 1);
    snprintf(strstr(h->parent_trace, "/r.hkt.zst") ? child : grand, sizeof child, "%s", path);
    hkt_reader_close(rd);
  }
  pclose(ls);
  assert_true(*child && *grand);
  uint64_t s1 = find_seq(root, HKT_EV_FORK, -1, NULL), s2 = find_seq(child, HKT_EV_FORK, -1, NULL);
  result r = HAKMEM("replay", grand, "--json", "--repeat", "3");
  if (r.status) fail_msg("replay of the grandchild: exit %d\n%s%s", r.status, r.out, r.err);
  assert_int_equal(json_u64(r.out, "runs_identical"), 3);
  assert_int_equal(json_u64(r.out, "parent_events"), s1 + s2);
  result_free(&r);
  /* its state at the end: blocks inherited from two generations back say so */
  r = HAKMEM("replay", grand);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "recorded end: SIGSEGV"));
  char want[400];
  snprintf(want, sizeof want, "of the parent's trace %s by thread", root);
  assert_non_null(strstr(r.out, want));
  result_free(&r);
}

static int setup(void **state) {
  const char *b = getenv("HAKMEM_BUILD");
  snprintf(hakmem_bin, sizeof hakmem_bin, "%s/bin/hakmem", b && *b ? b : "build");
  snprintf(tmpdir, sizeof tmpdir, "/tmp/hakmem-test-replay-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_determinism_4_threads),
    cmocka_unit_test(test_late_frees_replayed),
    cmocka_unit_test(test_divergence_reported),
    cmocka_unit_test(test_invalid_free_reproduced),
    cmocka_unit_test(test_injected_faults_reproduced),
    cmocka_unit_test(test_stop_at),
    cmocka_unit_test(test_against_system),
    cmocka_unit_test(test_bad_input),
    cmocka_unit_test(test_minimize),
    cmocka_unit_test(test_minimize_injected),
    cmocka_unit_test(test_minimize_injected_mt),
    cmocka_unit_test(test_long_span_replayed),
    cmocka_unit_test(test_throughput),
    cmocka_unit_test(test_ahead_same_as_strict),
    cmocka_unit_test(test_ahead_repeat),
    cmocka_unit_test(test_ahead_divergence_same_seq),
    cmocka_unit_test(test_ahead_divergence_repeat),
    cmocka_unit_test(test_ahead_stop_at),
    cmocka_unit_test(test_ahead_crash_cut_state),
    cmocka_unit_test(test_large_first_call),
    cmocka_unit_test(test_fork_child_replayed),
    cmocka_unit_test(test_fork_child_detection),
    cmocka_unit_test(test_fork_grandchild),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
