/* test_analyze.c — `hakmem analyze` on traces synthesized with the writer,
 * with exact expected numbers for each section; golden text and JSON
 * reports; the stale-pointer correlation of a fault-injection-like trace;
 * cut and unreadable traces; the timeline and ghost bounds on long traces;
 * valid JSON, trace-event JSON and HTML (rendered by headless Chromium when
 * installed); and a real program's leaks, exact by function and line, when
 * `hakmem record` is built. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem/trace.h"
#include "../analyze/analyze.h"

static char tmpdir[64];
static char repo[1024];           /* the repo root: the cwd at start */
static const char *build;

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define SSA 0x200000000000ull
#define SSB 0x200000100000ull
#define SSC 0x200000200000ull
#define LARGE 0x200000400000ull

static hkt_header hdr = {
  .version = HKT_FORMAT_VERSION, .pid = 4242, .ppid = 1, .start_realtime_ns = 1700000000000000000ull,
  .clock = "monotonic", .cmdline = "./basic --n 3", .config = "HAKMEM_DEBUG=1\n",
  .arena_base = 0x200000000000ull, .num_classes = 8,
  .class_size = {8, 16, 32, 64, 128, 256, 512, 1024},
};

/* ---- building traces ---------------------------------------------------- */

typedef struct tb { hkt_writer *w; uint64_t seq, t; } tb;

static void tb_open_hdr(tb *b, const char *path, const hkt_header *h) {
  b->seq = 0;
  b->t = 0;
  assert_int_equal(hkt_writer_open(&b->w, path, h), 0);
}
static void tb_open(tb *b, const char *path) { tb_open_hdr(b, path, &hdr); }

static void tb_put(tb *b, hkt_event e) {
  e.seq = b->seq++;
  b->t += 1000;
  e.time_ns = b->t;
  if (!e.cls && e.kind != HKT_EV_SS_REGISTER && e.kind != HKT_EV_SS_UNREGISTER && !e.ptr) e.cls = HKT_NO_CLASS;
  assert_int_equal(hkt_writer_put(b->w, &e), 0);
}
#define EV(b, ...) tb_put(b, (hkt_event){__VA_ARGS__})

static void tb_close(tb *b, int complete) { assert_int_equal(hkt_writer_close(b->w, complete), 0); }

/* The basic trace: two threads, two SuperSlabs, cross-thread frees, a
 * realloc, a large block, two leaks; no problem. Numbers in test_basic. */
static void write_basic(const char *path, int flush_every) {
  tb b;
  tb_open(&b, path);
  EV(&b, .kind = HKT_EV_THREAD_START, .tid = 0, .aux = 1000, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_SS_REGISTER, .tid = 0, .ptr = SSA, .size = MiB, .cls = 2, .aux = 0, .aux2 = 1);
  EV(&b, .kind = HKT_EV_CACHE_REFILL, .tid = 0, .cls = 2, .size = 16, .aux = SSA);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSA + 0x40, .size = 30, .cls = 2, .caller = 0x401100);
  if (flush_every) hkt_writer_flush(b.w);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSA + 0x60, .size = 32, .cls = 2, .caller = 0x401100);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSA + 0x80, .size = 20, .cls = 2, .caller = 0x401200);
  EV(&b, .kind = HKT_EV_THREAD_START, .tid = 1, .aux = 1001, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_SS_REGISTER, .tid = 1, .ptr = SSB, .size = MiB, .cls = 4, .aux = 1, .aux2 = 2);
  if (flush_every) hkt_writer_flush(b.w);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 1, .ptr = SSB + 0x100, .size = 100, .cls = 4, .caller = 0x401300);
  EV(&b, .kind = HKT_EV_CALLOC, .tid = 1, .ptr = SSB + 0x180, .size = 10, .aux = 12, .cls = 4, .caller = 0x401300);
  EV(&b, .kind = HKT_EV_FREE, .tid = 1, .ptr = SSA + 0x40, .cls = 2, .caller = 0x401400);
  EV(&b, .kind = HKT_EV_REMOTE_PUSH, .tid = 1, .ptr = SSA + 0x40, .aux = SSA, .aux2 = 0, .cls = 2);
  if (flush_every) hkt_writer_flush(b.w);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = SSB + 0x100, .cls = 4, .caller = 0x401410);
  EV(&b, .kind = HKT_EV_REMOTE_PUSH, .tid = 0, .ptr = SSB + 0x100, .aux = SSB, .aux2 = 1, .cls = 4);
  EV(&b, .kind = HKT_EV_REMOTE_DRAIN, .tid = 0, .aux = SSA, .size = 1, .cls = 2);
  EV(&b, .kind = HKT_EV_LARGE_MAP, .tid = 0, .ptr = LARGE, .size = 102400, .cls = HKT_NO_CLASS);
  if (flush_every) hkt_writer_flush(b.w);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = LARGE, .size = 100000, .cls = HKT_NO_CLASS, .caller = 0x401500);
  EV(&b, .kind = HKT_EV_REALLOC, .tid = 0, .ptr = SSA + 0x40, .aux = SSA + 0x60, .size = 28, .cls = 2,
     .fn = HKT_FN_REALLOC, .caller = 0x401600);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = LARGE, .cls = HKT_NO_CLASS, .caller = 0x401420);
  EV(&b, .kind = HKT_EV_LARGE_UNMAP, .tid = 0, .ptr = LARGE, .size = 102400, .cls = HKT_NO_CLASS);
  if (flush_every) hkt_writer_flush(b.w);
  EV(&b, .kind = HKT_EV_MARK, .tid = 0, .str = "phase 2", .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_FREE, .tid = 1, .ptr = SSB + 0x180, .cls = 4, .caller = 0x401430);
  EV(&b, .kind = HKT_EV_CACHE_FLUSH, .tid = 1, .cls = 4, .size = 1);
  EV(&b, .kind = HKT_EV_SS_UNREGISTER, .tid = 1, .ptr = SSB, .size = MiB, .cls = 4, .aux = 1, .aux2 = 2);
  EV(&b, .kind = HKT_EV_THREAD_EXIT, .tid = 1, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_END, .tid = 0, .fn = HKT_END_EXIT, .aux = 0, .cls = HKT_NO_CLASS);
  tb_close(&b, 1);
}

/* The stale trace: thread 1 releases SuperSlab #7 while thread 0's cache
 * still holds two of its blocks (what HAKMEM_INJECT's early release does);
 * thread 0 gets one back, frees it (a stale free, detected), then an
 * invalid free and a double free. */
static void write_stale(const char *path) {
  tb b;
  tb_open(&b, path);
  EV(&b, .kind = HKT_EV_THREAD_START, .tid = 0, .aux = 2000, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_THREAD_START, .tid = 1, .aux = 2001, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_SS_REGISTER, .tid = 1, .ptr = SSC, .size = MiB, .cls = 3, .aux = 1, .aux2 = 7);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSC + 0x100, .size = 64, .cls = 3, .caller = 0x402000);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSC + 0x140, .size = 64, .cls = 3, .caller = 0x402000);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 1, .ptr = SSC + 0x180, .size = 50, .cls = 3, .caller = 0x402100);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = SSC + 0x100, .cls = 3, .caller = 0x402200);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = SSC + 0x140, .cls = 3, .caller = 0x402200);
  EV(&b, .kind = HKT_EV_FREE, .tid = 1, .ptr = SSC + 0x180, .cls = 3, .caller = 0x402300);
  EV(&b, .kind = HKT_EV_CACHE_FLUSH, .tid = 1, .cls = 3, .size = 1);
  EV(&b, .kind = HKT_EV_SS_UNREGISTER, .tid = 1, .ptr = SSC, .size = MiB, .cls = 3, .aux = 1, .aux2 = 7, .aux3 = 2);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSC + 0x140, .size = 60, .cls = 3, .caller = 0x402400);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = SSC + 0x140, .cls = 3, .caller = 0x402500);
  EV(&b, .kind = HKT_EV_DETECTION, .tid = 0, .fn = HKT_DET_STALE_FREE, .ptr = SSC + 0x140, .aux = SSC, .cls = 3);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = 0x300000000000ull, .cls = HKT_NO_CLASS, .caller = 0x402600);
  EV(&b, .kind = HKT_EV_DETECTION, .tid = 0, .fn = HKT_DET_INVALID_FREE, .ptr = 0x300000000000ull, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 1, .ptr = 0x500000000010ull, .size = 8, .cls = 0, .caller = 0x402700);
  EV(&b, .kind = HKT_EV_FREE, .tid = 1, .ptr = 0x500000000010ull, .cls = 0, .caller = 0x402800);
  EV(&b, .kind = HKT_EV_FREE, .tid = 1, .ptr = 0x500000000010ull, .cls = 0, .caller = 0x402900);
  EV(&b, .kind = HKT_EV_DETECTION, .tid = 1, .fn = HKT_DET_DOUBLE_FREE, .ptr = 0x500000000010ull, .cls = 0);
  EV(&b, .kind = HKT_EV_END, .tid = 0, .fn = HKT_END_SIGNAL, .aux = 6, .cls = HKT_NO_CLASS);
  tb_close(&b, 1);
}

/* ---- running the analysis ----------------------------------------------- */

/* In process, the way cmd_analyze does it; returns the last reader rc. */
static int analyze_into(const char *path, hka_state *s) {
  hkt_reader *r;
  assert_int_equal(hkt_reader_open(&r, path), 0);
  assert_int_equal(hka_init(s, path, hkt_reader_header(r)), 0);
  assert_int_equal(hka_inherit(s), 0);
  int err, rc = hka_pass(s, r, 0, &err);
  assert_int_equal(err, 0);
  assert_int_equal(hka_finish(s, r, rc), 0);
  hkt_reader_close(r);
  return rc;
}

/* Run cmd_analyze in a child (it writes to stdout, may exit); returns its
 * exit status, stderr to errfile. */
static int run_analyze(const char *errfile, int argc, const char **argv) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    if (errfile && !freopen(errfile, "w", stderr)) _exit(99);
    char *av[16];
    for (int i = 0; i < argc; i++) av[i] = (char *)argv[i];
    av[argc] = NULL;
    int rc = cmd_analyze(argc, av);
    fflush(NULL);
    _exit(rc);
  }
  int st;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  fflush(NULL);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = 0;
  fclose(f);
  if (len) *len = got;
  return buf;
}

static const char *tmp(const char *name) {
  static char bufs[8][PATH_MAX];
  static int k;
  char *b = bufs[k++ & 7];
  snprintf(b, PATH_MAX, "%s/%s", tmpdir, name);
  return b;
}

/* ---- the tests ---------------------------------------------------------- */

