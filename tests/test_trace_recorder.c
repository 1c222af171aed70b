/* test_trace_recorder.c — recording real programs: their own calls are all
 * in the trace, in order across threads; crashes (SIGSEGV, abort, SIGKILL)
 * lose no event whose call returned and name the signal; fork and exec give
 * one complete trace per process; `hakmem recover` finishes a spool;
 * backtraces, module loads, a full disk.
 *
 * Test programs are built from C strings with `cc` into a scratch directory
 * and run with LD_PRELOAD=$HAKMEM_BUILD/lib/libhakmem.so (skipped under
 * sanitizers, $HAKMEM_TEST_SAN). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem/trace.h"
#include "../trace/hkt_internal.h"   /* hkt_reader_data_end: frame boundaries */

static char tmp[128];
static char build[512];
static char hakmem_bin[600], libso[600];

/* ---- helpers ---- */

static void put_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return strdup("");
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return strdup(buf);
}

/* Build tmp/NAME from SRC. */
static void build_prog(const char *name, const char *src) {
  char c[700], exe[700], cmd[2000];
  snprintf(c, sizeof c, "%s/%s.c", tmp, name);
  snprintf(exe, sizeof exe, "%s/%s", tmp, name);
  put_file(c, src);
  snprintf(cmd, sizeof cmd, "cc -O1 -g -pthread -o %s %s -ldl", exe, c);
  assert_int_equal(system(cmd), 0);
}

/* A test program NAME built from SRC, and what recording it under the
 * preload takes: its path, its trace's, the two environment entries. */
typedef struct recording { char exe[700], out[700], env_trace[800], env_pre[800]; } recording;

static void recording_prepare(recording *r, const char *name, const char *src) {
  build_prog(name, src);
  snprintf(r->exe, sizeof r->exe, "%s/%s", tmp, name);
  snprintf(r->out, sizeof r->out, "%s/%s.hkt.zst", tmp, name);
  snprintf(r->env_trace, sizeof r->env_trace, "HAKMEM_TRACE=%s", r->out);
  snprintf(r->env_pre, sizeof r->env_pre, "LD_PRELOAD=%s", libso);
}

/* Run argv with extra "NAME=VALUE" environment entries (NULL-terminated),
 * stdout and stderr into tmp/out and tmp/err; returns waitpid's status. */
static int run(char *const argv[], const char *const env[], int fsize_limit) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (!pid) {
    char o[700], e[700];
    snprintf(o, sizeof o, "%s/out", tmp);
    snprintf(e, sizeof e, "%s/err", tmp);
    int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fo, 1);
    dup2(fe, 2);
    for (int i = 0; env && env[i]; i++) putenv((char *)env[i]);
    if (fsize_limit) {
      signal(SIGXFSZ, SIG_IGN);
      struct rlimit rl = { (rlim_t)fsize_limit, (rlim_t)fsize_limit };
      setrlimit(RLIMIT_FSIZE, &rl);
    }
    execvp(argv[0], argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return st;
}

static char *run_err(void) { char p[700]; snprintf(p, sizeof p, "%s/err", tmp); return slurp(p); }
static char *run_out(void) { char p[700]; snprintf(p, sizeof p, "%s/out", tmp); return slurp(p); }

/* All events of a trace (callers keep the array), how it read. */
typedef struct trace {
  hkt_event *ev;
  size_t n;
  int rc, complete;
  char cmdline[256];
  uint32_t nmods;
  int exe_has_buildid;
  uint64_t exe_base, exe_size;
} trace;

static void load(const char *path, trace *t, const char *exe_name) {
  memset(t, 0, sizeof *t);
  hkt_reader *r = NULL;
  int e = hkt_reader_open(&r, path);
  if (HKT_IS_ERR(e)) fprintf(stderr, "open %s: %s\n", path, hkt_reader_errmsg(r ? r : NULL));
  assert_int_equal(e, 0);
  const hkt_header *h = hkt_reader_header(r);
  snprintf(t->cmdline, sizeof t->cmdline, "%s", h->cmdline);
  t->nmods = h->num_modules;
  for (uint32_t i = 0; exe_name && i < h->num_modules; i++) {
    const char *p = h->modules[i].path, *s = strrchr(p, '/');
    if (s && !strcmp(s + 1, exe_name)) {
      t->exe_has_buildid = h->modules[i].build_id_len > 0;
      t->exe_base = h->modules[i].base;
      t->exe_size = h->modules[i].size;
    }
  }
  size_t cap = 1024;
  t->ev = malloc(cap * sizeof *t->ev);
  hkt_event ev;
  while ((e = hkt_reader_next(r, &ev)) > 0) {
    if (t->n == cap) t->ev = realloc(t->ev, (cap *= 2) * sizeof *t->ev);
    ev.str = NULL;
    ev.bid = NULL;
    t->ev[t->n++] = ev;
  }
  if (HKT_IS_ERR(e)) fprintf(stderr, "read %s: %s\n", path, hkt_reader_errmsg(r));
  t->rc = e;
  t->complete = hkt_reader_complete(r);
  hkt_reader_close(r);
}

static const hkt_event *end_event(const trace *t) {
  return t->n && t->ev[t->n - 1].kind == HKT_EV_END ? &t->ev[t->n - 1] : NULL;
}

static int setup(void **state) {
  (void)state;
  const char *b = getenv("HAKMEM_BUILD");
  snprintf(build, sizeof build, "%s", b && *b ? b : "build");
  snprintf(hakmem_bin, sizeof hakmem_bin, "%s/bin/hakmem", build);
  snprintf(libso, sizeof libso, "%s/lib/libhakmem.so", build);
  char real[PATH_MAX];
  /* the real paths where they fit (a longer one keeps the relative path) */
  if (realpath(libso, real) && strlen(real) < sizeof libso) memcpy(libso, real, strlen(real) + 1);
  if (realpath(hakmem_bin, real) && strlen(real) < sizeof hakmem_bin) memcpy(hakmem_bin, real, strlen(real) + 1);
  strcpy(tmp, "/tmp/hkt-rec-XXXXXX");
  return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  return system(cmd) == 0 ? 0 : -1;
}

#define NEED_PRELOAD() do { if (getenv("HAKMEM_TEST_SAN") && *getenv("HAKMEM_TEST_SAN")) skip(); } while (0)

/* ---- 1. a program's own calls, exactly ---- */

