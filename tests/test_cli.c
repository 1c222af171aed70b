/* test_cli.c — the `hakmem` front end, stats, dump and verify, end to end:
 * traces are built with the writer API, then $HAKMEM_BUILD/bin/hakmem is run
 * on them like a user would, and its output and exit status are checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"

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

#pragma GCC diagnostic ignored "-Woverride-init"   /* EV(): defaults, then the fields given */

static char tmpdir[64];
static char hakmem_bin[4096];

/* ---- running the binary --------------------------------------------------- */

typedef struct result {
  int status;                   /* exit code, or 128+signal */
  char *out, *err;
} result;


/* hakmem ARGS... (NULL-terminated), stdout and stderr captured. */
static result run(const char *arg0, ...) {
  const char *argv[32] = {hakmem_bin};
  int argc = 1;
  va_list ap;
  va_start(ap, arg0);
  for (const char *a = arg0; a && argc < 31; a = va_arg(ap, const char *)) argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;

  prog_result pr;
  assert_int_equal(run_prog(NULL, (char *const *)argv, NULL, 300, &pr), 0);
  assert_false(pr.timed_out);
  int st = pr.status;
  result r = {.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), .out = pr.out, .err = pr.err};
  /* under a sanitizer a memory error exits 1, like a verify failure: look */
  if (strstr(r.err, "Sanitizer") || strstr(r.err, "runtime error:"))
    fail_msg("hakmem %s: sanitizer report:\n%s", arg0 ? arg0 : "", r.err);
  return r;
}

static void result_free(result *r) { free(r->out); free(r->err); }

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* The line of s that contains needle, copied (NULL if none). */
static char *line_with(const char *s, const char *needle) {
  const char *hit = strstr(s, needle);
  if (!hit) return NULL;
  const char *b = hit, *e = hit;
  while (b > s && b[-1] != '\n') b--;
  while (*e && *e != '\n') e++;
  return strndup(b, (size_t)(e - b));
}

#define assert_contains(hay, needle) do { \
    if (!strstr((hay), (needle))) fail_msg("expected \"%s\" in:\n%s", (needle), (hay)); } while (0)
#define assert_not_contains(hay, needle) do { \
    if (strstr((hay), (needle))) fail_msg("did not expect \"%s\" in:\n%s", (needle), (hay)); } while (0)

/* stderr is exactly one line naming the command. */
static void assert_one_error_line(const result *r, const char *cmd) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "hakmem %s: ", cmd);
  if (count_lines(r->err) != 1 || strncmp(r->err, prefix, strlen(prefix)))
    fail_msg("expected one line starting \"%s\" on stderr, got:\n%s", prefix, r->err);
}

/* Valid JSON (each line, with lines=1), checked by python3 when it is there. */
static void assert_json(const char *text, int lines) {
  if (system("command -v python3 >/dev/null 2>&1") != 0) return;
  char path[128], cmd[512];
  snprintf(path, sizeof path, "%s/json", tmpdir);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import json,sys\n"
           "t=open(sys.argv[1]).read()\n"
           "[json.loads(l) for l in t.splitlines()] if %d else json.loads(t)' %s",
           lines, path);
  if (system(cmd) != 0) fail_msg("not valid JSON:\n%s", text);
}

/* ---- building traces -------------------------------------------------------- */

typedef struct tb {
  hkt_writer *w;
  uint64_t seq;
  char path[128];
} tb;

#define SS    0x200000000000ull
#define SS2   0x200000200000ull
#define LARGE 0x300000000000ull
#define MiB   (1024ull * 1024)

/* A trace of pid 4242; a forked child's of pid `pid` when parent is set
 * (the parent's FORK at fork_seq). */
static void tb_open_as(tb *t, const char *name, uint32_t pid, const char *parent, uint64_t fork_seq) {
  static hkt_module mod = {.path = "/bin/test", .base = 0x400000, .size = 0x1000};
  hkt_header h = {.version = HKT_FORMAT_VERSION, .pid = pid, .ppid = parent ? 4242 : 1, .start_realtime_ns = 1,
                  .clock = "monotonic", .cmdline = "./app --flag \"x\"", .config = "HAKMEM_DEBUG=0\n",
                  .arena_base = SS, .num_classes = 2, .class_size = {16, 32},
                  .num_modules = 1, .modules = &mod, .forked = parent != NULL, .fork_seq = fork_seq,
                  .parent_trace = parent};
  snprintf(t->path, sizeof t->path, "%s/%s", tmpdir, name);
  t->seq = 0;
  assert_int_equal(hkt_writer_open(&t->w, t->path, &h), 0);
}
static void tb_open(tb *t, const char *name) { tb_open_as(t, name, 4242, NULL, 0); }

/* Puts ev with the next seq and time = seq microseconds. */
static void tb_put(tb *t, hkt_event ev) {
  ev.seq = t->seq++;
  ev.time_ns = ev.seq * 1000;
  int rc = hkt_writer_put(t->w, &ev);
  if (HKT_IS_ERR(rc)) fail_msg("hkt_writer_put seq %" PRIu64 ": %s", ev.seq, hkt_strerror(rc));
}

static void tb_close(tb *t, int complete) { assert_int_equal(hkt_writer_close(t->w, complete), 0); }

#define EV(...) ((hkt_event){.cls = HKT_NO_CLASS, __VA_ARGS__})