static void test_basic(void **state) {
  (void)state;
  write_basic(tmp("basic.hkt.zst"), 0);
  hka_state s;
  assert_int_equal(analyze_into(tmp("basic.hkt.zst"), &s), 0);
  assert_true(s.complete);
  assert_int_equal(s.events, 26);
  assert_true(s.end_seen);
  assert_int_equal(s.end_how, HKT_END_EXIT);
  assert_int_equal(s.by_kind[HKT_EV_MALLOC], 5);
  assert_int_equal(s.by_kind[HKT_EV_FREE], 4);
  /* summary */
  assert_int_equal(s.allocs, 7);
  assert_int_equal(s.frees, 5);
  assert_int_equal(s.alloc_bytes, 100330);
  assert_int_equal(s.free_bytes, 100282);
  assert_int_equal(s.live_blocks, 2);
  assert_int_equal(s.live_bytes, 48);
  assert_int_equal(s.peak_bytes, 100172);
  assert_int_equal(s.peak_bytes_seq, 16);
  assert_int_equal(s.peak_bytes_blocks, 4);
  assert_int_equal(s.peak_blocks, 5);
  assert_int_equal(s.peak_blocks_seq, 9);
  assert_int_equal(s.nthreads, 2);
  assert_int_equal(s.threads[1].os_tid, 1001);
  assert_int_equal(s.threads[1].exit_seq, 24);
  assert_int_equal(s.large_peak_mapped, 102400);
  /* classes */
  assert_int_equal(s.cls[2].allocs, 4);
  assert_int_equal(s.cls[2].frees, 2);
  assert_int_equal(s.cls[2].bytes, 110);
  assert_int_equal(s.cls[2].peak_live, 3);
  assert_int_equal(s.cls[2].live, 2);
  assert_int_equal(s.cls[2].refill_blocks, 16);
  assert_int_equal(s.cls[4].allocs, 2);
  assert_int_equal(s.cls[4].bytes, 220);
  assert_int_equal(s.cls[4].live, 0);
  assert_int_equal(s.cls[4].flushes, 1);
  assert_int_equal(s.cls[HKA_LARGE].allocs, 1);
  assert_int_equal(s.cls[HKA_LARGE].frees, 1);
  /* SuperSlabs */
  assert_int_equal(s.nss, 2);
  assert_int_equal(s.ss[0].id, 1);
  assert_int_equal(s.ss[0].reg_seq, 1);
  assert_int_equal(s.ss[0].unreg_seq, HKA_NONE);
  assert_int_equal(s.ss[0].peak_live, 3);
  assert_int_equal(s.ss[0].peak_seq, 5);
  assert_int_equal(s.ss[0].live, 2);
  assert_int_equal(s.ss[0].remote_pushes, 1);
  assert_int_equal(s.ss[0].drains, 1);
  assert_int_equal(s.ss[1].id, 2);
  assert_int_equal(s.ss[1].reg_tid, 1);
  assert_int_equal(s.ss[1].unreg_seq, 23);
  assert_int_equal(s.ss[1].unreg_tid, 1);
  assert_int_equal(s.ss[1].peak_live, 2);
  assert_int_equal(s.ss[1].live_at_unreg, 0);
  assert_int_equal(s.ss[1].nholders, 0);
  assert_int_equal(s.ss_peak, 2);
  assert_int_equal(s.ss_live, 1);
  /* no problems */
  assert_int_equal(s.ncorr, 0);
  /* leaks */
  assert_int_equal(s.leak_blocks, 2);
  assert_int_equal(s.leak_bytes, 48);
  assert_int_equal(s.nleaks, 2);
  assert_int_equal(s.leaks[0].caller, 0x401600);
  assert_int_equal(s.leaks[0].bytes, 28);
  assert_int_equal(s.leaks[1].caller, 0x401200);
  assert_int_equal(s.leaks[1].bytes, 20);
  /* cross-thread */
  assert_int_equal(s.same_thread_frees, 3);
  assert_int_equal(s.cross_thread_frees, 2);
  uint64_t *v = hka_map_find(&s.xthread, 0ull << 32 | 1);
  assert_non_null(v);
  assert_int_equal(*v, 1);
  v = hka_map_find(&s.xthread, 1ull << 32 | 0);
  assert_non_null(v);
  assert_int_equal(*v, 1);
  /* timeline: one bucket per event while short */
  assert_int_equal(s.tl.n, 26);
  assert_int_equal(s.tl.width, 1);
  assert_int_equal(s.tl.b[16].live_bytes, 100172);
  assert_int_equal(s.tl.b[25].live_bytes, 48);
  assert_int_equal(s.tl.b[8].ss_live[4], 1);
  assert_int_equal(s.tl.b[23].ss_live[4], 0);
  hka_free(&s);
}

static void test_stale_correlation(void **state) {
  (void)state;
  write_stale(tmp("stale.hkt.zst"));
  hka_state s;
  assert_int_equal(analyze_into(tmp("stale.hkt.zst"), &s), 0);
  assert_int_equal(s.end_how, HKT_END_SIGNAL);
  assert_int_equal(s.end_code, 6);
  assert_int_equal(s.ncorr, 4);

  /* the release: thread 1, with thread 0's cache holding 2 blocks */
  hka_ss *ss = &s.ss[0];
  assert_int_equal(ss->id, 7);
  assert_int_equal(ss->unreg_seq, 10);
  assert_int_equal(ss->unreg_tid, 1);
  assert_int_equal(ss->reported_live, 2);
  assert_int_equal(ss->live_at_unreg, 0);
  assert_int_equal(ss->nholders, 1);
  assert_int_equal(ss->holders[0].tid, 0);
  assert_int_equal(ss->holders[0].kind, HKA_HOLD_CACHE);
  assert_int_equal(ss->holders[0].blocks, 2);
  assert_int_equal(ss->held_unattributed, 0);

  /* the stale block handed out again from thread 0's cache */
  hka_corr *c = &s.corr[0];
  assert_string_equal(c->kind, "alloc_unregistered");
  assert_int_equal(c->seq, 11);
  assert_int_equal(c->ss, 1);
  assert_false(c->ss_registered);
  assert_true(c->have_block);
  assert_int_equal(c->block.state, HKA_B_FREED);
  assert_int_equal(c->block.free_tid, 0);
  assert_int_equal(c->block.free_seq, 7);

  /* the detected stale free, merged with its FREE event */
  c = &s.corr[1];
  assert_string_equal(c->kind, "stale_free");
  assert_int_equal(c->detect, HKT_DET_STALE_FREE);
  assert_int_equal(c->seq, 13);
  assert_int_equal(c->free_seq, 12);
  assert_int_equal(c->tid, 0);
  assert_int_equal(c->ptr, SSC + 0x140);
  assert_int_equal(c->caller, 0x402500);
  assert_int_equal(c->block.alloc_seq, 11);
  assert_int_equal(c->block.alloc_tid, 0);
  assert_int_equal(c->block.alloc_caller, 0x402400);
  assert_int_equal(c->block.state, HKA_B_LIVE);
  assert_int_equal(c->block.free_seq, 7);       /* the free before: thread 0's cache held it */
  assert_int_equal(c->block.free_tid, 0);
  assert_int_equal(c->block.free_caller, 0x402200);
  assert_int_equal(c->ss, 1);
  assert_int_equal(s.ss[c->ss - 1].unreg_tid, 1);

  c = &s.corr[2];
  assert_string_equal(c->kind, "invalid_free");
  assert_int_equal(c->seq, 15);
  assert_int_equal(c->free_seq, 14);
  assert_false(c->have_block);
  assert_int_equal(c->ss, 0);

  c = &s.corr[3];
  assert_string_equal(c->kind, "double_free");
  assert_int_equal(c->detect, HKT_DET_DOUBLE_FREE);
  assert_int_equal(c->seq, 19);
  assert_int_equal(c->free_seq, 18);
  assert_int_equal(c->block.free_seq, 17);
  assert_int_equal(c->block.free_caller, 0x402800);
  assert_int_equal(s.detect_counts[HKT_DET_DOUBLE_FREE], 1);
  assert_int_equal(s.live_blocks, 0);
  hka_free(&s);

  /* the text report puts the correlation first and names the threads */
  const char *av[] = {"analyze", tmp("stale.hkt.zst"), "-o", tmp("stale.txt")};
  assert_int_equal(run_analyze(NULL, 4, av), 0);
  char *txt = slurp(tmp("stale.txt"), NULL);
  assert_non_null(txt);
  char *corr = strstr(txt, "Stale-pointer correlation"), *sum = strstr(txt, "== Summary");
  assert_non_null(corr);
  assert_non_null(sum);
  assert_true(corr < sum);
  assert_non_null(strstr(txt, "#2 stale_free (detected by hakmem) at seq 13"));
  assert_non_null(strstr(txt, "unregistered  seq 10         thread 1"));
  assert_non_null(strstr(txt, "held by: thread 0 cache 2"));
  assert_non_null(strstr(txt, "freed at seq 7 by thread 0 (whose cache held it)"));
  free(txt);
}

static int py_ok(const char *script, const char *file) {
  return sh("python3 -c '%s' '%s' >>'%s' 2>&1", script, file, tmp("py.log"));
}

static const char PY_JSON[] =
    "import json,sys\n"
    "d=json.load(open(sys.argv[1]))\n"
    "for k in (\"summary\",\"classes\",\"superslabs\",\"detections\",\"leaks\",\"cross_thread\",\"timeline\"): assert k in d, k\n"
    "for x in d[\"detections\"]:\n"
    "  for k in (\"seq\",\"kind\",\"ptr\",\"thread\",\"block\",\"superslab\"): assert k in x, k\n"
    "for l in d[\"leaks\"]:\n"
    "  for k in (\"function\",\"file\",\"line\",\"module\"): assert k in l[\"callsite\"], k\n"
    "  assert l[\"blocks\"]>0 and l[\"bytes\"]>0\n";

static const char PY_PERFETTO[] =
    "import json,sys\n"
    "d=json.load(open(sys.argv[1]))\n"
    "ev=d[\"traceEvents\"]; assert isinstance(ev,list) and ev\n"
    "ph=set()\n"
    "for e in ev:\n"
    "  assert e[\"ph\"] in \"XCiM\", e; assert isinstance(e[\"pid\"],int); ph.add(e[\"ph\"])\n"
    "  if e[\"ph\"]!=\"M\": assert isinstance(e[\"ts\"],(int,float)) and e[\"ts\"]>=0\n"
    "  if e[\"ph\"]==\"X\": assert e[\"dur\"]>=0 and \"tid\" in e\n"
    "  if e[\"ph\"]==\"C\": assert all(isinstance(v,(int,float)) for v in e[\"args\"].values())\n"
    "  if e[\"ph\"]==\"i\": assert e[\"s\"] in \"gpt\"\n"
    "assert {\"X\",\"C\",\"i\"} <= ph, ph\n";

static const char PY_HTML[] =
    "import sys\n"
    "from html.parser import HTMLParser\n"
    "void={\"meta\",\"br\",\"img\",\"hr\",\"link\",\"input\"}\n"
    "class P(HTMLParser):\n"
    "  def __init__(s): super().__init__(); s.st=[]; s.svg=0\n"
    "  def handle_starttag(s,t,a):\n"
    "    if t==\"svg\": s.svg+=1\n"
    "    assert t not in (\"script\",\"link\",\"img\",\"iframe\"), t\n"
    "    for k,v in a: assert not (k in (\"src\",\"href\") and v and \"://\" in v), v\n"
    "    if t not in void: s.st.append(t)\n"
    "  def handle_startendtag(s,t,a): pass\n"
    "  def handle_endtag(s,t):\n"
    "    assert s.st and s.st[-1]==t, (t, s.st[-3:]); s.st.pop()\n"
    "p=P(); p.feed(open(sys.argv[1]).read()); p.close()\n"
    "assert not p.st, p.st\n"
    "assert p.svg>=2, p.svg\n";