static const char calls_src[] =
  "#include <dlfcn.h>\n#include <errno.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <malloc.h>\n"
  "struct call { int kind; char fn; int err; unsigned long size, ptr, aux; } log_[4000];\n"
  "int n;\n"
  /* fn: '-' none, 'r' realloc, 'p' posix_memalign, 'a' aligned_alloc; err: the errno the call gave */
  "#define LOG(k, f, e, s, p, a) log_[n++] = (struct call){k, f, e, (unsigned long)(s), (unsigned long)(p), (unsigned long)(a)}\n"
  "volatile size_t huge = (size_t)1 << 62;\n"
  "int main(void) {\n"
  "  void (*mark)(const char *) = (void (*)(const char *))dlsym(RTLD_DEFAULT, \"hak_trace_mark\");\n"
  "  if (!mark) return 99;\n"
  "  void *keep[64] = {0};\n"
  "  mark(\"begin\");\n"
  "  for (int i = 0; i < 600; i++) {\n"
  "    int k = i % 64;\n"
  "    if (keep[k]) { LOG(5, '-', 0, 0, keep[k], 0); free(keep[k]); keep[k] = 0; }\n"
  "    size_t sz = 1 + (i * 37) % 3000;\n"
  "    switch (i % 5) {\n"
  "    case 0: keep[k] = malloc(sz); LOG(1, '-', 0, sz, keep[k], 0); break;\n"
  "    case 1: keep[k] = calloc(3, sz); LOG(2, '-', 0, sz, keep[k], 3); break;\n"
  "    case 2: { void *p = malloc(8); LOG(1, '-', 0, 8, p, 0); keep[k] = realloc(p, sz); LOG(3, 'r', 0, sz, keep[k], p); break; }\n"
  "    case 3: { void *p = 0; posix_memalign(&p, 64, sz); keep[k] = p; LOG(4, 'p', 0, sz, p, 64); break; }\n"
  "    case 4: keep[k] = aligned_alloc(256, 512); LOG(4, 'a', 0, 512, keep[k], 256); break;\n"
  "    }\n"
  "    if (i % 100 == 7) {\n"   /* failures: the errno is in the event */
  "      void *p = malloc(huge); LOG(1, '-', errno, huge, p, 0);\n"
  "      int e = posix_memalign(&p, 3, sz); LOG(4, 'p', e, sz, 0, 3);\n"
  "    }\n"
  "  }\n"
  "  for (int k = 0; k < 64; k++) if (keep[k]) { LOG(5, '-', 0, 0, keep[k], 0); free(keep[k]); }\n"
  "  mark(\"end\");\n"
  "  for (int i = 0; i < n; i++)\n"
  "    printf(\"%d %c %d %lu %lx %lx\\n\", log_[i].kind, log_[i].fn, log_[i].err, log_[i].size, log_[i].ptr, log_[i].aux);\n"
  "  return 0;\n"
  "}\n";

static void test_own_calls(void **state) {
  (void)state;
  NEED_PRELOAD();
  build_prog("calls", calls_src);
  char exe[700], out[700];
  snprintf(exe, sizeof exe, "%s/calls", tmp);
  snprintf(out, sizeof out, "%s/calls.hkt.zst", tmp);
  char *argv[] = { hakmem_bin, "record", "-o", out, "--", exe, NULL };
  int st = run(argv, NULL, 0);
  char *err = run_err();
  if (!WIFEXITED(st) || WEXITSTATUS(st)) fprintf(stderr, "record: %s\n", err);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_non_null(strstr(err, "exit status 0"));
  free(err);

  /* the program's log: kind size ptr aux */
  char *log = run_out();
  trace t;
  load(out, &t, "calls");
  assert_int_equal(t.rc, 0);
  assert_true(t.complete);
  assert_non_null(strstr(t.cmdline, "calls"));
  assert_true(t.exe_has_buildid);
  const hkt_event *end = end_event(&t);
  assert_non_null(end);
  assert_int_equal(end->fn, HKT_END_EXIT);
  assert_int_equal(end->aux, 0);

  size_t i = 0;
  while (i < t.n && !(t.ev[i].kind == HKT_EV_MARK)) i++;
  assert_true(i < t.n);
  uint32_t tid = t.ev[i].tid;
  i++;
  char *line = log;
  int matched = 0, failed = 0;
  for (; i < t.n; i++) {
    const hkt_event *e = &t.ev[i];
    if (e->kind == HKT_EV_MARK) break;
    if (e->kind < HKT_EV_MALLOC || e->kind > HKT_EV_FREE) continue;   /* internal events */
    assert_int_equal(e->tid, tid);
    int kind, err;
    char fn;
    unsigned long size, ptr, aux;
    assert_int_equal(sscanf(line, "%d %c %d %lu %lx %lx", &kind, &fn, &err, &size, &ptr, &aux), 6);
    line = strchr(line, '\n') + 1;
    assert_int_equal(e->kind, kind);
    assert_int_equal(e->fn, fn == 'r' ? HKT_FN_REALLOC : fn == 'p' ? HKT_FN_POSIX_MEMALIGN
                            : fn == 'a' ? HKT_FN_ALIGNED_ALLOC : HKT_FN_NONE);
    assert_int_equal(e->aux2, err);   /* the call's errno, 0 when it succeeded */
    assert_true(err ? e->ptr == 0 && e->cls == HKT_NO_CLASS : e->ptr != 0);
    failed += err != 0;
    assert_int_equal(e->ptr, ptr);
    if (kind != HKT_EV_FREE) assert_int_equal(e->size, size);
    if (kind == HKT_EV_CALLOC || kind == HKT_EV_REALLOC || kind == HKT_EV_ALIGNED) assert_int_equal(e->aux, aux);
    /* every call site is in the program itself */
    assert_true(e->caller >= t.exe_base && e->caller < t.exe_base + t.exe_size);
    matched++;
  }
  assert_true(i < t.n);   /* the end mark */
  assert_int_equal(*line, 0);   /* no call of the program is missing */
  assert_true(matched > 1000);
  assert_int_equal(failed, 12);
  free(log);
  free(t.ev);
}

/* ---- 2. threads: order and cross-thread frees ---- */

static const char threads_src[] =
  "#include <pthread.h>\n#include <stdlib.h>\n#include <stdatomic.h>\n"
  "#define T 4\n#define N 20000\n#define Q 256\n"
  "static _Atomic(void *) q[T][Q];\n"
  "static void *work(void *arg) {\n"
  "  long t = (long)arg;\n"
  "  for (long j = 0; j < N; j++) {\n"
  "    void *p = malloc(1 + t + 8 * (j % 100));\n"     /* size tells thread and step */
  "    _Atomic(void *) *slot = &q[(t + 1) % T][j % Q];\n"
  "    void *old = atomic_exchange(slot, p);\n"
  "    if (old) free(old);\n"                           /* often another thread's block */
  "  }\n"
  "  return 0;\n"
  "}\n"
  "int main(void) {\n"
  "  pthread_t th[T];\n"
  "  for (long t = 0; t < T; t++) pthread_create(&th[t], 0, work, (void *)t);\n"
  "  for (int t = 0; t < T; t++) pthread_join(th[t], 0);\n"
  "  for (int t = 0; t < T; t++) for (int i = 0; i < Q; i++) free(atomic_load(&q[t][i]));\n"
  "  return 0;\n"
  "}\n";