/* The reference trace: 20 events, 2 threads, every checked field known. */
static void good_trace(tb *t, const char *name, unsigned end_how, uint64_t end_code) {
  tb_open(t, name);
  tb_put(t, EV(.kind = HKT_EV_THREAD_START, .tid = 0, .aux = 100));                                       /* 0 */
  tb_put(t, EV(.kind = HKT_EV_SS_REGISTER, .ptr = SS, .size = 2 * MiB, .cls = 1, .aux = 0, .aux2 = 1));  /* 1 */
  tb_put(t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x100, .size = 24, .cls = 1, .caller = 0x401000));     /* 2 */
  tb_put(t, EV(.kind = HKT_EV_CALLOC, .ptr = SS + 0x200, .size = 8, .aux = 3, .cls = 1, .caller = 0x401010)); /* 3 */
  tb_put(t, EV(.kind = HKT_EV_THREAD_START, .tid = 1, .aux = 101));                                       /* 4 */
  tb_put(t, EV(.kind = HKT_EV_LARGE_MAP, .tid = 1, .ptr = LARGE, .size = MiB + 4096));                   /* 5 */
  tb_put(t, EV(.kind = HKT_EV_MALLOC, .tid = 1, .ptr = LARGE, .size = MiB, .caller = 0x401020));         /* 6 */
  tb_put(t, EV(.kind = HKT_EV_FREE, .tid = 1, .ptr = SS + 0x100, .cls = 1, .caller = 0x401030));         /* 7 */
  tb_put(t, EV(.kind = HKT_EV_REMOTE_PUSH, .tid = 1, .ptr = SS + 0x100, .aux = SS, .aux2 = 0, .cls = 1)); /* 8 */
  tb_put(t, EV(.kind = HKT_EV_REALLOC, .ptr = SS + 0x300, .aux = SS + 0x200, .size = 40, .cls = 1,
               .fn = HKT_FN_REALLOC, .caller = 0x401040));                                               /* 9 */
  tb_put(t, EV(.kind = HKT_EV_ALIGNED, .ptr = SS + 0x400, .size = 64, .aux = 64, .cls = 1,
               .fn = HKT_FN_POSIX_MEMALIGN, .caller = 0x401050));                                        /* 10 */
  tb_put(t, EV(.kind = HKT_EV_FREE, .tid = 1, .ptr = LARGE, .caller = 0x401060));                        /* 11 */
  tb_put(t, EV(.kind = HKT_EV_LARGE_UNMAP, .tid = 1, .ptr = LARGE, .size = MiB + 4096));                 /* 12 */
  tb_put(t, EV(.kind = HKT_EV_THREAD_EXIT, .tid = 1));                                                    /* 13 */
  tb_put(t, EV(.kind = HKT_EV_MARK, .str = "phase \"one\"\n"));                                          /* 14 */
  tb_put(t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x300, .cls = 1, .caller = 0x401070));                   /* 15 */
  tb_put(t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x400, .cls = 1, .caller = 0x401080));                   /* 16 */
  tb_put(t, EV(.kind = HKT_EV_REMOTE_DRAIN, .aux = SS, .size = 1, .cls = 1));                            /* 17 */
  tb_put(t, EV(.kind = HKT_EV_SS_UNREGISTER, .ptr = SS, .size = 2 * MiB, .cls = 1, .aux = 0, .aux2 = 1)); /* 18 */
  tb_put(t, EV(.kind = HKT_EV_END, .fn = (uint16_t)end_how, .aux = end_code));                           /* 19 */
  tb_close(t, 1);
}

/* Opening of a trace for the flawed variants: t0 started, one SuperSlab. */
static void base_trace(tb *t, const char *name) {
  tb_open(t, name);
  tb_put(t, EV(.kind = HKT_EV_THREAD_START, .aux = 100));                                                 /* 0 */
  tb_put(t, EV(.kind = HKT_EV_SS_REGISTER, .ptr = SS, .size = 2 * MiB, .cls = 1, .aux2 = 1));             /* 1 */
  tb_put(t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x100, .size = 24, .cls = 1));                         /* 2 */
}

static void write_file(const char *path, const void *data, size_t n);

static off_t file_size(const char *path) {
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  return sb.st_size;
}

/* ---- fixtures ----------------------------------------------------------------- */