static void test_formats(void **state) {
  (void)state;
  write_stale(tmp("fmt.hkt.zst"));
  const char *fmts[] = {"json", "perfetto", "html", "text"};
  const char *outs[] = {"fmt.json", "fmt.perfetto.json", "fmt.html", "fmt.txt"};
  for (int i = 0; i < 4; i++) {
    const char *av[] = {"analyze", tmp("fmt.hkt.zst"), "--format", fmts[i], "-o", tmp(outs[i])};
    assert_int_equal(run_analyze(NULL, 6, av), 0);
  }
  assert_int_equal(py_ok(PY_JSON, tmp("fmt.json")), 0);
  assert_int_equal(py_ok(PY_PERFETTO, tmp("fmt.perfetto.json")), 0);
  assert_int_equal(py_ok(PY_HTML, tmp("fmt.html")), 0);
  if (access("/usr/bin/xmllint", X_OK) == 0)
    assert_int_equal(sh("xmllint --noout '%s' 2>>'%s'", tmp("fmt.html"), tmp("py.log")), 0);
  /* the JSON detection carries both histories */
  assert_int_equal(py_ok("import json,sys\n"
                         "d=json.load(open(sys.argv[1]))\n"
                         "x=[e for e in d[\"detections\"] if e[\"kind\"]==\"stale_free\"][0]\n"
                         "assert x[\"seq\"]==13 and x[\"thread\"]==0, x\n"
                         "assert x[\"block\"][\"allocated\"][\"seq\"]==11, x\n"
                         "p=x[\"block\"][\"previously_freed\"]; assert (p[\"seq\"],p[\"thread\"])==(7,0), x\n"
                         "ss=x[\"superslab\"]; assert ss[\"id\"]==7 and ss[\"unregistered\"][\"thread\"]==1, ss\n"
                         "assert ss[\"held_by\"]==[dict(thread=0,kind=\"cache\",blocks=2)], ss\n"
                         "assert d[\"summary\"][\"end\"][\"how\"]==\"signal\"\n",
                         tmp("fmt.json")), 0);
  /* every line of the text fits the default width */
  char *txt = slurp(tmp("fmt.txt"), NULL);
  for (char *p = txt, *nl; *p; p = nl + 1) {
    nl = strchr(p, '\n');
    if (!nl) break;
    assert_true(nl - p <= 100);
  }
  free(txt);
}

/* PNG decoding in Python (zlib + unfiltering), then: enough pixels that are
 * not the background and more than a few colours. */
static const char PY_PNG[] =
    "import sys,zlib,struct\n"
    "d=open(sys.argv[1],\"rb\").read(); assert d[:8]==b\"\\x89PNG\\r\\n\\x1a\\n\"\n"
    "p=8; idat=b\"\"\n"
    "while p<len(d):\n"
    "  n,=struct.unpack(\">I\",d[p:p+4]); t=d[p+4:p+8]; c=d[p+8:p+8+n]; p+=12+n\n"
    "  if t==b\"IHDR\": w,h,bd,ct=struct.unpack(\">IIBB\",c[:10])\n"
    "  elif t==b\"IDAT\": idat+=c\n"
    "raw=zlib.decompress(idat); bpp={2:3,6:4}[ct]; st=w*bpp; prev=bytearray(st); i=0\n"
    "cols={}; \n"
    "for y in range(h):\n"
    "  f=raw[i]; i+=1; ln=bytearray(raw[i:i+st]); i+=st\n"
    "  if f==1:\n"
    "    for x in range(bpp,st): ln[x]=(ln[x]+ln[x-bpp])&255\n"
    "  elif f==2:\n"
    "    for x in range(st): ln[x]=(ln[x]+prev[x])&255\n"
    "  elif f==3:\n"
    "    for x in range(st): ln[x]=(ln[x]+(((ln[x-bpp] if x>=bpp else 0)+prev[x])>>1))&255\n"
    "  elif f==4:\n"
    "    for x in range(st):\n"
    "      a=ln[x-bpp] if x>=bpp else 0; b=prev[x]; c=prev[x-bpp] if x>=bpp else 0\n"
    "      q=a+b-c; pa=abs(q-a); pb=abs(q-b); pc=abs(q-c)\n"
    "      ln[x]=(ln[x]+(a if pa<=pb and pa<=pc else (b if pb<=pc else c)))&255\n"
    "  for x in range(0,st,bpp*2):\n"
    "    k=bytes(ln[x:x+3]); cols[k]=cols.get(k,0)+1\n"
    "  prev=ln\n"
    "tot=sum(cols.values()); bg=max(cols.values())\n"
    "print(\"colours\",len(cols),\"non-background\",tot-bg,\"of\",tot)\n"
    "assert len(cols)>=5 and (tot-bg)>tot//200, cols\n";

static void test_html_renders(void **state) {
  (void)state;
  if (access("/usr/bin/chromium", X_OK) != 0) { skip(); return; }
  write_stale(tmp("render.hkt.zst"));
  const char *av[] = {"analyze", tmp("render.hkt.zst"), "--format", "html", "-o", tmp("render.html")};
  assert_int_equal(run_analyze(NULL, 6, av), 0);
  char prof[PATH_MAX];
  snprintf(prof, sizeof prof, "%s/chromium-profile", tmpdir);
  int rc = sh("timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
              "--disable-background-networking --disable-component-update --disable-sync "
              "--user-data-dir='%s' --screenshot='%s' --window-size=1200,900 'file://%s' >'%s' 2>&1",
              prof, tmp("x.png"), tmp("render.html"), tmp("chromium.log"));
  struct stat st;
  if (rc != 0 || stat(tmp("x.png"), &st) != 0) {
    sh("tail -5 '%s'", tmp("chromium.log"));
    fail_msg("chromium did not take the screenshot (exit %d)", rc);
  }
  assert_int_equal(sh("python3 -c '%s' '%s'", PY_PNG, tmp("x.png")), 0);
}

/* Golden reports of the basic and the stale trace, text and JSON. */
static void golden_one(const char *name, void (*write)(const char *)) {
  char trace[64], out[64], golden[PATH_MAX];
  snprintf(trace, sizeof trace, "%s.hkt.zst", name);
  write(tmp(trace));
  const char *fmts[] = {"text", "json"}, *ext[] = {"txt", "json"};
  char cwd[PATH_MAX];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(tmpdir), 0);         /* the report names the file as given */
  for (int i = 0; i < 2; i++) {
    snprintf(out, sizeof out, "%s.%s", name, ext[i]);
    const char *av[] = {"analyze", trace, "--format", fmts[i], "-o", out};
    assert_int_equal(run_analyze(NULL, 6, av), 0);
  }
  assert_int_equal(chdir(cwd), 0);
  for (int i = 0; i < 2; i++) {
    snprintf(out, sizeof out, "%s.%s", name, ext[i]);
    snprintf(golden, sizeof golden, "%s/tests/golden/analyze_%s.%s", repo, name, ext[i]);
    if (getenv("HAKMEM_UPDATE_GOLDEN")) {
      assert_int_equal(sh("cp '%s' '%s'", tmp(out), golden), 0);
      continue;
    }
    int rc = sh("diff -u '%s' '%s' > '%s'", golden, tmp(out), tmp("golden.diff"));
    if (rc) {
      sh("head -40 '%s'", tmp("golden.diff"));
      fail_msg("%s differs from the golden report (HAKMEM_UPDATE_GOLDEN=1 to regenerate)", golden);
    }
  }
}
static void write_basic_plain(const char *p) { write_basic(p, 0); }
static void test_golden(void **state) {
  (void)state;
  golden_one("basic", write_basic_plain);
  golden_one("stale", write_stale);
}

/* Golden reports of the example programs (examples/README.md), recorded
 * here with the environment each needs and analyzed with --stable, which
 * leaves out what changes from run to run (times, pid, thread ids, load
 * addresses, directories); the recorder fixes the arena base, so heap
 * addresses and SuperSlab bases are the same on every run. The goldens are
 * tests/golden/examples/NAME.{txt,json} (HAKMEM_UPDATE_GOLDEN=1 rewrites
 * them). They depend on the examples' code and this machine's libc (its
 * own allocations appear as leaks). */
static void golden_example(const char *name, const char *env) {
  char hakmem[PATH_MAX], prog[PATH_MAX];
  snprintf(hakmem, sizeof hakmem, "%s/%s/bin/hakmem", repo, build);
  snprintf(prog, sizeof prog, "%s/%s/examples/%s", repo, build, name);
  if (getenv("HAKMEM_TEST_SAN")) { skip(); return; }
  if (access(hakmem, X_OK) != 0 || access(prog, X_OK) != 0) {
    printf("skip: %s or %s not built\n", hakmem, prog);
    skip();
    return;
  }
  char trace[64], log[64];
  snprintf(trace, sizeof trace, "%s.hkt.zst", name);
  snprintf(log, sizeof log, "%s.record.log", name);
  unlink(tmp(trace));
  /* the programs that find their bug abort: only the trace matters */
  sh("cd '%s' && env -u HAKMEM_DEBUG -u HAKMEM_ON_ERROR -u HAKMEM_INJECT %s '%s' record -o '%s' -- '%s' >'%s' 2>&1",
     tmpdir, env, hakmem, trace, prog, log);
  if (access(tmp(trace), F_OK) != 0) {
    sh("tail -3 '%s'", tmp(log));
    fail_msg("`hakmem record` wrote no trace of %s", name);
  }
  const char *fmts[] = {"text", "json"}, *ext[] = {"txt", "json"};
  for (int i = 0; i < 2; i++) {
    char out[64], golden[PATH_MAX];
    snprintf(out, sizeof out, "%s.%s", name, ext[i]);
    /* the trace as a relative name: the report names it as given */
    assert_int_equal(sh("cd '%s' && '%s' analyze '%s' --stable --format %s -o '%s'", tmpdir, hakmem, trace,
                        fmts[i], out), 0);
    snprintf(golden, sizeof golden, "%s/tests/golden/examples/%s.%s", repo, name, ext[i]);
    if (getenv("HAKMEM_UPDATE_GOLDEN")) {
      assert_int_equal(sh("mkdir -p '%s/tests/golden/examples' && cp '%s' '%s'", repo, tmp(out), golden), 0);
      continue;
    }
    int rc = sh("diff -u '%s' '%s' > '%s'", golden, tmp(out), tmp("golden.diff"));
    if (rc) {
      sh("head -40 '%s'", tmp("golden.diff"));
      fail_msg("%s differs from the golden report (HAKMEM_UPDATE_GOLDEN=1 to regenerate)", golden);
    }
  }
}
static void test_golden_double_free(void **state) { (void)state; golden_example("double_free", "HAKMEM_DEBUG=1"); }
static void test_golden_interior_free(void **state) { (void)state; golden_example("interior_free", ""); }
static void test_golden_overflow(void **state) { (void)state; golden_example("overflow", "HAKMEM_DEBUG=2"); }
static void test_golden_leaks(void **state) { (void)state; golden_example("leaks", ""); }