/* The live blocks of a trace read in seq order, with the thread that
 * allocated each: open addressing on the address, deletion by backward
 * shift (no tombstones, so a long trace does not fill it up). */
typedef struct liveset {
  uint64_t *ptr;
  uint32_t *by;
  size_t cap;   /* a power of two */
} liveset;

static liveset liveset_new(size_t cap) {
  liveset l = { calloc(cap, sizeof(uint64_t)), calloc(cap, sizeof(uint32_t)), cap };
  assert_non_null(l.ptr);
  assert_non_null(l.by);
  return l;
}

static void liveset_free(liveset *l) {
  free(l->ptr);
  free(l->by);
}

static size_t liveset_home(const liveset *l, uint64_t p) { return (p >> 3) & (l->cap - 1); }

static void liveset_add(liveset *l, uint64_t p, uint32_t by) {
  size_t h = liveset_home(l, p);
  while (l->ptr[h]) h = (h + 1) & (l->cap - 1);
  l->ptr[h] = p;
  l->by[h] = by;
}

/* 1 and the allocating thread in *by if p was live (it is not now), else 0. */
static int liveset_del(liveset *l, uint64_t p, uint32_t *by) {
  size_t j = liveset_home(l, p);
  while (l->ptr[j] && l->ptr[j] != p) j = (j + 1) & (l->cap - 1);
  if (l->ptr[j] != p) return 0;
  *by = l->by[j];
  for (;;) {
    l->ptr[j] = 0;
    size_t k = j, home;
    do {
      k = (k + 1) & (l->cap - 1);
      if (!l->ptr[k]) return 1;
      home = liveset_home(l, l->ptr[k]);
    } while ((j <= k) ? (home > j && home <= k) : (home > j || home <= k));
    l->ptr[j] = l->ptr[k];
    l->by[j] = l->by[k];
    j = k;
  }
}