static int setup(void **state) {
  const char *build = getenv("HAKMEM_BUILD");
  snprintf(hakmem_bin, sizeof hakmem_bin, "%s/bin/hakmem", build && *build ? build : "build");
  strcpy(tmpdir, "/tmp/hakmem-test-cli-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  if (access(hakmem_bin, X_OK) != 0) {
    fprintf(stderr, "test_cli: %s is not built\n", hakmem_bin);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- front end --------------------------------------------------------------- */

static void test_help(void **state) {
  static const struct { const char *cmd; const char *flags[8]; } cmds[] = {
    {"record", {"-o FILE", "--backtrace N", "--lttng", "--snapshot"}},
    {"recover", {"SPOOL", "-o FILE"}},
    {"stats", {"--json"}},
    {"dump", {"--json", "--tid T", "--ptr ADDR", "--from SEQ", "--to SEQ", "--kind"}},
    {"verify", {"FILE"}},
    {"replay", {"--against", "--repeat N", "--json", "--stop-at SEQ"}},
    {"minimize", {"-o OUT", "--emit-c"}},
    {"analyze", {"--format", "text|json|html", "-o OUT"}},
    {"import", {"-o FILE"}},
  };
  result top = run("--help", NULL);
  assert_int_equal(top.status, 0);
  char usage[64];
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    assert_contains(top.out, cmds[i].cmd);
    snprintf(usage, sizeof usage, "usage: hakmem %s ", cmds[i].cmd);
    result a = run("help", cmds[i].cmd, NULL), b = run(cmds[i].cmd, "--help", NULL);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
    assert_true(!strncmp(a.out, usage, strlen(usage)));
    assert_string_equal(a.out, b.out);
    for (int f = 0; f < 8 && cmds[i].flags[f]; f++) assert_contains(a.out, cmds[i].flags[f]);
    /* a command that is not linked in says so, and exits 2 */
    char *line = line_with(top.out, cmds[i].cmd);
    if (line && strstr(line, "(not built in)")) {
      result c = run(cmds[i].cmd, "x", NULL);
      assert_int_equal(c.status, 2);
      assert_contains(c.err, "is not built in this version");
      result_free(&c);
    }
    free(line);
    result_free(&a);
    result_free(&b);
  }
  result_free(&top);

  result v = run("--version", NULL);
  assert_int_equal(v.status, 0);
  assert_true(!strncmp(v.out, "hakmem ", 7));
  result_free(&v);

  result none = run(NULL), bad = run("frobnicate", NULL), badhelp = run("help", "frobnicate", NULL);
  assert_int_equal(none.status, 2);
  assert_int_equal(bad.status, 2);
  assert_int_equal(badhelp.status, 2);
  assert_contains(bad.err, "frobnicate");
  assert_int_equal(count_lines(bad.err), 1);
  result_free(&none);
  result_free(&bad);
  result_free(&badhelp);
}

static void test_bad_usage(void **state) {
  tb t;
  good_trace(&t, "usage.hkt.zst", HKT_END_EXIT, 0);
  static const char *cases[][7] = {
    {"stats", NULL}, {"stats", "--bogus", "F"}, {"dump", "F", "--tid"}, {"dump", "F", "--tid", "x1"},
    {"dump", "F", "--kind", "nosuch"}, {"dump", "F", "--from", "9", "--to", "3"}, {"dump", "F", "--ptr", "-1"},
    {"verify", "F", "G"}, {"verify", "--json", "F"}, {"stats", "F", "F"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *a[7];
    for (int j = 0; j < 7; j++) a[j] = cases[i][j] && !strcmp(cases[i][j], "F") ? t.path : cases[i][j];
    result r = run(a[0], a[1], a[2], a[3], a[4], a[5], a[6], NULL);
    if (r.status != 2) fail_msg("case %zu (%s %s): exit %d, stderr: %s", i, a[0], a[1] ? a[1] : "", r.status, r.err);
    assert_one_error_line(&r, a[0]);
    result_free(&r);
  }
}

/* ---- stats --------------------------------------------------------------------- */

static void test_stats_json(void **state) {
  tb t;
  good_trace(&t, "good.hkt.zst", HKT_END_EXIT, 3);
  result r = run("stats", t.path, "--json", NULL);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.err, "");
  assert_json(r.out, 0);
  char bytes[64];
  snprintf(bytes, sizeof bytes, "\"bytes\":%lld,", (long long)file_size(t.path));
  assert_contains(r.out, bytes);
  assert_contains(r.out, "\"events\":20,");
  assert_contains(r.out, "\"threads\":2,");
  assert_contains(r.out, "\"duration_ns\":19000,");
  assert_contains(r.out, "\"complete\":true");
  assert_contains(r.out, "\"end\":{\"kind\":\"exit\",\"status\":3,\"signal\":0}");
  assert_contains(r.out, "\"pid\":4242");
  assert_contains(r.out, "\"cmdline\":\"./app --flag \\\"x\\\"\"");
  assert_contains(r.out, "\"arena_base\":\"0x200000000000\"");
  char version[32];
  snprintf(version, sizeof version, "\"version\":%d", HKT_FORMAT_VERSION);
  assert_contains(r.out, version);
  assert_contains(r.out, "\"modules\":1");
  static const char *counts[] = {
    "\"malloc\":2", "\"calloc\":1", "\"realloc\":1", "\"aligned\":1", "\"free\":4",
    "\"thread_start\":2", "\"thread_exit\":1", "\"ss_register\":1", "\"ss_unregister\":1",
    "\"remote_push\":1", "\"remote_drain\":1", "\"large_map\":1", "\"large_unmap\":1",
    "\"mark\":1", "\"detection\":0", "\"end\":1", "\"cache_refill\":0",
  };
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) assert_contains(r.out, counts[i]);
  char bpe[64];
  snprintf(bpe, sizeof bpe, "\"bytes_per_event\":%.6f", (double)file_size(t.path) / 20.0);
  assert_contains(r.out, bpe);
  result_free(&r);
}

static void test_stats_text(void **state) {
  tb t;
  good_trace(&t, "sig.hkt.zst", HKT_END_SIGNAL, 11);
  result r = run("stats", t.path, NULL);
  assert_int_equal(r.status, 0);
  assert_contains(r.out, "events           20\n");
  assert_contains(r.out, "threads          2\n");
  assert_contains(r.out, "duration         0.000019000 s\n");
  assert_contains(r.out, "complete         yes\n");
  assert_contains(r.out, "end              signal 11\n");
  assert_contains(r.out, "  free             4\n");
  assert_contains(r.out, "  ss_register      1\n");
  assert_not_contains(r.out, "cache_refill");   /* zero counts are left out of the text */
  result_free(&r);

  r = run("stats", t.path, "--json", NULL);
  assert_contains(r.out, "\"end\":{\"kind\":\"signal\",\"status\":0,\"signal\":11}");
  result_free(&r);
}

static void test_stats_detections_and_incomplete(void **state) {
  tb t;
  base_trace(&t, "det.hkt.zst");
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 4 */
  tb_put(&t, EV(.kind = HKT_EV_DETECTION, .fn = HKT_DET_DOUBLE_FREE, .ptr = SS + 0x100, .aux = SS));    /* 5 */
  tb_close(&t, 0);   /* no end frame, no END event: a recorder that died */
  result r = run("stats", t.path, "--json", NULL);
  assert_int_equal(r.status, 0);   /* clean frame boundary: readable */
  assert_json(r.out, 0);
  assert_contains(r.out, "\"events\":6,");
  assert_contains(r.out, "\"threads\":1,");
  assert_contains(r.out, "\"complete\":false");
  assert_contains(r.out, "\"end\":{\"kind\":\"unknown\",\"status\":0,\"signal\":0}");
  assert_contains(r.out, "\"detection\":1");
  assert_contains(r.out, "\"double_free\":1");
  assert_contains(r.out, "\"stale_free\":0");
  result_free(&r);
  r = run("stats", t.path, NULL);
  assert_contains(r.out, "complete         no (no end frame)\n");
  assert_contains(r.out, "  double_free      1\n");
  result_free(&r);
}