static void test_truncated_and_unreadable(void **state) {
  (void)state;
  /* cut inside the last frames: the report covers what is there and says so */
  write_basic(tmp("cut.hkt.zst"), 1);
  struct stat st;
  assert_int_equal(stat(tmp("cut.hkt.zst"), &st), 0);
  assert_int_equal(truncate(tmp("cut.hkt.zst"), st.st_size - 30), 0);
  const char *av[] = {"analyze", tmp("cut.hkt.zst"), "--format", "json", "-o", tmp("cut.json")};
  assert_int_equal(run_analyze(tmp("cut.err"), 6, av), 1);
  assert_int_equal(py_ok("import json,sys\n"
                         "d=json.load(open(sys.argv[1]))\n"
                         "assert d[\"trace\"][\"truncated\"] is True, d[\"trace\"]\n"
                         "assert 0 < d[\"summary\"][\"events\"] < 26, d[\"summary\"][\"events\"]\n",
                         tmp("cut.json")), 0);
  const char *av2[] = {"analyze", tmp("cut.hkt.zst"), "-o", tmp("cut.txt")};
  assert_int_equal(run_analyze(tmp("cut.err"), 4, av2), 1);
  char *txt = slurp(tmp("cut.txt"), NULL);
  assert_non_null(strstr(txt, "!! the trace"));
  free(txt);

  /* not a trace, missing, empty: one line on stderr, exit 2, no report */
  FILE *f = fopen(tmp("junk.hkt.zst"), "w");
  fputs("this is not a trace\n", f);
  fclose(f);
  f = fopen(tmp("empty.hkt.zst"), "w");
  fclose(f);
  const char *bad[] = {tmp("junk.hkt.zst"), tmp("empty.hkt.zst"), tmp("missing.hkt.zst")};
  for (int i = 0; i < 3; i++) {
    const char *a3[] = {"analyze", bad[i], "-o", tmp("bad.txt")};
    unlink(tmp("bad.txt"));
    assert_int_equal(run_analyze(tmp("bad.err"), 4, a3), 2);
    size_t n;
    char *err = slurp(tmp("bad.err"), &n);
    assert_true(n > 0);
    assert_non_null(strstr(err, "hakmem analyze: "));
    assert_ptr_equal(strchr(err, '\n'), err + n - 1);   /* one line */
    free(err);
    assert_int_not_equal(access(tmp("bad.txt"), F_OK), 0);
  }
  /* usage errors */
  const char *u1[] = {"analyze"};
  assert_int_equal(run_analyze(tmp("bad.err"), 1, u1), 2);
  const char *u2[] = {"analyze", tmp("cut.hkt.zst"), "--format", "pdf"};
  assert_int_equal(run_analyze(tmp("bad.err"), 4, u2), 2);
  /* never over the trace itself */
  struct stat before, after;
  assert_int_equal(stat(tmp("cut.hkt.zst"), &before), 0);
  const char *u3[] = {"analyze", tmp("cut.hkt.zst"), "-o", tmp("cut.hkt.zst")};
  assert_int_equal(run_analyze(tmp("bad.err"), 4, u3), 2);
  assert_int_equal(stat(tmp("cut.hkt.zst"), &after), 0);
  assert_int_equal(before.st_size, after.st_size);
}

/* A long trace: the timeline stays within its buckets and agrees with the
 * summary; freed blocks at fresh addresses do not grow memory past the
 * ghost bound. */
static void test_long_trace_bounds(void **state) {
  (void)state;
  tb b;
  tb_open(&b, tmp("long.hkt.zst"));
  EV(&b, .kind = HKT_EV_SS_REGISTER, .tid = 0, .ptr = SSA, .size = MiB, .cls = 1, .aux2 = 1);
  const uint64_t n = 400000;
  uint64_t live = 0;
  for (uint64_t i = 0; i < n; i++) {
    /* a sliding window of 100 live blocks at ever new addresses */
    uint64_t p = 0x700000000000ull + i * 16;
    EV(&b, .kind = HKT_EV_MALLOC, .tid = (uint32_t)(i & 1), .ptr = p, .size = 16, .cls = 1, .caller = 0x401000);
    live++;
    if (i >= 100) {
      EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = p - 100 * 16, .cls = 1, .caller = 0x401010);
      live--;
    }
  }
  EV(&b, .kind = HKT_EV_END, .tid = 0, .fn = HKT_END_EXIT);
  tb_close(&b, 1);
  uint64_t events = b.seq;

  hka_state s;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(analyze_into(tmp("long.hkt.zst"), &s), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("analyzed %llu events in %.3f s: %.1f M events/s (read + analysis)\n",
         (unsigned long long)events, secs, (double)events / secs / 1e6);
  assert_int_equal(s.events, events);
  assert_int_equal(s.live_blocks, live);
  assert_int_equal(s.live_bytes, live * 16);
  assert_int_equal(s.peak_blocks, 101);
  assert_int_equal(s.leak_blocks, 100);
  assert_int_equal(s.ncorr, 0);
  /* timeline */
  assert_true(s.tl.n <= HKA_TL_MAX && s.tl.n > HKA_TL_MAX / 2);
  assert_int_equal(s.tl.width & (s.tl.width - 1), 0);
  assert_true(s.tl.width * s.tl.n >= events);
  assert_int_equal(s.tl.b[0].seq0, 0);
  assert_int_equal(s.tl.b[s.tl.n - 1].live_bytes, live * 16);
  for (uint32_t i = 1; i < s.tl.n; i++) {
    assert_int_equal(s.tl.b[i].seq0, s.tl.b[i - 1].seq0 + s.tl.width);
    assert_true(s.tl.b[i].max_live_bytes <= 101 * 16);
    assert_int_equal(s.tl.b[i].ss_live[1], 1);
  }
  /* ghosts: bounded, the oldest dropped */
  assert_true(s.blocks.ghosts <= s.blocks.ghost_cap);
  assert_true(s.blocks.ghosts_dropped > 0);
  assert_true(s.blocks.cap <= 4 * (s.blocks.ghost_cap + 1024));
  hka_free(&s);
}

/* A real program that leaks 5 x 24 bytes from leak_small and 3 x 200 from
 * leak_big, recorded with `hakmem record --backtrace`: the leaks are exact
 * by function and line, and their stacks start at the caller (hakmem's own
 * frames skipped) and go on to main. */
static const char LEAKPROG[] =
    "#include <stdlib.h>\n"
    "static void *keep[64];\n"
    "__attribute__((noinline)) void leak_small(int n) {\n"
    "  for (int i = 0; i < n; i++) keep[i] = malloc(24);  /* LINE 4 */\n"
    "}\n"
    "__attribute__((noinline)) void leak_big(int n) {\n"
    "  for (int i = 0; i < n; i++)\n"
    "    keep[32 + i] = malloc(200);  /* LINE 8 */\n"
    "}\n"
    "int main(void) {\n"
    "  leak_small(5);\n"
    "  leak_big(3);\n"
    "  void *p = malloc(10);\n"
    "  free(p);\n"
    "  return keep[0] == 0;\n"
    "}\n";

/* The hakmem command into hakmem, and the program src compiled as
 * tmpdir/name (cc flags: -g -O0 and these); 0: skip the test (under a
 * sanitizer, it would preload libhakmem.so into the program; or not built). */
static int build_program(char *hakmem, const char *name, const char *src, const char *flags) {
  snprintf(hakmem, PATH_MAX, "%s/%s/bin/hakmem", repo, build);
  if (getenv("HAKMEM_TEST_SAN")) return 0;
  if (access(hakmem, X_OK) != 0) { printf("skip: %s not built\n", hakmem); return 0; }
  char c[PATH_MAX];
  snprintf(c, sizeof c, "%s.c", tmp(name));
  FILE *f = fopen(c, "w");
  assert_non_null(f);
  fputs(src, f);
  fclose(f);
  assert_int_equal(sh("cc -g -O0 %s -o '%s' '%s'", flags, tmp(name), c), 0);
  return 1;
}

static void test_leaks_of_a_program(void **state) {
  (void)state;
  char hakmem[PATH_MAX];
  if (!build_program(hakmem, "leakprog", LEAKPROG, "")) { skip(); return; }
  int rc = sh("cd '%s' && '%s' record --backtrace 8 -o leak.hkt.zst -- ./leakprog >record.log 2>&1", tmpdir, hakmem);
  if (access(tmp("leak.hkt.zst"), F_OK) != 0) {
    printf("skip: `hakmem record` did not write a trace (exit %d): not built yet?\n", rc);
    sh("head -3 '%s'", tmp("record.log"));
    skip();
    return;
  }
  assert_int_equal(rc, 0);
  assert_int_equal(sh("'%s' analyze '%s' --format json -o '%s'", hakmem, tmp("leak.hkt.zst"), tmp("leak.json")), 0);
  assert_int_equal(py_ok("import json,sys\n"
                         "d=json.load(open(sys.argv[1]))\n"
                         "L={l[\"callsite\"][\"function\"]:l for l in d[\"leaks\"] if l[\"callsite\"][\"function\"] in (\"leak_small\",\"leak_big\")}\n"
                         "s=L[\"leak_small\"]; b=L[\"leak_big\"]\n"
                         "assert (s[\"blocks\"],s[\"bytes\"],s[\"callsite\"][\"line\"])==(5,120,4), s\n"
                         "assert (b[\"blocks\"],b[\"bytes\"],b[\"callsite\"][\"line\"])==(3,600,8), b\n"
                         "assert s[\"callsite\"][\"file\"].endswith(\"leakprog.c\"), s\n"
                         "assert s[\"callsite\"][\"module\"]==\"leakprog\", s\n"
                         "st=[(f[\"function\"],f[\"line\"]) for f in s[\"stack\"]]\n"
                         "assert st[:2]==[(\"leak_small\",4),(\"main\",11)], st\n"
                         "st=[(f[\"function\"],f[\"line\"]) for f in b[\"stack\"]]\n"
                         "assert st[:2]==[(\"leak_big\",8),(\"main\",12)], st\n",
                         tmp("leak.json")), 0);

  /* without debug information: function names from the symbol table, no
   * line; stripped: module+offset */
  assert_int_equal(sh("cc -O0 -o '%s' '%s' && cp '%s' '%s' && strip '%s'", tmp("leaknodbg"), tmp("leakprog.c"),
                      tmp("leaknodbg"), tmp("leakstrip"), tmp("leakstrip")), 0);
  const char *names[] = {"leaknodbg", "leakstrip"};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(sh("cd '%s' && '%s' record -o nd.hkt.zst -- ./%s >record.log 2>&1", tmpdir, hakmem, names[i]), 0);
    assert_int_equal(sh("'%s' analyze '%s' --format json -o '%s'", hakmem, tmp("nd.hkt.zst"), tmp("nd.json")), 0);
    char script[1024];
    snprintf(script, sizeof script,
             "import json,sys\n"
             "d=json.load(open(sys.argv[1]))\n"
             "L=[l for l in d[\"leaks\"] if l[\"callsite\"][\"module\"]==\"%s\"]\n"
             "assert sorted((l[\"blocks\"],l[\"bytes\"]) for l in L)==[(3,600),(5,120)], L\n"
             "for l in L: assert l[\"callsite\"][\"line\"] is None and l[\"callsite\"][\"offset\"], l\n"
             "f=sorted(l[\"callsite\"][\"function\"] or \"\" for l in L)\n"
             "assert f==(%s), f\n",
             names[i], i ? "[\"\",\"\"]" : "[\"leak_big\",\"leak_small\"]");
    assert_int_equal(py_ok(script, tmp("nd.json")), 0);
  }
}