static void test_threads(void **state) {
  (void)state;
  NEED_PRELOAD();
  recording rc;
  recording_prepare(&rc, "threads", threads_src);
  char *exe = rc.exe, *out = rc.out, *env_trace = rc.env_trace, *env_pre = rc.env_pre;
  const char *env[] = { env_trace, env_pre, "HAKMEM_TRACE_ROOT=", NULL };
  char *argv[] = { exe, NULL };
  int st = run(argv, env, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  trace t;
  load(out, &t, NULL);
  assert_int_equal(t.rc, 0);
  assert_true(t.complete);

  /* live set in seq order: every free is of a live block */
  liveset live = liveset_new(1 << 20);
  long mallocs = 0, frees = 0;
  long step[64];
  int owner[64];
  for (int i = 0; i < 64; i++) step[i] = -1, owner[i] = -1;
  for (size_t i = 0; i < t.n; i++) {
    const hkt_event *e = &t.ev[i];
    assert_int_equal(e->seq, i);
    if (e->kind == HKT_EV_MALLOC && e->ptr) {
      liveset_add(&live, e->ptr, e->tid);
      if (e->size >= 1 && e->size <= 4 + 8 * 99 && e->tid < 64) {
        /* program order within each thread: the steps of one thread */
        int th = (int)((e->size - 1) % 8);
        long j = (long)((e->size - 1) / 8);
        if (th < 4) {
          if (owner[e->tid] < 0) owner[e->tid] = th;
          if (owner[e->tid] == th) {
            if (step[e->tid] >= 0) assert_int_equal(j, (step[e->tid] + 1) % 100);
            step[e->tid] = j;
            mallocs++;
          }
        }
      }
    } else if (e->kind == HKT_EV_FREE && e->ptr) {
      uint32_t by;
      assert_int_equal(liveset_del(&live, e->ptr, &by), 1);   /* freed after its alloc */
      frees++;
    }
  }
  assert_int_equal(mallocs, 4 * 20000);
  assert_true(frees >= 4 * 20000);
  liveset_free(&live);
  free(t.ev);
}

/* ---- 2a. a thread whose first call is a large one: its THREAD_START
 * comes first, before the LARGE_MAP that names it (replay starts the
 * thread at its THREAD_START), and the trace replays identically. ---- */

static const char first_large_src[] =
  "#include <pthread.h>\n#include <stdlib.h>\n"
  "void *volatile sink;\n"
  "static void *work(void *arg) {\n"
  "  void *big = sink = malloc(200000 + 4096 * (long)arg), *small = sink = malloc(40);\n"
  "  free(big); free(small);\n"
  "  return NULL;\n"
  "}\n"
  "int main(void) {\n"
  "  for (long r = 0; r < 3; r++) {\n"
  "    pthread_t t[4];\n"
  "    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, work, (void *)(r * 4 + i));\n"
  "    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);\n"
  "  }\n"
  "  return 0;\n"
  "}\n";

static void test_first_call_large(void **state) {
  (void)state;
  NEED_PRELOAD();
  recording rc;
  recording_prepare(&rc, "first_large", first_large_src);
  const char *env[] = { rc.env_trace, rc.env_pre, NULL };
  char *argv[] = { rc.exe, NULL };
  int st = run(argv, env, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  trace t;
  load(rc.out, &t, NULL);
  assert_int_equal(t.rc, 0);
  static uint8_t started[256];
  memset(started, 0, sizeof started);
  int maps = 0;
  for (size_t i = 0; i < t.n; i++) {
    const hkt_event *e = &t.ev[i];
    if (e->kind == HKT_EV_THREAD_START && e->tid < sizeof started) started[e->tid] = 1;
    if (e->kind != HKT_EV_LARGE_MAP && e->kind != HKT_EV_LARGE_UNMAP) continue;
    if (e->tid >= sizeof started || !started[e->tid])
      fail_msg("seq %" PRIu64 ": a large %s by thread %u before its THREAD_START", e->seq,
               e->kind == HKT_EV_LARGE_MAP ? "map" : "unmap", e->tid);
    maps += e->kind == HKT_EV_LARGE_MAP;
  }
  assert_true(maps >= 12);
  free(t.ev);
  char *replay[] = { hakmem_bin, "replay", rc.out, "--json", NULL };
  st = run(replay, NULL, 0);
  char path[800];
  snprintf(path, sizeof path, "%s/out", tmp);
  const char *out = slurp(path);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !strstr(out, "\"identical\":true"))
    fail_msg("replay: status %d\n%s", st, out);
}

/* ---- 2b. blocks handed between threads: the merge of local and global
 * records (docs/trace-format.md, "Order") must put every allocation before
 * the free, realloc or remote push of another thread that got the block
 * through the program's own queue; the trace verifies and replays the same
 * every time. ---- */

static const char queue_src[] =
  "#include <malloc.h>\n#include <pthread.h>\n#include <sched.h>\n#include <stdlib.h>\n#include <string.h>\n"
  "#define T 4\n#define N 5000\n#define Q 64\n"
  "static struct { pthread_mutex_t mu; void *slot[Q]; unsigned head, tail; } ring[T];\n"
  /* thread t hands blocks to thread t + 1 and takes those of thread t - 1 */
  "static void *work(void *arg) {\n"
  "  long t = (long)arg;\n"
  "  unsigned long x = 0x9e3779b97f4a7c15ul * (1 + t);\n"
  "  void *own[8] = {0}, *self[4] = {0};\n"
  "  for (long j = 0; j < N; j++) {\n"
  "    x = x * 6364136223846793005ul + 1442695040888963407ul;\n"
  "    size_t sz = 1 + (x >> 33) % 700;\n"
  "    void *p = (x >> 20) % 4 == 0 ? calloc(2, sz) : (x >> 20) % 4 == 1 ? aligned_alloc(64, 64 + (sz & ~63ul)) : malloc(sz);\n"
  "    if (!p) abort();\n"
  "    memset(p, (int)j, 1);\n"
  "    void *got = 0;\n"
  "    __typeof__(ring[0]) *out = &ring[(t + 1) % T], *in = &ring[t];\n"
  /* waiting a little (yield) when the ring is full or empty makes the
   * threads take turns even on one core */
  "    for (int try = 0; p && try < 20; try++) {\n"
  "      pthread_mutex_lock(&out->mu);\n"
  "      if (out->tail - out->head < Q) out->slot[out->tail++ % Q] = p, p = 0;\n"
  "      pthread_mutex_unlock(&out->mu);\n"
  "      if (p) sched_yield();\n"
  "    }\n"
  "    for (int try = 0; !got && try < 3; try++) {\n"
  "      pthread_mutex_lock(&in->mu);\n"
  "      if (in->tail != in->head) got = in->slot[in->head++ % Q];\n"
  "      pthread_mutex_unlock(&in->mu);\n"
  "      if (!got) sched_yield();\n"
  "    }\n"
  "    if (p) free(p);\n"
  "    if (got) {\n"                                   /* another thread's block */
  /* in place: a realloc that moves another thread's block records its
   * free (the remote push) before the call's own event */
  "      if ((x >> 40) % 3 == 0) got = realloc(got, malloc_usable_size(got) / 2 + 1);\n"
  "      if ((x >> 50) % 2) free(got);\n"
  "      else { int k = (x >> 52) % 8; free(own[k]); own[k] = got; }\n"   /* freed later, by this thread */
  "    }\n"
  "    int k = (x >> 56) % 4;\n"                                      /* blocks of its own, moved */
  "    self[k] = realloc(self[k], 1 + (x >> 44) % 2000);\n"
  "    if ((x >> 60) % 4 == 0) { free(self[k]); self[k] = 0; }\n"
  "    void *volatile mine = malloc(1 + (x >> 24) % 200);\n"           /* an own block, freed at once */
  "    free(mine);\n"
  "  }\n"
  "  for (int k = 0; k < 8; k++) free(own[k]);\n"
  "  for (int k = 0; k < 4; k++) free(self[k]);\n"
  "  return 0;\n"
  "}\n"
  "int main(void) {\n"
  "  pthread_t th[T];\n"
  "  for (int t = 0; t < T; t++) pthread_mutex_init(&ring[t].mu, 0);\n"
  "  for (long t = 0; t < T; t++) pthread_create(&th[t], 0, work, (void *)t);\n"
  "  for (int t = 0; t < T; t++) pthread_join(th[t], 0);\n"
  "  for (int t = 0; t < T; t++) while (ring[t].head != ring[t].tail) free(ring[t].slot[ring[t].head++ % Q]);\n"
  "  return 0;\n"
  "}\n";

static void test_queue_handoff(void **state) {
  (void)state;
  NEED_PRELOAD();
  build_prog("queue", queue_src);
  char exe[700];
  snprintf(exe, sizeof exe, "%s/queue", tmp);
  for (int round = 0; round < 3; round++) {
    char out[700];
    snprintf(out, sizeof out, "%s/queue-%d.hkt.zst", tmp, round);
    char *rec[] = { hakmem_bin, "record", "-o", out, "--", exe, NULL };
    int st = run(rec, NULL, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fprintf(stderr, "record: %s\n", run_err());
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *verify[] = { hakmem_bin, "verify", out, NULL };
    st = run(verify, NULL, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fprintf(stderr, "verify: %s%s\n", run_out(), run_err());
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* the same checks here, and that blocks really crossed threads */
    trace t;
    load(out, &t, NULL);
    assert_int_equal(t.rc, 0);
    assert_true(t.complete);
    liveset live = liveset_new(1 << 16);
    long crossed = 0, calls = 0;
    for (size_t i = 0; i < t.n; i++) {
      const hkt_event *e = &t.ev[i];
      assert_int_equal(e->seq, i);
      uint64_t gone = e->kind == HKT_EV_FREE ? e->ptr : e->kind == HKT_EV_REALLOC ? e->aux : 0;
      if (gone) {
        uint32_t by;
        if (!liveset_del(&live, gone, &by))
          fail_msg("seq %zu: %s of %#llx, which is not allocated", i, hkt_kind_name(e->kind),
                   (unsigned long long)gone);
        crossed += by != e->tid;
      }
      if (e->kind >= HKT_EV_MALLOC && e->kind <= HKT_EV_FREE) calls++;
      if (e->kind >= HKT_EV_MALLOC && e->kind <= HKT_EV_ALIGNED && e->ptr) liveset_add(&live, e->ptr, e->tid);
    }
    assert_true(calls > 4 * 5000 * 3);
    assert_true(crossed > 500);   /* blocks really went from thread to thread */
    liveset_free(&live);
    free(t.ev);

    char *replay[] = { hakmem_bin, "replay", out, "--repeat", "2", NULL };
    st = run(replay, NULL, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fprintf(stderr, "replay: %s%s\n", run_out(), run_err());
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
}

/* ---- 3. crashes at random points of a two-thread program ---- */

static const char crash_src[] =
  "#include <pthread.h>\n#include <signal.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
  "#include <stdatomic.h>\n"
  "static _Atomic long made[2];\n"
  "static _Atomic int stop;\n"
  "static void *work(void *arg) {\n"
  "  long t = (long)arg;\n"
  "  void *keep[32] = {0};\n"
  "  for (long j = 0; !atomic_load(&stop); j++) {\n"
  "    int k = j % 32;\n"
  "    if (keep[k]) { free(keep[k]); atomic_fetch_add(&made[t], 1); }\n"
  "    keep[k] = malloc(1 + t + 8 * (j % 100)); atomic_fetch_add(&made[t], 1);\n"
  "  }\n"
  "  return 0;\n"
  "}\n"
  "int main(int argc, char **argv) {\n"
  "  long at = atol(argv[2]);\n"
  "  pthread_t th;\n"
  "  pthread_create(&th, 0, work, (void *)1);\n"
  "  void *keep[32] = {0};\n"
  "  for (long j = 0; j < at; j++) {\n"
  "    int k = j % 32;\n"
  "    if (keep[k]) { free(keep[k]); made[0]++; }\n"
  "    keep[k] = malloc(1 + 8 * (j % 100)); made[0]++;\n"
  "  }\n"
  "  long m0 = made[0], m1 = made[1];\n"   /* every call counted here has returned */
  "  char buf[64];\n"
  "  int n = snprintf(buf, sizeof buf, \"made %ld %ld\\n\", m0, m1);\n"
  "  write(2, buf, n);\n"
  "  switch (argv[1][0]) {\n"
  "  case 's': *(volatile int *)16 = 1; break;\n"
  "  case 'a': abort();\n"
  "  case 'k': kill(getpid(), SIGKILL); break;\n"
  "  }\n"
  "  atomic_store(&stop, 1);\n"
  "  pthread_join(th, 0);\n"
  "  return 0;\n"
  "}\n";

/* malloc and free calls of program thread `th`: its thread index is that of
 * its first malloc (size 1 + th), then every call of that index counts. */
static long calls_of(const trace *t, int th) {
  uint32_t tid = UINT32_MAX;
  long n = 0;
  for (size_t i = 0; i < t->n; i++) {
    const hkt_event *e = &t->ev[i];
    if (tid == UINT32_MAX && e->kind == HKT_EV_MALLOC && e->size == (uint64_t)(1 + th)) tid = e->tid;
    if (e->tid == tid && (e->kind == HKT_EV_MALLOC || e->kind == HKT_EV_FREE)) n++;
  }
  return n;
}

static void crash_case(char mode, int sig, int use_record) {
  char exe[700], out[700], at[32], m[2] = { mode, 0 };
  snprintf(exe, sizeof exe, "%s/crash", tmp);
  snprintf(out, sizeof out, "%s/crash-%c.hkt.zst", tmp, mode);
  snprintf(at, sizeof at, "%ld", 1000 + (long)(random() % 60000));
  int st;
  if (use_record) {
    char *argv[] = { hakmem_bin, "record", "-o", out, "--", exe, m, at, NULL };
    st = run(argv, NULL, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 128 + sig);
  } else {
    /* no front end: the spool stays, `hakmem recover` finishes it */
    char env_trace[800], env_pre[800];
    snprintf(env_trace, sizeof env_trace, "HAKMEM_TRACE=%s", out);
    snprintf(env_pre, sizeof env_pre, "LD_PRELOAD=%s", libso);
    const char *env[] = { env_trace, env_pre, NULL };
    char *argv[] = { exe, m, at, NULL };
    st = run(argv, env, 0);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), sig);
  }
  char *err = run_err();
  long m0 = -1, m1 = -1;
  char *p = strstr(err, "made ");
  assert_non_null(p);
  assert_int_equal(sscanf(p, "made %ld %ld", &m0, &m1), 2);
  free(err);
  char spool[800];
  snprintf(spool, sizeof spool, "%s.spool", out);
  if (!use_record && sig != SIGKILL) {
    /* the in-process handler finished the trace */
    assert_int_not_equal(access(spool, F_OK), 0);
  } else if (!use_record) {
    char *argv[] = { hakmem_bin, "recover", spool, NULL };
    assert_int_equal(access(spool, F_OK), 0);
    st = run(argv, NULL, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_not_equal(access(spool, F_OK), 0);
  }
  /* the modules at start are in the header, also of a trace finished
   * from the spool (before any frame was written, it writes the header) */
  hkt_reader *rd;
  assert_int_equal(hkt_reader_open(&rd, out), 0);
  const hkt_header *h = hkt_reader_header(rd);
  int prog = 0;
  for (uint32_t i = 0; i < h->num_modules; i++) prog |= strstr(h->modules[i].path, "/crash") != NULL;
  uint32_t nmods = h->num_modules;
  hkt_reader_close(rd);
  if (!prog) fail_msg("mode %c: the program is not among the header's %u modules", mode, nmods);
  trace t;
  load(out, &t, NULL);
  assert_int_equal(t.rc, 0);
  assert_true(t.complete);
  const hkt_event *end = end_event(&t);
  assert_non_null(end);
  if (use_record || sig != SIGKILL) {
    assert_int_equal(end->fn, HKT_END_SIGNAL);
    assert_int_equal(end->aux, (uint64_t)sig);
  } else {
    assert_int_equal(end->fn, HKT_END_UNKNOWN);
  }
  /* every call reported before dying is there */
  long c0 = calls_of(&t, 0), c1 = calls_of(&t, 1);
  if (c0 < m0 || c1 < m1) fprintf(stderr, "mode %c: program made %ld %ld, trace has %ld %ld\n", mode, m0, m1, c0, c1);
  assert_true(c0 >= m0);
  assert_true(c1 >= m1);
  free(t.ev);
}

static void test_crashes(void **state) {
  (void)state;
  NEED_PRELOAD();
  build_prog("crash", crash_src);
  srandom((unsigned)getpid());
  for (int i = 0; i < 2; i++) {
    crash_case('s', SIGSEGV, 1);
    crash_case('a', SIGABRT, 1);
    crash_case('k', SIGKILL, 1);
  }
  crash_case('k', SIGKILL, 0);
  crash_case('s', SIGSEGV, 0);
}

/* ---- 3a. a writer killed between writing a frame and telling the spool:
 * the trace file then holds a whole frame more than the spool's
 * written_events. `hakmem recover` must cut it back and take those events
 * from the spool again (once it started the trace over, and every event
 * of the frames before, whose spool chunks were already free, was lost).
 * Made by hand: a SIGKILLed recording's spool is kept aside, recovered
 * once, and the trace file then gets the recovered file's next frame. ---- */

static void copy_file(const char *from, const char *to, uint64_t len) {
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(in >= 0 && out >= 0);
  static char buf[1 << 16];
  ssize_t n;
  while (len && (n = read(in, buf, len < sizeof buf ? len : sizeof buf)) > 0) {
    assert_int_equal(write(out, buf, (size_t)n), n);
    len -= (uint64_t)n;
  }
  close(in);
  close(out);
}

/* Bytes of the whole frames of path that hold its first `events` events
 * and the frame after them. */
static uint64_t one_frame_past(const char *path, uint64_t events) {
  hkt_reader *r = NULL;
  assert_int_equal(hkt_reader_open(&r, path), 0);
  hkt_event ev;
  uint64_t end = 0;
  while (!end && hkt_reader_next(r, &ev) > 0)   /* a frame counts once the next one is read */
    if (hkt_reader_data_events(r) > events) end = hkt_reader_data_end(r);
  if (!end) end = hkt_reader_data_end(r);          /* it was the last */
  hkt_reader_close(r);
  return end;
}

static void test_recover_frame_not_told(void **state) {
  (void)state;
  NEED_PRELOAD();
  build_prog("crash", crash_src);
  char exe[700], out[700], spool[800], real[PATH_MAX], keep_spool[800], keep_trace[800], first[800], again[800];
  snprintf(exe, sizeof exe, "%s/crash", tmp);
  snprintf(out, sizeof out, "%s/told.hkt.zst", tmp);
  snprintf(spool, sizeof spool, "%s.spool", out);
  snprintf(keep_spool, sizeof keep_spool, "%s/told.spool.copy", tmp);
  snprintf(keep_trace, sizeof keep_trace, "%s/told.trace.copy", tmp);
  snprintf(first, sizeof first, "%s/told-1.hkt.zst", tmp);
  snprintf(again, sizeof again, "%s/told-2.hkt.zst", tmp);
  char env_trace[800], env_pre[800];
  snprintf(env_trace, sizeof env_trace, "HAKMEM_TRACE=%s", out);
  snprintf(env_pre, sizeof env_pre, "LD_PRELOAD=%s", libso);
  /* a 1 MiB spool: small frames, many written before the kill */
  const char *env[] = { env_trace, env_pre, "HAKMEM_TRACE_SPOOL_MB=1", NULL };
  char *argv[] = { exe, "k", "150000", NULL };
  int st = run(argv, env, 0);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  char *err = run_err();
  long m0 = -1, m1 = -1;
  assert_int_equal(sscanf(strstr(err, "made "), "made %ld %ld", &m0, &m1), 2);
  free(err);
  assert_non_null(realpath(spool, real));
  struct stat sb;
  assert_int_equal(stat(real, &sb), 0);
  copy_file(real, keep_spool, (uint64_t)sb.st_size);
  assert_int_equal(stat(out, &sb), 0);
  copy_file(out, keep_trace, (uint64_t)sb.st_size);

  char *rec1[] = { hakmem_bin, "recover", spool, "-o", first, NULL };
  st = run(rec1, NULL, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  trace t1;
  load(first, &t1, NULL);
  assert_true(t1.complete);

  /* the kept spool's written_events: the events of the kept trace's whole frames */
  trace t0;
  load(keep_trace, &t0, NULL);
  uint64_t told = t0.n;
  free(t0.ev);
  if (!(told > 0 && told < t1.n)) fail_msg("written before the kill %llu of %zu events", (unsigned long long)told, t1.n);   /* frames were written, more were to come */
  copy_file(first, out, one_frame_past(first, told));   /* the frame nobody was told of */
  char *rec2[] = { hakmem_bin, "recover", keep_spool, "-o", again, NULL };
  st = run(rec2, NULL, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st)) fprintf(stderr, "recover: %s", run_err());
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  trace t2;
  load(again, &t2, NULL);
  assert_true(t2.complete);
  if (t2.n != t1.n) fail_msg("recovered %zu events, %zu the first time", t2.n, t1.n);
  for (size_t i = 0; i < t1.n; i++)
    if (t1.ev[i].kind != t2.ev[i].kind || t1.ev[i].ptr != t2.ev[i].ptr || t1.ev[i].tid != t2.ev[i].tid)
      fail_msg("event %zu differs", i);
  assert_true(calls_of(&t2, 0) >= m0 && calls_of(&t2, 1) >= m1);
  free(t1.ev);
  free(t2.ev);
}

/* ---- 3b. a crash in one thread while another allocates: that thread stops
 * at its next call once the crash handler began, so every call it counted
 * as returned (in a shared file, after each return) is in the trace, and
 * none returns after the end. ---- */

static const char halt_src[] =
  "#include <fcntl.h>\n#include <pthread.h>\n#include <stdatomic.h>\n#include <stdlib.h>\n"
  "#include <sys/mman.h>\n#include <unistd.h>\n"
  "static _Atomic long *count;\n"
  "static void *work(void *arg) {\n"
  "  void *keep[32] = {0};\n"
  "  for (long j = 0;; j++) {\n"
  "    int k = j % 32;\n"
  "    if (keep[k]) { free(keep[k]); atomic_fetch_add(count, 1); }\n"
  "    keep[k] = malloc(2 + 8 * (j % 100)); atomic_fetch_add(count, 1);\n"
  "  }\n"
  "  return arg;\n"
  "}\n"
  "int main(int argc, char **argv) {\n"
  "  int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);\n"
  "  if (fd < 0 || ftruncate(fd, 4096)) return 90;\n"
  "  count = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);\n"
  "  if (count == MAP_FAILED) return 91;\n"
  "  pthread_t th;\n"
  "  pthread_create(&th, 0, work, 0);\n"
  "  long at = atol(argv[3]);\n"
  "  while (atomic_load(count) < at) {}\n"
  "  if (argv[1][0] == 's') *(volatile int *)16 = 1;\n"
  "  abort();\n"
  "}\n";

static void halt_case(char mode, int sig, int use_record) {
  char exe[700], out[700], cnt[700], at[32], m[2] = { mode, 0 };
  snprintf(exe, sizeof exe, "%s/halt", tmp);
  snprintf(out, sizeof out, "%s/halt-%c.hkt.zst", tmp, mode);
  snprintf(cnt, sizeof cnt, "%s/halt-count", tmp);
  snprintf(at, sizeof at, "%ld", 2000 + (long)(random() % 100000));
  int st;
  if (use_record) {
    char *argv[] = { hakmem_bin, "record", "-o", out, "--", exe, m, cnt, at, NULL };
    st = run(argv, NULL, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 128 + sig);
  } else {
    char env_trace[800], env_pre[800];
    snprintf(env_trace, sizeof env_trace, "HAKMEM_TRACE=%s", out);
    snprintf(env_pre, sizeof env_pre, "LD_PRELOAD=%s", libso);
    const char *env[] = { env_trace, env_pre, "HAKMEM_TRACE_ROOT=", NULL };
    char *argv[] = { exe, m, cnt, at, NULL };
    st = run(argv, env, 0);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), sig);
  }
  FILE *f = fopen(cnt, "rb");
  assert_non_null(f);
  long made = -1;
  assert_int_equal(fread(&made, sizeof made, 1, f), 1);
  fclose(f);
  assert_true(made >= atol(at));
  trace t;
  load(out, &t, NULL);
  assert_int_equal(t.rc, 0);
  assert_true(t.complete);
  const hkt_event *end = end_event(&t);
  assert_non_null(end);
  assert_int_equal(end->fn, HKT_END_SIGNAL);
  assert_int_equal(end->aux, (uint64_t)sig);
  long calls = calls_of(&t, 1);
  if (calls < made) fprintf(stderr, "mode %c: the thread counted %ld returned calls, the trace has %ld\n", mode, made, calls);
  assert_true(calls >= made);
  free(t.ev);
}

static void test_crash_halts_others(void **state) {
  (void)state;
  NEED_PRELOAD();
  build_prog("halt", halt_src);
  srandom((unsigned)getpid() * 7);
  for (int i = 0; i < 3; i++) {
    halt_case('s', SIGSEGV, i & 1);
    halt_case('a', SIGABRT, !(i & 1));
  }
}

/* ---- 3b. the solo seq's hand-over (recorder.c, SQ): a one-thread
 * program takes seqs without a lock until a second thread takes one (the
 * writer borrows the counter for a module load meanwhile); the threads it
 * starts take their first seqs while it goes on. Every event
 * must be there once, with a seq of its own, in each thread's order. ---- */

static const char solo_src[] =
  "#include <dlfcn.h>\n#include <pthread.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
  "#define N 20000\n"
  "static void *work(void *a) {\n"
  "  for (long j = 0; j < N; j++) { void *volatile p = malloc(1000 + (long)a); free(p); }\n"
  "  return 0;\n"
  "}\n"
  "int main(void) {\n"
  "  for (long j = 0; j < N; j++) {\n"   /* solo; the writer borrows the seqs of a module load */
  "    void *volatile p = malloc(2000); free(p);\n"
  "    if (j == N / 4 && !dlopen(\"libz.so.1\", RTLD_NOW)) return 3;\n"
  "    if (j == N / 4) usleep(50000);\n"   /* the writer looks every 2 ms at most */
  "  }\n"
  "  pthread_t th[2];\n"
  "  for (long t = 0; t < 2; t++) pthread_create(&th[t], 0, work, (void *)(t + 1));\n"
  "  for (long j = 0; j < N; j++) { void *volatile p = malloc(3000); free(p); }\n"   /* racing them */
  "  for (int t = 0; t < 2; t++) pthread_join(th[t], 0);\n"
  "  return 0;\n"
  "}\n";

static void test_solo_seq_handover(void **state) {
  (void)state;
  NEED_PRELOAD();
  recording rc;
  recording_prepare(&rc, "solo", solo_src);
  char *exe = rc.exe, *out = rc.out, *env_trace = rc.env_trace, *env_pre = rc.env_pre;
  const char *env[] = { env_trace, env_pre, "HAKMEM_TRACE_ROOT=", NULL };
  char *argv[] = { exe, NULL };
  for (int run_no = 0; run_no < 8; run_no++) {   /* a hand-over per run */
    unlink(out);
    int st = run(argv, env, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    trace t;
    load(out, &t, NULL);
    assert_int_equal(t.rc, 0);
    assert_true(t.complete);
    liveset live = liveset_new(1 << 16);
    long n[4] = {0}, modules = 0;   /* mallocs of 2000 (solo), 3000, 1001, 1002 */
    for (size_t i = 0; i < t.n; i++) {
      const hkt_event *e = &t.ev[i];
      assert_int_equal(e->seq, i);
      if (e->kind == HKT_EV_MALLOC && e->ptr) {
        liveset_add(&live, e->ptr, e->tid);
        int k = e->size == 2000 ? 0 : e->size == 3000 ? 1 : e->size == 1001 ? 2 : e->size == 1002 ? 3 : -1;
        if (k >= 0) n[k]++;
        if (k == 0) assert_int_equal(n[1], 0);   /* the solo phase ends before the race */
      } else if (e->kind == HKT_EV_FREE && e->ptr) {
        uint32_t by;
        assert_int_equal(liveset_del(&live, e->ptr, &by), 1);
        assert_int_equal(by, e->tid);   /* each thread frees its own, right after */
      } else if (e->kind == HKT_EV_MODULE_LOAD) {
        modules++;
      }
    }
    for (int k = 0; k < 4; k++) assert_int_equal(n[k], 20000);
    assert_true(modules >= 1);   /* libz */
    liveset_free(&live);
    free(t.ev);
  }
}

/* ---- 4. fork and exec ---- */

static const char fork_src[] =
  "#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n#include <sys/wait.h>\n"
  "int main(int argc, char **argv) {\n"
  "  for (int i = 0; i < 100; i++) { void *volatile p = malloc(100 + i); free(p); }\n"
  "  if (argc > 1 && !strcmp(argv[1], \"exec\")) return 7;\n"   /* the exec'd image */
  "  pid_t p = fork();\n"
  "  if (!p) { for (int i = 0; i < 50; i++) { void *volatile q = malloc(200); free(q); } exit(5); }\n"
  "  int st; waitpid(p, &st, 0);\n"
  "  if (!WIFEXITED(st) || WEXITSTATUS(st) != 5) return 1;\n"
  "  execl(argv[0], argv[0], \"exec\", (char *)0);\n"
  "  return 2;\n"
  "}\n";

static void test_fork_exec(void **state) {
  (void)state;
  NEED_PRELOAD();
  build_prog("forker", fork_src);
  char exe[700], out[700];
  snprintf(exe, sizeof exe, "%s/forker", tmp);
  snprintf(out, sizeof out, "%s/fork.hkt.zst", tmp);
  char *argv[] = { hakmem_bin, "record", "-o", out, "--", exe, NULL };
  int st = run(argv, NULL, 0);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 7);
  /* root (ended by exec), the forked child (exit 5, with _exit: finished by
   * `hakmem record`), the exec'd image (exit 7) */
  char cmd[1000];
  snprintf(cmd, sizeof cmd, "ls %s/fork*.hkt.zst | wc -l > %s/count", tmp, tmp);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "%s/count", tmp);
  char *count = slurp(cmd);
  assert_int_equal(atoi(count), 3);
  free(count);
  snprintf(cmd, sizeof cmd, "ls %s/fork*.spool 2>/dev/null | wc -l > %s/count", tmp, tmp);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "%s/count", tmp);
  count = slurp(cmd);
  assert_int_equal(atoi(count), 0);
  free(count);

  trace t;
  load(out, &t, NULL);
  assert_true(t.complete);
  assert_int_equal(end_event(&t)->fn, HKT_END_EXEC);
  free(t.ev);
  /* the others: FILE.<pid>.hkt.zst and FILE.<pid>.1.hkt.zst */
  snprintf(cmd, sizeof cmd, "ls %s/fork.*.hkt.zst > %s/list", tmp, tmp);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "%s/list", tmp);
  char *list = slurp(cmd), *save = NULL;
  int exits5 = 0, exits7 = 0;
  for (char *p = strtok_r(list, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
    load(p, &t, NULL);
    assert_int_equal(t.rc, 0);
    assert_true(t.complete);
    const hkt_event *end = end_event(&t);
    assert_non_null(end);
    long mallocs = 0;
    for (size_t i = 0; i < t.n; i++) mallocs += t.ev[i].kind == HKT_EV_MALLOC && t.ev[i].size == 200;
    if (end->aux == 5) { exits5++; assert_int_equal(mallocs, 50); }
    if (end->aux == 7) exits7++;
    free(t.ev);
  }
  free(list);
  assert_int_equal(exits5, 1);
  assert_int_equal(exits7, 1);
}