/* ---- dump ------------------------------------------------------------------------- */

static void test_dump_text_and_json(void **state) {
  tb t;
  good_trace(&t, "dump.hkt.zst", HKT_END_EXIT, 0);
  result r = run("dump", t.path, NULL);
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 20);
  char *l = line_with(r.out, "caller=0x401000");
  assert_non_null(l);
  assert_contains(l, "malloc");
  assert_contains(l, "ptr=0x200000000100 size=24 cls=1");
  assert_contains(l, " 0.000002000 ");
  free(l);
  l = line_with(r.out, "calloc");
  assert_contains(l, "count=3");
  free(l);
  l = line_with(r.out, "realloc");
  assert_contains(l, "ptr=0x200000000300 old=0x200000000200 size=40 cls=1 fn=realloc");
  free(l);
  l = line_with(r.out, "ss_register");
  assert_contains(l, "base=0x200000000000 size=2097152 cls=1 owner=t0 id=1");
  free(l);
  l = line_with(r.out, " end ");
  assert_contains(l, "how=exit code=0");
  free(l);
  result_free(&r);

  r = run("dump", t.path, "--json", NULL);
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 20);
  assert_json(r.out, 1);
  assert_contains(r.out, "{\"seq\":2,\"time_ns\":2000,\"tid\":0,\"kind\":\"malloc\",\"ptr\":\"0x200000000100\","
                         "\"size\":24,\"cls\":1,\"caller\":\"0x401000\"}\n");
  assert_contains(r.out, "\"kind\":\"mark\",\"label\":\"phase \\\"one\\\"\\n\"}");
  assert_contains(r.out, "{\"seq\":6,\"time_ns\":6000,\"tid\":1,\"kind\":\"malloc\",\"ptr\":\"0x300000000000\","
                         "\"size\":1048576,\"cls\":null,");
  result_free(&r);
}

static int count_kind(const char *out, const char *kind) {
  int n = 0;
  char pat[32];
  snprintf(pat, sizeof pat, " %s ", kind);
  for (const char *p = out; (p = strstr(p, pat)); p++) n++;
  return n;
}

static void test_dump_filters(void **state) {
  tb t;
  good_trace(&t, "filters.hkt.zst", HKT_END_EXIT, 0);
  result r = run("dump", t.path, "--tid", "1", NULL);
  assert_int_equal(r.status, 0);
  assert_int_equal(count_lines(r.out), 8);
  assert_not_contains(r.out, " t0 ");
  result_free(&r);

  r = run("dump", t.path, "--tid", "t1", NULL);   /* as dump prints it */
  assert_int_equal(count_lines(r.out), 8);
  result_free(&r);

  r = run("dump", t.path, "--from", "5", "--to", "0x8", NULL);
  assert_int_equal(count_lines(r.out), 4);
  assert_true(!strncmp(r.out, "         5 ", 11));
  result_free(&r);

  r = run("dump", t.path, "--kind", "free", NULL);
  assert_int_equal(count_lines(r.out), 4);
  assert_int_equal(count_kind(r.out, "free"), 4);
  result_free(&r);

  r = run("dump", t.path, "--kind", "malloc,calloc", "--tid", "0", "--json", NULL);
  assert_int_equal(count_lines(r.out), 2);
  assert_contains(r.out, "\"seq\":2,");
  assert_contains(r.out, "\"seq\":3,");
  result_free(&r);
}

/* The history of one address: its block's calls and its SuperSlab's lifecycle. */
static void test_dump_ptr(void **state) {
  tb t;
  good_trace(&t, "ptr.hkt.zst", HKT_END_EXIT, 0);
  static const struct { const char *addr; int events; uint64_t seqs[6]; } cases[] = {
    {"0x200000000100", 5, {1, 2, 7, 8, 18}},    /* malloc'd, freed cross-thread, pushed */
    {"0x200000000104", 5, {1, 2, 7, 8, 18}},    /* an interior address of the same block */
    {"0x200000000210", 4, {1, 3, 9, 18}},       /* calloc'd, realloc'ed away */
    {"0x200000000300", 4, {1, 9, 15, 18}},      /* realloc result, freed */
    {"0x300000000010", 4, {5, 6, 11, 12}},      /* a large block and its mapping */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    result r = run("dump", t.path, "--ptr", cases[i].addr, "--json", NULL);
    assert_int_equal(r.status, 0);
    assert_json(r.out, 1);
    if (count_lines(r.out) != cases[i].events) fail_msg("--ptr %s:\n%s", cases[i].addr, r.out);
    const char *p = r.out;
    for (int e = 0; e < cases[i].events; e++) {
      char seq[32];
      snprintf(seq, sizeof seq, "{\"seq\":%" PRIu64 ",", cases[i].seqs[e]);
      assert_true(!strncmp(p, seq, strlen(seq)));
      p = strchr(p, '\n') + 1;
    }
    result_free(&r);
  }
  result r = run("dump", t.path, "--ptr", "0x200000000100", NULL);
  assert_int_equal(count_lines(r.out), 6);
  assert_contains(r.out, "[superslab]");
  assert_contains(r.out, "[block]");
  assert_contains(r.out, "-- 0x200000000100: 5 events; last block 0x200000000100 freed at seq 7;"
                         " SuperSlab 0x200000000000 registered at seq 1, unregistered at seq 18\n");
  result_free(&r);
  r = run("dump", t.path, "--ptr", "0x100", NULL);
  assert_int_equal(r.status, 0);
  assert_contains(r.out, "0 events; never allocated");
  result_free(&r);
}

/* ---- verify ---------------------------------------------------------------------- */