/* Fault injection on a real program: the correlation names the SuperSlab
 * the allocator released (its id and base, from the allocator's own stderr
 * line), the thread that released it, and the thread whose cache held its
 * blocks. With HAKMEM_DEBUG the release is stopped by an ss_invariant
 * detection; without, the trace has the release and the stale blocks
 * handed out after it. */
static const char PY_INJECT[] =
    "import json,re,sys\n"
    "d=json.load(open(sys.argv[1])); log=open(sys.argv[2]).read(); debug=sys.argv[3]==\"1\"\n"
    "rel=[dict(tid=int(m[0]),id=int(m[1]),base=int(m[2],16),live=int(m[3]),cache=int(m[4])) for m in\n"
    "     re.findall(r\"fired in thread (\\d+): releasing SuperSlab #(\\d+) \\(class 3, base (0x[0-9a-f]+)\\) with (\\d+) live blocks, (\\d+) of them\",log)]\n"
    "assert rel, log\n"
    "def held(ss,tid,kind): return sum(h[\"blocks\"] for h in ss[\"held_by\"] if h[\"thread\"]==tid and h[\"kind\"]==kind)\n"
    "if debug:\n"
    "  r=rel[0]\n"
    "  x=[e for e in d[\"detections\"] if e[\"kind\"]==\"ss_invariant\"]; assert len(x)==1, d[\"detections\"]\n"
    "  ss=x[0][\"superslab\"]; assert (ss[\"id\"],int(ss[\"base\"],16))==(r[\"id\"],r[\"base\"]), (ss,r)\n"
    "  assert ss[\"invariant_broken\"][\"thread\"]==r[\"tid\"] and x[0][\"thread\"]==r[\"tid\"], ss\n"
    "  assert ss[\"allocator_live_at_unregister\"]==r[\"live\"], (ss,r)\n"
    "  assert held(ss,r[\"tid\"],\"cache\")==r[\"cache\"], (ss,r)\n"
    "  assert sum(h[\"blocks\"] for h in ss[\"held_by\"])+ss[\"unattributed_blocks\"]==r[\"live\"], ss\n"
    "else:\n"
    "  bad=[s for s in d[\"superslabs\"] if s[\"unregistered\"] and s[\"allocator_live_at_unregister\"]]\n"
    "  assert len(bad)==1, bad\n"
    "  ss=bad[0]; r=[r for r in rel if (r[\"id\"],r[\"base\"])==(ss[\"id\"],int(ss[\"base\"],16))]; assert r, (ss,rel)\n"
    "  r=r[0]\n"
    "  assert ss[\"unregistered\"][\"thread\"]==r[\"tid\"] and ss[\"allocator_live_at_unregister\"]==r[\"live\"], (ss,r)\n"
    "  assert held(ss,r[\"tid\"],\"cache\")==r[\"cache\"], (ss,r)\n"
    "  x=[e for e in d[\"detections\"] if e[\"superslab\"] and e[\"superslab\"][\"id\"]==r[\"id\"]]; assert x, d[\"detections\"]\n"
    "  for e in x:\n"
    "    assert e[\"superslab_registered_at_event\"] is False and e[\"seq\"]>ss[\"unregistered\"][\"seq\"], e\n"
    "    if e[\"kind\"]==\"alloc_unregistered\": assert e[\"thread\"]==r[\"tid\"], e\n"
    "print(\"ok\", r)\n";

static void test_fault_injection(void **state) {
  (void)state;
  char hakmem[PATH_MAX], prog[PATH_MAX];
  snprintf(hakmem, sizeof hakmem, "%s/%s/bin/hakmem", repo, build);
  snprintf(prog, sizeof prog, "%s/%s/examples/injected", repo, build);
  if (getenv("HAKMEM_TEST_SAN")) { skip(); return; }
  if (access(hakmem, X_OK) != 0 || access(prog, X_OK) != 0) {
    printf("skip: %s or %s not built\n", hakmem, prog);
    skip();
    return;
  }
  /* In one thread only (/1): with two, the second release can race the
   * crash the first one causes, and a trace ends at its fatal signal. */
  for (int debug = 1; debug >= 0; debug--) {
    unlink(tmp("inj.hkt.zst"));
    sh("cd '%s' && HAKMEM_DEBUG=%d HAKMEM_INJECT=early_release:3@40/1 '%s' record -o inj.hkt.zst -- '%s' >inj.log 2>&1",
       tmpdir, debug, hakmem, prog);
    if (access(tmp("inj.hkt.zst"), F_OK) != 0) {
      printf("skip: `hakmem record` did not write a trace: not built yet?\n");
      skip();
      return;
    }
    assert_int_equal(sh("'%s' analyze '%s' --format json -o '%s'", hakmem, tmp("inj.hkt.zst"), tmp("inj.json")), 0);
    int rc = sh("python3 -c '%s' '%s' '%s' %d", PY_INJECT, tmp("inj.json"), tmp("inj.log"), debug);
    if (rc) sh("grep -v '^hakmem record' '%s' | head -5", tmp("inj.log"));
    assert_int_equal(rc, 0);
  }
}

/* Memory bounded by the live set, not the trace length: traces of N and 10N
 * events with the same live blocks analyze in the same peak RSS. Prints the
 * throughput (make bench: HAKMEM_ANALYZE_BENCH_EVENTS=10000000, and
 * HAKMEM_ANALYZE_BENCH_ONLY=1 to run only this). */
static int analyze_rusage(const char *hakmem, const char *trace, struct rusage *ru, double *wall) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    execl(hakmem, hakmem, "analyze", trace, "-o", "/dev/null", (char *)NULL);
    _exit(127);
  }
  int st;
  if (wait4(pid, &st, 0, ru) != pid) return -1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  *wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_bench_memory(void **state) {
  (void)state;
  char hakmem[PATH_MAX], core[PATH_MAX];
  snprintf(hakmem, sizeof hakmem, "%s/%s/bin/hakmem", repo, build);
  snprintf(core, sizeof core, "%s/%s/lib/libhakmem_core.a", repo, build);
  if (getenv("HAKMEM_TEST_SAN")) { skip(); return; }     /* sanitizer memory is not the analysis' */
  if (access(hakmem, X_OK) != 0 || access(core, R_OK) != 0) { printf("skip: %s not built\n", hakmem); skip(); return; }
  assert_int_equal(sh("cc -O2 -I'%s/include' -o '%s' '%s/tests/analyze_progs/bench_trace.c' '%s' -lzstd -lpthread -ldl",
                      repo, tmp("bench_trace"), repo, core), 0);
  uint64_t n = 1000000, live = 50000;
  if (getenv("HAKMEM_ANALYZE_BENCH_EVENTS")) n = strtoull(getenv("HAKMEM_ANALYZE_BENCH_EVENTS"), NULL, 0);
  long rss[2];
  for (int k = 0; k < 2; k++) {
    uint64_t events = k ? 10 * n : n;
    const char *trace = tmp(k ? "bench10.hkt.zst" : "bench1.hkt.zst");
    assert_int_equal(sh("'%s' %llu %llu '%s' >/dev/null", tmp("bench_trace"), (unsigned long long)events,
                        (unsigned long long)live, trace), 0);
    struct rusage ru;
    double wall = 0;
    assert_int_equal(analyze_rusage(hakmem, trace, &ru, &wall), 0);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    rss[k] = ru.ru_maxrss;
    printf("analyze %3dx: %llu events, %llu live: %.2f s cpu (%.1f M events/s), %.2f s wall, peak RSS %.1f MiB\n",
           k ? 10 : 1, (unsigned long long)events, (unsigned long long)live, cpu, (double)events / cpu / 1e6, wall,
           (double)ru.ru_maxrss / 1024.0);
    unlink(trace);
  }
  assert_true(rss[1] <= rss[0] + rss[0] / 4 + 4096);
}

/* ---- the reader's batch interface (what the analysis reads through) ---- */

/* Events of `path` read one by one (mode 0), by the batch (1), or both in
 * turn (2), as "seq kind tid ... str" lines; *rc: how reading ended. */
static char *read_events(const char *path, int mode, int *rc, uint64_t *n) {
  hkt_reader *r;
  assert_int_equal(hkt_reader_open(&r, path), 0);
  size_t cap = 1 << 20, len = 0;
  char *out = malloc(cap);
  assert_non_null(out);
  *n = 0;
  for (int turn = 0;; turn++) {
    hkt_event one;
    const hkt_event *evs = &one;
    int got = mode == 1 || (mode == 2 && turn % 2) ? hkt_reader_batch(r, &evs) : hkt_reader_next(r, &one);
    if (got <= 0) { *rc = got; break; }
    for (int i = 0; i < got; i++) {
      const hkt_event *e = &evs[i];
      if (cap - len < 8192) { cap *= 2; out = realloc(out, cap); assert_non_null(out); }
      len += (size_t)snprintf(out + len, cap - len, "%llu %u %u %u %u %u %llx %llu %llu %llu %llu %llx %llu %s %u:",
                              (unsigned long long)e->seq, e->kind, e->tid, e->fn, e->cls, e->stack_id,
                              (unsigned long long)e->ptr, (unsigned long long)e->size, (unsigned long long)e->aux,
                              (unsigned long long)e->aux2, (unsigned long long)e->aux3, (unsigned long long)e->caller,
                              (unsigned long long)e->time_ns, e->str ? e->str : "-", e->bid_len);
      for (uint32_t k = 0; k < e->bid_len; k++) len += (size_t)snprintf(out + len, cap - len, "%02x", e->bid[k]);
      out[len++] = '\n';
      out[len] = 0;
      ++*n;
    }
  }
  if (HKT_IS_ERR(*rc)) {
    len += (size_t)snprintf(out + len, cap - len, "error %s\n", hkt_reader_errmsg(r));
  }
  hkt_reader_close(r);
  return out;
}

/* ---- the event loop in memory: refills held in caches, bucket ends ------- */

static const hka_holder *holder(const hka_ss *ss, uint32_t tid, uint32_t kind) {
  for (uint32_t i = 0; i < ss->nholders; i++)
    if (ss->holders[i].tid == tid && ss->holders[i].kind == kind) return &ss->holders[i];
  return NULL;
}