/* ---- 5. backtraces and module loads ---- */

static const char bt_src[] =
  "#include <dlfcn.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
  "__attribute__((noinline)) void *leaf(int n) { return malloc(n); }\n"
  "__attribute__((noinline)) void *mid(int n) { return leaf(n); }\n"
  "int main(void) {\n"
  "  for (int i = 0; i < 1000; i++) free(mid(24));\n"
  "  void *h = dlopen(\"libz.so.1\", RTLD_NOW);\n"
  "  if (!h) h = dlopen(\"libm.so.6\", RTLD_NOW);\n"   /* right before exit: the recorder's last look */
  "  for (int i = 0; i < 10; i++) { void *volatile p = malloc(5000); free(p); }\n"
  "  return h ? 0 : 1;\n"
  "}\n";

/* libzstd is not a NEEDED library of libhakmem.so: a process that does
 * not record never maps it (~80 KiB of RSS); the recorder loads it. */
static const char maps_src[] =
  "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
  "int main(void) {\n"
  "  free(malloc(10));\n"
  "  FILE *f = fopen(\"/proc/self/maps\", \"r\");\n"
  "  char line[4096]; int z = 0;\n"
  "  while (f && fgets(line, sizeof line, f)) z |= strstr(line, \"libzstd\") != NULL;\n"
  "  printf(\"zstd %d\\n\", z);\n"
  "  return 0;\n"
  "}\n";