static void test_verify_good(void **state) {
  tb t;
  good_trace(&t, "vgood.hkt.zst", HKT_END_EXIT, 0);
  result r = run("verify", t.path, NULL);
  if (r.status != 0) fail_msg("verify failed:\n%s%s", r.out, r.err);
  assert_contains(r.out, ": OK: 20 events, 2 threads, complete\n");
  result_free(&r);
}

/* Runs verify on t (closed) and checks: exit 1 and a problem at seq. */
static void expect_problem(tb *t, uint64_t seq, const char *what) {
  result r = run("verify", t->path, NULL);
  char pat[64];
  snprintf(pat, sizeof pat, ": seq %" PRIu64 ": ", seq);
  char *l = line_with(r.out, pat);
  if (r.status != 1 || !l || !strstr(l, what))
    fail_msg("%s: expected exit 1 and \"seq %" PRIu64 ": ...%s\", got exit %d:\n%s%s", t->path, seq, what,
             r.status, r.out, r.err);
  assert_contains(r.out, "FAILED: 1 problem in ");
  free(l);
  result_free(&r);
}

static void expect_clean(tb *t) {
  result r = run("verify", t->path, NULL);
  if (r.status != 0) fail_msg("%s: expected exit 0, got %d:\n%s%s", t->path, r.status, r.out, r.err);
  result_free(&r);
}

static void test_verify_frees(void **state) {
  tb t;
  base_trace(&t, "wild.hkt.zst");   /* a free of a pointer never allocated */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x900, .cls = 1));                                     /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x200, .size = 8, .cls = 1));                         /* 4 */
  tb_close(&t, 1);
  expect_problem(&t, 3, "free of 0x200000000900, which is not a live block");

  base_trace(&t, "double.hkt.zst");  /* a double free nobody noticed */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 4 */
  tb_close(&t, 1);
  expect_problem(&t, 4, "not a live block");

  base_trace(&t, "detected.hkt.zst");  /* the same, detected by the allocator: consistent */
  tb_put(&t, EV(.kind = HKT_EV_THREAD_START, .tid = 1));                                                /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 4 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 5 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .tid = 1, .ptr = SS + 0x500, .size = 8, .cls = 1));              /* 6: other thread */
  tb_put(&t, EV(.kind = HKT_EV_DETECTION, .fn = HKT_DET_DOUBLE_FREE, .ptr = SS + 0x100, .aux = SS));    /* 7 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = 0x1234));                                                   /* 8 */
  tb_put(&t, EV(.kind = HKT_EV_DETECTION, .fn = HKT_DET_INVALID_FREE, .ptr = 0x1234));                  /* 9 */
  tb_put(&t, EV(.kind = HKT_EV_DETECTION, .fn = HKT_DET_INVALID_FREE, .ptr = 0x5678));                  /* 10 */
  tb_put(&t, EV(.kind = HKT_EV_REALLOC, .ptr = 0, .aux = 0x5678, .size = 10, .fn = HKT_FN_REALLOC));    /* 11 */
  tb_close(&t, 1);
  expect_clean(&t);

  base_trace(&t, "latedet.hkt.zst");   /* a detection of another thread explains nothing */
  tb_put(&t, EV(.kind = HKT_EV_THREAD_START, .tid = 1));                                                /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x700, .cls = 1));                                     /* 4 */
  tb_put(&t, EV(.kind = HKT_EV_DETECTION, .tid = 1, .fn = HKT_DET_DOUBLE_FREE, .ptr = SS + 0x700));     /* 5 */
  tb_close(&t, 1);
  expect_problem(&t, 4, "free of 0x200000000700");

  base_trace(&t, "realloc.hkt.zst");   /* realloc of a freed block */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_REALLOC, .ptr = SS + 0x300, .aux = SS + 0x100, .size = 30, .cls = 1,
                .fn = HKT_FN_REALLOC));                                                                  /* 4 */
  tb_close(&t, 1);
  expect_problem(&t, 4, "realloc of 0x200000000100, which is not a live block");

  base_trace(&t, "realloc0.hkt.zst");  /* realloc(p, 0) and the FREE it makes; then a plain one */
  tb_put(&t, EV(.kind = HKT_EV_REALLOC, .ptr = 0, .aux = SS + 0x100, .size = 0, .fn = HKT_FN_REALLOC));  /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 4 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x100, .size = 24, .cls = 1));                        /* 5 */
  tb_put(&t, EV(.kind = HKT_EV_REALLOC, .ptr = 0, .aux = SS + 0x100, .size = 0, .fn = HKT_FN_REALLOC));  /* 6 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x100, .size = 24, .cls = 1));                        /* 7 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 8 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 9 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x100, .size = 24, .cls = 1));                        /* 10 */
  tb_put(&t, EV(.kind = HKT_EV_REALLOC, .ptr = 0, .aux = SS + 0x100, .size = 0, .aux2 = 12,
                .fn = HKT_FN_REALLOCARRAY));                                                            /* 11: overflow */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x200, .size = 24, .cls = 1));                        /* 12 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 13: still live */
  tb_close(&t, 1);
  expect_problem(&t, 9, "free of 0x200000000100, which is not a live block");

  base_trace(&t, "reuse.hkt.zst");     /* an allocation handing out a live block */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x100, .size = 16, .cls = 1));                        /* 3 */
  tb_close(&t, 1);
  expect_problem(&t, 3, "which is live (allocated at seq 2)");
}