static void test_refill_holders_and_bucket_ends(void **state) {
  (void)state;
  hkt_event ev[16];
  memset(ev, 0, sizeof ev);
  int n = 0;
#define MEV(...) (ev[n] = (hkt_event){.seq = (uint64_t)n, .time_ns = 1000 * (uint64_t)(n + 1), __VA_ARGS__}, n++)
  MEV(.kind = HKT_EV_SS_REGISTER, .tid = 0, .ptr = SSA, .size = MiB, .cls = 3, .aux = 0, .aux2 = 1);
  MEV(.kind = HKT_EV_CACHE_REFILL, .tid = 1, .cls = 3, .aux = SSA, .size = 10);
  MEV(.kind = HKT_EV_CACHE_REFILL, .tid = 2, .cls = 100, .aux = SSA, .size = 5);   /* a class past 64 */
  MEV(.kind = HKT_EV_CACHE_REFILL, .tid = 3, .cls = 5, .aux = SSA, .size = 8);
  MEV(.kind = HKT_EV_CACHE_FLUSH, .tid = 3, .cls = 5, .size = 8);                   /* tid 3 holds none */
  for (uint64_t k = 0; k < 4; k++) MEV(.kind = HKT_EV_MALLOC, .tid = 1, .cls = 3, .ptr = SSA + 64 * k, .size = 40);
  ev[6].time_ns = 2500;             /* earlier than the event before: a bucket ends at the latest time */
  MEV(.kind = HKT_EV_MALLOC, .tid = 2, .cls = 100, .ptr = SSA + 0x10000, .size = 2000);
  MEV(.kind = HKT_EV_FREE, .tid = 1, .cls = 3, .ptr = SSA);
  MEV(.kind = HKT_EV_SS_UNREGISTER, .tid = 0, .ptr = SSA, .size = MiB, .cls = 3, .aux3 = 0);
#undef MEV
  hka_state *one = malloc(sizeof *one), *bat = malloc(sizeof *bat);
  assert_non_null(one);
  assert_non_null(bat);
  assert_int_equal(hka_init(one, "mem", &hdr), 0);
  assert_int_equal(hka_init(bat, "mem", &hdr), 0);
  for (int i = 0; i < n; i++) assert_int_equal(hka_event(one, &ev[i]), 0);
  assert_int_equal(hka_events(bat, ev, 5), 0);
  assert_int_equal(hka_events(bat, ev + 5, n - 5), 0);
  assert_int_equal(hka_finish(one, NULL, 0), 0);
  assert_int_equal(hka_finish(bat, NULL, 0), 0);

  hka_state *both[2] = {one, bat};
  for (int k = 0; k < 2; k++) {
    hka_state *s = both[k];
    assert_int_equal(s->nss, 1);
    const hka_ss *ss = &s->ss[0];
    assert_int_equal(ss->live_at_unreg, 4);
    const hka_holder *h;
    assert_non_null(h = holder(ss, 1, HKA_HOLD_LIVE));
    assert_int_equal(h->blocks, 3);
    assert_non_null(h = holder(ss, 2, HKA_HOLD_LIVE));
    assert_int_equal(h->blocks, 1);
    assert_non_null(h = holder(ss, 1, HKA_HOLD_CACHE));
    assert_int_equal(h->blocks, 1 + 6);   /* the block it freed, 10 refilled less 4 handed out */
    assert_non_null(h = holder(ss, 2, HKA_HOLD_CACHE));
    assert_int_equal(h->blocks, 5 - 1);
    assert_null(holder(ss, 3, HKA_HOLD_CACHE));
    assert_int_equal(ss->held_unattributed, 0);
    /* one event per bucket: each ends at the latest time so far */
    assert_int_equal(s->tl.n, n);
    assert_int_equal(s->tl.b[5].time1, 6000);
    assert_int_equal(s->tl.b[6].time1, 6000);
    assert_int_equal(s->tl.b[7].time1, 8000);
    assert_int_equal(s->tl.b[8].max_live_bytes, 4 * 40);
    assert_int_equal(s->tl.b[9].max_live_bytes, 4 * 40 + 2000);
    assert_int_equal(s->tl.b[10].max_live_bytes, 4 * 40 + 2000);   /* from its start */
    assert_int_equal(s->tl.b[0].ss_max, 1);
    assert_int_equal(s->tl.b[n - 1].ss_total, 0);
  }
  assert_memory_equal(&one->tl, &bat->tl, sizeof one->tl);
  hka_free(one);
  hka_free(bat);
  free(one);
  free(bat);
}

/* ---- which SuperSlab a block is in, across registers; cross-thread counts -- */

/* ss_index over the whole record list: the latest record at each base,
 * lowest size first, as DESIGN's model says (what the memo must match). */
static uint32_t ss_of_slow(const hka_state *s, uint64_t ptr) {
  for (unsigned lg = 0; lg < 64; lg++) {
    if (!(s->ss_lg_mask >> lg & 1)) continue;
    uint64_t base = ptr & ~((1ull << lg) - 1);
    for (uint32_t i = s->nss; i > 0; i--)
      if (s->ss[i - 1].base == base) {
        if (ptr - base < s->ss[i - 1].size) return i;
        break;
      }
  }
  return 0;
}

static void ss_memo_run(int odd) {
  hka_state *s = malloc(sizeof *s);
  assert_non_null(s);
  assert_int_equal(hka_init(s, "mem", &hdr), 0);
  uint64_t seq = 0, p = SSA + 0x40;
  hkt_event ev;
#define ONE(...) (ev = (hkt_event){.seq = seq++, .tid = 0, __VA_ARGS__}, assert_int_equal(hka_events(s, &ev, 1), 0))
  ONE(.kind = HKT_EV_SS_REGISTER, .ptr = SSA + 2 * MiB, .size = 2 * MiB, .cls = 1, .aux2 = 9);
  ONE(.kind = HKT_EV_MALLOC, .ptr = p, .size = 16, .cls = 1);           /* in no SuperSlab yet */
  ONE(.kind = HKT_EV_FREE, .ptr = p, .cls = 1);
  ONE(.kind = HKT_EV_SS_REGISTER, .ptr = SSA, .size = 2 * MiB, .cls = 1, .aux2 = 1);
  ONE(.kind = HKT_EV_MALLOC, .ptr = p, .size = 16, .cls = 1);           /* now in it */
  ONE(.kind = HKT_EV_MALLOC, .ptr = SSA + MiB + 0x80, .size = 16, .cls = 1);
  ONE(.kind = HKT_EV_SS_UNREGISTER, .ptr = SSA, .size = 2 * MiB, .cls = 1, .aux3 = 2);
  /* a smaller one at the upper half, then at the base again */
  ONE(.kind = HKT_EV_SS_REGISTER, .ptr = SSA + MiB, .size = odd ? MiB / 2 + 4096 : MiB, .cls = 2, .aux2 = 2);
  ONE(.kind = HKT_EV_MALLOC, .ptr = SSA + MiB + 0x1000, .size = 32, .cls = 2);
  ONE(.kind = HKT_EV_MALLOC, .ptr = SSA + MiB + 0xc0000, .size = 32, .cls = 2);   /* past an odd size */
  ONE(.kind = HKT_EV_SS_REGISTER, .ptr = SSA, .size = MiB, .cls = 3, .aux2 = 3);
  ONE(.kind = HKT_EV_MALLOC, .ptr = SSA + 0x2000, .size = 48, .cls = 3);
  ONE(.kind = HKT_EV_MALLOC, .ptr = SSA + 3 * MiB, .size = 48, .cls = 3);         /* in the first */
#undef ONE
  assert_int_equal(s->nss, 4);
  assert_int_equal(s->ss[0].allocs, 1);
  assert_int_equal(s->ss[1].allocs, odd ? 3 : 2);   /* odd: past the small one, in the released one */
  assert_int_equal(s->ss[2].allocs, odd ? 1 : 2);
  assert_int_equal(s->ss[3].allocs, 1);
  /* every block's SuperSlab as the slow lookup has it now, and the
   * correlations: the allocation in the released one (odd size: twice) */
  for (uint64_t a = SSA; a < SSA + 4 * MiB; a += 0x1000) {
    assert_int_equal(hka_ss_of(s, a) ? (uint32_t)(hka_ss_of(s, a) - s->ss) + 1 : 0, ss_of_slow(s, a));
  }
  uint32_t unreg = 0;
  for (uint32_t i = 0; i < s->ncorr; i++) unreg += !strcmp(s->corr[i].kind, "alloc_unregistered");
  assert_int_equal(unreg, odd ? 1 : 0);
  hka_free(s);
  free(s);
}

static void test_ss_lookup_and_xthread(void **state) {
  (void)state;
  ss_memo_run(0);
  ss_memo_run(1);
  /* frees between small and large thread indexes: counted two ways, one result */
  hka_state *s = malloc(sizeof *s);
  assert_non_null(s);
  assert_int_equal(hka_init(s, "mem", &hdr), 0);
  static const uint32_t at[] = {0, 3, 3, 15, 16, 40, 2, 2};
  static const uint32_t ft[] = {0, 3, 5, 16, 15, 40, 40, 7};
  uint64_t seq = 0;
  for (int k = 0; k < 8; k++) {
    hkt_event ev[2] = {
      {.seq = seq++, .kind = HKT_EV_MALLOC, .tid = at[k], .ptr = 0x1000 + 64 * (uint64_t)k, .size = 8, .cls = 0},
      {.seq = seq++, .kind = HKT_EV_FREE, .tid = ft[k], .ptr = 0x1000 + 64 * (uint64_t)k, .cls = 0},
    };
    assert_int_equal(hka_events(s, ev, 2), 0);
  }
  assert_int_equal(hka_finish(s, NULL, 0), 0);
  assert_int_equal(s->same_thread_frees, 3);
  assert_int_equal(s->cross_thread_frees, 5);
  size_t n;
  uint64_t *pr = hka_xthread_pairs(s, &n);
  assert_non_null(pr);
  static const uint64_t want[][2] = {{2ull << 32 | 7, 1}, {2ull << 32 | 40, 1}, {3ull << 32 | 5, 1},
                                     {15ull << 32 | 16, 1}, {16ull << 32 | 15, 1}};
  assert_int_equal(n, 5);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(pr[2 * i], want[i][0]);
    assert_int_equal(pr[2 * i + 1], want[i][1]);
  }
  free(pr);
  hka_free(s);
  free(s);
}