static void test_zstd_only_when_recording(void **state) {
  (void)state;
  NEED_PRELOAD();
  recording rc;
  recording_prepare(&rc, "maps", maps_src);
  char *exe = rc.exe, *out = rc.out, *env_trace = rc.env_trace, *env_pre = rc.env_pre;
  char *argv[] = { exe, NULL };
  const char *plain[] = { env_pre, NULL };
  int st = run(argv, plain, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char *o = run_out();
  assert_string_equal(o, "zstd 0\n");
  free(o);
  const char *rec[] = { env_pre, env_trace, "HAKMEM_TRACE_ROOT=", NULL };
  st = run(argv, rec, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  o = run_out();
  assert_string_equal(o, "zstd 1\n");
  free(o);
  trace t;
  load(out, &t, NULL);
  assert_int_equal(t.rc, 0);
  assert_true(t.complete);
  free(t.ev);
}

static void test_backtrace_modules(void **state) {
  (void)state;
  NEED_PRELOAD();
  build_prog("bt", bt_src);
  char exe[700], out[700];
  snprintf(exe, sizeof exe, "%s/bt", tmp);
  snprintf(out, sizeof out, "%s/bt.hkt.zst", tmp);
  char *argv[] = { hakmem_bin, "record", "--backtrace", "8", "-o", out, "--", exe, NULL };
  int st = run(argv, NULL, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  hkt_reader *r;
  assert_int_equal(hkt_reader_open(&r, out), 0);
  hkt_event ev;
  int with_stack = 0, modules = 0;
  uint32_t first_id = 0;
  int same_id = 0;
  while (hkt_reader_next(r, &ev) > 0) {
    if (ev.kind == HKT_EV_MODULE_LOAD && ev.str && (strstr(ev.str, "libz") || strstr(ev.str, "libm"))) {
      modules++;
      assert_true(ev.ptr != 0 && ev.size != 0);
    }
    if (ev.kind == HKT_EV_MALLOC && ev.size == 24) {
      assert_int_not_equal(ev.stack_id, 0);
      const uint64_t *f;
      uint32_t n;
      assert_int_equal(hkt_reader_stack(r, ev.stack_id, &f, &n), 0);
      assert_true(n >= 3);   /* leaf, mid, main at least */
      if (!first_id) first_id = ev.stack_id;
      same_id += ev.stack_id == first_id;
      with_stack++;
    }
  }
  assert_true(hkt_reader_complete(r));
  hkt_reader_close(r);
  assert_int_equal(with_stack, 1000);
  assert_true(same_id >= 999);   /* deduplicated: one stack for one call path */
  assert_int_equal(modules, 1);
}

/* ---- 6. a full disk: reported once, the program goes on ---- */

static const char disk_src[] =
  "#include <stdio.h>\n#include <stdlib.h>\n"
  "int main(void) {\n"
  "  unsigned long x = 1;\n"
  "  for (long i = 0; i < 3000000; i++) { x = x * 6364136223846793005ul + 1; void *volatile p = malloc(1 + (x >> 40) % 4000); free(p); }\n"
  "  puts(\"finished\");\n"
  "  return 0;\n"
  "}\n";

static void test_full_disk(void **state) {
  (void)state;
  NEED_PRELOAD();
  recording rc;
  recording_prepare(&rc, "disk", disk_src);
  char *exe = rc.exe, *out = rc.out, *env_trace = rc.env_trace, *env_pre = rc.env_pre;
  const char *env[] = { env_trace, env_pre, "HAKMEM_TRACE_SPOOL_MB=2", "HAKMEM_TRACE_ROOT=", NULL };
  char *argv[] = { exe, NULL };
  int st = run(argv, env, 3 << 20);   /* files stop growing at 3 MiB */
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char *o = run_out(), *e = run_err();
  assert_non_null(strstr(o, "finished"));
  char *first = strstr(e, "hakmem: trace");
  assert_non_null(first);
  assert_null(strstr(first + 1, "hakmem: trace"));   /* once */
  free(o);
  free(e);
  trace t;
  load(out, &t, NULL);   /* what was written reads */
  assert_false(t.complete);
  free(t.ev);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_own_calls),
    cmocka_unit_test(test_threads),
    cmocka_unit_test(test_first_call_large),
    cmocka_unit_test(test_queue_handoff),
    cmocka_unit_test(test_crashes),
    cmocka_unit_test(test_recover_frame_not_told),
    cmocka_unit_test(test_crash_halts_others),
    cmocka_unit_test(test_solo_seq_handover),
    cmocka_unit_test(test_fork_exec),
    cmocka_unit_test(test_zstd_only_when_recording),
    cmocka_unit_test(test_backtrace_modules),
    cmocka_unit_test(test_full_disk),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