static void test_verify_superslabs(void **state) {
  tb t;
  base_trace(&t, "outside.hkt.zst");   /* a tiny block in no SuperSlab */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .ptr = SS2 + 0x40, .size = 16, .cls = 0));                        /* 3 */
  tb_close(&t, 1);
  expect_problem(&t, 3, "in no registered SuperSlab");

  base_trace(&t, "early.hkt.zst");     /* unregistered while a block is live */
  tb_put(&t, EV(.kind = HKT_EV_SS_UNREGISTER, .ptr = SS, .size = 2 * MiB, .cls = 1, .aux2 = 1));         /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 4 */
  tb_close(&t, 1);
  expect_problem(&t, 3, "unregistered with 1 live blocks, e.g. 0x200000000100 allocated at seq 2");

  base_trace(&t, "aux3.hkt.zst");      /* the allocator itself says blocks were live */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_SS_UNREGISTER, .ptr = SS, .size = 2 * MiB, .cls = 1, .aux2 = 1, .aux3 = 2)); /* 4 */
  tb_close(&t, 1);
  expect_problem(&t, 4, "the allocator counts 2 blocks of it live");

  base_trace(&t, "unknown-ss.hkt.zst");
  tb_put(&t, EV(.kind = HKT_EV_SS_UNREGISTER, .ptr = SS2, .size = 2 * MiB, .cls = 1, .aux2 = 2));        /* 3 */
  tb_close(&t, 1);
  expect_problem(&t, 3, "unregister of SuperSlab 0x200000200000, which is not registered");

  base_trace(&t, "overlap.hkt.zst");
  tb_put(&t, EV(.kind = HKT_EV_SS_REGISTER, .ptr = SS + MiB, .size = 2 * MiB, .cls = 2, .aux2 = 2));     /* 3 */
  tb_close(&t, 1);
  expect_problem(&t, 3, "overlaps SuperSlab 0x200000000000 registered at seq 1");

  base_trace(&t, "reregister.hkt.zst");  /* released, registered again at the same base: fine */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x100, .cls = 1));                                     /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_SS_UNREGISTER, .ptr = SS, .size = 2 * MiB, .cls = 1, .aux2 = 1));         /* 4 */
  tb_put(&t, EV(.kind = HKT_EV_SS_REGISTER, .ptr = SS, .size = 2 * MiB, .cls = 3, .aux2 = 2));           /* 5 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .ptr = SS + 0x100, .size = 60, .cls = 3));                        /* 6 */
  tb_close(&t, 1);
  expect_clean(&t);
}

static void test_verify_threads(void **state) {
  tb t;
  base_trace(&t, "nostart.hkt.zst");
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .tid = 2, .ptr = SS + 0x200, .size = 8, .cls = 1));               /* 3 */
  tb_close(&t, 1);
  expect_problem(&t, 3, "malloc of t2 before its thread_start");

  base_trace(&t, "afterexit.hkt.zst");   /* libc frees thread data after the exit hook: fine */
  tb_put(&t, EV(.kind = HKT_EV_THREAD_START, .tid = 1));                                                /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .tid = 1, .ptr = SS + 0x200, .size = 8, .cls = 1));               /* 4 */
  tb_put(&t, EV(.kind = HKT_EV_THREAD_EXIT, .tid = 1));                                                 /* 5 */
  tb_put(&t, EV(.kind = HKT_EV_CACHE_FLUSH, .tid = 1, .size = 3, .cls = 1));                            /* 6 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .tid = 1, .ptr = SS + 0x200, .cls = 1));                           /* 7 */
  tb_put(&t, EV(.kind = HKT_EV_MODULE_LOAD, .tid = HKT_TID_RECORDER, .ptr = 0x7f0000000000, .size = 4096,
                .str = "/lib/x.so"));                                                                   /* 8 */
  tb_close(&t, 1);
  expect_clean(&t);

  base_trace(&t, "twostarts.hkt.zst");
  tb_put(&t, EV(.kind = HKT_EV_THREAD_START, .tid = 1));                                                /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_THREAD_START, .tid = 1));                                                /* 4 */
  tb_close(&t, 1);
  expect_problem(&t, 4, "thread_start of t1, which is already running");

  base_trace(&t, "twoexits.hkt.zst");
  tb_put(&t, EV(.kind = HKT_EV_THREAD_START, .tid = 1));                                                /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_THREAD_EXIT, .tid = 1));                                                 /* 4 */
  tb_put(&t, EV(.kind = HKT_EV_THREAD_EXIT, .tid = 1));                                                 /* 5 */
  tb_close(&t, 1);
  expect_problem(&t, 5, "second thread_exit of t1 (first at seq 4)");
}

/* A forked child's trace starts in a process that already has a heap. */
static void test_verify_forked_child(void **state) {
  tb t;
  tb_open(&t, "child.hkt.zst");
  tb_put(&t, EV(.kind = HKT_EV_FREE, .tid = 3, .ptr = SS + 0x100, .cls = 1));                           /* 0: inherited */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .tid = 3, .ptr = SS + 0x140, .size = 16, .cls = 1));              /* 1 */
  tb_put(&t, EV(.kind = HKT_EV_REALLOC, .tid = 3, .ptr = SS + 0x180, .aux = SS + 0x200, .size = 20,
                .cls = 1, .fn = HKT_FN_REALLOC));                                                       /* 2 */
  tb_put(&t, EV(.kind = HKT_EV_SS_REGISTER, .tid = 3, .ptr = SS2, .size = 2 * MiB, .cls = 2, .aux2 = 9)); /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .tid = 3, .ptr = SS2 + 0x40, .size = 32, .cls = 2));              /* 4 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .tid = 3, .ptr = SS2 + 0x40, .cls = 2));                           /* 5 */
  tb_close(&t, 1);
  result r = run("verify", t.path, NULL);
  if (r.status != 0) fail_msg("%s", r.out);
  assert_contains(r.out, "OK: 6 events, 1 threads, complete (starts in a running process");
  result_free(&r);

  tb_open(&t, "child-double.hkt.zst");  /* a block of a SuperSlab it registered is still checked */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .tid = 3, .ptr = SS + 0x140, .size = 16, .cls = 1));              /* 0 */
  tb_put(&t, EV(.kind = HKT_EV_SS_REGISTER, .tid = 3, .ptr = SS2, .size = 2 * MiB, .cls = 2, .aux2 = 9)); /* 1 */
  tb_put(&t, EV(.kind = HKT_EV_MALLOC, .tid = 3, .ptr = SS2 + 0x40, .size = 32, .cls = 2));              /* 2 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .tid = 3, .ptr = SS2 + 0x40, .cls = 2));                           /* 3 */
  tb_put(&t, EV(.kind = HKT_EV_FREE, .tid = 3, .ptr = SS2 + 0x40, .cls = 2));                           /* 4 */
  tb_close(&t, 1);
  expect_problem(&t, 4, "free of 0x200000200040, which is not a live block");
}