static void test_reader_batch(void **state) {
  (void)state;
  /* more events than a batch, over several frames, strings here and there
   * (a batch ends after one), reuses and back-references */
  tb b;
  tb_open(&b, tmp("batch.hkt.zst"));
  assert_int_equal(hkt_writer_set_frame_events(b.w, 700), 0);
  static const uint8_t bid[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
  EV(&b, .kind = HKT_EV_THREAD_START, .tid = 0, .aux = 77);
  EV(&b, .kind = HKT_EV_SS_REGISTER, .tid = 0, .ptr = SSA, .size = 1 << 20, .cls = 3, .aux2 = 1);
  uint64_t live[64] = {0};
  for (int i = 0; i < 3000; i++) {
    int k = (i * 7) % 64;
    if (i % 97 == 50) EV(&b, .kind = HKT_EV_MARK, .tid = 0, .str = i % 3 ? (i % 2 ? "mark-odd" : "mark") : "");
    if (i % 131 == 10)
      EV(&b, .kind = HKT_EV_MODULE_LOAD, .tid = HKT_TID_RECORDER, .ptr = 0x7f0000000000ull + i, .size = 4096,
         .str = "/lib/libx.so", .bid = bid, .bid_len = (uint32_t)(i % 20));
    if (live[k]) {
      EV(&b, .kind = HKT_EV_FREE, .tid = (uint32_t)(i % 3), .ptr = live[k], .cls = 3, .caller = 0x401000 + (uint64_t)(i % 5));
      live[k] = 0;
    } else {
      live[k] = SSA + 4096 + (uint64_t)((i * 13) % 4000) * 64;
      EV(&b, .kind = i % 11 ? HKT_EV_MALLOC : HKT_EV_CALLOC, .tid = (uint32_t)(i % 3), .ptr = live[k],
         .size = i % 11 ? 33 + (uint64_t)(i % 31) : 8, .aux = i % 11 ? 0 : 8, .cls = 3,
         .caller = 0x402000 + (uint64_t)(i % 7));
    }
  }
  EV(&b, .kind = HKT_EV_END, .tid = 0, .fn = HKT_END_EXIT, .aux = 3);
  tb_close(&b, 1);

  int rc0, rc1, rc2;
  uint64_t n0, n1, n2;
  char *one = read_events(tmp("batch.hkt.zst"), 0, &rc0, &n0);
  char *bat = read_events(tmp("batch.hkt.zst"), 1, &rc1, &n1);
  char *mix = read_events(tmp("batch.hkt.zst"), 2, &rc2, &n2);
  assert_int_equal(rc0, 0);
  assert_int_equal(rc1, 0);
  assert_int_equal(rc2, 0);
  assert_true(n0 > 3000);
  assert_int_equal(n1, n0);
  assert_int_equal(n2, n0);
  assert_string_equal(bat, one);
  assert_string_equal(mix, one);
  assert_non_null(strstr(one, " /lib/libx.so 10:0102030405060708090a\n"));
  free(bat);
  free(mix);

  /* cut: the same good events, then the same error */
  struct stat st;
  assert_int_equal(stat(tmp("batch.hkt.zst"), &st), 0);
  assert_int_equal(truncate(tmp("batch.hkt.zst"), st.st_size / 2), 0);
  char *cut0 = read_events(tmp("batch.hkt.zst"), 0, &rc0, &n0);
  char *cut1 = read_events(tmp("batch.hkt.zst"), 1, &rc1, &n1);
  assert_int_equal(rc0, HKT_ERR_TRUNCATED);
  assert_int_equal(rc1, HKT_ERR_TRUNCATED);
  assert_true(n0 > 0);
  assert_string_equal(cut1, cut0);
  assert_int_equal(strncmp(cut0, one, strlen(cut0) - strlen(strstr(cut0, "error "))), 0);
  free(cut0);
  free(cut1);
  free(one);
}

/* ---- a forked child's trace ---------------------------------------------- */

/* The parent (pid 100): three blocks and a large one, one freed, then the
 * fork at seq 8, then a block the child never sees. */
#define FORK_SEQ 8
#define WILD 0x300000000000ull
static void write_fork_parent(const char *path, uint32_t pid) {
  hkt_header h = hdr;
  h.pid = pid;
  h.cmdline = "./forker";
  tb b;
  tb_open_hdr(&b, path, &h);
  EV(&b, .kind = HKT_EV_THREAD_START, .tid = 0, .aux = 3000, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_SS_REGISTER, .tid = 0, .ptr = SSA, .size = MiB, .cls = 2, .aux = 0, .aux2 = 1);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSA + 0x40, .size = 30, .cls = 2, .caller = 0x401100);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSA + 0x60, .size = 32, .cls = 2, .caller = 0x401100);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSA + 0x80, .size = 20, .cls = 2, .caller = 0x401200);
  EV(&b, .kind = HKT_EV_LARGE_MAP, .tid = 0, .ptr = LARGE, .size = 102400, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = LARGE, .size = 100000, .cls = HKT_NO_CLASS, .caller = 0x401300);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = SSA + 0x60, .cls = 2, .caller = 0x401400);
  EV(&b, .kind = HKT_EV_FORK, .tid = 0, .cls = HKT_NO_CLASS);                            /* FORK_SEQ */
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSA + 0xa0, .size = 30, .cls = 2, .caller = 0x401500);
  EV(&b, .kind = HKT_EV_END, .tid = 0, .fn = HKT_END_EXIT, .aux = 0, .cls = HKT_NO_CLASS);
  tb_close(&b, 1);
}

/* The child (pid 101): frees a parent block, reallocs the parent's large
 * one, leaks one of its own; then real bugs: the parent block again, an
 * address of the inherited SuperSlab nobody allocated, a wild pointer (the
 * allocator reports that one). forked: the header links to the parent
 * (0: a trace written before those fields, which only its first event
 * shows to be a child's). */
static void write_fork_child(const char *path, const char *parent, uint64_t fork_seq, int forked) {
  hkt_header h = hdr;
  h.pid = 101;
  h.ppid = 100;
  h.cmdline = "./forker";
  h.forked = (uint32_t)forked;
  h.fork_seq = fork_seq;
  h.parent_trace = parent;
  tb b;
  tb_open_hdr(&b, path, &h);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = SSA + 0x40, .cls = 2, .caller = 0x402000);
  EV(&b, .kind = HKT_EV_REALLOC, .tid = 0, .ptr = SSA + 0xc0, .aux = LARGE, .size = 20, .cls = 2,
     .fn = HKT_FN_REALLOC, .caller = 0x402100);
  EV(&b, .kind = HKT_EV_MALLOC, .tid = 0, .ptr = SSA + 0xe0, .size = 24, .cls = 2, .caller = 0x402200);
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = SSA + 0x40, .cls = 2, .caller = 0x402300);     /* 3: again */
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = SSA + 0x100, .cls = 2, .caller = 0x402400);    /* 4: never allocated */
  EV(&b, .kind = HKT_EV_FREE, .tid = 0, .ptr = WILD, .cls = HKT_NO_CLASS, .caller = 0x402500); /* 5: wild */
  EV(&b, .kind = HKT_EV_DETECTION, .tid = 0, .fn = HKT_DET_INVALID_FREE, .ptr = WILD, .cls = HKT_NO_CLASS);
  EV(&b, .kind = HKT_EV_END, .tid = 0, .fn = HKT_END_EXIT, .aux = 0, .cls = HKT_NO_CLASS);
  tb_close(&b, 1);
}

/* What the child leaks is its own either way: its realloc and its malloc. */
static void expect_child_leaks(const hka_state *s) {
  assert_int_equal(s->allocs, 2);
  assert_int_equal(s->frees, 0);
  assert_int_equal(s->leak_blocks, 2);
  assert_int_equal(s->leak_bytes, 44);
  assert_int_equal(s->nleaks, 2);
  assert_int_equal(s->leaks[0].caller, 0x402200);
  assert_int_equal(s->leaks[1].caller, 0x402100);
}

/* Without the parent's blocks: the child's frees of them are counted as
 * inherited, not invalid_free; the wild free the allocator reported is
 * still a problem (not counted), with its free's seq. */
static void expect_child_alone(const hka_state *s, int forked, const char *why) {
  assert_true(s->inh.heap);
  assert_int_equal(s->hdr.forked, forked);
  assert_null(s->inh.parent_path);
  if (why) assert_string_equal(s->inh.parent_why, why);
  else assert_null(s->inh.parent_why);
  assert_int_equal(s->inh.unknown_frees, 4);   /* seqs 0, 1 (the realloc), 3, 4 */
  assert_int_equal(s->inh.blocks, 0);
  assert_int_equal(s->inh.freed, 0);
  assert_int_equal(s->ncorr, 1);
  assert_string_equal(s->corr[0].kind, "invalid_free");
  assert_int_equal(s->corr[0].detect, HKT_DET_INVALID_FREE);
  assert_int_equal(s->corr[0].seq, 6);
  assert_int_equal(s->corr[0].free_seq, 5);
  expect_child_leaks(s);
}