/* With its parent's trace there, a forked child's trace is checked against
 * the heap at the fork: the parent's blocks are live, and a block the
 * parent never had is not (seqs in the report are the child's own). */
static void test_verify_child_after_parent(void **state) {
  tb p, c;
  tb_open(&p, "fparent.hkt.zst");
  tb_put(&p, EV(.kind = HKT_EV_THREAD_START, .tid = 0));                                                 /* 0 */
  tb_put(&p, EV(.kind = HKT_EV_SS_REGISTER, .tid = 0, .ptr = SS, .size = 2 * MiB, .cls = 1, .aux2 = 1));  /* 1 */
  tb_put(&p, EV(.kind = HKT_EV_MALLOC, .tid = 0, .ptr = SS + 0x100, .size = 16, .cls = 1));             /* 2 */
  tb_put(&p, EV(.kind = HKT_EV_MALLOC, .tid = 0, .ptr = SS + 0x110, .size = 16, .cls = 1));             /* 3 */
  tb_put(&p, EV(.kind = HKT_EV_FORK, .tid = 0, .cls = HKT_NO_CLASS));                                   /* 4 */
  tb_put(&p, EV(.kind = HKT_EV_FREE, .tid = 0, .ptr = SS + 0x100, .cls = 1));                           /* 5 */
  tb_close(&p, 1);
  tb_open_as(&c, "fparent.5000.hkt.zst", 5000, p.path, 4);
  tb_put(&c, EV(.kind = HKT_EV_FREE, .tid = 0, .ptr = SS + 0x100, .cls = 1));                           /* 0: the parent's */
  tb_put(&c, EV(.kind = HKT_EV_FREE, .tid = 0, .ptr = SS + 0x120, .cls = 1));                           /* 1: never a block */
  tb_put(&c, EV(.kind = HKT_EV_FREE, .tid = 0, .ptr = SS + 0x110, .cls = 1));                           /* 2: the parent's */
  tb_close(&c, 1);
  expect_problem(&c, 1, "free of 0x200000000120, which is not a live block");

  /* Without the parent's trace: as before, the first event tells, and
   * the line says why the blocks before the fork were not checked. */
  char moved[600];
  snprintf(moved, sizeof moved, "%s.moved", p.path);
  assert_int_equal(rename(p.path, moved), 0);
  result r = run("verify", c.path, NULL);
  if (r.status != 0) fail_msg("%s%s", r.out, r.err);
  assert_contains(r.out, "OK: 3 events, 1 threads, complete (blocks from before the fork were not checked: ");
  assert_contains(r.out, "not there");
  result_free(&r);
  assert_int_equal(rename(moved, p.path), 0);
  r = run("verify", p.path, NULL);   /* and the parent, with its FORK, verifies on its own */
  if (r.status != 0) fail_msg("%s%s", r.out, r.err);
  result_free(&r);
}

static void test_verify_incomplete_and_many(void **state) {
  tb t;
  base_trace(&t, "noend.hkt.zst");
  tb_close(&t, 0);
  result r = run("verify", t.path, NULL);
  assert_int_equal(r.status, 1);
  assert_contains(r.out, "incomplete: ends after 3 events");
  result_free(&r);

  base_trace(&t, "many.hkt.zst");      /* 30 wild frees: 20 shown, the rest counted */
  for (int i = 0; i < 30; i++) tb_put(&t, EV(.kind = HKT_EV_FREE, .ptr = SS + 0x1000 + 16 * (uint64_t)i, .cls = 1));
  tb_close(&t, 1);
  r = run("verify", t.path, NULL);
  assert_int_equal(r.status, 1);
  assert_int_equal(count_lines(r.out), 22);
  assert_contains(r.out, "... 10 more problems\n");
  assert_contains(r.out, "FAILED: 30 problems in 33 events\n");
  result_free(&r);
}

/* ---- real recordings: what the allocator and recorder write verifies --------- */

static const char workload_src[] =
  "#include <pthread.h>\n#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n#include <sys/wait.h>\n"
  "static void *q[2000];\n"
  "static void *worker(void *a) {\n"
  "  for (int i = 0; i < 2000; i++) { free(q[i]); q[i] = 0; void *p = malloc(i % 3000 + 1); p = realloc(p, i % 700 + 5); free(p); }\n"
  "  return a;\n}\n"
  "int main(void) {\n"
  "  for (int i = 0; i < 2000; i++) q[i] = malloc(i * 37 % 5000 + 1);\n"
  "  pthread_t t[2]; for (int k = 0; k < 2; k++) pthread_create(&t[k], 0, worker, 0), pthread_join(t[k], 0);\n"
  "  void *r = realloc(malloc(10), 0); (void)r; free(calloc(10, 100)); free(malloc(1 << 22));\n"
  "  void *al; if (posix_memalign(&al, 4096, 100) == 0) free(al);\n"
  "  void *kept = malloc(100); pid_t pid = fork();\n"
  "  if (pid == 0) { free(kept); free(malloc(50)); _exit(0); }\n"
  "  waitpid(pid, 0, 0); free(kept); return 0;\n}\n";

/* -O0 -fno-builtin: the compiler would drop malloc/free pairs otherwise. */
static void test_record_then_verify(void **state) {
  if (getenv("HAKMEM_TEST_SAN")) skip();   /* preloads libhakmem.so into another program */
  result h = run("--help", NULL);
  char *line = line_with(h.out, "record ");
  int built = line && !strstr(line, "(not built in)");
  free(line);
  result_free(&h);
  if (!built) skip();

  char src[128], prog[128], trace[128], cmd[512];
  snprintf(src, sizeof src, "%s/workload.c", tmpdir);
  snprintf(prog, sizeof prog, "%s/workload", tmpdir);
  snprintf(trace, sizeof trace, "%s/rec/w.hkt.zst", tmpdir);
  write_file(src, workload_src, sizeof workload_src - 1);
  snprintf(cmd, sizeof cmd, "cc -O0 -fno-builtin -pthread -o %s %s && mkdir -p %s/rec", prog, src, tmpdir);
  assert_int_equal(system(cmd), 0);
  result r = run("record", "-o", trace, "--", prog, NULL);
  if (r.status != 0) fail_msg("record: exit %d\n%s%s", r.status, r.out, r.err);
  result_free(&r);

  r = run("stats", trace, "--json", NULL);
  assert_int_equal(r.status, 0);
  assert_contains(r.out, "\"complete\":true");
  assert_contains(r.out, "\"end\":{\"kind\":\"exit\",\"status\":0,");
  assert_contains(r.out, "\"threads\":3,");
  result_free(&r);

  /* the parent's trace and the forked child's: each whole and consistent */
  char dir[128];
  snprintf(dir, sizeof dir, "%s/rec", tmpdir);
  int traces = 0;
  FILE *ls;
  snprintf(cmd, sizeof cmd, "ls %s/*.hkt.zst", dir);
  assert_non_null(ls = popen(cmd, "r"));
  char path[256];
  while (fgets(path, sizeof path, ls)) {
    path[strcspn(path, "\n")] = 0;
    result v = run("verify", path, NULL);
    if (v.status != 0) fail_msg("verify %s: exit %d\n%s%s", path, v.status, v.out, v.err);
    result_free(&v);
    traces++;
  }
  pclose(ls);
  assert_int_equal(traces, 2);
}

/* ---- bad input: one line, non-zero, no crash ----------------------------------------- */

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static void test_bad_files(void **state) {
  tb t;
  good_trace(&t, "whole.hkt.zst", HKT_END_EXIT, 0);
  size_t n = (size_t)file_size(t.path);
  char *data = malloc(n), garbage[4096], path[128];
  FILE *f = fopen(t.path, "rb");
  assert_int_equal(fread(data, 1, n, f), n);
  fclose(f);
  srand(7);
  for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (char)rand();

  static const char *cmds[] = {"stats", "dump", "verify"};
  struct { const char *name; const char *path; } unreadable[] = {
    {"missing", "/nonexistent/trace.hkt.zst"}, {"directory", tmpdir}, {"garbage", NULL}, {"empty", NULL},
  };
  snprintf(path, sizeof path, "%s/garbage", tmpdir);
  write_file(path, garbage, sizeof garbage);
  unreadable[2].path = strdup(path);
  snprintf(path, sizeof path, "%s/empty", tmpdir);
  write_file(path, "", 0);
  unreadable[3].path = strdup(path);
  for (size_t c = 0; c < 3; c++) {
    for (size_t u = 0; u < 4; u++) {
      result r = run(cmds[c], unreadable[u].path, NULL);
      if (r.status != 2) fail_msg("%s on %s file: exit %d", cmds[c], unreadable[u].name, r.status);
      assert_one_error_line(&r, cmds[c]);
      assert_contains(r.err, unreadable[u].path);
      result_free(&r);
    }
  }

  /* cut at every length: never a crash, never exit 0 for verify; stats and
   * dump either read a prefix (0 or 1) or refuse the file (2) */
  snprintf(path, sizeof path, "%s/cut.hkt.zst", tmpdir);
  size_t step = n > 200 ? n / 97 : 1;
  for (size_t len = 0; len < n; len += step) {
    write_file(path, data, len);
    for (size_t c = 0; c < 3; c++) {
      result r = run(cmds[c], path, NULL);
      if (r.status >= 128) fail_msg("%s crashed on a trace cut at %zu of %zu bytes", cmds[c], len, n);
      if (c == 2 && r.status == 0) fail_msg("verify accepted a trace cut at %zu of %zu bytes", len, n);
      if (r.status == 2 || (r.status == 1 && c < 2)) assert_one_error_line(&r, cmds[c]);
      result_free(&r);
    }
  }
  /* flipped bytes: no crash */
  for (int i = 0; i < 40; i++) {
    char *copy = malloc(n);
    memcpy(copy, data, n);
    copy[(size_t)rand() % n] ^= (char)(1 + rand() % 255);
    write_file(path, copy, n);
    free(copy);
    for (size_t c = 0; c < 3; c++) {
      result r = run(cmds[c], path, NULL);
      if (r.status >= 128) fail_msg("%s crashed on a corrupted trace", cmds[c]);
      result_free(&r);
    }
  }
  free(data);
  free((char *)unreadable[2].path);
  free((char *)unreadable[3].path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_help),
    cmocka_unit_test(test_bad_usage),
    cmocka_unit_test(test_stats_json),
    cmocka_unit_test(test_stats_text),
    cmocka_unit_test(test_stats_detections_and_incomplete),
    cmocka_unit_test(test_dump_text_and_json),
    cmocka_unit_test(test_dump_filters),
    cmocka_unit_test(test_dump_ptr),
    cmocka_unit_test(test_verify_good),
    cmocka_unit_test(test_verify_frees),
    cmocka_unit_test(test_verify_superslabs),
    cmocka_unit_test(test_verify_threads),
    cmocka_unit_test(test_verify_forked_child),
    cmocka_unit_test(test_verify_child_after_parent),
    cmocka_unit_test(test_verify_incomplete_and_many),
    cmocka_unit_test(test_record_then_verify),
    cmocka_unit_test(test_bad_files),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