static void test_forked_child(void **state) {
  (void)state;
  char parent[PATH_MAX], child[PATH_MAX];   /* tmp()'s buffers are reused */
  snprintf(parent, sizeof parent, "%s", tmp("fk.hkt.zst"));
  snprintf(child, sizeof child, "%s", tmp("fk.101.hkt.zst"));
  write_fork_parent(parent, 100);
  write_fork_child(child, parent, FORK_SEQ, 1);
  hka_state s;
  assert_int_equal(analyze_into(child, &s), 0);
  assert_true(s.inh.heap);
  assert_string_equal(s.inh.parent_path, parent);
  assert_null(s.inh.parent_note);
  assert_int_equal(s.inh.fork_seq, FORK_SEQ);
  /* the heap at the fork: SSA+0x40, +0x80 and the large block; not +0x60
   * (freed before) nor +0xa0 (allocated after) */
  assert_int_equal(s.inh.blocks, 3);
  assert_int_equal(s.inh.bytes, 100050);
  assert_int_equal(s.inh.superslabs, 1);
  assert_int_equal(s.inh.freed, 2);
  assert_int_equal(s.inh.freed_bytes, 100030);
  assert_int_equal(s.inh.live_end, 1);          /* SSA+0x80: the parent's, not a leak here */
  assert_int_equal(s.inh.live_end_bytes, 20);
  assert_int_equal(s.inh.unknown_frees, 0);
  assert_int_equal(s.nss, 1);
  assert_int_equal(s.ss[0].id, 1);
  assert_int_equal(s.ss[0].reg_seq, HKA_NONE);
  assert_int_equal(s.ss[0].parent_reg_seq, 1);
  assert_int_equal(s.ss_live, 1);
  /* the real bugs, each with its history; seqs are the child's */
  assert_int_equal(s.ncorr, 3);
  const hka_corr *c = &s.corr[0];
  assert_string_equal(c->kind, "double_free");
  assert_int_equal(c->seq, 3);
  assert_true(c->have_block);
  assert_true(c->block.flags & HKA_BF_PARENT);
  assert_int_equal(c->block.alloc_seq, 2);      /* the parent's seq */
  assert_int_equal(c->block.alloc_caller, 0x401100);
  assert_int_equal(c->block.free_seq, 0);       /* the child's */
  assert_int_equal(c->block.free_caller, 0x402000);
  c = &s.corr[1];
  assert_string_equal(c->kind, "invalid_free");
  assert_int_equal(c->seq, 4);
  assert_int_equal(c->ss, 1);
  assert_true(c->ss_registered);
  c = &s.corr[2];                               /* the parent's heap is known whole: wild is invalid */
  assert_string_equal(c->kind, "invalid_free");
  assert_int_equal(c->detect, HKT_DET_INVALID_FREE);
  assert_int_equal(c->seq, 6);
  assert_int_equal(c->free_seq, 5);
  expect_child_leaks(&s);
  hka_free(&s);

  /* the reports say it */
  const char *av[] = {"analyze", child, "--format", "json", "-o", tmp("fk.json")};
  assert_int_equal(run_analyze(NULL, 6, av), 0);
  assert_int_equal(py_ok("import json,sys\n"
                         "d=json.load(open(sys.argv[1])); i=d[\"summary\"][\"inherited\"]; p=i[\"parent\"]\n"
                         "assert (i[\"heap\"],i[\"forked\"],i[\"unknown_blocks_freed\"])==(True,True,0), i\n"
                         "assert (p[\"pid\"],p[\"fork_seq\"],p[\"read\"],p[\"not_read_because\"])==(100,8,True,None), p\n"
                         "assert (p[\"blocks_at_fork\"],p[\"blocks_freed\"],p[\"blocks_live_at_end\"])==(3,2,1), p\n"
                         "x=d[\"detections\"]; assert [e[\"kind\"] for e in x]==[\"double_free\",\"invalid_free\",\"invalid_free\"], x\n"
                         "a=x[0][\"block\"][\"allocated\"]; assert (a[\"in_parent\"],a[\"seq\"])==(True,2), a\n"
                         "assert x[1][\"superslab\"][\"registered_in_parent\"][\"seq\"]==1, x[1]\n"
                         "assert x[1][\"superslab\"][\"registered\"] is None, x[1]\n"
                         "assert sorted(l[\"bytes\"] for l in d[\"leaks\"])==[20,24], d[\"leaks\"]\n",
                         tmp("fk.json")), 0);
  av[3] = "text";
  av[5] = tmp("fk.txt");
  assert_int_equal(run_analyze(NULL, 6, av), 0);
  char *txt = slurp(tmp("fk.txt"), NULL);
  assert_non_null(strstr(txt, "inherited  3 blocks, 97.7 KiB in 1 superslabs: the parent's heap at its fork\n"));
  assert_non_null(strstr(txt, "           2 freed here (97.7 KiB); 1 still live at the end (20 B): the parent's, not leaks here\n"));
  assert_non_null(strstr(txt, "     allocated  in the parent, its seq 2 thread 0, at 0x401100\n"));
  assert_non_null(strstr(txt, "  registered    in the parent, its seq 1 thread 0\n"));
  free(txt);
  av[3] = "html";
  av[5] = tmp("fk.html");
  assert_int_equal(run_analyze(NULL, 6, av), 0);
  txt = slurp(tmp("fk.html"), NULL);
  assert_non_null(strstr(txt, "the parent's heap at its fork (pid 100, seq 8 of "));
  assert_non_null(strstr(txt, "allocated in the parent at seq 2 by thread 0"));
  free(txt);
  assert_int_equal(py_ok(PY_HTML, tmp("fk.html")), 0);

  /* the parent's trace is not there: counted, said once */
  assert_int_equal(rename(parent, tmp("fk.moved")), 0);
  assert_int_equal(analyze_into(child, &s), 0);
  expect_child_alone(&s, 1, "not_found");
  assert_non_null(strstr(s.inh.parent_note, "was not found"));
  hka_free(&s);
  av[3] = "text";
  av[5] = tmp("fk.txt");
  assert_int_equal(run_analyze(NULL, 6, av), 0);
  txt = slurp(tmp("fk.txt"), NULL);
  assert_non_null(strstr(txt, "inherited  4 blocks freed that the trace did not allocate (a forked child: they are the parent's)\n"));
  assert_non_null(strstr(txt, "           not resolved: the parent's trace "));
  assert_null(strstr(txt, "#2 "));             /* one problem: the wild free */
  free(txt);

  /* found in the child's directory when moved with it: the recorded name
   * points elsewhere */
  write_fork_child(child, "/nonexistent/dir/fk.moved", FORK_SEQ, 1);
  assert_int_equal(analyze_into(child, &s), 0);
  assert_non_null(s.inh.parent_path);
  assert_int_equal(s.inh.freed, 2);
  assert_int_equal(s.ncorr, 3);
  hka_free(&s);

  /* not the parent's pid; no FORK event at fork_seq; an old trace with no
   * link: each falls back to counting */
  write_fork_parent(parent, 999);
  write_fork_child(child, parent, FORK_SEQ, 1);
  assert_int_equal(analyze_into(child, &s), 0);
  expect_child_alone(&s, 1, "not_the_parent");
  hka_free(&s);
  write_fork_parent(parent, 100);
  write_fork_child(child, parent, FORK_SEQ - 1, 1);
  assert_int_equal(analyze_into(child, &s), 0);
  expect_child_alone(&s, 1, "no_fork_event");
  hka_free(&s);
  write_fork_child(child, parent, FORK_SEQ, 0);
  assert_int_equal(analyze_into(child, &s), 0);
  expect_child_alone(&s, 0, NULL);
  hka_free(&s);
}

/* A real program that forks: the child frees four of the parent's blocks,
 * reallocs a fifth and leaks one block of its own; with an argument it
 * also frees a pointer inside a block (the allocator reports it at
 * HAKMEM_DEBUG=1). The child's trace analyzed: no invalid_free for the
 * parent's blocks, with the parent's trace or without it; the child's own
 * leak by function and line; the real bad free still a problem. */
static const char FORKPROG[] =
    "#include <stdlib.h>\n"
    "#include <sys/wait.h>\n"
    "#include <unistd.h>\n"
    "static void *keep[8];\n"
    "__attribute__((noinline)) void parent_alloc(void) {\n"
    "  for (int i = 0; i < 6; i++) keep[i] = malloc(40 + 8 * i);  /* LINE 6 */\n"
    "}\n"
    "__attribute__((noinline)) void child_leak(void) {\n"
    "  keep[7] = malloc(300);  /* LINE 9 */\n"
    "}\n"
    "int main(int argc, char **argv) {\n"
    "  parent_alloc();\n"
    "  pid_t pid = fork();\n"
    "  if (pid == 0) {\n"
    "    for (int i = 0; i < 4; i++) free(keep[i]);\n"
    "    keep[5] = realloc(keep[5], 500);\n"
    "    child_leak();\n"
    "    if (argc > 1) free((char *)keep[4] + 8);\n"
    "    _exit(0);\n"
    "  }\n"
    "  waitpid(pid, 0, 0);\n"
    "  free(keep[4]);\n"
    "  free(keep[5]);\n"
    "  return 0;\n"
    "}\n";

/* argv: the report, whether the parent's trace was there, whether the
 * child made a bad free. The child's leaks are its own two blocks (the
 * parent's still live are not); by function and line when the parent's
 * trace gave the modules (a child's header has none). */
static const char PY_FORK[] =
    "import json,sys\n"
    "d=json.load(open(sys.argv[1])); read=sys.argv[2]==\"1\"; bad=sys.argv[3]==\"1\"\n"
    "i=d[\"summary\"][\"inherited\"]; p=i[\"parent\"]\n"
    "assert i[\"heap\"] and i[\"forked\"] and p[\"read\"]==read, i\n"
    "if read: assert (p[\"blocks_freed\"],i[\"unknown_blocks_freed\"])==(5,0) and p[\"blocks_at_fork\"]>=6, i\n"
    "else: assert (p[\"blocks_freed\"],i[\"unknown_blocks_freed\"],p[\"not_read_because\"])==(0,5,\"not_found\"), i\n"
    "x=d[\"detections\"]\n"
    "if bad:\n"
    "  assert [(e[\"kind\"],e[\"source\"]) for e in x]==[(\"interior_free\",\"detection\")], x\n"
    "  assert x[0][\"free_seq\"] is not None and (not read or x[0][\"callsite\"][\"function\"]==\"main\"), x\n"
    "else: assert x==[], x\n"
    "assert sorted(l[\"bytes\"] for l in d[\"leaks\"])==[300,500], d[\"leaks\"]\n"
    "L={(l[\"callsite\"][\"function\"],l[\"callsite\"][\"line\"]):l[\"bytes\"] for l in d[\"leaks\"]}\n"
    "if read: assert L[(\"child_leak\",9)]==300, L\n";

static void test_forked_child_program(void **state) {
  (void)state;
  char hakmem[PATH_MAX];
  if (!build_program(hakmem, "forkprog", FORKPROG, "-fno-builtin")) { skip(); return; }
  for (int bad = 0; bad < 2; bad++) {
    /* the traces in a directory of their own: the child's is the other one */
    assert_int_equal(sh("cd '%s' && rm -rf fk%d && mkdir fk%d && cd fk%d && HAKMEM_DEBUG=%d HAKMEM_ON_ERROR=continue "
                        "'%s' record -o f.hkt.zst -- ../forkprog %s >record.log 2>&1",
                        tmpdir, bad, bad, bad, bad, hakmem, bad ? "x" : ""), 0);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/fk%d", tmpdir, bad);
    assert_int_equal(sh("cd '%s' && ls f.*.hkt.zst | wc -l | grep -qx 1", dir), 0);
    for (int read = 1; read >= 0; read--) {
      if (!read) assert_int_equal(sh("mv '%s/f.hkt.zst' '%s/parent.moved'", dir, dir), 0);
      assert_int_equal(sh("cd '%s' && '%s' analyze f.*.hkt.zst --format json -o child.json", dir, hakmem), 0);
      char json[PATH_MAX + 16];
      snprintf(json, sizeof json, "%s/child.json", dir);
      int rc = sh("python3 -c '%s' '%s' %d %d", PY_FORK, json, read, bad);
      if (rc) sh("cd '%s' && '%s' analyze f.*.hkt.zst | head -40", dir, hakmem);
      assert_int_equal(rc, 0);
    }
  }
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/hkt-analyze-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  if (!getcwd(repo, sizeof repo)) return -1;
  build = getenv("HAKMEM_BUILD") ? getenv("HAKMEM_BUILD") : "build";
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (getenv("HAKMEM_KEEP_TMP")) { printf("kept %s\n", tmpdir); return 0; }
  return sh("rm -rf '%s'", tmpdir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_basic),
    cmocka_unit_test(test_reader_batch),
    cmocka_unit_test(test_ss_lookup_and_xthread),
      cmocka_unit_test(test_refill_holders_and_bucket_ends),
    cmocka_unit_test(test_stale_correlation),
    cmocka_unit_test(test_forked_child),
    cmocka_unit_test(test_forked_child_program),
    cmocka_unit_test(test_formats),
    cmocka_unit_test(test_golden),
    cmocka_unit_test(test_golden_double_free),
    cmocka_unit_test(test_golden_interior_free),
    cmocka_unit_test(test_golden_overflow),
    cmocka_unit_test(test_golden_leaks),
    cmocka_unit_test(test_truncated_and_unreadable),
    cmocka_unit_test(test_long_trace_bounds),
    cmocka_unit_test(test_html_renders),
    cmocka_unit_test(test_leaks_of_a_program),
    cmocka_unit_test(test_fault_injection),
    cmocka_unit_test(test_bench_memory),
  };
  if (getenv("HAKMEM_ANALYZE_BENCH_ONLY")) cmocka_set_test_filter("test_bench_memory");
  return cmocka_run_group_tests(tests, setup, teardown);
}
